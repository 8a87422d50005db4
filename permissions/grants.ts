/**
 * Grants: what the operator approved for each plugin, where it is kept
 * ({@linkcode MemoryGrantStore}, {@linkcode PgGrantStore}), and the
 * {@linkcode GrantPolicy} that decides what is granted without asking (by
 * default only `log`: every other permission waits for an operator's
 * approval, and a secret always does).
 *
 * The permissions a plugin may use are the intersection of what its manifest
 * requests and what was granted ({@linkcode effectivePermissions}). Grants
 * may change while a plugin runs; the guarded HostAPI reads them on every
 * call, so a change applies to the next call.
 *
 * @module
 */

import {
  canonicalPermissions,
  covers,
  diffRequested,
  parsePermission,
  type Permission,
  type PermissionKind,
} from "./grammar.ts";
import { HostTable } from "./host_schema.ts";

/** Called with a plugin's name after its grants changed. */
export type GrantListener = (plugin: string) => void;

/**
 * Storage of granted permissions per plugin. `get` returns `undefined` when
 * no decision was ever stored for the plugin (so the policy applies), and an
 * array (maybe empty) otherwise. Stores keep canonical strings.
 */
export interface GrantStore {
  /** The plugin's granted permissions, or `undefined` when never decided. */
  get(plugin: string): Promise<string[] | undefined>;
  /** Replaces the plugin's grants (strings are validated and canonicalised). */
  set(plugin: string, granted: readonly string[]): Promise<void>;
  /** Revokes some grants (exact canonical matches), or all when `permissions` is absent. */
  revoke(plugin: string, permissions?: readonly string[]): Promise<void>;
  /** Listens for changes made through this store; returns the unsubscribe function. */
  subscribe(listener: GrantListener): () => void;
}

/**
 * Canonicalises grant strings (parsed, deduplicated, sorted); throws
 * {@linkcode PermissionSyntaxError} for the first bad one.
 *
 * @example
 * ```ts
 * import { canonicalGrants } from "./grants.ts";
 * canonicalGrants(["log", "http:API.x.com", "log"]); // ["http:api.x.com", "log"]
 * ```
 */
export function canonicalGrants(list: readonly string[]): string[] {
  return [...new Set(list.map((g) => parsePermission(g).text))].sort();
}

const PERMISSION_KINDS: readonly PermissionKind[] = [
  "db",
  "cache",
  "http",
  "email",
  "config",
  "plugins",
  "fs",
  "log",
];

class Listeners {
  #set = new Set<GrantListener>();
  add(l: GrantListener): () => void {
    this.#set.add(l);
    return () => this.#set.delete(l);
  }
  emit(plugin: string): void {
    for (const l of [...this.#set]) {
      try {
        l(plugin);
      } catch {
        // A listener's failure must not undo the change.
      }
    }
  }
}

/**
 * A {@linkcode GrantStore} in memory.
 *
 * @example
 * ```ts
 * import { MemoryGrantStore } from "./grants.ts";
 * const store = new MemoryGrantStore();
 * await store.set("hello", ["db:read", "log"]);
 * await store.revoke("hello", ["db:read"]);
 * console.log(await store.get("hello")); // ["log"]
 * ```
 */
export class MemoryGrantStore implements GrantStore {
  #grants = new Map<string, string[]>();
  #listeners = new Listeners();

  /** The plugin's grants, or `undefined` when never decided. */
  get(plugin: string): Promise<string[] | undefined> {
    const g = this.#grants.get(plugin);
    return Promise.resolve(g ? [...g] : undefined);
  }

  /** Replaces the plugin's grants. */
  set(plugin: string, granted: readonly string[]): Promise<void> {
    try {
      this.#grants.set(plugin, canonicalGrants(granted));
    } catch (e) {
      return Promise.reject(e);
    }
    this.#listeners.emit(plugin);
    return Promise.resolve();
  }

  /** Revokes some or all grants. */
  revoke(plugin: string, permissions?: readonly string[]): Promise<void> {
    let drop: Set<string> | undefined;
    try {
      drop = permissions ? new Set(canonicalGrants(permissions)) : undefined;
    } catch (e) {
      return Promise.reject(e);
    }
    const current = this.#grants.get(plugin) ?? [];
    this.#grants.set(plugin, drop ? current.filter((p) => !drop.has(p)) : []);
    this.#listeners.emit(plugin);
    return Promise.resolve();
  }

  /** Listens for changes. */
  subscribe(listener: GrantListener): () => void {
    return this.#listeners.add(listener);
  }
}

/**
 * The part of the services' `SqlClient` (`host/services/sql_client.ts`) the
 * grant store uses; a `pg.Pool` fits too.
 */
export interface SqlQueryClient {
  /** Runs one statement with `$1…` parameters. */
  query(
    sql: string,
    params?: unknown[],
  ): Promise<{ rows: Record<string, unknown>[] }>;
}

/** Options of {@linkcode PgGrantStore}. */
export interface PgGrantStoreOptions {
  /**
   * The connection: the host's own (the services' `SqlDatabase.sqlClient`:
   * `npm:pg` pool or PGlite; never the pool plugin statements run on).
   */
  client: SqlQueryClient;
  /**
   * Table name (`table` or `schema.table`, plain lower-case names).
   * @default "goatkit.plugin_grants"
   */
  table?: string;
  /**
   * How long a read is reused, in ms. Changes made through this store apply
   * at once; changes made by another host within this time. 0 reads on every
   * call. @default 1000
   */
  cacheTtlMs?: number;
  /**
   * Called after each change written through this store (set, revoke,
   * delete), not after {@linkcode PgGrantStore.invalidate}: a cluster
   * publishes it to the other hosts.
   */
  onWrite?: (plugin: string) => void;
}

/**
 * A {@linkcode GrantStore} in PostgreSQL (table `goatkit.plugin_grants`:
 * `scope, plugin, granted jsonb, updated_at`), created on first use in the
 * host's own schema, which no plugin role can see (the old
 * `goatkit_plugin_grants` table of an upgraded database is moved there; see
 * `host_schema.ts`). Rows are
 * scoped by the host connection's application schema (`current_schema()`):
 * hosts sharing a database and schema share grants; deployments on other
 * schemas of one database (tests, staging) do not see each other's.
 *
 * @example
 * ```ts ignore
 * import { PgGrantStore } from "./grants.ts";
 * import { PgPoolClient } from "../host/services/sql_client.ts";
 * const store = new PgGrantStore({ client: new PgPoolClient({ url: Deno.env.get("DATABASE_URL")! }) });
 * await store.set("hello", ["db:read"]);
 * ```
 */
export class PgGrantStore implements GrantStore {
  #client: SqlQueryClient;
  #table: string;
  #ttl: number;
  #host: HostTable;
  #cache = new Map<string, { at: number; granted: string[] | undefined }>();
  #listeners = new Listeners();
  #onWrite: ((plugin: string) => void) | undefined;

  /** Creates the store; nothing is sent until first use. */
  constructor(options: PgGrantStoreOptions) {
    this.#onWrite = options.onWrite;
    const table = options.table ?? "goatkit.plugin_grants";
    this.#client = options.client;
    // Checks the name (a TypeError for anything but plain identifiers).
    this.#host = new HostTable(options.client, {
      table,
      columns: `scope text NOT NULL DEFAULT current_schema(),
        plugin text NOT NULL,
        granted jsonb NOT NULL,
        updated_at timestamptz NOT NULL DEFAULT now(),
        PRIMARY KEY (scope, plugin)`,
      scopedKey: ["plugin"],
      ...(options.table === undefined
        ? { legacy: "goatkit_plugin_grants" }
        : {}),
    });
    this.#table = this.#host.sqlName;
    this.#ttl = options.cacheTtlMs ?? 1000;
  }

  #ensure(): Promise<void> {
    return this.#host.ready();
  }

  /** The plugin's grants, or `undefined` when never decided. */
  async get(plugin: string): Promise<string[] | undefined> {
    const hit = this.#cache.get(plugin);
    if (hit && Date.now() - hit.at < this.#ttl) {
      return hit.granted ? [...hit.granted] : undefined;
    }
    await this.#ensure();
    const { rows } = await this.#client.query(
      `SELECT granted FROM ${this.#table}
       WHERE scope = current_schema() AND plugin = $1`,
      [plugin],
    );
    const raw = rows[0]?.granted;
    const list = raw === undefined
      ? undefined
      : (typeof raw === "string" ? JSON.parse(raw) : raw) as string[];
    this.#cache.set(plugin, { at: Date.now(), granted: list });
    return list ? [...list] : undefined;
  }

  /** Replaces the plugin's grants. */
  async set(plugin: string, granted: readonly string[]): Promise<void> {
    const list = canonicalGrants(granted);
    await this.#ensure();
    await this.#client.query(
      `INSERT INTO ${this.#table} (plugin, granted, updated_at) VALUES ($1, $2::jsonb, now())
       ON CONFLICT (scope, plugin) DO UPDATE SET granted = EXCLUDED.granted, updated_at = now()`,
      [plugin, JSON.stringify(list)],
    );
    this.#cache.delete(plugin);
    this.#listeners.emit(plugin);
    this.#onWrite?.(plugin);
  }

  /** Revokes some or all grants. */
  async revoke(plugin: string, permissions?: readonly string[]): Promise<void> {
    this.#cache.delete(plugin);
    const current = (await this.get(plugin)) ?? [];
    const drop = permissions
      ? new Set(canonicalGrants(permissions))
      : undefined;
    await this.set(plugin, drop ? current.filter((p) => !drop.has(p)) : []);
  }

  /** Forgets the plugin entirely (at uninstall), so the policy applies again. */
  async delete(plugin: string): Promise<void> {
    await this.#ensure();
    await this.#client.query(
      `DELETE FROM ${this.#table} WHERE scope = current_schema() AND plugin = $1`,
      [plugin],
    );
    this.#cache.delete(plugin);
    this.#listeners.emit(plugin);
    this.#onWrite?.(plugin);
  }

  /**
   * Forgets the cached grants of `plugin` and tells the listeners, as after
   * a change: for a change made elsewhere (another host), so that guarded
   * HostAPIs read the grants again.
   */
  invalidate(plugin: string): void {
    this.#cache.delete(plugin);
    this.#listeners.emit(plugin);
  }

  /** Every plugin's stored grants, read now (not cached). */
  async all(): Promise<Map<string, string[]>> {
    await this.#ensure();
    const { rows } = await this.#client.query(
      `SELECT plugin, granted FROM ${this.#table} WHERE scope = current_schema()`,
    );
    const out = new Map<string, string[]>();
    for (const row of rows) {
      const raw = row.granted;
      out.set(
        String(row.plugin),
        (typeof raw === "string" ? JSON.parse(raw) : raw) as string[],
      );
    }
    return out;
  }

  /** Listens for changes made through this store. */
  subscribe(listener: GrantListener): () => void {
    return this.#listeners.add(listener);
  }
}

/** A permission kind that can wait for an operator (every kind but `log`). */
export type ApprovalKind =
  | "cache"
  | "config"
  | "db"
  | "email"
  | "fs"
  | "http"
  | "plugins";

// Compile-time check: ApprovalKind is exactly every PermissionKind but `log`.
const _approvalKindsComplete: [
  Exclude<PermissionKind, "log">,
] extends [ApprovalKind] ? [ApprovalKind] extends [PermissionKind] ? true
  : never
  : never = true;

/**
 * The kinds a {@linkcode GrantPolicy} can hold back for an operator: every
 * permission kind except `log` (which is always granted).
 *
 * @example
 * ```ts
 * import { APPROVAL_KINDS } from "./grants.ts";
 * APPROVAL_KINDS.includes("db"); // true
 * ```
 */
export const APPROVAL_KINDS: readonly ApprovalKind[] = Object.freeze(
  PERMISSION_KINDS.filter((k): k is ApprovalKind => k !== "log").sort(),
);

/**
 * Reads an approval setting such as `GOATKIT_REQUIRE_APPROVAL` (or the
 * `server.requireApproval` key of `goatkit.json`) into the sorted kinds that
 * wait for an operator:
 *
 * - `all` — every kind but `log` (the default: `undefined`, `""` or an empty
 *   array give it too);
 * - `none` — nothing waits. **For development only**: every permission a
 *   plugin requests is granted at install, except secrets (see
 *   {@linkcode GrantPolicyOptions.mayBeSecret}). The host logs a warning at
 *   start;
 * - a list of kinds, comma-separated or an array (`db,http,email`).
 *
 * Throws a `TypeError` naming an unknown kind (`log` is not one: it never
 * waits).
 *
 * @example
 * ```ts
 * import { parseApprovalSetting } from "./grants.ts";
 * parseApprovalSetting("none"); // []
 * parseApprovalSetting(" HTTP, email "); // ["email", "http"]
 * parseApprovalSetting(undefined).length; // 7 (every kind but log)
 * ```
 */
export function parseApprovalSetting(
  setting: string | readonly string[] | undefined,
): ApprovalKind[] {
  const parts = typeof setting === "string"
    ? setting.split(",")
    : [...(setting ?? [])];
  const kinds = parts.map((k) => String(k).trim().toLowerCase()).filter((k) =>
    k
  );
  if (kinds.length === 0) return [...APPROVAL_KINDS];
  if (kinds.length === 1 && kinds[0] === "all") return [...APPROVAL_KINDS];
  if (kinds.length === 1 && kinds[0] === "none") return [];
  const out = new Set<ApprovalKind>();
  for (const k of kinds) {
    const kind = APPROVAL_KINDS.find((a) => a === k);
    if (!kind) {
      throw new TypeError(
        `Cannot use approval setting ${
          JSON.stringify(setting)
        }: unknown permission kind "${k}" (known: ${
          APPROVAL_KINDS.join(", ")
        }; or none / all alone)`,
      );
    }
    out.add(kind);
  }
  return [...out].sort();
}

/** Options of {@linkcode GrantPolicy}. */
export interface GrantPolicyOptions {
  /**
   * Kinds never granted without an operator's approval (see
   * {@linkcode parseApprovalSetting}).
   * @default every kind except `log` ({@linkcode APPROVAL_KINDS})
   */
  requireApproval?: readonly PermissionKind[];
  /**
   * Decides a single permission instead (true = grant now); overrides
   * `requireApproval` when given (never `mayBeSecret`).
   */
  autoGrant?: (permission: Permission) => boolean;
  /**
   * Whether the exact key of a `config:<key>` request may name a secret
   * (`GOATKIT_SECRET_<NAME>` or a name in the config file's `secrets`). Such
   * a request always waits for an operator, whatever `requireApproval` or
   * `autoGrant` say: a secret is handed out only for a grant an operator
   * approved. Wildcard requests (`config:app.*`, `config:*`) never cover a
   * secret, so they are decided like any other permission. The host passes
   * "a secret, or not a known host value"; without this option every exact
   * key is treated as one.
   * @default () => true
   */
  mayBeSecret?: (key: string) => boolean;
}

/** What the policy decided for a list of requested permissions. */
export interface GrantDecision {
  /** Granted without asking (canonical strings). */
  granted: string[];
  /** Waiting for an operator (canonical strings). */
  pending: string[];
}

/**
 * Decides which requested permissions are granted without asking: consent
 * by default. The default policy (that of `deno task serve` unless
 * `GOATKIT_REQUIRE_APPROVAL` says otherwise) grants only `log`; everything
 * else waits for an operator. Exact `config:` keys that may be secrets wait
 * under every policy (see {@linkcode GrantPolicyOptions.mayBeSecret}).
 *
 * @example
 * ```ts
 * import { GrantPolicy } from "./grants.ts";
 * new GrantPolicy().decide(["db:read", "http:external", "log"]);
 * // { granted: ["log"], pending: ["db:read", "http:external"] }
 * new GrantPolicy({ requireApproval: ["http", "email"] }).decide(["db:read", "http:external"]);
 * // { granted: ["db:read"], pending: ["http:external"] }
 * new GrantPolicy({ requireApproval: [] }).decide(["config:API_KEY", "config:app.*"]);
 * // { granted: ["config:app.*"], pending: ["config:API_KEY"] }
 * ```
 */
export class GrantPolicy {
  #requireApproval: ReadonlySet<PermissionKind>;
  #autoGrant: ((p: Permission) => boolean) | undefined;
  #mayBeSecret: (key: string) => boolean;

  /** Creates the policy. */
  constructor(options: GrantPolicyOptions = {}) {
    this.#requireApproval = new Set(
      options.requireApproval ?? APPROVAL_KINDS,
    );
    this.#autoGrant = options.autoGrant;
    this.#mayBeSecret = options.mayBeSecret ?? (() => true);
  }

  /**
   * A policy from a setting such as the environment variable
   * `GOATKIT_REQUIRE_APPROVAL`, read by {@linkcode parseApprovalSetting}:
   * `all` (the default, also for `undefined` or empty), `none` (development
   * only) or a comma-separated list of kinds that wait (`db,http,email`).
   * Unknown kinds throw a `TypeError`. `options` adds the other policy
   * options (such as `mayBeSecret`).
   *
   * @example
   * ```ts
   * import { GrantPolicy } from "./grants.ts";
   * GrantPolicy.fromSetting("all").decide(["db:read"]).pending; // ["db:read"]
   * GrantPolicy.fromSetting("none").decide(["http:external"]).granted; // ["http:external"]
   * ```
   */
  static fromSetting(
    setting: string | readonly string[] | undefined,
    options: Omit<GrantPolicyOptions, "requireApproval"> = {},
  ): GrantPolicy {
    return new GrantPolicy({
      ...options,
      requireApproval: parseApprovalSetting(setting),
    });
  }

  /** The kinds that wait for approval (empty when `autoGrant` decides). */
  get requireApproval(): PermissionKind[] {
    return this.#autoGrant ? [] : [...this.#requireApproval].sort();
  }

  /**
   * What of `requested` is still pending with `granted`
   * ({@linkcode pendingPermissions} with this policy's `mayBeSecret`).
   */
  pending(
    requested: readonly string[],
    granted: readonly string[],
  ): string[] {
    return pendingPermissions(requested, granted, {
      mayBeSecret: this.#mayBeSecret,
    });
  }

  /** Splits `requested` into what is granted now and what waits. */
  decide(requested: readonly string[]): GrantDecision {
    const granted: string[] = [];
    const pending: string[] = [];
    for (const text of canonicalPermissions(requested)) {
      const p = parsePermission(text);
      const ok = p.kind === "log" ||
        (!(p.kind === "config" && !p.wildcard &&
          this.#mayBeSecret(p.pattern)) &&
          (this.#autoGrant
            ? this.#autoGrant(p)
            : !this.#requireApproval.has(p.kind)));
      (ok ? granted : pending).push(text);
    }
    return { granted, pending };
  }
}

/** Options of {@linkcode pendingPermissions}. */
export interface PendingPermissionsOptions {
  /**
   * Whether an exact `config:<key>` may name a secret; such a request is
   * pending until a grant names exactly that key (a wildcard grant never
   * hands out a secret). See {@linkcode GrantPolicyOptions.mayBeSecret}.
   * @default () => true
   */
  mayBeSecret?: (key: string) => boolean;
}

/**
 * The requested permissions that no grant covers (what an operator still has
 * to decide). `log` is never pending; an exact `config:` key that may be a
 * secret is pending until a grant names it exactly.
 *
 * @example
 * ```ts
 * import { pendingPermissions } from "./grants.ts";
 * pendingPermissions(["db:read:t", "http:api.x.com"], ["db:read"]); // ["http:api.x.com"]
 * pendingPermissions(["config:API_KEY", "config:app.*"], ["config:*"]); // ["config:API_KEY"]
 * ```
 */
export function pendingPermissions(
  requested: readonly string[],
  granted: readonly string[],
  options: PendingPermissionsOptions = {},
): string[] {
  const mayBeSecret = options.mayBeSecret ?? (() => true);
  const g = granted.map((s) => parsePermission(s));
  return canonicalPermissions(requested).filter((r) => {
    const p = parsePermission(r);
    if (p.kind === "log") return false;
    if (p.kind === "config" && !p.wildcard && mayBeSecret(p.pattern)) {
      return !g.some((x) =>
        x.kind === "config" && !x.wildcard && x.pattern === p.pattern
      );
    }
    return !g.some((x) => covers(x, p));
  });
}

/** Options of {@linkcode applyGrantPolicy}. */
export interface ApplyGrantPolicyOptions {
  /** The policy. @default a default {@linkcode GrantPolicy} */
  policy?: GrantPolicy;
  /** What the previous version requested (an upgrade): only new requests are decided. */
  previousRequested?: readonly string[];
}

/**
 * Applies the policy when a plugin is installed or upgraded: a plugin with
 * no stored decision gets the policy's grants; an upgrade adds the policy's
 * grants for newly requested permissions (see {@linkcode diffRequested}) and
 * keeps the operator's earlier decisions. Returns what is granted and what is
 * pending afterwards.
 *
 * @example
 * ```ts
 * import { applyGrantPolicy, MemoryGrantStore } from "./grants.ts";
 * const store = new MemoryGrantStore();
 * const r = await applyGrantPolicy(store, "hello", ["db:read", "email:*@x.com", "log"]);
 * console.log(r.granted, r.pending); // ["log"] ["db:read", "email:*@x.com"]
 * await store.set("hello", [...r.granted, "db:read"]); // the operator approves db:read
 * ```
 */
export async function applyGrantPolicy(
  store: GrantStore,
  plugin: string,
  requested: readonly string[],
  options: ApplyGrantPolicyOptions = {},
): Promise<GrantDecision> {
  const policy = options.policy ?? new GrantPolicy();
  const current = await store.get(plugin);
  let granted: string[];
  if (current === undefined) {
    granted = policy.decide(requested).granted;
    await store.set(plugin, granted);
  } else if (options.previousRequested) {
    const fresh = diffRequested(options.previousRequested, requested);
    const add = policy.decide(fresh).granted;
    granted = canonicalPermissions([...current, ...add]);
    if (add.length > 0) await store.set(plugin, granted);
  } else {
    granted = current;
  }
  return {
    granted: canonicalPermissions(granted),
    pending: policy.pending(requested, granted),
  };
}
