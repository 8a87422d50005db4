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
 *   holding the fuel, initially {@link FUEL}. A check is `fuel -= w; if
 *   (fuel <= 0) fuel = gk.interrupt()`; the host's `interrupt` returns the
 *   new fuel (normally {@link FUEL}) or throws to stop the guest (a JS
 *   exception thrown from an import unwinds the whole WASM call). The weight
 *   `w` grows with the code a check covers (1 per {@link BYTES_PER_FUEL}
 *   bytes), so one fuel unit is roughly 1–10 ns of guest work.
 * - **Where the checks go.**
 *   - *Loops*: every loop header. A loop without parameters is wrapped so
 *     that the `gk.interrupt` call sits outside it; a small innermost loop
 *     without calls is unrolled four times behind one check.
 *   - *Bulk memory/table operations*: before each, weighed by its length.
 *   - *Call cycles*: the call graph has a virtual node for "any function a
 *     table, `ref.func`, an export or the host can reach": its successors
 *     are the address-taken and exported functions, and every
 *     `call_indirect`, `return_call_indirect` and call to an import (the
 *     host may call any export back, as `host_call` does with `gk_malloc`)
 *     is an edge to it. In a strongly connected component with a cycle, a
 *     call (or tail call) that can re-enter the component is an *R-site*;
 *     each activation of a member passes a check before its first R-site:
 *     the site is checked unless an earlier check of the same activation
 *     dominates it (a loop header, the entry, or an earlier R-site on every
 *     path). Members whose unchecked work exceeds a few hundred bytes are
 *     checked at entry instead. Functions outside every cycle get no check
 *     unless the straight-line work of their call tree would be too big.
 *   - *Fuel in registers*: a function with loops keeps the fuel in a local,
 *     stored back around calls (not around calls to functions that never
 *     touch the fuel). Members of cycles that no table, export or import
 *     reaches, and whose tail calls stay among such members, get a
 *     *threaded* copy that takes and returns the fuel as an extra `i32`, so
 *     recursion passes it in a register; the original index becomes a
 *     wrapper that passes the fuel global (exports, tables and `ref.func`
 *     keep working, and a tail-call cycle never goes through a wrapper).
 *     Recursion through a table carries the fuel the same way when the
 *     module alone fills its tables (no imported or exported table, only
 *     active segments of function indices, no code writing a table): for a
 *     signature called on such a cycle, every table entry of it is its
 *     threaded copy and its `call_indirect`s pass and take back the fuel,
 *     unless an imported function of it is in a table, a
 *     `return_call_indirect` uses it, or the module already has a type
 *     equal to the extended signature (which would let guest code hand in
 *     or read out a fuel value).
 *   - *Refill by restart*: when a function's first check comes before
 *     any effect (call, store, loop, write to a global, parameter or table,
 *     bulk or SIMD operation), an empty fuel restarts the function through
 *     a small refill function (`gk.interrupt() + w`, then a tail call to the
 *     function with its parameters) instead of calling `gk.interrupt` in
 *     place; re-running effect-free code is invisible, and keeps V8 from
 *     spilling values around the cold call on every activation.
 *   - *Engine heuristics*: V8 cuts its inlining budget when under half of a
 *     module's bodies are small (under 50 bytes); checks grow small bodies,
 *     so empty, never-called functions are added until the share of small
 *     bodies is the original's again (capped at one half).
 *
 *   Why every unbounded run reaches a check: take a stretch of execution
 *   with no check. Straight-line code runs each instruction once; crossing a
 *   loop's back edge passes its header check (an unrolled loop: after at
 *   most four call-free copies of its body). An activation *started* in the
 *   stretch cannot make an R-call (that needs a check in the same
 *   activation first), so it only calls functions of lower components,
 *   whose unchecked work is bounded by induction over the (acyclic)
 *   component graph; a tail call is a call here. Only the activations
 *   already on the stack when the stretch began can make R-calls (dominated
 *   by their earlier checks), each at most once per call site as the stack
 *   unwinds, so the stretch is bounded by the engine's stack depth times the
 *   largest function and its unchecked callees. A restart runs
 *   `gk.interrupt` before the function starts again, like a refill in
 *   place; a call through a table that carries the fuel reaches only our
 *   threaded copies, which spend it as the global would. A blocking import
 *   is the host's to bound (ours are: every host call honours the
 *   deadline).
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
 * The folder's files. Public (re-exported here): `instrument_module.ts`
 * ({@link instrumentModule}), `cache.ts` ({@link instrumentModuleCached}),
 * `types.ts` (its options and result), `constants.ts` ({@link FUEL},
 * {@link INTERRUPT_IMPORT}, {@link BYTES_PER_FUEL},
 * {@link DEFAULT_MEMORY_LIMIT_PAGES}) and `wasm_instrument_error.ts`
 * ({@link WasmInstrumentError}). Private: `_rewrite_key.ts` (the checked
 * memory limit and the content hash), `_module_rewriter.ts` (every section but
 * the code: imports, function indices, memory cap, globals, added types and
 * functions, custom sections, validation), `_module_state.ts` (what the
 * sections tell the code rewriter), `_sections.ts` (header, section ids and
 * order), `_code_rewriter.ts` (the code section: scan, plan, emit, padding),
 * `_code_scanner.ts` (decoding a body, recording edits), `_check_plan.ts`
 * (call graph, cycles, where checks go, threaded functions),
 * `_code_emitter.ts` (writing bodies with their checks), `_opcodes.ts`
 * (opcode tables), `_wasm_reader.ts` and `_wasm_writer.ts` (binary reader
 * and writer).
 *
 * @example Instrument, compile and run a module
 * ```ts
 * import { FUEL, instrumentModule, INTERRUPT_IMPORT } from "./mod.ts";
 *
 * // (module (func (export "answer") (result i32) i32.const 42))
 * const original = new Uint8Array([
 *   0, 97, 115, 109, 1, 0, 0, 0, 1, 5, 1, 96, 0, 1, 127, 3, 2, 1, 0, 7, 10, 1,
 *   6, 97, 110, 115, 119, 101, 114, 0, 0, 10, 6, 1, 4, 0, 65, 42, 11,
 * ]);
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
 * const answer = instance.exports.answer as () => number;
 * console.log(answer()); // 42
 * ```
 *
 * @module
 */

export { instrumentModuleCached } from "./cache.ts";
export {
  BYTES_PER_FUEL,
  DEFAULT_MEMORY_LIMIT_PAGES,
  FUEL,
  INTERRUPT_IMPORT,
} from "./constants.ts";
export { instrumentModule } from "./instrument_module.ts";
export type { InstrumentedModule, InstrumentOptions } from "./types.ts";
export { WasmInstrumentError } from "./wasm_instrument_error.ts";
