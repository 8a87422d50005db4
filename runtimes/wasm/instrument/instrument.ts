/**
 * Our own WebAssembly binary rewriter: makes a guest module interrupt itself
 * and caps its memory, so that a hostile plugin cannot stall a worker thread
 * forever (Deno's `Worker.terminate()` does not stop a thread that is spinning
 * in WASM) nor grow its memory past the plugin's limit.
 *
 * What {@link instrumentModule} does to a module:
 *
 * - **Interrupt import.** Adds the function import `gk.interrupt: () -> i32`
 *   ({@link INTERRUPT_IMPORT}) after the existing imports. Its function index
 *   is the number of imported functions, so every defined function's index
 *   shifts by one: `call`, `return_call`, `ref.func`, exports, element segments
 *   (all eight forms, including expressions), the start function and
 *   `ref.func` in global initialisers are remapped.
 * - **Fuel.** Adds one mutable, non-exported i32 global (appended after the
 *   module's own globals, so no existing global index moves; guest code that
 *   names a global index past its own is refused, so it cannot reach it)
 *   holding the fuel, initially {@link FUEL}. Checks of the form
 *   `fuel -= w; if (fuel <= 0) fuel = gk.interrupt()` are inserted at every
 *   `loop` header, before every bulk memory/table operation (w = length / 1024)
 *   and at the entry of every function that is part of a call cycle
 *   (recursion, tail-call loops, indirect calls among address-taken or
 *   exported functions) or starts a call tree too big to leave unchecked.
 *   Functions without loops or such calls are straight-line code of bounded
 *   length and get no check. The weight `w` grows with the code a check covers
 *   (1 per {@link BYTES_PER_FUEL} bytes; 1 for a tight loop), so one fuel unit
 *   is roughly 1–10 ns of guest work. Inside a function with loops the fuel
 *   lives in a local (a register): loaded at entry, written back before calls
 *   and exits, reloaded after calls; and each parameterless loop is wrapped
 *   so that the `gk.interrupt` call sits outside the loop body. The host's
 *   `interrupt` returns the new fuel (normally {@link FUEL}) or throws to stop
 *   the guest: a JS exception thrown from an import unwinds the whole WASM
 *   call.
 * - **Memory cap.** The module's own memory gets the maximum
 *   `min(declared maximum, memoryLimitPages)`, so `memory.grow` past it returns
 *   -1 inside the guest. A module whose memory needs more pages at start than
 *   the limit, that imports its memory, or that has several memories, shared
 *   memory or memory64, is refused.
 * - **Whole code section decoded.** MVP, sign-extension, non-trapping
 *   float-to-int, bulk memory, reference types (incl. typed `select` and
 *   multiple tables), multi-value, fixed-width SIMD and tail calls are
 *   supported. Anything else (exception handling, GC, typed function
 *   references, threads/atomics, relaxed SIMD, memory64, multi-memory, unknown
 *   opcodes) raises {@link WasmInstrumentError} naming the opcode and its byte
 *   offset: a module is never passed through uninstrumented.
 * - **Custom sections.** `name` is dropped (its function indices would be
 *   stale), and so are sections that hold code offsets (`.debug_*`,
 *   `sourceMappingURL`, `external_debug_info`, `metadata.code.*`, `linking`,
 *   `reloc.*`). Other custom sections (`producers`, `target_features`, …) are
 *   kept in place.
 *
 * The result is checked with `WebAssembly.validate`; an invalid input module
 * is refused with a {@link WasmInstrumentError} carrying V8's message.
 *
 * @example Instrument, compile and run a module
 * ```ts
 * import { FUEL, instrumentModule, INTERRUPT_IMPORT } from "./instrument.ts";
 *
 * declare const original: Uint8Array; // a plugin's .wasm bytes
 * const { bytes } = instrumentModule(original, { memoryLimitPages: 256 });
 * const deadline = Date.now() + 1000;
 * const instance = new WebAssembly.Instance(new WebAssembly.Module(bytes), {
 *   [INTERRUPT_IMPORT.module]: {
 *     [INTERRUPT_IMPORT.name]: () => {
 *       if (Date.now() > deadline) throw new Error("deadline exceeded");
 *       return FUEL;
 *     },
 *   },
 * });
 * ```
 *
 * @module
 */

import { createHash } from "node:crypto";
import {
  checkFunc,
  checkGlobal,
  type ModuleState,
  remapFunc,
  rewriteCode,
} from "./_code_rewriter.ts";
import { isRefType, isValType, refusedTypeReason } from "./_opcodes.ts";
import { hex, WasmInstrumentError, WasmReader } from "./_wasm_reader.ts";
import { WasmWriter } from "./_wasm_writer.ts";

export { WasmInstrumentError };
export { BYTES_PER_FUEL } from "./_code_rewriter.ts";

/** The function import added to every instrumented module: `() -> i32`. */
export const INTERRUPT_IMPORT = { module: "gk", name: "interrupt" } as const;

/**
 * Fuel units per refill, and the fuel global's initial value. A tight loop
 * spends one unit per iteration, so it reaches `gk.interrupt` every
 * {@link FUEL} iterations (10–50 µs); bigger loop bodies and call trees spend
 * more per check (see {@link BYTES_PER_FUEL}), so guest code reaches it
 * within about 0.1–1 ms. The host's `interrupt` should return this value to
 * refuel.
 */
export const FUEL = 10_000;

/** Default memory limit in 64 KiB pages (16 MiB). */
export const DEFAULT_MEMORY_LIMIT_PAGES = 256;

/** Options of {@link instrumentModule}. */
export interface InstrumentOptions {
  /**
   * Largest memory the module may have, in 64 KiB pages (0–65536).
   *
   * @default {256}
   */
  memoryLimitPages?: number;
  /**
   * Not configurable: the fuel per refill is what `gk.interrupt` returns
   * (normally {@link FUEL}).
   */
  fuelPerRefill?: never;
}

/** The result of {@link instrumentModule}. */
export interface InstrumentedModule {
  /**
   * The rewritten module (backed by a plain `ArrayBuffer`, so it can be given
   * to `new WebAssembly.Module` as it is). Treat as read-only: the cache may
   * share it.
   */
  bytes: Uint8Array<ArrayBuffer>;
  /** Hex SHA-256 of the input bytes together with the options and rewriter version. */
  hash: string;
  /**
   * The memory maximum written into the module, in pages: the smaller of the
   * module's declared maximum and the limit; 0 when the module defines no
   * memory.
   */
  memoryMaxPages: number;
}

/** Version of the rewriting scheme; part of the hash so caches never mix schemes. */
const REWRITER_VERSION = "gk-instrument/1";

// Section ids and their canonical order.
const SEC_CUSTOM = 0;
const SEC_TYPE = 1;
const SEC_IMPORT = 2;
const SEC_FUNCTION = 3;
const SEC_TABLE = 4;
const SEC_MEMORY = 5;
const SEC_GLOBAL = 6;
const SEC_EXPORT = 7;
const SEC_START = 8;
const SEC_ELEMENT = 9;
const SEC_CODE = 10;
const SEC_DATA = 11;
const SEC_DATACOUNT = 12;
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
const SECTION_RANK: Record<number, number> = {
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

/** Custom sections dropped because they refer to function indices or code offsets. */
function dropCustomSection(name: string): boolean {
  return name === "name" || name.startsWith(".debug_") ||
    name === "sourceMappingURL" || name === "external_debug_info" ||
    name.startsWith("metadata.code.") || name === "linking" ||
    name.startsWith("reloc.");
}

function resolveLimit(options: InstrumentOptions | undefined): number {
  const limit = options?.memoryLimitPages ?? DEFAULT_MEMORY_LIMIT_PAGES;
  if (!Number.isInteger(limit) || limit < 0 || limit > 65536) {
    throw new RangeError(
      `Cannot instrument WebAssembly module: "memoryLimitPages" must be an integer from 0 to 65536, got ${limit}`,
    );
  }
  return limit;
}

function computeHash(bytes: Uint8Array, limit: number): string {
  return createHash("sha256")
    .update(bytes)
    .update(`\0${REWRITER_VERSION};memoryLimitPages=${limit};fuel=${FUEL}`)
    .digest("hex");
}

/**
 * Rewrites a WebAssembly module so that it interrupts itself through
 * `gk.interrupt` and cannot grow its memory past the limit (see the module
 * documentation for exactly what changes).
 *
 * @param bytes The original module.
 * @param options Memory limit.
 * @returns The rewritten module, its content hash and its memory maximum.
 * @throws {WasmInstrumentError} The module is malformed, invalid, uses an
 * unsupported proposal or opcode, imports its memory, or needs more memory at
 * start than the limit.
 * @throws {RangeError} `memoryLimitPages` is not an integer from 0 to 65536.
 *
 * @example
 * ```ts
 * import { instrumentModule } from "./instrument.ts";
 * declare const wasm: Uint8Array;
 * const { bytes, hash, memoryMaxPages } = instrumentModule(wasm, {
 *   memoryLimitPages: 64,
 * });
 * ```
 */
export function instrumentModule(
  bytes: Uint8Array,
  options?: InstrumentOptions,
): InstrumentedModule {
  const limit = resolveLimit(options);
  const hash = computeHash(bytes, limit);
  return rewrite(bytes, limit, hash);
}

interface CacheEntry {
  promise: Promise<InstrumentedModule>;
  size: number;
}

/** Most entries kept by {@link instrumentModuleCached}. */
const CACHE_MAX_ENTRIES = 64;
/** Most output bytes kept by {@link instrumentModuleCached}. */
const CACHE_MAX_BYTES = 128 * 1024 * 1024;
const cache = new Map<string, CacheEntry>();
let cacheBytes = 0;

/**
 * {@link instrumentModule} with a bounded LRU cache keyed by the content hash
 * (input bytes + options): loading the same plugin again, or re-instantiating
 * it, does not rewrite it again. Failures are not cached. The returned object
 * may be shared between callers: do not modify its bytes.
 *
 * @param bytes The original module.
 * @param options Memory limit.
 * @returns The rewritten module, its content hash and its memory maximum.
 * @throws {WasmInstrumentError} As {@link instrumentModule}.
 *
 * @example
 * ```ts
 * import { instrumentModuleCached } from "./instrument.ts";
 * declare const wasm: Uint8Array;
 * const a = await instrumentModuleCached(wasm);
 * const b = await instrumentModuleCached(wasm);
 * console.log(a === b); // true
 * ```
 */
export async function instrumentModuleCached(
  bytes: Uint8Array,
  options?: InstrumentOptions,
): Promise<InstrumentedModule> {
  const limit = resolveLimit(options);
  const hash = computeHash(bytes, limit);
  const hit = cache.get(hash);
  if (hit) {
    cache.delete(hash);
    cache.set(hash, hit);
    return await hit.promise;
  }
  const result = rewrite(bytes, limit, hash);
  const size = result.bytes.length;
  if (size <= CACHE_MAX_BYTES) {
    cache.set(hash, { promise: Promise.resolve(result), size });
    cacheBytes += size;
    for (const [key, entry] of cache) {
      if (cache.size <= CACHE_MAX_ENTRIES && cacheBytes <= CACHE_MAX_BYTES) {
        break;
      }
      cache.delete(key);
      cacheBytes -= entry.size;
    }
  }
  return await Promise.resolve(result);
}

interface SectionSpan {
  id: number;
  /** Offset of the section id byte. */
  at: number;
  /** Contents window. */
  start: number;
  end: number;
}

function readSections(bytes: Uint8Array): SectionSpan[] {
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

function checkEnd(r: WasmReader, what: string): void {
  if (r.pos !== r.end) {
    r.fail(`${what} section size does not match its contents`);
  }
}

function readValType(r: WasmReader): void {
  const pos = r.pos;
  const b = r.u8();
  if (!isValType(b)) {
    r.fail(`unsupported value type ${hex(b)} (${refusedTypeReason(b)})`, pos);
  }
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

function emitSection(out: WasmWriter, id: number, content: Uint8Array): void {
  out.u8(id);
  out.u32(content.length);
  out.bytes(content);
}

function rewrite(
  bytes: Uint8Array,
  limit: number,
  hash: string,
): InstrumentedModule {
  if (!(bytes instanceof Uint8Array)) {
    throw new TypeError(
      "Cannot instrument WebAssembly module: bytes must be a Uint8Array",
    );
  }
  const spans = readSections(bytes);
  const s: ModuleState = {
    numTypes: 0,
    typeParams: [],
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
  };
  const out = new WasmWriter(bytes.length + bytes.length / 4 + 64);
  out.bytes(bytes.subarray(0, 8));

  let typeDone = false;
  let importDone = false;
  let globalDone = false;
  let functionCount = 0;
  let sawCode = false;

  const emitSynthetic = (rank: number) => {
    if (!typeDone && rank > SECTION_RANK[SEC_TYPE]!) {
      typeDone = true;
      const w = new WasmWriter(8);
      w.u32(1);
      w.bytes(new Uint8Array([0x60, 0x00, 0x01, 0x7f]));
      s.interruptType = 0;
      emitSection(out, SEC_TYPE, w.view());
    }
    if (!importDone && rank > SECTION_RANK[SEC_IMPORT]!) {
      importDone = true;
      const w = new WasmWriter(32);
      w.u32(1);
      writeInterruptImport(w, s);
      s.interruptFunc = 0;
      emitSection(out, SEC_IMPORT, w.view());
    }
    if (!globalDone && rank > SECTION_RANK[SEC_GLOBAL]!) {
      globalDone = true;
      const w = new WasmWriter(16);
      w.u32(1);
      writeFuelGlobal(w);
      finishGlobals(s);
      emitSection(out, SEC_GLOBAL, w.view());
    }
  };

  for (const span of spans) {
    const r = new WasmReader(bytes, span.start, span.end);
    if (span.id === SEC_CUSTOM) {
      const name = r.name();
      if (!dropCustomSection(name)) {
        out.bytes(bytes.subarray(span.at, span.end));
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
          const np = r.u32();
          for (let j = 0; j < np; j++) readValType(r);
          s.typeParams.push(np);
          const nr = r.u32();
          for (let j = 0; j < nr; j++) readValType(r);
        }
        checkEnd(r, "type");
        s.numTypes = count;
        s.interruptType = count;
        s.typeParams.push(0);
        w.u32(count + 1);
        w.bytes(bytes.subarray(entriesStart, span.end));
        w.bytes(new Uint8Array([0x60, 0x00, 0x01, 0x7f]));
        typeDone = true;
        break;
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
              s.numFuncImports++;
              break;
            }
            case 1:
              readTableType(r);
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
        for (let i = 0; i < count; i++) {
          const pos = r.pos;
          const t = r.u32();
          if (t >= s.numTypes) r.fail(`type index ${t} out of range`, pos);
          s.funcTypes.push(t);
        }
        checkEnd(r, "function");
        s.numDefinedFuncs = count;
        functionCount = count;
        w.bytes(bytes.subarray(span.start, span.end));
        break;
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
        rewriteElements(r, w, s);
        break;
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
        rewriteCode(r, count, s, w);
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
    emitSection(out, span.id, w.view());
  }
  emitSynthetic(Infinity);
  if (!sawCode && functionCount !== 0) {
    throw new WasmInstrumentError(
      `the function section declares ${functionCount} functions but there is no code section`,
    );
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
  return { bytes: result, hash, memoryMaxPages: s.memoryMaxPages };
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

function rewriteElements(r: WasmReader, w: WasmWriter, s: ModuleState): void {
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
        markAddressTaken(s, idx);
        w.u32(remapFunc(s, idx));
      }
    }
  }
  checkEnd(r, "element");
}
