/**
 * The gRPC runtime: out-of-process plugins that speak GoatKit's gRPC
 * protocol (`plugin.proto`, package `goatkit.plugin.v1`) behind HashiCorp
 * go-plugin's handshake. TypeScript plugins (written with the SDK at
 * `@goatkit/deno/sdk`) run under `deno run` with least-privilege flags; Go
 * plugins built with go-plugin run unchanged when the operator trusts them.
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
  GrpcLogSink,
  GrpcPlugin,
  GrpcPluginStatus,
  LoadGrpcPluginOptions,
  RestartOptions,
  SupervisorOptions,
} from "./options.ts";
export {
  GrpcHandshakeError,
  type HandshakeFailure,
  PluginCallError,
  UntrustedExecutableError,
} from "./errors.ts";
export {
  type Handshake,
  HandshakeLineError,
  parseHandshake,
} from "./handshake.ts";
export { type LogRecord, parseLogLine } from "./log_lines.ts";
