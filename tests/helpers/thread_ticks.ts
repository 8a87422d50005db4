/**
 * Per-thread CPU time from Linux `/proc`: for tests that check that no
 * thread keeps spinning after a runaway guest was stopped (on Deno a busy
 * worker thread survives `Worker.terminate()`; import it in the child
 * process that ran the scenario, so that only its threads count), and for
 * the benches that split CPU per request by thread.
 *
 * @module
 */

/** One thread of a process: its name and its CPU ticks (1/100 s, user + system). */
export interface ThreadStat {
  /** The thread's name (`comm`), such as `worker-1`. */
  name: string;
  /** CPU ticks so far. */
  ticks: number;
}

/**
 * Every thread of process `pid` (default: this one), by thread id, from
 * Linux `/proc` (empty elsewhere or once the process is gone).
 */
export function threadStats(
  pid: number | "self" = "self",
): Map<string, ThreadStat> {
  const out = new Map<string, ThreadStat>();
  let tasks: Iterable<Deno.DirEntry>;
  try {
    tasks = Deno.readDirSync(`/proc/${pid}/task`);
  } catch {
    return out; // not Linux, or the process is gone
  }
  for (const e of tasks) {
    try {
      const stat = Deno.readTextFileSync(`/proc/${pid}/task/${e.name}/stat`);
      const close = stat.lastIndexOf(")");
      const fields = stat.slice(close + 2).split(" ");
      out.set(e.name, {
        name: stat.slice(stat.indexOf("(") + 1, close),
        ticks: Number(fields[11]) + Number(fields[12]),
      });
    } catch {
      // the thread ended meanwhile
    }
  }
  return out;
}

/** CPU ticks (1/100 s, user + system) of each thread of this process. */
export function threadTicks(): Map<string, number> {
  return new Map([...threadStats()].map(([tid, t]) => [tid, t.ticks]));
}

/** CPU milliseconds of one process, by kind of thread. */
export interface ThreadCpu {
  /** The main thread (the event loop). */
  main: number;
  /** Threads named `worker…` (Deno Workers: the WASM instances). */
  workers: number;
}

/**
 * CPU ms process `pid` used so far in its main thread and in its WASM
 * worker threads, for the benches that report CPU per request or call.
 */
export function threadCpu(pid: number): ThreadCpu {
  const out = { main: 0, workers: 0 };
  for (const [tid, t] of threadStats(pid)) {
    if (tid === String(pid)) out.main += t.ticks * 10;
    else if (t.name.startsWith("worker")) out.workers += t.ticks * 10;
  }
  return out;
}

/**
 * The most CPU ticks any thread used during `windowMs`, after `settleMs` of
 * quiet. A spinning thread gets 30+ ticks in 2 s even on a loaded 2-core
 * machine; an idle one about 0.
 */
export async function maxThreadTicks(
  options: { settleMs?: number; windowMs?: number } = {},
): Promise<number> {
  const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
  await sleep(options.settleMs ?? 300);
  const before = threadTicks();
  await sleep(options.windowMs ?? 2000);
  let max = 0;
  for (const [tid, t] of threadTicks()) {
    max = Math.max(max, t - (before.get(tid) ?? t));
  }
  return max;
}
