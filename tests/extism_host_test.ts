// Extism plugins in the host (issue 16, host part): Extism's manifest parsed
// and mapped onto GoatKit's permissions (bad inputs listed by JSON path, a
// hash mismatch, paths leaving the plugin folder or its data directory);
// and a real host (boot, real HTTP on loopback, real PostgreSQL in a
// private schema) running a hand-written Extism plugin (WAT compiled with
// npm:wabt): a route's body is its input, config and HTTP wait for the
// operator's grant (the HTTP through the real guarded egress to a loopback
// server that counts what reaches it), vars survive a restart, and user
// host functions come from the embedding code.

import assert from "node:assert/strict";
import { join } from "node:path";
import { boot, type RunningHost } from "../host/boot.ts";
import {
  ExtismHashMismatchError,
  ExtismManifestError,
  mapExtismManifest,
  parseExtismManifest,
  readExtismModule,
  withExtismPermissions,
} from "../host/loading/extism_manifest.ts";
import type { ExtismHostFunction } from "../host/loading/mod.ts";
import { rawResultToResponse } from "../host/server/plugin_http.ts";
import { hostConfig, privateSchema } from "./server_helpers.ts";
import { PgDatabase } from "../host/services/database.ts";
import { PgExtismVarStore } from "../host/services/pg_extism_var_store.ts";
import { ExtismVarLimitError } from "../host/model/errors.ts";
import { createRuntimeFactory } from "../host/loading/runtimes.ts";
import { MemoryGrantStore } from "../permissions/grants.ts";
import { MemoryHostAPI } from "../host/testing/memory_host_api.ts";
import { createCallContext } from "../host/model/plugin.ts";
import { extismHostWasm, extismUserFnWasm } from "./helpers/extism_wat.ts";

const te = new TextEncoder();

function issuesOf(f: () => unknown): string[] {
  try {
    f();
  } catch (e) {
    assert.ok(e instanceof ExtismManifestError, String(e));
    return e.issues.map((i) => `${i.path}: ${i.message}`);
  }
  throw new Error("expected an ExtismManifestError");
}

Deno.test("parseExtismManifest() lists every problem by JSON path", () => {
  const issues = issuesOf(() =>
    parseExtismManifest({
      wasm: [
        { path: "../outside.wasm", hash: "zz" },
        { url: "https://example.com/p.wasm" },
      ],
      memory: { max_pages: -1, huge: true },
      timeout_ms: 1.5,
      allowed_hosts: [""],
      extra: 1,
    })
  );
  const text = issues.join("\n");
  assert.match(text, /^wasm\[0\]\.hash: must be a hex SHA-256/m);
  assert.match(text, /^memory\.max_pages: must not be negative/m);
  assert.match(text, /^memory: unknown key "huge"/m);
  assert.match(text, /^timeout_ms: must be a whole number/m);
  assert.match(text, /^allowed_hosts\[0\]: must not be empty/m);
  assert.match(text, /^: unknown key "extra"/m);
  assert.match(text, /^wasm: names 2 modules; linking several modules/m);
  assert.match(text, /^wasm\[0\]\.path: "\.\.\/outside\.wasm" leaves/m);
  assert.match(text, /^wasm\[1\]\.url: modules fetched from a URL are not/m);
  assert.throws(
    () => parseExtismManifest("{", { file: "extism.json" }),
    /^ExtismManifestError: Cannot accept Extism manifest "extism\.json": not valid JSON/,
  );
  assert.deepEqual(issuesOf(() => parseExtismManifest({ wasm: [] })), [
    "wasm: must name one module",
  ]);
  assert.deepEqual(
    issuesOf(() => parseExtismManifest({ wasm: [{ path: "/etc/x.wasm" }] })),
    ['wasm[0].path: "/etc/x.wasm" must be relative to the plugin folder'],
  );
  // The JS SDK's camelCase spellings are Extism's keys too.
  const camel = parseExtismManifest({
    wasm: [{ data: "AGFzbQEAAAA=" }],
    allowedHosts: ["*"],
    allowedPaths: { cache: "/cache" },
    timeoutMs: 50,
    memory: { maxPages: 4, maxVarBytes: 10 },
  });
  assert.deepEqual(camel.allowed_hosts, ["*"]);
  assert.equal(camel.timeout_ms, 50);
  assert.deepEqual(camel.memory, { max_pages: 4, max_var_bytes: 10 });
  assert.deepEqual(
    issuesOf(() =>
      parseExtismManifest({
        wasm: [{ path: "a.wasm" }],
        timeout_ms: 1,
        timeoutMs: 2,
      })
    ),
    ['timeout_ms: given twice (as "timeout_ms" and an alias)'],
  );
});

Deno.test("mapExtismManifest() maps hosts, paths, config and limits onto GoatKit's model, capped by the host", () => {
  const m = mapExtismManifest(
    parseExtismManifest({
      wasm: [{ path: "plugin.wasm" }],
      allowed_hosts: [
        "*",
        "api.example.com",
        "*.cdn.example.com",
        "10.0.0.5:8080",
      ],
      allowed_paths: {
        "ro:assets": "/assets",
        cache: "/var/cache/",
        ".": "/all",
      },
      config: { greeting: "hi", "app.mode": "fast" },
      memory: { max_pages: 1000, max_var_bytes: 10 },
      timeout_ms: 120_000,
    }),
    { maxPages: 256, callTimeoutMs: 30_000, maxVarBytes: 1024 },
  );
  assert.deepEqual(m.permissions, [
    "config:app.mode",
    "config:greeting",
    "fs:read:assets",
    "fs:write:.",
    "fs:write:cache",
    "http:*.cdn.example.com",
    "http:10.0.0.5:8080",
    "http:api.example.com",
    // "*" is any public host: loopback and private addresses need their own entry.
    "http:external",
  ]);
  assert.deepEqual(m.config, { greeting: "hi", "app.mode": "fast" });
  assert.deepEqual(m.paths, [
    {
      path: "assets",
      guestPath: "/assets",
      readOnly: true,
      permission: "fs:read:assets",
    },
    {
      path: "cache",
      guestPath: "/var/cache",
      readOnly: false,
      permission: "fs:write:cache",
    },
    { path: ".", guestPath: "/all", readOnly: false, permission: "fs:write:." },
  ]);
  assert.equal(m.memoryLimitPages, 256); // 1000 asked, the host's 256 wins
  assert.equal(m.callTimeoutMs, 30_000); // 120 s asked, the host's 30 s wins
  assert.equal(m.maxVarBytes, 10); // less than the host's: taken
  const small = mapExtismManifest(
    parseExtismManifest({
      wasm: [{ path: "p.wasm" }],
      memory: { max_pages: 3 },
      timeout_ms: 250,
    }),
  );
  assert.equal(small.memoryLimitPages, 3);
  assert.equal(small.callTimeoutMs, 250);
  assert.deepEqual(small.permissions, []);

  const issues = issuesOf(() =>
    mapExtismManifest(parseExtismManifest({
      wasm: [{ path: "p.wasm" }],
      allowed_hosts: ["api.*.com", "*example.com", "bad host"],
      allowed_paths: {
        "/etc": "/etc",
        "../sibling": "/s",
        "ro:~/.ssh": "/k",
        "data": "relative/guest",
      },
      config: { "bad key": "x", "app.*": "y" },
    }))
  );
  assert.deepEqual(issues.map((i) => i.split(":")[0]), [
    "allowed_hosts[0]",
    "allowed_hosts[1]",
    "allowed_hosts[2]",
    'allowed_paths["/etc"]',
    'allowed_paths["../sibling"]',
    'allowed_paths["ro',
    'allowed_paths["data"]',
    'config["bad key"]',
    'config["app.*"]',
  ]);
  assert.match(issues[3]!, /"\/etc" is outside the plugin's data directory/);
  assert.match(issues[4]!, /leaves the plugin's data directory/);

  // The sidecar's requests and the mapped ones, once each.
  assert.deepEqual(
    withExtismPermissions(
      { name: "p", version: "1.0.0", permissions: ["http:external", "log"] },
      { permissions: ["config:a", "http:external"] },
    ).permissions,
    ["http:external", "log", "config:a"],
  );
});

Deno.test("readExtismModule() checks the hash and keeps the module inside the plugin folder, symlinks included", async () => {
  const root = await Deno.makeTempDir({ prefix: "gk-extism-" });
  try {
    const dir = join(root, "plugin");
    await Deno.mkdir(dir);
    const wasm = await extismHostWasm();
    await Deno.writeFile(join(dir, "plugin.wasm"), wasm);
    await Deno.writeFile(join(root, "outside.wasm"), wasm);
    const digest = new Uint8Array(
      await crypto.subtle.digest("SHA-256", wasm as BufferSource),
    );
    const hash = [...digest].map((b) => b.toString(16).padStart(2, "0"))
      .join("");
    const ok = await readExtismModule(
      parseExtismManifest({ wasm: [{ path: "plugin.wasm", hash }] }),
      dir,
    );
    assert.equal(ok.length, wasm.length);
    const data = await readExtismModule(
      parseExtismManifest({ wasm: [{ data: wasm.toBase64(), hash }] }),
      dir,
    );
    assert.deepEqual(data, wasm);

    const wrong = "0".repeat(64);
    const e = await readExtismModule(
      parseExtismManifest({ wasm: [{ path: "plugin.wasm", hash: wrong }] }),
      dir,
    ).then(() => undefined, (e) => e);
    assert.ok(e instanceof ExtismHashMismatchError, String(e));
    assert.equal(e.expected, wrong);
    assert.equal(e.actual, hash);
    assert.match(e.message, /hash mismatch/);

    // A symlink inside the folder pointing out of it is refused.
    await Deno.symlink(join(root, "outside.wasm"), join(dir, "link.wasm"));
    await assert.rejects(
      () =>
        readExtismModule(
          parseExtismManifest({ wasm: [{ path: "link.wasm" }] }),
          dir,
        ),
      /wasm\[0\]\.path: "link\.wasm" leads out of the plugin folder/,
    );
    await assert.rejects(
      () =>
        readExtismModule(
          parseExtismManifest({ wasm: [{ path: "missing.wasm" }] }),
          dir,
        ),
      /wasm\[0\]\.path: cannot read "missing\.wasm"/,
    );
  } finally {
    await Deno.remove(root, { recursive: true });
  }
});

Deno.test("rawResultToResponse() answers JSON, text or bytes, and 204 for no output", async () => {
  const json = rawResultToResponse(te.encode('{"a":1}'));
  assert.equal(
    json.headers.get("content-type"),
    "application/json; charset=utf-8",
  );
  assert.equal(await json.text(), '{"a":1}');
  const text = rawResultToResponse(te.encode("<script>x</script>"));
  assert.equal(text.headers.get("content-type"), "text/plain; charset=utf-8");
  assert.equal(text.headers.get("x-content-type-options"), "nosniff");
  await text.body?.cancel();
  const bytes = rawResultToResponse(new Uint8Array([0xff, 0xfe, 0]));
  assert.equal(bytes.headers.get("content-type"), "application/octet-stream");
  assert.deepEqual(
    new Uint8Array(await bytes.arrayBuffer()),
    new Uint8Array([0xff, 0xfe, 0]),
  );
  assert.equal(rawResultToResponse(null).status, 204);
});

/** The sidecar manifest of the test plugin. */
function sidecar(name: string, routes: string[]): Record<string, unknown> {
  return {
    name,
    version: "1.0.0",
    description: "Extism test plugin",
    routes: routes.map((fn) => ({
      method: "POST",
      path: `/api/plugins/${name}/${fn}`,
      handler: fn,
    })),
  };
}

Deno.test(
  "A real host serves an Extism plugin: body in, output out; config and HTTP wait for the operator's grant; vars survive a restart; user host functions from boot()",
  { sanitizeOps: false, sanitizeResources: false },
  async () => {
    // A loopback server counting the requests that reach it.
    let hits = 0;
    const server = Deno.serve(
      { hostname: "127.0.0.1", port: 0, onListen: () => {} },
      () => {
        hits++;
        return new Response("pong from loopback");
      },
    );
    const port = server.addr.port;
    const root = await Deno.makeTempDir({ prefix: "gk-extism-host-" });
    const data = join(root, "data");
    const plugins = join(root, "plugins");
    const db = await privateSchema();
    let host: RunningHost | undefined;
    try {
      const dir = join(plugins, "ex-host");
      await Deno.mkdir(dir, { recursive: true });
      await Deno.writeFile(join(dir, "plugin.wasm"), await extismHostWasm());
      await Deno.writeTextFile(
        join(dir, "manifest.json"),
        JSON.stringify(
          sidecar("ex-host", ["echo", "visit", "config", "fetch"]),
        ),
      );
      await Deno.writeTextFile(
        join(dir, "extism.json"),
        JSON.stringify({
          wasm: [{ path: "plugin.wasm" }],
          allowed_hosts: [`127.0.0.1:${port}`],
          config: { greeting: "hello from extism.json" },
          timeout_ms: 5000,
        }),
      );
      const userDir = join(plugins, "ex-user");
      await Deno.mkdir(userDir, { recursive: true });
      await Deno.writeFile(
        join(userDir, "plugin.wasm"),
        await extismUserFnWasm(),
      );
      await Deno.writeTextFile(
        join(userDir, "manifest.json"),
        JSON.stringify(sidecar("ex-user", ["greet"])),
      );
      await Deno.writeTextFile(
        join(userDir, "extism.json"),
        JSON.stringify({ wasm: [{ path: "plugin.wasm" }] }),
      );
      const seen: string[] = [];
      const hello: ExtismHostFunction = {
        name: "hello_world",
        params: ["string"],
        results: ["string"],
        handler: (ctx, name) => {
          seen.push(`${ctx.plugin}.${ctx.function}`);
          return `Hello, ${String(name)}!`;
        },
      };
      const start = async (first: boolean) =>
        await boot({
          config: hostConfig(data, plugins, db.url),
          print: () => {},
          extismFunctions: [hello],
          ...(first ? {} : { newAdminToken: true }),
        });
      host = await start(true);
      let token = host.adminToken!;
      const post = (path: string, body: BodyInit) =>
        fetch(`${host!.url}${path}`, { method: "POST", body });
      const api = async (path: string, init: RequestInit = {}) => {
        const r = await fetch(`${host!.url}/api/v1${path}`, {
          ...init,
          headers: {
            authorization: `Bearer ${token}`,
            "content-type": "application/json",
          },
        });
        return { status: r.status, body: await r.json() };
      };

      // The body is the input, the output the response.
      const echo = await post("/api/plugins/ex-host/echo", "plain bytes ✓");
      assert.equal(echo.status, 200);
      assert.equal(
        echo.headers.get("content-type"),
        "text/plain; charset=utf-8",
      );
      assert.equal(await echo.text(), "plain bytes ✓");
      const echoJson = await post("/api/plugins/ex-host/echo", '{"n":[1,2]}');
      assert.equal(
        echoJson.headers.get("content-type"),
        "application/json; charset=utf-8",
      );
      assert.deepEqual(await echoJson.json(), { n: [1, 2] });

      // What extism.json asks for waits for the operator.
      const grants = await api("/plugins/ex-host/grants");
      assert.equal(grants.status, 200);
      assert.deepEqual(
        [...grants.body.requested].sort(),
        ["config:greeting", `http:127.0.0.1:${port}`],
      );
      const refusedConfig = await post(
        "/api/plugins/ex-host/config",
        "greeting",
      );
      assert.notEqual(refusedConfig.status, 200);
      assert.match(await refusedConfig.text(), /no such config key/);
      const request = JSON.stringify({ url: `http://127.0.0.1:${port}/ping` });
      const refusedHttp = await post("/api/plugins/ex-host/fetch", request);
      // A refused host call is a 403, as for any plugin's denial.
      assert.equal(refusedHttp.status, 403);
      const refusedText = await refusedHttp.text();
      assert.ok(
        refusedText.includes(`lacks permission \\"http:127.0.0.1:${port}\\"`),
        refusedText,
      );
      assert.equal(hits, 0, "nothing reached the loopback server");

      const approved = await api("/plugins/ex-host/grants", {
        method: "POST",
        body: JSON.stringify({
          permissions: ["config:greeting", `http:127.0.0.1:${port}`],
        }),
      });
      assert.equal(approved.status, 200, JSON.stringify(approved.body));
      const config = await post("/api/plugins/ex-host/config", "greeting");
      assert.equal(config.status, 200);
      assert.equal(await config.text(), "hello from extism.json");
      const fetched = await post("/api/plugins/ex-host/fetch", request);
      assert.equal(fetched.status, 200, await fetched.clone().text());
      assert.equal(await fetched.text(), "pong from loopback");
      assert.equal(hits, 1);

      // Vars: one more "x" per call, kept in the database.
      assert.equal(
        await (await post("/api/plugins/ex-host/visit", "")).text(),
        "x",
      );
      assert.equal(
        await (await post("/api/plugins/ex-host/visit", "")).text(),
        "xx",
      );

      // A user host function registered by the embedding code.
      const greet = await post("/api/plugins/ex-user/greet", "Ana");
      assert.equal(greet.status, 200);
      assert.equal(await greet.text(), "Hello, Ana!");
      assert.deepEqual(seen, ["ex-user.greet"]);

      // Restart: vars and grants are still there.
      await host.close();
      host = await start(false);
      token = host.adminToken!;
      assert.equal(
        await (await post("/api/plugins/ex-host/visit", "")).text(),
        "xxx",
      );
      const again = await post("/api/plugins/ex-host/config", "greeting");
      assert.equal(await again.text(), "hello from extism.json");
    } finally {
      await host?.close().catch(() => {});
      await server.shutdown();
      await Deno.remove(root, { recursive: true }).catch(() => {});
      await db.drop();
    }
  },
);

Deno.test("PgExtismVarStore: two hosts writing at once never take a plugin's vars past its cap (PostgreSQL)", async () => {
  const schema = await privateSchema();
  // Two hosts: two pools on the same database and schema.
  const hosts = [
    new PgDatabase({ url: schema.url, max: 4 }),
    new PgDatabase({ url: schema.url, max: 4 }),
  ];
  try {
    const stores = hosts.map((h) =>
      new PgExtismVarStore({ client: h.sqlClient }).forPlugin("racy", 30)
    );
    // 40 writes of 3 bytes each (key "kNN" is 3 bytes, value 1 byte: 4),
    // all at once from both hosts: at most 7 fit in 30 bytes.
    const outcomes = await Promise.allSettled(
      Array.from(
        { length: 40 },
        (_, i) =>
          stores[i % 2]!.set(`k${String(i).padStart(2, "0")}`, te.encode("x")),
      ),
    );
    const kept = outcomes.filter((o) => o.status === "fulfilled").length;
    for (const o of outcomes) {
      if (o.status === "rejected") {
        assert.ok(o.reason instanceof ExtismVarLimitError, String(o.reason));
      }
    }
    const { rows } = await hosts[0]!.sqlClient.query(
      `SELECT coalesce(sum(octet_length(key) + octet_length(value)), 0)::int
         AS used, count(*)::int AS n
       FROM goatkit.extism_vars
       WHERE scope = current_schema() AND plugin = 'racy'`,
    );
    assert.equal(rows[0]!.n, kept);
    assert.ok(
      (rows[0]!.used as number) <= 30,
      `the vars take ${rows[0]!.used} bytes, over the cap of 30`,
    );
    assert.equal(kept, 7, "every write that fitted was kept");
  } finally {
    for (const h of hosts) await h.close();
    await schema.drop();
  }
});

Deno.test(
  "PgExtismVarStore keeps each plugin's vars apart and under their cap; extism.json's max_var_bytes stops a growing plugin (PostgreSQL)",
  async () => {
    const schema = await privateSchema();
    const db = new PgDatabase({ url: schema.url, max: 2 });
    const root = await Deno.makeTempDir({ prefix: "gk-extism-vars-" });
    try {
      const store = new PgExtismVarStore({ client: db.sqlClient });
      const a = store.forPlugin("a", 8);
      const b = store.forPlugin("b");
      await a.set("k", te.encode("12345"));
      await b.set("k", te.encode("other plugin"));
      assert.equal(new TextDecoder().decode((await a.get("k"))!), "12345");
      assert.equal(
        new TextDecoder().decode((await b.get("k"))!),
        "other plugin",
      );
      // Replacing a value counts its new size, not both.
      await a.set("k", te.encode("1234567")); // 1 + 7 bytes
      await assert.rejects(
        () => a.set("j", te.encode("x")),
        ExtismVarLimitError,
      );
      await a.set("k", null);
      assert.equal(await a.get("k"), null);
      await a.set("j", te.encode("x"));
      await store.deletePlugin("a");
      assert.equal(await a.get("j"), null);
      assert.ok(await b.get("k"));

      // A plugin whose extism.json allows 8 bytes of vars: "x", "xx", then refused.
      const dir = join(root, "capped");
      await Deno.mkdir(dir);
      await Deno.writeFile(join(dir, "plugin.wasm"), await extismHostWasm());
      await Deno.writeTextFile(
        join(dir, "extism.json"),
        JSON.stringify({
          wasm: [{ path: "plugin.wasm" }],
          memory: { max_var_bytes: 8 }, // "visits" and two "x"
        }),
      );
      const load = createRuntimeFactory({
        grants: new MemoryGrantStore(),
        dataDir: join(root, "data"),
        extism: {
          vars: (name, max) => store.forPlugin(name, max),
          maxVarBytes: 1024,
        },
        wasm: { idleTimeoutMs: 0 },
      });
      const plugin = await load({
        name: "capped",
        dir,
        kind: "extism",
        entry: join(dir, "extism.json"),
        manifest: { name: "capped", version: "1.0.0" },
      });
      try {
        await plugin.init(new MemoryHostAPI(), {
          name: "capped",
          quarantine: () => {},
        });
        const visit = async () =>
          new TextDecoder().decode(
            (await plugin.call("visit", null, createCallContext()))!,
          );
        assert.equal(await visit(), "x");
        assert.equal(await visit(), "xx");
        await assert.rejects(visit, /over the limit of 8/);
        assert.equal(
          new TextDecoder().decode((await store.get("capped", "visits"))!),
          "xx",
        );
      } finally {
        await plugin.shutdown();
      }
    } finally {
      await db.close();
      await schema.drop();
      await Deno.remove(root, { recursive: true }).catch(() => {});
    }
  },
);

Deno.test("gk pack: extism.json may name its module through a dot segment; a module outside the folder, or named with a backslash, is still refused", async () => {
  const { packPlugin } = await import("../host/cli/pack.ts");
  const dir = await Deno.makeTempDir({ prefix: "gk-pack-extism-" });
  try {
    await Deno.mkdir(join(dir, "sub"));
    await Deno.writeFile(join(dir, "plugin.wasm"), await extismHostWasm());
    await Deno.writeTextFile(
      join(dir, "manifest.json"),
      JSON.stringify(sidecar("ex-dots", ["echo"])),
    );
    const extism = (path: string) =>
      Deno.writeTextFile(
        join(dir, "extism.json"),
        JSON.stringify({ wasm: [{ path }] }),
      );
    for (const path of ["sub/../plugin.wasm", "./plugin.wasm", "plugin.wasm"]) {
      await extism(path);
      const packed = await packPlugin(dir);
      assert.equal(packed.entry.kind, "extism", path);
    }
    await extism("../plugin.wasm");
    await assert.rejects(packPlugin(dir), /plugin\.wasm/);
    // A backslash is part of a name for the loader, so for gk pack too.
    await Deno.copyFile(join(dir, "plugin.wasm"), join(dir, "sub", "m.wasm"));
    await extism("sub\\m.wasm");
    await assert.rejects(packPlugin(dir), /not packed/);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});
