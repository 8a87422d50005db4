import assert from "node:assert/strict";
import {
  BasicHostAPI,
  createCallContext,
  encodeJson,
  ErrorCodeRegistry,
  I18nRegistry,
  LogBuffer,
  Manager,
  type Plugin,
  ServiceUnavailableError,
  TemplateOverrideRegistry,
} from "../mod.ts";
import { ErrorCodeConflictError } from "../host/registries/error_codes.ts";
import {
  formatMessage,
  TranslationConflictError,
} from "../host/registries/i18n.ts";
import {
  PluginCaller,
  renderOverride,
} from "../host/registries/plugin_caller.ts";
import { sanitizeHtml } from "../host/registries/sanitize.ts";
import { overrideHandlerName } from "../host/registries/templates.ts";

Deno.test("I18nRegistry falls back: language → base language → en → key", () => {
  const i18n = new I18nRegistry();
  i18n.addPlugin("shop", {
    translations: {
      en: { cart: "Cart", only_en: "English only" },
      de: { cart: "Warenkorb" },
      "de-ch": { cart: "Chörbli" },
    },
  });
  assert.equal(i18n.translate("shop.cart", "de-CH"), "Chörbli");
  assert.equal(i18n.translate("shop.cart", "de-AT"), "Warenkorb");
  assert.equal(i18n.translate("shop.cart", "de_DE"), "Warenkorb");
  assert.equal(i18n.translate("shop.cart", "fr"), "Cart");
  assert.equal(i18n.translate("shop.only_en", "de"), "English only");
  assert.equal(i18n.translate("shop.missing", "de"), "shop.missing");
  assert.equal(i18n.translate("shop.cart"), "Cart");
});

Deno.test("I18nRegistry uses the namespace when given, the plugin name otherwise", () => {
  const i18n = new I18nRegistry();
  i18n.addPlugin("hello-wasm", {
    namespace: "hello_wasm",
    translations: { en: { greeting: "Hi" } },
  });
  assert.equal(i18n.translate("hello_wasm.greeting", "en"), "Hi");
  assert.equal(
    i18n.translate("hello-wasm.greeting", "en"),
    "hello-wasm.greeting",
  );
});

Deno.test("formatMessage() fills {n} and printf-style arguments", () => {
  assert.equal(formatMessage("Hello, {0}!", ["Ana"]), "Hello, Ana!");
  assert.equal(
    formatMessage("%s has %d items", ["Ana", 3.7]),
    "Ana has 3 items",
  );
  assert.equal(formatMessage("{1} before {0}", ["a", "b"]), "b before a");
  assert.equal(formatMessage("100%% %v", [{ a: 1 }]), '100% {"a":1}');
  assert.equal(formatMessage("no args {0}", []), "no args {0}");
});

Deno.test("I18nRegistry refuses host namespaces and other plugins' namespaces", () => {
  const i18n = new I18nRegistry();
  i18n.addHost("en", { "tickets.title": "Tickets" });
  assert.throws(
    () => i18n.addPlugin("core", { translations: { en: { x: "y" } } }),
    TranslationConflictError,
  );
  assert.throws(
    () => i18n.addPlugin("evil", { namespace: "tickets" }),
    /belongs to the host/,
  );
  i18n.addPlugin("a-plugin", { translations: { en: { k: "v" } } });
  assert.throws(
    () => i18n.addPlugin("b-plugin", { namespace: "a-plugin" }),
    /belongs to plugin "a-plugin"/,
  );
  assert.equal(i18n.translate("tickets.title", "en"), "Tickets");
  i18n.removePlugin("a-plugin");
  assert.equal(i18n.translate("a-plugin.k", "en"), "a-plugin.k");
  i18n.addPlugin("b-plugin", { namespace: "a-plugin" });
});

Deno.test("ErrorCodeRegistry prefixes codes and refuses collisions", () => {
  const codes = new ErrorCodeRegistry();
  codes.addHost("core:not_found", "Not found", 404);
  codes.addPlugin("hello", [
    { code: "name_required", message: "Name required", http_status: 400 },
    { code: "a:b", message: "Prefixed anyway", http_status: 409 },
  ]);
  assert.deepEqual(codes.lookup("hello:name_required"), {
    owner: "hello",
    message: "Name required",
    httpStatus: 400,
  });
  assert.equal(codes.lookup("hello:a:b")?.httpStatus, 409);
  assert.equal(codes.lookup("name_required"), undefined);
  assert.throws(
    () =>
      codes.addPlugin("core", [{
        code: "not_found",
        message: "mine now",
        http_status: 200,
      }]),
    ErrorCodeConflictError,
  );
  assert.equal(codes.lookup("core:not_found")?.httpStatus, 404);
  codes.addPlugin("hello", [{
    code: "name_required",
    message: "again",
    http_status: 422,
  }]);
  assert.equal(codes.lookup("hello:name_required")?.httpStatus, 422);
  codes.removePlugin("hello");
  assert.deepEqual(codes.list().map((c) => c.code), ["core:not_found"]);
});

Deno.test("TemplateOverrideRegistry keeps only overrides, with GoatFlow's handler names", () => {
  const t = new TemplateOverrideRegistry();
  t.addPlugin("plugin-a", [
    { name: "pages/admin/dashboard.pongo2", override: true },
    { name: "partial.html" },
    { name: "test-template.html", override: true },
  ]);
  t.addPlugin("plugin-b", [{ name: "a/b/c/d.pongo2", override: true }]);
  assert.equal(t.has("partial.html"), false);
  assert.deepEqual(t.get("pages/admin/dashboard.pongo2"), {
    plugin: "plugin-a",
    template: "pages/admin/dashboard.pongo2",
    handler: "template_pages_admin_dashboard_pongo2",
  });
  assert.equal(t.list().length, 3);
  t.removePlugin("plugin-a");
  assert.deepEqual(t.list().map((o) => o.plugin), ["plugin-b"]);
  for (
    const [name, handler] of [
      ["simple", "template_simple"],
      ["test-template.html", "template_test_template_html"],
      ["a/b/c/d.pongo2", "template_a_b_c_d_pongo2"],
    ]
  ) assert.equal(overrideHandlerName(name!), handler);
});

Deno.test("sanitizeHtml() removes scripts, handlers and javascript: URLs", () => {
  const out = sanitizeHtml(
    '<div class="w" onclick="steal()">ok<script>alert(1)</script>' +
      '<img src="x" onerror="alert(2)"><a href="javascript:alert(3)">l</a>' +
      '<iframe src="https://evil"></iframe><svg onload="alert(4)"></svg></div>',
  );
  assert.doesNotMatch(
    out,
    /script|onerror|onclick|javascript:|iframe|onload|alert/,
  );
  assert.match(out, /<div class="w">ok/);
});

Deno.test("sanitizeHtml() drops every data-* attribute (the admin script's hooks), keeps aria-*", () => {
  const out = sanitizeHtml(
    '<div data-refresh-url="https://evil.example/x" DATA-GK-REFRESH-URL="/admin/logout" ' +
      'data-gk-plugin-html data-confirm="x" aria-label="ok" class="c">' +
      '<span data-x="1" title="t">y</span></div>',
  );
  assert.equal(
    out,
    '<div aria-label="ok" class="c"><span title="t">y</span></div>',
  );
});

function widgetPlugin(html: string): Plugin {
  return {
    gkRegister: () => ({
      name: "widgets",
      version: "1.0.0",
      widgets: [{
        id: "w",
        title: "W",
        handler: "render",
        location: "dashboard",
      }],
      templates: [{ name: "base/header.html", override: true }],
    }),
    init: () => Promise.resolve(),
    call: (fn, args) => {
      if (fn === "render") return Promise.resolve(encodeJson({ html }));
      if (fn === "template_base_header_html") {
        const a = JSON.parse(new TextDecoder().decode(args!));
        return Promise.resolve(
          encodeJson({ html: `<h1>${a.data.title}</h1><script>x()</script>` }),
        );
      }
      if (fn === "text") {
        return Promise.resolve(new TextEncoder().encode("not json"));
      }
      return Promise.reject(new Error(`unknown function: ${fn}`));
    },
    shutdown: () => Promise.resolve(),
  };
}

Deno.test("PluginCaller.widget() sanitises widget HTML: a <script> never reaches output", async () => {
  const m = new Manager();
  await m.register(
    widgetPlugin('<div>Widget<script>alert("x")</script></div>'),
  );
  const caller = new PluginCaller(m, "widgets");
  assert.equal(await caller.widget("w"), "<div>Widget</div>");
  assert.match(
    await caller.widget("nope"),
    /<!-- widget "nope" not found in plugin "widgets" -->/,
  );
  assert.match(await new PluginCaller(m, "ghost").widget("w"), /not found/);
  assert.match(
    await new PluginCaller(undefined, "x").widget("w"),
    /not available/,
  );
  await m.shutdownAll();
});

Deno.test("PluginCaller.call() returns JSON, raw text or {error}", async () => {
  const m = new Manager();
  await m.register(widgetPlugin("<p>x</p>"));
  const caller = new PluginCaller(m, "widgets");
  assert.deepEqual(await caller.call("render"), { html: "<p>x</p>" });
  assert.equal(await caller.call("text"), "not json");
  assert.deepEqual(await caller.call("zzz"), {
    error: "unknown function: zzz",
  });
  assert.deepEqual(await new PluginCaller(undefined, "w").call("x"), {
    error: "plugin manager not available",
  });
  await m.shutdownAll();
});

Deno.test("PluginCaller.translate() translates (GoatFlow's was a stub)", async () => {
  const m = new Manager();
  m.i18n.addHost("de", { "core.save": "Speichern" });
  assert.equal(
    new PluginCaller(m, "x", { language: "de" }).translate("core.save"),
    "Speichern",
  );
  await m.shutdownAll();
});

Deno.test("renderOverride() returns sanitised override HTML, or null", async () => {
  const m = new Manager();
  assert.equal(await renderOverride(m, "base/header.html", {}), null);
  await m.register(widgetPlugin(""));
  assert.equal(
    await renderOverride(m, "base/header.html", { title: "Hi" }),
    "<h1>Hi</h1>",
  );
  await m.disable("widgets");
  assert.equal(
    await renderOverride(m, "base/header.html", { title: "Hi" }),
    null,
  );
  assert.ok(
    m.logs.getByPlugin("widgets").some((e) =>
      /override failed/.test(e.message)
    ),
  );
  await m.shutdownAll();
});

Deno.test("BasicHostAPI logs, translates, reads config and refuses missing services", async () => {
  const logs = new LogBuffer();
  const i18n = new I18nRegistry();
  i18n.addHost("en", { "core.hi": "Hi {0}" });
  const host = new BasicHostAPI({
    logs,
    i18n,
    config: { "app.name": "GoatKit" },
  });
  const ctx = createCallContext({ chain: ["demo"] });
  host.log(ctx, "warn", "careful");
  assert.equal(logs.getByPlugin("demo")[0]?.message, "careful");
  assert.equal(await host.translate(ctx, "core.hi", ["Ana"]), "Hi Ana");
  assert.equal(await host.configGet(ctx, "app.name"), "GoatKit");
  await assert.rejects(
    () => host.dbQuery(ctx, "SELECT 1"),
    ServiceUnavailableError,
  );
  await assert.rejects(() => host.cacheGet(ctx, "k"), /no cache configured/);
  await assert.rejects(
    () => host.callPlugin(ctx, "x", "y", null),
    /Cannot call plugin "x": no plugin manager is available/,
  );
});
