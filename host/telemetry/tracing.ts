/**
 * OpenTelemetry traces of plugin calls and host calls, through the host's
 * interceptors (`host/model/interceptors.ts`) and `@opentelemetry/api`,
 * exported by Deno's built-in telemetry (`OTEL_DENO=true`).
 *
 * One request becomes one trace: Deno's own `Deno.serve` span → a
 * `plugin.call` span per `Manager.call` → a `host.<method>` span per host
 * call the plugin makes → the service spans (`db.query`, `cache.get`,
 * `http.request`, `email.send`, …; see `service_spans.ts`) below it. A
 * plugin calling another plugin (`callPlugin`) nests the callee's
 * `plugin.call` under the caller's `host.callPlugin`.
 *
 * Context. A plugin-call span is the child of the active context (Deno
 * carries it across `await`, so a route's call is the child of the HTTP
 * span). A host call does not arrive in its plugin call's async context: a
 * WASM guest's host call comes back from its worker through a message
 * handler, a gRPC plugin's callback through the host service's socket. So
 * each plugin call's span context is also kept explicitly, in a WeakMap keyed
 * by objects of its `CallContext` that the runtimes hand back with the host
 * call: its `chain` array and its `signal` (the WASM runtime passes both on;
 * the gRPC runtime copies both, see below). A host call whose context is not
 * found there falls back to the only open call of its plugin when there is
 * exactly one, else to the active context.
 *
 * Secrets: spans carry names, outcomes, kinds and permissions only: never
 * arguments, results, SQL parameters, header values or error messages.
 *
 * @example
 * ```ts ignore
 * import { createTracing } from "./tracing.ts";
 * const tracing = createTracing({ runtimeOf: (p) => manager.status(p)?.runtime });
 * interceptors.plugin.push(tracing.plugin);
 * interceptors.host.push(tracing.host);
 * ```
 *
 * @module
 */

import {
  type Attributes,
  type Context,
  context,
  type Span,
  SpanKind,
  SpanStatusCode,
  trace,
  type Tracer,
} from "@opentelemetry/api";
import {
  PermissionDeniedError,
  PluginCallCycleError,
  PluginCrashedError,
  PluginDisabledError,
  PluginError,
  PluginNotFoundError,
  PluginOverloadedError,
  PluginTimeoutError,
} from "../model/errors.ts";
import type {
  HostCallInfo,
  HostCallInterceptor,
  PluginCallInfo,
  PluginCallInterceptor,
} from "../model/interceptors.ts";

/** The instrumentation scope of the host's spans. */
export const TRACER_NAME = "goatkit";

/**
 * Whether Deno's built-in telemetry is on for this process: `OTEL_DENO` is
 * `true` (the only value Deno accepts for on).
 *
 * @example
 * ```ts
 * import { tracingEnabled } from "./tracing.ts";
 * tracingEnabled({ OTEL_DENO: "true" }); // true
 * tracingEnabled({}); // false
 * ```
 */
export function tracingEnabled(
  env: Record<string, string | undefined>,
): boolean {
  return env.OTEL_DENO === "true";
}

/**
 * What went wrong, in one word, for span attributes and metrics labels:
 * `timeout`, `crash`, `trap`, `denied`, `quota`, `overloaded`, `not_found`,
 * `disabled`, `cycle`, `aborted`, or `error` for anything else.
 *
 * @example
 * ```ts
 * import { errorKind } from "./tracing.ts";
 * import { PermissionDeniedError } from "../model/errors.ts";
 * errorKind(new PermissionDeniedError("p", "db:read", "db_query")); // "denied"
 * errorKind(new Error("x")); // "error"
 * ```
 */
export function errorKind(e: unknown): string {
  if (e instanceof PluginTimeoutError) return "timeout";
  if (e instanceof PermissionDeniedError) return "denied";
  if (e instanceof Error && e.name === "QuotaExceededError") return "quota";
  if (e instanceof PluginOverloadedError) return "overloaded";
  if (e instanceof PluginNotFoundError) return "not_found";
  if (e instanceof PluginDisabledError) return "disabled";
  if (e instanceof PluginCallCycleError) return "cycle";
  if (e instanceof PluginCrashedError) {
    return e.fault === "crash" ? "crash" : "trap";
  }
  if (e instanceof PluginError && e.fault === "deadline") return "timeout";
  if (e instanceof DOMException && e.name === "AbortError") return "aborted";
  if (e instanceof DOMException && e.name === "TimeoutError") return "timeout";
  return "error";
}

/** Options of {@linkcode createTracing}. */
export interface TracingOptions {
  /** The tracer. @default trace.getTracer("goatkit") */
  tracer?: Tracer;
  /** The runtime of a plugin (`wasm`, `grpc`, `native`), for an attribute. */
  runtimeOf?: (plugin: string) => string | undefined;
}

/** The interceptors {@linkcode createTracing} returns. */
export interface Tracing {
  /** Opens a `plugin.call` span around each `Manager.call`. */
  readonly plugin: PluginCallInterceptor;
  /** Opens a `host.<method>` span around each host call. */
  readonly host: HostCallInterceptor;
  /** Plugin calls whose span is open now (for tests and diagnostics). */
  openCalls(): number;
}

/**
 * Interceptors that trace plugin calls and host calls (see the module
 * documentation for the span tree and how context crosses the runtimes).
 * Add them first (outermost), so the spans see every refusal.
 *
 * @example
 * ```ts
 * import { createTracing } from "./tracing.ts";
 * import { runIntercepted } from "../model/interceptors.ts";
 * const tracing = createTracing();
 * const out = await runIntercepted([tracing.plugin], {
 *   plugin: "hello", fn: "greet", args: null,
 *   ctx: { chain: ["hello"], deadline: Date.now() + 1000, signal: new AbortController().signal },
 * }, () => Promise.resolve(null));
 * console.log(out, tracing.openCalls()); // null 0
 * ```
 */
export function createTracing(options: TracingOptions = {}): Tracing {
  const tracer = options.tracer ?? trace.getTracer(TRACER_NAME);
  // A call's span context by its CallContext's chain array and signal.
  const byCall = new WeakMap<object, Context>();
  // Open calls per plugin: the fallback when a host call's context object
  // was copied on its way back (one open call is unambiguous).
  const open = new Map<string, Set<Context>>();
  let openCount = 0;

  const plugin: PluginCallInterceptor = (call, next) => {
    const attributes: Attributes = {
      "goatkit.plugin": call.plugin,
      "goatkit.function": call.fn,
    };
    if (call.caller !== undefined) attributes["goatkit.caller"] = call.caller;
    const runtime = options.runtimeOf?.(call.plugin);
    if (runtime !== undefined) attributes["goatkit.runtime"] = runtime;
    const parent = context.active();
    const span = tracer.startSpan(
      "plugin.call",
      { kind: SpanKind.INTERNAL, attributes },
      parent,
    );
    // OTel's no-op tracer (no provider): nothing to record and
    // no trace to carry on, so no context, bookkeeping or async frame.
    if (noop(span)) return next();
    return traced(call, next, span, trace.setSpan(parent, span));
  };

  // The span's part of the plugin interceptor.
  async function traced(
    call: PluginCallInfo,
    next: () => Promise<Uint8Array | null>,
    span: Span,
    ctx: Context,
  ): Promise<Uint8Array | null> {
    remember(call, ctx);
    try {
      const result = await context.with(ctx, next);
      span.setAttribute("goatkit.outcome", "ok");
      return result;
    } catch (e) {
      failed(span, e, "error");
      throw e;
    } finally {
      forget(call, ctx);
      span.end();
    }
  }

  const host: HostCallInterceptor = async (call, next) => {
    const parent = callContext(call);
    const attributes: Attributes = {
      "goatkit.plugin": call.plugin,
      "goatkit.host.method": call.method,
    };
    if (call.method === "callPlugin" && typeof call.args[0] === "string") {
      attributes["goatkit.callee"] = call.args[0];
    }
    const span = tracer.startSpan(
      `host.${call.method}`,
      { kind: SpanKind.INTERNAL, attributes },
      parent,
    );
    if (noop(span)) return await next();
    try {
      const result = await context.with(trace.setSpan(parent, span), next);
      span.setAttribute("goatkit.outcome", "allowed");
      return result;
    } catch (e) {
      const kind = errorKind(e);
      failed(
        span,
        e,
        kind === "denied" || kind === "quota" ? "denied" : "error",
      );
      if (e instanceof PermissionDeniedError) {
        span.setAttribute("goatkit.permission", e.permission);
      }
      throw e;
    } finally {
      span.end();
    }
  };

  function remember(call: PluginCallInfo, ctx: Context): void {
    byCall.set(call.ctx.chain, ctx);
    byCall.set(call.ctx.signal, ctx);
    let set = open.get(call.plugin);
    if (!set) open.set(call.plugin, set = new Set());
    set.add(ctx);
    openCount++;
  }

  function forget(call: PluginCallInfo, ctx: Context): void {
    if (byCall.get(call.ctx.chain) === ctx) byCall.delete(call.ctx.chain);
    if (byCall.get(call.ctx.signal) === ctx) byCall.delete(call.ctx.signal);
    const set = open.get(call.plugin);
    if (set?.delete(ctx)) openCount--;
    if (set?.size === 0) open.delete(call.plugin);
  }

  function callContext(call: HostCallInfo): Context {
    const known = byCall.get(call.ctx.chain) ?? byCall.get(call.ctx.signal);
    if (known) return known;
    const set = open.get(call.plugin);
    if (set?.size === 1) return set.values().next().value!;
    return context.active();
  }

  return { plugin, host, openCalls: () => openCount };
}

/**
 * Whether `span` is a no-op one: not recording and carrying no valid trace
 * (what OTel's API returns without a provider, outside any trace).
 */
function noop(span: Span): boolean {
  return !span.isRecording() && !trace.isSpanContextValid(span.spanContext());
}

/** Marks `span` failed: outcome, kind and error class, never the message. */
function failed(span: Span, e: unknown, outcome: string): void {
  const kind = errorKind(e);
  span.setAttributes({
    "goatkit.outcome": outcome,
    "goatkit.error.kind": kind,
    "error.type": e instanceof Error ? e.name : typeof e,
  });
  span.setStatus({ code: SpanStatusCode.ERROR, message: kind });
}
