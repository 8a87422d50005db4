/**
 * What the host keeps for itself, and the checks that keep plugins off it:
 * the host's own route patterns ({@linkcode HOST_ROUTE_PATTERNS}, the one
 * list both the request dispatch and the collision checks read), the plugin
 * names its JSON API uses as paths ({@linkcode RESERVED_PLUGIN_NAMES}), and
 * the manifest checks that refuse a plugin claiming either, or a route
 * another registered plugin already has.
 *
 * @example
 * ```ts
 * import { Manager } from "../manager.ts";
 * import { reservedNameCheck, routeCollisionCheck } from "./host_paths.ts";
 * let manager: Manager | undefined = undefined;
 * manager = new Manager({
 *   manifestChecks: [routeCollisionCheck(() => manager), reservedNameCheck],
 * });
 * ```
 *
 * @module
 */

import type { ManifestIssue } from "../model/errors.ts";
import type { Manager } from "../manager.ts";
import type { GKRegistration } from "../model/manifest.ts";
// route_table.ts reads HOST_ROUTE_PATTERNS back as its default host patterns:
// a cycle that is safe because neither module uses the other's bindings at
// load time, only inside functions.
import {
  findRouteConflicts,
  type PluginRoute,
  RouteCollisionError,
} from "./route_table.ts";

/**
 * Patterns the host itself serves (Hono syntax). A plugin route that could
 * match any path these match is refused, whatever its method, and a request
 * path they claim ({@linkcode isHostPath}) never reaches the plugin routes.
 */
export const HOST_ROUTE_PATTERNS: readonly string[] = [
  "/healthz",
  "/login",
  "/logout",
  "/admin/*",
  "/api/v1/*",
  "/static/*",
];

// `/x/*` claims `/x` and everything under `/x/`; any other pattern claims
// exactly its path.
const HOST_EXACT = new Set(
  HOST_ROUTE_PATTERNS.map((p) => p.endsWith("/*") ? p.slice(0, -2) : p),
);
const HOST_PREFIXES = HOST_ROUTE_PATTERNS.filter((p) => p.endsWith("/*"))
  .map((p) => p.slice(0, -1));

/**
 * Whether a request path belongs to the host ({@linkcode HOST_ROUTE_PATTERNS}:
 * `/x/*` claims `/x` and every path under `/x/`, any other pattern exactly its
 * own path), so the plugin route table need not be asked.
 *
 * @example
 * ```ts
 * import { isHostPath } from "./host_paths.ts";
 * isHostPath("/api/v1/plugins"); // true
 * isHostPath("/admin"); // true
 * isHostPath("/hello"); // false
 * ```
 */
export function isHostPath(path: string): boolean {
  return HOST_EXACT.has(path) || HOST_PREFIXES.some((p) => path.startsWith(p));
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
 * import { reservedNameCheck } from "./host_paths.ts";
 * reservedNameCheck({ name: "logs", version: "1.0.0" })[0]?.path; // "name"
 * ```
 */
export function reservedNameCheck(m: GKRegistration): ManifestIssue[] {
  return RESERVED_PLUGIN_NAMES.includes(m.name)
    ? [{ path: "name", message: `"${m.name}" is reserved by the host's API` }]
    : [];
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
 * import { routeCollisionCheck } from "./host_paths.ts";
 * let manager: Manager | undefined = undefined;
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

/**
 * Throws {@linkcode RouteCollisionError} if `manifest`'s routes collide with
 * the host's or with those of another plugin registered with `manager`.
 *
 * @example
 * ```ts
 * import { Manager } from "../manager.ts";
 * import { checkRouteCollisions } from "./host_paths.ts";
 * const manager = new Manager();
 * try {
 *   checkRouteCollisions(manager, {
 *     name: "x",
 *     routes: [{ method: "GET", path: "/admin/x", handler: "h" }],
 *   });
 * } catch (e) {
 *   console.log((e as Error).name); // RouteCollisionError
 * }
 * ```
 */
export function checkRouteCollisions(
  manager: Manager,
  manifest: Pick<GKRegistration, "name" | "routes">,
): void {
  const conflicts = findRouteConflicts(manifest, registeredRoutes(manager));
  if (conflicts.length > 0) {
    throw new RouteCollisionError(manifest.name, conflicts);
  }
}
