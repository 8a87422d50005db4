/**
 * The host's HTTP server: {@linkcode createApp} builds a Hono application
 * with plugin routes (a collision-checked table swapped on every plugin
 * change), token and session auth with CSRF protection, the JSON API under
 * `/api/v1`, server-rendered admin pages under `/admin`, and `GET /healthz`.
 *
 * @example
 * ```ts ignore
 * import { Manager } from "../manager.ts";
 * import { createApp, FileTokenStore } from "./mod.ts";
 * const manager = new Manager();
 * const server = createApp({ manager, tokens: new FileTokenStore("./data/tokens.json") });
 * Deno.serve({ port: 8080 }, server.fetch);
 * ```
 *
 * @module
 */
export { createApp, type GoatKitApp } from "./app.ts";
export {
  HOST_ROUTE_PATTERNS,
  isHostPath,
  RESERVED_PLUGIN_NAMES,
} from "./host_paths.ts";
export {
  checkRouteCollisions,
  reservedNameCheck,
  routeCollisionCheck,
} from "./route_checks.ts";
export type {
  AppOptions,
  AuditProvider,
  GrantsProvider,
  LoaderProvider,
  PackagesProvider,
  ReadinessFailure,
  SchedulerProvider,
  ServerAuditEntry,
  ServerAuditSearch,
  ServerInstallOverrides,
  ServerInstallResult,
  ServerJobInfo,
  ServerJobRun,
} from "./options.ts";
export type { PluginInfo } from "./context.ts";
export {
  PLUGIN_STATUSES,
  type PluginStatus,
  pluginStatus,
  type PluginStatusInput,
  type PluginStatusView,
  withoutServerPaths,
} from "./plugin_status.ts";
export { probe, type ReadinessReport } from "./readiness.ts";
export {
  type ConnectionInfo,
  HSTS_VALUE,
  isHttpsRequest,
  isTrustedProxy,
  type TrustProxy,
} from "./transport.ts";
export {
  findRouteConflicts,
  patternsOverlap,
  type PluginRoute,
  type RefusedPlugin,
  RouteCollisionError,
  type RouteConflict,
  type RouteTable,
} from "./route_table.ts";
export {
  type CreatedToken,
  type CreateTokenOptions,
  FileTokenStore,
  generateToken,
  hashToken,
  MemoryTokenStore,
  TOKEN_PREFIX,
  type TokenRecord,
  type TokenStore,
} from "./auth/tokens.ts";
export {
  type Session,
  SESSION_COOKIE,
  type SessionBackend,
  SessionStore,
  type SessionStoreOptions,
} from "./auth/sessions.ts";
export { CSRF_HEADER, type Principal } from "./auth/authenticator.ts";
export {
  BadRequestError,
  BodyTooLargeError,
  buildRouteArgs,
  type ErrorCodeLookup,
  errorToHttp,
  hostErrorToHttp,
  type HttpError,
  preferredLanguage,
} from "./plugin_http.ts";
export {
  AdmissionGate,
  type AdmissionGateOptions,
  type AdmissionStats,
} from "./admission.ts";
export {
  isDatabaseUnavailable,
  type UnavailableBody,
  type UnavailableError,
} from "./unavailable.ts";
export {
  type CallErrorKind,
  callErrorKind,
  declaredFunctions,
  type HostCallOutcome,
  HostMetrics,
  type HostMetricsOptions,
  LATENCY_BUCKETS_SECONDS,
  type MetricsManager,
  type MetricsRoute,
  type OperationsRow,
  OTHER_FUNCTION,
  type QuotaUse,
} from "../telemetry/metrics.ts";
export type { HourSummary } from "../telemetry/metrics_ring.ts";
