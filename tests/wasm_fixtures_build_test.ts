/**
 * Checks the committed WASM fixtures (`fixtures/plugins/*`, `fixtures/hostile/*`):
 *
 * 1. each `.wasm` compiles, and its imports and exports match GoatKit's ABI
 *    (names, kinds and function signatures, read from the binary);
 * 2. each `manifest.json` passes `parseManifest`, and `gk_register` returns
 *    exactly its bytes;
 * 3. when the toolchain is present, `build.sh` rebuilds the fixture into a
 *    temporary directory and the result must be BYTE-IDENTICAL to the
 *    committed binary (every build here is reproducible: no timestamps, no
 *    absolute paths);
 * 4. a small in-thread ABI smoke test per fixture, with a minimal host written
 *    here (stub WASI, a `gk` import object answering JSON), proves the
 *    fixtures before the real runtime exists. Hostile functions that would
 *    never return (loops) or eat the test process's memory are not called
 *    in-thread; the runtime's own tests do that under its limits.
 *
 * Run: `deno test -A tests/wasm_fixtures_build_test.ts`
 *
 * @module
 */

import assert from "node:assert/strict";
import { parseManifest } from "../host/manifest.ts";

const FIXTURES = new URL("../fixtures/", import.meta.url);

type Toolchain = "c" | "rust" | "as" | "wat";

interface Fixture {
  /** Folder under fixtures/. */
  dir: string;
  /** Manifest name. */
  name: string;
  toolchain: Toolchain;
  /** Imports from wasi_snapshot_preview1 expected (true) or forbidden (false). */
  wasi: boolean;
}

const FIXTURE_LIST: Fixture[] = [
  { dir: "plugins/hello-c", name: "hello-c", toolchain: "c", wasi: true },
  {
    dir: "plugins/hello-rust",
    name: "hello-rust",
    toolchain: "rust",
    wasi: true,
  },
  { dir: "plugins/hello-as", name: "hello-as", toolchain: "as", wasi: true },
  { dir: "plugins/wat-edge", name: "wat-edge", toolchain: "wat", wasi: false },
];

// ---------------------------------------------------------------------------
// Toolchain detection (synchronous, so tests can be ignored with a reason)

function runs(cmd: string, args: string[]): boolean {
  try {
    return new Deno.Command(cmd, { args, stdout: "null", stderr: "null" })
      .outputSync().success;
  } catch {
    return false;
  }
}

function exists(path: string): boolean {
  try {
    Deno.statSync(path);
    return true;
  } catch {
    return false;
  }
}

function clangReady(): boolean {
  if (!runs("clang", ["--version"])) return false;
  try {
    const out = new Deno.Command("clang", {
      args: ["--target=wasm32-wasi", "-print-resource-dir"],
      stdout: "piped",
      stderr: "null",
    }).outputSync();
    const dir = new TextDecoder().decode(out.stdout).trim();
    return exists(`${dir}/lib/wasi/libclang_rt.builtins-wasm32.a`) &&
      exists("/usr/lib/wasm32-wasi/libc.a");
  } catch {
    return false;
  }
}

const TOOLCHAIN: Record<Toolchain, string | null> = {
  c: clangReady()
    ? null
    : "clang + wasi-libc + libclang-rt-14-dev-wasm32 not installed",
  rust: runs("/usr/bin/rustc", ["--version"]) &&
      exists("/usr/lib/rustlib/wasm32-wasi")
    ? null
    : "/usr/bin/rustc with libstd-rust-dev-wasm32 not installed",
  // AssemblyScript and wabt come from npm through Deno (pinned versions).
  as: null,
  wat: null,
};

// ---------------------------------------------------------------------------
// A minimal reader of the binary: function signatures of imports and exports

type ValType = "i32" | "i64" | "f32" | "f64" | "v128" | "funcref" | "externref";
interface Sig {
  params: ValType[];
  results: ValType[];
}
interface ModuleShape {
  imports: { module: string; name: string; kind: string; sig?: Sig }[];
  exports: { name: string; kind: string; sig?: Sig }[];
  memory?: { initial: number; maximum?: number };
}

const VALTYPES: Record<number, ValType> = {
  0x7f: "i32",
  0x7e: "i64",
  0x7d: "f32",
  0x7c: "f64",
  0x7b: "v128",
  0x70: "funcref",
  0x6f: "externref",
};

function readShape(bytes: Uint8Array): ModuleShape {
  let pos = 8;
  const u32 = (): number => {
    let result = 0, shift = 0, b: number;
    do {
      b = bytes[pos++];
      result += (b & 0x7f) * 2 ** shift;
      shift += 7;
    } while (b & 0x80);
    return result;
  };
  const name = (): string => {
    const len = u32();
    const s = new TextDecoder().decode(bytes.subarray(pos, pos + len));
    pos += len;
    return s;
  };
  const limits = () => {
    const flags = bytes[pos++];
    const initial = u32();
    const maximum = flags & 1 ? u32() : undefined;
    return { initial, maximum };
  };
  const types: Sig[] = [];
  const funcTypes: number[] = []; // function index -> type index
  const shape: ModuleShape = { imports: [], exports: [] };
  const kinds = ["func", "table", "memory", "global", "tag"];
  while (pos < bytes.length) {
    const id = bytes[pos++];
    const size = u32();
    const end = pos + size;
    if (id === 1) {
      for (let n = u32(); n > 0; n--) {
        assert.equal(bytes[pos++], 0x60, "only plain function types expected");
        const params = Array.from(
          { length: u32() },
          () => VALTYPES[bytes[pos++]],
        );
        const results = Array.from(
          { length: u32() },
          () => VALTYPES[bytes[pos++]],
        );
        types.push({ params, results });
      }
    } else if (id === 2) {
      for (let n = u32(); n > 0; n--) {
        const module = name(), field = name(), kind = bytes[pos++];
        if (kind === 0) {
          const t = u32();
          funcTypes.push(t);
          shape.imports.push({
            module,
            name: field,
            kind: "func",
            sig: types[t],
          });
        } else {
          if (kind === 1) pos++, limits();
          else if (kind === 2) shape.memory = limits();
          else if (kind === 3) pos += 2;
          shape.imports.push({ module, name: field, kind: kinds[kind] });
        }
      }
    } else if (id === 3) {
      for (let n = u32(); n > 0; n--) funcTypes.push(u32());
    } else if (id === 5) {
      if (u32() > 0) shape.memory = limits();
    } else if (id === 7) {
      for (let n = u32(); n > 0; n--) {
        const field = name(), kind = bytes[pos++], index = u32();
        shape.exports.push({
          name: field,
          kind: kinds[kind],
          sig: kind === 0 ? types[funcTypes[index]] : undefined,
        });
      }
    }
    pos = end;
  }
  return shape;
}

const I32 = "i32", I64 = "i64";
const ABI_IMPORTS: Record<string, Sig> = {
  host_call: { params: [I32, I32, I32, I32], results: [I64] },
  log: { params: [I32, I32, I32], results: [] },
};
const ABI_EXPORTS: Record<string, Sig & { required: boolean }> = {
  gk_register: { params: [], results: [I64], required: true },
  gk_call: { params: [I32, I32, I32, I32], results: [I64], required: true },
  gk_malloc: { params: [I32], results: [I32], required: true },
  gk_free: { params: [I32], results: [], required: false },
  _initialize: { params: [], results: [], required: false },
  _start: { params: [], results: [], required: false },
};

function checkAbi(fx: Fixture, bytes: Uint8Array<ArrayBuffer>): ModuleShape {
  const module = new WebAssembly.Module(bytes);
  const shape = readShape(bytes);
  // Cross-check the hand-written reader against V8's view.
  assert.deepEqual(
    shape.imports.map((i) => `${i.module}.${i.name}:${i.kind}`),
    WebAssembly.Module.imports(module).map((i) =>
      `${i.module}.${i.name}:${i.kind === "function" ? "func" : i.kind}`
    ),
  );
  assert.deepEqual(
    shape.exports.map((e) => `${e.name}:${e.kind}`),
    WebAssembly.Module.exports(module).map((e) =>
      `${e.name}:${e.kind === "function" ? "func" : e.kind}`
    ),
  );
  for (const imp of shape.imports) {
    assert.ok(
      imp.module === "gk" || imp.module === "wasi_snapshot_preview1",
      `${fx.dir}: import from unexpected module ${imp.module}.${imp.name}`,
    );
    assert.equal(
      imp.kind,
      "func",
      `${fx.dir}: import ${imp.module}.${imp.name} is not a function`,
    );
    if (imp.module === "gk") {
      const want = ABI_IMPORTS[imp.name];
      assert.ok(want, `${fx.dir}: unknown gk import ${imp.name}`);
      assert.deepEqual(imp.sig, want, `${fx.dir}: signature of gk.${imp.name}`);
    }
  }
  const usesWasi = shape.imports.some((i) =>
    i.module === "wasi_snapshot_preview1"
  );
  assert.equal(
    usesWasi,
    fx.wasi,
    `${fx.dir}: WASI imports expected: ${fx.wasi}`,
  );
  for (const [exp, want] of Object.entries(ABI_EXPORTS)) {
    const found = shape.exports.find((e) => e.name === exp);
    if (!found) {
      assert.ok(!want.required, `${fx.dir}: missing export ${exp}`);
      continue;
    }
    assert.equal(
      found.kind,
      "func",
      `${fx.dir}: export ${exp} is not a function`,
    );
    assert.deepEqual(
      found.sig,
      { params: want.params, results: want.results },
      `${fx.dir}: signature of ${exp}`,
    );
  }
  const mem = shape.exports.find((e) => e.name === "memory");
  assert.equal(mem?.kind, "memory", `${fx.dir}: missing memory export`);
  return shape;
}

// ---------------------------------------------------------------------------
// A minimal in-thread host: stub WASI + gk imports. Only for these checks.

const ENOSYS = 52, EBADF = 8;

class ProcExit extends Error {
  constructor(readonly code: number) {
    super(`proc_exit(${code})`);
    this.name = "ProcExit";
  }
}

type HostCallHandler = (
  fn: string,
  args: string | null,
  guest: MiniGuest,
) => string | Uint8Array | null;

interface MiniGuestOptions {
  env?: Record<string, string>;
  hostCall?: HostCallHandler;
}

const enc = new TextEncoder(), dec = new TextDecoder();

class MiniGuest {
  readonly stdout: string[] = [];
  readonly stderr: string[] = [];
  readonly logs: { level: number; msg: string }[] = [];
  readonly hostCalls: { fn: string; args: string | null }[] = [];
  readonly wasiCalls = new Set<string>();
  exports!: Record<string, WebAssembly.ExportValue>;
  #options: MiniGuestOptions;

  private constructor(options: MiniGuestOptions) {
    this.#options = options;
  }

  static create(
    bytes: Uint8Array<ArrayBuffer>,
    options: MiniGuestOptions = {},
  ): MiniGuest {
    const guest = new MiniGuest(options);
    const module = new WebAssembly.Module(bytes);
    const wasi: Record<string, (...a: never[]) => unknown> = {};
    for (const imp of WebAssembly.Module.imports(module)) {
      if (imp.module !== "wasi_snapshot_preview1") continue;
      wasi[imp.name] = guest.#wasi(imp.name);
    }
    const instance = new WebAssembly.Instance(module, {
      gk: {
        host_call: (fp: number, fl: number, ap: number, al: number) =>
          guest.#hostCall(fp, fl, ap, al),
        log: (level: number, p: number, l: number) => {
          guest.logs.push({ level, msg: dec.decode(guest.#bytes(p, l)) });
        },
      },
      wasi_snapshot_preview1: wasi,
    });
    guest.exports = instance.exports;
    const init = instance.exports._initialize ?? instance.exports._start;
    if (typeof init === "function") init();
    return guest;
  }

  get memory(): WebAssembly.Memory {
    return this.exports.memory as WebAssembly.Memory;
  }

  #fn(name: string): (...args: number[]) => number | bigint {
    return this.exports[name] as (...args: number[]) => number | bigint;
  }

  #bytes(ptr: number, len: number): Uint8Array {
    const buf = this.memory.buffer;
    if (ptr + len > buf.byteLength) {
      throw new RangeError(`guest pointer ${ptr}+${len} out of bounds`);
    }
    return new Uint8Array(buf, ptr, len).slice();
  }

  #view(): DataView {
    return new DataView(this.memory.buffer);
  }

  /** Copies bytes into a gk_malloc'ed block; returns its pointer. */
  write(bytes: Uint8Array): number {
    const ptr = this.#fn("gk_malloc")(bytes.length) as number;
    if (ptr === 0) throw new Error("gk_malloc returned 0");
    new Uint8Array(this.memory.buffer, ptr, bytes.length).set(bytes);
    return ptr;
  }

  /** Splits a packed i64 into [ptr, len]. */
  static unpack(packed: bigint): [number, number] {
    const u = BigInt.asUintN(64, packed);
    return [Number(u >> 32n), Number(u & 0xffffffffn)];
  }

  #take(packed: bigint): Uint8Array | null {
    const [ptr, len] = MiniGuest.unpack(packed);
    if (ptr === 0 || len === 0) return null;
    const out = this.#bytes(ptr, len);
    if (this.exports.gk_free) this.#fn("gk_free")(ptr);
    return out;
  }

  register(): Uint8Array | null {
    return this.#take(this.#fn("gk_register")() as bigint);
  }

  /** Calls gk_call and returns the raw packed value (nothing freed). */
  callRaw(fn: string, args?: string | Uint8Array): bigint {
    const fnBytes = enc.encode(fn);
    const argBytes = typeof args === "string" ? enc.encode(args) : args;
    const fp = this.write(fnBytes);
    const ap = argBytes?.length ? this.write(argBytes) : 0;
    try {
      return this.#fn("gk_call")(
        fp,
        fnBytes.length,
        ap,
        argBytes?.length ?? 0,
      ) as bigint;
    } finally {
      if (this.exports.gk_free) {
        this.#fn("gk_free")(fp);
        if (ap) this.#fn("gk_free")(ap);
      }
    }
  }

  callBytes(fn: string, args?: string | Uint8Array): Uint8Array | null {
    const fnBytes = enc.encode(fn);
    const argBytes = typeof args === "string" ? enc.encode(args) : args;
    const fp = this.write(fnBytes);
    const ap = argBytes?.length ? this.write(argBytes) : 0;
    const packed = this.#fn("gk_call")(
      fp,
      fnBytes.length,
      ap,
      argBytes?.length ?? 0,
    ) as bigint;
    const out = this.#take(packed);
    if (this.exports.gk_free) {
      this.#fn("gk_free")(fp);
      if (ap) this.#fn("gk_free")(ap);
    }
    return out;
  }

  call(fn: string, args?: string | Uint8Array): string | null {
    const out = this.callBytes(fn, args);
    return out === null ? null : dec.decode(out);
  }

  #hostCall(fp: number, fl: number, ap: number, al: number): bigint {
    const fn = dec.decode(this.#bytes(fp, fl));
    const args = al ? dec.decode(this.#bytes(ap, al)) : null;
    this.hostCalls.push({ fn, args });
    const answer = this.#options.hostCall?.(fn, args, this) ?? null;
    if (answer === null) return 0n;
    const bytes = typeof answer === "string" ? enc.encode(answer) : answer;
    if (bytes.length === 0) return 0n;
    const ptr = this.write(bytes);
    return (BigInt(ptr) << 32n) | BigInt(bytes.length);
  }

  #wasi(name: string): (...a: never[]) => unknown {
    const env = Object.entries(this.#options.env ?? {}).map(([k, v]) =>
      enc.encode(`${k}=${v}\0`)
    );
    const note = () => this.wasiCalls.add(name);
    switch (name) {
      case "environ_sizes_get":
        return ((countPtr: number, sizePtr: number) => {
          note();
          this.#view().setUint32(countPtr, env.length, true);
          this.#view().setUint32(
            sizePtr,
            env.reduce((n, e) => n + e.length, 0),
            true,
          );
          return 0;
        }) as never;
      case "environ_get":
        return ((ptrs: number, buf: number) => {
          note();
          for (const e of env) {
            this.#view().setUint32(ptrs, buf, true);
            new Uint8Array(this.memory.buffer, buf, e.length).set(e);
            ptrs += 4;
            buf += e.length;
          }
          return 0;
        }) as never;
      case "args_sizes_get":
        return ((countPtr: number, sizePtr: number) => {
          note();
          this.#view().setUint32(countPtr, 0, true);
          this.#view().setUint32(sizePtr, 0, true);
          return 0;
        }) as never;
      case "fd_write":
        return ((
          fd: number,
          iovs: number,
          iovsLen: number,
          nwritten: number,
        ) => {
          note();
          if (fd !== 1 && fd !== 2) return EBADF;
          let total = 0;
          const view = this.#view();
          for (let i = 0; i < iovsLen; i++) {
            const ptr = view.getUint32(iovs + i * 8, true);
            const len = view.getUint32(iovs + i * 8 + 4, true);
            (fd === 1 ? this.stdout : this.stderr).push(
              dec.decode(this.#bytes(ptr, len)),
            );
            total += len;
          }
          view.setUint32(nwritten, total, true);
          return 0;
        }) as never;
      case "fd_prestat_get":
        return (() => (note(), EBADF)) as never;
      case "proc_exit":
        return ((code: number) => {
          note();
          throw new ProcExit(code);
        }) as never;
      default:
        return (() => (note(), ENOSYS)) as never;
    }
  }
}

// ---------------------------------------------------------------------------
// Shared checks

async function fixtureFiles(fx: Fixture) {
  const dir = new URL(`${fx.dir}/`, FIXTURES);
  const wasm = await Deno.readFile(new URL("plugin.wasm", dir));
  const manifest = await Deno.readFile(new URL("manifest.json", dir));
  return { dir, wasm, manifest };
}

async function rebuildMatches(
  fx: Fixture,
  committed: Uint8Array,
): Promise<void> {
  const tmp = await Deno.makeTempDir({ prefix: "gk-fixture-" });
  try {
    const out = `${tmp}/plugin.wasm`;
    const script = new URL(`${fx.dir}/build.sh`, FIXTURES).pathname;
    const res = await new Deno.Command("sh", {
      args: [script, out],
      stdout: "piped",
      stderr: "piped",
    }).output();
    assert.ok(
      res.success,
      `${fx.dir}/build.sh failed:\n${dec.decode(res.stderr)}${
        dec.decode(res.stdout)
      }`,
    );
    const rebuilt = await Deno.readFile(out);
    assert.ok(
      rebuilt.length === committed.length &&
        rebuilt.every((b, i) => b === committed[i]),
      `${fx.dir}: rebuilt plugin.wasm (${rebuilt.length} B) differs from the committed one ` +
        `(${committed.length} B); run ${fx.dir}/build.sh and commit the result`,
    );
  } finally {
    await Deno.remove(tmp, { recursive: true });
  }
}

const json = (s: string | null) => (s === null ? null : JSON.parse(s));

// ---------------------------------------------------------------------------
// Per-fixture tests

for (const fx of FIXTURE_LIST) {
  Deno.test(`${fx.dir}: ABI shape and manifest`, async () => {
    const { wasm, manifest } = await fixtureFiles(fx);
    checkAbi(fx, wasm);
    const m = parseManifest(manifest);
    assert.equal(m.name, fx.name);
    // Canonical form (so `deno fmt` leaves it alone): JSON.stringify(…, null, 2).
    assert.equal(
      dec.decode(manifest),
      JSON.stringify(JSON.parse(dec.decode(manifest)), null, 2) + "\n",
    );
  });

  const why = TOOLCHAIN[fx.toolchain];
  Deno.test({
    name: `${fx.dir}: rebuild is byte-identical to the committed plugin.wasm` +
      (why ? ` (ignored: ${why})` : ""),
    ignore: why !== null,
    fn: async () => {
      const { wasm } = await fixtureFiles(fx);
      await rebuildMatches(fx, wasm);
    },
  });
}

Deno.test("hello-c: in-thread ABI smoke test", async () => {
  const { wasm, manifest } = await fixtureFiles(FIXTURE_LIST[0]);
  const answers: Record<string, string | null> = {
    db_query: '[{"one":1}]',
    db_exec: '{"affected":1}',
    cache_set: '{"ok":true}',
    cache_get: '{"found":true,"value":"dGVzdA=="}',
    cache_delete: '{"ok":true}',
    http_request: null, // the host answered 0
    send_email: '{"ok":true}',
    config_get: '{"value":"GoatKit"}',
    translate: '{"value":"Hello, C!"}',
    plugin_call: '{"message":"Hello from Rust, C!","runtime":"rust-wasm"}',
  };
  const g = MiniGuest.create(wasm, {
    env: { GK_GREETING: 'Grüß "dich"' },
    hostCall: (fn) => answers[fn] ?? null,
  });
  assert.deepEqual(g.register(), manifest);
  assert.equal(
    g.call("hello", '{"name":"Ada"}'),
    '{"message":"Hello from C, Ada!","runtime":"c-wasm"}',
  );
  assert.equal(
    g.call("hello"),
    '{"message":"Hello from C, World!","runtime":"c-wasm"}',
  );
  assert.equal(
    g.call("hello", '{"x":[1,{"name":"no"}],"name":""}'),
    '{"message":"Hello from C, World!","runtime":"c-wasm"}',
  );
  assert.equal(
    g.stdout.join(""),
    "hello-c: hello called for Ada\nhello-c: hello called for World\nhello-c: hello called for World\n",
  );
  assert.equal(
    g.call("widget"),
    '{"html":"<div class=\\"hello-c-widget\\"><h3>Hello from C</h3><p>Compiled by clang to wasm32-wasi.</p></div>"}',
  );
  const payload = '{"a":[1,2,3],"s":"\\u00e9\\n"}';
  assert.equal(g.call("echo", payload), payload);
  assert.equal(g.call("echo"), null);
  assert.deepEqual(json(g.call("env")), { GK_GREETING: 'Grüß "dich"' });
  assert.equal(g.call("log_all"), '{"logged":4}');
  assert.deepEqual(g.logs.splice(0), [
    { level: 0, msg: "Debug from hello-c" },
    { level: 1, msg: "Info from hello-c" },
    { level: 2, msg: "Warn from hello-c" },
    { level: 3, msg: "Error from hello-c" },
  ]);
  assert.equal(
    g.call("test"),
    '{"results":{"cache_delete":{"ok":true},"cache_get":{"found":true,"value":"dGVzdA=="},' +
      '"cache_set":{"ok":true},"config_get":{"value":"GoatKit"},"db_exec":{"affected":1},' +
      '"db_query":[{"one":1}],"http_request":null,"log":true,' +
      '"plugin_call":{"message":"Hello from Rust, C!","runtime":"rust-wasm"},' +
      '"send_email":{"ok":true},"translate":{"value":"Hello, C!"}}}',
  );
  assert.deepEqual(g.hostCalls, [
    { fn: "db_query", args: '{"query":"SELECT 1 AS one","args":[]}' },
    { fn: "db_exec", args: '{"query":"UPDATE test SET x = 1","args":[]}' },
    { fn: "cache_set", args: '{"key":"test","value":"dGVzdA==","ttl":60}' },
    { fn: "cache_get", args: '{"key":"test"}' },
    { fn: "cache_delete", args: '{"key":"test"}' },
    {
      fn: "http_request",
      args: '{"method":"GET","url":"https://example.com","headers":{}}',
    },
    {
      fn: "send_email",
      args:
        '{"to":"test@example.com","subject":"Test","body":"Hello","html":false}',
    },
    { fn: "config_get", args: '{"key":"app.name"}' },
    { fn: "translate", args: '{"key":"hello_c.greeting","args":["C"]}' },
    {
      fn: "plugin_call",
      args: '{"plugin":"hello-rust","function":"hello","args":{"name":"C"}}',
    },
  ]);
  assert.deepEqual(g.logs, [
    { level: 1, msg: "test: calling every host function" },
    { level: 1, msg: "test: done" },
  ]);
  assert.equal(g.call("nope"), '{"error":"unknown function: nope"}');
  assert.equal(g.call('a"b'), '{"error":"unknown function: a\\"b"}');
});

Deno.test("hello-c: getenv without GK_GREETING gives null", async () => {
  const { wasm } = await fixtureFiles(FIXTURE_LIST[0]);
  const g = MiniGuest.create(wasm);
  assert.equal(g.call("env"), '{"GK_GREETING":null}');
});

Deno.test("hello-rust: in-thread ABI smoke test", async () => {
  const { wasm, manifest } = await fixtureFiles(FIXTURE_LIST[1]);
  const g = MiniGuest.create(wasm, { env: { GK_GREETING: "hi" } });
  assert.deepEqual(g.register(), manifest);
  assert.equal(
    g.call("hello", '{"name":"Ada"}'),
    '{"message":"Hello from Rust, Ada!","runtime":"rust-wasm"}',
  );
  assert.equal(
    g.call("hello", "not json"),
    '{"message":"Hello from Rust, World!","runtime":"rust-wasm"}',
  );
  assert.equal(
    g.stdout.join(""),
    "hello-rust: hello called for Ada\nhello-rust: hello called for World\n",
  );
  assert.equal(g.call("echo", '{"x":1}'), '{"x":1}');
  assert.equal(
    g.call("widget"),
    '{"html":"<div class=\\"hello-rust-widget\\"><h3>Hello from Rust</h3><p>Built by rustc for wasm32-wasi, std only.</p></div>"}',
  );
  assert.equal(g.call("fib", '{"n":30}'), '{"result":832040}');
  assert.equal(g.call("fib", '{"n":10}'), '{"result":55}');
  assert.equal(g.call("prng", '{"n":3}'), `{"result":${xorshift(3n)}}`);
  assert.equal(g.call("env"), '{"GK_GREETING":"hi"}');
  assert.equal(g.call("log"), '{"logged":1}');
  assert.deepEqual(g.logs, [{ level: 1, msg: "Info from hello-rust" }]);
  assert.equal(g.call("nope"), '{"error":"unknown function: nope"}');
  // "spin" never returns; it is for the runtime's timeout tests, not run here.
});

function xorshift(n: bigint): bigint {
  let x = 88172645463325252n;
  for (let i = 0n; i < n; i++) {
    x = BigInt.asUintN(64, x ^ (x << 13n));
    x ^= x >> 7n;
    x = BigInt.asUintN(64, x ^ (x << 17n));
  }
  return x;
}

Deno.test("hello-as: in-thread ABI smoke test", async () => {
  const { wasm, manifest } = await fixtureFiles(FIXTURE_LIST[2]);
  const g = MiniGuest.create(wasm);
  assert.deepEqual(g.register(), manifest);
  assert.equal(
    g.call("hello", '{"name":"Ada"}'),
    '{"message":"Hello from AssemblyScript, Ada!","runtime":"as-wasm"}',
  );
  assert.equal(
    g.call("hello", "{}"),
    '{"message":"Hello from AssemblyScript, World!","runtime":"as-wasm"}',
  );
  assert.equal(
    g.stdout.join(""),
    "hello-as: hello called for Ada\nhello-as: hello called for World\n",
  );
  assert.equal(
    g.call("widget"),
    '{"html":"<div class=\\"hello-as-widget\\"><h3>Hello from AssemblyScript</h3><p>Compiled by asc with the WASI shim.</p></div>"}',
  );
  const payload = '{"é":"ü","n":[1,2]}';
  assert.equal(g.call("echo", payload), payload);
  assert.equal(g.call("log"), '{"logged":1}');
  assert.deepEqual(g.logs, [{ level: 1, msg: "Info from hello-as" }]);
  assert.equal(g.call("nope"), '{"error":"unknown function: nope"}');
  assert.deepEqual(parseManifest(manifest).i18n?.languages, [
    "en",
    "de",
    "es",
    "fr",
  ]);
});

Deno.test("wat-edge: in-thread ABI smoke test", async () => {
  const { wasm, manifest } = await fixtureFiles(FIXTURE_LIST[3]);
  const g = MiniGuest.create(wasm, {
    hostCall: (fn, args) =>
      fn === "echo_back" ? `{"got":${args ?? "null"}}` : null,
  });
  assert.deepEqual(g.register(), manifest);
  assert.equal(g.call("echo", '{"x":1}'), '{"x":1}');
  assert.equal(g.callRaw("empty"), 0n);
  assert.deepEqual(MiniGuest.unpack(g.callRaw("zero_len")), [1024, 0]);
  assert.equal(g.call("callhost", 'echo_back\n{"k":"v"}'), '{"got":{"k":"v"}}');
  assert.equal(g.call("callhost", "echo_back"), '{"got":null}');
  assert.equal(g.call("callhost", "unknown_fn\n{}"), null);
  assert.deepEqual(g.hostCalls, [
    { fn: "echo_back", args: '{"k":"v"}' },
    { fn: "echo_back", args: null },
    { fn: "unknown_fn", args: "{}" },
  ]);
  const big = g.call("big", "100000");
  assert.equal(big?.length, 100000);
  assert.equal(JSON.parse(big!), "a".repeat(99998));
  assert.equal(g.call("log", "2careful"), '{"logged":1}');
  assert.equal(g.call("log", "7odd level"), '{"logged":1}');
  assert.deepEqual(g.logs, [{ level: 2, msg: "careful" }, {
    level: 7,
    msg: "odd level",
  }]);
  // fn buffer only (no args): 1 block live on entry.
  assert.equal(g.call("live"), '{"live":1}');
  assert.equal(g.call("live", "{}"), '{"live":2}');
  assert.equal(g.call("nope"), '{"error":"unknown function: nope"}');
  // The allocator reuses memory once everything is freed: no growth.
  const pages = g.memory.buffer.byteLength;
  for (let i = 0; i < 2000; i++) g.call("echo", "x".repeat(1000));
  assert.equal(g.memory.buffer.byteLength, pages);
});
