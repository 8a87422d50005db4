/**
 * What GoatFlow's plugins and operators rely on, checked against real
 * parts: a bare `*.wasm` file (any case of the extension) dropped into the
 * plugins folder is loaded under the name its `gk_register` returns; its SQL
 * with `?` placeholders runs on a real PostgreSQL; reloading a plugin that
 * does not exist is a 404; log lines of the WASM runtime itself are filed
 * under the plugin's name.
 */

import assert from "node:assert/strict";
import { join } from "node:path";
import { boot, type RunningHost } from "../host/boot.ts";
import { Loader } from "../host/loading/loader.ts";
import { LogBuffer } from "../host/log_buffer.ts";
import { Manager } from "../host/manager.ts";
import { PgDatabase } from "../host/services/database.ts";
import { loadWasmPlugin } from "../runtimes/wasm/mod.ts";
import { buildWat } from "../fixtures/hostile/wat_build.ts";
import { hostConfig, privateSchema } from "./server_helpers.ts";

const ROOT = new URL("..", import.meta.url).pathname;
const PROBE_WAT = join(ROOT, "fixtures/plugins/perm-probe-wat/plugin.wat");
const WAT_EDGE = join(ROOT, "fixtures/plugins/wat-edge/plugin.wasm");
const DATABASE_URL = Deno.env.get("DATABASE_URL") ??
  "postgres://postgres@127.0.0.1:5432/test";
const enc = new TextEncoder();
const dec = new TextDecoder();

/** The WAT probe as a bare module registering as `name` (manifest inside). */
async function probeModule(
  dir: string,
  name: string,
  permissions: string[],
): Promise<Uint8Array> {
  const manifest = join(dir, `${name}.manifest.json`);
  await Deno.writeTextFile(
    manifest,
    JSON.stringify({ name, version: "1.0.0", permissions }),
  );
  try {
    return await buildWat(PROBE_WAT, manifest);
  } finally {
    await Deno.remove(manifest);
  }
}

Deno.test("GoatFlow layout: a bare .WASM file is served under its manifest name and its ? SQL runs on PostgreSQL", async () => {
  const name = `gf-probe-${crypto.randomUUID().slice(0, 8)}`;
  const data = await Deno.makeTempDir({ prefix: "gk_goatflow_" });
  const plugins = join(data, "plugins");
  await Deno.mkdir(plugins);
  // The file name says nothing about the plugin; the extension is upper case.
  await Deno.writeFile(
    join(plugins, "Stats.WASM"),
    await probeModule(data, name, ["db:read", "log"]),
  );
  const db = await privateSchema();
  const lines: string[] = [];
  let host: RunningHost | undefined;
  try {
    host = await boot({
      config: hostConfig(join(data, "data"), plugins, db.url, {
        GOATKIT_REQUIRE_APPROVAL: "none",
      }),
      print: (l) => lines.push(l),
    });
    const h = host;
    assert.deepEqual(
      h.manager.list().map((m) => m.name),
      [name],
      lines.join("\n"),
    );
    const api = (method: string, path: string) =>
      fetch(`${h.url}/api/v1${path}`, {
        method,
        headers: { authorization: `Bearer ${h.adminToken}` },
      });

    // GoatFlow's plugins write `?`; literals, identifiers and comments
    // keep theirs.
    const out = await h.manager.call(
      name,
      "call",
      enc.encode(`db_query\n${
        JSON.stringify({
          query:
            `SELECT ?::int + ?::int AS "sum?", '?' AS q /* ? */ -- ?\n WHERE ?::text = 'x'`,
          args: [40, 2, "x"],
        })
      }`),
      { timeoutMs: 20_000 },
    );
    const text = dec.decode(out ?? new Uint8Array());
    assert.ok(text.startsWith("ok:"), text);
    assert.deepEqual(JSON.parse(text.slice(3)), [{ "sum?": 42, q: "?" }]);

    // The list shows it running under its manifest name.
    const listed = await (await api("GET", "/plugins")).json();
    const me = listed.plugins.find((p: { name: string }) => p.name === name);
    assert.equal(me?.status, "running", JSON.stringify(listed));

    // Reload: the plugin itself is reloaded; an unknown name is a 404.
    const again = await api("POST", `/plugins/${name}/reload`);
    assert.equal(again.status, 200);
    assert.equal((await again.json()).plugin.status, "running");
    const missing = await api("POST", "/plugins/no-such-plugin/reload");
    assert.equal(missing.status, 404);
    assert.match((await missing.json()).error, /no-such-plugin/);
  } finally {
    await host?.close();
    const pgdb = new PgDatabase({ url: DATABASE_URL, max: 1 });
    try {
      await pgdb.dropPlugin(name);
    } finally {
      await pgdb.close();
      await db.drop();
      await Deno.remove(data, { recursive: true });
    }
  }
});

Deno.test("Loader: bare .wasm/.Wasm files are discovered by registered name; examples are shadowed by installed plugins", async () => {
  const root = await Deno.makeTempDir({ prefix: "gk_bare_" });
  const plugins = join(root, "plugins");
  const examples = join(root, "examples");
  await Deno.mkdir(plugins);
  await Deno.mkdir(join(examples, "wat-edge"), { recursive: true });
  await Deno.mkdir(join(examples, "other"), { recursive: true });
  // Installed as a bare file: wins over the example folder of the same name.
  await Deno.copyFile(WAT_EDGE, join(plugins, "edge-copy.Wasm"));
  await Deno.copyFile(WAT_EDGE, join(examples, "wat-edge", "plugin.wasm"));
  await Deno.copyFile(
    join(ROOT, "fixtures/plugins/wat-edge/manifest.json"),
    join(examples, "wat-edge", "manifest.json"),
  );
  // A broken bare file is a discovery problem, not silence.
  await Deno.writeFile(join(plugins, "junk.wasm"), enc.encode("not wasm"));
  // An example folder of another plugin is found as an example.
  await Deno.writeFile(
    join(examples, "other", "probe.WASM"),
    await probeModule(root, "bare-other", ["log"]),
  );
  await Deno.writeTextFile(
    join(examples, "other", "manifest.json"),
    JSON.stringify({
      name: "bare-other",
      version: "1.0.0",
      permissions: ["log"],
    }),
  );
  const manager = new Manager({ logs: new LogBuffer() });
  const loader = new Loader(manager, {
    dir: plugins,
    exampleDirs: [examples],
    load: (src) => loadWasmPlugin(src.entry, { name: src.name }),
  });
  try {
    await loader.scan();
    assert.deepEqual(loader.discovered(), ["bare-other", "wat-edge"]);
    const edge = loader.source("wat-edge")!;
    assert.equal(edge.entry, join(plugins, "edge-copy.Wasm"));
    assert.equal(edge.example, undefined);
    assert.equal(loader.source("bare-other")?.example, true);
    assert.equal(loader.source("bare-other")?.kind, "wasm");
    const problems = loader.problems();
    assert.equal(problems.length, 1, JSON.stringify(problems));
    assert.equal(problems[0]!.dir, join(plugins, "junk.wasm"));
    const { loaded, failed } = await loader.loadAll();
    assert.deepEqual([loaded, failed], [["bare-other", "wat-edge"], []]);
    const echoed = await manager.call("wat-edge", "echo", enc.encode("hi"));
    assert.equal(dec.decode(echoed!), "hi");
    // Reloading an unknown name is refused (the API answers 404 with it).
    await assert.rejects(
      loader.reload("no-such"),
      (e: Error) => e.name === "PluginNotFoundError",
    );
  } finally {
    await loader.close();
    await manager.shutdownAll();
    await Deno.remove(root, { recursive: true });
  }
});

Deno.test('WASM runtime log lines are filed under the plugin\'s name, not ""', async () => {
  const logs = new LogBuffer({ capacity: 1000 });
  const manager = new Manager({ logs }); // default BasicHostAPI
  const trap = join(ROOT, "fixtures/hostile/trap/plugin.wasm");
  try {
    await manager.register(
      await loadWasmPlugin(trap, { quarantine: { maxFailures: 100 } }),
    );
    const name = manager.list()[0]!.name;
    await assert.rejects(
      manager.call(name, "unreachable", null, { timeoutMs: 10_000 }),
      (e: Error) => e.name === "PluginCrashedError",
    );
    const mine = logs.query({ plugin: name }).map((e) => e.message);
    assert.ok(
      mine.some((m) => /trap in unreachable/.test(m)),
      JSON.stringify(logs.query()),
    );
    const anonymous = logs.query({ plugin: "" }).filter((e) =>
      /trap/.test(e.message)
    );
    assert.deepEqual(anonymous, []);
  } finally {
    await manager.shutdownAll();
  }
});
