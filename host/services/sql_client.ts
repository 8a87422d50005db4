/**
 * A small SQL client abstraction over `npm:pg` (a connection pool) and PGlite
 * (PostgreSQL in WASM, in process), so the database service, the PostgreSQL
 * state store and the grant store share one code path for both.
 *
 * Rows come back JSON-safe (see `pg_types.ts`): both drivers are given the
 * same text-to-JSON conversion for every column type.
 *
 * @module
 */

import pg from "pg";
import type { PGlite } from "@electric-sql/pglite";
import type { Row } from "../model/host_api.ts";
import { pgTextToJson } from "./pg_types.ts";

/** The result of one statement. */
export interface SqlResult {
  /** JSON-safe rows (empty for statements that return none). */
  rows: Row[];
  /** Rows affected (INSERT/UPDATE/DELETE) or returned (SELECT). */
  rowCount: number;
  /** True when `maxRows` stopped the result early: more rows existed. */
  truncated: boolean;
}

/** Options of {@linkcode SqlSession.query}. */
export interface SqlQueryOptions {
  /** Stop after this many rows and set `truncated` if more exist. */
  maxRows?: number;
}

/** One connection inside a transaction. */
export interface SqlSession {
  /** Runs one statement with `$1…` parameters (extended protocol: one statement only). */
  query(
    sql: string,
    params?: unknown[],
    options?: SqlQueryOptions,
  ): Promise<SqlResult>;
  /** Runs trusted host SQL that may hold several statements and no parameters. */
  exec(sql: string): Promise<void>;
}

/** Options of {@linkcode SqlClient.transaction}. */
export interface SqlTransactionOptions {
  /** Start the transaction `READ ONLY`. */
  readOnly?: boolean;
  /** Trusted statements to run right after `BEGIN` (sent with it when possible). */
  setup?: string;
  /** Cancels the statement in progress when aborted. */
  signal?: AbortSignal;
}

/**
 * What the services need from a PostgreSQL connection: one-statement queries
 * with `$1…` parameters, and transactions on one connection. Implemented by
 * {@linkcode PgPoolClient} and {@linkcode PgliteClient}.
 *
 * @example
 * ```ts ignore
 * import type { SqlClient } from "./sql_client.ts";
 * async function count(client: SqlClient): Promise<string> {
 *   const { rows } = await client.query("SELECT count(*) AS n FROM pg_class");
 *   return rows[0].n as string; // int8 comes back as a string
 * }
 * ```
 */
export interface SqlClient {
  /** Runs one statement outside any plugin scope (as the connection user). */
  query(sql: string, params?: unknown[]): Promise<SqlResult>;
  /** Runs `fn` in a transaction on one connection: COMMIT on success, ROLLBACK on error. */
  transaction<T>(
    options: SqlTransactionOptions,
    fn: (session: SqlSession) => Promise<T>,
  ): Promise<T>;
  /** Closes the connection(s). */
  close(): Promise<void>;
}

const JSON_TYPES = {
  getTypeParser: (oid: number) => (text: string) => pgTextToJson(oid, text),
};

type PgQueryResult = {
  rows: Row[];
  rowCount: number | null;
};

/** Runs one extended-protocol statement on a pg client, capping rows. */
function pgRun(
  client: pg.PoolClient,
  sql: string,
  params: unknown[],
  maxRows: number | undefined,
): Promise<SqlResult> {
  return new Promise((resolve, reject) => {
    let truncated = false;
    // deno-lint-ignore no-explicit-any
    const query: any = new pg.Query(
      {
        text: sql,
        values: params,
        types: JSON_TYPES,
        queryMode: "extended",
        ...(maxRows !== undefined ? { rows: maxRows + 1 } : {}),
      },
      undefined,
      (err: Error | null, res: PgQueryResult) => {
        if (err) reject(err);
        else {
          resolve({
            rows: res.rows,
            rowCount: truncated
              ? res.rows.length
              : res.rowCount ?? res.rows.length,
            truncated,
          });
        }
      },
    );
    if (maxRows !== undefined) {
      // pg pages through a suspended portal by default; we stop at the cap
      // instead (pg@8.23 Query internals: sync ends the extended batch).
      // deno-lint-ignore no-explicit-any
      query.handlePortalSuspended = (connection: any) => {
        truncated = true;
        connection.sync();
      };
      // With a row count pg does not pipeline Sync, so after a server error
      // the backend would wait for one forever: send it.
      const handleError = query.handleError.bind(query);
      // deno-lint-ignore no-explicit-any
      query.handleError = (err: any, connection: any) => {
        if (err && typeof err === "object" && "severity" in err) {
          connection.sync();
        }
        handleError(err, connection);
      };
    }
    client.query(query);
  });
}

/**
 * A {@linkcode SqlClient} over an `npm:pg` connection pool.
 *
 * @example
 * ```ts ignore
 * import { PgPoolClient } from "./sql_client.ts";
 * const client = new PgPoolClient({ url: "postgres://postgres@127.0.0.1:5432/test" });
 * console.log((await client.query("SELECT 1 AS one")).rows); // [{ one: 1 }]
 * await client.close();
 * ```
 */
export class PgPoolClient implements SqlClient {
  /** The pool (shared with anyone who needs raw access, e.g. benchmarks). */
  readonly pool: pg.Pool;
  #url: string;

  /** Opens a pool of at most `max` (default 10) connections to `url`. */
  constructor(opts: { url: string; max?: number }) {
    this.#url = opts.url;
    this.pool = new pg.Pool({
      connectionString: opts.url,
      max: opts.max ?? 10,
    });
    // An idle client that errors (server restart) must not crash the host.
    this.pool.on("error", () => {});
  }

  /** Runs one statement as the connection user. */
  async query(sql: string, params: unknown[] = []): Promise<SqlResult> {
    const client = await this.pool.connect();
    try {
      const r = await pgRun(client, sql, params, undefined);
      client.release();
      return r;
    } catch (e) {
      client.release(isConnectionError(e) ? (e as Error) : undefined);
      throw e;
    }
  }

  /** Runs `fn` in a transaction on one pooled connection. */
  async transaction<T>(
    options: SqlTransactionOptions,
    fn: (session: SqlSession) => Promise<T>,
  ): Promise<T> {
    options.signal?.throwIfAborted();
    const client = await this.pool.connect();
    let broken: Error | undefined;
    const onAbort = () => {
      // PostgreSQL's cancel request, on a short-lived connection of its own
      // (not from the pool, which may be exhausted).
      // deno-lint-ignore no-explicit-any
      const active = (client as any).activeQuery;
      if (!active) return;
      const canceller = new pg.Client({ connectionString: this.#url });
      canceller.on("error", () => {});
      // deno-lint-ignore no-explicit-any
      (canceller as any).cancel(client, active);
    };
    options.signal?.addEventListener("abort", onAbort, { once: true });
    try {
      const begin = options.readOnly ? "BEGIN READ ONLY" : "BEGIN";
      await client.query(options.setup ? `${begin}; ${options.setup}` : begin);
      const session: SqlSession = {
        query: (sql, params = [], o = {}) => {
          options.signal?.throwIfAborted();
          return pgRun(client, sql, params, o.maxRows);
        },
        exec: async (sql) => {
          await client.query(sql);
        },
      };
      const result = await fn(session);
      if (options.readOnly) {
        // Nothing to lose at the COMMIT of a read-only transaction: queue it
        // and hand the connection back now. pg runs a connection's queries in
        // order, so the next user's statements still follow the COMMIT (and
        // the end of SET LOCAL ROLE); a broken connection fails that user's
        // first statement and is then discarded.
        client.query("COMMIT").catch(() => {});
      } else {
        await client.query("COMMIT");
      }
      return result;
    } catch (e) {
      try {
        await client.query("ROLLBACK");
      } catch (rollbackError) {
        broken = rollbackError as Error;
      }
      if (isConnectionError(e)) broken = e as Error;
      throw e;
    } finally {
      options.signal?.removeEventListener("abort", onAbort);
      // SET LOCAL ends with the transaction, so the connection is back to the
      // session role; a connection we could not roll back is destroyed.
      client.release(broken);
    }
  }

  #ended: Promise<void> | undefined;

  /** Ends the pool (once; later calls wait for the same end). */
  close(): Promise<void> {
    return this.#ended ??= this.pool.end();
  }
}

function isConnectionError(e: unknown): boolean {
  return !(e && typeof e === "object" && "code" in e &&
    typeof e.code === "string" &&
    /^[0-9A-Z]{5}$/.test(e.code));
}

/**
 * A {@linkcode SqlClient} over one in-process PGlite database, opened lazily
 * on first use (starting PGlite takes seconds). Statements are serialised by
 * PGlite itself.
 *
 * @example
 * ```ts ignore
 * import { PgliteClient } from "./sql_client.ts";
 * const client = new PgliteClient({}); // in memory
 * console.log((await client.query("SELECT 1 AS one")).rows); // [{ one: 1 }]
 * await client.close();
 * ```
 */
export class PgliteClient implements SqlClient {
  #dataDir: string | undefined;
  #db: Promise<PGlite> | undefined;
  #closed = false;

  /** Prepares a client for `dataDir` (`undefined` = in memory); nothing starts yet. */
  constructor(opts: { dataDir?: string }) {
    this.#dataDir = opts.dataDir;
  }

  /** Whether the database has been started. */
  get started(): boolean {
    return this.#db !== undefined;
  }

  /** Starts PGlite (once) and returns it. */
  #open(): Promise<PGlite> {
    if (this.#closed) {
      return Promise.reject(new Error("PGlite client is closed"));
    }
    this.#db ??= (async () => {
      const { PGlite } = await import("@electric-sql/pglite");
      if (this.#dataDir !== undefined) {
        await Deno.mkdir(this.#dataDir, { recursive: true });
      }
      const db = this.#dataDir === undefined
        ? new PGlite()
        : new PGlite(this.#dataDir);
      await db.waitReady;
      // Route every built-in type through the shared converter (PGlite's own
      // defaults turn int8 into numbers and dates into Date objects).
      const types = await db.query<{ oid: number }>(
        "SELECT oid::int4 AS oid FROM pg_type",
      );
      for (const { oid } of types.rows) {
        db.parsers[oid] = (text: string) => pgTextToJson(oid, text);
      }
      return db;
    })();
    return this.#db;
  }

  /** Runs one statement as the database user. */
  async query(sql: string, params: unknown[] = []): Promise<SqlResult> {
    const db = await this.#open();
    const r = await db.query<Row>(sql, params);
    return toResult(r.rows, r.affectedRows, undefined);
  }

  /** Runs `fn` in a PGlite transaction. */
  async transaction<T>(
    options: SqlTransactionOptions,
    fn: (session: SqlSession) => Promise<T>,
  ): Promise<T> {
    options.signal?.throwIfAborted();
    const db = await this.#open();
    return await db.transaction(async (tx) => {
      const setup = [
        options.readOnly ? "SET TRANSACTION READ ONLY" : "",
        options.setup ?? "",
      ].filter((s) => s).join("; ");
      if (setup) await tx.exec(setup);
      const session: SqlSession = {
        query: async (sql, params = [], o = {}) => {
          options.signal?.throwIfAborted();
          const r = await tx.query<Row>(sql, params);
          return toResult(r.rows, r.affectedRows, o.maxRows);
        },
        exec: async (sql) => {
          await tx.exec(sql);
        },
      };
      return await fn(session);
    });
  }

  /** Closes PGlite if it was started. */
  async close(): Promise<void> {
    this.#closed = true;
    if (this.#db) {
      const db = await this.#db.catch(() => undefined);
      if (db && !db.closed) await db.close();
    }
  }
}

function toResult(
  rows: Row[],
  affected: number | undefined,
  maxRows: number | undefined,
): SqlResult {
  const truncated = maxRows !== undefined && rows.length > maxRows;
  return {
    rows: truncated ? rows.slice(0, maxRows + 1) : rows,
    rowCount: Math.max(affected ?? 0, rows.length),
    truncated,
  };
}
