/**
 * The guarded HostAPI: allow and deny for every method, each denial with its
 * audit entry (and warn line). Services are small recording doubles here
 * (the database, cache, mailer and config are exercised for real in
 * `permissions_guarded_services_test.ts`); HTTP goes through the real egress
 * client to a loopback server; plugin calls go through the real Manager.
 */
import assert from "node:assert/strict";
import {
  AuditLog,
  createEgressClient,
  createGuardedHostAPI,
  type GuardedDbCallOptions,
  type GuardedHostAPIOptions,
  guardedHostFactory,
  MemoryGrantStore,
  type PluginPrivileges,
} from "../permissions/mod.ts";
import { PermissionDeniedError } from "../host/model/errors.ts";
import type { EmailMessage } from "../host/model/host_api.ts";
import { LogBuffer } from "../host/log_buffer.ts";
import { I18nRegistry } from "../host/registries/i18n.ts";
import { Manager } from "../host/manager.ts";
import {
  createCallContext,
  decodeJson,
  encodeJson,
} from "../host/model/plugin.ts";

class DbDouble {
  calls: {
    kind: "query" | "exec";
    sql: string;
    args: unknown[];
    opts: GuardedDbCallOptions;
  }[] = [];
  syncs: { plugin: string; privileges: PluginPrivileges }[] = [];
  query(sql: string, args: unknown[], opts: GuardedDbCallOptions) {
    this.calls.push({ kind: "query", sql, args, opts });
    return Promise.resolve([{ ok: 1 }]);
  }
  exec(sql: string, args: unknown[], opts: GuardedDbCallOptions) {
    this.calls.push({ kind: "exec", sql, args, opts });
    return Promise.resolve(3);
  }
  syncPluginPrivileges(plugin: string, privileges: PluginPrivileges) {
    this.syncs.push({ plugin, privileges });
    return Promise.resolve();
  }
}

class CacheDouble {
  data = new Map<string, Uint8Array>();
  get(ns: string, key: string) {
    return Promise.resolve(this.data.get(`${ns}/${key}`) ?? null);
  }
  set(ns: string, key: string, value: Uint8Array) {
    this.data.set(`${ns}/${key}`, value);
    return Promise.resolve();
  }
  delete(ns: string, key: string) {
    this.data.delete(`${ns}/${key}`);
    return Promise.resolve();
  }
}

class MailerDouble {
  sent: { plugin: string; message: EmailMessage }[] = [];
  send(plugin: string, message: EmailMessage) {
    this.sent.push({ plugin, message });
    return Promise.resolve();
  }
}

const config = {
  hostValue: (key: string) =>
    ({ "app.name": "GoatKit", "app.env": "test" })[key],
  secret: (key: string) => ({ "smtp.password": "s3cret" })[key],
  pluginValue: (plugin: string, key: string) =>
    plugin === "alpha" && key === "greeting" ? "hi" : undefined,
};

function setup(
  requested: string[],
  granted: string[],
  extra: Partial<GuardedHostAPIOptions> = {},
) {
  const grants = new MemoryGrantStore();
  const logs = new LogBuffer();
  const audit = new AuditLog({ logs });
  const db = new DbDouble();
  const cache = new CacheDouble();
  const mailer = new MailerDouble();
  const i18n = new I18nRegistry();
  i18n.addPlugin("alpha", {
    translations: { en: { hi: "Hello, {0}" }, de: { hi: "Hallo, {0}" } },
  });
  const host = createGuardedHostAPI({
    plugin: "alpha",
    requested,
    grants,
    services: {
      db,
      cache,
      mailer,
      config,
      http: createEgressClient({ timeoutMs: 5000 }),
    },
    i18n,
    logs,
    audit,
    ...extra,
  });
  const ready = grants.set("alpha", granted);
  return { grants, logs, audit, db, cache, mailer, host, ready };
}

async function expectDenied(
  p: Promise<unknown>,
  audit: AuditLog,
  permission: string,
  attempted?: RegExp,
) {
  const before = audit.count();
  await assert.rejects(p, (e: unknown) => {
    assert.ok(
      e instanceof PermissionDeniedError,
      `expected PermissionDeniedError, got ${e}`,
    );
    assert.equal(e.plugin, "alpha");
    assert.equal(e.permission, permission);
    if (attempted) assert.match(e.attempted, attempted);
    return true;
  });
  assert.equal(audit.count(), before + 1, "one audit entry per denial");
  const entry = audit.query({ plugin: "alpha", limit: 1 })[0]!;
  assert.equal(entry.permission, permission);
  assert.ok(Date.parse(entry.time) > 0);
}

const ctx = () => createCallContext({ timeoutMs: 10_000 });

Deno.test("guarded: dbQuery and dbExec", async () => {
  const none = setup(["db:read"], []);
  await none.ready;
  await expectDenied(
    none.host.dbQuery(ctx(), "SELECT 1"),
    none.audit,
    "db:read",
    /db_query SELECT 1/,
  );
  await expectDenied(
    none.host.dbExec(ctx(), "DELETE FROM t"),
    none.audit,
    "db:write",
  );
  assert.equal(none.db.calls.length, 0);

  const r = setup(["db:read:ticket"], ["db:read"]);
  await r.ready;
  assert.deepEqual(
    await r.host.dbQuery(ctx(), "SELECT * FROM ticket WHERE id = $1", [7]),
    [{ ok: 1 }],
  );
  assert.equal(r.db.calls[0]!.opts.readOnly, true, "db:read runs READ ONLY");
  assert.equal(r.db.calls[0]!.opts.plugin, "alpha");
  assert.deepEqual(r.db.calls[0]!.args, [7]);
  assert.ok(r.db.calls[0]!.opts.statementTimeoutMs! <= 5000);
  assert.deepEqual(r.db.syncs, [{
    plugin: "alpha",
    privileges: { read: ["ticket"], write: null },
  }]);
  await expectDenied(
    r.host.dbExec(ctx(), "UPDATE ticket SET a = 1"),
    r.audit,
    "db:write",
  );
  // Cheap pre-check: an out-of-scope qualified table and another plugin's schema.
  await expectDenied(
    r.host.dbQuery(ctx(), "SELECT * FROM public.users"),
    r.audit,
    "db:read:users",
    /table "users"/,
  );
  await expectDenied(
    r.host.dbQuery(ctx(), "SELECT * FROM plugin_beta.notes"),
    r.audit,
    "db:read:plugin_beta.notes",
  );
  // Its own schema and strings that merely look like tables pass to the database.
  await r.host.dbQuery(
    ctx(),
    "SELECT * FROM plugin_alpha.notes WHERE x = 'FROM public.users'",
  );

  const w = setup(["db:write:ticket", "db:read"], [
    "db:write:ticket",
    "db:read",
  ]);
  await w.ready;
  assert.equal(await w.host.dbExec(ctx(), "UPDATE ticket SET a = 1"), 3);
  await w.host.dbQuery(ctx(), "SELECT 1");
  assert.equal(w.db.calls[1]!.opts.readOnly, false, "db:write lifts READ ONLY");
  assert.deepEqual(w.db.syncs.at(-1)!.privileges, {
    read: "all",
    write: ["ticket"],
  });
  assert.equal(
    w.db.syncs.length,
    1,
    "privileges synced once while grants are unchanged",
  );
});

Deno.test("guarded: grant changes apply to the next call and resync privileges", async () => {
  const s = setup(["db:read", "db:write"], ["db:read"]);
  await s.ready;
  await s.host.dbQuery(ctx(), "SELECT 1");
  await expectDenied(
    s.host.dbExec(ctx(), "DELETE FROM t"),
    s.audit,
    "db:write",
  );
  await s.grants.set("alpha", ["db:read", "db:write"]);
  assert.equal(await s.host.dbExec(ctx(), "DELETE FROM t"), 3);
  assert.deepEqual(s.db.syncs.at(-1)!.privileges, {
    read: "all",
    write: "all",
  });
  await s.grants.revoke("alpha", ["db:write"]);
  await new Promise((r) => setTimeout(r, 0));
  // The eager resync after revoke already removed write privileges.
  assert.deepEqual(s.db.syncs.at(-1)!.privileges, { read: "all", write: null });
  await expectDenied(
    s.host.dbExec(ctx(), "DELETE FROM t"),
    s.audit,
    "db:write",
  );
  await s.grants.revoke("alpha");
  await expectDenied(s.host.dbQuery(ctx(), "SELECT 1"), s.audit, "db:read");
  s.host.close();
});

Deno.test("guarded: cache get/set/delete in the plugin's own namespace", async () => {
  const s = setup(["cache:read", "cache:write"], ["cache:read"]);
  await s.ready;
  s.cache.data.set("alpha/k", new Uint8Array([1, 2]));
  s.cache.data.set("beta/k", new Uint8Array([9]));
  assert.deepEqual(await s.host.cacheGet(ctx(), "k"), new Uint8Array([1, 2]));
  await expectDenied(
    s.host.cacheSet(ctx(), "k", new Uint8Array([3]), 0),
    s.audit,
    "cache:write",
  );
  await expectDenied(s.host.cacheDelete(ctx(), "k"), s.audit, "cache:write");
  await s.grants.set("alpha", ["cache:write"]);
  await expectDenied(s.host.cacheGet(ctx(), "k"), s.audit, "cache:read");
  await s.host.cacheSet(ctx(), "beta/k", new Uint8Array([3]), 60);
  assert.deepEqual(
    s.cache.data.get("alpha/beta/k"),
    new Uint8Array([3]),
    "namespace is forced",
  );
  assert.deepEqual(s.cache.data.get("beta/k"), new Uint8Array([9]));
  await s.host.cacheDelete(ctx(), "k");
  assert.equal(s.cache.data.has("alpha/k"), false);
});

Deno.test("guarded: httpRequest through the egress guard", async () => {
  let hits = 0;
  const server = Deno.serve(
    { hostname: "127.0.0.1", port: 0, onListen() {} },
    () => {
      hits++;
      return new Response("pong");
    },
  );
  const port = server.addr.port;
  try {
    const s = setup([`http:127.0.0.1:${port}`, "http:external"], [
      `http:127.0.0.1:${port}`,
    ]);
    await s.ready;
    const res = await s.host.httpRequest(ctx(), {
      method: "GET",
      url: `http://127.0.0.1:${port}/ping`,
    });
    assert.equal(new TextDecoder().decode(res.body), "pong");
    // Not granted: another host.
    await expectDenied(
      s.host.httpRequest(ctx(), {
        method: "GET",
        url: "http://api.example.com/",
      }),
      s.audit,
      "http:api.example.com",
    );
    // http:external is requested but not granted; granting it still never reaches loopback.
    await s.grants.set("alpha", ["http:external"]);
    await expectDenied(
      s.host.httpRequest(ctx(), {
        method: "GET",
        url: `http://127.0.0.1:${port}/`,
      }),
      s.audit,
      `http:127.0.0.1:${port}`,
      /loopback/,
    );
    await expectDenied(
      s.host.httpRequest(ctx(), {
        method: "GET",
        url: "http://169.254.169.254/latest",
      }),
      s.audit,
      "http:169.254.169.254",
      /metadata/,
    );
    assert.equal(hits, 1);
  } finally {
    await server.shutdown();
  }
});

Deno.test("guarded: sendEmail needs a matching recipient pattern", async () => {
  const s = setup(["email:*@example.com", "email:ops@other.org"], [
    "email:*@example.com",
  ]);
  await s.ready;
  await s.host.sendEmail(ctx(), {
    to: "Ana@Example.com",
    subject: "Hi",
    body: "x",
  });
  assert.deepEqual(s.mailer.sent.map((m) => [m.plugin, m.message.to]), [[
    "alpha",
    "Ana@Example.com",
  ]]);
  await expectDenied(
    s.host.sendEmail(ctx(), { to: "ops@other.org", subject: "x", body: "y" }),
    s.audit,
    "email:ops@other.org",
  );
  await expectDenied(
    s.host.sendEmail(ctx(), {
      to: "a@example.com.evil.net",
      subject: "x",
      body: "y",
    }),
    s.audit,
    "email:a@example.com.evil.net",
  );
  await expectDenied(
    s.host.sendEmail(ctx(), {
      to: "a@example.com, b@evil.net",
      subject: "x",
      body: "y",
    }),
    s.audit,
    "email:<recipient>",
  );
  assert.equal(s.mailer.sent.length, 1);
});

Deno.test("guarded: configGet — own section, host keys by pattern, secrets by exact key", async () => {
  const s = setup(["config:app.*", "config:smtp.password"], ["config:app.*"]);
  await s.ready;
  assert.equal(
    await s.host.configGet(ctx(), "greeting"),
    "hi",
    "own section needs no grant",
  );
  assert.equal(await s.host.configGet(ctx(), "app.name"), "GoatKit");
  await assert.rejects(
    s.host.configGet(ctx(), "app.missing"),
    /Cannot get config key "app\.missing": the host has no such key/,
  );
  await expectDenied(
    s.host.configGet(ctx(), "db.url"),
    s.audit,
    "config:db.url",
  );
  await expectDenied(
    s.host.configGet(ctx(), "smtp.password"),
    s.audit,
    "config:smtp.password",
  );
  await s.grants.set("alpha", ["config:*"]);
  await expectDenied(
    s.host.configGet(ctx(), "smtp.password"),
    s.audit,
    "config:smtp.password",
    /exact key/,
  );
  await s.grants.set("alpha", ["config:smtp.password"]);
  assert.equal(await s.host.configGet(ctx(), "smtp.password"), "s3cret");
});

Deno.test("guarded: translate uses the call's language; log is attributed to the plugin", async () => {
  const s = setup([], []);
  await s.ready;
  assert.equal(
    await s.host.translate(
      createCallContext({ language: "de-CH" }),
      "alpha.hi",
      ["Ana"],
    ),
    "Hallo, Ana",
  );
  assert.equal(
    await s.host.translate(ctx(), "alpha.hi", ["Ana"]),
    "Hello, Ana",
  );
  s.host.log(ctx(), "info", "spoof attempt", { plugin: "beta", n: 1 });
  s.host.log(ctx(), "bogus" as "info", "odd level");
  const lines = s.logs.query({ plugin: "alpha" });
  assert.deepEqual(lines.map((l) => [l.level, l.message]), [[
    "info",
    "odd level",
  ], [
    "info",
    "spoof attempt",
  ]]);
  assert.deepEqual(lines[1]!.fields, { n: 1 });
  assert.equal(s.logs.query({ plugin: "beta" }).length, 0);
  assert.equal(s.audit.count(), 0, "translate and log never deny");
});

Deno.test("guarded: the audit log is queryable and mirrored at warn", async () => {
  const s = setup(["db:read"], []);
  await s.ready;
  const t0 = new Date();
  await expectDenied(s.host.dbQuery(ctx(), "SELECT 1"), s.audit, "db:read");
  await expectDenied(s.host.cacheGet(ctx(), "k"), s.audit, "cache:read");
  assert.deepEqual(s.audit.query({ since: t0 }).map((e) => e.permission), [
    "cache:read",
    "db:read",
  ]);
  assert.equal(s.audit.query({ plugin: "beta" }).length, 0);
  assert.equal(s.audit.query({ limit: 1 }).length, 1);
  assert.equal(
    s.audit.query({ since: new Date(Date.now() + 60_000) }).length,
    0,
  );
  const warn = s.logs.query({ plugin: "alpha", minLevel: "warn" });
  assert.equal(warn.length, 2);
  assert.match(warn[0]!.message, /permission denied: "cache:read"/);
  const small = new AuditLog({ capacity: 2 });
  for (let i = 0; i < 5; i++) {
    small.record({ plugin: "p", permission: `x${i}`, attempted: "a" });
  }
  assert.deepEqual(small.query().map((e) => e.permission), ["x4", "x3"]);
});

Deno.test("guarded: callPlugin through the Manager, caller recorded, ctx passed as parent", async () => {
  const grants = new MemoryGrantStore();
  const audit = new AuditLog();
  const ref: { manager?: Manager } = {};
  const host = guardedHostFactory({
    grants,
    services: {},
    audit,
    callPlugin: (caller, target, fn, args, opts) =>
      ref.manager!.callFrom(caller, target, fn, args, opts),
  });
  const manager = new Manager({ host });
  ref.manager = manager;
  const seen: { caller?: string | undefined; chain: readonly string[] }[] = [];
  let alphaHost: import("../host/model/host_api.ts").HostAPI | undefined;
  await manager.register({
    gkRegister: () => ({
      name: "alpha",
      version: "1.0.0",
      permissions: ["plugins:call:stats", "plugins:call:beta"],
    }),
    init: (h) => {
      alphaHost = h;
      return Promise.resolve();
    },
    call: async (fn, args, c) => {
      const target = decodeJson<string>(args)!;
      return await alphaHost!.callPlugin(
        c,
        target,
        fn,
        encodeJson({ from: "alpha" }),
      );
    },
    shutdown: () => Promise.resolve(),
  });
  for (const name of ["stats", "beta"]) {
    await manager.register({
      gkRegister: () => ({ name, version: "1.0.0" }),
      init: () => Promise.resolve(),
      call: (_fn, args, c) => {
        seen.push({ caller: c.caller, chain: c.chain });
        return Promise.resolve(encodeJson({ name, got: decodeJson(args) }));
      },
      shutdown: () => Promise.resolve(),
    });
  }
  try {
    await grants.set("alpha", ["plugins:call:stats"]);
    const out = decodeJson(
      await manager.call("alpha", "count", encodeJson("stats")),
    );
    assert.deepEqual(out, { name: "stats", got: { from: "alpha" } });
    assert.equal(seen[0]!.caller, "alpha");
    assert.ok(seen[0]!.chain.includes("alpha"), `chain ${seen[0]!.chain}`);
    await assert.rejects(
      manager.call("alpha", "count", encodeJson("beta")),
      (e: unknown) => {
        assert.ok(e instanceof PermissionDeniedError);
        assert.equal(e.permission, "plugins:call:beta");
        return true;
      },
    );
    assert.equal(
      audit.query({ plugin: "alpha" })[0]!.attempted,
      "plugin_call beta.count",
    );
    await grants.set("alpha", ["plugins:call"]);
    await manager.call("alpha", "count", encodeJson("beta"));
    assert.equal(seen.length, 2);
  } finally {
    await manager.shutdownAll();
  }
});
