/**
 * The log buffer: a ring of the most recent log entries from plugins and the
 * host, read newest first by the admin pages and the logs API.
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
    this.#entries[this.#head] = entry;
    this.#head = (this.#head + 1) % this.#entries.length;
    this.#count = Math.min(this.#count + 1, this.#entries.length);
    this.#onEntry?.(entry);
    return entry;
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
