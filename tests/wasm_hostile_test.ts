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
import type { HostAPI } from "../host/host_api.ts";
import { createCallContext } from "../host/plugin.ts";
import {
  PluginCrashedError,
  PluginDisabledError,
  PluginTimeoutError,
} from "../host/errors.ts";
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

/** CPU time (user + system) of this process, in clock ticks (1/100 s). */
function cpuTicks(): number {
  const stat = Deno.readTextFileSync("/proc/self/stat");
  const fields = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
  return Number(fields[11]) + Number(fields[12]);
}

/** CPU ticks of each thread of this process. */
function threadTicks(): Map<string, number> {
  const out = new Map<string, number>();
  for (const e of Deno.readDirSync("/proc/self/task")) {
    try {
      const stat = Deno.readTextFileSync(`/proc/self/task/${e.name}/stat`);
      const f = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
      out.set(e.name, Number(f[11]) + Number(f[12]));
    } catch { /* thread ended */ }
  }
  return out;
}

/** Asserts that no thread of this process burns CPU over one second. */
async function assertNoSpinningThread(): Promise<void> {
  await new Promise((r) => setTimeout(r, 300));
  const t0 = threadTicks();
  const p0 = cpuTicks();
  await new Promise((r) => setTimeout(r, 1000));
  const t1 = threadTicks();
  const p1 = cpuTicks();
  for (const [tid, ticks] of t1) {
    const before = t0.get(tid) ?? ticks;
    assert.ok(
      ticks - before < 50,
      `thread ${tid} used ${ticks - before} ticks in 1 s: still spinning`,
    );
  }
  assert.ok(p1 - p0 < 70, `process used ${p1 - p0} ticks in 1 s`);
}

Deno.test("infinite loops are interrupted at the deadline while another plugin answers 100 calls; no thread keeps spinning", async () => {
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
      const stuck = call(manager, plugin!, fn!, null, 1500).finally(() =>
        looping = false
      );
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
      await assert.rejects(stuck, PluginTimeoutError);
      // The same worker answers again with a fresh instance.
      assert.equal(await call(manager, plugin!, "ok"), '{"ok":true}');
    }
    await assertNoSpinningThread();
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
    assert.ok(Date.now() - t0 < 10_000, `${x} took ${Date.now() - t0} ms`);
  }
  await assertNoSpinningThread();
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
    await new Promise((r) => setTimeout(r, 50));
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
    JSON.stringify(new URL("../host/plugin.ts", import.meta.url).href)
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
  assert.deepEqual(
    JSON.parse(dec.decode(out.stdout).trim().split("\n").at(-1)!),
    {
      error: "PluginTimeoutError",
      ok: '{"ok":true}',
      killed: 1,
      quarantined: 1,
      defect: true,
    },
  );
});
