/**
 * API error codes: the host's own and those plugins declare, published as
 * `<plugin>:<code>` with a message and an HTTP status.
 *
 * @module
 */

import type { ErrorCodeSpec } from "../model/manifest.ts";

/** An error code and what it means. */
export interface ErrorCodeEntry {
  /** Who registered it (`""` for the host). */
  owner: string;
  /** Human-readable message. */
  message: string;
  /** The HTTP status it maps to. */
  httpStatus: number;
}

/** A code is already registered by the host or another plugin. */
export class ErrorCodeConflictError extends Error {
  /** The full code, such as `hello:name_required`. */
  readonly code: string;

  /** Creates the error. */
  constructor(code: string, owner: string, plugin: string) {
    super(
      `Cannot register error code "${code}" for plugin "${plugin}": it belongs to ${
        owner ? `plugin "${owner}"` : "the host"
      }`,
    );
    this.name = "ErrorCodeConflictError";
    this.code = code;
  }
}

/**
 * The error-code registry. Plugin codes are always prefixed with the plugin
 * name (also when they contain `:` already); nobody may overwrite a code that
 * another plugin or the host registered.
 *
 * @example
 * ```ts
 * import { ErrorCodeRegistry } from "./error_codes.ts";
 * const codes = new ErrorCodeRegistry();
 * codes.addPlugin("hello", [{ code: "name_required", message: "Name required", http_status: 400 }]);
 * codes.lookup("hello:name_required")?.httpStatus; // 400
 * ```
 */
export class ErrorCodeRegistry {
  #codes = new Map<string, ErrorCodeEntry>();

  /** Registers a host code (used as given, such as `core:not_found`). */
  addHost(code: string, message: string, httpStatus: number): void {
    this.#codes.set(code, { owner: "", message, httpStatus });
  }

  /** Throws {@linkcode ErrorCodeConflictError} if any code would collide. */
  check(plugin: string, specs: readonly ErrorCodeSpec[] | undefined): void {
    for (const s of specs ?? []) {
      const key = `${plugin}:${s.code}`;
      const existing = this.#codes.get(key);
      if (existing && existing.owner !== plugin) {
        throw new ErrorCodeConflictError(key, existing.owner, plugin);
      }
    }
  }

  /** Registers a plugin's codes as `<plugin>:<code>`. */
  addPlugin(plugin: string, specs: readonly ErrorCodeSpec[] | undefined): void {
    this.check(plugin, specs);
    for (const s of specs ?? []) {
      this.#codes.set(`${plugin}:${s.code}`, {
        owner: plugin,
        message: s.message,
        httpStatus: s.http_status,
      });
    }
  }

  /** Removes a plugin's codes. */
  removePlugin(plugin: string): void {
    for (const [k, v] of this.#codes) {
      if (v.owner === plugin) this.#codes.delete(k);
    }
  }

  /** Looks a full code up. */
  lookup(code: string): ErrorCodeEntry | undefined {
    return this.#codes.get(code);
  }

  /** Every registered code, sorted. */
  list(): (ErrorCodeEntry & { code: string })[] {
    return [...this.#codes].map(([code, e]) => ({ code, ...e })).sort((a, b) =>
      a.code < b.code ? -1 : a.code > b.code ? 1 : 0
    );
  }
}
