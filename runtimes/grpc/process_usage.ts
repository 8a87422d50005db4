/**
 * CPU time and resident memory of a plugin process and its descendants,
 * read from Linux `/proc` (elsewhere: nothing), for `GrpcPlugin.usage()`.
 *
 * @module
 */

/** What a process tree used. */
export interface ProcessTreeUsage {
  /** User + system CPU time of the live processes (and what they reaped), ms. */
  cpuMs: number;
  /** Resident memory of the live processes, bytes. */
  rssBytes: number;
}

const TICK_MS = 10; // USER_HZ is 100 on Linux
const PAGE_BYTES = 4096;

function stat(pid: number): { ppid: number; cpuTicks: number } | undefined {
  try {
    const text = Deno.readTextFileSync(`/proc/${pid}/stat`);
    const f = text.slice(text.lastIndexOf(")") + 2).split(" ");
    // Fields after the name: state ppid … utime(11) stime(12) cutime(13) cstime(14).
    return {
      ppid: Number(f[1]),
      cpuTicks: Number(f[11]) + Number(f[12]) + Number(f[13]) + Number(f[14]),
    };
  } catch {
    return undefined;
  }
}

function residentBytes(pid: number): number {
  try {
    const statm = Deno.readTextFileSync(`/proc/${pid}/statm`).split(" ");
    return Number(statm[1]) * PAGE_BYTES;
  } catch {
    return 0;
  }
}

/**
 * The usage of process `root` and every live descendant; `undefined` when
 * `root` is gone or `/proc` cannot be read.
 *
 * @example
 * ```ts
 * import { processTreeUsage } from "./process_usage.ts";
 * const u = processTreeUsage(Deno.pid);
 * console.log(u === undefined || u.rssBytes > 0); // true
 * ```
 */
export function processTreeUsage(root: number): ProcessTreeUsage | undefined {
  const own = stat(root);
  if (!own) return undefined;
  const children = new Map<number, number[]>();
  try {
    for (const e of Deno.readDirSync("/proc")) {
      if (!/^\d+$/.test(e.name)) continue;
      const pid = Number(e.name);
      const s = pid === root ? own : stat(pid);
      if (!s) continue;
      const list = children.get(s.ppid);
      if (list) list.push(pid);
      else children.set(s.ppid, [pid]);
    }
  } catch {
    return undefined;
  }
  let ticks = 0;
  let rss = 0;
  const queue = [root];
  const seen = new Set<number>();
  while (queue.length > 0) {
    const pid = queue.pop()!;
    if (seen.has(pid)) continue;
    seen.add(pid);
    const s = pid === root ? own : stat(pid);
    if (!s) continue;
    ticks += s.cpuTicks;
    rss += residentBytes(pid);
    for (const c of children.get(pid) ?? []) queue.push(c);
  }
  return { cpuMs: ticks * TICK_MS, rssBytes: rss };
}
