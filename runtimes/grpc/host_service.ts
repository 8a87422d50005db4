/**
 * The host side of host callbacks: the `GKHost` gRPC service, bound to one
 * plugin's HostAPI. Every plugin gets its own server on its own unix socket,
 * so the socket a call arrives on is the plugin's identity.
 *
 * Every callback is bound, on the host side, to a host→plugin call of that
 * plugin that is still open: its `gk-call-id` metadata must name a call id
 * the host issued to this plugin (a `Call`, or the `Init` in progress), and
 * the callback then runs with the deadline, language and call chain of the
 * host's record of that call — never with anything the plugin claims. When
 * that call ends or its deadline passes, callbacks still running are
 * answered at once (`DEADLINE_EXCEEDED` / `CANCELLED`) and their work is
 * aborted. Without a call id only `Log` is accepted (start-up, background
 * work); everything else, an unknown, finished or foreign call id, or more
 * than one id is refused with a {@linkcode CallbackRefusedError}
 * (`FAILED_PRECONDITION` / `PERMISSION_DENIED`) and reported to the
 * binding's `refused` hook for the audit trail.
 *
 * @module
 */

import * as grpc from "@grpc/grpc-js";
import type { HostAPI, LogLevel } from "../../host/model/host_api.ts";
import { LOG_LEVELS } from "../../host/model/host_api.ts";
import type { CallContext } from "../../host/model/plugin.ts";
import {
  PermissionDeniedError,
  PluginCallCycleError,
  PluginCrashedError,
  PluginDisabledError,
  PluginError,
  PluginNotFoundError,
  PluginOverloadedError,
  PluginTimeoutError,
  QuotaExceededError,
} from "../../host/model/errors.ts";
import { loadProto, LOCAL_SERVER_OPTIONS } from "./proto.ts";

/** The metadata key a callback names its call by. */
export const CALL_ID_METADATA = "gk-call-id";

/** The `GKHost` methods a plugin may call outside any call (no call id). */
export const METHODS_OUTSIDE_CALLS: ReadonlySet<string> = new Set(["Log"]);

/** Options of {@linkcode CallbackRefusedError}. */
export interface CallbackRefusedErrorOptions {
  /** The plugin whose callback was refused. */
  plugin: string;
  /** The `GKHost` method, such as `DBQuery` (absent: every callback of a call). */
  method?: string;
  /** The gRPC status the plugin receives. */
  code: grpc.status;
  /** Why, in words. */
  reason: string;
  /** The call id the callback named, when it named one. */
  callId?: string;
  /** The underlying error. */
  cause?: unknown;
}

/**
 * A host callback was refused or cut short: no call id, a call id that is
 * not an open call of this plugin, or its call ended or passed its deadline.
 *
 * @example
 * ```ts
 * import * as grpc from "@grpc/grpc-js";
 * import { CallbackRefusedError } from "./host_service.ts";
 * const e = new CallbackRefusedError({
 *   plugin: "p",
 *   method: "DBQuery",
 *   code: grpc.status.FAILED_PRECONDITION,
 *   reason: "it names no call",
 * });
 * console.log(e.message); // Cannot run host callback "DBQuery" of plugin "p": it names no call
 * ```
 */
export class CallbackRefusedError extends Error {
  /** The plugin whose callback was refused. */
  readonly plugin: string;
  /** The `GKHost` method, when known. */
  readonly method: string | undefined;
  /** The gRPC status the plugin receives. */
  readonly code: grpc.status;
  /** Why, in words. */
  readonly reason: string;
  /** The call id the callback named, when it named one. */
  readonly callId: string | undefined;

  /** Creates the error; see {@linkcode CallbackRefusedErrorOptions}. */
  constructor(options: CallbackRefusedErrorOptions) {
    super(
      options.method
        ? `Cannot run host callback "${options.method}" of plugin "${options.plugin}": ${options.reason}`
        : `Cannot run host callbacks of plugin "${options.plugin}": ${options.reason}`,
      options.cause === undefined ? undefined : { cause: options.cause },
    );
    this.name = "CallbackRefusedError";
    this.plugin = options.plugin;
    this.method = options.method;
    this.code = options.code;
    this.reason = options.reason;
    this.callId = options.callId;
  }
}

const encoder = new TextEncoder();
const decoder = new TextDecoder();

/**
 * Maps an error thrown by a HostAPI method to a gRPC status code.
 *
 * @example
 * ```ts
 * import { PermissionDeniedError } from "../../host/model/errors.ts";
 * import { statusForError } from "./host_service.ts";
 * statusForError(new PermissionDeniedError("p", "db:write", "x")); // 7 (gRPC PERMISSION_DENIED)
 * ```
 */
export function statusForError(e: unknown): number {
  if (e instanceof CallbackRefusedError) return e.code;
  if (e instanceof PermissionDeniedError) return grpc.status.PERMISSION_DENIED;
  if (e instanceof PluginNotFoundError) return grpc.status.NOT_FOUND;
  if (e instanceof PluginDisabledError) {
    return grpc.status.FAILED_PRECONDITION;
  }
  if (e instanceof PluginTimeoutError) return grpc.status.DEADLINE_EXCEEDED;
  if (e instanceof PluginCallCycleError) return grpc.status.ABORTED;
  if (e instanceof PluginCrashedError) return grpc.status.UNAVAILABLE;
  // Over a quota or overloaded: the guest may retry later.
  if (
    e instanceof QuotaExceededError || e instanceof PluginOverloadedError
  ) return grpc.status.RESOURCE_EXHAUSTED;
  if (e instanceof PluginError) return grpc.status.UNKNOWN;
  if (e instanceof TypeError || e instanceof RangeError) {
    return grpc.status.INVALID_ARGUMENT;
  }
  if (e instanceof SyntaxError) return grpc.status.INVALID_ARGUMENT;
  if (e instanceof DOMException && e.name === "TimeoutError") {
    return grpc.status.DEADLINE_EXCEEDED;
  }
  return grpc.status.INTERNAL;
}

/** What the GKHost service needs from its plugin's runtime. */
export interface HostServiceBinding {
  /** The plugin's (guarded) HostAPI, or `undefined` before `init`. */
  host(): HostAPI | undefined;
  /**
   * The host's context for open call `callId` of this plugin (deadline,
   * language, chain; its signal aborts when the call ends or its deadline
   * passes), or `undefined` when the host issued no such call to this
   * plugin or it has ended.
   */
  openCall(callId: string): CallContext | undefined;
  /** The context of work outside any call (only {@linkcode METHODS_OUTSIDE_CALLS}). */
  ownContext(): CallContext;
  /** The plugin's name, for messages. */
  name(): string;
  /** Told about every callback refused before it ran (for the audit trail). */
  refused?(error: CallbackRefusedError): void;
}

/** The call id a callback's metadata names (`undefined`: none; `null`: several). */
function callIdOf(metadata: grpc.Metadata): string | undefined | null {
  // Repeated headers may arrive joined by commas.
  const values = metadata.get(CALL_ID_METADATA)
    .flatMap((v) => typeof v === "string" ? v.split(",") : [])
    .map((v) => v.trim())
    .filter((v) => v !== "");
  if (values.length === 0) return undefined;
  if (new Set(values).size > 1) return null;
  return values[0];
}

/** A call id as it may appear in a message: short and printable. */
function shown(id: string): string {
  return JSON.stringify(id.length > 64 ? `${id.slice(0, 63)}…` : id);
}

/**
 * Resolves the context a callback of `method` runs in, from the host's
 * records only; throws {@linkcode CallbackRefusedError} when it may not run.
 *
 * @example
 * ```ts ignore
 * const ctx = callbackContext(binding, "DBQuery", call.metadata);
 * ```
 */
export function callbackContext(
  binding: HostServiceBinding,
  method: string,
  metadata: grpc.Metadata,
): CallContext {
  const plugin = binding.name();
  const id = callIdOf(metadata);
  if (id === null) {
    throw new CallbackRefusedError({
      plugin,
      method,
      code: grpc.status.PERMISSION_DENIED,
      reason:
        `it names more than one call (several "${CALL_ID_METADATA}" values)`,
    });
  }
  if (id === undefined) {
    if (METHODS_OUTSIDE_CALLS.has(method)) return binding.ownContext();
    throw new CallbackRefusedError({
      plugin,
      method,
      code: grpc.status.FAILED_PRECONDITION,
      reason: `it names no call ("${CALL_ID_METADATA}" metadata missing); ` +
        `outside a call the host issued, only ${
          [...METHODS_OUTSIDE_CALLS].join(", ")
        } is accepted`,
    });
  }
  const ctx = binding.openCall(id);
  if (!ctx) {
    throw new CallbackRefusedError({
      plugin,
      method,
      callId: id,
      code: grpc.status.PERMISSION_DENIED,
      reason: `call id ${
        shown(id)
      } is not an open call of this plugin (unknown, finished, or issued to another plugin)`,
    });
  }
  if (ctx.signal.aborted || Date.now() >= ctx.deadline) {
    const timedOut = !ctx.signal.aborted ||
      ctx.signal.reason instanceof PluginTimeoutError ||
      (ctx.signal.reason instanceof DOMException &&
        ctx.signal.reason.name === "TimeoutError");
    throw new CallbackRefusedError({
      plugin,
      method,
      callId: id,
      code: timedOut ? grpc.status.DEADLINE_EXCEEDED : grpc.status.CANCELLED,
      reason: timedOut
        ? `call ${shown(id)} has passed its deadline`
        : `call ${shown(id)} was cancelled`,
    });
  }
  return ctx;
}

/** The gRPC status for a callback cut short because `signal` aborted. */
function abortStatus(signal: AbortSignal): Partial<grpc.ServiceError> {
  const reason = signal.reason;
  let code = statusForError(reason);
  if (code === grpc.status.INTERNAL || code === grpc.status.UNKNOWN) {
    code = grpc.status.CANCELLED;
  }
  return {
    code,
    details: reason instanceof Error ? reason.message : String(reason),
  };
}

function jsonArgs(args: Uint8Array[] | undefined): unknown[] {
  return (args ?? []).map((a) =>
    a.length === 0 ? null : JSON.parse(decoder.decode(a))
  );
}

function toLevel(level: string): LogLevel {
  const l = level.toLowerCase();
  if (l === "warning") return "warn";
  if (/^\d$/.test(l)) return LOG_LEVELS[Number(l)] ?? "info";
  return (LOG_LEVELS as readonly string[]).includes(l) ? l as LogLevel : "info";
}

type Handler = (
  call: grpc.ServerUnaryCall<unknown, unknown>,
  cb: grpc.sendUnaryData<unknown>,
) => void;

/**
 * Builds the `GKHost` handlers for one plugin.
 */
export function hostServiceHandlers(
  binding: HostServiceBinding,
): Record<string, Handler> {
  const wrap = <Req>(
    method: string,
    fn: (host: HostAPI, ctx: CallContext, req: Req) => Promise<unknown>,
  ): Handler =>
  (call, cb) => {
    const host = binding.host();
    if (!host) {
      cb({
        code: grpc.status.FAILED_PRECONDITION,
        details: `plugin "${binding.name()}" is not initialised`,
      });
      return;
    }
    let callCtx: CallContext;
    try {
      callCtx = callbackContext(binding, method, call.metadata);
    } catch (e) {
      if (e instanceof CallbackRefusedError) {
        try {
          binding.refused?.(e);
        } catch { /* the audit trail must not break the answer */ }
      }
      cb({
        code: statusForError(e),
        details: e instanceof Error ? e.message : String(e),
      });
      return;
    }
    // The callback's own signal: its call's (end, deadline) or the plugin
    // giving up on this callback. The answer goes out when it aborts, even
    // if the service ignores the signal.
    const local = new AbortController();
    const signal = AbortSignal.any([callCtx.signal, local.signal]);
    const ctx: CallContext = { ...callCtx, signal };
    let answered = false;
    const onCancelled = () =>
      local.abort(
        new CallbackRefusedError({
          plugin: binding.name(),
          method,
          code: grpc.status.CANCELLED,
          reason: "the plugin cancelled it",
        }),
      );
    const onAbort = () => answer(abortStatus(signal));
    const answer = (err: Partial<grpc.ServiceError> | null, res?: unknown) => {
      if (answered) return;
      answered = true;
      signal.removeEventListener("abort", onAbort);
      call.removeListener("cancelled", onCancelled);
      if (err) cb(err);
      else cb(null, res);
    };
    call.on("cancelled", onCancelled);
    signal.addEventListener("abort", onAbort, { once: true });
    Promise.resolve()
      .then(() => fn(host, ctx, call.request as Req))
      .then(
        (res) => answer(null, res ?? {}),
        (e) =>
          answer({
            code: statusForError(e),
            details: e instanceof Error ? e.message : String(e),
          }),
      );
  };

  return {
    DBQuery: wrap<{ query: string; args: Uint8Array[] }>(
      "DBQuery",
      async (h, ctx, r) => {
        const rows = await h.dbQuery(ctx, r.query, jsonArgs(r.args));
        return {
          rows_json: (rows ?? []).map((row) =>
            encoder.encode(JSON.stringify(row))
          ),
        };
      },
    ),
    DBExec: wrap<{ query: string; args: Uint8Array[] }>(
      "DBExec",
      async (h, ctx, r) => ({
        affected_rows: await h.dbExec(ctx, r.query, jsonArgs(r.args)),
      }),
    ),
    CacheGet: wrap<{ key: string }>("CacheGet", async (h, ctx, r) => {
      const v = await h.cacheGet(ctx, r.key);
      return v === null
        ? { found: false, value: new Uint8Array() }
        : { found: true, value: v };
    }),
    CacheSet: wrap<{ key: string; value: Uint8Array; ttl_seconds: number }>(
      "CacheSet",
      async (h, ctx, r) => {
        await h.cacheSet(
          ctx,
          r.key,
          new Uint8Array(r.value ?? []),
          r.ttl_seconds ?? 0,
        );
        return {};
      },
    ),
    CacheDelete: wrap<{ key: string }>("CacheDelete", async (h, ctx, r) => {
      await h.cacheDelete(ctx, r.key);
      return {};
    }),
    HTTPRequest: wrap<
      {
        method: string;
        url: string;
        headers: Record<string, string>;
        body: Uint8Array;
      }
    >("HTTPRequest", async (h, ctx, r) => {
      const res = await h.httpRequest(ctx, {
        method: r.method || "GET",
        url: r.url,
        headers: r.headers ?? {},
        body: r.body?.length ? new Uint8Array(r.body) : null,
      });
      return {
        status_code: res.status,
        body: res.body ?? new Uint8Array(),
        headers: res.headers ?? {},
      };
    }),
    SendEmail: wrap<
      { to: string; subject: string; body: string; html: boolean }
    >("SendEmail", async (h, ctx, r) => {
      await h.sendEmail(ctx, {
        to: r.to,
        subject: r.subject,
        body: r.body,
        html: r.html,
      });
      return {};
    }),
    Log: wrap<
      {
        level: string;
        message: string;
        fields: Record<string, string>;
        fields_json: Uint8Array;
      }
    >("Log", (h, ctx, r) => {
      const fields = r.fields_json?.length
        ? JSON.parse(decoder.decode(r.fields_json))
        : { ...(r.fields ?? {}) };
      h.log(ctx, toLevel(r.level ?? ""), r.message ?? "", fields);
      return Promise.resolve({});
    }),
    ConfigGet: wrap<{ key: string }>("ConfigGet", async (h, ctx, r) => ({
      value: await h.configGet(ctx, r.key),
    })),
    Translate: wrap<{ key: string; args: string[] }>(
      "Translate",
      async (h, ctx, r) => ({
        text: await h.translate(ctx, r.key, r.args ?? []),
      }),
    ),
    CallPlugin: wrap<
      { plugin: string; function: string; args_json: Uint8Array }
    >("CallPlugin", async (h, ctx, r) => {
      const out = await h.callPlugin(
        ctx,
        r.plugin,
        r.function,
        r.args_json?.length ? new Uint8Array(r.args_json) : null,
      );
      return { result_json: out ?? new Uint8Array() };
    }),
  };
}

/**
 * Starts a `GKHost` server for one plugin on unix socket `path`.
 *
 * @example
 * ```ts ignore
 * const server = await serveHostService("/tmp/x/host.sock", binding);
 * // …
 * server.forceShutdown();
 * ```
 */
export async function serveHostService(
  path: string,
  binding: HostServiceBinding,
): Promise<grpc.Server> {
  const server = new grpc.Server(LOCAL_SERVER_OPTIONS);
  server.addService(loadProto().GKHost.service, hostServiceHandlers(binding));
  await new Promise<void>((resolve, reject) =>
    server.bindAsync(
      `unix:${path}`,
      grpc.ServerCredentials.createInsecure(),
      (err) => err ? reject(err) : resolve(),
    )
  );
  return server;
}
