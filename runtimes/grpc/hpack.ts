/**
 * The HPACK header compression of HTTP/2 (RFC 7541), as much as the host's
 * own gRPC client (`h2_client.ts`) needs: a full decoder (static and
 * dynamic table, Huffman strings) for what servers send, and an encoder of
 * literal fields that never touches the dynamic table, so request header
 * blocks can be encoded once and reused.
 *
 * @module
 */

import {
  HUFFMAN_CODES,
  HUFFMAN_LENGTHS,
  STATIC_TABLE,
} from "./hpack_tables.ts";

/** A header block could not be decoded (the connection must be closed). */
export class HpackError extends Error {
  /** Creates the error; `why` says what was wrong. */
  constructor(why: string) {
    super(`Cannot decode HTTP/2 header block: ${why}`);
    this.name = "HpackError";
  }
}

/**
 * The Huffman decoding tree: node `n` has its children at `2n` (bit 0) and
 * `2n + 1` (bit 1); a child `< 0` is the leaf of symbol `-child - 1`.
 */
const HUFFMAN_TREE: Int32Array = (() => {
  const tree = new Int32Array(2 * 520);
  let nodes = 1;
  for (let sym = 0; sym < 256; sym++) {
    const code = HUFFMAN_CODES[sym]!;
    const len = HUFFMAN_LENGTHS[sym]!;
    let node = 0;
    for (let i = len - 1; i >= 0; i--) {
      const slot = 2 * node + ((code >>> i) & 1);
      if (i === 0) tree[slot] = -sym - 1;
      else {
        if (tree[slot] === 0) tree[slot] = nodes++;
        node = tree[slot]!;
      }
    }
  }
  return tree;
})();

const utf8 = new TextDecoder();
const encoder = new TextEncoder();

function huffmanDecode(bytes: Uint8Array): string {
  const out = new Uint8Array(Math.ceil(bytes.length * 8 / 5));
  let n = 0;
  let node = 0;
  let depth = 0;
  let ones = true;
  for (let i = 0; i < bytes.length; i++) {
    const b = bytes[i]!;
    for (let bit = 7; bit >= 0; bit--) {
      const v = (b >>> bit) & 1;
      const next = HUFFMAN_TREE[2 * node + v]!;
      depth++;
      ones &&= v === 1;
      if (next < 0) {
        out[n++] = -next - 1;
        node = 0;
        depth = 0;
        ones = true;
      } else if (next === 0) {
        throw new HpackError("invalid Huffman code");
      } else node = next;
    }
  }
  // Padding: at most 7 bits, all ones (the EOS prefix).
  if (depth > 7 || !ones) throw new HpackError("invalid Huffman padding");
  return utf8.decode(out.subarray(0, n));
}

/** One decoded header field. */
export type HeaderField = readonly [name: string, value: string];

/**
 * A decoder's state: the dynamic table of one direction of one connection.
 *
 * @example
 * ```ts
 * import { HpackDecoder } from "./hpack.ts";
 * const d = new HpackDecoder();
 * d.decode(new Uint8Array([0x88])); // [[":status", "200"]]
 * ```
 */
export class HpackDecoder {
  #table: HeaderField[] = [];
  #size = 0;
  #max: number;
  readonly #limit: number;

  /** A decoder whose table may grow to `maxTableSize` (SETTINGS_HEADER_TABLE_SIZE). */
  constructor(maxTableSize = 4096) {
    this.#max = maxTableSize;
    this.#limit = maxTableSize;
  }

  #evict(): void {
    while (this.#size > this.#max && this.#table.length) {
      const [n, v] = this.#table.pop()!;
      this.#size -= n.length + v.length + 32;
    }
  }

  #add(field: HeaderField): void {
    this.#table.unshift(field);
    this.#size += field[0].length + field[1].length + 32;
    this.#evict();
  }

  #field(index: number): HeaderField {
    if (index >= 1 && index <= STATIC_TABLE.length) {
      return STATIC_TABLE[index - 1]!;
    }
    const f = this.#table[index - STATIC_TABLE.length - 1];
    if (!f) throw new HpackError(`index ${index} is not in the table`);
    return f;
  }

  /** Decodes one complete header block. */
  decode(block: Uint8Array): HeaderField[] {
    const fields: HeaderField[] = [];
    let p = 0;
    const int = (prefixBits: number): number => {
      const mask = (1 << prefixBits) - 1;
      let v = block[p++]! & mask;
      if (v < mask) return v;
      let shift = 0;
      for (;;) {
        if (p >= block.length) throw new HpackError("truncated integer");
        const b = block[p++]!;
        v += (b & 0x7f) * 2 ** shift;
        shift += 7;
        if ((b & 0x80) === 0) return v;
        if (shift > 28) throw new HpackError("integer too large");
      }
    };
    const str = (): string => {
      if (p >= block.length) throw new HpackError("truncated string");
      const huffman = (block[p]! & 0x80) !== 0;
      const len = int(7);
      if (p + len > block.length) throw new HpackError("truncated string");
      const bytes = block.subarray(p, p + len);
      p += len;
      return huffman ? huffmanDecode(bytes) : utf8.decode(bytes);
    };
    while (p < block.length) {
      const b = block[p]!;
      if (b & 0x80) {
        fields.push(this.#field(int(7)));
      } else if (b & 0x40) {
        const index = int(6);
        const name = index ? this.#field(index)[0] : str();
        const field: HeaderField = [name, str()];
        this.#add(field);
        fields.push(field);
      } else if (b & 0x20) {
        const size = int(5);
        if (size > this.#limit) {
          throw new HpackError(`table size ${size} exceeds ${this.#limit}`);
        }
        this.#max = size;
        this.#evict();
      } else {
        // Literal without indexing (0000) or never indexed (0001).
        const index = int(4);
        const name = index ? this.#field(index)[0] : str();
        fields.push([name, str()]);
      }
    }
    return fields;
  }
}

function pushInt(
  out: number[],
  value: number,
  prefixBits: number,
  first: number,
) {
  const max = (1 << prefixBits) - 1;
  if (value < max) {
    out.push(first | value);
    return;
  }
  out.push(first | max);
  value -= max;
  while (value >= 128) {
    out.push((value & 0x7f) | 0x80);
    value = Math.floor(value / 128);
  }
  out.push(value);
}

function pushString(out: number[], s: string) {
  const bytes = encoder.encode(s);
  pushInt(out, bytes.length, 7, 0);
  for (const b of bytes) out.push(b);
}

/**
 * Encodes header fields as literals without indexing (names from the
 * static table when they are there), or as fully indexed static entries;
 * the result depends on no table state and can be reused.
 *
 * @example
 * ```ts
 * import { encodeHeaders, HpackDecoder } from "./hpack.ts";
 * const block = encodeHeaders([[":method", "POST"], ["te", "trailers"]]);
 * new HpackDecoder().decode(block); // [[":method", "POST"], ["te", "trailers"]]
 * ```
 */
export function encodeHeaders(fields: readonly HeaderField[]): Uint8Array {
  const out: number[] = [];
  for (const [name, value] of fields) {
    const exact = STATIC_TABLE.findIndex(([n, v]) => n === name && v === value);
    if (exact >= 0) {
      pushInt(out, exact + 1, 7, 0x80);
      continue;
    }
    const named = STATIC_TABLE.findIndex(([n]) => n === name);
    if (named >= 0) pushInt(out, named + 1, 4, 0);
    else {
      out.push(0);
      pushString(out, name);
    }
    pushString(out, value);
  }
  return new Uint8Array(out);
}
