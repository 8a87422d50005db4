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
 * The folder's files. Public (re-exported here): `instrument_module.ts`
 * ({@link instrumentModule}), `cache.ts` ({@link instrumentModuleCached}),
 * `types.ts` (its options and result), `constants.ts` ({@link FUEL},
 * {@link INTERRUPT_IMPORT}, {@link BYTES_PER_FUEL},
 * {@link DEFAULT_MEMORY_LIMIT_PAGES}) and `wasm_instrument_error.ts`
 * ({@link WasmInstrumentError}). Private: `_rewrite_key.ts` (the checked
 * memory limit and the content hash), `_module_rewriter.ts` (every section but
 * the code: imports, function indices, memory cap, globals, custom sections,
 * validation), `_sections.ts` (header, section ids and order),
 * `_code_rewriter.ts` (the code section: fuel checks), `_opcodes.ts` (opcode
 * tables), `_wasm_reader.ts` and `_wasm_writer.ts` (binary reader and
 * writer).
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
