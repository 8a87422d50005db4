/**
 * Options of {@linkcode createApp} and the seams through which other parts
 * of the host (grants, audit log, scheduler, packages, loader) plug into the
 * server. Each seam is optional: without it the matching API answers 501.
 *
 * @module
 */

import type { QuotasProvider } from "../quotas/quotas.ts";
import type { LogBuffer } from "../log_buffer.ts";
import type { GKRegistration } from "../model/manifest.ts";
import type { Manager } from "../manager.ts";
import type { SessionStore } from "./auth/sessions.ts";
import type { TokenStore } from "./auth/tokens.ts";
import type { HostMetrics } from "../telemetry/metrics.ts";

/** Grants of permissions to plugins (the permissions layer implements it). */
export interface GrantsProvider {
  /** The permissions currently granted to `plugin`. */
  granted(plugin: string): Promise<readonly string[]>;
  /** Grants `permissions` to `plugin` (in addition to what it has). */
  approve(plugin: string, permissions: readonly string[]): Promise<void>;
  /** Revokes `permissions` (all of them when omitted) from `plugin`. */
  revoke(plugin: string, permissions?: readonly string[]): Promise<void>;
  /**
   * The requested permissions no grant covers (shown for approval).
   * @default requested strings not among the granted strings
   */
  pending?(requested: readonly string[], granted: readonly string[]): string[];
}

/** One audit entry (a denied or notable plugin action). */
export interface ServerAuditEntry {
  /** When it happened (ISO 8601). */
  time?: string;
  /** When it happened (ISO 8601), if the log names it so. */
  timestamp?: string;
  /** The plugin concerned. */
  plugin: string;
  /** The permission that was needed. */
  permission?: string;
  /** What the plugin attempted. */
  attempted?: string;
  /** `denied` (the default), `granted`, `revoked`, … */
  outcome?: string;
  /** The HostAPI method, such as `dbExec`. */
  method?: string;
  /** The kind of operator action (`login`, `plugin.install`, …). */
  action?: string;
  /** Who did it. */
  actor?: string;
  /** From where (the client's IP address). */
  ip?: string;
  /** The state before the action. */
  before?: unknown;
  /** The state after the action. */
  after?: unknown;
  /** For a summary of suppressed denials: how many. */
  count?: number;
}

/** Filters of {@linkcode AuditProvider.search}. */
export interface ServerAuditSearch {
  /** Only this plugin's entries. */
  plugin?: string;
  /** Only entries at or after this time. */
  since?: string;
  /** Only entries at or before this time. */
  until?: string;
  /** Only this outcome. */
  outcome?: string;
  /** Only this action. */
  action?: string;
  /** Only entries containing this text. */
  text?: string;
  /** At most this many (the newest). */
  limit?: number;
}

/** The audit log (permission denials and operator actions). */
export interface AuditProvider {
  /** Newest first, filtered. */
  query(
    filter: { plugin?: string; limit?: number },
  ): ServerAuditEntry[] | Promise<ServerAuditEntry[]>;
  /** Newest first, with every filter (the durable record when there is one). */
  search?(filter: ServerAuditSearch): Promise<ServerAuditEntry[]>;
  /** Records an operator action (login, logout, …) of the request being handled. */
  record?(
    entry: Omit<ServerAuditEntry, "time" | "timestamp"> & {
      permission: string;
      attempted: string;
    },
  ): unknown;
}

/** One run of a job. */
export interface ServerJobRun {
  /** Start (ISO 8601). */
  start: string;
  /** Duration in milliseconds (absent while running). */
  durationMs?: number;
  /** `ok`, `error`, `timeout`, `skipped` (overlap) or `running`. */
  outcome: string;
  /** Error text, when it failed. */
  error?: string;
}

/** A scheduled job as the scheduler reports it. */
export interface ServerJobInfo {
  /** The plugin. */
  plugin: string;
  /** The job id from the manifest. */
  id: string;
  /** Cron expression. */
  schedule: string;
  /** Description from the manifest. */
  description?: string;
  /** Whether the job is scheduled. @default true */
  enabled?: boolean;
  /** Next planned run (ISO 8601), if scheduled. */
  nextRun?: string | null;
  /** Whether a run is in progress. */
  running?: boolean;
  /** The most recent runs, newest first. */
  lastRuns: ServerJobRun[];
}

/** The scheduler (implemented by `host/scheduler.ts`). */
export interface SchedulerProvider {
  /** Every known job with its recent runs. */
  list(): ServerJobInfo[] | Promise<ServerJobInfo[]>;
  /** Runs a job now (refusing overlap); resolves with the finished run. */
  runNow(plugin: string, jobId: string): Promise<ServerJobRun>;
}

/** What an install or upgrade did (the package installer's result fits). */
export interface ServerInstallResult {
  /** The plugin's name. */
  name: string;
  /** The installed version. */
  version: string;
  /** The version it replaced, on an upgrade. */
  previousVersion?: string;
  /** Permissions the new version requests that the old one did not. */
  newPermissions?: string[];
  /** The signer it replaced, when an operator override allowed a signer change. */
  previousSigner?: string | null;
}

/** Operator overrides of an install (each one is logged and audited). */
export interface ServerInstallOverrides {
  /**
   * Install even though the package is signed by another key than the one
   * pinned for its plugin name (or not signed while the pin says signed).
   * @default false
   */
  allowSignerChange?: boolean;
  /** Install even though its version is lower than the installed one. @default false */
  allowDowngrade?: boolean;
}

/** The package manager (implemented by the packaging module). */
export interface PackagesProvider {
  /** Validates and installs (or upgrades) a `.zip` package. */
  install(
    bytes: Uint8Array,
    options?:
      & { filename?: string; signature?: string | null; signer?: string | null }
      & ServerInstallOverrides,
  ): Promise<ServerInstallResult>;
  /**
   * The signature status of an installed plugin's package (`verified`,
   * `unverified` or `unsigned`, with the key's fingerprint when known);
   * `undefined` when the plugin was not installed from a package.
   */
  signature?(
    name: string,
  ): Promise<{ status: string; fingerprint?: string } | undefined>;
  /**
   * Removes a plugin with its files, grants, state, routes and jobs. Its
   * signer pin is kept unless `forgetSigner` is set.
   */
  uninstall(name: string, options?: { forgetSigner?: boolean }): Promise<void>;
}

/** The plugin loader (discovery and hot reload), for the admin "reload" action and lazy widgets. */
export interface LoaderProvider {
  /** Reloads a plugin from disk. */
  reload(name: string): Promise<void>;
  /** Loads a discovered plugin now (widget render of a lazy plugin). */
  ensureLoaded?(name: string): Promise<void>;
  /** Why `name` did not load at its last attempt (shown as its status reason). */
  failure?(name: string): string | undefined;
  /** Plugin folders (absolute) whose paths status texts show relative. */
  readonly dir?: string;
  /** Example folders (absolute) scanned after {@linkcode LoaderProvider.dir}. */
  readonly exampleDirs?: readonly string[];
  /** Whether discovered plugins load on first use (lazy loading). */
  readonly lazy?: boolean;
}

/** Options of {@linkcode createApp}. */
export interface AppOptions {
  /** The plugin Manager whose plugins the server serves. */
  manager: Manager;
  /** API token store. @default a new MemoryTokenStore (no tokens: nobody can log in) */
  tokens?: TokenStore;
  /** Session store. @default a new in-memory SessionStore */
  sessions?: SessionStore;
  /** Log buffer shown on the logs page. @default `manager.logs` */
  logs?: LogBuffer;
  /** Sanitiser for plugin HTML. @default `sanitizeHtml` from `host/registries/sanitize.ts` */
  sanitize?: (html: string) => string;
  /** Permission grants seam. */
  grants?: GrantsProvider;
  /** Per-plugin quotas seam (`/api/v1/plugins/:name/quotas`, detail page). */
  quotas?: QuotasProvider;
  /** Audit log seam. */
  audit?: AuditProvider;
  /** Scheduler seam. */
  scheduler?: SchedulerProvider;
  /** Package install/uninstall seam. */
  packages?: PackagesProvider;
  /** Loader seam (reload button). */
  loader?: LoaderProvider;
  /**
   * Manifests of plugins discovered on disk (lazy loading). Routes of those
   * not registered yet are mounted too, and a hit loads the plugin; the
   * plugin list shows their version and description. Call `rebuildRoutes()`
   * after the discovered set changes (the Manager's events cover loads).
   */
  discovered?: () => readonly GKRegistration[];
  /**
   * Deadline of plugin calls made for HTTP requests, in ms. @default for a
   * route, its own (`Manager.routeTimeoutMs`: the manifest's, else the
   * Manager's route default); for widgets and admin calls, the Manager's
   */
  callTimeoutMs?: number;
  /**
   * Most plugin requests in flight at once, server-wide: plugin routes,
   * widget renders and admin calls of plugin functions. One more is
   * answered `503` with `Retry-After` at once, without reaching the plugin
   * (`/healthz`, the pages and the rest of the API are not counted).
   * @default 1024
   */
  maxInFlight?: number;
  /** Largest request body passed to a plugin, in bytes. @default 1 MiB */
  maxBodyBytes?: number;
  /** Largest package upload, in bytes. @default 50 MiB */
  maxUploadBytes?: number;
  /**
   * Always set the `Secure` flag on cookies, even on requests that came over
   * plain HTTP. Without it, cookies get the flag on HTTPS requests (served
   * with TLS, or a trusted proxy's `X-Forwarded-Proto: https`).
   * @default false
   */
  secureCookies?: boolean;
  /**
   * Reverse proxies whose `X-Forwarded-Proto` is believed: `true` (every
   * peer), or their IP addresses (the peer address comes from the second
   * argument of `fetch`, which `Deno.serve` passes). A request they say
   * came over `https` gets `Secure` cookies and `Strict-Transport-Security`.
   * @default false (the header is ignored)
   */
  trustProxy?: boolean | readonly string[];
  /** Title shown in the admin pages. @default "GoatKit" */
  title?: string;
  /** Extra fields in `GET /healthz`. */
  health?: () => Record<string, unknown>;
  /**
   * Readiness checks of `GET /readyz` beyond the plugins' own state
   * (database and cache pings, broken plugin folders, start-up still
   * loading); see `readiness.ts`.
   */
  readiness?: () => Promise<ReadinessFailure[]>;
  /**
   * This host's id and roles and the live hosts of its cluster, shown by
   * `GET /readyz` (`host: {id, roles}`, `cluster: {hosts}`).
   */
  identity?: () => {
    host: { id: string; roles: string[] };
    cluster: { hosts: number };
  };
  /**
   * Host metrics (`host/telemetry/metrics.ts`): with them the app serves
   * `GET /metrics` (admins or `metricsToken`), counts plugin route requests
   * by status and shows `/admin/operations`. Without them `/metrics` is 404.
   */
  metrics?: HostMetrics;
  /** The separate scrape token of `GET /metrics` (`GOATKIT_METRICS_TOKEN`). */
  metricsToken?: string;
}

/** One reason `GET /readyz` answers 503. */
export interface ReadinessFailure {
  /** What failed: `database`, `cache`, `plugins`, `plugin`, `plugin-folder`, … */
  check: string;
  /** The plugin, folder or service concerned (never an absolute server path). */
  name?: string;
  /** Why. */
  error: string;
}
