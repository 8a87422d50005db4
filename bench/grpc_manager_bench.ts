// Where the µs of `Manager.call` → Go go-plugin plugin go, same run:
// GrpcPlugin.call on the very plugin instance the Manager holds, then
// Manager.call without interceptors, with boot's metrics + quotas, and with
// tracing (OTel's no-op tracer) in front, against go-plugin's own Go host
// calling the same plugin (the anchor of issue 12).
//
//   deno run -A bench/grpc_manager_bench.ts [--calls=3000] [--rounds=3]
//
// Each round runs every row once (interleaved, in a rotated order, so load
// from other processes hits all rows alike); the table shows each row's p50
// range over rounds (min–max), its best p99 and the host process's CPU time
// per call (user + system, all threads: steadier than wall time on a shared
// machine). Needs the Go toolchain (see fixtures/plugins/hello-go/build.sh).

import { parseArgs } from "node:util";
import { cpuUsage } from "node:process";
import { dirname } from "node:path";
import { buildHelloGoAll } from "../fixtures/plugins/hello-go/build_go.ts";
import { createCallContext } from "../host/model/plugin.ts";
import { createInterceptors } from "../host/model/interceptors.ts";
import { Manager } from "../host/manager.ts";
import { HostMetrics } from "../host/telemetry/metrics.ts";
import { Quotas } from "../host/quotas/quotas.ts";
import { createTracing } from "../host/telemetry/tracing.ts";
import { MemoryHostAPI } from "../host/testing/memory_host_api.ts";
import { loadGrpcPlugin } from "../runtimes/grpc/mod.ts";

const { values } = parseArgs({
  args: Deno.args,
  options: { calls: { type: "string" }, rounds: { type: "string" } },
});
const CALLS = Number(values.calls ?? 3000);
const ROUNDS = Number(values.rounds ?? 3);

const built = await buildHelloGoAll();
if (!built) {
  console.log("Go toolchain missing: nothing to measure");
  Deno.exit(0);
}
const PAYLOAD = new TextEncoder().encode(
  JSON.stringify({
    name: "World",
    message: "Hello from the benchmark, a small JSON payload",
    n: 12345,
  }).padEnd(105, " "),
);

const plugin = await loadGrpcPlugin(built.plugin, {
  trustedExecutables: [built.plugin],
  startTimeoutMs: 30_000,
});
globalThis.addEventListener("unload", () => {
  try {
    Deno.removeSync(dirname(plugin.hostSocket), { recursive: true });
  } catch { /* gone */ }
});
// The Manager reads its interceptor array at each call: rows swap its
// contents.
const chain = createInterceptors().plugin;
const manager = new Manager({
  host: new MemoryHostAPI(),
  interceptors: chain,
});
const metrics = new HostMetrics();
metrics.watch(manager);
const quotas = new Quotas({ usage: (n) => manager.usage(n) });
const tracing = createTracing();
await manager.register(plugin);
const name = manager.list()[0]!.name;
const ctx = createCallContext({ timeoutMs: 3_600_000 });

const rows: [string, () => void, () => Promise<unknown>][] = [
  [
    "GrpcPlugin.call (same instance)",
    () => chain.length = 0,
    () => plugin.call("echo", PAYLOAD, ctx),
  ],
  [
    "Manager.call, no interceptors",
    () => chain.length = 0,
    () => manager.call(name, "echo", PAYLOAD),
  ],
  ["Manager.call + metrics + quotas (boot)", () => {
    chain.length = 0;
    chain.push(metrics.pluginInterceptor, quotas.pluginInterceptor);
  }, () => manager.call(name, "echo", PAYLOAD)],
  ["Manager.call + tracing (no-op) + metrics + quotas", () => {
    chain.length = 0;
    chain.push(
      tracing.plugin,
      metrics.pluginInterceptor,
      quotas.pluginInterceptor,
    );
  }, () => manager.call(name, "echo", PAYLOAD)],
];

async function measure(
  fn: () => Promise<unknown>,
): Promise<[number, number, number]> {
  for (let i = 0; i < CALLS / 3; i++) await fn();
  const t = new Float64Array(CALLS);
  const cpu0 = cpuUsage();
  for (let i = 0; i < CALLS; i++) {
    const s = performance.now();
    await fn();
    t[i] = performance.now() - s;
  }
  const cpu = cpuUsage(cpu0);
  t.sort();
  return [
    t[CALLS >> 1]! * 1000,
    t[Math.floor(CALLS * 0.99)]! * 1000,
    (cpu.user + cpu.system) / CALLS,
  ];
}

interface GoHostResult {
  p50_us: number;
  p99_us: number;
}
const anchor: GoHostResult[] = [];
const results = rows.map(() => ({
  p50: [] as number[],
  p99: Infinity,
  cpu: [] as number[],
}));
for (let round = 0; round < ROUNDS; round++) {
  const out = await new Deno.Command(built.gohost, {
    args: [built.plugin, String(CALLS)],
    stdin: "null",
  }).output();
  if (out.success) {
    anchor.push(JSON.parse(new TextDecoder().decode(out.stdout)));
  }
  // Rows in a rotated order each round (no row always runs first).
  for (let k = 0; k < rows.length; k++) {
    const i = (k + round) % rows.length;
    const [, setup, fn] = rows[i]!;
    setup();
    const [p50, p99, cpu] = await measure(fn);
    results[i]!.p50.push(p50);
    results[i]!.cpu.push(cpu);
    results[i]!.p99 = Math.min(results[i]!.p99, p99);
  }
}
chain.length = 0;
await manager.shutdownAll();

const range = (xs: number[]) =>
  `${Math.min(...xs).toFixed(0)}–${Math.max(...xs).toFixed(0)}`;
console.log(
  `| 105-byte JSON echo, ${CALLS} calls × ${ROUNDS} rounds | p50 (min–max over rounds) | best p99 | host CPU/call (min–max) |`,
);
console.log("|---|---|---|---|");
if (anchor.length) {
  console.log(
    `| anchor: Go host (go-plugin) → Go plugin | ${
      range(anchor.map((a) => a.p50_us))
    } µs | ${Math.min(...anchor.map((a) => a.p99_us)).toFixed(0)} µs | — |`,
  );
}
for (const [i, [label]] of rows.entries()) {
  console.log(
    `| ${label} | ${range(results[i]!.p50)} µs | ${
      results[i]!.p99.toFixed(0)
    } µs | ${range(results[i]!.cpu)} µs |`,
  );
}
