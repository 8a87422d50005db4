/**
 * Who sent a request and from where, for the audit log: the client's
 * address as the server sees it ({@linkcode clientAddress}: the peer, or
 * what a trusted proxy says in `X-Forwarded-For`) and the principal of a
 * request that may change something ({@linkcode requestActor}).
 *
 * @module
 */

import { SESSION_COOKIE, type SessionStore } from "./auth/sessions.ts";
import type { TokenStore } from "./auth/tokens.ts";
import {
  type ConnectionInfo,
  isTrustedProxy,
  type TrustProxy,
} from "./transport.ts";

/** One cookie's value from a `Cookie` header. */
function getCookieValue(
  header: string | null,
  name: string,
): string | undefined {
  for (const part of (header ?? "").split(";")) {
    const eq = part.indexOf("=");
    if (eq > 0 && part.slice(0, eq).trim() === name) {
      const v = part.slice(eq + 1).trim();
      try {
        return decodeURIComponent(v);
      } catch {
        return v;
      }
    }
  }
  return undefined;
}

function unmapped(host: string): string {
  const h = host.toLowerCase().replace(/^\[|\]$/g, "");
  return h.startsWith("::ffff:") && h.includes(".") ? h.slice(7) : h;
}

function asInfo(hostname: string): ConnectionInfo {
  return { remoteAddr: { transport: "tcp", hostname, port: 0 } };
}

/**
 * The client's IP address: the peer's, unless the peer is a trusted proxy;
 * then `X-Forwarded-For` is read from the right, skipping the addresses of
 * trusted proxies, and the first other one is the client (with
 * `trustProxy: true` every hop is trusted: the leftmost address).
 * `undefined` when the request came without a network peer.
 *
 * @example
 * ```ts
 * import { clientAddress } from "./request_origin.ts";
 * const req = new Request("http://h/", { headers: { "x-forwarded-for": "203.0.113.7, 10.0.0.2" } });
 * const info = { remoteAddr: { transport: "tcp" as const, hostname: "10.0.0.3", port: 1 } };
 * clientAddress(req, info, ["10.0.0.3", "10.0.0.2"]); // "203.0.113.7"
 * clientAddress(req, info, false); // "10.0.0.3"
 * ```
 */
export function clientAddress(
  request: Request,
  info: ConnectionInfo | undefined,
  trustProxy: TrustProxy | undefined,
): string | undefined {
  const addr = info?.remoteAddr;
  const peer = addr && (addr.transport === "tcp" || addr.transport === "udp")
    ? unmapped(addr.hostname)
    : undefined;
  if (peer === undefined || !isTrustedProxy(trustProxy, info)) return peer;
  const hops = (request.headers.get("x-forwarded-for") ?? "").split(",")
    .map((h) => unmapped(h.trim())).filter((h) => h.length > 0);
  for (let i = hops.length - 1; i >= 0; i--) {
    const hop = hops[i]!;
    if (i === 0 || !isTrustedProxy(trustProxy, asInfo(hop))) return hop;
  }
  return peer;
}

/** How an actor is named in the audit log: `token "admin" (tok_1)`. */
export function actorName(
  who: { name: string; tokenId: string },
  via?: "session",
): string {
  return `token "${who.name}" (${who.tokenId})${
    via === "session" ? " via session" : ""
  }`;
}

/**
 * The principal of `request` named for the audit log (Bearer token, else
 * session cookie), or `undefined` when it has none or an invalid one.
 */
export async function requestActor(
  request: Request,
  tokens: TokenStore,
  sessions: SessionStore,
): Promise<string | undefined> {
  const authz = request.headers.get("authorization");
  if (authz !== null) {
    const m = /^Bearer\s+(\S+)\s*$/i.exec(authz);
    const rec = m ? await tokens.verify(m[1]!) : undefined;
    return rec ? actorName({ name: rec.name, tokenId: rec.id }) : undefined;
  }
  const id = getCookieValue(request.headers.get("cookie"), SESSION_COOKIE);
  const s = id ? await sessions.get(id) : undefined;
  return s ? actorName(s, "session") : undefined;
}
