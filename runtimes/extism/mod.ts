/**
 * The Extism-ABI runtime: Extism plugins (`extism:host/env` imports) run in
 * the WASM runtime's isolated, instrumented workers with a kernel of ours.
 *
 * - Same machinery as GoatKit WASM plugins (`runtimes/wasm/`): one
 *   permission-less worker per instance, fuel-based interruption at the
 *   deadline, memory cap, queue, pool, quarantine, spare workers, usage,
 *   and our WASI preview1 layer (same preopens and environment mapping).
 * - Kernel (`kernel.ts`): memory separate from the guest's, in the worker,
 *   i64 offsets, 0 = null, capped at the plugin's memory limit
 *   (`memoryLimitPages` × 64 KiB, a second cap of the same size). Reset
 *   before each call (as Extism's Rust runtime): blocks never persist across
 *   calls; vars do.
 * - Host functions: `config_get` and `http_request` go through the plugin's
 *   HostAPI as GoatKit host calls (`config_get {key}`, `http_request
 *   {method,url,headers,body}`: grants and the guarded egress decide);
 *   `var_get`/`var_set` through {@linkcode ExtismPluginOptions.vars} (capped
 *   by `maxVarBytes`); `log_*` to the plugin's log (filtered by `logLevel`);
 *   user host functions ({@linkcode ExtismPluginOptions.functions}) run on
 *   the main thread.
 * - Calls: export `fn` (`() -> i32`) with the call's args as input; the
 *   output (or `null`). Non-zero or an `error_set` message:
 *   {@linkcode ExtismCallError}; `proc_exit(0)`: success with the output
 *   kept; other exits: {@linkcode ExtismExitError}. `_initialize` then
 *   `hs_init` run at instantiation; `_start` only when called by name.
 *
 * @example
 * ```ts ignore
 * import { loadExtismPlugin } from "./mod.ts";
 * import { Manager } from "../../host/manager.ts";
 * const manager = new Manager();
 * await manager.register(await loadExtismPlugin("echo.wasm", {
 *   registration: { name: "echo", version: "1.0.0" },
 * }));
 * const out = await manager.call("echo", "echo", new TextEncoder().encode("hi"));
 * ```
 *
 * @module
 */

import {
  loadWasmPluginWithAbi,
  type WasmAbiAdapter,
  type WasmPlugin,
} from "../wasm/plugin.ts";
import { errorJson, type HostCallResult } from "../wasm/host_calls.ts";
import type { CallContext } from "../../host/model/plugin.ts";
import { PermissionDeniedError } from "../../host/model/errors.ts";
import type {
  ExtismHostFunction,
  ExtismPluginOptions,
  ExtismValue,
  ExtismValueType,
} from "./types.ts";
import {
  decodeVarSet,
  encodeUserResult,
  EXTISM_ENV_MODULE,
  type ExtismWorkerData,
  HC_USER,
  HC_VAR_GET,
  HC_VAR_SET,
  LOG_LEVEL_NUMBERS,
  RESULT_BIGINT,
  RESULT_BYTES,
  RESULT_NONE,
  RESULT_NUMBER,
  type UserCallRequest,
} from "./protocol.ts";
import { MemoryVarStore, VarLedger } from "./vars.ts";
import { importSignatures } from "./signatures.ts";
import {
  ExtismCallError,
  ExtismExitError,
  type ExtismHostErrorInfo,
} from "./errors.ts";

export type {
  ExtismCallContext,
  ExtismHostFunction,
  ExtismLogLevel,
  ExtismPluginOptions,
  ExtismValue,
  ExtismValueType,
  ExtismVarStore,
} from "./types.ts";
export {
  ExtismCallError,
  ExtismExitError,
  type ExtismHostErrorInfo,
} from "./errors.ts";
export { MemoryVarStore } from "./vars.ts";
export { ExtismVarLimitError } from "../../host/model/errors.ts";
export { ExtismKernelError } from "./kernel.ts";
export {
  WasmLoadError,
  type WasmPlugin,
  type WasmPluginOptions,
} from "../wasm/plugin.ts";

export { EXTISM_ENV_MODULE } from "./protocol.ts";

/** The default namespace of user host functions. */
export const EXTISM_USER_MODULE = "extism:host/user";

/**
 * Whether `module` is an Extism-ABI plugin: it imports from
 * `extism:host/env`.
 */
export function isExtismModule(module: WebAssembly.Module): boolean {
  return WebAssembly.Module.imports(module).some((i) =>
    i.module === EXTISM_ENV_MODULE
  );
}

const VALUE_TYPES = new Set<ExtismValueType>([
  "i32",
  "i64",
  "f32",
  "f64",
  "bytes",
  "string",
  "json",
]);

const encoder = new TextEncoder();
const decoder = new TextDecoder();

/** Checks the user host functions; returns the problem or `null`. */
function checkFunctions(fns: readonly ExtismHostFunction[]): string | null {
  const seen = new Set<string>();
  for (const f of fns) {
    const id = `${f.namespace ?? EXTISM_USER_MODULE}.${f.name}`;
    if (seen.has(id)) return `host function ${id} is registered twice`;
    seen.add(id);
    if (f.results.length > 1) {
      return `host function ${id} has ${f.results.length} results; at most one is supported`;
    }
    for (const t of [...f.params, ...f.results]) {
      if (!VALUE_TYPES.has(t)) {
        return `host function ${id} has unknown type "${t}"`;
      }
    }
    if (typeof f.handler !== "function") {
      return `host function ${id} has no handler`;
    }
  }
  return null;
}

/** Why `module`'s imports cannot all be linked, or `null`. */
function checkImports(
  module: WebAssembly.Module,
  bytes: Uint8Array,
  fns: readonly ExtismHostFunction[],
): string | null {
  const user = new Map(
    fns.map((f) => [`${f.namespace ?? EXTISM_USER_MODULE}\u0000${f.name}`, f]),
  );
  // Parsed only when a user host function is imported (most plugins: none).
  let sigs: ReturnType<typeof importSignatures> | undefined;
  for (const imp of WebAssembly.Module.imports(module)) {
    const where = `${imp.module}.${imp.name}`;
    if (imp.kind !== "function") {
      return `unsupported import ${where} (${imp.kind}); only functions can be linked`;
    }
    if (imp.module === EXTISM_ENV_MODULE) continue;
    if (imp.module === "wasi_snapshot_preview1") continue;
    if (imp.module === "gk" && imp.name === "interrupt") continue;
    const f = user.get(`${imp.module}\u0000${imp.name}`);
    if (f) {
      if (sigs === undefined) sigs = importSignatures(bytes);
      const declared = sigs?.get(`${imp.module}\u0000${imp.name}`);
      const wasm = (t: ExtismValueType) =>
        t === "i32" || t === "f32" || t === "f64" ? t : "i64";
      const want = `(${f.params.map(wasm).join(", ")}) -> (${
        f.results.map(wasm).join(", ")
      })`;
      const got = declared &&
        `(${declared.params.join(", ")}) -> (${declared.results.join(", ")})`;
      if (got !== undefined && got !== want) {
        return `import ${where} has the signature ${got}, but the host function registered under that name takes ${want}`;
      }
      continue;
    }
    return `unknown import ${where}: no host function of that name is registered`;
  }
  return null;
}

/** Decodes a user function's argument as the handler sees it. */
function decodeArg(t: ExtismValueType, v: number | string | null): ExtismValue {
  switch (t) {
    case "i64":
      return BigInt(v as string);
    case "bytes":
      return v === null
        ? new Uint8Array(0)
        : Uint8Array.fromBase64(v as string);
    case "string":
      return v === null
        ? ""
        : decoder.decode(Uint8Array.fromBase64(v as string));
    case "json":
      return v === null
        ? null
        : JSON.parse(decoder.decode(Uint8Array.fromBase64(v as string)));
    default:
      return v as number;
  }
}

/** Encodes a user function's result for the worker. */
function encodeResult(t: ExtismValueType | undefined, r: unknown): Uint8Array {
  if (t === undefined || r === undefined || r === null) {
    return t === "json" && r === null
      ? encodeUserResult(RESULT_BYTES, encoder.encode("null"))
      : encodeUserResult(RESULT_NONE, new Uint8Array(0));
  }
  switch (t) {
    case "bytes":
      if (!(r instanceof Uint8Array)) {
        throw new TypeError(
          "Cannot return value: a bytes result must be a Uint8Array",
        );
      }
      return encodeUserResult(RESULT_BYTES, r);
    case "string":
      return encodeUserResult(RESULT_BYTES, encoder.encode(String(r)));
    case "json":
      return encodeUserResult(RESULT_BYTES, encoder.encode(JSON.stringify(r)));
    case "i64":
      return encodeUserResult(
        RESULT_BIGINT,
        encoder.encode(BigInt(r as bigint).toString()),
      );
    default:
      return encodeUserResult(RESULT_NUMBER, encoder.encode(String(Number(r))));
  }
}

/** Parses a failed host call's error JSON. */
function hostErrorInfo(json: string | null): ExtismHostErrorInfo | undefined {
  if (!json) return undefined;
  try {
    const e = JSON.parse(json)?.error;
    if (e && typeof e.message === "string") {
      return {
        type: String(e.type ?? "Error"),
        message: e.message,
        ...(typeof e.permission === "string"
          ? { permission: e.permission }
          : {}),
      };
    }
  } catch {
    // not JSON
  }
  return undefined;
}

/**
 * A refused host call as the {@linkcode PermissionDeniedError} it was on the
 * main thread, so that callers (the HTTP layer's 403) see the denial as the
 * call's cause.
 */
function deniedCause(
  plugin: string,
  info: ExtismHostErrorInfo,
): PermissionDeniedError | undefined {
  if (info.type !== "PermissionDeniedError" || !info.permission) {
    return undefined;
  }
  const attempted = /^Cannot run (.+): plugin "/.exec(info.message)?.[1];
  return new PermissionDeniedError(
    plugin,
    info.permission,
    attempted ?? "a host call",
  );
}

/**
 * Loads an Extism-ABI plugin (bytes or a path) as a {@linkcode WasmPlugin}:
 * register it on a `Manager` like any plugin; `gkRegister()` returns
 * `options.registration`. Fails with a `WasmLoadError` naming the import
 * when the module imports a function nobody provides.
 */
export function loadExtismPlugin(
  source: Uint8Array | string,
  options: ExtismPluginOptions,
): Promise<WasmPlugin> {
  const fns = options.functions ?? [];
  const label = typeof source === "string"
    ? source
    : options.name ?? options.registration?.name ?? "<bytes>";
  const bad = checkFunctions(fns);
  if (bad) {
    return Promise.reject(
      new TypeError(`Cannot load Extism plugin "${label}": ${bad}`),
    );
  }
  const logLevel = LOG_LEVEL_NUMBERS[options.logLevel ?? "info"];
  if (logLevel === undefined) {
    return Promise.reject(
      new TypeError(
        `Cannot load Extism plugin "${label}": unknown log level "${options.logLevel}"`,
      ),
    );
  }
  const worker: ExtismWorkerData = {
    maxKernelBytes: (options.memoryLimitPages ?? 256) * 65536,
    logLevel,
    functions: fns.map((f) => ({
      namespace: f.namespace ?? EXTISM_USER_MODULE,
      name: f.name,
      params: [...f.params],
      results: [...f.results],
    })),
  };
  const vars = new VarLedger(
    options.vars ?? new MemoryVarStore(),
    options.maxVarBytes ?? 1024 * 1024,
  );
  const serve = async (
    fn: string,
    args: Uint8Array,
    plugin: string,
  ): Promise<HostCallResult> => {
    try {
      switch (fn) {
        case HC_VAR_GET: {
          const v = await vars.get(decoder.decode(args));
          if (v === null) return { ok: new Uint8Array([0]) };
          const out = new Uint8Array(1 + v.length);
          out[0] = 1;
          out.set(v, 1);
          return { ok: out };
        }
        case HC_VAR_SET: {
          const { key, value } = decodeVarSet(args);
          await vars.set(decoder.decode(key), value);
          return { ok: new Uint8Array(0) };
        }
        default: {
          const req = JSON.parse(decoder.decode(args)) as UserCallRequest;
          const f = fns[req.i];
          if (!f) {
            throw new RangeError(
              `Cannot call host function ${req.i}: none registered`,
            );
          }
          const values = f.params.map((t, j) => decodeArg(t, req.a[j] ?? null));
          const r = await f.handler({ plugin, function: req.f }, ...values);
          return { ok: encodeResult(f.results[0], r) };
        }
      }
    } catch (e) {
      return { error: errorJson(e) };
    }
  };
  const adapter: WasmAbiAdapter = {
    abi: "extism",
    worker,
    registration: options.registration,
    checkImports: (module, bytes) => checkImports(module, bytes, fns),
    hostCall: (
      fn: string,
      args: Uint8Array,
      _ctx: CallContext,
      plugin: string,
    ) =>
      fn === HC_VAR_GET || fn === HC_VAR_SET || fn === HC_USER
        ? serve(fn, args, plugin)
        : undefined,
    outcome: (out, fn, plugin, errOpts) => {
      if (out.kind === "exit") {
        if (out.code === 0) return { bytes: out.output ?? null };
        return new ExtismExitError(plugin, fn, out.code, errOpts);
      }
      if (out.kind === "guest-error") {
        const hostError = hostErrorInfo(out.hostError);
        const denial = hostError && deniedCause(plugin, hostError);
        return new ExtismCallError(plugin, fn, out.code, out.message, {
          ...errOpts,
          ...(denial ? { cause: denial } : {}),
          ...(hostError ? { hostError } : {}),
        });
      }
      return undefined;
    },
  };
  return loadWasmPluginWithAbi(source, {
    ...options,
    name: options.name ?? options.registration?.name,
  }, adapter);
}
