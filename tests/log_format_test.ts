// The host's stdout as an operator reads it: `--log-format json` (and
// GOATKIT_LOG_FORMAT) gives one JSON object per line for host and plugin
// lines, with the host's events (start, plugin loaded, grant change,
// uninstall) printed; text is the default and the flag wins over the
// variable. Real host processes; LogOutput's own rules checked directly.

import assert from "node:assert/strict";
import { zipSync } from "fflate";
import { LogOutput } from "../host/telemetry/log_output.ts";
import { loadConfig } from "../host/services/config.ts";
import { startHost } from "./helpers/host_process.ts";

interface JsonLine {
  time: string;
  level: string;
  source: "host" | "plugin";
  plugin?: string;
  message: string;
  [field: string]: unknown;
}

/** Every stdout line parsed (throws on a line that is not JSON). */
function jsonLines(stdout: string): JsonLine[] {
  return stdout.split("\n").filter((l) => l.trim() !== "").map((l) => {
    try {
      return JSON.parse(l) as JsonLine;
    } catch {
      throw new Error(`stdout line is not JSON: ${l}`);
    }
  });
}

/** Waits until `done()` holds, polling; fails after `ms`. */
async function until(done: () => boolean, ms: number, what: string) {
  const end = Date.now() + ms;
  while (!done()) {
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

Deno.test({
  name:
    "serve --log-format json: one JSON object per line with host events and plugin lines, no token",
  sanitizeResources: false,
  sanitizeOps: false,
  async fn() {
    const host = await startHost({
      plugins: ["plugins/hello-rust"],
      args: ["--log-format", "json"],
      env: { GOATKIT_REQUIRE_APPROVAL: "none" },
    });
    try {
      const auth = { authorization: `Bearer ${host.token}` };
      // hello-c arrives as a package (so that it can be uninstalled).
      const dir = new URL("../fixtures/plugins/hello-c/", import.meta.url);
      const pkg = zipSync({
        "manifest.json": await Deno.readFile(new URL("manifest.json", dir)),
        "plugin.wasm": await Deno.readFile(new URL("plugin.wasm", dir)),
      });
      const installed = await fetch(
        `${host.url}/api/v1/plugins/upload?filename=hello-c.zip`,
        { method: "POST", headers: auth, body: pkg },
      );
      assert.equal(installed.status, 200, await installed.text());
      // A plugin logging at every level (debug is below the default).
      const called = await fetch(
        `${host.url}/api/v1/plugins/hello-c/call/log_all`,
        { method: "POST", headers: auth },
      );
      assert.equal(called.status, 200, await called.text());
      // The operator approves what it asks (the policy granted it without
      // storing a decision), takes one permission back, then uninstalls it.
      const grants = `${host.url}/api/v1/plugins/hello-c/grants`;
      const json = { ...auth, "content-type": "application/json" };
      const approved = await fetch(grants, {
        method: "POST",
        headers: json,
        body: "{}",
      });
      assert.equal(approved.status, 200, await approved.text());
      const revoked = await fetch(grants, {
        method: "DELETE",
        headers: json,
        body: JSON.stringify({ permissions: ["cache:write"] }),
      });
      assert.equal(revoked.status, 200, await revoked.text());
      const removed = await fetch(`${host.url}/api/v1/plugins/hello-c`, {
        method: "DELETE",
        headers: auth,
      });
      assert.equal(removed.status, 200, await removed.text());
      const has = (p: (l: JsonLine) => boolean) => () =>
        jsonLines(host.stdout()).some(p);
      await until(
        has((l) => l.event === "plugin.uninstalled"),
        10_000,
        "the uninstall line",
      );

      const lines = jsonLines(host.stdout());
      for (const l of lines) {
        assert.ok(!Number.isNaN(Date.parse(l.time)), `time of ${l.message}`);
        assert.ok(["debug", "info", "warn", "error"].includes(l.level));
        assert.ok(l.source === "host" || l.source === "plugin");
        assert.equal(typeof l.message, "string");
      }
      const find = (p: (l: JsonLine) => boolean, what: string) => {
        const l = lines.find(p);
        assert.ok(l, `no ${what} line in:\n${host.stdout()}`);
        return l;
      };
      find((l) => l.event === "host.starting", "start");
      find((l) => l.event === "host.ready", "ready");
      const loaded = find((l) => l.event === "plugin.loaded", "plugin loaded");
      assert.equal(loaded.plugin, "hello-rust");
      assert.equal(loaded.source, "host");
      const install = find((l) => l.event === "plugin.installed", "install");
      assert.equal(install.plugin, "hello-c");
      assert.equal(install.version, "1.0.0");
      // The plugin's own lines: info and above, attributed to it.
      const own = lines.filter((l) =>
        l.source === "plugin" && l.plugin === "hello-c"
      );
      assert.deepEqual(
        own.map((l) => [l.level, l.message]),
        [
          ["info", "Info from hello-c"],
          ["warn", "Warn from hello-c"],
          ["error", "Error from hello-c"],
        ],
      );
      // The host's own line about the plugin is the host's.
      const registered = find(
        (l) => /registered/.test(l.message) && l.plugin === "hello-c",
        "registered",
      );
      assert.equal(registered.source, "host");
      const change = find(
        (l) =>
          l.event === "grants.changed" &&
          JSON.stringify(l.removed) === '["cache:write"]',
        "grant change",
      );
      assert.equal(change.plugin, "hello-c");
      assert.deepEqual(change.added, []);
      assert.ok((change.granted as string[]).includes("cache:read"));
      assert.ok(!(change.granted as string[]).includes("cache:write"));
      find((l) => l.event === "plugin.uninstalled", "uninstall");
      // The token is not on stdout: it is in a file only its owner reads.
      assert.ok(!host.stdout().includes(host.token));
      const note = find((l) => l.event === "admin_token.created", "token");
      const file = note.file as string;
      assert.equal((await Deno.readTextFile(file)).trim(), host.token);
      assert.equal((await Deno.stat(file)).mode! & 0o777, 0o600);
    } finally {
      await host.cleanup();
    }
  },
});

Deno.test({
  name:
    "serve: text output by default; --log-format text wins over GOATKIT_LOG_FORMAT=json",
  sanitizeResources: false,
  sanitizeOps: false,
  async fn() {
    const host = await startHost({
      plugins: ["plugins/hello-c"],
      args: ["--log-format=text"],
      env: { GOATKIT_LOG_FORMAT: "json", GOATKIT_REQUIRE_APPROVAL: "none" },
    });
    try {
      const called = await fetch(
        `${host.url}/api/v1/plugins/hello-c/call/log_all`,
        {
          method: "POST",
          headers: { authorization: `Bearer ${host.token}` },
        },
      );
      assert.equal(called.status, 200, await called.text());
      await until(
        () => host.stdout().includes("Error from hello-c"),
        10_000,
        "the plugin's error line",
      );
      const out = host.stdout();
      assert.ok(!out.trimStart().startsWith("{"), out);
      assert.match(out, /^GoatKit host \S+ starting/m);
      assert.match(out, /^ {2}plugin hello-c 1\.0\.0 \(wasm\) loaded$/m);
      assert.match(out, /^ {2}\[warn\] plugin hello-c: Warn from hello-c$/m);
      assert.match(out, /^ {2}\[info\] host \(hello-c\): .*registered$/m);
      assert.ok(!out.includes("Debug from hello-c"));
      // Text shows the token once, on the terminal.
      assert.match(out, new RegExp(`^ {4}${host.token}$`, "m"));
    } finally {
      await host.cleanup();
    }
  },
});

Deno.test("GOATKIT_LOG_FORMAT: text by default, json, anything else refused", () => {
  const env = { PORT: "0" };
  assert.equal(
    loadConfig({ env, defaultPath: "absent.json" }).server.logFormat,
    "text",
  );
  assert.equal(
    loadConfig({
      env: { ...env, GOATKIT_LOG_FORMAT: "JSON" },
      defaultPath: "absent.json",
    }).server.logFormat,
    "json",
  );
  assert.throws(
    () =>
      loadConfig({
        env: { ...env, GOATKIT_LOG_FORMAT: "yaml" },
        defaultPath: "absent.json",
      }),
    /GOATKIT_LOG_FORMAT: "yaml" is not text or json/,
  );
});

Deno.test("LogOutput redacts credential fields and token-shaped text", () => {
  const lines: string[] = [];
  const out = new LogOutput({ format: "json", write: (l) => lines.push(l) });
  const token = `gk_${"A".repeat(43)}`;
  out.entry({
    timestamp: new Date().toISOString(),
    plugin: "p",
    level: "warn",
    message: `called with ${token}`,
    fields: { authorization: "Bearer x1", cookie: "sid=y2", count: 3, time: 1 },
  });
  const rec = JSON.parse(lines[0]!);
  assert.equal(rec.source, "host"); // not inside a plugin's log call
  assert.equal(rec.plugin, "p");
  assert.equal(rec.message, "called with gk_[redacted]");
  assert.equal(rec.authorization, "[redacted]");
  assert.equal(rec.cookie, "[redacted]");
  assert.equal(rec.count, 3);
  assert.equal(rec._time, 1); // a field never replaces a record key
  // Inside a plugin's log call the entry is the plugin's; debug is skipped.
  out.fromPlugin(() =>
    out.entry({
      timestamp: new Date().toISOString(),
      plugin: "p",
      level: "info",
      message: "hi",
    })
  );
  out.entry({
    timestamp: new Date().toISOString(),
    plugin: "p",
    level: "debug",
    message: "hidden",
  });
  assert.equal(lines.length, 2);
  assert.equal(JSON.parse(lines[1]!).source, "plugin");
});
