/**
 * The Extism-ABI runtime (`runtimes/extism/`) through `loadExtismPlugin` and
 * a real {@linkcode Manager} whose HostAPI is the guarded one in front of
 * real services: a {@linkcode ConfigStore}, the SSRF-guarded egress client
 * and an HTTP server on 127.0.0.1 (port 0) granted explicitly as
 * `http:127.0.0.1:<port>`, and a {@linkcode LogBuffer}.
 *
 * The plugins are the hand-written WAT fixtures in `fixtures/extism/wat/`
 * (together they use every kernel and host function): echo and kernel
 * round trips, errors (`error_set`, non-zero returns), `config_get`, vars
 * (a counter, the size cap), every log level and `get_log_level`, HTTP
 * (body, status, headers, a refusal), user host functions (string, JSON,
 * i64/i32/f64, bytes; async handlers), lifecycle (`_initialize` then
 * `hs_init`, `_start` as the call, `proc_exit(0)` keeping the output,
 * `proc_exit(3)` carrying its code), a module importing everything, and
 * hostile ones (runaway loop, kernel allocation bomb, guest memory bomb,
 * bad kernel offsets), then that no thread keeps spinning afterwards.
 *
 * Run: `deno test -A tests/extism_runtime_test.ts`
 *
 * @module
 */

import assert from "node:assert/strict";
import { Manager } from "../host/manager.ts";
import type { HostAPI } from "../host/model/host_api.ts";
import { createCallContext } from "../host/model/plugin.ts";
import { PermissionDeniedError } from "../host/model/errors.ts";
import { serveHostCall } from "../runtimes/wasm/host_calls.ts";
import { loadWasmPlugin } from "../runtimes/wasm/mod.ts";
import { ExtismKernel, ExtismKernelError } from "../runtimes/extism/kernel.ts";
import { LogBuffer } from "../host/log_buffer.ts";
import { ConfigStore } from "../host/services/config.ts";
import {
  checkPermissions,
  createEgressClient,
  type GuardedHostAPI,
  guardedHostFactory,
  MemoryGrantStore,
} from "../permissions/mod.ts";
import {
  PluginCrashedError,
  PluginTimeoutError,
} from "../host/model/errors.ts";
import {
  ExtismCallError,
  ExtismExitError,
  type ExtismHostFunction,
  type ExtismPluginOptions,
  isExtismModule,
  loadExtismPlugin,
  MemoryVarStore,
  WasmLoadError,
} from "../runtimes/extism/mod.ts";

const WAT = new URL("../fixtures/extism/wat/", import.meta.url).pathname;
const fixture = (name: string) => `${WAT}${name}/plugin.wasm`;
const enc = new TextEncoder();
const dec = new TextDecoder();

interface Env {
  manager: Manager;
  logs: LogBuffer;
  grants: MemoryGrantStore;
  port: number;
  /** Loads and registers a fixture as plugin `name`. */
  load(
    fx: string,
    name: string,
    options?: Partial<ExtismPluginOptions>,
    permissions?: string[],
  ): Promise<void>;
  call(name: string, fn: string, input?: string | null): Promise<string | null>;
  raw(
    name: string,
    fn: string,
    input?: string | null,
  ): Promise<Uint8Array | null>;
  close(): Promise<void>;
}

function setup(): Env {
  const ac = new AbortController();
  const server = Deno.serve({
    hostname: "127.0.0.1",
    port: 0,
    signal: ac.signal,
    onListen: () => {},
  }, async (req) => {
    const u = new URL(req.url);
    const body = await req.text();
    return new Response(
      `${req.method} ${u.pathname} ${req.headers.get("x-who") ?? ""}${body}`,
      { status: 201, headers: { "x-test": "yes" } },
    );
  });
  const port = (server.addr as Deno.NetAddr).port;
  const logs = new LogBuffer({ capacity: 5000 });
  const grants = new MemoryGrantStore();
  const config = new ConfigStore({
    values: { "app.name": "GoatKit", "other.key": "hidden" },
    plugins: { "ex-basic": { greeting: "hello own" } },
  });
  const hosts: GuardedHostAPI[] = [];
  const factory = guardedHostFactory({
    grants,
    services: { config, http: createEgressClient() },
    logs,
  });
  const manager = new Manager({
    logs,
    manifestChecks: [checkPermissions],
    host: (name, manifest) => {
      const h = factory(name, manifest);
      hosts.push(h);
      return h;
    },
  });
  const raw = (name: string, fn: string, input?: string | null) =>
    manager.call(
      name,
      fn,
      input === undefined || input === null ? null : enc.encode(input),
      { timeoutMs: 10_000 },
    );
  return {
    manager,
    logs,
    grants,
    port,
    async load(fx, name, options = {}, permissions = []) {
      const p = await loadExtismPlugin(fixture(fx), {
        registration: { name, version: "1.0.0", permissions },
        quarantine: { maxFailures: 1000 },
        ...options,
      });
      await manager.register(p);
      await grants.set(name, permissions);
    },
    raw,
    async call(name, fn, input) {
      const out = await raw(name, fn, input);
      return out === null ? null : dec.decode(out);
    },
    async close() {
      await manager.shutdownAll();
      for (const h of hosts) h.close();
      ac.abort();
      await server.finished;
    },
  };
}

Deno.test("isExtismModule tells Extism plugins from GoatKit ones", async () => {
  const ex = await WebAssembly.compile(await Deno.readFile(fixture("basic")));
  assert.equal(isExtismModule(ex), true);
  const gk = await WebAssembly.compile(
    await Deno.readFile(
      new URL("../fixtures/hostile/cycles/plugin.wasm", import.meta.url),
    ),
  );
  assert.equal(isExtismModule(gk), false);
});

Deno.test("loading an Extism module as a GoatKit plugin says what it is and how to load it", async () => {
  await assert.rejects(
    loadWasmPlugin(fixture("basic")),
    (e: unknown) =>
      e instanceof WasmLoadError &&
      /Extism-ABI module \(it imports extism:host\/env\.[a-z_0-9]+\)/.test(
        e.message,
      ) && /extism\.json beside its manifest\.json/.test(e.message),
  );
});

Deno.test("echo, kernel round trips, no output, errors and gkRegister", async () => {
  const env = setup();
  try {
    await env.load("basic", "ex-basic");
    const text = "hello world, extism! ".repeat(50) + "tail";
    assert.equal(await env.call("ex-basic", "echo", text), text);
    assert.equal(await env.call("ex-basic", "echo", null), "");
    const rt = (await env.raw("ex-basic", "roundtrip", "Zed"))!;
    const facts = new Uint32Array(rt.slice().buffer);
    // length, length_unsafe, length(a+1), load_u64, load_u8, input block,
    // input's first byte through load_u8(input_offset), length after free.
    assert.deepEqual([...facts], [10, 10, 0, 1, 1, 1, "Z".charCodeAt(0), 0]);
    assert.equal(await env.call("ex-basic", "no_output"), null);
    const err = await env.raw("ex-basic", "fail").catch((e) => e);
    assert.ok(err instanceof ExtismCallError, String(err));
    assert.equal(err.code, 1);
    assert.equal(err.guestMessage, "boom from the guest");
    assert.equal(err.plugin, "ex-basic");
    assert.equal(err.function, "fail");
    assert.equal(err.fault, undefined); // a guest's own error, not a crash
    // A trap after error_set (AssemblyScript's abort) carries the message.
    const abort = await env.raw("ex-basic", "trap_after_error").catch((e) => e);
    assert.ok(abort instanceof ExtismCallError, String(abort));
    assert.equal(abort.code, -1);
    assert.equal(abort.guestMessage, "boom from the guest");
    const code = await env.raw("ex-basic", "fail_code").catch((e) => e);
    assert.ok(code instanceof ExtismCallError);
    assert.equal(code.code, 7);
    assert.equal(code.guestMessage, null);
    assert.deepEqual(
      [...(await env.raw("ex-basic", "error_cleared"))!],
      [1, 1],
    );
    assert.deepEqual([...(await env.raw("ex-basic", "reset_all"))!], [1]);
    const missing = await env.raw("ex-basic", "nope").catch((e) => e);
    assert.ok(missing instanceof ExtismCallError);
    assert.match(missing.message, /"nope" does not exist/);
    // Per-call reset: the next call starts with fresh input/output/error.
    assert.equal(await env.call("ex-basic", "echo", "again"), "again");
  } finally {
    await env.close();
  }
});

Deno.test("config_get goes through the guarded HostAPI", async () => {
  const env = setup();
  try {
    await env.load("basic", "ex-basic", {}, ["config:app.*"]);
    assert.equal(await env.call("ex-basic", "config", "greeting"), "hello own");
    assert.equal(await env.call("ex-basic", "config", "app.name"), "GoatKit");
    // Not granted (refused and audited) and absent keys are both 0.
    assert.equal(await env.call("ex-basic", "config", "other.key"), "none");
    assert.equal(await env.call("ex-basic", "config", "app.missing"), "none");
  } finally {
    await env.close();
  }
});

Deno.test("vars: a counter across calls, delete, and the size cap loses nothing", async () => {
  const env = setup();
  try {
    const store = new MemoryVarStore();
    await env.load("basic", "ex-basic", { vars: store, maxVarBytes: 64 });
    const count = async () => {
      const b = (await env.raw("ex-basic", "counter"))!;
      return Number(new DataView(b.slice().buffer).getBigUint64(0, true));
    };
    assert.equal(await count(), 1);
    assert.equal(await count(), 2);
    assert.equal(await count(), 3);
    await env.raw("ex-basic", "counter_reset");
    assert.equal(await count(), 1);
    assert.equal(await env.call("ex-basic", "var_big", "abc"), "abc");
    const over = await env.raw("ex-basic", "var_big", "x".repeat(100))
      .catch((e) => e);
    assert.ok(over instanceof ExtismCallError, String(over));
    assert.equal(over.code, -1);
    assert.equal(over.hostError?.type, "ExtismVarLimitError");
    assert.deepEqual(await store.get("big"), enc.encode("abc"));
    assert.equal(await count(), 2); // the instance and the vars survived
  } finally {
    await env.close();
  }
});

Deno.test("log_* go to the plugin's log filtered by logLevel; get_log_level uses Extism's numbers", async () => {
  const env = setup();
  try {
    await env.load("basic", "ex-trace", { logLevel: "trace" });
    await env.load("basic", "ex-warn", { logLevel: "warn" });
    await env.load("basic", "ex-default");
    assert.deepEqual([...(await env.raw("ex-trace", "logs"))!], [0]);
    assert.deepEqual([...(await env.raw("ex-warn", "logs"))!], [3]);
    assert.deepEqual([...(await env.raw("ex-default", "logs"))!], [2]);
    const lines = (plugin: string) =>
      env.logs.query({ plugin }).map((e) => `${e.level}:${e.message}`)
        .filter((l) => l.endsWith(" line")).reverse(); // newest first
    assert.deepEqual(lines("ex-trace"), [
      "debug:trace line",
      "debug:debug line",
      "info:info line",
      "warn:warn line",
      "error:error line",
    ]);
    assert.deepEqual(lines("ex-warn"), ["warn:warn line", "error:error line"]);
    assert.deepEqual(lines("ex-default"), [
      "info:info line",
      "warn:warn line",
      "error:error line",
    ]);
  } finally {
    await env.close();
  }
});

Deno.test("http_request, http_status_code and http_headers through the guarded egress; a refusal ends the call", async () => {
  const env = setup();
  try {
    const grant = `http:127.0.0.1:${env.port}`;
    await env.load("http", "ex-http", {}, [grant]);
    const req = (method: string, path: string) =>
      JSON.stringify({
        url: `http://127.0.0.1:${env.port}${path}`,
        method,
        headers: { "x-who": "guest;" },
      });
    assert.equal(
      await env.call("ex-http", "fetch", req("GET", "/a")),
      "GET /a guest;",
    );
    assert.equal(
      await env.call("ex-http", "post", req("POST", "/b")),
      "POST /b guest;posted body",
    );
    const st = (await env.raw("ex-http", "status", req("GET", "/c")))!;
    assert.equal(new DataView(st.slice().buffer).getUint32(0, true), 201);
    const headers = JSON.parse(
      (await env.call("ex-http", "headers", req("GET", "/d")))!,
    );
    assert.equal(headers["x-test"], "yes");
    // Without the grant: the guarded HostAPI refuses; the call fails typed.
    await env.grants.set("ex-http", []);
    const denied = await env.raw("ex-http", "fetch", req("GET", "/e"))
      .catch((e) => e);
    assert.ok(denied instanceof ExtismCallError, String(denied));
    assert.equal(denied.code, -1);
    assert.equal(denied.hostError?.type, "PermissionDeniedError");
    assert.equal(denied.hostError?.permission, grant);
    // The denial travels as fields, not as text to parse: the cause names
    // what was refused.
    assert.ok(denied.cause instanceof PermissionDeniedError);
    assert.equal(denied.cause.permission, grant);
    assert.match(
      denied.cause.attempted,
      /^http_request GET http:\/\/127\.0\.0\.1:\d+\/e$/,
    );
    // Loopback under another name is not covered by the grant either.
    await env.grants.set("ex-http", [grant]);
    const other = await env.raw(
      "ex-http",
      "fetch",
      JSON.stringify({ url: `http://localhost:${env.port}/f` }),
    ).catch((e) => e);
    assert.ok(other instanceof ExtismCallError, String(other));
    assert.equal(
      await env.call("ex-http", "fetch", req("GET", "/g")),
      "GET /g guest;",
    );
  } finally {
    await env.close();
  }
});

Deno.test("user host functions: string, JSON, i64/i32/f64 and bytes, async handlers, any namespace", async () => {
  const env = setup();
  const seen: string[] = [];
  const functions: ExtismHostFunction[] = [
    {
      name: "greet",
      params: ["string"],
      results: ["string"],
      handler: (ctx, name) => {
        seen.push(`${ctx.plugin}/${ctx.function}`);
        return `Hello, ${name}!`;
      },
    },
    {
      name: "sum",
      params: ["json"],
      results: ["json"],
      handler: async (_ctx, v) => {
        await new Promise((r) => setTimeout(r, 5));
        const xs = v as number[];
        return { sum: xs.reduce((a, b) => a + b, 0) };
      },
    },
    {
      name: "mix",
      params: ["i64", "i32", "f64"],
      results: ["i64"],
      handler: (_ctx, a, b, c) =>
        (a as bigint) + BigInt(b as number) +
        BigInt(Math.round((c as number) * 10)),
    },
    {
      name: "reverse",
      namespace: "custom",
      params: ["bytes"],
      results: ["bytes"],
      handler: (_ctx, b) => (b as Uint8Array).slice().reverse(),
    },
  ];
  try {
    await env.load("user", "ex-user", { functions });
    assert.equal(await env.call("ex-user", "greet", "Deno"), "Hello, Deno!");
    assert.deepEqual(seen, ["ex-user/greet"]);
    assert.equal(await env.call("ex-user", "sum", "[1,2,39]"), '{"sum":42}');
    const mix = (await env.raw("ex-user", "mix"))!;
    assert.equal(
      new DataView(mix.slice().buffer).getBigInt64(0, true),
      (1n << 40n) - 3n + 5n,
    );
    assert.equal(await env.call("ex-user", "reverse", "abc"), "cba");
    // A handler that throws ends the call with a typed error.
    const failing = functions.map((f) =>
      f.name === "greet"
        ? { ...f, handler: () => Promise.reject(new Error("no greeting")) }
        : f
    );
    await env.load("user", "ex-user-fail", { functions: failing });
    const e = await env.raw("ex-user-fail", "greet", "x").catch((e) => e);
    assert.ok(e instanceof ExtismCallError, String(e));
    assert.equal(e.guestMessage, "no greeting");
    assert.equal(await env.call("ex-user-fail", "sum", "[1]"), '{"sum":1}');
    // A module importing a function nobody registered does not load.
    const missing = await loadExtismPlugin(fixture("user"), {
      registration: { name: "ex-user-missing", version: "1.0.0" },
      functions: functions.slice(0, 3),
    }).catch((e) => e);
    assert.ok(missing instanceof WasmLoadError, String(missing));
    assert.match(missing.message, /custom\.reverse/);
    // One registered with another signature than the module imports.
    const wrong = await loadExtismPlugin(fixture("user"), {
      registration: { name: "ex-user-wrong", version: "1.0.0" },
      functions: functions.map((f) =>
        f.name === "mix" ? { ...f, params: ["i64", "i64", "f64"] } : f
      ),
    }).catch((e) => e);
    assert.ok(wrong instanceof WasmLoadError, String(wrong));
    assert.match(
      wrong.message,
      /extism:host\/user\.mix has the signature \(i64, i32, f64\) -> \(i64\).*\(i64, i64, f64\) -> \(i64\)/,
    );
  } finally {
    await env.close();
  }
});

Deno.test("lifecycle: _initialize then hs_init, _start only by name, proc_exit(0) keeps the output, proc_exit(3) carries its code", async () => {
  const env = setup();
  try {
    await env.load("lifecycle", "ex-life");
    assert.deepEqual([...(await env.raw("ex-life", "order"))!], [1, 2, 0]);
    assert.equal(await env.call("ex-life", "_start"), "started");
    // After the exit the instance was re-instantiated (fresh globals, init
    // and hs_init again, _start never run by the host).
    assert.deepEqual([...(await env.raw("ex-life", "order"))!], [1, 2, 0]);
    const e = await env.raw("ex-life", "exit3").catch((e) => e);
    assert.ok(e instanceof ExtismExitError, String(e));
    assert.equal(e.code, 3);
    assert.equal(e.function, "exit3");
    assert.deepEqual([...(await env.raw("ex-life", "order"))!], [1, 2, 0]);
  } finally {
    await env.close();
  }
});

Deno.test("a module importing every function links; an import we lack traps only when called", async () => {
  const env = setup();
  try {
    await env.load("import-all", "ex-all");
    assert.equal(await env.call("ex-all", "noop"), null);
    const e = await env.raw("ex-all", "call_unknown").catch((e) => e);
    assert.ok(e instanceof PluginCrashedError, String(e));
    assert.match(e.message, /not_a_real_function/);
    assert.equal(await env.call("ex-all", "noop"), null);
  } finally {
    await env.close();
  }
});

Deno.test("hostile: runaway loop, kernel and guest memory bombs, bad offsets; the host and the next call survive", async () => {
  const env = setup();
  try {
    await env.load("hostile", "ex-hostile", { memoryLimitPages: 32 });
    const t0 = Date.now();
    await assert.rejects(
      env.manager.call("ex-hostile", "spin", null, { timeoutMs: 300 }),
      PluginTimeoutError,
    );
    assert.ok(Date.now() - t0 < 5000);
    assert.equal(await env.call("ex-hostile", "ok"), "ok");
    for (
      const [fn, re] of [
        ["kernel_bomb", /Extism kernel memory.*limit of 2097152 bytes/],
        ["kernel_huge", /limit of 2097152 bytes/],
        ["memory_bomb", /unreachable/],
        ["load_far", /load_u64: offset 1099511627776.*outside/],
        ["store_far", /store_u64.*outside/],
        ["store_negative", /store_u8.*outside/],
        ["output_far", /output_set.*outside/],
        ["load_null", /load_u8: offset 0 is outside/],
      ] as const
    ) {
      const e = await env.raw("ex-hostile", fn).catch((e) => e);
      assert.ok(e instanceof PluginCrashedError, `${fn}: ${e}`);
      assert.match(e.message, re, fn);
      assert.equal(await env.call("ex-hostile", "ok"), "ok", fn);
    }
  } finally {
    await env.close();
  }
});

Deno.test("after an Extism runaway no thread keeps spinning (per-thread CPU time from /proc/self/task/*/stat)", async () => {
  // In a child process: only this scenario's threads are measured.
  const mod = (p: string) => JSON.stringify(new URL(p, import.meta.url).href);
  const out = await new Deno.Command(Deno.execPath(), {
    args: [
      "eval",
      "--config",
      new URL("../deno.json", import.meta.url).pathname,
      `
      import { loadExtismPlugin } from ${mod("../runtimes/extism/mod.ts")};
      import { createCallContext } from ${mod("../host/model/plugin.ts")};
      import { maxThreadTicks } from ${mod("./helpers/thread_ticks.ts")};
      const errors = [];
      const p = await loadExtismPlugin(${JSON.stringify(fixture("hostile"))}, {
        registration: { name: "x", version: "1.0.0" }, graceMs: 10000,
        memoryLimitPages: 32,
      });
      await p.init({ log: () => {} }, { name: "x", quarantine: () => {} });
      for (const fn of ["spin", "kernel_bomb", "spin"]) {
        try { await p.call(fn, null, createCallContext({ timeoutMs: 300 })); errors.push("none"); }
        catch (e) { errors.push(e.name); }
      }
      const ok = await p.call("ok", null, createCallContext());
      errors.push(new TextDecoder().decode(ok));
      const maxTicks = await maxThreadTicks();
      console.log(JSON.stringify({ errors, maxTicks, killed: p.killedWorkers }));
      await p.shutdown();
      Deno.exit(0);
      `,
    ],
    stdout: "piped",
    stderr: "piped",
    stdin: "null",
  }).output();
  assert.equal(out.code, 0, dec.decode(out.stderr));
  const result = JSON.parse(
    dec.decode(out.stdout).trim().split("\n").at(-1)!,
  ) as { errors: string[]; maxTicks: number; killed: number };
  assert.deepEqual(result.errors, [
    "PluginTimeoutError",
    "PluginCrashedError",
    "PluginTimeoutError",
    "ok",
  ]);
  assert.equal(result.killed, 0); // stopped by its own fuel checks
  assert.ok(
    result.maxTicks < 10,
    `a thread used ${result.maxTicks} ticks (1/100 s) in 2 s: still spinning`,
  );
});

Deno.test("the kernel reuses freed blocks, answers 0 for non-blocks and caps its size", () => {
  const k = new ExtismKernel(64 * 1024);
  const a = k.alloc(100);
  const b = k.alloc(10);
  assert.ok(a > 0 && b > a);
  assert.equal(k.length(a), 100);
  assert.equal(k.length(a + 1), 0);
  assert.equal(k.length(0), 0);
  k.free(a);
  assert.equal(k.length(a), 0);
  assert.equal(k.alloc(50), a); // first fit in the freed block
  assert.equal(k.length(a), 50);
  assert.equal(k.alloc(0), 0);
  assert.throws(() => k.alloc(1024 * 1024), ExtismKernelError);
  k.reset();
  assert.equal(k.length(a), 0);
  assert.equal(k.output(), null);
});

Deno.test("nothing one call stores in kernel memory, even past its blocks, is visible to the next", () => {
  const k = new ExtismKernel(64 * 1024);
  const p = k.alloc(8);
  // Stores are bounded by the kernel memory, not by the block (as in
  // Extism's kernel): these land past every block.
  k.storeU64(p + 4096, 0x1122334455667788n);
  k.storeU8(p + 9000, 0x99);
  k.reset();
  const q = k.alloc(10_000);
  assert.equal(q, p);
  assert.ok(k.bytes(q, 10_000).every((b) => b === 0), "old bytes leaked");
});

Deno.test("a GoatKit plugin cannot reach the Extism-only host calls", async () => {
  const host = { log: () => {} } as unknown as HostAPI;
  for (const fn of ["extism:var_get", "extism:var_set", "extism:user"]) {
    const r = await serveHostCall(
      host,
      createCallContext(),
      fn,
      enc.encode("{}"),
    );
    assert.ok("error" in r, fn);
    assert.match(dec.decode(r.error), /unknown function/, fn);
  }
});

Deno.test("usage counts the kernel memory with the guest's", async () => {
  const p = await loadExtismPlugin(fixture("basic"), {
    registration: { name: "ex-usage", version: "1.0.0" },
  });
  try {
    await p.init(
      { log: () => {} } as unknown as HostAPI,
      { name: "ex-usage", quarantine: () => {} },
    );
    assert.equal((await p.gkRegister()).name, "ex-usage");
    const out = await p.call("echo", enc.encode("hi"), createCallContext());
    assert.equal(dec.decode(out!), "hi");
    // 2 pages of guest memory + 64 KiB of kernel memory.
    assert.equal(p.usage!().memoryBytes, 3 * 65536);
    assert.equal(p.usage!().calls, 1);
  } finally {
    await p.shutdown();
  }
});
