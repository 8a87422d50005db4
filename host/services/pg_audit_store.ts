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
import { jsonbText, storedText } from "./pg_log_store.ts";
import {
  RetainedStore,
  type RetainedStoreOptions,
} from "./pg_retained_store.ts";

/** Options of {@linkcode PgAuditStore}: `table` defaults to `goatkit.audit`, `retentionDays` to 90, `maxRows` to 100000. */
export type PgAuditStoreOptions = RetainedStoreOptions;

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
export class PgAuditStore extends RetainedStore<AuditEntry>
  implements DurableAuditStore {
  /** Creates the store; nothing is sent before the first write or read. */
  constructor(options: PgAuditStoreOptions) {
    super(options, {
      table: "goatkit.audit",
      columns: COLUMNS,
      timeColumn: "ts",
      retentionDays: 90,
      maxRows: 100_000,
      // A rate-limit summary whose count grows is one row, updated.
      key: (e) => e.id ?? crypto.randomUUID(),
    });
  }

  /** Entries matching every filter of `q`, newest first. */
  async search(q: AuditSearch = {}): Promise<AuditEntry[]> {
    await this.ready();
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
    const { rows } = await this.client.query(
      `SELECT uid, to_char(ts AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.MS"Z"') AS ts,
              plugin, action, outcome, permission, attempted, method, actor, ip,
              before, after, count
         FROM ${this.table.sqlName}
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

  /** Writes one batch of entries (one multi-row upsert). */
  protected async writeRows(items: AuditEntry[]): Promise<void> {
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
    await this.client.query(
      `INSERT INTO ${this.table.sqlName}
         (uid, ts, plugin, action, outcome, permission, attempted, method,
          actor, ip, before, after, count)
       VALUES ${values.join(", ")}
       ON CONFLICT (uid) DO UPDATE
         SET attempted = EXCLUDED.attempted, count = EXCLUDED.count`,
      params,
    );
  }
}
