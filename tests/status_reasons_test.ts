/**
 * Every plugin is listed with a `status` and, unless it simply runs, a
 * `statusReason` an operator can act on — in `GET /api/v1/plugins`, in
 * `GET /api/v1/plugins/<name>` and on the admin pages — and `/readyz` lists
 * what keeps the host from being ready, while `/healthz` stays a liveness
 * probe. A real host (loopback, private PostgreSQL schema) with a running
 * plugin, one waiting for grants, one whose module does not load and a
 * folder whose manifest is broken.
 */

import assert from "node:assert/strict";
import { join } from "node:path";
import { boot, type RunningHost } from "../host/boot.ts";
import { PgDatabase } from "../host/services/database.ts";
import { buildWat } from "../fixtures/hostile/wat_build.ts";
import { hostConfig, privateSchema } from "./server_helpers.ts";

const ROOT = new URL("..", import.meta.url).pathname;
const PROBE_WAT = join(ROOT, "fixtures/plugins/perm-probe-wat/plugin.wat");
const DATABASE_URL = Deno.env.get("DATABASE_URL") ??
  "postgres://postgres@127.0.0.1:5432/test";

interface Listed {
  name: string;
  status: string;
  statusReason?: string;
}

Deno.test("status with reasons: list, detail, pages and /readyz say why a plugin is not running", async () => {
  const probe = `status-probe-${crypto.randomUUID().slice(0, 8)}`;
  const runner = `status-runner-${crypto.randomUUID().slice(0, 8)}`;
  const data = await Deno.makeTempDir({ prefix: "gk_status_" });
  const plugins = join(data, "plugins");
  // Running: requests only `log`. Pending grants: requests db:read, which
  // waits for the operator. (Names are per run: enabled states live in the
  // host tables that every test host on the test database shares.)
  for (
    const [name, permissions] of [[runner, ["log"]], [
      probe,
      ["db:read", "log"],
    ]] as const
  ) {
    await Deno.mkdir(join(plugins, name), { recursive: true });
    const manifest = join(plugins, name, "manifest.json");
    await Deno.writeTextFile(
      manifest,
      JSON.stringify({ name, version: "1.0.0", permissions }),
    );
    await Deno.writeFile(
      join(plugins, name, "plugin.wasm"),
      await buildWat(PROBE_WAT, manifest),
    );
  }
  // Failed: a valid manifest, a module that is not WASM.
  await Deno.mkdir(join(plugins, "broken-one"));
  await Deno.writeTextFile(
    join(plugins, "broken-one", "manifest.json"),
    JSON.stringify({ name: "broken-one", version: "1.0.0" }),
  );
  await Deno.writeTextFile(join(plugins, "broken-one", "plugin.wasm"), "nope");
  // Not a plugin at all: its manifest does not parse.
  await Deno.mkdir(join(plugins, "bad-manifest"));
  await Deno.writeTextFile(join(plugins, "bad-manifest", "manifest.json"), "{");

  const db = await privateSchema();
  const lines: string[] = [];
  let host: RunningHost | undefined;
  try {
    host = await boot({
      config: hostConfig(join(data, "data"), plugins, db.url),
      print: (l) => lines.push(l),
    });
    const h = host;
    const req = (method: string, path: string, body?: unknown) =>
      fetch(`${h.url}${path}`, {
        method,
        headers: {
          authorization: `Bearer ${h.adminToken}`,
          ...(body ? { "content-type": "application/json" } : {}),
        },
        ...(body ? { body: JSON.stringify(body) } : {}),
      });
    const list = async (): Promise<Record<string, Listed>> => {
      const res = await req("GET", "/api/v1/plugins");
      assert.equal(res.status, 200);
      const body = await res.json() as { plugins: Listed[] };
      return Object.fromEntries(body.plugins.map((p) => [p.name, p]));
    };

    // The start said how long loading took.
    assert.ok(
      lines.some((l) => /plugin\(s\) loaded, 1 failed in \d+\.\d s/.test(l)),
      lines.join("\n"),
    );

    let all = await list();
    assert.deepEqual(all[runner]?.status, "running");
    assert.equal(all[runner]?.statusReason, undefined);
    assert.deepEqual(
      [all[probe]?.status, all[probe]?.statusReason],
      ["pending-grants", "waiting for the operator to approve: db:read"],
    );
    const broken = all["broken-one"]!;
    assert.equal(broken.status, "failed");
    assert.ok(broken.statusReason && broken.statusReason.length > 0);
    // The load error names the plugin's file, never where the server keeps it.
    assert.ok(!broken.statusReason!.includes(data), broken.statusReason);
    assert.ok(!broken.statusReason!.includes(ROOT), broken.statusReason);
    const detail = await (await req("GET", "/api/v1/plugins/broken-one"))
      .json();
    assert.deepEqual(
      [detail.status, detail.statusReason],
      ["failed", broken.statusReason],
    );

    // Liveness stays ok; readiness lists the broken plugin and folder.
    assert.equal((await req("GET", "/healthz")).status, 200);
    let ready = await req("GET", "/readyz");
    assert.equal(ready.status, 503);
    let report = await ready.json();
    assert.equal(report.status, "not-ready");
    const checks = report.failures.map((f: { check: string; name?: string }) =>
      `${f.check}:${f.name ?? ""}`
    ).sort();
    assert.deepEqual(checks, [
      "plugin-folder:plugins/bad-manifest",
      "plugin:broken-one",
    ]);
    assert.ok(!JSON.stringify(report).includes(data), JSON.stringify(report));

    // Disabled by an admin, then approved grants make the probe run.
    assert.equal(
      (await req("POST", `/api/v1/plugins/${runner}/disable`)).ok,
      true,
    );
    assert.equal(
      (await req("POST", `/api/v1/plugins/${probe}/grants`, {})).status,
      200,
    );
    all = await list();
    assert.deepEqual(
      [all[runner]?.status, all[runner]?.statusReason],
      ["disabled", "disabled by admin"],
    );
    assert.equal(all[probe]?.status, "running");

    // The admin list and detail pages show the same words and reasons.
    const page = await (await req("GET", "/admin/plugins")).text();
    assert.match(page, /data-status="failed"/);
    assert.match(page, /data-status="disabled"/);
    assert.match(page, /disabled by admin/);
    const detailPage = await (await req("GET", "/admin/plugins/broken-one"))
      .text();
    assert.match(detailPage, /data-status="failed"/);
    assert.ok(!detailPage.includes(data));

    // Fixed on disk: readiness follows once the folder is rescanned.
    await Deno.remove(join(plugins, "bad-manifest"), { recursive: true });
    await Deno.remove(join(plugins, "broken-one"), { recursive: true });
    assert.equal(
      (await req("POST", "/api/v1/plugins/broken-one/reload")).status,
      404,
    );
    ready = await req("GET", "/readyz");
    report = await ready.json();
    assert.deepEqual([ready.status, report.status, report.failures], [
      200,
      "ready",
      [],
    ]);
  } finally {
    await host?.close();
    const pgdb = new PgDatabase({ url: DATABASE_URL, max: 1 });
    try {
      await pgdb.dropPlugin(probe);
      await pgdb.dropPlugin(runner);
    } finally {
      await pgdb.close();
      await db.drop();
      await Deno.remove(data, { recursive: true });
    }
  }
});
