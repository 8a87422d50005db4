/**
 * A small SQL client abstraction over `npm:pg` (a connection pool) and PGlite
 * (PostgreSQL in WASM, run in a worker: `pglite_client.ts`), so the database
 * service, the PostgreSQL state store and the grant store share one code path
 * for both.
 *
 * Rows come back JSON-safe (see `pg_types.ts`): both drivers are given the
 * same text-to-JSON conversion for every column type.
 *
 * @module
 */

import pg from "pg";
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
  /**
   * Cancels the statement in progress when aborted. On a pooled connection a
   * cancelled connection is closed, never reused (see
   * {@linkcode PgPoolClient}).
   */
  signal?: AbortSignal;
  /**
   * End with `ROLLBACK` even when `fn` succeeds: for read-only plugin
   * statements, whatever session state they registered (`LISTEN`, a pending
   * `NOTIFY`, a cursor) is discarded with the transaction. Clients without
   * separate sessions may ignore it.
   */
  rollback?: boolean;
  /**
   * Trusted statements sent right after the transaction ends (with its
   * `COMMIT`/`ROLLBACK`), before the connection serves anyone else: e.g.
   * `UNLISTEN *`. A pooled connection on which they fail is closed. Clients
   * without separate sessions may ignore it.
   */
  reset?: string;
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

/**
 * Runs one extended-protocol statement on a pg client, capping rows; the
 * query object is added to `own` (the queries a transaction may cancel).
 */
function pgRun(
  client: pg.PoolClient,
  sql: string,
  params: unknown[],
  maxRows: number | undefined,
  own?: Set<unknown>,
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
    own?.add(query);
    client.query(query);
  });
}

/**
 * Runs trusted SQL (several statements allowed: simple protocol) on a pg
 * client; the query object is added to `own`.
 */
function pgSimple(
  client: pg.PoolClient,
  sql: string,
  own: Set<unknown>,
): Promise<void> {
  return new Promise((resolve, reject) => {
    const query = new pg.Query(
      { text: sql, types: JSON_TYPES },
      undefined,
      (err: Error | null) => err ? reject(err) : resolve(),
    );
    own.add(query);
    client.query(query);
  });
}

/**
 * Sends PostgreSQL's cancel request for `query` (when it is still the
 * active query of `client`) on a short-lived connection of its own (not from
 * the pool, which may be exhausted). Resolves when the server has closed
 * that connection, i.e. has taken the request (at most `capMs` later).
 */
export function sendCancel(
  url: string,
  client: pg.PoolClient,
  query: unknown,
  capMs = 5000,
): Promise<void> {
  return new Promise((resolve) => {
    const canceller = new pg.Client({ connectionString: url });
    // deno-lint-ignore no-explicit-any
    const con = (canceller as any).connection;
    let timer: ReturnType<typeof setTimeout> | undefined = undefined;
    const done = () => {
      clearTimeout(timer);
      resolve();
    };
    timer = setTimeout(() => {
      con.stream?.destroy?.();
      done();
    }, capMs);
    canceller.on("error", () => {});
    con.on("error", done);
    con.once("end", done);
    // deno-lint-ignore no-explicit-any
    (canceller as any).cancel(client, query);
  });
}

/**
 * A {@linkcode SqlClient} over an `npm:pg` connection pool.
 *
 * A cancel request can only hit the statement it was sent for: when a
 * transaction's signal aborts while one of its own statements runs, the
 * cancel request goes out on a connection of its own, nothing more is sent
 * on the cancelled connection, and the connection is closed (never handed
 * back to the pool) once the server has taken the request. A late cancel
 * request therefore reaches a backend that serves nobody else.
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

  /**
   * Opens a pool of at most `max` (default 10) connections to `url`;
   * `applicationName` shows in `pg_stat_activity`.
   */
  constructor(opts: { url: string; max?: number; applicationName?: string }) {
    this.#url = opts.url;
    this.pool = new pg.Pool({
      connectionString: opts.url,
      max: opts.max ?? 10,
      ...(opts.applicationName
        ? { application_name: opts.applicationName }
        : {}),
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
    const { signal } = options;
    signal?.throwIfAborted();
    const client = await this.pool.connect();
    // The statements of this transaction: only these may be cancelled (the
    // previous user's queued read-only end may still be running).
    const own = new Set<unknown>();
    let cancelled: Promise<void> | undefined;
    let broken: Error | undefined;
    const onAbort = () => {
      // deno-lint-ignore no-explicit-any
      const active = (client as any).activeQuery;
      if (cancelled || !active || !own.has(active)) return;
      cancelled = sendCancel(this.#url, client, active);
    };
    signal?.addEventListener("abort", onAbort, { once: true });
    const end = (verb: string) =>
      options.reset ? `${verb}; ${options.reset}` : verb;
    try {
      const begin = options.readOnly ? "BEGIN READ ONLY" : "BEGIN";
      await pgSimple(
        client,
        options.setup ? `${begin}; ${options.setup}` : begin,
        own,
      );
      const session: SqlSession = {
        query: (sql, params = [], o = {}) => {
          signal?.throwIfAborted();
          return pgRun(client, sql, params, o.maxRows, own);
        },
        exec: (sql) => {
          signal?.throwIfAborted();
          return pgSimple(client, sql, own);
        },
      };
      const result = await fn(session);
      // Cancelled: the connection is closed below, which rolls back.
      if (cancelled) signal?.throwIfAborted();
      const verb = options.rollback ? "ROLLBACK" : "COMMIT";
      if (options.readOnly) {
        // Nothing to lose at the end of a read-only transaction: queue it
        // and hand the connection back now. pg runs a connection's queries in
        // order, so the next user's statements still follow it (and the end
        // of SET LOCAL ROLE, and the reset); a connection on which it fails
        // is closed, which fails the next user's first statement and
        // discards the connection.
        pgSimple(client, end(verb), new Set()).catch(() => {
          client.end().catch(() => {});
        });
      } else {
        await pgSimple(client, end(verb), own);
      }
      return result;
    } catch (e) {
      if (!cancelled) {
        try {
          await pgSimple(client, end("ROLLBACK"), new Set());
        } catch (rollbackError) {
          broken = rollbackError as Error;
        }
      }
      if (isConnectionError(e)) broken = e as Error;
      throw e;
    } finally {
      signal?.removeEventListener("abort", onAbort);
      if (cancelled) {
        // Never reused: closed once the server has taken the cancel request.
        const why = new Error("Cannot reuse a cancelled connection");
        cancelled.then(() => client.release(why));
      } else {
        // SET LOCAL ends with the transaction, so the connection is back to
        // the session role; one we could not roll back is closed.
        client.release(broken);
      }
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

export {
  PgliteClient,
  type PgliteClientOptions,
  PgliteQueryError,
  PgliteUnavailableError,
} from "./pglite_client.ts";
