/**
 * The PGlite worker: runs the embedded PostgreSQL (WASM) off the host's
 * thread for {@linkcode PgliteClient} (see `pglite_client.ts`, which starts it
 * with read access to PGlite's package files and read/write access to the
 * data directory only).
 *
 * Requests are handled one at a time, in arrival order, and each gets one
 * reply (see `pglite_protocol.ts`). At most one transaction is open; its
 * statements carry its id, and statements of any other id are refused.
 *
 * **Interrupting a running statement.** A running statement holds this
 * thread, so no message can reach it. PGlite (0.5.17) arms
 * `statement_timeout` with a JavaScript timer that cannot fire before the
 * statement ends, and has no cancel call. What it does have: the emscripten
 * clock reads `performance.now()` / `Date.now()` from the global scope at
 * each call, and PostgreSQL's `QueryCancelPending` / `InterruptPending`
 * flags are exported. So the clocks are wrapped: while a statement runs,
 * each clock read checks the shared cancel cell (written by the host thread
 * when the caller's signal aborts) and the statement's `statement_timeout`
 * deadline, and on either sets both flags — what PostgreSQL's own SIGINT
 * handler does — and moves the monotonic clock one day forward so that a
 * busy-wait sleep (`pg_sleep`) ends at once. PostgreSQL then raises 57014 at
 * its next `CHECK_FOR_INTERRUPTS()`. This reaches statements that sleep,
 * spill to temporary files or read the data directory; a statement that only
 * computes in memory (a large join of `generate_series`, an endless
 * PL/pgSQL loop) never reads a clock and runs to its end.
 *
 * @module
 */

import { PGlite } from "@electric-sql/pglite";
import type { Row } from "../model/host_api.ts";
import { pgTextToJson } from "./pg_types.ts";
import {
  CANCEL_TX,
  type PgliteErrorData,
  type PgliteReply,
  type PgliteRequest,
  type PgliteResult,
} from "./pglite_protocol.ts";

/** How far the monotonic clock jumps when a statement is interrupted. */
const CLOCK_JUMP_MS = 86_400_000;

const DATABASE_ERROR_FIELDS = [
  "severity",
  "code",
  "detail",
  "hint",
  "position",
  "internalPosition",
  "internalQuery",
  "where",
  "schema",
  "table",
  "column",
  "dataType",
  "constraint",
  "routine",
] as const;

interface WorkerScope {
  onmessage: ((e: MessageEvent<PgliteRequest>) => void) | null;
  postMessage(message: PgliteReply): void;
}

/** The parts of PGlite's emscripten module the interrupt needs. */
interface InterruptCells {
  setValue(ptr: number, value: number, type: "i32"): void;
  queryCancelPending: number;
  interruptPending: number;
}

/** The statement running now, watched by the clock hooks. */
interface Running {
  tx: number;
  deadline: number;
  interrupted?: "cancel" | "timeout";
}

class CancelledError extends Error {
  constructor(tx: number) {
    super(`Cannot run the statement: transaction ${tx} was cancelled`);
    this.name = "CancelledError";
  }
}

const scope = globalThis as unknown as WorkerScope;
const realNow = performance.now.bind(performance);
const realDateNow = Date.now;

let db: PGlite | undefined;
let cancelCells: Int32Array | undefined;
let interrupt: InterruptCells | undefined;
let openTx: { id: number; timeoutMs: number } | undefined;
let running: Running | undefined;
let clockSkip = 0;

/** Called at every clock read: interrupts the running statement if due. */
function watch(): void {
  const r = running;
  if (r === undefined || r.interrupted !== undefined) return;
  if (
    r.tx !== 0 && cancelCells && Atomics.load(cancelCells, CANCEL_TX) === r.tx
  ) {
    r.interrupted = "cancel";
  } else if (realNow() >= r.deadline) {
    r.interrupted = "timeout";
  } else {
    return;
  }
  const cells = interrupt;
  if (!cells) return;
  // Runs inside PostgreSQL's call to the clock: it must never throw.
  try {
    cells.setValue(cells.queryCancelPending, 1, "i32");
    cells.setValue(cells.interruptPending, 1, "i32");
    clockSkip += CLOCK_JUMP_MS;
  } catch {
    // Leave the statement to run to its end.
  }
}

function installClockHooks(): void {
  performance.now = () => {
    watch();
    return realNow() + clockSkip;
  };
  Date.now = () => {
    watch();
    return realDateNow();
  };
}

/** PGlite's interrupt flags, when this build exports them. */
function findInterruptCells(pg: PGlite): InterruptCells | undefined {
  const mod = pg.Module as unknown as {
    setValue?: unknown;
    _QueryCancelPending?: unknown;
    _InterruptPending?: unknown;
  };
  if (
    typeof mod.setValue === "function" &&
    typeof mod._QueryCancelPending === "number" &&
    typeof mod._InterruptPending === "number"
  ) {
    return {
      setValue: mod.setValue as InterruptCells["setValue"],
      queryCancelPending: mod._QueryCancelPending,
      interruptPending: mod._InterruptPending,
    };
  }
  return undefined;
}

function isCancelled(tx: number): boolean {
  return tx !== 0 && cancelCells !== undefined &&
    Atomics.load(cancelCells, CANCEL_TX) === tx;
}

/** Runs one statement under the clock watch. */
async function watched<T>(
  tx: number,
  timeoutMs: number,
  run: () => Promise<T>,
): Promise<T> {
  if (isCancelled(tx)) throw new CancelledError(tx);
  const r: Running = {
    tx,
    deadline: timeoutMs > 0 ? realNow() + timeoutMs : Infinity,
  };
  running = r;
  try {
    return await run();
  } catch (e) {
    if (r.interrupted === "timeout" && errorCode(e) === "57014") {
      (e as Error).message = "canceling statement due to statement timeout";
    }
    throw e;
  } finally {
    running = undefined;
    // A cancel that arrived after PostgreSQL's last check must not hit the
    // next statement.
    if (r.interrupted && interrupt) {
      try {
        interrupt.setValue(interrupt.queryCancelPending, 0, "i32");
      } catch {
        // Nothing more to do.
      }
    }
  }
}

function errorCode(e: unknown): string | undefined {
  return e && typeof e === "object" && "code" in e &&
      typeof e.code === "string"
    ? e.code
    : undefined;
}

/** The same conversion the in-thread client had: keeps `maxRows + 1` rows. */
function toResult(
  rows: Row[],
  affected: number | undefined,
  maxRows: number | undefined,
): PgliteResult {
  const truncated = maxRows !== undefined && rows.length > maxRows;
  return {
    rows: truncated ? rows.slice(0, maxRows + 1) : rows,
    rowCount: Math.max(affected ?? 0, rows.length),
    truncated,
  };
}

/** `SHOW statement_timeout` text (`0`, `800ms`, `5s`, `1min`, …) in ms. */
function parseTimeout(text: unknown): number {
  const m = /^(\d+)\s*(ms|s|min|h|d)?$/.exec(String(text ?? "0").trim());
  if (!m) return 0;
  const unit = { ms: 1, s: 1000, min: 60_000, h: 3_600_000, d: 86_400_000 };
  return Number(m[1]) * unit[(m[2] ?? "ms") as keyof typeof unit];
}

function errorData(e: unknown): PgliteErrorData {
  if (e instanceof CancelledError) {
    return { kind: "cancelled", message: e.message };
  }
  const message = e instanceof Error ? e.message : String(e);
  if (errorCode(e) !== undefined) {
    const fields: Record<string, string> = {};
    const source = e as Record<string, unknown>;
    for (const key of DATABASE_ERROR_FIELDS) {
      if (typeof source[key] === "string") fields[key] = source[key];
    }
    return { kind: "database", message, fields };
  }
  return { kind: "internal", message };
}

function database(): PGlite {
  if (!db) throw new Error("Cannot run the statement: PGlite is not open");
  return db;
}

/** The transaction a statement belongs to (0 = none) and its timeout. */
function txOf(tx: number | undefined): { tx: number; timeoutMs: number } {
  if (tx === undefined) return { tx: 0, timeoutMs: 0 };
  if (openTx?.id !== tx) {
    throw new Error(`Cannot run the statement: transaction ${tx} is not open`);
  }
  return { tx, timeoutMs: openTx.timeoutMs };
}

async function open(dataDir: string | undefined): Promise<boolean> {
  if (db) throw new Error("Cannot open PGlite: it is already open");
  const pg = dataDir === undefined ? new PGlite() : new PGlite(dataDir);
  try {
    await pg.waitReady;
    // Route every built-in type through the shared converter (PGlite's own
    // defaults turn int8 into numbers and dates into Date objects).
    const types = await pg.query<{ oid: number }>(
      "SELECT oid::int4 AS oid FROM pg_type",
    );
    for (const { oid } of types.rows) {
      pg.parsers[oid] = (text: string) => pgTextToJson(oid, text);
    }
  } catch (e) {
    await pg.close().catch(() => {});
    throw e;
  }
  db = pg;
  interrupt = findInterruptCells(pg);
  installClockHooks();
  return interrupt !== undefined;
}

async function handle(msg: PgliteRequest): Promise<PgliteReply> {
  const { id } = msg;
  try {
    switch (msg.op) {
      case "open": {
        cancelCells = new Int32Array(msg.cancel);
        const interruptible = await open(msg.dataDir);
        return { id, ok: true, interruptible };
      }
      case "query": {
        const { tx, timeoutMs } = txOf(msg.tx);
        const pg = database();
        const r = await watched(
          tx,
          timeoutMs,
          () => pg.query<Row>(msg.sql, msg.params),
        );
        return {
          id,
          ok: true,
          result: toResult(r.rows, r.affectedRows, msg.maxRows),
        };
      }
      case "exec": {
        const { tx, timeoutMs } = txOf(msg.tx);
        const pg = database();
        await watched(tx, timeoutMs, () => pg.exec(msg.sql));
        return { id, ok: true };
      }
      case "begin": {
        if (openTx) {
          throw new Error(
            `Cannot begin transaction ${msg.tx}: transaction ${openTx.id} is open`,
          );
        }
        // The caller went away while waiting: do not start.
        if (isCancelled(msg.tx)) throw new CancelledError(msg.tx);
        const pg = database();
        const begin = msg.readOnly ? "BEGIN READ ONLY" : "BEGIN";
        const sql = [begin, msg.setup, "SHOW statement_timeout"]
          .filter((s) => s).join("; ");
        try {
          const results = await pg.exec(sql);
          const show = results.at(-1)?.rows[0] as Row | undefined;
          openTx = {
            id: msg.tx,
            timeoutMs: parseTimeout(show?.statement_timeout),
          };
        } catch (e) {
          await pg.exec("ROLLBACK").catch(() => {});
          throw e;
        }
        return { id, ok: true };
      }
      case "commit":
      case "rollback": {
        if (openTx?.id !== msg.tx) {
          if (msg.op === "rollback") return { id, ok: true }; // already over
          throw new Error(
            `Cannot commit transaction ${msg.tx}: it is not open`,
          );
        }
        openTx = undefined;
        const pg = database();
        try {
          await pg.exec(msg.op === "commit" ? "COMMIT" : "ROLLBACK");
        } finally {
          // The end is what the reply reports; the reset is best effort.
          if (msg.reset) await pg.exec(msg.reset).catch(() => {});
        }
        return { id, ok: true };
      }
      case "close": {
        const pg = db;
        db = undefined;
        openTx = undefined;
        if (pg && !pg.closed) await pg.close();
        return { id, ok: true };
      }
    }
  } catch (e) {
    return { id, ok: false, error: errorData(e) };
  }
}

let queue: Promise<void> = Promise.resolve();
scope.onmessage = (e) => {
  const msg = e.data;
  queue = queue.then(async () => {
    const reply = await handle(msg);
    try {
      scope.postMessage(reply);
    } catch (err) {
      scope.postMessage({
        id: msg.id,
        ok: false,
        error: {
          kind: "internal",
          message: `Cannot send the result to the host: ${
            errorData(err).message
          }`,
        },
      });
    }
  });
};
