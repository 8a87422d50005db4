/**
 * Idle release of WASM plugin workers (`idleTimeoutMs`): an idle instance's
 * worker is shut down, the next call starts a new one from the cached
 * module and answers correctly, and a call in progress is never disturbed.
 * Real hello-c fixture, real workers; every wait is bounded.
 */

import assert from "node:assert/strict";
import { Manager } from "../host/manager.ts";
import type { Row } from "../host/model/host_api.ts";
import type { CallContext } from "../host/model/plugin.ts";
import { MemoryHostAPI } from "../host/testing/mod.ts";
import { loadWasmPlugin, type WasmPlugin } from "../runtimes/wasm/mod.ts";

const enc = new TextEncoder();
const dec = new TextDecoder();
const HELLO_C =
  new URL("../fixtures/plugins/hello-c/plugin.wasm", import.meta.url)
    .pathname;

/** A host whose `dbQuery` waits until the test opens its gate. */
class GatedHost extends MemoryHostAPI {
  #open: (() => void) | undefined;
  #gate: Promise<void> | undefined;
  /** Resolves once a `dbQuery` is waiting at the gate. */
  entered: Promise<void>;
  #entered!: () => void;

  constructor() {
    super({ query: () => [{ gated: 1 }] });
    this.entered = new Promise((r) => this.#entered = r);
    this.#gate = new Promise((r) => this.#open = r);
  }

  open(): void {
    this.#open?.();
  }

  override async dbQuery(
    ctx: CallContext,
    query: string,
    args?: unknown[],
  ): Promise<Row[]> {
    this.#entered();
    await this.#gate;
    return await super.dbQuery(ctx, query, args);
  }
}

async function setup(
  options: Parameters<typeof loadWasmPlugin>[1],
  host = new MemoryHostAPI(),
): Promise<{ manager: Manager; plugin: WasmPlugin }> {
  const manager = new Manager({ host });
  const plugin = await loadWasmPlugin(HELLO_C, options);
  await manager.register(plugin);
  return { manager, plugin };
}

async function hello(manager: Manager, name: string): Promise<unknown> {
  const out = await manager.call(
    "hello-c",
    "hello",
    enc.encode(JSON.stringify({ name })),
    { timeoutMs: 10_000 },
  );
  return JSON.parse(dec.decode(out!));
}

/** Waits until `check()` holds, polling; fails after `ms`. */
async function eventually(
  what: string,
  check: () => boolean,
  ms = 5_000,
): Promise<void> {
  const end = Date.now() + ms;
  while (!check()) {
    if (Date.now() > end) assert.fail(`not within ${ms} ms: ${what}`);
    await new Promise((r) => setTimeout(r, 10));
  }
}

const delay = (ms: number) => new Promise((r) => setTimeout(r, ms));

Deno.test("idle worker is released and the next call starts a new one", async () => {
  const { manager, plugin } = await setup({ idleTimeoutMs: 100 });
  try {
    assert.equal(plugin.instanceCount, 1);
    assert.deepEqual(await hello(manager, "A"), {
      message: "Hello from C, A!",
      runtime: "c-wasm",
    });
    await eventually("worker released", () => plugin.instanceCount === 0);
    assert.equal(plugin.releasedWorkers, 1);
    // Transparent: the next call answers, from a fresh worker.
    assert.deepEqual(await hello(manager, "B"), {
      message: "Hello from C, B!",
      runtime: "c-wasm",
    });
    assert.equal(plugin.instanceCount, 1);
    // And it is released again once idle.
    await eventually("released again", () => plugin.instanceCount === 0);
    assert.equal(plugin.releasedWorkers, 2);
    assert.equal(plugin.killedWorkers, 0);
  } finally {
    await manager.shutdownAll();
  }
});

Deno.test("calls arriving together after a release are all served", async () => {
  for (const instances of [1, 2]) {
    const { manager, plugin } = await setup({ idleTimeoutMs: 100, instances });
    try {
      await eventually("workers released", () => plugin.instanceCount === 0);
      const names = Array.from({ length: 8 }, (_, i) => `N${i}`);
      const answers = await Promise.all(names.map((n) => hello(manager, n)));
      assert.deepEqual(
        answers,
        names.map((n) => ({
          message: `Hello from C, ${n}!`,
          runtime: "c-wasm",
        })),
      );
      assert.ok(plugin.instanceCount >= 1 && plugin.instanceCount <= instances);
      assert.equal(plugin.overloadCount, 0);
    } finally {
      await manager.shutdownAll();
    }
  }
});

Deno.test("a call in progress when the idle timer fires is not disturbed", async () => {
  const host = new GatedHost();
  const { manager, plugin } = await setup({ idleTimeoutMs: 50 }, host);
  try {
    // `test` makes host calls; the first (db_query) waits at the gate.
    const running = manager.call("hello-c", "test", null, {
      timeoutMs: 20_000,
    });
    await host.entered;
    // Several idle periods pass while the call holds the instance.
    await delay(400);
    assert.equal(plugin.instanceCount, 1);
    assert.equal(plugin.releasedWorkers, 0);
    host.open();
    const out = JSON.parse(dec.decode((await running)!));
    // The guest got the host's answer across the idle periods.
    assert.deepEqual(out.results.db_query, [{ gated: 1 }]);
    assert.equal(plugin.releasedWorkers, 0);
    assert.equal(plugin.killedWorkers, 0);
    // Idle afterwards: released, and still answering.
    await eventually("worker released", () => plugin.instanceCount === 0);
    assert.deepEqual(await hello(manager, "C"), {
      message: "Hello from C, C!",
      runtime: "c-wasm",
    });
  } finally {
    host.open();
    await manager.shutdownAll();
  }
});

Deno.test("idleTimeoutMs 0 or Infinity keeps the worker", async () => {
  for (const idleTimeoutMs of [0, Infinity]) {
    const { manager, plugin } = await setup({ idleTimeoutMs });
    try {
      assert.deepEqual(await hello(manager, "K"), {
        message: "Hello from C, K!",
        runtime: "c-wasm",
      });
      await delay(300);
      assert.equal(plugin.instanceCount, 1);
      assert.equal(plugin.releasedWorkers, 0);
    } finally {
      await manager.shutdownAll();
    }
  }
});

Deno.test("shutdown with a released worker and a pending idle timer is clean", async () => {
  const { manager, plugin } = await setup({ idleTimeoutMs: 100 });
  await eventually("worker released", () => plugin.instanceCount === 0);
  await hello(manager, "D"); // re-arms the idle timer
  await manager.shutdownAll();
  assert.equal(plugin.instanceCount, 0);
  await assert.rejects(
    plugin.call("hello", null, {
      caller: "",
      chain: [],
      deadline: Date.now() + 1000,
      signal: new AbortController().signal,
    }),
    /shut down/,
  );
});

Deno.test("a release primes one shared spare worker: the next start takes it, a new one is made, and the last shutdown ends them", async () => {
  const { spareWorkers } = await import("../runtimes/wasm/spare_workers.ts");
  assert.equal(spareWorkers.size, 0, "no spare before any release");
  const { manager, plugin } = await setup({ idleTimeoutMs: 100 });
  try {
    await hello(manager, "A");
    await eventually("worker released", () => plugin.instanceCount === 0);
    await eventually("a spare is ready", () => spareWorkers.size === 1);
    // The restart takes the spare (it skips the worker's bootstrap) ...
    assert.deepEqual(await hello(manager, "B"), {
      message: "Hello from C, B!",
      runtime: "c-wasm",
    });
    assert.equal(plugin.instanceCount, 1);
    // ... and the pool makes another one in the background.
    await eventually("the spare is replaced", () => spareWorkers.size === 1);
  } finally {
    await manager.shutdownAll();
  }
  assert.equal(spareWorkers.size, 0, "the last shutdown ends the spares");
});
