/**
 * The public shapes of the Extism-ABI runtime: what embedders give an Extism
 * plugin (user host functions, a store for its vars) and the errors its calls
 * end with. The runtime itself (kernel, guest side) lives beside this file.
 *
 * @module
 */

import type { GKRegistration } from "../../host/model/manifest.ts";
import type { WasmPluginOptions } from "../wasm/plugin.ts";

/**
 * How a user host function's parameter or result crosses the ABI:
 * `i32`/`i64`/`f32`/`f64` are plain WASM values (i64 as `bigint`);
 * `bytes`, `string` and `json` are i64 offsets of kernel memory blocks that
 * the runtime reads (params) or allocates and fills (results), so handlers
 * see `Uint8Array`, `string` or parsed JSON.
 */
export type ExtismValueType =
  | "i32"
  | "i64"
  | "f32"
  | "f64"
  | "bytes"
  | "string"
  | "json";

/** A value passed to or returned from a user host function. */
export type ExtismValue = number | bigint | Uint8Array | string | unknown;

/** What a user host function learns about the call it serves. */
export interface ExtismCallContext {
  /** The plugin's registered name. */
  readonly plugin: string;
  /** The plugin function (export) being called. */
  readonly function: string;
}

/**
 * A host function that embedding code offers Extism plugins, imported under
 * `namespace` (default `extism:host/user`). Every plugin that imports it gets
 * it; a module importing a function nobody registered fails to load with a
 * typed error naming the import.
 *
 * @example
 * ```ts ignore
 * const hello: ExtismHostFunction = {
 *   name: "hello_world",
 *   params: ["string"],
 *   results: ["string"],
 *   handler: (_ctx, name) => `Hello, ${name}!`,
 * };
 * ```
 */
export interface ExtismHostFunction {
  /** Import name. */
  readonly name: string;
  /** Import module. @default "extism:host/user" */
  readonly namespace?: string;
  /** Parameter types, in order. */
  readonly params: readonly ExtismValueType[];
  /** Result types: none or one. */
  readonly results: readonly ExtismValueType[];
  /** Serves the call on the host's main thread; may be async. */
  handler(
    ctx: ExtismCallContext,
    ...args: ExtismValue[]
  ): ExtismValue | void | Promise<ExtismValue | void>;
}

/**
 * Where an Extism plugin's vars (`var_get` / `var_set`) live. One store per
 * plugin: keys are already in the plugin's own namespace. `set(key, null)`
 * deletes.
 */
export interface ExtismVarStore {
  /** The value of `key`, or `null`. */
  get(key: string): Promise<Uint8Array | null>;
  /** Stores (or with `null` deletes) `key`. */
  set(key: string, value: Uint8Array | null): Promise<void>;
  /**
   * Bytes the plugin's vars take now (keys plus values), so the
   * `maxVarBytes` cap counts vars kept from before this process. Without
   * it, only vars this process has touched count.
   */
  usage?(): Promise<number>;
}

/** Log levels of Extism's `log_*` functions, lowest first. */
export type ExtismLogLevel = "trace" | "debug" | "info" | "warn" | "error";

/** Options of `loadExtismPlugin`: the WASM runtime's, plus Extism's own. */
export interface ExtismPluginOptions extends WasmPluginOptions {
  /**
   * The plugin's GoatKit side (name, routes, widgets, jobs …), from its
   * sidecar `manifest.json`: what `gkRegister()` returns.
   */
  registration: GKRegistration;
  /** Where vars persist. @default an in-memory store */
  vars?: ExtismVarStore;
  /** Largest total size of one plugin's vars, in bytes. @default 1 MiB */
  maxVarBytes?: number;
  /** User host functions offered to the plugin. */
  functions?: readonly ExtismHostFunction[];
  /** Lowest level of `log_*` lines kept. @default "info" */
  logLevel?: ExtismLogLevel;
}
