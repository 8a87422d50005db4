/**
 * Private: decodes and rewrites the code section for the instrumenter.
 *
 * Three steps:
 *
 * 1. **Scan** every function body: check every opcode and immediate, and
 *    record where edits go (loop headers, calls, function exits, function
 *    indices to remap) and the direct call graph.
 * 2. **Decide** which functions get a fuel check at entry. Infinite execution
 *    needs a loop (every loop header is checked) or a call cycle, so entries
 *    are checked for functions in a cycle of the call graph (indirect calls
 *    count as calls to every address-taken or exported function). Other
 *    functions stay unchecked unless the straight-line work they can do
 *    between two checks (their size plus that of the unchecked functions they
 *    call, transitively) exceeds {@link MAX_UNCHECKED_WORK}; then their
 *    heaviest callees get checks too. So any stretch of guest execution
 *    between two fuel checks is bounded. Each check spends fuel in proportion
 *    to the work it covers ({@link BYTES_PER_FUEL}): a loop check its body
 *    plus the unchecked functions the body calls, an entry check the
 *    function plus its unchecked callees; bulk memory/table operations spend
 *    by their length operand ({@link BULK_SHIFT}).
 * 3. **Emit** each body with the checks. A function with loops keeps its fuel
 *    in a new local (a register, no memory store per iteration): it is loaded
 *    from the fuel global at entry, written back before every call and every
 *    exit (`return`, a branch to the function's label, its final `end`,
 *    `return_call*`), and reloaded after every call. A loop without
 *    parameters is wrapped as `block { loop $retry { block $refill { loop {
 *    check → br_if $refill; body } br (out) } fuel = interrupt() + w; br
 *    $retry } }`, so the `gk.interrupt` call is outside the hot loop; labels
 *    inside that branch out of it are shifted by 3.
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
import { hex, WasmReader } from "./_wasm_reader.ts";
import { WasmWriter } from "./_wasm_writer.ts";
import { BYTES_PER_FUEL } from "./constants.ts";
import { WasmInstrumentError } from "./wasm_instrument_error.ts";

/** What the rewriter knows about the module when it reaches the code. */
export interface ModuleState {
  numTypes: number;
  /** Parameter count of each type. */
  typeParams: number[];
  numFuncImports: number;
  numGlobalImports: number;
  numDefinedFuncs: number;
  numDefinedGlobals: number;
  /** Type index of each defined function. */
  funcTypes: number[];
  /** Defined functions (0-based among defined) whose reference escapes: elements, ref.func, exports. */
  addressTaken: Set<number>;
  /** Index of the added `gk.interrupt` import (= numFuncImports). */
  interruptFunc: number;
  /** Index of the added fuel global (= all original globals). */
  fuelGlobal: number;
  /** Type index of `() -> i32` (= original numTypes). */
  interruptType: number;
  memoryMaxPages: number;
}

/**
 * Most straight-line work (in bytes of code, roughly instructions) a stretch
 * of guest execution may do between two fuel checks before the instrumenter
 * adds entry checks to shorten it.
 */
export const MAX_UNCHECKED_WORK = 4096;

/** V8's limit on locals per function; above it a body keeps fuel in the global. */
const MAX_LOCALS = 50_000;

/**
 * Refuses a function index past the module's own functions (imported and
 * defined).
 */
export function checkFunc(
  r: WasmReader,
  s: ModuleState,
  idx: number,
  pos: number,
): void {
  if (idx >= s.numFuncImports + s.numDefinedFuncs) {
    r.fail(`function index ${idx} out of range`, pos);
  }
}

/**
 * The new index of function `idx`: defined functions move up by one, past the
 * added `gk.interrupt` import.
 */
export function remapFunc(s: ModuleState, idx: number): number {
  return idx < s.numFuncImports ? idx : idx + 1;
}

/**
 * Refuses a global index past the module's own globals, so guest code cannot
 * reach the fuel global.
 */
export function checkGlobal(
  r: WasmReader,
  s: ModuleState,
  idx: number,
  pos: number,
): void {
  // The fuel global's index equals the original global count: rejecting
  // indices at or past it keeps the guest from touching its own fuel.
  if (idx >= s.numGlobalImports + s.numDefinedGlobals) {
    r.fail(`global index ${idx} out of range`, pos);
  }
}

/** Fuel a check spends for `bytes` of code it covers (1 for tight loops). */
function weightOf(bytes: number): number {
  return 1 + Math.min(1000, Math.floor(bytes / BYTES_PER_FUEL));
}

// Edit kinds, recorded as [kind, pos, a, b] quadruples.
const E_LOOP = 1; // pos: loop opcode; a: just after its block type; b: wrapped | weight << 1
const E_CALL = 2; // pos: opcode; a: index position; b: function index
const E_RETURN_CALL = 3; // same fields as E_CALL
const E_REF_FUNC = 4; // a: index position; b: function index
const E_CALL_INDIRECT = 5; // pos: opcode; a: end of the instruction
const E_RETURN_CALL_INDIRECT = 6; // pos: opcode
const E_EXIT = 7; // pos: opcode of return / br* to the function label / final end
const E_LOOP_END = 8; // pos: the end opcode of a wrapped loop
const E_LABEL = 9; // pos: a branch label; a: its value; b: wrapped loops it crosses
const E_BULK = 10; // pos: the 0xfc prefix of a bulk memory/table operation

/**
 * Bulk memory and table operations (`memory.fill`, `memory.copy`,
 * `memory.init`, `table.fill`, `table.copy`, `table.init`, `table.grow`) spend
 * one fuel unit per `2^BULK_SHIFT` bytes or elements of their length operand,
 * checked before they run, so a loop of large fills cannot outrun the checks.
 */
export const BULK_SHIFT = 10;

interface ScannedBody {
  /** Start of the body (its local declarations). */
  start: number;
  /** Start of the instructions. */
  code: number;
  end: number;
  localGroups: number;
  localCount: number;
  hasLoop: boolean;
  hasBulk: boolean;
  hasIndirect: boolean;
  /** Number of call_indirect / return_call_indirect sites. */
  indirectCalls: number;
  /**
   * Per loop: [E_LOOP edit index, body bytes, first and past-last index into
   * callees, indirect call sites], to weigh its check once callee costs are
   * known.
   */
  loops: number[];
  /** Direct callees, as defined-function indices, one per call site. */
  callees: number[];
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

/** Decodes one function body, validating opcodes and recording edits. */
function scanBody(r: WasmReader, s: ModuleState): ScannedBody {
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
    localGroups,
    localCount,
    hasLoop: false,
    hasBulk: false,
    hasIndirect: false,
    indirectCalls: 0,
    loops: [],
    callees: [],
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
  // Per open loop: callees.length and indirectCalls when it opened.
  const loopCalls: number[] = [];
  const labelEdits: number[] = [];
  for (;;) {
    if (r.pos >= r.end) {
      r.fail("function body ends before its final end", r.pos);
    }
    const opPos = r.pos;
    const op = buf[r.pos++]!;
    switch (OPCODE_IMM[op]) {
      case Imm.NONE:
        if (op === 0x0f) edits.push(E_EXIT, opPos, 0, 0); // return
        break;
      case Imm.ELSE:
        if (depth < 2) r.fail("else outside of an if", opPos);
        break;
      case Imm.BLOCK:
        readBlockType(r, s);
        depth++;
        wrapPrefix.push(wrapPrefix[wrapPrefix.length - 1]!);
        isWrapped.push(0);
        loopEdit.push(-1);
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
        loopCalls.push(body.callees.length, body.indirectCalls);
        edits.push(E_LOOP, opPos, r.pos, wrap);
        break;
      }
      case Imm.END:
        if (--depth === 0) {
          if (r.pos !== r.end) {
            r.fail("bytes after the final end of a function body", r.pos);
          }
          edits.push(E_EXIT, opPos, 0, 0);
          return body;
        }
        wrapPrefix.pop();
        {
          // Remember what the loop's check covers, to weigh it later.
          const at = loopEdit.pop()!;
          if (at >= 0) {
            const indirectStart = loopCalls.pop()!;
            const calleeStart = loopCalls.pop()!;
            body.loops.push(
              at,
              opPos - edits[at + 2]!,
              calleeStart,
              body.callees.length,
              body.indirectCalls - indirectStart,
            );
          }
          if (isWrapped.pop()) edits.push(E_LOOP_END, opPos, at, 0);
        }
        break;
      case Imm.LABEL: {
        const lpos = r.pos;
        const label = r.u32();
        if (label >= depth) r.fail(`branch depth ${label} out of range`, lpos);
        if (label === depth - 1) edits.push(E_EXIT, opPos, 0, 0);
        const top = depth - 1;
        const crossed = wrapPrefix[top]! - wrapPrefix[top - label]!;
        if (crossed) edits.push(E_LABEL, lpos, label, crossed);
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
          if (crossed) labelEdits.push(E_LABEL, lpos, label, crossed);
        }
        if (exits) edits.push(E_EXIT, opPos, 0, 0);
        for (const x of labelEdits) edits.push(x);
        break;
      }
      case Imm.CALL: {
        const ipos = r.pos;
        const idx = r.u32();
        checkFunc(r, s, idx, ipos);
        if (idx >= numImports) body.callees.push(idx - numImports);
        edits.push(op === 0x10 ? E_CALL : E_RETURN_CALL, opPos, ipos, idx);
        break;
      }
      case Imm.REF_FUNC: {
        const ipos = r.pos;
        const idx = r.u32();
        checkFunc(r, s, idx, ipos);
        if (idx >= numImports) {
          s.addressTaken.add(idx - numImports);
          edits.push(E_REF_FUNC, ipos, ipos, idx);
        }
        break;
      }
      case Imm.CALL_INDIRECT: {
        const tpos = r.pos;
        const t = r.u32();
        if (t >= s.numTypes) r.fail(`type index ${t} out of range`, tpos);
        r.u32(); // table index
        body.hasIndirect = true;
        body.indirectCalls++;
        if (op === 0x11) {
          edits.push(E_CALL_INDIRECT, opPos, r.pos, 0);
        } else {
          edits.push(E_RETURN_CALL_INDIRECT, opPos, 0, 0);
        }
        break;
      }
      case Imm.SELECT_T: {
        const n = r.u32();
        for (let i = 0; i < n; i++) readValType(r);
        break;
      }
      case Imm.LOCAL:
      case Imm.TABLE:
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
        if (sub === 8 || sub === 10 || sub === 11 || sub === 12 || sub >= 14) {
          // Length-dependent: memory.init/copy/fill, table.init/copy/grow/fill
          // (table.size, 16, has no length and is filtered out below).
          if (sub !== 16 && sub <= 17) {
            body.hasBulk = true;
            edits.push(E_BULK, opPos, 0, 0);
          }
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

/**
 * Decides which defined functions get a fuel check at entry (see the module
 * documentation). Returns one flag per defined function.
 */
function chooseEntryChecks(
  bodies: ScannedBody[],
  addressTaken: Set<number>,
): Uint16Array {
  const n = bodies.length;
  const virt = n; // node standing for "any indirect-call target"
  const targets = [...addressTaken];
  const succ = (v: number): number[] =>
    v === virt ? targets : bodies[v]!.callees;
  const hasVirtEdge = (v: number) => v !== virt && bodies[v]!.hasIndirect;

  // Tarjan's strongly connected components, iterative. Components come out
  // callees first (reverse topological order).
  const index = new Int32Array(n + 1).fill(-1);
  const low = new Int32Array(n + 1);
  const onStack = new Uint8Array(n + 1);
  const stack: number[] = [];
  const components: number[][] = [];
  let counter = 0;
  // Work stack of [node, next successor position]; position == succ length
  // means "the virtual edge", past it means done.
  const work: number[] = [];
  for (let root = 0; root <= n; root++) {
    if (index[root] !== -1) continue;
    work.push(root, 0);
    while (work.length) {
      const v = work[work.length - 2]!;
      const i = work[work.length - 1]!;
      if (i === 0 && index[v] === -1) {
        index[v] = low[v] = counter++;
        stack.push(v);
        onStack[v] = 1;
      }
      const out = succ(v);
      const total = out.length + (hasVirtEdge(v) ? 1 : 0);
      if (i < total) {
        work[work.length - 1] = i + 1;
        const w = i < out.length ? out[i]! : virt;
        if (index[w] === -1) {
          work.push(w, 0);
        } else if (onStack[w]) {
          low[v] = Math.min(low[v]!, index[w]!);
        }
        continue;
      }
      // v is done.
      work.length -= 2;
      if (work.length) {
        const parent = work[work.length - 2]!;
        low[parent] = Math.min(low[parent]!, low[v]!);
      }
      if (low[v] === index[v]) {
        const component: number[] = [];
        let x: number;
        do {
          x = stack.pop()!;
          onStack[x] = 0;
          component.push(x);
        } while (x !== v);
        components.push(component);
      }
    }
  }

  const checked = new Uint8Array(n + 1);
  const cost = new Float64Array(n + 1); // work up to the next check, if unchecked
  const effective = (v: number) => (checked[v] ? 0 : cost[v]!);
  const bound = (f: number): number => {
    const body = bodies[f]!;
    let total = body.end - body.start;
    for (const g of body.callees) total += effective(g);
    total += body.indirectCalls * effective(virt);
    return total;
  };
  const trim = (f: number): number => {
    // Check the heaviest callees until the work bound fits.
    let total = bound(f);
    if (total <= MAX_UNCHECKED_WORK) return total;
    const body = bodies[f]!;
    const weight = new Map<number, number>();
    for (const g of body.callees) {
      weight.set(g, (weight.get(g) ?? 0) + effective(g));
    }
    if (body.hasIndirect) {
      weight.set(virt, body.indirectCalls * effective(virt));
    }
    const heavy = [...weight].sort((a, b) => b[1] - a[1]);
    for (const [g, w] of heavy) {
      if (total <= MAX_UNCHECKED_WORK || w === 0) break;
      if (g === virt) {
        for (const t of targets) checked[t] = 1;
        cost[virt] = 0; // the virtual node is never "checked" itself
      } else {
        checked[g] = 1;
      }
      total -= w;
    }
    return total;
  };

  for (const component of components) {
    const first = component[0]!;
    const cyclic = component.length > 1 ||
      (first !== virt && bodies[first]!.callees.includes(first));
    if (cyclic) {
      for (const v of component) if (v !== virt) checked[v] = 1;
    }
    // The virtual node first: members call it, not the other way round.
    if (component.includes(virt)) {
      let worst = 0;
      for (const t of targets) worst = Math.max(worst, effective(t));
      cost[virt] = worst;
    }
    for (const v of component) {
      if (v === virt) continue;
      cost[v] = trim(v);
    }
  }
  // Weight of each entry check: the work it covers up to the next check.
  const weights = new Uint16Array(n);
  for (let f = 0; f < n; f++) {
    if (checked[f]) weights[f] = weightOf(cost[f]!);
  }
  // Weight of each loop check: its body plus the unchecked work it calls.
  for (let f = 0; f < n; f++) {
    const body = bodies[f]!;
    const loops = body.loops;
    for (let i = 0; i < loops.length; i += 5) {
      let work = loops[i + 1]!;
      for (let j = loops[i + 2]!; j < loops[i + 3]!; j++) {
        work += effective(body.callees[j]!);
      }
      work += loops[i + 4]! * effective(virt);
      const at = loops[i]!;
      body.edits[at + 3] = (body.edits[at + 3]! & 1) | weightOf(work) << 1;
    }
  }
  return weights;
}

/** Writes `fuel -= 1; if (fuel <= 0) fuel = gk.interrupt()` on the global. */
function globalCheck(w: WasmWriter, s: ModuleState, weight: number): void {
  w.u8(0x23); // global.get fuel
  w.u32(s.fuelGlobal);
  w.u8(0x41); // i32.const weight
  w.s32(weight);
  w.u8(0x6b); // i32.sub
  w.u8(0x24); // global.set fuel
  w.u32(s.fuelGlobal);
  w.u8(0x23); // global.get fuel
  w.u32(s.fuelGlobal);
  refillIfEmpty(w, s, 0x24, s.fuelGlobal); // global.set fuel
}

/**
 * With the fuel value on the stack, writes `if (fuel <= 0) fuel =
 * gk.interrupt()`; `setOp` (`global.set` or `local.set`) stores the refill.
 */
function refillIfEmpty(
  w: WasmWriter,
  s: ModuleState,
  setOp: 0x21 | 0x24,
  index: number,
): void {
  w.u8(0x41); // i32.const 0
  w.u8(0x00);
  w.u8(0x4c); // i32.le_s
  w.u8(0x04); // if (empty)
  w.u8(0x40);
  w.u8(0x10); // call gk.interrupt
  w.u32(s.interruptFunc);
  w.u8(setOp);
  w.u32(index);
  w.u8(0x0b); // end
}

/**
 * Writes `local = <value on the stack> - 1; if (local <= 0) local =
 * gk.interrupt()`, with the operand already pushed.
 */
function localCheckTail(
  w: WasmWriter,
  s: ModuleState,
  local: number,
  weight: number,
): void {
  w.u8(0x41); // i32.const weight
  w.s32(weight);
  w.u8(0x6b); // i32.sub
  w.u8(0x22); // local.tee fuel
  w.u32(local);
  refillIfEmpty(w, s, 0x21, local); // local.set fuel
}

function writeBack(w: WasmWriter, s: ModuleState, local: number): void {
  w.u8(0x20); // local.get fuel
  w.u32(local);
  w.u8(0x24); // global.set fuel
  w.u32(s.fuelGlobal);
}

function reload(w: WasmWriter, s: ModuleState, local: number): void {
  w.u8(0x23); // global.get fuel
  w.u32(s.fuelGlobal);
  w.u8(0x21); // local.set fuel
  w.u32(local);
}

/**
 * Writes the fuel charge of a bulk operation whose length is on top of the
 * stack: `t = len; fuel -= t >>> BULK_SHIFT; if (fuel <= 0) fuel =
 * gk.interrupt(); push t`. `local` is the fuel local, or -1 for the global.
 */
function bulkCharge(
  w: WasmWriter,
  s: ModuleState,
  local: number,
  scratch: number,
): void {
  w.u8(0x21); // local.set t
  w.u32(scratch);
  if (local >= 0) {
    w.u8(0x20);
    w.u32(local);
  } else {
    w.u8(0x23);
    w.u32(s.fuelGlobal);
  }
  w.u8(0x20); // local.get t
  w.u32(scratch);
  w.u8(0x41); // i32.const BULK_SHIFT
  w.u8(BULK_SHIFT);
  w.u8(0x76); // i32.shr_u
  w.u8(0x6b); // i32.sub
  if (local >= 0) {
    w.u8(0x22); // local.tee fuel
    w.u32(local);
  } else {
    w.u8(0x24); // global.set fuel
    w.u32(s.fuelGlobal);
    w.u8(0x23); // global.get fuel
    w.u32(s.fuelGlobal);
  }
  if (local >= 0) refillIfEmpty(w, s, 0x21, local); // local.set fuel
  else refillIfEmpty(w, s, 0x24, s.fuelGlobal); // global.set fuel
  w.u8(0x20); // local.get t
  w.u32(scratch);
}

/** Emits one function body with its fuel checks (without the size prefix). */
function emitBody(
  buf: Uint8Array,
  body: ScannedBody,
  entryWeight: number,
  params: number,
  s: ModuleState,
  w: WasmWriter,
): void {
  // Loops keep the fuel in a local; bulk operations need a scratch local.
  const localMode = body.hasLoop;
  const extra = (localMode ? 1 : 0) + (body.hasBulk ? 1 : 0);
  if (params + body.localCount + extra > MAX_LOCALS) {
    throw new WasmInstrumentError(
      `a function has ${
        params + body.localCount
      } locals: no room for the fuel locals (limit ${MAX_LOCALS})`,
      body.start,
    );
  }
  const local = params + body.localCount;
  const scratch = local + (localMode ? 1 : 0);
  // Local declarations.
  if (extra) {
    w.u32(body.localGroups + 1);
    const r = new WasmReader(buf, body.start, body.code);
    r.u32();
    w.bytes(buf.subarray(r.pos, body.code));
    w.u32(extra);
    w.u8(0x7f);
  } else {
    w.bytes(buf.subarray(body.start, body.code));
  }
  if (localMode) {
    // Entry: take the fuel into the local (and spend one if checked).
    w.u8(0x23);
    w.u32(s.fuelGlobal);
    if (entryWeight) {
      localCheckTail(w, s, local, entryWeight);
    } else {
      w.u8(0x21); // local.set fuel
      w.u32(local);
    }
  } else if (entryWeight) {
    globalCheck(w, s, entryWeight);
  }

  let copyFrom = body.code;
  const edits = body.edits;
  const numImports = s.numFuncImports;
  for (let i = 0; i < edits.length; i += 4) {
    const kind = edits[i]!;
    const pos = edits[i + 1]!;
    const a = edits[i + 2]!;
    const b = edits[i + 3]!;
    switch (kind) {
      case E_LOOP:
        if (b & 1) {
          // block bt; loop; block; loop bt; <check>; br_if 1 (to refill)
          w.bytes(buf.subarray(copyFrom, pos));
          copyFrom = a;
          const bt = buf[pos + 1]!;
          w.u8(0x02);
          w.u8(bt);
          w.u8(0x03);
          w.u8(0x40);
          w.u8(0x02);
          w.u8(0x40);
          w.u8(0x03);
          w.u8(bt);
          w.u8(0x20); // local.get fuel
          w.u32(local);
          w.u8(0x41); // i32.const weight
          w.s32(Math.max(1, b >> 1));
          w.u8(0x6b); // i32.sub
          w.u8(0x22); // local.tee fuel
          w.u32(local);
          w.u8(0x41); // i32.const 0
          w.u8(0x00);
          w.u8(0x4c); // i32.le_s
          w.u8(0x0d); // br_if 1
          w.u8(0x01);
        } else {
          // A loop with parameters: check inline.
          w.bytes(buf.subarray(copyFrom, a));
          copyFrom = a;
          w.u8(0x20); // local.get fuel
          w.u32(local);
          localCheckTail(w, s, local, Math.max(1, b >> 1));
        }
        break;
      case E_BULK:
        w.bytes(buf.subarray(copyFrom, pos));
        copyFrom = pos;
        bulkCharge(w, s, localMode ? local : -1, scratch);
        break;
      case E_LOOP_END:
        {
          // end (loop); br 2; end; fuel = gk.interrupt() + weight; br 0;
          // end; unreachable; end. Re-entering the loop spends the weight
          // again, so it is added back: any positive refill makes progress.
          w.bytes(buf.subarray(copyFrom, pos + 1));
          copyFrom = pos + 1;
          w.u8(0x0c);
          w.u8(0x02);
          w.u8(0x0b);
          w.u8(0x10);
          w.u32(s.interruptFunc);
          w.u8(0x41); // i32.const weight
          w.s32(Math.max(1, edits[a + 3]! >> 1));
          w.u8(0x6a); // i32.add
          w.u8(0x21);
          w.u32(local);
          w.u8(0x0c);
          w.u8(0x00);
          w.u8(0x0b);
          w.u8(0x00);
          w.u8(0x0b);
        }
        break;
      case E_LABEL:
        {
          w.bytes(buf.subarray(copyFrom, pos));
          w.u32(a + 3 * b);
          const r = new WasmReader(buf, pos, body.end);
          r.u32();
          copyFrom = r.pos;
        }
        break;
      case E_CALL:
      case E_RETURN_CALL: {
        if (localMode) {
          w.bytes(buf.subarray(copyFrom, pos));
          copyFrom = pos;
          writeBack(w, s, local);
        }
        if (b >= numImports || localMode) {
          // Copy the opcode, then the (remapped) index.
          w.bytes(buf.subarray(copyFrom, a));
          w.u32(b >= numImports ? b + 1 : b);
          const r = new WasmReader(buf, a, body.end);
          r.u32();
          copyFrom = r.pos;
          if (localMode && kind === E_CALL) reload(w, s, local);
        }
        break;
      }
      case E_REF_FUNC: {
        w.bytes(buf.subarray(copyFrom, a));
        w.u32(b + 1);
        const r = new WasmReader(buf, a, body.end);
        r.u32();
        copyFrom = r.pos;
        break;
      }
      case E_CALL_INDIRECT:
        if (localMode) {
          w.bytes(buf.subarray(copyFrom, pos));
          writeBack(w, s, local);
          w.bytes(buf.subarray(pos, a));
          copyFrom = a;
          reload(w, s, local);
        }
        break;
      case E_RETURN_CALL_INDIRECT:
      case E_EXIT:
        if (localMode) {
          w.bytes(buf.subarray(copyFrom, pos));
          copyFrom = pos;
          writeBack(w, s, local);
        }
        break;
    }
  }
  w.bytes(buf.subarray(copyFrom, body.end));
}

/**
 * Rewrites the code section's contents (after its count), given the reader
 * positioned at the first body. Writes the new contents to `w`.
 */
export function rewriteCode(
  r: WasmReader,
  count: number,
  s: ModuleState,
  w: WasmWriter,
): void {
  const bodies: ScannedBody[] = [];
  for (let i = 0; i < count; i++) {
    const spos = r.pos;
    const size = r.u32();
    if (size > r.end - r.pos) {
      r.fail(`body of function ${i} overruns the code section`, spos);
    }
    bodies.push(scanBody(new WasmReader(r.buf, r.pos, r.pos + size), s));
    r.pos += size;
  }
  const entryChecks = chooseEntryChecks(bodies, s.addressTaken);
  w.u32(count);
  const tmp = new WasmWriter(4096);
  for (let i = 0; i < count; i++) {
    const params = s.typeParams[s.funcTypes[i]!]!;
    emitBody(r.buf, bodies[i]!, entryChecks[i]!, params, s, tmp);
    w.u32(tmp.length);
    w.append(tmp);
    tmp.reset();
  }
}
