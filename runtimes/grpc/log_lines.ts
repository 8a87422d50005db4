/**
 * Turns a plugin's stderr/stdout into log records: splits lines (capping
 * their length), parses go-plugin's hclog JSON lines into level, message and
 * fields (other lines are `info`), and rate-limits floods.
 *
 * @module
 */

import type { LogLevel } from "../../host/model/host_api.ts";

/** A parsed log line. */
export interface LogRecord {
  /** The level. */
  level: LogLevel;
  /** The message. */
  message: string;
  /** Structured fields (hclog key/value pairs, `@module`, …). */
  fields: Record<string, unknown>;
}

const HCLOG_LEVELS: Record<string, LogLevel> = {
  trace: "debug",
  debug: "debug",
  info: "info",
  warn: "warn",
  warning: "warn",
  error: "error",
  fatal: "error",
};

/**
 * Parses one line: an hclog JSON object (`@level`, `@message`, `@timestamp`,
 * `@module`, other keys as fields) or plain text (level `info`).
 *
 * @example
 * ```ts
 * import { parseLogLine } from "./log_lines.ts";
 * parseLogLine('{"@level":"warn","@message":"slow","ms":12}');
 * // { level: "warn", message: "slow", fields: { ms: 12 } }
 * ```
 */
export function parseLogLine(line: string): LogRecord {
  const text = line.replace(/\r$/, "");
  if (text.startsWith("{")) {
    try {
      const o = JSON.parse(text);
      if (o && typeof o === "object" && typeof o["@message"] === "string") {
        const fields: Record<string, unknown> = {};
        for (const [k, v] of Object.entries(o)) {
          if (k === "@level" || k === "@message" || k === "@timestamp") {
            continue;
          }
          fields[k === "@module" ? "module" : k] = v;
        }
        const level = HCLOG_LEVELS[String(o["@level"]).toLowerCase()] ??
          "info";
        return { level, message: o["@message"], fields };
      }
    } catch { /* plain text */ }
  }
  return { level: "info", message: text, fields: {} };
}

/** Options of {@linkcode readLines}. */
export interface ReadLinesOptions {
  /** Longest line kept; longer lines are cut and marked. @default 16384 */
  maxLineBytes?: number;
}

/**
 * Reads a byte stream as lines, calling `onLine` for each (without the
 * newline). Lines longer than `maxLineBytes` are cut; the rest up to the
 * next newline is dropped. Resolves at end of stream.
 */
export async function readLines(
  stream: ReadableStream<Uint8Array>,
  onLine: (line: string) => boolean | void,
  options: ReadLinesOptions = {},
): Promise<void> {
  const max = options.maxLineBytes ?? 16384;
  const decoder = new TextDecoder();
  let buf: Uint8Array = new Uint8Array(0);
  let skipping = false;
  const reader = stream.getReader();
  try {
    while (true) {
      const { value, done } = await reader.read();
      if (done) break;
      let chunk = value;
      while (chunk.length > 0) {
        const nl = chunk.indexOf(10);
        if (skipping) {
          if (nl < 0) break;
          skipping = false;
          chunk = chunk.subarray(nl + 1);
          continue;
        }
        if (nl < 0) {
          const room = max - buf.length;
          if (chunk.length > room) {
            const line = concat(buf, chunk.subarray(0, room));
            buf = new Uint8Array(0);
            skipping = true;
            if (onLine(decoder.decode(line) + " …[truncated]") === false) {
              return;
            }
          } else {
            buf = concat(buf, chunk);
          }
          break;
        }
        const line = concat(buf, chunk.subarray(0, Math.min(nl, max)));
        buf = new Uint8Array(0);
        chunk = chunk.subarray(nl + 1);
        if (onLine(decoder.decode(line)) === false) return;
      }
    }
    if (buf.length > 0) onLine(decoder.decode(buf));
  } catch {
    // The stream broke (process killed): nothing more to read.
  } finally {
    reader.releaseLock();
  }
}

function concat(a: Uint8Array, b: Uint8Array): Uint8Array {
  if (a.length === 0) return b.slice();
  const out = new Uint8Array(a.length + b.length);
  out.set(a);
  out.set(b, a.length);
  return out;
}

/**
 * A token bucket for log lines: at most `perSecond` lines a second (with a
 * burst of as many); counts what it drops so the caller can report it.
 */
export class LogRateLimiter {
  #tokens: number;
  #last = performance.now();
  #dropped = 0;
  readonly #perSecond: number;

  /** Creates a limiter allowing `perSecond` lines a second. */
  constructor(perSecond: number) {
    this.#perSecond = perSecond;
    this.#tokens = perSecond;
  }

  /** Whether a line may pass now. */
  take(): boolean {
    const now = performance.now();
    this.#tokens = Math.min(
      this.#perSecond,
      this.#tokens + (now - this.#last) * this.#perSecond / 1000,
    );
    this.#last = now;
    if (this.#tokens >= 1) {
      this.#tokens -= 1;
      return true;
    }
    this.#dropped++;
    return false;
  }

  /** Returns and resets the number of dropped lines. */
  takeDropped(): number {
    const n = this.#dropped;
    this.#dropped = 0;
    return n;
  }
}
