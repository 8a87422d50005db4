/**
 * The plugin route table: collision checks between route patterns, and the
 * immutable Hono app built from the enabled plugins' routes (rebuilt and
 * swapped in whole on every plugin change; see style.md §5). The host's own
 * patterns, checked against by default, are in `host_paths.ts`.
 *
 * @module
 */

import { Hono } from "hono";
import type { MiddlewareHandler } from "hono";
import { RegExpRouter } from "hono/router/reg-exp-router";
import { SmartRouter } from "hono/router/smart-router";
import { TrieRouter } from "hono/router/trie-router";
import type { GKRegistration, RouteSpec } from "../model/manifest.ts";
import { HOST_ROUTE_PATTERNS } from "./host_paths.ts";
import { BoundedCache } from "../model/bounded_cache.ts";

/** A plugin route: the manifest's route and the plugin it belongs to. */
export interface PluginRoute extends RouteSpec {
  /** The plugin that declared the route. */
  plugin: string;
}

/** One conflict found by {@linkcode findRouteConflicts}. */
export interface RouteConflict {
  /** The route that was refused, as `METHOD path`. */
  route: string;
  /** What it collides with: `host route /admin/*` or `plugin "x" route GET /a`. */
  with: string;
}

/**
 * A plugin's routes collide with the host's or another plugin's.
 *
 * @example
 * ```ts
 * import { RouteCollisionError } from "./route_table.ts";
 * const e = new RouteCollisionError("hello", [{ route: "GET /admin/x", with: "host route /admin/*" }]);
 * console.log(e.message);
 * // Cannot register routes of plugin "hello": GET /admin/x collides with host route /admin/*
 * ```
 */
export class RouteCollisionError extends Error {
  /** The plugin whose routes were refused. */
  readonly plugin: string;
  /** Every conflict. */
  readonly conflicts: readonly RouteConflict[];

  /** Creates the error. */
  constructor(plugin: string, conflicts: readonly RouteConflict[]) {
    super(
      `Cannot register routes of plugin "${plugin}": ${
        conflicts.map((c) => `${c.route} collides with ${c.with}`).join("; ")
      }`,
    );
    this.name = "RouteCollisionError";
    this.plugin = plugin;
    this.conflicts = conflicts;
  }
}

type Segment =
  | { kind: "lit"; value: string }
  | { kind: "param"; optional: boolean }
  | { kind: "star" };

const parsed = new BoundedCache<string, Segment[]>(10_000);

function parsePattern(path: string): Segment[] {
  return parsed.get(path, parseSegments);
}

function parseSegments(path: string): Segment[] {
  return path.split("/").filter((s) => s.length > 0).map((s): Segment => {
    if (s === "*") return { kind: "star" };
    if (s.startsWith(":")) return { kind: "param", optional: s.endsWith("?") };
    if (s.includes("*")) return { kind: "star" }; // partial wildcards: be conservative
    return { kind: "lit", value: s };
  });
}

function overlapAt(a: Segment[], b: Segment[], i: number, j: number): boolean {
  const x = a[i];
  const y = b[j];
  if (x?.kind === "star") {
    return overlapAt(a, b, i + 1, j) ||
      (j < b.length && overlapAt(a, b, i, j + 1));
  }
  if (y?.kind === "star") {
    return overlapAt(a, b, i, j + 1) ||
      (i < a.length && overlapAt(a, b, i + 1, j));
  }
  if (x?.kind === "param" && x.optional && overlapAt(a, b, i + 1, j)) {
    return true;
  }
  if (y?.kind === "param" && y.optional && overlapAt(a, b, i, j + 1)) {
    return true;
  }
  if (!x || !y) return !x && !y;
  const compatible = x.kind === "param" || y.kind === "param" ||
    (x.kind === "lit" && y.kind === "lit" && x.value === y.value);
  return compatible && overlapAt(a, b, i + 1, j + 1);
}

/**
 * Whether some request path could match both route patterns (Hono syntax:
 * `:param`, `:param?`, `*`). Conservative: regex constraints on parameters
 * are ignored, a wildcard matches any number of segments, and a trailing
 * slash does not make two paths different.
 *
 * @example
 * ```ts
 * import { patternsOverlap } from "./route_table.ts";
 * patternsOverlap("/x/:id", "/x/new"); // true
 * patternsOverlap("/x/:id", "/y/1"); // false
 * patternsOverlap("/admin/*", "/admin"); // true
 * ```
 */
export function patternsOverlap(a: string, b: string): boolean {
  const x = parsePattern(a);
  const y = parsePattern(b);
  // Fast path: two different literal first segments never overlap.
  if (
    x[0]?.kind === "lit" && y[0]?.kind === "lit" && x[0].value !== y[0].value
  ) return false;
  return overlapAt(x, y, 0, 0);
}

/**
 * Lists the conflicts of `manifest`'s routes with the host's routes and with
 * `existing` routes of other plugins (routes of a plugin with the same name
 * are ignored: that is an upgrade or reload of the same plugin).
 * `hostPatterns` defaults to {@linkcode HOST_ROUTE_PATTERNS}.
 *
 * @example
 * ```ts
 * import { findRouteConflicts } from "./route_table.ts";
 * const conflicts = findRouteConflicts(
 *   { name: "b", routes: [{ method: "GET", path: "/a/:x", handler: "h" }] },
 *   [{ plugin: "a", method: "GET", path: "/a/1", handler: "h" }],
 * );
 * console.log(conflicts[0]?.with); // plugin "a" route GET /a/1
 * ```
 */
export function findRouteConflicts(
  manifest: Pick<GKRegistration, "name" | "routes">,
  existing: readonly PluginRoute[],
  hostPatterns: readonly string[] = HOST_ROUTE_PATTERNS,
): RouteConflict[] {
  const conflicts: RouteConflict[] = [];
  for (const r of manifest.routes ?? []) {
    const route = `${r.method} ${r.path}`;
    for (const h of hostPatterns) {
      if (patternsOverlap(r.path, h)) {
        conflicts.push({ route, with: `host route ${h}` });
      }
    }
    for (const e of existing) {
      if (e.plugin === manifest.name || e.method !== r.method) continue;
      if (patternsOverlap(r.path, e.path)) {
        conflicts.push({
          route,
          with: `plugin "${e.plugin}" route ${e.method} ${e.path}`,
        });
      }
    }
  }
  return conflicts;
}

/** A plugin left out of a route table, and why. */
export interface RefusedPlugin {
  /** The plugin. */
  plugin: string;
  /** The collision that kept its routes out. */
  error: RouteCollisionError;
}

/** An immutable route table and what went into it. */
export interface RouteTable {
  /**
   * A Hono app holding only plugin routes; never mutated after build.
   *
   * @ignore
   */
  readonly app: Hono;
  /** The routes in the table, in the order they were added. */
  readonly routes: readonly PluginRoute[];
  /** Plugins whose routes were refused because they collide. */
  readonly refused: readonly RefusedPlugin[];
  /** Whether some plugin route matches `method path` (HEAD counts as GET). */
  matches(method: string, path: string): boolean;
  /**
   * The route that serves `method path` (HEAD counts as GET), or
   * `undefined` when no plugin route matches.
   */
  routeFor(method: string, path: string): PluginRoute | undefined;
}

/**
 * Builds a route table from plugin routes, plugin by plugin in the given
 * order. A plugin any of whose routes collides with the host or with a route
 * already in the table is left out entirely (listed in `refused`); building
 * never throws for a collision.
 *
 * `handlers(route)` returns the middleware chain and the final handler of
 * one route; `hostPatterns` defaults to {@linkcode HOST_ROUTE_PATTERNS}.
 *
 * @example
 * ```ts
 * import { buildRouteTable } from "./route_table.ts";
 * const table = buildRouteTable(
 *   [{ plugin: "hello", method: "GET", path: "/hello", handler: "hi" }],
 *   () => [async (c) => c.text("hi")],
 * );
 * console.log(table.matches("GET", "/hello")); // true
 * console.log(table.routeFor("GET", "/hello")?.plugin); // "hello"
 * ```
 */
export function buildRouteTable(
  routes: readonly PluginRoute[],
  handlers: (route: PluginRoute) => MiddlewareHandler[],
  hostPatterns: readonly string[] = HOST_ROUTE_PATTERNS,
): RouteTable {
  const byPlugin = new Map<string, PluginRoute[]>();
  for (const r of routes) {
    const list = byPlugin.get(r.plugin) ?? [];
    list.push(r);
    byPlugin.set(r.plugin, list);
  }
  const accepted: PluginRoute[] = [];
  const refused: RefusedPlugin[] = [];
  for (const [plugin, list] of byPlugin) {
    const conflicts = findRouteConflicts(
      { name: plugin, routes: list },
      accepted,
      hostPatterns,
    );
    if (conflicts.length > 0) {
      refused.push({
        plugin,
        error: new RouteCollisionError(plugin, conflicts),
      });
    } else {
      accepted.push(...list);
    }
  }
  const app = new Hono();
  // Which route a request is for, matched as the app matches it (Hono's
  // default router), without running the app.
  const owners = new SmartRouter<PluginRoute>({
    routers: [new RegExpRouter(), new TrieRouter()],
  });
  for (const r of accepted) {
    const chain = handlers(r);
    app.on(r.method, r.path, ...(chain as [MiddlewareHandler]));
    owners.add(r.method, r.path, r);
  }
  // Compile the matchers now, not on a user's request.
  app.router.match("GET", "/");
  owners.match("GET", "/");
  const routeFor = (method: string, path: string): PluginRoute | undefined =>
    owners.match(method === "HEAD" ? "GET" : method, path)[0][0]?.[0];
  return {
    app,
    routes: accepted,
    refused,
    matches: (method, path) => routeFor(method, path) !== undefined,
    routeFor,
  };
}
