/**
 * The durable audit log: table `goatkit.audit` in the host's own schema,
 * written in batches (every 200 ms or 100 entries, one multi-row upsert:
 * a rate-limit summary whose count grows is one row, updated), kept by age
 * (`retentionDays`) and count (`maxRows`), scoped like the logs (the rows of
 * the hosts that share a database and application schema; see
 * `pg_log_store.ts`).
 *
 * @module
 */

import type {
  AuditEntry,
  AuditSearch,
  DurableAuditStore,
} from "../../permissions/audit.ts";
import { HostTable } from "../../permissions/host_schema.ts";
import { BatchWriter } from "./pg_batch.ts";
import { jsonbText, type PruneResult, storedText } from "./pg_log_store.ts";
import { ScopedTable } from "./pg_scoped_table.ts";
import type { SqlClient } from "./sql_client.ts";

/** Options of {@linkcode PgAuditStore}. */
export interface PgAuditStoreOptions {
  /** The host's own SQL client. */
  client: SqlClient;
  /** `schema.table`. @default "goatkit.audit" */
  table?: string;
  /** Entries older than this many days are pruned (0: never by age). @default 90 */
  retentionDays?: number;
  /** At most this many entries are kept (0: no cap). @default 100000 */
  maxRows?: number;
  /** How often retention runs, in ms. @default 60000 */
  pruneIntervalMs?: number;
  /** Batching: longest wait of an entry, in ms. @default 200 */
  flushIntervalMs?: number;
  /**
   * Nothing is written or read before this settles (the host holds writes
   * until its embedded database has started, so that start stays its own).
   */
  after?: Promise<unknown>;
  /** Told about write and prune failures. */
  onError?: (what: string, error: unknown) => void;
}

const COLUMNS = `id bigserial PRIMARY KEY,
  uid text NOT NULL UNIQUE,
  scope text NOT NULL DEFAULT current_schema(),
  ts timestamptz NOT NULL,
  plugin text NOT NULL,
  action text,
  outcome text NOT NULL,
  permission text NOT NULL,
  attempted text NOT NULL,
  method text,
  actor text,
  ip text,
  before jsonb,
  after jsonb,
  count integer`;

/**
 * Audit entries in PostgreSQL (see the module doc).
 *
 * @example
 * ```ts ignore
 * import { AuditLog } from "../../permissions/audit.ts";
 * import { PgAuditStore } from "./pg_audit_store.ts";
 * const audit = new AuditLog();
 * audit.persistTo(new PgAuditStore({ client: db.sqlClient }));
 * audit.record({ plugin: "hello", permission: "db:read", attempted: "db_query" });
 * console.log(await audit.search({ plugin: "hello" }));
 * ```
 */
export class PgAuditStore implements DurableAuditStore {
  readonly #client: SqlClient;
  readonly #table: ScopedTable;
  readonly #writer: BatchWriter<AuditEntry>;
  readonly #retentionDays: number;
  readonly #maxRows: number;
  readonly #pruneEvery: number;
  readonly #onError: (what: string, error: unknown) => void;
  #sincePrune = 0;
  #after: Promise<unknown> | undefined;
  #pruning: Promise<PruneResult> | undefined;
  #timer: ReturnType<typeof setInterval> | undefined;

  /** Creates the store; nothing is sent before the first write or read. */
  constructor(options: PgAuditStoreOptions) {
    this.#client = options.client;
    const host = new HostTable(options.client, {
      table: options.table ?? "goatkit.audit",
      columns: COLUMNS,
    });
    this.#table = new ScopedTable(options.client, host, ["id"]);
    this.#retentionDays = Math.max(0, options.retentionDays ?? 90);
    this.#maxRows = Math.max(0, Math.floor(options.maxRows ?? 100_000));
    this.#pruneEvery = this.#maxRows > 0
      ? Math.max(100, Math.floor(this.#maxRows / 10))
      : Infinity;
    this.#onError = options.onError ?? (() => {});
    this.#after = options.after?.catch(() => {});
    this.#writer = new BatchWriter<AuditEntry>({
      write: (items) => this.#upsert(items),
      key: (e) => e.id ?? crypto.randomUUID(),
      maxBatch: 100,
      intervalMs: options.flushIntervalMs ?? 200,
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

  /** Queues an entry (or a newer version of one with the same `id`). */
  add(entry: AuditEntry): void {
    this.#writer.push(entry);
  }

  /** Writes every queued entry now. */
  flush(): Promise<void> {
    return this.#writer.flush();
  }

  /** Entries matching every filter of `q`, newest first. */
  async search(q: AuditSearch = {}): Promise<AuditEntry[]> {
    await this.flush();
    await this.#after;
    await this.#table.ready();
    const where = ["scope = current_schema()"];
    const params: unknown[] = [];
    const p = (v: unknown) => {
      params.push(v);
      return `$${params.length}`;
    };
    if (q.plugin !== undefined) where.push(`plugin = ${p(q.plugin)}`);
    if (q.since !== undefined) {
      where.push(`ts >= ${p(new Date(q.since).toISOString())}::timestamptz`);
    }
    if (q.until !== undefined) {
      where.push(`ts <= ${p(new Date(q.until).toISOString())}::timestamptz`);
    }
    if (q.outcome !== undefined) where.push(`outcome = ${p(q.outcome)}`);
    if (q.action !== undefined) where.push(`action = ${p(q.action)}`);
    if (q.text) {
      where.push(
        `strpos(lower(concat_ws(' ', plugin, action, outcome, permission, attempted, method, actor, ip, before::text, after::text)), lower(${
          p(q.text)
        })) > 0`,
      );
    }
    const limit = q.limit !== undefined && q.limit >= 0
      ? Math.min(q.limit, 100_000)
      : 1000;
    const { rows } = await this.#client.query(
      `SELECT uid, to_char(ts AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.MS"Z"') AS ts,
              plugin, action, outcome, permission, attempted, method, actor, ip,
              before, after, count
         FROM ${this.#table.sqlName}
        WHERE ${where.join(" AND ")}
        ORDER BY ts DESC, id DESC LIMIT ${limit}`,
      params,
    );
    return rows.map((r) => {
      const e: AuditEntry = {
        id: String(r.uid),
        time: String(r.ts),
        plugin: String(r.plugin),
        permission: String(r.permission),
        attempted: String(r.attempted),
        outcome: String(r.outcome),
      };
      if (r.method !== null) e.method = String(r.method);
      if (r.action !== null) e.action = String(r.action);
      if (r.actor !== null) e.actor = String(r.actor);
      if (r.ip !== null) e.ip = String(r.ip);
      if (r.before !== null) e.before = r.before;
      if (r.after !== null) e.after = r.after;
      if (r.count !== null) e.count = Number(r.count);
      return e;
    });
  }

  /** Applies the retention now. */
  prune(): Promise<PruneResult> {
    this.#pruning ??= (async () => {
      this.#sincePrune = 0;
      return await this.#table.prune({
        timeColumn: "ts",
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

  async #upsert(items: AuditEntry[]): Promise<void> {
    await this.#after;
    await this.#table.ready();
    const params: unknown[] = [];
    const values = items.map((e) => {
      const b = params.length;
      params.push(
        e.id ?? crypto.randomUUID(),
        e.time,
        e.plugin,
        e.action ?? null,
        e.outcome,
        storedText(e.permission),
        storedText(e.attempted),
        e.method ?? null,
        e.actor === undefined ? null : storedText(e.actor),
        e.ip ?? null,
        jsonbText(e.before),
        jsonbText(e.after),
        e.count ?? null,
      );
      const n = (i: number) => `$${b + i}`;
      return `(${n(1)}, ${n(2)}::timestamptz, ${n(3)}, ${n(4)}, ${n(5)}, ${
        n(6)
      }, ${n(7)}, ${n(8)}, ${n(9)}, ${n(10)}, ${n(11)}::jsonb, ${
        n(12)
      }::jsonb, ${n(13)}::integer)`;
    });
    await this.#client.query(
      `INSERT INTO ${this.#table.sqlName}
         (uid, ts, plugin, action, outcome, permission, attempted, method,
          actor, ip, before, after, count)
       VALUES ${values.join(", ")}
       ON CONFLICT (uid) DO UPDATE
         SET attempted = EXCLUDED.attempted, count = EXCLUDED.count`,
      params,
    );
    this.#sincePrune += items.length;
    if (this.#sincePrune >= this.#pruneEvery) {
      this.prune().catch((e) => this.#onError("prune", e));
    }
  }
}
