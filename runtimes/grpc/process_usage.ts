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

/** utime + stime + cutime + cstime of `pid`, in clock ticks. */
function cpuTicks(pid: number): number | undefined {
  try {
    const text = Deno.readTextFileSync(`/proc/${pid}/stat`);
    const f = text.slice(text.lastIndexOf(")") + 2).split(" ");
    return Number(f[11]) + Number(f[12]) + Number(f[13]) + Number(f[14]);
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

/** The child processes of `pid` (of each of its threads). */
function childrenOf(pid: number): number[] {
  const out: number[] = [];
  try {
    for (const t of Deno.readDirSync(`/proc/${pid}/task`)) {
      try {
        const text = Deno.readTextFileSync(
          `/proc/${pid}/task/${t.name}/children`,
        ).trim();
        if (text) { for (const c of text.split(" ")) out.push(Number(c)); }
      } catch { /* thread gone */ }
    }
  } catch { /* process gone */ }
  return out;
}

/**
 * The usage of process `root` and every live descendant (found through
 * `/proc/<pid>/task/<tid>/children`, not a scan of `/proc`); `undefined`
 * when `root` is gone or `/proc` cannot be read.
 *
 * @example
 * ```ts
 * import { processTreeUsage } from "./process_usage.ts";
 * const u = processTreeUsage(Deno.pid);
 * console.log(u === undefined || u.rssBytes > 0); // true
 * ```
 */
export function processTreeUsage(root: number): ProcessTreeUsage | undefined {
  if (cpuTicks(root) === undefined) return undefined;
  let ticks = 0;
  let rss = 0;
  const queue = [root];
  const seen = new Set<number>();
  while (queue.length > 0) {
    const pid = queue.pop()!;
    if (seen.has(pid)) continue;
    seen.add(pid);
    const t = cpuTicks(pid);
    if (t === undefined) continue;
    ticks += t;
    rss += residentBytes(pid);
    queue.push(...childrenOf(pid));
  }
  return { cpuMs: ticks * TICK_MS, rssBytes: rss };
}
