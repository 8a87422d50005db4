// Interop with a real Go plugin built with HashiCorp go-plugin 1.0.1 from
// Debian's packages (fixtures/plugins/hello-go). The binary is built once per
// source hash and cached under the OS temp directory.
//
// Without a Go toolchain the tests are ignored locally; when CI=true they
// fail instead, because CI must run them (`.ci/run` installs golang-go,
// golang-github-hashicorp-go-plugin-dev, golang-google-grpc-dev,
// golang-github-golang-protobuf-1-5-dev, protobuf-compiler, protoc-gen-go,
// protoc-gen-go-grpc).
//
// Sanitizers: off (grpc-js timers, see grpc_runtime_test.ts); processes and
// sockets are checked explicitly.

import assert from "node:assert/strict";
import { Manager } from "../host/manager.ts";
import { MemoryHostAPI } from "../host/testing/memory_host_api.ts";
import { PluginCrashedError } from "../host/model/errors.ts";
import { decodeJson, encodeJson } from "../host/model/plugin.ts";
import {
  buildHelloGo,
  buildHelloGoAll,
  goToolchainAvailable,
} from "../fixtures/plugins/hello-go/build_go.ts";
import {
  loadGrpcPlugin,
  PluginCallError,
  UntrustedExecutableError,
} from "../runtimes/grpc/mod.ts";

const inCi = Deno.env.get("CI") === "true" || Deno.env.get("CI") === "1";
const haveGo = await goToolchainAvailable();
if (!haveGo && inCi) {
  throw new Error(
    "CI must run the Go interop tests, but go/protoc/protoc-gen-go(-grpc) are missing",
  );
}
// Ignored only on a developer machine without Go (see the header comment).
const ignore = !haveGo;
const opts = { ignore, sanitizeOps: false, sanitizeResources: false };

function exists(path: string): boolean {
  try {
    Deno.lstatSync(path);
    return true;
  } catch {
    return false;
  }
}

Deno.test(
  "hello-go (go-plugin 1.0.1): handshake, register, call, host callback, logs, shutdown",
  opts,
  async () => {
    const bin = (await buildHelloGo())!;
    const tempDir = await Deno.makeTempDir({ prefix: "gk-grpc-go-" });
    const hosts = new Map<string, MemoryHostAPI>();
    const manager = new Manager({
      host: (name) => {
        const h = new MemoryHostAPI({
          config: { "app.name": `GoatKit for ${name}` },
        });
        hosts.set(name, h);
        return h;
      },
    });
    const plugin = await loadGrpcPlugin(bin, {
      trustedExecutables: [bin],
      tempDir,
    });
    const pid = plugin.status().pid!;
    const manifest = await manager.register(plugin);
    assert.equal(manifest.name, "hello-go");
    assert.deepEqual(manifest.permissions, [
      "cache:read",
      "cache:write",
      "config:app.*",
    ]);
    assert.deepEqual(
      manager.routes().map((r) => [r.method, r.path, r.handler, r.middleware]),
      [[
        "GET",
        "/api/plugins/hello-go/status",
        "get_status",
        ["auth"],
      ]],
    );
    assert.deepEqual(
      decodeJson(await manager.call("hello-go", "get_status", null)),
      { status: "running", type: "grpc", version: "1.0.0" },
    );
    const args = encodeJson({ payload: "x".repeat(80) });
    assert.deepEqual(await manager.call("hello-go", "echo", args), args);
    await assert.rejects(
      manager.call("hello-go", "nope", null),
      (e) =>
        e instanceof PluginCallError &&
        /unknown function: nope/.test(e.message),
    );
    // Host callbacks from Go: ConfigGet, CacheSet, CacheGet, in the call's context.
    assert.deepEqual(
      decodeJson(
        await manager.call("hello-go", "host_roundtrip", null, {
          language: "fr",
        }),
      ),
      {
        cache: "from go",
        config: "GoatKit for hello-go",
        found: true,
        language: "fr",
      },
    );
    const h = hosts.get("hello-go")!;
    assert.deepEqual(
      h.calls.filter((c) => c.method !== "log").map((
        c,
      ) => [c.method, c.plugin]),
      [["configGet", "hello-go"], ["cacheSet", "hello-go"], [
        "cacheGet",
        "hello-go",
      ]],
    );
    // Init's own Log callback over GKHost:
    assert.ok(h.logs.some((l) => l.message === "hello-go plugin initialized"));
    // go-plugin's hclog JSON on stderr arrives parsed (level, message, fields).
    assert.ok(
      h.logs.some((l) =>
        l.message === "hello-go initialized" && l.level === "info" &&
        l.fields?.host_version !== undefined
      ),
      JSON.stringify(h.logs),
    );
    assert.equal(await plugin.checkHealth(), true);

    // Crash → typed error → restart (GKRegister + Init again) → works.
    await assert.rejects(
      manager.call("hello-go", "crash", null),
      PluginCrashedError,
    );
    assert.deepEqual(
      decodeJson(await manager.call("hello-go", "get_status", null)),
      { status: "running", type: "grpc", version: "1.0.0" },
    );
    const pid2 = plugin.status().pid!;
    assert.notEqual(pid2, pid);
    assert.ok(!exists(`/proc/${pid}`));
    assert.ok(
      h.logs.some((l) =>
        l.level === "error" && /crashing on request/.test(l.message)
      ),
    );

    await manager.shutdownAll();
    assert.ok(!exists(`/proc/${pid2}`), "no process left");
    assert.deepEqual([...Deno.readDirSync(tempDir)], [], "no socket left");
    assert.ok(
      h.logs.some((l) => /hello-go shutting down/.test(l.message)),
      "GKPlugin.Shutdown reached the plugin",
    );
    await Deno.remove(tempDir);
  },
);

Deno.test(
  "hello-go: refused unless trusted; without the cookie it exits with go-plugin's message",
  opts,
  async () => {
    const bin = (await buildHelloGo())!;
    await assert.rejects(loadGrpcPlugin(bin), UntrustedExecutableError);
    // Run directly without the magic cookie: go-plugin's UX guard.
    const out = await new Deno.Command(bin, { clearEnv: true, stdin: "null" })
      .output();
    assert.equal(out.code, 1);
    assert.match(
      new TextDecoder().decode(out.stderr),
      /This binary is a plugin/,
    );
  },
);

Deno.test(
  "hello-go also runs under go-plugin's own Go client (the benchmark anchor)",
  opts,
  async () => {
    const { plugin, gohost } = (await buildHelloGoAll())!;
    const out = await new Deno.Command(gohost, {
      args: [plugin, "200"],
      stdin: "null",
    }).output();
    assert.equal(out.code, 0, new TextDecoder().decode(out.stderr));
    const r = JSON.parse(new TextDecoder().decode(out.stdout));
    assert.ok(r.p50_us > 0 && r.cold_ms > 0, JSON.stringify(r));
  },
);
