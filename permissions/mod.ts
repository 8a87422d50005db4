/**
 * Permissions: the grammar of permission strings, grants and the policy that
 * decides them, the guarded per-plugin HostAPI with its audit log, the
 * SSRF-guarded HTTP egress client, and the mappings onto Deno flags and WASI
 * preopens.
 *
 * @example Guard a plugin's HostAPI
 * ```ts
 * import { AuditLog, createGuardedHostAPI, MemoryGrantStore } from "./mod.ts";
 * const grants = new MemoryGrantStore();
 * await grants.set("hello", ["db:read"]);
 * const host = createGuardedHostAPI({
 *   plugin: "hello",
 *   requested: ["db:read", "http:external"],
 *   grants,
 *   services: {},
 *   audit: new AuditLog(),
 * });
 * console.log((await host.permissions()).map((p) => p.text)); // ["db:read", "log"]
 * host.close();
 * ```
 *
 * @module
 */
export {
  type CachePermission,
  canonicalPermissions,
  checkPermissions,
  type ConfigPermission,
  covers,
  type DbPermission,
  diffRequested,
  effectivePermissions,
  type EmailPermission,
  type FsPermission,
  type HttpPermission,
  isLocalhostName,
  type LogPermission,
  parsePermission,
  parsePermissions,
  type Permission,
  type PermissionKind,
  PermissionSyntaxError,
  type PluginsPermission,
} from "./grammar.ts";
export {
  applyGrantPolicy,
  type ApplyGrantPolicyOptions,
  APPROVAL_KINDS,
  type ApprovalKind,
  canonicalGrants,
  type GrantDecision,
  type GrantListener,
  GrantPolicy,
  type GrantPolicyOptions,
  type GrantStore,
  MemoryGrantStore,
  parseApprovalSetting,
  pendingPermissions,
  type PendingPermissionsOptions,
  PgGrantStore,
  type PgGrantStoreOptions,
  type SqlQueryClient,
} from "./grants.ts";
export {
  type AuditEntry,
  AuditLog,
  type AuditLogOptions,
  type AuditOrigin,
  type AuditQuery,
  type AuditRateLimit,
  type AuditRecord,
  type AuditSearch,
  type DurableAuditStore,
} from "./audit.ts";
export {
  createGuardedHostAPI,
  type GuardedCache,
  type GuardedConfig,
  type GuardedDatabase,
  type GuardedDatabaseSet,
  type GuardedDbCallOptions,
  type GuardedHostAPI,
  type GuardedHostAPIOptions,
  guardedHostFactory,
  type GuardedHostFactoryOptions,
  type GuardedHttp,
  type GuardedMailer,
  type GuardedServices,
  type PluginCallFn,
  type Translator,
} from "./guarded_host_api.ts";
export {
  createEgressClient,
  type EgressClient,
  type EgressClientOptions,
  EgressDeniedError,
  EgressError,
  type EgressRequestOptions,
  EgressResponseTooLargeError,
  EgressTimeoutError,
  matchHttpGrant,
  type Resolver,
} from "./egress.ts";
export {
  type AddressClass,
  classifyIp,
  formatIp,
  type IpAddress,
  parseIp,
} from "./ip.ts";
export {
  DenoFlagsError,
  denoFlagsFor,
  type DenoFlagsOptions,
  fsPath,
} from "./deno_flags.ts";
export {
  type WasiPreopen,
  wasiPreopensFor,
  type WasiPreopensOptions,
} from "./wasi_preopens.ts";
export { qualifiedTables, type TableRef } from "./sql_scope.ts";
export {
  assertFsContained,
  findFsEscapes,
  type FindFsEscapesOptions,
  type FsEscape,
  FsEscapeError,
} from "./fs_check.ts";
export {
  checkPrivileges,
  CLOSED_LANGUAGES,
  DatabaseHardeningError,
  dropPrivileges,
  hardenDatabase,
  type PluginPrivileges,
  pluginRoleName,
  pluginSchemaName,
  type PrivilegeSession,
  quoteIdent,
  ReservedSchemaError,
  SESSION_FUNCTIONS,
  syncPrivileges,
} from "./pg_privileges.ts";
export { HOST_SCHEMA } from "./host_schema.ts";
export {
  privilegesOf,
  PrivilegeSync,
  type PrivilegeTarget,
} from "./privilege_sync.ts";
export type { PluginLogSink } from "../host/model/host_api.ts";
