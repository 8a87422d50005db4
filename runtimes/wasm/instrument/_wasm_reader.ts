/**
 * Private: a bounds-checked reader for the WebAssembly binary format. Every
 * read checks the end of its window and every LEB128 its length and unused
 * bits, so malformed input ends in a {@link WasmInstrumentError}, never in a
 * crash, an endless loop or a silently wrong value.
 *
 * @module
 */

import { WasmInstrumentError } from "./wasm_instrument_error.ts";

const UTF8 = new TextDecoder("utf-8", { fatal: true });

/** Formats a byte as `0xNN`. */
export function hex(value: number): string {
  return `0x${value.toString(16).padStart(2, "0")}`;
}

/** Reads WebAssembly binary primitives from a window of a byte array. */
export class WasmReader {
  /** The whole input. */
  readonly buf: Uint8Array;
  /** Current position (absolute offset into {@link buf}). */
  pos: number;
  /** End of the readable window (exclusive, absolute). */
  readonly end: number;

  /** Creates a reader over `buf[start, end)`. */
  constructor(buf: Uint8Array, start = 0, end = buf.length) {
    this.buf = buf;
    this.pos = start;
    this.end = end;
  }

  /** True when the window is fully consumed. */
  eof(): boolean {
    return this.pos >= this.end;
  }

  /** Throws a {@link WasmInstrumentError} at the current or given offset. */
  fail(message: string, offset = this.pos): never {
    throw new WasmInstrumentError(message, offset);
  }

  /** Reads one byte. */
  u8(): number {
    if (this.pos >= this.end) this.fail("unexpected end of data");
    return this.buf[this.pos++]!;
  }

  /** Reads an unsigned LEB128 of at most 32 bits. */
  u32(): number {
    const start = this.pos;
    let result = 0;
    let shift = 0;
    for (let i = 0; i < 5; i++) {
      if (this.pos >= this.end) this.fail("unexpected end of data in LEB128");
      const b = this.buf[this.pos++]!;
      if (i === 4) {
        if (b & 0xf0) {
          this.fail(
            "malformed unsigned LEB128 (u32 too long or too large)",
            start,
          );
        }
        return (result + b * 2 ** 28) >>> 0;
      }
      result |= (b & 0x7f) << shift;
      if ((b & 0x80) === 0) return result >>> 0;
      shift += 7;
    }
    /* c8 ignore next */
    return this.fail("malformed LEB128", start);
  }

  /** Skips a signed LEB128 of at most `bits` bits (32 or 64), checking its form. */
  skipSigned(bits: 32 | 64): void {
    const start = this.pos;
    const maxBytes = bits === 32 ? 5 : 10;
    for (let i = 0; i < maxBytes; i++) {
      if (this.pos >= this.end) this.fail("unexpected end of data in LEB128");
      const b = this.buf[this.pos++]!;
      if (i === maxBytes - 1) {
        // Last possible byte: no continuation, and the unused high bits must
        // all equal the sign bit.
        if (bits === 32) {
          // 4 value bits (28..31); bit 3 is the sign, bits 4..6 must match.
          if (b & 0x80 || (b & 0x70) !== ((b & 0x08) ? 0x70 : 0)) {
            this.fail(`malformed signed LEB128 (s${bits})`, start);
          }
        } else {
          // 1 value bit (63) in bit 0; bits 1..6 must match it.
          if (b !== 0x00 && b !== 0x7f) {
            this.fail(`malformed signed LEB128 (s${bits})`, start);
          }
        }
        return;
      }
      if ((b & 0x80) === 0) return;
    }
  }

  /** Reads a signed 33-bit LEB128 (block types); returns its value. */
  s33(): number {
    const start = this.pos;
    let result = 0;
    let mul = 1;
    for (let i = 0; i < 5; i++) {
      if (this.pos >= this.end) this.fail("unexpected end of data in LEB128");
      const b = this.buf[this.pos++]!;
      if (i === 4) {
        // bits 0..4 are value bits 28..32 (bit 4 = sign); bits 5..6 must match.
        if (b & 0x80 || (b & 0x60) !== ((b & 0x10) ? 0x60 : 0)) {
          this.fail("malformed signed LEB128 (s33)", start);
        }
        result += (b & 0x1f) * mul;
        return (b & 0x10) ? result - 2 ** 33 : result;
      }
      result += (b & 0x7f) * mul;
      mul *= 128;
      if ((b & 0x80) === 0) {
        return (b & 0x40) ? result - mul : result;
      }
    }
    /* c8 ignore next */
    return this.fail("malformed LEB128", start);
  }

  /** Moves past `n` bytes of immediates without decoding them. */
  advance(n: number): void {
    if (n > this.end - this.pos) this.fail("unexpected end of data");
    this.pos += n;
  }

  /** Returns a view of the next `n` bytes and advances. */
  bytes(n: number): Uint8Array {
    if (n > this.end - this.pos) this.fail("unexpected end of data");
    const view = this.buf.subarray(this.pos, this.pos + n);
    this.pos += n;
    return view;
  }

  /** Reads a length-prefixed UTF-8 name. */
  name(): string {
    const len = this.u32();
    const start = this.pos;
    const raw = this.bytes(len);
    try {
      return UTF8.decode(raw);
    } catch {
      return this.fail("name is not valid UTF-8", start);
    }
  }
}
