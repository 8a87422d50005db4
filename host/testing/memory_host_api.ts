/**
 * An in-memory {@linkcode HostAPI} for unit tests: it records every call and
 * answers from plain maps. Never use it as the host of a real deployment:
 * it checks no permission and talks to no service.
 *
 * @module
 */

import type {
  EmailMessage,
  HostAPI,
  HttpRequest,
  HttpResponse,
  LogLevel,
  Row,
} from "../model/host_api.ts";
import type { CallContext } from "../model/plugin.ts";

/** One recorded HostAPI call. */
export interface RecordedHostCall {
  /** The method name, such as `dbQuery`. */
  method: keyof HostAPI;
  /** The plugin on top of the call chain (empty outside a plugin call). */
  plugin: string;
  /** The arguments after the context. */
  args: unknown[];
}

/** Options of {@linkcode MemoryHostAPI}. */
export interface MemoryHostAPIOptions {
  /** Answers `dbQuery`. @default () => [] */
  query?: (sql: string, args: unknown[]) => Row[];
  /** Answers `dbExec`. @default () => 1 */
  exec?: (sql: string, args: unknown[]) => number;
  /** Answers `httpRequest`. @default status 200, empty body */
  http?: (request: HttpRequest) => HttpResponse;
  /** Configuration values. */
  config?: Record<string, string>;
  /** Answers `translate`. @default returns the key */
  translate?: (
    key: string,
    language: string | undefined,
    args: unknown[],
  ) => string;
  /** Answers `callPlugin`. @default throws */
  callPlugin?: (
    ctx: CallContext,
    plugin: string,
    fn: string,
    args: Uint8Array | null,
  ) => Promise<Uint8Array | null>;
}

/**
 * A recording, in-memory HostAPI (test double).
 *
 * @example
 * ```ts
 * import { MemoryHostAPI } from "./memory_host_api.ts";
 * import { createCallContext } from "../model/plugin.ts";
 * const host = new MemoryHostAPI({ config: { "app.name": "GoatKit" } });
 * await host.configGet(createCallContext(), "app.name"); // "GoatKit"
 * host.calls.length; // 1
 * ```
 */
export class MemoryHostAPI implements HostAPI {
  /** Every call, in order. */
  readonly calls: RecordedHostCall[] = [];
  /** Log lines written through `log`. */
  readonly logs: {
    plugin: string;
    level: LogLevel;
    message: string;
    fields?: Record<string, unknown>;
  }[] = [];
  /** E-mails "sent". */
  readonly emails: EmailMessage[] = [];
  /** The cache contents. */
  readonly cache: Map<string, { value: Uint8Array; expires: number }> =
    new Map();
  #o: MemoryHostAPIOptions;

  /** Creates the double. */
  constructor(options: MemoryHostAPIOptions = {}) {
    this.#o = options;
  }

  #rec(ctx: CallContext, method: keyof HostAPI, args: unknown[]): void {
    this.calls.push({ method, plugin: ctx.chain.at(-1) ?? "", args });
  }

  /** Answers from `options.query`. */
  dbQuery(
    ctx: CallContext,
    query: string,
    args: unknown[] = [],
  ): Promise<Row[]> {
    this.#rec(ctx, "dbQuery", [query, args]);
    return Promise.resolve(this.#o.query?.(query, args) ?? []);
  }

  /** Answers from `options.exec`. */
  dbExec(
    ctx: CallContext,
    query: string,
    args: unknown[] = [],
  ): Promise<number> {
    this.#rec(ctx, "dbExec", [query, args]);
    return Promise.resolve(this.#o.exec?.(query, args) ?? 1);
  }

  /** Reads the map (expired entries are absent). */
  cacheGet(ctx: CallContext, key: string): Promise<Uint8Array | null> {
    this.#rec(ctx, "cacheGet", [key]);
    const e = this.cache.get(key);
    if (!e || (e.expires && e.expires <= Date.now())) {
      return Promise.resolve(null);
    }
    return Promise.resolve(e.value.slice());
  }

  /** Writes the map. */
  cacheSet(
    ctx: CallContext,
    key: string,
    value: Uint8Array,
    ttlSeconds: number,
  ): Promise<void> {
    this.#rec(ctx, "cacheSet", [key, value, ttlSeconds]);
    this.cache.set(key, {
      value: value.slice(),
      expires: ttlSeconds > 0 ? Date.now() + ttlSeconds * 1000 : 0,
    });
    return Promise.resolve();
  }

  /** Deletes from the map. */
  cacheDelete(ctx: CallContext, key: string): Promise<void> {
    this.#rec(ctx, "cacheDelete", [key]);
    this.cache.delete(key);
    return Promise.resolve();
  }

  /** Answers from `options.http`. */
  httpRequest(ctx: CallContext, request: HttpRequest): Promise<HttpResponse> {
    this.#rec(ctx, "httpRequest", [request]);
    return Promise.resolve(
      this.#o.http?.(request) ?? { status: 200, body: new Uint8Array() },
    );
  }

  /** Records the message. */
  sendEmail(ctx: CallContext, message: EmailMessage): Promise<void> {
    this.#rec(ctx, "sendEmail", [message]);
    this.emails.push(message);
    return Promise.resolve();
  }

  /** Records the line. */
  log(
    ctx: CallContext,
    level: LogLevel,
    message: string,
    fields?: Record<string, unknown>,
  ): void {
    this.#rec(ctx, "log", [level, message, fields]);
    this.logs.push({
      plugin: ctx.chain.at(-1) ?? "",
      level,
      message,
      ...(fields ? { fields } : {}),
    });
  }

  /** Answers from `options.config`'s own string values (`""` when absent, also for `__proto__`). */
  configGet(ctx: CallContext, key: string): Promise<string> {
    this.#rec(ctx, "configGet", [key]);
    const config = this.#o.config ?? {};
    const value = Object.hasOwn(config, key) ? config[key] : undefined;
    return Promise.resolve(typeof value === "string" ? value : "");
  }

  /** Answers from `options.translate` (the key by default). */
  translate(
    ctx: CallContext,
    key: string,
    args: unknown[] = [],
  ): Promise<string> {
    this.#rec(ctx, "translate", [key, args]);
    return Promise.resolve(this.#o.translate?.(key, ctx.language, args) ?? key);
  }

  /** Answers from `options.callPlugin`. */
  callPlugin(
    ctx: CallContext,
    plugin: string,
    fn: string,
    args: Uint8Array | null,
  ): Promise<Uint8Array | null> {
    this.#rec(ctx, "callPlugin", [plugin, fn, args]);
    if (!this.#o.callPlugin) {
      return Promise.reject(
        new Error("plugin calls not available in MemoryHostAPI"),
      );
    }
    return this.#o.callPlugin(ctx, plugin, fn, args);
  }
}
