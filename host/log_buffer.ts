/**
 * The log buffer: a ring of the most recent log entries from plugins and the
 * host, read newest first by the admin pages and the logs API.
 *
 * The ring is a fast front cache. With a durable store attached
 * ({@linkcode LogBuffer.persistTo}; the host attaches `PgLogStore`), every
 * entry is also queued for the database, which is the record:
 * {@linkcode LogBuffer.search} reads it (by plugin, level, time range and
 * text), so logs survive a restart and are shared by the hosts of one
 * database.
 *
 * @module
 */

import { LOG_LEVELS, type LogLevel } from "./model/host_api.ts";

/** One log entry. */
export interface LogEntry {
  /** When it was logged (RFC 3339 with milliseconds). */
  timestamp: string;
  /** The plugin it is about (empty for the host itself). */
  plugin: string;
  /** Severity. */
  level: LogLevel;
  /** The message. */
  message: string;
  /** Structured fields, if any. */
  fields?: Record<string, unknown>;
  /**
   * A position, increasing with time, for cursors (`after`): the database
   * row id when read from the durable store, else the buffer's own count.
   */
  id?: number;
}

/** Filters for {@linkcode LogBuffer.query}; all given filters apply together. */
export interface LogQuery {
  /** Only entries of this plugin. */
  plugin?: string;
  /** Only entries at this level or above. */
  minLevel?: LogLevel;
  /** At most this many entries (the newest). */
  limit?: number;
}

/** Filters for {@linkcode LogBuffer.search}: a {@linkcode LogQuery} plus time, text and a cursor. */
export interface LogSearch extends LogQuery {
  /** Only entries at or after this time. */
  since?: Date | string;
  /** Only entries at or before this time. */
  until?: Date | string;
  /** Only entries whose message (or fields) contain this text, ignoring case. */
  text?: string;
  /** Only entries after this id (a cursor; use with `order: "asc"`). */
  after?: number;
  /**
   * `desc` (newest first, `limit` keeps the newest) or `asc` (oldest
   * first, `limit` keeps the oldest: the next page after a cursor).
   * @default "desc"
   */
  order?: "asc" | "desc";
}

/** A durable home of log entries (the host's `PgLogStore`). */
export interface DurableLogStore {
  /** Queues an entry (never throws, never waits). */
  add(entry: LogEntry): void;
  /** Entries matching every filter. */
  search(q: LogSearch): Promise<LogEntry[]>;
  /** How many entries are held. */
  count(): Promise<number>;
  /** Removes every entry. */
  clear(): Promise<void>;
}

/** Options of {@linkcode LogBuffer}. */
export interface LogBufferOptions {
  /** Capacity; values ≤ 0 mean the default. @default 1000 */
  capacity?: number;
  /** Also called for each new entry (for example to print it). */
  onEntry?: (entry: LogEntry) => void;
}

/**
 * A fixed-size ring buffer of log entries, newest first on read.
 *
 * @example
 * ```ts
 * import { LogBuffer } from "./log_buffer.ts";
 * const logs = new LogBuffer({ capacity: 3 });
 * logs.log("hello", "info", "started");
 * logs.log("hello", "error", "failed", { code: 7 });
 * console.log(logs.query({ minLevel: "warn" })[0]?.message); // failed
 * ```
 */
export class LogBuffer {
  #entries: (LogEntry | undefined)[];
  #head = 0;
  #count = 0;
  #onEntry: ((entry: LogEntry) => void) | undefined;
  #listeners = new Set<(entry: LogEntry) => void>();
  #store: DurableLogStore | undefined;
  #seq = 0;

  /** Creates a buffer holding at most `capacity` entries. */
  constructor(options: LogBufferOptions = {}) {
    const capacity = options.capacity && options.capacity > 0
      ? Math.floor(options.capacity)
      : 1000;
    this.#entries = new Array(capacity);
    this.#onEntry = options.onEntry;
  }

  /** How many entries the buffer keeps at most. */
  get capacity(): number {
    return this.#entries.length;
  }

  /** Appends an entry stamped with the current time; returns it. */
  log(
    plugin: string,
    level: LogLevel,
    message: string,
    fields?: Record<string, unknown>,
  ): LogEntry {
    const entry: LogEntry = {
      timestamp: new Date().toISOString(),
      plugin,
      level: LOG_LEVELS.includes(level) ? level : "info",
      message,
      ...(fields && Object.keys(fields).length > 0 ? { fields } : {}),
    };
    this.#store?.add(entry);
    this.#entries[this.#head] = { ...entry, id: ++this.#seq };
    this.#head = (this.#head + 1) % this.#entries.length;
    this.#count = Math.min(this.#count + 1, this.#entries.length);
    this.#onEntry?.(entry);
    for (const l of this.#listeners) l(entry);
    return entry;
  }

  /**
   * Calls `listener` with each new entry (after `onEntry`); returns the
   * function that stops it.
   */
  subscribe(listener: (entry: LogEntry) => void): () => void {
    this.#listeners.add(listener);
    return () => this.#listeners.delete(listener);
  }

  /**
   * Makes `store` the record: every later entry is queued for it, and so
   * are the entries the buffer holds now (those logged before the store
   * existed).
   */
  persistTo(store: DurableLogStore): void {
    this.#store = store;
    for (const e of this.getAll().reverse()) {
      const { id: _id, ...entry } = e;
      store.add(entry);
    }
  }

  /** Whether a durable store is attached. */
  get durable(): boolean {
    return this.#store !== undefined;
  }

  /**
   * Entries matching every filter: from the durable store when one is
   * attached, else from the buffer.
   */
  async search(q: LogSearch = {}): Promise<LogEntry[]> {
    if (this.#store) return await this.#store.search(q);
    const since = q.since === undefined ? -Infinity : Date.parse(
      new Date(q.since).toISOString(),
    );
    const until = q.until === undefined ? Infinity : Date.parse(
      new Date(q.until).toISOString(),
    );
    const text = q.text?.toLowerCase();
    const min = q.minLevel ? LOG_LEVELS.indexOf(q.minLevel) : 0;
    let out = this.getAll().filter((e) => {
      if (q.plugin !== undefined && e.plugin !== q.plugin) return false;
      if (LOG_LEVELS.indexOf(e.level) < min) return false;
      if (q.after !== undefined && (e.id ?? 0) <= q.after) return false;
      const t = Date.parse(e.timestamp);
      if (t < since || t > until) return false;
      if (
        text &&
        !`${e.message} ${e.fields ? JSON.stringify(e.fields) : ""}`
          .toLowerCase().includes(text)
      ) return false;
      return true;
    });
    if (q.order === "asc") out = out.reverse();
    return q.limit !== undefined && q.limit >= 0 ? out.slice(0, q.limit) : out;
  }

  /** How many entries the record holds (the store's count, else the buffer's). */
  async total(): Promise<number> {
    return this.#store ? await this.#store.count() : this.#count;
  }

  /** Removes every entry from the buffer and the durable store. */
  async clearAll(): Promise<void> {
    this.clear();
    await this.#store?.clear();
  }

  /** All entries, newest first. */
  getAll(): LogEntry[] {
    const out: LogEntry[] = [];
    const cap = this.#entries.length;
    for (let i = 1; i <= this.#count; i++) {
      out.push(this.#entries[(this.#head - i + cap) % cap]!);
    }
    return out;
  }

  /** The `n` newest entries, newest first (`n` is clamped to 0…count). */
  getRecent(n: number): LogEntry[] {
    return this.getAll().slice(0, Math.max(0, Math.min(n, this.#count)));
  }

  /** Entries of one plugin, newest first. */
  getByPlugin(plugin: string): LogEntry[] {
    return this.getAll().filter((e) => e.plugin === plugin);
  }

  /** Entries at `minLevel` or above, newest first. */
  getByLevel(minLevel: LogLevel): LogEntry[] {
    const min = LOG_LEVELS.indexOf(minLevel);
    return this.getAll().filter((e) => LOG_LEVELS.indexOf(e.level) >= min);
  }

  /** Entries matching every given filter, newest first. */
  query(q: LogQuery = {}): LogEntry[] {
    const min = q.minLevel ? LOG_LEVELS.indexOf(q.minLevel) : 0;
    const out = this.getAll().filter((e) =>
      (q.plugin === undefined || e.plugin === q.plugin) &&
      LOG_LEVELS.indexOf(e.level) >= min
    );
    return q.limit !== undefined && q.limit >= 0 ? out.slice(0, q.limit) : out;
  }

  /** Removes every entry. */
  clear(): void {
    this.#entries = new Array(this.#entries.length);
    this.#head = 0;
    this.#count = 0;
  }

  /** How many entries the buffer holds now. */
  count(): number {
    return this.#count;
  }
}
