/**
 * Queueing cost of the WASM runtime as concurrency rises (issue 11 item 1).
 *
 * - `hand-off, N callers`: N concurrent callers share one instance; each
 *   acquires it, does a few microtasks of "work", and releases it. The
 *   baseline is the old algorithm, kept here as {@linkcode WakeAllPool}:
 *   every release wakes every waiter, and each re-arms its timer and abort
 *   listener (O(queue) per call). Against it, {@linkcode HandOffQueue} (what
 *   the runtime uses now): a freed instance goes to the oldest waiter only.
 *   One iteration = N calls, so per-call cost = time / N. (The old path at
 *   2,000 callers arms about 2 million timers per iteration: expect seconds.)
 * - `hello-c, N concurrent`: N concurrent `echo` calls through a Manager into
 *   the real hello-c plugin on one instance (queue bound raised to N). The
 *   time per call should not grow from 100 to 2,000.
 *
 * Run: `deno bench -A bench/wasm_queue_bench.ts`
 *
 * @module
 */

import { Manager } from "../host/manager.ts";
import { HandOffQueue } from "../runtimes/wasm/handoff_queue.ts";
import { loadWasmPlugin } from "../runtimes/wasm/plugin.ts";

interface Instance {
  busy: boolean;
}

/** The old path: `#acquire` loops; `#wake()` wakes every waiter. */
class WakeAllPool {
  #slot: Instance = { busy: false };
  #waiters: (() => void)[] = [];

  async acquire(deadline: number, signal: AbortSignal): Promise<Instance> {
    for (;;) {
      if (!this.#slot.busy) {
        this.#slot.busy = true;
        return this.#slot;
      }
      const remaining = deadline - Date.now();
      if (remaining <= 0 || signal.aborted) throw new Error("timed out");
      await new Promise<void>((resolve) => {
        const timer = setTimeout(done, remaining);
        const onAbort = () => done();
        signal.addEventListener("abort", onAbort);
        this.#waiters.push(() => done());
        function done() {
          clearTimeout(timer);
          signal.removeEventListener("abort", onAbort);
          resolve();
        }
      });
    }
  }

  release(slot: Instance): void {
    slot.busy = false;
    const ws = this.#waiters;
    this.#waiters = [];
    for (const w of ws) w();
  }
}

/** The new path: FIFO hand-off, as `runtimes/wasm/plugin.ts` does it. */
class HandOffPool {
  #slot: Instance = { busy: false };
  #queue = new HandOffQueue<Instance>();

  acquire(deadline: number, signal: AbortSignal): Promise<Instance> {
    if (this.#queue.length === 0 && !this.#slot.busy) {
      this.#slot.busy = true;
      return Promise.resolve(this.#slot);
    }
    return this.#queue.wait({
      waitMs: deadline - Date.now(),
      signal,
      onTimeout: () => new Error("timed out"),
    });
  }

  release(slot: Instance): void {
    if (!this.#queue.handOff(slot)) slot.busy = false;
  }
}

async function run(
  pool: WakeAllPool | HandOffPool,
  callers: number,
): Promise<void> {
  const signal = new AbortController().signal;
  const deadline = Date.now() + 600_000;
  await Promise.all(Array.from({ length: callers }, async () => {
    const slot = await pool.acquire(deadline, signal);
    try {
      for (let i = 0; i < 3; i++) await null; // the call's "work"
    } finally {
      pool.release(slot);
    }
  }));
}

// `fn` must be an async function for `deno bench` to await it. The old
// path at 2,000 callers takes seconds per iteration: few iterations.
for (const callers of [100, 2000]) {
  Deno.bench({
    group: `hand-off, ${callers} callers`,
    name: `old: wake every waiter (${callers} calls)`,
    baseline: true,
    n: callers > 1000 ? 3 : 100,
    warmup: callers > 1000 ? 0 : 5,
    fn: async () => await run(new WakeAllPool(), callers),
  });
  Deno.bench({
    group: `hand-off, ${callers} callers`,
    name: `new: FIFO hand-off (${callers} calls)`,
    n: callers > 1000 ? 20 : 100,
    warmup: 5,
    fn: async () => await run(new HandOffPool(), callers),
  });
}

const manager = new Manager();
await manager.register(
  await loadWasmPlugin(
    new URL("../fixtures/plugins/hello-c/plugin.wasm", import.meta.url)
      .pathname,
    { instances: 1, queue: { maxLength: 4096, maxWaitMs: 600_000 } },
  ),
);
const args = new TextEncoder().encode('{"a":1}');

for (const callers of [100, 2000]) {
  Deno.bench({
    group: "hello-c through the Manager, 1 instance",
    name: `${callers} concurrent calls`,
    baseline: callers === 100,
    n: callers > 1000 ? 5 : 50,
    warmup: 1,
    fn: async () => {
      await Promise.all(
        Array.from(
          { length: callers },
          () => manager.call("hello-c", "echo", args, { timeoutMs: 600_000 }),
        ),
      );
    },
  });
}

globalThis.addEventListener("unload", () => {
  manager.shutdownAll().catch(() => {});
});
