/**
 * Private: decides where the fuel checks go ({@link planChecks}), from the
 * scanned bodies and the call graph.
 *
 * The call graph has one node per defined function and a virtual node
 * standing for "any function the host or a table can call": its successors
 * are the address-taken functions (element segments, `ref.func`, exports),
 * and a function with a `call_indirect`, a `return_call_indirect` or a call
 * to an imported function (the host may call back into any export: our
 * `host_call` calls `gk_malloc`) has an edge to it. Strongly connected
 * components with a cycle are the only places where guest code can run
 * unboundedly without a loop:
 *
 * - **Loops**: every loop header is checked (see `_code_emitter.ts`).
 * - **Cycles**: a call to a function of the caller's own cyclic component
 *   (for an indirect or import call: when the virtual node is in it) is an
 *   *R-site*. Every activation of a cycle member passes a check before its
 *   first R-site: the site gets a check unless an earlier check of the same
 *   activation dominates it (an entry check, a loop header, or an earlier
 *   R-site on every path to it — tracked by the scanner per block). So any
 *   chain of calls around a cycle passes a check per activation, and a
 *   member activation that makes no R-call runs straight-line code plus
 *   callees outside its component (bounded, below) before it returns. A
 *   member whose own unchecked work exceeds {@link CYCLE_ENTRY_WORK} is
 *   checked at entry instead, as its callers' checks would otherwise have
 *   to weigh it.
 * - **Acyclic call trees**: a function outside every cycle without loops is
 *   straight-line code calling functions of lower components; the work it
 *   does up to the next check (its size plus the unchecked work of its
 *   callees, transitively) is bounded, and when it exceeds
 *   {@link MAX_UNCHECKED_WORK} its heaviest callees get entry checks.
 *
 * Between two checks the guest thus runs bounded code, apart from returns:
 * unwinding a call stack runs the rest of each frame, and the engine's stack
 * limit bounds their number (as before this scheme).
 *
 * Members of a cyclic component without the virtual node whose tail calls
 * all stay among such members are *threaded*: they get a copy that takes
 * and returns the fuel as an extra `i32` (a register instead of the fuel
 * global), and the original index becomes a wrapper that passes the global.
 * Direct calls from code holding the fuel in a local call the copy.
 *
 * Recursion through a table (the virtual node's component is cyclic) can
 * carry the fuel too: for a signature called there, every table entry of it
 * is threaded, the element segments name the copies, and its
 * `call_indirect`s become calls of the signature plus an `i32` parameter
 * and result that pass the fuel and take it back ({@link tableThreading}
 * says when that is exact: the module alone fills its tables and no other
 * guest function or call site has the extended signature, so the guest can
 * neither hand a fuel value in nor read one out). The checks stay where
 * they were; only where the fuel lives changes.
 *
 * @module
 */

import {
  DOM_LOOP,
  E_CALL_INDIRECT,
  E_RETURN_CALL,
  E_RETURN_CALL_INDIRECT,
  EDIT,
  LOOP_UNROLLED,
  type ScannedBody,
  UNROLL,
} from "./_code_scanner.ts";
import type { ModuleState } from "./_module_state.ts";
import { BYTES_PER_FUEL } from "./constants.ts";

/**
 * Most straight-line work (in bytes of code, roughly instructions) a stretch
 * of guest execution may do between two fuel checks before the instrumenter
 * adds entry checks to shorten it.
 */
export const MAX_UNCHECKED_WORK = 4096;

/**
 * Work (bytes of code up to its next check) above which a member of a call
 * cycle is checked at entry rather than before its calls around the cycle.
 */
export const CYCLE_ENTRY_WORK = 256;

/** V8's limits on parameters and results of a function. */
const MAX_PARAMS = 1000;
const MAX_RESULTS = 1000;
/** V8's limit on functions in a module. */
const MAX_FUNCTIONS = 1_000_000;

/** Where the checks go, per defined function. */
export interface CheckPlan {
  /** Weight of the entry check, 0 for none. */
  entryWeight: Uint16Array;
  /** Position among the appended threaded copies, or -1. */
  threaded: Int32Array;
  /** The threaded functions, in the order of their copies. */
  threadedList: number[];
  /**
   * Per original type index: 1 when its `call_indirect`s pass the fuel as an
   * extra argument and take it back (every table entry of that signature is
   * a threaded copy).
   */
  indirectThreaded: Uint8Array;
  /**
   * Functions that never read or write the fuel, nor call anything that
   * might: callers holding the fuel in a local need not store it around
   * calls to them.
   */
  neutral: Uint8Array;
}

/** A signature as a string, to compare types structurally. */
function sigKey(params: readonly number[], results: readonly number[]): string {
  return `${params.join(",")}>${results.join(",")}`;
}

/** Fuel a check spends for `bytes` of code it covers (1 for tight loops). */
function weightOf(bytes: number): number {
  return 1 + Math.min(1000, Math.floor(bytes / BYTES_PER_FUEL));
}

/**
 * Strongly connected components (Tarjan, iterative), callees first. Node
 * `n` is the virtual node.
 */
function components(
  n: number,
  succ: (v: number) => readonly number[],
  hasVirtEdge: (v: number) => boolean,
): number[][] {
  const virt = n;
  const index = new Int32Array(n + 1).fill(-1);
  const low = new Int32Array(n + 1);
  const onStack = new Uint8Array(n + 1);
  const stack: number[] = [];
  const out: number[][] = [];
  let counter = 0;
  // Work stack of [node, next successor position]; position == successor
  // count means "the virtual edge", past it means done.
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
      const next = succ(v);
      const total = next.length + (hasVirtEdge(v) ? 1 : 0);
      if (i < total) {
        work[work.length - 1] = i + 1;
        const w = i < next.length ? next[i]! : virt;
        if (index[w] === -1) {
          work.push(w, 0);
        } else if (onStack[w]) {
          low[v] = Math.min(low[v]!, index[w]!);
        }
        continue;
      }
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
        out.push(component);
      }
    }
  }
  return out;
}

/**
 * Decides the checks (see the module documentation): entry checks, R-site
 * checks (marked in the bodies' edits), loop weights (written into the
 * edits), threaded functions and fuel-neutral functions.
 */
export function planChecks(bodies: ScannedBody[], s: ModuleState): CheckPlan {
  const n = bodies.length;
  const virt = n;
  const targets = [...s.addressTaken];
  const numImports = s.numFuncImports;
  const virtSites = (v: number) =>
    bodies[v]!.indirectCalls + bodies[v]!.importCalls;
  const comps = components(
    n,
    (v) => (v === virt ? targets : bodies[v]!.callees),
    (v) => v !== virt && virtSites(v) > 0,
  );
  const comp = new Int32Array(n + 1);
  const cyclic = new Uint8Array(n + 1);
  comps.forEach((members, c) => {
    const first = members[0]!;
    const isCyclic = members.length > 1 ||
      (first !== virt && bodies[first]!.callees.includes(first));
    for (const v of members) {
      comp[v] = c;
      cyclic[v] = isCyclic ? 1 : 0;
    }
  });

  // Work up to the next check, and entry checks where it grows too big.
  const checked = new Uint8Array(n + 1);
  const cost = new Float64Array(n + 1);
  const effective = (v: number) => (checked[v] ? 0 : cost[v]!);
  const outward = (f: number) => {
    // Callee weights outside f's component (R-sites are checked instead).
    const weight = new Map<number, number>();
    for (const g of bodies[f]!.callees) {
      if (comp[g] !== comp[f]) {
        weight.set(g, (weight.get(g) ?? 0) + effective(g));
      }
    }
    if (virtSites(f) && comp[virt] !== comp[f]) {
      weight.set(virt, virtSites(f) * effective(virt));
    }
    return weight;
  };
  const trim = (f: number): number => {
    const body = bodies[f]!;
    const weight = outward(f);
    let total = body.end - body.start;
    for (const w of weight.values()) total += w;
    if (total <= MAX_UNCHECKED_WORK) return total;
    // Check the heaviest callees until the work bound fits.
    const heavy = [...weight].sort((a, b) => b[1] - a[1]);
    for (const [g, w] of heavy) {
      if (total <= MAX_UNCHECKED_WORK || w === 0) break;
      if (g === virt) {
        for (const t of targets) checked[t] = 1;
        cost[virt] = 0;
      } else {
        checked[g] = 1;
      }
      total -= w;
    }
    return total;
  };
  for (const members of comps) {
    for (const v of members) {
      if (v === virt) continue;
      cost[v] = trim(v);
      // A big cycle member is checked at entry: one check per activation
      // costs little next to its work, and its callers' checks need not
      // cover it.
      if (cyclic[v] && cost[v]! > CYCLE_ENTRY_WORK) checked[v] = 1;
    }
    if (members.includes(virt)) {
      let worst = 0;
      for (const t of targets) worst = Math.max(worst, effective(t));
      cost[virt] = worst;
    }
  }

  const entryWeight = new Uint16Array(n);
  for (let f = 0; f < n; f++) {
    if (checked[f]) entryWeight[f] = weightOf(cost[f]!);
  }

  // Loop weights: the body plus the unchecked work it calls, times the
  // copies of an unrolled body.
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
      const copies = body.edits[at + 3]! & LOOP_UNROLLED ? UNROLL : 1;
      body.edits[at + 4] = Math.min(0x7fff, weightOf(work) * copies);
    }
  }

  // R-site checks, unless dominated by an earlier check.
  const isR = (f: number, body: ScannedBody, e: number): boolean => {
    const kind = body.edits[e]!;
    if (kind === E_CALL_INDIRECT || kind === E_RETURN_CALL_INDIRECT) {
      return comp[virt] === comp[f];
    }
    const idx = body.edits[e + 3]!;
    return idx < numImports
      ? comp[virt] === comp[f]
      : comp[idx - numImports] === comp[f];
  };
  // A site check weighs the code since the previous one (or the entry) and
  // the unchecked callees called in between.
  for (let f = 0; f < n; f++) {
    if (!cyclic[f] || checked[f]) continue;
    const body = bodies[f]!;
    const edits = body.edits;
    const dominated = new Uint8Array(edits.length / EDIT);
    let last = body.code;
    let calls = 0;
    for (const e of body.sites) {
      const d = edits[e + 4]!;
      const covered = d === DOM_LOOP ||
        (d >= 0 && (isR(f, body, d) || dominated[d / EDIT] === 1));
      dominated[e / EDIT] = covered ? 1 : 0;
      if (isR(f, body, e)) {
        if (!covered) {
          const pos = edits[e + 1]!;
          edits[e + 5] = weightOf(pos - last + calls);
          last = pos;
          calls = 0;
        }
      } else {
        const kind = edits[e]!;
        const idx = edits[e + 3]!;
        calls += kind === E_CALL_INDIRECT || kind === E_RETURN_CALL_INDIRECT ||
            idx < numImports
          ? effective(virt)
          : effective(idx - numImports);
      }
    }
  }

  // Threaded functions: cycle members outside the virtual node's component,
  // and the table entries of signatures threaded through `call_indirect`
  // (below), whose tail calls stay among threaded functions (a tail call
  // cannot add the fuel result to a callee that does not return it).
  const viaTable = tableThreading(bodies, s, comp, cyclic);
  const threaded = new Int32Array(n).fill(-1);
  const candidate = new Uint8Array(n);
  const typeKey = s.typeSigs.map((t) => sigKey(t.params, t.results));
  const inTable = new Uint8Array(n);
  for (const idx of s.tableFuncs) {
    if (idx >= numImports) inTable[idx - numImports] = 1;
  }
  for (;;) {
    for (let f = 0; f < n; f++) {
      const body = bodies[f]!;
      const sig = s.typeSigs[s.funcTypes[f]!]!;
      candidate[f] = (
          (cyclic[f] && comp[f] !== comp[virt]) ||
          (inTable[f] && viaTable.has(typeKey[s.funcTypes[f]!]!))
        ) &&
          !body.hasTailIndirect && sig.params.length < MAX_PARAMS &&
          sig.results.length < MAX_RESULTS
        ? 1
        : 0;
    }
    for (let changed = true; changed;) {
      changed = false;
      for (let f = 0; f < n; f++) {
        if (!candidate[f]) continue;
        const edits = bodies[f]!.edits;
        for (const e of bodies[f]!.sites) {
          if (edits[e] !== E_RETURN_CALL) continue;
          const idx = edits[e + 3]!;
          if (idx < numImports || !candidate[idx - numImports]) {
            candidate[f] = 0;
            changed = true;
            break;
          }
        }
      }
    }
    // A signature whose table entries cannot all be threaded is not.
    let dropped = false;
    for (const idx of s.tableFuncs) {
      if (idx < numImports) continue;
      const key = typeKey[s.funcTypes[idx - numImports]!]!;
      if (viaTable.has(key) && !candidate[idx - numImports]) {
        viaTable.delete(key);
        dropped = true;
      }
    }
    if (!dropped) break;
  }
  const threadedList: number[] = [];
  for (let f = 0; f < n; f++) if (candidate[f]) threadedList.push(f);
  if (numImports + 1 + n + threadedList.length > MAX_FUNCTIONS) {
    threadedList.length = 0;
    viaTable.clear();
  }
  threadedList.forEach((f, k) => threaded[f] = k);
  const indirectThreaded = new Uint8Array(s.numTypes);
  for (let t = 0; t < s.numTypes; t++) {
    if (viaTable.has(typeKey[t]!)) indirectThreaded[t] = 1;
  }

  // Fuel-neutral functions, callees first.
  const neutral = new Uint8Array(n);
  for (const members of comps) {
    for (const f of members) {
      if (f === virt || cyclic[f] || checked[f] || threaded[f] >= 0) continue;
      const body = bodies[f]!;
      if (body.hasLoop || body.hasBulk || virtSites(f)) continue;
      if (body.callees.every((g) => neutral[g])) neutral[f] = 1;
    }
  }
  return { entryWeight, threaded, threadedList, indirectThreaded, neutral };
}

/**
 * Signatures (keys) whose `call_indirect`s can carry the fuel: every entry
 * of such a signature in any table becomes its threaded copy, of the
 * signature plus an `i32` parameter and result, and those call sites become
 * `call_indirect`s of that type passing and taking back the fuel. Sound and
 * exact only when the module's code alone fills its tables (no imported or
 * exported table, only active segments of function indices, no code writing
 * a table: otherwise a wrapper could sit where a copy is expected), no
 * imported function of the signature is in a table, no original type equals
 * the extended signature (so no other function or call site of the guest
 * can take or hand out the fuel) and no `return_call_indirect` uses it.
 * Only for signatures called from members of a cycle through the virtual
 * node, where a check runs per activation.
 */
function tableThreading(
  bodies: ScannedBody[],
  s: ModuleState,
  comp: Int32Array,
  cyclic: Uint8Array,
): Set<string> {
  const on = new Set<string>();
  const n = bodies.length;
  if (!s.tablesClosed || !cyclic[n]) return on;
  if (bodies.some((b) => b.hasTableWrite)) return on;
  const keyOf = (t: number) =>
    sigKey(s.typeSigs[t]!.params, s.typeSigs[t]!.results);
  const existing = new Set(s.typeSigs.map((t) => sigKey(t.params, t.results)));
  const off = new Set<string>();
  for (const idx of s.tableFuncs) {
    if (idx < s.numFuncImports) off.add(keyOf(s.importFuncTypes[idx]!));
  }
  for (let f = 0; f < n; f++) {
    const body = bodies[f]!;
    const edits = body.edits;
    for (const e of body.sites) {
      const kind = edits[e];
      if (kind === E_RETURN_CALL_INDIRECT) off.add(keyOf(edits[e + 3]!));
      if (
        kind === E_CALL_INDIRECT && comp[f] === comp[n] && cyclic[f]
      ) {
        on.add(keyOf(edits[e + 3]!));
      }
    }
  }
  for (const key of on) {
    const t = s.typeSigs.find((x) => sigKey(x.params, x.results) === key)!;
    const extended = sigKey([...t.params, 0x7f], [...t.results, 0x7f]);
    if (off.has(key) || existing.has(extended)) on.delete(key);
  }
  return on;
}
