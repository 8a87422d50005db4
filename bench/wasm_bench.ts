/**
 * WASM runtime benchmarks.
 *
 * - `echo`: one call of `echo` with a 100-byte JSON payload to the C fixture
 *   through the isolated runtime (worker + SharedArrayBuffer channel), against
 *   the same call made in-thread without isolation (baseline), and through
 *   the Manager.
 * - `cold load`: compile + instantiate + register of each fixture, isolated
 *   (`loadWasmPlugin` + `Manager.register` + shutdown) against in-thread
 *   (baseline: compile + instantiate + `gk_register`, no worker).
 *
 * Run: `deno bench -A bench/wasm_bench.ts` (or `deno task bench`).
 *
 * @module
 */

import { Manager } from "../host/manager.ts";
import { createCallContext } from "../host/model/plugin.ts";
import { GuestInstance } from "../runtimes/wasm/abi.ts";
import { instrumentModuleCached } from "../runtimes/wasm/instrument/mod.ts";
import { loadWasmPlugin } from "../runtimes/wasm/plugin.ts";
import { WasiPreview1 } from "../runtimes/wasi/preview1.ts";

const enc = new TextEncoder();
const FIXTURES = ["hello-c", "hello-rust", "hello-as", "wat-edge"];
const path = (name: string) =>
  new URL(`../fixtures/plugins/${name}/plugin.wasm`, import.meta.url).pathname;

// 100 bytes of JSON.
const PAYLOAD = enc.encode(JSON.stringify({ message: "x".repeat(86) }));
if (PAYLOAD.length !== 100) {
  throw new Error(`payload is ${PAYLOAD.length} bytes`);
}
const FN = enc.encode("echo");

/** In-thread instance: the same instrumented module, no worker. */
async function inThread(name: string): Promise<GuestInstance> {
  const { bytes } = await instrumentModuleCached(
    await Deno.readFile(path(name)),
    { memoryLimitPages: 256 },
  );
  const module = await WebAssembly.compile(bytes as Uint8Array<ArrayBuffer>);
  const wasi = new WasiPreview1({});
  const g = GuestInstance.create(module, {
    bridge: {
      hostCall: () => ({ ok: new Uint8Array(0) }),
      log: () => {},
      interrupt: () => 10_000,
    },
    wasi: wasi.imports() as Record<string, unknown>,
    onInstance: (i) => wasi.bind(i),
  });
  g.register();
  return g;
}

const local = await inThread("hello-c");
const isolated = await loadWasmPlugin(path("hello-c"));
await isolated.init({ log: () => {} } as never, {
  name: "hello-c",
  quarantine: () => {},
});
const manager = new Manager();
await manager.register(await loadWasmPlugin(path("hello-c")));
const ctx = createCallContext({ timeoutMs: 3_600_000 });

Deno.bench({
  group: "echo 100 B",
  name: "in-thread, no isolation",
  baseline: true,
  fn: () => {
    local.call(FN, PAYLOAD);
  },
});

Deno.bench({
  group: "echo 100 B",
  name: "isolated (worker + SAB channel)",
  fn: async () => {
    await isolated.call("echo", PAYLOAD, ctx);
  },
});

Deno.bench({
  group: "echo 100 B",
  name: "isolated, through Manager.call",
  fn: async () => {
    await manager.call("hello-c", "echo", PAYLOAD, { timeoutMs: 60_000 });
  },
});

for (const name of FIXTURES) {
  const bytes = await Deno.readFile(path(name));
  Deno.bench({
    group: `cold load ${name}`,
    name: `${name}: in-thread compile+instantiate+gk_register`,
    baseline: true,
    n: 20,
    warmup: 2,
    fn: async () => {
      await inThread(name);
    },
  });
  Deno.bench({
    group: `cold load ${name}`,
    name: `${name}: isolated load+register+shutdown`,
    n: 20,
    warmup: 2,
    fn: async () => {
      const m = new Manager();
      await m.register(await loadWasmPlugin(bytes, { name }));
      await m.shutdownAll();
    },
  });
}

// Workers keep the process alive: stop them once the benches are done.
globalThis.addEventListener("beforeunload", () => {
  isolated.shutdown();
  manager.shutdownAll();
});
