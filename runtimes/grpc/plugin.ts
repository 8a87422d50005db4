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
import type { HostAPI } from "../../host/model/host_api.ts";
import type {
  CallContext,
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
import { PluginCallError } from "./errors.ts";
import {
  type PbCallRequest,
  type PbCallResponse,
  type PbRegistration,
  unary,
} from "./proto.ts";
import { registrationFromPb } from "./registration.ts";
import { serveHostService } from "./host_service.ts";
import { ProcessSupervisor } from "./supervisor.ts";
import type {
  GrpcLogSink,
  GrpcPlugin,
  GrpcPluginStatus,
  LoadGrpcPluginOptions,
} from "./options.ts";

const noop = () => {};

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
  #registration: GKRegistration | undefined;
  #name: string;
  #host: HostAPI | undefined;
  #env: PluginEnvironment | undefined;
  #contexts = new Map<string, CallContext>();

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
            context: (id) => this.#callbackContext(id),
            name: () => this.#name,
          }),
        register: (client, deadline) =>
          unary<PbRegistration>(client, "GKRegister", {}, { deadline }),
        attach: (pb, client, deadline) => this.#attach(pb, client, deadline),
        log: (level, message, fields) => {
          const sink: GrpcLogSink | undefined = this.#options.logs ??
            (this.#host
              ? (l, m, f) => this.#host!.log(logContext(this.#name), l, m, f)
              : undefined);
          sink?.(level, message, fields);
        },
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

  /** The unix socket the host serves `GKHost` on for this plugin. */
  get hostSocket(): string {
    return this.#supervisor.hostSocket;
  }

  /** Starts the first process (called by {@linkcode loadGrpcPlugin}). */
  async start(): Promise<void> {
    await this.#supervisor.start();
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
    if (this.#host) {
      await unary(client, "Init", { config: this.#initConfig() }, {
        deadline: deadline(),
      });
    }
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
    await unary(conn.client, "Init", { config: this.#initConfig() }, {
      deadline: new Date(Date.now() + (this.#options.startTimeoutMs ?? 10_000)),
    }).catch((e) => {
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
    const state = this.#supervisor.state;
    if (state === "stopped") {
      throw new PluginCrashedError(this.#name, "plugin was shut down", {
        function: fn,
      });
    }
    // The Manager routes no calls to a disabled plugin, so a call reaching
    // a quarantined one means an admin enabled it again.
    if (state === "quarantined") this.#supervisor.lift();
    const conn = await this.#supervisor.connection({ deadline, timeoutError });
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
      let untrack: () => void = noop;
      const onAbort = () => call?.cancel();
      const finish = () => {
        settled = true;
        untrack();
        this.#contexts.delete(callId);
        ctx.signal.removeEventListener("abort", onAbort);
      };
      untrack = conn.track((e) => {
        if (settled) return;
        finish();
        reject(e);
      });
      if (ctx.signal.aborted) {
        finish();
        reject(this.#abortError(ctx, timeoutError));
        return;
      }
      ctx.signal.addEventListener("abort", onAbort, { once: true });
      call = (conn.client as unknown as {
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
