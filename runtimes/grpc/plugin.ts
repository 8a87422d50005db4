/**
 * {@linkcode SupervisedGrpcPlugin}: presents a plugin process that speaks
 * GoatKit's gRPC protocol as a {@linkcode Plugin}. The process itself —
 * spawn, handshake, logs, health, restarts, quarantine, the kill ladder —
 * is {@linkcode ProcessSupervisor}'s job (`supervisor.ts`); this adapter
 * registers each new process (`GKRegister`), initialises it (`Init`),
 * serves it the host's `GKHost` callbacks and runs calls on the live
 * connection the supervisor hands out.
 *
 * @module
 */

import * as grpc from "@grpc/grpc-js";
import { basename, resolve } from "node:path";
import type { HostAPI, LogLevel } from "../../host/model/host_api.ts";
import type {
  CallContext,
  PluginEnvironment,
  PluginUsage,
} from "../../host/model/plugin.ts";
import type { GKRegistration } from "../../host/model/manifest.ts";
import {
  errorText,
  PluginCrashedError,
  PluginError,
  PluginTimeoutError,
} from "../../host/model/errors.ts";
import { HOST_VERSION } from "../../host/model/version.ts";
import { PluginCallError } from "./errors.ts";
import { type PbRegistration, unary } from "./proto.ts";
import { decodeCallResponse, encodeCallRequest } from "./call_codec.ts";
import {
  type GrpcStatusError,
  REQUEST_PREFIX,
  type UnaryCall,
  unaryCall,
} from "./h2_client.ts";
import { decodeMessage, GK_REGISTRATION } from "./sdk_codec.ts";
import { processTreeUsage } from "./process_usage.ts";
import { registrationFromPb } from "./registration.ts";
import { CallbackRefusedError, serveHostService } from "./host_service.ts";
import { type PluginConnection, ProcessSupervisor } from "./supervisor.ts";
import type {
  GrpcLogSink,
  GrpcPlugin,
  GrpcPluginStatus,
  LoadGrpcPluginOptions,
} from "./options.ts";

const noop = () => {};

/** The method of the hot path. */
const CALL_PATH = "/goatkit.plugin.v1.GKPlugin/Call";

/** Refused callbacks written to the log per second, at most; the rest are counted. */
const REFUSALS_LOGGED_PER_SECOND = 10;

/** The host's record of one host→plugin call (`Call` or `Init`) still open. */
interface OpenCall {
  /** The caller's context. */
  readonly ctx: CallContext;
  /** The call's effective deadline (epoch ms). */
  readonly deadline: number;
  /** The error a callback gets once the deadline passed. */
  readonly timeoutError: () => Error;
  /** The context callbacks run in, made on the first callback. */
  callback?: CallContext;
  /** Ends {@linkcode OpenCall.callback}'s signal and timer. */
  release?: (reason: Error) => void;
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
 * `loadGrpcPlugin` (`load.ts`), which loads this module (and the gRPC
 * library) on first use.
 */
export class SupervisedGrpcPlugin implements GrpcPlugin {
  /** Always `grpc`. */
  readonly runtime = "grpc" as const;
  /** The resolved entry path. */
  readonly entry: string;

  readonly #options: LoadGrpcPluginOptions;
  readonly #supervisor: ProcessSupervisor<PbRegistration>;
  #callCount = 0;
  #usagePid: number | undefined;
  #usageLastMs = 0;
  #usageDeadMs = 0;
  #usageCache: { at: number; value: PluginUsage } | undefined;
  #registration: GKRegistration | undefined;
  #name: string;
  #host: HostAPI | undefined;
  #env: PluginEnvironment | undefined;
  /** Open host→plugin calls by the call id the host issued. */
  #calls = new Map<string, OpenCall>();
  #refusals = { second: 0, count: 0, dropped: 0 };

  /** Use {@linkcode loadGrpcPlugin}. */
  constructor(entry: string, dir: string, options: LoadGrpcPluginOptions) {
    this.entry = resolve(entry);
    this.#options = options;
    this.#name = basename(this.entry);
    this.#supervisor = new ProcessSupervisor({
      entry: this.entry,
      dir,
      options,
      hooks: {
        name: () => this.#name,
        serve: (path) =>
          serveHostService(path, {
            host: () => this.#host,
            openCall: (id) => this.#openCall(id),
            ownContext: () => logContext(this.#name),
            name: () => this.#name,
            refused: (e) => this.#auditRefusal(e),
          }),
        register: async (channel, deadline) =>
          decodeMessage(
            GK_REGISTRATION,
            await unaryCall(
              channel,
              "/goatkit.plugin.v1.GKPlugin/GKRegister",
              new Uint8Array(),
              deadline,
            ),
          ) as unknown as PbRegistration,
        attach: (pb, client, deadline) => this.#attach(pb, client, deadline),
        log: (level, message, fields) => this.#log(level, message, fields),
        quarantined: (reason) => this.#env?.quarantine(reason),
      },
    });
  }

  /** The plugin's name (its entry file name until it registered). */
  get name(): string {
    return this.#name;
  }

  /** Supervision state. */
  status(): GrpcPluginStatus {
    return this.#supervisor.status();
  }

  /**
   * CPU time of the plugin's processes (cumulative over its restarts, as
   * last seen of each), their resident memory (both read at most once a
   * second), calls and restarts.
   */
  usage(): PluginUsage {
    // Read from /proc at most once a second (quotas ask at every call).
    const at = Date.now();
    if (this.#usageCache && at - this.#usageCache.at < 1000) {
      return { ...this.#usageCache.value, calls: this.#callCount };
    }
    const value = this.#readUsage();
    this.#usageCache = { at, value };
    return value;
  }

  #readUsage(): PluginUsage {
    const st = this.#supervisor.status();
    if (st.pid !== this.#usagePid) {
      this.#usageDeadMs += this.#usageLastMs;
      this.#usageLastMs = 0;
      this.#usagePid = st.pid;
    }
    const now = st.pid === undefined ? undefined : processTreeUsage(st.pid);
    if (now) this.#usageLastMs = now.cpuMs;
    return {
      cpuMs: this.#usageDeadMs + this.#usageLastMs,
      calls: this.#callCount,
      ...(now ? { rssBytes: now.rssBytes } : {}),
      restarts: st.restarts,
    };
  }

  /** The unix socket the host serves `GKHost` on for this plugin. */
  get hostSocket(): string {
    return this.#supervisor.hostSocket;
  }

  /** Starts the first process (called by {@linkcode loadGrpcPlugin}). */
  async start(): Promise<void> {
    await this.#supervisor.start();
  }

  #log(
    level: LogLevel,
    message: string,
    fields: Record<string, unknown>,
  ): void {
    const sink: GrpcLogSink | undefined = this.#options.logs ??
      (this.#host
        ? (l, m, f) => this.#host!.log(logContext(this.#name), l, m, f)
        : undefined);
    sink?.(level, message, fields);
  }

  /**
   * Records a host→plugin call the plugin may call back under; returns the
   * function that closes it (callbacks still running are then cut short).
   */
  #openCallRecord(
    callId: string,
    ctx: CallContext,
    deadline: number,
    timeoutError: () => Error,
  ): () => void {
    const open: OpenCall = { ctx, deadline, timeoutError };
    this.#calls.set(callId, open);
    return () => {
      if (this.#calls.get(callId) !== open) return;
      this.#calls.delete(callId);
      open.release?.(
        Date.now() >= open.deadline
          ? open.timeoutError()
          : new CallbackRefusedError({
            plugin: this.#name,
            code: grpc.status.CANCELLED,
            callId,
            reason: `call "${callId}" has ended`,
          }),
      );
    };
  }

  /**
   * The context callbacks under open call `id` run in: the call's deadline,
   * language and chain (ending with this plugin) from the host's record; its
   * signal aborts when the call's does, at the deadline, or when it ends.
   */
  #openCall(id: string): CallContext | undefined {
    const open = this.#calls.get(id);
    if (!open) return undefined;
    if (open.callback) return open.callback;
    const controller = new AbortController();
    const parent = open.ctx.signal;
    const onAbort = () => controller.abort(parent.reason);
    const timer = setTimeout(
      () => controller.abort(open.timeoutError()),
      Math.max(0, open.deadline - Date.now()),
    );
    if (parent.aborted) controller.abort(parent.reason);
    else parent.addEventListener("abort", onAbort, { once: true });
    open.release = (reason) => {
      clearTimeout(timer);
      parent.removeEventListener("abort", onAbort);
      if (!controller.signal.aborted) controller.abort(reason);
    };
    // The call's own chain array when it ends with this plugin: whoever
    // keys per-call state by it (the tracer's parent span) finds the call.
    const chain = open.ctx.chain.at(-1) === this.#name
      ? open.ctx.chain
      : [...open.ctx.chain, this.#name];
    return open.callback = {
      ...(open.ctx.caller ? { caller: open.ctx.caller } : {}),
      ...(open.ctx.language ? { language: open.ctx.language } : {}),
      chain,
      deadline: open.deadline,
      signal: controller.signal,
    };
  }

  /** Writes a refused callback to the log at warn (rate-limited), for the audit trail. */
  #auditRefusal(e: CallbackRefusedError): void {
    try {
      this.#options.onCallbackRefused?.({
        plugin: e.plugin,
        ...(e.method ? { method: e.method } : {}),
        reason: e.reason,
        status: grpc.status[e.code] ?? String(e.code),
      });
    } catch { /* the audit hook must not break the refusal */ }
    const r = this.#refusals;
    const second = Math.floor(Date.now() / 1000);
    if (second !== r.second) {
      if (r.dropped > 0) {
        this.#log(
          "warn",
          `${r.dropped} more refused host callbacks not logged (rate limit)`,
          { audit: true, refused: r.dropped },
        );
      }
      r.second = second;
      r.count = 0;
      r.dropped = 0;
    }
    if (++r.count > REFUSALS_LOGGED_PER_SECOND) {
      r.dropped++;
      return;
    }
    try {
      this.#log("warn", e.message, {
        audit: true,
        callback: e.method ?? "",
        status: grpc.status[e.code] ?? String(e.code),
      });
    } catch { /* the audit line must not break the refusal */ }
  }

  /**
   * Runs `Init` as a call the host issued: its call id and deadline travel
   * in the config (`call_id`, `deadline_unix_ms`), so the plugin may call
   * back while it initialises, within that deadline.
   */
  async #runInit(client: grpc.Client, deadline: Date): Promise<void> {
    const callId = crypto.randomUUID();
    const until = deadline.getTime();
    const close = this.#openCallRecord(
      callId,
      {
        chain: [this.#name],
        deadline: until,
        signal: new AbortController().signal,
      },
      until,
      () =>
        new PluginTimeoutError(this.#name, Math.max(0, until - Date.now()), {
          function: "Init",
        }),
    );
    try {
      await unary(client, "Init", {
        config: {
          ...this.#initConfig(),
          call_id: callId,
          deadline_unix_ms: String(until),
        },
      }, { deadline });
    } finally {
      close();
    }
  }

  /**
   * A new process answered `GKRegister` and its health check: adopt its
   * registration and, once bound to a host, `Init` it (again, on restart).
   */
  async #attach(
    pb: PbRegistration,
    client: grpc.Client,
    deadline: () => Date,
  ): Promise<void> {
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
    if (this.#host) await this.#runInit(client, deadline());
  }

  #initConfig(): Record<string, string> {
    return {
      host_socket: this.#supervisor.hostSocket,
      host_version: this.#options.hostVersion ?? HOST_VERSION,
      plugin_name: this.#name,
      ...(this.#options.dataDir
        ? { data_dir: resolve(this.#options.dataDir) }
        : {}),
    };
  }

  /** The manifest the plugin returned from `GKRegister`. */
  gkRegister(): GKRegistration {
    if (!this.#registration) {
      throw new PluginError(
        this.#name,
        `Cannot read manifest of plugin "${this.#name}": it is not started`,
      );
    }
    return this.#registration;
  }

  /** Binds the plugin to its HostAPI and calls its `Init`. */
  async init(host: HostAPI, env?: PluginEnvironment): Promise<void> {
    this.#host = host;
    this.#env = env;
    const conn = await this.#supervisor.ready();
    await this.#runInit(
      conn.client,
      new Date(Date.now() + (this.#options.startTimeoutMs ?? 10_000)),
    ).catch((e) => {
      throw new PluginError(
        this.#name,
        `Cannot run Init of plugin "${this.#name}": ${
          (e as grpc.ServiceError).details ?? errorText(e)
        }`,
        { cause: e },
      );
    });
  }

  /** Calls `fn` in the plugin process, honouring `ctx`'s deadline and signal. */
  call(
    fn: string,
    args: Uint8Array | null,
    ctx: CallContext,
  ): Promise<Uint8Array | null> {
    const started = Date.now();
    this.#callCount++;
    let deadline = ctx.deadline;
    if (this.#options.callTimeoutMs !== undefined) {
      deadline = Math.min(deadline, started + this.#options.callTimeoutMs);
    }
    const timeoutError = () =>
      new PluginTimeoutError(this.#name, deadline - started, {
        function: fn,
        ...(ctx.caller ? { caller: ctx.caller } : {}),
      });
    const state = this.#supervisor.state;
    if (state === "stopped") {
      return Promise.reject(
        new PluginCrashedError(this.#name, "plugin was shut down", {
          function: fn,
        }),
      );
    }
    // The Manager routes no calls to a disabled plugin, so a call reaching
    // a quarantined one means an admin enabled it again.
    if (state === "quarantined") this.#supervisor.lift();
    // The common case runs without awaiting anything before the write.
    const live = this.#supervisor.live();
    if (live) {
      return this.#callOn(live, fn, args, ctx, deadline, timeoutError);
    }
    return this.#supervisor.connection({ deadline, timeoutError }).then((
      conn,
    ) => this.#callOn(conn, fn, args, ctx, deadline, timeoutError));
  }

  /** Runs one `Call` on `conn` over the host's own HTTP/2 client. */
  #callOn(
    conn: PluginConnection,
    fn: string,
    args: Uint8Array | null,
    ctx: CallContext,
    deadline: number,
    timeoutError: () => PluginTimeoutError,
  ): Promise<Uint8Array | null> {
    const callId = crypto.randomUUID();
    const body = encodeCallRequest({
      function: fn,
      args,
      callId,
      caller: ctx.caller ?? "",
      language: ctx.language ?? "",
      deadline,
      chain: ctx.chain,
    }, REQUEST_PREFIX);
    const close = this.#openCallRecord(callId, ctx, deadline, timeoutError);
    return new Promise<Uint8Array | null>((resolvePromise, reject) => {
      let settled = false;
      // deno-lint-ignore prefer-const
      let call: UnaryCall | undefined;
      let untrack: () => void = noop;
      const onAbort = () => call?.cancel();
      const finish = () => {
        settled = true;
        untrack();
        close();
        ctx.signal.removeEventListener("abort", onAbort);
      };
      untrack = conn.track((e) => {
        if (settled) return;
        finish();
        call?.cancel();
        reject(e);
      });
      if (ctx.signal.aborted) {
        finish();
        reject(this.#abortError(ctx, timeoutError));
        return;
      }
      ctx.signal.addEventListener("abort", onAbort, { once: true });
      call = conn.channel.call(CALL_PATH, body, deadline, (err, message) => {
        if (settled) return;
        finish();
        if (!err) {
          let res;
          try {
            res = decodeCallResponse(message!);
          } catch (e) {
            conn.lost();
            reject(
              new PluginCrashedError(
                this.#name,
                `connection lost: ${errorText(e)}`,
                { function: fn },
              ),
            );
            return;
          }
          if (res.error) reject(new PluginCallError(this.#name, fn, res.error));
          else resolvePromise(res.result.length ? res.result : null);
          return;
        }
        this.#rejectFailed(err, conn, fn, ctx, timeoutError, reject);
      });
    });
  }

  /** Maps a failed `Call`'s status to the error its caller sees. */
  #rejectFailed(
    err: GrpcStatusError,
    conn: PluginConnection,
    fn: string,
    ctx: CallContext,
    timeoutError: () => PluginTimeoutError,
    reject: (e: Error) => void,
  ): void {
    if (err.code === grpc.status.DEADLINE_EXCEEDED) {
      conn.timedOut();
      reject(timeoutError());
    } else if (err.code === grpc.status.CANCELLED && ctx.signal.aborted) {
      const e = this.#abortError(ctx, timeoutError);
      if (e instanceof PluginTimeoutError) conn.timedOut();
      reject(e);
    } else if (
      conn.exited || err.code === grpc.status.UNAVAILABLE ||
      err.code === grpc.status.INTERNAL
    ) {
      conn.lost();
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
   * Runs `grpc.health.v1.Health/Check` for service `plugin`; a failure or a
   * status other than SERVING marks the plugin unhealthy.
   */
  async checkHealth(timeoutMs = 2000): Promise<boolean> {
    return await this.#supervisor.checkHealth(timeoutMs);
  }

  /**
   * Stops the plugin: `GKPlugin.Shutdown`, `plugin.GRPCController/Shutdown`,
   * then SIGTERM and SIGKILL after grace periods; removes its sockets.
   */
  async shutdown(): Promise<void> {
    await this.#supervisor.shutdown();
  }
}
