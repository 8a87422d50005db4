/**
 * Extism plugins' vars (`var_get` / `var_set`) kept in PostgreSQL (or
 * PGlite): table `goatkit.extism_vars` in the host's own schema, which no
 * plugin role can see (created on first use under the host tables' advisory
 * lock, see `permissions/host_schema.ts`). Rows are scoped by the
 * connection's application schema (`current_schema()`) and keyed by plugin
 * and var name, so each plugin has its own namespace and hosts sharing a
 * database and schema share the vars. Vars survive restarts and upgrades;
 * an uninstall forgets them ({@linkcode PgExtismVarStore.deletePlugin}).
 *
 * @module
 */

import { ExtismVarLimitError } from "../model/errors.ts";
import type { SqlClient } from "./sql_client.ts";
import { HostTable } from "../../permissions/host_schema.ts";

/** Options of {@linkcode PgExtismVarStore}. */
export interface PgExtismVarStoreOptions {
  /** The host's SQL client (of `PgDatabase` or `PgliteDatabase`). */
  client: SqlClient;
  /** `table` or `schema.table`. @default "goatkit.extism_vars" */
  table?: string;
}

/**
 * The vars of every Extism plugin of a host; {@linkcode forPlugin} gives one
 * plugin's store (the runtime's `ExtismVarStore`).
 *
 * @example
 * ```ts ignore
 * import { PgliteDatabase } from "./database.ts";
 * import { PgExtismVarStore } from "./pg_extism_var_store.ts";
 * const db = new PgliteDatabase({});
 * const vars = new PgExtismVarStore({ client: db.sqlClient }).forPlugin("echo");
 * await vars.set("count", new TextEncoder().encode("1"));
 * console.log(await vars.get("count")); // Uint8Array [49]
 * await db.close();
 * ```
 */
export class PgExtismVarStore {
  #client: SqlClient;
  #host: HostTable;
  #table: string;

  /** Creates the store; nothing is sent before the first call. */
  constructor(options: PgExtismVarStoreOptions) {
    this.#client = options.client;
    this.#host = new HostTable(options.client, {
      table: options.table ?? "goatkit.extism_vars",
      columns: `scope text NOT NULL DEFAULT current_schema(),
         plugin text NOT NULL,
         key text NOT NULL,
         value bytea NOT NULL,
         updated_at timestamptz NOT NULL DEFAULT now(),
         PRIMARY KEY (scope, plugin, key)`,
      scopedKey: ["plugin", "key"],
    });
    this.#table = this.#host.sqlName;
  }

  /** The value of `plugin`'s var `key`, or `null`. */
  async get(plugin: string, key: string): Promise<Uint8Array | null> {
    await this.#host.ready();
    const { rows } = await this.#client.query(
      `SELECT encode(value, 'base64') AS value FROM ${this.#table}
       WHERE scope = current_schema() AND plugin = $1 AND key = $2`,
      [plugin, key],
    );
    const v = rows[0]?.value;
    return typeof v === "string"
      ? Uint8Array.fromBase64(v.replace(/\s+/g, ""))
      : null;
  }

  /**
   * Stores (or with `null` deletes) `plugin`'s var `key`. With `maxBytes`,
   * a write that would make the plugin's vars (keys and values, as the
   * runtime counts them) larger than that in total is refused with
   * {@linkcode ExtismVarLimitError}.
   */
  async set(
    plugin: string,
    key: string,
    value: Uint8Array | null,
    maxBytes?: number,
  ): Promise<void> {
    await this.#host.ready();
    if (value === null) {
      await this.#client.query(
        `DELETE FROM ${this.#table}
         WHERE scope = current_schema() AND plugin = $1 AND key = $2`,
        [plugin, key],
      );
      return;
    }
    const write = `INSERT INTO ${this.#table} (plugin, key, value)
       VALUES ($1, $2, decode($3, 'base64'))
       ON CONFLICT (scope, plugin, key) DO UPDATE
         SET value = EXCLUDED.value, updated_at = now()`;
    const params = [plugin, key, value.toBase64()];
    if (maxBytes === undefined) {
      await this.#client.query(write, params);
      return;
    }
    // The cap holds across hosts: the sum and the write happen under a
    // lock of this plugin's vars (two hosts would both pass a check made
    // apart from the write).
    await this.#client.transaction({}, async (s) => {
      await s.query(
        `SELECT pg_catalog.pg_advisory_xact_lock(pg_catalog.hashtext(
           'goatkit.extism_vars ' || pg_catalog.current_schema() || ' ' || $1))`,
        [plugin],
      );
      const { rows } = await s.query(
        `SELECT coalesce(sum(octet_length(key) + octet_length(value)), 0)::text
           AS used
         FROM ${this.#table}
         WHERE scope = current_schema() AND plugin = $1 AND key <> $2`,
        [plugin, key],
      );
      const size = new TextEncoder().encode(key).byteLength + value.byteLength;
      if (Number(rows[0]?.used ?? 0) + size > maxBytes) {
        throw new ExtismVarLimitError({ plugin, key, limit: maxBytes });
      }
      await s.query(write, params);
    });
  }

  /** Forgets every var of `plugin` (at uninstall). */
  async deletePlugin(plugin: string): Promise<void> {
    await this.#host.ready();
    await this.#client.query(
      `DELETE FROM ${this.#table} WHERE scope = current_schema() AND plugin = $1`,
      [plugin],
    );
  }

  /**
   * One plugin's store, the shape of the Extism runtime's `ExtismVarStore`
   * (keys in the plugin's own namespace); with `maxBytes`, writes past that
   * total are refused here too.
   */
  forPlugin(
    plugin: string,
    maxBytes?: number,
  ): {
    get(key: string): Promise<Uint8Array | null>;
    set(key: string, value: Uint8Array | null): Promise<void>;
  } {
    return {
      get: (key) => this.get(plugin, key),
      set: (key, value) => this.set(plugin, key, value, maxBytes),
    };
  }
}
