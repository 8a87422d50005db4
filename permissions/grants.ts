/**
 * Grants: what the operator approved for each plugin, where it is kept
 * ({@linkcode MemoryGrantStore}, {@linkcode PgGrantStore}), and the
 * {@linkcode GrantPolicy} that decides what is granted without asking (by
 * default everything requested except `http:` and `email:`, which wait for an
 * operator's approval).
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
  /** The connection (the services' `SqlClient`: `npm:pg` pool or PGlite). */
  client: SqlQueryClient;
  /** Table name. @default "goatkit_plugin_grants" */
  table?: string;
  /**
   * How long a read is reused, in ms. Changes made through this store apply
   * at once; changes made by another host within this time. 0 reads on every
   * call. @default 1000
   */
  cacheTtlMs?: number;
}

/**
 * A {@linkcode GrantStore} in PostgreSQL (table `goatkit_plugin_grants`:
 * `plugin text primary key, granted jsonb, updated_at timestamptz`), created
 * on first use.
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
  #ready: Promise<void> | undefined;
  #cache = new Map<string, { at: number; granted: string[] | undefined }>();
  #listeners = new Listeners();

  /** Creates the store; nothing is sent until first use. */
  constructor(options: PgGrantStoreOptions) {
    const table = options.table ?? "goatkit_plugin_grants";
    if (!/^[a-z_][a-z0-9_]*(\.[a-z_][a-z0-9_]*)?$/.test(table)) {
      throw new TypeError(
        `Cannot use grant table "${table}": not a plain SQL identifier`,
      );
    }
    this.#client = options.client;
    this.#table = table;
    this.#ttl = options.cacheTtlMs ?? 1000;
  }

  #ensure(): Promise<void> {
    this.#ready ??= this.#client.query(
      `CREATE TABLE IF NOT EXISTS ${this.#table} (
        plugin text PRIMARY KEY,
        granted jsonb NOT NULL,
        updated_at timestamptz NOT NULL DEFAULT now()
      )`,
    ).then(() => undefined, (e) => {
      this.#ready = undefined;
      throw e;
    });
    return this.#ready;
  }

  /** The plugin's grants, or `undefined` when never decided. */
  async get(plugin: string): Promise<string[] | undefined> {
    const hit = this.#cache.get(plugin);
    if (hit && Date.now() - hit.at < this.#ttl) {
      return hit.granted ? [...hit.granted] : undefined;
    }
    await this.#ensure();
    const { rows } = await this.#client.query(
      `SELECT granted FROM ${this.#table} WHERE plugin = $1`,
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
       ON CONFLICT (plugin) DO UPDATE SET granted = EXCLUDED.granted, updated_at = now()`,
      [plugin, JSON.stringify(list)],
    );
    this.#cache.delete(plugin);
    this.#listeners.emit(plugin);
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
    await this.#client.query(`DELETE FROM ${this.#table} WHERE plugin = $1`, [
      plugin,
    ]);
    this.#cache.delete(plugin);
    this.#listeners.emit(plugin);
  }

  /** Listens for changes made through this store. */
  subscribe(listener: GrantListener): () => void {
    return this.#listeners.add(listener);
  }
}

/** Options of {@linkcode GrantPolicy}. */
export interface GrantPolicyOptions {
  /**
   * Kinds never granted without an operator's approval.
   * @default ["http", "email"]
   */
  requireApproval?: readonly PermissionKind[];
  /**
   * Decides a single permission instead (true = grant now); overrides
   * `requireApproval` when given.
   */
  autoGrant?: (permission: Permission) => boolean;
}

/** What the policy decided for a list of requested permissions. */
export interface GrantDecision {
  /** Granted without asking (canonical strings). */
  granted: string[];
  /** Waiting for an operator (canonical strings). */
  pending: string[];
}

/**
 * Decides which requested permissions are granted without asking. The
 * default (used by `deno task serve`) grants everything except `http:` and
 * `email:` permissions.
 *
 * @example
 * ```ts
 * import { GrantPolicy } from "./grants.ts";
 * new GrantPolicy().decide(["db:read", "http:external", "log"]);
 * // { granted: ["db:read", "log"], pending: ["http:external"] }
 * new GrantPolicy({ requireApproval: [] }).decide(["http:external"]).granted; // ["http:external"]
 * ```
 */
export class GrantPolicy {
  #requireApproval: ReadonlySet<PermissionKind>;
  #autoGrant: ((p: Permission) => boolean) | undefined;

  /** Creates the policy. */
  constructor(options: GrantPolicyOptions = {}) {
    this.#requireApproval = new Set(
      options.requireApproval ?? ["http", "email"],
    );
    this.#autoGrant = options.autoGrant;
  }

  /**
   * A policy from a setting such as the environment variable
   * `GOATKIT_REQUIRE_APPROVAL`: a comma-separated list of kinds that wait for
   * an operator (`http,email`), `none` (grant everything requested) or `all`
   * (grant nothing without approval). `undefined` or empty gives the
   * default (`http,email`). Unknown kinds throw a `TypeError`.
   *
   * @example
   * ```ts
   * import { GrantPolicy } from "./grants.ts";
   * GrantPolicy.fromSetting("all").decide(["db:read"]).pending; // ["db:read"]
   * GrantPolicy.fromSetting("none").decide(["http:external"]).granted; // ["http:external"]
   * ```
   */
  static fromSetting(setting: string | undefined): GrantPolicy {
    const text = (setting ?? "").trim().toLowerCase();
    if (text === "") return new GrantPolicy();
    if (text === "none") return new GrantPolicy({ requireApproval: [] });
    const all: PermissionKind[] = PERMISSION_KINDS.filter((k) => k !== "log");
    if (text === "all") return new GrantPolicy({ requireApproval: all });
    const kinds = text.split(",").map((k) => k.trim()).filter((k) => k);
    for (const k of kinds) {
      if (!all.includes(k as PermissionKind)) {
        throw new TypeError(
          `Cannot use approval setting "${setting}": unknown permission kind "${k}" (known: ${
            all.join(", ")
          }, or none / all)`,
        );
      }
    }
    return new GrantPolicy({ requireApproval: kinds as PermissionKind[] });
  }

  /** The kinds that wait for approval (empty when `autoGrant` decides). */
  get requireApproval(): PermissionKind[] {
    return this.#autoGrant ? [] : [...this.#requireApproval].sort();
  }

  /** Splits `requested` into what is granted now and what waits. */
  decide(requested: readonly string[]): GrantDecision {
    const granted: string[] = [];
    const pending: string[] = [];
    for (const text of canonicalPermissions(requested)) {
      const p = parsePermission(text);
      const ok = p.kind === "log" ||
        (this.#autoGrant
          ? this.#autoGrant(p)
          : !this.#requireApproval.has(p.kind));
      (ok ? granted : pending).push(text);
    }
    return { granted, pending };
  }
}

/**
 * The requested permissions that no grant covers (what an operator still has
 * to decide). `log` is never pending.
 *
 * @example
 * ```ts
 * import { pendingPermissions } from "./grants.ts";
 * pendingPermissions(["db:read:t", "http:api.x.com"], ["db:read"]); // ["http:api.x.com"]
 * ```
 */
export function pendingPermissions(
  requested: readonly string[],
  granted: readonly string[],
): string[] {
  const g = granted.map((s) => parsePermission(s));
  return canonicalPermissions(requested).filter((r) => {
    const p = parsePermission(r);
    return p.kind !== "log" && !g.some((x) => covers(x, p));
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
 * const r = await applyGrantPolicy(store, "hello", ["db:read", "email:*@x.com"]);
 * console.log(r.granted, r.pending); // ["db:read"] ["email:*@x.com"]
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
    pending: pendingPermissions(requested, granted),
  };
}
