// The JSON API and admin pages: plugin list (loaded + discovered), widgets,
// logs filters, grants, audit, jobs, upload seam, healthz, escaping.

import { Scheduler } from "../host/scheduler.ts";
import { grantsProvider } from "../host/serve.ts";
import { AuditLog } from "../permissions/audit.ts";
import { MemoryGrantStore } from "../permissions/grants.ts";
import type { PackagesProvider } from "../host/server/mod.ts";
import {
  assert,
  assertEquals,
  assertMatch,
  json,
  nativePlugin,
  setup,
} from "./server_helpers.ts";

const XSS =
  `<img src=x onerror="window.pwned=1"><script>window.pwned=2</script>`;

const widgets = () =>
  nativePlugin({
    name: "dash",
    version: "1.2.3",
    description: `Widget plugin ${XSS}`,
    author: "<b>mallory</b>",
    permissions: ["db:read", "http:api.example.com", "log"],
    widgets: [
      {
        id: "b-second",
        title: "Second",
        handler: "w",
        location: "dashboard",
        order: 20,
      },
      {
        id: "a-third",
        title: "Third",
        handler: "w",
        location: "dashboard",
        order: 30,
      },
      {
        id: "first",
        title: `First ${XSS}`,
        handler: "evil",
        location: "dashboard",
        order: 10,
        refreshable: true,
        refresh_sec: 30,
      },
      {
        id: "elsewhere",
        title: "Else",
        handler: "w",
        location: "agent",
        order: 1,
      },
    ],
    menu_items: [
      {
        id: "m2",
        label: "Second item",
        path: "/x/2",
        location: "admin",
        order: 2,
      },
      {
        id: "m1",
        label: `First ${XSS}`,
        path: "//evil.example/",
        location: "admin",
        order: 1,
      },
    ],
    jobs: [{
      id: "tick",
      handler: "tick",
      schedule: "0 0 1 1 *",
      enabled: true,
      timeout: "5s",
    }],
  }, {
    w: (_a, ctx) => ({ html: `<p>lang=${ctx.language ?? ""}</p>` }),
    evil: () => ({ html: `<p class="ok">visible</p>${XSS}` }),
    tick: () => ({ ticked: true }),
  });

Deno.test("plugin list: loaded plugins with status, runtime, permissions; discovered-not-loaded ones", async () => {
  const grants = new MemoryGrantStore();
  const t = await setup({ grants: grantsProvider(grants) });
  try {
    await t.manager.register(widgets());
    await grants.set("dash", ["db:read"]);
    t.manager.setLazyLoader({
      discovered: () => ["dash", "lazy-one"],
      ensureLoaded: async (name) => {
        if (name !== "lazy-one") throw new Error("not discovered");
        await t.manager.register(
          nativePlugin({ name: "lazy-one", version: "0.1.0" }, {}),
        );
      },
    });
    const { plugins } = await json<{ plugins: Record<string, unknown>[] }>(
      await t.req("GET", "/api/v1/plugins", { token: t.userToken }),
    );
    assertEquals(plugins.map((p) => [p.name, p.loaded, p.status]), [
      ["dash", true, "pending-grants"], // http:api.example.com waits
      ["lazy-one", false, "not-loaded"],
    ]);
    const w = plugins[0]!;
    assertEquals(w.version, "1.2.3");
    assertEquals(w.runtime, "native");
    assertEquals(w.permissions, {
      requested: ["db:read", "http:api.example.com", "log"],
      granted: ["db:read"],
      pending: ["http:api.example.com"],
      unused: [],
    });
    assertEquals((w.widgets as unknown[]).length, 4);
    assertEquals(plugins[1]!.description, "Not loaded (lazy loading enabled)");

    // Enabling a discovered plugin loads it.
    await (await t.req("POST", "/api/v1/plugins/lazy-one/enable", {
      token: t.adminToken,
    })).body
      ?.cancel();
    assertEquals(t.manager.status("lazy-one")?.enabled, true);

    await t.manager.quarantine("dash", "5 traps in 60 s");
    const details = await json(
      await t.req("GET", "/api/v1/plugins/dash", { token: t.adminToken }),
    );
    assertEquals([details.status, details.reason], [
      "quarantined",
      "5 traps in 60 s",
    ]);
    const missing = await t.req("GET", "/api/v1/plugins/nope", {
      token: t.adminToken,
    });
    assertEquals(missing.status, 404);
    await missing.body?.cancel();
  } finally {
    await t.close();
  }
});

Deno.test("widgets: listed in order then id; rendered sanitised with the request language", async () => {
  const t = await setup();
  try {
    await t.manager.register(widgets());
    const list = await json<
      { widgets: { id: string; plugin_name: string; refresh_sec?: number }[] }
    >(
      await t.req("GET", "/api/v1/plugins/widgets?location=dashboard", {
        token: t.userToken,
      }),
    );
    assertEquals(list.widgets.map((w) => w.id), [
      "first",
      "b-second",
      "a-third",
    ]);
    assertEquals(list.widgets[0]!.refresh_sec, 30);
    assertEquals(list.widgets[0]!.plugin_name, "dash");

    const evil = await t.req("GET", "/api/v1/plugins/dash/widgets/first", {
      token: t.userToken,
    });
    assertEquals(evil.status, 200);
    const body = await evil.text();
    assert(body.includes("visible"));
    assert(!/script|onerror|pwned/.test(body), body);

    const lang = await t.req(
      "GET",
      "/api/v1/plugins/dash/widgets/b-second?wrap=true",
      {
        token: t.userToken,
        headers: { "accept-language": "de-CH,de;q=0.9" },
      },
    );
    assertMatch(await lang.text(), /<header>Second<\/header>.*lang=de-CH/s);

    const nf = await t.req("GET", "/api/v1/plugins/dash/widgets/none", {
      token: t.userToken,
    });
    assertEquals(nf.status, 404);
    assertEquals(await nf.text(), "Widget not found: dash/none");
  } finally {
    await t.close();
  }
});

Deno.test("logs API filters by plugin, level and limit; clear empties it", async () => {
  const t = await setup();
  try {
    t.logs.clear();
    t.logs.log("a", "debug", "a debug");
    t.logs.log("a", "error", "a error");
    t.logs.log("b", "warn", "b warn");
    t.logs.log("b", "info", "b info");
    const get = async (q: string) =>
      await json<{ logs: { message: string }[]; count: number; total: number }>(
        await t.req("GET", `/api/v1/plugins/logs${q}`, { token: t.adminToken }),
      );
    assertEquals((await get("?plugin=a")).logs.map((l) => l.message), [
      "a error",
      "a debug",
    ]);
    assertEquals((await get("?level=warn")).logs.map((l) => l.message), [
      "b warn",
      "a error",
    ]);
    assertEquals(
      (await get("?plugin=b&level=warn")).logs.map((l) => l.message),
      ["b warn"],
    );
    const limited = await get("?limit=2");
    assertEquals([limited.count, limited.total], [2, 4]);
    assertEquals((await get("?limit=-5")).count, 4); // invalid → default 100
    const cleared = await t.req("DELETE", "/api/v1/plugins/logs", {
      token: t.adminToken,
    });
    assertEquals(await json(cleared), { message: "Plugin logs cleared" });
    assertEquals((await get("")).total, 0);
  } finally {
    await t.close();
  }
});

Deno.test("grants: view, approve (only what is requested), revoke", async () => {
  const grants = new MemoryGrantStore();
  const t = await setup({ grants: grantsProvider(grants) });
  try {
    await t.manager.register(widgets());
    const view = await json(
      await t.req("GET", "/api/v1/plugins/dash/grants", {
        token: t.adminToken,
      }),
    );
    assertEquals(view.pending, ["db:read", "http:api.example.com"]); // `log` is never pending
    const bad = await t.req("POST", "/api/v1/plugins/dash/grants", {
      token: t.adminToken,
      body: JSON.stringify({ permissions: ["db:write"] }),
    });
    assertEquals(bad.status, 400);
    await bad.body?.cancel();
    for (const body of ["{not json", '{"permissions":"db:read"}']) {
      const r = await t.req("POST", "/api/v1/plugins/dash/grants", {
        token: t.adminToken,
        body,
      });
      assertEquals(r.status, 400, body);
      await r.body?.cancel();
    }
    const ok = await json(
      await t.req("POST", "/api/v1/plugins/dash/grants", {
        token: t.adminToken,
        body: JSON.stringify({ permissions: ["db:read"] }),
      }),
    );
    assertEquals(ok.granted, ["db:read"]);
    const all = await json(
      await t.req("POST", "/api/v1/plugins/dash/grants", {
        token: t.adminToken,
      }),
    );
    assertEquals(all.pending, []);
    const revoked = await json(
      await t.req("DELETE", "/api/v1/plugins/dash/grants", {
        token: t.adminToken,
        body: JSON.stringify({ permissions: ["db:read"] }),
      }),
    );
    assertEquals(revoked.pending, ["db:read"]);
  } finally {
    await t.close();
  }
});

Deno.test("audit, jobs and upload use their seams (501 without them)", async () => {
  const bare = await setup();
  try {
    for (
      const [m, p] of [
        ["GET", "/api/v1/audit"],
        ["POST", "/api/v1/plugins/upload"],
        ["DELETE", "/api/v1/plugins/x"],
        ["POST", "/api/v1/jobs/x/y/run"],
        ["GET", "/api/v1/plugins/x/grants"],
      ]
    ) {
      const res = await bare.req(m!, p!, {
        token: bare.adminToken,
        body: m === "GET" ? undefined : "x",
      });
      assert([501, 404].includes(res.status), `${m} ${p} → ${res.status}`);
      await res.body?.cancel();
    }
  } finally {
    await bare.close();
  }

  const audit = new AuditLog();
  audit.record({
    plugin: "dash",
    permission: "db:write",
    attempted: "db_exec DELETE FROM t",
  });
  const installed: { size: number; filename?: string }[] = [];
  const packages: PackagesProvider = {
    install: (bytes, opts) => {
      installed.push({
        size: bytes.byteLength,
        ...(opts?.filename ? { filename: opts.filename } : {}),
      });
      return Promise.resolve({
        name: "dash",
        version: "1.2.3",
        previousVersion: "1.0.0",
      });
    },
    uninstall: () => Promise.resolve(),
  };
  const t = await setup({ audit, packages, maxUploadBytes: 1000 });
  const scheduler = new Scheduler(t.manager);
  try {
    await t.manager.register(widgets());
    const a = await json<{ entries: { permission: string }[] }>(
      await t.req("GET", "/api/v1/audit?plugin=dash", { token: t.adminToken }),
    );
    assertEquals(a.entries.map((e) => e.permission), ["db:write"]);

    const form = new FormData();
    form.set("plugin", new File([new Uint8Array(10)], "dash.zip"));
    const up = await json(
      await t.req("POST", "/api/v1/plugins/upload", {
        token: t.adminToken,
        body: form,
      }),
    );
    assertEquals([up.status, up.name, up.previousVersion], [
      "installed",
      "dash",
      "1.0.0",
    ]);
    assertEquals(installed, [{ size: 10, filename: "dash.zip" }]);
    // Oversized uploads are refused before the installer sees them.
    for (
      const body of [new Uint8Array(5000), new Uint8Array(3 * 1024 * 1024)]
    ) {
      const big = await t.req("POST", "/api/v1/plugins/upload?filename=x.zip", {
        token: t.adminToken,
        body,
      });
      assertEquals(big.status, 413);
      await big.body?.cancel();
    }
    assertEquals(installed.length, 1);

    // Jobs without a scheduler: listed from manifests; run now → 501.
    const jobs = await json<{ jobs: { id: string }[]; scheduler: boolean }>(
      await t.req("GET", "/api/v1/jobs", { token: t.adminToken }),
    );
    assertEquals([jobs.scheduler, jobs.jobs.map((j) => j.id)], [false, [
      "tick",
    ]]);
  } finally {
    scheduler.stop();
    await t.close();
  }
});

Deno.test("jobs API with the real scheduler: list and run now", async () => {
  // The scheduler needs the Manager first: a second app over the same Manager.
  const t = await setup();
  const sched = new Scheduler(t.manager);
  const { createApp } = await import("../host/server/mod.ts");
  const app = createApp({
    manager: t.manager,
    tokens: t.tokens,
    scheduler: sched,
  });
  try {
    await t.manager.register(widgets());
    sched.start();
    const list = await app.fetch(
      new Request("http://h/api/v1/jobs", {
        headers: { authorization: `Bearer ${t.adminToken}` },
      }),
    );
    const body = await json<{ jobs: { id: string; lastRuns: unknown[] }[] }>(
      list,
    );
    assertEquals(body.jobs.map((j) => j.id), ["tick"]);
    const run = await app.fetch(
      new Request("http://h/api/v1/jobs/dash/tick/run", {
        method: "POST",
        headers: { authorization: `Bearer ${t.adminToken}` },
      }),
    );
    assertEquals((await json(run)).outcome, "ok");
    const page = await app.fetch(
      new Request("http://h/admin/jobs", {
        headers: { authorization: `Bearer ${t.adminToken}` },
      }),
    );
    const html = await page.text();
    assertMatch(html, /badge ok">scheduled/);
    assertMatch(html, /badge ok">ok<\/span>/); // the manual run is listed
    const missing = await app.fetch(
      new Request("http://h/api/v1/jobs/dash/none/run", {
        method: "POST",
        headers: { authorization: `Bearer ${t.adminToken}` },
      }),
    );
    assertEquals(missing.status, 404);
    await missing.body?.cancel();
  } finally {
    sched.stop();
    app.close();
    await t.close();
  }
});

Deno.test("healthz answers without auth", async () => {
  const t = await setup();
  try {
    await t.manager.register(widgets());
    const h = await json<{ status: string; plugins: { registered: number } }>(
      await t.req("GET", "/healthz"),
    );
    assertEquals(h.status, "ok");
    assertEquals(h.plugins.registered, 1);
  } finally {
    await t.close();
  }
});

Deno.test("admin pages escape plugin text, sanitise widget HTML and sort menu items and widgets", async () => {
  const grants = new MemoryGrantStore();
  const t = await setup({ grants: grantsProvider(grants) });
  try {
    await t.manager.register(widgets());
    const page = async (path: string) => {
      const res = await t.req("GET", path, { token: t.adminToken });
      assertEquals(res.status, 200, path);
      assertMatch(
        res.headers.get("content-security-policy")!,
        /script-src 'self'/,
      );
      return await res.text();
    };
    for (
      const path of [
        "/admin/plugins",
        "/admin/plugins/dash",
        "/admin/dashboard",
        "/admin/logs",
      ]
    ) {
      const html = await page(path);
      assert(!html.includes("<script>window"), `${path}: raw script`);
      assert(!/<img[^>]+onerror/.test(html), `${path}: raw onerror`);
      assert(!html.includes("<b>mallory</b>"), `${path}: unescaped author`);
    }
    const list = await page("/admin/plugins");
    assert(!/\}\s*<\/td>/.test(list), "no stray template braces");
    assert(
      list.includes("&lt;img src=x onerror="),
      "description shown escaped",
    );
    // Menu: sorted by order, unsafe href neutralised, label escaped.
    const m1 = list.indexOf("First &lt;img");
    const m2 = list.indexOf("Second item");
    assert(m1 > 0 && m2 > m1, "menu order");
    assert(!list.includes('href="//evil.example/"'));
    // Dashboard: order, refresh attributes.
    const dash = await page("/admin/dashboard");
    const order = ["First", "Second", "Third"].map((x) =>
      dash.indexOf(`<span>${x}`)
    );
    assert(
      order[0]! > 0 && order[0]! < order[1]! && order[1]! < order[2]!,
      `widget order ${order}`,
    );
    assertMatch(
      dash,
      /data-gk-refresh-url="\/admin\/widgets\/dash\/first" data-gk-refresh-sec="30"/,
    );
    assert(!dash.includes("Else"), "other locations are not on the dashboard");
    // Details: pending permissions marked new.
    const details = await page("/admin/plugins/dash");
    assertMatch(details, /new — not granted/);
  } finally {
    await t.close();
  }
});
