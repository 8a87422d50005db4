/**
 * Private: what the instrumenter knows about a module when it reaches the
 * code section ({@link ModuleState}), and the index checks and remapping that
 * the section rewriter and the code rewriter share.
 *
 * @module
 */

import type { WasmReader } from "./_wasm_reader.ts";

/** A function type: its parameter and result value types (one byte each). */
export interface FuncSig {
  params: number[];
  results: number[];
}

/** What the rewriter knows about the module when it reaches the code. */
export interface ModuleState {
  numTypes: number;
  /** Parameter count of each type. */
  typeParams: number[];
  /** Parameter and result types of each original type. */
  typeSigs: FuncSig[];
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
  /**
   * Whether every table entry comes from an active element segment of
   * function indices in this module: no table is imported or exported, no
   * segment is passive, declarative or made of expressions. (Code that
   * writes tables is found by the scanner.)
   */
  tablesClosed: boolean;
  /** Type index of each imported function. */
  importFuncTypes: number[];
  /** Function indices (imported and defined) in active element segments. */
  tableFuncs: number[];
  /**
   * The index an element segment entry `idx` gets, once the code rewriter
   * has chosen (a threaded copy for signatures that carry the fuel through
   * `call_indirect`); null until then.
   */
  elemTarget: ((idx: number) => number) | null;
}

/** What the code rewriter adds to the type and function sections. */
export interface CodeAdditions {
  /**
   * Encoded function types (`0x60 …`) to append after the `() -> i32` type:
   * the first gets type index `interruptType + 1`.
   */
  types: Uint8Array[];
  /** Type index of each function appended after the defined functions. */
  funcTypes: number[];
}

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
