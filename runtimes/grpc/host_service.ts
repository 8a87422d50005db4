/**
 * The host side of host callbacks: the `GKHost` gRPC service, bound to one
 * plugin's HostAPI. Every plugin gets its own server on its own unix socket,
 * so the socket a call arrives on is the plugin's identity.
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
  PluginTimeoutError,
} from "../../host/model/errors.ts";
import { loadProto, LOCAL_SERVER_OPTIONS } from "./proto.ts";

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
  if (e instanceof PermissionDeniedError) return grpc.status.PERMISSION_DENIED;
  if (e instanceof PluginNotFoundError) return grpc.status.NOT_FOUND;
  if (e instanceof PluginDisabledError) {
    return grpc.status.FAILED_PRECONDITION;
  }
  if (e instanceof PluginTimeoutError) return grpc.status.DEADLINE_EXCEEDED;
  if (e instanceof PluginCallCycleError) return grpc.status.ABORTED;
  if (e instanceof PluginCrashedError) return grpc.status.UNAVAILABLE;
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
  /** The context for a callback carrying call id `callId` (if any). */
  context(callId: string | undefined): CallContext;
  /** The plugin's name, for messages. */
  name(): string;
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
    const id = call.metadata.get("gk-call-id")[0];
    let ctx: CallContext;
    try {
      ctx = binding.context(typeof id === "string" ? id : undefined);
    } catch (e) {
      cb({ code: statusForError(e), details: String(e) });
      return;
    }
    Promise.resolve()
      .then(() => fn(host, ctx, call.request as Req))
      .then(
        (res) => cb(null, res ?? {}),
        (e) =>
          cb({
            code: statusForError(e),
            details: e instanceof Error ? e.message : String(e),
          }),
      );
  };

  return {
    DBQuery: wrap<{ query: string; args: Uint8Array[] }>(
      async (h, ctx, r) => {
        const rows = await h.dbQuery(ctx, r.query, jsonArgs(r.args));
        return {
          rows_json: (rows ?? []).map((row) =>
            encoder.encode(JSON.stringify(row))
          ),
        };
      },
    ),
    DBExec: wrap<{ query: string; args: Uint8Array[] }>(async (h, ctx, r) => ({
      affected_rows: await h.dbExec(ctx, r.query, jsonArgs(r.args)),
    })),
    CacheGet: wrap<{ key: string }>(async (h, ctx, r) => {
      const v = await h.cacheGet(ctx, r.key);
      return v === null
        ? { found: false, value: new Uint8Array() }
        : { found: true, value: v };
    }),
    CacheSet: wrap<{ key: string; value: Uint8Array; ttl_seconds: number }>(
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
    CacheDelete: wrap<{ key: string }>(async (h, ctx, r) => {
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
    >(async (h, ctx, r) => {
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
    >(async (h, ctx, r) => {
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
    >((h, ctx, r) => {
      const fields = r.fields_json?.length
        ? JSON.parse(decoder.decode(r.fields_json))
        : { ...(r.fields ?? {}) };
      h.log(ctx, toLevel(r.level ?? ""), r.message ?? "", fields);
      return Promise.resolve({});
    }),
    ConfigGet: wrap<{ key: string }>(async (h, ctx, r) => ({
      value: await h.configGet(ctx, r.key),
    })),
    Translate: wrap<{ key: string; args: string[] }>(async (h, ctx, r) => ({
      text: await h.translate(ctx, r.key, r.args ?? []),
    })),
    CallPlugin: wrap<
      { plugin: string; function: string; args_json: Uint8Array }
    >(
      async (h, ctx, r) => {
        const out = await h.callPlugin(
          ctx,
          r.plugin,
          r.function,
          r.args_json?.length ? new Uint8Array(r.args_json) : null,
        );
        return { result_json: out ?? new Uint8Array() };
      },
    ),
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
