/**
 * The host process's wiring: {@linkcode boot} builds services, the Manager
 * with guarded HostAPIs, the plugin loader, the package installer, the
 * scheduler and the HTTP app from a {@linkcode HostConfig}, serves it, loads
 * the plugins and returns a {@linkcode RunningHost} to close it with.
 *
 * Everything is built in dependency order. Two real cycles use a late-bound
 * seam (set once, right after the value is built):
 *
 * - Manager ↔ what it is built with: its per-plugin HostAPIs call other
 *   plugins through the Manager (`callFrom`), and its route-collision
 *   manifest check reads the routes already registered with it. (The i18n
 *   registry the HostAPIs translate with is built before the Manager and
 *   handed to it, so that part is no cycle.)
 * - HTTP app ↔ its package seam: an install or uninstall must rebuild the
 *   app's route table (a lazily loaded or removed plugin fires no Manager
 *   event), and the app is built with that seam.
 *
 * `host/serve.ts` is the command-line entry point around it.
 *
 * @example
 * ```ts ignore
 * import { boot } from "./boot.ts";
 * import { loadConfig } from "./services/config.ts";
 * const host = await boot({ config: loadConfig() });
 * console.log(`serving ${host.url}`);
 * await host.close();
 * ```
 *
 * @module
 */

import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { errorText } from "./model/errors.ts";
import type { GKRegistration } from "./model/manifest.ts";
import { LogBuffer, type LogEntry } from "./log_buffer.ts";
import { Loader } from "./loading/loader.ts";
import {
  createRuntimeFactory,
  preparePluginRunRoot,
} from "./loading/runtimes.ts";
import { Manager } from "./manager.ts";
import {
  type InstallOptions,
  type InstallResult,
  PackageInstaller,
} from "./loading/packages.ts";
import { PgSignerPinStore } from "./loading/signer_pins.ts";
import { PackageStore } from "./loading/package_store.ts";
import { PackageSync } from "./loading/package_sync.ts";
import { I18nRegistry } from "./registries/i18n.ts";
import { PgJobClaim, Scheduler, type SqlPool } from "./scheduler.ts";
import {
  createApp,
  type GoatKitApp,
  type GrantsProvider,
  type PackagesProvider,
  reservedNameCheck,
  routeCollisionCheck,
} from "./server/mod.ts";
import { FileTokenStore } from "./server/auth/tokens.ts";
import { PgTokenStore } from "./server/auth/pg_token_store.ts";
import { CachedTokenStore } from "./server/auth/cached_token_store.ts";
import { Cluster } from "./cluster/cluster.ts";
import { newHostId } from "./cluster/host_registry.ts";
import {
  publishedQuotaStore,
  PublishedStateStore,
} from "./cluster/published_stores.ts";
import type { ReadinessFailure } from "./server/options.ts";
import { probe } from "./server/readiness.ts";
import {
  createServices,
  PgStateStore,
  type Services,
  type SqlDatabase,
} from "./services/mod.ts";
import { type HostConfig, loadConfig } from "./services/config.ts";
import { createInterceptors, interceptHostAPI } from "./model/interceptors.ts";
import { PgLogStore } from "./services/pg_log_store.ts";
import { PgExtismVarStore } from "./services/pg_extism_var_store.ts";
import type { ExtismHostFunction } from "./loading/mod.ts";
import { PgAuditStore } from "./services/pg_audit_store.ts";
import { PgSessionStore } from "./services/pg_session_store.ts";
import { SessionStore } from "./server/auth/sessions.ts";
import {
  auditedPackages,
  auditedTokens,
  auditOrigins,
  auditPluginToggles,
} from "./audit_trail.ts";
import { createTracing, tracingEnabled } from "./telemetry/tracing.ts";
import {
  tracedCache,
  tracedEgress,
  tracedMailer,
} from "./telemetry/service_spans.ts";
import type { LogOutput } from "./telemetry/log_output.ts";
import { printGrantChanges } from "./telemetry/host_events.ts";
import { PgQuotaStore } from "./quotas/quota_store.ts";
import { Quotas } from "./quotas/quotas.ts";
import { HostMetrics } from "./telemetry/metrics.ts";
import {
  applyGrantPolicy,
  AuditLog,
  checkPermissions,
  createEgressClient,
  createGuardedHostAPI,
  GrantPolicy,
  type GrantStore,
  type GuardedHostAPI,
  pendingPermissions,
  PgGrantStore,
} from "../permissions/mod.ts";

/** Options of {@linkcode boot}. */
export interface BootOptions {
  /** The configuration. @default loadConfig() (`goatkit.json` + `Deno.env`) */
  config?: HostConfig;
  /** Create another admin token even if one exists. @default false */
  newAdminToken?: boolean;
  /** Where progress lines go. @default console.log */
  print?: (line: string) => void;
  /**
   * Where the host's stdout goes (`host/serve.ts` builds it from
   * `--log-format` / `GOATKIT_LOG_FORMAT`): progress lines (unless `print`
   * is given), every log line of the host and the plugins at `info` or
   * above, and grant changes. Without it only progress lines are printed.
   */
  logOutput?: LogOutput;
  /** Discover and load the plugins of `pluginsDir` at start. @default true */
  loadPlugins?: boolean;
  /**
   * Called as soon as the server listens, before plugins load (so the URL
   * and token can be shown while the embedded database starts).
   */
  onListen?: (info: { url: string; adminToken?: string }) => void;
  /**
   * User host functions offered to every Extism plugin (imported under
   * their `namespace`, by default `extism:host/user`).
   */
  extismFunctions?: readonly ExtismHostFunction[];
}

/** A running host, as {@linkcode boot} returns it. */
export interface RunningHost {
  /** Base URL, such as `http://localhost:8080`. */
  url: string;
  /** The admin token, when this start created one (shown once). */
  adminToken?: string;
  /** The configuration it runs with. */
  config: HostConfig;
  /** The Manager, with the plugins registered so far. */
  manager: Manager;
  /**
   * Stops serving and shuts every plugin and service down (once; later
   * calls wait for the same close). The listener closes at once (new
   * connections are refused) and requests in flight get up to
   * `options.drainTimeoutMs` (default: the `server.drainTimeoutMs` setting)
   * to finish; a request that still reaches the app meanwhile is answered
   * 503 with `Connection: close`. Then the scheduler, plugins and services
   * stop; requests still running then fail with their plugin.
   */
  close(options?: CloseOptions): Promise<void>;
}

/** Options of {@linkcode RunningHost.close}. */
export interface CloseOptions {
  /**
   * How long requests in flight may take to finish, in ms.
   * @default the `server.drainTimeoutMs` setting (10 000)
   */
  drainTimeoutMs?: number;
}

/** Options of {@linkcode grantsProvider}. */
export interface GrantsProviderOptions {
  /**
   * Where the operator's approvals and revocations are recorded (outcome
   * `granted` / `revoked`, one entry per permission; `*` for "all").
   */
  audit?: Pick<AuditLog, "record">;
  /**
   * The host's policy: what counts as pending uses its idea of which
   * `config:` keys may be secrets (a secret is pending until a grant names
   * it exactly). @default every exact `config:` key may be a secret
   */
  policy?: GrantPolicy;
}

/**
 * Adapts the permission layer's {@linkcode GrantStore} to the server's
 * grants seam; with `options.audit`, each approval and revocation is also
 * an audit entry.
 *
 * @example
 * ```ts ignore
 * import { grantsProvider } from "./boot.ts";
 * const app = createApp({ manager, grants: grantsProvider(grantStore, { audit }) });
 * ```
 */
export function grantsProvider(
  store: GrantStore,
  options: GrantsProviderOptions = {},
): GrantsProvider {
  // One entry per permission, each with the plugin's grants before and after.
  const note = (
    plugin: string,
    list: readonly string[],
    outcome: string,
    before: readonly string[],
    after: readonly string[],
  ) => {
    for (const permission of list) {
      options.audit?.record({
        plugin,
        permission,
        attempted: `${outcome} by the operator`,
        outcome,
        action: outcome === "granted" ? "grant.approve" : "grant.revoke",
        before: [...before],
        after: [...after],
      });
    }
  };
  return {
    granted: async (plugin) => (await store.get(plugin)) ?? [],
    approve: async (plugin, permissions) => {
      const current = (await store.get(plugin)) ?? [];
      const next = [...new Set([...current, ...permissions])];
      await store.set(plugin, next);
      note(plugin, permissions, "granted", current, next);
    },
    revoke: async (plugin, permissions) => {
      const current = options.audit ? (await store.get(plugin)) ?? [] : [];
      await store.revoke(plugin, permissions);
      const next = options.audit ? (await store.get(plugin)) ?? [] : [];
      note(plugin, permissions ?? ["*"], "revoked", current, next);
    },
    pending: (requested, granted) =>
      options.policy
        ? options.policy.pending(requested, granted)
        : pendingPermissions(requested, granted),
  };
}

/**
 * The grant policy of a host: `server.requireApproval`
 * (`GOATKIT_REQUIRE_APPROVAL`) decides which kinds wait for the operator,
 * and an exact `config:<KEY>` waits whenever the key is a secret or not a
 * known host value (so it might become one), whatever the setting.
 */
function hostGrantPolicy(config: HostConfig): GrantPolicy {
  const { store } = config;
  return new GrantPolicy({
    requireApproval: config.server.requireApproval,
    mayBeSecret: (key) =>
      store.secret(key) !== undefined || store.hostValue(key) === undefined,
  });
}

const EXAMPLES_URL = new URL("../fixtures/plugins", import.meta.url);

/**
 * The repository's example plugins (`GOATKIT_EXAMPLE_PLUGINS`): a folder of
 * a local copy (a clone); `undefined` when this module was imported from a
 * registry, which does not ship them.
 */
export const EXAMPLE_PLUGINS_DIR: string | undefined =
  EXAMPLES_URL.protocol === "file:" ? fileURLToPath(EXAMPLES_URL) : undefined;

/** Seconds since `t0` (a `performance.now()`), one decimal: `8.2`. */
function secondsSince(t0: number): string {
  return ((performance.now() - t0) / 1000).toFixed(1);
}

/** A value built after something that needs it: the seam of a real cycle. */
class LateBound<T> {
  #value: T | undefined;
  readonly #what: string;

  constructor(what: string) {
    this.#what = what;
  }

  /** Sets the value (once) and returns it. */
  bind(value: T): T {
    if (this.#value !== undefined) {
      throw new Error(`Cannot bind ${this.#what}: it is bound already`);
    }
    this.#value = value;
    return value;
  }

  /** The value, `undefined` before {@linkcode LateBound.bind}. */
  get current(): T | undefined {
    return this.#value;
  }

  /** The value; throws before {@linkcode LateBound.bind}. */
  get(): T {
    if (this.#value === undefined) {
      throw new Error(`Cannot use ${this.#what}: it is not built yet`);
    }
    return this.#value;
  }
}

/**
 * Builds the host from `options.config`, serves it, loads the plugins and
 * starts the scheduler. Creates the data directory and, on first start (or
 * with `newAdminToken`), an admin token.
 *
 * @example
 * ```ts ignore
 * import { boot } from "./boot.ts";
 * import { loadConfig } from "./services/config.ts";
 * const config = loadConfig({ env: { ...Deno.env.toObject(), PORT: "0" } });
 * const host = await boot({
 *   config,
 *   onListen: ({ url, adminToken }) => console.log(url, adminToken ?? ""),
 * });
 * console.log(host.manager.list().length, "plugin(s)");
 * await host.close();
 * ```
 */
export async function boot(options: BootOptions = {}): Promise<RunningHost> {
  const config = options.config ?? loadConfig();
  const { server } = config;
  const out = options.logOutput;
  // Progress lines; `fields` reach JSON output (`--log-format json`) only.
  const print: (line: string, fields?: Record<string, unknown>) => void =
    options.print ??
      (out ? (l, f) => out.print(l, f) : (l) => console.log(l));
  await Deno.mkdir(server.dataDir, { recursive: true });

  // Services. The file is already parsed: createServices gets the
  // environment only (no configPath, so it does not read the file again)
  // plus the sender address it would have taken from config `mail.from`,
  // and the one ConfigStore replaces the environment-only one it builds.
  const logs = new LogBuffer({
    capacity: 2000,
    ...(out ? { onEntry: (e: LogEntry) => out.entry(e) } : {}),
  });
  const audit = new AuditLog({ logs });
  // Consent by default: what waits for the operator. `none` is for
  // development only, and said so loudly.
  const grantPolicy = hostGrantPolicy(config);
  if (server.requireApproval.length === 0) {
    const warning =
      "WARNING: GOATKIT_REQUIRE_APPROVAL=none — every permission a plugin requests is granted without the operator (secrets excepted). For development only.";
    print(`  ${warning}`);
    logs.log("", "warn", warning);
  }
  // GOATKIT_UNSANDBOXED_PLUGINS=1: subprocess plugins run without the OS
  // sandbox (bubblewrap). Development only; every launch logs it again.
  const unsandboxed = config.env.GOATKIT_UNSANDBOXED_PLUGINS === "1";
  if (unsandboxed) {
    const warning =
      "WARNING: GOATKIT_UNSANDBOXED_PLUGINS=1 — gRPC plugins run without the OS sandbox and can read every file the host can. For development only.";
    print(`  ${warning}`);
    logs.log("", "warn", warning);
  }
  const from = config.env.SMTP_FROM ?? config.store.hostValue("mail.from");
  const services: Services = {
    ...createServices({
      env: from === undefined ? config.env : { ...config.env, SMTP_FROM: from },
      dataDir: server.dataDir,
    }),
    config: config.store,
  };
  const sql = (services.db.default as SqlDatabase).sqlClient;
  // [cluster] Cluster mode (DATABASE_URL): a heartbeat in goatkit.hosts, a
  // NOTIFY after each change of shared state (plugin state, grants, quota
  // overrides), and this host reconciled to other hosts' changes.
  const hostId = config.env.GOATKIT_HOST_ID ?? newHostId();
  const roles = ["http", "scheduler"];
  const cluster = config.env.DATABASE_URL
    ? new Cluster({
      url: config.env.DATABASE_URL,
      client: sql,
      hostId,
      roles,
      logs,
    })
    : undefined;
  const grants = new PgGrantStore({
    client: sql,
    ...(cluster
      ? { onWrite: (p: string) => cluster.publish("grants", p) }
      : {}),
  });
  // Extism plugins' vars, in the host's database.
  const extismVars = new PgExtismVarStore({ client: sql });
  const stateStore = new PublishedStateStore({
    inner: new PgStateStore({ client: sql }),
    ...(cluster ? { publish: (n: string) => cluster.publish("state", n) } : {}),
  });
  // The durable record of logs, audit entries and sessions (batched writes,
  // retention by age and count); the in-memory buffers stay as caches.
  // They write only once the embedded database has started (below).
  const dbStarted = Promise.withResolvers<void>();
  const storeError = (what: string) => (kind: string, e: unknown) =>
    console.error(`${what} ${kind} failed: ${errorText(e)}`);
  const logStore = new PgLogStore({
    client: sql,
    retentionDays: server.logRetentionDays,
    maxRows: server.logMaxRows,
    after: dbStarted.promise,
    onError: storeError("log store"),
  });
  logs.persistTo(logStore);
  const auditStore = new PgAuditStore({
    client: sql,
    retentionDays: server.auditRetentionDays,
    maxRows: server.auditMaxRows,
    after: dbStarted.promise,
    onError: storeError("audit store"),
  });
  audit.persistTo(auditStore);
  const sessions = new SessionStore({
    backend: new PgSessionStore({ client: sql }),
  });
  const traced = tracingEnabled(config.env);
  const http = traced
    ? tracedEgress(createEgressClient())
    : createEgressClient();
  const i18n = new I18nRegistry();

  // Interceptors of plugin calls and host calls, filled by what observes or
  // limits them. Order matters (the first outermost): tracing, then
  // metrics (which see quota refusals), then quotas.
  const interceptors = createInterceptors();
  // Tracing (OTEL_DENO=true): a plugin.call span per Manager.call, a
  // host.<method> span per host call, service spans below them.
  if (traced) {
    const tracing = createTracing({
      runtimeOf: (name) => managerSeam.current?.status(name)?.runtime,
    });
    interceptors.plugin.push(tracing.plugin);
    interceptors.host.push(tracing.host);
    services.cache = tracedCache(services.cache);
    services.mailer = tracedMailer(services.mailer);
  }
  // Metrics (`server.metrics`, on by default): calls, errors, latency,
  // host calls, usage, quarantines, jobs, routes; GET /metrics.
  const metrics = server.metrics ? new HostMetrics() : undefined;
  if (metrics) {
    interceptors.plugin.push(metrics.pluginInterceptor);
    interceptors.host.push(metrics.hostInterceptor);
  }
  // [quotas] Per-plugin quotas, innermost (metrics and traces see their
  // refusals): config limits, the operator's overrides from the database.
  const quotas = new Quotas({
    defaults: config.quotas.default,
    plugins: config.quotas.plugins,
    store: cluster
      ? publishedQuotaStore(
        new PgQuotaStore({ client: sql }),
        (p) => cluster.publish("quotas", p),
      )
      : new PgQuotaStore({ client: sql }),
    usage: (name) => managerSeam.current?.usage(name),
    // No polling: this host's own changes apply at once, other hosts'
    // arrive through the change feed (and its 10 s resync).
    refreshMs: Infinity,
    audit,
    logs,
  });
  interceptors.plugin.push(quotas.pluginInterceptor);
  interceptors.host.push(quotas.hostInterceptor);
  // The operator's overrides are read once the database is up (reading
  // them now would start the embedded database before its progress line).
  void dbStarted.promise.then(() => quotas.refresh());
  // Manager. Seam: its HostAPIs and route check reach back into it.
  const managerSeam = new LateBound<Manager>("the Manager");
  // Guarded HostAPIs per plugin, newest last; older ones are closed when
  // their instance is replaced or unregistered (they listen for grant changes).
  const hosts = new Map<string, GuardedHostAPI[]>();
  const guardedHost = (name: string, manifest: GKRegistration) => {
    const guarded = createGuardedHostAPI({
      plugin: name,
      requested: manifest.permissions ?? [],
      grants,
      services: {
        db: services.db,
        cache: services.cache,
        mailer: services.mailer,
        config: services.config,
        http,
      },
      i18n,
      logs,
      audit,
      statementTimeoutMs: () => quotas.statementTimeoutMs(name),
      callPlugin: (caller, target, fn, args, opts) =>
        managerSeam.get().callFrom(caller, target, fn, args, opts),
    });
    hosts.set(name, [...(hosts.get(name) ?? []), guarded]);
    // Host calls pass the host's interceptors (metrics, traces, quotas)
    // before the guard.
    const api = interceptHostAPI(guarded, name, interceptors);
    return out ? out.pluginLogs(api) : api;
  };
  const manager = managerSeam.bind(
    new Manager({
      defaultRouteTimeoutMs: server.routeTimeoutMs,
      interceptors: interceptors.plugin,
      logs,
      stateStore,
      i18n,
      host: guardedHost,
      manifestChecks: [
        routeCollisionCheck(() => managerSeam.current),
        reservedNameCheck,
        checkPermissions,
      ],
    }),
  );
  metrics?.watch(manager);
  if (out) printGrantChanges(grants, out);
  // [cluster] A state applied from another host was audited there.
  auditPluginToggles({
    subscribe: (listener) =>
      manager.subscribe((e) => {
        if (!stateStore.isApplying(e.name)) listener(e);
      }),
    status: (name) => manager.status(name),
  }, audit);
  cluster?.attach({ manager, states: stateStore, grants, quotas });
  manager.subscribe((e) => {
    const list = hosts.get(e.name) ?? [];
    if (e.type === "unregistered") {
      for (const h of list) h.close();
      hosts.delete(e.name);
    } else if (e.type === "replaced" && list.length > 1) {
      for (const h of list.slice(0, -1)) h.close();
      hosts.set(e.name, list.slice(-1));
    }
  });

  // Loader, packages, scheduler, tokens.
  // gRPC plugins' sockets live under <dataDir>/run; what a killed host
  // left there is removed now, before any plugin starts.
  const runRoot = await preparePluginRunRoot(server.dataDir);
  for (const dir of runRoot.removed) {
    logs.log(
      "",
      "info",
      `removed plugin socket folder of an earlier run: ${dir}`,
    );
  }
  for (const k of runRoot.kept) {
    logs.log("", "warn", `plugin socket folder ${k.dir} left alone: ${k.why}`);
  }
  if (runRoot.fallback) {
    logs.log(
      "",
      "warn",
      `plugin sockets in ${runRoot.dir}: ${runRoot.fallback}`,
    );
  }
  const runtimeFactory = createRuntimeFactory({
    runDir: runRoot.dir,
    grants,
    dataDir: server.dataDir,
    logs,
    pluginConfig: (name) => services.config.pluginSection(name),
    trustedExecutables: server.trustedExecutables,
    audit,
    extism: {
      vars: (name, maxBytes) => extismVars.forPlugin(name, maxBytes),
      maxVarBytes: server.extismMaxVarBytes,
      ...(options.extismFunctions
        ? { functions: options.extismFunctions }
        : {}),
    },
    wasm: {
      queue: {
        maxLength: server.pluginQueueLength,
        maxWaitMs: server.pluginQueueWaitMs,
      },
      idleTimeoutMs: server.pluginIdleTimeoutMs,
    },
    ...(unsandboxed ? { sandbox: "none" as const } : {}),
  });
  const loader = new Loader(manager, {
    dir: server.pluginsDir,
    ...(server.examplePlugins && EXAMPLE_PLUGINS_DIR
      ? { exampleDirs: [EXAMPLE_PLUGINS_DIR] }
      : {}),
    load: async (source) => {
      // The host's policy decides new requests (by default: they wait for
      // the operator) before the runtime maps grants onto WASI preopens
      // and Deno flags.
      const previous = manager.manifest(source.name)?.permissions;
      await applyGrantPolicy(
        grants,
        source.name,
        source.manifest.permissions ?? [],
        {
          policy: grantPolicy,
          ...(previous ? { previousRequested: previous } : {}),
        },
      );
      return await runtimeFactory(source);
    },
  });
  // On PostgreSQL (DATABASE_URL) packages live in the database too: every
  // host of the deployment installs the same bytes (package_sync.ts).
  const clustered = Boolean(config.env.DATABASE_URL);
  const installer = new PackageInstaller({
    dir: server.pluginsDir,
    manager,
    loader,
    trustedKeys: server.trustedKeys,
    requireSignature: server.requireSignature,
    trustedExecutables: server.trustedExecutables,
    // Signer pins outlive the plugin folder (uninstall) and restarts; on
    // PostgreSQL they are shared by the hosts of the deployment (the pins
    // of the file are copied in once).
    pinsFile: join(server.dataDir, "package_signers.json"),
    ...(clustered
      ? {
        pins: new PgSignerPinStore({
          client: sql,
          legacyFile: join(server.dataDir, "package_signers.json"),
        }),
      }
      : {}),
    logs,
    audit,
    // Another vendor's code does not inherit what was approved for the
    // previous one: every grant waits for the operator again.
    onSignerChange: (name) => grants.revoke(name),
    onUninstall: async (name) => {
      await grants.delete(name);
      await stateStore.delete(name);
      await extismVars.deletePlugin(name);
    },
  });
  const pool = (sql as { pool?: SqlPool }).pool;
  const scheduler = new Scheduler(manager, {
    catchUp: server.jobCatchUp,
    ...(metrics ? { onRun: metrics.jobRun.bind(metrics) } : {}),
    ...(config.env.DATABASE_URL && pool ? { claim: new PgJobClaim(pool) } : {}),
  });
  // [cluster] With PostgreSQL, tokens are shared by every host. A verified
  // token is trusted for 2 s without a query; a revoke on any host reaches
  // the others' caches through the change feed.
  const sharedTokens = config.env.DATABASE_URL
    ? new CachedTokenStore(new PgTokenStore({ client: sql }), {
      ...(cluster
        ? { onChange: (id: string) => cluster.publish("tokens", id) }
        : {}),
    })
    : undefined;
  if (sharedTokens) cluster?.on("tokens", () => sharedTokens.invalidate());
  const tokens = auditedTokens(
    sharedTokens ?? new FileTokenStore(join(server.dataDir, "tokens.json")),
    audit,
  );
  let adminToken: string | undefined;
  try {
    if (
      options.newAdminToken || !(await tokens.list()).some((t) => t.admin)
    ) {
      adminToken = (await tokens.create({ name: "admin", admin: true })).token;
    }
  } catch (e) {
    // [cluster] Tokens in PostgreSQL: a database that is down at start
    // must not stop the host (/readyz says why it is not ready).
    print(`  tokens: cannot read the token store: ${errorText(e)}`);
  }

  // HTTP app. Seam: the package seam it is built with rebuilds its routes.
  const appSeam = new LateBound<GoatKitApp>("the HTTP app");
  // A fresh install is only discovered by the installer: load it now
  // (unless loading is lazy) and mount what it declares. Uploads and
  // package-store syncs take this same path.
  const installLocal = async (
    bytes: Uint8Array,
    opts: InstallOptions,
  ): Promise<InstallResult> => {
    {
      const t0 = performance.now();
      print(
        `  installing a package (${(bytes.byteLength / 1024).toFixed(0)} KiB)…`,
      );
      const result = await installer.install(bytes, opts);
      try {
        if (!server.lazyLoad) await loader.ensureLoaded(result.name);
      } catch (e) {
        print(`  install of ${result.name} failed: ${errorText(e)}`, {
          event: "plugin.failed",
          plugin: result.name,
          level: "error",
        });
        // A fresh install that does not register leaves nothing behind.
        if (!result.upgraded) await installer.rollback(result.name, e);
        throw e;
      } finally {
        appSeam.get().rebuildRoutes();
      }
      print(
        `  … ${
          result.upgraded ? "upgraded" : "installed"
        } ${result.name} ${result.version} in ${secondsSince(t0)} s`,
        {
          event: result.upgraded ? "plugin.upgraded" : "plugin.installed",
          plugin: result.name,
          version: result.version,
        },
      );
      return result;
    }
  };
  const uninstallLocal = async (
    name: string,
    opts: { forgetSigner?: boolean },
  ): Promise<void> => {
    try {
      await installer.uninstall(name, {
        forgetSigner: opts.forgetSigner === true,
      });
      print(`  uninstalled ${name}`, {
        event: "plugin.uninstalled",
        plugin: name,
      });
    } finally {
      appSeam.get().rebuildRoutes();
    }
  };
  const packageSync = clustered
    ? new PackageSync({
      store: new PackageStore({ client: sql, hostId }),
      loader,
      record: (name) => installer.record(name),
      install: installLocal,
      uninstall: (name) => uninstallLocal(name, {}),
      logs,
    })
    : undefined;
  // A change the other hosts must follow is published after it succeeded
  // here; a failed publish is logged (the local change stands).
  const published = async (what: string, name: string, fn: () => unknown) => {
    try {
      await fn();
    } catch (e) {
      print(
        `  package store: ${what} of ${name} not published: ${errorText(e)}`,
      );
      logs.log(
        name,
        "error",
        `package store: ${what} not published: ${errorText(e)}`,
      );
    }
  };
  const packages: PackagesProvider = {
    install: (bytes, opts) => {
      const options: InstallOptions = {
        ...(opts?.signature ? { signature: opts.signature } : {}),
        ...(opts?.signer ? { signer: opts.signer } : {}),
        allowSignerChange: opts?.allowSignerChange === true,
        allowDowngrade: opts?.allowDowngrade === true,
      };
      if (!packageSync) return installLocal(bytes, options);
      return packageSync.exclusive(async () => {
        const result = await installLocal(bytes, options);
        await published(
          "install",
          result.name,
          () =>
            packageSync.publishInstall(result, bytes, {
              ...options,
              signerFingerprint: result.signature?.fingerprint ?? null,
            }),
        );
        return result;
      });
    },
    signature: (name) => installer.signature(name),
    uninstall: (name, opts) => {
      if (!packageSync) return uninstallLocal(name, opts ?? {});
      return packageSync.exclusive(async () => {
        const record = await installer.record(name);
        await uninstallLocal(name, opts ?? {});
        await published(
          "uninstall",
          name,
          () => packageSync.publishUninstall(name, record?.sha256),
        );
      });
    },
  };
  const state = { loading: false };
  const app = appSeam.bind(createApp({
    manager,
    tokens,
    sessions,
    logs,
    audit,
    grants: grantsProvider(grants, { audit, policy: grantPolicy }),
    quotas,
    scheduler,
    packages: auditedPackages(packages, { audit, manager }),
    loader: {
      reload: (name) => loader.reload(name),
      ensureLoaded: (name) => loader.ensureLoaded(name),
      failure: (name) => loader.failure(name),
      dir: loader.dir,
      exampleDirs: loader.exampleDirs,
      lazy: server.lazyLoad,
    },
    discovered: () =>
      loader.discovered().flatMap((n) => {
        const src = loader.source(n);
        return src ? [src.manifest] : [];
      }),
    title: server.title,
    maxInFlight: server.maxInFlight,
    secureCookies: server.secureCookies,
    trustProxy: server.trustProxy,
    health: () => ({
      plugins_loading: state.loading,
      lazy_load: server.lazyLoad,
      hot_reload: server.hotReload,
      discovery_problems: loader.problems().length,
    }),
    ...(metrics ? { metrics, metricsToken: server.metricsToken } : {}),
    identity: () =>
      cluster?.info() ?? {
        host: { id: hostId, roles },
        cluster: { hosts: 1 },
      },
    // /readyz: start-up done, plugin folders usable, services answering.
    readiness: async () => {
      const failures: ReadinessFailure[] = [];
      if (state.loading) {
        failures.push({ check: "plugins", error: "plugins are still loading" });
      }
      for (const p of loader.problems()) {
        failures.push({ check: "plugin-folder", name: p.dir, error: p.error });
      }
      const [db, cache] = await Promise.all([
        probe(() => sql.query("SELECT 1"), READINESS_TIMEOUT_MS),
        probe(
          () => services.cache.get("goatkit", "readyz"),
          READINESS_TIMEOUT_MS,
        ),
      ]);
      if (db !== undefined) failures.push({ check: "database", error: db });
      if (cache !== undefined) failures.push({ check: "cache", error: cache });
      return failures;
    },
  }));

  // Serve, then load plugins (the URL is shown while they load).
  const listening = Promise.withResolvers<Deno.NetAddr>();
  const httpServer = Deno.serve(
    {
      port: server.port,
      hostname: server.hostname,
      onListen: (addr) => listening.resolve(addr as Deno.NetAddr),
    },
    // While the in-flight limit is reached, a plugin route's 503
    // is answered before the audit context and the middleware chain.
    app.front(auditOrigins(app.fetch, {
      audit,
      tokens,
      sessions,
      trustProxy: server.trustProxy,
    })),
  );
  const addr = await listening.promise;
  // The address actually bound (IPv6 in brackets); a wildcard is shown as
  // localhost.
  const shownHost = addr.hostname === "0.0.0.0" || addr.hostname === "::"
    ? "localhost"
    : addr.hostname.includes(":")
    ? `[${addr.hostname}]`
    : addr.hostname;
  const url = `http://${shownHost}:${addr.port}`;
  options.onListen?.({ url, ...(adminToken ? { adminToken } : {}) });

  // The embedded database starts on first use: say so, and how long it took
  // (a first start creates the cluster: several seconds in silence else).
  if (!config.env.DATABASE_URL) {
    const first = !(await exists(join(server.dataDir, "pg")));
    print(
      `  starting embedded database${
        first ? " (first start can take 10-20 s)" : ""
      }…`,
    );
    const t0 = performance.now();
    try {
      await sql.query("SELECT 1");
      print(`  … embedded database ready in ${secondsSince(t0)} s`);
    } catch (e) {
      print(`  embedded database failed to start: ${errorText(e)}`);
    }
  }
  dbStarted.resolve();
  // [cluster] First heartbeat, LISTEN (and a first resync), periodic resync.
  if (cluster) {
    const started = await settlesWithin(cluster.start(url), 5_000);
    if (!started) {
      print("  cluster: change feed not connected yet; retrying in background");
    }
  }

  let rescan: ReturnType<typeof setInterval> | undefined;
  if (options.loadPlugins ?? true) {
    state.loading = true;
    const t0 = performance.now();
    if (server.examplePlugins && !EXAMPLE_PLUGINS_DIR) {
      print(
        "  GOATKIT_EXAMPLE_PLUGINS: the example plugins come only with a clone of the repository; none loaded",
      );
    }
    print(
      `  loading plugins from ${server.pluginsDir}${
        server.examplePlugins && EXAMPLE_PLUGINS_DIR
          ? ` and the examples in ${EXAMPLE_PLUGINS_DIR}`
          : ""
      }…`,
    );
    await loader.scan();
    for (const p of loader.problems()) {
      print(`  not a plugin: ${p.dir}: ${p.error}`);
      logs.log("", "warn", `plugin folder ${p.dir} skipped: ${p.error}`);
    }
    manager.setLazyLoader(loader);
    app.rebuildRoutes(); // mount discovered plugins' routes (lazy loading)
    if (!server.lazyLoad) {
      const { loaded, failed } = await loader.loadAll();
      for (const name of loaded) {
        const mf = manager.manifest(name);
        print(
          `  plugin ${name} ${mf?.version ?? ""} (${
            manager.status(name)?.runtime ?? "?"
          }) loaded`,
          { event: "plugin.loaded", plugin: name },
        );
      }
      for (const f of failed) {
        print(`  plugin ${f.name} not loaded: ${f.error}`, {
          event: "plugin.failed",
          plugin: f.name,
          level: "error",
        });
      }
      print(
        `  … ${loaded.length} plugin(s) loaded${
          failed.length > 0 ? `, ${failed.length} failed` : ""
        } in ${secondsSince(t0)} s`,
      );
    } else {
      print(
        `  ${loader.discovered().length} plugin(s) discovered (lazy loading)`,
      );
    }
    if (server.hotReload) {
      loader.watch();
      // The loader re-discovers new folders without registering them when
      // loading is lazy: mount their routes when the discovered set changes.
      let lastDiscovered = loader.discovered().join("\n");
      rescan = setInterval(() => {
        const now = loader.discovered().join("\n");
        if (now !== lastDiscovered) {
          lastDiscovered = now;
          app.rebuildRoutes();
        }
      }, 2000);
    }
    state.loading = false;
  }
  // Packages of the deployment: catch up now, then follow notifications,
  // with a periodic resync for missed ones.
  let packageTimer: ReturnType<typeof setInterval> | undefined;
  if (packageSync && (options.loadPlugins ?? true)) {
    const syncNow = async (why: string) => {
      try {
        const r = await packageSync.syncPackages();
        if (r.installed.length + r.removed.length + r.refused.length > 0) {
          print(
            `  packages synced (${why}): ${r.installed.length} installed, ${r.removed.length} removed, ${r.refused.length} refused`,
          );
        }
      } catch (e) {
        logs.log("", "warn", `package sync (${why}) failed: ${errorText(e)}`);
      }
    };
    await syncNow("start");
    const every = Number(config.env.GOATKIT_PACKAGE_SYNC_MS ?? 10_000);
    packageTimer = setInterval(
      () => void syncNow("periodic"),
      Number.isFinite(every) && every >= 100 ? every : 10_000,
    );
    // Other hosts' installs arrive on the cluster's change feed (one
    // LISTEN connection per host); one missed while it reconnected is
    // caught by the periodic sync.
    cluster?.on("package", async (change) => {
      await packageSync.handleChange(change).catch((e) =>
        logs.log("", "warn", `package sync failed: ${errorText(e)}`)
      );
    });
  }
  scheduler.start();

  // Graceful close: stop accepting, drain, then stop plugins and services.
  const close = async (drainMs: number) => {
    dbStarted.resolve();
    clearInterval(rescan);
    clearInterval(packageTimer);
    scheduler.stop();
    // The listener closes now (new connections are refused) and idle
    // keep-alive connections with it; requests in flight go on. One that
    // still reaches the app is answered 503 + Connection: close. (First:
    // nothing below may let a new request in meanwhile.)
    app.drain();
    const finished = httpServer.shutdown();
    await cluster?.close().catch((e) => print(`cluster: ${errorText(e)}`));
    const drained = await settlesWithin(finished, drainMs);
    if (!drained) {
      const left = app.admission().in_flight;
      print(
        `  drain timeout of ${drainMs} ms reached: stopping with ${left} plugin request(s) in flight`,
      );
      logs.log("", "warn", `shutdown: drain timeout of ${drainMs} ms reached`);
    }
    app.close();
    // A package sync in progress finishes (its install is atomic anyway).
    if (packageSync) {
      await settlesWithin(packageSync.exclusive(async () => {}), 5_000);
    }
    await loader.close().catch((e) => print(`loader: ${errorText(e)}`));
    // Drained: jobs still running get the Manager's grace; else none is left.
    await manager.shutdownAll(drained ? {} : { graceMs: 0 }).catch((e) =>
      print(`shutdown: ${errorText(e)}`)
    );
    await Promise.all([logStore.close(), auditStore.close()]).catch((e) =>
      print(`log and audit stores: ${errorText(e)}`)
    );
    await services.close().catch((e) => print(`services: ${errorText(e)}`));
    // Requests cut above end with their plugin; never wait for ever.
    if (!drained) await settlesWithin(finished, 2_000);
  };
  let closing: Promise<void> | undefined;
  return {
    url,
    ...(adminToken ? { adminToken } : {}),
    config,
    manager,
    close(opts: CloseOptions = {}) {
      return closing ??= close(opts.drainTimeoutMs ?? server.drainTimeoutMs);
    },
  };
}

/** How long `/readyz` waits for the database and the cache, in ms. */
const READINESS_TIMEOUT_MS = 3000;

/** Whether `path` exists. */
async function exists(path: string): Promise<boolean> {
  try {
    await Deno.stat(path);
    return true;
  } catch {
    return false;
  }
}

/** Whether `p` settles within `ms` (its rejection counts as settled). */
async function settlesWithin(
  p: Promise<unknown>,
  ms: number,
): Promise<boolean> {
  let timer: ReturnType<typeof setTimeout> | undefined;
  const timeout = new Promise<false>((resolve) => {
    timer = setTimeout(() => resolve(false), ms);
  });
  try {
    return await Promise.race([p.then(() => true, () => true), timeout]);
  } finally {
    clearTimeout(timer);
  }
}
