/**
 * The instrumenter's entry point, {@link instrumentModule}: checks the
 * options, hashes the input and rewrites it (see `mod.ts` for exactly what
 * the rewriting does).
 *
 * @module
 */

import { computeHash, resolveLimit } from "./_rewrite_key.ts";
import { rewriteModule } from "./_module_rewriter.ts";
import type { InstrumentedModule, InstrumentOptions } from "./types.ts";

/**
 * Rewrites a WebAssembly module so that it interrupts itself through
 * `gk.interrupt` and cannot grow its memory past the limit (see the folder's
 * `mod.ts` documentation for exactly what changes).
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
 * import { instrumentModule } from "./mod.ts";
 * const wasm = new Uint8Array([0, 97, 115, 109, 1, 0, 0, 0]); // an empty module
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
  const { bytes: out, memoryMaxPages } = rewriteModule(bytes, limit);
  return { bytes: out, hash, memoryMaxPages };
}
