/**
 * The guarded HostAPI in front of the real services: PostgreSQL at
 * 127.0.0.1:5432 (database `test`) and PGlite, Deno KV, the `.eml` outbox,
 * the config store. The database itself enforces what the grants say:
 * READ ONLY for `db:read`, table privileges for scopes, no reach into another
 * plugin's schema; grant changes are synced to PostgreSQL before the next
 * statement.
 */
import assert from "node:assert/strict";
import { join } from "node:path";
import {
  AuditLog,
  createGuardedHostAPI,
  type GuardedHostAPI,
  MemoryGrantStore,
  PgGrantStore,
  type SqlQueryClient,
} from "../permissions/mod.ts";
import { PermissionDeniedError } from "../host/model/errors.ts";
import { LogBuffer } from "../host/log_buffer.ts";
import { createCallContext } from "../host/model/plugin.ts";
import {
  type Database,
  DatabaseSet,
  PgDatabase,
  PgliteDatabase,
} from "../host/services/database.ts";
import { DbQueryError } from "../host/services/errors.ts";
import { KvCacheStore } from "../host/services/cache.ts";
import { OutboxMailer } from "../host/services/mailer.ts";
import { ConfigStore } from "../host/services/config.ts";

const DATABASE_URL = Deno.env.get("GOATKIT_TEST_DATABASE_URL") ??
  "postgres://postgres@127.0.0.1:5432/test";

const ctx = () => createCallContext({ timeoutMs: 20_000 });
const suffix = () => crypto.randomUUID().replaceAll("-", "").slice(0, 8);

async function dbCode(p: Promise<unknown>, code: string) {
  await assert.rejects(p, (e: unknown) => {
    assert.ok(e instanceof DbQueryError, `expected DbQueryError, got ${e}`);
    assert.equal(e.code, code, e.message);
    return true;
  });
}

/**
 * The database scenario, run against PostgreSQL and against PGlite. Grants
 * live where the host keeps them: `goatkit.plugin_grants`, through the
 * host's own client.
 */
async function databaseScenario(
  db: Database,
  admin: (sql: string) => Promise<unknown>,
  hostClient: SqlQueryClient,
) {
  const id = suffix();
  const ticket = `gkp_ticket_${id}`;
  const users = `gkp_users_${id}`;
  const alpha = `pa-${id}`;
  const beta = `pb-${id}`;
  await admin(`CREATE TABLE ${ticket} (id int PRIMARY KEY, title text)`);
  await admin(`CREATE TABLE ${users} (id int PRIMARY KEY, secret text)`);
  await admin(`INSERT INTO ${ticket} VALUES (1, 'costs $1 or $2'), (2, 'b')`);
  await admin(`INSERT INTO ${users} VALUES (1, 'pw')`);
  const grants = new PgGrantStore({ client: hostClient, cacheTtlMs: 0 });
  const audit = new AuditLog();
  const hosts: GuardedHostAPI[] = [];
  const make = (plugin: string, requested: string[]) => {
    const h = createGuardedHostAPI({
      plugin,
      requested,
      grants,
      services: { db },
      audit,
    });
    hosts.push(h);
    return h;
  };
  try {
    const a = make(alpha, [`db:read:${ticket}`, `db:write:${ticket}`]);
    await grants.set(alpha, [`db:read:${ticket}`]);

    // Allowed read, `$` inside a literal and `$1` parameters side by side.
    const rows = await a.dbQuery(
      ctx(),
      `SELECT id, title, '$1 literal' AS lit FROM ${ticket} WHERE id = $1`,
      [1],
    );
    assert.deepEqual(rows, [{
      id: 1,
      title: "costs $1 or $2",
      lit: "$1 literal",
    }]);

    // db:read: an INSERT through dbQuery is refused by the database (READ ONLY).
    await dbCode(
      a.dbQuery(ctx(), `INSERT INTO ${ticket} VALUES (3, 'x') RETURNING id`),
      "25006",
    );
    // A table outside the scope (unqualified, so only the database can tell).
    await dbCode(a.dbQuery(ctx(), `SELECT * FROM ${users}`), "42501");
    // dbExec without db:write is refused by the guard.
    await assert.rejects(
      a.dbExec(ctx(), `DELETE FROM ${ticket}`),
      PermissionDeniedError,
    );

    // Grant write on the ticket table: the next call syncs privileges and works.
    await grants.set(alpha, [`db:read:${ticket}`, `db:write:${ticket}`]);
    assert.equal(
      await a.dbExec(ctx(), `UPDATE ${ticket} SET title = $1 WHERE id = 2`, [
        "c",
      ]),
      1,
    );
    assert.equal(
      await a.dbExec(ctx(), `CREATE TABLE notes (n int)`),
      0,
      "a plugin may create tables in its own schema",
    );
    await a.dbExec(ctx(), `INSERT INTO notes VALUES (42)`);
    assert.deepEqual(await a.dbQuery(ctx(), `SELECT n FROM notes`), [{
      n: 42,
    }]);
    // Still no access to users.
    await dbCode(a.dbExec(ctx(), `DELETE FROM ${users}`), "42501");

    // Revoke write: refused again on the next call, by the guard and by the database.
    await grants.set(alpha, [`db:read:${ticket}`]);
    await assert.rejects(
      a.dbExec(ctx(), `DELETE FROM ${ticket}`),
      PermissionDeniedError,
    );
    await dbCode(
      a.dbQuery(ctx(), `DELETE FROM ${ticket} RETURNING id`),
      "25006",
    );

    // Another plugin cannot reach alpha's schema, even with unscoped db:read.
    const b = make(beta, ["db:read", "db:write"]);
    await grants.set(beta, ["db:read", "db:write"]);
    const alphaSchema = `plugin_${alpha.replaceAll("-", "_")}`;
    // Unscoped db:read covers every host table.
    assert.equal((await b.dbQuery(ctx(), `SELECT * FROM ${users}`)).length, 1);
    // ... but not the host's own schema: it cannot read or approve grants.
    await dbCode(
      b.dbQuery(ctx(), "SELECT * FROM goatkit.plugin_grants"),
      "42501",
    );
    await dbCode(
      b.dbExec(
        ctx(),
        `UPDATE goatkit.plugin_grants SET granted = '["http:external"]' WHERE plugin = $1`,
        [alpha],
      ),
      "42501",
    );
    assert.deepEqual(await grants.get(alpha), [`db:read:${ticket}`]);
    await assert.rejects(
      b.dbQuery(ctx(), `SELECT * FROM ${alphaSchema}.notes`),
      PermissionDeniedError,
      "the guard's pre-check",
    );
    // The database refuses it too: the same statement sent straight to the
    // database as beta's role (which the guard has synced) is denied.
    await dbCode(
      db.query(`SELECT * FROM ${alphaSchema}.notes`, [], {
        plugin: beta,
        readOnly: true,
      }),
      "42501",
    );
    assert.ok(audit.count() >= 2);
  } finally {
    for (const h of hosts) h.close();
    await grants.delete(alpha).catch(() => {});
    await grants.delete(beta).catch(() => {});
    await db.dropPlugin(alpha).catch(() => {});
    await db.dropPlugin(beta).catch(() => {});
    await admin(`DROP TABLE IF EXISTS ${ticket}, ${users}`);
  }
}

Deno.test("guarded services: PostgreSQL enforces db grants (real server)", async () => {
  const db = new PgDatabase({ url: DATABASE_URL, max: 4 });
  try {
    await databaseScenario(
      db,
      (sql) => db.sqlClient.query(sql),
      db.sqlClient,
    );
  } finally {
    await db.close();
  }
});

Deno.test("guarded services: PGlite enforces db grants", async () => {
  const db = new PgliteDatabase({});
  try {
    await databaseScenario(
      db,
      (sql) => db.sqlClient.query(sql),
      db.sqlClient,
    );
  } finally {
    await db.close();
  }
});

Deno.test("guarded services: a host table created later is covered by an unscoped grant", async () => {
  const db = new PgDatabase({ url: DATABASE_URL, max: 2 });
  const plugin = `pl-${suffix()}`;
  const table = `gkp_later_${suffix()}`;
  const grants = new MemoryGrantStore();
  const host = createGuardedHostAPI({
    plugin,
    requested: ["db:read"],
    grants,
    services: { db },
  });
  try {
    await grants.set(plugin, ["db:read"]);
    assert.deepEqual(await host.dbQuery(ctx(), "SELECT 1 AS one"), [{
      one: 1,
    }]);
    await db.sqlClient.query(`CREATE TABLE ${table} (id int)`);
    await db.sqlClient.query(`INSERT INTO ${table} VALUES (5)`);
    // The retry waits until the last sync is over a second old.
    await new Promise((r) => setTimeout(r, 1100));
    assert.deepEqual(await host.dbQuery(ctx(), `SELECT id FROM ${table}`), [{
      id: 5,
    }]);
  } finally {
    host.close();
    await db.dropPlugin(plugin).catch(() => {});
    await db.sqlClient.query(`DROP TABLE IF EXISTS ${table}`);
    await db.close();
  }
});

Deno.test("guarded services: named databases through @name: and the grants", async () => {
  const main = new PgDatabase({ url: DATABASE_URL, max: 2 });
  const reports = new PgDatabase({ url: DATABASE_URL, max: 2 });
  const set = new DatabaseSet({ default: main, named: { reports } });
  const grants = new MemoryGrantStore();
  const plugin = `pn-${suffix()}`;
  const host = createGuardedHostAPI({
    plugin,
    requested: ["db:read"],
    grants,
    services: { db: set },
  });
  try {
    await grants.set(plugin, ["db:read"]);
    assert.deepEqual(
      await host.dbQuery(ctx(), "@reports:SELECT $1::int AS n", [7]),
      [{ n: 7 }],
    );
    assert.deepEqual(await host.dbQuery(ctx(), "SELECT 1 AS one"), [{
      one: 1,
    }]);
    await assert.rejects(host.dbQuery(ctx(), "@nope:SELECT 1"), /nope/);
    await grants.revoke(plugin);
    await assert.rejects(
      host.dbQuery(ctx(), "@reports:SELECT 1"),
      PermissionDeniedError,
    );
  } finally {
    host.close();
    await main.dropPlugin(plugin).catch(() => {});
    await set.close();
  }
});

Deno.test("guarded services: Deno KV cache, outbox mailer, config store", async () => {
  const dir = await Deno.makeTempDir({ prefix: "gk_guarded_" });
  const cache = new KvCacheStore({ path: join(dir, "cache.kv") });
  const mailer = new OutboxMailer({
    dir: join(dir, "outbox"),
    from: "host@example.com",
  });
  const config = new ConfigStore({
    values: { "app.name": "Desk", "db.host": "10.0.0.9" },
    secrets: { "API_KEY": "s3cret" },
    plugins: { alpha: { greeting: "hi" } },
  });
  const grants = new MemoryGrantStore();
  const logs = new LogBuffer();
  const audit = new AuditLog({ logs });
  const mk = (plugin: string, requested: string[]) =>
    createGuardedHostAPI({
      plugin,
      requested,
      grants,
      services: { cache, mailer, config },
      audit,
      logs,
    });
  const alpha = mk("alpha", [
    "cache:read",
    "cache:write",
    "email:*@example.com",
    "config:app.*",
    "config:API_KEY",
  ]);
  const beta = mk("beta", ["cache:read", "cache:write"]);
  try {
    await grants.set("alpha", [
      "cache:read",
      "cache:write",
      "email:*@example.com",
      "config:app.*",
    ]);
    await grants.set("beta", ["cache:read"]);
    const bytes = new Uint8Array([0, 255, 1, 128, 10, 13]);
    await alpha.cacheSet(ctx(), "k", bytes, 0);
    assert.deepEqual(await alpha.cacheGet(ctx(), "k"), bytes, "byte-exact");
    assert.equal(
      await beta.cacheGet(ctx(), "k"),
      null,
      "beta's namespace is its own",
    );
    await assert.rejects(
      beta.cacheSet(ctx(), "k", bytes, 0),
      PermissionDeniedError,
    );
    await alpha.cacheDelete(ctx(), "k");
    assert.equal(await alpha.cacheGet(ctx(), "k"), null);

    await alpha.sendEmail(ctx(), {
      to: "ops@example.com",
      subject: "Report",
      body: "All good",
    });
    await assert.rejects(
      alpha.sendEmail(ctx(), { to: "ops@evil.net", subject: "x", body: "y" }),
      PermissionDeniedError,
    );
    const files = [...Deno.readDirSync(join(dir, "outbox"))].filter((f) =>
      f.name.endsWith(".eml")
    );
    assert.equal(files.length, 1);
    const eml = await Deno.readTextFile(join(dir, "outbox", files[0]!.name));
    assert.match(eml, /^To: ops@example.com/m);
    assert.match(eml, /^X-GoatKit-Plugin: alpha/im);

    assert.equal(await alpha.configGet(ctx(), "greeting"), "hi");
    assert.equal(await alpha.configGet(ctx(), "app.name"), "Desk");
    await assert.rejects(
      alpha.configGet(ctx(), "db.host"),
      PermissionDeniedError,
    );
    await assert.rejects(
      alpha.configGet(ctx(), "API_KEY"),
      PermissionDeniedError,
    );
    await grants.set("alpha", ["config:API_KEY"]);
    assert.equal(await alpha.configGet(ctx(), "API_KEY"), "s3cret");
    assert.ok(audit.query({ plugin: "alpha" }).length >= 3);
    assert.ok(logs.query({ plugin: "alpha", minLevel: "warn" }).length >= 3);
  } finally {
    alpha.close();
    beta.close();
    await cache.close();
    await mailer.close();
    await Deno.remove(dir, { recursive: true });
  }
});
