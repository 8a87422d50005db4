/**
 * Where the operator's per-plugin quota overrides (set through the admin
 * API or page) are kept: {@linkcode PgQuotaStore} in the host's database
 * (table `goatkit.plugin_quotas`, created under the host's advisory lock
 * like the grant store's), {@linkcode MemoryQuotaStore} for tests and hosts
 * without one.
 *
 * @module
 */

import { HostTable } from "../../permissions/host_schema.ts";
import type { SqlQueryClient } from "../../permissions/grants.ts";
import { parseQuotaLimits, type QuotaLimits } from "./quota_limits.ts";

/** Storage of per-plugin quota overrides. */
export interface QuotaStore {
  /** Every plugin's overrides. */
  all(): Promise<Map<string, Partial<QuotaLimits>>>;
  /** One plugin's overrides (`{}` when none). */
  get(plugin: string): Promise<Partial<QuotaLimits>>;
  /** Replaces one plugin's overrides; `{}` removes them. */
  set(plugin: string, limits: Partial<QuotaLimits>): Promise<void>;
}

/**
 * Overrides in memory (lost at exit).
 *
 * @example
 * ```ts
 * import { MemoryQuotaStore } from "./quota_store.ts";
 * const store = new MemoryQuotaStore();
 * await store.set("hello", { concurrentCalls: 2 });
 * (await store.get("hello")).concurrentCalls; // 2
 * ```
 */
export class MemoryQuotaStore implements QuotaStore {
  #map = new Map<string, Partial<QuotaLimits>>();

  /** Every plugin's overrides. */
  all(): Promise<Map<string, Partial<QuotaLimits>>> {
    return Promise.resolve(
      new Map([...this.#map].map(([k, v]) => [k, { ...v }])),
    );
  }

  /** One plugin's overrides. */
  get(plugin: string): Promise<Partial<QuotaLimits>> {
    return Promise.resolve({ ...this.#map.get(plugin) });
  }

  /** Replaces one plugin's overrides. */
  set(plugin: string, limits: Partial<QuotaLimits>): Promise<void> {
    if (Object.keys(limits).length === 0) this.#map.delete(plugin);
    else this.#map.set(plugin, { ...limits });
    return Promise.resolve();
  }
}

/** Options of {@linkcode PgQuotaStore}. */
export interface PgQuotaStoreOptions {
  /** The host's own connection (never the pool plugin statements run on). */
  client: SqlQueryClient;
  /** Table (`table` or `schema.table`). @default "goatkit.plugin_quotas" */
  table?: string;
}

/**
 * Overrides in PostgreSQL (or PGlite): one row per plugin with its
 * overrides as JSON, shared by every host on the database.
 *
 * @example
 * ```ts ignore
 * import { PgQuotaStore } from "./quota_store.ts";
 * const store = new PgQuotaStore({ client: pool });
 * await store.set("hello", { emailsPerHour: 10 });
 * ```
 */
export class PgQuotaStore implements QuotaStore {
  #client: SqlQueryClient;
  #host: HostTable;
  #table: string;

  /** Creates the store; nothing is sent until first use. */
  constructor(options: PgQuotaStoreOptions) {
    this.#client = options.client;
    this.#host = new HostTable(options.client, {
      table: options.table ?? "goatkit.plugin_quotas",
      // Scoped by the application schema, as grants and plugin states.
      columns: `scope text NOT NULL DEFAULT current_schema(),
        plugin text NOT NULL,
        limits jsonb NOT NULL,
        updated_at timestamptz NOT NULL DEFAULT now(),
        PRIMARY KEY (scope, plugin)`,
      scopedKey: ["plugin"],
    });
    this.#table = this.#host.sqlName;
  }

  /** Every plugin's overrides. */
  async all(): Promise<Map<string, Partial<QuotaLimits>>> {
    await this.#host.ready();
    const { rows } = await this.#client.query(
      `SELECT plugin, limits FROM ${this.#table} WHERE scope = current_schema()`,
    );
    const out = new Map<string, Partial<QuotaLimits>>();
    for (const row of rows) out.set(String(row.plugin), decode(row.limits));
    return out;
  }

  /** One plugin's overrides. */
  async get(plugin: string): Promise<Partial<QuotaLimits>> {
    await this.#host.ready();
    const { rows } = await this.#client.query(
      `SELECT limits FROM ${this.#table}
       WHERE scope = current_schema() AND plugin = $1`,
      [plugin],
    );
    return rows[0] ? decode(rows[0].limits) : {};
  }

  /** Replaces one plugin's overrides; `{}` deletes its row. */
  async set(plugin: string, limits: Partial<QuotaLimits>): Promise<void> {
    await this.#host.ready();
    if (Object.keys(limits).length === 0) {
      await this.#client.query(
        `DELETE FROM ${this.#table}
         WHERE scope = current_schema() AND plugin = $1`,
        [plugin],
      );
      return;
    }
    await this.#client.query(
      `INSERT INTO ${this.#table} (plugin, limits, updated_at) VALUES ($1, $2::jsonb, now())
       ON CONFLICT (scope, plugin) DO UPDATE SET limits = EXCLUDED.limits, updated_at = now()`,
      [plugin, JSON.stringify(limits)],
    );
  }
}

/** A stored row's limits; what no longer parses is dropped, not fatal. */
function decode(raw: unknown): Partial<QuotaLimits> {
  try {
    const v = typeof raw === "string" ? JSON.parse(raw) : raw;
    return parseQuotaLimits(v, "stored override");
  } catch {
    return {};
  }
}
