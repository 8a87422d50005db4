/**
 * CPU time a process has used so far, split into its main thread and its
 * WASM worker threads (Linux `/proc`; zeros elsewhere or once the process
 * is gone), for the benches that report CPU per request or per call.
 *
 * @module
 */

/** CPU milliseconds of one process, by kind of thread. */
export interface ThreadCpu {
  /** The main thread (the event loop). */
  main: number;
  /** Threads named `worker…` (Deno Workers: the WASM instances). */
  workers: number;
}

/** CPU ms of process `pid` so far (user + system, in 10 ms clock ticks). */
export function threadCpu(pid: number): ThreadCpu {
  const out = { main: 0, workers: 0 };
  try {
    for (const t of Deno.readDirSync(`/proc/${pid}/task`)) {
      const stat = Deno.readTextFileSync(`/proc/${pid}/task/${t.name}/stat`);
      const close = stat.lastIndexOf(")");
      const comm = stat.slice(stat.indexOf("(") + 1, close);
      const f = stat.slice(close + 2).split(" ");
      // utime + stime, in clock ticks of 10 ms.
      const ms = (Number(f[11]) + Number(f[12])) * 10;
      if (t.name === String(pid)) out.main += ms;
      else if (comm.startsWith("worker")) out.workers += ms;
    }
  } catch { /* not Linux, or the process is gone */ }
  return out;
}
