/**
 * The HostAPI a Manager gives plugins when the embedding application
 * supplies none: logging, translations, configuration from a plain map and
 * plugin-to-plugin calls work; database, cache, HTTP and e-mail refuse with
 * {@linkcode ServiceUnavailableError} (the real services live in
 * `host/services/`, behind the permission checks of `permissions/`).
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
import type { I18nRegistry } from "../registries/i18n.ts";
import type { LogBuffer } from "../log_buffer.ts";
import type { CallContext } from "../model/plugin.ts";
import { ServiceUnavailableError } from "../model/errors.ts";

/** The subset of the Manager that {@linkcode BasicHostAPI} calls. */
export interface PluginCallTarget {
  /** Calls `target` on behalf of `caller`. */
  callFrom(
    caller: string,
    target: string,
    fn: string,
    args: Uint8Array | null,
    options: { parent: CallContext },
  ): Promise<Uint8Array | null>;
}

/** Options of {@linkcode BasicHostAPI}. */
export interface BasicHostAPIOptions {
  /** Where log lines go. */
  logs: LogBuffer;
  /** Translation tables. */
  i18n: I18nRegistry;
  /** Routes plugin-to-plugin calls. */
  manager?: PluginCallTarget;
  /**
   * Configuration values by key (own string properties only: a key such as
   * `__proto__` or `constructor` is unset unless given here).
   */
  config?: Record<string, string>;
}

/**
 * A HostAPI without external services; see the module doc.
 *
 * @example
 * ```ts
 * import { BasicHostAPI } from "./basic_host_api.ts";
 * import { LogBuffer } from "../log_buffer.ts";
 * import { I18nRegistry } from "../registries/i18n.ts";
 * import { createCallContext } from "../model/plugin.ts";
 * const host = new BasicHostAPI({ logs: new LogBuffer(), i18n: new I18nRegistry() });
 * await host.translate(createCallContext(), "missing.key"); // "missing.key"
 * ```
 */
export class BasicHostAPI implements HostAPI {
  #o: BasicHostAPIOptions;

  /** Creates the HostAPI. */
  constructor(options: BasicHostAPIOptions) {
    this.#o = options;
  }

  /** Refuses: no database configured. */
  dbQuery(
    _ctx: CallContext,
    _query: string,
    _args?: unknown[],
  ): Promise<Row[]> {
    return Promise.reject(new ServiceUnavailableError("database"));
  }

  /** Refuses: no database configured. */
  dbExec(
    _ctx: CallContext,
    _query: string,
    _args?: unknown[],
  ): Promise<number> {
    return Promise.reject(new ServiceUnavailableError("database"));
  }

  /** Refuses: no cache configured. */
  cacheGet(_ctx: CallContext, _key: string): Promise<Uint8Array | null> {
    return Promise.reject(new ServiceUnavailableError("cache"));
  }

  /** Refuses: no cache configured. */
  cacheSet(
    _ctx: CallContext,
    _key: string,
    _value: Uint8Array,
    _ttl: number,
  ): Promise<void> {
    return Promise.reject(new ServiceUnavailableError("cache"));
  }

  /** Refuses: no cache configured. */
  cacheDelete(_ctx: CallContext, _key: string): Promise<void> {
    return Promise.reject(new ServiceUnavailableError("cache"));
  }

  /** Refuses: no HTTP egress configured. */
  httpRequest(_ctx: CallContext, _request: HttpRequest): Promise<HttpResponse> {
    return Promise.reject(new ServiceUnavailableError("HTTP egress"));
  }

  /** Refuses: no mailer configured. */
  sendEmail(_ctx: CallContext, _message: EmailMessage): Promise<void> {
    return Promise.reject(new ServiceUnavailableError("mailer"));
  }

  /** Writes to the log buffer under the calling plugin's name. */
  log(
    ctx: CallContext,
    level: LogLevel,
    message: string,
    fields?: Record<string, unknown>,
  ): void {
    this.#o.logs.log(ctx.chain.at(-1) ?? "", level, message, fields);
  }

  /**
   * Reads a configuration value (`""` when absent). Only own string
   * properties count: `__proto__`, `constructor` or `toString` answer `""`
   * unless the map sets them.
   */
  configGet(_ctx: CallContext, key: string): Promise<string> {
    const config = this.#o.config;
    const value = config && Object.hasOwn(config, key)
      ? config[key]
      : undefined;
    return Promise.resolve(typeof value === "string" ? value : "");
  }

  /** Translates into the call's language. */
  translate(ctx: CallContext, key: string, args?: unknown[]): Promise<string> {
    return Promise.resolve(
      this.#o.i18n.translate(key, ctx.language, args ?? []),
    );
  }

  /** Calls another plugin on behalf of the current one. */
  callPlugin(
    ctx: CallContext,
    plugin: string,
    fn: string,
    args: Uint8Array | null,
  ): Promise<Uint8Array | null> {
    const manager = this.#o.manager;
    if (!manager) {
      return Promise.reject(
        new Error(
          `Cannot call plugin "${plugin}": no plugin manager is available`,
        ),
      );
    }
    return manager.callFrom(ctx.chain.at(-1) ?? "", plugin, fn, args, {
      parent: ctx,
    });
  }
}
