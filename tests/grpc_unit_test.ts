// Unit tests of the gRPC runtime's pure parts: handshake parsing, hclog
// parsing, line splitting, Deno flag merging, the registration codec, the
// launch command and the SDK's npm pins.

import assert from "node:assert/strict";

const assertEquals = (a: unknown, b: unknown, msg = "") =>
  assert.deepStrictEqual(a, b, msg);
function assertThrows(
  fn: () => unknown,
  // deno-lint-ignore no-explicit-any
  type: new (...args: any[]) => Error,
): Error {
  try {
    fn();
  } catch (e) {
    assert.ok(e instanceof type, `expected ${type.name}, got ${e}`);
    return e;
  }
  throw new Error(`expected ${type.name} to be thrown`);
}
import {
  HandshakeLineError,
  parseHandshake,
  parseLogLine,
  UntrustedExecutableError,
} from "../runtimes/grpc/mod.ts";
import { readLines } from "../runtimes/grpc/log_lines.ts";
import {
  buildLaunch,
  DenoFlagError,
  mergeDenoFlags,
  SDK_NPM_IMPORTS,
} from "../runtimes/grpc/launch.ts";
import {
  registrationFromPb,
  registrationToPb,
} from "../runtimes/grpc/registration.ts";
import { loadProto } from "../runtimes/grpc/proto.ts";
import type { PbRegistration } from "../runtimes/grpc/proto.ts";
import type { GKRegistration } from "../host/model/manifest.ts";

Deno.test("parseHandshake accepts go-plugin 1.0's line with a trailing empty cert", () => {
  assertEquals(parseHandshake("1|1|unix|/tmp/plugin123|grpc|", [1]), {
    appVersion: 1,
    network: "unix",
    address: "/tmp/plugin123",
    protocol: "grpc",
  });
  assertEquals(
    parseHandshake("1|1|unix|/tmp/p.sock|grpc\n", [1]).address,
    "/tmp/p.sock",
  );
  assertEquals(
    parseHandshake("1|1|tcp|127.0.0.1:4321|grpc", [1]).network,
    "tcp",
  );
});

Deno.test("parseHandshake refuses every malformed or unsupported line with a reason", () => {
  const cases: [string, string][] = [
    ["hello world", "malformed"],
    ["1|1|unix|/x", "malformed"],
    ["2|1|unix|/x|grpc", "version"],
    ["1|2|unix|/x|grpc", "version"],
    ["1|x|unix|/x|grpc", "version"],
    ["1|1|unix|/x|netrpc", "protocol"],
    ["1|1|unix|/x|", "protocol"],
    ["1|1|unix|/x|grpc|MIIBCERT", "protocol"],
    ["1|1|unix|/x|grpc||true", "protocol"],
    ["1|1|unix|relative.sock|grpc", "network"],
    ["1|1|tcp|10.0.0.1:80|grpc", "network"],
    ["1|1|tcp|127.0.0.1:99999|grpc", "network"],
    ["1|1|udp|127.0.0.1:1|grpc", "network"],
  ];
  for (const [line, reason] of cases) {
    const e = assertThrows(() => parseHandshake(line, [1]), HandshakeLineError);
    assertEquals((e as HandshakeLineError).reason, reason, line);
  }
});

Deno.test("parseLogLine reads hclog JSON and treats other lines as info", () => {
  assertEquals(
    parseLogLine(
      '{"@level":"error","@message":"boom","@module":"hello-go","@timestamp":"2026-01-01T00:00:00Z","n":3}',
    ),
    { level: "error", message: "boom", fields: { module: "hello-go", n: 3 } },
  );
  assertEquals(
    parseLogLine('{"@level":"trace","@message":"t"}').level,
    "debug",
  );
  assertEquals(parseLogLine('{"@level":"WARN","@message":"w"}').level, "warn");
  assertEquals(parseLogLine("panic: oh no"), {
    level: "info",
    message: "panic: oh no",
    fields: {},
  });
  assertEquals(parseLogLine("{not json").message, "{not json");
});

Deno.test("readLines splits, caps long lines and keeps a last partial line", async () => {
  const chunks = ["ab", "c\nde", "f\n", "x".repeat(50), "y\nlast"];
  const stream = ReadableStream.from(
    chunks.map((c) => new TextEncoder().encode(c)),
  );
  const lines: string[] = [];
  await readLines(stream, (l) => {
    lines.push(l);
  }, { maxLineBytes: 10 });
  assertEquals(lines, ["abc", "def", "xxxxxxxxxx …[truncated]", "last"]);
});

Deno.test("mergeDenoFlags merges grants into one flag each and refuses dangerous ones", () => {
  assertEquals(
    mergeDenoFlags(
      { "--allow-net": ["unix:/s/p.sock"], "--allow-read": ["/s"] },
      [
        "--allow-net=api.example.com,x.org",
        "--allow-read=/data",
        "--deny-net=10.0.0.1",
      ],
    ),
    [
      "--allow-net=unix:/s/p.sock,api.example.com,x.org",
      "--allow-read=/s,/data",
      "--deny-net=10.0.0.1",
    ],
  );
  // What permissions/deno_flags.ts emits is accepted.
  assertEquals(
    mergeDenoFlags({ "--allow-read": ["/s"] }, [
      "--no-prompt",
      "--no-config",
      "--allow-read=/code",
      "--deny-write=/d/deno.json",
    ]),
    [
      "--allow-read=/s,/code",
      "--no-prompt",
      "--no-config",
      "--deny-write=/d/deno.json",
    ],
  );
  assertEquals(
    mergeDenoFlags({ "--allow-net": ["unix:/a"] }, ["--allow-net"]),
    [
      "--allow-net",
    ],
  );
  for (
    const bad of [
      "-A",
      "--allow-all",
      "--allow-env",
      "--allow-run=id",
      "--allow-ffi",
      "--allow-sys",
    ]
  ) {
    assertThrows(() => mergeDenoFlags({}, [bad]), DenoFlagError);
  }
});

Deno.test("buildLaunch: TS plugins get least privilege, native ones must be trusted", () => {
  const base = {
    socketDir: "/t/plugin",
    pluginSocket: "/t/plugin/plugin.sock",
    hostSocket: "/t/host.sock",
    importMap: "/t/import_map.json",
    denoDir: "/cache/deno",
    dataDir: "/data/p",
  };
  const ts = buildLaunch({ ...base, entry: "/plugins/p/plugin.ts" });
  assertEquals(ts.kind, "deno");
  assertEquals(ts.cwd, "/plugins/p");
  assertEquals(Object.keys(ts.env).sort(), [
    "DENO_DIR",
    "DENO_NO_PACKAGE_JSON",
    "DENO_NO_UPDATE_CHECK",
    "GOATKIT_PLUGIN",
    "NO_COLOR",
    "PLUGIN_PROTOCOL_VERSIONS",
  ]);
  assertEquals(ts.env.GOATKIT_PLUGIN, "goatkit-v1");
  assert(ts.args.includes("--no-prompt"));
  assert(ts.args.includes("--no-config"));
  assert(
    ts.args.includes(
      "--allow-net=unix:/t/plugin/plugin.sock,unix:/t/host.sock",
    ),
  );
  assert(
    ts.args.some((a) =>
      a.startsWith("--allow-write=/t/plugin,/data/p,/t/host.sock")
    ),
  );
  for (const a of ts.args) {
    assert(!/^--allow-(all|run|ffi|sys|import)|^-A$/.test(a), a);
    if (a.startsWith("--allow-env")) {
      assert(a.includes("="), "env must be scoped");
    }
  }
  assertThrows(
    () => buildLaunch({ ...base, entry: "/plugins/p/plugin-bin" }),
    UntrustedExecutableError,
  );
  const native = buildLaunch({
    ...base,
    entry: "/plugins/p/plugin-bin",
    trustedExecutables: ["/plugins/p/plugin-bin"],
  });
  assertEquals(native.kind, "native");
  assertEquals(native.env.TMPDIR, "/t/plugin");
  assertEquals(native.env.GOATKIT_PLUGIN, "goatkit-v1");
  assert(!("PATH" in native.env) && !("HOME" in native.env));
});

Deno.test("registration survives the protobuf round trip", () => {
  const m: GKRegistration = {
    name: "hello-grpc",
    version: "1.0.0",
    description: "d",
    routes: [{ method: "GET", path: "/x", handler: "h", middleware: ["auth"] }],
    menu_items: [{
      id: "m",
      label: "M",
      path: "/m",
      location: "admin",
      order: 0,
      children: [{ id: "c", label: "C", path: "/c", location: "admin" }],
    }],
    widgets: [{
      id: "w",
      title: "W",
      handler: "render_widget",
      location: "dashboard",
      size: "medium",
      refreshable: false,
      refresh_sec: 60,
    }],
    jobs: [{ id: "j", handler: "h", schedule: "0 * * * *", enabled: true }],
    i18n: {
      namespace: "hello",
      languages: ["en"],
      translations: { en: { hi: "Hi" } },
    },
    error_codes: [{ code: "bad", message: "Bad", http_status: 400 }],
    permissions: ["log"],
  };
  const { GKPlugin } = loadProto();
  const def = GKPlugin.service.GKRegister;
  const wire = def.responseSerialize(registrationToPb(m));
  const back = def.responseDeserialize(wire) as PbRegistration;
  assertEquals(registrationFromPb(back), m);
  // Without manifest_json, the typed fields carry it (Go plugins).
  const typed = def.responseDeserialize(
    def.responseSerialize({
      ...registrationToPb(m),
      manifest_json: new Uint8Array(),
    }),
  ) as PbRegistration;
  assertEquals(registrationFromPb(typed), m);
});

Deno.test("the SDK's npm pins match deno.json", async () => {
  const config = JSON.parse(
    await Deno.readTextFile(new URL("../deno.json", import.meta.url)),
  );
  for (const [name, spec] of Object.entries(SDK_NPM_IMPORTS)) {
    assertEquals(config.imports[name], spec, name);
  }
});

Deno.test("callbackContext binds a callback only to an open call the host issued", async () => {
  const grpc = await import("@grpc/grpc-js");
  const { callbackContext, CallbackRefusedError, statusForError } =
    await import("../runtimes/grpc/host_service.ts");
  const { PluginTimeoutError } = await import("../host/model/errors.ts");
  const live = {
    chain: ["p"],
    deadline: Date.now() + 60_000,
    signal: new AbortController().signal,
  };
  const ended = new AbortController();
  ended.abort(new Error("call ended"));
  const calls: Record<string, typeof live> = {
    live,
    expired: { ...live, deadline: Date.now() - 1 },
    timedOut: {
      ...live,
      signal: AbortSignal.abort(new PluginTimeoutError("p", 10)),
    },
    ended: { ...live, signal: ended.signal },
  };
  const own = { chain: ["p"], deadline: 0, signal: live.signal };
  const refused: string[] = [];
  const binding = {
    host: () => undefined,
    openCall: (id: string) => calls[id],
    ownContext: () => own,
    name: () => "p",
    refused: (e: Error) => refused.push(e.message),
  };
  const md = (...ids: string[]) => {
    const m = new grpc.Metadata();
    for (const id of ids) m.add("gk-call-id", id);
    return m;
  };
  const refusal = (method: string, m: InstanceType<typeof grpc.Metadata>) => {
    const e = assertThrows(
      () => callbackContext(binding, method, m),
      CallbackRefusedError,
    ) as InstanceType<typeof CallbackRefusedError>;
    assertEquals(statusForError(e), e.code);
    return e;
  };

  assert.equal(callbackContext(binding, "DBQuery", md("live")), live);
  assert.equal(callbackContext(binding, "Log", md()), own);
  assert.equal(callbackContext(binding, "Log", md("")), own);
  assert.equal(
    callbackContext(binding, "Log", md("live", "live")),
    live,
  );
  const none = refusal("DBQuery", md());
  assert.equal(none.code, grpc.status.FAILED_PRECONDITION);
  assert.equal(
    none.message,
    'Cannot run host callback "DBQuery" of plugin "p": it names no call ("gk-call-id" metadata missing); outside a call the host issued, only Log is accepted',
  );
  for (const m of [md("nope"), md("x".repeat(5000))]) {
    const e = refusal("CallPlugin", m);
    assert.equal(e.code, grpc.status.PERMISSION_DENIED);
    assert.match(e.message, /is not an open call of this plugin/);
    assert.ok(e.message.length < 400, "the id is shortened in the message");
  }
  // A Log naming a call must name a real one too.
  assert.equal(
    refusal("Log", md("nope")).code,
    grpc.status.PERMISSION_DENIED,
  );
  for (const m of [md("live", "nope"), md("live, nope")]) {
    const e = refusal("CacheGet", m);
    assert.equal(e.code, grpc.status.PERMISSION_DENIED);
    assert.match(e.message, /more than one call/);
  }
  assert.equal(
    refusal("DBExec", md("expired")).code,
    grpc.status.DEADLINE_EXCEEDED,
  );
  assert.equal(
    refusal("DBExec", md("timedOut")).code,
    grpc.status.DEADLINE_EXCEEDED,
  );
  assert.equal(refusal("DBExec", md("ended")).code, grpc.status.CANCELLED);
  // callbackContext itself reports nothing; the service reports refusals.
  assertEquals(refused, []);
});

Deno.test("the GKHost service refuses, audits, and answers at the call's end", async () => {
  const grpc = await import("@grpc/grpc-js");
  const { hostServiceHandlers } = await import(
    "../runtimes/grpc/host_service.ts"
  );
  const { MemoryHostAPI } = await import("../host/testing/memory_host_api.ts");
  const host = new MemoryHostAPI({ config: { k: "v" } });
  // A configGet that never answers on its own.
  host.configGet = () => new Promise(() => {});
  const end = new AbortController();
  const live = {
    chain: ["p"],
    deadline: Date.now() + 60_000,
    signal: end.signal,
  };
  const refused: string[] = [];
  const handlers = hostServiceHandlers({
    host: () => host,
    openCall: (id) => id === "live" ? live : undefined,
    ownContext: () => live,
    name: () => "p",
    refused: (e) => refused.push(e.message),
  });
  const invoke = (method: string, ids: string[], request: unknown) =>
    new Promise<{ code: number; details: string }>((resolve) => {
      const metadata = new grpc.Metadata();
      for (const id of ids) metadata.add("gk-call-id", id);
      const call = {
        metadata,
        request,
        on: () => call,
        removeListener: () => call,
      };
      handlers[method]!(
        call as never,
        ((err: { code: number; details: string } | null) =>
          resolve(err ?? { code: 0, details: "" })) as never,
      );
    });
  const refusedSet = await invoke("CacheSet", [], { key: "x", value: [] });
  assert.equal(refusedSet.code, grpc.status.FAILED_PRECONDITION);
  assertEquals(refused, [refusedSet.details]);
  assert.equal(host.cache.size, 0);
  const pending = invoke("ConfigGet", ["live"], { key: "k" });
  end.abort(new Error("the call returned"));
  const cut = await pending;
  assert.equal(cut.code, grpc.status.CANCELLED);
  assert.equal(cut.details, "the call returned");
});

Deno.test("hostFetch before Init rejects with a HostCallError", async () => {
  const { hostFetch, HostCallError } = await import("../runtimes/grpc/sdk.ts");
  await assert.rejects(
    hostFetch("https://example.com/"),
    (e) => e instanceof HostCallError && e.code === "UNAVAILABLE",
  );
});
