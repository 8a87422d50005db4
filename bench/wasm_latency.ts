/**
 * Per-call latency percentiles (p50/p90/p99) of `echo` with a 100-byte JSON
 * payload: in-thread without isolation, isolated (worker + SharedArrayBuffer
 * channel) for several spin budgets, and through `Manager.call`. `deno bench`
 * reports averages and p75; the target is the isolated p50.
 *
 * Run: `deno run -A bench/wasm_latency.ts [main,worker spin µs;…]`
 * (default `50,50;0,0`).
 *
 * @module
 */

import { Manager } from "../host/manager.ts";
import { createCallContext } from "../host/model/plugin.ts";
import { GuestInstance } from "../runtimes/wasm/abi.ts";
import { instrumentModuleCached } from "../runtimes/wasm/instrument/mod.ts";
import { loadWasmPlugin } from "../runtimes/wasm/plugin.ts";
import { WasiPreview1 } from "../runtimes/wasi/preview1.ts";

const N = 20_000;
const enc = new TextEncoder();
const path =
  new URL("../fixtures/plugins/hello-c/plugin.wasm", import.meta.url).pathname;
const payload = enc.encode(JSON.stringify({ message: "x".repeat(86) }));

function percentiles(samples: number[]): string {
  samples.sort((a, b) => a - b);
  const at = (q: number) => samples[Math.floor(samples.length * q)]!.toFixed(2);
  return `p50 ${at(0.5)} µs, p90 ${at(0.9)} µs, p99 ${at(0.99)} µs`;
}

async function measure(fn: () => unknown): Promise<string> {
  for (let i = 0; i < 3000; i++) await fn();
  const t: number[] = [];
  for (let i = 0; i < N; i++) {
    const s = performance.now();
    await fn();
    t.push((performance.now() - s) * 1000);
  }
  return percentiles(t);
}

const { bytes } = await instrumentModuleCached(await Deno.readFile(path), {
  memoryLimitPages: 256,
});
const wasi = new WasiPreview1({});
const local = GuestInstance.create(
  await WebAssembly.compile(bytes as Uint8Array<ArrayBuffer>),
  {
    bridge: {
      hostCall: () => ({ ok: new Uint8Array(0) }),
      log: () => {},
      interrupt: () => 10_000,
    },
    wasi: wasi.imports() as Record<string, unknown>,
    onInstance: (i) => wasi.bind(i),
  },
);
const fnName = enc.encode("echo");
console.log(
  `in-thread, no isolation: ${await measure(() =>
    local.call(fnName, payload)
  )}`,
);

const spins = (Deno.args[0] ?? "50,50;0,0").split(";").map((s) =>
  s.split(",").map(Number)
);
for (const [main, worker] of spins) {
  const p = await loadWasmPlugin(path, {
    spinMicros: main!,
    workerSpinMicros: worker!,
  });
  await p.init({ log: () => {} } as never, {
    name: "hello-c",
    quarantine: () => {},
  });
  const ctx = createCallContext({ timeoutMs: 3_600_000 });
  console.log(
    `isolated, spin ${main}/${worker} µs: ${await measure(() =>
      p.call("echo", payload, ctx)
    )}`,
  );
  await p.shutdown();
}

const manager = new Manager();
await manager.register(await loadWasmPlugin(path));
console.log(
  `isolated, Manager.call: ${await measure(() =>
    manager.call("hello-c", "echo", payload, { timeoutMs: 60_000 })
  )}`,
);
await manager.shutdownAll();
