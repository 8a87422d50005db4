import assert from "node:assert/strict";
import { InvalidManifestError, parseManifest } from "../mod.ts";
import {
  checkManifest,
  DEFAULT_ROUTE_TIMEOUT_MS,
  functionTimeoutMs,
  MAX_MANIFEST_BYTES,
  routeTimeoutMs,
} from "../host/model/manifest.ts";
import { HOST_VERSION } from "../host/model/version.ts";
import { HELLO_MANIFEST } from "../fixtures/native/hello.ts";

const base = { name: "hello", version: "1.0.0" };

Deno.test("parseManifest() accepts GoatFlow's hello manifest", () => {
  const m = parseManifest({
    ...HELLO_MANIFEST,
    homepage: "https://goatflow.io",
    templates: [{ name: "base/header.html", override: true }],
  });
  assert.equal(m.name, "hello");
  assert.equal(m.routes?.length, 2);
  assert.equal(m.jobs?.[0]?.timeout, "30s");
  assert.equal(m.widgets?.[0]?.refresh_sec, 60);
});

Deno.test("parseManifest() accepts JSON text and bytes", () => {
  assert.equal(parseManifest(JSON.stringify(base)).name, "hello");
  assert.equal(
    parseManifest(new TextEncoder().encode(JSON.stringify(base))).version,
    "1.0.0",
  );
});

Deno.test("checkManifest() keeps unknown keys and reports them as warnings", () => {
  const { manifest, warnings } = checkManifest({
    ...base,
    colour: "red",
    routes: [{ method: "GET", path: "/x", handler: "h", weight: 3 }],
  });
  assert.equal((manifest as unknown as Record<string, unknown>).colour, "red");
  assert.deepEqual(warnings.map((w) => w.path).sort(), [
    "colour",
    "routes[0].weight",
  ]);
});

Deno.test("checkManifest() warns that a job without enabled never runs", () => {
  const { warnings } = checkManifest({
    ...base,
    jobs: [{ id: "j", handler: "h", schedule: "@hourly" }],
  });
  assert.deepEqual(warnings.map((w) => w.path), ["jobs[0].enabled"]);
});

Deno.test("route timeout and per-function timeouts are accepted, known and read in ms", () => {
  const { manifest, warnings } = checkManifest({
    ...base,
    routes: [
      { method: "GET", path: "/fast", handler: "fast", timeout: "1.5s" },
      { method: "GET", path: "/report", handler: "report" },
      { method: "GET", path: "/plain", handler: "plain" },
    ],
    timeouts: { report: "20s", "constructor": "1ms", tick: "500us" },
  });
  assert.deepEqual(warnings, []);
  const [fast, report, plain] = manifest.routes!;
  assert.equal(routeTimeoutMs(manifest, fast!), 1500);
  assert.equal(routeTimeoutMs(manifest, report!), 20_000);
  assert.equal(routeTimeoutMs(manifest, plain!), undefined);
  assert.equal(functionTimeoutMs(manifest, "report"), 20_000);
  // Sub-millisecond durations round up to 1 ms; inherited names are not keys.
  assert.equal(functionTimeoutMs(manifest, "tick"), 1);
  assert.equal(functionTimeoutMs(manifest, "toString"), undefined);
  assert.equal(functionTimeoutMs(base, "report"), undefined);
  assert.ok(DEFAULT_ROUTE_TIMEOUT_MS < 30_000);
});

// Each case: a manifest and the JSON path the refusal must name.
const INVALID: [string, unknown, string][] = [
  ["missing name", { version: "1.0.0" }, "name"],
  ["empty name", { ...base, name: "" }, "name"],
  ["upper-case name", { ...base, name: "Hello" }, "name"],
  ["name with ../", { ...base, name: "../x" }, "name"],
  ["name starting with digit", { ...base, name: "1hello" }, "name"],
  ["one-letter name", { ...base, name: "h" }, "name"],
  ["64-character name", { ...base, name: "h" + "e".repeat(63) }, "name"],
  ["name with underscore", { ...base, name: "hello_world" }, "name"],
  ["missing version", { name: "hello" }, "version"],
  ["non-semver version", { ...base, version: "1.0" }, "version"],
  ["version with v prefix", { ...base, version: "v1.0.0" }, "version"],
  ["numeric version", { ...base, version: 1 }, "version"],
  ["route method HEAD", {
    ...base,
    routes: [{ method: "HEAD", path: "/x", handler: "h" }],
  }, "routes[0].method"],
  ["route method lower-case", {
    ...base,
    routes: [{ method: "get", path: "/x", handler: "h" }],
  }, "routes[0].method"],
  ["route path without /", {
    ...base,
    routes: [{ method: "GET", path: "x", handler: "h" }],
  }, "routes[0].path"],
  ["route without handler", {
    ...base,
    routes: [{ method: "GET", path: "/x" }],
  }, "routes[0].handler"],
  ["unknown route middleware", {
    ...base,
    routes: [{
      method: "GET",
      path: "/x",
      handler: "h",
      middleware: ["public"],
    }],
  }, "routes[0].middleware[0]"],
  ["duplicate route", {
    ...base,
    routes: [
      { method: "GET", path: "/x", handler: "a" },
      { method: "GET", path: "/x", handler: "b" },
    ],
  }, "routes[1].path"],
  ["routes not an array", { ...base, routes: {} }, "routes"],
  ["menu item without label", {
    ...base,
    menu_items: [{ id: "m", path: "/m", location: "admin" }],
  }, "menu_items[0].label"],
  ["menu item order not integer", {
    ...base,
    menu_items: [{
      id: "m",
      label: "M",
      path: "/m",
      location: "admin",
      order: 1.5,
    }],
  }, "menu_items[0].order"],
  ["duplicate menu ids", {
    ...base,
    menu_items: [
      { id: "m", label: "M", path: "/m", location: "admin" },
      { id: "m", label: "N", path: "/n", location: "admin" },
    ],
  }, "menu_items[1].id"],
  ["bad nested menu child", {
    ...base,
    menu_items: [{
      id: "m",
      label: "M",
      path: "/m",
      location: "admin",
      children: [{ id: "c", label: "C", path: "c", location: "admin" }],
    }],
  }, "menu_items[0].children[0].path"],
  ["widget size huge", {
    ...base,
    widgets: [{
      id: "w",
      title: "W",
      handler: "h",
      location: "dashboard",
      size: "huge",
    }],
  }, "widgets[0].size"],
  ["widget without handler", {
    ...base,
    widgets: [{ id: "w", title: "W", location: "dashboard" }],
  }, "widgets[0].handler"],
  ["negative refresh_sec", {
    ...base,
    widgets: [{
      id: "w",
      title: "W",
      handler: "h",
      location: "dashboard",
      refresh_sec: -5,
    }],
  }, "widgets[0].refresh_sec"],
  ["duplicate widget ids", {
    ...base,
    widgets: [
      { id: "w", title: "W", handler: "h", location: "dashboard" },
      { id: "w", title: "X", handler: "h", location: "dashboard" },
    ],
  }, "widgets[1].id"],
  ["bad cron", {
    ...base,
    jobs: [{ id: "j", handler: "h", schedule: "every day", enabled: true }],
  }, "jobs[0].schedule"],
  ["cron minute out of range", {
    ...base,
    jobs: [{ id: "j", handler: "h", schedule: "61 * * * *", enabled: true }],
  }, "jobs[0].schedule"],
  ["bad timeout", {
    ...base,
    jobs: [{
      id: "j",
      handler: "h",
      schedule: "* * * * *",
      enabled: true,
      timeout: "5 minutes",
    }],
  }, "jobs[0].timeout"],
  ["zero timeout", {
    ...base,
    jobs: [{
      id: "j",
      handler: "h",
      schedule: "* * * * *",
      enabled: true,
      timeout: "0s",
    }],
  }, "jobs[0].timeout"],
  ["job enabled as string", {
    ...base,
    jobs: [{ id: "j", handler: "h", schedule: "* * * * *", enabled: "yes" }],
  }, "jobs[0].enabled"],
  ["duplicate job ids", {
    ...base,
    jobs: [
      { id: "j", handler: "h", schedule: "* * * * *", enabled: true },
      { id: "j", handler: "h", schedule: "* * * * *", enabled: true },
    ],
  }, "jobs[1].id"],
  ["template without name", {
    ...base,
    templates: [{ override: true }],
  }, "templates[0].name"],
  ["i18n translation not a string", {
    ...base,
    i18n: { translations: { en: { hi: 5 } } },
  }, "i18n.translations.en.hi"],
  ["i18n namespace with dot", {
    ...base,
    i18n: { namespace: "a.b" },
  }, "i18n.namespace"],
  ["error code http_status 99", {
    ...base,
    error_codes: [{ code: "x", message: "X", http_status: 99 }],
  }, "error_codes[0].http_status"],
  ["error code with space", {
    ...base,
    error_codes: [{ code: "bad code", message: "X", http_status: 400 }],
  }, "error_codes[0].code"],
  ["duplicate error codes", {
    ...base,
    error_codes: [
      { code: "x", message: "X", http_status: 400 },
      { code: "x", message: "Y", http_status: 500 },
    ],
  }, "error_codes[1].code"],
  ["min_host_version not semver", {
    ...base,
    min_host_version: "latest",
  }, "min_host_version"],
  ["min_host_version above host", {
    ...base,
    min_host_version: "99.0.0",
  }, "min_host_version"],
  ["route timeout not a duration", {
    ...base,
    routes: [{ method: "GET", path: "/x", handler: "h", timeout: "10" }],
  }, "routes[0].timeout"],
  ["route timeout of zero", {
    ...base,
    routes: [{ method: "GET", path: "/x", handler: "h", timeout: "0s" }],
  }, "routes[0].timeout"],
  ["function timeout not a duration", {
    ...base,
    timeouts: { report: "soon" },
  }, "timeouts.report"],
  ["timeouts not an object", { ...base, timeouts: ["5s"] }, "timeouts"],
  ["permissions not strings", { ...base, permissions: [1] }, "permissions[0]"],
  ["duplicate permission", {
    ...base,
    permissions: ["log", "log"],
  }, "permissions[1]"],
];

for (const [title, manifest, path] of INVALID) {
  Deno.test(`parseManifest() refuses ${title} at "${path}"`, () => {
    try {
      parseManifest(manifest);
      assert.fail("expected a refusal");
    } catch (e) {
      assert.ok(e instanceof InvalidManifestError);
      assert.ok(
        e.issues.some((i) => i.path === path),
        `expected an issue at ${path}, got ${JSON.stringify(e.issues)}`,
      );
      assert.match(e.message, /^Cannot accept manifest: /);
    }
  });
}

Deno.test("parseManifest() lists every problem, not just the first", () => {
  try {
    parseManifest({
      name: "X",
      version: "one",
      routes: [{ method: "HEAD", path: "x", handler: "" }],
    });
    assert.fail("expected a refusal");
  } catch (e) {
    assert.ok(e instanceof InvalidManifestError);
    assert.deepEqual(e.issues.map((i) => i.path).sort(), [
      "name",
      "routes[0].handler",
      "routes[0].method",
      "routes[0].path",
      "version",
    ]);
  }
});

Deno.test("parseManifest() refuses a manifest over 256 KiB in any form", () => {
  const big = { ...base, description: "x".repeat(MAX_MANIFEST_BYTES) };
  for (const input of [big, JSON.stringify(big)]) {
    assert.throws(() => parseManifest(input), /more than the limit/);
  }
});

Deno.test("parseManifest() refuses non-objects and broken JSON", () => {
  assert.throws(() => parseManifest("{"), /not valid JSON/);
  assert.throws(() => parseManifest([base]), /must be a JSON object/);
  assert.throws(() => parseManifest(null), /must be a JSON object/);
});

Deno.test("parseManifest() compares min_host_version with the given host", () => {
  const m = { ...base, min_host_version: "2.0.0" };
  assert.equal(parseManifest(m, { hostVersion: "2.0.0" }).name, "hello");
  assert.throws(
    () => parseManifest(m, { hostVersion: "1.9.9" }),
    /requires host 2.0.0, this host is 1.9.9/,
  );
});

Deno.test("HOST_VERSION matches deno.json's version", async () => {
  const config = JSON.parse(
    await Deno.readTextFile(new URL("../deno.json", import.meta.url)),
  );
  assert.equal(HOST_VERSION, config.version);
});

Deno.test("parseDuration() reads Go durations", async () => {
  const { parseDuration } = await import("../host/model/_duration.ts");
  assert.equal(parseDuration("30s"), 30_000);
  assert.equal(parseDuration("5m"), 300_000);
  assert.equal(parseDuration("1h30m"), 5_400_000);
  assert.equal(parseDuration("250ms"), 250);
  assert.equal(parseDuration("1.5s"), 1500);
  for (const bad of ["", "5", "5 m", "-1s", "1d"]) {
    assert.equal(parseDuration(bad), undefined, bad);
  }
});

Deno.test("compareSemver() orders versions and pre-releases", async () => {
  const { compareSemver } = await import("../host/model/_semver.ts");
  assert.ok(compareSemver("1.2.0", "1.10.0") < 0);
  assert.ok(compareSemver("1.0.0", "1.0.0-rc.1") > 0);
  assert.ok(compareSemver("1.0.0-rc.2", "1.0.0-rc.10") < 0);
  assert.ok(compareSemver("1.0.0-alpha", "1.0.0-1") > 0);
  assert.equal(compareSemver("1.0.0+build", "1.0.0"), 0);
  assert.throws(() => compareSemver("1", "1.0.0"), TypeError);
});
