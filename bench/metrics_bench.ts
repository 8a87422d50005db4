/**
 * The cost of host metrics (`host/telemetry/metrics.ts`), metrics off
 * (baseline) against on, in one run:
 *
 * - `wasm echo call`: `Manager.call` of `echo` on the WAT echo fixture
 *   (`fixtures/bench/echo-wat`, isolated WASM runtime), through a Manager
 *   without interceptors vs one with the metrics interceptor. Goal: ≤ 1 µs.
 * - `interceptor alone`: the same with a plugin whose call resolves at once
 *   (no worker round trip): no interceptor, a no-op interceptor (the cost
 *   of the Manager's chain itself) and the metrics interceptor; the
 *   difference is the cost per call without the noise of the worker
 *   channel.
 * - `plugin route`: a GET of the echo plugin's route through `createApp`
 *   (in-process `fetch`), without vs with metrics (route middleware plus
 *   interceptor). Goal: ≤ 5 %.
 *
 * Run: `deno bench -A bench/metrics_bench.ts`.
 *
 * @module
 */

import { Manager } from "../host/manager.ts";
import { createInterceptors } from "../host/model/interceptors.ts";
import { encodeJson, type Plugin } from "../host/model/plugin.ts";
import { createApp } from "../host/server/mod.ts";
import { HostMetrics } from "../host/telemetry/metrics.ts";
import { loadWasmPlugin } from "../runtimes/wasm/plugin.ts";

const ECHO = new URL("../fixtures/bench/echo-wat/plugin.wasm", import.meta.url)
  .pathname;
const PAYLOAD = encodeJson({ message: "x".repeat(86) });

/** A Manager with the echo plugin, with or without metrics. */
async function echoManager(
  withMetrics: boolean,
): Promise<{ manager: Manager; metrics?: HostMetrics }> {
  const interceptors = createInterceptors();
  const metrics = withMetrics ? new HostMetrics() : undefined;
  if (metrics) interceptors.plugin.push(metrics.pluginInterceptor);
  const manager = new Manager({ interceptors: interceptors.plugin });
  metrics?.watch(manager);
  await manager.register(await loadWasmPlugin(ECHO, { idleTimeoutMs: 0 }));
  return { manager, ...(metrics ? { metrics } : {}) };
}

const off = await echoManager(false);
const on = await echoManager(true);
const name = off.manager.list()[0]!.name;

Deno.bench({
  group: "wasm echo call",
  name: "metrics off",
  baseline: true,
  async fn() {
    await off.manager.call(name, "echo", PAYLOAD);
  },
});

Deno.bench({
  group: "wasm echo call",
  name: "metrics on",
  async fn() {
    await on.manager.call(name, "echo", PAYLOAD);
  },
});

/** A native plugin whose call resolves at once. */
function instant(): Plugin {
  const out = encodeJson({ ok: true });
  return {
    gkRegister: () => ({
      name: "instant",
      version: "1.0.0",
      routes: [{ method: "GET", path: "/instant", handler: "echo" }],
    }),
    init: () => Promise.resolve(),
    call: () => Promise.resolve(out),
    shutdown: () => Promise.resolve(),
  };
}
const instantOff = new Manager();
await instantOff.register(instant());
const instantMetrics = new HostMetrics();
const instantOn = new Manager({
  interceptors: [instantMetrics.pluginInterceptor],
});
instantMetrics.watch(instantOn);
await instantOn.register(instant());
// A Manager with one interceptor that only calls `next`: the chain's own
// cost, which any interceptor (tracing, quotas) pays.
const instantNoop = new Manager({ interceptors: [(_call, next) => next()] });
await instantNoop.register(instant());

Deno.bench({
  group: "interceptor alone",
  name: "metrics off",
  baseline: true,
  async fn() {
    await instantOff.call("instant", "echo", null);
  },
});

Deno.bench({
  group: "interceptor alone",
  name: "no-op interceptor",
  async fn() {
    await instantNoop.call("instant", "echo", null);
  },
});

Deno.bench({
  group: "interceptor alone",
  name: "metrics on",
  async fn() {
    await instantOn.call("instant", "echo", null);
  },
});

const appOff = createApp({ manager: off.manager });
const appOn = createApp({ manager: on.manager, metrics: on.metrics! });
const ROUTE = "http://h/api/plugins/bench-echo?message=hello";

Deno.bench({
  group: "plugin route",
  name: "metrics off",
  baseline: true,
  async fn() {
    const res = await appOff.fetch(new Request(ROUTE));
    await res.arrayBuffer();
  },
});

Deno.bench({
  group: "plugin route",
  name: "metrics on",
  async fn() {
    const res = await appOn.fetch(new Request(ROUTE));
    await res.arrayBuffer();
  },
});

globalThis.addEventListener("unload", () => {
  appOff.close();
  appOn.close();
});
