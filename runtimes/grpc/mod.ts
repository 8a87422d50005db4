/**
 * The gRPC runtime: out-of-process plugins that speak GoatKit's gRPC
 * protocol (`plugin.proto`, package `goatkit.plugin.v1`) behind HashiCorp
 * go-plugin's handshake. TypeScript plugins (written with the SDK at
 * `@goatkit/deno/sdk`) run under `deno run` with least-privilege flags; Go
 * plugins built with go-plugin run unchanged when the operator trusts them.
 * Both run inside an OS sandbox (bubblewrap: own namespaces, only their own
 * folders mounted, a per-plugin uid when the host is root, resource
 * limits; see {@linkcode SandboxOptions}); without bubblewrap they are
 * refused with a {@linkcode SandboxUnavailableError} unless the operator
 * opts out with `sandbox: "none"`.
 *
 * @example
 * ```ts ignore
 * import { loadGrpcPlugin } from "./mod.ts";
 * const plugin = await loadGrpcPlugin("plugins/hello/plugin.ts", {
 *   dataDir: "data/plugins/hello",
 * });
 * ```
 *
 * @module
 */

export { loadGrpcPlugin } from "./load.ts";
export type {
  CallbackRefusal,
  GrpcLogSink,
  GrpcPlugin,
  GrpcPluginStatus,
  LoadGrpcPluginOptions,
  RestartOptions,
  SandboxLimits,
  SandboxOptions,
  SupervisorOptions,
} from "./options.ts";
export {
  GrpcHandshakeError,
  type HandshakeFailure,
  PluginCallError,
  SandboxUnavailableError,
  UntrustedExecutableError,
} from "./errors.ts";
export {
  DEFAULT_SANDBOX_LIMITS,
  probeSandbox,
  resolveSandbox,
  SANDBOX_PATHS,
  type SandboxProbe,
  type SandboxTools,
} from "./sandbox.ts";
export {
  type Handshake,
  HandshakeLineError,
  parseHandshake,
} from "./handshake.ts";
export { type LogRecord, parseLogLine } from "./log_lines.ts";
export {
  type PluginRunRoot,
  preparePluginRunRoot,
  removeStaleRunDirs,
  RUN_DIR_MARKER,
  type StaleRunDirs,
} from "./run_dir.ts";
