// The gRPC runtime with TypeScript plugins (real `deno run` subprocesses
// speaking gRPC over unix sockets) driven through the Manager.
//
// Sanitizers: @grpc/grpc-js keeps internal timers and sockets between tests
// (channel idle timers, subchannel pools) that it releases asynchronously, so
// the op and resource sanitizers are off; each test instead checks that the
// plugin process is gone from /proc and its socket directory removed.

import assert from "node:assert/strict";
import { Manager } from "../host/manager.ts";
import { MemoryHostAPI } from "../host/testing/memory_host_api.ts";
import {
  PermissionDeniedError,
  PluginCrashedError,
  PluginDisabledError,
  PluginTimeoutError,
} from "../host/model/errors.ts";
import type { HostAPI } from "../host/model/host_api.ts";
import { decodeJson, encodeJson } from "../host/model/plugin.ts";
import {
  type GrpcPlugin,
  loadGrpcPlugin,
  type LoadGrpcPluginOptions,
  PluginCallError,
} from "../runtimes/grpc/mod.ts";

const HELLO =
  new URL("../fixtures/plugins/hello-grpc-ts/plugin.ts", import.meta.url)
    .pathname;
const HOSTAPI = new URL(
  "../fixtures/plugins/hostapi-grpc-ts/plugin.ts",
  import.meta.url,
).pathname;

const opts = { sanitizeOps: false, sanitizeResources: false };

function exists(path: string): boolean {
  try {
    Deno.lstatSync(path);
    return true;
  } catch {
    return false;
  }
}

async function assertGone(plugin: GrpcPlugin, pids: number[]) {
  const dir = plugin.hostSocket.replace(/\/host\.sock$/, "");
  for (const pid of pids) {
    assert.ok(!exists(`/proc/${pid}`), `process ${pid} still in /proc`);
  }
  assert.ok(!exists(plugin.hostSocket), "host socket left behind");
  assert.ok(!exists(dir), "socket directory left behind");
  await Promise.resolve();
}

function pidOf(p: GrpcPlugin): number {
  const pid = p.status().pid;
  assert.ok(pid, "plugin has a pid");
  return pid;
}

async function load(entry: string, o: LoadGrpcPluginOptions = {}) {
  return await loadGrpcPlugin(entry, { startTimeoutMs: 20_000, ...o });
}

Deno.test(
  "hello-grpc-ts: register, call, widgets and routes through the Manager, clean shutdown",
  opts,
  async () => {
    const host = new MemoryHostAPI();
    const manager = new Manager({ host });
    const plugin = await load(HELLO);
    assert.equal(plugin.runtime, "grpc");
    const pid = pidOf(plugin);
    const manifest = await manager.register(plugin);
    assert.equal(manifest.name, "hello-grpc");
    assert.deepEqual(manager.routes().map((r) => r.handler), ["get_status"]);
    assert.deepEqual(manager.widgets("dashboard").map((w) => w.id), [
      "hello-grpc-widget",
    ]);
    assert.deepEqual(
      decodeJson(await manager.call("hello-grpc", "get_status", null)),
      { status: "running", type: "grpc", version: "1.0.0" },
    );
    const widget = decodeJson<{ html: string }>(
      await manager.call("hello-grpc", "render_widget", null),
    );
    assert.match(widget!.html, /Hello from gRPC!/);
    await assert.rejects(
      manager.call("hello-grpc", "nope", null),
      (e) =>
        e instanceof PluginCallError &&
        /unknown function: nope/.test(e.message),
    );
    // Init called back into the host (Log), attributed to the plugin.
    assert.ok(
      host.logs.some((l) =>
        l.plugin === "hello-grpc" &&
        l.message === "hello-grpc plugin initialized"
      ),
    );
    assert.equal(manager.status("hello-grpc")?.runtime, "grpc");
    assert.equal(await plugin.checkHealth(), true);
    await manager.unregister("hello-grpc");
    assert.equal(plugin.status().state, "stopped");
    assert.equal(await plugin.checkHealth(), false);
    await assertGone(plugin, [pid]);
  },
);

Deno.test(
  "hostapi-grpc-ts: every GKHost method through the Manager",
  opts,
  async () => {
    const hosts = new Map<string, MemoryHostAPI>();
    const ref: { manager?: Manager } = {};
    const factory = (name: string): HostAPI => {
      const h = new MemoryHostAPI({
        query: (sql, args) => [{ sql, args }],
        exec: () => 7,
        http: (r) => ({
          status: 201,
          body: new TextEncoder().encode(
            `${r.method} ${r.url} ${r.headers?.["x-test"]} ${
              new TextDecoder().decode(r.body ?? new Uint8Array())
            }`,
          ),
        }),
        config: { "app.name": "GoatKit", whoami: name },
        translate: (key, lang, args) => `${key}/${lang}/${args.join(",")}`,
        callPlugin: (ctx, target, fn, args) =>
          ref.manager!.callFrom(name, target, fn, args, { parent: ctx }),
      });
      hosts.set(name, h);
      return h;
    };
    const manager = ref.manager = new Manager({ host: factory });
    await manager.register({
      gkRegister: () => ({ name: "other", version: "1.0.0" }),
      init: async () => {},
      call: (fn, args, ctx) =>
        Promise.resolve(
          encodeJson({ fn, args: decodeJson(args), chain: ctx.chain }),
        ),
      shutdown: async () => {},
    });
    const plugin = await load(HOSTAPI);
    const pid = pidOf(plugin);
    await manager.register(plugin);
    const out = decodeJson<Record<string, unknown>>(
      await manager.call(
        "hostapi-grpc",
        "test",
        encodeJson({ target: "other" }),
        {
          language: "de",
        },
      ),
    )!;
    assert.deepEqual(out.db_query, [{
      sql: "SELECT $1::int AS one",
      args: [1],
    }]);
    assert.equal(out.db_exec, 7);
    assert.equal(out.cache_get, "dGVzdA");
    assert.equal(out.cache_deleted, true);
    assert.deepEqual(out.http_request, {
      status: 201,
      body: "POST https://example.com/api 1 ping",
    });
    assert.equal(out.config_get, "GoatKit");
    assert.equal(out.translate, "hello/de/Ana");
    assert.deepEqual(out.plugin_call, {
      fn: "echo",
      args: { x: 1 },
      chain: ["hostapi-grpc", "other"],
    });
    assert.equal(out.language, "de");
    assert.deepEqual(out.chain, ["hostapi-grpc"]);
    const h = hosts.get("hostapi-grpc")!;
    const methods = new Set(h.calls.map((c) => c.method));
    for (
      const m of [
        "dbQuery",
        "dbExec",
        "cacheGet",
        "cacheSet",
        "cacheDelete",
        "httpRequest",
        "sendEmail",
        "log",
        "configGet",
        "translate",
        "callPlugin",
      ]
    ) assert.ok(methods.has(m as never), `host method ${m} was called`);
    assert.deepEqual(h.emails, [{
      to: "test@example.com",
      subject: "Test",
      body: "Hello",
      html: false,
    }]);
    assert.ok(
      h.logs.some((l) =>
        l.level === "warn" && l.message === "from hostapi-grpc" &&
        (l.fields as { n: number }).n === 1
      ),
    );
    // stdout after the handshake and stderr (hclog JSON) reach the logs.
    await manager.call("hostapi-grpc", "print", null);
    for (
      let i = 0;
      i < 100 && !h.logs.some((l) => l.message === "hclog line");
      i++
    ) await new Promise((r) => setTimeout(r, 20));
    assert.ok(
      h.logs.some((l) =>
        l.message === "plain stdout line" && l.level === "info" &&
        l.fields?.stream === "stdout"
      ),
    );
    assert.ok(
      h.logs.some((l) =>
        l.message === "hclog line" && l.level === "warn" && l.fields?.k === 1
      ),
    );
    // Each callback ran in the context of the plugin call in progress.
    assert.ok(h.calls.every((c) => c.plugin === "hostapi-grpc"));
    await manager.shutdownAll();
    await assertGone(plugin, [pid]);
  },
);

Deno.test(
  "callbacks are attributed by socket when two plugins run, and denials reach the plugin",
  opts,
  async () => {
    const hosts = new Map<string, MemoryHostAPI>();
    const manager = new Manager({
      host: (name) => {
        const h = new MemoryHostAPI({ config: { whoami: name } });
        if (name === "b-plugin") {
          h.dbExec = () =>
            Promise.reject(
              new PermissionDeniedError(
                name,
                "db:write",
                "db_exec DELETE FROM ticket",
              ),
            );
        }
        hosts.set(name, h);
        return h;
      },
    });
    const [a, b] = await Promise.all([
      load(HOSTAPI, { args: ["--name", "a-plugin"] }),
      load(HOSTAPI, { args: ["--name", "b-plugin"] }),
    ]);
    const pids = [pidOf(a), pidOf(b)];
    await manager.register(a);
    await manager.register(b);
    const results = await Promise.all(
      Array.from({ length: 10 }, (_, i) => i % 2 ? "b-plugin" : "a-plugin").map(
        async (name) =>
          [
            name,
            decodeJson<{ config: string; init: Record<string, string> }>(
              await manager.call(name, "whoami", null),
            )!,
          ] as const,
      ),
    );
    for (const [name, r] of results) {
      assert.equal(r.config, name);
      assert.equal(r.init.plugin_name, name);
      assert.equal(r.init.host_socket, undefined); // the SDK keeps it to itself
    }
    assert.equal(hosts.get("a-plugin")!.calls.length, 5);
    assert.equal(hosts.get("b-plugin")!.calls.length, 5);
    assert.deepEqual(
      decodeJson(await manager.call("b-plugin", "denied", null)),
      {
        denied: true,
        code: "PERMISSION_DENIED",
        message:
          'Cannot call host method "DBExec" (PERMISSION_DENIED): Cannot run db_exec DELETE FROM ticket: plugin "b-plugin" lacks permission "db:write"',
      },
    );
    assert.equal(
      decodeJson<{ denied: boolean }>(
        await manager.call("a-plugin", "denied", null),
      )!
        .denied,
      false,
    );
    await manager.shutdownAll();
    await assertGone(a, [pids[0]!]);
    await assertGone(b, [pids[1]!]);
  },
);

Deno.test(
  "crash → PluginCrashedError → restart → works; then quarantine after repeated crashes",
  opts,
  async () => {
    const host = new MemoryHostAPI();
    const manager = new Manager({ host });
    const plugin = await load(HOSTAPI, {
      restart: { maxCrashes: 2, windowMs: 60_000, backoffMs: 20 },
    });
    const pid1 = pidOf(plugin);
    await manager.register(plugin);
    await assert.rejects(
      manager.call("hostapi-grpc", "crash", null),
      PluginCrashedError,
    );
    // The next call waits for the restarted process (GKRegister + Init again).
    decodeJson<{ pid: number }>(
      await manager.call("hostapi-grpc", "pid", null),
    )!;
    // The plugin's own Deno.pid is its PID namespace's: compare host pids.
    const pid2 = pidOf(plugin);
    assert.notEqual(pid2, pid1);
    assert.ok(!exists(`/proc/${pid1}`), "crashed process was reaped");
    assert.equal(plugin.status().restarts, 1);
    assert.equal(
      host.logs.filter((l) => l.message === "hostapi-grpc plugin initialized")
        .length,
      0,
    ); // hostapi's init logs nothing; Init ran again though:
    assert.deepEqual(
      decodeJson(await manager.call("hostapi-grpc", "echo", encodeJson([1]))),
      [1],
    );
    // Second crash within the window: quarantined, disabled in the Manager.
    await assert.rejects(
      manager.call("hostapi-grpc", "crash", null),
      PluginCrashedError,
    );
    for (let i = 0; i < 50 && manager.isEnabled("hostapi-grpc"); i++) {
      await new Promise((r) => setTimeout(r, 20));
    }
    assert.equal(manager.isEnabled("hostapi-grpc"), false);
    assert.match(manager.status("hostapi-grpc")!.reason!, /crashed 2 times/);
    assert.equal(plugin.status().state, "quarantined");
    await assert.rejects(
      manager.call("hostapi-grpc", "echo", null),
      PluginDisabledError,
    );
    // An admin enables it again: the next call starts it afresh.
    await manager.enable("hostapi-grpc");
    decodeJson<{ pid: number }>(
      await manager.call("hostapi-grpc", "pid", null),
    )!;
    assert.equal(plugin.status().state, "running");
    const pid3 = pidOf(plugin);
    await manager.shutdownAll();
    await assertGone(plugin, [pid1, pid2, pid3]);
  },
);

Deno.test(
  "deadlines: a slow call times out, a hung plugin is killed and restarted",
  opts,
  async () => {
    const manager = new Manager({ host: new MemoryHostAPI() });
    const plugin = await load(HOSTAPI, {
      hangTimeoutMs: 2000,
      restart: { backoffMs: 10 },
    });
    const pid1 = pidOf(plugin);
    await manager.register(plugin);
    const t0 = Date.now();
    await assert.rejects(
      manager.call("hostapi-grpc", "sleep", encodeJson({ ms: 10_000 }), {
        timeoutMs: 300,
      }),
      PluginTimeoutError,
    );
    assert.ok(Date.now() - t0 < 5000);
    // Still serving (the event loop was free, so the health probe passed).
    assert.deepEqual(
      decodeJson(await manager.call("hostapi-grpc", "echo", encodeJson("x"))),
      "x",
    );
    assert.equal(plugin.status().restarts, 0);
    // A busy loop blocks the plugin: the timeout's health probe fails, the
    // process is killed and restarted.
    await assert.rejects(
      manager.call("hostapi-grpc", "busy", encodeJson({ ms: 60_000 }), {
        timeoutMs: 300,
      }),
      PluginTimeoutError,
    );
    // Calls already queued on the hung process fail as crashed; wait until the
    // supervisor has replaced it.
    for (let i = 0; i < 400 && plugin.status().restarts === 0; i++) {
      await new Promise((r) => setTimeout(r, 50));
    }
    assert.deepEqual(
      decodeJson(
        await manager.call("hostapi-grpc", "echo", encodeJson("y"), {
          timeoutMs: 20_000,
        }),
      ),
      "y",
    );
    assert.equal(plugin.status().restarts, 1);
    const pid2 = pidOf(plugin);
    assert.ok(!exists(`/proc/${pid1}`));
    await manager.shutdownAll();
    await assertGone(plugin, [pid1, pid2]);
  },
);

Deno.test(
  "flags from permissions/deno_flags.ts are merged with the runtime's own",
  opts,
  async () => {
    const { denoFlagsFor } = await import("../permissions/deno_flags.ts");
    const dataDir = await Deno.makeTempDir({ prefix: "gk-grpc-data-" });
    const denoFlags = denoFlagsFor({
      grants: ["http:api.example.com", "fs:write:cache"],
      dataDir,
      codeDir: new URL("../fixtures/plugins/hello-grpc-ts/", import.meta.url)
        .pathname,
    });
    const plugin = await load(HELLO, { denoFlags, dataDir });
    const pid = pidOf(plugin);
    const manager = new Manager({ host: new MemoryHostAPI() });
    await manager.register(plugin);
    assert.deepEqual(
      decodeJson(await manager.call("hello-grpc", "get_status", null)),
      { status: "running", type: "grpc", version: "1.0.0" },
    );
    const cmdline = Deno.readTextFileSync(`/proc/${pid}/cmdline`).split("\0");
    // http: grants no longer become --allow-net (egress goes through the
    // HostAPI): the one --allow-net names only the plugin's unix sockets.
    assert.ok(!cmdline.some((a) => /api\.example\.com/.test(a)));
    assert.ok(cmdline.some((a) => a.startsWith("--deny-write=")));
    const net = cmdline.filter((a) => a.startsWith("--allow-net"));
    assert.equal(net.length, 1);
    assert.ok(
      net[0]!.slice("--allow-net=".length).split(",").every((e) =>
        e.startsWith("unix:")
      ),
      net[0],
    );
    await manager.shutdownAll();
    await assertGone(plugin, [pid]);
    await Deno.remove(dataDir, { recursive: true });
  },
);

Deno.test(
  "when the host dies (SIGKILL), its plugin processes exit too",
  opts,
  async () => {
    const dir = await Deno.makeTempDir({ prefix: "gk-grpc-orphan-" });
    const script = `${dir}/host.ts`;
    const mod = new URL("../runtimes/grpc/mod.ts", import.meta.url).href;
    await Deno.writeTextFile(
      script,
      `import { loadGrpcPlugin } from ${JSON.stringify(mod)};
const p = await loadGrpcPlugin(${JSON.stringify(HELLO)}, { tempDir: ${
        JSON.stringify(dir)
      } });
console.log(JSON.stringify({ pid: p.status().pid }));
setInterval(() => {}, 1000);
`,
    );
    const host = new Deno.Command(Deno.execPath(), {
      args: [
        "run",
        "-A",
        `--config=${new URL("../deno.json", import.meta.url).pathname}`,
        script,
      ],
      stdout: "piped",
      stderr: "inherit",
      stdin: "null",
    }).spawn();
    const reader = host.stdout.getReader();
    let text = "";
    while (!text.includes("\n")) {
      const { value, done } = await reader.read();
      if (done) break;
      text += new TextDecoder().decode(value);
    }
    const { pid } = JSON.parse(text);
    assert.ok(exists(`/proc/${pid}`), "plugin running");
    host.kill("SIGKILL");
    await host.status;
    reader.releaseLock();
    await host.stdout.cancel();
    // The plugin sees its stdin close and exits. It was reparented to PID 1,
    // which reaps it (a container whose PID 1 does not reap would leave an
    // exited zombie, which also counts as exited here).
    const running = () => {
      try {
        const stat = Deno.readTextFileSync(`/proc/${pid}/stat`);
        return !/^\d+ \(.*\) Z/.test(stat);
      } catch {
        return false;
      }
    };
    for (let i = 0; i < 200 && running(); i++) {
      await new Promise((r) => setTimeout(r, 50));
    }
    assert.ok(!running(), "plugin outlived its host");
    await Deno.remove(dir, { recursive: true });
  },
);

Deno.test(
  "shutdown during a restart (in backoff or mid-launch) leaves no process",
  opts,
  async () => {
    const running = (tag: string) => {
      const pids: number[] = [];
      for (const e of Deno.readDirSync("/proc")) {
        if (!/^\d+$/.test(e.name)) continue;
        try {
          const cmd = Deno.readTextFileSync(`/proc/${e.name}/cmdline`);
          const stat = Deno.readTextFileSync(`/proc/${e.name}/stat`);
          if (cmd.includes(tag) && !/^\d+ \(.*\) Z/.test(stat)) {
            pids.push(Number(e.name));
          }
        } catch { /* gone */ }
      }
      return pids;
    };
    for (
      const [tag, backoffMs, waitMs] of [["gk-backoff", 5000, 0], [
        "gk-midlaunch",
        0,
        150,
      ]] as const
    ) {
      const plugin = await load(HOSTAPI, {
        args: ["--name", tag],
        restart: { backoffMs },
      });
      await plugin.init(new MemoryHostAPI());
      await assert.rejects(
        plugin.call("crash", null, {
          chain: [],
          deadline: Date.now() + 10_000,
          signal: new AbortController().signal,
        }),
        PluginCrashedError,
      );
      await new Promise((r) => setTimeout(r, waitMs));
      await plugin.shutdown();
      assert.deepEqual(running(tag), [], tag);
      await assertGone(plugin, []);
    }
  },
);

Deno.test(
  "periodic health checks mark a frozen plugin unhealthy, and healthy again",
  opts,
  async () => {
    const plugin = await load(HELLO, { healthIntervalMs: 100 });
    const pid = pidOf(plugin);
    const until = async (want: boolean) => {
      for (let i = 0; i < 200 && plugin.status().healthy !== want; i++) {
        await new Promise((r) => setTimeout(r, 25));
      }
      assert.equal(plugin.status().healthy, want);
    };
    await until(true);
    Deno.kill(pid, "SIGSTOP"); // frozen: it cannot answer grpc.health.v1
    try {
      assert.equal(await plugin.checkHealth(300), false);
      await until(false);
    } finally {
      Deno.kill(pid, "SIGCONT");
    }
    await until(true);
    await plugin.shutdown();
    await assertGone(plugin, [pid]);
  },
);
