/**
 * `gk logs [--plugin p] [--level l] [--since t] [--until t] [--grep text]
 * [--limit n] [--follow [--seconds s] [--interval ms]]`: the host's logs
 * (the durable record: they survive restarts); `t` is an RFC 3339 time or
 * a duration ago (`15m`, `2h`, `7d`). `--follow` polls and prints each new
 * line once, until Ctrl-C or `--seconds`: after the first page it asks only
 * for lines after the newest id it printed (a cursor), so a burst between
 * two polls is printed whole.
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
  /** Position for a cursor (hosts with durable logs). */
  id?: number;
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
  const filters = new URLSearchParams();
  for (
    const [flag, param] of [
      ["plugin", "plugin"],
      ["level", "level"],
      ["since", "since"],
      ["until", "until"],
      ["grep", "q"],
    ] as const
  ) {
    const v = args.str(flag);
    if (v) filters.set(param, v);
  }
  const query = (limit: number, after?: number) => {
    const q = new URLSearchParams(filters);
    if (after !== undefined) {
      q.set("after", String(after));
      q.set("order", "asc");
    }
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
  let cursor: number | undefined;
  let first = true;
  while (!stop.signal.aborted && Date.now() < until) {
    let r;
    try {
      r = await host.request(
        "GET",
        first || cursor === undefined ? query(first ? limit : 1000) : query(
          1000,
          cursor,
        ),
      );
    } catch (e) {
      if (stop.signal.aborted) break;
      throw e;
    }
    const got: LogLine[] = r?.logs ?? [];
    let lines: LogLine[];
    if (!first && cursor !== undefined) {
      lines = got; // oldest first, all after the cursor
    } else {
      lines = seen.fresh(got);
    }
    for (const e of lines) {
      io.out(formatLogLine(e));
      if (typeof e.id === "number" && (cursor === undefined || e.id > cursor)) {
        cursor = e.id;
      }
    }
    // A full page after the cursor: more are waiting, ask again at once.
    const more = !first && cursor !== undefined && got.length >= 1000;
    first = false;
    if (more) continue;
    await sleep(
      Math.min(interval, Math.max(0, until - Date.now())),
      stop.signal,
    );
  }
}
