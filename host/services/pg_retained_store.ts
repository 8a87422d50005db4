/**
 * {@linkcode RetainedStore}: what the durable log and audit stores share —
 * a scoped host table, writes queued and sent in batches by a
 * {@linkcode BatchWriter}, retention by age and count (on a timer, and as
 * soon as a tenth of `maxRows` new rows arrived since the last prune, so a
 * flood cannot grow the table much past `maxRows`), and reads that wait
 * for the host's embedded database to have started. A store supplies its
 * table, its row writer and its queries.
 *
 * @module
 */

import { HostTable } from "../../permissions/host_schema.ts";
import { BatchWriter } from "./pg_batch.ts";
import { type PruneResult, ScopedTable } from "./pg_scoped_table.ts";
import type { SqlClient } from "./sql_client.ts";

/** Options every retained store takes from its caller. */
export interface RetainedStoreOptions {
  /** The host's own SQL client (`sqlClient` of the default database). */
  client: SqlClient;
  /** `schema.table` (plain lower-case names); each store has its default. */
  table?: string;
  /** Rows older than this many days are pruned (0: never by age). */
  retentionDays?: number;
  /** At most this many rows are kept (the oldest pruned; 0: no cap). */
  maxRows?: number;
  /** How often retention runs, in ms. @default 60000 */
  pruneIntervalMs?: number;
  /** Batching: rows per INSERT. @default 100 */
  maxBatch?: number;
  /** Batching: longest wait of a row, in ms. @default 200 */
  flushIntervalMs?: number;
  /** Rows kept waiting at most while the database is slow or down. @default 10000 */
  maxPending?: number;
  /**
   * Nothing is written or read before this settles (the host holds writes
   * until its embedded database has started, so that start stays its own).
   */
  after?: Promise<unknown>;
  /** Told about write and prune failures (never thrown into `add`). */
  onError?: (what: string, error: unknown) => void;
}

/** What a store fixes about its table. */
export interface RetainedTableSpec<T> {
  /** The default table name. */
  table: string;
  /** `CREATE TABLE` columns (with `scope … DEFAULT current_schema()`). */
  columns: string;
  /** The timestamp column retention prunes by. */
  timeColumn: string;
  /** Default retention in days. */
  retentionDays: number;
  /** Default row cap. */
  maxRows: number;
  /** Coalesces queued items with the same key (a newer one replaces it). */
  key?: (item: T) => string;
}

/**
 * A scoped, batched, retained host table (see the module doc); subclasses
 * write rows in {@linkcode RetainedStore.writeRows} and query through
 * {@linkcode RetainedStore.client} once {@linkcode RetainedStore.ready}.
 */
export abstract class RetainedStore<T> {
  /** The host's SQL client. */
  protected readonly client: SqlClient;
  /** The scoped table (its quoted name is `table.sqlName`). */
  protected readonly table: ScopedTable;
  readonly #spec: RetainedTableSpec<T>;
  readonly #writer: BatchWriter<T>;
  readonly #retentionDays: number;
  readonly #maxRows: number;
  readonly #pruneEvery: number;
  readonly #onError: (what: string, error: unknown) => void;
  readonly #after: Promise<unknown> | undefined;
  #sincePrune = 0;
  #pruning: Promise<PruneResult> | undefined;
  #timer: ReturnType<typeof setInterval> | undefined;

  /** Sets up the table, the batch writer and the prune timer. */
  constructor(options: RetainedStoreOptions, spec: RetainedTableSpec<T>) {
    this.client = options.client;
    this.#spec = spec;
    const host = new HostTable(options.client, {
      table: options.table ?? spec.table,
      columns: spec.columns,
    });
    this.table = new ScopedTable(options.client, host, ["id"]);
    this.#retentionDays = Math.max(
      0,
      options.retentionDays ?? spec.retentionDays,
    );
    this.#maxRows = Math.max(
      0,
      Math.floor(options.maxRows ?? spec.maxRows),
    );
    this.#pruneEvery = this.#maxRows > 0
      ? Math.max(100, Math.floor(this.#maxRows / 10))
      : Infinity;
    this.#onError = options.onError ?? (() => {});
    this.#after = options.after?.catch(() => {});
    this.#writer = new BatchWriter<T>({
      write: (items) => this.#write(items),
      ...(spec.key ? { key: spec.key } : {}),
      maxBatch: options.maxBatch ?? 100,
      intervalMs: options.flushIntervalMs ?? 200,
      maxPending: options.maxPending ?? 10_000,
      onError: (e) => this.#onError("write", e),
    });
    const every = options.pruneIntervalMs ?? 60_000;
    if (every > 0) {
      this.#timer = setInterval(() => {
        this.prune().catch((e) => this.#onError("prune", e));
      }, every);
      Deno.unrefTimer(this.#timer as unknown as number);
    }
  }

  /** Rows dropped because the database could not keep up. */
  get dropped(): number {
    return this.#writer.dropped;
  }

  /** Queues a row for the next batch. */
  add(item: T): void {
    this.#writer.push(item);
  }

  /** Writes every queued row now. */
  flush(): Promise<void> {
    return this.#writer.flush();
  }

  /** How many rows this scope holds (queued ones written first). */
  async count(): Promise<number> {
    await this.ready();
    const { rows } = await this.client.query(
      `SELECT count(*) AS n FROM ${this.table.sqlName} WHERE scope = current_schema()`,
    );
    return Number(rows[0]?.n ?? 0);
  }

  /** Removes every row of this scope (queued ones written first). */
  async clear(): Promise<void> {
    await this.ready();
    await this.client.query(
      `DELETE FROM ${this.table.sqlName} WHERE scope = current_schema()`,
    );
  }

  /** Applies the retention now (one prune at a time). */
  prune(): Promise<PruneResult> {
    this.#pruning ??= (async () => {
      await this.#after;
      await this.table.ready();
      this.#sincePrune = 0;
      return await this.table.prune({
        timeColumn: this.#spec.timeColumn,
        retentionDays: this.#retentionDays,
        maxRows: this.#maxRows,
      });
    })().finally(() => {
      this.#pruning = undefined;
    });
    return this.#pruning;
  }

  /** Writes what is queued and stops the timers. */
  async close(): Promise<void> {
    clearInterval(this.#timer);
    await this.#writer.close();
    await this.#pruning?.catch(() => {});
  }

  /**
   * Resolves once the table can be read: queued rows written, the host's
   * database started, the table created.
   */
  protected async ready(): Promise<void> {
    await this.flush();
    await this.#after;
    await this.table.ready();
  }

  /** Writes one batch of rows (one statement). */
  protected abstract writeRows(items: T[]): Promise<void>;

  async #write(items: T[]): Promise<void> {
    await this.#after;
    await this.table.ready();
    await this.writeRows(items);
    this.#sincePrune += items.length;
    // Pruned before the next batch is written: however fast rows come, the
    // table holds at most maxRows plus one prune interval of them.
    if (this.#sincePrune >= this.#pruneEvery) {
      await this.prune().catch((e) => this.#onError("prune", e));
    }
  }
}
