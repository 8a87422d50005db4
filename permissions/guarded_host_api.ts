/**
 * The guarded HostAPI: one instance per plugin, checking every method
 * against the plugin's effective permissions (requested ∩ granted, read from
 * the {@linkcode GrantStore} on every call, so a grant change applies to the
 * next call) before handing the call to the real service.
 *
 * | method | needs | notes |
 * |---|---|---|
 * | `dbQuery` | `db:read` or `db:write` | `READ ONLY` unless `db:write` is held; runs as the plugin's role |
 * | `dbExec` | `db:write` | runs as the plugin's role |
 * | `cacheGet` | `cache:read` | namespace = the plugin's name, always |
 * | `cacheSet`, `cacheDelete` | `cache:write` | same |
 * | `httpRequest` | `http:<pattern>` / `http:external` | through the SSRF-guarded egress client |
 * | `sendEmail` | `email:<pattern matching the recipient>` | |
 * | `configGet` | none for the plugin's own section; `config:<pattern>` for host keys; for a secret, a grant naming exactly its key (`config:*` or `config:app.*` never covers one) | a missing key, `__proto__` and `constructor` included, is refused or "no such key" like any other |
 * | `translate` | none | language from `ctx.language` |
 * | `callPlugin` | `plugins:call` or `plugins:call:<target>` | caller = this plugin; `ctx` is the parent |
 * | `log` | none | always attributed to this plugin |
 *
 * A denial throws {@linkcode PermissionDeniedError} and records an
 * {@linkcode AuditLog} entry (also a warn line in the log buffer).
 *
 * Table scopes (`db:read:ticket`) are enforced by PostgreSQL: whenever the
 * effective `db:` permissions differ from what was last synced, the guard
 * calls the database's `syncPluginPrivileges` before running the statement
 * (and eagerly when the grant store reports a change). Since an unscoped
 * grant covers the host tables that existed at the last sync, a statement
 * refused by the database with 42501 triggers one resync and retry (at most
 * once a second). The guard also
 * refuses, without a round trip, statements that name an out-of-scope
 * `public.<table>` or another plugin's schema.
 *
 * @module
 */

import {
  type EmailMessage,
  type HostAPI,
  type HttpRequest,
  type HttpResponse,
  LOG_LEVELS,
  type LogLevel,
  type PluginLogSink,
  type Row,
} from "../host/model/host_api.ts";
import type { CallContext } from "../host/model/plugin.ts";
import {
  PermissionDeniedError,
  ServiceUnavailableError,
} from "../host/model/errors.ts";
import type { AuditLog } from "./audit.ts";
import type { GrantStore } from "./grants.ts";
import {
  type DbPermission,
  effectivePermissions,
  type EmailPermission,
  type HttpPermission,
  parsePermission,
  type Permission,
} from "./grammar.ts";
import { EgressDeniedError, matchHttpGrant } from "./egress.ts";
import { qualifiedTables, type TableRef } from "./sql_scope.ts";
import { type PluginPrivileges, pluginSchemaName } from "./pg_privileges.ts";
import {
  privilegesOf,
  PrivilegeSync,
  type PrivilegeTarget,
} from "./privilege_sync.ts";
import { BoundedCache } from "../host/model/bounded_cache.ts";

/** Per-call database options (the services' `DbCallOptions`). */
export interface GuardedDbCallOptions {
  /** The plugin whose role runs the statement. */
  plugin: string;
  /** Run `READ ONLY`. */
  readOnly: boolean;
  /** Cancels the statement. */
  signal?: AbortSignal;
  /** PostgreSQL statement timeout in ms. */
  statementTimeoutMs?: number;
  /** Row cap. */
  maxRows?: number;
}

/** What the guard needs of a database (the services' `Database`). */
export interface GuardedDatabase extends PrivilegeTarget {
  /** Runs a query as the plugin. */
  query(
    sql: string,
    args: unknown[],
    opts: GuardedDbCallOptions,
  ): Promise<Row[]>;
  /** Runs a statement as the plugin. */
  exec(
    sql: string,
    args: unknown[],
    opts: GuardedDbCallOptions,
  ): Promise<number>;
}

/** A set of databases chosen by the `@name:` prefix (the services' `DatabaseSet`). */
export interface GuardedDatabaseSet {
  /** Returns the database for `sql` and `sql` without its prefix. */
  resolve(sql: string): [GuardedDatabase, string];
}

/** What the guard needs of the cache (the services' `CacheStore`). */
export interface GuardedCache {
  /** Reads `key` in `namespace`. */
  get(namespace: string, key: string): Promise<Uint8Array | null>;
  /** Writes `key` in `namespace`. */
  set(
    namespace: string,
    key: string,
    value: Uint8Array,
    ttlSeconds: number,
  ): Promise<void>;
  /** Deletes `key` in `namespace`. */
  delete(namespace: string, key: string): Promise<void>;
}

/** What the guard needs of the mailer (the services' `Mailer`). */
export interface GuardedMailer {
  /** Sends `message` on behalf of `plugin`. */
  send(plugin: string, message: EmailMessage): Promise<void>;
}

/** What the guard needs of the configuration (the services' `ConfigStore`). */
export interface GuardedConfig {
  /** A host configuration value. */
  hostValue(key: string): string | undefined;
  /** A secret (environment-only) value. */
  secret(key: string): string | undefined;
  /** A value of the plugin's own section. */
  pluginValue(plugin: string, key: string): string | undefined;
}

/** What the guard needs of the HTTP egress client ({@linkcode createEgressClient}). */
export interface GuardedHttp {
  /** Sends `request` within the `allowed` grants. */
  request(
    request: HttpRequest,
    options: {
      allowed: readonly (string | Permission)[];
      signal?: AbortSignal;
    },
  ): Promise<HttpResponse>;
}

/** The services behind the guard; a missing one makes its methods fail with `ServiceUnavailableError`. */
export interface GuardedServices {
  /** One database, or a set chosen by `@name:`. */
  db?: GuardedDatabase | GuardedDatabaseSet;
  /** The cache. */
  cache?: GuardedCache;
  /** The mailer. */
  mailer?: GuardedMailer;
  /** The configuration. */
  config?: GuardedConfig;
  /** The egress client. */
  http?: GuardedHttp;
}

/** Routes a plugin-to-plugin call (bind it to `Manager.callFrom`). */
export type PluginCallFn = (
  caller: string,
  target: string,
  fn: string,
  args: Uint8Array | null,
  options: { parent: CallContext },
) => Promise<Uint8Array | null>;

/** Translates a key (the lead's `I18nRegistry` fits). */
export interface Translator {
  /** Translates `key` into `language`. */
  translate(
    key: string,
    language: string | undefined,
    args?: readonly unknown[],
  ): string;
}

/** Options of {@linkcode createGuardedHostAPI}. */
export interface GuardedHostAPIOptions {
  /** The plugin this instance serves. */
  plugin: string;
  /** What its manifest requests (permission strings). */
  requested: readonly string[];
  /** Where its grants are read, on every call. */
  grants: GrantStore;
  /** The real services. */
  services: GuardedServices;
  /** Translations. */
  i18n?: Translator;
  /** Where `log` lines go. */
  logs?: PluginLogSink;
  /** Where denials are recorded. */
  audit?: AuditLog;
  /** Routes `callPlugin`. */
  callPlugin?: PluginCallFn;
  /**
   * Statement timeout cap in ms (also capped by the call's deadline); a
   * function is read at each statement (the host's `dbStatementMs` quota).
   * @default 5000
   */
  statementTimeoutMs?: number | (() => number);
  /** Row cap per query. @default 10000 */
  maxRows?: number;
  /** The host schema grants refer to. @default "public" */
  hostSchema?: string;
}

/** A guarded HostAPI, with a few extras for the host. */
export interface GuardedHostAPI extends HostAPI {
  /** The plugin it serves. */
  readonly plugin: string;
  /** The plugin's effective permissions now. */
  permissions(): Promise<Permission[]>;
  /** Brings the database role's privileges in line with the grants now. */
  syncPrivileges(): Promise<void>;
  /** Stops listening for grant changes. */
  close(): void;
}

interface Effective {
  list: Permission[];
  /** Exact keys granted by a non-wildcard `config:` grant (secrets need one). */
  exactConfigGrants: Set<string>;
  db: DbPermission[];
  http: HttpPermission[];
  email: EmailPermission[];
  privileges: PluginPrivileges;
  has(kind: Permission["kind"], test?: (p: Permission) => boolean): boolean;
}

function buildEffective(
  requested: readonly Permission[],
  granted: readonly string[],
): Effective {
  const parsed: Permission[] = [];
  for (const g of granted) {
    try {
      parsed.push(parsePermission(g));
    } catch {
      // A stored grant that no longer parses grants nothing.
    }
  }
  const list = effectivePermissions(requested, parsed);
  const db = list.filter((p): p is DbPermission => p.kind === "db");
  const exactConfigGrants = new Set<string>();
  for (const p of parsed) {
    if (p.kind === "config" && !p.wildcard) exactConfigGrants.add(p.pattern);
  }
  return {
    list,
    exactConfigGrants,
    db,
    http: list.filter((p): p is HttpPermission => p.kind === "http"),
    email: list.filter((p): p is EmailPermission => p.kind === "email"),
    privileges: privilegesOf(db),
    has: (kind, test) =>
      list.some((p) => p.kind === kind && (!test || test(p))),
  };
}

/**
 * The tables a statement names ({@linkcode qualifiedTables}), remembered
 * for the last statements seen: plugins send the same statements again
 * and again, and the scan is most of the guard's cost. Only statements up
 * to {@linkcode MAX_CACHED_SQL} characters are kept, so a plugin sending
 * large distinct statements cannot make the host hold them (at most 512 ×
 * 4 KiB).
 */
const TABLES = new BoundedCache<string, readonly TableRef[]>(512);
const MAX_CACHED_SQL = 4096;
function tablesOf(sql: string): readonly TableRef[] {
  return sql.length <= MAX_CACHED_SQL
    ? TABLES.get(sql, qualifiedTables)
    : qualifiedTables(sql);
}

function short(text: string, max = 160): string {
  const one = text.replace(/\s+/g, " ").trim();
  return one.length > max ? `${one.slice(0, max - 1)}…` : one;
}

function urlForAudit(url: string): string {
  try {
    const u = new URL(url);
    return `${u.protocol}//${u.host}${u.pathname}`;
  } catch {
    return short(url, 120);
  }
}

function emailMatches(p: EmailPermission, address: string): boolean {
  const at = address.lastIndexOf("@");
  const local = address.slice(0, at);
  const domain = address.slice(at + 1).toLowerCase();
  if (p.local !== "*" && p.local.toLowerCase() !== local.toLowerCase()) {
    return false;
  }
  if (p.domain === "*") return true;
  if (p.domain.startsWith("*.")) return domain.endsWith(p.domain.slice(1));
  return p.domain === domain;
}

function isDatabaseSet(
  db: GuardedDatabase | GuardedDatabaseSet,
): db is GuardedDatabaseSet {
  return typeof (db as GuardedDatabaseSet).resolve === "function";
}

/**
 * Creates the guarded HostAPI of one plugin.
 *
 * @example
 * ```ts
 * import { AuditLog, createGuardedHostAPI, MemoryGrantStore } from "./mod.ts";
 * import { createCallContext } from "../host/model/plugin.ts";
 * const grants = new MemoryGrantStore();
 * await grants.set("hello", ["cache:read"]);
 * const audit = new AuditLog();
 * const host = createGuardedHostAPI({
 *   plugin: "hello",
 *   requested: ["cache:read", "cache:write"],
 *   grants,
 *   services: {},
 *   audit,
 * });
 * try {
 *   await host.cacheSet(createCallContext(), "k", new Uint8Array([1]), 0);
 * } catch (e) {
 *   console.log((e as Error).name); // PermissionDeniedError
 * }
 * console.log(audit.query()[0]?.permission); // cache:write
 * host.close();
 * ```
 */
export function createGuardedHostAPI(
  options: GuardedHostAPIOptions,
): GuardedHostAPI {
  const { plugin, grants, services } = options;
  const requested = options.requested.map((r) => parsePermission(r));
  const hostSchema = options.hostSchema ?? "public";
  const ownSchema = pluginSchemaName(plugin);
  const cap = options.statementTimeoutMs ?? 5000;
  const statementCap = typeof cap === "function" ? cap : () => cap;
  const maxRows = options.maxRows ?? 10_000;
  let memo: { key: string; value: Effective } | undefined;
  const privilegeSync = new PrivilegeSync<GuardedDatabase>(plugin);

  async function effective(): Promise<Effective> {
    const granted = (await grants.get(plugin)) ?? [];
    const key = granted.join("\n");
    if (memo?.key !== key) {
      memo = { key, value: buildEffective(requested, granted) };
    }
    return memo.value;
  }

  function deny(permission: string, attempted: string, method: string): never {
    options.audit?.record({ plugin, permission, attempted, method });
    throw new PermissionDeniedError(plugin, permission, attempted);
  }

  function resolveDb(sql: string): [GuardedDatabase, string] {
    const db = services.db;
    if (!db) throw new ServiceUnavailableError("database");
    return isDatabaseSet(db) ? db.resolve(sql) : [db, sql];
  }

  function checkTables(
    eff: Effective,
    sql: string,
    method: string,
    label: string,
  ): void {
    const inScope = (access: "read" | "write", name: string): boolean => {
      const scope = access === "write"
        ? eff.privileges.write
        : eff.privileges.read;
      if (scope === "all") return true;
      return scope !== null &&
        (scope.includes(name) || scope.includes(`${hostSchema}.${name}`));
    };
    for (const ref of tablesOf(sql)) {
      if (ref.schema === ownSchema) continue;
      const access = ref.write ? "write" : "read";
      if (ref.schema.startsWith("plugin_")) {
        deny(
          `db:${access}:${ref.schema}.${ref.table}`,
          `${label} on another plugin's schema "${ref.schema}"`,
          method,
        );
      }
      if (ref.schema === hostSchema && !inScope(access, ref.table)) {
        deny(
          `db:${access}:${ref.table}`,
          `${label} on table "${ref.table}"`,
          method,
        );
      }
    }
  }

  function callOptions(
    ctx: CallContext,
    readOnly: boolean,
  ): GuardedDbCallOptions {
    const left = Math.floor(ctx.deadline - Date.now());
    return {
      plugin,
      readOnly,
      signal: ctx.signal,
      statementTimeoutMs: Math.max(1, Math.min(statementCap(), left)),
      maxRows,
    };
  }

  const unsubscribe = grants.subscribe((name) => {
    if (name !== plugin) return;
    memo = undefined;
    // Eagerly revoke/extend database privileges; the next call re-checks anyway.
    effective().then((eff) => {
      for (const db of privilegeSync.databases()) {
        privilegeSync.sync(db, eff.privileges).catch((e) =>
          options.logs?.log(
            plugin,
            "error",
            `database privilege sync failed: ${e}`,
          )
        );
      }
    }).catch(() => {});
  });

  const api: GuardedHostAPI = {
    plugin,

    permissions: async () => (await effective()).list,

    async syncPrivileges() {
      const eff = await effective();
      const db = services.db;
      if (!db) return;
      const all = isDatabaseSet(db)
        ? ((db as unknown as { all?: () => GuardedDatabase[] }).all?.() ??
          [db.resolve("")[0]])
        : [db];
      await Promise.all(
        all.map((d) => privilegeSync.sync(d, eff.privileges, true)),
      );
    },

    close() {
      unsubscribe();
    },

    async dbQuery(ctx, query, args = []) {
      const eff = await effective();
      if (eff.db.length === 0) {
        deny("db:read", `db_query ${short(query)}`, "dbQuery");
      }
      const [db, sql] = resolveDb(query);
      checkTables(eff, sql, "dbQuery", "db_query");
      const write = eff.db.some((p) => p.access === "write");
      return await privilegeSync.run(
        db,
        eff.privileges,
        () => db.query(sql, args, callOptions(ctx, !write)),
      );
    },

    async dbExec(ctx, query, args = []) {
      const eff = await effective();
      if (!eff.db.some((p) => p.access === "write")) {
        deny("db:write", `db_exec ${short(query)}`, "dbExec");
      }
      const [db, sql] = resolveDb(query);
      checkTables(eff, sql, "dbExec", "db_exec");
      return await privilegeSync.run(
        db,
        eff.privileges,
        () => db.exec(sql, args, callOptions(ctx, false)),
      );
    },

    async cacheGet(_ctx, key) {
      const eff = await effective();
      if (!eff.has("cache", (p) => p.kind === "cache" && p.access === "read")) {
        deny("cache:read", `cache_get ${short(key, 80)}`, "cacheGet");
      }
      if (!services.cache) throw new ServiceUnavailableError("cache");
      return await services.cache.get(plugin, key);
    },

    async cacheSet(_ctx, key, value, ttlSeconds) {
      const eff = await effective();
      if (
        !eff.has("cache", (p) => p.kind === "cache" && p.access === "write")
      ) {
        deny("cache:write", `cache_set ${short(key, 80)}`, "cacheSet");
      }
      if (!services.cache) throw new ServiceUnavailableError("cache");
      await services.cache.set(plugin, key, value, ttlSeconds);
    },

    async cacheDelete(_ctx, key) {
      const eff = await effective();
      if (
        !eff.has("cache", (p) => p.kind === "cache" && p.access === "write")
      ) {
        deny("cache:write", `cache_delete ${short(key, 80)}`, "cacheDelete");
      }
      if (!services.cache) throw new ServiceUnavailableError("cache");
      await services.cache.delete(plugin, key);
    },

    async httpRequest(ctx, request) {
      const eff = await effective();
      const method = (request.method || "GET").toUpperCase();
      const label = `http_request ${method} ${urlForAudit(request.url)}`;
      let url: URL | undefined;
      try {
        url = new URL(request.url);
      } catch {
        url = undefined;
      }
      const wanted = url ? `http:${url.host}` : "http:external";
      if (eff.http.length === 0 || !url || !matchHttpGrant(eff.http, url)) {
        deny(wanted, label, "httpRequest");
      }
      if (!services.http) throw new ServiceUnavailableError("HTTP egress");
      try {
        return await services.http.request(request, {
          allowed: eff.http,
          signal: ctx.signal,
        });
      } catch (e) {
        if (e instanceof EgressDeniedError) {
          deny(
            e.permission,
            `${label} (${e.reason}${
              e.url !== request.url ? ` at ${urlForAudit(e.url)}` : ""
            })`,
            "httpRequest",
          );
        }
        throw e;
      }
    },

    async sendEmail(_ctx, message) {
      const eff = await effective();
      const to = String(message.to ?? "").trim();
      const label = `send_email to ${short(to, 120)}`;
      if (!/^[^\s@,;<>"()]+@[^\s@,;<>"()]+$/.test(to)) {
        deny(
          "email:<recipient>",
          `${label} (not a single plain address)`,
          "sendEmail",
        );
      }
      if (!eff.email.some((p) => emailMatches(p, to))) {
        deny(`email:${to.toLowerCase()}`, label, "sendEmail");
      }
      if (!services.mailer) throw new ServiceUnavailableError("mailer");
      await services.mailer.send(plugin, { ...message, to });
    },

    log(_ctx, level, message, fields) {
      const lvl: LogLevel = LOG_LEVELS.includes(level) ? level : "info";
      let f = fields;
      if (f && Object.hasOwn(f, "plugin")) {
        // Attribution comes from the guard, never from the plugin's fields.
        f = { ...f };
        delete f.plugin;
      }
      options.logs?.log(plugin, lvl, String(message), f);
    },

    async configGet(_ctx, key) {
      // Every answer below is a string or a refusal: a key such as
      // `__proto__` or `constructor` is an unset key like any other.
      const own = services.config?.pluginValue(plugin, key);
      if (typeof own === "string") return own;
      const eff = await effective();
      const configs = eff.list.filter((p) => p.kind === "config");
      const exact = configs.some((p) =>
        p.kind === "config" && !p.wildcard && p.pattern === key
      );
      const label = `config_get ${short(key, 120)}`;
      const secret = services.config?.secret(key);
      if (typeof secret === "string") {
        // A secret needs a stored grant naming the key itself, not a
        // pattern; the grant policy never stores one without the operator.
        // The refusal names the key, never the value.
        if (!exact || !eff.exactConfigGrants.has(key)) {
          deny(
            `config:${key}`,
            `${label} (a secret: needs the exact key)`,
            "configGet",
          );
        }
        return secret;
      }
      const covered = exact ||
        configs.some((p) =>
          p.kind === "config" && p.wildcard &&
          (p.pattern === "*" || key.startsWith(p.pattern.slice(0, -1)))
        );
      if (!covered) deny(`config:${key}`, label, "configGet");
      if (!services.config) throw new ServiceUnavailableError("configuration");
      const value = services.config.hostValue(key);
      if (typeof value !== "string") {
        throw new Error(
          `Cannot get config key "${key}": the host has no such key`,
        );
      }
      return value;
    },

    translate(ctx, key, args) {
      return Promise.resolve(
        options.i18n
          ? options.i18n.translate(key, ctx.language, args ?? [])
          : key,
      );
    },

    async callPlugin(ctx, target, fn, args) {
      const eff = await effective();
      if (
        !eff.has(
          "plugins",
          (p) =>
            p.kind === "plugins" && (p.target === null || p.target === target),
        )
      ) {
        deny(
          `plugins:call:${target}`,
          `plugin_call ${target}.${fn}`,
          "callPlugin",
        );
      }
      if (!options.callPlugin) {
        throw new Error(
          `Cannot call plugin "${target}": no plugin manager is available`,
        );
      }
      return await options.callPlugin(plugin, target, fn, args, {
        parent: ctx,
      });
    },
  };
  return api;
}

/** Options of {@linkcode guardedHostFactory}: everything but the plugin. */
export type GuardedHostFactoryOptions = Omit<
  GuardedHostAPIOptions,
  "plugin" | "requested"
>;

/**
 * A `HostFactory` for `new Manager({ host })`: each registered plugin gets
 * its own guarded HostAPI, with `requested` taken from its manifest.
 *
 * @example
 * ```ts
 * import { guardedHostFactory, MemoryGrantStore } from "./mod.ts";
 * import { Manager } from "../host/manager.ts";
 * let manager: Manager;
 * const host = guardedHostFactory({
 *   grants: new MemoryGrantStore(),
 *   services: {},
 *   callPlugin: (caller, target, fn, args, opts) => manager.callFrom(caller, target, fn, args, opts),
 * });
 * manager = new Manager({ host });
 * ```
 */
export function guardedHostFactory(
  options: GuardedHostFactoryOptions,
): (
  name: string,
  manifest: { permissions?: readonly string[] | undefined },
) => GuardedHostAPI {
  return (name, manifest) =>
    createGuardedHostAPI({
      ...options,
      plugin: name,
      requested: manifest.permissions ?? [],
    });
}
