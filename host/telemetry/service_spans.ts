/**
 * Spans around the services plugins reach through their host calls: the
 * database (`db.query`, `db.exec`, opened in `SqlDatabase`), the cache
 * (`cache.get` / `cache.set` / `cache.delete`), outbound HTTP
 * (`http.request`) and e-mail (`email.send`), the last three by wrapping the
 * service objects the guarded HostAPIs are built with.
 *
 * A service span is opened only under a recording span (a host call's, when
 * tracing is on): the host's own use of a service (readiness probes, the
 * grant store) and every call with tracing off cost one context look-up.
 *
 * Secrets: attributes are the plugin, the operation, the server's host name
 * and port, status codes and counts; never SQL parameters, keys, values,
 * URLs' paths or queries, headers, recipients or bodies.
 *
 * @example
 * ```ts
 * import { serviceSpan } from "./service_spans.ts";
 * const n = await serviceSpan("db.query", { "db.system.name": "postgresql" }, () => Promise.resolve(1));
 * console.log(n); // 1 (no span: nothing is recording)
 * ```
 *
 * @module
 */

import {
  type Attributes,
  context,
  type Span,
  SpanKind,
  SpanStatusCode,
  trace,
} from "@opentelemetry/api";
import type {
  EmailMessage,
  HttpRequest,
  HttpResponse,
} from "../model/host_api.ts";
import { errorKind, TRACER_NAME } from "./tracing.ts";

/**
 * Runs `fn` inside a child span `name` of the active span when that span is
 * recording; else runs `fn` alone. `onResult` may add attributes from the
 * result. The span ends when `fn` settles; a rejection marks it failed with
 * the error's class and kind (never its message) and is rethrown.
 */
export async function serviceSpan<T>(
  name: string,
  attributes: Attributes,
  fn: () => Promise<T>,
  onResult?: (span: Span, result: T) => void,
): Promise<T> {
  const active = context.active();
  if (trace.getSpan(active)?.isRecording() !== true) return await fn();
  const span = trace.getTracer(TRACER_NAME).startSpan(
    name,
    { kind: SpanKind.CLIENT, attributes },
    active,
  );
  try {
    const result = await context.with(trace.setSpan(active, span), fn);
    onResult?.(span, result);
    return result;
  } catch (e) {
    span.setAttributes({
      "error.type": e instanceof Error ? e.name : typeof e,
      "goatkit.error.kind": errorKind(e),
    });
    span.setStatus({ code: SpanStatusCode.ERROR, message: errorKind(e) });
    throw e;
  } finally {
    span.end();
  }
}

/**
 * The first keyword of a SQL statement, upper-cased (`SELECT`, `UPDATE`,
 * `WITH`), for `db.operation.name`; never the statement itself.
 *
 * @example
 * ```ts
 * import { sqlOperation } from "./service_spans.ts";
 * sqlOperation("  update t set x = 1"); // "UPDATE"
 * ```
 */
export function sqlOperation(sql: string): string {
  return /^\s*([A-Za-z]+)/.exec(sql)?.[1]?.toUpperCase() ?? "";
}

/**
 * A span around a plugin's database statement (`db.query` / `db.exec`).
 *
 * @example
 * ```ts ignore
 * return await dbSpan("db.query", sql, opts.plugin, () => this.#run(...));
 * ```
 */
export function dbSpan<T>(
  name: "db.query" | "db.exec",
  sql: string,
  plugin: string,
  fn: () => Promise<T>,
): Promise<T> {
  return serviceSpan(name, {
    "db.system.name": "postgresql",
    "db.operation.name": sqlOperation(sql),
    "goatkit.plugin": plugin,
  }, fn);
}

/** The cache as the guarded HostAPIs use it (see `CacheStore`). */
export interface TracedCache {
  /** Reads an entry. */
  get(namespace: string, key: string): Promise<Uint8Array | null>;
  /** Writes an entry. */
  set(
    namespace: string,
    key: string,
    value: Uint8Array,
    ttlSeconds: number,
  ): Promise<void>;
  /** Removes an entry. */
  delete(namespace: string, key: string): Promise<void>;
}

/**
 * `cache` with a span around each get, set and delete (attributes: the
 * plugin's namespace, a hit or miss, the value's size; never keys or
 * values). Other properties are `cache`'s own.
 *
 * @example
 * ```ts ignore
 * const cache = tracedCache(services.cache);
 * ```
 */
export function tracedCache<C extends TracedCache>(cache: C): C {
  const attrs = (ns: string): Attributes => ({
    "db.system.name": "goatkit.cache",
    "goatkit.plugin": ns,
  });
  return overlay(cache, {
    get: (ns: string, key: string) =>
      serviceSpan(
        "cache.get",
        attrs(ns),
        () => cache.get(ns, key),
        (span, v) => span.setAttribute("goatkit.cache.hit", v !== null),
      ),
    set: (ns: string, key: string, value: Uint8Array, ttl: number) =>
      serviceSpan(
        "cache.set",
        { ...attrs(ns), "goatkit.cache.value_bytes": value.byteLength },
        () => cache.set(ns, key, value, ttl),
      ),
    delete: (ns: string, key: string) =>
      serviceSpan("cache.delete", attrs(ns), () => cache.delete(ns, key)),
  });
}

/** The mailer as the guarded HostAPIs use it (see `Mailer`). */
export interface TracedMailer {
  /** Sends `message` on behalf of `plugin`. */
  send(plugin: string, message: EmailMessage): Promise<void>;
}

/**
 * `mailer` with an `email.send` span around each message (attribute: the
 * plugin; never the recipient, subject or body).
 *
 * @example
 * ```ts ignore
 * const mailer = tracedMailer(services.mailer);
 * ```
 */
export function tracedMailer<M extends TracedMailer>(mailer: M): M {
  return overlay(mailer, {
    send: (plugin: string, message: EmailMessage) =>
      serviceSpan(
        "email.send",
        { "goatkit.plugin": plugin },
        () => mailer.send(plugin, message),
      ),
  });
}

/** The egress client as the guarded HostAPIs use it (see `EgressClient`). */
export interface TracedEgress {
  /** Sends `request` if the options allow it. */
  request(request: HttpRequest, options: never): Promise<HttpResponse>;
}

/**
 * `client` with an `http.request` span around each request (attributes:
 * method, scheme, server host name and port, response status and body
 * size; never the path, query, headers or bodies).
 *
 * @example
 * ```ts ignore
 * const http = tracedEgress(createEgressClient());
 * ```
 */
export function tracedEgress<E extends TracedEgress>(client: E): E {
  return overlay(client, {
    request: (request: HttpRequest, options: never) => {
      const attributes: Attributes = {
        "http.request.method": request.method.toUpperCase(),
      };
      try {
        const url = new URL(request.url);
        attributes["url.scheme"] = url.protocol.replace(/:$/, "");
        attributes["server.address"] = url.hostname;
        if (url.port) attributes["server.port"] = Number(url.port);
      } catch { /* the client refuses it; the span says so */ }
      return serviceSpan(
        "http.request",
        attributes,
        () => client.request(request, options),
        (span, res) =>
          span.setAttributes({
            "http.response.status_code": res.status,
            "http.response.body.size": res.body.byteLength,
          }),
      );
    },
  });
}

/**
 * `target` with the methods of `own` in place of its own; every other
 * property is read from `target` (methods bound to it, so private fields
 * work).
 */
function overlay<T extends object>(
  target: T,
  own: Record<string, unknown>,
): T {
  return new Proxy(target, {
    get(t, key) {
      if (typeof key === "string" && Object.hasOwn(own, key)) return own[key];
      const value = Reflect.get(t, key, t);
      return typeof value === "function" ? value.bind(t) : value;
    },
  });
}
