/**
 * {@linkcode PgliteClient}: the embedded PostgreSQL (PGlite, WASM) run in a
 * Deno worker, so a plugin's SQL never holds the host's thread.
 *
 * @module
 */

import { fileURLToPath } from "node:url";
import type {
  SqlClient,
  SqlResult,
  SqlSession,
  SqlTransactionOptions,
} from "./sql_client.ts";
import {
  CANCEL_CELLS,
  CANCEL_TX,
  type PgliteErrorData,
  type PgliteReply,
  type PgliteRequest,
} from "./pglite_protocol.ts";

/** A statement PostgreSQL (in PGlite) refused; `code` is its SQLSTATE. */
export class PgliteQueryError extends Error {
  /** SQLSTATE, e.g. `"42P01"`. */
  readonly code: string;
  /** PostgreSQL's DETAIL, when it sent one. */
  readonly detail?: string;
  /** PostgreSQL's HINT, when it sent one. */
  readonly hint?: string;
  /** Every error field PostgreSQL sent (`severity`, `position`, `table`, …). */
  readonly fields: Readonly<Record<string, string>>;

  /** Creates the error from PostgreSQL's message and fields. */
  constructor(message: string, fields: Record<string, string>) {
    super(message);
    this.name = "PgliteQueryError";
    this.code = fields.code ?? "XX000";
    if (fields.detail !== undefined) this.detail = fields.detail;
    if (fields.hint !== undefined) this.hint = fields.hint;
    this.fields = fields;
  }
}

/**
 * PGlite cannot take the statement: it did not start, its worker stopped,
 * the client is closed, or too many calls are waiting. `code` is a SQLSTATE
 * (`08001` start failed, `08006` worker stopped, `08003` closed, `53300` too
 * many waiting), so the database service reports it like a server's refusal.
 */
export class PgliteUnavailableError extends Error {
  /** SQLSTATE. */
  readonly code: string;

  /** Creates the error. */
  constructor(code: string, message: string, options?: ErrorOptions) {
    super(message, options);
    this.name = "PgliteUnavailableError";
    this.code = code;
  }
}

/** Options of {@linkcode PgliteClient}. */
export interface PgliteClientOptions {
  /** Data directory, created if missing; absent = in memory. */
  dataDir?: string;
  /**
   * Most calls that may wait for the database at once (behind the one that
   * runs); one more is refused at once with {@linkcode PgliteUnavailableError}
   * `53300`. @default {1024}
   */
  maxWaiting?: number;
}

type WithoutId<T> = T extends unknown ? Omit<T, "id"> : never;
type OkReply = Extract<PgliteReply, { ok: true }>;

interface Link {
  worker: Worker;
  cancel: Int32Array;
  pending: Map<number, {
    resolve(reply: OkReply): void;
    reject(error: Error): void;
  }>;
  nextId: number;
  interruptible: boolean;
  dead?: Error;
}

interface Waiter {
  grant(): void;
}

/**
 * A {@linkcode SqlClient} over one PGlite database run in a Deno worker
 * (`pglite_worker.ts`), started on first use (PGlite takes seconds to start;
 * a failed start is not kept: the next call tries again).
 *
 * **Threads and permissions.** The worker may read PGlite's package files
 * and read and write the data directory, nothing else (no network,
 * environment, subprocesses, FFI or system information). The host process
 * needs `--unstable-worker-options` (GoatKit's `deno.json` enables it:
 * without it Deno exits the process when the worker is created). A started
 * client keeps the process alive until {@linkcode PgliteClient.close}.
 *
 * **One connection.** PGlite has one session, so calls run one at a time:
 * a call waits (first come, first served) until the transaction before it
 * has ended, then holds the worker for its own transaction. At most
 * {@linkcode PgliteClientOptions.maxWaiting} calls wait; more are refused.
 *
 * **Deadlines.** When a transaction's `signal` aborts, its promise rejects at
 * once with an `AbortError` `DOMException` (the database service turns it
 * into SQLSTATE 57014), whatever the worker is doing:
 * - a call still waiting for the worker is dropped: it never runs;
 * - an open transaction is rolled back by the worker as soon as it is free;
 * - the running statement is interrupted when it reads a clock (it then
 *   fails with 57014 and the worker moves on), which PGlite does while it
 *   sleeps (`pg_sleep`), spills to temporary files or reads the data
 *   directory. The transaction's `statement_timeout` (as set by its `setup`)
 *   is enforced the same way; PGlite itself cannot enforce it.
 *
 * **What cannot be cancelled.** A statement that only computes in memory
 * (a large join of `generate_series`, an endless PL/pgSQL loop in a function)
 * reads no clock: it keeps the worker until it ends, and every later call
 * waits behind it — each still rejects at its own deadline, and one without
 * a signal (the host's own SQL) waits for as long as it takes. Nothing can
 * stop such a statement: `Worker.terminate()` does not stop a busy worker
 * (Deno 2.9.6), and killing a worker that has an on-disk database open would
 * risk corrupting it. `COMMIT`, `ROLLBACK` and `BEGIN` with its setup are
 * never interrupted. {@linkcode PgliteClient.close} waits for the running
 * transaction (and those already waiting) to end.
 *
 * Rows are JSON-safe, converted in the worker by `pgTextToJson`
 * (`pg_types.ts`). A query with `maxRows` keeps at most `maxRows + 1` rows
 * and sets `truncated` when more than `maxRows` came back.
 *
 * @example
 * ```ts ignore
 * import { PgliteClient } from "./pglite_client.ts";
 * const client = new PgliteClient({}); // in memory
 * console.log((await client.query("SELECT 1 AS one")).rows); // [{ one: 1 }]
 * await client.close();
 * ```
 */
export class PgliteClient implements SqlClient {
  #dataDir: string | undefined;
  #maxWaiting: number;
  #starting: Promise<Link> | undefined;
  #link: Link | undefined;
  #started = false;
  #closed = false;
  #closing: Promise<void> | undefined;
  #busy = false;
  #waiting: Waiter[] = [];
  #nextTx = 1;

  /** Prepares a client; nothing starts yet. */
  constructor(opts: PgliteClientOptions = {}) {
    this.#dataDir = opts.dataDir;
    this.#maxWaiting = opts.maxWaiting ?? 1024;
  }

  /** Whether the database has been started (or is starting). */
  get started(): boolean {
    return this.#started;
  }

  /**
   * Whether a running statement can be interrupted (see the class notes);
   * `undefined` until the database has started.
   */
  get interruptible(): boolean | undefined {
    return this.#link?.interruptible;
  }

  /** Runs one statement as the database user (waits for its turn). */
  async query(sql: string, params: unknown[] = []): Promise<SqlResult> {
    await this.#acquire(undefined);
    try {
      const link = await this.#ready(undefined);
      const reply = await this.#send(link, { op: "query", sql, params });
      return reply.result!;
    } finally {
      this.#release();
    }
  }

  /**
   * Runs `fn` in a transaction: COMMIT on success (ROLLBACK with
   * `options.rollback`), ROLLBACK on error or abort; then `options.reset`
   * (best effort: a failing reset is ignored, the session stays in use).
   */
  async transaction<T>(
    options: SqlTransactionOptions,
    fn: (session: SqlSession) => Promise<T>,
  ): Promise<T> {
    const { signal } = options;
    if (signal?.aborted) throw abortError(signal);
    await this.#acquire(signal);
    let link: Link;
    try {
      link = await this.#ready(signal);
    } catch (e) {
      this.#release();
      throw e;
    }
    const tx = this.#nextTx;
    this.#nextTx = tx >= 0x7fff_ffff ? 1 : tx + 1;
    const reset = options.reset ? { reset: options.reset } : {};
    let open = true;
    let releaseLater = false;
    const onAbort = () => Atomics.store(link.cancel, CANCEL_TX, tx);
    signal?.addEventListener("abort", onAbort, { once: true });
    // BEGIN is not awaited on its own: the first statement follows it in the
    // worker's queue, and a failed BEGIN is reported in its place.
    let begun: Promise<unknown> | undefined;
    const run = async (msg: WithoutId<PgliteRequest>) => {
      if (signal?.aborted) throw abortError(signal);
      if (!open) {
        throw new Error("Cannot run the statement: the transaction is over");
      }
      const reply = this.#send(link, msg);
      if (begun) {
        reply.catch(() => {});
        await abortable(begun, signal);
      }
      return await abortable(reply, signal);
    };
    try {
      begun = this.#send(link, {
        op: "begin",
        tx,
        readOnly: options.readOnly === true,
        ...(options.setup ? { setup: options.setup } : {}),
      });
      begun.catch(() => {});
      const session: SqlSession = {
        query: async (sql, params = [], o = {}) => {
          const reply = await run({
            op: "query",
            tx,
            sql,
            params,
            ...(o.maxRows !== undefined ? { maxRows: o.maxRows } : {}),
          });
          return reply.result!;
        },
        exec: async (sql) => {
          await run({ op: "exec", tx, sql });
        },
      };
      const result = await abortable(fn(session), signal);
      await abortable(begun, signal);
      // Not abortable: the worker is this transaction's and idle.
      open = false;
      const end = this.#send(link, {
        op: options.rollback ? "rollback" : "commit",
        tx,
        ...reset,
      });
      if (options.readOnly || options.rollback) {
        // Nothing to lose at this end: the next transaction's messages
        // queue behind it in the worker, so the caller need not wait.
        end.catch(() => {});
      } else {
        await end;
      }
      return result;
    } catch (e) {
      if (open) {
        // The worker rolls back as soon as it is free; the caller (who may
        // have gone away) does not wait for that.
        open = false;
        releaseLater = true;
        this.#send(link, { op: "rollback", tx, ...reset })
          .catch(() => {})
          .finally(() => this.#release());
      }
      throw e;
    } finally {
      signal?.removeEventListener("abort", onAbort);
      if (!releaseLater) this.#release();
    }
  }

  /**
   * Closes PGlite once (later calls wait for the same close): refuses new
   * calls, lets the running and already waiting ones end, then stops the
   * worker.
   */
  close(): Promise<void> {
    return this.#closing ??= this.#shutdown();
  }

  async #shutdown(): Promise<void> {
    this.#closed = true;
    if (!this.#starting) return;
    await this.#acquire(undefined, true);
    // Holds the lease for good: nothing runs after the close.
    const link = await this.#starting?.catch(() => undefined);
    if (!link) return;
    try {
      if (!link.dead) await this.#send(link, { op: "close" });
    } finally {
      this.#fail(link, closedError());
      link.worker.terminate();
    }
  }

  /** Waits for the worker (first come, first served). */
  #acquire(signal: AbortSignal | undefined, closing = false): Promise<void> {
    if (this.#closed && !closing) return Promise.reject(closedError());
    if (!this.#busy) {
      this.#busy = true;
      return Promise.resolve();
    }
    if (!closing && this.#waiting.length >= this.#maxWaiting) {
      return Promise.reject(
        new PgliteUnavailableError(
          "53300",
          `Cannot run the statement: ${this.#waiting.length} calls are already waiting for the embedded database`,
        ),
      );
    }
    return new Promise((resolve, reject) => {
      const onAbort = () => {
        const i = this.#waiting.indexOf(waiter);
        if (i >= 0) this.#waiting.splice(i, 1);
        reject(abortError(signal!));
      };
      const waiter: Waiter = {
        grant: () => {
          signal?.removeEventListener("abort", onAbort);
          resolve();
        },
      };
      signal?.addEventListener("abort", onAbort, { once: true });
      this.#waiting.push(waiter);
    });
  }

  #release(): void {
    const next = this.#waiting.shift();
    if (next) next.grant();
    else this.#busy = false;
  }

  /** The running worker, started on first use. */
  #ready(signal: AbortSignal | undefined): Promise<Link> {
    if (!this.#starting) {
      // A call that waited since before close() still runs on the started
      // worker; nothing starts after it.
      if (this.#closed) return Promise.reject(closedError());
      this.#started = true;
      const starting = this.#spawn().catch((e) => {
        if (this.#starting === starting) {
          this.#starting = undefined;
          this.#started = false;
        }
        throw e;
      });
      this.#starting = starting;
    }
    return abortable(this.#starting, signal);
  }

  async #spawn(): Promise<Link> {
    let dataDir: string | undefined;
    try {
      if (this.#dataDir !== undefined) {
        await Deno.mkdir(this.#dataDir, { recursive: true });
        dataDir = await Deno.realPath(this.#dataDir);
      }
    } catch (e) {
      throw new PgliteUnavailableError(
        "08001",
        `Cannot start PGlite in "${this.#dataDir}": ${errorText(e)}`,
        { cause: e },
      );
    }
    const url = new URL("./pglite_worker.ts", import.meta.url);
    const packageDir = pglitePackageDir();
    const read = [packageDir, dataDir].filter((p) => p !== undefined);
    let worker: Worker;
    try {
      worker = new Worker(url, {
        type: "module",
        name: "pglite",
        deno: {
          permissions: {
            read: read.length > 0 ? read : false,
            write: dataDir === undefined ? false : [dataDir],
            net: false,
            env: false,
            run: false,
            ffi: false,
            sys: false,
            // A remote copy of this module needs to load its worker's imports.
            import: url.protocol === "file:" ? false : "inherit",
          },
        },
      });
    } catch (e) {
      // E.g. the host itself may not read PGlite's files or the data directory.
      throw new PgliteUnavailableError(
        "08001",
        `Cannot start PGlite: cannot create its worker: ${errorText(e)}`,
        { cause: e },
      );
    }
    const link: Link = {
      worker,
      cancel: new Int32Array(
        new SharedArrayBuffer(CANCEL_CELLS * Int32Array.BYTES_PER_ELEMENT),
      ),
      pending: new Map(),
      nextId: 1,
      interruptible: false,
    };
    worker.onmessage = (e: MessageEvent<PgliteReply>) => {
      const entry = link.pending.get(e.data.id);
      if (!entry) return;
      link.pending.delete(e.data.id);
      if (e.data.ok) entry.resolve(e.data);
      else entry.reject(replyError(e.data.error));
    };
    worker.onerror = (e) => {
      // Handled here: an unhandled worker error would end the host.
      e.preventDefault();
      this.#fail(
        link,
        new PgliteUnavailableError(
          "08006",
          `Cannot run the statement: the PGlite worker stopped: ${e.message}`,
        ),
      );
      worker.terminate();
    };
    worker.onmessageerror = () => {
      this.#fail(
        link,
        new PgliteUnavailableError(
          "08006",
          "Cannot run the statement: a reply of the PGlite worker could not be read",
        ),
      );
      worker.terminate();
    };
    try {
      const reply = await this.#send(link, {
        op: "open",
        ...(dataDir === undefined ? {} : { dataDir }),
        cancel: link.cancel.buffer as SharedArrayBuffer,
      });
      link.interruptible = reply.interruptible === true;
    } catch (e) {
      this.#fail(link, errorOf(e));
      worker.terminate();
      throw new PgliteUnavailableError(
        "08001",
        `Cannot start PGlite${
          dataDir === undefined ? "" : ` in "${dataDir}"`
        }: ${errorText(e)}`,
        { cause: e },
      );
    }
    this.#link = link;
    return link;
  }

  /** Marks the worker gone: its pending calls fail, the next call restarts. */
  #fail(link: Link, error: Error): void {
    link.dead ??= error;
    for (const entry of link.pending.values()) entry.reject(link.dead);
    link.pending.clear();
    if (this.#link === link && !this.#closed) {
      this.#link = undefined;
      this.#starting = undefined;
      this.#started = false;
    }
  }

  #send(link: Link, msg: WithoutId<PgliteRequest>): Promise<OkReply> {
    if (link.dead) return Promise.reject(link.dead);
    const id = link.nextId++;
    return new Promise((resolve, reject) => {
      link.pending.set(id, { resolve, reject });
      try {
        link.worker.postMessage({ ...msg, id });
      } catch (e) {
        link.pending.delete(id);
        reject(
          new TypeError(
            `Cannot send the statement to PGlite: ${errorText(e)}`,
            { cause: e },
          ),
        );
      }
    });
  }
}

/** The folder of PGlite's files (its WASM, data bundle), for the worker's read permission. */
function pglitePackageDir(): string | undefined {
  try {
    const url = new URL(".", import.meta.resolve("@electric-sql/pglite"));
    return url.protocol === "file:" ? fileURLToPath(url) : undefined;
  } catch {
    return undefined;
  }
}

/** Rejects with an `AbortError` when `signal` aborts first. */
function abortable<T>(
  p: Promise<T>,
  signal: AbortSignal | undefined,
): Promise<T> {
  if (!signal) return p;
  if (signal.aborted) {
    p.catch(() => {});
    return Promise.reject(abortError(signal));
  }
  return new Promise<T>((resolve, reject) => {
    const onAbort = () => reject(abortError(signal));
    signal.addEventListener("abort", onAbort, { once: true });
    p.then(resolve, reject).finally(() =>
      signal.removeEventListener("abort", onAbort)
    );
  });
}

function abortError(signal: AbortSignal): DOMException {
  const e = new DOMException(
    "Cannot run the statement: the call was aborted",
    "AbortError",
  );
  Object.defineProperty(e, "cause", {
    value: signal.reason,
    configurable: true,
    writable: true,
  });
  return e;
}

function closedError(): PgliteUnavailableError {
  return new PgliteUnavailableError(
    "08003",
    "Cannot run the statement: the PGlite client is closed",
  );
}

function replyError(data: PgliteErrorData): Error {
  switch (data.kind) {
    case "database":
      return new PgliteQueryError(data.message, data.fields ?? {});
    case "cancelled":
      return new DOMException(data.message, "AbortError");
    default:
      return new Error(data.message);
  }
}

function errorOf(e: unknown): Error {
  return e instanceof Error ? e : new Error(String(e));
}

function errorText(e: unknown): string {
  return e instanceof Error ? e.message : String(e);
}
