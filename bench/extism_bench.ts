// One Extism-ABI call with a 100-byte input echoed back
// (fixtures/extism/as/greet, export `echo`, built with Extism's AssemblyScript
// PDK), three ways in the same run:
//   - ours: loadExtismPlugin through Manager.call, the plugin in its isolated,
//     instrumented worker (the baseline);
//   - Extism's JS SDK in-thread (`runInWorker: false`): no isolation, and a
//     runaway plugin cannot be stopped;
//   - Extism's JS SDK in worker mode (`runInWorker: true`): its only mode
//     with a timeout.
// Goal (issue 16): ours ≥ 10× faster than its worker mode and within 2× of
// its in-thread call.
// Run: deno bench -A bench/extism_bench.ts

import createPlugin from "@extism/extism";
import { createCallContext } from "../host/model/plugin.ts";
import { Manager } from "../host/manager.ts";
import { LogBuffer } from "../host/log_buffer.ts";
import { loadExtismPlugin } from "../runtimes/extism/mod.ts";

const WASM = new URL("../fixtures/extism/as/greet/plugin.wasm", import.meta.url)
  .pathname;
const input = new TextEncoder().encode("x".repeat(100));

const ours = await loadExtismPlugin(WASM, {
  registration: { name: "bench-extism", version: "1.0.0", routes: [] },
});
// As a host calls it: through the Manager (deadline, call chain, enabled
// check), which also calls the plugin's init with a HostAPI.
const manager = new Manager({ logs: new LogBuffer() });
await manager.register(ours);
const inThread = await createPlugin({ wasm: [{ path: WASM }] }, {
  useWasi: false,
  runInWorker: false,
});
const inWorker = await createPlugin({ wasm: [{ path: WASM }] }, {
  useWasi: false,
  runInWorker: true,
  // Deno's node:worker_threads refuses the SDK's default execArgv
  // (--disable-warning=ExperimentalWarning).
  nodeWorkerArgs: { execArgv: [] },
});

function check(out: Uint8Array | null | undefined, who: string): void {
  if (!out || out.length !== 100) throw new Error(`${who}: bad echo`);
}

// Warm up all three (workers started, code tiered up).
for (let i = 0; i < 200; i++) {
  check(await manager.call("bench-extism", "echo", input), "ours");
  check((await inThread.call("echo", input))?.bytes(), "in-thread");
  check((await inWorker.call("echo", input))?.bytes(), "worker");
}

addEventListener("unload", () => {
  manager.shutdownAll();
  inThread.close();
  inWorker.close();
});

Deno.bench({
  group: "extism_echo_100B",
  name: "ours: Manager.call (isolated worker, instrumented)",
  baseline: true,
  async fn() {
    check(await manager.call("bench-extism", "echo", input), "ours");
  },
});

// The plugin alone, one call context reused (renewed every 10 s, well inside
// its 30 s deadline): the runtime's own cost, without the Manager's.
let shared = createCallContext();
let sharedAt = Date.now();
Deno.bench({
  group: "extism_echo_100B",
  name: "ours: plugin.call, one call context reused",
  async fn() {
    if (Date.now() - sharedAt > 10_000) {
      shared = createCallContext();
      sharedAt = Date.now();
    }
    check(await ours.call("echo", input, shared), "ours");
  },
});

Deno.bench({
  group: "extism_echo_100B",
  name: "Extism JS SDK in-thread (runInWorker: false)",
  async fn() {
    check((await inThread.call("echo", input))?.bytes(), "in-thread");
  },
});

Deno.bench({
  group: "extism_echo_100B",
  name: "Extism JS SDK worker (runInWorker: true)",
  async fn() {
    check((await inWorker.call("echo", input))?.bytes(), "worker");
  },
});
