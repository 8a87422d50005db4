/**
 * The HTTP side of a plugin call: the args object built from a request the
 * way GoatFlow builds it, the request language, the mapping of results and
 * errors to responses, and {@linkcode pluginRouteHandlers}, the Hono handler
 * chain that serves a plugin route with them.
 *
 * @module
 */

import type { MiddlewareHandler } from "hono";
import type { LogBuffer } from "../log_buffer.ts";
import type { Manager } from "../manager.ts";
import {
  errorText,
  InvalidManifestError,
  PermissionDeniedError,
  PluginCallCycleError,
  PluginCrashedError,
  PluginDisabledError,
  PluginError,
  PluginNotFoundError,
  PluginTimeoutError,
  QuotaExceededError,
} from "../model/errors.ts";
import { encodeJson } from "../model/plugin.ts";
import { type Authenticator, requireAuth } from "./auth/authenticator.ts";
import type { PluginRoute } from "./route_table.ts";
import {
  databaseUnavailableBody,
  isDatabaseUnavailable,
  overloadRetryAfter,
  type UnavailableBody,
  unavailableHeaders,
  unavailableResponse,
} from "./unavailable.ts";

/** A request the server cannot use (bad JSON, missing field, …): HTTP 400. */
export class BadRequestError extends Error {
  /** Creates the error. */
  constructor(message: string, options: { cause?: unknown } = {}) {
    super(message, options);
    this.name = "BadRequestError";
  }
}

/** Thrown when a request body is larger than allowed. */
export class BodyTooLargeError extends Error {
  /** The limit, in bytes. */
  readonly limit: number;
  /** Creates the error. */
  constructor(limit: number) {
    super(`Cannot read request body: it is larger than ${limit} bytes`);
    this.name = "BodyTooLargeError";
    this.limit = limit;
  }
}

/**
 * Reads a request body up to `limit` bytes; throws
 * {@linkcode BodyTooLargeError} beyond it (without reading the rest).
 */
export async function readBody(
  req: Request,
  limit: number,
): Promise<Uint8Array> {
  const declared = Number(req.headers.get("content-length") ?? "NaN");
  if (Number.isFinite(declared) && declared > limit) {
    throw new BodyTooLargeError(limit);
  }
  if (!req.body) return new Uint8Array(0);
  const chunks: Uint8Array[] = [];
  let size = 0;
  const reader = req.body.getReader();
  try {
    while (true) {
      const { done, value } = await reader.read();
      if (done) break;
      size += value.byteLength;
      if (size > limit) {
        await reader.cancel().catch(() => {});
        throw new BodyTooLargeError(limit);
      }
      chunks.push(value);
    }
  } finally {
    reader.releaseLock();
  }
  const out = new Uint8Array(size);
  let at = 0;
  for (const c of chunks) {
    out.set(c, at);
    at += c.byteLength;
  }
  return out;
}

/**
 * Builds a plugin route's args object as GoatFlow does: path parameters,
 * then query parameters (one value → string, repeated → array), then the
 * keys of a JSON-object body (which override), then `_method` and `_path`.
 * A body that is not a JSON object is ignored.
 *
 * @example
 * ```ts
 * import { buildRouteArgs } from "./plugin_http.ts";
 * const url = new URL("http://h/items/7?tag=a&tag=b&q=x");
 * const args = buildRouteArgs("GET", url, { id: "7" }, new TextEncoder().encode('{"q":"y"}'));
 * // { id: "7", tag: ["a", "b"], q: "y", _method: "GET", _path: "/items/7" }
 * ```
 */
export function buildRouteArgs(
  method: string,
  url: URL,
  params: Record<string, string>,
  body: Uint8Array | null,
): Record<string, unknown> {
  const args: Record<string, unknown> = {};
  for (const [k, v] of Object.entries(params)) args[k] = v;
  // One pass over the query (none parsed when there is no query): a key's
  // first value replaces a path parameter, a repeated key makes an array.
  if (url.search.length > 1) {
    const repeated = new Set<string>();
    for (const [key, value] of url.searchParams) {
      if (!repeated.has(key)) {
        repeated.add(key);
        args[key] = value;
      } else {
        const prev = args[key];
        if (Array.isArray(prev)) prev.push(value);
        else args[key] = [prev, value];
      }
    }
  }
  if (body && body.byteLength > 0) {
    try {
      const parsed = JSON.parse(textDecoder.decode(body));
      if (parsed && typeof parsed === "object" && !Array.isArray(parsed)) {
        Object.assign(args, parsed);
      }
    } catch { /* not JSON: ignored, as in GoatFlow */ }
  }
  args._method = method;
  args._path = url.pathname;
  return args;
}

/**
 * The preferred language of an `Accept-Language` header (highest `q`, first
 * on ties; `*` ignored), or `undefined`.
 *
 * @example
 * ```ts
 * import { preferredLanguage } from "./plugin_http.ts";
 * preferredLanguage("fr;q=0.5, de-CH, en;q=0.8"); // "de-CH"
 * ```
 */
export function preferredLanguage(
  header: string | null | undefined,
): string | undefined {
  if (!header) return undefined;
  let best: { tag: string; q: number } | undefined;
  for (const part of header.split(",").slice(0, 32)) {
    const [rawTag, ...params] = part.trim().split(";");
    const tag = rawTag?.trim() ?? "";
    if (!/^[A-Za-z]{1,8}(-[A-Za-z0-9]{1,8})*$/.test(tag)) continue;
    let q = 1;
    for (const p of params) {
      const m = /^\s*q\s*=\s*([0-9.]+)\s*$/.exec(p);
      if (m) q = Number(m[1]);
    }
    if (!Number.isFinite(q) || q <= 0) continue;
    if (!best || q > best.q) best = { tag, q };
  }
  return best?.tag;
}

/** Looks up a published error code (`<plugin>:<code>`). */
export interface ErrorCodeLookup {
  /** The entry of a full code, if registered. */
  lookup(code: string): { message: string; httpStatus: number } | undefined;
}

/** An HTTP status and JSON body for an error. */
export interface HttpError {
  /** HTTP status. */
  status: number;
  /**
   * JSON body: `error` is the message or a declared `{code, message}`; a
   * 503 has the {@linkcode UnavailableBody} shape (`error` a short phrase,
   * `message` the why, `retry_after_sec`).
   */
  body: { error: string | { code: string; message: string } } | UnavailableBody;
  /** Headers to send with it (`Retry-After` of a 503). */
  headers?: Record<string, string>;
}

function codeEntry(
  plugin: string,
  code: string,
  codes: ErrorCodeLookup | undefined,
): { code: string; message: string; httpStatus: number } | undefined {
  if (!codes || !code) return undefined;
  for (const full of [`${plugin}:${code}`, code]) {
    const e = codes.lookup(full);
    if (e) return { code: full, ...e };
  }
  return undefined;
}

/**
 * The 503 `overloaded` answer (with `Retry-After`) to a call refused as
 * overload: from its `PluginOverloadedError` through
 * {@linkcode errorToHttp}, or from a plugin's `refuseNow()` before the call
 * was made; the two are the same answer.
 *
 * @example
 * ```ts
 * import { overloadToHttp } from "./plugin_http.ts";
 * const a = overloadToHttp({ plugin: "p", message: "busy", retryAfterSeconds: 2 });
 * console.log(a.status, a.headers); // 503 { "retry-after": "2" }
 * ```
 */
export function overloadToHttp(
  refusal: { plugin?: string; message: string; retryAfterSeconds: number },
): HttpError {
  const body: UnavailableBody = {
    error: "overloaded",
    message: refusal.message,
    retry_after_sec: refusal.retryAfterSeconds,
    ...(refusal.plugin !== undefined ? { plugin: refusal.plugin } : {}),
  };
  return { status: 503, body, headers: unavailableHeaders(body) };
}

/**
 * Maps an error thrown by a plugin call to a status and JSON body:
 * not found 404, disabled 403, permission denied 403 (also as an error's
 * `cause`: a runtime that wraps a refused host call), timeout 504, crash 502,
 * a runtime's overload (`PluginOverloadedError`: queue full or queue-time
 * budget spent) 503 `overloaded` with `Retry-After` (see `unavailable.ts`),
 * a package refused for its signer or version 409, an uninstall refused
 * for an unknown plugin 404 or a plugin not installed from a package 409,
 * another refused package 422, an error with a `code` the plugin declared →
 * that code's status, anything else 500. (Plugin routes answer a disabled
 * or quarantined plugin with 503 instead: {@linkcode pluginUnavailableBody}.)
 *
 * @example
 * ```ts
 * import { errorToHttp } from "./plugin_http.ts";
 * import { PluginTimeoutError } from "../model/errors.ts";
 * errorToHttp(new PluginTimeoutError("hello", 100), "hello").status; // 504
 * ```
 */
export function errorToHttp(
  e: unknown,
  plugin: string,
  codes?: ErrorCodeLookup,
): HttpError {
  const code = (e as { code?: unknown } | null)?.code;
  if (typeof code === "string") {
    const entry = codeEntry(plugin, code, codes);
    if (entry) {
      return {
        status: entry.httpStatus,
        body: { error: { code: entry.code, message: entry.message } },
      };
    }
  }
  const msg = errorText(e);
  const retryAfter = overloadRetryAfter(e);
  if (retryAfter !== undefined) {
    const plugin = (e as { plugin?: unknown }).plugin;
    return overloadToHttp({
      message: msg,
      retryAfterSeconds: retryAfter,
      ...(typeof plugin === "string" ? { plugin } : {}),
    });
  }
  // A per-plugin quota (host/quotas): 429 + Retry-After.
  if (e instanceof QuotaExceededError) {
    const body = {
      error: "quota exceeded",
      message: msg,
      retry_after_sec: e.retryAfterSeconds,
      plugin: e.plugin,
      quota: e.quota,
      limit: e.limit,
    };
    return {
      status: 429,
      body,
      headers: { "retry-after": String(e.retryAfterSeconds) },
    };
  }
  if (e instanceof PluginNotFoundError) {
    return { status: 404, body: { error: msg } };
  }
  if (e instanceof PluginDisabledError) {
    return { status: 403, body: { error: msg } };
  }
  if (
    e instanceof PermissionDeniedError ||
    (e as { cause?: unknown } | null)?.cause instanceof PermissionDeniedError
  ) {
    return { status: 403, body: { error: msg } };
  }
  if (e instanceof PluginTimeoutError) {
    return { status: 504, body: { error: msg } };
  }
  if (e instanceof PluginCrashedError) {
    return { status: 502, body: { error: msg } };
  }
  if (e instanceof PluginCallCycleError) {
    return { status: 508, body: { error: msg } };
  }
  if (e instanceof InvalidManifestError) {
    return { status: 400, body: { error: msg } };
  }
  if (e instanceof BodyTooLargeError) {
    return { status: 413, body: { error: msg } };
  }
  if (e instanceof BadRequestError) {
    return { status: 400, body: { error: msg } };
  }
  // Package refusals (host/loading, matched by name so the server does not
  // depend on the loader): a pinned signer or a newer installed version is
  // a conflict with the installed state; anything else an unusable package.
  const name = (e as { name?: unknown } | null)?.name;
  if (name === "SignerMismatchError" || name === "DowngradeRefusedError") {
    return { status: 409, body: { error: msg } };
  }
  if (name === "PackageRejectedError") {
    return { status: 422, body: { error: msg } };
  }
  // An uninstall of an unknown plugin (404) or of one not installed from a
  // package (409) carries its status.
  if (name === "PackageUninstallError") {
    const status = (e as { status?: unknown }).status;
    return {
      status: status === 404 || status === 409 ? status : 409,
      body: { error: msg },
    };
  }
  return { status: 500, body: { error: msg } };
}

/**
 * {@linkcode errorToHttp} for errors of the host's own work (the API, the
 * admin pages): an unreachable database, grant store or state store is
 * `503 database unavailable` with `Retry-After` (see `unavailable.ts`)
 * rather than 500; anything else as {@linkcode errorToHttp}. (Plugin routes
 * use {@linkcode errorToHttp} alone: a plugin's own socket error is not a
 * database outage.)
 *
 * @example
 * ```ts
 * import { hostErrorToHttp } from "./plugin_http.ts";
 * const e = Object.assign(new Error("connect ECONNREFUSED 127.0.0.1:5432"), {
 *   code: "ECONNREFUSED",
 * });
 * hostErrorToHttp(e, "").status; // 503
 * ```
 */
export function hostErrorToHttp(
  e: unknown,
  plugin: string,
  codes?: ErrorCodeLookup,
): HttpError {
  if (!(e instanceof PluginError) && isDatabaseUnavailable(e)) {
    const body = databaseUnavailableBody(e);
    return { status: 503, body, headers: unavailableHeaders(body) };
  }
  return errorToHttp(e, plugin, codes);
}

/** The `admin` or `auth` middleware a route asks for (a new chain). */
function routeAuth(
  auth: Authenticator,
): (route: PluginRoute) => MiddlewareHandler[] {
  const authMw = requireAuth(auth);
  const adminMw = requireAuth(auth, { admin: true });
  return (route) => {
    const mw = route.middleware ?? [];
    return mw.includes("admin")
      ? [adminMw]
      : mw.includes("auth")
      ? [authMw]
      : [];
  };
}

/**
 * The handler chain of a route whose plugin is disabled or quarantined (the
 * `handlers` argument of `buildRouteTable` for such routes): the route's
 * own `admin` or `auth` middleware first (so the answer tells nothing more
 * than the route itself would), then {@linkcode pluginUnavailableResponse}.
 */
export function unavailableRouteHandlers(
  options: Pick<PluginRouteOptions, "manager" | "auth">,
): (route: PluginRoute) => MiddlewareHandler[] {
  const authChain = routeAuth(options.auth);
  return (route) => [
    ...authChain(route),
    () =>
      Promise.resolve(pluginUnavailableResponse(options.manager, route.plugin)),
  ];
}

/**
 * Whether `e` says that `plugin` itself is disabled or quarantined (not a
 * plugin it called).
 */
export function isPluginUnavailable(e: unknown, plugin: string): boolean {
  const name = (e as { name?: unknown } | null)?.name;
  return (e instanceof PluginDisabledError ||
    name === "PluginDisabledError" || name === "PluginQuarantinedError") &&
    (e as { plugin?: unknown }).plugin === plugin;
}

/**
 * The 503 body for a route of a disabled or quarantined plugin: `reason`
 * says which (a plugin with a host-given reason is quarantined); the
 * reason's text itself is shown to admins only.
 *
 * @example
 * ```ts
 * import { Manager } from "../manager.ts";
 * import { pluginUnavailableBody } from "./plugin_http.ts";
 * const body = pluginUnavailableBody(new Manager(), "hello");
 * console.log(body.error, body.reason); // "plugin unavailable" "disabled"
 * ```
 */
export function pluginUnavailableBody(
  manager: Pick<Manager, "status">,
  plugin: string,
): UnavailableBody {
  const quarantined = manager.status(plugin)?.reason !== undefined;
  return {
    error: "plugin unavailable",
    message: quarantined
      ? `Cannot call plugin "${plugin}": the host quarantined it after repeated faults (an administrator sees why in the plugin list and can enable it again)`
      : `Cannot call plugin "${plugin}": an administrator disabled it`,
    plugin,
    reason: quarantined ? "quarantined" : "disabled",
  };
}

/** {@linkcode pluginUnavailableBody} as a 503 response. */
export function pluginUnavailableResponse(
  manager: Pick<Manager, "status">,
  plugin: string,
): Response {
  return unavailableResponse(pluginUnavailableBody(manager, plugin));
}

/** Headers sent with plugin-provided HTML (sanitised, and no script may run). */
export const PLUGIN_HTML_HEADERS: Readonly<Record<string, string>> = {
  "content-type": "text/html; charset=utf-8",
  "content-security-policy":
    "default-src 'self'; script-src 'none'; object-src 'none'; base-uri 'none'; form-action 'self'; frame-ancestors 'self'",
  "x-content-type-options": "nosniff",
};

/**
 * Turns a plugin's raw result into a response: a JSON object whose `html` is
 * a string → `text/html` (sanitised); a JSON object `{"error": {"code": …}}`
 * with a declared code → that code's status; anything else → the raw bytes
 * as `application/json` (`null` for no result).
 */
export function resultToResponse(
  result: Uint8Array | null,
  plugin: string,
  sanitize: (html: string) => string,
  codes?: ErrorCodeLookup,
): Response {
  let parsed: unknown = undefined;
  const text = result && result.byteLength > 0
    ? textDecoder.decode(result)
    : "";
  if (mayHaveSpecialKeys(text)) {
    try {
      parsed = JSON.parse(text);
    } catch { /* not JSON: passed through */ }
  }
  if (parsed && typeof parsed === "object" && !Array.isArray(parsed)) {
    const obj = parsed as Record<string, unknown>;
    if (typeof obj.html === "string") {
      return new Response(sanitize(obj.html), { headers: PLUGIN_HTML_HEADERS });
    }
    const err = obj.error as { code?: unknown; message?: unknown } | undefined;
    if (err && typeof err === "object" && typeof err.code === "string") {
      const entry = codeEntry(plugin, err.code, codes);
      if (entry) {
        return Response.json(
          {
            error: {
              code: entry.code,
              message: typeof err.message === "string"
                ? err.message
                : entry.message,
            },
          },
          { status: entry.httpStatus },
        );
      }
    }
  }
  const body = result && result.byteLength > 0
    ? result
    : textEncoder.encode("null");
  return new Response(body as Uint8Array<ArrayBuffer>, JSON_INIT);
}

const JSON_INIT: ResponseInit = {
  headers: {
    "content-type": "application/json; charset=utf-8",
    "x-content-type-options": "nosniff",
  },
};

const textEncoder = new TextEncoder();
const textDecoder = new TextDecoder();
const strictDecoder = new TextDecoder("utf-8", { fatal: true });

/**
 * Whether a result's JSON text could name an `html` or `error` key: it has
 * one of them in quotes, or an escape (a key can be spelled with `\u`
 * escapes). A result without any of them is passed through unparsed.
 */
function mayHaveSpecialKeys(text: string): boolean {
  return text.includes('"html"') || text.includes('"error"') ||
    text.includes("\\");
}

/**
 * Turns the output of a plugin that takes raw route input (an Extism
 * plugin: `routeInput: "raw"`) into a response: no output → 204; output
 * that parses as JSON → `application/json`; other UTF-8 text →
 * `text/plain; charset=utf-8`; anything else →
 * `application/octet-stream`. Never HTML (`nosniff` is sent), so a plugin
 * cannot serve script through this path.
 *
 * @example
 * ```ts
 * import { rawResultToResponse } from "./plugin_http.ts";
 * const r = rawResultToResponse(new TextEncoder().encode("hello"));
 * console.log(r.headers.get("content-type")); // text/plain; charset=utf-8
 * ```
 */
export function rawResultToResponse(result: Uint8Array | null): Response {
  if (!result || result.byteLength === 0) {
    return new Response(null, { status: 204 });
  }
  let type = "application/octet-stream";
  try {
    const text = strictDecoder.decode(result);
    try {
      JSON.parse(text);
      type = "application/json; charset=utf-8";
    } catch {
      type = "text/plain; charset=utf-8";
    }
  } catch { /* not UTF-8: bytes */ }
  return new Response(result as Uint8Array<ArrayBuffer>, {
    headers: { "content-type": type, "x-content-type-options": "nosniff" },
  });
}

/** Options of {@linkcode pluginRouteHandlers}. */
export interface PluginRouteOptions {
  /** The Manager that runs the calls. */
  manager: Manager;
  /** Authenticates routes whose middleware lists `auth` or `admin`. */
  auth: Authenticator;
  /** Where errors answered with a 5xx status are logged, under the plugin. */
  logs: LogBuffer;
  /** Sanitises plugin HTML results. */
  sanitize: (html: string) => string;
  /** Largest request body read, in bytes (413 beyond). @default 1048576 */
  maxBodyBytes?: number;
  /**
   * Call timeout in ms for every route; without it each route's own
   * deadline ({@linkcode Manager.routeTimeoutMs}: the manifest's, else the
   * Manager's route default).
   */
  callTimeoutMs?: number;
}

/**
 * Returns the function that gives one plugin route its Hono handler chain
 * (the `handlers` argument of `buildRouteTable`): the `admin` or `auth`
 * middleware the route asks for, then a handler that reads the body (not
 * for GET and HEAD), builds the args with {@linkcode buildRouteArgs} (a
 * plugin with `routeInput: "raw"` gets the body itself and answers through
 * {@linkcode rawResultToResponse}), calls
 * the plugin in the request's {@linkcode preferredLanguage} and answers with
 * {@linkcode resultToResponse}. Errors map through {@linkcode errorToHttp}
 * (5xx ones but 503 are logged); the route's plugin found disabled or
 * quarantined answers 503 ({@linkcode pluginUnavailableResponse}).
 *
 * @example
 * ```ts
 * import { Manager } from "../manager.ts";
 * import { sanitizeHtml } from "../registries/sanitize.ts";
 * import { Authenticator } from "./auth/authenticator.ts";
 * import { SessionStore } from "./auth/sessions.ts";
 * import { MemoryTokenStore } from "./auth/tokens.ts";
 * import { pluginRouteHandlers } from "./plugin_http.ts";
 * import { buildRouteTable } from "./route_table.ts";
 *
 * const manager = new Manager();
 * const handlers = pluginRouteHandlers({
 *   manager,
 *   auth: new Authenticator(new MemoryTokenStore(), new SessionStore()),
 *   logs: manager.logs,
 *   sanitize: sanitizeHtml,
 * });
 * const table = buildRouteTable(manager.routes(), handlers);
 * ```
 */
export function pluginRouteHandlers(
  options: PluginRouteOptions,
): (route: PluginRoute) => MiddlewareHandler[] {
  const { manager, logs, sanitize, callTimeoutMs } = options;
  const maxBody = options.maxBodyBytes ?? 1024 * 1024;
  const authChain = routeAuth(options.auth);
  return (route) => {
    const chain = authChain(route);
    // Hono gives path parameters only to patterns that name some.
    const hasParams = route.path.includes(":");
    chain.push(async function pluginRoute(c) {
      try {
        const method = c.req.method;
        const request = c.req.raw;
        const body = method === "GET" || method === "HEAD"
          ? null
          : await readBody(request, maxBody);
        // A plugin taking raw input gets the body as it came; a discovered
        // plugin is loaded first, so its first request is read (and its
        // answer typed) as the later ones.
        if (!manager.manifest(route.plugin)) await manager.load(route.plugin);
        const raw = manager.get(route.plugin)?.routeInput === "raw";
        const input = raw ? body ?? new Uint8Array(0) : encodeJson(
          buildRouteArgs(
            method,
            new URL(request.url),
            hasParams ? c.req.param() : {},
            body,
          ),
        );
        const language = preferredLanguage(
          request.headers.get("accept-language"),
        );
        // The app's setting, else the route's own deadline (manifest
        // `timeout` / `timeouts`, else the Manager's route default).
        const timeoutMs = callTimeoutMs ?? manager.routeTimeoutMs(route);
        const result = await manager.call(
          route.plugin,
          route.handler,
          input,
          language ? { language, timeoutMs } : { timeoutMs },
        );
        if (raw) return rawResultToResponse(result);
        return resultToResponse(
          result,
          route.plugin,
          sanitize,
          manager.errorCodes,
        );
      } catch (e) {
        // The route's own plugin turned out disabled or quarantined (the
        // table was built just before, or the route was mounted lazily).
        if (isPluginUnavailable(e, route.plugin)) {
          return pluginUnavailableResponse(manager, route.plugin);
        }
        const mapped = errorToHttp(e, route.plugin, manager.errorCodes);
        // Overload is expected under load: counted, not logged per request.
        if (mapped.status >= 500 && mapped.status !== 503) {
          logs.log(
            route.plugin,
            "error",
            `route ${route.method} ${route.path}: ${errorText(e)}`,
          );
        }
        return c.json(mapped.body, mapped.status as 500, mapped.headers);
      }
    });
    return chain;
  };
}
