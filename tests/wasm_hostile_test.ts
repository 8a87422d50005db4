/**
 * The WASM runtime against hostile plugins (`fixtures/hostile/*`): each is
 * contained with the right typed error, the host keeps serving other plugins
 * during and after, no thread keeps spinning after a timeout, and nothing
 * outside the preopen is read or written.
 *
 * Run: `deno test -A tests/wasm_hostile_test.ts`
 *
 * @module
 */

import assert from "node:assert/strict";
import { Manager } from "../host/manager.ts";
import { LogBuffer } from "../host/log_buffer.ts";
import type { HostAPI } from "../host/model/host_api.ts";
import { createCallContext } from "../host/model/plugin.ts";
import {
  PluginCrashedError,
  PluginDisabledError,
  PluginTimeoutError,
} from "../host/model/errors.ts";
import {
  loadWasmPlugin,
  WasmLoadError,
  type WasmPluginOptions,
} from "../runtimes/wasm/mod.ts";

const enc = new TextEncoder();
const dec = new TextDecoder();
const HOSTILE = new URL("../fixtures/hostile/", import.meta.url);
const PLUGINS = new URL("../fixtures/plugins/", import.meta.url);
const hostile = (x: string) => new URL(`${x}/plugin.wasm`, HOSTILE).pathname;
const good = (x: string) => new URL(`${x}/plugin.wasm`, PLUGINS).pathname;

/** A Manager with its default BasicHostAPI (logs, translations, plugin calls). */
function newManager(): Manager {
  return new Manager({ logs: new LogBuffer({ capacity: 5000 }) });
}

async function call(
  manager: Manager,
  plugin: string,
  fn: string,
  args: string | null = null,
  timeoutMs = 10_000,
): Promise<string | null> {
  const out = await manager.call(
    plugin,
    fn,
    args === null ? null : enc.encode(args),
    { timeoutMs },
  );
  return out === null ? null : dec.decode(out);
}

Deno.test("a looping guest stalls nothing: another plugin answers 100 calls meanwhile, and the guest stops when its call is abandoned", async () => {
  const manager = newManager();
  try {
    await manager.register(
      await loadWasmPlugin(hostile("loop"), { graceMs: 10_000 }),
    );
    await manager.register(
      await loadWasmPlugin(hostile("tailcall"), { graceMs: 10_000 }),
    );
    await manager.register(await loadWasmPlugin(good("wat-edge")));
    for (
      const [plugin, fn] of [
        ["hostile-loop", "loop"],
        ["hostile-loop", "tight"],
        ["hostile-loop", "calls"],
        ["hostile-tailcall", "spin"],
      ]
    ) {
      let looping = true;
      // A long deadline, ended by the caller's signal once the other plugin
      // has answered (so a slow, loaded machine cannot end it early).
      const stop = new AbortController();
      const stuck = manager.call(plugin!, fn!, null, {
        timeoutMs: 60_000,
        signal: stop.signal,
      })
        .finally(() => looping = false);
      stuck.catch(() => {});
      // While the guest loops in its worker, the host serves other plugins.
      for (let i = 0; i < 100; i++) {
        assert.equal(
          await call(manager, "wat-edge", "echo", `{"i":${i}}`),
          `{"i":${i}}`,
        );
      }
      assert.equal(
        looping,
        true,
        `${plugin}.${fn}: the 100 calls finished while it loops`,
      );
      const t0 = Date.now();
      stop.abort(new Error("caller gave up"));
      await assert.rejects(stuck, /caller gave up/);
      // The guest stops itself at once; the same worker answers again.
      assert.equal(await call(manager, plugin!, "ok"), '{"ok":true}');
      assert.ok(
        Date.now() - t0 < 5000,
        `${plugin}.${fn} took ${Date.now() - t0} ms to stop`,
      );
    }
  } finally {
    await manager.shutdownAll();
  }
});

Deno.test("guests that never finish loading are stopped and refused", async () => {
  for (const x of ["loop-init", "loop-start", "loop-register"]) {
    const t0 = Date.now();
    await assert.rejects(
      loadWasmPlugin(hostile(x), { callTimeoutMs: 500, graceMs: 10_000 }),
      (e: Error) =>
        e instanceof WasmLoadError && /interrupt|deadline/i.test(e.message),
      x,
    );
    // Deadline 0.5 s + worker start; far below the 10 s grace period.
    assert.ok(Date.now() - t0 < 9_000, `${x} took ${Date.now() - t0} ms`);
  }
});

Deno.test("memory is capped: growth fails inside the guest, oversized initial memory is refused", async () => {
  const manager = newManager();
  try {
    await manager.register(
      await loadWasmPlugin(hostile("membomb"), { memoryLimitPages: 64 }),
    );
    assert.equal(
      await call(manager, "hostile-membomb", "grow_max"),
      '{"grow":4294967295}',
    );
    assert.equal(
      await call(manager, "hostile-membomb", "bomb"),
      '{"pages":64}',
    );
    assert.equal(
      await call(manager, "hostile-membomb", "pages"),
      '{"pages":64}',
    );
    assert.match(
      (await call(manager, "hostile-membomb", "malloc_loop"))!,
      /^\{"allocs":\d+\}$/,
    );
    await assert.rejects(
      call(manager, "hostile-membomb", "bomb_forever", null, 500),
      PluginTimeoutError,
    );
    assert.equal(
      await call(manager, "hostile-membomb", "pages"),
      '{"pages":1}',
    );
  } finally {
    await manager.shutdownAll();
  }
  await assert.rejects(
    loadWasmPlugin(hostile("membomb-initial"), { memoryLimitPages: 256 }),
    (e: Error) =>
      e instanceof WasmLoadError && /60000|limit|pages/.test(e.message),
  );
});

Deno.test("traps and stack overflows fail the call with PluginCrashedError; the instance is replaced", async () => {
  const manager = newManager();
  try {
    await manager.register(
      await loadWasmPlugin(hostile("trap"), {
        quarantine: { maxFailures: 100 },
      }),
    );
    await manager.register(
      await loadWasmPlugin(hostile("stackoverflow"), {
        quarantine: { maxFailures: 100 },
      }),
    );
    const traps: Record<string, RegExp> = {
      unreachable: /unreachable/i,
      div0: /divi.*zero/i,
      int_overflow: /overflow|unrepresentable/i,
      oob_load: /out of bounds/i,
      null_indirect: /null|uninitiali|table/i,
      bad_sig: /signature/i,
      nan_trunc: /unrepresentable|float|convert/i,
    };
    for (const [fn, re] of Object.entries(traps)) {
      await assert.rejects(
        call(manager, "hostile-trap", fn),
        (e: Error) => e instanceof PluginCrashedError && re.test(e.message),
        fn,
      );
      assert.equal(await call(manager, "hostile-trap", "ok"), '{"ok":true}');
    }
    for (const fn of ["recurse", "mutual"]) {
      await assert.rejects(
        call(manager, "hostile-stackoverflow", fn),
        (e: Error) =>
          e instanceof PluginCrashedError && /stack/i.test(e.message),
        fn,
      );
      assert.equal(
        await call(manager, "hostile-stackoverflow", "ok"),
        '{"ok":true}',
      );
    }
  } finally {
    await manager.shutdownAll();
  }
  for (const x of ["trap-init", "trap-register", "badptr-register"]) {
    await assert.rejects(loadWasmPlugin(hostile(x)), WasmLoadError, x);
  }
});

Deno.test("bad pointers, huge lengths and failing gk_malloc fail the call cleanly", async () => {
  const manager = newManager();
  try {
    const opts: WasmPluginOptions = {
      maxResultBytes: 4096,
      quarantine: { maxFailures: 100 },
    };
    for (
      const x of [
        "badptr",
        "hugelen",
        "malloc0",
        "malloc-oob",
        "malloc-straddle",
      ]
    ) {
      await manager.register(await loadWasmPlugin(hostile(x), opts));
    }
    for (const fn of ["oob", "straddle", "wrap"]) {
      await assert.rejects(
        call(manager, "hostile-badptr", fn),
        (e: Error) => e instanceof PluginCrashedError && /ABI/.test(e.message),
        fn,
      );
    }
    assert.equal(await call(manager, "hostile-badptr", "null_ptr"), null);
    for (
      const fn of ["host_bad_fn", "host_bad_args", "host_huge_len", "host_wrap"]
    ) {
      assert.equal(await call(manager, "hostile-badptr", fn), '{"host":0}', fn);
    }
    assert.equal(await call(manager, "hostile-badptr", "ok"), '{"ok":true}');
    for (const fn of ["huge", "max"]) {
      await assert.rejects(
        call(manager, "hostile-hugelen", fn),
        (e: Error) =>
          e instanceof PluginCrashedError &&
          /exceeds the limit/.test(e.message),
        fn,
      );
    }
    assert.equal(
      (await call(manager, "hostile-hugelen", "big", "4096"))!.length,
      4096,
    );
    await assert.rejects(
      call(manager, "hostile-hugelen", "big", "4097"),
      PluginCrashedError,
    );
    for (const x of ["malloc0", "malloc-oob", "malloc-straddle"]) {
      await assert.rejects(
        call(manager, `hostile-${x}`, "ok", '{"a":1}'),
        (e: Error) =>
          e instanceof PluginCrashedError &&
          /allocate|out-of-range/.test(e.message),
        x,
      );
    }
  } finally {
    await manager.shutdownAll();
  }
});

Deno.test("proc_exit ends the instance, never the host", async () => {
  const manager = newManager();
  try {
    await manager.register(await loadWasmPlugin(hostile("procexit")));
    await assert.rejects(
      call(manager, "hostile-procexit", "exit"),
      (e: Error) =>
        e instanceof PluginCrashedError && /proc_exit\(7\)/.test(e.message),
    );
    await assert.rejects(
      call(manager, "hostile-procexit", "exit0"),
      (e: Error) =>
        e instanceof PluginCrashedError && /proc_exit\(0\)/.test(e.message),
    );
    assert.equal(await call(manager, "hostile-procexit", "ok"), '{"ok":true}');
  } finally {
    await manager.shutdownAll();
  }
});

Deno.test("re-entrant plugin_call: refused as a cycle (Manager), or served by a second instance, never a deadlock", async () => {
  const manager = newManager();
  try {
    await manager.register(
      await loadWasmPlugin(hostile("reentrant"), { instances: 2 }),
    );
    assert.equal(
      await call(manager, "hostile-reentrant", "self", null, 5000),
      '{"host_call":0}',
    );
    assert.equal(
      await call(manager, "hostile-reentrant", "reenter", null, 5000),
      '{"host_call":0}',
    );
    assert.equal(
      await call(manager, "hostile-reentrant", "leaf"),
      '{"leaf":true}',
    );
  } finally {
    await manager.shutdownAll();
  }
  // Without the Manager's cycle check: a second instance serves one level of
  // re-entry; endless re-entry fails fast once no instance is free.
  const p = await loadWasmPlugin(hostile("reentrant"), { instances: 2 });
  const host = {
    log: () => {},
    callPlugin: (
      ctx: { chain: readonly string[] },
      _plugin: string,
      fn: string,
      args: Uint8Array | null,
    ) =>
      p.call(fn, args, {
        ...createCallContext({ timeoutMs: 5000 }),
        caller: "hostile-reentrant",
        chain: ctx.chain,
      }),
  } as unknown as HostAPI;
  await p.init(host, { name: "hostile-reentrant", quarantine: () => {} });
  try {
    const out = await p.call(
      "self",
      null,
      createCallContext({ timeoutMs: 5000 }),
    );
    assert.equal(dec.decode(out!), '{"leaf":true}');
    const re = await p.call(
      "reenter",
      null,
      createCallContext({ timeoutMs: 5000 }),
    );
    assert.equal(dec.decode(re!), '{"host_call":0}');
  } finally {
    await p.shutdown();
  }
});

Deno.test("passwd: nothing outside the preopen is read or written (worker has only the preopen's permissions)", async () => {
  const root = await Deno.makeTempDir({ prefix: "gk-hostile-" });
  const data = `${root}/data`;
  await Deno.mkdir(`${data}/sub`, { recursive: true });
  await Deno.writeTextFile(`${data}/hello.txt`, "hello from the preopen\n");
  await Deno.symlink("/etc", `${data}/escape`);
  await Deno.symlink("/etc/passwd", `${data}/passwd-link`);
  const manager = newManager();
  try {
    await manager.register(
      await loadWasmPlugin(hostile("passwd"), {
        wasi: { preopens: [{ guestPath: "/data", hostPath: data }] },
      }),
    );
    const out = JSON.parse(
      (await call(manager, "hostile-passwd", "attempts"))!,
    ) as {
      preopen: { name: string } | null;
      results: {
        op: string;
        path: string;
        errno: number;
        data: string | null;
      }[];
    };
    assert.equal(out.preopen?.name, "/data");
    const [c1, c2, c3, ...escapes] = out.results;
    for (const c of [c1!, c2!, c3!]) {
      assert.equal(c.errno, 0, `control ${c.op} ${c.path}`);
      assert.equal(c.data, "hello from the preopen\n");
    }
    for (const r of escapes) {
      assert.ok(
        !r.data || !/root:/.test(r.data),
        `${r.op} ${r.path} read ${r.data}`,
      );
      if (r.op !== "path_symlink") {
        assert.notEqual(r.errno, 0, `${r.op} ${r.path} succeeded`);
      }
    }
    for (
      const name of [
        "gk-hostile-escape.txt",
        "gk-hostile-escape-dir",
        "gk-hostile-moved.txt",
      ]
    ) {
      await assert.rejects(
        Deno.lstat(`${root}/${name}`),
        Deno.errors.NotFound,
        name,
      );
    }
    assert.equal(
      await Deno.readTextFile(`${data}/hello.txt`),
      "hello from the preopen\n",
    );
  } finally {
    await manager.shutdownAll();
    await Deno.remove(root, { recursive: true });
  }
  // Without preopens the worker has no permission at all.
  const bare = await loadWasmPlugin(hostile("passwd"));
  await bare.init({ log: () => {} } as unknown as HostAPI, {
    name: "hostile-passwd",
    quarantine: () => {},
  });
  try {
    const out = dec.decode(
      (await bare.call(
        "read",
        enc.encode("/etc/passwd"),
        createCallContext(),
      ))!,
    );
    assert.doesNotMatch(out, /root:/);
    assert.match(out, /"errno":[1-9]/);
  } finally {
    await bare.shutdown();
  }
});

Deno.test("stdout floods are line-capped per call; a forever-printing guest is interrupted", async () => {
  const logs: { level: string; message: string }[] = [];
  const p = await loadWasmPlugin(hostile("stdoutflood"), {
    maxLogLinesPerCall: 100,
  });
  await p.init(
    {
      log: (_c: unknown, level: string, message: string) =>
        logs.push({ level, message }),
    } as unknown as HostAPI,
    {
      name: "hostile-stdoutflood",
      quarantine: () => {},
    },
  );
  try {
    const out = await p.call("flood", enc.encode("20000"), createCallContext());
    assert.equal(dec.decode(out!), '{"lines":20000}');
    assert.ok(logs.length <= 101, `${logs.length} log lines`);
    assert.match(
      logs.at(-1)!.message,
      /19900 further log lines of this call dropped/,
    );
    logs.length = 0;
    await p.call("flood_stderr", enc.encode("3"), createCallContext());
    assert.deepEqual(logs.map((l) => l.level), ["warn", "warn", "warn"]);
    logs.length = 0;
    const long = await p.call(
      "longline",
      enc.encode("1000000"),
      createCallContext(),
    );
    assert.equal(dec.decode(long!), '{"bytes":1000000}');
    assert.ok(logs.every((l) => l.message.length <= 16 * 1024));
    await assert.rejects(
      p.call("forever", null, createCallContext({ timeoutMs: 500 })),
      PluginTimeoutError,
    );
    assert.equal(
      dec.decode((await p.call("ok", null, createCallContext()))!),
      '{"ok":true}',
    );
  } finally {
    await p.shutdown();
  }
});

Deno.test("repeated failures quarantine the plugin with a readable reason", async () => {
  const manager = newManager();
  try {
    await manager.register(
      await loadWasmPlugin(hostile("trap"), {
        quarantine: { maxFailures: 3, windowMs: 60_000 },
      }),
    );
    for (let i = 0; i < 3; i++) {
      await assert.rejects(
        call(manager, "hostile-trap", "unreachable"),
        PluginCrashedError,
      );
    }
    // The Manager applies the quarantine asynchronously (it persists it).
    for (let i = 0; i < 100 && manager.status("hostile-trap")?.enabled; i++) {
      await new Promise((r) => setTimeout(r, 50));
    }
    const status = manager.status("hostile-trap");
    assert.equal(status?.enabled, false);
    assert.match(status?.reason ?? "", /3 failures/);
    await assert.rejects(
      call(manager, "hostile-trap", "ok"),
      PluginDisabledError,
    );
  } finally {
    await manager.shutdownAll();
  }
});

Deno.test("a guest that ignores its deadline (uninstrumented) is terminated, replaced and quarantined as a defect", async () => {
  // Runs in a child process: Worker.terminate() cannot stop a spinning thread
  // on this Deno, so the spinning thread must die with its process.
  const code = `
    import { loadWasmPlugin } from ${
    JSON.stringify(new URL("../runtimes/wasm/mod.ts", import.meta.url).href)
  };
    import { createCallContext } from ${
    JSON.stringify(new URL("../host/model/plugin.ts", import.meta.url).href)
  };
    const p = await loadWasmPlugin(${
    JSON.stringify(hostile("loop"))
  }, { instrument: false, graceMs: 300 });
    const logs = []; const quarantined = [];
    await p.init({ log: (_c, l, m) => logs.push([l, m]) }, { name: "hostile-loop", quarantine: (r) => quarantined.push(r) });
    let error = "";
    try { await p.call("tight", null, createCallContext({ timeoutMs: 300 })); } catch (e) { error = e.name; }
    const ok = new TextDecoder().decode(await p.call("ok", null, createCallContext()));
    console.log(JSON.stringify({ error, ok, killed: p.killedWorkers, quarantined: quarantined.length, defect: logs.some(([l, m]) => l === "error" && m.startsWith("defect:")) }));
    Deno.exit(0);
  `;
  assert.deepEqual(
    await runChild(code),
    {
      error: "PluginTimeoutError",
      ok: '{"ok":true}',
      killed: 1,
      quarantined: 1,
      defect: true,
    },
  );
});

/** Runs `code` (a module body) in a child Deno process; returns its last stdout line as JSON. */
async function runChild(code: string): Promise<unknown> {
  const out = await new Deno.Command(Deno.execPath(), {
    args: [
      "eval",
      "--config",
      new URL("../deno.json", import.meta.url).pathname,
      code,
    ],
    stdout: "piped",
    stderr: "piped",
    stdin: "null",
  }).output();
  assert.equal(out.code, 0, dec.decode(out.stderr));
  return JSON.parse(dec.decode(out.stdout).trim().split("\n").at(-1)!);
}

Deno.test("call-graph cycles without loops (a table, tail calls, the host re-entering gk_malloc) stop themselves at the deadline", async () => {
  const p = await loadWasmPlugin(hostile("cycles"), {
    graceMs: 10_000,
    // Four deliberate overruns in a row: keep the plugin out of quarantine.
    quarantine: { maxOverruns: 1000 },
  });
  let translations = 0;
  const host = {
    log: () => {},
    translate: (_ctx: unknown, key: string) => {
      translations++;
      return Promise.resolve(key);
    },
  } as unknown as HostAPI;
  const quarantined: unknown[] = [];
  await p.init(host, {
    name: "hostile-cycles",
    quarantine: (r: unknown) => quarantined.push(r),
  });
  try {
    for (
      const fn of ["indirect", "tail_indirect", "tail_threaded", "reenter"]
    ) {
      const t0 = Date.now();
      await assert.rejects(
        p.call(fn, null, createCallContext({ timeoutMs: 500 })),
        PluginTimeoutError,
        fn,
      );
      // Far below the 10 s grace period: the guest stopped at a check of
      // its own, not by the worker being terminated.
      assert.ok(Date.now() - t0 < 5000, `${fn} took ${Date.now() - t0} ms`);
      const ok = await p.call("ok", null, createCallContext());
      assert.equal(dec.decode(ok!), '{"ok":true}', fn);
    }
    // The re-entry really went through the host, many times.
    assert.ok(translations > 10, `${translations} host calls`);
    assert.equal(p.killedWorkers, 0);
    assert.deepEqual(quarantined, []);
  } finally {
    await p.shutdown();
  }
});

Deno.test("after timeouts no thread keeps spinning (per-thread CPU time from /proc/self/task/*/stat)", async () => {
  // In a child process, so that only this scenario's threads are measured
  // (deno test --parallel runs other test files in this process).
  const mod = (p: string) => JSON.stringify(new URL(p, import.meta.url).href);
  const result = await runChild(`
    import { loadWasmPlugin } from ${mod("../runtimes/wasm/mod.ts")};
    import { createCallContext } from ${mod("../host/model/plugin.ts")};
    import { maxThreadTicks } from ${mod("./helpers/thread_ticks.ts")};
    const fixture = (x) => ${
    JSON.stringify(HOSTILE.pathname)
  } + x + "/plugin.wasm";
    const errors = [];
    const host = { log: () => {} };
    const env = { name: "x", quarantine: () => {} };
    const run = async (x, fn, opts = {}) => {
      const p = await loadWasmPlugin(fixture(x), { graceMs: 10000, ...opts });
      await p.init(host, env);
      try { await p.call(fn, null, createCallContext({ timeoutMs: 300 })); errors.push("none"); }
      catch (e) { errors.push(e.name); }
      await p.shutdown();
    };
    await run("loop", "loop");
    await run("loop", "tight");
    await run("loop", "calls");
    await run("tailcall", "spin");
    await run("membomb", "bomb_forever", { memoryLimitPages: 32 });
    await run("stdoutflood", "forever");
    {
      // Shutdown while a guest loops: interrupted first, then terminated.
      const p = await loadWasmPlugin(fixture("loop"), { graceMs: 10000 });
      await p.init(host, env);
      const c = p.call("tight", null, createCallContext({ timeoutMs: 60000 }));
      c.catch(() => {});
      await new Promise((r) => setTimeout(r, 200));
      await p.shutdown();
      try { await c; errors.push("none"); } catch (e) { errors.push(e.name); }
    }
    for (const x of ["loop-init", "loop-start", "loop-register"]) {
      try { await loadWasmPlugin(fixture(x), { callTimeoutMs: 300, graceMs: 10000 }); errors.push("loaded"); }
      catch (e) { errors.push(e.name); }
    }
    const maxTicks = await maxThreadTicks();
    console.log(JSON.stringify({ errors, maxTicks }));
    Deno.exit(0);
  `) as { errors: string[]; maxTicks: number };
  assert.deepEqual(result.errors, [
    "PluginTimeoutError",
    "PluginTimeoutError",
    "PluginTimeoutError",
    "PluginTimeoutError",
    "PluginTimeoutError",
    "PluginTimeoutError",
    "PluginCrashedError",
    "WasmLoadError",
    "WasmLoadError",
    "WasmLoadError",
  ]);
  // A spinning thread gets at least ~15 % of a core even on this loaded
  // 2-core box (30+ ticks in 2 s); an idle one gets ~0.
  assert.ok(
    result.maxTicks < 10,
    `a thread used ${result.maxTicks} ticks (1/100 s) in 2 s: still spinning`,
  );
});

Deno.test("instrumented and original hostile modules give the same answers and errors", async () => {
  const cases: Record<string, [string, string | null][]> = {
    trap: [
      "unreachable",
      "div0",
      "int_overflow",
      "oob_load",
      "null_indirect",
      "bad_sig",
      "nan_trunc",
      "ok",
      "x",
    ]
      .map((f) => [f, null]),
    badptr: [
      "oob",
      "straddle",
      "wrap",
      "null_ptr",
      "host_bad_fn",
      "host_bad_args",
      "host_huge_len",
      "host_wrap",
      "ok",
    ]
      .map((f) => [f, null]),
    hugelen: [["huge", null], ["max", null], ["big", "100"], ["ok", null]],
    procexit: [["exit", null], ["ok", null]],
    stackoverflow: [["recurse", null], ["ok", null]],
    malloc0: [["ok", "{}"]],
    "malloc-oob": [["ok", "{}"]],
    stdoutflood: [["flood", "10"], ["ok", null]],
    reentrant: [["leaf", null], ["self", null]],
  };
  const outcomes = async (instrument: boolean) => {
    const manager = newManager();
    const seen: string[] = [];
    try {
      for (const [x, calls] of Object.entries(cases)) {
        await manager.register(
          await loadWasmPlugin(hostile(x), {
            instrument,
            quarantine: { maxFailures: 1000 },
          }),
        );
        for (const [fn, args] of calls) {
          try {
            seen.push(
              `${x}.${fn} = ${await call(manager, `hostile-${x}`, fn, args)}`,
            );
          } catch (e) {
            seen.push(`${x}.${fn} ! ${(e as Error).name}`);
          }
        }
      }
    } finally {
      await manager.shutdownAll();
    }
    return seen;
  };
  const instrumented = await outcomes(true);
  assert.deepEqual(instrumented, await outcomes(false));
  assert.ok(instrumented.includes("trap.div0 ! PluginCrashedError"));
});
