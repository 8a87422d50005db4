/**
 * Errors of the gRPC runtime. Each names the plugin (or its entry when the
 * name is not known yet) and what failed.
 *
 * @module
 */

import { PluginError } from "../../host/model/errors.ts";

/** Why a handshake failed. */
export type HandshakeFailure =
  | "timeout"
  | "exited"
  | "malformed"
  | "version"
  | "protocol"
  | "network"
  | "connect";

/**
 * The plugin process did not complete go-plugin's handshake: it printed no
 * line or a wrong one before the start timeout, or exited. Carries what the
 * process wrote so far; the process has been killed.
 *
 * @example
 * ```ts
 * import { GrpcHandshakeError } from "./errors.ts";
 * const e = new GrpcHandshakeError("./bad.ts", "malformed", "expected 5 or 6 fields", { stdout: "hello\n" });
 * console.log(e.reason); // malformed
 * ```
 */
export class GrpcHandshakeError extends PluginError {
  /** What went wrong. */
  readonly reason: HandshakeFailure;
  /** Standard output seen before the failure (capped). */
  readonly stdout: string;
  /** Standard error seen before the failure (capped). */
  readonly stderr: string;
  /** The exit code, when the process exited. */
  readonly exitCode: number | undefined;

  /** Creates the error for the plugin at `plugin` (a name or entry path). */
  constructor(
    plugin: string,
    reason: HandshakeFailure,
    detail: string,
    output: { stdout?: string; stderr?: string; exitCode?: number } = {},
  ) {
    const stderr = output.stderr ?? "";
    const stdout = output.stdout ?? "";
    let message =
      `Cannot complete handshake with plugin "${plugin}" (${reason}): ${detail}`;
    if (stdout.trim()) message += `; stdout: ${JSON.stringify(stdout.trim())}`;
    if (stderr.trim()) message += `; stderr: ${JSON.stringify(stderr.trim())}`;
    super(plugin, message);
    this.name = "GrpcHandshakeError";
    this.reason = reason;
    this.stdout = stdout;
    this.stderr = stderr;
    this.exitCode = output.exitCode;
  }
}

/**
 * A native executable was to be launched but the host configuration does
 * not list it in `trustedExecutables`.
 */
export class UntrustedExecutableError extends PluginError {
  /** The executable's resolved path. */
  readonly path: string;

  /** Creates the error for executable `path`. */
  constructor(path: string) {
    super(
      path,
      `Cannot run native plugin executable "${path}": it is not listed in trustedExecutables`,
    );
    this.name = "UntrustedExecutableError";
    this.path = path;
  }
}

/**
 * The plugin's function ran and reported an error (`CallResponse.error`).
 *
 * @example
 * ```ts
 * import { PluginCallError } from "./errors.ts";
 * new PluginCallError("hello-grpc", "nope", "unknown function: nope").message;
 * // Cannot call function "nope" of plugin "hello-grpc": unknown function: nope
 * ```
 */
export class PluginCallError extends PluginError {
  /** The plugin's own error text. */
  readonly detail: string;

  /** Creates the error for `fn` of `plugin` with the plugin's `detail`. */
  constructor(plugin: string, fn: string, detail: string) {
    super(
      plugin,
      `Cannot call function "${fn}" of plugin "${plugin}": ${detail}`,
      {
        function: fn,
      },
    );
    this.name = "PluginCallError";
    this.detail = detail;
  }
}

/**
 * A plugin process was to start in the OS sandbox, but bubblewrap is
 * missing or its test run failed. The plugin is not started. Install
 * bubblewrap (Debian/Ubuntu: `apt-get install bubblewrap`) or, on a
 * development machine only, opt out with `sandbox: "none"`
 * (`GOATKIT_UNSANDBOXED_PLUGINS=1` for the host).
 *
 * @example
 * ```ts
 * import { SandboxUnavailableError } from "./errors.ts";
 * const e = new SandboxUnavailableError("hello", "bwrap not found");
 * console.log(e.reason); // bwrap not found
 * ```
 */
export class SandboxUnavailableError extends PluginError {
  /** Why the sandbox cannot be used. */
  readonly reason: string;

  /** Creates the error for `plugin` with the probe's `reason`. */
  constructor(plugin: string, reason: string) {
    super(
      plugin,
      `Cannot start plugin "${plugin}" in an OS sandbox: ${reason}. Install bubblewrap (apt-get install bubblewrap), or run plugins without a sandbox (development only) with sandbox: "none" / GOATKIT_UNSANDBOXED_PLUGINS=1`,
    );
    this.name = "SandboxUnavailableError";
    this.reason = reason;
  }
}
