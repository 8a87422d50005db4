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
import { parseManifest } from "../host/model/manifest.ts";
import { buildWat } from "../fixtures/hostile/wat_build.ts";

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
  /** For deliberately invalid fixtures: the ABI violation checkAbi must report. */
  violation?: RegExp;
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
  ...[
    "loop",
    "loop-init",
    "loop-start",
    "loop-register",
    "tailcall",
    "membomb",
    "membomb-initial",
    "stackoverflow",
    "badptr",
    "badptr-register",
    "hugelen",
    "malloc0",
    "malloc-oob",
    "malloc-straddle",
    "trap",
    "trap-register",
    "trap-init",
    "procexit",
    "reentrant",
  ].map((x): Fixture => ({
    dir: `hostile/${x}`,
    name: `hostile-${x}`,
    toolchain: "wat",
    wasi: x === "procexit",
  })),
  { dir: "hostile/passwd", name: "hostile-passwd", toolchain: "c", wasi: true },
  {
    dir: "hostile/stdoutflood",
    name: "hostile-stdoutflood",
    toolchain: "c",
    wasi: true,
  },
  {
    dir: "hostile/import-env",
    name: "hostile-import-env",
    toolchain: "wat",
    wasi: false,
    violation: /import from unexpected module env\.abort/,
  },
  {
    dir: "hostile/missing-exports",
    name: "hostile-missing-exports",
    toolchain: "wat",
    wasi: false,
    violation: /missing export gk_call/,
  },
];

function fixture(dir: string): Fixture {
  const fx = FIXTURE_LIST.find((f) => f.dir === dir);
  if (!fx) throw new Error(`no fixture ${dir}`);
  return fx;
}

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
  /** Index of the start function, if the module has one. */
  start?: number;
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
    } else if (id === 8) {
      shape.start = u32();
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
  /** Every host_call's raw (fn_ptr, fn_len, args_ptr, args_len), as unsigned. */
  readonly rawHostCalls: number[][] = [];
  /** Every log's raw (level, ptr, len), as unsigned. */
  readonly rawLogs: number[][] = [];
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
          guest.rawLogs.push([level, p >>> 0, l >>> 0]);
          // Out-of-bounds messages are dropped, as GoatFlow does.
          if (guest.#inBounds(p, l)) {
            guest.logs.push({ level, msg: dec.decode(guest.#bytes(p, l)) });
          }
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

  #inBounds(ptr: number, len: number): boolean {
    return (ptr >>> 0) + (len >>> 0) <= this.memory.buffer.byteLength;
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

  registerRaw(): [number, number] {
    return MiniGuest.unpack(this.#fn("gk_register")() as bigint);
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
    this.rawHostCalls.push([fp >>> 0, fl >>> 0, ap >>> 0, al >>> 0]);
    // Bad pointers: answer 0, as GoatFlow does.
    if (!this.#inBounds(fp, fl) || !this.#inBounds(ap, al)) return 0n;
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

function sameBytes(
  fx: Fixture,
  rebuilt: Uint8Array,
  committed: Uint8Array,
): void {
  assert.ok(
    rebuilt.length === committed.length &&
      rebuilt.every((b, i) => b === committed[i]),
    `${fx.dir}: rebuilt plugin.wasm (${rebuilt.length} B) differs from the committed one ` +
      `(${committed.length} B); run ${fx.dir}/build.sh and commit the result`,
  );
}

async function rebuildMatches(
  fx: Fixture,
  committed: Uint8Array,
): Promise<void> {
  if (fx.toolchain === "wat" && fx.dir !== "plugins/wat-edge") {
    // The same code build.sh runs, in-process: saves a Deno start per
    // fixture. (wat-edge runs its build.sh, which covers the script path.)
    const dir = new URL(`${fx.dir}/`, FIXTURES).pathname;
    const rebuilt = await buildWat(`${dir}plugin.wat`, `${dir}manifest.json`);
    sameBytes(fx, rebuilt, committed);
    return;
  }
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
    sameBytes(fx, await Deno.readFile(out), committed);
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
    if (fx.violation) assert.throws(() => checkAbi(fx, wasm), fx.violation);
    else checkAbi(fx, wasm);
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
  const { wasm, manifest } = await fixtureFiles(fixture("plugins/hello-c"));
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
  const { wasm } = await fixtureFiles(fixture("plugins/hello-c"));
  const g = MiniGuest.create(wasm);
  assert.equal(g.call("env"), '{"GK_GREETING":null}');
});

Deno.test("hello-rust: in-thread ABI smoke test", async () => {
  const { wasm, manifest } = await fixtureFiles(fixture("plugins/hello-rust"));
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
  const { wasm, manifest } = await fixtureFiles(fixture("plugins/hello-as"));
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
  const { wasm, manifest } = await fixtureFiles(fixture("plugins/wat-edge"));
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

// ---------------------------------------------------------------------------
// Hostile fixtures: only what is safe in-thread (no endless loops, no real
// memory exhaustion). The runtime's tests run the rest under its limits.

const OK = '{"ok":true}';
const UNKNOWN = '{"error":"unknown function"}';

async function hostile(x: string, options: MiniGuestOptions = {}) {
  const { wasm, manifest } = await fixtureFiles(fixture(`hostile/${x}`));
  return {
    wasm,
    manifest,
    shape: readShape(wasm),
    guest: () => MiniGuest.create(wasm, options),
  };
}

Deno.test("hostile loops: the safe functions answer; the endless ones are where they should be", async () => {
  {
    const { guest, manifest } = await hostile("loop");
    const g = guest();
    assert.deepEqual(g.register(), manifest);
    assert.equal(g.call("ok"), OK);
    assert.equal(g.call("other"), UNKNOWN);
  }
  {
    const { guest, manifest } = await hostile("tailcall");
    const g = guest();
    assert.deepEqual(g.register(), manifest);
    assert.equal(g.call("ok"), OK);
  }
  {
    // gk_register itself never returns: only instantiate.
    const { guest } = await hostile("loop-register");
    assert.equal(guest().call("anything"), OK);
  }
  {
    // _initialize never returns: not instantiated here.
    const { shape } = await hostile("loop-init");
    assert.ok(shape.exports.some((e) => e.name === "_initialize"));
    assert.equal(shape.start, undefined);
  }
  {
    // The start function never returns: instantiation itself would hang.
    const { shape } = await hostile("loop-start");
    assert.equal(typeof shape.start, "number");
  }
});

Deno.test("hostile membomb: declares no memory maximum; membomb-initial declares 60000 pages", async () => {
  const { guest, shape } = await hostile("membomb");
  assert.deepEqual(shape.memory, { initial: 1, maximum: undefined });
  const g = guest();
  assert.equal(g.call("pages"), '{"pages":1}');
  assert.equal(g.call("x"), UNKNOWN);
  const initial = await hostile("membomb-initial");
  assert.deepEqual(initial.shape.memory, {
    initial: 60000,
    maximum: undefined,
  });
});

Deno.test("hostile stackoverflow: recursion overflows the stack, the instance stays usable", async () => {
  const { guest } = await hostile("stackoverflow");
  const g = guest();
  assert.throws(() => g.callRaw("recurse"), RangeError);
  assert.throws(() => g.callRaw("mutual"), RangeError);
  assert.equal(g.call("ok"), OK);
});

Deno.test("hostile badptr: results and host arguments outside memory", async () => {
  const { guest } = await hostile("badptr");
  const g = guest();
  const size = g.memory.buffer.byteLength;
  assert.deepEqual(MiniGuest.unpack(g.callRaw("oob")), [size + 16, 16]);
  assert.deepEqual(MiniGuest.unpack(g.callRaw("straddle")), [size - 4, 8]);
  assert.deepEqual(MiniGuest.unpack(g.callRaw("wrap")), [0xfffffff0, 0x20]);
  assert.deepEqual(MiniGuest.unpack(g.callRaw("null_ptr")), [0, 5]);
  assert.equal(g.call("host_bad_fn"), '{"host":0}');
  assert.equal(g.call("host_bad_args"), '{"host":0}');
  assert.equal(g.call("host_huge_len"), '{"host":0}');
  assert.equal(g.call("host_wrap"), '{"host":0}');
  assert.deepEqual(g.rawHostCalls, [
    [0xffff0000, 100, 96, 11],
    [216, 10, 0xffff0000, 100],
    [1024, 0x7fffffff, 0, 0],
    [216, 10, 0xfffffff0, 0x20],
  ]);
  assert.equal(g.call("log_bad"), '{"logged":2}');
  assert.deepEqual(g.rawLogs, [[1, 0xffff0000, 100], [1, 1024, 0x7fffffff]]);
  assert.deepEqual(g.logs, []);
  assert.equal(g.call("ok"), OK);

  const reg = (await hostile("badptr-register")).guest();
  assert.deepEqual(reg.registerRaw(), [0xdeadbeef, 100]);
});

Deno.test("hostile hugelen: lengths 0x7fffffff and 0xffffffff; big results are valid", async () => {
  const { guest } = await hostile("hugelen");
  const g = guest();
  assert.deepEqual(MiniGuest.unpack(g.callRaw("huge")), [1024, 0x7fffffff]);
  assert.deepEqual(MiniGuest.unpack(g.callRaw("max")), [1024, 0xffffffff]);
  const big = g.call("big", "70000");
  assert.equal(big?.length, 70000);
  assert.equal(JSON.parse(big!).length, 69998);
  assert.equal(g.call("ok"), OK);
});

Deno.test("hostile malloc: gk_malloc returns 0, an out-of-range or a straddling pointer", async () => {
  for (
    const [x, want] of [["malloc0", 0], ["malloc-oob", 0xfffffff0], [
      "malloc-straddle",
      65534,
    ]] as const
  ) {
    const { guest, manifest } = await hostile(x);
    const g = guest();
    const malloc = g.exports.gk_malloc as (n: number) => number;
    assert.equal(malloc(16) >>> 0, want, x);
    assert.deepEqual(g.register(), manifest, x);
    // The host cannot place a function name longer than 2 bytes.
    assert.throws(
      () => g.call("hello"),
      /gk_malloc returned 0|out of bounds|Invalid typed array length|offset/,
      x,
    );
    // gk_call itself works when the host can pass nothing at all.
    const call = g.exports.gk_call as (...a: number[]) => bigint;
    assert.deepEqual(MiniGuest.unpack(call(0, 0, 0, 0)), [96, 11], x);
  }
});

Deno.test("hostile traps: every function traps with a RuntimeError, the instance stays usable", async () => {
  const { guest } = await hostile("trap");
  const g = guest();
  const traps: Record<string, RegExp> = {
    unreachable: /unreachable/,
    div0: /divide by zero/,
    int_overflow: /divide result unrepresentable/,
    oob_load: /memory access out of bounds/,
    null_indirect:
      /null function|table index is out of bounds|signature mismatch/,
    bad_sig: /signature mismatch/,
    nan_trunc: /float unrepresentable in integer range/,
  };
  for (const [fn, message] of Object.entries(traps)) {
    assert.throws(
      () => g.callRaw(fn),
      (e) => e instanceof WebAssembly.RuntimeError && message.test(e.message),
      fn,
    );
  }
  assert.equal(g.call("ok"), OK);

  const reg = (await hostile("trap-register")).guest();
  assert.throws(() => reg.register(), WebAssembly.RuntimeError);
  const init = await hostile("trap-init");
  assert.throws(() => init.guest(), WebAssembly.RuntimeError);
});

Deno.test("hostile procexit: proc_exit is called with 7 and 0", async () => {
  const { guest } = await hostile("procexit");
  const g = guest();
  assert.throws(
    () => g.callRaw("exit"),
    (e) => e instanceof ProcExit && e.code === 7,
  );
  assert.throws(
    () => g.callRaw("exit0"),
    (e) => e instanceof ProcExit && e.code === 0,
  );
  assert.equal(g.call("ok"), OK);
});

Deno.test("hostile reentrant: plugin_call back into itself (served in-thread here, depth-limited)", async () => {
  let depth = 0;
  const { guest } = await hostile("reentrant", {
    hostCall: (fn, args, g) => {
      assert.equal(fn, "plugin_call");
      const req = JSON.parse(args!);
      assert.equal(req.plugin, "hostile-reentrant");
      if (depth >= 3) return null; // a host must refuse the cycle somehow
      depth++;
      try {
        return g.call(req.function, JSON.stringify(req.args));
      } finally {
        depth--;
      }
    },
  });
  const g = guest();
  assert.equal(g.call("leaf"), '{"leaf":true}');
  assert.equal(g.call("self"), '{"leaf":true}');
  assert.deepEqual(g.hostCalls, [{
    fn: "plugin_call",
    args: '{"plugin":"hostile-reentrant","function":"leaf","args":{}}',
  }]);
  assert.equal(g.call("reenter"), '{"host_call":0}');
  assert.equal(g.hostCalls.length, 1 + 4);
});

Deno.test("hostile passwd: with no preopen every attempt fails", async () => {
  const { guest, manifest } = await hostile("passwd");
  const g = guest();
  assert.deepEqual(g.register(), manifest);
  const out = JSON.parse(g.call("attempts")!);
  assert.equal(out.preopen, null);
  assert.equal(out.results.length, 25);
  for (const r of out.results) {
    assert.notEqual(r.errno, 0, `${r.op} ${r.path}`);
    assert.equal(r.data, null);
  }
  assert.deepEqual(JSON.parse(g.call("read", "/etc/passwd")!), {
    op: "fopen",
    path: "/etc/passwd",
    errno: 76, // ENOTCAPABLE: wasi-libc finds no preopen for it
    data: null,
  });
  assert.deepEqual(JSON.parse(g.call("read_raw", "../etc/passwd")!), {
    op: "path_open",
    path: "../etc/passwd",
    errno: 52, // ENOSYS from this test's stub
    data: null,
  });
  assert.equal(g.call("ok"), OK);
});

Deno.test("hostile stdoutflood: exact bytes on stdout and stderr", async () => {
  const { guest } = await hostile("stdoutflood");
  const g = guest();
  assert.equal(g.call("flood", '{"lines":3}'), '{"lines":3}');
  const line = (i: number) =>
    `flood line ${String(i).padStart(10, "0")}: ${"0".repeat(56)}\n`;
  assert.equal(g.stdout.join(""), line(0) + line(1) + line(2));
  assert.equal(line(0).length, 80);
  assert.equal(g.call("flood_stderr", "2"), '{"lines":2}');
  assert.equal(g.stderr.join(""), line(0) + line(1));
  g.stdout.length = 0;
  assert.equal(g.call("longline", '{"bytes":10000}'), '{"bytes":10000}');
  assert.equal(g.stdout.join(""), "x".repeat(10000));
  assert.equal(g.call("ok"), OK);
});

Deno.test("invalid fixtures: what exactly is wrong with them", async () => {
  const env = await hostile("import-env");
  assert.deepEqual(
    env.shape.imports.map((i) => `${i.module}.${i.name}`),
    ["env.abort", "host.db_query"],
  );
  assert.throws(() => env.guest(), /Import #0 "env"/);
  const missing = await hostile("missing-exports");
  assert.deepEqual(missing.shape.exports.map((e) => e.name), [
    "memory",
    "gk_register",
  ]);
});
