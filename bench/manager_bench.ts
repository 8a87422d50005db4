// Cost of Manager.call (lookup, deadline, call chain, abort signal) over
// calling the plugin object directly, with a native plugin that echoes;
// then with the interceptors boot installs (metrics and quotas always,
// tracing with OTEL_DENO=true: here with OTel's no-op tracer).
//
//   deno bench -A bench/manager_bench.ts
//
// A table of p50 / p99 (5,000 sequential calls after 2,000 warm-up ones,
// every row in the same run, min over 3 rounds) is printed first.
import { createCallContext, encodeJson, Manager, type Plugin } from "../mod.ts";
import { createInterceptors } from "../host/model/interceptors.ts";
import { HostMetrics } from "../host/telemetry/metrics.ts";
import { Quotas } from "../host/quotas/quotas.ts";
import { createTracing } from "../host/telemetry/tracing.ts";

function echoPlugin(usage: boolean): Plugin {
  let calls = 0;
  return {
    gkRegister: () => ({ name: "echo", version: "1.0.0" }),
    init: () => Promise.resolve(),
    call: (_fn, args) => {
      calls++;
      return Promise.resolve(args);
    },
    shutdown: () => Promise.resolve(),
    // Like the WASM and gRPC runtimes: the quotas read it around each call.
    ...(usage ? { usage: () => ({ cpuMs: calls / 1000, calls }) } : {}),
  };
}

const echo = echoPlugin(false);
const manager = new Manager();
await manager.register(echo);

// The boot-time chain: tracing (no-op tracer), metrics, quotas.
const booted = echoPlugin(true);
const interceptors = createInterceptors();
const metrics = new HostMetrics();
// Read only at calls, once bootManager exists.
const quotas = new Quotas({ usage: (n) => bootManager.usage(n) });
interceptors.plugin.push(
  createTracing().plugin,
  metrics.pluginInterceptor,
  quotas.pluginInterceptor,
);
const bootManager = new Manager({ interceptors: interceptors.plugin });
metrics.watch(bootManager);
await bootManager.register(booted);

// Metrics and quotas only (boot without OTEL_DENO).
const untraced = echoPlugin(true);
const chain2 = createInterceptors();
const metrics2 = new HostMetrics();
const quotas2 = new Quotas({ usage: (n) => manager2.usage(n) });
chain2.plugin.push(metrics2.pluginInterceptor, quotas2.pluginInterceptor);
const manager2 = new Manager({ interceptors: chain2.plugin });
metrics2.watch(manager2);
await manager2.register(untraced);

const args = encodeJson({ message: "x".repeat(80) });
const ctx = createCallContext();
const parent = createCallContext({ timeoutMs: 60_000 });
const cases: [string, () => Promise<unknown>][] = [
  ["plugin.call directly", () => echo.call("echo", args, ctx)],
  ["Manager.call", () => manager.call("echo", "echo", args)],
  [
    "Manager.call with a caller's signal",
    () => manager.call("echo", "echo", args, { signal: ctx.signal }),
  ],
  [
    "Manager.callFrom with a parent context",
    () => manager.callFrom("caller", "echo", "echo", args, { parent }),
  ],
  [
    "Manager.call + metrics + quotas",
    () => manager2.call("echo", "echo", args),
  ],
  [
    "Manager.call + tracing (no-op) + metrics + quotas",
    () => bootManager.call("echo", "echo", args),
  ],
];

async function p50p99(fn: () => Promise<unknown>): Promise<[number, number]> {
  for (let i = 0; i < 2000; i++) await fn();
  const t = new Float64Array(5000);
  for (let i = 0; i < t.length; i++) {
    const s = performance.now();
    await fn();
    t[i] = performance.now() - s;
  }
  t.sort();
  return [t[2500]! * 1000, t[4950]! * 1000];
}
const best = cases.map(() => [Infinity, Infinity]);
for (let round = 0; round < 3; round++) {
  for (const [i, [, fn]] of cases.entries()) {
    const [p50, p99] = await p50p99(fn);
    best[i]![0] = Math.min(best[i]![0]!, p50);
    best[i]![1] = Math.min(best[i]![1]!, p99);
  }
}
console.log("| native echo (min of 3 rounds) | p50 | p99 |\n|---|---|---|");
for (const [i, [name]] of cases.entries()) {
  console.log(
    `| ${name} | ${best[i]![0]!.toFixed(2)} µs | ${
      best[i]![1]!.toFixed(2)
    } µs |`,
  );
}

for (const [i, [name, fn]] of cases.entries()) {
  Deno.bench({
    group: "call",
    name,
    baseline: i === 0,
    fn: async () => {
      await fn();
    },
  });
}
