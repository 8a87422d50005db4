/**
 * Differential test of the Extism-ABI runtime: the same Extism plugins
 * (`fixtures/extism/as/*`, built with Extism's AssemblyScript PDK, and the
 * hand-written `fixtures/extism/wat/*` where both hosts can run them) and the
 * same calls, in the same order, through Extism's own JS SDK
 * (`npm:@extism/extism`, in-thread, WASI off: the SDK has no WASI on Deno)
 * and through ours (`loadExtismPlugin`, behind a guarded HostAPI with real
 * config values and the real egress client); outputs, error kinds, the
 * guest's error messages and log lines must agree. Where the two differ on
 * purpose, the case says why and what ours does instead.
 *
 * Also: a runaway Extism plugin is stopped at its deadline by ours with no
 * thread spinning afterwards (per-thread CPU time from /proc), and what the
 * JS SDK's worker-mode timeout leaves behind is measured and printed.
 *
 * Run: `deno test -A tests/extism_differential_test.ts`
 *
 * @module
 */

import assert from "node:assert/strict";
import createPlugin from "@extism/extism";
import type { CallContext as ExtismCallContext } from "@extism/extism";
import { LogBuffer } from "../host/log_buffer.ts";
import { createCallContext } from "../host/model/plugin.ts";
import type { LogLevel } from "../host/model/host_api.ts";
import { ConfigStore } from "../host/services/config.ts";
import { createGuardedHostAPI } from "../permissions/guarded_host_api.ts";
import { MemoryGrantStore } from "../permissions/grants.ts";
import { createEgressClient } from "../permissions/egress.ts";
import {
  type ExtismHostFunction,
  type ExtismLogLevel,
  loadExtismPlugin,
} from "../runtimes/extism/mod.ts";

const enc = new TextEncoder();
const dec = new TextDecoder();
const AS = new URL("../fixtures/extism/as/", import.meta.url);
const WAT = new URL("../fixtures/extism/wat/", import.meta.url);
const asFixture = (x: string) => new URL(`${x}/plugin.wasm`, AS).pathname;
/** Config both hosts give every plugin (Extism `config`; our plugin section). */
const CONFIG = { thing: "cfg-value", other: "ünïcode ✓" };

/** What one call ended with, in terms both hosts can be compared on. */
type Outcome =
  | { kind: "output"; output: number[] | null }
  | {
    kind:
      | "plugin-error"
      | "trap"
      | "kernel-fault"
      | "missing-function"
      | "denied"
      | "other";
    message: string;
  };

/** One host under test: calls a function, gives back the log lines so far. */
interface Side {
  call(fn: string, input: Uint8Array): Promise<Outcome>;
  logs(): string[];
  close(): Promise<void>;
}

interface SideOptions {
  /** User host functions, in each host's own form. */
  functions?: {
    ours: ExtismHostFunction[];
    theirs: Record<string, Record<string, SdkHostFunction>>;
  };
  /** The JS SDK's `allowHttpResponseHeaders` (ours always has them). */
  httpHeaders?: boolean;
  /** Log level both hosts keep from. @default "info" */
  logLevel?: ExtismLogLevel;
  /** Hosts an http plugin may reach (both: Extism `allowedHosts` by name; ours: `http:` grants). */
  http?: { hostnames: string[]; grants: string[] };
}

function outputOf(bytes: Uint8Array | null | undefined): Outcome {
  return { kind: "output", output: bytes ? [...bytes] : null };
}

/** Classifies an error thrown by Extism's JS SDK (its messages are its only error model). */
function classifyTheirs(e: unknown): Outcome {
  const err = e as Error;
  const message = String(err?.message ?? err);
  const guest = /^Plugin-originated error: ([\s\S]*)$/.exec(message);
  if (guest) return { kind: "plugin-error", message: guest[1]! };
  if (/function ".*" does not exist/.test(message)) {
    return { kind: "missing-function", message };
  }
  if (err instanceof WebAssembly.RuntimeError) return { kind: "trap", message };
  // Its kernel functions index per-block DataViews: an access outside one
  // throws V8's RangeError out of the host function.
  if (err instanceof RangeError && /DataView/.test(message)) {
    return { kind: "kernel-fault", message };
  }
  if (/is not allowed/.test(message)) return { kind: "denied", message };
  return { kind: "other", message };
}

/** Classifies an error thrown by our runtime, by its typed error class. */
function classifyOurs(e: unknown): Outcome {
  const err = e as Error & {
    guestMessage?: string | null;
    hostError?: { type: string; message: string };
    code?: number;
  };
  const name = err?.name ?? "";
  const message = String(err?.message ?? err);
  if (name === "ExtismCallError") {
    // A missing export is the host's finding, carried as a host error.
    if (err.hostError?.type === "ExtismFunctionNotFound") {
      return { kind: "missing-function", message };
    }
    if (err.hostError) {
      return /Denied/.test(err.hostError.type)
        ? { kind: "denied", message: err.hostError.message }
        : { kind: "other", message: `${err.hostError.type}: ${message}` };
    }
    if (typeof err.guestMessage === "string") {
      return { kind: "plugin-error", message: err.guestMessage };
    }
    return { kind: "other", message };
  }
  if (
    name === "PluginCrashedError" &&
    /outside the Extism kernel memory/.test(message)
  ) {
    return { kind: "kernel-fault", message };
  }
  if (name === "PluginCrashedError") return { kind: "trap", message };
  if (
    /does not exist|not exported|unknown function|no such function|no function/i
      .test(message)
  ) {
    return { kind: "missing-function", message };
  }
  if (/Denied/.test(name)) return { kind: "denied", message };
  return { kind: "other", message: `${name}: ${message}` };
}

type SdkOptions = NonNullable<Parameters<typeof createPlugin>[1]>;
// deno-lint-ignore no-explicit-any
type SdkHostFunction = (cc: ExtismCallContext, ...args: any[]) => unknown;

/** A string -> string user host function, for both hosts. */
function stringFunction(
  name: string,
  f: (s: string) => string,
  namespace = "extism:host/user",
): { ours: ExtismHostFunction; theirs: [string, string, SdkHostFunction] } {
  return {
    ours: {
      name,
      namespace,
      params: ["string"],
      results: ["string"],
      handler: (_ctx, arg) => f(arg as string),
    },
    theirs: [
      namespace,
      name,
      (cc: ExtismCallContext, off: bigint) =>
        cc.store(f(cc.read(off)?.text() ?? "")),
    ],
  };
}

/** Both hosts' forms of a list of host functions. */
function bothForms(
  list: {
    ours: ExtismHostFunction;
    theirs: [string, string, SdkHostFunction];
  }[],
): NonNullable<SideOptions["functions"]> {
  const theirs: Record<string, Record<string, SdkHostFunction>> = {};
  for (const { theirs: [ns, name, f] } of list) (theirs[ns] ??= {})[name] = f;
  return { ours: list.map((x) => x.ours), theirs };
}

async function theirs(wasm: Uint8Array, opts: SideOptions = {}): Promise<Side> {
  const lines: string[] = [];
  const logger = Object.fromEntries(
    ["trace", "debug", "info", "warn", "error"].map((level) => [
      level,
      (m: string) => lines.push(`${level}|${m}`),
    ]),
  ) as unknown as SdkOptions["logger"];
  const plugin = await createPlugin({
    wasm: [{ data: wasm }],
    config: CONFIG,
  }, {
    allowedHosts: opts.http?.hostnames ?? [],
    useWasi: false,
    runInWorker: false,
    logger,
    logLevel: opts.logLevel ?? "info",
    functions: opts.functions?.theirs ?? {},
    allowHttpResponseHeaders: opts.httpHeaders ?? false,
  });
  return {
    async call(fn, input) {
      try {
        return outputOf((await plugin.call(fn, input))?.bytes());
      } catch (e) {
        return classifyTheirs(e);
      }
    },
    logs: () => lines.slice(),
    close: () => plugin.close(),
  };
}

let seq = 0;

async function ours(wasm: Uint8Array, opts: SideOptions = {}): Promise<Side> {
  const name = `extism-diff-${++seq}`;
  const logs = new LogBuffer({ capacity: 1000 });
  const permissions = opts.http?.grants ?? [];
  const grants = new MemoryGrantStore();
  await grants.set(name, permissions);
  const host = createGuardedHostAPI({
    plugin: name,
    requested: permissions,
    grants,
    services: {
      config: new ConfigStore({ values: {}, plugins: { [name]: CONFIG } }),
      http: createEgressClient({ timeoutMs: 5000 }),
    },
    logs,
  });
  const plugin = await loadExtismPlugin(wasm, {
    registration: { name, version: "1.0.0", routes: [] },
    functions: opts.functions?.ours ?? [],
    logLevel: opts.logLevel ?? "info",
  });
  await plugin.init(host, { name, quarantine: () => {} });
  return {
    async call(fn, input) {
      try {
        return outputOf(
          await plugin.call(
            fn,
            input,
            createCallContext({ timeoutMs: 10_000 }),
          ),
        );
      } catch (e) {
        return classifyOurs(e);
      }
    },
    // getByPlugin answers newest first.
    logs: () =>
      logs.getByPlugin(name).reverse().map((
        e: { level: LogLevel; message: string },
      ) => `${e.level}|${e.message}`),
    async close() {
      await plugin.shutdown();
      host.close();
    },
  };
}

/** One call of a scenario: its function and input. */
interface Step {
  fn: string;
  input: string | Uint8Array;
  /**
   * Set when the hosts differ on purpose: why, and what ours must answer
   * instead (the JS SDK's answer is still printed).
   */
  differs?: { why: string; ours: (o: Outcome) => void };
  /** Replaces the default comparison (for answers with volatile parts). */
  compare?: (theirs: Outcome, ours: Outcome) => void;
}

/** Compares two outcomes: same kind; same bytes, or the same guest message. */
function assertSame(label: string, a: Outcome, b: Outcome): void {
  assert.equal(
    b.kind,
    a.kind,
    `${label}: Extism JS SDK ${JSON.stringify(show(a))}, ours ${
      JSON.stringify(show(b))
    }`,
  );
  if (a.kind === "output" && b.kind === "output") {
    assert.deepEqual(b.output, a.output, `${label}: outputs differ`);
  } else if (a.kind === "plugin-error" && b.kind === "plugin-error") {
    assert.equal(b.message, a.message, `${label}: guest error messages differ`);
  } else if (a.kind === "trap" && b.kind === "trap") {
    // The JS SDK surfaces V8's trap text; ours must name the same trap.
    const reason = /unreachable|out of bounds/.exec(a.message)?.[0];
    if (reason) {
      assert.match(
        b.message.replaceAll("_", " "),
        new RegExp(reason, "i"),
        `${label}: trap reason`,
      );
    }
  }
}

function show(o: Outcome): unknown {
  return o.kind === "output"
    ? {
      output: o.output === null ? null : dec.decode(new Uint8Array(o.output)),
    }
    : o;
}

/** Runs `steps` through both hosts in order, comparing each call. */
async function differential(
  label: string,
  wasm: Uint8Array,
  steps: Step[],
  opts: SideOptions = {},
): Promise<{ theirs: Side; ours: Side }> {
  const a = await theirs(wasm, opts);
  const b = await ours(wasm, opts);
  try {
    for (const [i, step] of steps.entries()) {
      const input = typeof step.input === "string"
        ? enc.encode(step.input)
        : step.input;
      const ta = await a.call(step.fn, input);
      const tb = await b.call(step.fn, input);
      const where = `${label} #${i} ${step.fn}(${
        JSON.stringify(dec.decode(input)).slice(0, 60)
      })`;
      if (step.differs) {
        console.log(
          `${where}: differs on purpose (${step.differs.why}); JS SDK ${
            JSON.stringify(show(ta))
          }, ours ${JSON.stringify(show(tb))}`,
        );
        step.differs.ours(tb);
      } else if (step.compare) {
        step.compare(ta, tb);
      } else {
        assertSame(where, ta, tb);
      }
    }
  } catch (e) {
    await a.close();
    await b.close();
    throw e;
  }
  return { theirs: a, ours: b };
}

async function run(
  label: string,
  wasm: Uint8Array,
  steps: Step[],
  opts: SideOptions = {},
): Promise<void> {
  const sides = await differential(label, wasm, steps, opts);
  await sides.theirs.close();
  await sides.ours.close();
}

const read = (path: string) => Deno.readFileSync(path);
const hundred = "x".repeat(100);
const binary = Uint8Array.from({ length: 300 }, (_, i) => (i * 7 + 3) & 255);

Deno.test("AS PDK greet: input to output, bytes unchanged, empty input, no output, a missing export", async () => {
  await run("as/greet", read(asFixture("greet")), [
    { fn: "greet", input: "world" },
    { fn: "greet", input: "" },
    { fn: "greet", input: "wörld ✓ 🐐" },
    { fn: "greet_pdk", input: "world" },
    { fn: "echo", input: hundred },
    { fn: "echo", input: binary },
    { fn: "echo", input: "" },
    { fn: "echo", input: "a".repeat(70_000) },
    { fn: "length", input: binary },
    { fn: "nothing", input: "ignored" },
    { fn: "no_such_export", input: "" },
    {
      // The PDK's outputString sizes its block by UTF-16 units (13 for
      // "Hello, wörld!"), then stores the 14 UTF-8 bytes past the block's
      // end.
      fn: "greet_pdk",
      input: "wörld",
      differs: {
        why: "the JS SDK bounds every access by its block (a RangeError " +
          "fails the call); ours, like Extism's Rust kernel, bounds them by " +
          "the kernel memory, so the call succeeds with the block's 13 bytes",
        ours: (o) => assert.deepEqual(show(o), { output: "Hello, wörld" }),
      },
    },
    // …and the plugin keeps working afterwards.
    { fn: "greet", input: "again" },
  ]);
});

Deno.test("AS PDK count_vowels: JSON output, config_get, vars kept across calls and removed", async () => {
  await run("as/count_vowels", read(asFixture("count_vowels")), [
    { fn: "count_vowels", input: "Hello, World!" },
    { fn: "count_vowels", input: "aeiou AEIOU" },
    { fn: "count_vowels", input: "" },
    { fn: "config", input: "thing" },
    { fn: "config", input: "other" },
    { fn: "config", input: "missing-key" },
    { fn: "reset", input: "" },
    { fn: "count_vowels", input: "e" },
  ]);
});

Deno.test("AS PDK errors: error_set with a non-zero return, error_set with 0, traps", async () => {
  await run("as/errors", read(asFixture("errors")), [
    { fn: "fail", input: "x" },
    { fn: "fail", input: "ünïcode" },
    { fn: "fail_zero", input: "" },
    {
      fn: "code",
      input: "0",
    },
    {
      fn: "code",
      input: "7",
      differs: {
        why:
          "the JS SDK ignores an export's return code and answers the output; " +
          "a non-zero return without error_set is a failure for ours, as in " +
          "Extism's Rust runtime, and must name the code",
        ours: (o) => {
          assert.notEqual(
            o.kind,
            "output",
            "a non-zero return is not a success",
          );
          assert.match((o as { message: string }).message, /\b7\b/);
        },
      },
    },
    {
      fn: "throws",
      input: "t",
      differs: {
        why: "the guest set an error (AssemblyScript's abort) and then " +
          "trapped: the JS SDK reports the trap (unreachable); ours, like " +
          "Extism's Rust runtime, reports the guest's message",
        ours: (o) => {
          assert.equal(o.kind, "plugin-error");
          assert.match(
            (o as { message: string }).message,
            /^abort: thrown: t at errors\/plugin\.ts:\d+:\d+$/,
          );
        },
      },
    },
    { fn: "trap", input: "" },
    { fn: "oob", input: "" },
    // The plugin still answers after its traps.
    { fn: "fail", input: "after" },
  ]);
});

Deno.test("AS PDK log: one line per level, filtered at the level given, get_log_level", async () => {
  for (const level of ["debug", "warn"] as const) {
    const sides = await differential(
      `as/log@${level}`,
      read(asFixture("log")),
      [{ fn: "log_all", input: "m" }],
      { logLevel: level },
    );
    try {
      // Our log has no trace level: a trace line would be kept as debug.
      assert.deepEqual(sides.ours.logs(), sides.theirs.logs(), level);
      assert.ok(sides.theirs.logs().length > 0);
    } finally {
      await sides.theirs.close();
      await sides.ours.close();
    }
  }
});

Deno.test("AS PDK host_fn: a user host function under extism:host/user", async () => {
  await run("as/host_fn", read(asFixture("host_fn")), [
    { fn: "call_host", input: "Bob" },
    { fn: "call_host", input: "" },
    { fn: "call_host", input: "ünï ✓" },
  ], {
    functions: bothForms([
      stringFunction("hello_world", (s) => `Hello, ${s}!`),
    ]),
  });
});

Deno.test("AS PDK http: http_request and http_status_code against a real loopback server; a host not allowed", async () => {
  const seen: string[] = [];
  const srv = Deno.serve(
    { hostname: "127.0.0.1", port: 0, onListen() {} },
    async (req) => {
      const body = await req.text();
      seen.push(`${req.method} ${new URL(req.url).pathname} ${body}`);
      const status = new URL(req.url).pathname === "/missing" ? 404 : 201;
      return new Response(
        `${req.method} ${new URL(req.url).pathname} ${body}`,
        {
          status,
        },
      );
    },
  );
  const base = `http://127.0.0.1:${srv.addr.port}`;
  try {
    await run("as/http", read(asFixture("http")), [
      {
        fn: "request",
        input: JSON.stringify({ url: `${base}/a`, method: "POST" }),
      },
      { fn: "request", input: JSON.stringify({ url: `${base}/b` }) },
      { fn: "request", input: JSON.stringify({ url: `${base}/missing` }) },
      {
        fn: "request",
        input: JSON.stringify({ url: "http://example.invalid/x" }),
      },
    ], {
      // Our egress refuses loopback unless a grant names it (an Extism
      // allowed_hosts entry "127.0.0.1" maps to such a grant); the JS SDK
      // matches the hostname only.
      http: {
        hostnames: ["127.0.0.1"],
        grants: [`http:127.0.0.1:${srv.addr.port}`],
      },
    });
    // Each request reached the server once per host: none were refused.
    assert.deepEqual(seen.sort(), [
      "GET /b ",
      "GET /b ",
      "GET /missing ",
      "GET /missing ",
      "POST /a posted-by-plugin",
      "POST /a posted-by-plugin",
    ]);
  } finally {
    await srv.shutdown();
  }
});

const wat = (x: string) => read(new URL(`${x}/plugin.wasm`, WAT).pathname);
const u64le = (n: number) => {
  const b = new Uint8Array(8);
  new DataView(b.buffer).setBigUint64(0, BigInt(n), true);
  return [...b];
};

// The runtime engineer's WAT fixtures. Not run here: wat/hostile (kernel and
// memory bombs: the hosts' limits differ by design, and the JS SDK cannot
// stop its `spin` in-thread), wat/import-all and wat/lifecycle (they import
// WASI, which the JS SDK does not offer on Deno, and import-all a function
// no host has).

Deno.test("WAT basic: kernel round trips, errors, config, vars, logs", async () => {
  const sides = await differential("wat/basic", wat("basic"), [
    { fn: "echo", input: hundred },
    { fn: "echo", input: binary },
    { fn: "echo", input: "" },
    {
      fn: "roundtrip",
      input: "hello",
      differs: {
        why: "length() of an offset inside a block: the JS SDK masks the " +
          "offset to its block and answers the block's length (10); " +
          "Extism's Rust kernel, and ours, answer 0 for a non-start offset",
        ours: (o) =>
          assert.deepEqual(
            o.kind === "output"
              ? [...new Uint32Array(new Uint8Array(o.output!).buffer)]
              : o,
            [10, 10, 0, 1, 1, 1, "h".charCodeAt(0), 0],
          ),
      },
    },
    // No input: input_offset has no block to point at in either host.
    { fn: "roundtrip", input: "" },
    { fn: "fail", input: "" },
    {
      fn: "fail_code",
      input: "",
      differs: {
        why: "the JS SDK ignores an export's return code (see as/errors)",
        ours: (o) => assert.match((o as { message: string }).message, /\b7\b/),
      },
    },
    {
      fn: "error_cleared",
      input: "",
      differs: {
        why: "error_set(0) clears the error in Extism's Rust kernel and in " +
          "ours; the JS SDK takes offset 0 for its null block and fails the " +
          'call with "Plugin-originated error: \\0"',
        ours: (o) => assert.deepEqual(o, { kind: "output", output: [1, 1] }),
      },
    },
    { fn: "config", input: "thing" },
    { fn: "config", input: "missing-key" },
    { fn: "counter", input: "" },
    {
      fn: "counter",
      input: "",
      differs: {
        why: "the JS SDK's var_get frees the caller's key block, so this " +
          "fixture's var_set with the same key is dropped (logged: " +
          '"attempted to set variable using invalid key address") and the ' +
          "counter stays at 1; Extism's Rust kernel and ours leave the " +
          "guest's block alone, and the counter counts",
        ours: (o) => assert.deepEqual(o, { kind: "output", output: u64le(2) }),
      },
    },
    { fn: "counter_reset", input: "" },
    { fn: "counter", input: "" },
    { fn: "var_big", input: "abc" },
    { fn: "logs", input: "" },
    { fn: "no_output", input: "" },
  ], {
    logLevel: "debug",
    // The JS SDK's kernel has no `reset` (Extism's Rust kernel has); it gets
    // a stand-in that throws, so `reset_all`, the one export calling it, is
    // left out, and linking works.
    functions: {
      ours: [],
      theirs: {
        "extism:host/env": {
          reset: () => {
            throw new Error("reset is not in the JS SDK");
          },
        },
      },
    },
  });
  try {
    // The guest's own lines (each host also logs about its faults: the JS
    // SDK its dropped var_set, ours the kernel fault of roundtrip("")).
    const guest = (lines: string[]) => lines.filter((l) => / line$/.test(l));
    assert.deepEqual(guest(sides.ours.logs()), guest(sides.theirs.logs()));
    assert.equal(guest(sides.ours.logs()).length, 4);
  } finally {
    await sides.theirs.close();
    await sides.ours.close();
  }
});

Deno.test("WAT user: string, json, number and bytes host functions, another namespace", async () => {
  const mixOurs: ExtismHostFunction = {
    name: "mix",
    params: ["i64", "i32", "f64"],
    results: ["i64"],
    handler: (_ctx, a, b, c) =>
      (a as bigint) + BigInt(b as number) +
      BigInt(Math.round((c as number) * 10)),
  };
  const sumOurs: ExtismHostFunction = {
    name: "sum",
    params: ["json"],
    results: ["json"],
    handler: (_ctx, v) => ({ sum: (v as number[]).reduce((x, y) => x + y, 0) }),
  };
  const reverseOurs: ExtismHostFunction = {
    name: "reverse",
    namespace: "custom",
    params: ["bytes"],
    results: ["bytes"],
    handler: (_ctx, v) => (v as Uint8Array).slice().reverse(),
  };
  const greet = stringFunction("greet", (s) => `hi ${s}`);
  await run("wat/user", wat("user"), [
    { fn: "greet", input: "Ann" },
    { fn: "sum", input: "[1,2,3.5]" },
    { fn: "mix", input: "" },
    { fn: "reverse", input: binary },
  ], {
    functions: {
      ours: [greet.ours, sumOurs, mixOurs, reverseOurs],
      theirs: {
        "extism:host/user": {
          greet: greet.theirs[2],
          sum: (cc: ExtismCallContext, off: bigint) =>
            cc.store(JSON.stringify({
              sum: (cc.read(off)!.json() as number[]).reduce(
                (x, y) => x + y,
                0,
              ),
            })),
          mix: (_cc: ExtismCallContext, a: bigint, b: number, c: number) =>
            a + BigInt(b) + BigInt(Math.round(c * 10)),
        },
        custom: {
          reverse: (cc: ExtismCallContext, off: bigint) =>
            cc.store(cc.read(off)!.bytes().slice().reverse()),
        },
      },
    },
  });
});

Deno.test("WAT http: fetch, post, status and response headers against a real loopback server", async () => {
  const srv = Deno.serve(
    { hostname: "127.0.0.1", port: 0, onListen() {} },
    async (req) => {
      const path = new URL(req.url).pathname;
      return new Response(`${req.method} ${path} ${await req.text()}`, {
        status: path === "/teapot" ? 418 : 200,
        headers: { "x-fixture": "yes" },
      });
    },
  );
  const base = `http://127.0.0.1:${srv.addr.port}`;
  const req = (path: string, method = "GET") =>
    JSON.stringify({ url: `${base}${path}`, method });
  try {
    await run("wat/http", wat("http"), [
      { fn: "fetch", input: req("/a") },
      { fn: "post", input: req("/b", "POST") },
      { fn: "status", input: req("/teapot") },
      { fn: "status", input: req("/ok") },
      {
        fn: "headers",
        input: req("/h"),
        // Compared as JSON without `date` (a clock reading); hop-by-hop
        // headers such as `connection` reach neither plugin.
        compare: (a, b) => {
          const parse = (o: Outcome) => {
            assert.equal(o.kind, "output", JSON.stringify(show(o)));
            const h = JSON.parse(
              dec.decode(new Uint8Array((o as { output: number[] }).output)),
            );
            delete h.date;
            return h;
          };
          assert.deepEqual(parse(b), parse(a));
        },
      },
    ], {
      http: {
        hostnames: ["127.0.0.1"],
        grants: [`http:127.0.0.1:${srv.addr.port}`],
      },
      httpHeaders: true,
    });
  } finally {
    await srv.shutdown();
  }
});

/**
 * Runs `code` (a module body) in a child Deno process, killed after
 * `timeoutMs`; returns its stdout lines parsed as JSON and whether it was
 * killed.
 */
async function runChild(
  code: string,
  timeoutMs = 60_000,
  allowFailure = false,
): Promise<{ lines: unknown[]; killed: boolean; stderr: string }> {
  const stop = new AbortController();
  const timer = setTimeout(() => stop.abort(), timeoutMs);
  try {
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
      signal: stop.signal,
    }).output();
    const killed = stop.signal.aborted;
    if (!killed && !allowFailure) {
      assert.equal(out.code, 0, dec.decode(out.stderr));
    }
    const lines = dec.decode(out.stdout).trim().split("\n")
      .filter((l) => l.startsWith("{")).map((l) => JSON.parse(l));
    return { lines, killed, stderr: dec.decode(out.stderr) };
  } finally {
    clearTimeout(timer);
  }
}

Deno.test("a runaway Extism plugin stops at its deadline in ours, no thread spins afterwards; the JS SDK's worker keeps spinning (measured)", async () => {
  const mod = (p: string) => JSON.stringify(new URL(p, import.meta.url).href);
  const wasm = JSON.stringify(asFixture("loop"));
  // Ours, in a child process so that only this scenario's threads count.
  const child = await runChild(`
    import { loadExtismPlugin } from ${mod("../runtimes/extism/mod.ts")};
    import { createCallContext } from ${mod("../host/model/plugin.ts")};
    import { maxThreadTicks } from ${mod("./helpers/thread_ticks.ts")};
    const p = await loadExtismPlugin(${wasm}, {
      registration: { name: "extism-loop", version: "1.0.0", routes: [] },
      graceMs: 10000,
    });
    await p.init({ log: () => {} }, { name: "extism-loop", quarantine: () => {} });
    const t0 = Date.now();
    let error = "none";
    try { await p.call("spin", null, createCallContext({ timeoutMs: 300 })); }
    catch (e) { error = e.name; }
    const stoppedMs = Date.now() - t0;
    const after = new TextDecoder().decode(await p.call("quick", null, createCallContext()));
    const killed = p.killedWorkers;
    const maxTicks = await maxThreadTicks();
    await p.shutdown();
    console.log(JSON.stringify({ error, after, killed, stoppedMs, maxTicks }));
    Deno.exit(0);
  `);
  assert.equal(child.killed, false, "our child process did not finish");
  const result = child.lines.at(-1) as {
    error: string;
    after: string;
    killed: number;
    stoppedMs: number;
    maxTicks: number;
  };
  console.log(`ours: ${JSON.stringify(result)}`);
  assert.equal(result.error, "PluginTimeoutError");
  assert.equal(result.after, "ok");
  // Stopped by its own instrumented check, not by terminating the worker.
  assert.equal(result.killed, 0);
  // A spinning thread gets at least ~15 % of a core even on this loaded
  // 2-core box (30+ ticks in 2 s); an idle one gets ~0.
  assert.ok(
    result.maxTicks < 10,
    `a thread used ${result.maxTicks} ticks (1/100 s) in 2 s: still spinning`,
  );

  // The JS SDK, measured for the record (worker mode is its only way to
  // time out; in-thread it cannot be interrupted at all).
  // Each stage prints a line: the child can hang (seen here in 2 of 3 runs:
  // the SDK's respawn of the worker times out too, it logs "Plugin will
  // hang" and the timed-out call never settles), so it is killed after 15 s
  // and what it printed so far is the measurement.
  const sdk = await runChild(
    `
    import createPlugin from "@extism/extism";
    import { maxThreadTicks } from ${mod("./helpers/thread_ticks.ts")};
    // Its respawn after a timeout can itself time out, unhandled.
    globalThis.addEventListener("unhandledrejection", (e) => {
      e.preventDefault();
      console.log(JSON.stringify({ unhandled: String(e.reason?.message ?? e.reason) }));
    });
    const p = await createPlugin({ wasm: [{ data: Deno.readFileSync(${wasm}) }] },
      // Deno's node:worker_threads refuses the SDK's default execArgv.
      { useWasi: false, runInWorker: true, timeoutMs: 300, nodeWorkerArgs: { execArgv: [] } });
    console.log(JSON.stringify({ created: true }));
    const t0 = Date.now();
    let error = "not settled after 5 s";
    let stoppedMs = -1;
    const call = p.call("spin", "").then(() => { error = "none"; },
      (e) => { error = String(e?.message ?? e); }).finally(() => stoppedMs = Date.now() - t0);
    await Promise.race([call, new Promise((r) => setTimeout(r, 5000))]);
    console.log(JSON.stringify({ error, stoppedMs }));
    const maxTicks = await maxThreadTicks();
    console.log(JSON.stringify({ error, stoppedMs, maxTicks }));
    let after = "not settled after 5 s";
    await Promise.race([p.call("quick", "").then((o) => { after = o?.text() ?? "null"; },
      (e) => { after = "error: " + e.message; }), new Promise((r) => setTimeout(r, 5000))]);
    console.log(JSON.stringify({ error, stoppedMs, maxTicks, after }));
    Deno.exit(0);
  `,
    15_000,
    true,
  );
  console.log(
    `Extism JS SDK (runInWorker, timeoutMs 300): ${JSON.stringify(sdk.lines)}${
      sdk.killed ? " (then hung: killed after 15 s)" : ""
    }; its stderr: ${
      JSON.stringify(
        sdk.stderr.split("\n").filter((l) => l.includes("EXTISM")),
      )
    }`,
  );
  // Not asserted: what the SDK does is the record above.
});
