/**
 * The guarded HostAPI: allow and deny for every method, each denial with its
 * audit entry (and warn line). Services are small recording doubles here
 * (the database, cache, mailer and config are exercised for real in
 * `permissions_guarded_services_test.ts`); HTTP goes through the real egress
 * client to a loopback server; plugin calls go through the real Manager.
 */
import assert from "node:assert/strict";
import { join } from "node:path";
import {
  applyGrantPolicy,
  AuditLog,
  createEgressClient,
  createGuardedHostAPI,
  GrantPolicy,
  type GuardedDbCallOptions,
  type GuardedHostAPIOptions,
  guardedHostFactory,
  MemoryGrantStore,
  type PluginPrivileges,
} from "../permissions/mod.ts";
import { PermissionDeniedError } from "../host/model/errors.ts";
import { loadConfig } from "../host/services/config.ts";
import type { EmailMessage, HostAPI } from "../host/model/host_api.ts";
import { LogBuffer } from "../host/log_buffer.ts";
import { I18nRegistry } from "../host/registries/i18n.ts";
import { Manager } from "../host/manager.ts";
import {
  createCallContext,
  decodeJson,
  encodeJson,
  type Plugin,
} from "../host/model/plugin.ts";
import { grantsProvider } from "../host/boot.ts";
import { loadWasmPlugin } from "../runtimes/wasm/plugin.ts";
import { buildWat } from "../fixtures/hostile/wat_build.ts";
import { setup as setupServer } from "./server_helpers.ts";

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

Deno.test("guarded: configGet of __proto__, constructor, toString, hasOwnProperty answers like any missing key", async () => {
  const NAMES = ["__proto__", "constructor", "toString", "hasOwnProperty"];
  // The real ConfigStore, from a file whose keys try the same names.
  const dir = await Deno.makeTempDir();
  try {
    await Deno.writeTextFile(
      `${dir}/g.json`,
      `{"app":{"name":"GoatKit"},"plugins":{"alpha":{"greeting":"hi","__proto__":{"x":"y"}}}}`,
    );
    const store = loadConfig({
      env: { GOATKIT_CONFIG: `${dir}/g.json` },
    }).store;
    for (const granted of [[], ["config:*"]]) {
      const s = setup(["config:*"], granted, {
        services: { config: store },
      });
      await s.ready;
      const missing = await s.host.configGet(ctx(), "no.such.key").then(
        (v) => ({ value: v }),
        (e: Error) => ({ error: e.name }),
      );
      assert.ok("error" in missing, JSON.stringify(missing));
      for (const key of NAMES) {
        const out = await s.host.configGet(ctx(), key).then(
          (v) => ({ value: v }),
          (e: Error) => ({ error: e.name }),
        );
        assert.deepEqual(out, missing, `${key} with ${granted}`);
      }
      assert.equal(await s.host.configGet(ctx(), "greeting"), "hi");
      s.host.close();
    }
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
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

// -- hostile: secrets only by an exact, approved grant ------------------------

const PROBE_WAT = new URL(
  "../fixtures/plugins/perm-probe-wat/plugin.wat",
  import.meta.url,
).pathname;

Deno.test("hostile: a WASM plugin asks for a secret with a wildcard grant, a pending grant, an approved exact grant — only the last gets it", async () => {
  const SECRET = `rt-${crypto.randomUUID()}`;
  const id = crypto.randomUUID().slice(0, 8);
  const name = `secret-probe-${id}`;
  const tmp = await Deno.makeTempDir({ prefix: "gk_secret_" });
  const manifestPath = join(tmp, "manifest.json");
  await Deno.writeTextFile(
    manifestPath,
    JSON.stringify({
      name,
      version: "1.0.0",
      description: "asks for a secret",
      permissions: ["config:*", "config:RT_API_KEY", "log"],
    }),
  );
  // The real configuration reader: the secret comes from the environment.
  const store = loadConfig({
    env: { GOATKIT_SECRET_RT_API_KEY: SECRET, GOATKIT_APP__NAME: "Desk" },
    defaultPath: join(tmp, "absent.json"),
  }).store;
  const grants = new MemoryGrantStore();
  const logs = new LogBuffer({ capacity: 5000 });
  const audit = new AuditLog({ logs });
  const manager = new Manager({
    logs,
    host: guardedHostFactory({
      grants,
      services: { config: store },
      logs,
      audit,
    }),
  });
  const ask = async (key: string) => {
    const out = await manager.call(
      name,
      "call",
      new TextEncoder().encode(`config_get\n${JSON.stringify({ key })}`),
      { timeoutMs: 20_000 },
    );
    return new TextDecoder().decode(out ?? new Uint8Array());
  };
  const refused = (answer: string) => {
    assert.ok(answer.startsWith("err:"), answer);
    const e = JSON.parse(answer.slice(4)).error;
    assert.equal(e.type, "PermissionDeniedError");
    assert.equal(e.permission, "config:RT_API_KEY");
    assert.ok(!answer.includes(SECRET), "the refusal holds no value");
  };
  try {
    await manager.register(
      await loadWasmPlugin(await buildWat(PROBE_WAT, manifestPath), {
        name,
        callTimeoutMs: 20_000,
      }),
    );

    // 1. The policy, even `none`, leaves the secret pending; `config:*` is granted.
    const policy = GrantPolicy.fromSetting("none", {
      mayBeSecret: (k) =>
        store.secret(k) !== undefined || store.hostValue(k) === undefined,
    });
    const decided = await applyGrantPolicy(grants, name, [
      "config:*",
      "config:RT_API_KEY",
      "log",
    ], { policy });
    assert.deepEqual(decided, {
      granted: ["config:*", "log"],
      pending: ["config:RT_API_KEY"],
    });
    // The wildcard reads host keys, never the secret (pending + wildcard).
    assert.equal(await ask("app.name"), `ok:{"value":"Desk"}`);
    let before = audit.count();
    refused(await ask("RT_API_KEY"));
    assert.equal(audit.count(), before + 1);
    assert.equal(
      audit.query({ plugin: name })[0]!.permission,
      "config:RT_API_KEY",
    );

    // 2. Only the exact grant pending, the wildcard revoked: still refused.
    await grants.set(name, ["log"]);
    before = audit.count();
    refused(await ask("RT_API_KEY"));
    assert.equal(audit.count(), before + 1);

    // 3. A wildcard grant stored by whatever means (say, an operator
    //    approving "config:*"): refused.
    await grantsProvider(grants, { audit }).approve(name, ["config:*"]);
    before = audit.count();
    refused(await ask("RT_API_KEY"));
    assert.equal(audit.count(), before + 1);

    // 4. The operator approves the exact key: handed out.
    await grantsProvider(grants, { audit }).approve(name, [
      "config:RT_API_KEY",
    ]);
    assert.equal(
      await ask("RT_API_KEY"),
      `ok:${JSON.stringify({ value: SECRET })}`,
    );
    // Revoked again: refused at once, and the host still serves the plugin.
    await grantsProvider(grants, { audit }).revoke(name, [
      "config:RT_API_KEY",
    ]);
    refused(await ask("RT_API_KEY"));
    assert.equal(await ask("app.name"), `ok:{"value":"Desk"}`);

    // The value is nowhere in the audit log or the log buffer.
    const entries = audit.query({ plugin: name });
    assert.deepEqual(
      entries.map((e) => `${e.outcome} ${e.permission}`),
      [
        "denied config:RT_API_KEY",
        "revoked config:RT_API_KEY",
        "granted config:RT_API_KEY",
        "denied config:RT_API_KEY",
        "granted config:*",
        "denied config:RT_API_KEY",
        "denied config:RT_API_KEY",
      ],
    );
    assert.ok(!JSON.stringify(entries).includes(SECRET));
    assert.ok(!JSON.stringify(logs.query({})).includes(SECRET));
  } finally {
    await manager.shutdownAll();
    await Deno.remove(tmp, { recursive: true });
  }
});

// -- hostile: one plugin cannot flush the audit log ---------------------------

Deno.test("hostile: plugin A's 2,500 denied calls leave plugin B's audit entries in place and are summarised", async () => {
  let clock = Date.UTC(2030, 0, 1);
  const logs = new LogBuffer({ capacity: 1000 });
  const audit = new AuditLog({ logs, now: () => clock });
  const grants = new MemoryGrantStore();
  const cache = new CacheDouble();
  const manager = new Manager({
    logs,
    host: guardedHostFactory({ grants, services: { cache }, logs, audit }),
  });
  const hosts = new Map<string, HostAPI>();
  const plugin = (name: string, permissions: string[]): Plugin => ({
    gkRegister: () => ({ name, version: "1.0.0", permissions }),
    init: (h) => {
      hosts.set(name, h);
      return Promise.resolve();
    },
    call: async (fn, args, c) => {
      const h = hosts.get(name)!;
      if (fn === "flood") {
        // Cheap denied calls, as fast as the plugin can make them.
        let denied = 0;
        const n = decodeJson<number>(args)!;
        for (let i = 0; i < n; i++) {
          try {
            await h.cacheSet(c, `k${i}`, new Uint8Array([1]), 0);
          } catch (e) {
            if (e instanceof PermissionDeniedError) denied++;
            else throw e;
          }
        }
        return encodeJson(denied);
      }
      if (fn === "read") {
        const v = await h.cacheGet(c, "k");
        return encodeJson(v === null ? null : [...v]);
      }
      if (fn === "write") {
        await h.cacheSet(c, "k", new Uint8Array([7]), 0);
        return encodeJson(true);
      }
      throw new Error(`no function ${fn}`);
    },
    shutdown: () => Promise.resolve(),
  });
  const A = "flooder";
  const B = "bystander";
  try {
    await manager.register(plugin(A, ["cache:write"]));
    await manager.register(plugin(B, ["cache:read", "cache:write"]));
    await grants.set(A, []);
    await grants.set(B, []);
    // B: an operator approval, an allowed call, a denied call.
    await grantsProvider(grants, { audit }).approve(B, ["cache:read"]);
    assert.deepEqual(decodeJson(await manager.call(B, "read", null)), null);
    await assert.rejects(manager.call(B, "write", null), PermissionDeniedError);
    const bBefore = audit.query({ plugin: B });
    assert.deepEqual(
      bBefore.map((e) => `${e.outcome} ${e.permission}`),
      ["denied cache:write", "granted cache:read"],
    );

    // A floods.
    const denied = decodeJson<number>(
      await manager.call(A, "flood", encodeJson(2500)),
    );
    assert.equal(denied, 2500, "every call was refused");

    // B's entries are all still there, unchanged.
    assert.deepEqual(audit.query({ plugin: B }), bBefore);
    // A: the first 100 recorded one by one, the other 2,400 in one summary.
    const a = audit.query({ plugin: A });
    assert.equal(a.filter((e) => e.outcome === "denied").length, 100);
    const summaries = a.filter((e) => e.outcome === "suppressed");
    assert.equal(summaries.length, 1, JSON.stringify(summaries));
    assert.equal(summaries[0]!.count, 2400);
    assert.match(summaries[0]!.attempted, /^2400 more denial\(s\) suppressed/);
    assert.match(
      summaries[0]!.attempted,
      /last: "cache:write" for cache_set k2499/,
    );
    assert.equal(a[0], summaries[0], "the summary is A's newest entry");
    assert.equal(audit.count(), 2 + 100 + 1);
    // The log buffer was not flushed either: B's warn line is still there.
    assert.equal(
      logs.query({ plugin: B, minLevel: "warn" }).length,
      1,
    );
    assert.ok(logs.query({ plugin: A }).length <= 102);

    // The readers: the admin API and the admin page show both plugins.
    const t = await setupServer({ audit });
    try {
      const res = await t.req("GET", `/api/v1/audit?plugin=${B}`, {
        token: t.adminToken,
      });
      const body = await res.json();
      assert.deepEqual(
        body.entries.map((e: { outcome: string }) => e.outcome),
        ["denied", "granted"],
      );
      const page = await t.req("GET", `/admin/audit?plugin=${A}`, {
        token: t.adminToken,
      });
      const html = await page.text();
      assert.equal(page.status, 200);
      assert.match(html, /suppressed/);
      assert.match(html, /2400 more denial/);
    } finally {
      await t.close();
    }

    // The next window records again, and logs the total of the last one.
    clock += 60_000;
    assert.equal(
      decodeJson<number>(await manager.call(A, "flood", encodeJson(1))),
      1,
    );
    assert.equal(audit.query({ plugin: A, limit: 1 })[0]!.outcome, "denied");
    assert.ok(
      logs.query({ plugin: A }).some((l) =>
        /^2400 permission denial\(s\) suppressed by the audit limit/.test(
          l.message,
        )
      ),
    );
    // And the host still serves B.
    assert.deepEqual(decodeJson(await manager.call(B, "read", null)), null);
  } finally {
    await manager.shutdownAll();
  }
});

Deno.test("audit: shares — a full log drops the biggest holder's oldest entry, never a small plugin's", () => {
  const audit = new AuditLog({ capacity: 10, rateLimit: false });
  audit.record({ plugin: "b", permission: "db:read", attempted: "b1" });
  audit.record({ plugin: "c", permission: "db:read", attempted: "c1" });
  for (let i = 0; i < 50; i++) {
    audit.record({ plugin: "a", permission: "db:read", attempted: `a${i}` });
  }
  assert.equal(audit.count(), 10);
  assert.deepEqual(audit.query({ plugin: "b" }).map((e) => e.attempted), [
    "b1",
  ]);
  assert.deepEqual(audit.query({ plugin: "c" }).map((e) => e.attempted), [
    "c1",
  ]);
  assert.deepEqual(
    audit.query({ plugin: "a" }).map((e) => e.attempted),
    Array.from({ length: 8 }, (_, i) => `a${49 - i}`),
  );
  // A hard per-plugin cap, and operator entries are never rate-limited.
  const capped = new AuditLog({
    capacity: 100,
    perPluginCapacity: 3,
    rateLimit: { max: 1, windowMs: 60_000 },
  });
  for (let i = 0; i < 5; i++) {
    capped.record({
      plugin: "p",
      permission: "x",
      attempted: `g${i}`,
      outcome: "granted",
    });
  }
  assert.deepEqual(capped.query().map((e) => e.attempted), [
    "g4",
    "g3",
    "g2",
  ]);
});
