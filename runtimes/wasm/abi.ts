/**
 * The GoatKit WASM ABI, guest side of the boundary: instantiating a module
 * with the `gk` imports and calling its exports exactly as GoatFlow does.
 *
 * Runs inside the plugin's worker (and in-thread for the benchmark's
 * baseline). Imports nothing Deno-specific.
 *
 * ABI (GoatFlow `internal/plugin/wasm/runtime.go`):
 * - exports `gk_register() -> i64`, `gk_call(fn_ptr, fn_len, args_ptr,
 *   args_len) -> i64`, `gk_malloc(size) -> i32`, optional `gk_free(ptr)`,
 *   `memory`; an i64 packs `ptr << 32 | len` (0 = nothing);
 * - imports `gk.host_call(fn_ptr, fn_len, args_ptr, args_len) -> i64`,
 *   `gk.log(level, ptr, len)`, plus our additions `gk.last_error(buf_ptr,
 *   buf_len) -> i32` and `gk.interrupt() -> i32` (added by the instrumenter).
 *
 * @module
 */

/** The guest broke the ABI (bad pointer, failed allocation, oversized result). */
export class WasmAbiError extends Error {
  /** Creates the error with `message`. */
  constructor(message: string) {
    super(message);
    this.name = "WasmAbiError";
  }
}

/**
 * Refuses an instance whose memory at start is over `limitPages` (64 KiB
 * pages; no limit when `undefined`) with a {@linkcode WasmAbiError}.
 */
export function checkInitialMemory(
  instance: WebAssembly.Instance,
  limitPages: number | undefined,
): void {
  const mem = instance.exports.memory;
  if (
    limitPages !== undefined && mem instanceof WebAssembly.Memory &&
    mem.buffer.byteLength > limitPages * 65536
  ) {
    throw new WasmAbiError(
      `Cannot instantiate module: it needs ${
        mem.buffer.byteLength / 65536
      } pages of memory at start, over the limit of ${limitPages}`,
    );
  }
}

/** Thrown through the guest by `gk.interrupt` (or a host call) to stop it. */
export class GuestInterrupt extends Error {
  /** Creates the interrupt. */
  constructor() {
    super("guest interrupted");
    this.name = "GuestInterrupt";
  }
}

/** The answer of a host call as the bridge gives it. */
export type HostCallAnswer =
  | { ok: Uint8Array }
  | { error: Uint8Array }
  | { interrupted: true };

/** What the `gk` imports ask of their environment. */
export interface GuestBridge {
  /** Serves `gk.host_call`; blocks until the answer is there. */
  hostCall(fn: Uint8Array, args: Uint8Array): HostCallAnswer;
  /** Serves `gk.log` (level as given by the guest). */
  log(level: number, message: Uint8Array): void;
  /** Serves `gk.interrupt`: returns the fuel refill, or throws. */
  interrupt(): number;
}

/** Options of {@linkcode GuestInstance.create}. */
export interface GuestInstanceOptions {
  /** Where host calls, log lines and interrupts go. */
  bridge: GuestBridge;
  /** The `wasi_snapshot_preview1` import object. */
  wasi: Record<string, unknown>;
  /** Called with the new instance, before `_initialize`/`_start` runs. */
  onInstance?: (instance: WebAssembly.Instance) => void;
  /** Largest result (and host call payload) in bytes. @default 16 MiB */
  maxResultBytes?: number;
  /** Largest initial memory in 64 KiB pages. */
  memoryLimitPages?: number;
  /**
   * Treats an exit of the start function as success when its code is 0;
   * gets the exit code from a thrown value (`undefined` when not an exit).
   */
  exitCode?: (e: unknown) => number | undefined;
}

const MASK32 = 0xffffffffn;

/** Splits a packed `ptr << 32 | len` i64 (a BigInt from JS) into its halves. */
export function unpack(value: unknown): { ptr: number; len: number } {
  if (typeof value !== "bigint") return { ptr: 0, len: 0 };
  const v = BigInt.asUintN(64, value);
  return { ptr: Number(v >> 32n), len: Number(v & MASK32) };
}

/** Packs a pointer and a length into the ABI's i64. */
export function pack(ptr: number, len: number): bigint {
  return (BigInt(ptr >>> 0) << 32n) | BigInt(len >>> 0);
}

/** Import names of module `gk` that the host provides. */
export const GK_IMPORTS: readonly string[] = [
  "host_call",
  "log",
  "last_error",
  "interrupt",
];

/**
 * One instance of a GoatKit module with the ABI's call protocol.
 *
 * @example In-thread (no isolation), as the benchmark's baseline does
 * ```ts ignore
 * const g = GuestInstance.create(module, { bridge, wasi: {} });
 * const out = g.call(new TextEncoder().encode("echo"), new Uint8Array([123, 125]));
 * ```
 */
export class GuestInstance {
  /** The WebAssembly instance. */
  readonly instance: WebAssembly.Instance;
  #memory: WebAssembly.Memory;
  #malloc: (size: number) => number;
  #free: ((ptr: number) => void) | undefined;
  #call: (a: number, b: number, c: number, d: number) => unknown;
  #register: () => unknown;
  #maxResult: number;
  #lastError: Uint8Array | null = null;
  #bridge: GuestBridge;

  private constructor(
    instance: WebAssembly.Instance,
    bridge: GuestBridge,
    maxResult: number,
  ) {
    this.instance = instance;
    this.#bridge = bridge;
    this.#maxResult = maxResult;
    const ex = instance.exports;
    if (typeof ex.gk_register !== "function") {
      throw new WasmAbiError(
        'Cannot use module as a plugin: it does not export "gk_register"',
      );
    }
    if (typeof ex.gk_call !== "function") {
      throw new WasmAbiError(
        'Cannot use module as a plugin: it does not export "gk_call"',
      );
    }
    if (typeof ex.gk_malloc !== "function") {
      throw new WasmAbiError(
        'Cannot use module as a plugin: it does not export "gk_malloc"',
      );
    }
    if (!(ex.memory instanceof WebAssembly.Memory)) {
      throw new WasmAbiError(
        'Cannot use module as a plugin: it does not export "memory"',
      );
    }
    this.#memory = ex.memory;
    this.#register = ex.gk_register as () => unknown;
    this.#call = ex.gk_call as (
      a: number,
      b: number,
      c: number,
      d: number,
    ) => unknown;
    this.#malloc = ex.gk_malloc as (size: number) => number;
    this.#free = typeof ex.gk_free === "function"
      ? ex.gk_free as (p: number) => void
      : undefined;
  }

  /**
   * Instantiates `module` with the `gk` and WASI imports, checks the ABI's
   * exports and the initial memory, then runs `_initialize` if exported,
   * else `_start`.
   */
  static create(
    module: WebAssembly.Module,
    options: GuestInstanceOptions,
  ): GuestInstance {
    const maxResult = options.maxResultBytes ?? 16 * 1024 * 1024;
    const ref: { g?: GuestInstance } = {};
    const gk = {
      host_call: (fp: number, fl: number, ap: number, al: number): bigint => {
        const g = ref.g;
        if (!g) return 0n; // during start: not initialised (GoatFlow: 0)
        return g.#hostCall(fp, fl, ap, al);
      },
      log: (level: number, ptr: number, len: number): void => {
        const g = ref.g;
        if (!g) return; // GoatFlow drops logs before Init
        const msg = g.#view(ptr, len);
        if (msg) options.bridge.log(level, msg);
      },
      last_error: (ptr: number, len: number): number => {
        const g = ref.g;
        if (!g) return 0;
        const err = g.#lastError;
        if (!err) return 0;
        const n = Math.min(len >>> 0, err.length);
        const dst = g.#view(ptr, n);
        if (dst) dst.set(err.subarray(0, n));
        return err.length;
      },
      interrupt: (): number => options.bridge.interrupt(),
    };
    const imports: WebAssembly.Imports = {
      gk,
      wasi_snapshot_preview1: options.wasi as WebAssembly.ModuleImports,
    };
    const instance = new WebAssembly.Instance(module, imports);
    options.onInstance?.(instance);
    checkInitialMemory(instance, options.memoryLimitPages);
    const g = new GuestInstance(instance, options.bridge, maxResult);
    const start = instance.exports._initialize ?? instance.exports._start;
    if (typeof start === "function") {
      try {
        (start as () => void)();
      } catch (e) {
        const code = options.exitCode?.(e);
        if (code !== 0) throw e;
      }
    }
    ref.g = g;
    return g;
  }

  /** The guest's linear memory size now, in 64 KiB pages. */
  get memoryPages(): number {
    return this.#memory.buffer.byteLength / 65536;
  }

  /** Returns a bounds-checked live view of guest memory, or `null`. */
  #view(ptr: number, len: number): Uint8Array | null {
    ptr >>>= 0;
    len >>>= 0;
    const buf = this.#memory.buffer;
    if (ptr + len > buf.byteLength) return null;
    return new Uint8Array(buf, ptr, len);
  }

  /** Copies `bytes` into a fresh guest buffer from `gk_malloc`. */
  #place(bytes: Uint8Array, what: string): number {
    const ptr = this.#malloc(bytes.length) >>> 0;
    if (ptr === 0) {
      throw new WasmAbiError(
        `Cannot allocate guest memory for ${what}: gk_malloc returned 0`,
      );
    }
    const dst = this.#view(ptr, bytes.length);
    if (!dst) {
      throw new WasmAbiError(
        `Cannot allocate guest memory for ${what}: gk_malloc returned out-of-range pointer ${ptr}`,
      );
    }
    dst.set(bytes);
    return ptr;
  }

  #hostCall(fp: number, fl: number, ap: number, al: number): bigint {
    this.#lastError = null;
    const fnView = this.#view(fp, fl);
    const argsView = this.#view(ap, al);
    if (!fnView || !argsView) {
      this.#lastError = new TextEncoder().encode(
        JSON.stringify({
          error: {
            type: "WasmAbiError",
            message: "host_call: pointer out of range",
          },
        }),
      );
      return 0n;
    }
    if (fl + al > this.#maxResult) {
      this.#lastError = new TextEncoder().encode(
        JSON.stringify({
          error: {
            type: "WasmAbiError",
            message: `host_call: request of ${
              fl + al
            } bytes exceeds ${this.#maxResult}`,
          },
        }),
      );
      return 0n;
    }
    const answer = this.#bridge.hostCall(fnView.slice(), argsView.slice());
    if ("interrupted" in answer) throw new GuestInterrupt();
    if ("error" in answer) {
      this.#lastError = answer.error;
      return 0n;
    }
    const out = answer.ok;
    if (out.length === 0) return 0n;
    const ptr = this.#malloc(out.length) >>> 0;
    const dst = ptr === 0 ? null : this.#view(ptr, out.length);
    if (!dst) {
      this.#lastError = new TextEncoder().encode(
        JSON.stringify({
          error: {
            type: "WasmAbiError",
            message: `host_call: gk_malloc(${out.length}) failed`,
          },
        }),
      );
      return 0n;
    }
    dst.set(out);
    return pack(ptr, out.length);
  }

  /** Reads the packed result `r` out of guest memory (a copy), or `null`. */
  #readResult(r: unknown, what: string): Uint8Array | null {
    const { ptr, len } = unpack(r);
    if (ptr === 0 || len === 0) return null;
    if (len > this.#maxResult) {
      throw new WasmAbiError(
        `Cannot read ${what} result: ${len} bytes exceeds the limit of ${this.#maxResult}`,
      );
    }
    const view = this.#view(ptr, len);
    if (!view) {
      throw new WasmAbiError(
        `Cannot read ${what} result from memory: ${ptr}+${len} is outside ${this.#memory.buffer.byteLength} bytes`,
      );
    }
    return view.slice();
  }

  /** Calls `gk_register` and returns the manifest bytes (never freed). */
  register(): Uint8Array {
    const out = this.#readResult(this.#register(), "gk_register");
    if (!out) {
      throw new WasmAbiError(
        "Cannot register plugin: gk_register returned no result",
      );
    }
    return out;
  }

  /**
   * Calls `gk_call(fn, args)` exactly as GoatFlow: fn and args placed with
   * `gk_malloc` (empty args as (0,0)), the result copied out, then
   * `gk_free(result)`, `gk_free(fn)`, `gk_free(args)`. Returns `null` for a
   * 0 result.
   */
  call(fn: Uint8Array, args: Uint8Array | null): Uint8Array | null {
    if (fn.length === 0) {
      throw new WasmAbiError(
        "Cannot allocate guest memory for function name: the name is empty",
      );
    }
    const fnPtr = this.#place(fn, "function name");
    let argsPtr = 0;
    const argsLen = args?.length ?? 0;
    if (args && argsLen > 0) argsPtr = this.#place(args, "args");
    const r = this.#call(fnPtr, fn.length, argsPtr, argsLen);
    const out = this.#readResult(r, "gk_call");
    const free = this.#free;
    if (free) {
      if (out) free(unpack(r).ptr);
      free(fnPtr);
      if (argsPtr !== 0) free(argsPtr);
    }
    return out;
  }
}
