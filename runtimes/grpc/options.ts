/**
 * The public shapes of the gRPC runtime: the options of
 * {@linkcode loadGrpcPlugin} and of process supervision, and the
 * {@linkcode GrpcPlugin} it returns. Nothing here loads the gRPC library,
 * so importing these types costs nothing.
 *
 * @module
 */

import type { LogLevel } from "../../host/model/host_api.ts";
import type { Plugin } from "../../host/model/plugin.ts";

/** Where a plugin's log lines go: `(level, message, fields)`. */
export type GrpcLogSink = (
  level: LogLevel,
  message: string,
  fields: Record<string, unknown>,
) => void;

/** Crash handling of {@linkcode SupervisorOptions}. */
export interface RestartOptions {
  /** Crashes within `windowMs` that quarantine the plugin. @default 3 */
  maxCrashes?: number;
  /** The window crashes are counted in. @default 60000 */
  windowMs?: number;
  /** First restart delay; doubled after each further crash. @default 100 */
  backoffMs?: number;
  /** Longest restart delay. @default 5000 */
  maxBackoffMs?: number;
}

/**
 * Resource limits of a sandboxed plugin process (set with `prlimit`,
 * inherited by everything it starts). See `sandbox.ts` for what each one
 * covers.
 */
export interface SandboxLimits {
  /**
   * Processes and threads the plugin's uid may have (`RLIMIT_NPROC`); a
   * Deno plugin uses about 10 threads, each Worker a few more. Applied
   * only when the host runs as root (then the uid is the plugin's own).
   * @default 128
   */
  maxProcesses?: number;
  /**
   * Largest file the plugin may write, in bytes (`RLIMIT_FSIZE`); a write
   * past it ends the process (`SIGXFSZ`). @default 1 GiB
   */
  maxFileBytes?: number;
  /**
   * Private writable memory, in bytes (`RLIMIT_DATA`): the V8 heap,
   * `ArrayBuffer`s and the rest. Deno itself needs about 600 MiB of it.
   * @default 4 GiB
   */
  maxMemoryBytes?: number;
  /** Open file descriptors (`RLIMIT_NOFILE`). @default 1024 */
  maxOpenFiles?: number;
  /** Size of the sandbox's own `/tmp` (a tmpfs), in bytes. @default 64 MiB */
  tmpBytes?: number;
}

/**
 * The OS sandbox (bubblewrap) plugin processes run in; see `sandbox.ts`.
 * Without bubblewrap (or when its test run fails) plugins are refused with
 * a `SandboxUnavailableError`, unless the operator opts out with
 * `sandbox: "none"` (the host's `GOATKIT_UNSANDBOXED_PLUGINS=1`).
 */
export interface SandboxOptions {
  /** The `bwrap` executable. @default found in `/usr/bin`, `/bin`, …, else on `PATH` */
  bwrapPath?: string;
  /** The `prlimit` executable (util-linux). @default found like `bwrapPath` */
  prlimitPath?: string;
  /** The `setpriv` executable (util-linux; used when the host is root). @default found like `bwrapPath` */
  setprivPath?: string;
  /** Resource limits. */
  limits?: SandboxLimits;
  /** First uid of the per-plugin range (root hosts). @default 200000 */
  uidBase?: number;
  /** Size of the per-plugin uid range. @default 100000 */
  uidCount?: number;
}

/** How a plugin process is launched, watched, restarted and stopped. */
export interface SupervisorOptions {
  /**
   * The OS sandbox around the process: options, or `"none"` to run it
   * without one (development only: the host logs a warning at every
   * launch, and a TypeScript plugin can then read any file the host can
   * through string-literal imports).
   * @default {} (sandboxed with the default limits)
   */
  sandbox?: SandboxOptions | "none";
  /**
   * Permission flags derived from the plugin's grants (`--allow-read=…`,
   * `--allow-write=…` in its data directory), merged with the runtime's own
   * (its sockets, data directory). Without it the plugin gets only those.
   * In the sandbox, host paths are translated and paths that are not
   * mounted are dropped.
   */
  denoFlags?: readonly string[];
  /** The plugin's data directory (read/write); created if missing. */
  dataDir?: string;
  /** Native executables allowed to run (resolved paths). */
  trustedExecutables?: readonly string[];
  /** Time from spawn to a connected, registered plugin. @default 10000 */
  startTimeoutMs?: number;
  /** Crash restart and quarantine policy. */
  restart?: RestartOptions;
  /** Time given to each shutdown step before the next, harsher one. @default 2000 */
  shutdownGraceMs?: number;
  /** Period of health checks (0: only on demand). @default 0 */
  healthIntervalMs?: number;
  /**
   * After a call times out, the plugin must answer a health check within
   * this time or it is killed and restarted as hung. @default 2000
   */
  hangTimeoutMs?: number;
  /** Log lines per second kept from the process; the rest are counted. @default 500 */
  logLinesPerSecond?: number;
  /** Deno cache directory for TS plugins. @default the host's */
  denoDir?: string;
  /** Extra arguments for the plugin process. */
  args?: readonly string[];
}

/** A snapshot of a gRPC plugin's supervision state. */
export interface GrpcPluginStatus {
  /** `starting`, `running`, `restarting`, `quarantined` or `stopped`. */
  state: "starting" | "running" | "restarting" | "quarantined" | "stopped";
  /**
   * The current process id, when one runs: in the sandbox, the plugin's own
   * process as the host sees it (inside its PID namespace it has another).
   */
  pid: number | undefined;
  /** Result of the last health check. */
  healthy: boolean;
  /** Crashes seen since load. */
  crashes: number;
  /** Restarts done since load. */
  restarts: number;
  /** Why the plugin was quarantined. */
  quarantineReason: string | undefined;
  /** Whether the current (or last) process runs in the OS sandbox. */
  sandboxed: boolean;
  /** The uid the process runs as outside the sandbox, when the host gave it its own. */
  uid: number | undefined;
}

/** Options of {@linkcode loadGrpcPlugin}. */
export interface LoadGrpcPluginOptions extends SupervisorOptions {
  /** Upper bound of every call, on top of the call context's deadline. */
  callTimeoutMs?: number;
  /** Receives the plugin's log lines (stderr hclog JSON, other output as info). */
  logs?: GrpcLogSink;
  /** Sent to the plugin at `Init`. @default HOST_VERSION */
  hostVersion?: string;
  /**
   * Directory under which the plugin's private folder (its unix sockets
   * and import map) is made, as `gk-<label>-<random>` with a marker file,
   * so that `removeStaleRunDirs` can remove it after the host was killed.
   * The host passes `<dataDir>/run` (see `preparePluginRunRoot`). Keep it
   * short: socket paths under it must fit in 104 bytes.
   * @default the OS temp dir
   */
  tempDir?: string;
  /**
   * Told of every host callback refused because it was not bound to a live
   * call of this plugin (for the host's audit log, which rate-limits per
   * plugin); the plugin's log also gets a line, at most ten a second.
   */
  onCallbackRefused?: (refusal: CallbackRefusal) => void;
}

/** A host callback the runtime refused (see `onCallbackRefused`). */
export interface CallbackRefusal {
  /** The plugin whose callback was refused. */
  plugin: string;
  /** The `GKHost` method, when known. */
  method?: string;
  /** Why, in words. */
  reason: string;
  /** The gRPC status name the plugin received, such as `PERMISSION_DENIED`. */
  status: string;
}

/**
 * A gRPC plugin process under supervision, as {@linkcode loadGrpcPlugin}
 * returns it: a {@linkcode Plugin} with `runtime: "grpc"` plus its
 * supervision state.
 */
export interface GrpcPlugin extends Plugin {
  /** Always `grpc`. */
  readonly runtime: "grpc";
  /** The resolved entry path. */
  readonly entry: string;
  /** The registered name (the entry's base name before registration). */
  readonly name: string;
  /** The host's `GKHost` socket given to the plugin at `Init`. */
  readonly hostSocket: string;
  /** A snapshot of the supervision state. */
  status(): GrpcPluginStatus;
  /** Asks the plugin's health service; `false` when it does not answer in time. */
  checkHealth(timeoutMs?: number): Promise<boolean>;
}
