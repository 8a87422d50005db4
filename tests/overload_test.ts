/**
 * Overload and faults at the runtime and Manager level (issue 11): real WASM
 * fixtures through a real Manager.
 *
 * - A flood of 2,000 concurrent calls into a 1-instance plugin whose call is
 *   held open: the queue bound refuses the excess at once with
 *   `PluginOverloadedError`, the admitted calls all complete in FIFO order,
 *   and the plugin is not quarantined.
 * - Calls that wait past their queue budget (or half their deadline) fail
 *   with the same overload error, never a timeout; not quarantined. A call
 *   that the queued work (at the plugin's recent run time) would keep past
 *   its budget is refused at once (`queue-wait`).
 * - A looping guest is quarantined after 3 deadline overruns (short window
 *   and deadline here); the quarantine carries its reason and persists.
 * - A trapping guest is still quarantined after 5 crashes.
 * - Caller aborts (running or queued) and deadlines that pass during a host
 *   call never count.
 *
 * The held call is a WAT plugin (`wat-edge`) whose `callhost` function makes
 * a `plugin_call` into a native "gate" plugin that answers only when the
 * test opens it: no timing decides which call is queued or refused.
 *
 * Run: `deno test -A tests/overload_test.ts`
 *
 * @module
 */

import assert from "node:assert/strict";
import { Manager } from "../host/manager.ts";
import { LogBuffer } from "../host/log_buffer.ts";
import { MemoryStateStore } from "../host/state_store.ts";
import {
  isPluginFault,
  PluginCrashedError,
  PluginDisabledError,
  PluginOverloadedError,
  PluginTimeoutError,
} from "../host/model/errors.ts";
import { decodeJson, type Plugin } from "../host/model/plugin.ts";
import { loadWasmPlugin, type WasmPlugin } from "../runtimes/wasm/mod.ts";

const enc = new TextEncoder();
const dec = new TextDecoder();
const fixture = (dir: string, name: string) =>
  new URL(`../fixtures/${dir}/${name}/plugin.wasm`, import.meta.url).pathname;

/** A native plugin whose `hold` answers only once the test opens the gate. */
function gatePlugin(): {
  plugin: Plugin;
  open: () => void;
  seen: number[];
  entered: Promise<void>;
} {
  let open!: () => void;
  const gate = new Promise<void>((r) => open = r);
  let entered!: () => void;
  const firstEntered = new Promise<void>((r) => entered = r);
  const seen: number[] = [];
  return {
    open,
    seen,
    entered: firstEntered,
    plugin: {
      gkRegister: () => ({ name: "gate", version: "1.0.0" }),
      init: () => Promise.resolve(),
      call: async (_fn, args) => {
        seen.push((decodeJson<{ i: number }>(args) ?? { i: -1 }).i);
        entered();
        await gate;
        return enc.encode('{"passed":true}');
      },
      shutdown: () => Promise.resolve(),
    },
  };
}

/** `wat-edge.callhost` args that make it call `gate.hold` with `{i}`. */
const throughGate = (i: number) =>
  enc.encode(
    `plugin_call\n{"plugin":"gate","function":"hold","args":{"i":${i}}}`,
  );

async function waitFor(cond: () => boolean, what: string): Promise<void> {
  for (let i = 0; i < 400 && !cond(); i++) {
    await new Promise((r) => setTimeout(r, 25));
  }
  assert.ok(cond(), `still waiting for: ${what}`);
}

async function setup(
  options: Parameters<typeof loadWasmPlugin>[1],
  manager = new Manager({ logs: new LogBuffer({ capacity: 5000 }) }),
): Promise<{
  manager: Manager;
  wasm: WasmPlugin;
  gate: ReturnType<typeof gatePlugin>;
  quarantines: string[];
}> {
  const gate = gatePlugin();
  await manager.register(gate.plugin);
  const wasm = await loadWasmPlugin(fixture("plugins", "wat-edge"), options);
  await manager.register(wasm);
  const quarantines: string[] = [];
  manager.subscribe((e) => {
    if (e.type === "disabled") quarantines.push(e.name);
  });
  return { manager, wasm, gate, quarantines };
}

Deno.test("2,000 concurrent calls into a 1-instance plugin: the excess is refused at once, the admitted complete in order, no quarantine", async () => {
  const { manager, wasm, gate, quarantines } = await setup({
    instances: 1,
    // Thresholds of 1: a single miscounted refusal would quarantine.
    quarantine: { maxFailures: 1, maxOverruns: 1 },
    // Long budget: the queued calls wait for the gate, not for a timer.
    queue: { maxLength: 256, maxWaitMs: 120_000 },
  });
  try {
    const calls = Array.from(
      { length: 2000 },
      (_, i) =>
        manager.call("wat-edge", "callhost", throughGate(i), {
          timeoutMs: 300_000,
        }).then(
          (out) => ({ ok: dec.decode(out!) }),
          (error: Error) => ({ error }),
        ),
    );
    await gate.entered;
    // Call 0 holds the only instance; 256 wait; the other 1,743 are refused
    // while the gate is still shut (they settle without it opening).
    const refused = await Promise.all(calls.slice(257));
    assert.equal(wasm.queueLength, 256);
    assert.equal(wasm.overloadCount, 1743);
    for (const r of refused) {
      assert.ok("error" in r, "a call beyond the queue bound was admitted");
      const e = r.error;
      assert.ok(e instanceof PluginOverloadedError, String(e));
      assert.equal(e.reason, "queue-full");
      assert.equal(e.queued, 256);
      assert.ok(e.retryAfterSeconds >= 1);
      assert.equal(e.plugin, "wat-edge");
      assert.equal(e.function, "callhost");
      assert.equal(isPluginFault(e), false);
    }
    assert.deepEqual(gate.seen, [0], "a refused call reached the plugin");
    // A newcomer is refused too, at once: it never overtakes the queue.
    await assert.rejects(
      manager.call("wat-edge", "echo", enc.encode("x")),
      PluginOverloadedError,
    );
    // Asked before a call is built (as the HTTP layer asks), the runtime
    // says what the call's error would say, and counts the refusal.
    const early = wasm.refuseNow({ function: "echo", timeoutMs: 10_000 });
    const error = new PluginOverloadedError("wat-edge", {
      function: "echo",
      queued: 256,
      retryAfterSeconds: early?.retryAfterSeconds ?? 0,
    });
    assert.deepEqual(early, {
      plugin: "wat-edge",
      reason: "queue-full",
      message: error.message,
      retryAfterSeconds: error.retryAfterSeconds,
    });
    assert.equal(wasm.overloadCount, 1745);
    gate.open();
    const admitted = await Promise.all(calls.slice(0, 257));
    for (const r of admitted) {
      assert.deepEqual(r, { ok: '{"passed":true}' });
    }
    // Served oldest first: the gate saw the admitted calls in order.
    assert.deepEqual(gate.seen, Array.from({ length: 257 }, (_, i) => i));
    assert.equal(wasm.queueLength, 0);
    assert.equal(
      wasm.refuseNow({ function: "echo", timeoutMs: 10_000 }),
      undefined,
      "nobody waits: a new call is not refused",
    );
    assert.equal(manager.status("wat-edge")?.enabled, true);
    assert.deepEqual(quarantines, []);
    assert.equal(
      dec.decode((await manager.call("wat-edge", "echo", enc.encode("ok")))!),
      "ok",
    );
  } finally {
    await manager.shutdownAll();
  }
});

Deno.test("a call the queued work would keep past its budget is refused at once (queue-wait); the rest complete", async () => {
  const manager = new Manager({ logs: new LogBuffer({ capacity: 5000 }) });
  // Each wat-edge call makes a plugin_call into this native plugin, which
  // answers after 100 ms: the WASM plugin's run time is about 100 ms.
  await manager.register({
    gkRegister: () => ({ name: "gate", version: "1.0.0" }),
    init: () => Promise.resolve(),
    call: () =>
      new Promise((r) =>
        setTimeout(() => r(enc.encode('{"passed":true}')), 100)
      ),
    shutdown: () => Promise.resolve(),
  });
  const wasm = await loadWasmPlugin(fixture("plugins", "wat-edge"), {
    instances: 1,
    quarantine: { maxFailures: 1, maxOverruns: 1 },
    queue: { maxLength: 256, maxWaitMs: 1000 },
  });
  await manager.register(wasm);
  try {
    // Learn the run time.
    for (let i = 0; i < 12; i++) {
      await manager.call("wat-edge", "callhost", throughGate(i));
    }
    const started = performance.now();
    const calls = Array.from(
      { length: 40 },
      (_, i) =>
        manager.call("wat-edge", "callhost", throughGate(100 + i), {
          timeoutMs: 60_000,
        }).then(
          () => ({ ok: true, at: performance.now() - started }),
          (error: Error) => ({ error, at: performance.now() - started }),
        ),
    );
    const results = await Promise.all(calls);
    const refused = results.filter((r) => "error" in r);
    const served = results.filter((r) => "ok" in r);
    // About 1 s of 100 ms calls fits the budget; the rest is refused.
    assert.ok(
      served.length >= 8 && served.length <= 14,
      `served ${served.length}`,
    );
    assert.equal(refused.length, 40 - served.length);
    let atOnce = 0;
    for (const r of refused) {
      const e = (r as { error: Error }).error;
      assert.ok(e instanceof PluginOverloadedError, String(e));
      if (e.reason === "queue-wait") {
        assert.match(e.message, /ms of work ahead/);
        // Refused at once, not after waiting out the 1 s budget.
        assert.ok(r.at < 300, `refused after ${r.at.toFixed(0)} ms`);
        atOnce++;
      } else {
        // The estimate is the recent average: a call admitted at its edge
        // may still run out of budget, and then says so.
        assert.equal(e.reason, "queue-timeout");
        assert.ok((e.waitedMs ?? 0) >= 900, `waited ${e.waitedMs} ms`);
      }
    }
    assert.ok(atOnce >= refused.length - 2, `${atOnce} refused at once`);
    assert.equal(manager.status("wat-edge")?.enabled, true);
  } finally {
    await manager.shutdownAll();
  }
});

Deno.test("queued calls past their queue budget (or half their deadline) get the overload error, not a timeout; no quarantine", async () => {
  const { manager, wasm, gate, quarantines } = await setup({
    quarantine: { maxFailures: 1, maxOverruns: 1 },
    queue: { maxWaitMs: 200 },
  });
  try {
    const held = manager.call("wat-edge", "callhost", throughGate(0), {
      timeoutMs: 120_000,
    });
    await gate.entered;
    // Budget 200 ms (of a 60 s deadline).
    const budgeted = Array.from(
      { length: 5 },
      (_, i) =>
        manager.call("wat-edge", "callhost", throughGate(i + 1), {
          timeoutMs: 60_000,
        }).then(() => null, (e: Error) => e),
    );
    // A 400 ms deadline leaves a budget of 200 ms; the refusal comes before
    // the Manager's own deadline would.
    const halfDeadline = manager.call("wat-edge", "echo", enc.encode("x"), {
      timeoutMs: 400,
    }).then(() => null, (e: Error) => e);
    for (const e of [...await Promise.all(budgeted), await halfDeadline]) {
      assert.ok(e instanceof PluginOverloadedError, String(e));
      assert.ok(!(e instanceof PluginTimeoutError));
      assert.equal(e.reason, "queue-timeout");
      assert.ok((e.waitedMs ?? 0) >= 150, `waited ${e.waitedMs} ms`);
      assert.ok(e.retryAfterSeconds >= 1);
      assert.match(e.message, /overloaded \(waited \d+ ms in its queue\)/);
      assert.equal(e.fault, undefined);
    }
    assert.equal(wasm.queueLength, 0);
    assert.deepEqual(gate.seen, [0], "a call that gave up still ran");
    gate.open();
    assert.equal(dec.decode((await held)!), '{"passed":true}');
    assert.equal(manager.status("wat-edge")?.enabled, true);
    assert.deepEqual(quarantines, []);
  } finally {
    await manager.shutdownAll();
  }
});

Deno.test("a deadline that passes during a host call or while queued is not the guest's fault", async () => {
  const { manager, gate, quarantines } = await setup({
    quarantine: { maxFailures: 1, maxOverruns: 1 },
    queue: { maxWaitMs: 60_000 },
  });
  try {
    // The guest waits in plugin_call on the shut gate until its deadline.
    await assert.rejects(
      manager.call("wat-edge", "callhost", throughGate(0), { timeoutMs: 300 }),
      PluginTimeoutError,
    );
    // The runtime's own verdict follows the Manager's; the next call waits
    // for it (it queues behind the stopping guest) and nothing was counted.
    assert.equal(
      dec.decode((await manager.call("wat-edge", "echo", enc.encode("y")))!),
      "y",
    );
    assert.equal(manager.status("wat-edge")?.enabled, true);
    assert.deepEqual(quarantines, []);
  } finally {
    gate.open();
    await manager.shutdownAll();
  }
});

Deno.test("a looping guest is quarantined after 3 deadline overruns; the reason is typed, shown and persisted", async () => {
  const state = new MemoryStateStore();
  const manager = new Manager({ stateStore: state, defaultTimeoutMs: 200 });
  try {
    const loop = await loadWasmPlugin(fixture("hostile", "loop"), {
      quarantine: { maxOverruns: 3, overrunWindowMs: 60_000 },
    });
    await manager.register(loop);
    for (let i = 1; i <= 3; i++) {
      // The Manager rejects at the deadline; the runtime's verdict follows
      // once the guest has stopped: "ok" queues behind it.
      await assert.rejects(
        manager.call("hostile-loop", "loop", null),
        PluginTimeoutError,
      );
      if (i < 3) {
        assert.equal(
          dec.decode(
            (await manager.call("hostile-loop", "ok", null, {
              timeoutMs: 10_000,
            }))!,
          ),
          '{"ok":true}',
        );
        assert.equal(manager.status("hostile-loop")?.enabled, true, `#${i}`);
      }
    }
    await waitFor(
      () => manager.status("hostile-loop")?.enabled === false,
      "the quarantine",
    );
    const status = manager.status("hostile-loop")!;
    assert.match(
      status.reason ?? "",
      /^3 deadline overruns within 60000 ms; last: loop still running/,
    );
    await assert.rejects(
      manager.call("hostile-loop", "ok", null),
      (e: Error) =>
        e instanceof PluginDisabledError && e.quarantined &&
        e.reason === status.reason,
    );
    // Persisted: a host restarting on the same store keeps it quarantined.
    assert.deepEqual(await state.get("hostile-loop"), {
      enabled: false,
      reason: status.reason,
    });
  } finally {
    await manager.shutdownAll();
  }
});

Deno.test("the runtime marks a guest's own deadline overrun as its fault (direct use)", async () => {
  const loop = await loadWasmPlugin(fixture("hostile", "loop"), {
    callTimeoutMs: 200,
    quarantine: { maxOverruns: 2, overrunWindowMs: 60_000 },
  });
  const reasons: string[] = [];
  await loop.init({ log: () => {} } as never, {
    name: "hostile-loop",
    quarantine: (r) => reasons.push(r),
  });
  try {
    const ctx = () => ({
      chain: ["hostile-loop"],
      deadline: Date.now() + 60_000,
      signal: new AbortController().signal,
    });
    for (let i = 0; i < 2; i++) {
      await assert.rejects(
        loop.call("tight", null, ctx()),
        (e: Error) =>
          e instanceof PluginTimeoutError && e.fault === "deadline" &&
          isPluginFault(e),
      );
    }
    assert.equal(reasons.length, 1);
    assert.match(reasons[0]!, /^2 deadline overruns/);
  } finally {
    await loop.shutdown();
  }
});

Deno.test("a trapping guest is still quarantined after 5 crashes; overload in between changes nothing", async () => {
  const manager = new Manager();
  try {
    const trap = await loadWasmPlugin(fixture("hostile", "trap"), {
      queue: { maxLength: 0 },
    });
    await manager.register(trap);
    for (let i = 1; i <= 5; i++) {
      await assert.rejects(
        manager.call("hostile-trap", "unreachable", null),
        (e: Error) =>
          e instanceof PluginCrashedError && e.fault === "crash" &&
          isPluginFault(e),
      );
      if (i < 5) {
        // With no queue at all, a second call while one runs is refused:
        // overload, never counted.
        const [a, b] = await Promise.allSettled([
          manager.call("hostile-trap", "ok", null),
          manager.call("hostile-trap", "ok", null),
        ]);
        assert.equal(a.status, "fulfilled");
        assert.equal(b.status, "rejected");
        assert.ok(b.reason instanceof PluginOverloadedError);
        assert.equal(manager.status("hostile-trap")?.enabled, true, `#${i}`);
      }
    }
    await waitFor(
      () => manager.status("hostile-trap")?.enabled === false,
      "the quarantine",
    );
    assert.match(
      manager.status("hostile-trap")?.reason ?? "",
      /^5 failures within 60000 ms; last: trap in unreachable/,
    );
  } finally {
    await manager.shutdownAll();
  }
});

Deno.test("caller aborts never count: neither of a running guest nor of a queued call", async () => {
  const manager = new Manager();
  try {
    const loop = await loadWasmPlugin(fixture("hostile", "loop"), {
      quarantine: { maxFailures: 1, maxOverruns: 1 },
      queue: { maxWaitMs: 60_000 },
    });
    await manager.register(loop);
    const running = new AbortController();
    const queued = new AbortController();
    const stuck = manager.call("hostile-loop", "loop", null, {
      timeoutMs: 60_000,
      signal: running.signal,
    });
    stuck.catch(() => {});
    const waiting = manager.call("hostile-loop", "ok", null, {
      timeoutMs: 60_000,
      signal: queued.signal,
    });
    waiting.catch(() => {});
    await waitFor(() => loop.queueLength === 1, "the queued call");
    queued.abort(new Error("queued caller left"));
    await assert.rejects(waiting, /queued caller left/);
    // The queued call left the queue at once; the loop still runs.
    assert.equal(loop.queueLength, 0);
    running.abort(new Error("running caller left"));
    await assert.rejects(stuck, /running caller left/);
    // The guest stopped; it answers, and nothing was counted.
    assert.equal(
      dec.decode((await manager.call("hostile-loop", "ok", null))!),
      '{"ok":true}',
    );
    assert.equal(manager.status("hostile-loop")?.enabled, true);
    assert.equal(loop.overloadCount, 0);
  } finally {
    await manager.shutdownAll();
  }
});

Deno.test("shutdown rejects queued calls at once (not counted)", async () => {
  const { manager, wasm, gate } = await setup({
    queue: { maxWaitMs: 60_000 },
  });
  const held = manager.call("wat-edge", "callhost", throughGate(0), {
    timeoutMs: 60_000,
  }).then(() => null, (e: Error) => e);
  await gate.entered;
  const queued = manager.call("wat-edge", "echo", enc.encode("x"), {
    timeoutMs: 60_000,
  }).then(() => null, (e: Error) => e);
  await waitFor(() => wasm.queueLength === 1, "the queued call");
  const down = manager.shutdownAll({ graceMs: 100 });
  const e = await queued;
  assert.ok(e instanceof PluginCrashedError, String(e));
  assert.match(e.message, /shut down/);
  assert.equal(e.fault, undefined);
  gate.open();
  await down;
  await held;
});

Deno.test("a host main thread that was busy past deadline and grace does not turn a stopping guest into a defect", async () => {
  const loop = await loadWasmPlugin(fixture("hostile", "loop"), {
    graceMs: 300,
  });
  const reasons: string[] = [];
  await loop.init({ log: () => {} } as never, {
    name: "hostile-loop",
    quarantine: (r) => reasons.push(r),
  });
  try {
    const call = loop.call("loop", null, {
      chain: ["hostile-loop"],
      deadline: Date.now() + 200,
      signal: new AbortController().signal,
    }).then(() => null, (e: Error) => e);
    await new Promise((r) => setTimeout(r, 50)); // the guest loops now
    // Block the main thread past the deadline and the grace period: it
    // notices the deadline late, and the guest gets its grace from then.
    const until = Date.now() + 1000;
    while (Date.now() < until) { /* busy */ }
    const e = await call;
    assert.ok(e instanceof PluginTimeoutError, String(e));
    assert.equal(e.fault, "deadline");
    assert.equal(loop.killedWorkers, 0);
    assert.deepEqual(reasons, []);
    assert.equal(
      dec.decode(
        (await loop.call("ok", null, {
          chain: ["hostile-loop"],
          deadline: Date.now() + 10_000,
          signal: new AbortController().signal,
        }))!,
      ),
      '{"ok":true}',
    );
  } finally {
    await loop.shutdown();
  }
});

Deno.test("HandOffQueue: oldest first, one item per waiter, O(1) leave on abort or timeout", async () => {
  const { HandOffQueue } = await import("../runtimes/wasm/handoff_queue.ts");
  const q = new HandOffQueue<number>();
  assert.equal(q.handOff(0), false);
  const aborted = new AbortController();
  const got: (number | string)[] = [];
  const waits = [0, 1, 2, 3].map((i) =>
    q.wait({
      waitMs: i === 2 ? 0 : 60_000,
      ...(i === 1 ? { signal: aborted.signal } : {}),
      onTimeout: () => new Error("timeout"),
    }).then((v) => got[i] = v, (e: Error) => got[i] = e.message)
  );
  assert.equal(q.length, 4);
  aborted.abort(new Error("gone"));
  assert.equal(q.length, 3); // left at once, from the middle
  await waits[2]; // its 0 ms budget ran out
  assert.equal(q.length, 2);
  assert.equal(q.handOff(10), true);
  assert.equal(q.handOff(11), true);
  assert.equal(q.handOff(12), false);
  await Promise.all(waits);
  assert.deepEqual(got, [10, "gone", "timeout", 11]);
  const late = q.wait({ waitMs: 60_000, onTimeout: () => new Error("x") });
  q.rejectAll(new Error("closed"));
  await assert.rejects(late, /closed/);
  assert.equal(q.length, 0);
});
