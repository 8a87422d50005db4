/**
 * {@linkcode ProcessSupervisor}: keeps one gRPC plugin process running, in
 * the manner of HashiCorp go-plugin's `client.go`. It spawns the process,
 * waits for go-plugin's handshake line, connects, forwards the process's
 * output (hclog JSON on stderr) as log records, checks its health, notices
 * crashes and hangs, restarts it with exponential backoff, quarantines it
 * after repeated crashes, and stops it along a kill ladder (`Shutdown` RPCs,
 * then SIGTERM, then SIGKILL) before removing its sockets.
 *
 * Every process starts inside the OS sandbox of `sandbox.ts` (bubblewrap,
 * its own namespaces, a per-plugin uid when the host is root, resource
 * limits) unless the options say `sandbox: "none"`; a missing or broken
 * bubblewrap refuses the start with a {@linkcode SandboxUnavailableError}.
 * The supervisor translates what crosses the wall: the socket path in the
 * handshake line back to the host, the paths in `Init`'s config into the
 * sandbox, and it signals the plugin itself (bwrap forwards no signals).
 *
 * What the process is for is left to its owner (the plugin adapter in
 * `plugin.ts`): it gets each new connection through
 * {@linkcode SupervisorHooks}, asks for a live {@linkcode PluginConnection}
 * per call, and is told about crashes through
 * {@linkcode PluginConnection.track}.
 *
 * @module
 */

import * as grpc from "@grpc/grpc-js";
import { basename, dirname, resolve } from "node:path";
import { tmpdir } from "node:os";
import type { LogLevel } from "../../host/model/host_api.ts";
import { errorText, PluginCrashedError } from "../../host/model/errors.ts";
import {
  GrpcHandshakeError,
  type HandshakeFailure,
  SandboxUnavailableError,
} from "./errors.ts";
import { HandshakeLineError, parseHandshake } from "./handshake.ts";
import {
  buildLaunch,
  type BuildLaunchOptions,
  buildSandboxedLaunch,
  hostDenoDir,
  hostLockFile,
  importMapJson,
  type LaunchSpec,
  PROTOCOL_VERSIONS,
} from "./launch.ts";
import {
  allocateSandboxUid,
  type PathMap,
  probeSandbox,
  resolveSandbox,
  SANDBOX_PATHS,
  sandboxedPids,
  type SandboxTools,
} from "./sandbox.ts";
import { LogRateLimiter, parseLogLine, readLines } from "./log_lines.ts";
import { removeRunDir } from "./run_dir.ts";
import { loadProto, LOCAL_CHANNEL_OPTIONS, unary } from "./proto.ts";
import { H2Channel, type H2Target, unaryCall } from "./h2_client.ts";
import {
  decodeMessage,
  encodeMessage,
  HEALTH_CHECK_REQUEST,
  HEALTH_CHECK_RESPONSE,
} from "./sdk_codec.ts";
import type {
  GrpcLogSink,
  GrpcPluginStatus,
  SupervisorOptions,
} from "./options.ts";

/**
 * What the supervisor asks of its owner. `R` is what
 * {@linkcode SupervisorHooks.register} learns from a new process and hands
 * to {@linkcode SupervisorHooks.attach}.
 */
export interface SupervisorHooks<R> {
  /** The plugin's current name, for errors and log fields. */
  name(): string;
  /**
   * Starts the server the host offers the plugin (`GKHost`) on unix socket
   * `path`; the supervisor shuts it down when it stops.
   */
  serve(path: string): Promise<grpc.Server>;
  /**
   * The first round trip on every new connection (`GKRegister`), made while
   * the supervisor runs its first health check, over the host's own HTTP/2
   * connection to the process (which is ready sooner than grpc-js's).
   */
  register(channel: H2Channel, deadline: number): Promise<R>;
  /**
   * Called once the new process answered its health check as SERVING, with
   * what {@linkcode SupervisorHooks.register} returned; finishes setting the
   * process up (`Init`). `deadline` is the rest of the start time. A throw
   * fails the start as a handshake error.
   */
  attach(
    registered: R,
    client: grpc.Client,
    deadline: () => Date,
  ): Promise<void>;
  /** Receives the process's log lines and the supervisor's own events. */
  log: GrpcLogSink;
  /** The plugin was quarantined after repeated crashes, for `reason`. */
  quarantined(reason: string): void;
}

/** Options of the {@linkcode ProcessSupervisor} constructor. */
export interface ProcessSupervisorInit<R> {
  /** The plugin's resolved entry path. */
  entry: string;
  /**
   * The private directory (mode 0700) for sockets and the import map
   * (made by `makeRunDir`); the supervisor removes it when it stops,
   * without following links, whatever uid the sandboxed plugin wrote as.
   */
  dir: string;
  /** Launch, health and restart policy. */
  options: SupervisorOptions;
  /** The owner's part. */
  hooks: SupervisorHooks<R>;
}

/** Options of {@linkcode ProcessSupervisor.connection}. */
export interface ConnectionOptions {
  /** Until when (epoch ms) to wait for a restarting process. */
  deadline: number;
  /** The error to reject with when the deadline passes first. */
  timeoutError: () => Error;
}

/**
 * A connection to one running plugin process, from
 * {@linkcode ProcessSupervisor.connection}. It is not reused across
 * restarts: a new process comes with a new connection.
 */
export interface PluginConnection {
  /** A `goatkit.plugin.v1.GKPlugin` client on the process's socket. */
  readonly client: grpc.Client;
  /**
   * The host's own HTTP/2 connection to the process, for `Call` (the hot
   * path; see `h2_client.ts`); `client` carries the other methods.
   */
  readonly channel: H2Channel;
  /** Whether the process has exited. */
  readonly exited: boolean;
  /**
   * Registers a call running on this connection: until the returned
   * function is called, `onCrash` receives a {@linkcode PluginCrashedError}
   * if the process exits or the supervisor shuts it down.
   */
  track(onCrash: (error: PluginCrashedError) => void): () => void;
  /**
   * A call on this connection ran out of time. The process must answer a
   * health check within `hangTimeoutMs`, or it is killed (and restarted) as
   * hung.
   */
  timedOut(): void;
  /**
   * The connection broke: the process is dying or useless. New calls wait
   * for its exit (and the restart); if it does not exit by itself soon, it
   * is killed.
   */
  lost(): void;
}

/** What a {@linkcode Generation} reports back to its supervisor. */
interface GenerationOwner {
  timedOut(gen: Generation): void;
  lost(gen: Generation): void;
}

/** Fields of a {@linkcode Generation}. */
interface GenerationInit {
  child: Deno.ChildProcess;
  status: Promise<Deno.CommandStatus>;
  client: grpc.Client;
  channel: H2Channel;
  health: grpc.Client;
  target: string;
  stdin: WritableStreamDefaultWriter<Uint8Array>;
  socketPath: string | undefined;
  output: Promise<void>;
  owner: GenerationOwner;
  sandboxed: boolean;
  pluginPid: number | undefined;
}

/** One running process and its connection. */
class Generation implements PluginConnection {
  readonly child: Deno.ChildProcess;
  readonly pid: number;
  readonly client: grpc.Client;
  readonly channel: H2Channel;
  readonly health: grpc.Client;
  readonly target: string;
  readonly status: Promise<Deno.CommandStatus>;
  readonly stdin: WritableStreamDefaultWriter<Uint8Array>;
  readonly socketPath: string | undefined;
  readonly output: Promise<void>;
  readonly sandboxed: boolean;
  /** In the sandbox: the host pid of the plugin itself (bwrap's is `pid`). */
  readonly pluginPid: number | undefined;
  /** Calls running on it, by their crash callback. */
  readonly inflight = new Set<(error: PluginCrashedError) => void>();
  exited = false;
  /** Being killed (hung); new calls wait for the restart. */
  doomed = false;
  readonly #owner: GenerationOwner;

  constructor(init: GenerationInit) {
    this.child = init.child;
    this.pid = init.child.pid;
    this.client = init.client;
    this.channel = init.channel;
    this.health = init.health;
    this.target = init.target;
    this.status = init.status;
    this.stdin = init.stdin;
    this.socketPath = init.socketPath;
    this.output = init.output;
    this.sandboxed = init.sandboxed;
    this.pluginPid = init.pluginPid;
    this.#owner = init.owner;
  }

  /** Sends `signal` to the plugin (see {@linkcode signalPlugin}). */
  signal(signal: Deno.Signal): void {
    signalPlugin(this.child, this.sandboxed, signal);
  }

  track(onCrash: (error: PluginCrashedError) => void): () => void {
    this.inflight.add(onCrash);
    return () => this.inflight.delete(onCrash);
  }

  timedOut(): void {
    this.#owner.timedOut(this);
  }

  lost(): void {
    this.#owner.lost(this);
  }
}

const CAPTURE_LIMIT = 8192;
const LOCK_FILE = hostLockFile();
const noop = () => {};

const INIT_PATH = "/goatkit.plugin.v1.GKPlugin/Init";

/**
 * A client interceptor that rewrites the host paths in `Init`'s config
 * (`host_socket`, `data_dir`, …) into the paths the sandboxed plugin sees,
 * so it never learns a host path and finds its sockets and folders.
 */
function initPathsInterceptor(paths: PathMap): grpc.Interceptor {
  return (options, nextCall) => {
    if (options.method_definition.path !== INIT_PATH) {
      return new grpc.InterceptingCall(nextCall(options));
    }
    return new grpc.InterceptingCall(nextCall(options), {
      sendMessage(message: { config?: Record<string, string> }, next) {
        const config: Record<string, string> = {};
        for (const [k, v] of Object.entries(message.config ?? {})) {
          config[k] = typeof v === "string" && v.startsWith("/")
            ? paths.toInside(v) ?? v
            : v;
        }
        next({ ...message, config });
      },
    });
  };
}

/**
 * Sends `signal` to a plugin process. In the sandbox it goes to the plugin
 * itself: bwrap passes no signal on (it would die of it and take the
 * sandbox with it, without a SIGTERM reaching the plugin), and bwrap exits
 * once the plugin has, so its exit status means the plugin is gone.
 * Without a plugin process yet, bwrap gets it.
 */
function signalPlugin(
  child: Deno.ChildProcess,
  sandboxed: boolean,
  signal: Deno.Signal,
): void {
  if (sandboxed) {
    let sent = false;
    for (const pid of sandboxedPidsOf(child.pid)) {
      try {
        Deno.kill(pid, signal);
        sent = true;
      } catch { /* gone */ }
    }
    if (sent) return;
  }
  try {
    child.kill(signal);
  } catch { /* gone */ }
}

function sandboxedPidsOf(pid: number): number[] {
  try {
    return sandboxedPids(pid);
  } catch {
    return [];
  }
}

/** Where the host's own HTTP/2 client reaches a plugin's handshake address. */
function h2Target(network: "unix" | "tcp", address: string): H2Target {
  if (network === "unix") return { transport: "unix", path: address };
  const colon = address.lastIndexOf(":");
  return {
    transport: "tcp",
    hostname: address.slice(0, colon),
    port: Number(address.slice(colon + 1)),
  };
}

function delay(ms: number): Promise<void> {
  return new Promise((r) => setTimeout(r, ms));
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
 * Supervises one plugin process: at most one runs at a time, and a crashed
 * one is replaced until the crash policy quarantines the plugin.
 *
 * @example
 * ```ts ignore
 * const supervisor = new ProcessSupervisor({ entry, dir, options, hooks });
 * await supervisor.start();
 * const conn = await supervisor.connection({
 *   deadline: Date.now() + 5000,
 *   timeoutError: () => new Error("timed out"),
 * });
 * // … calls on conn.client …
 * await supervisor.shutdown();
 * ```
 */
export class ProcessSupervisor<R> {
  readonly #entry: string;
  readonly #options: SupervisorOptions;
  readonly #hooks: SupervisorHooks<R>;
  readonly #dir: string;
  readonly #hostSocket: string;
  readonly #socketDir: string;
  readonly #importMap: string;
  readonly #owner: GenerationOwner;
  #hostServer: grpc.Server | undefined;
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
  #launching: Promise<Generation> | undefined;
  #limiter: LogRateLimiter;
  #tools: SandboxTools | undefined;
  #sandboxed = false;
  #uid: number | undefined;

  /** Prepares supervision; {@linkcode start} launches the first process. */
  constructor(init: ProcessSupervisorInit<R>) {
    this.#entry = init.entry;
    this.#options = init.options;
    this.#hooks = init.hooks;
    this.#dir = init.dir;
    this.#hostSocket = `${init.dir}/host.sock`;
    this.#socketDir = `${init.dir}/plugin`;
    this.#importMap = `${init.dir}/import_map.json`;
    this.#limiter = new LogRateLimiter(init.options.logLinesPerSecond ?? 500);
    this.#owner = {
      timedOut: (gen) => this.#probeAfterTimeout(gen),
      lost: (gen) => this.#connectionLost(gen),
    };
    this.#ready = Promise.reject(new Error("not started"));
    this.#ready.catch(noop);
  }

  /** The unix socket the host's server for this plugin listens on. */
  get hostSocket(): string {
    return this.#hostSocket;
  }

  /** The supervision state, as in {@linkcode GrpcPluginStatus}. */
  get state(): GrpcPluginStatus["state"] {
    return this.#state;
  }

  /** A snapshot of the supervision state. */
  status(): GrpcPluginStatus {
    return {
      state: this.#state,
      pid: this.#gen && !this.#gen.exited
        ? this.#gen.pluginPid ?? this.#gen.pid
        : undefined,
      healthy: this.#healthy,
      crashes: this.#crashes,
      restarts: this.#restarts,
      quarantineReason: this.#quarantineReason,
      sandboxed: this.#sandboxed,
      uid: this.#uid,
    };
  }

  /**
   * Prepares the private directory, starts the host's server, launches the
   * first process and, with `healthIntervalMs`, the periodic health checks.
   * On failure everything is removed again.
   */
  async start(): Promise<void> {
    // go-plugin names its socket pluginNNNNNNNNNN; ours is plugin.sock.
    const longest = `${this.#socketDir}/plugin0123456789`;
    if (new TextEncoder().encode(longest).length > 104) {
      await this.#cleanup();
      throw new RangeError(
        `Cannot start plugin "${this.#hooks.name()}": socket path "${longest}" exceeds the 104-byte unix socket limit (choose a shorter tempDir)`,
      );
    }
    await Deno.mkdir(this.#socketDir, { mode: 0o700 });
    await Deno.writeTextFile(this.#importMap, importMapJson(), { mode: 0o600 });
    if (this.#options.dataDir) {
      await Deno.mkdir(this.#options.dataDir, { recursive: true });
    }
    this.#hostServer = await this.#hooks.serve(this.#hostSocket);
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

  /**
   * The connection of the latest launch: the running process, or the one a
   * restart is bringing up. Rejects when that launch failed or the plugin
   * is quarantined.
   */
  ready(): Promise<PluginConnection> {
    return this.#ready;
  }

  /**
   * The connection to the running process when there is one that takes
   * calls now (not exited, not being killed); otherwise use
   * {@linkcode connection}.
   */
  live(): PluginConnection | undefined {
    const gen = this.#gen;
    return gen && !gen.exited && !gen.doomed ? gen : undefined;
  }

  /**
   * A connection to a live process for a call. A process being killed is
   * waited out; a restart is waited for until `deadline`.
   */
  async connection(options: ConnectionOptions): Promise<PluginConnection> {
    let gen = this.#gen;
    if (gen?.doomed && !gen.exited) await gen.status.catch(noop);
    gen = this.#gen;
    if (!gen || gen.exited) {
      // Restarting: wait for the new process, within the deadline.
      let t: ReturnType<typeof setTimeout> | undefined;
      try {
        gen = await Promise.race([
          this.#ready,
          new Promise<never>((_, reject) => {
            t = setTimeout(
              () => reject(options.timeoutError()),
              Math.max(0, options.deadline - Date.now()),
            );
          }),
        ]);
      } finally {
        clearTimeout(t);
      }
    }
    return gen;
  }

  /**
   * Ends a quarantine: starts the plugin afresh with a clean crash window.
   */
  lift(): void {
    this.#log("info", "quarantine lifted; starting the plugin again", {
      plugin: this.#hooks.name(),
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
   * then SIGTERM and SIGKILL after grace periods; removes its sockets. Calls
   * still running get a {@linkcode PluginCrashedError}.
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
      for (const onCrash of gen.inflight) {
        onCrash(
          new PluginCrashedError(this.#hooks.name(), "plugin is shutting down"),
        );
      }
      try {
        await unary(gen.client, "Shutdown", {}, {
          deadline: new Date(Date.now() + grace),
        });
      } catch (e) {
        if (!gen.exited) error = e;
      }
      gen.channel.close();
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
      await gen.stdin.close().catch(noop);
      if (!await exitsWithin(gen, grace)) {
        gen.signal("SIGTERM");
        if (!await exitsWithin(gen, grace)) gen.signal("SIGKILL");
      }
      await gen.status;
      gen.client.close();
      await Promise.race([gen.output, delay(1000)]);
    }
    await this.#cleanup(gen);
    if (error && !(error as grpc.ServiceError).code) throw error;
  }

  #log(level: LogLevel, message: string, fields: Record<string, unknown>) {
    const dropped = this.#limiter.takeDropped();
    try {
      if (dropped > 0) {
        this.#hooks.log("warn", `dropped ${dropped} log lines (rate limit)`, {
          plugin: this.#hooks.name(),
        });
      }
      this.#hooks.log(level, message, fields);
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
    const launch: BuildLaunchOptions = {
      entry: this.#entry,
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
    };
    // Refuses an untrusted executable before anything else.
    let spec: LaunchSpec = buildLaunch(launch);
    let paths: PathMap | undefined;
    const sandbox = this.#options.sandbox ?? {};
    if (sandbox === "none") {
      this.#sandboxed = false;
      this.#uid = undefined;
      this.#log(
        "warn",
        'SANDBOX DISABLED: this plugin process runs without the OS sandbox (sandbox: "none" / GOATKIT_UNSANDBOXED_PLUGINS=1); a TypeScript plugin can read every file the host can through module imports. Development only.',
        { plugin: this.#hooks.name() },
      );
    } else {
      const tools = this.#tools ??= resolveSandbox(sandbox);
      const probe = await probeSandbox(tools);
      if (!probe.ok) {
        throw new SandboxUnavailableError(this.#hooks.name(), probe.reason);
      }
      const uid = tools.root ? await this.#prepareUid(tools) : undefined;
      const sandboxed = await buildSandboxedLaunch({
        ...launch,
        tools,
        ...(uid !== undefined ? { uid } : {}),
      });
      spec = sandboxed;
      paths = sandboxed.paths;
      this.#sandboxed = true;
      this.#uid = uid;
    }
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
        this.#hooks.name(),
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
      signalPlugin(child, paths !== undefined, "SIGKILL");
      await status;
      await Promise.race([output, delay(500)]);
      await stdin.close().catch(noop);
      handshaking = false;
      throw new GrpcHandshakeError(this.#hooks.name(), reason, detail, {
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
    if (paths) {
      // The plugin names its socket as it sees it.
      const host = network === "unix" &&
          address.startsWith(SANDBOX_PATHS.sock + "/")
        ? paths.toHost(address)
        : undefined;
      if (!host) {
        return fail(
          "network",
          `a sandboxed plugin must listen on a unix socket in ${SANDBOX_PATHS.sock}, not on ${network} address "${address}"`,
        );
      }
      address = host;
    }
    handshaking = false;

    const proto = loadProto();
    const target = network === "unix" ? `unix:${address}` : address;
    const client = new proto.GKPlugin(
      target,
      grpc.credentials.createInsecure(),
      {
        ...LOCAL_CHANNEL_OPTIONS,
        ...(paths ? { interceptors: [initPathsInterceptor(paths)] } : {}),
      },
    );
    const channel = new H2Channel(h2Target(network, address));
    const channelOverride = client.getChannel();
    const health = new proto.Health(
      target,
      grpc.credentials.createInsecure(),
      { channelOverride },
    );
    const gen = new Generation({
      child,
      status,
      client,
      channel,
      health,
      target,
      stdin,
      socketPath: network === "unix" ? address : undefined,
      output,
      owner: this.#owner,
      sandboxed: paths !== undefined,
      // It wrote its handshake line, so it runs by now.
      pluginPid: paths ? sandboxedPidsOf(child.pid)[0] : undefined,
    });
    try {
      const remaining = () => new Date(Math.max(Date.now() + 1, deadline));
      // The health check and the owner's first call share a round
      // trip on the call path's own connection (ready sooner than
      // grpc-js's, ~10–20 ms); grpc-js's channel (Init, Shutdown, periodic
      // health checks) connects meanwhile.
      client.getChannel().getConnectivityState(true);
      const [check, registered] = await Promise.all([
        unaryCall(
          channel,
          "/grpc.health.v1.Health/Check",
          encodeMessage(HEALTH_CHECK_REQUEST, { service: "plugin" }),
          deadline,
        ).then((m) => decodeMessage(HEALTH_CHECK_RESPONSE, m)),
        this.#hooks.register(channel, deadline),
      ]);
      if (check.status !== "SERVING") {
        throw new Error(`health check answered ${check.status}`);
      }
      this.#healthy = true;
      await this.#hooks.attach(registered, client, remaining);
    } catch (e) {
      client.close();
      channel.close();
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
      channel.close();
      signalPlugin(child, paths !== undefined, "SIGKILL");
      await status;
      await stdin.close().catch(noop);
      throw new PluginCrashedError(
        this.#hooks.name(),
        "shut down while starting",
      );
    }
    this.#gen = gen;
    this.#state = "running";
    status.then((s) => this.#onExit(gen, s));
    return gen;
  }

  /**
   * The plugin's uid (root hosts): allocated by its data folder (else its
   * entry), which keeps the uid as its owner. Hands it the folders it
   * writes: the socket folder, the data folder (the folder itself, never
   * what is inside: a link planted there must not redirect a chown) and the
   * host socket (mode 0600).
   */
  async #prepareUid(tools: SandboxTools): Promise<number> {
    const dataDir = this.#options.dataDir
      ? resolve(this.#options.dataDir)
      : undefined;
    let previous: number | undefined;
    if (dataDir) {
      const info = await Deno.lstat(dataDir);
      if (!info.isDirectory) {
        throw new Error(
          `Cannot start plugin "${this.#hooks.name()}": its data folder "${dataDir}" is not a directory`,
        );
      }
      previous = info.uid ?? undefined;
    }
    const uid = allocateSandboxUid({
      key: dataDir ?? this.#entry,
      base: tools.uidBase,
      count: tools.uidCount,
      ...(previous !== undefined ? { previous } : {}),
    });
    for (const dir of [this.#socketDir, ...(dataDir ? [dataDir] : [])]) {
      if (!(await Deno.lstat(dir)).isDirectory) {
        throw new Error(
          `Cannot start plugin "${this.#hooks.name()}": "${dir}" is not a directory`,
        );
      }
      await Deno.chown(dir, uid, uid);
    }
    await Deno.chown(this.#hostSocket, uid, uid);
    await Deno.chmod(this.#hostSocket, 0o600);
    return uid;
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

  #onExit(gen: Generation, s: Deno.CommandStatus) {
    gen.exited = true;
    gen.client.close();
    gen.channel.close();
    gen.stdin.close().catch(noop);
    if (this.#gen !== gen || this.#state === "stopped") return;
    const detail = `process ${gen.pid} exited (code ${s.code}${
      s.signal ? `, signal ${s.signal}` : ""
    })`;
    for (const onCrash of gen.inflight) {
      onCrash(new PluginCrashedError(this.#hooks.name(), detail));
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
    this.#log("error", `plugin crashed: ${detail}`, {
      plugin: this.#hooks.name(),
    });
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
        throw new PluginCrashedError(this.#hooks.name(), "restart abandoned");
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
      new PluginCrashedError(this.#hooks.name(), `quarantined: ${reason}`),
    );
    this.#ready.catch(noop);
    this.#log("error", `plugin quarantined: ${reason}`, {
      plugin: this.#hooks.name(),
    });
    try {
      this.#hooks.quarantined(reason);
    } catch { /* the owner's problem */ }
  }

  #connectionLost(gen: Generation) {
    if (gen.exited || gen.doomed || this.#gen !== gen) return;
    gen.doomed = true;
    this.#healthy = false;
    exitsWithin(gen, 1000).then((gone) => {
      if (gone) return;
      this.#log("error", "plugin connection lost; killing the process", {
        plugin: this.#hooks.name(),
      });
      gen.signal("SIGKILL");
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
          plugin: this.#hooks.name(),
        });
        gen.signal("SIGKILL");
      },
    );
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
    await removeRunDir(this.#dir).catch(noop);
  }
}
