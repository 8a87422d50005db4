/**
 * Per-thread CPU time of the current process, for tests that check that no
 * thread keeps spinning after a runaway guest was stopped (on Deno a busy
 * worker thread survives `Worker.terminate()`). Import it in the child
 * process that ran the scenario, so that only its threads count.
 *
 * @module
 */

/** CPU ticks (1/100 s, user + system) of each thread of this process. */
export function threadTicks(): Map<string, number> {
  const ticks = new Map<string, number>();
  for (const e of Deno.readDirSync("/proc/self/task")) {
    try {
      const stat = Deno.readTextFileSync(`/proc/self/task/${e.name}/stat`);
      const fields = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
      ticks.set(e.name, Number(fields[11]) + Number(fields[12]));
    } catch {
      // the thread ended meanwhile
    }
  }
  return ticks;
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
