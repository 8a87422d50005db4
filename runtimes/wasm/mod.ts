/**
 * The WASM runtime: GoatFlow-compatible GoatKit plugins compiled to
 * WebAssembly, each instance isolated in its own permission-less Deno Worker,
 * interruptible at its deadline through instrumentation, with our own
 * deny-by-default WASI preview1 layer.
 *
 * - {@linkcode loadWasmPlugin} loads a plugin (bytes or path) as a `Plugin`.
 * - {@linkcode instrumentModule} is the binary rewriter (fuel + memory cap).
 * - {@linkcode runWasiCommand} runs a WASI command (`_start`) in a worker.
 *
 * The WASI preview1 layer they run on is its own entry (`runtimes/wasi/mod.ts`).
 *
 * @example
 * ```ts ignore
 * import { loadWasmPlugin } from "./mod.ts";
 * import { Manager } from "../../host/manager.ts";
 * const manager = new Manager();
 * await manager.register(await loadWasmPlugin("plugin.wasm", { callTimeoutMs: 5000 }));
 * ```
 *
 * @module
 */

export {
  loadWasmPlugin,
  WasmLoadError,
  type WasmPlugin,
  type WasmPluginOptions,
  type WasmPreopen,
  type WasmQuarantineOptions,
  type WasmQueueOptions,
  type WasmWasiOptions,
} from "./plugin.ts";
export { WasmAbiError } from "./abi.ts";
export {
  DEFAULT_MEMORY_LIMIT_PAGES,
  FUEL,
  type InstrumentedModule,
  instrumentModule,
  instrumentModuleCached,
  type InstrumentOptions,
  INTERRUPT_IMPORT,
  WasmInstrumentError,
} from "./instrument/mod.ts";
export {
  runWasiCommand,
  type RunWasiCommandOptions,
  runWasiCommandWithStats,
  WasiCommandError,
  type WasiCommandResult,
  WasiTimeoutError,
} from "./command/run_command.ts";
