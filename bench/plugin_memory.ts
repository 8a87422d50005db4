/**
 * Memory per loaded WASM plugin, with idle worker release off and on.
 *
 * Each measurement runs in its own child process: it builds an empty host
 * (a `Manager`), records its RSS as the baseline, loads N copies of the
 * hello-c plugin through the Manager under generated names, calls each once
 * and records RSS again. Mode `keep` never releases workers
 * (`idleTimeoutMs: 0`); mode `release` waits until every idle worker was
 * released (`idleTimeoutMs`, default 1000 ms) before measuring, then times
 * the first call of each plugin after its release (50 ms apart, as lazy
 * plugins are called now and then; see runtimes/wasm/spare_workers.ts)
 * against a warm call.
 *
 * ```sh
 * deno run -A bench/plugin_memory.ts            # N = 100
 * deno run -A bench/plugin_memory.ts --n 20 --idle-ms 500
 * ```
 *
 * @module
 */

import { parseArgs } from "node:util";
import { Manager } from "../host/manager.ts";
import type { GKRegistration } from "../host/model/manifest.ts";
import type { Plugin } from "../host/model/plugin.ts";
import { MemoryHostAPI } from "../host/testing/mod.ts";
import { loadWasmPlugin, type WasmPlugin } from "../runtimes/wasm/mod.ts";

const HELLO_C =
  new URL("../fixtures/plugins/hello-c/plugin.wasm", import.meta.url)
    .pathname;
const MB = 1024 * 1024;

interface ChildReport {
  mode: "keep" | "release";
  n: number;
  baselineRss: number;
  loadedRss: number;
  liveWorkers: number;
  loadMs: number;
  warmMs: number[];
  coldMs: number[];
}

/** The plugin under another name (the Manager keys plugins by name). */
function renamed(plugin: WasmPlugin, name: string): Plugin {
  const m = plugin.gkRegister() as GKRegistration;
  return {
    runtime: "wasm",
    gkRegister: () => ({
      name,
      version: m.version,
      description: m.description,
    }),
    init: (host, env) => plugin.init(host, env),
    call: (fn, args, ctx) => plugin.call(fn, args, ctx),
    shutdown: () => plugin.shutdown(),
  };
}

async function settledRss(): Promise<number> {
  for (let i = 0; i < 3; i++) {
    (globalThis as { gc?: () => void }).gc?.();
    await new Promise((r) => setTimeout(r, 200));
  }
  return Deno.memoryUsage().rss;
}

async function timedCall(manager: Manager, name: string): Promise<number> {
  const t0 = performance.now();
  const out = await manager.call(name, "hello", null, { timeoutMs: 30_000 });
  const ms = performance.now() - t0;
  const text = new TextDecoder().decode(out!);
  if (!text.includes("Hello from C, World!")) {
    throw new Error(`Cannot benchmark ${name}: unexpected answer ${text}`);
  }
  return ms;
}

async function child(
  mode: "keep" | "release",
  n: number,
  idleMs: number,
): Promise<ChildReport> {
  const manager = new Manager({ host: new MemoryHostAPI() });
  // Warm the code paths (and the instrumentation cache) with one plugin
  // that is gone before the baseline is taken.
  const warm = await loadWasmPlugin(HELLO_C, { idleTimeoutMs: 0 });
  await warm.shutdown();
  const baselineRss = await settledRss();
  const plugins: WasmPlugin[] = [];
  const names: string[] = [];
  const t0 = performance.now();
  for (let i = 0; i < n; i++) {
    const name = `bench-hello-${i}`;
    const p = await loadWasmPlugin(HELLO_C, {
      name,
      idleTimeoutMs: mode === "keep" ? 0 : idleMs,
    });
    plugins.push(p);
    names.push(name);
    await manager.register(renamed(p, name));
  }
  const loadMs = performance.now() - t0;
  const warmMs: number[] = [];
  for (const name of names) {
    await timedCall(manager, name); // first call
    warmMs.push(await timedCall(manager, name)); // warm: right after it
  }
  const coldMs: number[] = [];
  if (mode === "release") {
    const end = Date.now() + idleMs + 30_000;
    while (plugins.some((p) => p.instanceCount > 0)) {
      if (Date.now() > end) throw new Error("Cannot measure: workers live on");
      await new Promise((r) => setTimeout(r, 50));
    }
  }
  const loadedRss = await settledRss();
  const liveWorkers = plugins.reduce((s, p) => s + p.instanceCount, 0);
  if (mode === "release") {
    // Each plugin's first call after its worker was released, as lazy
    // plugins are called: now and then (50 ms apart: the process keeps one
    // spare worker, refilled in the background; a burst of first calls
    // beyond it pays a worker's bootstrap each).
    for (const name of names) {
      await new Promise((r) => setTimeout(r, 50));
      coldMs.push(await timedCall(manager, name));
    }
  }
  await manager.shutdownAll();
  return {
    mode,
    n,
    baselineRss,
    loadedRss,
    liveWorkers,
    loadMs,
    warmMs,
    coldMs,
  };
}

function quantile(xs: number[], q: number): number {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.min(s.length - 1, Math.floor(q * s.length))] ?? NaN;
}

async function runChild(
  mode: string,
  n: number,
  idleMs: number,
): Promise<ChildReport> {
  const out = await new Deno.Command(Deno.execPath(), {
    args: [
      "run",
      "-A",
      "--v8-flags=--expose-gc",
      new URL(import.meta.url).pathname,
      "--child",
      mode,
      "--n",
      String(n),
      "--idle-ms",
      String(idleMs),
    ],
    stdout: "piped",
    stderr: "inherit",
  }).output();
  if (!out.success) throw new Error(`Cannot run the ${mode} child`);
  const lines = new TextDecoder().decode(out.stdout).trim().split("\n");
  return JSON.parse(lines[lines.length - 1]!) as ChildReport;
}

if (import.meta.main) {
  const { values: flags } = parseArgs({
    args: Deno.args,
    options: {
      child: { type: "string" },
      n: { type: "string", default: "100" },
      "idle-ms": { type: "string", default: "1000" },
    },
  });
  const n = Number(flags.n);
  const idleMs = Number(flags["idle-ms"]);
  if (flags.child) {
    const report = await child(flags.child as "keep" | "release", n, idleMs);
    console.log(JSON.stringify(report));
  } else {
    console.log(
      `plugin_memory: ${n} hello-c plugins, idle release after ${idleMs} ms`,
    );
    for (const mode of ["keep", "release"]) {
      const r = await runChild(mode, n, idleMs);
      const perPlugin = (r.loadedRss - r.baselineRss) / MB / n;
      console.log(
        `${mode.padEnd(8)} empty host ${(r.baselineRss / MB).toFixed(0)} MB, ` +
          `${n} loaded+called ${(r.loadedRss / MB).toFixed(0)} MB ` +
          `(${
            perPlugin.toFixed(2)
          } MB per plugin, ${r.liveWorkers} live workers), ` +
          `load ${(r.loadMs / n).toFixed(1)} ms/plugin, ` +
          `warm call p50 ${quantile(r.warmMs, 0.5).toFixed(2)} ms`,
      );
      if (r.coldMs.length > 0) {
        console.log(
          `${"".padEnd(8)} first call after release p50 ${
            quantile(r.coldMs, 0.5).toFixed(2)
          } ms, p95 ${quantile(r.coldMs, 0.95).toFixed(2)} ms ` +
            `(warm p50 ${quantile(r.warmMs, 0.5).toFixed(2)} ms)`,
        );
      }
    }
  }
}
