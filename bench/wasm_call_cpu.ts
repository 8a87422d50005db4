/**
 * CPU per isolated WASM call (issue 12: where a plugin route's µs go): the
 * `bench-echo` fixture (the guest does nothing) called by 1 and by 100
 * concurrent callers on one instance, for several spin budgets (main
 * thread, worker), printing calls/s and the CPU time each call costs the
 * main thread and the worker thread (Linux `/proc`, per thread).
 *
 * Spinning trades a core for latency: with both sides spinning a call
 * round-trips without sleeping; with neither, every call pays a futex wake
 * of the worker and an event-loop wake of the main thread. The HTTP host
 * sits in between (its main thread is busy with requests, the worker
 * sleeps between calls), so the `0,0` row is the one that resembles a
 * loaded route.
 *
 * ```sh
 * deno run -A bench/wasm_call_cpu.ts              # 3 s per cell
 * deno run -A bench/wasm_call_cpu.ts --seconds=5 --spins="50,50;0,0"
 * ```
 *
 * A script, not a `Deno.bench` file: the figure is CPU time per call split
 * by thread, which `deno bench` does not report.
 *
 * @module
 */

import { parseArgs } from "node:util";
import { createCallContext } from "../host/model/plugin.ts";
import { loadWasmPlugin } from "../runtimes/wasm/plugin.ts";
import { threadCpu } from "../tests/helpers/thread_ticks.ts";

const { values } = parseArgs({
  args: Deno.args,
  options: {
    seconds: { type: "string", default: "3" },
    spins: { type: "string", default: "50,50;0,50;0,0" },
    callers: { type: "string", default: "1,100" },
  },
});
const SECONDS = Math.max(0.5, Number(values.seconds) || 3);
const WASM =
  new URL("../fixtures/bench/echo-wat/plugin.wasm", import.meta.url).pathname;
const args = new TextEncoder().encode(
  JSON.stringify({ query: { message: "hello" } }),
);

console.log(
  "| spin µs (main, worker) | callers | calls/s | main CPU µs/call | worker CPU µs/call |\n|---|---:|---:|---:|---:|",
);
for (const spin of values.spins.split(";")) {
  const [mainSpin, workerSpin] = spin.split(",").map(Number);
  const plugin = await loadWasmPlugin(WASM, {
    name: "bench-echo",
    config: {},
    wasi: { preopens: [] },
    queue: { maxLength: 10_000 },
    spinMicros: mainSpin ?? 50,
    workerSpinMicros: workerSpin ?? 50,
  });
  try {
    for (
      const callers of values.callers.split(",").map(Number).filter((n) =>
        n > 0
      )
    ) {
      const ctx = createCallContext({ timeoutMs: (SECONDS + 30) * 1000 });
      let calls = 0;
      const end = performance.now() + SECONDS * 1000;
      const before = threadCpu(Deno.pid);
      await Promise.all(
        Array.from({ length: callers }, async () => {
          while (performance.now() < end) {
            await plugin.call("echo", args, ctx);
            calls++;
          }
        }),
      );
      const after = threadCpu(Deno.pid);
      const per = (ms: number) => ((ms * 1000) / calls).toFixed(1);
      console.log(
        `| ${mainSpin}, ${workerSpin} | ${callers} | ${
          Math.round(calls / SECONDS)
        } | ${per(after.main - before.main)} | ${
          per(after.workers - before.workers)
        } |`,
      );
    }
  } finally {
    await plugin.shutdown();
  }
}
