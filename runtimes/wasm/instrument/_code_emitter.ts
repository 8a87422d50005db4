/**
 * Private: writes one function body with its fuel checks, following the
 * scanner's edits and the planner's decisions ({@link emitBody}), and the
 * wrapper that stands at a threaded function's original index
 * ({@link emitWrapper}).
 *
 * Where the fuel lives:
 *
 * - **Global** (functions without loops, not threaded): a check is
 *   `t = fuel - w; fuel = t; if (t <= 0) fuel = gk.interrupt()` on the fuel
 *   global, `t` a new local (V8 would load the global again).
 * - **Local** (functions with loops): a new local (a register) loaded from
 *   the global at entry, written back before calls and exits, reloaded after
 *   calls — except calls to fuel-neutral functions, and direct calls to
 *   threaded functions, which take the local as their fuel argument and
 *   return it.
 * - **Through tables**: a `call_indirect` of a signature whose table entries
 *   are all threaded copies becomes `slot = index; call_indirect (args…,
 *   fuel, slot)` of the extended type, the fuel (local or global) passed in
 *   and set from the last result.
 * - **Restart**: in the global and threaded modes, the first check of a
 *   body (its entry check, or its first call-site check when no effect
 *   precedes it: `ScannedBody.pureEnd`) refills by a tail call to the
 *   function's refill function (`return_call refill(params…)`, which does
 *   `gk.interrupt() + w` and calls the function again from its start), not
 *   by a call in place: V8 keeps values that live across a call, even in a
 *   cold branch, in memory on the hot path (~12 % on recursion).
 * - **Threaded copy**: the fuel is an extra last parameter; the original
 *   locals move up by one. The body is wrapped in a block of the function's
 *   result type, after which the fuel is pushed as an extra result
 *   (`return` pushes it too), so branches to the function label need no
 *   change.
 *
 * Loops: a loop without parameters is wrapped as `block { loop $retry {
 * block $refill { loop { check → br_if $refill; body } br (out) } fuel =
 * interrupt() + w; br $retry } }`, so the `gk.interrupt` call is outside the
 * hot loop; labels inside that leave it are shifted by 3. A small innermost
 * loop without calls is unrolled: copies 1 to {@link UNROLL}−1 of its body
 * sit each in a `block` that a `br` to the loop ends (so it continues with
 * the next copy) and whose fallthrough leaves the loop; the last copy
 * branches back to the single check. A loop with parameters is checked
 * inline.
 *
 * @module
 */

import {
  E_BULK,
  E_CALL,
  E_CALL_INDIRECT,
  E_EXIT,
  E_LABEL,
  E_LOOP,
  E_LOOP_END,
  E_REF_FUNC,
  E_RETURN_CALL,
  E_RETURN_CALL_INDIRECT,
  EDIT,
  LOOP_UNROLLED,
  LOOP_WRAPPED,
  type ScannedBody,
  UNROLL,
} from "./_code_scanner.ts";
import type { CheckPlan } from "./_check_plan.ts";
import { type ModuleState, remapFunc } from "./_module_state.ts";
import { WasmReader } from "./_wasm_reader.ts";
import type { WasmWriter } from "./_wasm_writer.ts";
import { WasmInstrumentError } from "./wasm_instrument_error.ts";

/**
 * Bulk memory and table operations (`memory.fill`, `memory.copy`,
 * `memory.init`, `table.fill`, `table.copy`, `table.init`, `table.grow`) spend
 * one fuel unit per `2^BULK_SHIFT` bytes or elements of their length operand,
 * checked before they run, so a loop of large fills cannot outrun the checks.
 */
export const BULK_SHIFT = 10;

/** V8's limit on locals per function. */
const MAX_LOCALS = 50_000;

/** What every body of the module shares. */
export interface EmitContext {
  buf: Uint8Array;
  s: ModuleState;
  plan: CheckPlan;
  /** Function index of the first threaded copy. */
  threadedBase: number;
  /**
   * Per original type index: the type of its `call_indirect`s when they
   * carry the fuel (`plan.indirectThreaded`), else -1.
   */
  indirectType: Int32Array;
  /**
   * Per defined function: the index of its refill function (see
   * {@link emitRefill}), or -1. Its body (the threaded copy if it has one,
   * else the original in the global mode) then restarts through it when
   * its first check, which no effect precedes, finds the fuel empty.
   */
  refill: Int32Array;
}

/**
 * How a body holds its fuel: in the fuel global, in a new local, or in an
 * extra parameter and result (a threaded copy).
 */
export const Fuel = { Global: 0, Local: 1, Threaded: 2 } as const;
/** One of {@link Fuel}'s values. */
export type Fuel = typeof Fuel[keyof typeof Fuel];

/**
 * How a check refills: in place (`fuel = gk.interrupt()`), or by a tail
 * call to the function's refill function with its parameters (and the fuel,
 * for a threaded copy), which refuels and calls the function again.
 */
interface Restart {
  /** The refill function. */
  func: number;
  /** Parameters to pass on (the threaded copy's fuel included). */
  params: number;
}

/**
 * Writes `if (fuel <= 0) fuel = gk.interrupt()` with fuel on the stack, or
 * `if (fuel <= 0) return_call refill(params…)` for a restart.
 */
function refillIfEmpty(
  w: WasmWriter,
  s: ModuleState,
  setOp: 0x21 | 0x24,
  index: number,
  restart: Restart | null = null,
): void {
  w.u8(0x41); // i32.const 0
  w.u8(0x00);
  w.u8(0x4c); // i32.le_s
  w.u8(0x04); // if (empty)
  w.u8(0x40);
  if (restart) {
    // A tail call, not a call: V8 keeps values live across a call in the
    // cold branch in memory on the hot path too (~12 % on recursion).
    for (let i = 0; i < restart.params; i++) {
      w.u8(0x20); // local.get i
      w.u32(i);
    }
    w.u8(0x12); // return_call refill
    w.u32(restart.func);
  } else {
    w.u8(0x10); // call gk.interrupt
    w.u32(s.interruptFunc);
    w.u8(setOp);
    w.u32(index);
  }
  w.u8(0x0b); // end
}

/**
 * Writes `fuel -= weight; if (fuel <= 0) fuel = gk.interrupt()` on the
 * global, comparing a copy kept in local `tee` rather than reading the global
 * back (V8 does not forward the store: the second load cost ~20 % on
 * recursion through a table).
 */
function globalCheck(
  w: WasmWriter,
  s: ModuleState,
  weight: number,
  tee: number,
  restart: Restart | null,
): void {
  w.u8(0x23); // global.get fuel
  w.u32(s.fuelGlobal);
  w.u8(0x41); // i32.const weight
  w.s32(weight);
  w.u8(0x6b); // i32.sub
  w.u8(0x22); // local.tee t
  w.u32(tee);
  w.u8(0x24); // global.set fuel
  w.u32(s.fuelGlobal);
  w.u8(0x20); // local.get t
  w.u32(tee);
  refillIfEmpty(w, s, 0x24, s.fuelGlobal, restart);
}

/**
 * Writes `local = <value on the stack> - weight; if (local <= 0) local =
 * gk.interrupt()`.
 */
function localCheckTail(
  w: WasmWriter,
  s: ModuleState,
  local: number,
  weight: number,
  restart: Restart | null = null,
): void {
  w.u8(0x41); // i32.const weight
  w.s32(weight);
  w.u8(0x6b); // i32.sub
  w.u8(0x22); // local.tee fuel
  w.u32(local);
  refillIfEmpty(w, s, 0x21, local, restart);
}

function localCheck(
  w: WasmWriter,
  s: ModuleState,
  local: number,
  weight: number,
  restart: Restart | null = null,
): void {
  w.u8(0x20); // local.get fuel
  w.u32(local);
  localCheckTail(w, s, local, weight, restart);
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
 * gk.interrupt(); push t`. `local` is the fuel local, or -1 for the global
 * (then `tee` holds the new fuel for the compare).
 */
function bulkCharge(
  w: WasmWriter,
  s: ModuleState,
  local: number,
  scratch: number,
  tee: number,
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
    refillIfEmpty(w, s, 0x21, local);
  } else {
    w.u8(0x22); // local.tee tee
    w.u32(tee);
    w.u8(0x24); // global.set fuel
    w.u32(s.fuelGlobal);
    w.u8(0x20); // local.get tee
    w.u32(tee);
    refillIfEmpty(w, s, 0x24, s.fuelGlobal);
  }
  w.u8(0x20); // local.get t
  w.u32(scratch);
}

/** Whether a body in the global fuel mode writes any check. */
function hasGlobalCheck(body: ScannedBody, entryWeight: number): boolean {
  if (entryWeight || body.hasBulk) return true;
  const edits = body.edits;
  for (const e of body.sites) if (edits[e + 5]) return true;
  return false;
}

/** Whether a body has a `call_indirect` that carries the fuel. */
function hasFuelIndirect(ctx: EmitContext, body: ScannedBody): boolean {
  const edits = body.edits;
  for (const e of body.sites) {
    if (edits[e] === E_CALL_INDIRECT && ctx.indirectType[edits[e + 3]!]! >= 0) {
      return true;
    }
  }
  return false;
}

/** Length of the unsigned LEB128 at `pos`. */
function lebEnd(buf: Uint8Array, pos: number, end: number): number {
  const r = new WasmReader(buf, pos, end);
  r.u32();
  return r.pos;
}

/**
 * Writes the wrapper at a threaded function's original index: `call copy(
 * params…, fuel global)`, storing the returned fuel back.
 */
export function emitWrapper(
  ctx: EmitContext,
  f: number,
  w: WasmWriter,
): void {
  const { s } = ctx;
  const params = s.typeParams[s.funcTypes[f]!]!;
  w.u8(0x00); // no locals
  for (let i = 0; i < params; i++) {
    w.u8(0x20); // local.get i
    w.u32(i);
  }
  w.u8(0x23); // global.get fuel
  w.u32(s.fuelGlobal);
  w.u8(0x10); // call the threaded copy
  w.u32(ctx.threadedBase + ctx.plan.threaded[f]!);
  w.u8(0x24); // global.set fuel
  w.u32(s.fuelGlobal);
  w.u8(0x0b);
}

/**
 * The weight of the check in `f`'s body (`mode`) that may restart the
 * function: the entry check, or the first call-site check when no effect
 * precedes it (see `ScannedBody.pureEnd`); 0 for none. Only for bodies in
 * the global or threaded mode.
 */
export function restartWeight(
  plan: CheckPlan,
  f: number,
  body: ScannedBody,
  mode: Fuel,
): number {
  if (mode === Fuel.Local) return 0;
  if (plan.entryWeight[f]) return plan.entryWeight[f]!;
  const edits = body.edits;
  for (const e of body.sites) {
    if (edits[e + 5]) return edits[e + 1]! <= body.pureEnd ? edits[e + 5]! : 0;
  }
  return 0;
}

/**
 * Writes the refill function of `f` (`threaded`: of its threaded copy):
 * `fuel = gk.interrupt() + weight; return_call f(params…)` (the copy takes
 * the new fuel as its argument instead). The weight is that of the check
 * that restarts, which spends it again: any positive refill makes progress.
 */
export function emitRefill(
  ctx: EmitContext,
  f: number,
  threaded: boolean,
  weight: number,
  w: WasmWriter,
): void {
  const { s } = ctx;
  const params = s.typeParams[s.funcTypes[f]!]!;
  w.u8(0x00); // no locals
  if (threaded) {
    for (let i = 0; i < params; i++) {
      w.u8(0x20);
      w.u32(i);
    }
  }
  w.u8(0x10); // call gk.interrupt
  w.u32(s.interruptFunc);
  w.u8(0x41); // i32.const weight
  w.s32(weight);
  w.u8(0x6a); // i32.add
  if (threaded) {
    w.u8(0x12); // return_call the copy
    w.u32(ctx.threadedBase + ctx.plan.threaded[f]!);
  } else {
    w.u8(0x24); // global.set fuel
    w.u32(s.fuelGlobal);
    for (let i = 0; i < params; i++) {
      w.u8(0x20);
      w.u32(i);
    }
    w.u8(0x12); // return_call f
    w.u32(s.numFuncImports + 1 + f);
  }
  w.u8(0x0b);
}

/**
 * Emits function `f`'s body with its fuel checks (without the size prefix).
 * `wrapType` is the block type (encoded) of a threaded copy's body block.
 */
export function emitBody(
  ctx: EmitContext,
  f: number,
  body: ScannedBody,
  mode: Fuel,
  wrapType: Uint8Array | null,
  w: WasmWriter,
): void {
  const { buf, s, plan } = ctx;
  const params = body.params;
  const threaded = mode === Fuel.Threaded;
  const entryWeight = plan.entryWeight[f]!;
  // Global mode: a local holding the fuel just written, for the compare.
  const needTee = mode === Fuel.Global && hasGlobalCheck(body, entryWeight);
  // A `call_indirect` carrying the fuel: its table index waits in a local.
  const needSlot = hasFuelIndirect(ctx, body);
  const extra = (mode === Fuel.Local ? 1 : 0) + (body.hasBulk ? 1 : 0) +
    (needTee ? 1 : 0) + (needSlot ? 1 : 0);
  if (params + body.localCount + extra + (threaded ? 1 : 0) > MAX_LOCALS) {
    throw new WasmInstrumentError(
      `a function has ${
        params + body.localCount
      } locals: no room for the fuel locals (limit ${MAX_LOCALS})`,
      body.start,
    );
  }
  // The fuel local (-1: the global), then the added locals in order: the
  // fuel (local mode), the bulk operations' scratch, the checks' copy of
  // the fuel (global mode), the table index of a fuel-carrying
  // `call_indirect`.
  let next = params + body.localCount + (threaded ? 1 : 0);
  const fuel = mode === Fuel.Global ? -1 : threaded ? params : next++;
  const scratch = body.hasBulk ? next++ : -1;
  const tee = needTee ? next++ : -1;
  const slot = needSlot ? next++ : -1;
  const shiftLocals = threaded;
  const localPos = body.localPos;
  const restart: Restart | null = mode !== Fuel.Local && ctx.refill[f]! >= 0
    ? { func: ctx.refill[f]!, params: params + (threaded ? 1 : 0) }
    : null;

  // Copy cursor over the original bytes; `li` is the next local immediate
  // to renumber (threaded copies only).
  let from = body.code;
  let li = 0;
  const copyTo = (end: number) => {
    if (shiftLocals) {
      while (li < localPos.length && localPos[li]! < end) {
        const p = localPos[li++]!;
        w.bytes(buf.subarray(from, p));
        const r = new WasmReader(buf, p, body.end);
        w.u32(r.u32() + 1);
        from = r.pos;
      }
    }
    w.bytes(buf.subarray(from, end));
    from = end;
  };
  const skipTo = (pos: number) => {
    from = pos;
    while (li < localPos.length && localPos[li]! < pos) li++;
  };

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
  if (mode === Fuel.Local) {
    w.u8(0x23); // global.get fuel
    w.u32(s.fuelGlobal);
    if (entryWeight) {
      localCheckTail(w, s, fuel, entryWeight);
    } else {
      w.u8(0x21); // local.set fuel
      w.u32(fuel);
    }
  } else if (entryWeight) {
    if (threaded) localCheck(w, s, fuel, entryWeight, restart);
    else globalCheck(w, s, entryWeight, tee, restart);
  }
  if (threaded) {
    w.u8(0x02); // block (result …): branches to the function label land here
    w.bytes(wrapType!);
  }

  const edits = body.edits;
  const numImports = s.numFuncImports;
  const siteCheck = (weight: number, pos: number) => {
    if (!weight) return;
    const r = !entryWeight && pos <= body.pureEnd ? restart : null;
    if (fuel >= 0) localCheck(w, s, fuel, weight, r);
    else globalCheck(w, s, weight, tee, r);
  };
  const threadedCopy = (idx: number) =>
    idx >= numImports ? plan.threaded[idx - numImports]! : -1;

  /** Emits edits [i, stop) (label shift `unrolled` inside unrolled copies). */
  const run = (i: number, stop: number, unrolled: number) => {
    for (; i < stop; i += EDIT) {
      const kind = edits[i]!;
      const pos = edits[i + 1]!;
      const a = edits[i + 2]!;
      const b = edits[i + 3]!;
      switch (kind) {
        case E_LOOP: {
          const weight = Math.max(1, edits[i + 4]!);
          if (!(b & LOOP_WRAPPED)) {
            // A loop with parameters: check inline.
            copyTo(a);
            localCheck(w, s, fuel, weight);
            break;
          }
          // block bt; loop; block; loop bt; <check>; br_if 1 (to refill)
          copyTo(pos);
          skipTo(a);
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
          w.u32(fuel);
          w.u8(0x41); // i32.const weight
          w.s32(weight);
          w.u8(0x6b); // i32.sub
          w.u8(0x22); // local.tee fuel
          w.u32(fuel);
          w.u8(0x41); // i32.const 0
          w.u8(0x00);
          w.u8(0x4c); // i32.le_s
          w.u8(0x0d); // br_if 1
          w.u8(0x01);
          if (b & LOOP_UNROLLED) {
            // Copies 1 … UNROLL-1: block { body; br (out) }; the last copy
            // is the loop body itself (emitted by the caller's loop).
            const endEdit = edits[i + 5]!;
            const endPos = edits[endEdit + 1]!;
            const saveFrom = from;
            const saveLi = li;
            for (let c = 1; c < UNROLL; c++) {
              w.u8(0x02); // block
              w.u8(0x40);
              run(i + EDIT, endEdit, 1);
              copyTo(endPos);
              w.u8(0x0c); // br 4: out of the loop with its results
              w.u8(0x04);
              w.u8(0x0b); // end
              from = saveFrom;
              li = saveLi;
            }
          }
          break;
        }
        case E_BULK:
          copyTo(pos);
          bulkCharge(w, s, fuel, scratch, tee);
          break;
        case E_LOOP_END: {
          // end (loop); br 2; end; fuel = gk.interrupt() + weight; br 0;
          // end; unreachable; end. Re-entering the loop spends the weight
          // again, so it is added back: any positive refill makes progress.
          copyTo(pos + 1);
          w.u8(0x0c);
          w.u8(0x02);
          w.u8(0x0b);
          w.u8(0x10);
          w.u32(s.interruptFunc);
          w.u8(0x41); // i32.const weight
          w.s32(Math.max(1, edits[a + 4]!));
          w.u8(0x6a); // i32.add
          w.u8(0x21);
          w.u32(fuel);
          w.u8(0x0c);
          w.u8(0x00);
          w.u8(0x0b);
          w.u8(0x00);
          w.u8(0x0b);
          break;
        }
        case E_LABEL:
          copyTo(pos);
          w.u32(a + 3 * b + unrolled);
          skipTo(lebEnd(buf, pos, body.end));
          break;
        case E_CALL:
        case E_RETURN_CALL: {
          copyTo(pos);
          siteCheck(edits[i + 5]!, pos);
          const copy = threadedCopy(b);
          const next = lebEnd(buf, a, body.end);
          if (kind === E_CALL) {
            if (fuel >= 0 && copy >= 0) {
              // Pass the fuel in and take it back.
              w.u8(0x20);
              w.u32(fuel);
              w.u8(0x10);
              w.u32(ctx.threadedBase + copy);
              w.u8(0x21);
              w.u32(fuel);
            } else if (
              fuel >= 0 && !(b >= numImports && plan.neutral[b - numImports])
            ) {
              writeBack(w, s, fuel);
              w.u8(0x10);
              w.u32(remapFunc(s, b));
              reload(w, s, fuel);
            } else {
              w.u8(0x10);
              w.u32(remapFunc(s, b));
            }
          } else if (threaded) {
            // The planner threads only functions whose tail calls do.
            w.u8(0x20);
            w.u32(fuel);
            w.u8(0x12);
            w.u32(ctx.threadedBase + copy);
          } else {
            if (fuel >= 0) writeBack(w, s, fuel);
            w.u8(0x12);
            w.u32(remapFunc(s, b));
          }
          skipTo(next);
          break;
        }
        case E_REF_FUNC:
          copyTo(a);
          w.u32(b + 1);
          skipTo(lebEnd(buf, a, body.end));
          break;
        case E_CALL_INDIRECT: {
          copyTo(pos);
          siteCheck(edits[i + 5]!, pos);
          const type = ctx.indirectType[b]!;
          if (type >= 0) {
            // Every table entry of this signature is a threaded copy:
            // args…, fuel, index; the fuel comes back as the last result.
            const r = new WasmReader(buf, pos + 1, body.end);
            r.u32();
            const table = r.u32();
            w.u8(0x21); // local.set slot
            w.u32(slot);
            w.u8(fuel >= 0 ? 0x20 : 0x23); // local.get / global.get fuel
            w.u32(fuel >= 0 ? fuel : s.fuelGlobal);
            w.u8(0x20); // local.get slot
            w.u32(slot);
            w.u8(0x11);
            w.u32(type);
            w.u32(table);
            w.u8(fuel >= 0 ? 0x21 : 0x24); // local.set / global.set fuel
            w.u32(fuel >= 0 ? fuel : s.fuelGlobal);
            skipTo(a);
            break;
          }
          if (fuel >= 0) writeBack(w, s, fuel);
          copyTo(a);
          if (fuel >= 0) reload(w, s, fuel);
          break;
        }
        case E_RETURN_CALL_INDIRECT:
          copyTo(pos);
          siteCheck(edits[i + 5]!, pos);
          if (fuel >= 0) writeBack(w, s, fuel);
          break;
        case E_EXIT:
          copyTo(pos);
          if (threaded) {
            const op = buf[pos]!;
            if (op === 0x0f) {
              // return: the fuel goes with the results.
              w.u8(0x20);
              w.u32(fuel);
            } else if (op === 0x0b) {
              // The final end closes the body block; then the fuel result.
              copyTo(pos + 1);
              w.u8(0x20);
              w.u32(fuel);
              w.u8(0x0b);
            }
          } else if (fuel >= 0) {
            writeBack(w, s, fuel);
          }
          break;
      }
    }
  };
  run(0, edits.length, 0);
  copyTo(body.end);
}
