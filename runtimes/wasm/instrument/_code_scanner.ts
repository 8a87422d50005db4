/**
 * Private: decodes one function body for the instrumenter ({@link scanBody}):
 * checks every opcode and immediate, and records where the rewriting edits go
 * (loop headers and ends, calls, exits, branch labels across wrapped loops,
 * bulk operations, function and local indices), the direct call graph and,
 * for every call site, the nearest earlier call site or loop that dominates
 * it (used to skip call-site checks that an earlier check already covers).
 *
 * @module
 */

import {
  FcImm,
  fcImm,
  FdImm,
  Imm,
  isValType,
  OPCODE_IMM,
  refusedOpcodeReason,
  refusedTypeReason,
  SIMD_IMM,
} from "./_opcodes.ts";
import { checkFunc, checkGlobal, type ModuleState } from "./_module_state.ts";
import { hex, type WasmReader } from "./_wasm_reader.ts";

/** Fields per edit: `[kind, pos, a, b, c, d]`. */
export const EDIT = 6;

// Edit kinds.
/**
 * A loop header. pos: the loop opcode; a: just after its block type; b:
 * {@link LOOP_WRAPPED} | {@link LOOP_UNROLLED}; c: its check's weight (set by
 * the planner); d: index of its {@link E_LOOP_END} edit (wrapped loops) or -1.
 */
export const E_LOOP = 1;
/**
 * A direct `call`. pos: the opcode; a: the index position; b: the function
 * index; c: the dominating call site (see {@link ScannedBody.sites}); d: the
 * weight of the check the planner puts before it, or 0.
 */
export const E_CALL = 2;
/** A `return_call`; fields as {@link E_CALL}. */
export const E_RETURN_CALL = 3;
/** `ref.func`. a: the index position; b: the function index. */
export const E_REF_FUNC = 4;
/**
 * A `call_indirect`. pos: the opcode; a: end of the instruction; b: the type
 * index; c, d as {@link E_CALL}.
 */
export const E_CALL_INDIRECT = 5;
/** A `return_call_indirect`; fields as {@link E_CALL_INDIRECT}. */
export const E_RETURN_CALL_INDIRECT = 6;
/** pos: opcode of `return`, of a branch to the function label, or the final `end`. */
export const E_EXIT = 7;
/** pos: the `end` of a wrapped loop; a: its {@link E_LOOP} edit index. */
export const E_LOOP_END = 8;
/** pos: a branch label; a: its value; b: wrapped loops it leaves. */
export const E_LABEL = 9;
/** pos: the 0xfc prefix of a bulk memory/table operation. */
export const E_BULK = 10;

/** {@link E_LOOP} flag: a loop without parameters, wrapped so the refill is outside it. */
export const LOOP_WRAPPED = 1;
/** {@link E_LOOP} flag: a small innermost loop whose body is emitted {@link UNROLL} times. */
export const LOOP_UNROLLED = 2;

/** Copies of an unrolled loop's body per check. */
export const UNROLL = 4;
/**
 * Largest body (bytes) of an innermost, call-free wrapped loop that is
 * unrolled, so that its check runs once per {@link UNROLL} iterations.
 */
export const UNROLL_MAX_BYTES = 32;

/** {@link E_CALL} `c` value: no earlier call site or loop dominates the call. */
export const DOM_NONE = -1;
/** {@link E_CALL} `c` value: a loop check dominates the call. */
export const DOM_LOOP = -2;

/** What the scanner records about one function body. */
export interface ScannedBody {
  /** Start of the body (its local declarations). */
  start: number;
  /** Start of the instructions. */
  code: number;
  end: number;
  /** Parameter count of the function's type. */
  params: number;
  localGroups: number;
  localCount: number;
  hasLoop: boolean;
  hasBulk: boolean;
  /** `call_indirect` / `return_call_indirect` sites. */
  indirectCalls: number;
  /** Direct calls (and tail calls) to imported functions. */
  importCalls: number;
  /** Whether the body has a `return_call_indirect`. */
  hasTailIndirect: boolean;
  /**
   * Position of the first instruction with an effect that running the body
   * again from its start would repeat or miss (a call, a loop, a store, a
   * write to a global, a parameter or a table, a bulk or SIMD operation),
   * or `end` if none: a check before it may restart the function after a
   * refill instead of calling `gk.interrupt` in place.
   */
  pureEnd: number;
  /**
   * Whether the body may put other functions into a table: `table.set`,
   * `table.init`, `table.copy`, `table.grow` or `table.fill`.
   */
  hasTableWrite: boolean;
  /**
   * Per loop: [E_LOOP edit index, body bytes, first and past-last index into
   * callees, indirect and import call sites], to weigh its check once callee
   * costs are known.
   */
  loops: number[];
  /** Direct callees, as defined-function indices, one per call site. */
  callees: number[];
  /** Edit index of every call site (direct, indirect, to imports), in order. */
  sites: number[];
  /** Positions of `local.*` immediates naming a local (not a parameter). */
  localPos: number[];
  edits: number[];
}

function readMemarg(r: WasmReader): void {
  const pos = r.pos;
  const align = r.u32();
  if (align & 0x40) {
    r.fail("memory index in memarg (multiple memories) is not supported", pos);
  }
  r.u32(); // offset (memory32 only)
}

function readZeroMemory(r: WasmReader): void {
  const pos = r.pos;
  if (r.u8() !== 0x00) {
    r.fail(
      "memory index other than 0 (multiple memories) is not supported",
      pos,
    );
  }
}

function readValType(r: WasmReader): void {
  const pos = r.pos;
  const b = r.u8();
  if (!isValType(b)) {
    r.fail(`unsupported value type ${hex(b)} (${refusedTypeReason(b)})`, pos);
  }
}

function readBlockType(r: WasmReader, s: ModuleState): void {
  if (r.pos < r.end) {
    const b = r.buf[r.pos]!;
    if (b === 0x40 || isValType(b)) {
      r.pos++;
      return;
    }
  }
  const pos = r.pos;
  const v = r.s33();
  if (v < 0) {
    const b = r.buf[pos]!;
    r.fail(`unsupported block type ${hex(b)} (${refusedTypeReason(b)})`, pos);
  }
  if (v >= s.numTypes) r.fail(`block type index ${v} out of range`, pos);
}

/**
 * Whether the instruction `op` (immediates at `at`) has an effect that
 * re-running it after a restart of the function would change: see
 * {@link ScannedBody.pureEnd}. Conservative: every 0xfc operation from
 * `memory.init` on and every SIMD operation counts.
 */
function hasEffect(
  op: number,
  buf: Uint8Array,
  at: number,
  params: number,
): boolean {
  if (op >= 0x10 && op <= 0x13) return true; // calls
  if (op === 0x03) return true; // loop
  if (op >= 0x36 && op <= 0x3e) return true; // stores
  if (op === 0x40 || op === 0x24 || op === 0x26) return true; // grow, sets
  if (op === 0xfd) return true;
  if (op === 0xfc) return (buf[at] ?? 0) >= 8 || (buf[at] ?? 0) >= 0x80;
  if (op === 0x21 || op === 0x22) {
    // local.set / local.tee of a parameter (a LEB128 index)
    let v = 0;
    let shift = 0;
    for (let i = at; i < buf.length && shift < 35; i++, shift += 7) {
      v += (buf[i]! & 0x7f) * 2 ** shift;
      if (!(buf[i]! & 0x80)) break;
    }
    return v < params;
  }
  return false;
}

/** Decodes one function body, validating opcodes and recording edits. */
export function scanBody(
  r: WasmReader,
  s: ModuleState,
  params: number,
): ScannedBody {
  const buf = r.buf;
  const start = r.pos;
  const localGroups = r.u32();
  let localCount = 0;
  for (let i = 0; i < localGroups; i++) {
    localCount += r.u32();
    readValType(r);
  }
  const body: ScannedBody = {
    start,
    code: r.pos,
    end: r.end,
    params,
    localGroups,
    localCount,
    hasLoop: false,
    hasBulk: false,
    indirectCalls: 0,
    importCalls: 0,
    hasTailIndirect: false,
    hasTableWrite: false,
    pureEnd: r.end,
    loops: [],
    callees: [],
    sites: [],
    localPos: [],
    edits: [],
  };
  const edits = body.edits;
  const numImports = s.numFuncImports;
  let depth = 1;
  // Per open block: how many wrapped loops are open at or below it, and
  // whether it is a wrapped loop.
  const wrapPrefix: number[] = [0];
  const isWrapped: number[] = [0];
  // Per open block: index of its E_LOOP edit (loops) or -1.
  const loopEdit: number[] = [-1];
  // Per open loop: what had been seen when it opened (see `snapshot`).
  const loopSeen: number[] = [];
  const SEEN = 5;
  let loopsOpened = 0;
  let bulkOps = 0;
  // Dominance of call sites: the nearest earlier call site (edit index) or
  // loop on every path to here, and its value at each open block's start.
  let dom = DOM_NONE;
  const domAtStart: number[] = [DOM_NONE];
  const labelEdits: number[] = [];
  const push = (k: number, pos: number, a: number, b: number, c = 0) => {
    edits.push(k, pos, a, b, c, 0);
  };
  const site = (k: number, pos: number, a: number, b: number) => {
    body.sites.push(edits.length);
    push(k, pos, a, b, dom);
    dom = edits.length - EDIT;
  };
  for (;;) {
    if (r.pos >= r.end) {
      r.fail("function body ends before its final end", r.pos);
    }
    const opPos = r.pos;
    const op = buf[r.pos++]!;
    if (body.pureEnd === r.end && hasEffect(op, buf, r.pos, params)) {
      body.pureEnd = opPos;
    }
    switch (OPCODE_IMM[op]) {
      case Imm.NONE:
        if (op === 0x0f) push(E_EXIT, opPos, 0, 0); // return
        break;
      case Imm.ELSE:
        if (depth < 2) r.fail("else outside of an if", opPos);
        dom = domAtStart[domAtStart.length - 1]!;
        break;
      case Imm.BLOCK:
        readBlockType(r, s);
        depth++;
        wrapPrefix.push(wrapPrefix[wrapPrefix.length - 1]!);
        isWrapped.push(0);
        loopEdit.push(-1);
        domAtStart.push(dom);
        break;
      case Imm.LOOP: {
        readBlockType(r, s);
        depth++;
        body.hasLoop = true;
        // Loops without parameters (empty or single-result block type) are
        // wrapped so the refill call sits outside the loop body.
        const bt = buf[opPos + 1]!;
        const wrap = r.pos === opPos + 2 && (bt === 0x40 || isValType(bt))
          ? 1
          : 0;
        wrapPrefix.push(wrapPrefix[wrapPrefix.length - 1]! + wrap);
        isWrapped.push(wrap);
        loopEdit.push(edits.length);
        loopSeen.push(
          body.callees.length,
          body.indirectCalls + body.importCalls,
          body.sites.length,
          bulkOps,
          ++loopsOpened,
        );
        push(E_LOOP, opPos, r.pos, wrap, 0);
        edits[edits.length - 1] = -1;
        domAtStart.push(dom);
        // The loop's check runs first on every pass through its header.
        dom = DOM_LOOP;
        break;
      }
      case Imm.END:
        if (--depth === 0) {
          if (r.pos !== r.end) {
            r.fail("bytes after the final end of a function body", r.pos);
          }
          push(E_EXIT, opPos, 0, 0);
          return body;
        }
        wrapPrefix.pop();
        {
          const domBefore = domAtStart.pop()!;
          const at = loopEdit.pop()!;
          if (at >= 0) {
            // Remember what the loop's check covers, to weigh it later.
            const base = loopSeen.length - SEEN;
            const calleeStart = loopSeen[base]!;
            const virtStart = loopSeen[base + 1]!;
            const sitesStart = loopSeen[base + 2]!;
            const bulkStart = loopSeen[base + 3]!;
            const loopsAtStart = loopSeen[base + 4]!;
            loopSeen.length = base;
            const bytes = opPos - edits[at + 2]!;
            body.loops.push(
              at,
              bytes,
              calleeStart,
              body.callees.length,
              body.indirectCalls + body.importCalls - virtStart,
            );
            const innermostCallFree = loopsOpened === loopsAtStart &&
              body.sites.length === sitesStart && bulkOps === bulkStart;
            if (isWrapped.pop()) {
              if (innermostCallFree && bytes <= UNROLL_MAX_BYTES) {
                edits[at + 3] = LOOP_WRAPPED | LOOP_UNROLLED;
              }
              edits[at + 5] = edits.length;
              push(E_LOOP_END, opPos, at, 0);
            }
            // Code after a loop has passed its header's check.
            dom = DOM_LOOP;
          } else {
            isWrapped.pop();
            // Conservative: what dominated the block's (or if's) start.
            dom = domBefore;
          }
        }
        break;
      case Imm.LABEL: {
        const lpos = r.pos;
        const label = r.u32();
        if (label >= depth) r.fail(`branch depth ${label} out of range`, lpos);
        if (label === depth - 1) push(E_EXIT, opPos, 0, 0);
        const top = depth - 1;
        const crossed = wrapPrefix[top]! - wrapPrefix[top - label]!;
        if (crossed) push(E_LABEL, lpos, label, crossed);
        break;
      }
      case Imm.BR_TABLE: {
        const n = r.u32();
        let exits = false;
        const top = depth - 1;
        labelEdits.length = 0;
        for (let i = 0; i <= n; i++) {
          const lpos = r.pos;
          const label = r.u32();
          if (label >= depth) {
            r.fail(`branch depth ${label} out of range`, lpos);
          }
          if (label === depth - 1) exits = true;
          const crossed = wrapPrefix[top]! - wrapPrefix[top - label]!;
          if (crossed) labelEdits.push(E_LABEL, lpos, label, crossed, 0, 0);
        }
        if (exits) push(E_EXIT, opPos, 0, 0);
        for (const x of labelEdits) edits.push(x);
        break;
      }
      case Imm.CALL: {
        const ipos = r.pos;
        const idx = r.u32();
        checkFunc(r, s, idx, ipos);
        if (idx >= numImports) body.callees.push(idx - numImports);
        else body.importCalls++;
        site(op === 0x10 ? E_CALL : E_RETURN_CALL, opPos, ipos, idx);
        break;
      }
      case Imm.REF_FUNC: {
        const ipos = r.pos;
        const idx = r.u32();
        checkFunc(r, s, idx, ipos);
        if (idx >= numImports) {
          s.addressTaken.add(idx - numImports);
          push(E_REF_FUNC, ipos, ipos, idx);
        }
        break;
      }
      case Imm.CALL_INDIRECT: {
        const tpos = r.pos;
        const t = r.u32();
        if (t >= s.numTypes) r.fail(`type index ${t} out of range`, tpos);
        r.u32(); // table index
        body.indirectCalls++;
        if (op === 0x11) {
          site(E_CALL_INDIRECT, opPos, r.pos, t);
        } else {
          body.hasTailIndirect = true;
          site(E_RETURN_CALL_INDIRECT, opPos, r.pos, t);
        }
        break;
      }
      case Imm.SELECT_T: {
        const n = r.u32();
        for (let i = 0; i < n; i++) readValType(r);
        break;
      }
      case Imm.LOCAL: {
        const ipos = r.pos;
        if (r.u32() >= params) body.localPos.push(ipos);
        break;
      }
      case Imm.TABLE:
        if (op === 0x26) body.hasTableWrite = true; // table.set
        r.u32();
        break;
      case Imm.GLOBAL: {
        const ipos = r.pos;
        checkGlobal(r, s, r.u32(), ipos);
        break;
      }
      case Imm.MEMARG:
        readMemarg(r);
        break;
      case Imm.MEMORY:
        readZeroMemory(r);
        break;
      case Imm.I32:
        r.skipSigned(32);
        break;
      case Imm.I64:
        r.skipSigned(64);
        break;
      case Imm.F32:
        r.advance(4);
        break;
      case Imm.F64:
        r.advance(8);
        break;
      case Imm.REF_NULL: {
        const pos = r.pos;
        const b = r.u8();
        if (b !== 0x70 && b !== 0x6f) {
          r.fail(
            `unsupported reference type ${hex(b)} (${refusedTypeReason(b)})`,
            pos,
          );
        }
        break;
      }
      case Imm.PREFIX_FC: {
        const sub = r.u32();
        // Length-dependent: memory.init/copy/fill, table.init/copy/grow/fill
        // (not table.size, 16).
        if (
          (sub === 8 || sub === 10 || sub === 11 || sub === 12 ||
            sub === 14 || sub === 15 || sub === 17)
        ) {
          body.hasBulk = true;
          bulkOps++;
          push(E_BULK, opPos, 0, 0);
          // table.init, table.copy, table.grow, table.fill
          if (sub >= 12) body.hasTableWrite = true;
        }
        switch (fcImm(sub)) {
          case FcImm.NONE:
            break;
          case FcImm.DATA_MEM:
            r.u32();
            readZeroMemory(r);
            break;
          case FcImm.DATA:
          case FcImm.ELEM:
          case FcImm.TABLE:
            r.u32();
            break;
          case FcImm.MEM_MEM:
            readZeroMemory(r);
            readZeroMemory(r);
            break;
          case FcImm.MEM:
            readZeroMemory(r);
            break;
          case FcImm.ELEM_TABLE:
          case FcImm.TABLE_TABLE:
            r.u32();
            r.u32();
            break;
          default:
            r.fail(
              `unsupported opcode 0xfc ${sub} (unknown or unsupported proposal)`,
              opPos,
            );
        }
        break;
      }
      case Imm.PREFIX_FD: {
        const sub = r.u32();
        switch (sub <= 0xff ? SIMD_IMM[sub] : 0) {
          case FdImm.NONE:
            break;
          case FdImm.MEMARG:
            readMemarg(r);
            break;
          case FdImm.CONST16:
          case FdImm.SHUFFLE:
            r.advance(16);
            break;
          case FdImm.LANE:
            r.u8();
            break;
          case FdImm.MEMARG_LANE:
            readMemarg(r);
            r.u8();
            break;
          default:
            r.fail(
              `unsupported opcode 0xfd ${sub} (${
                sub >= 0x100 && sub <= 0x113
                  ? "relaxed SIMD"
                  : "unknown SIMD opcode"
              })`,
              opPos,
            );
        }
        break;
      }
      default:
        r.fail(
          `unsupported opcode ${hex(op)} (${refusedOpcodeReason(op)})`,
          opPos,
        );
    }
  }
}
