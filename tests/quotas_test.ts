/**
 * Per-plugin quotas (host/quotas) with real plugins in both runtimes.
 *
 * In process, wired as `host/boot.ts` wires them (the quotas' interceptors
 * on a real {@linkcode Manager}, the guarded HostAPI taking its statement
 * cap from the quotas) in front of real services: PostgreSQL at
 * 127.0.0.1:5432, an `.eml` outbox, an HTTP server on 127.0.0.1 granted
 * as `http:127.0.0.1:<port>`. Two probes per runtime (the WAT probe
 * `fixtures/plugins/perm-probe-wat`, the gRPC TypeScript probe
 * `fixtures/plugins/perm-probe-ts`, whose host calls come back through the
 * gRPC callback path): each quota is driven over its limit on probe A
 * (host calls per second, HTTP bytes per minute, e-mails per hour, the
 * statement cap, concurrent calls) and the refusal asserted as the guest
 * sees it, while probe B, same runtime, same moment, is unaffected. Guest
 * CPU per minute with `fixtures/hostile/loop` (WASM): a plugin that burnt
 * its minute gets no new call, and is not quarantined for it.
 *
 * Through a real host (`boot`, real HTTP on loopback): limits from
 * `goatkit.json` and `GOATKIT_QUOTA_*`; a plugin route over its CPU quota
 * answers 429 with `Retry-After` while another plugin answers; the audit
 * API shows the refusal; `GET/PUT /api/v1/plugins/:name/quotas` and the
 * admin page's form set overrides that survive a restart.
 *
 * Run: `deno test -A tests/quotas_test.ts`
 *
 * @module
 */

import assert from "node:assert/strict";
import { callProbe } from "./helpers/probe.ts";
import { join } from "node:path";
import { Manager } from "../host/manager.ts";
import { LogBuffer } from "../host/log_buffer.ts";
import {
  isPluginFault,
  PluginTimeoutError,
  QuotaExceededError,
} from "../host/model/errors.ts";
import {
  createInterceptors,
  interceptHostAPI,
} from "../host/model/interceptors.ts";
import { decodeJson, encodeJson } from "../host/model/plugin.ts";
import {
  AuditLog,
  checkPermissions,
  createEgressClient,
  createGuardedHostAPI,
  type GuardedHostAPI,
  MemoryGrantStore,
} from "../permissions/mod.ts";
import { DatabaseSet, PgDatabase } from "../host/services/database.ts";
import { KvCacheStore } from "../host/services/cache.ts";
import { OutboxMailer } from "../host/services/mailer.ts";
import { ConfigStore } from "../host/services/config.ts";
import { MemoryQuotaStore } from "../host/quotas/quota_store.ts";
import { Quotas } from "../host/quotas/quotas.ts";
import { loadWasmPlugin } from "../runtimes/wasm/plugin.ts";
import { loadGrpcPlugin } from "../runtimes/grpc/mod.ts";
import { buildWat } from "../fixtures/hostile/wat_build.ts";
import { boot, type RunningHost } from "../host/boot.ts";
import { hostConfig, privateSchema } from "./server_helpers.ts";

const DATABASE_URL = Deno.env.get("GOATKIT_TEST_DATABASE_URL") ??
  "postgres://postgres@127.0.0.1:5432/test";
const ROOT = new URL("..", import.meta.url).pathname;
const PROBE_WAT = join(ROOT, "fixtures/plugins/perm-probe-wat/plugin.wat");
const PROBE_TS = join(ROOT, "fixtures/plugins/perm-probe-ts/plugin.ts");
const LOOP_WASM = join(ROOT, "fixtures/hostile/loop/plugin.wasm");

const decoder = new TextDecoder();
const suffix = () => crypto.randomUUID().replaceAll("-", "").slice(0, 8);
// grpc-js keeps timers and handles past its client's close (as in
// tests/grpc_runtime_test.ts); everything is still closed in `finally`.
const opts = { sanitizeOps: false, sanitizeResources: false };

/** A probe's answer to one host call, as its guest saw it. */
type Outcome =
  | { ok: true; value: unknown }
  | { ok: false; type: string; message: string };

/** One probe plugin. */
interface Probe {
  name: string;
  /** Makes the probe call host function `method` with `req`. */
  invoke(method: string, req: Record<string, unknown>): Promise<Outcome>;
}

/** Services, a Manager with quotas wired as boot wires them, the probes. */
interface Env {
  id: string;
  tmp: string;
  port: number;
  outbox: string;
  manager: Manager;
  quotas: Quotas;
  audit: AuditLog;
  /** Requests the HTTP server got, by the `x-probe` header. */
  hits: Map<string, number>;
  /** Resolves the `/slow` requests waiting. */
  releaseSlow(): void;
  /** Resolves when a `/slow` request arrived. */
  slowArrived(): Promise<void>;
  permissions: string[];
  grants: MemoryGrantStore;
  plugins: string[];
  close(): Promise<void>;
}

async function setupEnv(): Promise<Env> {
  const id = suffix();
  const tmp = await Deno.makeTempDir({ prefix: "gk_quotas_" });
  const ac = new AbortController();
  const hits = new Map<string, number>();
  let slow = Promise.withResolvers<void>();
  let arrived = Promise.withResolvers<void>();
  const server = Deno.serve({
    hostname: "127.0.0.1",
    port: 0,
    signal: ac.signal,
    onListen: () => {},
  }, async (req) => {
    const u = new URL(req.url);
    const who = u.searchParams.get("p") ?? "";
    hits.set(who, (hits.get(who) ?? 0) + 1);
    if (u.pathname === "/slow") {
      arrived.resolve();
      await slow.promise;
    }
    // 400 bytes of body per answer.
    return new Response("x".repeat(400));
  });
  const port = (server.addr as Deno.NetAddr).port;
  const table = `gkq_items_${id}`;
  const db = new PgDatabase({ url: DATABASE_URL, max: 4 });
  await db.sqlClient.query(`CREATE TABLE ${table} (id int PRIMARY KEY)`);
  const cache = new KvCacheStore({ path: join(tmp, "cache.kv") });
  const outbox = join(tmp, "outbox");
  const mailer = new OutboxMailer({ dir: outbox, from: "host@example.com" });
  const logs = new LogBuffer({ capacity: 5000 });
  const audit = new AuditLog({ logs });
  const grants = new MemoryGrantStore();
  const permissions = [
    `db:read:${table}`,
    "cache:read",
    `http:127.0.0.1:${port}`,
    "email:*@example.com",
    "config:app.*",
  ];
  const interceptors = createInterceptors();
  const ref: { manager?: Manager } = {};
  const quotas = new Quotas({
    store: new MemoryQuotaStore(),
    usage: (name) => ref.manager?.usage(name),
    audit,
    logs,
  });
  interceptors.plugin.push(quotas.pluginInterceptor);
  interceptors.host.push(quotas.hostInterceptor);
  const http = createEgressClient();
  const config = new ConfigStore({ values: { "app.name": "GoatKit" } });
  const hosts: GuardedHostAPI[] = [];
  const manager = ref.manager = new Manager({
    logs,
    interceptors: interceptors.plugin,
    manifestChecks: [checkPermissions],
    host: (name, manifest) => {
      const guarded = createGuardedHostAPI({
        plugin: name,
        requested: manifest.permissions ?? [],
        grants,
        services: {
          db: new DatabaseSet({ default: db }),
          cache,
          mailer,
          config,
          http,
        },
        logs,
        audit,
        statementTimeoutMs: () => quotas.statementTimeoutMs(name),
      });
      hosts.push(guarded);
      return interceptHostAPI(guarded, name, interceptors);
    },
  });
  const plugins: string[] = [];
  return {
    id,
    tmp,
    port,
    outbox,
    manager,
    quotas,
    audit,
    hits,
    releaseSlow() {
      slow.resolve();
      slow = Promise.withResolvers<void>();
      arrived = Promise.withResolvers<void>();
    },
    slowArrived: () => arrived.promise,
    permissions,
    grants,
    plugins,
    async close() {
      slow.resolve();
      const problems: unknown[] = [];
      const step = async (f: () => Promise<unknown>) => {
        try {
          await f();
        } catch (e) {
          problems.push(e);
        }
      };
      await step(() => manager.shutdownAll());
      for (const h of hosts) h.close();
      for (const p of plugins) await step(() => db.dropPlugin(p));
      await step(() => db.sqlClient.query(`DROP TABLE IF EXISTS ${table}`));
      await step(() => db.close());
      await step(() => cache.close());
      await step(() => mailer.close());
      ac.abort();
      await step(() => server.finished);
      await step(() => Deno.remove(tmp, { recursive: true }));
      if (problems.length > 0) throw new AggregateError(problems, "cleanup");
    },
  };
}

const CALL = { timeoutMs: 20_000 };

async function wasmProbe(env: Env, tag: string): Promise<Probe> {
  const name = `qprobe-wat-${tag}-${env.id}`;
  const manifestPath = join(env.tmp, `${name}.json`);
  await Deno.writeTextFile(
    manifestPath,
    JSON.stringify({
      name,
      version: "1.0.0",
      description: "quota probe (WAT)",
      permissions: env.permissions,
    }),
  );
  const plugin = await loadWasmPlugin(
    await buildWat(PROBE_WAT, manifestPath),
    { name, callTimeoutMs: 20_000 },
  );
  await grantAll(env, name);
  env.plugins.push(name);
  await env.manager.register(plugin);
  return {
    name,
    invoke: (method, req) => callProbe(env.manager, name, method, req, CALL),
  };
}

async function grpcProbe(env: Env, tag: string): Promise<Probe> {
  const name = `qprobe-ts-${tag}-${env.id}`;
  await grantAll(env, name);
  const plugin = await loadGrpcPlugin(PROBE_TS, {
    startTimeoutMs: 30_000,
    callTimeoutMs: 20_000,
    dataDir: join(env.tmp, "plugins", name),
    args: ["--name", name, "--perms", JSON.stringify(env.permissions)],
  });
  env.plugins.push(name);
  try {
    await env.manager.register(plugin);
  } catch (e) {
    await plugin.shutdown();
    throw e;
  }
  // The gRPC probe takes friendlier arguments than the raw host call.
  const toTs = (method: string, req: Record<string, unknown>) =>
    method === "http_request" ? { method: req.method, url: req.url } : req;
  return {
    name,
    async invoke(method, req) {
      const out = decodeJson<
        { ok: true; value: unknown } | {
          ok: false;
          code: string;
          message: string;
        }
      >(
        await env.manager.call(
          name,
          method,
          encodeJson(toTs(method, req)),
          CALL,
        ),
      )!;
      if (out.ok) return out;
      // The gRPC status carries the host's message, which names the type's
      // refusal ("is over its quota").
      return {
        ok: false,
        type: /is over its quota/.test(out.message)
          ? "QuotaExceededError"
          : out.code,
        message: out.message,
      };
    },
  };
}

/** Grants `name` everything the probes request. */
async function grantAll(env: Env, name: string): Promise<void> {
  await env.grants.set(name, env.permissions);
}

/** `.eml` files of `plugin` in the outbox. */
async function mails(env: Env, plugin: string): Promise<number> {
  let n = 0;
  try {
    for await (const e of Deno.readDir(env.outbox)) {
      if (e.name.includes(`-${plugin}-`) && e.name.endsWith(".eml")) n++;
    }
  } catch (e) {
    if (!(e instanceof Deno.errors.NotFound)) throw e;
  }
  return n;
}

function assertQuotaRefusal(out: Outcome, quota: string): void {
  assert.equal(out.ok, false, `expected a refusal, got ${JSON.stringify(out)}`);
  if (out.ok) return;
  assert.equal(out.type, "QuotaExceededError", out.message);
  assert.match(out.message, new RegExp(`over its quota "${quota}"`));
  assert.match(out.message, /retry after \d+ s/);
}

/** Every host-call quota and the concurrency quota, on one runtime. */
async function hostCallQuotas(env: Env, a: Probe, b: Probe): Promise<void> {
  const url = (p: Probe, path = "/data") =>
    `http://127.0.0.1:${env.port}${path}?p=${p.name}`;

  // Host calls per second: a bucket of 3 refilled at 1/s.
  await env.quotas.setOverrides(a.name, {
    hostCallsPerSecond: 1,
    hostCallBurst: 3,
  });
  let refusedAt = 0;
  for (let i = 1; i <= 8 && refusedAt === 0; i++) {
    const out = await a.invoke("config_get", { key: "app.name" });
    if (!out.ok) {
      assertQuotaRefusal(out, "hostCallsPerSecond");
      refusedAt = i;
    } else assert.equal(out.value !== undefined, true);
  }
  assert.ok(refusedAt >= 4 && refusedAt <= 5, `refused at call ${refusedAt}`);
  // B, at the same moment, is not limited.
  for (let i = 0; i < 6; i++) {
    const out = await b.invoke("config_get", { key: "app.name" });
    assert.ok(out.ok, JSON.stringify(out));
  }
  const entry = env.audit.query({ plugin: a.name }).find((e) =>
    e.permission === "quota:hostCallsPerSecond"
  );
  assert.equal(entry?.outcome, "quota-exceeded");
  assert.equal(entry?.method, "configGet");
  assert.equal(
    env.audit.query({ plugin: b.name }).some((e) =>
      e.outcome === "quota-exceeded"
    ),
    false,
  );

  // Outbound HTTP bytes per minute: 1000; each answer has 400 bytes.
  await env.quotas.setOverrides(a.name, { httpBytesPerMinute: 1000 });
  const outcomes: Outcome[] = [];
  for (let i = 0; i < 5; i++) {
    outcomes.push(
      await a.invoke("http_request", { method: "GET", url: url(a) }),
    );
  }
  assert.deepEqual(outcomes.map((o) => o.ok), [true, true, true, false, false]);
  assertQuotaRefusal(outcomes[3]!, "httpBytesPerMinute");
  assert.equal(env.hits.get(a.name), 3, "refused requests never left");
  const bHttp = await b.invoke("http_request", { method: "GET", url: url(b) });
  assert.ok(bHttp.ok, JSON.stringify(bHttp));
  const report = await env.quotas.report(a.name);
  assert.equal(report.usage.httpBytesLastMinute, 1200);
  assert.equal(report.refused.httpBytesPerMinute, 2);

  // E-mails per hour: 2.
  await env.quotas.setOverrides(a.name, { emailsPerHour: 2 });
  const mail = { to: "ops@example.com", subject: "Hi", body: "Hello" };
  assert.ok((await a.invoke("send_email", mail)).ok);
  assert.ok((await a.invoke("send_email", mail)).ok);
  assertQuotaRefusal(await a.invoke("send_email", mail), "emailsPerHour");
  assert.equal(await mails(env, a.name), 2);
  assert.ok((await b.invoke("send_email", mail)).ok);
  assert.equal(await mails(env, b.name), 1);

  // Database statement time: a cap of 100 ms cancels a 600 ms statement.
  await env.quotas.setOverrides(a.name, { dbStatementMs: 100 });
  const sleep = { query: "SELECT pg_sleep(0.6) AS slept", args: [] };
  const t0 = performance.now();
  assertQuotaRefusal(await a.invoke("db_query", sleep), "dbStatementMs");
  assert.ok(performance.now() - t0 < 590, "cancelled at the cap");
  const bDb = await b.invoke("db_query", sleep);
  assert.ok(bDb.ok, JSON.stringify(bDb));

  // Concurrent calls: 1. A's first call waits in a slow HTTP request; its
  // second is refused by the Manager call itself (typed), B runs.
  await env.quotas.setOverrides(a.name, { concurrentCalls: 1 });
  const held = a.invoke("http_request", {
    method: "GET",
    url: url(a, "/slow"),
  });
  await env.slowArrived();
  const refused = await a.invoke("config_get", { key: "app.name" }).then(
    () => undefined,
    (e: unknown) => e,
  );
  assert.ok(refused instanceof QuotaExceededError, String(refused));
  assert.equal(refused.quota, "concurrentCalls");
  assert.equal(refused.limit, 1);
  assert.equal(refused.retryAfterSeconds, 1);
  assert.equal(isPluginFault(refused), false);
  assert.ok((await b.invoke("config_get", { key: "app.name" })).ok);
  env.releaseSlow();
  assert.ok((await held).ok);
  // Free again; A was never quarantined.
  await env.quotas.setOverrides(a.name, {});
  assert.ok((await a.invoke("config_get", { key: "app.name" })).ok);
  assert.equal(env.manager.status(a.name)?.enabled, true);
}

Deno.test(
  "quotas, WASM: each host-call quota and concurrency refuse the plugin over them, not its neighbour",
  opts,
  async () => {
    const env = await setupEnv();
    try {
      const a = await wasmProbe(env, "a");
      const b = await wasmProbe(env, "b");
      await hostCallQuotas(env, a, b);
    } finally {
      await env.close();
    }
  },
);

Deno.test(
  "quotas, gRPC: the same refusals through the gRPC callback path",
  opts,
  async () => {
    const env = await setupEnv();
    try {
      const [a, b] = await Promise.all([
        grpcProbe(env, "a"),
        grpcProbe(env, "b"),
      ]);
      await hostCallQuotas(env, a, b);
      // Guest CPU: enforced exactly when the runtime reports it.
      const report = await env.quotas.report(a.name);
      const reported = env.manager.usage(a.name) !== undefined;
      assert.equal(report.cpuEnforced, reported);
      if (!reported) {
        assert.equal(report.usage.cpuMsLastMinute, null);
        assert.match(report.notes.join(" "), /cpuMsPerMinute is not enforced/);
      }
    } finally {
      await env.close();
    }
  },
);

Deno.test(
  "quotas, WASM: a plugin that burnt its CPU minute gets no new call until it frees, and is not quarantined",
  opts,
  async () => {
    const env = await setupEnv();
    try {
      const other = await wasmProbe(env, "b");
      const loop = await loadWasmPlugin(LOOP_WASM, {
        quarantine: { maxOverruns: 3, overrunWindowMs: 60_000 },
      });
      await env.manager.register(loop);
      await env.quotas.setOverrides("hostile-loop", { cpuMsPerMinute: 300 });
      // One call loops until its 500 ms deadline: ~500 ms of guest CPU.
      await assert.rejects(
        env.manager.call("hostile-loop", "loop", null, { timeoutMs: 500 }),
        PluginTimeoutError,
      );
      // The runtime's verdict (and its CPU count) follows the Manager's.
      let refused: unknown;
      for (let i = 0; i < 50 && refused === undefined; i++) {
        refused = await env.manager.call("hostile-loop", "ok", null, CALL).then(
          () => undefined,
          (e: unknown) => e,
        );
        if (refused === undefined) await new Promise((r) => setTimeout(r, 50));
      }
      assert.ok(refused instanceof QuotaExceededError, String(refused));
      assert.equal(refused.quota, "cpuMsPerMinute");
      assert.ok(
        refused.retryAfterSeconds >= 1 && refused.retryAfterSeconds <= 61,
        String(refused.retryAfterSeconds),
      );
      const used = env.manager.usage("hostile-loop")!.cpuMs;
      assert.ok(used >= 300, `cpuMs ${used}`);
      // Refusals are not faults: many of them quarantine nothing.
      for (let i = 0; i < 5; i++) {
        await assert.rejects(
          env.manager.call("hostile-loop", "ok", null, CALL),
          QuotaExceededError,
        );
      }
      assert.equal(env.manager.status("hostile-loop")?.enabled, true);
      // Another plugin runs meanwhile.
      assert.ok((await other.invoke("config_get", { key: "app.name" })).ok);
      // A higher limit frees it at once.
      await env.quotas.setOverrides("hostile-loop", { cpuMsPerMinute: 60_000 });
      assert.equal(
        decoder.decode((await env.manager.call("hostile-loop", "ok", null))!),
        '{"ok":true}',
      );
      const report = await env.quotas.report("hostile-loop");
      assert.equal(report.cpuEnforced, true);
      assert.ok(report.usage.cpuMsLastMinute! >= 300);
      assert.ok((report.refused.cpuMsPerMinute ?? 0) >= 6);
    } finally {
      await env.close();
    }
  },
);

/** Copies a fixture plugin's manifest and module into `to`. */
async function copyPlugin(from: string, to: string): Promise<void> {
  await Deno.mkdir(to, { recursive: true });
  for (const f of ["manifest.json", "plugin.wasm"]) {
    await Deno.copyFile(join(ROOT, from, f), join(to, f));
  }
}

Deno.test(
  "quotas through a real host: config limits, 429 + Retry-After on a route, audit, API and page overrides that survive a restart",
  opts,
  async () => {
    const dir = await Deno.makeTempDir({ prefix: "gk_quotas_host_" });
    const db = await privateSchema();
    const data = join(dir, "data");
    const pluginsDir = join(dir, "plugins");
    await copyPlugin("fixtures/plugins/hello-c", join(pluginsDir, "hello-c"));
    await copyPlugin("fixtures/plugins/wat-edge", join(pluginsDir, "wat-edge"));
    const configPath = join(dir, "goatkit.json");
    await Deno.writeTextFile(
      configPath,
      JSON.stringify({
        quotas: {
          default: { emailsPerHour: 500, concurrentCalls: 50 },
          plugins: { "hello-c": { cpuMsPerMinute: 1 } },
        },
      }),
    );
    const env = {
      GOATKIT_CONFIG: configPath,
      GOATKIT_HOSTNAME: "127.0.0.1",
      GOATKIT_QUOTA_CONCURRENT_CALLS: "100",
    };
    let host: RunningHost | undefined;
    let token = "";
    const start = async () =>
      await boot({
        config: hostConfig(data, pluginsDir, db.url, env),
        print: () => {},
      });
    try {
      host = await start();
      token = host.adminToken!;
      const api = (method: string, path: string, body?: unknown) =>
        fetch(`${host!.url}${path}`, {
          method,
          headers: {
            authorization: `Bearer ${token}`,
            ...(body === undefined
              ? {}
              : { "content-type": "application/json" }),
          },
          ...(body === undefined ? {} : { body: JSON.stringify(body) }),
        });

      // The host tables are shared by every test host: a fixture another
      // test left disabled starts disabled (see tests/helpers/host_process.ts).
      for (const name of ["hello-c", "wat-edge"]) {
        const r = await api("POST", `/api/v1/plugins/${name}/enable`);
        assert.equal(r.status, 200, `enable ${name}`);
        await r.body?.cancel();
      }
      // The route runs until hello-c's guest CPU passes 1 ms in the minute.
      let res: Response | undefined;
      for (let i = 0; i < 100; i++) {
        res = await fetch(`${host.url}/api/plugins/hello-c?name=Q`);
        if (res.status !== 200) break;
        await res.body?.cancel();
      }
      assert.equal(res!.status, 429, await res!.clone().text());
      const retry = Number(res!.headers.get("retry-after"));
      assert.ok(
        Number.isInteger(retry) && retry >= 1 && retry <= 61,
        `${retry}`,
      );
      const body = await res!.json();
      assert.equal(body.error, "quota exceeded");
      assert.equal(body.quota, "cpuMsPerMinute");
      assert.equal(body.plugin, "hello-c");
      assert.equal(body.retry_after_sec, retry);
      // Another plugin answers at the same moment.
      const echo = await api("POST", "/api/v1/plugins/wat-edge/call/echo", {
        x: 1,
      });
      assert.equal(echo.status, 200, await echo.clone().text());
      await echo.body?.cancel();

      // The report: every layer, the use, the refusals.
      const report = await (await api("GET", "/api/v1/plugins/hello-c/quotas"))
        .json();
      assert.equal(report.limits.cpuMsPerMinute, 1);
      assert.deepEqual(report.configured, { cpuMsPerMinute: 1 });
      assert.equal(report.defaults.emailsPerHour, 500);
      assert.equal(report.defaults.concurrentCalls, 100, "env over the file");
      assert.equal(report.limits.hostCallsPerSecond, 1000, "built-in default");
      assert.equal(report.cpuEnforced, true);
      assert.ok(report.refused.cpuMsPerMinute >= 1);
      // Audited.
      const audit = await (await api("GET", "/api/v1/audit?plugin=hello-c"))
        .json();
      const entries = (audit.entries ?? audit) as {
        permission: string;
        outcome: string;
      }[];
      assert.ok(
        entries.some((e) =>
          e.permission === "quota:cpuMsPerMinute" &&
          e.outcome === "quota-exceeded"
        ),
        JSON.stringify(audit),
      );

      // API overrides: validated, stored, shown.
      const bad = await api("PUT", "/api/v1/plugins/wat-edge/quotas", {
        nope: 1,
      });
      assert.equal(bad.status, 400);
      assert.match((await bad.json()).error, /unknown quota/);
      const negative = await api("PUT", "/api/v1/plugins/wat-edge/quotas", {
        emailsPerHour: -1,
      });
      assert.equal(negative.status, 400);
      await negative.body?.cancel();
      const missing = await api("GET", "/api/v1/plugins/no-such/quotas");
      assert.equal(missing.status, 404);
      await missing.body?.cancel();
      const put = await api("PUT", "/api/v1/plugins/wat-edge/quotas", {
        emailsPerHour: 7,
        hostCallBurst: null,
      });
      assert.equal(put.status, 200);
      const after = await put.json();
      assert.deepEqual(after.overrides, { emailsPerHour: 7 });
      assert.equal(after.limits.emailsPerHour, 7);
      // The admin page: a form with the override, which it can change.
      const page = await api("GET", "/admin/plugins/wat-edge");
      const html = await page.text();
      assert.match(html, /<h2>Quotas<\/h2>/);
      assert.match(html, /name="emailsPerHour" value="7"/);
      assert.match(html, /action="\/admin\/plugins\/wat-edge\/quotas"/);
      const posted = await fetch(`${host.url}/admin/plugins/wat-edge/quotas`, {
        method: "POST",
        redirect: "manual",
        headers: { authorization: `Bearer ${token}` },
        body: new URLSearchParams({ emailsPerHour: "9", concurrentCalls: "" }),
      });
      assert.equal(posted.status, 303);
      await posted.body?.cancel();
      // Survives a restart (the database is the truth).
      await host.close();
      host = await start();
      const kept = await (await api("GET", "/api/v1/plugins/wat-edge/quotas"))
        .json();
      assert.deepEqual(kept.overrides, { emailsPerHour: 9 });
      assert.equal(kept.limits.emailsPerHour, 9);
    } finally {
      // The host tables are shared by every test host: leave no override.
      if (host) {
        await fetch(`${host.url}/api/v1/plugins/wat-edge/quotas`, {
          method: "PUT",
          headers: {
            authorization: `Bearer ${token}`,
            "content-type": "application/json",
          },
          body: "{}",
        }).then((r) => r.body?.cancel()).catch(() => {});
      }
      await host?.close();
      await db.drop();
      await Deno.remove(dir, { recursive: true });
    }
  },
);
