/**
 * Plugin enabled state kept in PostgreSQL (or PGlite), so it survives
 * restarts and is shared by several hosts: table `goatkit_plugin_state`
 * (created on first use). Fixes GoatFlow's MySQL-only upsert, which silently
 * failed on PostgreSQL.
 *
 * @module
 */

import type { PluginState, StateStore } from "../state_store.ts";
import type { SqlClient } from "./sql_client.ts";
import { quoteIdent } from "../../permissions/pg_privileges.ts";

/**
 * A {@linkcode StateStore} over any {@linkcode SqlClient} (`PgDatabase` or
 * `PgliteDatabase`'s `sqlClient`).
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
  #ready: Promise<void> | undefined;

  /** Uses `client`; the table name defaults to `goatkit_plugin_state`. */
  constructor(opts: { client: SqlClient; table?: string }) {
    this.#client = opts.client;
    this.#table = quoteIdent(opts.table ?? "goatkit_plugin_state");
  }

  #ensure(): Promise<void> {
    this.#ready ??= this.#client.query(
      `CREATE TABLE IF NOT EXISTS ${this.#table} (
         name text PRIMARY KEY,
         enabled boolean NOT NULL,
         reason text,
         updated_at timestamptz NOT NULL DEFAULT now()
       )`,
    ).then(() => {}, (e) => {
      this.#ready = undefined;
      throw e;
    });
    return this.#ready;
  }

  /** Reads a plugin's state. */
  async get(name: string): Promise<PluginState | undefined> {
    await this.#ensure();
    const { rows } = await this.#client.query(
      `SELECT enabled, reason FROM ${this.#table} WHERE name = $1`,
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
       ON CONFLICT (name) DO UPDATE
         SET enabled = EXCLUDED.enabled, reason = EXCLUDED.reason, updated_at = now()`,
      [name, state.enabled, state.reason ?? null],
    );
  }

  /** Forgets a plugin's state. */
  async delete(name: string): Promise<void> {
    await this.#ensure();
    await this.#client.query(`DELETE FROM ${this.#table} WHERE name = $1`, [
      name,
    ]);
  }
}
