/**
 * Whether a request reached the host over HTTPS, and the response headers
 * that follow from it: `Secure` cookies and `Strict-Transport-Security`.
 *
 * A request is HTTPS when the host itself served it over TLS
 * (`Deno.serve({ cert, key })`: the request URL is `https:`), or when a
 * configured trusted proxy says so in `X-Forwarded-Proto`. The header is
 * ignored unless the connection comes from a trusted proxy: anyone can send
 * it, so believing it from every peer would let a client on plain HTTP
 * pretend to be on HTTPS (harmless for cookies, but it would make the host's
 * idea of the transport something a client chooses).
 *
 * @module
 */

/** `Strict-Transport-Security` sent on every HTTPS response (one year). */
export const HSTS_VALUE = "max-age=31536000";

/** Which peers may say the request came over HTTPS (see {@linkcode isHttpsRequest}). */
export type TrustProxy = boolean | readonly string[];

/** What the server knows about the connection a request came on. */
export interface ConnectionInfo {
  /** The peer's address (`Deno.serve` hands it to the handler). */
  remoteAddr?: Deno.Addr;
}

/** The peer's IP address, with IPv4-mapped IPv6 (`::ffff:10.0.0.2`) unmapped. */
function peerAddress(info: ConnectionInfo | undefined): string | undefined {
  const addr = info?.remoteAddr;
  if (!addr || (addr.transport !== "tcp" && addr.transport !== "udp")) {
    return undefined;
  }
  const host = addr.hostname.toLowerCase().replace(/^\[|\]$/g, "");
  return host.startsWith("::ffff:") && host.includes(".")
    ? host.slice(7)
    : host;
}

/**
 * Whether `info`'s peer is a trusted proxy: `trustProxy` is `true`, or it
 * lists the peer's IP address (compared exactly, IPv4-mapped IPv6 unmapped).
 */
export function isTrustedProxy(
  trustProxy: TrustProxy | undefined,
  info: ConnectionInfo | undefined,
): boolean {
  if (trustProxy === true) return true;
  if (!trustProxy || trustProxy.length === 0) {
    return false;
  }
  const peer = peerAddress(info);
  if (peer === undefined) return false;
  return trustProxy.some((a) => a.toLowerCase() === peer);
}

/**
 * Whether `request` came over HTTPS: its URL is `https:` (the host serves
 * TLS itself), or the peer is a trusted proxy whose `X-Forwarded-Proto`
 * says `https` (the last value of a list: the one the nearest proxy added).
 *
 * @example
 * ```ts
 * import { isHttpsRequest } from "./transport.ts";
 * const req = new Request("http://localhost/", {
 *   headers: { "x-forwarded-proto": "https" },
 * });
 * isHttpsRequest(req, undefined, false); // false: nobody is trusted
 * isHttpsRequest(req, undefined, true); // true
 * ```
 */
export function isHttpsRequest(
  request: Request,
  info: ConnectionInfo | undefined,
  trustProxy: TrustProxy | undefined,
): boolean {
  // A Request's URL is serialised: its scheme is lower case (no
  // URL parse per request).
  if (request.url.startsWith("https:")) return true;
  // The header is read only from a trusted proxy.
  if (!isTrustedProxy(trustProxy, info)) return false;
  const forwarded = request.headers.get("x-forwarded-proto");
  if (forwarded === null) return false;
  const last = forwarded.split(",").at(-1)?.trim().toLowerCase();
  return last === "https";
}
