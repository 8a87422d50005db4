/**
 * The network guard for plugins' outbound HTTP: host patterns from the
 * grants, DNS resolution with every address checked (loopback, private,
 * link-local, CGNAT, multicast, metadata, … refused unless a grant names the
 * address), a connection to exactly the address that was checked (no second
 * lookup), redirects followed by hand with each hop re-checked, a time limit
 * and a response size cap.
 *
 * The request goes through `node:http` / `node:https` with a `lookup`
 * function that returns the checked address, so TLS still verifies the
 * certificate against the host name (SNI) while the socket connects to the
 * address the guard approved.
 *
 * @module
 */

import http from "node:http";
import https from "node:https";
import dns from "node:dns";
import type { HttpRequest, HttpResponse } from "../host/model/host_api.ts";
import {
  type HttpPermission,
  isLocalhostName,
  parsePermission,
  type Permission,
} from "./grammar.ts";
import {
  type AddressClass,
  classifyIp,
  formatIp,
  type IpAddress,
  parseIp,
  sameIp,
} from "./ip.ts";

/** Base class of the egress errors. */
export class EgressError extends Error {
  /** The URL of the hop that failed. */
  readonly url: string;

  /** Creates the error about `url`. */
  constructor(url: string, message: string, options: { cause?: unknown } = {}) {
    super(message, options.cause === undefined ? {} : { cause: options.cause });
    this.name = "EgressError";
    this.url = url;
  }
}

/**
 * The request was refused before any connection: the host is not granted,
 * the scheme is not http(s), or the name resolves to an address that is not
 * public and not named by a grant. `permission` is the grant that would
 * allow it.
 */
export class EgressDeniedError extends EgressError {
  /** The permission that would have allowed the request. */
  readonly permission: string;
  /** Why it was refused. */
  readonly reason: string;
  /** The refused address, when the refusal was about an address. */
  readonly address: string | undefined;
  /** The address's class (`loopback`, `private`, …), when about an address. */
  readonly addressClass: AddressClass | undefined;

  /** Creates the error for `url`. */
  constructor(
    url: string,
    permission: string,
    reason: string,
    address?: { text: string; class: AddressClass },
  ) {
    super(url, `Cannot request "${url}": ${reason}`);
    this.name = "EgressDeniedError";
    this.permission = permission;
    this.reason = reason;
    this.address = address?.text;
    this.addressClass = address?.class;
  }
}

/** The request (all hops together) did not finish within the time limit. */
export class EgressTimeoutError extends EgressError {
  /** The limit, in milliseconds. */
  readonly timeoutMs: number;

  /** Creates the error for `url` after `timeoutMs`. */
  constructor(url: string, timeoutMs: number) {
    super(
      url,
      `Cannot request "${url}": no complete response within ${timeoutMs} ms`,
    );
    this.name = "EgressTimeoutError";
    this.timeoutMs = timeoutMs;
  }
}

/** The response body was larger than the cap. */
export class EgressResponseTooLargeError extends EgressError {
  /** The cap, in bytes. */
  readonly maxBytes: number;

  /** Creates the error for `url` over `maxBytes`. */
  constructor(url: string, maxBytes: number) {
    super(
      url,
      `Cannot request "${url}": response body exceeds ${maxBytes} bytes`,
    );
    this.name = "EgressResponseTooLargeError";
    this.maxBytes = maxBytes;
  }
}

/** Resolves a host name to IP address strings (IPv4 and IPv6). */
export type Resolver = (
  hostname: string,
  signal?: AbortSignal,
) => Promise<string[]>;

/** Options of {@linkcode createEgressClient}. */
export interface EgressClientOptions {
  /** Time allowed for the whole request, redirects included. @default 10000 */
  timeoutMs?: number;
  /** Largest response body accepted, in bytes. @default 10485760 (10 MiB) */
  maxResponseBytes?: number;
  /** Redirects followed at most (each hop re-checked). @default 5 */
  maxRedirects?: number;
  /**
   * Name resolution. @default the system resolver (`getaddrinfo` through
   * `node:dns` `lookup`, so `/etc/hosts` applies). `localhost` and
   * `*.localhost` never reach it: they are loopback.
   */
  resolve?: Resolver;
  /** Extra CA certificates (PEM) trusted for https (tests with a private CA). */
  ca?: string[];
}

/** Options of one {@linkcode EgressClient.request}. */
export interface EgressRequestOptions {
  /** The plugin's granted `http:` permissions (strings or parsed). */
  allowed: readonly (string | Permission)[];
  /** Aborts the request. */
  signal?: AbortSignal;
}

/** An SSRF-guarded HTTP client. */
export interface EgressClient {
  /** Sends `request` if the grants allow it; see {@linkcode createEgressClient}. */
  request(
    request: HttpRequest,
    options: EgressRequestOptions,
  ): Promise<HttpResponse>;
}

const DEFAULT_PORT = { "http:": 80, "https:": 443 } as const;
const DROPPED_REQUEST_HEADERS = new Set([
  "host",
  "connection",
  "content-length",
  "transfer-encoding",
  "keep-alive",
  "proxy-connection",
  "proxy-authorization",
  "upgrade",
  "te",
  "trailer",
  "expect",
]);
const CROSS_ORIGIN_DROPPED = new Set([
  "authorization",
  "cookie",
  "proxy-authorization",
]);

const systemResolver: Resolver = async (hostname) => {
  const found = await dns.promises.lookup(hostname, {
    all: true,
    verbatim: true,
  });
  return found.map((a) => a.address);
};

/** What a hop's URL resolved to, once approved. */
interface ApprovedHop {
  url: URL;
  hostname: string;
  port: number;
  address: IpAddress;
}

/**
 * The grant among `allowed` whose host pattern matches the URL (scheme, host
 * and port), or `undefined`.
 *
 * @example
 * ```ts
 * import { matchHttpGrant } from "./egress.ts";
 * matchHttpGrant(["http:*.example.com"], new URL("https://api.example.com/x"))?.text;
 * // "http:*.example.com"
 * matchHttpGrant(["http:*.example.com"], new URL("https://example.com/")); // undefined
 * ```
 */
export function matchHttpGrant(
  allowed: readonly (string | Permission)[],
  url: URL,
): HttpPermission | undefined {
  const scheme = url.protocol === "https:"
    ? "https"
    : url.protocol === "http:"
    ? "http"
    : undefined;
  if (!scheme) return undefined;
  const host = stripHost(url.hostname);
  const port = url.port
    ? Number(url.port)
    : DEFAULT_PORT[url.protocol as "http:"];
  for (const a of httpGrants(allowed)) {
    if (grantMatches(a, scheme, host, port)) return a;
  }
  return undefined;
}

function httpGrants(
  allowed: readonly (string | Permission)[],
): HttpPermission[] {
  const out: HttpPermission[] = [];
  for (const a of allowed) {
    const p = typeof a === "string" ? parsePermission(a) : a;
    if (p.kind === "http") out.push(p);
  }
  return out;
}

function grantMatches(
  g: HttpPermission,
  scheme: "http" | "https",
  host: string,
  port: number,
): boolean {
  if (g.external) return !isLocalhostName(host); // addresses are checked after resolution
  if (g.scheme && g.scheme !== scheme) return false;
  const wantPort = g.port ??
    (g.scheme ? (g.scheme === "https" ? 443 : 80) : undefined);
  if (wantPort === undefined) {
    if (port !== (scheme === "https" ? 443 : 80)) return false;
  } else if (port !== wantPort) return false;
  const h = g.ip ? g.host.replace(/^\[|\]$/g, "") : g.host;
  if (g.wildcard) return host.endsWith(h.slice(1));
  if (g.ip) {
    const a = parseIp(h), b = parseIp(host);
    return a !== undefined && b !== undefined && sameIp(a, b);
  }
  return h === host;
}

function stripHost(hostname: string): string {
  let h = hostname.toLowerCase();
  if (h.startsWith("[") && h.endsWith("]")) h = h.slice(1, -1);
  if (h.endsWith(".")) h = h.slice(0, -1);
  return h;
}

/**
 * Creates the guarded client. Each {@linkcode EgressClient.request}:
 * 1. refuses schemes other than http/https and URLs with credentials;
 * 2. matches the host against the `http:` grants (`http:external` = any
 *    public host name; IP literals and `localhost` need a grant naming them);
 * 3. resolves the name (IP literals as they are; `localhost` as loopback) and
 *    refuses when ANY address is not public unless a grant names that
 *    address (or the grant is exactly `http:localhost…` and it is loopback);
 * 4. connects to the checked address (TLS verifies the name);
 * 5. follows up to `maxRedirects` redirects, re-checking each hop;
 * 6. stops at `timeoutMs` ({@linkcode EgressTimeoutError}) and at
 *    `maxResponseBytes` ({@linkcode EgressResponseTooLargeError}).
 *
 * @example
 * ```ts ignore
 * import { createEgressClient } from "./egress.ts";
 * const client = createEgressClient({ timeoutMs: 5000 });
 * const res = await client.request(
 *   { method: "GET", url: "https://api.example.com/v1" },
 *   { allowed: ["http:api.example.com"] },
 * );
 * console.log(res.status);
 * ```
 */
export function createEgressClient(
  options: EgressClientOptions = {},
): EgressClient {
  const timeoutMs = options.timeoutMs ?? 10_000;
  const maxBytes = options.maxResponseBytes ?? 10 * 1024 * 1024;
  const maxRedirects = options.maxRedirects ?? 5;
  const resolve = options.resolve ?? systemResolver;
  if (!(timeoutMs > 0)) {
    throw new RangeError(
      `Cannot create egress client: "timeoutMs" must be positive, got ${timeoutMs}`,
    );
  }
  if (!(maxBytes >= 0)) {
    throw new RangeError(
      `Cannot create egress client: "maxResponseBytes" must be ≥ 0, got ${maxBytes}`,
    );
  }
  if (!(maxRedirects >= 0)) {
    throw new RangeError(
      `Cannot create egress client: "maxRedirects" must be ≥ 0, got ${maxRedirects}`,
    );
  }

  async function approve(
    url: URL,
    grants: HttpPermission[],
    signal: AbortSignal,
  ): Promise<ApprovedHop> {
    const href = url.href;
    if (url.protocol !== "http:" && url.protocol !== "https:") {
      throw new EgressDeniedError(
        href,
        "http:external",
        `scheme "${url.protocol}" is not http or https`,
      );
    }
    if (url.username || url.password) {
      throw new EgressDeniedError(
        href,
        "http:external",
        "credentials in the URL are not allowed",
      );
    }
    const hostname = stripHost(url.hostname);
    const scheme = url.protocol === "https:" ? "https" : "http";
    const port = url.port ? Number(url.port) : DEFAULT_PORT[url.protocol];
    const wanted = `http:${
      url.port ? `${url.hostname}:${url.port}` : url.hostname
    }`;
    const grant = grants.find((g) => grantMatches(g, scheme, hostname, port));
    if (!grant) {
      throw new EgressDeniedError(
        href,
        wanted,
        `host "${url.host}" is not granted`,
      );
    }

    let addresses: IpAddress[];
    const literal = parseIp(hostname);
    if (literal) {
      addresses = [literal];
    } else if (isLocalhostName(hostname)) {
      addresses = [parseIp("127.0.0.1")!, parseIp("::1")!];
    } else {
      let found: string[];
      try {
        found = await abortable(resolve(hostname, signal), signal);
      } catch (e) {
        if (signal.aborted) throw e;
        throw new EgressError(
          href,
          `Cannot resolve "${hostname}": ${(e as Error)?.message ?? e}`,
          {
            cause: e,
          },
        );
      }
      addresses = [];
      for (const f of found) {
        const ip = parseIp(f);
        if (!ip) {
          throw new EgressError(
            href,
            `Cannot resolve "${hostname}": bad address "${f}"`,
          );
        }
        addresses.push(ip);
      }
      if (addresses.length === 0) {
        throw new EgressError(
          href,
          `Cannot resolve "${hostname}": no addresses`,
        );
      }
    }
    for (const ip of addresses) {
      const cls = classifyIp(ip);
      if (cls === undefined) continue;
      const explicit = grants.some((g) =>
        !g.external && !g.wildcard && (
          (g.ip && grantMatches(g, scheme, formatIp(ip), port)) ||
          (g === grant && cls === "loopback" && isLocalhostName(g.host))
        )
      );
      if (!explicit) {
        const text = formatIp(ip);
        throw new EgressDeniedError(
          href,
          `http:${ip.family === 6 ? `[${text}]` : text}${
            url.port ? `:${url.port}` : ""
          }`,
          `"${hostname}" resolves to ${cls} address ${text}, which no grant names`,
          { text, class: cls },
        );
      }
    }
    return { url, hostname, port, address: addresses[0]! };
  }

  async function request(
    req: HttpRequest,
    opts: EgressRequestOptions,
  ): Promise<HttpResponse> {
    const grants = httpGrants(opts.allowed);
    const timer = AbortSignal.timeout(timeoutMs);
    const signal = opts.signal ? AbortSignal.any([timer, opts.signal]) : timer;
    let url: URL;
    try {
      url = new URL(req.url);
    } catch {
      throw new EgressError(
        String(req.url),
        `Cannot request "${req.url}": not an absolute URL`,
      );
    }
    let method = (req.method || "GET").toUpperCase();
    let body = req.body ?? null;
    const headers: Record<string, string> = {};
    for (const [k, v] of Object.entries(req.headers ?? {})) {
      if (!DROPPED_REQUEST_HEADERS.has(k.toLowerCase())) {
        headers[k.toLowerCase()] = String(v);
      }
    }
    const origin = url.origin;
    try {
      for (let hop = 0;; hop++) {
        const approved = await approve(url, grants, signal);
        if (url.origin !== origin) {
          for (const h of CROSS_ORIGIN_DROPPED) delete headers[h];
        }
        const res = await send(
          approved,
          method,
          headers,
          body,
          signal,
          maxBytes,
        );
        const location = res.headers?.["location"];
        if (
          res.status >= 300 && res.status < 400 && res.status !== 304 &&
          location !== undefined
        ) {
          if (hop >= maxRedirects) {
            throw new EgressError(
              url.href,
              `Cannot request "${req.url}": more than ${maxRedirects} redirects`,
            );
          }
          let next: URL;
          try {
            next = new URL(location, url);
          } catch {
            throw new EgressError(
              url.href,
              `Cannot follow redirect to "${location}": not a URL`,
            );
          }
          if (
            res.status === 303 && method !== "HEAD" ||
            (res.status === 301 || res.status === 302) && method === "POST"
          ) {
            method = "GET";
            body = null;
            delete headers["content-type"];
          }
          url = next;
          continue;
        }
        return res;
      }
    } catch (e) {
      if (timer.aborted && !(e instanceof EgressDeniedError)) {
        throw new EgressTimeoutError(url.href, timeoutMs);
      }
      throw e;
    }
  }

  function send(
    hop: ApprovedHop,
    method: string,
    headers: Record<string, string>,
    body: Uint8Array | null,
    signal: AbortSignal,
    cap: number,
  ): Promise<HttpResponse> {
    const { url, hostname, port, address } = hop;
    const addressText = formatIp(address);
    const family = address.family;
    const isHttps = url.protocol === "https:";
    const mod = isHttps ? https : http;
    return new Promise<HttpResponse>((resolvePromise, reject) => {
      if (signal.aborted) return reject(signal.reason);
      let settled = false;
      const finish = (err: unknown, value?: HttpResponse) => {
        if (settled) return;
        settled = true;
        signal.removeEventListener("abort", onAbort);
        if (err) reject(err);
        else resolvePromise(value!);
      };
      const reqHeaders: Record<string, string> = { ...headers };
      if (body) reqHeaders["content-length"] = String(body.byteLength);
      const clientRequest = mod.request({
        protocol: url.protocol,
        host: hostname,
        port,
        method,
        path: url.pathname + url.search,
        headers: reqHeaders,
        agent: false,
        // The only name lookup: hand back the address that was checked.
        lookup: (
          _name: string,
          lookupOptions: { all?: boolean },
          cb: (...args: unknown[]) => void,
        ) => {
          if (lookupOptions?.all) cb(null, [{ address: addressText, family }]);
          else cb(null, addressText, family);
        },
        ...(isHttps
          ? {
            servername: parseIp(hostname) ? undefined : hostname,
            ...(options.ca ? { ca: options.ca } : {}),
          }
          : {}),
      } as http.RequestOptions, (res) => {
        const declared = Number(res.headers["content-length"]);
        if (Number.isFinite(declared) && declared > cap) {
          finish(new EgressResponseTooLargeError(url.href, cap));
          res.destroy();
          clientRequest.destroy();
          return;
        }
        const chunks: Uint8Array[] = [];
        let total = 0;
        res.on("data", (chunk: Uint8Array) => {
          total += chunk.byteLength;
          if (total > cap) {
            finish(new EgressResponseTooLargeError(url.href, cap));
            res.destroy();
            clientRequest.destroy();
            return;
          }
          chunks.push(chunk);
        });
        res.on("error", (e) => finish(e));
        res.on(
          "aborted",
          () =>
            finish(
              new EgressError(
                url.href,
                `Cannot request "${url.href}": connection closed`,
              ),
            ),
        );
        res.on("end", () => {
          const out = new Uint8Array(total);
          let off = 0;
          for (const c of chunks) {
            out.set(c, off);
            off += c.byteLength;
          }
          const h: Record<string, string> = {};
          for (const [k, v] of Object.entries(res.headers)) {
            if (v !== undefined) {
              h[k.toLowerCase()] = Array.isArray(v) ? v.join(", ") : String(v);
            }
          }
          finish(null, { status: res.statusCode ?? 0, headers: h, body: out });
        });
      });
      const onAbort = () => {
        clientRequest.destroy();
        finish(signal.reason ?? new Error("aborted"));
      };
      signal.addEventListener("abort", onAbort, { once: true });
      clientRequest.on("error", (e) => {
        finish(
          signal.aborted ? signal.reason : new EgressError(
            url.href,
            `Cannot request "${url.href}": ${e.message}`,
            { cause: e },
          ),
        );
      });
      if (body) clientRequest.write(body);
      clientRequest.end();
    });
  }

  return { request };
}

function abortable<T>(p: Promise<T>, signal: AbortSignal): Promise<T> {
  if (signal.aborted) return Promise.reject(signal.reason);
  return new Promise<T>((resolve, reject) => {
    const onAbort = () => reject(signal.reason);
    signal.addEventListener("abort", onAbort, { once: true });
    p.then(
      (v) => {
        signal.removeEventListener("abort", onAbort);
        resolve(v);
      },
      (e) => {
        signal.removeEventListener("abort", onAbort);
        reject(e);
      },
    );
  });
}
