// Browser acceptance test of the admin "Operations" page: Debian's
// /usr/bin/chromium driven by npm:playwright-core against a real server on
// 127.0.0.1 with host metrics on. An admin logs in, follows the nav link,
// and sees each plugin's last hour with server-drawn inline SVG charts; the
// page needs nothing its CSP forbids.

import {
  hasChromium,
  launchChromium,
  SCREENSHOT_DIR,
} from "./helpers/browser.ts";
import { Manager } from "../host/manager.ts";
import { createInterceptors } from "../host/model/interceptors.ts";
import { createApp, MemoryTokenStore } from "../host/server/mod.ts";
import { HostMetrics } from "../host/telemetry/metrics.ts";
import {
  assert,
  assertEquals,
  assertMatch,
  nativePlugin,
} from "./server_helpers.ts";

Deno.test({
  name: "browser: the Operations page shows calls, errors and SVG charts",
  // Chromium is required (CI installs the `chromium` apt package); without
  // it the test cannot run at all, so it is ignored rather than failed.
  ignore: !hasChromium,
  // playwright-core keeps internal timers and pipes alive until its event
  // loop drains after browser.close().
  sanitizeOps: false,
  sanitizeResources: false,
  async fn() {
    const interceptors = createInterceptors();
    const metrics = new HostMetrics();
    interceptors.plugin.push(metrics.pluginInterceptor);
    const manager = new Manager({ interceptors: interceptors.plugin });
    metrics.watch(manager);
    await manager.register(nativePlugin({
      name: "hello",
      version: "1.0.0",
      routes: [{ method: "GET", path: "/api/plugins/hello", handler: "hello" }],
    }, {
      hello: () => ({ message: "Hello" }),
      fail: () => {
        throw new Error("boom");
      },
    }));
    for (let i = 0; i < 5; i++) await manager.call("hello", "hello", null);
    await manager.call("hello", "fail", null).catch(() => {});
    const tokens = new MemoryTokenStore();
    const { token } = await tokens.create({ name: "admin", admin: true });
    const server = createApp({ manager, tokens, metrics });
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
        viewport: { width: 1280, height: 700 },
      });
      page.setDefaultTimeout(30_000);
      const cspViolations: string[] = [];
      page.on("console", (m) => {
        if (/Content Security Policy/i.test(m.text())) {
          cspViolations.push(m.text());
        }
      });
      // A route request through the browser is counted as well.
      await page.goto(`${base}/admin/plugins`);
      await page.fill("#token", token);
      await page.click("button[type=submit]");
      await page.waitForURL(`${base}/admin/plugins`);

      await page.click('nav a[href="/admin/operations"]');
      await page.waitForURL(`${base}/admin/operations`);
      const row = page.locator('tr[data-plugin="hello"]');
      assertEquals(await row.getAttribute("data-plugin"), "hello");
      const text = await row.innerText();
      assertMatch(text, /\b6\b/); // 5 calls + 1 failed
      assertMatch(text, /16\.7 %/); // 1 error in 6
      // The charts are inline SVG the browser lays out (not images).
      const svg = row.locator("svg[role=img]").first();
      const box = await svg.boundingBox();
      assert(box && box.width >= 100 && box.height >= 20, JSON.stringify(box));
      assert(
        (await row.locator("svg rect").count()) >= 2,
        "a bar for the calls and one for the error",
      );
      if (SCREENSHOT_DIR) {
        await page.screenshot({
          path: `${SCREENSHOT_DIR}/goatkit_operations.png`,
          fullPage: true,
        });
      }
      assertEquals(cspViolations, []);
    } finally {
      await browser.close();
      ac.abort();
      await http.finished;
      server.close();
      await manager.shutdownAll();
    }
  },
});
