// Manager.call deadlines on one shared timer (issue 12): each call still
// fails at its own deadline, in deadline order whatever the start order, a
// hung call keeps the process waiting until its deadline, and calls that
// end in time leave no timer behind (Deno's sanitizers check each test).
import assert from "node:assert/strict";
import {
  encodeJson,
  Manager,
  type Plugin,
  PluginTimeoutError,
} from "../mod.ts";

/** A plugin whose `hang` never answers and whose `echo` answers at once. */
function hanging(): Plugin & { signals: AbortSignal[] } {
  const signals: AbortSignal[] = [];
  return {
    signals,
    gkRegister: () => ({ name: "slow", version: "1.0.0" }),
    init: () => Promise.resolve(),
    call: (fn, args, ctx) => {
      if (fn === "echo") return Promise.resolve(args);
      signals.push(ctx.signal);
      return new Promise(() => {});
    },
    shutdown: () => Promise.resolve(),
  };
}

Deno.test("Manager.call() fails each call at its own deadline, in deadline order", async () => {
  const plugin = hanging();
  const manager = new Manager({ shutdownGraceMs: 0 });
  await manager.register(plugin);
  const order: number[] = [];
  // Started longest first: a shared timer armed at the first deadline must
  // be moved earlier for the later, shorter calls.
  const calls = [300, 200, 100].map((timeoutMs) =>
    manager.call("slow", "hang", null, { timeoutMs }).then(
      () => assert.fail("a hung call answered"),
      (e) => {
        assert.ok(e instanceof PluginTimeoutError);
        assert.match(e.message, new RegExp(`${timeoutMs} ?ms`));
        order.push(timeoutMs);
      },
    )
  );
  await Promise.all(calls);
  assert.deepEqual(order, [100, 200, 300]);
  // Each plugin saw its own context aborted with the timeout.
  assert.equal(plugin.signals.length, 3);
  for (const s of plugin.signals) {
    assert.ok(s.aborted);
    assert.ok(s.reason instanceof PluginTimeoutError);
  }
  assert.equal(manager.status("slow")?.inFlight, 0);
  await manager.shutdownAll();
});

Deno.test("Manager.call() times out a hung call after thousands of calls ended in time", async () => {
  const manager = new Manager({ shutdownGraceMs: 0 });
  await manager.register(hanging());
  const args = encodeJson({ n: 1 });
  // The shared timer stays armed at the first call's (long) deadline while
  // these come and go; none of them may expire or leave anything pending.
  for (let i = 0; i < 5000; i++) {
    assert.deepEqual(
      await manager.call("slow", "echo", args, { timeoutMs: 60_000 }),
      args,
    );
  }
  // Nothing else keeps the event loop alive here: the hung call's deadline
  // must (else Deno ends the test with its promise pending).
  await assert.rejects(
    manager.call("slow", "hang", null, { timeoutMs: 50 }),
    PluginTimeoutError,
  );
  // Calls still work after an expiry, and a parent's shorter deadline wins.
  assert.deepEqual(await manager.call("slow", "echo", args), args);
  const parent = {
    chain: ["caller"],
    deadline: Date.now() + 40,
    signal: new AbortController().signal,
  };
  await assert.rejects(
    manager.callFrom("caller", "slow", "hang", null, {
      parent,
      timeoutMs: 60_000,
    }),
    PluginTimeoutError,
  );
  assert.equal(manager.status("slow")?.inFlight, 0);
  await manager.shutdownAll();
});
