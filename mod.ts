/**
 * GoatKit for Deno: a sandboxed plugin host. Plugins are WASM modules or
 * out-of-process gRPC services; each talks to the host through its own
 * guarded HostAPI, which refuses whatever its granted permissions do not
 * cover.
 *
 * ```ts
 * import { decodeJson, encodeJson, Manager } from "./mod.ts";
 *
 * const manager = new Manager();
 * await manager.register({
 *   gkRegister: () => ({ name: "hello", version: "1.0.0" }),
 *   init: async () => {},
 *   call: async (_fn, args) => encodeJson({ echo: decodeJson(args) }),
 *   shutdown: async () => {},
 * });
 * console.log(decodeJson(await manager.call("hello", "echo", encodeJson(1))));
 * await manager.shutdownAll();
 * ```
 *
 * What is here, by who uses it:
 * - **Embedding**: the plugin model ({@linkcode Plugin}, {@linkcode HostAPI},
 *   the manifest types and {@linkcode parseManifest}), the
 *   {@linkcode Manager}, the runtimes' loaders ({@linkcode loadWasmPlugin},
 *   {@linkcode loadGrpcPlugin}), the HTTP app ({@linkcode createApp}) and
 *   the whole host process as `deno task serve` runs it ({@linkcode boot}).
 * - **Permissions**: the grammar ({@linkcode parsePermission}), grant stores
 *   and the {@linkcode GrantPolicy}, and the guarded HostAPI factory
 *   ({@linkcode guardedHostFactory}).
 * - **Services**: {@linkcode createServices} for the embedded defaults or
 *   the real backends (PostgreSQL, Redis, SMTP).
 * - **Errors**: every error class a caller may want to catch.
 *
 * Test doubles live in `./testing`, the plugin-author SDK in `./sdk`, the
 * `gk` command in `./cli`.
 *
 * @module
 */

// Embedding: the plugin model.
export {
  type CallContext,
  type CallContextOptions,
  createCallContext,
  decodeJson,
  encodeJson,
  type Plugin,
  type PluginEnvironment,
  type PluginRuntimeKind,
  type PluginUsage,
} from "./host/model/plugin.ts";
export {
  createInterceptors,
  HOST_METHODS,
  type HostCallInfo,
  type HostCallInterceptor,
  type HostMethod,
  interceptHostAPI,
  type Interceptors,
  type PluginCallInfo,
  type PluginCallInterceptor,
  runIntercepted,
} from "./host/model/interceptors.ts";
export type {
  EmailMessage,
  HostAPI,
  HttpRequest,
  HttpResponse,
  LogLevel,
  Row,
} from "./host/model/host_api.ts";
export {
  DEFAULT_ROUTE_TIMEOUT_MS,
  type ErrorCodeSpec,
  functionTimeoutMs,
  type GKRegistration,
  type I18nSpec,
  type JobSpec,
  type MenuItemSpec,
  type ParsedManifest,
  parseManifest,
  type ParseManifestOptions,
  ROUTE_METHODS,
  ROUTE_MIDDLEWARE,
  type RouteSpec,
  routeTimeoutMs,
  type TemplateSpec,
  WIDGET_SIZES,
  type WidgetSpec,
} from "./host/model/manifest.ts";
export { HOST_VERSION } from "./host/model/version.ts";

// Embedding: the Manager and what it is made of.
export {
  type CallOptions,
  type Contributed,
  type HostFactory,
  type LazyLoader,
  Manager,
  type ManagerEvent,
  type ManagerOptions,
  type PluginStatus,
} from "./host/manager.ts";
export {
  type DurableLogStore,
  LogBuffer,
  type LogEntry,
  type LogQuery,
  type LogSearch,
} from "./host/log_buffer.ts";
export {
  MemoryStateStore,
  type PluginState,
  type StateStore,
} from "./host/state_store.ts";
export {
  type CatchUpPolicy,
  type JobClaim,
  type JobOutcome,
  type JobRun,
  type ScheduledJob,
  Scheduler,
  type SchedulerClock,
  type SchedulerOptions,
} from "./host/scheduler.ts";
export { I18nRegistry } from "./host/registries/i18n.ts";
export { ErrorCodeRegistry } from "./host/registries/error_codes.ts";
export { TemplateOverrideRegistry } from "./host/registries/templates.ts";

// Embedding: runtimes, loading and the server.
export {
  loadWasmPlugin,
  type WasmPluginOptions,
  type WasmQuarantineOptions,
  type WasmQueueOptions,
} from "./runtimes/wasm/mod.ts";
export {
  loadGrpcPlugin,
  type LoadGrpcPluginOptions,
} from "./runtimes/grpc/mod.ts";
export {
  type ExtismCallContext,
  ExtismCallError,
  ExtismExitError,
  ExtismHashMismatchError,
  type ExtismHostFunction,
  type ExtismLogLevel,
  ExtismManifestError,
  type ExtismPluginOptions,
  type ExtismValue,
  type ExtismValueType,
  type ExtismVarStore,
  isExtismModule,
  loadExtismPlugin,
} from "./host/loading/mod.ts";
export { createApp, type GoatKitApp } from "./host/server/mod.ts";
export {
  boot,
  type BootOptions,
  type CloseOptions,
  type RunningHost,
} from "./host/boot.ts";
export type { AppOptions } from "./host/server/mod.ts";
export {
  type LogFormat,
  LogOutput,
  type LogOutputOptions,
} from "./host/telemetry/log_output.ts";
export {
  type QuotaReport,
  type QuotasProvider,
  type QuotaUsage,
} from "./host/quotas/quotas.ts";
export type { QuotaKey, QuotaLimits } from "./host/quotas/quota_limits.ts";

// Permissions.
export { parsePermission, type Permission } from "./permissions/grammar.ts";
export {
  GrantPolicy,
  type GrantPolicyOptions,
  type GrantStore,
  MemoryGrantStore,
} from "./permissions/grants.ts";
export {
  guardedHostFactory,
  type GuardedHostFactoryOptions,
} from "./permissions/guarded_host_api.ts";
export {
  AuditLog,
  type AuditOrigin,
  type AuditSearch,
  type DurableAuditStore,
} from "./permissions/audit.ts";

// Services.
export {
  BasicHostAPI,
  type BasicHostAPIOptions,
  type PluginCallTarget,
} from "./host/services/basic_host_api.ts";
export {
  createServices,
  type CreateServicesOptions,
  type Services,
} from "./host/services/services.ts";

// Errors.
export {
  describeOverload,
  ExtismVarLimitError,
  InvalidManifestError,
  isPluginFault,
  type ManifestIssue,
  type OverloadReason,
  type OverloadRefusal,
  PermissionDeniedError,
  PluginAlreadyRegisteredError,
  PluginCallCycleError,
  PluginCrashedError,
  PluginDisabledError,
  PluginError,
  type PluginErrorOptions,
  type PluginFault,
  PluginInitError,
  PluginNotFoundError,
  PluginOverloadedError,
  type PluginOverloadedErrorOptions,
  PluginTimeoutError,
  QuotaExceededError,
  type QuotaExceededErrorOptions,
  type QuotaKind,
  ServiceUnavailableError,
} from "./host/model/errors.ts";
export { PermissionSyntaxError } from "./permissions/grammar.ts";
export { EgressDeniedError } from "./permissions/egress.ts";
export { WasmLoadError } from "./runtimes/wasm/mod.ts";
