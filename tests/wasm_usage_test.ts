/**
 * `WasmPlugin.usage()` (metrics and quotas read it through
 * `Manager.usage`): guest CPU time counts the guest's own running, not the
 * time the host spends serving its host calls; memory is the live
 * instances' linear memory; an interrupted guest counts a restart.
 *
 * Run: `deno test -A tests/wasm_usage_test.ts`
 *
 * @module
 */

import assert from "node:assert/strict";
import { Manager } from "../host/manager.ts";
import { PluginTimeoutError } from "../host/model/errors.ts";
import { loadWasmPlugin } from "../runtimes/wasm/mod.ts";

const enc = new TextEncoder();
const fixture = (dir: string, name: string) =>
  new URL(`../fixtures/${dir}/${name}/plugin.wasm`, import.meta.url).pathname;

Deno.test("usage(): a looping guest's time is CPU time, a host call's wait is not; memory and restarts are reported", async () => {
  const manager = new Manager();
  // A native plugin that answers after 300 ms: wat-edge's callhost waits
  // for it inside a host call.
  await manager.register({
    gkRegister: () => ({ name: "slow", version: "1.0.0" }),
    init: () => Promise.resolve(),
    call: () => new Promise((r) => setTimeout(() => r(enc.encode("{}")), 300)),
    shutdown: () => Promise.resolve(),
  });
  const edge = await loadWasmPlugin(fixture("plugins", "wat-edge"));
  const loop = await loadWasmPlugin(fixture("hostile", "loop"));
  await manager.register(edge);
  await manager.register(loop);
  try {
    const before = manager.usage("wat-edge")!;
    assert.equal(before.calls, 0);
    assert.ok((before.memoryBytes ?? 0) >= 65536, "live instance memory");
    const t0 = performance.now();
    await manager.call(
      "wat-edge",
      "callhost",
      enc.encode(`plugin_call\n{"plugin":"slow","function":"x","args":{}}`),
    );
    const wall = performance.now() - t0;
    const after = manager.usage("wat-edge")!;
    assert.equal(after.calls, 1);
    assert.ok(wall >= 290, `the call took ${wall.toFixed(0)} ms`);
    assert.ok(
      after.cpuMs < 150,
      `a 300 ms host call counted as ${after.cpuMs.toFixed(0)} ms of guest CPU`,
    );
    assert.equal(after.restarts, 0);

    await assert.rejects(
      manager.call("hostile-loop", "tight", null, { timeoutMs: 300 }),
      PluginTimeoutError,
    );
    // The caller hears of the deadline first; the runtime then interrupts
    // the guest and counts the call.
    for (
      let i = 0;
      i < 100 && manager.usage("hostile-loop")!.calls === 0;
      i++
    ) {
      await new Promise((r) => setTimeout(r, 20));
    }
    const looped = manager.usage("hostile-loop")!;
    assert.equal(looped.calls, 1);
    assert.ok(
      looped.cpuMs >= 250,
      `a guest looping to its 300 ms deadline counted ${
        looped.cpuMs.toFixed(0)
      } ms`,
    );
    assert.equal(looped.restarts, 1, "the interrupted instance was replaced");
    assert.equal(manager.usage("nobody"), undefined);
  } finally {
    await manager.shutdownAll();
  }
});
