/**
 * The messages between {@linkcode PgliteClient} (host thread) and the PGlite
 * worker (`pglite_worker.ts`). Types only, plus the layout of the shared
 * cancel cell; both sides import this module.
 *
 * Every request carries an `id`; the worker answers each with one
 * {@linkcode PgliteReply} of the same `id`, in order. Statements of a
 * transaction carry its `tx` (a positive integer the host allocates); the
 * worker holds at most one open transaction.
 *
 * @module
 */

import type { Row } from "../model/host_api.ts";

/** Index in the shared `Int32Array` of the transaction the host cancels. */
export const CANCEL_TX = 0;
/** Length of the shared cancel `Int32Array`. */
export const CANCEL_CELLS = 1;

/** Starts PGlite in the worker (`dataDir` absent = in memory). */
export interface PgliteOpenRequest {
  /** Request id. */
  id: number;
  /** The request. */
  op: "open";
  /** Absolute data directory; absent = in memory. */
  dataDir?: string;
  /** Shared cancel cells (see {@linkcode CANCEL_TX}). */
  cancel: SharedArrayBuffer;
}

/** Runs one statement, alone (`tx` absent) or in the open transaction. */
export interface PgliteQueryRequest {
  /** Request id. */
  id: number;
  /** The request. */
  op: "query";
  /** Transaction id, or absent for a statement of its own. */
  tx?: number;
  /** One statement with `$1…` parameters. */
  sql: string;
  /** Parameters. */
  params: unknown[];
  /** Row cap (see `SqlQueryOptions.maxRows`). */
  maxRows?: number;
}

/** Runs trusted multi-statement SQL in the open transaction. */
export interface PgliteExecRequest {
  /** Request id. */
  id: number;
  /** The request. */
  op: "exec";
  /** Transaction id. */
  tx: number;
  /** SQL without parameters. */
  sql: string;
}

/** Opens transaction `tx`. */
export interface PgliteBeginRequest {
  /** Request id. */
  id: number;
  /** The request. */
  op: "begin";
  /** Transaction id. */
  tx: number;
  /** `BEGIN READ ONLY`. */
  readOnly: boolean;
  /** Trusted statements run right after `BEGIN`. */
  setup?: string;
}

/** Ends transaction `tx`. */
export interface PgliteEndRequest {
  /** Request id. */
  id: number;
  /** COMMIT or ROLLBACK. */
  op: "commit" | "rollback";
  /** Transaction id. */
  tx: number;
  /** Trusted statements run after the end (see `SqlTransactionOptions.reset`). */
  reset?: string;
}

/** Closes PGlite (the host terminates the worker after the reply). */
export interface PgliteCloseRequest {
  /** Request id. */
  id: number;
  /** The request. */
  op: "close";
}

/** Any request from the host. */
export type PgliteRequest =
  | PgliteOpenRequest
  | PgliteQueryRequest
  | PgliteExecRequest
  | PgliteBeginRequest
  | PgliteEndRequest
  | PgliteCloseRequest;

/** A statement's result as it crosses the thread boundary. */
export interface PgliteResult {
  /** JSON-safe rows (at most `maxRows + 1`). */
  rows: Row[];
  /** Rows affected or returned. */
  rowCount: number;
  /** More than `maxRows` rows existed. */
  truncated: boolean;
}

/** An error as it crosses the thread boundary. */
export interface PgliteErrorData {
  /**
   * `database`: PostgreSQL refused the statement (it has a SQLSTATE);
   * `cancelled`: the host had cancelled the transaction, nothing ran;
   * `internal`: anything else (PGlite or protocol failure).
   */
  kind: "database" | "cancelled" | "internal";
  /** The message. */
  message: string;
  /** SQLSTATE and the other error fields PostgreSQL sent. */
  fields?: Record<string, string>;
}

/** The worker's answer to one request. */
export type PgliteReply =
  | {
    /** Request id. */
    id: number;
    /** Success. */
    ok: true;
    /** The statement's result (`query` only). */
    result?: PgliteResult;
    /** Whether a running statement can be interrupted (`open` only). */
    interruptible?: boolean;
  }
  | {
    /** Request id. */
    id: number;
    /** Failure. */
    ok: false;
    /** What went wrong. */
    error: PgliteErrorData;
  };
