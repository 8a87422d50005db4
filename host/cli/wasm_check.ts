/**
 * Checks that a file is a real GoatKit WASM plugin before it is packed or
 * run: the WebAssembly magic and version, a module that compiles, the ABI's
 * exports (`gk_register`, `gk_call`, `gk_malloc`, `memory`) and no imports
 * beyond what the host provides (`gk.*`, `wasi_snapshot_preview1`).
 *
 * The names mirror `runtimes/wasm/abi.ts`, which `host/cli/` may not
 * import (only `host/loading/` imports `runtimes/`).
 *
 * @module
 */

import { CliError } from "./errors.ts";

/** The functions a GoatKit module must export (`runtimes/wasm/abi.ts`). */
export const ABI_FUNCTION_EXPORTS: readonly string[] = [
  "gk_register",
  "gk_call",
  "gk_malloc",
];

/** The memory a GoatKit module must export. */
export const ABI_MEMORY_EXPORT = "memory";

/** Functions of import module `gk` the host provides (`GK_IMPORTS`). */
export const ABI_GK_IMPORTS: readonly string[] = [
  "host_call",
  "log",
  "last_error",
  "interrupt",
];

const MAGIC = [0x00, 0x61, 0x73, 0x6d];

/** What {@linkcode checkWasmModule} found. */
export interface WasmCheck {
  /** The compiled module. */
  module: WebAssembly.Module;
  /** Whether the module exports the optional `gk_free`. */
  hasFree: boolean;
  /** WASI functions it imports. */
  wasiImports: string[];
}

/**
 * Validates `bytes` as a GoatKit WASM plugin module; throws a
 * {@linkcode CliError} naming `label` and the first problem.
 *
 * @example
 * ```ts
 * import { checkWasmModule } from "./wasm_check.ts";
 * try {
 *   checkWasmModule(new TextEncoder().encode("hello"), "x.wasm");
 * } catch (e) {
 *   console.log((e as Error).message); // Cannot use "x.wasm": not a WebAssembly module (no \0asm magic)
 * }
 * ```
 */
export function checkWasmModule(bytes: Uint8Array, label: string): WasmCheck {
  const fail = (why: string) => new CliError(`Cannot use "${label}": ${why}`);
  const module = compileModule(bytes, fail);
  const exports = new Map(
    WebAssembly.Module.exports(module).map((e) => [e.name, e.kind]),
  );
  const missing = [
    ...ABI_FUNCTION_EXPORTS.filter((n) => exports.get(n) !== "function"),
    ...(exports.get(ABI_MEMORY_EXPORT) === "memory" ? [] : [ABI_MEMORY_EXPORT]),
  ];
  if (missing.length > 0) {
    throw fail(
      `it does not export the GoatKit ABI: missing ${missing.join(", ")}`,
    );
  }
  const wasiImports: string[] = [];
  for (const imp of WebAssembly.Module.imports(module)) {
    if (imp.module === "wasi_snapshot_preview1" && imp.kind === "function") {
      wasiImports.push(imp.name);
      continue;
    }
    if (
      imp.module === "gk" && imp.kind === "function" &&
      ABI_GK_IMPORTS.includes(imp.name)
    ) continue;
    throw fail(
      `it imports ${imp.module}.${imp.name} (${imp.kind}), which the host does not provide (only gk.${
        ABI_GK_IMPORTS.join(", gk.")
      } and wasi_snapshot_preview1)`,
    );
  }
  return {
    module,
    hasFree: exports.get("gk_free") === "function",
    wasiImports,
  };
}

/** The import module that marks an Extism plugin (`runtimes/extism`). */
export const EXTISM_ENV_MODULE = "extism:host/env";

/** What {@linkcode checkExtismModule} found. */
export interface ExtismCheck {
  /** The compiled module. */
  module: WebAssembly.Module;
  /** Exported functions (the functions a caller may call). */
  functions: string[];
  /** Imports outside `extism:host/env` and WASI: user host functions. */
  userImports: string[];
}

/**
 * Whether `bytes` compile to a module importing from `extism:host/env` (an
 * Extism plugin); `false` for anything that does not compile.
 *
 * @example
 * ```ts
 * import { isExtismWasm } from "./wasm_check.ts";
 * console.log(isExtismWasm(new Uint8Array([0, 97, 115, 109, 1, 0, 0, 0]))); // false
 * ```
 */
export function isExtismWasm(bytes: Uint8Array): boolean {
  try {
    const module = new WebAssembly.Module(bytes as Uint8Array<ArrayBuffer>);
    return WebAssembly.Module.imports(module).some((i) =>
      i.module === EXTISM_ENV_MODULE
    );
  } catch {
    return false;
  }
}

/**
 * Validates `bytes` as an Extism plugin module: a WebAssembly module that
 * compiles, imports from `extism:host/env` and exports at least one
 * function. Other import modules are user host functions the embedding host
 * must provide (listed in the result). Throws a {@linkcode CliError} naming
 * `label` and the problem.
 *
 * @example
 * ```ts
 * import { checkExtismModule } from "./wasm_check.ts";
 * try {
 *   checkExtismModule(new Uint8Array([0, 97, 115, 109, 1, 0, 0, 0]), "x.wasm");
 * } catch (e) {
 *   console.log((e as Error).message); // Cannot use "x.wasm": it imports nothing from extism:host/env (not an Extism plugin)
 * }
 * ```
 */
export function checkExtismModule(
  bytes: Uint8Array,
  label: string,
): ExtismCheck {
  const fail = (why: string) => new CliError(`Cannot use "${label}": ${why}`);
  const module = compileModule(bytes, fail);
  const imports = WebAssembly.Module.imports(module);
  if (!imports.some((i) => i.module === EXTISM_ENV_MODULE)) {
    throw fail(
      `it imports nothing from ${EXTISM_ENV_MODULE} (not an Extism plugin)`,
    );
  }
  const functions = WebAssembly.Module.exports(module).filter((e) =>
    e.kind === "function"
  ).map((e) => e.name);
  if (functions.length === 0) throw fail("it exports no function");
  const userImports = imports.filter((i) =>
    i.module !== EXTISM_ENV_MODULE && i.module !== "wasi_snapshot_preview1"
  ).map((i) => `${i.module}.${i.name}`);
  return { module, functions, userImports };
}

/**
 * `bytes` compiled, after checking the `\0asm` magic and the binary
 * version; `fail` makes the error for a reason.
 */
function compileModule(
  bytes: Uint8Array,
  fail: (why: string) => CliError,
): WebAssembly.Module {
  if (bytes.length < 8 || MAGIC.some((b, i) => bytes[i] !== b)) {
    throw fail("not a WebAssembly module (no \\0asm magic)");
  }
  if (bytes[4] !== 1 || bytes[5] !== 0 || bytes[6] !== 0 || bytes[7] !== 0) {
    throw fail(
      `unsupported WebAssembly binary version ${
        new DataView(bytes.buffer, bytes.byteOffset + 4, 4).getUint32(0, true)
      } (expected 1)`,
    );
  }
  try {
    return new WebAssembly.Module(bytes as Uint8Array<ArrayBuffer>);
  } catch (e) {
    throw fail(
      `the module does not compile: ${
        (e instanceof Error ? e.message : String(e)).split("\n")[0]
      }`,
    );
  }
}
