/**
 * Private: the section structure of a WebAssembly module for the
 * instrumenter: section ids and their canonical order, the header check and
 * the split into sections ({@link readSections}), the size check of a
 * section's contents ({@link checkEnd}) and writing a section back
 * ({@link emitSection}).
 *
 * @module
 */

import { WasmReader } from "./_wasm_reader.ts";
import type { WasmWriter } from "./_wasm_writer.ts";

// Section ids and their canonical order.
/** Section id of custom sections. */
export const SEC_CUSTOM = 0;
/** Section id of the type section. */
export const SEC_TYPE = 1;
/** Section id of the import section. */
export const SEC_IMPORT = 2;
/** Section id of the function section. */
export const SEC_FUNCTION = 3;
/** Section id of the table section. */
export const SEC_TABLE = 4;
/** Section id of the memory section. */
export const SEC_MEMORY = 5;
/** Section id of the global section. */
export const SEC_GLOBAL = 6;
/** Section id of the export section. */
export const SEC_EXPORT = 7;
/** Section id of the start section. */
export const SEC_START = 8;
/** Section id of the element section. */
export const SEC_ELEMENT = 9;
/** Section id of the code section. */
export const SEC_CODE = 10;
/** Section id of the data section. */
export const SEC_DATA = 11;
/** Section id of the data count section. */
export const SEC_DATACOUNT = 12;
const SEC_TAG = 13;

const SECTION_NAMES: Record<number, string> = {
  0: "custom",
  1: "type",
  2: "import",
  3: "function",
  4: "table",
  5: "memory",
  6: "global",
  7: "export",
  8: "start",
  9: "element",
  10: "code",
  11: "data",
  12: "data count",
  13: "tag",
};

/** Canonical order rank of each known section id. */
export const SECTION_RANK: Record<number, number> = {
  1: 1,
  2: 2,
  3: 3,
  4: 4,
  5: 5,
  13: 6,
  6: 7,
  7: 8,
  8: 9,
  9: 10,
  12: 11,
  10: 12,
  11: 13,
};

/** Where one section lies in the module. */
export interface SectionSpan {
  /** Section id. */
  id: number;
  /** Offset of the section id byte. */
  at: number;
  /** Contents window. */
  start: number;
  /** End of the contents window (exclusive). */
  end: number;
}

/**
 * Checks the module header (magic number, version 1) and splits the module
 * into its sections, refusing sections that overrun the module, unknown or
 * out-of-order sections, and the tag section (exception handling).
 *
 * @throws {WasmInstrumentError} The header or the section structure is bad.
 */
export function readSections(bytes: Uint8Array): SectionSpan[] {
  const r = new WasmReader(bytes);
  if (bytes.length < 8) r.fail("too short to be a WebAssembly module", 0);
  if (
    bytes[0] !== 0x00 || bytes[1] !== 0x61 || bytes[2] !== 0x73 ||
    bytes[3] !== 0x6d
  ) {
    r.fail("bad magic number (not a WebAssembly module)", 0);
  }
  if (bytes[4] !== 1 || bytes[5] !== 0 || bytes[6] !== 0 || bytes[7] !== 0) {
    if (bytes[6] === 1 && bytes[7] === 0) {
      r.fail("WebAssembly components are not supported (core modules only)", 4);
    }
    r.fail("unsupported binary format version", 4);
  }
  r.pos = 8;
  const spans: SectionSpan[] = [];
  let lastRank = 0;
  while (!r.eof()) {
    const at = r.pos;
    const id = r.u8();
    const size = r.u32();
    const start = r.pos;
    if (size > r.end - start) {
      r.fail(
        `${
          SECTION_NAMES[id] ?? `unknown (${id})`
        } section overruns the module (size ${size}, ${
          r.end - start
        } bytes left)`,
        at,
      );
    }
    if (id === SEC_TAG) {
      r.fail("tag section: exception handling is not supported", at);
    }
    if (id !== SEC_CUSTOM) {
      const rank = SECTION_RANK[id];
      if (rank === undefined) r.fail(`unknown section id ${id}`, at);
      if (rank <= lastRank) {
        r.fail(`${SECTION_NAMES[id]} section is out of order or repeated`, at);
      }
      lastRank = rank;
    }
    spans.push({ id, at, start, end: start + size });
    r.pos = start + size;
  }
  return spans;
}

/**
 * Checks that a section's contents ended exactly at the section's end.
 *
 * @throws {WasmInstrumentError} They did not.
 */
export function checkEnd(r: WasmReader, what: string): void {
  if (r.pos !== r.end) {
    r.fail(`${what} section size does not match its contents`);
  }
}

/** Writes a section: its id, its size and its contents. */
export function emitSection(
  out: WasmWriter,
  id: number,
  content: Uint8Array,
): void {
  out.u8(id);
  out.u32(content.length);
  out.bytes(content);
}
