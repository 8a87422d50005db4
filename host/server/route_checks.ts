/**
 * The manifest checks that keep plugins off what the host keeps for itself
 * (`host_paths.ts`): a plugin named like a path of the JSON API, or with a
 * route that collides with the host's or another registered plugin's, is
 * refused at `register` with a clear error.
 *
 * @example
 * ```ts
 * import { Manager } from "../manager.ts";
 * import { reservedNameCheck, routeCollisionCheck } from "./route_checks.ts";
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
import { RESERVED_PLUGIN_NAMES } from "./host_paths.ts";
import {
  findRouteConflicts,
  type PluginRoute,
  RouteCollisionError,
} from "./route_table.ts";

/**
 * A manifest check for `ManagerOptions.manifestChecks` refusing plugin names
 * the JSON API uses as paths (`/api/v1/plugins/logs` is the log API, so a
 * plugin called `logs` could not be addressed).
 *
 * @example
 * ```ts
 * import { reservedNameCheck } from "./route_checks.ts";
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
 * import { routeCollisionCheck } from "./route_checks.ts";
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
 * import { checkRouteCollisions } from "./route_checks.ts";
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
