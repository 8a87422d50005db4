/**
 * One statement on an `npm:pg` connection in one network round trip, with
 * trusted statements of the host's before and after it in the same write:
 * `Parse/Bind/Execute` of each `before` statement, `Parse/Bind/Describe/
 * Execute` of the statement (its `$1…` parameters passed as they are; the
 * extended protocol takes one statement only), `Parse/Bind/Execute` of each
 * `after` statement, then `Sync`. PostgreSQL runs everything up to the
 * `Sync` as one (implicit) transaction, committed at the `Sync` unless a
 * `before` statement opened an explicit one; after an error it skips the
 * rest up to the `Sync`, so an `after` statement runs only when the
 * statement succeeded.
 *
 * The row cap is applied by the server: `Execute` asks for `maxRows + 1`
 * rows and the `Sync` is sent right away, so a longer result costs no second
 * round trip (the portal is closed at the `Sync`; `truncated` tells).
 *
 * Relies on `npm:pg@8.23` query internals (as `sql_client.ts` does): the
 * query object is a subclass of `pg.Query` that adds the extra messages.
 *
 * @module
 */

import pg from "pg";
import type { Row } from "../model/host_api.ts";
import { pgTextToJson } from "./pg_types.ts";

/** `npm:pg` type parsers that turn every column into its JSON-safe value (`pg_types.ts`). */
export const JSON_TYPES = {
  getTypeParser: (oid: number) => (text: string) => pgTextToJson(oid, text),
};

/** Options of {@linkcode runPipelined}. */
export interface PipelineOptions {
  /** Trusted statements (no parameters) sent before the statement. */
  before?: readonly string[];
  /** Trusted statements sent after it (run only when it succeeded). */
  after?: readonly string[];
  /** Most rows to return; more sets `truncated`. */
  maxRows?: number;
}

/** What {@linkcode runPipelined} resolves to. */
export interface PipelineResult {
  /** JSON-safe rows. */
  rows: Row[];
  /** Rows affected (INSERT/UPDATE/DELETE) or returned. */
  rowCount: number;
  /** The result had more than `maxRows` rows. */
  truncated: boolean;
  /**
   * The statement's command tag as the server sent it (`SELECT 3`,
   * `INSERT 0 1`, `SET`, `LISTEN`, …); `""` for an empty statement or a
   * truncated result.
   */
  command: string;
}

/** The running statement: `query` is what a cancel request must name. */
export interface PipelinedRun {
  /** The query object `npm:pg` runs (compare with the client's active query). */
  query: unknown;
  /** Settles when the server has answered the `Sync` (also on errors). */
  done: Promise<PipelineResult>;
}

// deno-lint-ignore no-explicit-any
type Connection = any;
type QueryBase = new (config: unknown) => {
  // deno-lint-ignore no-explicit-any
  _result: any;
  _canceledDueToError: unknown;
  portal: string;
  prepare(connection: Connection): void;
};

/** True for an error the server sent (an ErrorResponse), after which a ReadyForQuery follows. */
export function isServerError(e: unknown): boolean {
  return !!e && typeof e === "object" && "severity" in e && "code" in e &&
    typeof e.code === "string";
}

function step(connection: Connection, text: string): void {
  connection.parse({ text });
  connection.bind({});
  connection.execute({});
}

class PipelinedQuery extends (pg.Query as unknown as QueryBase) {
  readonly #before: readonly string[];
  readonly #after: readonly string[];
  readonly #rows: number | undefined;
  readonly #settle: (err: unknown, result?: PipelineResult) => void;
  #completed = 0;
  #truncated = false;
  #command = "";
  #settled = false;

  constructor(
    sql: string,
    params: unknown[],
    options: PipelineOptions,
    settle: (err: unknown, result?: PipelineResult) => void,
  ) {
    super({
      text: sql,
      values: params,
      types: JSON_TYPES,
      queryMode: "extended",
    });
    this.#before = options.before ?? [];
    this.#after = options.after ?? [];
    this.#rows = options.maxRows === undefined
      ? undefined
      : Math.max(1, Math.floor(options.maxRows) + 1);
    this.#settle = settle;
  }

  #finish(err: unknown, result?: PipelineResult): void {
    if (this.#settled) return;
    this.#settled = true;
    this.#settle(err, result);
  }

  // pg calls prepare() inside cork()/uncork(): every message goes out in
  // one write.
  override prepare(connection: Connection): void {
    for (const text of this.#before) step(connection, text);
    super.prepare(connection);
  }

  // pg's prepare() ends with _getRows(); the first call is the only one.
  _getRows(connection: Connection): void {
    connection.execute({ portal: this.portal, rows: this.#rows ?? 0 });
    for (const text of this.#after) step(connection, text);
    connection.sync();
  }

  handleCommandComplete(msg: { text: string }): void {
    if (this.#completed++ === this.#before.length) {
      this.#command = msg.text;
      this._result.addCommandComplete(msg);
    }
  }

  handlePortalSuspended(): void {
    this.#completed++;
    this.#truncated = true;
  }

  handleEmptyQuery(): void {
    this.#completed++;
  }

  handleCopyInResponse(connection: Connection): void {
    connection.sendCopyFail("COPY FROM STDIN is not supported");
  }

  handleCopyData(): void {}

  handleError(err: unknown, connection: Connection): void {
    if (this._canceledDueToError) {
      err = this._canceledDueToError;
      this._canceledDueToError = false;
    }
    if (this.#settled) return;
    if (isServerError(err) && connection) {
      // Settle once the server has reached the Sync (ReadyForQuery), so the
      // caller sees the session's final transaction state.
      const done = () => {
        connection.off("readyForQuery", done);
        connection.off("end", done);
        this.#finish(err);
      };
      connection.on("readyForQuery", done);
      connection.on("end", done);
    } else {
      this.#finish(err);
    }
  }

  handleReadyForQuery(connection: Connection): void {
    if (this._canceledDueToError) {
      this.handleError(this._canceledDueToError, connection);
      return;
    }
    const rows = this._result.rows as Row[];
    const count = this._result.rowCount as number | null;
    this.#finish(null, {
      rows,
      rowCount: this.#truncated ? rows.length : count ?? rows.length,
      truncated: this.#truncated,
      command: this.#command,
    });
  }
}

/**
 * Sends `sql` with `params`, and the trusted statements of `options`, in one
 * round trip on `client` (see the module doc). The client must not be used
 * by anyone else meanwhile; `npm:pg` queues anything sent after it.
 *
 * @example
 * ```ts ignore
 * import pg from "pg";
 * import { runPipelined } from "./pg_pipeline.ts";
 * const client = new pg.Client({ connectionString: "postgres://postgres@127.0.0.1:5432/test" });
 * await client.connect();
 * const { done } = runPipelined(client, "SELECT $1::int AS n", [1], {
 *   before: ["BEGIN READ ONLY"],
 *   after: ["ROLLBACK"],
 *   maxRows: 100,
 * });
 * console.log((await done).rows); // [{ n: 1 }]
 * ```
 */
export function runPipelined(
  client: pg.ClientBase,
  sql: string,
  params: unknown[],
  options: PipelineOptions = {},
): PipelinedRun {
  let query: PipelinedQuery | undefined;
  const done = new Promise<PipelineResult>((resolve, reject) => {
    query = new PipelinedQuery(
      sql,
      params,
      options,
      (err, result) => err ? reject(err) : resolve(result!),
    );
  });
  client.query(query as unknown as pg.Submittable);
  return { query, done };
}
