/**
 * Private: a growable byte buffer with LEB128 encoders, used to build the
 * instrumented module.
 *
 * @module
 */

/** Appends WebAssembly binary primitives to a growing buffer. */
export class WasmWriter {
  #buf: Uint8Array<ArrayBuffer>;
  #len = 0;

  /** Creates a writer with an initial capacity in bytes. */
  constructor(capacity = 1024) {
    this.#buf = new Uint8Array(Math.max(16, capacity));
  }

  /** Number of bytes written. */
  get length(): number {
    return this.#len;
  }

  #ensure(extra: number): void {
    const need = this.#len + extra;
    if (need <= this.#buf.length) return;
    let size = this.#buf.length * 2;
    while (size < need) size *= 2;
    const next = new Uint8Array(size);
    next.set(this.#buf.subarray(0, this.#len));
    this.#buf = next;
  }

  /** Appends one byte. */
  u8(value: number): void {
    this.#ensure(1);
    this.#buf[this.#len++] = value;
  }

  /** Appends an unsigned LEB128 (values up to 2^32 - 1). */
  u32(value: number): void {
    this.#ensure(5);
    let v = value >>> 0;
    do {
      let b = v & 0x7f;
      v >>>= 7;
      if (v !== 0) b |= 0x80;
      this.#buf[this.#len++] = b;
    } while (v !== 0);
  }

  /** Appends a signed LEB128 of a 32-bit integer. */
  s32(value: number): void {
    this.#ensure(5);
    let v = value | 0;
    for (;;) {
      const b = v & 0x7f;
      v >>= 7;
      if ((v === 0 && (b & 0x40) === 0) || (v === -1 && (b & 0x40) !== 0)) {
        this.#buf[this.#len++] = b;
        return;
      }
      this.#buf[this.#len++] = b | 0x80;
    }
  }

  /** Appends raw bytes. */
  bytes(data: Uint8Array): void {
    this.#ensure(data.length);
    this.#buf.set(data, this.#len);
    this.#len += data.length;
  }

  /** Appends a length-prefixed UTF-8 name. */
  name(text: string): void {
    const data = new TextEncoder().encode(text);
    this.u32(data.length);
    this.bytes(data);
  }

  /** Appends another writer's content. */
  append(other: WasmWriter): void {
    this.bytes(other.view());
  }

  /** Forgets the written bytes, keeping the capacity. */
  reset(): void {
    this.#len = 0;
  }

  /** A view of the written bytes (valid until the next write). */
  view(): Uint8Array {
    return this.#buf.subarray(0, this.#len);
  }

  /** A copy of the written bytes, trimmed to length. */
  finish(): Uint8Array<ArrayBuffer> {
    return this.#buf.slice(0, this.#len);
  }
}
