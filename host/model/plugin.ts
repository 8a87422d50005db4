/**
 * The plugin model: what a plugin is, and the context a call carries.
 *
 * Every runtime (native TypeScript, WASM, gRPC) produces a {@linkcode Plugin};
 * the {@linkcode Manager} registers it and routes calls to it.
 *
 * @module
 */

import type { HostAPI } from "./host_api.ts";
import type { GKRegistration } from "./manifest.ts";
import type { OverloadRefusal } from "./errors.ts";

/**
 * What travels with every plugin call: who called, in which language, along
 * which chain of plugins, until when.
 */
export interface CallContext {
  /** The plugin that made this call, when a plugin did (else the host). */
  readonly caller?: string;
  /** The request language, such as `de-CH` (from Accept-Language). */
  readonly language?: string;
  /** The plugins currently being called, outermost first; used to refuse cycles. */
  readonly chain: readonly string[];
  /** Absolute deadline, in milliseconds since the epoch. */
  readonly deadline: number;
  /** Aborted when the caller gives up or the deadline passes. */
  readonly signal: AbortSignal;
}

/** How a plugin is executed; shown to admins. */
export type PluginRuntimeKind = "native" | "wasm" | "grpc";

/**
 * What the Manager hands a plugin at `init`, besides its HostAPI: ways for
 * the runtime to report its own health.
 */
export interface PluginEnvironment {
  /** The plugin's registered name. */
  readonly name: string;
  /**
   * Disables the plugin with a reason an admin can read (for example after
   * repeated crashes or timeouts).
   */
  quarantine(reason: string): void;
}

/**
 * A plugin, as every runtime presents it to the host. Mirrors GoatFlow's
 * `Plugin` interface: `GKRegister`, `Init`, `Call`, `Shutdown`.
 *
 * `args` and results are JSON bytes (`null` for none).
 *
 * @example A native plugin
 * ```ts
 * import type { Plugin } from "./plugin.ts";
 * const hello: Plugin = {
 *   gkRegister: () => ({ name: "hello", version: "1.0.0" }),
 *   init: async () => {},
 *   call: async (fn) => new TextEncoder().encode(JSON.stringify({ fn })),
 *   shutdown: async () => {},
 * };
 * ```
 */
export interface Plugin {
  /** The plugin's manifest (validated by the Manager at register). */
  gkRegister(): GKRegistration | Promise<GKRegistration>;
  /** Prepares the plugin; `host` is its (guarded) HostAPI. */
  init(host: HostAPI, env?: PluginEnvironment): Promise<void>;
  /** Calls function `fn` with JSON `args`; returns JSON bytes or `null`. */
  call(
    fn: string,
    args: Uint8Array | null,
    ctx: CallContext,
  ): Promise<Uint8Array | null>;
  /** Releases everything the plugin holds. */
  shutdown(): Promise<void>;
  /** How the plugin runs; `native` when absent. */
  readonly runtime?: PluginRuntimeKind;
  /**
   * What a plugin route hands the plugin. `args` (the default): GoatFlow's
   * args object built from path, query and a JSON body, with a JSON answer.
   * `raw`: the request body as it came (an Extism plugin's input), with
   * the answer's bytes as the response body (JSON when they parse as JSON,
   * else `text/plain` when UTF-8, else `application/octet-stream`).
   */
  readonly routeInput?: "args" | "raw";
  /**
   * What a call of `call.function` made now would be refused with at once
   * as overload (its runtime's queue is full, or the work queued ahead
   * would outlast the call's queue-time budget): what the call's
   * `PluginOverloadedError` would say, without the error; `undefined` when
   * the call would run or wait its turn. The refusal is counted as the
   * call's would be. The HTTP layer asks before it builds a route's call,
   * so that a request the plugin would refuse costs little more than the
   * answer.
   */
  refuseNow?(call: {
    function: string;
    timeoutMs: number;
  }): OverloadRefusal | undefined;
  /**
   * What the plugin has used so far (cumulative counters since load), for
   * metrics and quotas; absent when the runtime cannot tell.
   */
  usage?(): PluginUsage;
}

/**
 * A plugin's resource use as its runtime measures it. Counters are
 * cumulative since the plugin was loaded; gauges are current values.
 */
export interface PluginUsage {
  /**
   * Guest CPU time in ms, cumulative: for WASM the time guest code ran in
   * its workers (a call's run time less the time the host spent serving
   * its host calls); for a subprocess its user + system CPU time.
   */
  cpuMs: number;
  /** Calls that ran guest code, cumulative. */
  calls: number;
  /** Guest memory in bytes now (WASM linear memory of its instances). */
  memoryBytes?: number;
  /** Resident memory of the plugin's process(es) in bytes now (subprocesses). */
  rssBytes?: number;
  /** Times the runtime replaced a crashed or stuck instance or process. */
  restarts?: number;
}

const encoder = new TextEncoder();
const decoder = new TextDecoder();

/**
 * Encodes a value as JSON bytes (`undefined` → `null` bytes-less).
 *
 * @example
 * ```ts
 * import { encodeJson } from "./plugin.ts";
 * encodeJson({ a: 1 }); // Uint8Array of '{"a":1}'
 * ```
 */
export function encodeJson(value: unknown): Uint8Array {
  return encoder.encode(JSON.stringify(value ?? null));
}

/**
 * Decodes JSON bytes; `null` or empty input gives `null`.
 *
 * @example
 * ```ts
 * import { decodeJson, encodeJson } from "./plugin.ts";
 * decodeJson(encodeJson({ a: 1 })); // { a: 1 }
 * ```
 */
export function decodeJson<T = unknown>(bytes: Uint8Array | null): T | null {
  if (!bytes || bytes.length === 0) return null;
  return JSON.parse(decoder.decode(bytes)) as T;
}

/** Options of {@linkcode createCallContext}. */
export interface CallContextOptions {
  /** The calling plugin, if any. */
  caller?: string;
  /** The request language. */
  language?: string;
  /** Plugins already on the call chain, outermost first. */
  chain?: readonly string[];
  /** Time allowed from now, in milliseconds. @default 30000 */
  timeoutMs?: number;
  /** Aborts the context early when it aborts. */
  signal?: AbortSignal;
}

/**
 * Creates a call context, for host work done outside any plugin call (a
 * runtime logging a subprocess's stderr, a test calling a HostAPI directly).
 *
 * @example
 * ```ts
 * import { createCallContext } from "./plugin.ts";
 * const ctx = createCallContext({ timeoutMs: 5000 });
 * console.log(ctx.chain.length); // 0
 * ```
 */
export function createCallContext(
  options: CallContextOptions = {},
): CallContext {
  const timeoutMs = options.timeoutMs ?? 30_000;
  const signals = [AbortSignal.timeout(timeoutMs)];
  if (options.signal) signals.push(options.signal);
  return {
    ...(options.caller === undefined ? {} : { caller: options.caller }),
    ...(options.language === undefined ? {} : { language: options.language }),
    chain: options.chain ?? [],
    deadline: Date.now() + timeoutMs,
    signal: AbortSignal.any(signals),
  };
}
