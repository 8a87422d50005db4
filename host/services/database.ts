/**
 * The database service: PostgreSQL through `npm:pg` (`DATABASE_URL`), named
 * databases through the `@name:` query prefix (`DATABASE_URL_<NAME>`), and
 * the embedded default PGlite in `./data/pg`, started lazily.
 *
 * Every plugin statement runs as the plugin's own role, so the database
 * itself enforces the grant:
 *
 * 1. the host refuses statements that could leave the role (see `sql_guard.ts`);
 * 2. `BEGIN` (`READ ONLY` for read calls), `SET LOCAL ROLE gk_plugin_<name>`,
 *    `SET LOCAL search_path = plugin_<name>, public`,
 *    `SET LOCAL statement_timeout = <ms>` — sent in one round trip;
 * 3. the statement, with `$1…` placeholders passed to PostgreSQL as they are
 *    (extended protocol: one statement, `$` inside literals is just text);
 * 4. `COMMIT` (`ROLLBACK` for read calls, and on any error), followed in the
 *    same round trip by `UNLISTEN *; SELECT pg_advisory_unlock_all()`;
 *    `SET LOCAL` ends with the transaction, so the pooled connection is back
 *    to its own role and holds nothing the plugin left behind.
 *
 * Walls under the statement check: `hardenDatabase` (in
 * `permissions/pg_privileges.ts`) revokes from PUBLIC the functions whose
 * effects outlive a transaction (advisory locks, `pg_notify`, `set_config`,
 * `pg_cancel_backend`, …) and the procedural languages; the end of step 4
 * undoes a `LISTEN` or a session lock that got through anyway.
 *
 * On PostgreSQL the host's own work (privilege syncs, hardening, the grant
 * and state stores, job claims: everything on {@linkcode SqlDatabase.sqlClient})
 * runs on a small pool of its own, apart from the pool plugin statements run
 * on ({@linkcode SqlDatabase.pluginClient}), so a plugin that ties up every
 * plugin connection cannot hold the host up. A plugin statement whose call
 * is aborted is cancelled and its connection closed, never reused (see
 * `PgPoolClient`), so a late cancel request cannot hit another statement.
 *
 * Rows are JSON-safe objects (`int8`/`numeric` as strings, dates RFC 3339,
 * `bytea` base64, `json` as values; see `pg_types.ts`). A query returning more
 * than `maxRows` rows is refused with {@linkcode DbRowLimitError} (never
 * silently truncated). Errors are {@linkcode DbQueryError} with the SQLSTATE.
 *
 * @module
 */

import type { Row } from "../model/host_api.ts";
import {
  DatabaseNotFoundError,
  DbQueryError,
  DbRowLimitError,
} from "./errors.ts";
import {
  checkPrivileges,
  dropPrivileges,
  hardenDatabase,
  type PluginPrivileges,
  pluginRoleName,
  pluginSchemaName,
  quoteIdent,
  ReservedSchemaError,
  syncPrivileges,
} from "../../permissions/pg_privileges.ts";
import { HOST_SCHEMA } from "../../permissions/host_schema.ts";
import {
  PgliteClient,
  PgPoolClient,
  type SqlClient,
  type SqlResult,
} from "./sql_client.ts";
import { checkPluginStatement } from "./sql_guard.ts";

/** Per-call options: who runs the statement, and its limits. */
export interface DbCallOptions {
  /** The plugin whose role runs the statement. */
  plugin: string;
  /** Run in a `READ ONLY` transaction (`db:read` without `db:write`). */
  readOnly: boolean;
  /** Cancels the statement when aborted. */
  signal?: AbortSignal;
  /** PostgreSQL `statement_timeout` in ms. @default {5000} */
  statementTimeoutMs?: number;
  /** Most rows a query may return; more is a {@linkcode DbRowLimitError}. @default {10000} */
  maxRows?: number;
}

/**
 * One database as the plugins see it.
 *
 * @example
 * ```ts ignore
 * import { PgliteDatabase } from "./database.ts";
 * const db = new PgliteDatabase({}); // in memory
 * await db.syncPluginPrivileges("hello", { read: "all", write: null });
 * const rows = await db.query("SELECT $1::int AS n", [1], { plugin: "hello", readOnly: true });
 * console.log(rows); // [{ n: 1 }]
 * await db.close();
 * ```
 */
export interface Database {
  /** Runs a query as `opts.plugin`; zero rows is `[]`. */
  query(sql: string, args: unknown[], opts: DbCallOptions): Promise<Row[]>;
  /** Runs a statement as `opts.plugin`; returns the affected row count. */
  exec(sql: string, args: unknown[], opts: DbCallOptions): Promise<number>;
  /**
   * (Re)creates role `gk_plugin_<name>` (name's `-` → `_`), its schema
   * `plugin_<name>` (owned by it), and grants: read → SELECT on the listed
   * tables of the host schema (or all its tables when `"all"`), write →
   * INSERT/UPDATE/DELETE likewise; revokes what is no longer granted.
   * `null` = nothing.
   */
  syncPluginPrivileges(
    plugin: string,
    privileges: PluginPrivileges,
  ): Promise<void>;
  /** Drops the plugin's schema and role (at uninstall). */
  dropPlugin(plugin: string): Promise<void>;
  /** Closes the connections. */
  close(): Promise<void>;
}

const DEFAULT_TIMEOUT_MS = 5000;
const DEFAULT_MAX_ROWS = 10_000;

/**
 * Sent after every plugin transaction, with its end, before the connection
 * serves anyone else: drops a `LISTEN` and session advisory locks, should
 * any get past the statement check and the revoked functions.
 */
export const PLUGIN_SESSION_RESET =
  "UNLISTEN *; SELECT pg_catalog.pg_advisory_unlock_all()";

/** Options shared by the SQL-backed databases. */
export interface SqlDatabaseOptions {
  /**
   * Schema holding the application's tables that grants refer to (never
   * `goatkit`, the host's own). @default {"public"}
   */
  hostSchema?: string;
  /**
   * Revoke from PUBLIC the session-level functions and procedural languages
   * on first privilege sync (see `hardenDatabase` in
   * `permissions/pg_privileges.ts`). Turn off only when the database is
   * hardened otherwise. @default {true}
   */
  harden?: boolean;
}

/**
 * The {@linkcode Database} logic over any {@linkcode SqlClient}; the base of
 * {@linkcode PgDatabase} and {@linkcode PgliteDatabase}.
 */
export abstract class SqlDatabase implements Database {
  /**
   * The host's own connection(s), as the connection user: privilege syncs,
   * hardening, and host tables such as the grant and state stores and job
   * claims. Never used for plugin statements.
   */
  abstract readonly sqlClient: SqlClient;
  /**
   * The connection(s) plugin statements run on (the same client as
   * {@linkcode SqlDatabase.sqlClient} where the database has a single
   * session, as PGlite does).
   */
  abstract readonly pluginClient: SqlClient;
  #hostSchema: string;
  #harden: boolean;
  #hardened: Promise<void> | undefined;

  /** Stores the options; a `hostSchema` of `goatkit` is a `TypeError`. */
  constructor(opts: SqlDatabaseOptions) {
    this.#hostSchema = opts.hostSchema ?? "public";
    if (this.#hostSchema.toLowerCase() === HOST_SCHEMA) {
      throw new TypeError(
        `Cannot use "${this.#hostSchema}" as the application schema: it holds the host's own tables`,
      );
    }
    this.#harden = opts.harden ?? true;
  }

  /**
   * The host's statement check, the first wall (see `sql_guard.ts`); throws
   * to refuse. Tests of the database's own walls override it.
   */
  protected checkStatement(plugin: string, sql: string): void {
    checkPluginStatement(plugin, sql);
  }

  /** Runs a query as the plugin's role. */
  async query(
    sql: string,
    args: unknown[],
    opts: DbCallOptions,
  ): Promise<Row[]> {
    return (await this.#run(sql, args, opts, true)).rows;
  }

  /** Runs a statement as the plugin's role; returns the affected rows. */
  async exec(
    sql: string,
    args: unknown[],
    opts: DbCallOptions,
  ): Promise<number> {
    return (await this.#run(sql, args, opts, false)).rowCount;
  }

  async #run(
    sql: string,
    args: unknown[],
    opts: DbCallOptions,
    isQuery: boolean,
  ): Promise<SqlResult> {
    const { plugin } = opts;
    this.checkStatement(plugin, sql);
    const timeout = Math.max(
      1,
      Math.floor(opts.statementTimeoutMs ?? DEFAULT_TIMEOUT_MS),
    );
    const maxRows = opts.maxRows ?? DEFAULT_MAX_ROWS;
    const role = pluginRoleName(plugin);
    const setup = `SET LOCAL ROLE ${quoteIdent(role)}; ` +
      `SET LOCAL search_path = ${
        quoteIdent(pluginSchemaName(plugin))
      }, public; ` +
      `SET LOCAL statement_timeout = ${timeout}`;
    try {
      return await this.pluginClient.transaction(
        {
          readOnly: opts.readOnly,
          setup,
          // A read call has nothing to commit: what it may have registered
          // (LISTEN, NOTIFY) ends with the transaction.
          rollback: opts.readOnly,
          reset: PLUGIN_SESSION_RESET,
          ...(opts.signal ? { signal: opts.signal } : {}),
        },
        async (s) => {
          const r = await s.query(sql, args, isQuery ? { maxRows } : {});
          if (r.truncated || (isQuery && r.rows.length > maxRows)) {
            throw new DbRowLimitError(plugin, maxRows);
          }
          return r;
        },
      );
    } catch (e) {
      throw toDbError(plugin, role, e);
    }
  }

  #hardenOnce(): Promise<void> {
    if (!this.#harden) return Promise.resolve();
    this.#hardened ??= this.sqlClient.transaction({}, hardenDatabase).catch(
      (e) => {
        this.#hardened = undefined;
        throw e;
      },
    );
    return this.#hardened;
  }

  /**
   * Creates or updates the plugin's role, schema and table privileges, on
   * the host's own connection; hardens the database first (once). A grant
   * naming a reserved schema throws `ReservedSchemaError`.
   */
  async syncPluginPrivileges(
    plugin: string,
    privileges: PluginPrivileges,
  ): Promise<void> {
    // A grant naming a reserved schema is refused before any round trip.
    checkPrivileges(plugin, privileges, this.#hostSchema);
    await this.#hardenOnce();
    try {
      await this.sqlClient.transaction(
        {},
        (s) => syncPrivileges(s, plugin, privileges, this.#hostSchema),
      );
    } catch (e) {
      throw toDbError(plugin, pluginRoleName(plugin), e);
    }
  }

  /** Drops the plugin's schema and role. */
  async dropPlugin(plugin: string): Promise<void> {
    try {
      await this.sqlClient.transaction({}, (s) => dropPrivileges(s, plugin));
    } catch (e) {
      throw toDbError(plugin, pluginRoleName(plugin), e);
    }
  }

  /** Closes the client. */
  close(): Promise<void> {
    return this.sqlClient.close();
  }
}

function toDbError(plugin: string, role: string, e: unknown): unknown {
  if (
    e instanceof DbQueryError || e instanceof DbRowLimitError ||
    e instanceof ReservedSchemaError
  ) {
    return e;
  }
  if (
    e instanceof DOMException &&
    (e.name === "AbortError" || e.name === "TimeoutError")
  ) {
    return new DbQueryError(
      plugin,
      "57014",
      "statement canceled: call aborted",
      { cause: e },
    );
  }
  if (e && typeof e === "object" && "code" in e && typeof e.code === "string") {
    const err = e as { code: string; message?: string; detail?: string };
    let message = err.message ?? String(e);
    if (err.code === "22023" || err.code === "42704") {
      if (message.includes(role)) {
        message += ` (the plugin's role is created by syncPluginPrivileges)`;
      }
    }
    return new DbQueryError(plugin, err.code, message, {
      ...(err.detail ? { detail: err.detail } : {}),
      cause: e,
    });
  }
  return new DbQueryError(
    plugin,
    "08000",
    e instanceof Error ? e.message : String(e),
    {
      cause: e,
    },
  );
}

/**
 * A PostgreSQL database reached through an `npm:pg` pool.
 *
 * @example
 * ```ts ignore
 * import { PgDatabase } from "./database.ts";
 * const db = new PgDatabase({ url: "postgres://postgres@127.0.0.1:5432/test" });
 * await db.syncPluginPrivileges("hello", { read: ["ticket"], write: null });
 * await db.query("SELECT * FROM ticket", [], { plugin: "hello", readOnly: true });
 * await db.close();
 * ```
 */
export class PgDatabase extends SqlDatabase {
  /** The host's own pool (its `pool` is the raw `pg.Pool`). */
  readonly sqlClient: PgPoolClient;
  /** The pool plugin statements run on. */
  readonly pluginClient: PgPoolClient;

  /**
   * Connects lazily to `url`: at most `max` (default 10) connections for
   * plugin statements plus `hostMax` (default 3) for the host's own work.
   */
  constructor(
    opts: { url: string; max?: number; hostMax?: number } & SqlDatabaseOptions,
  ) {
    super(opts);
    this.sqlClient = new PgPoolClient({
      url: opts.url,
      max: opts.hostMax ?? 3,
      applicationName: "goatkit-host",
    });
    this.pluginClient = new PgPoolClient({
      url: opts.url,
      max: opts.max ?? 10,
      applicationName: "goatkit-plugins",
    });
  }

  /** Closes both pools. */
  override async close(): Promise<void> {
    await Promise.all([this.pluginClient.close(), this.sqlClient.close()]);
  }
}

/**
 * The embedded PostgreSQL (PGlite, WASM), opened lazily on first use and run
 * in a worker off the host's thread (see `PgliteClient` for what a deadline
 * can and cannot interrupt there); the row cap applies after PGlite has built
 * the result.
 *
 * @example
 * ```ts ignore
 * import { PgliteDatabase } from "./database.ts";
 * const db = new PgliteDatabase({ dataDir: "./data/pg" });
 * await db.close(); // nothing was started
 * ```
 */
export class PgliteDatabase extends SqlDatabase {
  /** The PGlite client. */
  readonly sqlClient: PgliteClient;
  /** The same client: PGlite has a single session, host and plugins share it. */
  readonly pluginClient: PgliteClient;

  /** Prepares PGlite in `dataDir` (`undefined` = in memory); it starts on first use. */
  constructor(opts: { dataDir?: string } & SqlDatabaseOptions) {
    super(opts);
    this.sqlClient = new PgliteClient(
      opts.dataDir === undefined ? {} : { dataDir: opts.dataDir },
    );
    this.pluginClient = this.sqlClient;
  }
}

/**
 * The default database plus named ones, chosen per query by GoatFlow's
 * `@name:` prefix.
 *
 * @example
 * ```ts ignore
 * import { DatabaseSet, PgDatabase } from "./database.ts";
 * const set = new DatabaseSet({
 *   default: new PgDatabase({ url: "postgres://postgres@127.0.0.1:5432/test" }),
 *   named: { reports: new PgDatabase({ url: "postgres://postgres@127.0.0.1:5432/reports" }) },
 * });
 * const [db, sql] = set.resolve("@reports:SELECT 1"); // reports database, " SELECT 1" without the prefix
 * ```
 */
export class DatabaseSet {
  /** The default database. */
  readonly default: Database;
  #named: Map<string, Database>;

  /** Creates a set; named databases are matched case-insensitively. */
  constructor(opts: { default: Database; named?: Record<string, Database> }) {
    this.default = opts.default;
    this.#named = new Map(
      Object.entries(opts.named ?? {}).map(([k, v]) => [k.toLowerCase(), v]),
    );
  }

  /**
   * From the environment: `DATABASE_URL` (else PGlite in `<dataDir>/pg`) and
   * one named database per `DATABASE_URL_<NAME>` (name lower-cased).
   */
  static fromEnv(
    env: Record<string, string | undefined>,
    opts: { dataDir: string },
  ): DatabaseSet {
    const url = env.DATABASE_URL;
    const def: Database = url
      ? new PgDatabase({ url })
      : new PgliteDatabase({ dataDir: `${opts.dataDir}/pg` });
    const named: Record<string, Database> = {};
    for (const [key, value] of Object.entries(env)) {
      const m = /^DATABASE_URL_([A-Za-z0-9_]+)$/.exec(key);
      if (m && value) {
        named[m[1].toLowerCase()] = new PgDatabase({ url: value });
      }
    }
    return new DatabaseSet({ default: def, named });
  }

  /** Names of the named databases (lower case). */
  get names(): string[] {
    return [...this.#named.keys()];
  }

  /** The default database followed by every named one. */
  all(): Database[] {
    return [this.default, ...this.#named.values()];
  }

  /** The database called `name` (`""` or `"default"` = the default). */
  get(name: string): Database {
    const key = name.toLowerCase();
    const db = this.#named.get(key) ??
      (key === "" || key === "default" ? this.default : undefined);
    if (!db) throw new DatabaseNotFoundError(name);
    return db;
  }

  /**
   * Splits GoatFlow's `@name:` prefix off `sql` and returns the database and
   * the rest of the statement. The prefix counts when `sql` starts with `@`
   * and its first `:` is at index > 1 (so `@:…` is no prefix); an unknown
   * name throws {@linkcode DatabaseNotFoundError}.
   */
  resolve(sql: string): [Database, string] {
    if (sql.startsWith("@")) {
      const colon = sql.indexOf(":");
      if (colon > 1) {
        return [this.get(sql.slice(1, colon)), sql.slice(colon + 1)];
      }
    }
    return [this.default, sql];
  }

  /** Closes every database. */
  async close(): Promise<void> {
    await Promise.all(this.all().map((db) => db.close()));
  }
}
