/**
 * Plugin enabled state kept in PostgreSQL (or PGlite), so it survives
 * restarts and is shared by several hosts on the same database and
 * application schema (rows are scoped by `current_schema()`): table
 * `goatkit.plugin_state`, in the host's own schema that no plugin role can
 * see (created on first use;
 * the old `goatkit_plugin_state` table of an upgraded database is moved
 * there, see `permissions/host_schema.ts`). Fixes GoatFlow's MySQL-only
 * upsert, which silently failed on PostgreSQL.
 *
 * @module
 */

import type { PluginState, StateStore } from "../state_store.ts";
import type { SqlClient } from "./sql_client.ts";
import { HostTable } from "../../permissions/host_schema.ts";

/**
 * A {@linkcode StateStore} over any {@linkcode SqlClient}: the host's own
 * client of `PgDatabase` or `PgliteDatabase` (`sqlClient`).
 *
 * @example
 * ```ts ignore
 * import { PgliteDatabase } from "./database.ts";
 * import { PgStateStore } from "./pg_state_store.ts";
 * const db = new PgliteDatabase({});
 * const store = new PgStateStore({ client: db.sqlClient });
 * await store.set("hello", { enabled: false, reason: "quarantined: crashed 3 times" });
 * console.log(await store.get("hello")); // { enabled: false, reason: "quarantined: crashed 3 times" }
 * await db.close();
 * ```
 */
export class PgStateStore implements StateStore {
  #client: SqlClient;
  #table: string;
  #host: HostTable;

  /**
   * Uses `client`; the table (`table` or `schema.table`, plain lower-case
   * names) defaults to `goatkit.plugin_state`. Rows are scoped by the
   * connection's application schema (`current_schema()`): hosts sharing a
   * database and schema share plugin states, other schemas do not.
   */
  constructor(opts: { client: SqlClient; table?: string }) {
    this.#client = opts.client;
    const table = opts.table ?? "goatkit.plugin_state";
    this.#host = new HostTable(opts.client, {
      table,
      columns: `scope text NOT NULL DEFAULT current_schema(),
         name text NOT NULL,
         enabled boolean NOT NULL,
         reason text,
         updated_at timestamptz NOT NULL DEFAULT now(),
         PRIMARY KEY (scope, name)`,
      scopedKey: ["name"],
      ...(opts.table === undefined ? { legacy: "goatkit_plugin_state" } : {}),
    });
    this.#table = this.#host.sqlName;
  }

  #ensure(): Promise<void> {
    return this.#host.ready();
  }

  /** Reads a plugin's state. */
  async get(name: string): Promise<PluginState | undefined> {
    await this.#ensure();
    const { rows } = await this.#client.query(
      `SELECT enabled, reason FROM ${this.#table}
       WHERE scope = current_schema() AND name = $1`,
      [name],
    );
    const row = rows[0];
    if (!row) return undefined;
    return row.reason === null
      ? { enabled: row.enabled as boolean }
      : { enabled: row.enabled as boolean, reason: row.reason as string };
  }

  /** Stores a plugin's state (upsert). */
  async set(name: string, state: PluginState): Promise<void> {
    await this.#ensure();
    await this.#client.query(
      `INSERT INTO ${this.#table} (name, enabled, reason) VALUES ($1, $2, $3)
       ON CONFLICT (scope, name) DO UPDATE
         SET enabled = EXCLUDED.enabled, reason = EXCLUDED.reason, updated_at = now()`,
      [name, state.enabled, state.reason ?? null],
    );
  }

  /** Every plugin's stored state, read now. */
  async all(): Promise<Map<string, PluginState>> {
    await this.#ensure();
    const { rows } = await this.#client.query(
      `SELECT name, enabled, reason FROM ${this.#table}
       WHERE scope = current_schema()`,
    );
    const out = new Map<string, PluginState>();
    for (const row of rows) {
      out.set(
        String(row.name),
        row.reason === null
          ? { enabled: row.enabled as boolean }
          : { enabled: row.enabled as boolean, reason: row.reason as string },
      );
    }
    return out;
  }

  /** Forgets a plugin's state. */
  async delete(name: string): Promise<void> {
    await this.#ensure();
    await this.#client.query(
      `DELETE FROM ${this.#table} WHERE scope = current_schema() AND name = $1`,
      [name],
    );
  }
}
