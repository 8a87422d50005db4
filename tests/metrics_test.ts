// GET /metrics and /admin/operations on a real host (in-process boot,
// loopback HTTP, the test PostgreSQL in a private schema) with real WASM
// plugins built from WAT: a looping plugin (ok, overload, timeouts that
// quarantine it, a job, routes by status) and the permission probe (a
// denied then an allowed host call). Then what an operator checks: the
// counters and labels, that a token is required, and the off-switch.

import assert from "node:assert/strict";
import { join } from "node:path";
import { boot, type RunningHost } from "../host/boot.ts";
import { PgDatabase } from "../host/services/database.ts";
import { buildWat } from "../fixtures/hostile/wat_build.ts";
import { hostConfig, PG_URL, privateSchema } from "./server_helpers.ts";

const ROOT = new URL("..", import.meta.url).pathname;
const LOOP_WAT = join(ROOT, "fixtures/hostile/loop/plugin.wat");
const PROBE_WAT = join(ROOT, "fixtures/plugins/perm-probe-wat/plugin.wat");
const METRICS_TOKEN = "scrape-token-0123456789abcdef";
const enc = new TextEncoder();
const dec = new TextDecoder();

/** Writes `manifest` and the WAT built with it into `plugins/<name>`. */
async function wasmPlugin(
  plugins: string,
  wat: string,
  manifest: Record<string, unknown> & { name: string },
): Promise<void> {
  const dir = join(plugins, manifest.name);
  await Deno.mkdir(dir, { recursive: true });
  const path = join(dir, "manifest.json");
  await Deno.writeTextFile(path, JSON.stringify(manifest));
  await Deno.writeFile(join(dir, "plugin.wasm"), await buildWat(wat, path));
}

interface Host {
  host: RunningHost;
  loop: string;
  probe: string;
  lines: string[];
  get(path: string, token?: string): Promise<Response>;
}

/** Boots a host with the two plugins and `env`; runs `body`; cleans up. */
async function withHost(
  env: Record<string, string>,
  body: (h: Host) => Promise<void>,
): Promise<void> {
  const suffix = crypto.randomUUID().slice(0, 8);
  const loop = `mt-loop-${suffix}`;
  const probe = `mt-probe-${suffix}`;
  const data = await Deno.makeTempDir({ prefix: "gk_metrics_" });
  const plugins = join(data, "plugins");
  await wasmPlugin(plugins, LOOP_WAT, {
    name: loop,
    version: "1.0.0",
    permissions: ["log"],
    timeouts: { loop: "300ms" },
    routes: [
      { method: "GET", path: `/${loop}/ok`, handler: "ok" },
      { method: "GET", path: `/${loop}/spin`, handler: "loop" },
    ],
    jobs: [{
      id: "tick",
      schedule: "0 0 1 1 *",
      handler: "ok",
      enabled: true,
    }],
  });
  await wasmPlugin(plugins, PROBE_WAT, {
    name: probe,
    version: "1.0.0",
    permissions: ["db:read", "log"],
    timeouts: { call: "20s" },
  });
  const db = await privateSchema();
  const lines: string[] = [];
  let host: RunningHost | undefined;
  try {
    host = await boot({
      config: hostConfig(join(data, "data"), plugins, db.url, {
        // One instance and no queue: a second call while one runs is
        // refused at once as overload.
        GOATKIT_PLUGIN_QUEUE_LENGTH: "0",
        ...env,
      }),
      print: (l) => lines.push(l),
    });
    const h = host;
    assert.deepEqual(
      h.manager.list().map((m) => m.name).sort(),
      [loop, probe].sort(),
      lines.join("\n"),
    );
    await body({
      host: h,
      loop,
      probe,
      lines,
      get: (path, token = h.adminToken) =>
        fetch(`${h.url}${path}`, {
          headers: token ? { authorization: `Bearer ${token}` } : {},
        }),
    });
  } finally {
    await host?.close();
    const pgdb = new PgDatabase({ url: PG_URL, max: 1 });
    try {
      await pgdb.dropPlugin(probe).catch(() => {});
      await pgdb.dropPlugin(loop).catch(() => {});
    } finally {
      await pgdb.close();
      await db.drop();
      await Deno.remove(data, { recursive: true });
    }
  }
}

/** The value of the sample `name{labels}` in an exposition, or undefined. */
function sample(
  text: string,
  name: string,
  labels: Record<string, string>,
): number | undefined {
  for (const line of text.split("\n")) {
    if (!line.startsWith(name + "{")) continue;
    const m = /^([^{]+)\{(.*)\} (\S+)$/.exec(line);
    if (!m || m[1] !== name) continue;
    const got = new Map(
      [...m[2]!.matchAll(/(\w+)="((?:[^"\\]|\\.)*)"/g)].map((x) => [
        x[1]!,
        x[2]!,
      ]),
    );
    if (Object.entries(labels).every(([k, v]) => got.get(k) === v)) {
      return Number(m[3]);
    }
  }
  return undefined;
}

async function scrape(h: Host): Promise<string> {
  const res = await h.get("/metrics");
  const text = await res.text();
  assert.equal(res.status, 200, text);
  assert.match(res.headers.get("content-type") ?? "", /^text\/plain/);
  return text;
}

Deno.test("GET /metrics counts calls, errors by kind, host calls, quarantines, jobs and routes of real WASM plugins", async () => {
  await withHost(
    { GOATKIT_METRICS_TOKEN: METRICS_TOKEN },
    async (h) => {
      const { manager } = h.host;
      const { loop, probe } = h;

      // A plain call and a route that answers 200.
      const ok = await manager.call(loop, "ok", null);
      assert.equal(dec.decode(ok!), '{"ok":true}');
      let res = await h.get(`/${loop}/ok`, "");
      assert.equal(res.status, 200, await res.text());

      // A job run.
      res = await fetch(`${h.host.url}/api/v1/jobs/${loop}/tick/run`, {
        method: "POST",
        headers: { authorization: `Bearer ${h.host.adminToken}` },
      });
      assert.equal(res.status, 200, await res.text());

      // Overload: the single instance is busy with a loop, the queue is 0.
      const spinning = manager.call(loop, "loop", null).catch((e) => e);
      await new Promise((r) => setTimeout(r, 50));
      const refused = await manager.call(loop, "ok", null).catch((e) => e);
      assert.equal(refused?.name, "PluginOverloadedError", String(refused));
      assert.equal((await spinning)?.name, "PluginTimeoutError");

      // Two more timeouts (one through the route: 504) quarantine it. The
      // timed-out instance is being replaced meanwhile and the queue is 0:
      // a call that comes too early is refused as overload (counted too),
      // so retry those, and tally them.
      let loopOverloads = 0;
      let spinOverloads = 0;
      for (let i = 0;; i++) {
        res = await h.get(`/${loop}/spin`, "");
        const text = await res.text();
        if (res.status !== 503 || i === 50) {
          assert.equal(res.status, 504, text);
          break;
        }
        spinOverloads++;
        await new Promise((r) => setTimeout(r, 100));
      }
      for (let i = 0;; i++) {
        const third = await manager.call(loop, "loop", null).catch((e) => e);
        if (third?.name !== "PluginOverloadedError" || i === 50) {
          assert.equal(third?.name, "PluginTimeoutError");
          break;
        }
        loopOverloads++;
        await new Promise((r) => setTimeout(r, 100));
      }
      for (let i = 0; i < 50 && manager.isEnabled(loop); i++) {
        await new Promise((r) => setTimeout(r, 20));
      }
      assert.match(manager.status(loop)?.reason ?? "", /deadline|time/i);
      // Its routes now answer 503, counted too.
      res = await h.get(`/${loop}/ok`, "");
      assert.equal(res.status, 503, await res.text());

      // An undeclared function is counted as "other", not by its name.
      await manager.call(loop, "no-such-fn-xyz", null).catch(() => {});

      // The probe: a denied host call, then (approved) an allowed one.
      const query = enc.encode(
        `db_query\n${JSON.stringify({ query: "SELECT 1 AS one", args: [] })}`,
      );
      const denied = dec.decode((await manager.call(probe, "call", query))!);
      assert.match(denied, /^err:.*PermissionDeniedError/);
      res = await fetch(`${h.host.url}/api/v1/plugins/${probe}/grants`, {
        method: "POST",
        headers: {
          authorization: `Bearer ${h.host.adminToken}`,
          "content-type": "application/json",
        },
        body: JSON.stringify({ permissions: ["db:read"] }),
      });
      assert.equal(res.status, 200, await res.text());
      const allowed = dec.decode((await manager.call(probe, "call", query))!);
      assert.match(allowed, /^ok:/);

      const text = await scrape(h);
      const get = (name: string, labels: Record<string, string>) =>
        sample(text, name, labels);
      // Calls per declared function (the route's "ok" and the direct one).
      assert.equal(
        get("goatkit_plugin_calls_total", { plugin: loop, function: "ok" }),
        4,
        text,
      );
      assert.equal(
        get("goatkit_plugin_calls_total", { plugin: loop, function: "loop" }),
        3 + spinOverloads + loopOverloads,
      );
      assert.equal(
        get("goatkit_plugin_call_errors_total", {
          plugin: loop,
          function: "loop",
          kind: "timeout",
        }),
        3,
      );
      assert.equal(
        get("goatkit_plugin_call_errors_total", {
          plugin: loop,
          function: "ok",
          kind: "overload",
        }),
        1,
      );
      assert.equal(
        get("goatkit_plugin_call_errors_total", {
          plugin: loop,
          function: "loop",
          kind: "overload",
        }) ?? 0,
        spinOverloads + loopOverloads,
      );
      assert.equal(
        get("goatkit_plugin_calls_total", { plugin: loop, function: "other" }),
        undefined,
        "a quarantined plugin's refused call never reaches the interceptor",
      );
      assert.ok(!text.includes("no-such-fn-xyz"));
      // Latency histogram: every call observed; the timeouts ≥ 250 ms.
      assert.equal(
        get("goatkit_plugin_call_duration_seconds_count", {
          plugin: loop,
          function: "loop",
        }),
        3 + spinOverloads + loopOverloads,
      );
      // The three timeouts took at least 250 ms; refusals are fast.
      assert.equal(
        get("goatkit_plugin_call_duration_seconds_bucket", {
          plugin: loop,
          function: "loop",
          le: "0.25",
        }),
        spinOverloads + loopOverloads,
      );
      assert.equal(
        get("goatkit_plugin_calls_in_flight", { plugin: loop, function: "ok" }),
        0,
      );
      // Quarantine.
      assert.equal(
        get("goatkit_plugin_quarantines_total", { plugin: loop }),
        1,
      );
      assert.equal(get("goatkit_plugin_quarantined", { plugin: loop }), 1);
      assert.equal(get("goatkit_plugin_quarantined", { plugin: probe }), 0);
      // Host calls by method and outcome.
      assert.equal(
        get("goatkit_host_calls_total", {
          plugin: probe,
          method: "dbQuery",
          outcome: "denied",
        }),
        1,
      );
      assert.equal(
        get("goatkit_host_calls_total", {
          plugin: probe,
          method: "dbQuery",
          outcome: "allowed",
        }),
        1,
      );
      // Routes by declared route and status.
      const route = (path: string, status: string) =>
        get("goatkit_route_requests_total", {
          plugin: loop,
          method: "GET",
          route: path,
          status,
        });
      assert.equal(route(`/${loop}/ok`, "200"), 1);
      assert.equal(route(`/${loop}/spin`, "504"), 1);
      assert.equal(route(`/${loop}/ok`, "503"), 1);
      assert.equal(route(`/${loop}/spin`, "503") ?? 0, spinOverloads);
      assert.equal(
        get("goatkit_job_runs_total", {
          plugin: loop,
          job: "tick",
          outcome: "ok",
        }),
        1,
      );
      assert.equal(
        get("goatkit_job_failures_total", { plugin: loop, job: "tick" }),
        undefined,
      );
      // Usage from the WASM runtime, when it reports it.
      if (manager.usage(loop) !== undefined) {
        const cpu = get("goatkit_plugin_cpu_seconds_total", { plugin: loop });
        assert.ok(cpu !== undefined && cpu > 0.2, `cpu ${cpu}`);
      }
      const probeMemory = manager.usage(probe)?.memoryBytes;
      if (probeMemory !== undefined) {
        assert.equal(
          get("goatkit_plugin_memory_bytes", { plugin: probe }),
          probeMemory,
        );
      }

      // The Operations page shows the hour with inline SVG, CSP intact.
      const page = await h.get("/admin/operations");
      const html = await page.text();
      assert.equal(page.status, 200);
      assert.match(
        page.headers.get("content-security-policy") ?? "",
        /script-src 'self'/,
      );
      const rowOf = new RegExp(
        `<tr data-plugin="${loop}">[\\s\\S]*?</tr>`,
      ).exec(html)?.[0] ?? "";
      assert.match(
        rowOf,
        new RegExp(`data-calls="${7 + spinOverloads + loopOverloads}"`),
        rowOf,
      );
      assert.match(rowOf, /<svg [^>]*role="img"/);
      assert.match(rowOf, /<rect /);
      assert.ok(!/<script/i.test(rowOf) && !/style=/i.test(rowOf));
    },
  );
});

Deno.test("GET /metrics needs the admin token or the metrics token; GOATKIT_METRICS=false switches it off", async () => {
  await withHost({ GOATKIT_METRICS_TOKEN: METRICS_TOKEN }, async (h) => {
    let res = await h.get("/metrics", "");
    assert.equal(res.status, 401, await res.text());
    assert.match(res.headers.get("www-authenticate") ?? "", /Bearer/);
    res = await h.get("/metrics", "wrong-token-0123456789abcdef");
    assert.equal(res.status, 401, await res.text());
    res = await h.get("/metrics", METRICS_TOKEN);
    assert.equal(res.status, 200);
    assert.match(await res.text(), /# TYPE goatkit_plugin_calls_total counter/);
    // A non-admin API token is refused.
    res = await fetch(`${h.host.url}/api/v1/tokens`, {
      method: "POST",
      headers: {
        authorization: `Bearer ${h.host.adminToken}`,
        "content-type": "application/json",
      },
      body: JSON.stringify({ name: "agent" }),
    });
    const { token } = await res.json();
    res = await h.get("/metrics", token);
    assert.equal(res.status, 403, await res.text());
    // The scrape token opens /metrics only.
    res = await h.get("/api/v1/plugins", METRICS_TOKEN);
    assert.equal(res.status, 401, await res.text());
  });
  await withHost({ GOATKIT_METRICS: "false" }, async (h) => {
    const res = await h.get("/metrics");
    assert.equal(res.status, 404, await res.text());
    const page = await h.get("/admin/operations");
    assert.equal(page.status, 200);
    assert.match(await page.text(), /id="metrics-off"/);
  });
});
