/**
 * `gk logs [--plugin p] [--level l] [--limit n] [--follow [--seconds s]
 * [--interval ms]]`: the host's log buffer; `--follow` polls it and prints
 * each new line once, until Ctrl-C or `--seconds`.
 *
 * @module
 */

import type { CommandContext } from "./context.ts";
import { interruptSignal, sleep } from "./io.ts";

/** One entry of `GET /api/v1/plugins/logs`. */
export interface LogLine {
  /** RFC 3339 time. */
  timestamp: string;
  /** Severity. */
  level: string;
  /** The plugin ("" for the host). */
  plugin: string;
  /** The message. */
  message: string;
  /** Structured fields. */
  fields?: Record<string, unknown>;
}

/** One log entry as a line: `time LEVEL [plugin] message {fields}`. */
export function formatLogLine(e: LogLine): string {
  return `${e.timestamp} ${String(e.level).toUpperCase().padEnd(5)} [${
    e.plugin || "host"
  }] ${e.message}${
    e.fields && Object.keys(e.fields).length
      ? ` ${JSON.stringify(e.fields)}`
      : ""
  }`;
}

function keyOf(e: LogLine): string {
  return JSON.stringify([e.timestamp, e.plugin, e.level, e.message, e.fields]);
}

/**
 * Remembers which entries were printed: those up to the newest timestamp
 * seen, and which ones at exactly that timestamp (the API has no cursor).
 */
class Seen {
  #last = "";
  #atLast = new Set<string>();

  /** The entries of `newestFirst` not printed yet, oldest first; marks them seen. */
  fresh(newestFirst: LogLine[]): LogLine[] {
    const out: LogLine[] = [];
    for (const e of [...newestFirst].reverse()) {
      if (e.timestamp < this.#last) continue;
      const k = keyOf(e);
      if (e.timestamp === this.#last) {
        if (this.#atLast.has(k)) continue;
      } else {
        this.#last = e.timestamp;
        this.#atLast.clear();
      }
      this.#atLast.add(k);
      out.push(e);
    }
    return out;
  }
}

/** `gk logs`. */
export async function logsCommand(ctx: CommandContext): Promise<void> {
  const { args, io } = ctx;
  const query = (limit: number) => {
    const q = new URLSearchParams();
    const plugin = args.str("plugin");
    const level = args.str("level");
    if (plugin) q.set("plugin", plugin);
    if (level) q.set("level", level);
    q.set("limit", String(limit));
    return `/api/v1/plugins/logs?${q}`;
  };
  const limit = Math.max(1, Math.floor(args.num("limit", 100)));
  if (!args.flag("follow")) {
    const r = await ctx.host().request("GET", query(limit));
    for (const e of [...(r?.logs ?? [])].reverse()) io.out(formatLogLine(e));
    return;
  }
  using stop = interruptSignal(io);
  const seconds = args.num("seconds", 0);
  const interval = Math.max(50, args.num("interval", 1000));
  const until = seconds > 0 ? Date.now() + seconds * 1000 : Infinity;
  const host = ctx.host(stop.signal);
  const seen = new Seen();
  let first = true;
  while (!stop.signal.aborted && Date.now() < until) {
    let r;
    try {
      r = await host.request("GET", query(first ? limit : 1000));
    } catch (e) {
      if (stop.signal.aborted) break;
      throw e;
    }
    const lines = seen.fresh(r?.logs ?? []);
    for (const e of lines) io.out(formatLogLine(e));
    first = false;
    await sleep(
      Math.min(interval, Math.max(0, until - Date.now())),
      stop.signal,
    );
  }
}
