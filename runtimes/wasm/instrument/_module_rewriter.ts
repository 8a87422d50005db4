/**
 * Private: rewrites a module section by section around the code section
 * (which `_code_rewriter.ts` handles). It decodes and checks every section,
 * and:
 *
 * - adds the `() -> i32` type, the `gk.interrupt` import after the other
 *   imports and the fuel global after the module's own globals (creating
 *   those sections when the module has none), and the types and function
 *   entries of the threaded copies that the code rewriter appends;
 * - remaps the function indices that the added import shifts: exports,
 *   element segments, the start function and `ref.func` in constant
 *   expressions, and records which functions are address-taken;
 * - caps the memory maximum at the limit, refusing imported, multiple,
 *   shared and 64-bit memories and memories that need more at start;
 * - drops the custom sections that refer to function indices or code
 *   offsets;
 * - checks the result with `WebAssembly.validate`.
 *
 * @module
 */

import { rewriteCode } from "./_code_rewriter.ts";
import {
  checkFunc,
  checkGlobal,
  type CodeAdditions,
  type ModuleState,
  remapFunc,
} from "./_module_state.ts";
import { isRefType, isValType, refusedTypeReason } from "./_opcodes.ts";
import {
  checkEnd,
  emitSection,
  readSections,
  SEC_CODE,
  SEC_CUSTOM,
  SEC_DATA,
  SEC_DATACOUNT,
  SEC_ELEMENT,
  SEC_EXPORT,
  SEC_FUNCTION,
  SEC_GLOBAL,
  SEC_IMPORT,
  SEC_MEMORY,
  SEC_START,
  SEC_TABLE,
  SEC_TYPE,
  SECTION_RANK,
} from "./_sections.ts";
import { hex, WasmReader } from "./_wasm_reader.ts";
import { WasmWriter } from "./_wasm_writer.ts";
import { FUEL, INTERRUPT_IMPORT } from "./constants.ts";
import { WasmInstrumentError } from "./wasm_instrument_error.ts";

/** The output of {@link rewriteModule}. */
export interface RewrittenModule {
  /** The rewritten module. */
  bytes: Uint8Array<ArrayBuffer>;
  /**
   * The memory maximum written into the module, in pages; 0 when the module
   * defines no memory.
   */
  memoryMaxPages: number;
}

/** Custom sections dropped because they refer to function indices or code offsets. */
function dropCustomSection(name: string): boolean {
  return name === "name" || name.startsWith(".debug_") ||
    name === "sourceMappingURL" || name === "external_debug_info" ||
    name.startsWith("metadata.code.") || name === "linking" ||
    name.startsWith("reloc.");
}

function readValType(r: WasmReader): number {
  const pos = r.pos;
  const b = r.u8();
  if (!isValType(b)) {
    r.fail(`unsupported value type ${hex(b)} (${refusedTypeReason(b)})`, pos);
  }
  return b;
}

function readRefType(r: WasmReader): void {
  const pos = r.pos;
  const b = r.u8();
  if (!isRefType(b)) {
    r.fail(
      `unsupported reference type ${hex(b)} (${refusedTypeReason(b)})`,
      pos,
    );
  }
}

function readTableLimits(r: WasmReader): void {
  const pos = r.pos;
  const flags = r.u8();
  if (flags > 1) {
    r.fail(
      `unsupported table limits flags ${hex(flags)} (${
        flags & 4 ? "table64" : "shared table"
      })`,
      pos,
    );
  }
  r.u32();
  if (flags & 1) r.u32();
}

function readTableType(r: WasmReader): void {
  readRefType(r);
  readTableLimits(r);
}

/** Reads a constant expression, writing it to `w` with function indices remapped. */
function constExpr(r: WasmReader, w: WasmWriter, s: ModuleState): void {
  for (;;) {
    const pos = r.pos;
    const op = r.u8();
    switch (op) {
      case 0x0b: // end
        w.u8(op);
        return;
      case 0x41: // i32.const
      case 0x42: { // i64.const
        r.skipSigned(op === 0x41 ? 32 : 64);
        w.bytes(r.buf.subarray(pos, r.pos));
        break;
      }
      case 0x43: // f32.const
      case 0x44: // f64.const
        r.advance(op === 0x43 ? 4 : 8);
        w.bytes(r.buf.subarray(pos, r.pos));
        break;
      case 0x23: { // global.get
        const ipos = r.pos;
        checkGlobal(r, s, r.u32(), ipos);
        w.bytes(r.buf.subarray(pos, r.pos));
        break;
      }
      case 0xd0: // ref.null
        readRefType(r);
        w.bytes(r.buf.subarray(pos, r.pos));
        break;
      case 0xd2: { // ref.func
        const ipos = r.pos;
        const idx = r.u32();
        checkFunc(r, s, idx, ipos);
        markAddressTaken(s, idx);
        w.u8(op);
        w.u32(remapFunc(s, idx));
        break;
      }
      case 0x6a: // i32.add, extended-const
      case 0x6b:
      case 0x6c:
      case 0x7c:
      case 0x7d:
      case 0x7e:
        w.u8(op);
        break;
      case 0xfd: { // v128.const
        const sub = r.u32();
        if (sub !== 0x0c) {
          r.fail(
            `unsupported instruction 0xfd ${sub} in a constant expression`,
            pos,
          );
        }
        r.advance(16);
        w.bytes(r.buf.subarray(pos, r.pos));
        break;
      }
      default:
        r.fail(
          `unsupported instruction ${hex(op)} in a constant expression`,
          pos,
        );
    }
  }
}

/**
 * Rewrites a module: interrupt import, fuel global, fuel checks in the code,
 * remapped function indices, memory capped at `limit` pages; the result is
 * validated.
 *
 * @param bytes The original module.
 * @param limit Largest memory maximum in pages (already checked: 0–65536).
 * @returns The rewritten module and its memory maximum.
 * @throws {WasmInstrumentError} The module is malformed, invalid, uses an
 * unsupported proposal or opcode, imports its memory, or needs more memory at
 * start than the limit.
 * @throws {TypeError} `bytes` is not a `Uint8Array`.
 */
export function rewriteModule(
  bytes: Uint8Array,
  limit: number,
): RewrittenModule {
  if (!(bytes instanceof Uint8Array)) {
    throw new TypeError(
      "Cannot instrument WebAssembly module: bytes must be a Uint8Array",
    );
  }
  const spans = readSections(bytes);
  const s: ModuleState = {
    numTypes: 0,
    typeParams: [],
    typeSigs: [],
    numFuncImports: 0,
    numGlobalImports: 0,
    numDefinedFuncs: 0,
    numDefinedGlobals: 0,
    funcTypes: [],
    addressTaken: new Set(),
    interruptFunc: 0,
    fuelGlobal: 0,
    interruptType: 0,
    memoryMaxPages: 0,
    tablesClosed: true,
    importFuncTypes: [],
    tableFuncs: [],
    elemTarget: null,
  };
  const out = new WasmWriter(bytes.length + bytes.length / 4 + 64);
  out.bytes(bytes.subarray(0, 8));

  // Sections in output order; the type and function sections are written
  // last, once the code rewriter has said what they gain.
  const parts: { id: number; data: Uint8Array }[] = [];
  let typeEntries: Uint8Array = new Uint8Array(0);
  let functionEntries: Uint8Array = new Uint8Array(0);
  let additions: CodeAdditions = { types: [], funcTypes: [] };
  let typeDone = false;
  let importDone = false;
  let globalDone = false;
  let functionCount = 0;
  let sawCode = false;
  let elementSpan = { start: 0, end: 0 };

  const emitSynthetic = (rank: number) => {
    if (!typeDone && rank > SECTION_RANK[SEC_TYPE]!) {
      typeDone = true;
      s.interruptType = 0;
      parts.push({ id: SEC_TYPE, data: TYPE_SLOT });
    }
    if (!importDone && rank > SECTION_RANK[SEC_IMPORT]!) {
      importDone = true;
      const w = new WasmWriter(32);
      w.u32(1);
      writeInterruptImport(w, s);
      s.interruptFunc = 0;
      parts.push({ id: SEC_IMPORT, data: w.finish() });
    }
    if (!globalDone && rank > SECTION_RANK[SEC_GLOBAL]!) {
      globalDone = true;
      const w = new WasmWriter(16);
      w.u32(1);
      writeFuelGlobal(w);
      finishGlobals(s);
      parts.push({ id: SEC_GLOBAL, data: w.finish() });
    }
  };

  for (const span of spans) {
    const r = new WasmReader(bytes, span.start, span.end);
    if (span.id === SEC_CUSTOM) {
      const name = r.name();
      if (!dropCustomSection(name)) {
        parts.push({ id: SEC_CUSTOM, data: bytes.subarray(span.at, span.end) });
      }
      continue;
    }
    emitSynthetic(SECTION_RANK[span.id]!);
    const w = new WasmWriter(span.end - span.start + 32);
    switch (span.id) {
      case SEC_TYPE: {
        const count = r.u32();
        const entriesStart = r.pos;
        for (let i = 0; i < count; i++) {
          const pos = r.pos;
          const form = r.u8();
          if (form !== 0x60) {
            r.fail(
              `unsupported type form ${hex(form)} (${
                form === 0x4e || form === 0x50 || form === 0x4f ||
                  form === 0x5f || form === 0x5e
                  ? "GC"
                  : "unknown"
              })`,
              pos,
            );
          }
          const params: number[] = [];
          const np = r.u32();
          for (let j = 0; j < np; j++) params.push(readValType(r));
          const results: number[] = [];
          const nr = r.u32();
          for (let j = 0; j < nr; j++) results.push(readValType(r));
          s.typeParams.push(np);
          s.typeSigs.push({ params, results });
        }
        checkEnd(r, "type");
        s.numTypes = count;
        s.interruptType = count;
        s.typeParams.push(0);
        s.typeSigs.push({ params: [], results: [0x7f] });
        typeEntries = bytes.subarray(entriesStart, span.end);
        typeDone = true;
        parts.push({ id: SEC_TYPE, data: TYPE_SLOT });
        continue;
      }
      case SEC_IMPORT: {
        const count = r.u32();
        const entriesStart = r.pos;
        for (let i = 0; i < count; i++) {
          const pos = r.pos;
          const module = r.name();
          const field = r.name();
          const kpos = r.pos;
          const kind = r.u8();
          if (
            module === INTERRUPT_IMPORT.module &&
            field === INTERRUPT_IMPORT.name
          ) {
            r.fail(
              `the module already imports "${module}.${field}", which the instrumenter adds`,
              pos,
            );
          }
          switch (kind) {
            case 0: {
              const tpos = r.pos;
              const t = r.u32();
              if (t >= s.numTypes) r.fail(`type index ${t} out of range`, tpos);
              s.importFuncTypes.push(t);
              s.numFuncImports++;
              break;
            }
            case 1:
              readTableType(r);
              s.tablesClosed = false;
              break;
            case 2:
              r.fail(
                `imported memory "${module}.${field}" is not supported (a plugin must define its own memory)`,
                pos,
              );
              break;
            case 3: {
              readValType(r);
              const mpos = r.pos;
              const mut = r.u8();
              if (mut > 1) r.fail(`bad global mutability ${hex(mut)}`, mpos);
              s.numGlobalImports++;
              break;
            }
            case 4:
              r.fail("tag import: exception handling is not supported", kpos);
              break;
            default:
              r.fail(`unknown import kind ${hex(kind)}`, kpos);
          }
        }
        checkEnd(r, "import");
        w.u32(count + 1);
        w.bytes(bytes.subarray(entriesStart, span.end));
        writeInterruptImport(w, s);
        s.interruptFunc = s.numFuncImports;
        importDone = true;
        break;
      }
      case SEC_FUNCTION: {
        const count = r.u32();
        const entriesStart = r.pos;
        for (let i = 0; i < count; i++) {
          const pos = r.pos;
          const t = r.u32();
          if (t >= s.numTypes) r.fail(`type index ${t} out of range`, pos);
          s.funcTypes.push(t);
        }
        checkEnd(r, "function");
        s.numDefinedFuncs = count;
        functionCount = count;
        functionEntries = bytes.subarray(entriesStart, span.end);
        parts.push({ id: SEC_FUNCTION, data: FUNCTION_SLOT });
        continue;
      }
      case SEC_TABLE: {
        const count = r.u32();
        for (let i = 0; i < count; i++) {
          const pos = r.pos;
          if (r.pos < r.end && bytes[r.pos] === 0x40) {
            r.fail(
              "table with an initialiser expression (typed function references) is not supported",
              pos,
            );
          }
          readTableType(r);
        }
        checkEnd(r, "table");
        w.bytes(bytes.subarray(span.start, span.end));
        break;
      }
      case SEC_MEMORY: {
        const count = r.u32();
        if (count > 1) {
          r.fail(
            `${count} memories: multiple memories are not supported`,
            span.start,
          );
        }
        w.u32(count);
        if (count === 1) {
          const pos = r.pos;
          const flags = r.u8();
          if (flags > 1) {
            r.fail(
              `unsupported memory limits flags ${hex(flags)} (${
                flags & 8
                  ? "custom page sizes"
                  : flags & 4
                  ? "memory64"
                  : flags & 2
                  ? "shared memory (threads)"
                  : "unknown"
              })`,
              pos,
            );
          }
          const min = r.u32();
          const max = flags & 1 ? r.u32() : undefined;
          if (min > limit) {
            throw new WasmInstrumentError(
              `memory needs ${min} pages at start, limit is ${limit}`,
              pos,
            );
          }
          const newMax = max === undefined ? limit : Math.min(max, limit);
          s.memoryMaxPages = newMax;
          w.u8(0x01);
          w.u32(min);
          w.u32(newMax);
        }
        checkEnd(r, "memory");
        break;
      }
      case SEC_GLOBAL: {
        const count = r.u32();
        s.numDefinedGlobals = count;
        w.u32(count + 1);
        for (let i = 0; i < count; i++) {
          const pos = r.pos;
          readValType(r);
          const mpos = r.pos;
          const mut = r.u8();
          if (mut > 1) r.fail(`bad global mutability ${hex(mut)}`, mpos);
          w.bytes(bytes.subarray(pos, r.pos));
          constExpr(r, w, s);
        }
        checkEnd(r, "global");
        writeFuelGlobal(w);
        finishGlobals(s);
        globalDone = true;
        break;
      }
      case SEC_EXPORT: {
        const count = r.u32();
        w.u32(count);
        for (let i = 0; i < count; i++) {
          const pos = r.pos;
          r.name();
          const kpos = r.pos;
          const kind = r.u8();
          w.bytes(bytes.subarray(pos, r.pos));
          const ipos = r.pos;
          const idx = r.u32();
          switch (kind) {
            case 0:
              checkFunc(r, s, idx, ipos);
              markAddressTaken(s, idx);
              w.u32(remapFunc(s, idx));
              break;
            case 1:
              s.tablesClosed = false;
              w.u32(idx);
              break;
            case 2:
              w.u32(idx);
              break;
            case 3:
              checkGlobal(r, s, idx, ipos);
              w.u32(idx);
              break;
            case 4:
              r.fail("tag export: exception handling is not supported", kpos);
              break;
            default:
              r.fail(`unknown export kind ${hex(kind)}`, kpos);
          }
        }
        checkEnd(r, "export");
        break;
      }
      case SEC_START: {
        const pos = r.pos;
        const idx = r.u32();
        checkFunc(r, s, idx, pos);
        checkEnd(r, "start");
        w.u32(remapFunc(s, idx));
        break;
      }
      case SEC_ELEMENT:
        // Checked and recorded now, written once the code rewriter has
        // chosen the entries (see ELEMENT_SLOT).
        rewriteElements(r, w, s, true);
        elementSpan = { start: span.start, end: span.end };
        parts.push({ id: SEC_ELEMENT, data: ELEMENT_SLOT });
        continue;
      case SEC_DATACOUNT:
        r.u32();
        checkEnd(r, "data count");
        w.bytes(bytes.subarray(span.start, span.end));
        break;
      case SEC_CODE: {
        sawCode = true;
        const count = r.u32();
        if (count !== functionCount) {
          r.fail(
            `code section has ${count} bodies but the function section declares ${functionCount}`,
            span.start,
          );
        }
        additions = rewriteCode(r, count, s, w);
        checkEnd(r, "code");
        break;
      }
      case SEC_DATA: {
        const count = r.u32();
        const scratch = new WasmWriter(64);
        for (let i = 0; i < count; i++) {
          const pos = r.pos;
          const flags = r.u32();
          if (flags === 0 || flags === 2) {
            if (flags === 2) {
              const mpos = r.pos;
              if (r.u32() !== 0) {
                r.fail("data segment for memory other than 0", mpos);
              }
            }
            constExpr(r, scratch, s);
            scratch.reset();
          } else if (flags !== 1) {
            r.fail(`unknown data segment flags ${flags}`, pos);
          }
          r.advance(r.u32());
        }
        checkEnd(r, "data");
        w.bytes(bytes.subarray(span.start, span.end));
        break;
      }
    }
    parts.push({ id: span.id, data: w.finish() });
  }
  emitSynthetic(Infinity);
  if (!sawCode && functionCount !== 0) {
    throw new WasmInstrumentError(
      `the function section declares ${functionCount} functions but there is no code section`,
    );
  }

  for (const part of parts) {
    if (part.id === SEC_CUSTOM) {
      out.bytes(part.data);
    } else if (part.data === TYPE_SLOT) {
      emitSection(out, SEC_TYPE, typeSection(s, typeEntries, additions));
    } else if (part.data === ELEMENT_SLOT) {
      const w = new WasmWriter(elementSpan.end - elementSpan.start + 32);
      rewriteElements(
        new WasmReader(bytes, elementSpan.start, elementSpan.end),
        w,
        s,
        false,
      );
      emitSection(out, SEC_ELEMENT, w.finish());
    } else if (part.data === FUNCTION_SLOT) {
      emitSection(
        out,
        SEC_FUNCTION,
        functionSection(functionCount, functionEntries, additions),
      );
    } else {
      emitSection(out, part.id, part.data);
    }
  }
  const result = out.finish();
  if (!WebAssembly.validate(result)) {
    let detail = "";
    try {
      new WebAssembly.Module(bytes as Uint8Array<ArrayBuffer>);
    } catch (e) {
      detail = e instanceof Error ? e.message : String(e);
    }
    if (detail) {
      throw new WasmInstrumentError(`the module is not valid: ${detail}`);
    }
    throw new WasmInstrumentError(
      "internal error: the instrumented module does not validate although the original does",
    );
  }
  return { bytes: result, memoryMaxPages: s.memoryMaxPages };
}

/** Placeholder for the type section in the list of output sections. */
const TYPE_SLOT = new Uint8Array(0);
/** Placeholder for the function section in the list of output sections. */
const FUNCTION_SLOT = new Uint8Array(0);
/** Placeholder for the element section in the list of output sections. */
const ELEMENT_SLOT = new Uint8Array(0);

/** The type section: original entries, `() -> i32`, then the added types. */
function typeSection(
  s: ModuleState,
  entries: Uint8Array,
  additions: CodeAdditions,
): Uint8Array {
  const w = new WasmWriter(entries.length + 16);
  w.u32(s.interruptType + 1 + additions.types.length);
  w.bytes(entries);
  w.bytes(new Uint8Array([0x60, 0x00, 0x01, 0x7f]));
  for (const t of additions.types) w.bytes(t);
  return w.finish();
}

/** The function section: original entries, then the appended functions'. */
function functionSection(
  count: number,
  entries: Uint8Array,
  additions: CodeAdditions,
): Uint8Array {
  const w = new WasmWriter(entries.length + 16);
  w.u32(count + additions.funcTypes.length);
  w.bytes(entries);
  for (const t of additions.funcTypes) w.u32(t);
  return w.finish();
}

function markAddressTaken(s: ModuleState, idx: number): void {
  if (idx >= s.numFuncImports) s.addressTaken.add(idx - s.numFuncImports);
}

function writeInterruptImport(w: WasmWriter, s: ModuleState): void {
  w.name(INTERRUPT_IMPORT.module);
  w.name(INTERRUPT_IMPORT.name);
  w.u8(0x00);
  w.u32(s.interruptType);
}

function writeFuelGlobal(w: WasmWriter): void {
  w.u8(0x7f); // i32
  w.u8(0x01); // mutable
  w.u8(0x41); // i32.const FUEL
  w.s32(FUEL);
  w.u8(0x0b);
}

function finishGlobals(s: ModuleState): void {
  s.fuelGlobal = s.numGlobalImports + s.numDefinedGlobals;
}

/**
 * Reads the element section and writes it with function indices remapped.
 * The first pass (`record`) checks it and records the address-taken
 * functions and the table entries; the second writes the entries the code
 * rewriter chose (`s.elemTarget`).
 */
function rewriteElements(
  r: WasmReader,
  w: WasmWriter,
  s: ModuleState,
  record: boolean,
): void {
  const count = r.u32();
  w.u32(count);
  for (let i = 0; i < count; i++) {
    const pos = r.pos;
    const flags = r.u32();
    if (flags > 7) r.fail(`unknown element segment flags ${flags}`, pos);
    w.u32(flags);
    const passiveOrDeclarative = (flags & 1) !== 0;
    const explicitTable = (flags & 2) !== 0;
    const usesExprs = (flags & 4) !== 0;
    if (record && (passiveOrDeclarative || usesExprs)) {
      s.tablesClosed = false;
    }
    if (!passiveOrDeclarative && explicitTable) {
      w.u32(r.u32()); // table index
    }
    if (!passiveOrDeclarative) constExpr(r, w, s); // offset
    if (passiveOrDeclarative || explicitTable) {
      // elemkind (0x00 = funcref) or reftype
      const kpos = r.pos;
      if (usesExprs) {
        readRefType(r);
      } else if (r.u8() !== 0x00) {
        r.fail("unknown element kind", kpos);
      }
      w.bytes(r.buf.subarray(kpos, r.pos));
    }
    const n = r.u32();
    w.u32(n);
    for (let j = 0; j < n; j++) {
      if (usesExprs) {
        constExpr(r, w, s);
      } else {
        const ipos = r.pos;
        const idx = r.u32();
        checkFunc(r, s, idx, ipos);
        if (record) {
          markAddressTaken(s, idx);
          s.tableFuncs.push(idx);
          w.u32(remapFunc(s, idx));
        } else {
          w.u32(s.elemTarget ? s.elemTarget(idx) : remapFunc(s, idx));
        }
      }
    }
  }
  checkEnd(r, "element");
}
