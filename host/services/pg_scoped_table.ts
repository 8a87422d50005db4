/**
 * {@linkcode ScopedTable}: a host table whose rows carry a `scope` column
 * (the `current_schema()` of the host's connection, its application
 * schema) with an index on `(scope, …)`, and the retention by age and count
 * that the log, audit and session tables share. The index is created under
 * the host's schema advisory lock, like the table (`host_schema.ts`).
 *
 * @module
 */

import {
  HOST_LOCK_CLASS,
  HOST_LOCKS,
  type HostTable,
} from "../../permissions/host_schema.ts";
import type { SqlClient } from "./sql_client.ts";

/** What a prune removed. */
export interface PruneResult {
  /** Rows older than the retention. */
  byAge: number;
  /** Rows beyond the count cap. */
  byCount: number;
}

/** Options of {@linkcode ScopedTable.prune}. */
export interface ScopedPruneOptions {
  /** The row's time column. */
  timeColumn: string;
  /** Rows older than this many days go (0: none by age). */
  retentionDays: number;
  /** Rows beyond this many, oldest first (by `id`), go (0: no cap). */
  maxRows: number;
}

/**
 * A host table with a scope index (see the module doc).
 *
 * @example
 * ```ts ignore
 * import { HostTable } from "../../permissions/host_schema.ts";
 * import { ScopedTable } from "./pg_scoped_table.ts";
 * const host = new HostTable(client, { table: "goatkit.logs", columns: "id bigserial PRIMARY KEY, scope text NOT NULL DEFAULT current_schema(), ts timestamptz NOT NULL" });
 * const t = new ScopedTable(client, host, ["id"]);
 * await t.ready();
 * ```
 */
export class ScopedTable {
  readonly #client: SqlClient;
  readonly #host: HostTable;
  readonly #indexColumns: readonly string[];
  #ready: Promise<void> | undefined;
  /** The quoted, qualified table name for SQL text. */
  readonly sqlName: string;

  /** Wraps `host`; the index is on `(scope, ...indexColumns)`. */
  constructor(
    client: SqlClient,
    host: HostTable,
    indexColumns: readonly string[],
  ) {
    for (const c of indexColumns) {
      if (!/^[a-z_][a-z0-9_]*$/.test(c)) {
        throw new TypeError(`Cannot index column "${c}": not a plain name`);
      }
    }
    this.#client = client;
    this.#host = host;
    this.#indexColumns = indexColumns;
    this.sqlName = host.sqlName;
  }

  /** Resolves once the table and its index exist (a failure is retried at the next call). */
  ready(): Promise<void> {
    this.#ready ??= this.#create().catch((e) => {
      this.#ready = undefined;
      throw e;
    });
    return this.#ready;
  }

  async #create(): Promise<void> {
    await this.#host.ready();
    const [schema, table] = this.sqlName.split(".").map((x) =>
      x.replace(/^"|"$/g, "")
    );
    const index = `${table}_scope_${this.#indexColumns.join("_")}_idx`;
    await this.#client.query(`DO $goatkit$
BEGIN
  PERFORM pg_catalog.pg_advisory_xact_lock(${HOST_LOCK_CLASS}, ${HOST_LOCKS.schema});
  IF pg_catalog.to_regclass('"${schema}"."${index}"') IS NULL THEN
    CREATE INDEX "${index}" ON ${this.sqlName} (scope${
      this.#indexColumns.map((c) => `, ${c}`).join("")
    });
  END IF;
END
$goatkit$`);
  }

  /** Deletes this scope's rows past the retention; returns how many. */
  async prune(o: ScopedPruneOptions): Promise<PruneResult> {
    await this.ready();
    let byAge = 0;
    let byCount = 0;
    if (o.retentionDays > 0) {
      const r = await this.#client.query(
        `DELETE FROM ${this.sqlName}
          WHERE scope = current_schema()
            AND ${o.timeColumn} < now() - ($1::float8 * interval '1 day')`,
        [o.retentionDays],
      );
      byAge = r.rowCount;
    }
    if (o.maxRows > 0) {
      const r = await this.#client.query(
        `DELETE FROM ${this.sqlName}
          WHERE scope = current_schema()
            AND id <= (SELECT id FROM ${this.sqlName}
                        WHERE scope = current_schema()
                        ORDER BY id DESC OFFSET $1 LIMIT 1)`,
        [o.maxRows],
      );
      byCount = r.rowCount;
    }
    return { byAge, byCount };
  }
}
