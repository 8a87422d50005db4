/**
 * What the host keeps for itself: its own route patterns
 * ({@linkcode HOST_ROUTE_PATTERNS}, the one list both the request dispatch
 * and the collision checks of `route_checks.ts` read) and the plugin names
 * its JSON API uses as paths ({@linkcode RESERVED_PLUGIN_NAMES}).
 *
 * @module
 */

/**
 * Patterns the host itself serves (Hono syntax). A plugin route that could
 * match any path these match is refused, whatever its method, and a request
 * path they claim ({@linkcode isHostPath}) never reaches the plugin routes.
 */
export const HOST_ROUTE_PATTERNS: readonly string[] = [
  "/healthz",
  "/readyz",
  "/metrics",
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
