/**
 * Our Extism kernel: the memory that `extism:host/env`'s `alloc`, `free`,
 * `length`, `load_*`, `store_*`, `input_*`, `output_set` and `error_*`
 * address with i64 offsets. It lives in the plugin's worker, separate from
 * the guest's linear memory, and is capped: an allocation past the cap, or a
 * load/store/output outside the kernel memory, traps the guest with a
 * {@linkcode ExtismKernelError} (never touches host memory).
 *
 * Layout as Extism's own kernel (`kernel/src/lib.rs`): offset 0 is null,
 * blocks are handed out by a bump allocator, freed blocks are reused first
 * fit; `length(p)` is the used size of the live block starting at `p`, else
 * 0. The input is a block too (`input_offset` points at it). `reset` drops
 * every block, the input, the output and the error: the runtime resets
 * before each call, as Extism's Rust runtime does, so blocks never persist
 * across calls.
 *
 * Runs in the worker; imports nothing.
 *
 * @module
 */

/** A guest misused kernel memory (bad offset, over the cap). */
export class ExtismKernelError extends Error {
  /** Creates the error with `message`. */
  constructor(message: string) {
    super(message);
    this.name = "ExtismKernelError";
  }
}

/** The first offset handed out (0 stays null). */
const FIRST = 8;
/** Initial kernel memory size in bytes. */
const INITIAL = 64 * 1024;
/** Kernel memory above this size shrinks back to {@linkcode INITIAL} at reset. */
const SHRINK_ABOVE = 1024 * 1024;

interface Block {
  size: number;
  used: number;
}

/** Converts an i64 argument (a BigInt from WASM) to a safe offset, or -1. */
export function toOffset(v: unknown): number {
  if (typeof v === "number") return v >= 0 ? v : -1;
  if (typeof v !== "bigint") return -1;
  // No BigInt arithmetic (each allocates). Number() of a
  // negative i64 is negative (as unsigned it is ≥ 2^63); past 2^53 - 1 it
  // rounds to ≥ 2^53: both are out of range, as before.
  const n = Number(v);
  return n >= 0 && n <= Number.MAX_SAFE_INTEGER ? n : -1;
}

/**
 * The kernel memory of one instance, capped at `maxBytes`.
 *
 * @example
 * ```ts
 * import { ExtismKernel } from "./kernel.ts";
 * const k = new ExtismKernel(1 << 20);
 * const p = k.alloc(3);
 * k.bytes(p, 3).set([1, 2, 3]);
 * console.log(k.length(p)); // 3
 * ```
 */
export class ExtismKernel {
  readonly maxBytes: number;
  #buf: ArrayBuffer;
  #u8: Uint8Array;
  #dv: DataView;
  #pos = FIRST;
  /** End of the highest byte a store wrote (stores may land past blocks). */
  #dirty = FIRST;
  #blocks = new Map<number, Block>();
  #free: number[] = [];
  #freeSizes = new Map<number, number>();
  inputOffset = 0;
  inputLength = 0;
  outputOffset = 0;
  outputLength = 0;
  outputSet = false;
  errorOffset = 0;

  /** Creates an empty kernel memory of at most `maxBytes` bytes. */
  constructor(maxBytes: number) {
    this.maxBytes = Math.max(FIRST + 1024, Math.floor(maxBytes));
    // A fixed-length buffer, replaced to grow or shrink. Views
    // of a resizable one take slower paths in V8 (2–3× per load or store).
    this.#buf = new ArrayBuffer(Math.min(this.maxBytes, INITIAL));
    this.#u8 = new Uint8Array(this.#buf);
    this.#dv = new DataView(this.#buf);
  }

  /** Bytes the kernel memory spans now. */
  get byteLength(): number {
    return this.#buf.byteLength;
  }

  /** Drops every block, the input, the output and the error. */
  reset(): void {
    if (this.#u8.length > SHRINK_ABOVE) {
      // A call that used much kernel memory does not keep it for the next.
      // A fresh buffer is already zeroed.
      this.#buf = new ArrayBuffer(INITIAL);
      this.#u8 = new Uint8Array(this.#buf);
      this.#dv = new DataView(this.#buf);
    } else {
      // Everything a call wrote: its blocks, and any store past them (stores
      // are bounded by the buffer, as in Extism's kernel), so that nothing
      // of one call is visible to the next.
      this.#u8.fill(
        0,
        0,
        Math.min(Math.max(this.#pos, this.#dirty), this.#u8.length),
      );
    }
    this.#pos = FIRST;
    this.#dirty = FIRST;
    this.#blocks.clear();
    this.#free = [];
    this.#freeSizes.clear();
    this.inputOffset = 0;
    this.inputLength = 0;
    this.outputOffset = 0;
    this.outputLength = 0;
    this.outputSet = false;
    this.errorOffset = 0;
  }

  #grow(need: number): void {
    if (need <= this.#u8.length) return;
    if (need > this.maxBytes) {
      throw new ExtismKernelError(
        `Cannot allocate Extism kernel memory: ${need} bytes would exceed the limit of ${this.maxBytes} bytes`,
      );
    }
    const next = Math.min(
      this.maxBytes,
      Math.max(need, this.#u8.length * 2),
    );
    // A bigger fixed buffer with the old one copied over
    // (the rest of a fresh buffer is zero, as a resized one was).
    const buf = new ArrayBuffer(next);
    const u8 = new Uint8Array(buf);
    u8.set(this.#u8);
    this.#buf = buf;
    this.#u8 = u8;
    this.#dv = new DataView(buf);
  }

  /** Allocates `n` bytes; 0 for `n` 0. Traps past the cap. */
  alloc(n: number): number {
    if (n <= 0) return 0;
    // First fit among freed blocks (few: a scan is cheap).
    for (let i = 0; i < this.#free.length; i++) {
      const off = this.#free[i]!;
      const size = this.#freeSizes.get(off)!;
      if (size >= n) {
        this.#free.splice(i, 1);
        this.#freeSizes.delete(off);
        this.#u8.fill(0, off, off + size);
        this.#blocks.set(off, { size, used: n });
        return off;
      }
    }
    const off = this.#pos;
    this.#grow(off + n);
    this.#pos = off + n;
    this.#blocks.set(off, { size: n, used: n });
    return off;
  }

  /** Frees the live block at `p` (anything else: no-op). */
  free(p: number): void {
    const b = this.#blocks.get(p);
    if (!b) return;
    this.#blocks.delete(p);
    this.#free.push(p);
    this.#freeSizes.set(p, b.size);
    if (p === this.inputOffset) this.inputLength = 0;
  }

  /** Used length of the live block starting at `p`, else 0. */
  length(p: number): number {
    return this.#blocks.get(p)?.used ?? 0;
  }

  #check(p: number, n: number, what: string): void {
    if (p < 1 || n < 0 || p + n > this.#u8.length) {
      throw new ExtismKernelError(
        `Cannot ${what}: offset ${p}${
          n > 1 ? `+${n}` : ""
        } is outside the Extism kernel memory (${this.#buf.byteLength} bytes)`,
      );
    }
  }

  /** Reads a byte at `p` (traps outside kernel memory). */
  loadU8(p: number): number {
    this.#check(p, 1, "load_u8");
    return this.#u8[p]!;
  }

  /** Reads a little-endian u64 at `p`. */
  loadU64(p: number): bigint {
    this.#check(p, 8, "load_u64");
    return this.#dv.getBigUint64(p, true);
  }

  /** Writes a byte at `p`. */
  storeU8(p: number, v: number): void {
    this.#check(p, 1, "store_u8");
    if (p >= this.#dirty) this.#dirty = p + 1;
    this.#u8[p] = v & 0xff;
  }

  /** Writes a little-endian u64 at `p`. */
  storeU64(p: number, v: bigint): void {
    this.#check(p, 8, "store_u64");
    if (p + 8 > this.#dirty) this.#dirty = p + 8;
    // SetBigInt64 wraps modulo 2^64 itself (no asUintN).
    this.#dv.setBigInt64(p, v, true);
  }

  /** A byte of the input (0 past its end, as Extism's bounds checks do). */
  inputLoadU8(i: number): number {
    if (i < 0 || i >= this.inputLength) return 0;
    return this.#u8[this.inputOffset + i]!;
  }

  /** A u64 of the input (0 past its end). */
  inputLoadU64(i: number): bigint {
    if (i < 0 || i + 8 > this.inputLength) return 0n;
    return this.#dv.getBigUint64(this.inputOffset + i, true);
  }

  /** Places `input` in a block and marks it as the input. */
  setInput(input: Uint8Array | null): void {
    const n = input?.length ?? 0;
    const p = this.alloc(n);
    if (n > 0) this.#u8.set(input!, p);
    this.inputOffset = p;
    this.inputLength = n;
  }

  /** Marks `[p, p+len)` as the output (traps outside kernel memory). */
  setOutput(p: number, len: number): void {
    if (p !== 0 || len !== 0) this.#check(p, len, "output_set");
    this.outputOffset = p;
    this.outputLength = len;
    this.outputSet = true;
  }

  /** Sets (or with 0 clears) the error block. */
  setError(p: number): void {
    if (p !== 0) this.#check(p, 1, "error_set");
    this.errorOffset = p;
  }

  /** A copy of the output, or `null` when none was set. */
  output(): Uint8Array | null {
    if (!this.outputSet) return null;
    if (this.outputLength === 0) return new Uint8Array(0);
    return this.#u8.slice(
      this.outputOffset,
      this.outputOffset + this.outputLength,
    );
  }

  /**
   * A live view of the output (no copy), or `null` when none
   * was set; valid until the kernel is next used.
   */
  outputView(): Uint8Array | null {
    if (!this.outputSet) return null;
    return this.#u8.subarray(
      this.outputOffset,
      this.outputOffset + this.outputLength,
    );
  }

  /** The error message's bytes (the block at the error offset), or `null`. */
  error(): Uint8Array | null {
    if (this.errorOffset === 0) return null;
    const n = this.length(this.errorOffset);
    return this.#u8.slice(this.errorOffset, this.errorOffset + n);
  }

  /** A copy of the live block at `p`, or `null` when `p` is not one. */
  block(p: number): Uint8Array | null {
    const b = this.#blocks.get(p);
    if (!b) return null;
    return this.#u8.slice(p, p + b.used);
  }

  /** Allocates a block holding `bytes`; 0 for none/empty. */
  place(bytes: Uint8Array | null): number {
    if (!bytes || bytes.length === 0) return 0;
    const p = this.alloc(bytes.length);
    this.#u8.set(bytes, p);
    return p;
  }

  /** A live view of `[p, p+n)` (bounds-checked). */
  bytes(p: number, n: number): Uint8Array {
    this.#check(p, n, "read kernel memory");
    if (p + n > this.#dirty) this.#dirty = p + n; // the caller may write
    return this.#u8.subarray(p, p + n);
  }
}
