/**
 * The host's stdout: its progress lines, its events and the log lines of
 * its plugins, as text (the default) or as one JSON object per line
 * (`--log-format json`, `GOATKIT_LOG_FORMAT=json`):
 *
 * ```json
 * {"time":"2026-01-02T03:04:05.678Z","level":"info","source":"plugin","plugin":"hello","message":"greeted","name":"Ada"}
 * ```
 *
 * `source` is `host` for what the host says (about a plugin too: `plugin`
 * then names it) and `plugin` for a plugin's own log lines; a line's
 * structured fields follow `message` (a field named like one of the keys
 * before it gets a `_` prefix).
 *
 * Lines are written with `console.log`, so that with `OTEL_DENO=true` they
 * are exported as OpenTelemetry log records too. What must never reach a
 * collector goes to `writeTerminal` (`secret_output.ts`) instead. Every line is
 * scrubbed first: a field named like a credential (`authorization`,
 * `cookie`, `token`, `password`, `secret`, …) and anything shaped like a
 * GoatKit token (`gk_` + 40 or more characters) are replaced by
 * `[redacted]`.
 *
 * @example
 * ```ts
 * import { LogOutput } from "./log_output.ts";
 * const lines: string[] = [];
 * const out = new LogOutput({ format: "json", write: (l) => lines.push(l) });
 * out.host("info", "plugin loaded", { plugin: "hello" });
 * console.log(JSON.parse(lines[0]!).source); // "host"
 * ```
 *
 * @module
 */

import type { HostAPI, LogLevel } from "../model/host_api.ts";
import { LOG_LEVELS } from "../model/host_api.ts";
import type { LogEntry } from "../log_buffer.ts";

/** How stdout lines are written. */
export type LogFormat = "text" | "json";

/** The {@linkcode LogFormat}s, in the order they are documented. */
export const LOG_FORMATS: readonly LogFormat[] = ["text", "json"];

/** Whether `value` is a {@linkcode LogFormat}. */
export function isLogFormat(value: unknown): value is LogFormat {
  return value === "text" || value === "json";
}

/** Who said a line: the host, or a plugin in its own log line. */
export type LogSource = "host" | "plugin";

/** Options of {@linkcode LogOutput}. */
export interface LogOutputOptions {
  /** The format. @default "text" */
  format?: LogFormat;
  /** Where each finished line goes. @default console.log */
  write?: (line: string) => void;
  /** Log-buffer entries below this level are not printed. @default "info" */
  minLevel?: LogLevel;
  /** The clock of host lines. @default () => new Date() */
  now?: () => Date;
}

const CREDENTIAL_KEY_REGEXP =
  /authorization|cookie|token|passw|secret|api[-_]?key|session/i;
const TOKEN_REGEXP = /\bgk_[A-Za-z0-9_-]{40,}/g;
const RESERVED = new Set(["time", "level", "source", "plugin", "message"]);
const REDACTED = "[redacted]";

/**
 * Writes the host's stdout lines in one format. Hand it the log buffer's
 * entries ({@linkcode LogOutput.entry}), the host's progress lines
 * ({@linkcode LogOutput.print}) and its events ({@linkcode LogOutput.host}).
 */
export class LogOutput {
  /** The format lines are written in. */
  readonly format: LogFormat;
  readonly #write: (line: string) => void;
  readonly #min: number;
  readonly #now: () => Date;
  #pluginDepth = 0;
  #lastPrinted = "";

  /** Creates an output; nothing is written until a line comes. */
  constructor(options: LogOutputOptions = {}) {
    this.format = options.format ?? "text";
    if (!isLogFormat(this.format)) {
      throw new TypeError(
        `Cannot write logs as "${this.format}": the format is text or json`,
      );
    }
    this.#write = options.write ?? ((l) => console.log(l));
    this.#min = LOG_LEVELS.indexOf(options.minLevel ?? "info");
    this.#now = options.now ?? (() => new Date());
  }

  /**
   * A progress line of the host (`  plugin hello 1.0.0 (wasm) loaded`):
   * as it is in text, as a host record with `fields` in JSON (level `warn`
   * when it starts with `warning`, `error` with `error`, else a `level`
   * field's, else `info`; a `plugin` field names the plugin).
   */
  print(line: string, fields: Record<string, unknown> = {}): void {
    this.#lastPrinted = line.trim();
    if (this.format === "text") {
      this.#write(scrub(line));
      return;
    }
    const { plugin, level: given, ...rest } = fields;
    const message = line.trim();
    const level: LogLevel = /^warning\b/i.test(message)
      ? "warn"
      : /^error\b/i.test(message)
      ? "error"
      : LOG_LEVELS.includes(given as LogLevel)
      ? given as LogLevel
      : "info";
    this.#record(
      this.#now().toISOString(),
      level,
      "host",
      typeof plugin === "string" ? plugin : "",
      message,
      rest,
    );
  }

  /**
   * A host event: `message` with `fields` (a `plugin` field names the
   * plugin it is about).
   */
  host(
    level: LogLevel,
    message: string,
    fields: Record<string, unknown> = {},
  ): void {
    const { plugin, ...rest } = fields;
    const name = typeof plugin === "string" ? plugin : "";
    if (this.format === "text") {
      this.#text(level, name, message, rest);
      return;
    }
    this.#record(this.#now().toISOString(), level, "host", name, message, rest);
  }

  /**
   * A log-buffer entry (give this as the buffer's `onEntry`): a plugin's
   * own line when it was logged inside {@linkcode LogOutput.fromPlugin},
   * else the host's. Entries below `minLevel` are skipped, and so is a
   * host entry repeating the progress line printed just before it.
   */
  entry(e: LogEntry): void {
    if (LOG_LEVELS.indexOf(e.level) < this.#min) return;
    if (e.plugin === "" && e.message === this.#lastPrinted) return;
    const source: LogSource = this.#pluginDepth > 0 && e.plugin !== ""
      ? "plugin"
      : "host";
    if (this.format === "text") {
      this.#text(e.level, e.plugin, e.message, e.fields ?? {}, source);
      return;
    }
    this.#record(
      e.timestamp,
      e.level,
      source,
      e.plugin,
      e.message,
      e.fields ?? {},
    );
  }

  /**
   * Runs `fn` (a plugin's `log` call) so that the entries it appends
   * synchronously are printed as the plugin's own lines.
   */
  fromPlugin<T>(fn: () => T): T {
    this.#pluginDepth++;
    try {
      return fn();
    } finally {
      this.#pluginDepth--;
    }
  }

  /**
   * `api` whose `log` runs inside {@linkcode LogOutput.fromPlugin}; every
   * other property is `api`'s own.
   */
  pluginLogs<A extends HostAPI>(api: A): A {
    const log: HostAPI["log"] = (ctx, level, message, fields) =>
      this.fromPlugin(() => api.log(ctx, level, message, fields));
    return Object.assign(Object.create(api), { log }) as A;
  }

  #text(
    level: LogLevel,
    plugin: string,
    message: string,
    fields: Record<string, unknown>,
    source: LogSource = "host",
  ): void {
    const who = plugin === ""
      ? "host"
      : source === "plugin"
      ? `plugin ${plugin}`
      : `host (${plugin})`;
    const keys = Object.keys(fields);
    const extra = keys.length === 0 ? "" : ` ${safeJson(scrubFields(fields))}`;
    this.#write(scrub(`  [${level}] ${who}: ${message}${extra}`));
  }

  #record(
    time: string,
    level: LogLevel,
    source: LogSource,
    plugin: string,
    message: string,
    fields: Record<string, unknown> = {},
  ): void {
    const record: Record<string, unknown> = { time, level, source };
    if (plugin !== "") record.plugin = plugin;
    record.message = message;
    for (const [k, v] of Object.entries(scrubFields(fields))) {
      record[RESERVED.has(k) ? `_${k}` : k] = v;
    }
    this.#write(scrub(safeJson(record)));
  }
}

/** `fields` with the values of credential-named keys redacted (one level). */
function scrubFields(fields: Record<string, unknown>): Record<string, unknown> {
  const out: Record<string, unknown> = {};
  for (const [k, v] of Object.entries(fields)) {
    out[k] = CREDENTIAL_KEY_REGEXP.test(k) ? REDACTED : v;
  }
  return out;
}

/** `line` with every GoatKit token in it redacted. */
function scrub(line: string): string {
  return line.replace(TOKEN_REGEXP, `gk_${REDACTED}`);
}

/** JSON of `value`; what JSON cannot hold (a BigInt, a cycle) as text. */
function safeJson(value: Record<string, unknown>): string {
  try {
    return JSON.stringify(
      value,
      (_k, v) => typeof v === "bigint" ? v.toString() : v,
    );
  } catch {
    const flat: Record<string, string> = {};
    for (const [k, v] of Object.entries(value)) flat[k] = String(v);
    return JSON.stringify(flat);
  }
}
