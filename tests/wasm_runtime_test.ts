/**
 * The WASM runtime with well-behaved plugins: the real fixtures
 * (`fixtures/plugins/*`, built by clang, rustc, asc and wabt) load through
 * `loadWasmPlugin`, register with the Manager, and answer byte-exactly;
 * every `host_call` function round-trips with GoatFlow's exact JSON; log
 * lines and stdout reach the log; instrumented and original modules give
 * the same answers; instances, queueing and deadlines behave.
 *
 * Run: `deno test -A tests/wasm_runtime_test.ts`
 *
 * @module
 */

import assert from "node:assert/strict";
import wabtInit from "wabt";
import { Manager } from "../host/manager.ts";
import type {
  EmailMessage,
  HostAPI,
  HttpRequest,
  HttpResponse,
  LogLevel,
  Row,
} from "../host/model/host_api.ts";
import { type CallContext, createCallContext } from "../host/model/plugin.ts";
import {
  PermissionDeniedError,
  PluginCrashedError,
  PluginTimeoutError,
} from "../host/model/errors.ts";
import {
  loadWasmPlugin,
  WasmLoadError,
  type WasmPlugin,
} from "../runtimes/wasm/mod.ts";
import { goJson, rawMember } from "../runtimes/wasm/go_json.ts";

const enc = new TextEncoder();
const dec = new TextDecoder();
const PLUGINS = new URL("../fixtures/plugins/", import.meta.url);
const fixturePath = (name: string) =>
  new URL(`${name}/plugin.wasm`, PLUGINS).pathname;

/** A HostAPI test double that records every call and answers fixed values. */
class RecordingHost implements HostAPI {
  calls: unknown[][] = [];
  logs: {
    level: LogLevel;
    message: string;
    fields?: Record<string, unknown>;
  }[] = [];
  cache = new Map<string, Uint8Array>();
  rows: Row[] = [{ one: 1 }];
  manager: Manager | undefined;
  deny: string | undefined;

  #check(what: string): void {
    if (this.deny === what) throw new PermissionDeniedError("test", what, what);
  }
  dbQuery(_ctx: CallContext, query: string, args?: unknown[]): Promise<Row[]> {
    this.calls.push(["dbQuery", query, args]);
    this.#check("db:read");
    return Promise.resolve(this.rows);
  }
  dbExec(_ctx: CallContext, query: string, args?: unknown[]): Promise<number> {
    this.calls.push(["dbExec", query, args]);
    this.#check("db:write");
    return Promise.resolve(3);
  }
  cacheGet(_ctx: CallContext, key: string): Promise<Uint8Array | null> {
    this.calls.push(["cacheGet", key]);
    return Promise.resolve(this.cache.get(key) ?? null);
  }
  cacheSet(
    _ctx: CallContext,
    key: string,
    value: Uint8Array,
    ttl: number,
  ): Promise<void> {
    this.calls.push(["cacheSet", key, dec.decode(value), ttl]);
    this.cache.set(key, value);
    return Promise.resolve();
  }
  cacheDelete(_ctx: CallContext, key: string): Promise<void> {
    this.calls.push(["cacheDelete", key]);
    this.cache.delete(key);
    return Promise.resolve();
  }
  httpRequest(_ctx: CallContext, r: HttpRequest): Promise<HttpResponse> {
    this.calls.push([
      "httpRequest",
      r.method,
      r.url,
      r.headers,
      r.body ? dec.decode(r.body) : null,
    ]);
    return Promise.resolve({
      status: r.url.endsWith("/missing") ? 404 : 200,
      body: enc.encode("<b>ok</b>"),
    });
  }
  sendEmail(_ctx: CallContext, m: EmailMessage): Promise<void> {
    this.calls.push(["sendEmail", m]);
    return Promise.resolve();
  }
  log(
    _ctx: CallContext,
    level: LogLevel,
    message: string,
    fields?: Record<string, unknown>,
  ): void {
    this.logs.push({ level, message, ...(fields ? { fields } : {}) });
  }
  configGet(_ctx: CallContext, key: string): Promise<string> {
    this.calls.push(["configGet", key]);
    return Promise.resolve(key === "app.name" ? "GoatKit & Deno" : `<${key}>`);
  }
  translate(_ctx: CallContext, key: string, args?: unknown[]): Promise<string> {
    this.calls.push(["translate", key, args]);
    return Promise.resolve(`T(${key},${JSON.stringify(args)})`);
  }
  callPlugin(
    ctx: CallContext,
    plugin: string,
    fn: string,
    args: Uint8Array | null,
  ): Promise<Uint8Array | null> {
    this.calls.push([
      "callPlugin",
      plugin,
      fn,
      args === null ? null : dec.decode(args),
    ]);
    if (!this.manager) return Promise.reject(new Error("no manager"));
    return this.manager.callFrom(ctx.chain.at(-1) ?? "", plugin, fn, args, {
      parent: ctx,
    });
  }
}

async function setup(
  names: string[],
  options: Parameters<typeof loadWasmPlugin>[1] = {},
): Promise<{ manager: Manager; host: RecordingHost; plugins: WasmPlugin[] }> {
  const host = new RecordingHost();
  const manager = new Manager({ host });
  host.manager = manager;
  const plugins: WasmPlugin[] = [];
  for (const n of names) {
    const p = await loadWasmPlugin(fixturePath(n), {
      config: { GK_GREETING: "Grüezi <&>" },
      ...options,
    });
    plugins.push(p);
    await manager.register(p);
  }
  return { manager, host, plugins };
}

async function call(
  manager: Manager,
  plugin: string,
  fn: string,
  args: string | null,
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

/** What each fixture answers, byte for byte. */
const EXPECTED: Record<string, [string, string | null, string | null][]> = {
  "hello-c": [
    [
      "hello",
      '{"name":"Ana"}',
      '{"message":"Hello from C, Ana!","runtime":"c-wasm"}',
    ],
    ["hello", null, '{"message":"Hello from C, World!","runtime":"c-wasm"}'],
    [
      "widget",
      null,
      '{"html":"<div class=\\"hello-c-widget\\"><h3>Hello from C</h3><p>Compiled by clang to wasm32-wasi.</p></div>"}',
    ],
    ["echo", '{"a":[1,2], "b":"x"}', '{"a":[1,2], "b":"x"}'],
    ["env", null, '{"GK_GREETING":"Grüezi <&>"}'],
    ["log_all", null, '{"logged":4}'],
    ["nope", null, '{"error":"unknown function: nope"}'],
  ],
  "hello-rust": [
    [
      "hello",
      '{"name":"Ana"}',
      '{"message":"Hello from Rust, Ana!","runtime":"rust-wasm"}',
    ],
    [
      "widget",
      null,
      '{"html":"<div class=\\"hello-rust-widget\\"><h3>Hello from Rust</h3><p>Built by rustc for wasm32-wasi, std only.</p></div>"}',
    ],
    ["echo", '{"x":"y"}', '{"x":"y"}'],
    ["env", null, '{"GK_GREETING":"Grüezi <&>"}'],
    ["fib", '{"n":20}', '{"result":6765}'],
    ["log", null, '{"logged":1}'],
    ["nope", null, '{"error":"unknown function: nope"}'],
  ],
  "hello-as": [
    [
      "hello",
      '{"name":"Ana"}',
      '{"message":"Hello from AssemblyScript, Ana!","runtime":"as-wasm"}',
    ],
    [
      "widget",
      null,
      '{"html":"<div class=\\"hello-as-widget\\"><h3>Hello from AssemblyScript</h3><p>Compiled by asc with the WASI shim.</p></div>"}',
    ],
    ["echo", '{"x":"y"}', '{"x":"y"}'],
    ["log", null, '{"logged":1}'],
    ["nope", null, '{"error":"unknown function: nope"}'],
  ],
  "wat-edge": [
    ["echo", "raw \u0000 bytes", "raw \u0000 bytes"],
    ["echo", null, null],
    ["empty", null, null],
    ["zero_len", null, null],
    ["big", "10", '"aaaaaaaa"'],
    ["log", "2hi", '{"logged":1}'],
    ["nope", null, '{"error":"unknown function: nope"}'],
  ],
};

Deno.test("each fixture loads, registers with its manifest and answers byte-exactly (instrumented and original)", async () => {
  for (const instrument of [true, false]) {
    const { manager, plugins } = await setup(Object.keys(EXPECTED), {
      instrument,
    });
    try {
      for (const [i, name] of Object.keys(EXPECTED).entries()) {
        const p = plugins[i]!;
        assert.equal(p.runtime, "wasm");
        assert.equal(p.instrumented, instrument);
        const manifestFile = await Deno.readTextFile(
          new URL(`${name}/manifest.json`, PLUGINS),
        );
        assert.equal(
          p.manifestJson,
          manifestFile,
          `${name}: gk_register returns manifest.json`,
        );
        assert.equal(manager.get(name)?.gkRegister !== undefined, true);
        for (const [fn, args, want] of EXPECTED[name]!) {
          assert.equal(
            await call(manager, name, fn, args),
            want,
            `${name}.${fn} (instrument ${instrument})`,
          );
        }
      }
      // Manifest contributions are registered (routes, widgets, i18n).
      assert.ok(manager.routes().some((r) => r.plugin === "hello-c"));
      assert.ok(
        manager.widgets("dashboard").some((w) => w.plugin === "hello-rust"),
      );
    } finally {
      await manager.shutdownAll();
    }
  }
});

Deno.test("hello-c test: every host_call function through the Manager, exact Go JSON", async () => {
  const { manager, host } = await setup(["hello-c", "hello-rust"]);
  try {
    host.cache.set("test", enc.encode("test"));
    const out = await call(manager, "hello-c", "test", null);
    assert.equal(
      out,
      '{"results":{"cache_delete":{"ok":true},"cache_get":{"found":true,"value":"dGVzdA=="},"cache_set":{"ok":true},' +
        '"config_get":{"value":"GoatKit \\u0026 Deno"},"db_exec":{"affected":3},"db_query":[{"one":1}],' +
        '"http_request":{"body":"PGI+b2s8L2I+","status":200},"log":true,' +
        '"plugin_call":{"message":"Hello from Rust, C!","runtime":"rust-wasm"},"send_email":{"ok":true},' +
        '"translate":{"value":"T(hello_c.greeting,[\\"C\\"])"}}}',
    );
    assert.deepEqual(host.calls.filter((c) => c[0] !== "callPlugin"), [
      ["dbQuery", "SELECT 1 AS one", []],
      ["dbExec", "UPDATE test SET x = 1", []],
      ["cacheSet", "test", "test", 60],
      ["cacheGet", "test"],
      ["cacheDelete", "test"],
      ["httpRequest", "GET", "https://example.com", {}, null],
      ["sendEmail", {
        to: "test@example.com",
        subject: "Test",
        body: "Hello",
        html: false,
      }],
      ["configGet", "app.name"],
      ["translate", "hello_c.greeting", ["C"]],
    ]);
    assert.deepEqual(host.calls.find((c) => c[0] === "callPlugin"), [
      "callPlugin",
      "hello-rust",
      "hello",
      '{"name":"C"}',
    ]);
  } finally {
    await manager.shutdownAll();
  }
});

Deno.test("gk.log levels and stdout lines reach the log", async () => {
  const { manager, host } = await setup(["hello-c", "wat-edge"]);
  try {
    await call(manager, "hello-c", "log_all", null);
    await call(manager, "hello-c", "hello", '{"name":"Log"}');
    await call(manager, "wat-edge", "log", "7odd level");
    await call(manager, "wat-edge", "log", "0dbg");
    const seen = host.logs.map((l) => [l.level, l.message]);
    for (
      const want of [
        ["debug", "Debug from hello-c"],
        ["info", "Info from hello-c"],
        ["warn", "Warn from hello-c"],
        ["error", "Error from hello-c"],
        ["info", "hello-c: hello called for Log"], // printf → stdout → info
        ["info", "odd level"], // level 7 → info (GoatFlow)
        ["debug", "dbg"],
      ]
    ) {
      assert.ok(
        seen.some((s) => s[0] === want[0] && s[1] === want[1]),
        `missing ${want}`,
      );
    }
    assert.equal(
      host.logs.find((l) => l.message === "Debug from hello-c")?.fields?.plugin,
      "hello-c",
    );
  } finally {
    await manager.shutdownAll();
  }
});

// A probe module: gk_call's args are "<host fn>\n<host args>"; it returns the
// host's answer, or "ERR:" + gk.last_error() when host_call returned 0.
const PROBE_MANIFEST = '{"name":"hc-probe","version":"1.0.0"}';
const PROBE_WAT = `(module
  (import "gk" "host_call" (func $hc (param i32 i32 i32 i32) (result i64)))
  (import "gk" "last_error" (func $le (param i32 i32) (result i32)))
  (memory (export "memory") 2)
  (global $top (mut i32) (i32.const 65536))
  (data (i32.const 16) "${PROBE_MANIFEST.replaceAll('"', '\\"')}")
  (data (i32.const 4096) "ERR:")
  (func $malloc (export "gk_malloc") (param $n i32) (result i32) (local $p i32)
    (local.set $p (global.get $top))
    (global.set $top (i32.add (global.get $top) (local.get $n)))
    (if (i32.gt_u (global.get $top) (i32.mul (memory.size) (i32.const 65536)))
      (then (if (i32.eq (memory.grow (i32.add (i32.shr_u (local.get $n) (i32.const 16)) (i32.const 1))) (i32.const -1))
        (then (return (i32.const 0))))))
    (local.get $p))
  (func (export "gk_free") (param i32))
  (func (export "gk_register") (result i64)
    (i64.or (i64.shl (i64.const 16) (i64.const 32)) (i64.const ${PROBE_MANIFEST.length})))
  (func (export "gk_call") (param $fp i32) (param $fl i32) (param $ap i32) (param $al i32) (result i64)
    (local $i i32) (local $r i64) (local $n i32)
    (block $found (loop $scan
      (br_if $found (i32.ge_u (local.get $i) (local.get $al)))
      (br_if $found (i32.eq (i32.load8_u (i32.add (local.get $ap) (local.get $i))) (i32.const 10)))
      (local.set $i (i32.add (local.get $i) (i32.const 1)))
      (br $scan)))
    (local.set $r (call $hc (local.get $ap) (local.get $i)
      (i32.add (i32.add (local.get $ap) (local.get $i)) (i32.const 1))
      (i32.sub (i32.sub (local.get $al) (local.get $i)) (i32.const 1))))
    (if (i64.ne (local.get $r) (i64.const 0)) (then (return (local.get $r))))
    (local.set $n (call $le (i32.const 4100) (i32.const 8000)))
    (if (i32.eqz (local.get $n)) (then (return (i64.const 0))))
    (i64.or (i64.shl (i64.const 4096) (i64.const 32)) (i64.extend_i32_u (i32.add (local.get $n) (i32.const 4))))))`;

async function probeBytes(): Promise<Uint8Array> {
  const wabt = await wabtInit();
  const m = wabt.parseWat("probe.wat", PROBE_WAT, { bulk_memory: true });
  try {
    return m.toBinary({}).buffer;
  } finally {
    m.destroy();
  }
}

Deno.test("every host_call function round-trips with GoatFlow's exact JSON; failures reach gk.last_error", async () => {
  const host = new RecordingHost();
  const manager = new Manager({ host });
  host.manager = manager;
  try {
    await manager.register(
      await loadWasmPlugin(await probeBytes(), { name: "hc-probe" }),
    );
    await manager.register(await loadWasmPlugin(fixturePath("wat-edge")));
    const hc = (fn: string, args: string) =>
      call(manager, "hc-probe", "x", `${fn}\n${args}`);
    host.rows = [];
    assert.equal(
      await hc("db_query", '{"query":"SELECT none","args":[1,"a",null,true]}'),
      "[]",
    );
    assert.deepEqual(host.calls.at(-1), ["dbQuery", "SELECT none", [
      1,
      "a",
      null,
      true,
    ]]);
    host.rows = [{
      z: "<a&b>",
      a: 1.5,
      n: null,
      when: new Date(Date.UTC(2026, 0, 2, 3, 4, 5)),
      bin: enc.encode("hi"),
      big: 9007199254740993n,
    }];
    assert.equal(
      await hc("db_query", '{"query":"SELECT *"}'),
      '[{"a":1.5,"big":9007199254740993,"bin":"aGk=","n":null,"when":"2026-01-02T03:04:05.000Z","z":"\\u003ca\\u0026b\\u003e"}]',
    );
    assert.equal(
      await hc("db_exec", '{"query":"DELETE FROM t","args":[]}'),
      '{"affected":3}',
    );
    assert.equal(
      await hc("cache_get", '{"key":"k"}'),
      '{"found":false,"value":null}',
    );
    assert.equal(
      await hc("cache_set", '{"key":"k","value":"aGk=","ttl":5}'),
      '{"ok":true}',
    );
    assert.deepEqual(host.calls.at(-1), ["cacheSet", "k", "hi", 5]);
    assert.equal(
      await hc("cache_get", '{"key":"k"}'),
      '{"found":true,"value":"aGk="}',
    );
    assert.equal(await hc("cache_delete", '{"key":"k"}'), '{"ok":true}');
    assert.equal(
      await hc("cache_get", '{"key":"k"}'),
      '{"found":false,"value":null}',
    );
    assert.equal(
      await hc(
        "http_request",
        '{"method":"POST","url":"https://x.test/missing","headers":{"A":"b"},"body":"e30="}',
      ),
      '{"body":"PGI+b2s8L2I+","status":404}',
    );
    assert.deepEqual(host.calls.at(-1), [
      "httpRequest",
      "POST",
      "https://x.test/missing",
      { A: "b" },
      "{}",
    ]);
    assert.equal(
      await hc(
        "send_email",
        '{"to":"a@b.c","subject":"S","body":"<p>B</p>","html":true}',
      ),
      '{"ok":true}',
    );
    assert.deepEqual(host.calls.at(-1), ["sendEmail", {
      to: "a@b.c",
      subject: "S",
      body: "<p>B</p>",
      html: true,
    }]);
    assert.equal(
      await hc("config_get", '{"key":"x"}'),
      '{"value":"\\u003cx\\u003e"}',
    );
    assert.equal(
      await hc("translate", '{"key":"k","args":[1,"two"]}'),
      '{"value":"T(k,[1,\\"two\\"])"}',
    );
    // plugin_call passes args through as raw JSON (whitespace kept) and returns the raw result.
    assert.equal(
      await hc(
        "plugin_call",
        '{"plugin":"wat-edge","function":"echo","args": { "a" : 1 } }',
      ),
      '{ "a" : 1 }',
    );
    assert.equal(
      await hc("plugin_call", '{"plugin":"wat-edge","function":"empty"}'),
      null,
    );
    // Failures: 0 for the guest, the error JSON through gk.last_error.
    assert.equal(
      await hc("nope", "{}"),
      'ERR:{"error":{"message":"Cannot call host function \\"nope\\": unknown function","type":"HostCallRequestError"}}',
    );
    assert.equal(
      await hc("cache_set", '{"key":"k","value":"not base64!","ttl":1}'),
      'ERR:{"error":{"message":"illegal base64 data at input byte 3","type":"Base64Error"}}',
    );
    assert.match(
      (await hc("config_get", "{bad json"))!,
      /^ERR:\{"error":\{"message":".*","type":"SyntaxError"\}\}$/,
    );
    host.deny = "db:write";
    assert.equal(
      await hc("db_exec", '{"query":"DELETE FROM t"}'),
      'ERR:{"error":{"message":"Cannot run db:write: plugin \\"test\\" lacks permission \\"db:write\\"","permission":"db:write","type":"PermissionDeniedError"}}',
    );
    host.deny = undefined;
    assert.equal(await hc("db_exec", '{"query":"x"}'), '{"affected":3}');
    // A later host call that answers nothing (0) without failing leaves no error.
    assert.equal(await hc("nope", "{}") !== null, true);
    assert.equal(
      await hc("plugin_call", '{"plugin":"wat-edge","function":"empty"}'),
      null,
    );
  } finally {
    await manager.shutdownAll();
  }
});

Deno.test("go_json: Go's encoding rules", () => {
  assert.equal(
    goJson({ b: 1, a: [true, null, "x"] }),
    '{"a":[true,null,"x"],"b":1}',
  );
  assert.equal(goJson("\u2028<>&"), '"\\u2028\\u003c\\u003e\\u0026"');
  assert.equal(goJson(1e21), "1e+21");
  assert.equal(goJson(1e-7), "1e-07");
  assert.equal(
    rawMember('{"a":1,"args" : [1, {"x":"]"}] ,"b":2}', "args"),
    '[1, {"x":"]"}]',
  );
  assert.equal(rawMember('{"a":1}', "args"), undefined);
});

Deno.test("concurrent calls queue on one instance, spread over several", async () => {
  for (const instances of [1, 2]) {
    const { manager, plugins } = await setup(["hello-rust"], { instances });
    try {
      assert.equal(plugins[0]!.instanceCount, instances);
      const outs = await Promise.all(
        Array.from(
          { length: 20 },
          (_, i) => call(manager, "hello-rust", "fib", `{"n":${i + 5}}`),
        ),
      );
      const fib = (n: number): number => (n < 2 ? n : fib(n - 1) + fib(n - 2));
      outs.forEach((o, i) => assert.equal(o, `{"result":${fib(i + 5)}}`));
    } finally {
      await manager.shutdownAll();
    }
  }
});

Deno.test("a call past its deadline fails with PluginTimeoutError and the instance answers again", async () => {
  const { manager, plugins } = await setup(["hello-rust"], { graceMs: 5000 });
  try {
    const t0 = Date.now();
    await assert.rejects(
      call(manager, "hello-rust", "spin", null, 300),
      PluginTimeoutError,
    );
    assert.ok(Date.now() - t0 < 5000);
    // The guest stopped itself (fuel + interrupt flag); same worker, fresh instance.
    assert.equal(
      await call(manager, "hello-rust", "fib", '{"n":10}'),
      '{"result":55}',
    );
    assert.equal(plugins[0]!.killedWorkers, 0);
    assert.ok(plugins[0]!.interruptCount > 0);
  } finally {
    await manager.shutdownAll();
  }
});

Deno.test("direct Plugin use: abort signal interrupts (the caller's reason, no fault); traps are PluginCrashedError", async () => {
  const p = await loadWasmPlugin(fixturePath("hello-rust"), {
    quarantine: { maxOverruns: 1 },
  });
  const host = new RecordingHost();
  const quarantined: string[] = [];
  await p.init(host, {
    name: "hello-rust",
    quarantine: (r) => quarantined.push(r),
  });
  try {
    const ac = new AbortController();
    const ctx = createCallContext({ timeoutMs: 20_000, signal: ac.signal });
    setTimeout(() => ac.abort(new Error("caller gave up")), 200);
    await assert.rejects(
      p.call("spin", null, ctx),
      (e: Error) =>
        /caller gave up/.test(e.message) && !(e instanceof PluginTimeoutError),
    );
    // A caller's abort is not the plugin's fault, even with maxOverruns 1.
    assert.deepEqual(quarantined, []);
    const out = await p.call("hello", null, createCallContext());
    assert.equal(
      dec.decode(out!),
      '{"message":"Hello from Rust, World!","runtime":"rust-wasm"}',
    );
  } finally {
    await p.shutdown();
  }
  await assert.rejects(
    loadWasmPlugin(enc.encode("not wasm"), { name: "junk" }),
    WasmLoadError,
  );
  assert.ok(PluginCrashedError);
});

Deno.test("large payloads cross the channel both ways (it grows up to maxResultBytes)", async () => {
  const { manager, host } = await setup(["wat-edge"], {
    maxResultBytes: 8 * 1024 * 1024,
  });
  try {
    const big = "x".repeat(5 * 1024 * 1024);
    assert.equal(await call(manager, "wat-edge", "echo", big), big);
    assert.equal(
      (await call(manager, "wat-edge", "big", "3000000"))!.length,
      3_000_000,
    );
    // A host_call answer of several MiB reaches the guest.
    host.configGet = (_ctx, key) => Promise.resolve(key.repeat(1_000_000));
    const out = await call(
      manager,
      "wat-edge",
      "callhost",
      'config_get\n{"key":"abc"}',
    );
    assert.equal(out, `{"value":"${"abc".repeat(1_000_000)}"}`);
    // Over the limit: refused before it reaches the guest, the plugin stays usable.
    await assert.rejects(
      call(manager, "wat-edge", "echo", "y".repeat(9 * 1024 * 1024)),
      /exceed the limit/,
    );
    assert.equal(await call(manager, "wat-edge", "echo", "small"), "small");
  } finally {
    await manager.shutdownAll();
  }
});

Deno.test("a guest sleeping in WASI poll_oneoff is woken at its deadline", async () => {
  const manifest = '{"name":"sleeper","version":"1.0.0"}';
  const wat = `(module
    (import "wasi_snapshot_preview1" "poll_oneoff" (func $poll (param i32 i32 i32 i32) (result i32)))
    (memory (export "memory") 1)
    (global $top (mut i32) (i32.const 8192))
    (data (i32.const 16) "${manifest.replaceAll('"', '\\"')}")
    (data (i32.const 512) "{\\"slept\\":true}")
    (func (export "gk_malloc") (param $n i32) (result i32) (local $p i32)
      (local.set $p (global.get $top))
      (global.set $top (i32.add (global.get $top) (local.get $n)))
      (local.get $p))
    (func (export "gk_register") (result i64)
      (i64.or (i64.shl (i64.const 16) (i64.const 32)) (i64.const ${manifest.length})))
    (func (export "gk_call") (param i32 i32 i32 i32) (result i64)
      (global.set $top (i32.const 8192))
      ;; one clock subscription: monotonic clock, relative timeout
      (i64.store (i32.const 1024) (i64.const 0))
      (i32.store8 (i32.const 1032) (i32.const 0))
      (i32.store (i32.const 1040) (i32.const 1))
      ;; 60 s, or 1 ms when called with args
      (i64.store (i32.const 1048)
        (select (i64.const 1000000) (i64.const 60000000000) (local.get 3)))
      (i64.store (i32.const 1056) (i64.const 0))
      (i32.store16 (i32.const 1064) (i32.const 0))
      (drop (call $poll (i32.const 1024) (i32.const 2048) (i32.const 1) (i32.const 3000)))
      (i64.or (i64.shl (i64.const 512) (i64.const 32)) (i64.const 14))))`;
  const wabt = await wabtInit();
  const m = wabt.parseWat("sleeper.wat", wat, {});
  const bytes = m.toBinary({}).buffer;
  m.destroy();
  const host = new RecordingHost();
  const manager = new Manager({ host });
  try {
    await manager.register(await loadWasmPlugin(bytes, { name: "sleeper" }));
    assert.equal(await call(manager, "sleeper", "nap", "1"), '{"slept":true}');
    const t0 = Date.now();
    await assert.rejects(
      call(manager, "sleeper", "sleep", null, 300),
      PluginTimeoutError,
    );
    // The sleep ends at the deadline: the instance answers again at once.
    assert.equal(await call(manager, "sleeper", "nap", "1"), '{"slept":true}');
    assert.ok(Date.now() - t0 < 10_000, `took ${Date.now() - t0} ms`);
  } finally {
    await manager.shutdownAll();
  }
});
