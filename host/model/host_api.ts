/**
 * The HostAPI: everything a plugin may ask of the host. Every runtime calls
 * these methods on the plugin's own (guarded) instance; the first argument is
 * the context of the plugin call in progress, so deadlines, language and the
 * call chain reach the services.
 *
 * @module
 */

import type { CallContext } from "./plugin.ts";

/** A database row as JSON-safe column → value pairs. */
export type Row = Record<string, unknown>;

/** Log levels, lowest first. */
export type LogLevel = "debug" | "info" | "warn" | "error";

/** The log levels in order, lowest first. */
export const LOG_LEVELS: readonly LogLevel[] = [
  "debug",
  "info",
  "warn",
  "error",
];

/** An outbound HTTP request a plugin makes. */
export interface HttpRequest {
  /** HTTP method, such as `GET`. */
  method: string;
  /** Absolute URL. */
  url: string;
  /** Request headers. */
  headers?: Record<string, string>;
  /** Request body. */
  body?: Uint8Array | null;
}

/** The answer to an {@linkcode HttpRequest}. Non-2xx statuses are answers too. */
export interface HttpResponse {
  /** HTTP status. */
  status: number;
  /** Response headers (lower-case names). */
  headers?: Record<string, string>;
  /** Response body (capped by the host). */
  body: Uint8Array;
}

/** An e-mail a plugin sends. */
export interface EmailMessage {
  /** One recipient address. */
  to: string;
  /** Subject line (no CR/LF). */
  subject: string;
  /** Body text or HTML. */
  body: string;
  /** Whether `body` is HTML. */
  html?: boolean;
}

/**
 * Where plugin log lines go, tagged with the plugin's name: the host's
 * `LogBuffer` implements it. Layers that must not depend on the buffer
 * (permissions, runtimes) take this instead.
 */
export interface PluginLogSink {
  /** Records one line from (or about) `plugin`. */
  log(
    plugin: string,
    level: LogLevel,
    message: string,
    fields?: Record<string, unknown>,
  ): unknown;
}

/**
 * The services a plugin may use. Methods mirror GoatFlow's HostAPI
 * (`DBQuery`, `DBExec`, `CacheGet`, `CacheSet`, `CacheDelete`, `HTTPRequest`,
 * `SendEmail`, `Log`, `ConfigGet`, `Translate`, `CallPlugin`).
 */
export interface HostAPI {
  /** Runs a query (`$1…` placeholders; `@name:` prefix picks a named database). */
  dbQuery(ctx: CallContext, query: string, args?: unknown[]): Promise<Row[]>;
  /** Runs a statement; returns the affected row count. */
  dbExec(ctx: CallContext, query: string, args?: unknown[]): Promise<number>;
  /** Reads a cache entry; `null` when absent or expired. */
  cacheGet(ctx: CallContext, key: string): Promise<Uint8Array | null>;
  /** Writes a cache entry; `ttlSeconds` 0 means no expiry. */
  cacheSet(
    ctx: CallContext,
    key: string,
    value: Uint8Array,
    ttlSeconds: number,
  ): Promise<void>;
  /** Removes a cache entry (absent is fine). */
  cacheDelete(ctx: CallContext, key: string): Promise<void>;
  /** Makes an outbound HTTP request. */
  httpRequest(ctx: CallContext, request: HttpRequest): Promise<HttpResponse>;
  /** Sends an e-mail. */
  sendEmail(ctx: CallContext, message: EmailMessage): Promise<void>;
  /** Writes a log line attributed to the plugin. */
  log(
    ctx: CallContext,
    level: LogLevel,
    message: string,
    fields?: Record<string, unknown>,
  ): void;
  /** Reads a configuration value. */
  configGet(ctx: CallContext, key: string): Promise<string>;
  /** Translates `key` into the call's language. */
  translate(ctx: CallContext, key: string, args?: unknown[]): Promise<string>;
  /** Calls another plugin's function; returns its raw JSON result. */
  callPlugin(
    ctx: CallContext,
    plugin: string,
    fn: string,
    args: Uint8Array | null,
  ): Promise<Uint8Array | null>;
  /**
   * Releases what this HostAPI holds for its plugin (listeners, caches).
   * The Manager calls it when the plugin it was made for goes away:
   * unregister, replacement, shutdown, failed init.
   */
  close?(): void | Promise<void>;
}

/**
 * Maps GoatFlow's numeric log levels (0 debug, 1 info, 2 warn, 3 error) to
 * ours; any other value is info.
 *
 * @example
 * ```ts
 * import { logLevelFromNumber } from "./host_api.ts";
 * logLevelFromNumber(2); // "warn"
 * ```
 */
export function logLevelFromNumber(level: number): LogLevel {
  return LOG_LEVELS[level] ?? "info";
}
