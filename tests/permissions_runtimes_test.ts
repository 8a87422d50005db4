/**
 * Permissions through both runtimes' entry points: a WASM plugin (the WAT
 * probe `fixtures/plugins/perm-probe-wat`) and a TypeScript gRPC plugin
 * (`fixtures/plugins/perm-probe-ts`), each registered on a real
 * {@linkcode Manager} whose HostAPI is the guarded one
 * ({@linkcode guardedHostFactory}) in front of real services: PostgreSQL at
 * 127.0.0.1:5432 (database `test`, `GOATKIT_TEST_DATABASE_URL` overrides),
 * Deno KV and an `.eml` outbox in a temporary directory, an HTTP server on
 * 127.0.0.1 (port 0) granted explicitly as `http:127.0.0.1:<port>`, a
 * {@linkcode ConfigStore} and an {@linkcode I18nRegistry}.
 *
 * For every HostAPI method (db_query, db_exec, cache_get, cache_set,
 * cache_delete, http_request, send_email, config_get, translate,
 * plugin_call, log), calls made by the plugin itself through
 * `Manager.call`:
 * - allowed when granted, with the right answer;
 * - refused when the grant lacks exactly that permission: the WASM guest
 *   sees `host_call` return 0 and reads `{"error":{"type":
 *   "PermissionDeniedError","permission":…}}` through `gk.last_error`; the
 *   gRPC plugin gets a `PERMISSION_DENIED` `HostCallError` naming the
 *   permission; and the audit log holds an entry (plugin, permission,
 *   attempted, method, time), also written to the LogBuffer at warn;
 * - `translate` and `log` need no grant: allowed with no grant at all, and
 *   no audit entry.
 * Refusals inside a granted kind are shown too (a table outside the scope,
 * another plugin's schema, a redirect hop to a host outside the grant, a
 * recipient outside the pattern, a call target outside `plugins:call:<x>`,
 * a secret under a wildcard `config:` grant), and the database's own refusal
 * of an out-of-scope table and of a write under `db:read`.
 * Grants change while the plugins run (one load per runtime) and each change
 * applies to the next call; one step shows allow → revoke → deny → grant →
 * allow explicitly. With both probes on one Manager: one plugin cannot read
 * another's cache keys, and a WASM → gRPC `plugin_call` runs under the
 * callee's grants (the audit names the callee) while the caller's
 * `plugins:call:<callee>` gates the call.
 *
 * Run: `deno test -A tests/permissions_runtimes_test.ts`
 *
 * @module
 */

import assert from "node:assert/strict";
import { callProbe } from "./helpers/probe.ts";
import { join } from "node:path";
import { Manager } from "../host/manager.ts";
import { LogBuffer } from "../host/log_buffer.ts";
import { I18nRegistry } from "../host/registries/i18n.ts";
import {
  type CallContext,
  decodeJson,
  encodeJson,
  type Plugin,
} from "../host/model/plugin.ts";
import {
  AuditLog,
  checkPermissions,
  createEgressClient,
  type GuardedHostAPI,
  guardedHostFactory,
  MemoryGrantStore,
} from "../permissions/mod.ts";
import { DatabaseSet, PgDatabase } from "../host/services/database.ts";
import { KvCacheStore } from "../host/services/cache.ts";
import { OutboxMailer } from "../host/services/mailer.ts";
import { ConfigStore } from "../host/services/config.ts";
import { pluginRoleName } from "../permissions/pg_privileges.ts";
import { loadWasmPlugin } from "../runtimes/wasm/plugin.ts";
import { loadGrpcPlugin } from "../runtimes/grpc/mod.ts";
import { buildWat } from "../fixtures/hostile/wat_build.ts";

const DATABASE_URL = Deno.env.get("GOATKIT_TEST_DATABASE_URL") ??
  "postgres://postgres@127.0.0.1:5432/test";

const PROBE_WAT = new URL(
  "../fixtures/plugins/perm-probe-wat/plugin.wat",
  import.meta.url,
).pathname;
const PROBE_TS = new URL(
  "../fixtures/plugins/perm-probe-ts/plugin.ts",
  import.meta.url,
).pathname;

const encoder = new TextEncoder();
const decoder = new TextDecoder();
const b64 = (s: string) => btoa(s);
const suffix = () => crypto.randomUUID().replaceAll("-", "").slice(0, 8);

// The gRPC test turns the op/resource sanitizers off, as
// tests/grpc_runtime_test.ts does: grpc-js keeps timers and handles that
// outlive its client's close. Everything is still closed in `finally`.
const grpcOpts = { sanitizeOps: false, sanitizeResources: false };

/** Everything a scenario needs: services, Manager, grants, audit. */
interface Env {
  id: string;
  tmp: string;
  port: number;
  table: string;
  /** A host table outside every grant. */
  secretTable: string;
  target: string;
  outbox: string;
  manager: Manager;
  grants: MemoryGrantStore;
  audit: AuditLog;
  logs: LogBuffer;
  db: PgDatabase;
  /** Every permission a probe requests (and the full grant). */
  permissions: string[];
  /** Plugins whose database roles must be dropped. */
  plugins: string[];
  close(): Promise<void>;
}

async function setupEnv(): Promise<Env> {
  const id = suffix();
  const tmp = await Deno.makeTempDir({ prefix: "gk_perm_rt_" });
  const ac = new AbortController();
  const server = Deno.serve({
    hostname: "127.0.0.1",
    port: 0,
    signal: ac.signal,
    onListen: () => {},
  }, (req) => {
    const u = new URL(req.url);
    if (u.pathname === "/redirect") {
      // One hop to the same server under a name the grant does not cover.
      return new Response(null, {
        status: 302,
        headers: { location: `http://localhost:${u.port}/ping` },
      });
    }
    return new Response(`hello ${req.method} ${u.pathname}`);
  });
  const port = (server.addr as Deno.NetAddr).port;
  const table = `gkpr_items_${id}`;
  const db = new PgDatabase({ url: DATABASE_URL, max: 4 });
  await db.sqlClient.query(
    `CREATE TABLE ${table} (id int PRIMARY KEY, name text)`,
  );
  await db.sqlClient.query(`INSERT INTO ${table} VALUES (1, 'one')`);
  const secretTable = `gkpr_secret_${id}`;
  await db.sqlClient.query(`CREATE TABLE ${secretTable} (pw text)`);
  await db.sqlClient.query(`INSERT INTO ${secretTable} VALUES ('pw')`);
  const cache = new KvCacheStore({ path: join(tmp, "cache.kv") });
  const outbox = join(tmp, "outbox");
  const mailer = new OutboxMailer({ dir: outbox, from: "host@example.com" });
  const wasmName = `perm-probe-wat-${id}`;
  const tsName = `perm-probe-ts-${id}`;
  const config = new ConfigStore({
    values: { "app.name": "GoatKit", "mail.from": "host@example.com" },
    secrets: { API_KEY: "s3cret" },
    plugins: {
      [wasmName]: { own: `own-${wasmName}` },
      [tsName]: { own: `own-${tsName}` },
    },
  });
  const i18n = new I18nRegistry();
  i18n.addHost("de", { "perm.hello": "Hallo {0}" });
  const logs = new LogBuffer({ capacity: 5000 });
  const audit = new AuditLog({ logs });
  const grants = new MemoryGrantStore();
  const target = `perm-target-${id}`;
  let manager: Manager | undefined = undefined;
  const factory = guardedHostFactory({
    grants,
    services: {
      db: new DatabaseSet({ default: db }),
      cache,
      mailer,
      config,
      http: createEgressClient(),
    },
    i18n,
    logs,
    audit,
    callPlugin: (caller, t, fn, args, o) =>
      manager!.callFrom(caller, t, fn, args, o),
  });
  // The Manager never calls a guarded HostAPI's close() (its grant listener
  // outlives the plugin), so the test keeps them and closes them itself.
  const hosts: GuardedHostAPI[] = [];
  manager = new Manager({
    logs,
    i18n,
    manifestChecks: [checkPermissions],
    host: (name, manifest) => {
      const h = factory(name, manifest);
      hosts.push(h);
      return h;
    },
  });
  // The target of plugin_call: a native plugin echoing its arguments and
  // the caller the Manager recorded.
  const targetPlugin: Plugin = {
    gkRegister: () => ({ name: target, version: "1.0.0" }),
    init: () => Promise.resolve(),
    call: (fn: string, args: Uint8Array | null, ctx: CallContext) =>
      Promise.resolve(encodeJson({
        fn,
        args: decodeJson(args),
        caller: ctx.caller ?? null,
      })),
    shutdown: () => Promise.resolve(),
  };
  await manager.register(targetPlugin);
  const permissions = [
    `db:read:${table}`,
    `db:write:${table}`,
    "cache:read",
    "cache:write",
    `http:127.0.0.1:${port}`,
    "email:*@example.com",
    "config:app.*",
    `plugins:call:${target}`,
    `plugins:call:${tsName}`,
  ];
  const plugins: string[] = [];
  const m = manager;
  return {
    id,
    tmp,
    port,
    table,
    secretTable,
    target,
    outbox,
    manager: m,
    grants,
    audit,
    logs,
    db,
    permissions,
    plugins,
    async close() {
      const problems: unknown[] = [];
      const step = async (f: () => Promise<unknown>) => {
        try {
          await f();
        } catch (e) {
          problems.push(e);
        }
      };
      await step(() => m.shutdownAll());
      for (const h of hosts) h.close();
      for (const p of plugins) await step(() => db.dropPlugin(p));
      // The roles must be gone (two early runs left a role and schema
      // behind after dropPlugin; see the report of this test's author).
      const left = await db.sqlClient.query(
        "SELECT rolname FROM pg_roles WHERE rolname = ANY($1)",
        [plugins.map(pluginRoleName)],
      ).catch((e) => ({ rows: [{ rolname: String(e) }] }));
      if (left.rows.length > 0) {
        problems.push(
          new Error(
            `roles left after dropPlugin: ${JSON.stringify(left.rows)}`,
          ),
        );
        for (const p of plugins) await step(() => db.dropPlugin(p));
      }
      await step(() =>
        db.sqlClient.query(`DROP TABLE IF EXISTS ${table}, ${secretTable}`)
      );
      await step(() => db.close());
      await step(() => cache.close());
      await step(() => mailer.close());
      ac.abort();
      await step(() => server.finished);
      await step(() => Deno.remove(tmp, { recursive: true }));
      if (problems.length > 0) {
        throw new AggregateError(problems, "cleanup failed");
      }
    },
  };
}

/** What a probe reports for one host callback. */
type Outcome =
  | { ok: true; value: unknown }
  | {
    ok: false;
    /** WASM: the error type from gk.last_error; gRPC: the status name. */
    code: string;
    /** The permission named in the error. */
    permission: string | undefined;
    message: string;
  };

/** A loaded probe plugin, one per runtime. */
interface Probe {
  runtime: "wasm" | "grpc";
  name: string;
  /** Makes the probe call host function `method` with `req`. */
  invoke(method: string, req: unknown): Promise<Outcome>;
  /** Makes the probe log a line (level name). */
  log(
    level: "debug" | "info" | "warn" | "error",
    message: string,
  ): Promise<void>;
}

const CALL = { timeoutMs: 20_000, language: "de" };

async function wasmProbe(env: Env): Promise<Probe> {
  const name = `perm-probe-wat-${env.id}`;
  const manifestPath = join(env.tmp, "perm-probe-wat.json");
  await Deno.writeTextFile(
    manifestPath,
    JSON.stringify({
      name,
      version: "1.0.0",
      description: "permission probe (WAT)",
      permissions: env.permissions,
    }),
  );
  const bytes = await buildWat(PROBE_WAT, manifestPath);
  const plugin = await loadWasmPlugin(bytes, { name, callTimeoutMs: 20_000 });
  env.plugins.push(name);
  await env.manager.register(plugin);
  const levels = ["debug", "info", "warn", "error"];
  return {
    runtime: "wasm",
    name,
    async invoke(method, req) {
      const a = await callProbe(env.manager, name, method, req, CALL);
      return a.ok ? a : {
        ok: false,
        code: a.type,
        permission: a.permission,
        message: a.message,
      };
    },
    async log(level, message) {
      const out = await env.manager.call(
        name,
        "log",
        encoder.encode(`${levels.indexOf(level)}${message}`),
        CALL,
      );
      assert.equal(decoder.decode(out ?? new Uint8Array()), "ok:");
    },
  };
}

async function grpcProbe(env: Env): Promise<Probe> {
  const name = `perm-probe-ts-${env.id}`;
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
  const call = async (fn: string, args: unknown) => {
    const out = decodeJson<
      | { ok: true; value: unknown }
      | { ok: false; code: string; method: string; message: string }
    >(await env.manager.call(name, fn, encodeJson(args), CALL));
    assert.ok(out, `no answer from ${fn}`);
    return out;
  };
  return {
    runtime: "grpc",
    name,
    async invoke(method, req) {
      const out = await call(method, req);
      if (out.ok) return out;
      return {
        ok: false,
        code: out.code,
        permission: /lacks permission "([^"]+)"/.exec(out.message)?.[1],
        message: out.message,
      };
    },
    async log(level, message) {
      const out = await call("log", { level, message, fields: { n: 1 } });
      assert.deepEqual(out, { ok: true, value: true });
    },
  };
}

/**
 * One HostAPI method: how each runtime asks for it, what a correct answer
 * is, and which permission a refusal must name.
 */
interface MethodCase {
  method: string;
  /** The grant minus what this method needs. */
  without: (env: Env) => string[];
  /** The permission the refusal names. */
  permission: (env: Env) => string;
  /** The guard's label at the start of `attempted`. */
  label: string;
  /** The HostAPI method in the audit entry. */
  apiMethod: string;
  wasm: (env: Env) => unknown;
  ts: (env: Env) => unknown;
  /** Checks the allowed answer (`value` as the runtime reports it). */
  check: (env: Env, probe: Probe, value: unknown) => void | Promise<void>;
}

const drop = (...gone: string[]) => (env: Env) =>
  env.permissions.filter((p) => !gone.some((g) => p.startsWith(g)));

const CASES: MethodCase[] = [
  {
    method: "db_query",
    without: drop("db:"),
    permission: () => "db:read",
    label: "db_query",
    apiMethod: "dbQuery",
    wasm: (env) => ({
      query:
        `SELECT id, name, '$1 literal' AS lit FROM ${env.table} WHERE id = $1`,
      args: [1],
    }),
    ts: (env) => ({
      query:
        `SELECT id, name, '$1 literal' AS lit FROM ${env.table} WHERE id = $1`,
      args: [1],
    }),
    check: (_env, _p, value) =>
      assert.deepEqual(value, [{ id: 1, name: "one", lit: "$1 literal" }]),
  },
  {
    method: "db_exec",
    without: drop("db:write"),
    permission: () => "db:write",
    label: "db_exec",
    apiMethod: "dbExec",
    wasm: (env) => ({
      query: `UPDATE ${env.table} SET name = $1 WHERE id = $2`,
      args: ["wasm", 1],
    }),
    ts: (env) => ({
      query: `UPDATE ${env.table} SET name = $1 WHERE id = $2`,
      args: ["grpc", 1],
    }),
    check: async (env, probe, value) => {
      assert.deepEqual(value, probe.runtime === "wasm" ? { affected: 1 } : 1);
      const { rows } = await env.db.sqlClient.query(
        `SELECT name FROM ${env.table} WHERE id = 1`,
      );
      assert.deepEqual(rows, [{ name: probe.runtime }]);
      await env.db.sqlClient.query(
        `UPDATE ${env.table} SET name = 'one' WHERE id = 1`,
      );
    },
  },
  {
    method: "cache_set",
    without: drop("cache:write"),
    permission: () => "cache:write",
    label: "cache_set",
    apiMethod: "cacheSet",
    wasm: () => ({ key: "k", value: b64("v-wasm"), ttl: 60 }),
    ts: () => ({ key: "k", value: "v-grpc", ttl: 60 }),
    check: (_env, probe, value) =>
      assert.deepEqual(value, probe.runtime === "wasm" ? { ok: true } : true),
  },
  {
    method: "cache_get",
    without: drop("cache:read"),
    permission: () => "cache:read",
    label: "cache_get",
    apiMethod: "cacheGet",
    wasm: () => ({ key: "k" }),
    ts: () => ({ key: "k" }),
    check: (_env, probe, value) =>
      assert.deepEqual(
        value,
        probe.runtime === "wasm"
          ? { found: true, value: b64("v-wasm") }
          : "v-grpc",
      ),
  },
  {
    method: "cache_delete",
    without: drop("cache:write"),
    permission: () => "cache:write",
    label: "cache_delete",
    apiMethod: "cacheDelete",
    wasm: () => ({ key: "k" }),
    ts: () => ({ key: "k" }),
    check: async (_env, probe, value) => {
      assert.deepEqual(value, probe.runtime === "wasm" ? { ok: true } : true);
      const after = await probe.invoke("cache_get", { key: "k" });
      assert.deepEqual(
        after,
        {
          ok: true,
          value: probe.runtime === "wasm"
            ? { found: false, value: null }
            : null,
        },
      );
    },
  },
  {
    method: "http_request",
    without: drop("http:"),
    permission: (env) => `http:127.0.0.1:${env.port}`,
    label: "http_request",
    apiMethod: "httpRequest",
    wasm: (env) => ({
      method: "GET",
      url: `http://127.0.0.1:${env.port}/ping`,
      headers: {},
      body: null,
    }),
    ts: (env) => ({ method: "GET", url: `http://127.0.0.1:${env.port}/ping` }),
    check: (_env, probe, value) =>
      assert.deepEqual(
        value,
        probe.runtime === "wasm"
          ? { body: b64("hello GET /ping"), status: 200 }
          : { status: 200, body: "hello GET /ping" },
      ),
  },
  {
    method: "send_email",
    without: drop("email:"),
    permission: () => "email:someone@example.com",
    label: "send_email",
    apiMethod: "sendEmail",
    wasm: () => ({
      to: "someone@example.com",
      subject: "From wasm",
      body: "Hello",
      html: false,
    }),
    ts: () => ({
      to: "someone@example.com",
      subject: "From grpc",
      body: "Hello",
    }),
    check: async (env, probe, value) => {
      assert.deepEqual(value, probe.runtime === "wasm" ? { ok: true } : true);
      const emls: string[] = [];
      for await (const e of Deno.readDir(env.outbox)) {
        if (e.name.endsWith(".eml") && e.name.includes(probe.name)) {
          emls.push(await Deno.readTextFile(join(env.outbox, e.name)));
        }
      }
      assert.equal(emls.length, 1, "one .eml for this plugin");
      assert.match(emls[0], /^To: someone@example\.com\r?$/m);
      assert.match(emls[0], new RegExp(`^Subject: From ${probe.runtime}`, "m"));
    },
  },
  {
    method: "config_get",
    without: drop("config:"),
    permission: () => "config:app.name",
    label: "config_get",
    apiMethod: "configGet",
    wasm: () => ({ key: "app.name" }),
    ts: () => ({ key: "app.name" }),
    check: (_env, probe, value) =>
      assert.deepEqual(
        value,
        probe.runtime === "wasm" ? { value: "GoatKit" } : "GoatKit",
      ),
  },
  {
    method: "plugin_call",
    without: drop("plugins:"),
    permission: (env) => `plugins:call:${env.target}`,
    label: "plugin_call",
    apiMethod: "callPlugin",
    wasm: (env) => ({ plugin: env.target, function: "echo", args: { x: 1 } }),
    ts: (env) => ({ plugin: env.target, fn: "echo", args: { x: 1 } }),
    check: (_env, probe, value) =>
      // WASM gets the target's raw result bytes; the SDK decodes them.
      assert.deepEqual(value, {
        fn: "echo",
        args: { x: 1 },
        caller: probe.name,
      }),
  },
];

/** A mark in the audit log; entries recorded after it come from {@linkcode auditSince}. */
interface AuditMark {
  count: number;
  time: number;
}

function auditMark(env: Env): AuditMark {
  return { count: env.audit.count(), time: Date.now() };
}

/**
 * Entries recorded after `mark`, newest first, optionally of one plugin.
 * (Counted, not filtered by time: denials within one millisecond of the
 * mark would be indistinguishable by `since`.)
 */
function auditSince(env: Env, mark: AuditMark, plugin?: string) {
  const fresh = env.audit.query({ limit: env.audit.count() - mark.count });
  return plugin === undefined
    ? fresh
    : fresh.filter((e) => e.plugin === plugin);
}

function assertAudit(
  env: Env,
  probe: Probe,
  c: MethodCase,
  mark: AuditMark,
): void {
  const entries = auditSince(env, mark, probe.name);
  assert.equal(
    entries.length,
    1,
    `one audit entry: ${JSON.stringify(entries)}`,
  );
  const e = entries[0];
  assert.equal(e.plugin, probe.name);
  assert.equal(e.permission, c.permission(env));
  assert.equal(e.method, c.apiMethod);
  assert.ok(
    e.attempted.startsWith(c.label),
    `attempted "${e.attempted}" starts with ${c.label}`,
  );
  assert.ok(Date.parse(e.time) >= mark.time);
  // Also in the LogBuffer, at warn, attributed to the plugin.
  assert.ok(
    env.logs.query({ plugin: probe.name, minLevel: "warn" }).some((l) =>
      l.level === "warn" && l.fields?.audit === true &&
      l.fields?.permission === c.permission(env)
    ),
    "audit line in the LogBuffer",
  );
}

function assertDenied(env: Env, probe: Probe, c: MethodCase, o: Outcome) {
  assert.equal(o.ok, false, `${c.method} refused: ${JSON.stringify(o)}`);
  if (o.ok) return;
  assert.equal(
    o.code,
    probe.runtime === "wasm" ? "PermissionDeniedError" : "PERMISSION_DENIED",
  );
  assert.equal(o.permission, c.permission(env));
  assert.match(
    o.message,
    new RegExp(`plugin "${probe.name}" lacks permission`),
  );
}

/** Allow, then deny, for every method; then translate, log, a live grant change. */
async function scenario(t: Deno.TestContext, env: Env, probe: Probe) {
  const full = env.permissions;
  for (const c of CASES) {
    await t.step(
      `${c.method}: allowed when granted, refused and audited when not`,
      async () => {
        await env.grants.set(probe.name, full);
        const req = probe.runtime === "wasm" ? c.wasm(env) : c.ts(env);
        const allowed = await probe.invoke(c.method, req);
        assert.equal(
          allowed.ok,
          true,
          `${c.method}: ${JSON.stringify(allowed)}`,
        );
        if (allowed.ok) await c.check(env, probe, allowed.value);

        // The same running plugin, the grant without this permission.
        await env.grants.set(probe.name, c.without(env));
        const mark = auditMark(env);
        const denied = await probe.invoke(c.method, req);
        assertDenied(env, probe, c, denied);
        assertAudit(env, probe, c, mark);
      },
    );
  }

  await t.step(
    "refusals inside a granted kind: table scope, another plugin's schema, redirect hop, recipient, call target",
    async () => {
      await env.grants.set(probe.name, full);
      const expectDenied = async (
        method: string,
        req: unknown,
        permission: string,
        attempted: RegExp,
      ) => {
        const mark = auditMark(env);
        const o = await probe.invoke(method, req);
        assert.equal(o.ok, false, `${method}: ${JSON.stringify(o)}`);
        if (!o.ok) {
          assert.equal(
            o.code,
            probe.runtime === "wasm"
              ? "PermissionDeniedError"
              : "PERMISSION_DENIED",
          );
          assert.equal(o.permission, permission);
        }
        const entries = auditSince(env, mark, probe.name);
        assert.equal(entries.length, 1, JSON.stringify(entries));
        assert.equal(entries[0].permission, permission);
        assert.match(entries[0].attempted, attempted);
      };
      // A host table outside db:read:<table>, named with its schema: the
      // guard refuses it before the database sees it.
      await expectDenied(
        "db_query",
        { query: `SELECT pw FROM public.${env.secretTable}`, args: [] },
        `db:read:${env.secretTable}`,
        new RegExp(`^db_query on table "${env.secretTable}"`),
      );
      // Another plugin's own schema.
      await expectDenied(
        "db_query",
        { query: `SELECT * FROM plugin_someone_else.notes`, args: [] },
        "db:read:plugin_someone_else.notes",
        /another plugin's schema/,
      );
      // An allowed host redirecting to a name the grant does not cover:
      // refused at the hop.
      await expectDenied(
        "http_request",
        probe.runtime === "wasm"
          ? {
            method: "GET",
            url: `http://127.0.0.1:${env.port}/redirect`,
            headers: {},
            body: null,
          }
          : { method: "GET", url: `http://127.0.0.1:${env.port}/redirect` },
        `http:localhost:${env.port}`,
        /^http_request GET http:\/\/127\.0\.0\.1:\d+\/redirect .*localhost/,
      );
      // A recipient outside email:*@example.com.
      await expectDenied(
        "send_email",
        { to: "eve@evil.test", subject: "x", body: "y" },
        "email:eve@evil.test",
        /^send_email to eve@evil\.test/,
      );
      // A target outside plugins:call:<target>.
      await expectDenied(
        "plugin_call",
        probe.runtime === "wasm"
          ? { plugin: "not-granted", function: "echo", args: {} }
          : { plugin: "not-granted", fn: "echo", args: {} },
        "plugins:call:not-granted",
        /^plugin_call not-granted\.echo/,
      );
      // Unqualified, the out-of-scope table is refused by PostgreSQL itself
      // (the plugin's role has no SELECT on it): a database error, not a
      // guard denial, so no audit entry.
      const mark = auditMark(env);
      const o = await probe.invoke("db_query", {
        query: `SELECT pw FROM ${env.secretTable}`,
        args: [],
      });
      assert.equal(o.ok, false, JSON.stringify(o));
      if (!o.ok) assert.match(o.message, /permission denied/i);
      assert.equal(auditSince(env, mark, probe.name).length, 0);
    },
  );

  await t.step(
    "translate: needs no grant (request language from the call)",
    async () => {
      await env.grants.set(probe.name, []);
      const before = env.audit.count();
      const o = await probe.invoke(
        "translate",
        { key: "perm.hello", args: ["Ana"] },
      );
      assert.deepEqual(o, {
        ok: true,
        value: probe.runtime === "wasm" ? { value: "Hallo Ana" } : "Hallo Ana",
      });
      assert.equal(env.audit.count(), before, "no audit entry");
    },
  );

  await t.step("log: needs no grant, attributed to the plugin", async () => {
    await env.grants.set(probe.name, []);
    const before = env.audit.count();
    const message = `probe line from ${probe.runtime}`;
    await probe.log("warn", message);
    const line = env.logs.query({ plugin: probe.name }).find((l) =>
      l.message === message
    );
    assert.ok(line, "log line in the LogBuffer");
    assert.equal(line.level, "warn");
    assert.equal(env.audit.count(), before, "no audit entry");
  });

  await t.step(
    "own config section needs no grant; secrets need the exact key",
    async () => {
      await env.grants.set(probe.name, full);
      const own = await probe.invoke("config_get", { key: "own" });
      assert.deepEqual(own, {
        ok: true,
        value: probe.runtime === "wasm"
          ? { value: `own-${probe.name}` }
          : `own-${probe.name}`,
      });
      // config:app.* does not reach a secret (nor anything outside app.).
      const mark = auditMark(env);
      const secret = await probe.invoke("config_get", { key: "API_KEY" });
      assert.equal(secret.ok, false);
      if (!secret.ok) assert.equal(secret.permission, "config:API_KEY");
      assert.equal(
        auditSince(env, mark, probe.name)[0]?.permission,
        "config:API_KEY",
      );
    },
  );

  await t.step(
    "a grant changed while the plugin runs applies to the next call",
    async () => {
      const get = () => probe.invoke("config_get", { key: "app.name" });
      await env.grants.set(probe.name, ["config:app.*"]);
      assert.equal((await get()).ok, true);
      await env.grants.revoke(probe.name, ["config:app.*"]);
      const denied = await get();
      assert.equal(denied.ok, false);
      if (!denied.ok) assert.equal(denied.permission, "config:app.name");
      await env.grants.set(probe.name, ["config:app.name"]);
      assert.equal((await get()).ok, true, "a narrower grant works at once");
      // And the database role follows: db:read only now refuses an UPDATE
      // sent through db_query by PostgreSQL itself (READ ONLY transaction).
      await env.grants.set(probe.name, [`db:read:${env.table}`]);
      const upd = await probe.invoke("db_query", {
        query: `UPDATE ${env.table} SET name = 'x' WHERE id = 1 RETURNING id`,
        args: [],
      });
      assert.equal(upd.ok, false, JSON.stringify(upd));
      if (!upd.ok) {
        assert.notEqual(upd.code, "PermissionDeniedError");
        assert.match(upd.message, /read-only|read only/i);
      }
      const { rows } = await env.db.sqlClient.query(
        `SELECT name FROM ${env.table} WHERE id = 1`,
      );
      assert.deepEqual(rows, [{ name: "one" }]);
    },
  );
}

Deno.test(
  "permissions through the WASM runtime: allow, deny, audit per HostAPI method",
  async (t) => {
    const env = await setupEnv();
    try {
      const probe = await wasmProbe(env);
      await scenario(t, env, probe);
    } finally {
      await env.close();
    }
  },
);

Deno.test(
  "permissions through the gRPC runtime: allow, PERMISSION_DENIED, audit per HostAPI method",
  grpcOpts,
  async (t) => {
    const env = await setupEnv();
    try {
      const ts = await grpcProbe(env);
      await scenario(t, env, ts);

      // Both runtimes side by side on one Manager (the WASM probe is cheap
      // to load; the gRPC one is launched once per file).
      const wasm = await wasmProbe(env);
      await t.step("cache: a plugin cannot read another's keys", async () => {
        await env.grants.set(ts.name, ["cache:read", "cache:write"]);
        await env.grants.set(wasm.name, ["cache:read", "cache:write"]);
        assert.equal(
          (await ts.invoke("cache_set", { key: "shared", value: "ts" })).ok,
          true,
        );
        assert.deepEqual(await wasm.invoke("cache_get", { key: "shared" }), {
          ok: true,
          value: { found: false, value: null },
        });
        assert.deepEqual(await ts.invoke("cache_get", { key: "shared" }), {
          ok: true,
          value: "ts",
        });
      });

      await t.step(
        "plugin_call across runtimes: the callee's own grants apply, the caller is recorded",
        async () => {
          await env.grants.set(wasm.name, [`plugins:call:${ts.name}`]);
          await env.grants.set(ts.name, []);
          const call = () =>
            wasm.invoke("plugin_call", {
              plugin: ts.name,
              function: "config_get",
              args: { key: "app.name" },
            });
          const mark = auditMark(env);
          // The WASM plugin may call the gRPC plugin, but the gRPC plugin
          // has no config grant: its host callback is refused, as itself.
          const refused = await call();
          assert.equal(refused.ok, true, JSON.stringify(refused));
          if (refused.ok) {
            const v = refused.value as { ok: boolean; code: string };
            assert.equal(v.ok, false);
            assert.equal(v.code, "PERMISSION_DENIED");
          }
          const entries = auditSince(env, mark);
          assert.equal(entries.length, 1, JSON.stringify(entries));
          assert.equal(entries[0].plugin, ts.name, "the callee is audited");
          assert.equal(entries[0].permission, "config:app.name");
          // Granting the callee applies to the next call through the chain.
          await env.grants.set(ts.name, ["config:app.*"]);
          assert.deepEqual(await call(), {
            ok: true,
            value: { ok: true, value: "GoatKit" },
          });
          // Revoking the caller's plugins:call stops the chain at the caller.
          await env.grants.set(wasm.name, []);
          const mark2 = auditMark(env);
          const stopped = await call();
          assert.equal(stopped.ok, false);
          if (!stopped.ok) {
            assert.equal(stopped.permission, `plugins:call:${ts.name}`);
          }
          assert.deepEqual(
            auditSince(env, mark2).map((e) => [
              e.plugin,
              e.permission,
            ]),
            [[wasm.name, `plugins:call:${ts.name}`]],
          );
        },
      );
    } finally {
      await env.close();
    }
  },
);
