/**
 * Private: rewrites the code section for the instrumenter, in three steps:
 *
 * 1. **Scan** every function body (`_code_scanner.ts`): check every opcode
 *    and immediate, record where edits go and the direct call graph.
 * 2. **Plan** the checks (`_check_plan.ts`): loop headers always; before
 *    the first call on each path that can close a call cycle; at the entry
 *    of functions heading call trees too big to leave unchecked; weights;
 *    which cycle members get a threaded copy that carries the fuel in a
 *    register.
 * 3. **Emit** the bodies (`_code_emitter.ts`): the original indices first
 *    (a threaded function's becomes a wrapper), then the threaded copies,
 *    whose types (and block types) this step adds to the module, then the
 *    refill functions of bodies whose first check restarts them.
 * 4. **Pad** with empty functions so that V8 sees the original share of
 *    small functions (see {@link SMALL_BODY}).
 *
 * @module
 */

import { scanBody, type ScannedBody } from "./_code_scanner.ts";
import { planChecks } from "./_check_plan.ts";
import {
  emitBody,
  type EmitContext,
  emitRefill,
  emitWrapper,
  Fuel,
  restartWeight,
} from "./_code_emitter.ts";
import type { CodeAdditions, ModuleState } from "./_module_state.ts";
import { WasmReader } from "./_wasm_reader.ts";
import { WasmWriter } from "./_wasm_writer.ts";

/**
 * V8 counts a function whose body is under 50 bytes as small, and when
 * under half of a module's functions are small it assumes the toolchain has
 * already inlined and cuts its own inlining budget (to a tenth at a quarter
 * or less: `InliningTree::BudgetScaleFactor`). Checks grow small functions
 * past the line, which made V8 inline far less in the instrumented module
 * than in the original (the benchmark's naive fib: 3.1x slower with the
 * share down from 50 % to 20 %, 1.1x with it restored), so the rewriter
 * adds empty, never-called functions until the share of small bodies is
 * the original's again (at most one half).
 */
const SMALL_BODY = 50;

/** V8's limit on functions in a module. */
const MAX_FUNCTIONS = 1_000_000;

/** Collects added function types, each once. */
class TypeAdder {
  readonly types: Uint8Array[] = [];
  #index = new Map<string, number>();
  #base: number;

  constructor(base: number) {
    this.#base = base;
  }

  /** The type index of `params -> results`, added if new. */
  add(params: number[], results: number[]): number {
    const w = new WasmWriter(16);
    w.u8(0x60);
    w.u32(params.length);
    for (const t of params) w.u8(t);
    w.u32(results.length);
    for (const t of results) w.u8(t);
    const bytes = w.finish();
    const key = bytes.join(",");
    let index = this.#index.get(key);
    if (index === undefined) {
      index = this.#base + this.types.length;
      this.types.push(bytes);
      this.#index.set(key, index);
    }
    return index;
  }
}

/**
 * Rewrites the code section's contents (after its count), given the reader
 * positioned at the first body. Writes the new contents to `w` and returns
 * what the type and function sections must gain.
 */
export function rewriteCode(
  r: WasmReader,
  count: number,
  s: ModuleState,
  w: WasmWriter,
): CodeAdditions {
  const bodies: ScannedBody[] = [];
  for (let i = 0; i < count; i++) {
    const spos = r.pos;
    const size = r.u32();
    if (size > r.end - r.pos) {
      r.fail(`body of function ${i} overruns the code section`, spos);
    }
    const params = s.typeParams[s.funcTypes[i]!]!;
    bodies.push(
      scanBody(new WasmReader(r.buf, r.pos, r.pos + size), s, params),
    );
    r.pos += size;
  }
  const plan = planChecks(bodies, s);
  const adder = new TypeAdder(s.interruptType + 1);
  const ctx: EmitContext = {
    buf: r.buf,
    s,
    plan,
    threadedBase: s.numFuncImports + 1 + count,
    indirectType: new Int32Array(s.numTypes).fill(-1),
    refill: new Int32Array(count).fill(-1),
  };
  if (plan.indirectThreaded.includes(1)) {
    // Table entries of those signatures become their threaded copies.
    for (let t = 0; t < s.numTypes; t++) {
      if (!plan.indirectThreaded[t]) continue;
      const sig = s.typeSigs[t]!;
      ctx.indirectType[t] = adder.add(
        [...sig.params, 0x7f],
        [...sig.results, 0x7f],
      );
    }
    const threadedBase = ctx.threadedBase;
    s.elemTarget = (idx) => {
      if (idx < s.numFuncImports) return idx;
      const f = idx - s.numFuncImports;
      return plan.indirectThreaded[s.funcTypes[f]!] && plan.threaded[f]! >= 0
        ? threadedBase + plan.threaded[f]!
        : idx + 1;
    };
  }
  const funcTypes: number[] = [];
  const wrapTypes: Uint8Array[] = [];
  for (const f of plan.threadedList) {
    const sig = s.typeSigs[s.funcTypes[f]!]!;
    funcTypes.push(adder.add([...sig.params, 0x7f], [...sig.results, 0x7f]));
    const bt = new WasmWriter(8);
    if (sig.results.length === 0) bt.u8(0x40);
    else if (sig.results.length === 1) bt.u8(sig.results[0]!);
    else bt.s32(adder.add([], sig.results));
    wrapTypes.push(bt.finish());
  }

  // Refill functions, after the threaded copies: for bodies whose first
  // check may restart them.
  const modeOf = (f: number) =>
    plan.threaded[f]! >= 0
      ? Fuel.Threaded
      : bodies[f]!.hasLoop
      ? Fuel.Local
      : Fuel.Global;
  const refills: [number, number][] = [];
  for (let f = 0; f < count; f++) {
    const weight = restartWeight(plan, f, bodies[f]!, modeOf(f));
    if (weight) refills.push([f, weight]);
  }
  const refillBase = ctx.threadedBase + plan.threadedList.length;
  if (refillBase + refills.length > MAX_FUNCTIONS) refills.length = 0;
  refills.forEach(([f], k) => {
    ctx.refill[f] = refillBase + k;
    const k2 = plan.threaded[f]!;
    funcTypes.push(k2 >= 0 ? funcTypes[k2]! : s.funcTypes[f]!);
  });

  const out = new WasmWriter(r.end - r.pos + 1024);
  const tmp = new WasmWriter(4096);
  let small = 0;
  const flush = () => {
    if (tmp.length < SMALL_BODY) small++;
    out.u32(tmp.length);
    out.append(tmp);
    tmp.reset();
  };
  for (let f = 0; f < count; f++) {
    const body = bodies[f]!;
    if (plan.threaded[f]! >= 0) {
      emitWrapper(ctx, f, tmp);
    } else {
      const mode = body.hasLoop ? Fuel.Local : Fuel.Global;
      emitBody(ctx, f, body, mode, null, tmp);
    }
    flush();
  }
  plan.threadedList.forEach((f, k) => {
    emitBody(ctx, f, bodies[f]!, Fuel.Threaded, wrapTypes[k]!, tmp);
    flush();
  });
  for (const [f, weight] of refills) {
    emitRefill(ctx, f, plan.threaded[f]! >= 0, weight, tmp);
    flush();
  }
  // Keep V8's share of small functions (see SMALL_BODY).
  const total = count + plan.threadedList.length + refills.length;
  let originalSmall = 0;
  for (const body of bodies) {
    if (body.end - body.start < SMALL_BODY) originalSmall++;
  }
  const padding = Math.min(
    paddingFor(originalSmall, count, small, total),
    MAX_FUNCTIONS - (s.numFuncImports + 1 + total),
  );
  if (padding > 0) {
    const type = adder.add([], []);
    for (let i = 0; i < padding; i++) {
      funcTypes.push(type);
      out.u32(2);
      out.u8(0x00); // no locals
      out.u8(0x0b); // end
    }
  }
  w.u32(total + Math.max(0, padding));
  w.append(out);
  return { types: adder.types, funcTypes };
}

/**
 * How many empty functions to add so that the share of small bodies is at
 * least the original's (capped at one half): `small` of `total` now,
 * `originalSmall` of `originalTotal` before.
 */
function paddingFor(
  originalSmall: number,
  originalTotal: number,
  small: number,
  total: number,
): number {
  if (originalTotal === 0 || originalSmall === 0) return 0;
  if (2 * originalSmall >= originalTotal) {
    // Target one half: 2 (small + k) >= total + k.
    return Math.max(0, total - 2 * small);
  }
  // (small + k) / (total + k) >= originalSmall / originalTotal.
  const need = originalSmall * total - small * originalTotal;
  return need <= 0 ? 0 : Math.ceil(need / (originalTotal - originalSmall));
}
