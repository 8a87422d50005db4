/**
 * The host's `503 Service Unavailable` answers: one JSON shape
 * ({@linkcode UnavailableBody}, `error` a short phrase like the API's other
 * error bodies, `message` the readable why) for each reason a request is
 * refused although the URL is right:
 *
 * | `error` | when | `Retry-After` |
 * |---|---|---|
 * | `overloaded` | the server-wide in-flight limit is reached, or the plugin's runtime refused the call (queue full, queue-time budget spent) | yes |
 * | `plugin unavailable` | the route's plugin is disabled or quarantined (`reason`: which) | no: an operator must act |
 * | `database unavailable` | the database, grant or state store cannot be reached | yes |
 * | `shutting down` | the host is draining before it stops (`Connection: close`) | yes |
 *
 * {@linkcode overloadRetryAfter} and {@linkcode isDatabaseUnavailable}
 * recognise the errors that mean the first and third, by name and code (the
 * server does not import the runtimes or the services).
 *
 * @module
 */

/** The `error` phrase of a 503 answer. */
export type UnavailableError =
  | "overloaded"
  | "plugin unavailable"
  | "database unavailable"
  | "shutting down";

/** The JSON body of every 503 the host sends. */
export interface UnavailableBody {
  /** What kind of unavailability (see the module doc). */
  error: UnavailableError;
  /** Why, readable: `Cannot … : …`. */
  message: string;
  /** Seconds after which a retry may succeed (same as `Retry-After`). */
  retry_after_sec?: number;
  /** The plugin concerned, for `plugin unavailable` and a runtime's overload. */
  plugin?: string;
  /**
   * For `plugin unavailable`: `disabled` (by an administrator) or
   * `quarantined` (by the host, after repeated faults). The quarantine's
   * detailed reason is for admins only (plugin list, API and admin page):
   * it may quote the plugin's own error text.
   */
  reason?: "disabled" | "quarantined";
}

/** `Retry-After` of an answer to the server-wide in-flight limit, in seconds. */
export const OVERLOAD_RETRY_AFTER_SEC = 1;
/** `Retry-After` of an answer to a database outage, in seconds. */
export const DATABASE_RETRY_AFTER_SEC = 5;
/** `Retry-After` of an answer sent while the host drains, in seconds. */
export const SHUTDOWN_RETRY_AFTER_SEC = 5;

/**
 * A `503 Service Unavailable` JSON response with `body`; `Retry-After` when
 * the body has `retry_after_sec`; `Connection: close` with `close`.
 *
 * @example
 * ```ts
 * import { unavailableResponse } from "./unavailable.ts";
 * const res = unavailableResponse({
 *   error: "overloaded",
 *   message: "Cannot serve the request: 1024 plugin requests are in flight",
 *   retry_after_sec: 1,
 * });
 * console.log(res.status, res.headers.get("retry-after")); // 503 "1"
 * ```
 */
export function unavailableResponse(
  body: UnavailableBody,
  options: { close?: boolean } = {},
): Response {
  const headers: Record<string, string> = {
    "content-type": "application/json; charset=utf-8",
    "cache-control": "no-store",
    ...unavailableHeaders(body),
  };
  if (options.close) headers.connection = "close";
  return new Response(JSON.stringify(body), { status: 503, headers });
}

/** The headers that go with a 503 `body`: `Retry-After` when it has one. */
export function unavailableHeaders(
  body: UnavailableBody,
): Record<string, string> {
  return body.retry_after_sec === undefined
    ? {}
    : { "retry-after": String(body.retry_after_sec) };
}

/** `e` and its causes (`cause`, `AggregateError.errors`), a few levels deep. */
function* causes(e: unknown, depth = 0): Generator<unknown> {
  if (e === null || e === undefined || depth > 4) return;
  yield e;
  if (typeof e !== "object") return;
  const errors = (e as { errors?: unknown }).errors;
  if (Array.isArray(errors)) {
    for (const x of errors.slice(0, 8)) yield* causes(x, depth + 1);
  }
  yield* causes((e as { cause?: unknown }).cause, depth + 1);
}

const field = (e: unknown, key: string): unknown =>
  e && typeof e === "object" ? (e as Record<string, unknown>)[key] : undefined;

/**
 * The seconds to send in `Retry-After` when `e` (or its cause) is a
 * runtime's refusal to take a call because it is overloaded (its queue is
 * full or the call would wait longer than its budget): an error named
 * `PluginOverloadedError`, whose `retryAfterSeconds` is used when given
 * (at least 1, rounded up). `undefined` for any other error.
 *
 * @example
 * ```ts
 * import { overloadRetryAfter } from "./unavailable.ts";
 * const e = Object.assign(new Error("queue full"), {
 *   name: "PluginOverloadedError",
 *   retryAfterSeconds: 2,
 * });
 * overloadRetryAfter(e); // 2
 * overloadRetryAfter(new Error("x")); // undefined
 * ```
 */
export function overloadRetryAfter(e: unknown): number | undefined {
  for (const x of causes(e)) {
    if (field(x, "name") !== "PluginOverloadedError") continue;
    const after = Number(field(x, "retryAfterSeconds"));
    return Number.isFinite(after) && after > 0
      ? Math.ceil(after)
      : OVERLOAD_RETRY_AFTER_SEC;
  }
  return undefined;
}

/** Node/Deno socket error codes that mean "the server cannot be reached". */
const CONNECTION_CODES = new Set([
  "ECONNREFUSED",
  "ECONNRESET",
  "ECONNABORTED",
  "EPIPE",
  "ETIMEDOUT",
  "EHOSTUNREACH",
  "ENETUNREACH",
  "EHOSTDOWN",
  "ENETDOWN",
  "EAI_AGAIN",
]);

/**
 * SQLSTATEs of a database that is unreachable or refusing work for now:
 * class 08 (connection exception), 53300 too_many_connections, 57P01
 * admin_shutdown, 57P02 crash_shutdown, 57P03 cannot_connect_now.
 */
const UNAVAILABLE_SQLSTATE_REGEXP = /^(?:08[0-9A-Z]{3}|53300|57P0[123])$/;

/** Messages of `npm:pg` for a connection that broke or never came. */
const PG_CONNECTION_MESSAGE_REGEXP =
  /^(?:Connection terminated|timeout exceeded when trying to connect|Client has encountered a connection error|Cannot use a pool after calling end)/;

/**
 * Whether `e` (or one of its causes) means the database cannot be reached
 * or refuses connections for now: a socket error (`ECONNREFUSED`,
 * `ECONNRESET`, …), a connection SQLSTATE (class 08, 53300, 57P01-57P03),
 * an `npm:pg` "Connection terminated…" error, Deno's `ConnectionRefused` /
 * `ConnectionReset`, or PGlite being unavailable (`PgliteUnavailableError`).
 * Such errors are answered with 503 and `Retry-After`, not 500.
 *
 * @example
 * ```ts
 * import { isDatabaseUnavailable } from "./unavailable.ts";
 * const refused = Object.assign(new Error("connect ECONNREFUSED 127.0.0.1:5432"), {
 *   code: "ECONNREFUSED",
 * });
 * isDatabaseUnavailable(refused); // true
 * isDatabaseUnavailable(Object.assign(new Error("syntax"), { code: "42601" })); // false
 * ```
 */
export function isDatabaseUnavailable(e: unknown): boolean {
  for (const x of causes(e)) {
    const name = field(x, "name");
    if (name === "PgliteUnavailableError") return true;
    if (name === "ConnectionRefused" || name === "ConnectionReset") return true;
    const code = field(x, "code");
    if (typeof code === "string") {
      if (CONNECTION_CODES.has(code)) return true;
      if (UNAVAILABLE_SQLSTATE_REGEXP.test(code)) return true;
    }
    const message = field(x, "message");
    if (
      typeof message === "string" && PG_CONNECTION_MESSAGE_REGEXP.test(message)
    ) return true;
  }
  return false;
}

/**
 * The 503 body for a database outage behind `e`.
 *
 * @example
 * ```ts
 * import { databaseUnavailableBody } from "./unavailable.ts";
 * const body = databaseUnavailableBody(new Error("connect ECONNREFUSED 127.0.0.1:5432"));
 * console.log(body.error, body.retry_after_sec); // "database unavailable" 5
 * ```
 */
export function databaseUnavailableBody(e: unknown): UnavailableBody {
  const why = e instanceof Error ? e.message : String(e);
  return {
    error: "database unavailable",
    message: `Cannot reach the database: ${why || "connection failed"}`,
    retry_after_sec: DATABASE_RETRY_AFTER_SEC,
  };
}
