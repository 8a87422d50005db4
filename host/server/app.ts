/**
 * {@linkcode createApp}: the Hono application of the host — plugin routes in
 * a collision-checked table swapped on every plugin change, login and
 * sessions, the JSON API under `/api/v1`, the admin pages under `/admin`,
 * and `GET /healthz`.
 *
 * This module only wires the parts together: the host's paths and the
 * collision checks are in `host_paths.ts`, a plugin route's handler chain in
 * `plugin_http.ts`, the route table in `route_table.ts`, the API in
 * `api.ts` and the pages in `pages/`.
 *
 * @module
 */

import { Hono } from "hono";
import { errorText } from "../model/errors.ts";
import type { GKRegistration } from "../model/manifest.ts";
import { sanitizeHtml } from "../registries/sanitize.ts";
import { HOST_VERSION } from "../model/version.ts";
import { AdmissionGate, type AdmissionStats } from "./admission.ts";
import { createApi } from "./api.ts";
import { Authenticator } from "./auth/authenticator.ts";
import type { ServerContext } from "./context.ts";
import { isHostPath } from "./host_paths.ts";
import { checkRouteCollisions } from "./route_checks.ts";
import { ADMIN_CSS, ADMIN_JS } from "./html.ts";
import type { AppOptions } from "./options.ts";
import { mountPages } from "./pages/routes.ts";
import { readinessHandler } from "./readiness.ts";
import { metricsHandler } from "../telemetry/metrics_endpoint.ts";
import {
  hostErrorToHttp,
  overloadToHttp,
  pluginRouteHandlers,
  unavailableRouteHandlers,
} from "./plugin_http.ts";
import {
  buildRouteTable,
  type PluginRoute,
  type RouteTable,
} from "./route_table.ts";
import { SessionStore } from "./auth/sessions.ts";
import { MemoryTokenStore } from "./auth/tokens.ts";
import {
  type ConnectionInfo,
  HSTS_VALUE,
  isHttpsRequest,
} from "./transport.ts";
import {
  SHUTDOWN_RETRY_AFTER_SEC,
  unavailableResponse,
} from "./unavailable.ts";
import { BoundedCache } from "../model/bounded_cache.ts";

/**
 * Sets `nosniff` (unless the response has it) and, on HTTPS only,
 * `Strict-Transport-Security` (a browser ignores it on HTTP anyway, and a
 * plugin cannot switch it off: its own header is replaced). Throws on
 * immutable headers.
 */
function setSecurityHeaders(headers: Headers, https: boolean): void {
  if (!headers.has("x-content-type-options")) {
    headers.set("x-content-type-options", "nosniff");
  }
  if (https) headers.set("strict-transport-security", HSTS_VALUE);
  else if (headers.has("strict-transport-security")) {
    headers.delete("strict-transport-security");
  }
}

/** `res` with {@linkcode setSecurityHeaders}' headers (a copy if immutable). */
function withSecurityHeaders(res: Response, https: boolean): Response {
  try {
    setSecurityHeaders(res.headers, https);
    return res;
  } catch {
    // Immutable headers (a Response from fetch): copy it and set them.
    const copy = new Response(res.body, res);
    setSecurityHeaders(copy.headers, https);
    return copy;
  }
}

const SECURITY_HEADERS = { "x-content-type-options": "nosniff" };
const SECURITY_HEADERS_HTTPS = {
  ...SECURITY_HEADERS,
  "strict-transport-security": HSTS_VALUE,
};
/** The headers {@linkcode setSecurityHeaders} adds to a fresh response. */
function securityHeadersFor(https: boolean): Readonly<Record<string, string>> {
  return https ? SECURITY_HEADERS_HTTPS : SECURITY_HEADERS;
}

/**
 * The path of a request URL as Hono's router sees it (`getPath`: up to the
 * query), or `undefined` when it has `%` escapes (Hono decodes those; the
 * caller then leaves the request to the Hono chain).
 */
function plainPath(url: string): string | undefined {
  const start = url.indexOf("/", url.indexOf(":") + 4);
  if (start < 0) return undefined;
  let end = url.length;
  for (let i = start; i < url.length; i++) {
    const ch = url.charCodeAt(i);
    if (ch === 37) return undefined; // "%"
    if (ch === 63) { // "?"
      end = i;
      break;
    }
  }
  return url.slice(start, end);
}

/** What {@linkcode createApp} returns. */
export interface GoatKitApp {
  /**
   * The Hono app (`npm:hono`), for embedders that mount it:
   * `parent.mount("/", server.app.fetch)`.
   *
   * @ignore
   */
  readonly app: Hono;
  /**
   * Handles one request (same as `app.fetch`). `info` is what `Deno.serve`
   * passes its handler; its peer address decides whether a listed trusted
   * proxy's `X-Forwarded-Proto` is believed (`Deno.serve(opts, server.fetch)`
   * passes it on).
   */
  fetch(request: Request, info?: ConnectionInfo): Promise<Response>;
  /**
   * Wraps the server's outermost handler (`Deno.serve(opts,
   * server.front(handler))`, where `handler` ends in
   * {@linkcode GoatKitApp.fetch}): while the in-flight limit is reached, a
   * request for a plugin route is answered its `503 overloaded` at once,
   * before `handler` or any middleware runs (the same answer the app gives
   * it, for a fraction of the work). Every other request goes to `handler`.
   */
  front(
    handler: (request: Request, info: ConnectionInfo) => Promise<Response>,
  ): (request: Request, info: ConnectionInfo) => Response | Promise<Response>;
  /**
   * Rebuilds the plugin route table from the enabled plugins and swaps it in.
   * Called automatically on every Manager event; returns the new table.
   */
  rebuildRoutes(): RouteTable;
  /** The current route table (routes served and plugins refused). */
  routeTable(): RouteTable;
  /**
   * Starts draining before a shutdown: from now on every request that still
   * reaches the app (on a connection opened before the listener closed) is
   * answered `503` with `Connection: close`. Requests already in flight
   * finish normally. Cannot be undone.
   */
  drain(): void;
  /** Whether {@linkcode GoatKitApp.drain} was called. */
  readonly draining: boolean;
  /** The in-flight limit's counters (also in `GET /healthz`). */
  admission(): AdmissionStats;
  /**
   * Throws {@linkcode RouteCollisionError} if `manifest`'s routes collide
   * with the host's or another registered plugin's (call before registering).
   */
  checkRoutes(manifest: Pick<GKRegistration, "name" | "routes">): void;
  /** Stops following Manager events. */
  close(): void;
}

/**
 * Creates the host's HTTP application.
 *
 * Plugin routes come from enabled plugins' manifests; the table is rebuilt
 * and swapped on every Manager event (register, enable, disable, unregister,
 * replace), so a disabled or quarantined plugin's routes answer 503
 * (`plugin unavailable`, with `reason`) at once, and an unregistered one's
 * 404. A plugin whose routes collide is left out of the table and logged
 * (wire {@linkcode routeCollisionCheck} into the Manager to refuse it at
 * register).
 *
 * Overload: at most `maxInFlight` plugin requests run at once; one more is
 * answered `503 overloaded` with `Retry-After` at once, as is a call the
 * plugin's runtime refuses for overload. `GET /healthz` is never limited.
 * After {@linkcode GoatKitApp.drain} every request is answered 503 with
 * `Connection: close`.
 *
 * Host routes ({@linkcode HOST_ROUTE_PATTERNS}): `GET /healthz` (liveness),
 * `GET /readyz` (readiness, see `readiness.ts`); `/login`,
 * `/logout`; `/admin/*` pages; `/api/v1/*` JSON API; `/static/*`.
 *
 * @example
 * ```ts ignore
 * import { Manager } from "../manager.ts";
 * import { createApp, MemoryTokenStore } from "./mod.ts";
 * const manager = new Manager();
 * const tokens = new MemoryTokenStore();
 * const { token } = await tokens.create({ name: "admin", admin: true });
 * const server = createApp({ manager, tokens });
 * Deno.serve({ port: 8080 }, server.front(server.fetch));
 * console.log(`log in at http://localhost:8080/login with ${token}`);
 * ```
 */
export function createApp(options: AppOptions): GoatKitApp {
  const manager = options.manager;
  const tokens = options.tokens ?? new MemoryTokenStore();
  const sessions = options.sessions ?? new SessionStore();
  const logs = options.logs ?? manager.logs;
  const sanitize = options.sanitize ?? sanitizeHtml;
  const auth = new Authenticator(tokens, sessions);
  const started = Date.now();
  const gate = new AdmissionGate(
    options.maxInFlight !== undefined
      ? { maxInFlight: options.maxInFlight }
      : {},
  );
  let draining = false;

  let table: RouteTable;
  // Routes of registered plugins that are disabled or quarantined: they
  // answer 503 with the reason (not 404, which means a wrong URL).
  let unavailable: RouteTable;
  const ctx: ServerContext = {
    manager,
    options,
    auth,
    tokens,
    sessions,
    logs,
    sanitize,
    table: () => table,
    callTimeoutMs: options.callTimeoutMs,
    admission: gate,
    https: (c) =>
      isHttpsRequest(
        c.req.raw,
        c.env as ConnectionInfo | undefined,
        options.trustProxy,
      ),
  };

  const routeHandlers = pluginRouteHandlers({
    manager,
    auth,
    logs,
    sanitize,
    maxBodyBytes: options.maxBodyBytes,
    callTimeoutMs: options.callTimeoutMs,
  });
  const offRouteHandlers = unavailableRouteHandlers({ manager, auth });
  // With metrics, each route's chain starts with its request counter.
  const metrics = options.metrics;
  const measured =
    (inner: typeof routeHandlers): typeof routeHandlers => (route) => [
      metrics!.routeMiddleware(route),
      ...inner(route),
    ];
  const handlers = metrics ? measured(routeHandlers) : routeHandlers;
  const offHandlers = metrics ? measured(offRouteHandlers) : offRouteHandlers;

  function rebuildRoutes(): RouteTable {
    const lazy = (options.discovered?.() ?? []).filter((m) =>
      !manager.manifest(m.name)
    )
      .flatMap((m) => (m.routes ?? []).map((r) => ({ ...r, plugin: m.name })));
    const next = buildRouteTable([...manager.routes(), ...lazy], handlers);
    const before = new Set((table?.refused ?? []).map((r) => r.error.message));
    for (const r of next.refused) {
      if (!before.has(r.error.message)) {
        logs.log(r.plugin, "error", `routes not mounted: ${r.error.message}`);
      }
    }
    const off = manager.list().filter((m) => !manager.isEnabled(m.name))
      .flatMap((m) => (m.routes ?? []).map((r) => ({ ...r, plugin: m.name })));
    unavailable = buildRouteTable(off, offHandlers);
    table = next; // one assignment: in-flight requests keep their snapshot
    return next;
  }
  rebuildRoutes();
  const unsubscribe = manager.subscribe(() => {
    try {
      rebuildRoutes();
    } catch (e) {
      logs.log("", "error", `route table rebuild failed: ${errorText(e)}`);
    }
  });

  /** A request for a plugin route: the table snapshot and the route. */
  interface RouteHit {
    table: RouteTable;
    route: PluginRoute;
  }
  // The plugin-route path in front of the Hono app (the same steps as the
  // securityHeaders and pluginRoutes middleware below, without the outer
  // app's routing, context and middleware chain): the route table whose
  // route `request` is for, or `undefined` when the app's chain must answer
  // it (host paths, no plugin route, HEAD, a path with `%` escapes, while
  // draining).
  function pluginTable(request: Request): RouteHit | undefined {
    if (draining) return undefined;
    const method = request.method;
    if (method === "HEAD") return undefined;
    const path = plainPath(request.url);
    if (path === undefined || isHostPath(path)) return undefined;
    const t = table; // one snapshot per request
    const route = t.routeFor(method, path);
    return route ? { table: t, route } : undefined;
  }
  const https = (request: Request, info: ConnectionInfo | undefined) =>
    isHttpsRequest(request, info, options.trustProxy);
  // While the in-flight limit is reached: a plugin route's 503 at once.
  function shedEarly(
    request: Request,
    info: ConnectionInfo | undefined,
  ): Response | undefined {
    if (!gate.full || pluginTable(request) === undefined) return undefined;
    return gate.refuse(securityHeadersFor(https(request, info)));
  }
  // A call the route's plugin would refuse at once (its queue is full, or
  // the work queued ahead would outlast the call's queue-time budget): the
  // 503 the call would get, without building it. In a burst the same
  // refusal repeats: its answer is built once and cloned. Only on routes
  // without `auth`/`admin`: elsewhere the route's own check answers first,
  // so a caller who may not use the route learns nothing of its plugin.
  const refusalAnswers = new BoundedCache<string, Response>(64);
  function refusedByPlugin(route: PluginRoute): Response | undefined {
    if (route.middleware?.length) return undefined;
    const refusal = manager.get(route.plugin)?.refuseNow?.({
      function: route.handler,
      timeoutMs: options.callTimeoutMs ?? manager.routeTimeoutMs(route),
    });
    if (!refusal) return undefined;
    metrics?.routeRefused(route, 503, "overload");
    const key =
      `${refusal.plugin}\n${refusal.retryAfterSeconds}\n${refusal.message}`;
    return refusalAnswers.get(key, () => {
      const mapped = overloadToHttp(refusal);
      return Response.json(mapped.body, {
        status: mapped.status,
        ...(mapped.headers ? { headers: mapped.headers } : {}),
      });
    }).clone();
  }
  async function servePluginRoute(
    hit: RouteHit,
    request: Request,
    info: ConnectionInfo | undefined,
  ): Promise<Response> {
    const secure = https(request, info);
    // The server-wide limit: beyond it, 503 at once (plugin untouched).
    if (!gate.tryEnter()) return gate.overloaded(securityHeadersFor(secure));
    let res: Response;
    try {
      res = refusedByPlugin(hit.route) ?? await hit.table.app.fetch(request);
    } catch (e) {
      res = hostErrorResponse(e, request);
    } finally {
      gate.leave();
    }
    return withSecurityHeaders(res, secure);
  }
  function hostErrorResponse(e: unknown, request: Request): Response {
    // The database (grants, plugin state) is down: 503, retry later.
    const mapped = hostErrorToHttp(e, "");
    if (mapped.status === 503) {
      return Response.json(mapped.body, {
        status: 503,
        headers: mapped.headers,
      });
    }
    logs.log(
      "",
      "error",
      `${request.method} ${
        plainPath(request.url) ?? new URL(request.url).pathname
      }: ${errorText(e)}`,
    );
    return Response.json({ error: "internal server error" }, { status: 500 });
  }

  const app = new Hono();
  app.use("*", async function securityHeaders(c, next) {
    await next();
    const https = ctx.https(c);
    try {
      setSecurityHeaders(c.res.headers, https);
    } catch {
      // Immutable headers (a Response from fetch): copy it and set them
      // (Hono's `c.res` setter copies the response and its headers again).
      c.res = new Response(c.res.body, c.res);
      setSecurityHeaders(c.res.headers, https);
    }
  });
  app.use("*", async function pluginRoutes(c, next) {
    if (draining) {
      // A request on a connection opened before the listener closed.
      return unavailableResponse({
        error: "shutting down",
        message: "Cannot serve the request: the host is shutting down",
        retry_after_sec: SHUTDOWN_RETRY_AFTER_SEC,
      }, { close: true });
    }
    if (isHostPath(c.req.path)) return await next();
    const t = table; // one snapshot per request
    if (t.matches(c.req.method, c.req.path)) {
      // The server-wide limit: beyond it, 503 at once (plugin untouched).
      if (!gate.tryEnter()) return gate.overloaded();
      try {
        return await t.app.fetch(c.req.raw);
      } finally {
        gate.leave();
      }
    }
    const u = unavailable;
    if (u.matches(c.req.method, c.req.path)) {
      return await u.app.fetch(c.req.raw);
    }
    return await next();
  });

  app.get("/healthz", (c) => {
    const registered = manager.list();
    const quarantined = registered.filter((m) =>
      manager.status(m.name)?.reason !== undefined
    ).length;
    return c.json({
      status: "ok",
      version: HOST_VERSION,
      uptime_sec: Math.round((Date.now() - started) / 1000),
      plugins: {
        registered: registered.length,
        enabled: registered.filter((m) => manager.isEnabled(m.name)).length,
        quarantined,
        discovered: manager.discovered().length,
      },
      routes: table.routes.length,
      requests: gate.stats(),
      ...(options.health?.() ?? {}),
    });
  });

  // Readiness (plugins loaded, services reachable): see readiness.ts.
  app.get("/readyz", readinessHandler(ctx));

  // Prometheus metrics: admins or the scrape token (404 when switched off).
  if (metrics) {
    app.get(
      "/metrics",
      metricsHandler({
        metrics,
        ...(options.metricsToken ? { token: options.metricsToken } : {}),
        principal: (c) => auth.principal(c),
      }),
    );
  }

  const staticHeaders = (type: string) => ({
    "content-type": type,
    "cache-control": "no-cache",
    "x-content-type-options": "nosniff",
  });
  app.get(
    "/static/admin.css",
    () =>
      new Response(ADMIN_CSS, {
        headers: staticHeaders("text/css; charset=utf-8"),
      }),
  );
  app.get("/static/admin.js", () =>
    new Response(ADMIN_JS, {
      headers: staticHeaders("text/javascript; charset=utf-8"),
    }));

  app.route("/api/v1", createApi(ctx));
  mountPages(app, ctx);
  app.get("/", (c) => c.redirect("/admin/", 302));

  app.notFound((c) => {
    const accept = c.req.header("accept") ?? "";
    if (accept.includes("text/html") && !c.req.path.startsWith("/api/")) {
      return c.html(
        `<!doctype html><meta charset="utf-8"><title>Not found</title><p>Not found. <a href="/admin/">Admin</a></p>`,
        404,
      );
    }
    return c.json({ error: "not found" }, 404);
  });
  app.onError((e, c) => {
    // The database (grants, plugin state) is down: 503, retry later (the
    // same answers as hostErrorResponse).
    const mapped = hostErrorToHttp(e, "");
    if (mapped.status === 503) {
      return c.json(mapped.body, 503, mapped.headers);
    }
    logs.log("", "error", `${c.req.method} ${c.req.path}: ${errorText(e)}`);
    return c.json({ error: "internal server error" }, 500);
  });

  return {
    app,
    fetch: (request: Request, info?: ConnectionInfo) => {
      const hit = pluginTable(request);
      return hit
        ? servePluginRoute(hit, request, info)
        : Promise.resolve(app.fetch(request, info));
    },
    front: (handler) => (request, info) =>
      shedEarly(request, info) ?? handler(request, info),
    rebuildRoutes,
    routeTable: () => table,
    drain: () => {
      draining = true;
    },
    get draining() {
      return draining;
    },
    admission: () => gate.stats(),
    checkRoutes: (manifest) => checkRouteCollisions(manager, manifest),
    close: () => {
      unsubscribe();
    },
  };
}
