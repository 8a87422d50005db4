/**
 * The error the instrumenter raises for a module it cannot instrument,
 * {@link WasmInstrumentError}.
 *
 * @module
 */

/**
 * Raised when a WebAssembly module cannot be instrumented: it is malformed
 * (truncated, bad magic, bad LEB128, a section that overruns), uses an opcode
 * or proposal the instrumenter does not support (exceptions, GC, threads,
 * memory64, …), imports its memory, or needs more memory at start than the
 * limit allows. A module that raises it must not be run.
 *
 * @example
 * ```ts
 * import { instrumentModule, WasmInstrumentError } from "./mod.ts";
 * try {
 *   instrumentModule(new Uint8Array([0, 1, 2]));
 * } catch (e) {
 *   if (e instanceof WasmInstrumentError) console.log(e.message, e.offset);
 * }
 * ```
 */
export class WasmInstrumentError extends Error {
  /** Byte offset in the input module where the problem was found, if known. */
  readonly offset: number | undefined;

  /** Creates an error; `offset` is the byte offset in the input, if known. */
  constructor(message: string, offset?: number, options?: ErrorOptions) {
    super(
      offset === undefined
        ? `Cannot instrument WebAssembly module: ${message}`
        : `Cannot instrument WebAssembly module: ${message} at byte offset ${offset}`,
      options,
    );
    this.name = "WasmInstrumentError";
    this.offset = offset;
  }
}
