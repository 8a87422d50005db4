// Plugin routes: the swapped route table, args, results, error mapping,
// collisions. Native TypeScript plugins on a real Manager and createApp.

import {
  InvalidManifestError,
  PermissionDeniedError,
  PluginCrashedError,
} from "../host/model/errors.ts";
import {
  findRouteConflicts,
  patternsOverlap,
  reservedNameCheck,
  RouteCollisionError,
} from "../host/server/mod.ts";
import { buildRouteTable } from "../host/server/route_table.ts";
import type { Plugin } from "../host/model/plugin.ts";
import {
  assert,
  assertEquals,
  assertMatch,
  assertRejects,
  assertThrows,
  json,
  nativePlugin,
  setup,
} from "./server_helpers.ts";

const hello = () =>
  nativePlugin({
    name: "hello",
    version: "1.0.0",
    routes: [
      { method: "GET", path: "/api/plugins/hello/:id", handler: "echo" },
      { method: "POST", path: "/api/plugins/hello/:id", handler: "echo" },
      { method: "GET", path: "/hello/page", handler: "page" },
      { method: "GET", path: "/hello/fail/:kind", handler: "fail" },
    ],
    error_codes: [{
      code: "name_required",
      message: "A name is required",
      http_status: 422,
    }],
  }, {
    echo: (args) => ({ args }),
    page: () => ({
      html:
        `<div class="x" onclick="alert(1)">Hi<script>window.pwned=1</script>` +
        `<img src="x" onerror="window.pwned=2"><a href="javascript:alert(1)">l</a></div>`,
    }),
    fail: (args, ctx) => {
      switch (args?.kind) {
        case "crash":
          throw new PluginCrashedError("hello", "trap: unreachable");
        case "denied":
          throw new PermissionDeniedError(
            "hello",
            "db:write",
            "db_exec DELETE",
          );
        case "code":
          return { error: { code: "name_required" } };
        case "thrown-code":
          throw Object.assign(new Error("name missing"), {
            code: "name_required",
          });
        case "unknown-code":
          return { error: { code: "nope" } };
        case "slow":
          return new Promise((resolve) =>
            ctx.signal.addEventListener("abort", () => resolve({ late: true }))
          );
        default:
          throw new Error("plain failure");
      }
    },
  });

Deno.test("plugin route answers with GoatFlow's args shape and the request language", async () => {
  const t = await setup();
  try {
    const p = hello();
    await t.manager.register(p);
    let res = await t.req("GET", "/api/plugins/hello/42?tag=a&tag=b&q=x", {
      headers: { "accept-language": "fr;q=0.5, de-CH, en;q=0.8" },
    });
    assertEquals(res.status, 200);
    assertMatch(res.headers.get("content-type")!, /application\/json/);
    assertEquals(await json(res), {
      args: {
        id: "42",
        tag: ["a", "b"],
        q: "x",
        _method: "GET",
        _path: "/api/plugins/hello/42",
      },
    });
    assertEquals(p.calls.at(-1)?.language, "de-CH");

    // JSON-object body keys override path and query; non-object bodies are ignored.
    res = await t.req("POST", "/api/plugins/hello/42?q=x", {
      body: JSON.stringify({ q: "y", id: "body", n: 1 }),
      headers: { "content-type": "application/json" },
    });
    assertEquals((await json<{ args: unknown }>(res)).args, {
      id: "body",
      q: "y",
      n: 1,
      _method: "POST",
      _path: "/api/plugins/hello/42",
    });
    res = await t.req("POST", "/api/plugins/hello/7", { body: "[1,2]" });
    assertEquals((await json<{ args: unknown }>(res)).args, {
      id: "7",
      _method: "POST",
      _path: "/api/plugins/hello/7",
    });

    // HEAD is served by the GET route.
    res = await t.req("HEAD", "/api/plugins/hello/1");
    assertEquals(res.status, 200);
    await res.body?.cancel();
  } finally {
    await t.close();
  }
});

Deno.test("disable makes the route answer 503 at once (JSON reason), quarantine too, enable restores it, unregister removes it (404)", async () => {
  const t = await setup();
  try {
    const plugin = hello();
    await t.manager.register(plugin);
    assertEquals((await t.req("GET", "/api/plugins/hello/1")).status, 200);
    const served = plugin.calls.length;
    await t.manager.disable("hello");
    const off = await t.req("GET", "/api/plugins/hello/1");
    assertEquals(off.status, 503);
    assertEquals(off.headers.get("retry-after"), null);
    assertEquals(await off.json(), {
      error: "plugin unavailable",
      message: 'Cannot call plugin "hello": an administrator disabled it',
      plugin: "hello",
      reason: "disabled",
    });
    // A wrong URL is still 404: clients can tell the two apart.
    const wrong = await t.req("GET", "/api/plugins/hellp/1");
    assertEquals(wrong.status, 404);
    await wrong.body?.cancel();
    await t.manager.quarantine("hello", "secret detail: 5 traps at 0xdead");
    const q = await t.req("GET", "/api/plugins/hello/1");
    assertEquals(q.status, 503);
    const qBody = await q.json();
    assertEquals([qBody.error, qBody.reason], [
      "plugin unavailable",
      "quarantined",
    ]);
    // The quarantine's own text is for admins (the plugin list), not clients.
    assert(!JSON.stringify(qBody).includes("0xdead"), JSON.stringify(qBody));
    const listed = await json(
      await t.req("GET", "/api/v1/plugins/hello", { token: t.adminToken }),
    );
    assertEquals([listed.status, listed.reason], [
      "quarantined",
      "secret detail: 5 traps at 0xdead",
    ]);
    // The plugin was never called while unavailable.
    assertEquals(plugin.calls.length, served);
    await t.manager.enable("hello");
    const on = await t.req("GET", "/api/plugins/hello/1");
    assertEquals(on.status, 200);
    await on.body?.cancel();
    await t.manager.unregister("hello");
    const gone = await t.req("GET", "/api/plugins/hello/1");
    assertEquals(gone.status, 404);
    await gone.body?.cancel();
    assertEquals(t.server.routeTable().routes.length, 0);
  } finally {
    await t.close();
  }
});

Deno.test("replace (hot reload / upgrade) swaps in the new version's routes", async () => {
  const t = await setup();
  try {
    await t.manager.register(hello());
    const v2 = nativePlugin({
      name: "hello",
      version: "2.0.0",
      routes: [{ method: "GET", path: "/hello/v2", handler: "v" }],
    }, { v: () => ({ version: 2 }) });
    await t.manager.replace(v2);
    assertEquals(await json(await t.req("GET", "/hello/v2")), { version: 2 });
    const old = await t.req("GET", "/api/plugins/hello/1");
    assertEquals(old.status, 404);
    await old.body?.cancel();
  } finally {
    await t.close();
  }
});

Deno.test("html results are sanitised: no script, no event handler, no javascript: URL", async () => {
  const t = await setup();
  try {
    await t.manager.register(hello());
    const res = await t.req("GET", "/hello/page");
    assertEquals(res.status, 200);
    assertMatch(res.headers.get("content-type")!, /text\/html/);
    assertMatch(
      res.headers.get("content-security-policy")!,
      /script-src 'none'/,
    );
    const body = await res.text();
    assert(body.includes("Hi"), body);
    for (
      const bad of ["<script", "pwned", "onclick", "onerror", "javascript:"]
    ) {
      assert(!body.includes(bad), `${bad} in ${body}`);
    }
  } finally {
    await t.close();
  }
});

Deno.test("errors map to statuses: crash 502, denied 403, codes → declared status, timeout 504, else 500", async () => {
  const t = await setup({ callTimeoutMs: 200 });
  try {
    await t.manager.register(hello());
    const status = async (kind: string) => {
      const res = await t.req("GET", `/hello/fail/${kind}`);
      return { status: res.status, body: await json(res) };
    };
    assertEquals((await status("crash")).status, 502);
    assertEquals((await status("denied")).status, 403);
    const code = await status("code");
    assertEquals(code.status, 422);
    assertEquals(code.body, {
      error: { code: "hello:name_required", message: "A name is required" },
    });
    const thrown = await status("thrown-code");
    assertEquals(thrown.status, 422);
    // An undeclared code is an ordinary JSON result.
    assertEquals(await status("unknown-code"), {
      status: 200,
      body: { error: { code: "nope" } },
    });
    const slow = await status("slow");
    assertEquals(slow.status, 504);
    assertMatch(String(slow.body.error), /timed out/);
    const plain = await status("plain");
    assertEquals(plain, { status: 500, body: { error: "plain failure" } });
    // 5xx errors are logged under the plugin's name.
    assert(t.logs.getByPlugin("hello").some((e) => e.level === "error"));
  } finally {
    await t.close();
  }
});

Deno.test("request bodies above the limit are refused with 413", async () => {
  const t = await setup({ maxBodyBytes: 1000 });
  try {
    await t.manager.register(hello());
    const res = await t.req("POST", "/api/plugins/hello/1", {
      body: "x".repeat(5000),
    });
    assertEquals(res.status, 413);
    await res.body?.cancel();
  } finally {
    await t.close();
  }
});

Deno.test("route collisions are refused at registration with a clear error", async () => {
  const t = await setup();
  try {
    await t.manager.register(hello());
    const clash = nativePlugin({
      name: "clash",
      version: "1.0.0",
      routes: [{
        method: "GET",
        path: "/api/plugins/hello/:other",
        handler: "x",
      }],
    }, {});
    const e = await assertRejects(
      () => t.manager.register(clash),
      InvalidManifestError,
    );
    assertMatch(
      e.message,
      /routes\[0\]\.path.*collides with plugin "hello" route GET \/api\/plugins\/hello\/:id/,
    );
    assertEquals(t.manager.list().map((m) => m.name), ["hello"]);

    for (
      const path of [
        "/admin/x",
        "/healthz",
        "/api/v1/plugins",
        "/static/a.js",
        "/:any",
        "/login",
      ]
    ) {
      const hostClash = nativePlugin({
        name: "host-clash",
        version: "1.0.0",
        routes: [{ method: "POST", path, handler: "x" }],
      }, {});
      const err = await assertRejects(
        () => t.manager.register(hostClash),
        InvalidManifestError,
      );
      assertMatch(err.message, /collides with host route/);
    }

    // A different method on the same path is fine.
    await t.manager.register(nativePlugin({
      name: "other",
      version: "1.0.0",
      routes: [{
        method: "DELETE",
        path: "/api/plugins/hello/:id",
        handler: "d",
      }],
    }, { d: () => ({ deleted: true }) }));
    assertEquals(await json(await t.req("DELETE", "/api/plugins/hello/1")), {
      deleted: true,
    });

    // checkRoutes, for loaders that check before registering.
    assertThrows(
      () =>
        t.server.checkRoutes({
          name: "x",
          routes: [{ method: "GET", path: "/hello/page", handler: "h" }],
        }),
      RouteCollisionError,
    );
    t.server.checkRoutes({
      name: "hello",
      routes: [{ method: "GET", path: "/hello/page", handler: "h" }],
    });
  } finally {
    await t.close();
  }
});

Deno.test("without the register-time check, the rebuild leaves a colliding plugin out and logs it", async () => {
  const t = await setup({ collisionCheck: false });
  try {
    await t.manager.register(hello());
    await t.manager.register(nativePlugin({
      name: "zz-clash",
      version: "1.0.0",
      routes: [{ method: "GET", path: "/hello/page", handler: "x" }, {
        method: "GET",
        path: "/zz",
        handler: "x",
      }],
    }, { x: () => ({ zz: true }) }));
    const table = t.server.routeTable();
    assertEquals(table.refused.map((r) => r.plugin), ["zz-clash"]);
    // The whole plugin is out, and the first one keeps its route.
    const zz = await t.req("GET", "/zz");
    assertEquals(zz.status, 404);
    await zz.body?.cancel();
    assertMatch(await (await t.req("GET", "/hello/page")).text(), /Hi/);
    assert(
      t.logs.getByPlugin("zz-clash").some((e) =>
        /routes not mounted/.test(e.message)
      ),
    );
    const info = await json(
      await t.req("GET", "/api/v1/plugins/zz-clash", { token: t.adminToken }),
    );
    assertMatch(String(info.routeConflict), /collides/);
  } finally {
    await t.close();
  }
});

Deno.test("patternsOverlap follows Hono's syntax conservatively", () => {
  const yes: [string, string][] = [
    ["/a/:id", "/a/new"],
    ["/a/*", "/a"],
    ["/a/*", "/a/b/c"],
    ["/a/:x?", "/a"],
    ["/a/", "/a"],
    ["/:a/b", "/x/:c"],
    ["/a/:id{[0-9]+}", "/a/x"],
    ["/x*", "/xyz"],
  ];
  const no: [string, string][] = [
    ["/a/:id", "/b/1"],
    ["/a/:id", "/a/1/2"],
    ["/a", "/ab"],
    ["/api/plugins/x", "/api/v1"],
  ];
  for (const [a, b] of yes) assert(patternsOverlap(a, b), `${a} ~ ${b}`);
  for (const [a, b] of no) assert(!patternsOverlap(a, b), `${a} !~ ${b}`);
  assertEquals(
    findRouteConflicts({
      name: "p",
      routes: [{ method: "GET", path: "/ok", handler: "h" }],
    }, []),
    [],
  );
});

Deno.test("lazy loading: discovered plugins' routes are mounted and a hit loads the plugin", async () => {
  const lazyManifest = {
    name: "lazy",
    version: "0.3.0",
    description: "Loaded on first use",
    routes: [{ method: "GET" as const, path: "/lazy/:x", handler: "h" }],
    widgets: [{ id: "w", title: "W", handler: "w", location: "dashboard" }],
  };
  let loads = 0;
  const lazyLoader = {
    discovered: () => ["lazy"],
    ensureLoaded: async (name: string) => {
      if (name !== "lazy") throw new Error(`${name} not discovered`);
      if (t.manager.manifest(name)) return;
      loads++;
      await t.manager.register(
        nativePlugin(lazyManifest, {
          h: (a) => ({ x: a?.x }),
          w: () => ({ html: "<i>lazy widget</i>" }),
        }),
      );
    },
    reload: () => Promise.resolve(),
  };
  const t = await setup({
    discovered: () => [lazyManifest],
    loader: lazyLoader,
  });
  try {
    t.manager.setLazyLoader(lazyLoader);
    t.server.rebuildRoutes();
    const info = await json(
      await t.req("GET", "/api/v1/plugins/lazy", { token: t.adminToken }),
    );
    assertEquals([info.status, info.version, info.description], [
      "not-loaded",
      "0.3.0",
      "Loaded on first use",
    ]);
    // Rendering its widget loads it through the loader seam.
    const w = await t.req("GET", "/api/v1/plugins/lazy/widgets/w", {
      token: t.userToken,
    });
    assertEquals(await w.text(), "<i>lazy widget</i>");
    assertEquals(loads, 1);
    assertEquals(await json(await t.req("GET", "/lazy/7")), { x: "7" });
    assertEquals(loads, 1);
    assertEquals(t.manager.status("lazy")?.enabled, true);
    assertEquals(await json(await t.req("GET", "/lazy/8")), { x: "8" });
    assertEquals(loads, 1);
    await t.manager.disable("lazy");
    const off = await t.req("GET", "/lazy/9");
    assertEquals(off.status, 503);
    assertEquals((await off.json()).reason, "disabled");
  } finally {
    await t.close();
  }
});

Deno.test("routeFor() names the route a request is for, matched as the app matches it", async () => {
  const table = buildRouteTable([
    { plugin: "a", method: "GET", path: "/a/:id{[0-9]+}", handler: "one" },
    { plugin: "a", method: "POST", path: "/a/:id{[0-9]+}", handler: "save" },
    { plugin: "b", method: "GET", path: "/b/*", handler: "any" },
  ], (r) => [(c) => Promise.resolve(c.text(`${r.plugin}.${r.handler}`))]);
  const cases: [string, string, string | undefined][] = [
    ["GET", "/a/12", "a.one"],
    ["HEAD", "/a/12", "a.one"],
    ["POST", "/a/12", "a.save"],
    ["GET", "/a/x", undefined],
    ["DELETE", "/a/12", undefined],
    ["GET", "/b/x/y", "b.any"],
    ["GET", "/c", undefined],
  ];
  for (const [method, path, want] of cases) {
    const r = table.routeFor(method, path);
    assertEquals(r && `${r.plugin}.${r.handler}`, want, `${method} ${path}`);
    assertEquals(table.matches(method, path), want !== undefined);
    // The app agrees: it serves exactly the routes routeFor() names.
    if (want && method !== "HEAD") {
      const res = await table.app.fetch(
        new Request(`http://x${path}`, { method }),
      );
      assertEquals(await res.text(), want);
    }
  }
});

Deno.test("lazy loading: a raw-input (Extism) plugin's first request gets the body as sent and its answer is never served as HTML", async () => {
  const manifest = {
    name: "rawp",
    version: "1.0.0",
    routes: [{ method: "POST" as const, path: "/rawp", handler: "echo" }],
  };
  const seen: string[] = [];
  const plugin: Plugin = {
    routeInput: "raw",
    gkRegister: () => manifest,
    init: () => Promise.resolve(),
    call: (_fn, args) => {
      seen.push(new TextDecoder().decode(args ?? new Uint8Array()));
      return Promise.resolve(
        new TextEncoder().encode('{"html":"<script>x</script>"}'),
      );
    },
    shutdown: () => Promise.resolve(),
  };
  const loader = {
    discovered: () => ["rawp"],
    ensureLoaded: async (name: string) => {
      if (!t.manager.manifest(name)) await t.manager.register(plugin);
    },
    reload: () => Promise.resolve(),
  };
  const t = await setup({ discovered: () => [manifest], loader });
  try {
    t.manager.setLazyLoader(loader);
    t.server.rebuildRoutes();
    for (let i = 0; i < 2; i++) {
      const res = await t.req("POST", "/rawp", { body: "hello" });
      assertEquals(
        res.headers.get("content-type"),
        "application/json; charset=utf-8",
      );
      assertEquals(await res.text(), '{"html":"<script>x</script>"}');
    }
    assertEquals(
      seen,
      ["hello", "hello"],
      "the first request too got the raw body",
    );
  } finally {
    await t.close();
  }
});

Deno.test("reservedNameCheck refuses names the API uses as paths", () => {
  assertEquals(reservedNameCheck({ name: "logs", version: "1.0.0" }).length, 1);
  assertEquals(reservedNameCheck({ name: "hello", version: "1.0.0" }), []);
});
