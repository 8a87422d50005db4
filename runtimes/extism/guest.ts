/**
 * The Extism ABI, guest side: instantiates an Extism plugin in the worker
 * with our kernel ({@linkcode ExtismKernel}), the `extism:host/env` host
 * functions, the user host functions and WASI, and calls its exports
 * (`() -> i32`) with input and output in kernel memory.
 *
 * Host functions that need the host (`config_get`, `http_request`,
 * `var_get`/`var_set`, user functions) go through the worker's
 * {@linkcode GuestBridge} as host calls; the main thread answers them with
 * the plugin's guarded HostAPI. Logs go through the bridge's log batching.
 *
 * Loaded in the worker by `runtimes/wasm/guest.ts`; imports nothing
 * Deno-specific.
 *
 * @module
 */

import {
  checkInitialMemory,
  type GuestBridge,
  GuestInterrupt,
  type HostCallAnswer,
  WasmAbiError,
} from "../wasm/abi.ts";
import { ExtismKernel, toOffset } from "./kernel.ts";
import {
  encodeVarSet,
  EXTISM_ENV_MODULE,
  type ExtismWorkerData,
  HC_USER,
  HC_VAR_GET,
  HC_VAR_SET,
  RESULT_BIGINT,
  RESULT_BYTES,
  RESULT_NUMBER,
  type UserCallRequest,
} from "./protocol.ts";

/**
 * An Extism call ended in an error: the export returned non-zero or set an
 * error (`replace` false), or a host function failed (`replace` true: the
 * guest was unwound mid-call, so the instance is replaced).
 */
export class ExtismCallFailure extends Error {
  /** The export's return code (-1 for a host function failure). */
  readonly code: number;
  /** The `error_set` message or the host function's error, if any. */
  readonly detail: string | null;
  /** The failed host call's error JSON, if a host function failed. */
  readonly hostError: string | null;
  /** Whether the instance must be replaced. */
  readonly replace: boolean;
  /** Creates the failure. */
  constructor(
    code: number,
    detail: string | null,
    options: { replace?: boolean; hostError?: string | null } = {},
  ) {
    super(detail ?? `returned ${code}`);
    this.name = "ExtismCallFailure";
    this.code = code;
    this.detail = detail;
    this.replace = options.replace ?? false;
    this.hostError = options.hostError ?? null;
  }
}

/** Options of {@linkcode ExtismGuest.create}. */
export interface ExtismGuestOptions {
  /** Where host calls, log lines and interrupts go. */
  bridge: GuestBridge;
  /** The `wasi_snapshot_preview1` import object. */
  wasi: Record<string, unknown>;
  /** Called with the new instance before `_initialize` runs. */
  onInstance?: (instance: WebAssembly.Instance) => void;
  /** Largest output and host call payload, in bytes. */
  maxResultBytes: number;
  /** Largest initial memory in 64 KiB pages. */
  memoryLimitPages: number;
  /** The exit code if `e` is a `proc_exit`, else `undefined`. */
  exitCode: (e: unknown) => number | undefined;
  /** The Extism settings. */
  data: ExtismWorkerData;
}

const encoder = new TextEncoder();
const decoder = new TextDecoder();

/** The text of a host call's error JSON (`{"error":{"message":…}}`). */
function errorMessage(json: Uint8Array): string {
  try {
    const e = JSON.parse(decoder.decode(json))?.error;
    if (e && typeof e.message === "string") return e.message;
  } catch {
    // not JSON: the raw text
  }
  return decoder.decode(json);
}

/** Whether `a` and `b` hold the same bytes. */
function sameBytes(a: Uint8Array, b: Uint8Array): boolean {
  if (a.length !== b.length) return false;
  for (let i = 0; i < a.length; i++) if (a[i] !== b[i]) return false;
  return true;
}

/** What the host functions of the call in progress share with `call`. */
interface CallState {
  /** The export being called (user host functions get it). */
  fn: string;
  /** The last `http_request`'s status (`http_status_code`). */
  httpStatus: number;
  /** The last `http_request`'s response headers (`http_headers`). */
  httpHeaders: Record<string, string> | null;
}

/** Extism level number → the gk log level (0 debug … 3 error). */
const GK_LEVEL = [0, 0, 1, 2, 3];

/** One instance of an Extism plugin with its kernel. */
export class ExtismGuest {
  /** The WebAssembly instance. */
  readonly instance: WebAssembly.Instance;
  readonly #kernel: ExtismKernel;
  readonly #memory: WebAssembly.Memory | undefined;
  readonly #maxResult: number;
  /** Per-call state the host functions share (see `create`). */
  readonly #state: CallState;

  private constructor(
    instance: WebAssembly.Instance,
    kernel: ExtismKernel,
    maxResult: number,
    state: CallState,
  ) {
    this.instance = instance;
    this.#kernel = kernel;
    this.#maxResult = maxResult;
    this.#state = state;
    const mem = instance.exports.memory;
    this.#memory = mem instanceof WebAssembly.Memory ? mem : undefined;
  }

  /**
   * Instantiates `module` with every import it declares linked (our kernel
   * and host functions, the user functions, WASI; an `extism:host/env`
   * function we do not provide traps when called), checks its initial
   * memory, then runs `_initialize` and `hs_init` if exported. `_start` is
   * never run here: it is called by name like any export.
   */
  static create(
    module: WebAssembly.Module,
    options: ExtismGuestOptions,
  ): ExtismGuest {
    const { bridge, data } = options;
    const kernel = new ExtismKernel(data.maxKernelBytes);
    const state: CallState = { fn: "", httpStatus: 0, httpHeaders: null };
    const call = (name: string, args: Uint8Array): Uint8Array => {
      const answer: HostCallAnswer = bridge.hostCall(
        encoder.encode(name),
        args,
      );
      if ("interrupted" in answer) throw new GuestInterrupt();
      if ("error" in answer) {
        throw new ExtismCallFailure(-1, errorMessage(answer.error), {
          replace: true,
          hostError: decoder.decode(answer.error),
        });
      }
      return answer.ok;
    };
    const fail = (message: string): never => {
      throw new ExtismCallFailure(-1, message, { replace: true });
    };
    const block = (v: unknown, what: string): Uint8Array => {
      const p = toOffset(v);
      const b = p > 0 ? kernel.block(p) : null;
      if (!b) return fail(`invalid handle offset for ${what}: ${String(v)}`);
      return b;
    };
    const place = (bytes: Uint8Array | null): bigint => {
      if (bytes && bytes.length > options.maxResultBytes) {
        fail(
          `value of ${bytes.length} bytes exceeds the limit of ${options.maxResultBytes}`,
        );
      }
      return BigInt(kernel.place(bytes));
    };
    const log = (level: number) => (off: unknown): void => {
      if (level < data.logLevel) return;
      bridge.log(GK_LEVEL[level]!, block(off, "log message"));
    };
    const env: Record<string, (...a: never[]) => unknown> = {
      // A size that is no safe offset (-1) traps with the cap's message, as
      // one over the cap does.
      alloc: (n: unknown) => {
        const size = toOffset(n);
        return BigInt(kernel.alloc(size < 0 ? kernel.maxBytes + 1 : size));
      },
      free: (p: unknown) => kernel.free(toOffset(p)),
      length: (p: unknown) => BigInt(kernel.length(toOffset(p))),
      length_unsafe: (p: unknown) => BigInt(kernel.length(toOffset(p))),
      load_u8: (p: unknown) => kernel.loadU8(toOffset(p)),
      load_u64: (p: unknown) => kernel.loadU64(toOffset(p)),
      store_u8: (p: unknown, v: number) => kernel.storeU8(toOffset(p), v),
      store_u64: (p: unknown, v: bigint) => kernel.storeU64(toOffset(p), v),
      input_length: () => BigInt(kernel.inputLength),
      input_offset: () => BigInt(kernel.inputOffset),
      input_load_u8: (i: unknown) => kernel.inputLoadU8(toOffset(i)),
      input_load_u64: (i: unknown) => kernel.inputLoadU64(toOffset(i)),
      input_set: (p: unknown, n: unknown) => {
        const off = toOffset(p);
        const len = toOffset(n);
        kernel.bytes(off, len); // bounds check (traps)
        kernel.inputOffset = off;
        kernel.inputLength = len;
      },
      output_set: (p: unknown, n: unknown) =>
        kernel.setOutput(toOffset(p), toOffset(n)),
      output_length: () => BigInt(Math.max(0, kernel.outputLength)),
      output_offset: () => BigInt(kernel.outputOffset),
      error_set: (p: unknown) => kernel.setError(toOffset(p)),
      error_get: () => BigInt(kernel.errorOffset),
      reset: () => kernel.reset(),
      memory_bytes: () => BigInt(kernel.byteLength),
      config_get: (off: unknown) => {
        const key = decoder.decode(block(off, "config key"));
        const answer = bridge.hostCall(
          encoder.encode("config_get"),
          encoder.encode(JSON.stringify({ key })),
        );
        if ("interrupted" in answer) throw new GuestInterrupt();
        // A key that is absent (or refused: the audit log has it) is 0.
        if ("error" in answer) return 0n;
        const value = JSON.parse(decoder.decode(answer.ok))?.value;
        if (typeof value !== "string" || value === "") return 0n;
        return place(encoder.encode(value));
      },
      var_get: (off: unknown) => {
        const out = call(HC_VAR_GET, block(off, "var key"));
        if (out.length === 0 || out[0] !== 1) return 0n;
        return place(out.subarray(1));
      },
      var_set: (k: unknown, v: unknown) => {
        const key = block(k, "var key");
        const value = toOffset(v) === 0 ? null : block(v, "var value");
        call(HC_VAR_SET, encodeVarSet(key, value));
      },
      http_request: (r: unknown, b: unknown) => {
        let req: {
          url?: unknown;
          method?: unknown;
          headers?: unknown;
        };
        try {
          req = JSON.parse(decoder.decode(block(r, "http request")));
        } catch (e) {
          if (e instanceof ExtismCallFailure) throw e;
          return fail(`http request is not valid JSON: ${String(e)}`);
        }
        if (typeof req?.url !== "string") {
          return fail("http request has no url");
        }
        const body = toOffset(b) === 0 ? null : block(b, "http request body");
        const out = call(
          "http_request",
          encoder.encode(JSON.stringify({
            method: typeof req.method === "string" ? req.method : "GET",
            url: req.url,
            headers: req.headers && typeof req.headers === "object"
              ? req.headers
              : {},
            body: body ? body.toBase64() : null,
            response_headers: true,
          })),
        );
        const resp = JSON.parse(decoder.decode(out)) as {
          status?: number;
          body?: string | null;
          headers?: Record<string, string>;
        };
        state.httpStatus = resp.status ?? 0;
        state.httpHeaders = resp.headers ?? null;
        return place(resp.body ? Uint8Array.fromBase64(resp.body) : null);
      },
      http_status_code: () => state.httpStatus,
      http_headers: () =>
        state.httpHeaders
          ? place(encoder.encode(JSON.stringify(state.httpHeaders)))
          : 0n,
      log_trace: log(0),
      log_debug: log(1),
      log_info: log(2),
      log_warn: log(3),
      log_error: log(4),
      get_log_level: () => data.logLevel,
    };
    const imports: WebAssembly.Imports = {
      gk: { interrupt: () => bridge.interrupt() },
      wasi_snapshot_preview1: options.wasi as WebAssembly.ModuleImports,
    };
    const envImports: WebAssembly.ModuleImports = {};
    for (const imp of WebAssembly.Module.imports(module)) {
      if (imp.kind !== "function") continue;
      if (imp.module === EXTISM_ENV_MODULE) {
        const f = env[imp.name];
        envImports[imp.name] = f ?? (() => {
          throw new WasmAbiError(
            `Cannot call ${EXTISM_ENV_MODULE}.${imp.name}: this host does not implement it`,
          );
        });
      }
    }
    imports[EXTISM_ENV_MODULE] = envImports;
    data.functions.forEach((sig, i) => {
      const ns = (imports[sig.namespace] ??= {}) as WebAssembly.ModuleImports;
      ns[sig.name] = (...args: unknown[]): unknown => {
        const a = sig.params.map((t, j): number | string | null => {
          const v = args[j];
          switch (t) {
            case "i64":
              return String(v);
            case "bytes":
            case "string":
            case "json":
              return toOffset(v) === 0
                ? null
                : block(v, `argument ${j} of ${sig.name}`).toBase64();
            default:
              return Number(v);
          }
        });
        const req: UserCallRequest = { i, f: state.fn, a };
        const out = call(HC_USER, encoder.encode(JSON.stringify(req)));
        const t = sig.results[0];
        if (t === undefined) return undefined;
        const tag = out[0];
        const payload = out.subarray(1);
        switch (t) {
          case "bytes":
          case "string":
          case "json":
            return tag === RESULT_BYTES ? place(payload) : 0n;
          case "i64":
            return tag === RESULT_BIGINT || tag === RESULT_NUMBER
              ? BigInt(decoder.decode(payload))
              : 0n;
          default:
            return tag === RESULT_NUMBER || tag === RESULT_BIGINT
              ? Number(decoder.decode(payload))
              : 0;
        }
      };
    });
    const instance = new WebAssembly.Instance(module, imports);
    options.onInstance?.(instance);
    checkInitialMemory(instance, options.memoryLimitPages);
    const g = new ExtismGuest(instance, kernel, options.maxResultBytes, state);
    // As the PDKs expect: `_initialize` (reactors), then Haskell's `hs_init`.
    for (const name of ["_initialize", "hs_init"]) {
      const f = instance.exports[name];
      if (typeof f !== "function") continue;
      try {
        if (name === "hs_init") (f as (a: number, b: number) => void)(0, 0);
        else (f as () => void)();
      } catch (e) {
        if (options.exitCode(e) !== 0) throw e;
      }
    }
    return g;
  }

  // The last function looked up (see `call`).
  #lastFn: Uint8Array | null = null;
  #lastName = "";
  #lastExport: unknown = undefined;

  /**
   * The guest's linear memory plus its kernel memory now, in 64 KiB pages
   * (rounded up): what the plugin's usage reports.
   */
  get memoryPages(): number {
    return Math.ceil(
      ((this.#memory?.buffer.byteLength ?? 0) + this.#kernel.byteLength) /
        65536,
    );
  }

  /** Never: an Extism plugin's manifest comes from its options. */
  register(): Uint8Array {
    throw new WasmAbiError("Cannot register an Extism plugin with gk_register");
  }

  /** The output set so far (kept when the guest exits with `proc_exit`). */
  pendingOutput(): Uint8Array | null {
    const out = this.#kernel.output();
    if (out && out.length > this.#maxResult) return null;
    return out;
  }

  /**
   * Calls export `fn` (`() -> i32`, or `() -> ()` like `_start`) with
   * `input`; returns the output (`null` when none was set; a view of
   * kernel memory, valid until the next call). Throws
   * {@linkcode ExtismCallFailure} when it returns non-zero or sets an error.
   */
  call(fn: Uint8Array, input: Uint8Array | null): Uint8Array | null {
    // The last function's name and export, reused when the
    // same name comes again (most calls).
    let name: string;
    let f: unknown;
    const last = this.#lastFn;
    if (last !== null && sameBytes(last, fn)) {
      name = this.#lastName;
      f = this.#lastExport;
    } else {
      name = decoder.decode(fn);
      f = this.instance.exports[name];
      this.#lastFn = fn.slice();
      this.#lastName = name;
      this.#lastExport = f;
    }
    if (typeof f !== "function") {
      // The host's finding, not the guest's: it travels as a host error
      // (`hostError.type` "ExtismFunctionNotFound").
      const message = `function "${name}" does not exist`;
      throw new ExtismCallFailure(-1, message, {
        hostError: JSON.stringify({
          error: { type: "ExtismFunctionNotFound", message },
        }),
      });
    }
    const kernel = this.#kernel;
    kernel.reset();
    kernel.setInput(input);
    this.#state.fn = name;
    this.#state.httpStatus = 0;
    this.#state.httpHeaders = null;
    let r: unknown;
    try {
      r = (f as () => unknown)();
    } catch (e) {
      // A trap after `error_set` (AssemblyScript's abort, a Rust panic
      // handler) ends the call with the guest's message, as Extism does;
      // the instance is replaced. Interrupts, exits, ABI and kernel
      // violations and failures of our own keep their meaning.
      const err = kernel.error();
      if (
        err !== null && err.length > 0 && e instanceof WebAssembly.RuntimeError
      ) {
        throw new ExtismCallFailure(-1, decoder.decode(err), {
          replace: true,
        });
      }
      throw e;
    }
    const rc = typeof r === "number"
      ? r
      : typeof r === "bigint"
      ? Number(r)
      : 0;
    const err = kernel.error();
    if (rc !== 0 || (err !== null && err.length > 0)) {
      throw new ExtismCallFailure(
        rc,
        err && err.length > 0 ? decoder.decode(err) : null,
      );
    }
    // A view, not a copy: the worker copies it into the
    // channel before the kernel is used again.
    const out = kernel.outputView();
    if (out && out.length > this.#maxResult) {
      throw new WasmAbiError(
        `Cannot read output of ${name}: ${out.length} bytes exceeds the limit of ${this.#maxResult}`,
      );
    }
    return out;
  }
}
