/**
 * {@linkcode loadGrpcPlugin}: runs a plugin as a supervised subprocess that
 * speaks GoatKit's gRPC protocol behind HashiCorp go-plugin's handshake, and
 * presents it as a {@linkcode Plugin}.
 *
 * @module
 */

import * as grpc from "@grpc/grpc-js";
import { basename, dirname, resolve } from "node:path";
import { tmpdir } from "node:os";
import type { HostAPI, LogLevel } from "../../host/model/host_api.ts";
import type {
  CallContext,
  Plugin,
  PluginEnvironment,
} from "../../host/model/plugin.ts";
import type { GKRegistration } from "../../host/model/manifest.ts";
import {
  errorText,
  PluginCrashedError,
  PluginError,
  PluginTimeoutError,
} from "../../host/model/errors.ts";
import { HOST_VERSION } from "../../host/model/version.ts";
import {
  GrpcHandshakeError,
  type HandshakeFailure,
  PluginCallError,
} from "./errors.ts";
import { HandshakeLineError, parseHandshake } from "./handshake.ts";
import {
  buildLaunch,
  hostDenoDir,
  hostLockFile,
  importMapJson,
  type LaunchSpec,
  PROTOCOL_VERSIONS,
} from "./launch.ts";
import { LogRateLimiter, parseLogLine, readLines } from "./log_lines.ts";
import {
  loadProto,
  LOCAL_CHANNEL_OPTIONS,
  type PbCallRequest,
  type PbCallResponse,
  type PbRegistration,
  unary,
} from "./proto.ts";
import { registrationFromPb } from "./registration.ts";
import { serveHostService } from "./host_service.ts";

/** Where a plugin's log lines go: `(level, message, fields)`. */
export type GrpcLogSink = (
  level: LogLevel,
  message: string,
  fields: Record<string, unknown>,
) => void;

/** Crash handling of {@linkcode LoadGrpcPluginOptions}. */
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

/** Options of {@linkcode loadGrpcPlugin}. */
export interface LoadGrpcPluginOptions {
  /**
   * Permission flags derived from the plugin's grants (`--allow-net=…`,
   * `--allow-read=…`, `--allow-write=…`), merged with the runtime's own
   * (its sockets, data directory). Without it the plugin gets only those.
   */
  denoFlags?: readonly string[];
  /** The plugin's data directory (read/write); created if missing. */
  dataDir?: string;
  /** Native executables allowed to run (resolved paths). */
  trustedExecutables?: readonly string[];
  /** Time from spawn to a connected, registered plugin. @default 10000 */
  startTimeoutMs?: number;
  /** Upper bound of every call, on top of the call context's deadline. */
  callTimeoutMs?: number;
  /** Crash restart and quarantine policy. */
  restart?: RestartOptions;
  /** Receives the plugin's log lines (stderr hclog JSON, other output as info). */
  logs?: GrpcLogSink;
  /** Sent to the plugin at `Init`. @default HOST_VERSION */
  hostVersion?: string;
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
  /** Directory under which the private socket directory is made. @default the OS temp dir */
  tempDir?: string;
  /** Extra arguments for the plugin process. */
  args?: readonly string[];
}

/** A snapshot of a gRPC plugin's supervision state. */
export interface GrpcPluginStatus {
  /** `starting`, `running`, `restarting`, `quarantined` or `stopped`. */
  state: "starting" | "running" | "restarting" | "quarantined" | "stopped";
  /** The current process id, when one runs. */
  pid: number | undefined;
  /** Result of the last health check. */
  healthy: boolean;
  /** Crashes seen since load. */
  crashes: number;
  /** Restarts done since load. */
  restarts: number;
  /** Why the plugin was quarantined. */
  quarantineReason: string | undefined;
}

interface Pending {
  reject(e: Error): void;
}

/** One running process and its connection. */
interface Generation {
  child: Deno.ChildProcess;
  pid: number;
  client: grpc.Client;
  health: grpc.Client;
  target: string;
  exited: boolean;
  /** Being killed (hung); new calls wait for the restart. */
  doomed: boolean;
  status: Promise<Deno.CommandStatus>;
  stdin: WritableStreamDefaultWriter<Uint8Array> | undefined;
  socketPath: string | undefined;
  inflight: Set<Pending>;
  output: Promise<void>;
}

const CAPTURE_LIMIT = 8192;
const LOCK_FILE = hostLockFile();
const noop = () => {};

function delay(ms: number): Promise<void> {
  return new Promise((r) => setTimeout(r, ms));
}

function logContext(name: string): CallContext {
  return {
    chain: [name],
    deadline: Date.now() + 5000,
    signal: new AbortController().signal,
  };
}

/**
 * A gRPC plugin process under supervision. Create it with
 * {@linkcode loadGrpcPlugin}.
 */
export class GrpcPlugin implements Plugin {
  /** Always `grpc`. */
  readonly runtime = "grpc" as const;
  /** The resolved entry path. */
  readonly entry: string;

  readonly #options: LoadGrpcPluginOptions;
  readonly #dir: string;
  readonly #hostSocket: string;
  readonly #socketDir: string;
  readonly #importMap: string;
  #hostServer: grpc.Server | undefined;
  #registration: GKRegistration | undefined;
  #name: string;
  #host: HostAPI | undefined;
  #env: PluginEnvironment | undefined;
  #gen: Generation | undefined;
  #ready: Promise<Generation>;
  #state: GrpcPluginStatus["state"] = "starting";
  #healthy = false;
  #crashTimes: number[] = [];
  #crashes = 0;
  #restarts = 0;
  #quarantineReason: string | undefined;
  #restartTimer: ReturnType<typeof setTimeout> | undefined;
  #restartWake: (() => void) | undefined;
  #healthTimer: ReturnType<typeof setInterval> | undefined;
  #contexts = new Map<string, CallContext>();
  #launching: Promise<Generation> | undefined;
  #limiter: LogRateLimiter;

  /** Use {@linkcode loadGrpcPlugin}. */
  constructor(entry: string, dir: string, options: LoadGrpcPluginOptions) {
    this.entry = resolve(entry);
    this.#options = options;
    this.#dir = dir;
    this.#hostSocket = `${dir}/host.sock`;
    this.#socketDir = `${dir}/plugin`;
    this.#importMap = `${dir}/import_map.json`;
    this.#name = basename(this.entry);
    this.#limiter = new LogRateLimiter(options.logLinesPerSecond ?? 500);
    this.#ready = Promise.reject(new Error("not started"));
    this.#ready.catch(noop);
  }

  /** The plugin's name (its entry file name until it registered). */
  get name(): string {
    return this.#name;
  }

  /** Supervision state. */
  status(): GrpcPluginStatus {
    return {
      state: this.#state,
      pid: this.#gen && !this.#gen.exited ? this.#gen.pid : undefined,
      healthy: this.#healthy,
      crashes: this.#crashes,
      restarts: this.#restarts,
      quarantineReason: this.#quarantineReason,
    };
  }

  /** The unix socket the host serves `GKHost` on for this plugin. */
  get hostSocket(): string {
    return this.#hostSocket;
  }

  /** Starts the first process (called by {@linkcode loadGrpcPlugin}). */
  async start(): Promise<void> {
    // go-plugin names its socket pluginNNNNNNNNNN; ours is plugin.sock.
    const longest = `${this.#socketDir}/plugin0123456789`;
    if (new TextEncoder().encode(longest).length > 104) {
      await this.#cleanup();
      throw new RangeError(
        `Cannot start plugin "${this.#name}": socket path "${longest}" exceeds the 104-byte unix socket limit (choose a shorter tempDir)`,
      );
    }
    await Deno.mkdir(this.#socketDir, { mode: 0o700 });
    await Deno.writeTextFile(this.#importMap, importMapJson(), { mode: 0o600 });
    if (this.#options.dataDir) {
      await Deno.mkdir(this.#options.dataDir, { recursive: true });
    }
    this.#hostServer = await serveHostService(this.#hostSocket, {
      host: () => this.#host,
      context: (id) => this.#callbackContext(id),
      name: () => this.#name,
    });
    this.#ready = this.#launchTracked();
    this.#ready.catch(noop);
    try {
      await this.#ready;
    } catch (e) {
      await this.#cleanup();
      throw e;
    }
    const every = this.#options.healthIntervalMs ?? 0;
    if (every > 0) {
      let checking = false;
      this.#healthTimer = setInterval(() => {
        if (this.#state !== "running" || checking) return;
        checking = true;
        this.checkHealth(Math.max(every, 1000)).finally(() => checking = false);
      }, every);
      Deno.unrefTimer(this.#healthTimer);
    }
  }

  #callbackContext(id: string | undefined): CallContext {
    const ctx = id ? this.#contexts.get(id) : undefined;
    if (ctx) return ctx;
    return {
      chain: [this.#name],
      deadline: Date.now() + (this.#options.callTimeoutMs ?? 30_000),
      signal: new AbortController().signal,
    };
  }

  #log(level: LogLevel, message: string, fields: Record<string, unknown>) {
    const dropped = this.#limiter.takeDropped();
    const sink: GrpcLogSink | undefined = this.#options.logs ??
      (this.#host
        ? (l, m, f) => this.#host!.log(logContext(this.#name), l, m, f)
        : undefined);
    if (!sink) return;
    try {
      if (dropped > 0) {
        sink("warn", `dropped ${dropped} log lines (rate limit)`, {
          plugin: this.#name,
        });
      }
      sink(level, message, fields);
    } catch { /* a failing sink must not break supervision */ }
  }

  #logLine(line: string, stream: "stdout" | "stderr") {
    if (!line) return;
    if (!this.#limiter.take()) return;
    const rec = parseLogLine(line);
    if (stream === "stdout") rec.fields.stream = "stdout";
    this.#log(rec.level, rec.message, rec.fields);
  }

  /** Spawns a process, waits for its handshake, connects and registers. */
  async #launch(): Promise<Generation> {
    const startTimeout = this.#options.startTimeoutMs ?? 10_000;
    const deadline = Date.now() + startTimeout;
    const pluginSocket = `${this.#socketDir}/plugin.sock`;
    await Deno.remove(pluginSocket).catch(noop);
    const spec: LaunchSpec = buildLaunch({
      entry: this.entry,
      socketDir: this.#socketDir,
      pluginSocket,
      hostSocket: this.#hostSocket,
      importMap: this.#importMap,
      denoDir: this.#options.denoDir ?? hostDenoDir(),
      ...(LOCK_FILE ? { lockFile: LOCK_FILE } : {}),
      ...(this.#options.dataDir ? { dataDir: this.#options.dataDir } : {}),
      ...(this.#options.denoFlags
        ? { denoFlags: this.#options.denoFlags }
        : {}),
      ...(this.#options.trustedExecutables
        ? { trustedExecutables: this.#options.trustedExecutables }
        : {}),
      ...(this.#options.args ? { args: this.#options.args } : {}),
    });
    let child: Deno.ChildProcess;
    try {
      child = new Deno.Command(spec.command, {
        args: spec.args,
        env: spec.env,
        clearEnv: true,
        cwd: spec.cwd,
        stdin: "piped",
        stdout: "piped",
        stderr: "piped",
      }).spawn();
    } catch (e) {
      throw new GrpcHandshakeError(
        this.#name,
        "exited",
        `cannot start ${spec.command}: ${errorText(e)}`,
      );
    }
    const status = child.status;
    let exited = false;
    let exitStatus: Deno.CommandStatus | undefined;
    status.then((s) => {
      exited = true;
      exitStatus = s;
    });

    let stdoutText = "";
    let stderrText = "";
    let handshakeLine: string | undefined;
    let onHandshake: (line: string) => void = noop;
    const gotLine = new Promise<string>((r) => onHandshake = r);
    let handshaking = true;
    const stdoutDone = readLines(child.stdout, (line) => {
      if (handshakeLine === undefined) {
        handshakeLine = line;
        if (stdoutText.length < CAPTURE_LIMIT) stdoutText += line + "\n";
        onHandshake(line);
        return;
      }
      this.#logLine(line, "stdout");
    });
    const stderrDone = readLines(child.stderr, (line) => {
      if (handshaking && stderrText.length < CAPTURE_LIMIT) {
        stderrText += line.slice(0, CAPTURE_LIMIT) + "\n";
      }
      this.#logLine(line, "stderr");
    });
    const output = Promise.all([stdoutDone, stderrDone]).then(noop);
    const stdin = child.stdin.getWriter();

    const fail = async (
      reason: HandshakeFailure,
      detail: string,
    ): Promise<never> => {
      try {
        child.kill("SIGKILL");
      } catch { /* already gone */ }
      await status;
      await Promise.race([output, delay(500)]);
      await stdin.close().catch(noop);
      handshaking = false;
      throw new GrpcHandshakeError(this.#name, reason, detail, {
        stdout: stdoutText,
        stderr: stderrText,
        ...(exitStatus ? { exitCode: exitStatus.code } : {}),
      });
    };

    let timer: ReturnType<typeof setTimeout> | undefined;
    const timeout = new Promise<"timeout">((r) => {
      timer = setTimeout(
        () => r("timeout"),
        Math.max(0, deadline - Date.now()),
      );
    });
    const first = await Promise.race([
      gotLine,
      status.then(() => "exited" as const),
      timeout,
    ]);
    clearTimeout(timer);
    if (first === "timeout") {
      return fail("timeout", `no handshake line within ${startTimeout} ms`);
    }
    if (first === "exited") {
      // The handshake may have raced the exit; prefer a line if it came.
      await Promise.race([output, delay(200)]);
      if (handshakeLine === undefined) {
        return fail(
          "exited",
          `process exited (code ${exitStatus?.code}${
            exitStatus?.signal ? `, signal ${exitStatus.signal}` : ""
          }) before the handshake`,
        );
      }
      return fail("exited", "process exited right after the handshake");
    }
    let address: string;
    let network: "unix" | "tcp";
    try {
      ({ address, network } = parseHandshake(first, PROTOCOL_VERSIONS));
    } catch (e) {
      return fail(
        e instanceof HandshakeLineError ? e.reason : "malformed",
        errorText(e),
      );
    }
    handshaking = false;

    const proto = loadProto();
    const target = network === "unix" ? `unix:${address}` : address;
    const client = new proto.GKPlugin(
      target,
      grpc.credentials.createInsecure(),
      LOCAL_CHANNEL_OPTIONS,
    );
    const channelOverride = client.getChannel();
    const health = new proto.Health(
      target,
      grpc.credentials.createInsecure(),
      { channelOverride },
    );
    const gen: Generation = {
      child,
      pid: child.pid,
      client,
      health,
      target,
      exited: false,
      doomed: false,
      status,
      stdin,
      socketPath: network === "unix" ? address : undefined,
      inflight: new Set(),
      output,
    };
    try {
      const remaining = () => new Date(Math.max(Date.now() + 1, deadline));
      await new Promise<void>((res, rej) =>
        client.waitForReady(remaining(), (e) => e ? rej(e) : res())
      );
      // Health check and GKRegister share the first round trip.
      const [check, pb] = await Promise.all([
        unary<{ status: string }>(health, "Check", { service: "plugin" }, {
          deadline: remaining(),
        }),
        unary<PbRegistration>(client, "GKRegister", {}, {
          deadline: remaining(),
        }),
      ]);
      if (check.status !== "SERVING") {
        throw new Error(`health check answered ${check.status}`);
      }
      this.#healthy = true;
      const registration = registrationFromPb(pb);
      if (
        this.#registration && registration.name !== this.#registration.name
      ) {
        throw new Error(
          `plugin renamed itself from "${this.#registration.name}" to "${registration.name}" on restart`,
        );
      }
      this.#registration = registration;
      if (typeof registration.name === "string" && registration.name) {
        this.#name = registration.name;
      }
      if (this.#host) {
        await unary(client, "Init", { config: this.#initConfig() }, {
          deadline: remaining(),
        });
      }
    } catch (e) {
      client.close();
      if (exited) {
        return fail(
          "exited",
          `process exited while connecting: ${errorText(e)}`,
        );
      }
      return fail("connect", errorText(e));
    }
    if (this.#state === "stopped") {
      // Shut down while this process was starting: it must not outlive us.
      client.close();
      try {
        child.kill("SIGKILL");
      } catch { /* gone */ }
      await status;
      await stdin.close().catch(noop);
      throw new PluginCrashedError(this.#name, "shut down while starting");
    }
    this.#gen = gen;
    this.#state = "running";
    status.then((s) => this.#onExit(gen, s));
    return gen;
  }

  /** Runs {@linkcode #launch}, remembering it so shutdown can wait for it. */
  #launchTracked(): Promise<Generation> {
    const p = this.#launch();
    this.#launching = p;
    p.catch(noop).finally(() => {
      if (this.#launching === p) this.#launching = undefined;
    });
    return p;
  }

  #initConfig(): Record<string, string> {
    return {
      host_socket: this.#hostSocket,
      host_version: this.#options.hostVersion ?? HOST_VERSION,
      plugin_name: this.#name,
      ...(this.#options.dataDir
        ? { data_dir: resolve(this.#options.dataDir) }
        : {}),
    };
  }

  #onExit(gen: Generation, s: Deno.CommandStatus) {
    gen.exited = true;
    gen.client.close();
    gen.stdin?.close().catch(noop);
    if (this.#gen !== gen || this.#state === "stopped") return;
    const detail = `process ${gen.pid} exited (code ${s.code}${
      s.signal ? `, signal ${s.signal}` : ""
    })`;
    for (const p of gen.inflight) {
      p.reject(new PluginCrashedError(this.#name, detail));
    }
    gen.inflight.clear();
    this.#gen = undefined;
    this.#healthy = false;
    this.#crashed(detail);
  }

  #crashed(detail: string) {
    this.#crashes++;
    const now = Date.now();
    const r = this.#options.restart ?? {};
    const windowMs = r.windowMs ?? 60_000;
    const maxCrashes = r.maxCrashes ?? 3;
    this.#crashTimes = this.#crashTimes.filter((t) => now - t < windowMs);
    this.#crashTimes.push(now);
    this.#log("error", `plugin crashed: ${detail}`, { plugin: this.#name });
    if (this.#crashTimes.length >= maxCrashes) {
      const reason =
        `crashed ${this.#crashTimes.length} times within ${windowMs} ms (last: ${detail})`;
      this.#quarantine(reason);
      return;
    }
    const backoff = Math.min(
      (r.backoffMs ?? 100) * 2 ** (this.#crashTimes.length - 1),
      r.maxBackoffMs ?? 5000,
    );
    this.#state = "restarting";
    this.#ready = new Promise<void>((wake) => {
      this.#restartWake = wake;
      this.#restartTimer = setTimeout(wake, backoff);
    }).then(() => {
      this.#restartTimer = undefined;
      this.#restartWake = undefined;
      if (this.#state !== "restarting") {
        throw new PluginCrashedError(this.#name, "restart abandoned");
      }
      this.#restarts++;
      return this.#launchTracked();
    });
    this.#ready.catch((e) => {
      if (this.#state !== "restarting") return;
      this.#crashed(`restart failed: ${errorText(e)}`);
    });
  }

  #quarantine(reason: string) {
    this.#state = "quarantined";
    this.#quarantineReason = reason;
    this.#ready = Promise.reject(
      new PluginCrashedError(this.#name, `quarantined: ${reason}`),
    );
    this.#ready.catch(noop);
    this.#log("error", `plugin quarantined: ${reason}`, { plugin: this.#name });
    try {
      this.#env?.quarantine(reason);
    } catch { /* the Manager's problem */ }
  }

  /**
   * A call reached a quarantined plugin, so an admin enabled it again (the
   * Manager routes no calls to disabled plugins): start afresh with a clean
   * crash window.
   */
  #lift() {
    this.#log("info", "quarantine lifted; starting the plugin again", {
      plugin: this.#name,
    });
    this.#quarantineReason = undefined;
    this.#crashTimes = [];
    this.#state = "restarting";
    this.#ready = this.#launchTracked();
    this.#ready.catch((e) => {
      if (this.#state !== "restarting") return;
      this.#crashed(`restart failed: ${errorText(e)}`);
    });
  }

  /** The manifest the plugin returned from `GKRegister`. */
  gkRegister(): GKRegistration {
    if (!this.#registration) {
      throw new PluginError(this.#name, `plugin "${this.#name}" not started`);
    }
    return this.#registration;
  }

  /** Binds the plugin to its HostAPI and calls its `Init`. */
  async init(host: HostAPI, env?: PluginEnvironment): Promise<void> {
    this.#host = host;
    this.#env = env;
    const gen = await this.#ready;
    await unary(gen.client, "Init", { config: this.#initConfig() }, {
      deadline: new Date(Date.now() + (this.#options.startTimeoutMs ?? 10_000)),
    }).catch((e) => {
      throw new PluginError(
        this.#name,
        `plugin "${this.#name}" Init failed: ${
          (e as grpc.ServiceError).details ?? errorText(e)
        }`,
        { cause: e },
      );
    });
  }

  /** Calls `fn` in the plugin process, honouring `ctx`'s deadline and signal. */
  async call(
    fn: string,
    args: Uint8Array | null,
    ctx: CallContext,
  ): Promise<Uint8Array | null> {
    const started = Date.now();
    let deadline = ctx.deadline;
    if (this.#options.callTimeoutMs !== undefined) {
      deadline = Math.min(deadline, started + this.#options.callTimeoutMs);
    }
    const timeoutError = () =>
      new PluginTimeoutError(this.#name, deadline - started, {
        function: fn,
        ...(ctx.caller ? { caller: ctx.caller } : {}),
      });
    if (this.#state === "stopped") {
      throw new PluginCrashedError(this.#name, "plugin was shut down", {
        function: fn,
      });
    }
    if (this.#state === "quarantined") this.#lift();
    let gen = this.#gen;
    if (gen?.doomed && !gen.exited) await gen.status.catch(noop);
    gen = this.#gen;
    if (!gen || gen.exited) {
      // Restarting: wait for the new process, within the call's deadline.
      let t: ReturnType<typeof setTimeout> | undefined;
      try {
        gen = await Promise.race([
          this.#ready,
          new Promise<never>((_, reject) => {
            t = setTimeout(
              () => reject(timeoutError()),
              Math.max(0, deadline - Date.now()),
            );
          }),
        ]);
      } finally {
        clearTimeout(t);
      }
    }
    const g = gen;
    const callId = crypto.randomUUID();
    const request: Partial<PbCallRequest> = {
      function: fn,
      args_json: args ?? new Uint8Array(),
      call_id: callId,
      caller: ctx.caller ?? "",
      language: ctx.language ?? "",
      deadline_unix_ms: deadline,
      chain: [...ctx.chain],
    };
    this.#contexts.set(callId, ctx);
    return await new Promise<Uint8Array | null>((resolvePromise, reject) => {
      let settled = false;
      // deno-lint-ignore prefer-const
      let call: grpc.ClientUnaryCall | undefined;
      const onAbort = () => call?.cancel();
      const finish = () => {
        settled = true;
        g.inflight.delete(pending);
        this.#contexts.delete(callId);
        ctx.signal.removeEventListener("abort", onAbort);
      };
      const pending: Pending = {
        reject: (e) => {
          if (settled) return;
          finish();
          reject(e);
        },
      };
      g.inflight.add(pending);
      if (ctx.signal.aborted) {
        finish();
        reject(this.#abortError(ctx, timeoutError));
        return;
      }
      ctx.signal.addEventListener("abort", onAbort, { once: true });
      call = (g.client as unknown as {
        Call: (
          r: unknown,
          o: grpc.CallOptions,
          cb: (e: grpc.ServiceError | null, r?: PbCallResponse) => void,
        ) => grpc.ClientUnaryCall;
      }).Call(request, { deadline: new Date(deadline) }, (err, res) => {
        if (settled) return;
        finish();
        if (!err) {
          if (res!.error) {
            reject(new PluginCallError(this.#name, fn, res!.error));
          } else {resolvePromise(
              res!.result_json?.length
                ? new Uint8Array(res!.result_json)
                : null,
            );}
          return;
        }
        if (err.code === grpc.status.DEADLINE_EXCEEDED) {
          this.#probeAfterTimeout(g);
          reject(timeoutError());
        } else if (err.code === grpc.status.CANCELLED && ctx.signal.aborted) {
          const e = this.#abortError(ctx, timeoutError);
          if (e instanceof PluginTimeoutError) this.#probeAfterTimeout(g);
          reject(e);
        } else if (
          g.exited || err.code === grpc.status.UNAVAILABLE ||
          err.code === grpc.status.INTERNAL
        ) {
          this.#connectionLost(g);
          reject(
            new PluginCrashedError(
              this.#name,
              `connection lost: ${err.details || err.message}`,
              { function: fn },
            ),
          );
        } else {
          reject(
            new PluginCallError(
              this.#name,
              fn,
              `gRPC ${grpc.status[err.code]}: ${err.details}`,
            ),
          );
        }
      });
    });
  }

  #abortError(ctx: CallContext, timeoutError: () => PluginTimeoutError) {
    const reason = ctx.signal.reason;
    if (reason instanceof DOMException && reason.name === "TimeoutError") {
      return timeoutError();
    }
    if (reason instanceof Error) return reason;
    return new PluginError(this.#name, `call to "${this.#name}" was cancelled`);
  }

  /**
   * The connection broke: the process is dying or useless. New calls wait
   * for its exit (and the restart); if it does not exit by itself soon, it
   * is killed.
   */
  #connectionLost(gen: Generation) {
    if (gen.exited || gen.doomed || this.#gen !== gen) return;
    gen.doomed = true;
    this.#healthy = false;
    exitsWithin(gen, 1000).then((gone) => {
      if (gone) return;
      this.#log("error", "plugin connection lost; killing the process", {
        plugin: this.#name,
      });
      try {
        gen.child.kill("SIGKILL");
      } catch { /* gone */ }
    });
  }

  /** After a timeout: a plugin that no longer answers health checks is hung. */
  #probeAfterTimeout(gen: Generation) {
    const ms = this.#options.hangTimeoutMs ?? 2000;
    unary<{ status: string }>(gen.health, "Check", { service: "plugin" }, {
      deadline: new Date(Date.now() + ms),
    }).then(
      (r) => {
        this.#healthy = r.status === "SERVING";
      },
      () => {
        if (gen.exited || this.#gen !== gen || this.#state !== "running") {
          return;
        }
        this.#healthy = false;
        gen.doomed = true;
        this.#log("error", `plugin hung: no health answer within ${ms} ms`, {
          plugin: this.#name,
        });
        try {
          gen.child.kill("SIGKILL");
        } catch { /* gone */ }
      },
    );
  }

  /**
   * Runs `grpc.health.v1.Health/Check` for service `plugin`; a failure or a
   * status other than SERVING marks the plugin unhealthy.
   */
  async checkHealth(timeoutMs = 2000): Promise<boolean> {
    const gen = this.#gen;
    if (!gen || gen.exited) return this.#healthy = false;
    try {
      const r = await unary<{ status: string }>(gen.health, "Check", {
        service: "plugin",
      }, { deadline: new Date(Date.now() + timeoutMs) });
      this.#healthy = r.status === "SERVING";
    } catch {
      this.#healthy = false;
    }
    return this.#healthy;
  }

  /**
   * Stops the plugin: `GKPlugin.Shutdown`, `plugin.GRPCController/Shutdown`,
   * then SIGTERM and SIGKILL after grace periods; removes its sockets.
   */
  async shutdown(): Promise<void> {
    if (this.#state === "stopped") return;
    this.#state = "stopped";
    clearTimeout(this.#restartTimer);
    this.#restartWake?.();
    clearInterval(this.#healthTimer);
    // A restart in progress sees the stopped state and kills its process.
    await this.#launching?.catch(noop);
    const gen = this.#gen;
    this.#gen = undefined;
    let error: unknown;
    if (gen && !gen.exited) {
      const grace = this.#options.shutdownGraceMs ?? 2000;
      for (const p of gen.inflight) {
        p.reject(new PluginCrashedError(this.#name, "plugin is shutting down"));
      }
      try {
        await unary(gen.client, "Shutdown", {}, {
          deadline: new Date(Date.now() + grace),
        });
      } catch (e) {
        if (!gen.exited) error = e;
      }
      // Deno's node:http2 client can abort the whole process (an nghttp2
      // assertion in find_stream_on_goaway_func) when a GOAWAY arrives on a
      // session that has carried many streams. So close the busy channel
      // first and ask the controller on a fresh one, which go-plugin then
      // tears down.
      gen.client.close();
      const proto = loadProto();
      const controller = new proto.GRPCController(
        gen.target,
        grpc.credentials.createInsecure(),
        LOCAL_CHANNEL_OPTIONS,
      );
      await unary(controller, "Shutdown", {}, {
        deadline: new Date(Date.now() + grace),
      }).catch(noop); // UNAVAILABLE is how go-plugin says yes
      controller.close();
      await gen.stdin?.close().catch(noop);
      if (!await exitsWithin(gen, grace)) {
        try {
          gen.child.kill("SIGTERM");
        } catch { /* gone */ }
        if (!await exitsWithin(gen, grace)) {
          try {
            gen.child.kill("SIGKILL");
          } catch { /* gone */ }
        }
      }
      await gen.status;
      gen.client.close();
      await Promise.race([gen.output, delay(1000)]);
    }
    await this.#cleanup(gen);
    if (error && !(error as grpc.ServiceError).code) throw error;
  }

  async #cleanup(gen?: Generation) {
    this.#hostServer?.forceShutdown();
    this.#hostServer = undefined;
    const sock = gen?.socketPath;
    if (sock && !sock.startsWith(this.#dir + "/")) {
      // A plugin that ignored TMPDIR: remove its socket only if it is one,
      // in the temp directory, named like go-plugin names them.
      try {
        const info = await Deno.lstat(sock);
        if (
          info.isSocket && dirname(sock) === resolve(tmpdir()) &&
          basename(sock).startsWith("plugin")
        ) await Deno.remove(sock);
      } catch { /* gone */ }
    }
    await Deno.remove(this.#dir, { recursive: true }).catch(noop);
  }
}

async function exitsWithin(gen: Generation, ms: number): Promise<boolean> {
  let t: ReturnType<typeof setTimeout> | undefined;
  const r = await Promise.race([
    gen.status.then(() => true),
    new Promise<false>((res) => t = setTimeout(() => res(false), ms)),
  ]);
  clearTimeout(t);
  return r;
}

/**
 * Launches a gRPC plugin, performs go-plugin's handshake, connects, checks
 * its health and calls `GKRegister`; returns it as a {@linkcode Plugin} with
 * `runtime: "grpc"`. `Init` follows when the Manager calls `init(host, env)`
 * with the plugin's guarded HostAPI; the host then serves `GKHost` to it on
 * its own unix socket (`host_socket` in Init's config).
 *
 * An entry ending in `.ts`/`.js` runs under `deno run` with least-privilege
 * flags; any other entry is a native executable and must be listed in
 * `trustedExecutables`.
 *
 * @example
 * ```ts ignore
 * import { loadGrpcPlugin } from "./plugin.ts";
 * const plugin = await loadGrpcPlugin("fixtures/plugins/hello-grpc-ts/plugin.ts");
 * await manager.register(plugin);
 * await manager.call("hello-grpc", "get_status", null);
 * ```
 */
export async function loadGrpcPlugin(
  entry: string,
  options: LoadGrpcPluginOptions = {},
): Promise<GrpcPlugin> {
  const dir = await Deno.makeTempDir({
    prefix: "gk-grpc-",
    ...(options.tempDir ? { dir: options.tempDir } : {}),
  });
  await Deno.chmod(dir, 0o700);
  const plugin = new GrpcPlugin(entry, dir, options);
  await plugin.start();
  return plugin;
}
