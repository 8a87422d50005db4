/**
 * The permission audit log: every denial a guarded HostAPI makes, with the
 * plugin, the permission it lacked, what it attempted and when. Kept in a
 * capped ring (newest first on read) and also written to the
 * log sink (the host's `LogBuffer`) at `warn`, so the plugin's log page shows it.
 *
 * @module
 */

import type { PluginLogSink } from "../host/model/host_api.ts";

/** One recorded denial. */
export interface AuditEntry {
  /** When it happened (RFC 3339 with milliseconds). */
  time: string;
  /** The plugin that was refused. */
  plugin: string;
  /** The permission that would have allowed the action. */
  permission: string;
  /** What the plugin attempted, short and human-readable. */
  attempted: string;
  /** The HostAPI method, such as `dbExec`. */
  method?: string;
}

/** Filters for {@linkcode AuditLog.query}; given filters apply together. */
export interface AuditQuery {
  /** Only this plugin's entries. */
  plugin?: string;
  /** Only entries at or after this time. */
  since?: Date | string;
  /** At most this many (the newest). */
  limit?: number;
}

/** Options of {@linkcode AuditLog}. */
export interface AuditLogOptions {
  /** Entries kept at most (oldest dropped first). @default 1000 */
  capacity?: number;
  /** Where a warn line per denial goes, attributed to the plugin. */
  logs?: PluginLogSink;
}

/**
 * A capped, in-memory audit log of permission denials.
 *
 * @example
 * ```ts
 * import { AuditLog } from "./audit.ts";
 * const audit = new AuditLog({ capacity: 100 });
 * audit.record({ plugin: "hello", permission: "db:write", attempted: "db_exec DELETE FROM t" });
 * console.log(audit.query({ plugin: "hello" })[0]?.permission); // db:write
 * ```
 */
export class AuditLog {
  #entries: (AuditEntry | undefined)[];
  #head = 0;
  #count = 0;
  #logs: PluginLogSink | undefined;

  /** Creates an empty log. */
  constructor(options: AuditLogOptions = {}) {
    const cap = options.capacity && options.capacity > 0
      ? Math.floor(options.capacity)
      : 1000;
    this.#entries = new Array(cap);
    this.#logs = options.logs;
  }

  /** Records a denial (stamped now unless `time` is given) and returns the entry. */
  record(entry: Omit<AuditEntry, "time"> & { time?: string }): AuditEntry {
    const e: AuditEntry = {
      time: entry.time ?? new Date().toISOString(),
      plugin: entry.plugin,
      permission: entry.permission,
      attempted: entry.attempted,
      ...(entry.method ? { method: entry.method } : {}),
    };
    this.#entries[this.#head] = e;
    this.#head = (this.#head + 1) % this.#entries.length;
    this.#count = Math.min(this.#count + 1, this.#entries.length);
    this.#logs?.log(
      e.plugin,
      "warn",
      `permission denied: "${e.permission}" needed for ${e.attempted}`,
      { permission: e.permission, attempted: e.attempted, audit: true },
    );
    return e;
  }

  /** Entries matching every given filter, newest first. */
  query(q: AuditQuery = {}): AuditEntry[] {
    const since = q.since === undefined
      ? undefined
      : new Date(q.since).getTime();
    const out: AuditEntry[] = [];
    const cap = this.#entries.length;
    const limit = q.limit !== undefined && q.limit >= 0 ? q.limit : Infinity;
    for (let i = 1; i <= this.#count && out.length < limit; i++) {
      const e = this.#entries[(this.#head - i + cap) % cap]!;
      if (q.plugin !== undefined && e.plugin !== q.plugin) continue;
      if (since !== undefined && Date.parse(e.time) < since) continue;
      out.push(e);
    }
    return out;
  }

  /** How many entries are held. */
  count(): number {
    return this.#count;
  }

  /** Removes every entry. */
  clear(): void {
    this.#entries = new Array(this.#entries.length);
    this.#head = 0;
    this.#count = 0;
  }
}
