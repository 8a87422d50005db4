/**
 * {@linkcode createApp}: the Hono application of the host — plugin routes in
 * a collision-checked table swapped on every plugin change, login and
 * sessions, the JSON API under `/api/v1`, the admin pages under `/admin`,
 * and `GET /healthz`.
 *
 * @module
 */

import { Hono } from "hono";
import type { MiddlewareHandler } from "hono";
import { errorText, PluginDisabledError } from "../model/errors.ts";
import type { ManifestIssue } from "../model/errors.ts";
import type { Manager } from "../manager.ts";
import type { GKRegistration } from "../model/manifest.ts";
import { encodeJson } from "../model/plugin.ts";
import { sanitizeHtml } from "../registries/sanitize.ts";
import { HOST_VERSION } from "../model/version.ts";
import { createApi } from "./api.ts";
import { Authenticator, requireAuth } from "./auth/authenticator.ts";
import type { ServerContext } from "./context.ts";
import { ADMIN_CSS, ADMIN_JS } from "./html.ts";
import type { AppOptions } from "./options.ts";
import { mountPages } from "./pages/routes.ts";
import {
  buildRouteArgs,
  errorToHttp,
  preferredLanguage,
  readBody,
  resultToResponse,
} from "./plugin_http.ts";
import {
  buildRouteTable,
  findRouteConflicts,
  type PluginRoute,
  RouteCollisionError,
  type RouteTable,
} from "./route_table.ts";
import { SessionStore } from "./auth/sessions.ts";
import { MemoryTokenStore } from "./auth/tokens.ts";

/** What {@linkcode createApp} returns. */
export interface GoatKitApp {
  /**
   * The Hono app (`npm:hono`), for embedders that mount it:
   * `parent.mount("/", server.app.fetch)`.
   *
   * @ignore
   */
  readonly app: Hono;
  /** Handles one request (same as `app.fetch`). */
  fetch(request: Request): Promise<Response>;
  /**
   * Rebuilds the plugin route table from the enabled plugins and swaps it in.
   * Called automatically on every Manager event; returns the new table.
   */
  rebuildRoutes(): RouteTable;
  /** The current route table (routes served and plugins refused). */
  routeTable(): RouteTable;
  /**
   * Throws {@linkcode RouteCollisionError} if `manifest`'s routes collide
   * with the host's or another registered plugin's (call before registering).
   */
  checkRoutes(manifest: Pick<GKRegistration, "name" | "routes">): void;
  /** Stops following Manager events. */
  close(): void;
}

const HOST_PREFIXES = ["/admin/", "/api/v1/", "/static/"];
const HOST_EXACT = new Set([
  "/healthz",
  "/login",
  "/logout",
  "/admin",
  "/api/v1",
]);

function isHostPath(path: string): boolean {
  return HOST_EXACT.has(path) || HOST_PREFIXES.some((p) => path.startsWith(p));
}

/** Every route of every registered plugin (enabled or not), for collision checks. */
function registeredRoutes(manager: Manager): PluginRoute[] {
  return manager.list().flatMap((m) =>
    (m.routes ?? []).map((r) => ({ ...r, plugin: m.name }))
  );
}

/**
 * A manifest check for `ManagerOptions.manifestChecks` that refuses a
 * plugin whose routes collide with the host's or another registered
 * plugin's, so a collision fails `register` with a clear error.
 *
 * @example
 * ```ts
 * import { Manager } from "../manager.ts";
 * import { routeCollisionCheck } from "./app.ts";
 * let manager: Manager;
 * manager = new Manager({ manifestChecks: [routeCollisionCheck(() => manager)] });
 * ```
 */
export function routeCollisionCheck(
  getManager: () => Manager | undefined,
): (m: GKRegistration) => ManifestIssue[] {
  return (m) => {
    const manager = getManager();
    const existing = manager ? registeredRoutes(manager) : [];
    return findRouteConflicts(m, existing).map((c) => {
      const i = (m.routes ?? []).findIndex((r) =>
        `${r.method} ${r.path}` === c.route
      );
      return {
        path: `routes[${i}].path`,
        message: `${c.route} collides with ${c.with}`,
      };
    });
  };
}

/** Plugin names that `/api/v1/plugins/<name>` paths of the API itself use. */
export const RESERVED_PLUGIN_NAMES: readonly string[] = [
  "widgets",
  "logs",
  "upload",
  "menu",
];

/**
 * A manifest check for `ManagerOptions.manifestChecks` refusing plugin names
 * the JSON API uses as paths (`/api/v1/plugins/logs` is the log API, so a
 * plugin called `logs` could not be addressed).
 *
 * @example
 * ```ts
 * import { reservedNameCheck } from "./app.ts";
 * reservedNameCheck({ name: "logs", version: "1.0.0" })[0]?.path; // "name"
 * ```
 */
export function reservedNameCheck(m: GKRegistration): ManifestIssue[] {
  return RESERVED_PLUGIN_NAMES.includes(m.name)
    ? [{ path: "name", message: `"${m.name}" is reserved by the host's API` }]
    : [];
}

/**
 * Creates the host's HTTP application.
 *
 * Plugin routes come from enabled plugins' manifests; the table is rebuilt
 * and swapped on every Manager event (register, enable, disable, unregister,
 * replace), so a disabled plugin's routes answer 404 at once. A plugin whose
 * routes collide is left out of the table and logged (wire
 * {@linkcode routeCollisionCheck} into the Manager to refuse it at register).
 *
 * Host routes: `GET /healthz`; `/login`, `/logout`; `/admin/*` pages;
 * `/api/v1/*` JSON API; `/static/*`.
 *
 * @example
 * ```ts ignore
 * import { Manager } from "../manager.ts";
 * import { createApp, MemoryTokenStore } from "./mod.ts";
 * const manager = new Manager();
 * const tokens = new MemoryTokenStore();
 * const { token } = await tokens.create({ name: "admin", admin: true });
 * const server = createApp({ manager, tokens });
 * Deno.serve({ port: 8080 }, server.fetch);
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
  const maxBody = options.maxBodyBytes ?? 1024 * 1024;
  const started = Date.now();

  let table: RouteTable;
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
  };

  const authMw = requireAuth(auth);
  const adminMw = requireAuth(auth, { admin: true });

  function handlersFor(route: PluginRoute): MiddlewareHandler[] {
    const chain: MiddlewareHandler[] = [];
    const mw = route.middleware ?? [];
    if (mw.includes("admin")) chain.push(adminMw);
    else if (mw.includes("auth")) chain.push(authMw);
    chain.push(async function pluginRoute(c) {
      try {
        const body = c.req.method === "GET" || c.req.method === "HEAD"
          ? null
          : await readBody(c.req.raw, maxBody);
        const args = buildRouteArgs(
          c.req.method,
          new URL(c.req.url),
          c.req.param(),
          body,
        );
        const language = preferredLanguage(c.req.header("accept-language"));
        const result = await manager.call(
          route.plugin,
          route.handler,
          encodeJson(args),
          {
            ...(language ? { language } : {}),
            ...(options.callTimeoutMs
              ? { timeoutMs: options.callTimeoutMs }
              : {}),
          },
        );
        return resultToResponse(
          result,
          route.plugin,
          sanitize,
          manager.errorCodes,
        );
      } catch (e) {
        // A lazily mounted route whose plugin turns out disabled: not there.
        if (e instanceof PluginDisabledError) {
          return c.json({ error: "not found" }, 404);
        }
        const mapped = errorToHttp(e, route.plugin, manager.errorCodes);
        if (mapped.status >= 500) {
          logs.log(
            route.plugin,
            "error",
            `route ${route.method} ${route.path}: ${errorText(e)}`,
          );
        }
        return c.json(mapped.body, mapped.status as 500);
      }
    });
    return chain;
  }

  function rebuildRoutes(): RouteTable {
    const lazy = (options.discovered?.() ?? []).filter((m) =>
      !manager.manifest(m.name)
    )
      .flatMap((m) => (m.routes ?? []).map((r) => ({ ...r, plugin: m.name })));
    const next = buildRouteTable([...manager.routes(), ...lazy], handlersFor);
    const before = new Set((table?.refused ?? []).map((r) => r.error.message));
    for (const r of next.refused) {
      if (!before.has(r.error.message)) {
        logs.log(r.plugin, "error", `routes not mounted: ${r.error.message}`);
      }
    }
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

  const app = new Hono();
  app.use("*", async function securityHeaders(c, next) {
    await next();
    try {
      if (!c.res.headers.has("x-content-type-options")) {
        c.res.headers.set("x-content-type-options", "nosniff");
      }
    } catch { /* immutable headers: leave them */ }
  });
  app.use("*", async function pluginRoutes(c, next) {
    if (isHostPath(c.req.path)) return await next();
    const t = table; // one snapshot per request
    if (!t.matches(c.req.method, c.req.path)) return await next();
    return await t.app.fetch(c.req.raw);
  });

  app.get("/healthz", (c) => {
    const registered = manager.list();
    return c.json({
      status: "ok",
      version: HOST_VERSION,
      uptime_sec: Math.round((Date.now() - started) / 1000),
      plugins: {
        registered: registered.length,
        enabled: registered.filter((m) => manager.isEnabled(m.name)).length,
        discovered: manager.discovered().length,
      },
      routes: table.routes.length,
      ...(options.health?.() ?? {}),
    });
  });

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
    logs.log("", "error", `${c.req.method} ${c.req.path}: ${errorText(e)}`);
    return c.json({ error: "internal server error" }, 500);
  });

  return {
    app,
    fetch: (request: Request) => Promise.resolve(app.fetch(request)),
    rebuildRoutes,
    routeTable: () => table,
    checkRoutes(manifest) {
      const conflicts = findRouteConflicts(manifest, registeredRoutes(manager));
      if (conflicts.length > 0) {
        throw new RouteCollisionError(manifest.name, conflicts);
      }
    },
    close: () => {
      unsubscribe();
    },
  };
}
