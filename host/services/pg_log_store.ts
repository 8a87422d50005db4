/**
 * The durable record of the host's and plugins' log lines: table
 * `goatkit.logs` in the host's own schema (created on first use under the
 * host's advisory lock, see `permissions/host_schema.ts`), on PostgreSQL or
 * the embedded PGlite.
 *
 * - **Batched writes.** {@linkcode PgLogStore.add} only queues; lines are
 *   written by a {@linkcode BatchWriter} (every 200 ms or 100 lines, one
 *   multi-row INSERT), so a log-heavy plugin never costs an INSERT per line.
 * - **Retention** by age (`retentionDays`) and by count (`maxRows`): pruned
 *   every `pruneIntervalMs`, and also as soon as a tenth of `maxRows` new
 *   lines arrived since the last prune, so a flood cannot grow the table
 *   much past `maxRows`.
 * - **Scope.** Each row carries the `current_schema()` of the host's
 *   connection (its application schema). Hosts that share a database and an
 *   application schema (one deployment) share their logs; a host on another
 *   schema of the same database sees, prunes and clears only its own.
 *
 * @module
 */

import type { LogEntry, LogSearch } from "../log_buffer.ts";
import { LOG_LEVELS } from "../model/host_api.ts";
import {
  RetainedStore,
  type RetainedStoreOptions,
} from "./pg_retained_store.ts";

/** Longest message kept in the database, in characters (longer ones are cut). */
export const MAX_STORED_MESSAGE = 16_384;

/** Options of {@linkcode PgLogStore}: `table` defaults to `goatkit.logs`, `retentionDays` to 14, `maxRows` to 100000. */
export type PgLogStoreOptions = RetainedStoreOptions;

/** What a prune removed. */
export type { PruneResult } from "./pg_scoped_table.ts";

const COLUMNS = `id bigserial PRIMARY KEY,
  scope text NOT NULL DEFAULT current_schema(),
  ts timestamptz NOT NULL,
  plugin text NOT NULL,
  level text NOT NULL,
  message text NOT NULL,
  fields jsonb`;

const TS_TEXT =
  `to_char(ts AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.MS"Z"')`;

/**
 * Log lines in PostgreSQL (see the module doc).
 *
 * @example
 * ```ts ignore
 * import { PgLogStore } from "./pg_log_store.ts";
 * const store = new PgLogStore({ client: db.sqlClient, maxRows: 50_000 });
 * store.add({ timestamp: new Date().toISOString(), plugin: "hello", level: "info", message: "hi" });
 * console.log(await store.search({ plugin: "hello", text: "hi" }));
 * await store.close();
 * ```
 */
export class PgLogStore extends RetainedStore<LogEntry> {
  /** Creates the store; nothing is sent before the first write or read. */
  constructor(options: PgLogStoreOptions) {
    super(options, {
      table: "goatkit.logs",
      columns: COLUMNS,
      timeColumn: "ts",
      retentionDays: 14,
      maxRows: 100_000,
    });
  }

  /**
   * Lines matching every filter of `q` (queued lines are written first):
   * newest first, or oldest first with `order: "asc"` (for a cursor:
   * `after` the last id seen).
   */
  async search(q: LogSearch = {}): Promise<LogEntry[]> {
    await this.ready();
    const where = ["scope = current_schema()"];
    const params: unknown[] = [];
    const p = (v: unknown) => {
      params.push(v);
      return `$${params.length}`;
    };
    if (q.plugin !== undefined) where.push(`plugin = ${p(q.plugin)}`);
    if (q.minLevel !== undefined && q.minLevel !== "debug") {
      const levels = LOG_LEVELS.slice(LOG_LEVELS.indexOf(q.minLevel));
      where.push(`level IN (${levels.map((l) => p(l)).join(", ")})`);
    }
    if (q.since !== undefined) {
      where.push(`ts >= ${p(new Date(q.since).toISOString())}::timestamptz`);
    }
    if (q.until !== undefined) {
      where.push(`ts <= ${p(new Date(q.until).toISOString())}::timestamptz`);
    }
    if (q.text) {
      where.push(
        `strpos(lower(message || ' ' || coalesce(fields::text, '')), lower(${
          p(q.text)
        })) > 0`,
      );
    }
    if (q.after !== undefined) where.push(`id > ${p(String(q.after))}::bigint`);
    const limit = q.limit !== undefined && q.limit >= 0
      ? Math.min(q.limit, 100_000)
      : 1000;
    const order = q.order === "asc" ? "ASC" : "DESC";
    const { rows } = await this.client.query(
      `SELECT id, ${TS_TEXT} AS ts, plugin, level, message, fields
         FROM ${this.table.sqlName}
        WHERE ${where.join(" AND ")}
        ORDER BY id ${order} LIMIT ${limit}`,
      params,
    );
    return rows.map((r) => ({
      id: Number(r.id),
      timestamp: String(r.ts),
      plugin: String(r.plugin),
      level: LOG_LEVELS.includes(r.level as LogEntry["level"])
        ? r.level as LogEntry["level"]
        : "info",
      message: String(r.message),
      ...(r.fields && typeof r.fields === "object"
        ? { fields: r.fields as Record<string, unknown> }
        : {}),
    }));
  }

  /** Writes one batch of lines (one multi-row INSERT). */
  protected async writeRows(items: LogEntry[]): Promise<void> {
    const params: unknown[] = [];
    const values = items.map((e) => {
      const base = params.length;
      params.push(
        e.timestamp,
        e.plugin,
        e.level,
        storedText(e.message),
        fieldsJson(e.fields),
      );
      return `($${base + 1}::timestamptz, $${base + 2}, $${base + 3}, $${
        base + 4
      }, $${base + 5}::jsonb)`;
    });
    await this.client.query(
      `INSERT INTO ${this.table.sqlName} (ts, plugin, level, message, fields)
       VALUES ${values.join(", ")}`,
      params,
    );
  }
}

/**
 * A message as PostgreSQL `text` takes it: NUL (which it refuses) replaced,
 * cut at {@linkcode MAX_STORED_MESSAGE} characters.
 */
export function storedText(text: string): string {
  const t = text.replaceAll("\u0000", "\uFFFD");
  return t.length > MAX_STORED_MESSAGE
    ? `${t.slice(0, MAX_STORED_MESSAGE)}… (cut)`
    : t;
}

/**
 * A value as `jsonb` takes it, or `null` for nothing: a bigint becomes a
 * string, NUL (which `jsonb` refuses) U+FFFD, anything else JSON cannot
 * hold `{"unserializable": true}`.
 */
export function jsonbText(value: unknown): string | null {
  if (value === undefined || value === null) return null;
  if (
    typeof value === "object" && !Array.isArray(value) &&
    Object.keys(value).length === 0
  ) return null;
  try {
    const text = JSON.stringify(
      value,
      (_k, v) => typeof v === "bigint" ? String(v) : v,
    );
    return text === undefined ? null : text.replaceAll("\\u0000", "\\ufffd");
  } catch {
    return JSON.stringify({ unserializable: true });
  }
}

function fieldsJson(
  fields: Record<string, unknown> | undefined,
): string | null {
  return jsonbText(fields);
}
