// `deno task serve`: configuration, the admin token printed once, a real WASM
// example plugin's route and widget over real HTTP, disable → 503 → enable,
// and graceful shutdown of the real entry point on SIGTERM.

import pg from "pg";
import { join } from "node:path";
import { boot } from "../host/boot.ts";
import { ConfigValueError, loadConfig } from "../host/services/config.ts";
import {
  assert,
  assertEquals,
  assertMatch,
  hostConfig,
  privateSchema,
} from "./server_helpers.ts";

const ROOT = new URL("..", import.meta.url).pathname;

Deno.test("loadConfig: server defaults, goatkit.json, environment overrides", async () => {
  const dir = await Deno.makeTempDir();
  try {
    const d = loadConfig({ env: {}, defaultPath: join(dir, "absent.json") })
      .server;
    assertEquals([d.port, d.dataDir, d.pluginsDir], [
      8080,
      "./data",
      "./data/plugins",
    ]);
    const file = join(dir, "goatkit.json");
    await Deno.writeTextFile(
      file,
      JSON.stringify({
        server: { port: 9000, dataDir: "/x", title: "T" },
        app: { name: "x" },
      }),
    );
    const c = loadConfig({
      env: { GOATKIT_CONFIG: file, GOATKIT_DATA_DIR: "/y" },
    }).server;
    assertEquals([c.port, c.dataDir, c.title], [9000, "/y", "T"]);
    let failed: unknown;
    try {
      loadConfig({
        env: { PORT: "http" },
        defaultPath: join(dir, "absent.json"),
      });
    } catch (e) {
      failed = e;
    }
    assert(
      failed instanceof ConfigValueError && failed.setting === "PORT",
      `bad port refused: ${failed}`,
    );
    // Admission and drain settings: defaults, file, environment, refusals.
    assertEquals([d.maxInFlight, d.drainTimeoutMs], [1024, 10_000]);
    await Deno.writeTextFile(
      file,
      JSON.stringify({ server: { maxInFlight: 64, drainTimeoutMs: 0 } }),
    );
    const f = loadConfig({ env: { GOATKIT_CONFIG: file } }).server;
    assertEquals([f.maxInFlight, f.drainTimeoutMs], [64, 0]);
    const e = loadConfig({
      env: {
        GOATKIT_CONFIG: file,
        GOATKIT_MAX_IN_FLIGHT: "5",
        GOATKIT_SERVER__DRAINTIMEOUTMS: "2500",
      },
    }).server;
    assertEquals([e.maxInFlight, e.drainTimeoutMs], [5, 2500]);
    // Plugin queue, idle release and route deadline settings.
    assertEquals(
      [
        d.pluginQueueLength,
        d.pluginQueueWaitMs,
        d.pluginIdleTimeoutMs,
        d.routeTimeoutMs,
      ],
      [256, 1000, 60_000, 10_000],
    );
    const q = loadConfig({
      env: {
        GOATKIT_CONFIG: file,
        GOATKIT_PLUGIN_QUEUE_LENGTH: "0",
        GOATKIT_PLUGIN_QUEUE_WAIT_MS: "250",
        GOATKIT_PLUGIN_IDLE_TIMEOUT_MS: "0",
        GOATKIT_SERVER__ROUTETIMEOUTMS: "3000",
      },
    }).server;
    assertEquals(
      [
        q.pluginQueueLength,
        q.pluginQueueWaitMs,
        q.pluginIdleTimeoutMs,
        q.routeTimeoutMs,
      ],
      [0, 250, 0, 3000],
    );
    for (
      const [name, value] of [
        ["GOATKIT_MAX_IN_FLIGHT", "0"],
        ["GOATKIT_MAX_IN_FLIGHT", "many"],
        ["GOATKIT_DRAIN_TIMEOUT_MS", "-1"],
        ["GOATKIT_DRAIN_TIMEOUT_MS", "1.5"],
        ["GOATKIT_ROUTE_TIMEOUT_MS", "0"],
        ["GOATKIT_PLUGIN_QUEUE_LENGTH", "-3"],
      ] as const
    ) {
      let refused: unknown;
      try {
        loadConfig({
          env: { [name]: value },
          defaultPath: join(dir, "x.json"),
        });
      } catch (err) {
        refused = err;
      }
      assert(
        refused instanceof ConfigValueError && refused.setting === name,
        `${name}=${value} refused: ${refused}`,
      );
    }
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("boot: admin token once, example WASM plugin route and widget, disable/enable live", async () => {
  const data = await Deno.makeTempDir();
  const plugins = await Deno.makeTempDir();
  const db = await privateSchema();
  try {
    await Deno.mkdir(join(plugins, "hello-c"));
    for (const f of ["plugin.wasm", "manifest.json"]) {
      await Deno.copyFile(
        join(ROOT, "fixtures/plugins/hello-c", f),
        join(plugins, "hello-c", f),
      );
    }
    const config = hostConfig(data, plugins, db.url);
    const lines: string[] = [];
    const host = await boot({ config, print: (l) => lines.push(l) });
    let token: string;
    try {
      token = host.adminToken!;
      assertMatch(token, /^gk_/);
      // With PostgreSQL the tokens are rows of the database, hash only.
      {
        const c = new pg.Client({ connectionString: db.url });
        await c.connect();
        try {
          const { rows } = await c.query(
            "SELECT hash FROM goatkit.api_tokens WHERE scope = current_schema()",
          );
          assertEquals(rows.length, 1);
          assert(!JSON.stringify(rows).includes(token));
        } finally {
          await c.end();
        }
      }
      const get = (path: string, auth = true) =>
        fetch(`${host.url}${path}`, {
          headers: auth ? { authorization: `Bearer ${token}` } : {},
        });
      const health = await (await get("/healthz", false)).json();
      assertEquals([health.status, health.plugins.registered], ["ok", 1]);
      // The host tables (goatkit.plugin_state) are shared by every test
      // host on the test database: another test may have left it disabled.
      await host.manager.enable("hello-c");

      const hello = await get("/api/plugins/hello-c?name=Ana", false);
      assertEquals(hello.status, 200);
      assertMatch(JSON.stringify(await hello.json()), /Ana/);
      const widget = await get(
        "/api/v1/plugins/hello-c/widgets/hello-c-widget",
      );
      assertEquals(widget.status, 200);
      assertMatch(await widget.text(), /<\w+/);

      const off = await fetch(`${host.url}/api/v1/plugins/hello-c/disable`, {
        method: "POST",
        headers: { authorization: `Bearer ${token}` },
      });
      assertEquals(off.status, 200);
      await off.body?.cancel();
      // Disabled: 503 with the reason (a wrong URL would be 404).
      const gone = await get("/api/plugins/hello-c", false);
      assertEquals(gone.status, 503);
      assertEquals((await gone.json()).reason, "disabled");
      const on = await fetch(`${host.url}/api/v1/plugins/hello-c/enable`, {
        method: "POST",
        headers: { authorization: `Bearer ${token}` },
      });
      await on.body?.cancel();
      const back = await get("/api/plugins/hello-c", false);
      assertEquals(back.status, 200);
      await back.body?.cancel();
    } finally {
      await host.close();
    }

    // A restart does not print a new token; the first one still works.
    const again = await boot({
      config,
      print: () => {},
      loadPlugins: false,
    });
    try {
      assertEquals(again.adminToken, undefined);
      const res = await fetch(`${again.url}/api/v1/plugins`, {
        headers: { authorization: `Bearer ${token}` },
      });
      assertEquals(res.status, 200);
      await res.body?.cancel();
    } finally {
      await again.close();
    }
  } finally {
    await Deno.remove(data, { recursive: true });
    await Deno.remove(plugins, { recursive: true });
    await db.drop();
  }
});

Deno.test("host/serve.ts as a process: prints URL and token, answers /healthz, exits 0 on SIGTERM", async () => {
  const data = await Deno.makeTempDir();
  const plugins = await Deno.makeTempDir();
  const db = await privateSchema();
  const child = new Deno.Command(Deno.execPath(), {
    args: ["run", "--allow-all", join(ROOT, "host/serve.ts")],
    cwd: data,
    env: {
      PORT: "0",
      GOATKIT_HOSTNAME: "127.0.0.1",
      GOATKIT_DATA_DIR: join(data, "d"),
      GOATKIT_PLUGINS_DIR: plugins,
      DATABASE_URL: db.url,
      NO_COLOR: "1",
    },
    stdin: "null",
    stdout: "piped",
    stderr: "piped",
  }).spawn();
  const stderr = child.stderr.text();
  // A hung start must fail the test, not hang the suite.
  const watchdog = setTimeout(() => {
    try {
      child.kill("SIGKILL");
    } catch { /* gone */ }
  }, 120_000);
  try {
    const reader = child.stdout.pipeThrough(new TextDecoderStream())
      .getReader();
    let out = "";
    while (!/Log in at/.test(out)) {
      const { value, done } = await reader.read();
      if (done) break;
      out += value;
    }
    const url = /Listening on (http:\/\/\S+)/.exec(out)?.[1];
    const token = /^\s+(gk_\S+)$/m.exec(out)?.[1];
    assert(url && token, `output: ${out}`);
    const health = await (await fetch(`${url}/healthz`)).json();
    assertEquals(health.status, "ok");
    child.kill("SIGTERM");
    while (!(await reader.read()).done) { /* drain */ }
    const status = await child.status;
    assertEquals(status.code, 0, await stderr);
  } finally {
    clearTimeout(watchdog);
    try {
      child.kill("SIGKILL");
    } catch { /* already gone */ }
    await child.status;
    await stderr.catch(() => "");
    await Deno.remove(data, { recursive: true });
    await Deno.remove(plugins, { recursive: true });
    await db.drop();
  }
});

Deno.test("host/serve.ts as a process: a bad setting exits 1 naming it", async () => {
  const data = await Deno.makeTempDir();
  try {
    const out = await new Deno.Command(Deno.execPath(), {
      args: ["run", "--allow-all", join(ROOT, "host/serve.ts")],
      cwd: data,
      env: { PORT: "http", GOATKIT_DATA_DIR: join(data, "d"), NO_COLOR: "1" },
      stdin: "null",
      stdout: "piped",
      stderr: "piped",
    }).output();
    const stderr = new TextDecoder().decode(out.stderr);
    assertEquals(out.code, 1, stderr);
    assertMatch(stderr, /Cannot use environment variable PORT: "http"/);
  } finally {
    await Deno.remove(data, { recursive: true });
  }
});

Deno.test("boot: a package uploaded through the API installs and serves; uninstall removes it", async () => {
  const data = await Deno.makeTempDir();
  const plugins = await Deno.makeTempDir();
  const db = await privateSchema();
  const { packFolder } = await import("../host/loading/packages.ts");
  const config = hostConfig(data, plugins, db.url);
  const host = await boot({ config, print: () => {} });
  try {
    const auth = { authorization: `Bearer ${host.adminToken}` };
    const form = new FormData();
    form.set(
      "plugin",
      new File(
        [
          (await packFolder(
            join(ROOT, "fixtures/plugins/hello-c"),
          )) as Uint8Array<ArrayBuffer>,
        ],
        "hello-c.zip",
      ),
    );
    const up = await fetch(`${host.url}/api/v1/plugins/upload`, {
      method: "POST",
      headers: auth,
      body: form,
    });
    const result = await up.json();
    assertEquals(up.status, 200, JSON.stringify(result));
    assertEquals([result.name, result.version], ["hello-c", "1.0.0"]);
    await host.manager.enable("hello-c"); // shared state: see above
    const hello = await fetch(`${host.url}/api/plugins/hello-c`);
    assertEquals(hello.status, 200);
    assertMatch(await hello.text(), /Hello from C/);

    // Consent by default: everything but log waits for approval.
    const grants =
      await (await fetch(`${host.url}/api/v1/plugins/hello-c/grants`, {
        headers: auth,
      })).json();
    assertEquals(grants.pending.sort(), [
      "cache:read",
      "cache:write",
      "config:app.name",
      "db:read",
      "db:write",
      "email:test@example.com",
      "http:example.com",
      "plugins:call:hello-rust",
    ]);

    const del = await fetch(`${host.url}/api/v1/plugins/hello-c`, {
      method: "DELETE",
      headers: auth,
    });
    assertEquals(del.status, 200);
    await del.body?.cancel();
    const gone = await fetch(`${host.url}/api/plugins/hello-c`);
    assertEquals(gone.status, 404);
    await gone.body?.cancel();
    const left = [...Deno.readDirSync(plugins)].filter((e) =>
      !e.name.startsWith(".")
    );
    assertEquals(left, []);
  } finally {
    await host.close();
    await Deno.remove(data, { recursive: true });
    await Deno.remove(plugins, { recursive: true });
    await db.drop();
  }
});
