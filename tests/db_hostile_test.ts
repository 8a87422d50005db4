/**
 * Hostile plugins against the database walls (issue 10, items 2, 7, 10, 13
 * and the set_config remark), on the real PostgreSQL at 127.0.0.1:5432
 * (database `test`, user `postgres`, trust) and on PGlite (one in-memory
 * instance for the file: it takes seconds to start).
 *
 * Each attack goes through the path a plugin's host call takes (the guarded
 * HostAPI in front of the database service) with a spelling that passes the
 * host's statement check, so the database itself must refuse it; and again
 * with the statement check removed (a subclass), so each database-side wall
 * is tested alone. Every run uses its own role, schema, table, channel and
 * database names and removes them at the end (the `goatkit` schema is the
 * host's own and stays, like its tables; only this run's rows are removed).
 */
import assert from "node:assert/strict";
import pg from "pg";
import {
  createGuardedHostAPI,
  type GrantStore,
  type GuardedHostAPI,
  MemoryGrantStore,
  PgGrantStore,
} from "../permissions/mod.ts";
import {
  checkPrivileges,
  pluginRoleName,
  pluginSchemaName,
  ReservedSchemaError,
  SESSION_FUNCTIONS,
  syncPrivileges,
} from "../permissions/pg_privileges.ts";
import { HOST_SCHEMA } from "../permissions/host_schema.ts";
import { createCallContext } from "../host/model/plugin.ts";
import {
  DbQueryError,
  PgDatabase,
  PgliteDatabase,
  PgStateStore,
  type SqlDatabase,
} from "../host/services/mod.ts";
import { PgJobClaim } from "../host/scheduler.ts";

const PG_URL = Deno.env.get("GK_TEST_PG_URL") ??
  "postgres://postgres@127.0.0.1:5432/test";
const RUN = `h${crypto.randomUUID().replaceAll("-", "").slice(0, 8)}`;
const ctx = (timeoutMs = 20_000) => createCallContext({ timeoutMs });

/** A database without the host's statement check: the database walls alone. */
class BarePgDatabase extends PgDatabase {
  protected override checkStatement(): void {}
}

/** The same for PGlite. */
class BarePgliteDatabase extends PgliteDatabase {
  protected override checkStatement(): void {}
}

async function rejectsCode(
  p: Promise<unknown>,
  code: string,
): Promise<DbQueryError> {
  try {
    await p;
  } catch (e) {
    assert.ok(e instanceof DbQueryError, `expected DbQueryError, got ${e}`);
    assert.equal(e.code, code, e.message);
    return e;
  }
  assert.fail(`expected an error with code ${code}`);
}

/** `name` spelled as a Unicode-escaped identifier with UESCAPE '!'. */
function uescape(name: string): string {
  return `U&"${name.replaceAll("_", "!005f")}" UESCAPE '!'`;
}

/** A guarded HostAPI for `plugin` with `grants` approved. */
async function pluginHost(
  db: SqlDatabase,
  plugin: string,
  grants: string[],
  store: GrantStore = new MemoryGrantStore(),
): Promise<GuardedHostAPI> {
  await store.set(plugin, grants);
  return createGuardedHostAPI({
    plugin,
    requested: grants,
    grants: store,
    services: { db },
  });
}

/** The functions a plugin role must not execute (every overload). */
async function openSessionFunctions(
  db: SqlDatabase,
  role: string,
): Promise<string[]> {
  const { rows } = await db.sqlClient.query(
    `SELECT p.oid::regprocedure::text AS fn FROM pg_proc p
      WHERE p.pronamespace = 'pg_catalog'::regnamespace
        AND p.proname::text LIKE ANY ($1::text[])
        AND has_function_privilege($2, p.oid, 'EXECUTE')`,
    [SESSION_FUNCTIONS.map((f) => f.replaceAll("_", "\\_")), role],
  );
  return rows.map((r) => String(r.fn));
}

Deno.test("db walls: session-level functions are refused by PostgreSQL itself", async (t) => {
  const db = new PgDatabase({ url: PG_URL, max: 2 });
  const bare = new BarePgDatabase({ url: PG_URL, max: 1 });
  const attacker = `${RUN}-att`;
  const channel = `app_${RUN}`;
  const listener = new pg.Client({ connectionString: PG_URL });
  const heard: string[] = [];
  const hosts: GuardedHostAPI[] = [];
  try {
    await listener.connect();
    listener.on(
      "notification",
      (n: { payload?: string }) => heard.push(n.payload ?? ""),
    );
    await listener.query(`LISTEN ${channel}`);
    const host = await pluginHost(db, attacker, ["db:read", "db:write"]);
    hosts.push(host);
    assert.deepEqual(await host.dbQuery(ctx(), "SELECT 1 AS one"), [{
      one: 1,
    }]);
    await bare.syncPluginPrivileges(attacker, { read: "all", write: "all" });
    const rw = { plugin: attacker, readOnly: false };
    const ro = { plugin: attacker, readOnly: true };

    await t.step(
      "no session function is executable by the plugin role",
      async () => {
        assert.deepEqual(
          await openSessionFunctions(db, pluginRoleName(attacker)),
          [],
        );
        const { rows } = await db.sqlClient.query(
          `SELECT lanname FROM pg_language WHERE lanname IN ('plpgsql', 'sql')
            AND has_language_privilege($1, oid, 'USAGE')`,
          [pluginRoleName(attacker)],
        );
        assert.deepEqual(rows, []);
      },
    );

    await t.step(
      "plain spellings: refused by the statement check (first wall)",
      async () => {
        for (
          const sql of [
            "SELECT pg_advisory_lock(hashtext('goatkit:privileges'))",
            "SELECT pg_try_advisory_xact_lock(1)",
            `SELECT pg_notify('${channel}', 'x')`,
            "SELECT pg_cancel_backend(1)",
            "SELECT pg_catalog.PG_TERMINATE_BACKEND(1)",
            "SELECT lo_create(0)",
            "SELECT dblink_connect('host=127.0.0.1')",
            `LISTEN ${channel}`,
          ]
        ) {
          await rejectsCode(host.dbQuery(ctx(), sql), "GK001");
        }
      },
    );

    await t.step(
      "pg_advisory_lock(hashtext('goatkit:privileges')) spelled past the check",
      async () => {
        const sql = `SELECT ${
          uescape("pg_advisory_lock")
        }(hashtext('goatkit:privileges'))`;
        await rejectsCode(host.dbQuery(ctx(), sql), "42501");
        await rejectsCode(
          bare.query(
            "SELECT pg_advisory_lock(hashtext('goatkit:privileges'))",
            [],
            ro,
          ),
          "42501",
        );
        await rejectsCode(
          bare.exec("SELECT pg_advisory_xact_lock(1196116308, 1)", [], rw),
          "42501",
        );
        // Nobody holds the key, and privilege syncs go on.
        const free = await db.sqlClient.query(
          "SELECT pg_try_advisory_xact_lock(hashtext('goatkit:privileges')) AS ok",
        );
        assert.equal(free.rows[0]?.ok, true);
        await db.syncPluginPrivileges(attacker, { read: "all", write: "all" });
      },
    );

    await t.step("pg_notify on the application's channel", async () => {
      await rejectsCode(
        host.dbQuery(ctx(), `SELECT ${uescape("pg_notify")}($1, 'forged')`, [
          channel,
        ]),
        "42501",
      );
      await rejectsCode(
        bare.exec(`SELECT pg_notify('${channel}', 'forged')`, [], rw),
        "42501",
      );
      // The NOTIFY statement has no privilege to revoke: past the check, a
      // read call's is discarded with its transaction (rolled back).
      await bare.query(`NOTIFY ${channel}, 'forged'`, [], ro);
      // Notifications arrive in order: the first one heard is the host's.
      const marker = new Promise<void>((resolve) =>
        listener.on("notification", () => resolve())
      );
      await db.sqlClient.query("SELECT pg_notify($1, 'marker')", [channel]);
      await marker;
      assert.deepEqual(heard, ["marker"]);
    });

    await t.step('set_config with a U&"…" UESCAPE spelling', async () => {
      const sql = `SELECT ${uescape("set_config")}('role', 'postgres', false)`;
      await rejectsCode(host.dbExec(ctx(), sql), "42501");
      await rejectsCode(
        bare.query("SELECT set_config('role', 'postgres', false)", [], ro),
        "42501",
      );
      const [row] = await host.dbQuery(ctx(), "SELECT current_user AS u");
      assert.equal(row?.u, pluginRoleName(attacker));
      // The plugin's session is still its own role, with no role set on top.
      const rows = await bare.query(
        "SELECT session_user AS s, current_user AS u, current_setting('role') AS r",
        [],
        ro,
      );
      const role = pluginRoleName(attacker);
      assert.deepEqual(rows, [{ s: role, u: role, r: "none" }]);
    });

    await t.step(
      "LISTEN that got past the check: discarded, its session never reused",
      async () => {
        // `bare` has one connection for the plugin: what the plugin left on
        // it is what its next statement would find.
        const pid = async () =>
          (await bare.query("SELECT pg_backend_pid() AS p", [], ro))[0]?.p;
        const alive = async (p: unknown) =>
          (await db.sqlClient.query(
            "SELECT count(*)::int AS n FROM pg_stat_activity WHERE pid = $1",
            [p],
          )).rows[0]?.n === 1;
        for (const opts of [ro, rw]) {
          const before = await pid();
          assert.equal(await pid(), before, "a plain statement keeps it");
          // Read call: inside BEGIN READ ONLY … ROLLBACK; write call: committed.
          await bare.exec(`LISTEN ${channel}`, [], opts);
          const after = await pid();
          assert.notEqual(after, before, "the session that ran LISTEN is gone");
          assert.deepEqual(
            await bare.query("SELECT pg_listening_channels() AS c", [], ro),
            [],
          );
          for (let tries = 0; await alive(before); tries++) {
            assert.ok(tries < 500, "the LISTEN session never ended");
            await new Promise((r) => setTimeout(r, 10));
          }
        }
      },
    );

    await t.step(
      "DO blocks and functions of its own: no language to write them in",
      async () => {
        await rejectsCode(
          bare.exec("DO $$ BEGIN RESET ROLE; END $$", [], rw),
          "42501",
        );
        await rejectsCode(
          bare.exec(
            "CREATE FUNCTION f() RETURNS int LANGUAGE sql AS 'SELECT 1'",
            [],
            rw,
          ),
          "42501",
        );
      },
    );

    await t.step("large objects", async () => {
      await rejectsCode(bare.exec("SELECT lo_create(0)", [], rw), "42501");
      await rejectsCode(
        host.dbExec(ctx(), `SELECT ${uescape("lo_from_bytea")}(0, 'x')`),
        "42501",
      );
    });

    await t.step(
      "pg_cancel_backend / pg_terminate_backend on the host's session",
      async () => {
        await db.sqlClient.transaction({}, async (s) => {
          const hostPid = (await s.query("SELECT pg_backend_pid() AS p"))
            .rows[0]
            ?.p;
          assert.equal(typeof hostPid, "number");
          await s.query("SELECT 1");
          for (const fn of ["pg_cancel_backend", "pg_terminate_backend"]) {
            await rejectsCode(
              host.dbQuery(ctx(), `SELECT ${uescape(fn)}($1::int)`, [hostPid]),
              "42501",
            );
            await rejectsCode(
              bare.query(`SELECT ${fn}(${hostPid})`, [], ro),
              "42501",
            );
          }
          // The host's transaction carries on.
          assert.deepEqual((await s.query("SELECT 2 AS two")).rows, [{
            two: 2,
          }]);
        });
      },
    );
  } finally {
    for (const h of hosts) h.close();
    await listener.end().catch(() => {});
    await db.dropPlugin(attacker).catch(() => {});
    await bare.close();
    await db.close();
  }
});

Deno.test("db walls: the goatkit schema is closed to plugins (PostgreSQL)", async (t) => {
  const db = new PgDatabase({ url: PG_URL, max: 2 });
  const attacker = `${RUN}-gatt`;
  const victim = `${RUN}-gvic`;
  const grants = new PgGrantStore({ client: db.sqlClient, cacheTtlMs: 0 });
  const state = new PgStateStore({ client: db.sqlClient });
  const claim = new PgJobClaim(db.sqlClient);
  const hosts: GuardedHostAPI[] = [];
  try {
    await grants.set(victim, ["log"]);
    await state.set(victim, { enabled: false, reason: "pending approval" });
    assert.equal(await claim.claim(`${victim}.job`, 60), true);
    const host = await pluginHost(db, attacker, [
      "db:read",
      "db:write",
    ], grants);
    hosts.push(host);
    const victimHost = await pluginHost(db, victim, ["db:write"]);
    hosts.push(victimHost);
    await victimHost.dbExec(ctx(), "CREATE TABLE notes (body text)");

    await t.step(
      "an unscoped db:read/db:write plugin cannot read or write the host's tables",
      async () => {
        for (
          const [sql, args] of [
            ["SELECT * FROM goatkit.plugin_grants", []],
            ["SELECT * FROM goatkit.plugin_state", []],
            ["SELECT * FROM goatkit.job_ticks", []],
            [
              `UPDATE goatkit.plugin_grants SET granted = '["http:external","email:*"]' WHERE plugin = $1`,
              [victim],
            ],
            ["DELETE FROM goatkit.plugin_state WHERE name = $1", [victim]],
            ["INSERT INTO goatkit.job_ticks (job, tick) VALUES ($1, 0)", [
              victim,
            ]],
            [`SELECT * FROM "goatkit"."plugin_grants"`, []],
          ] as const
        ) {
          await rejectsCode(host.dbExec(ctx(), sql, [...args]), "42501");
        }
        // Unqualified, they are not there at all.
        await rejectsCode(
          host.dbQuery(ctx(), "SELECT * FROM plugin_grants"),
          "42P01",
        );
        // Nothing changed.
        assert.deepEqual(await grants.get(victim), ["log"]);
        assert.deepEqual(await state.get(victim), {
          enabled: false,
          reason: "pending approval",
        });
        assert.equal(await claim.claim(`${victim}.job`, 0), true);
        const { rows } = await db.sqlClient.query(
          `SELECT has_schema_privilege($1, $2, 'USAGE') AS role_usage,
                has_schema_privilege('public', $2, 'USAGE') AS public_usage`,
          [pluginRoleName(attacker), HOST_SCHEMA],
        );
        assert.deepEqual(rows, [{ role_usage: false, public_usage: false }]);
      },
    );

    await t.step(
      "table grants naming a reserved schema are refused, in any spelling",
      async () => {
        const spellings = [
          "goatkit.plugin_grants",
          "GOATKIT.PLUGIN_GRANTS",
          '"goatkit".plugin_grants',
          '"goatkit"."plugin_grants"',
          ' goatkit . "plugin_state" ',
          '"GoatKit".job_ticks',
          "pg_catalog.pg_authid",
          "information_schema.tables",
        ];
        for (const name of spellings) {
          for (
            const privileges of [
              { read: [name], write: null },
              { read: "all" as const, write: ["ticket", name] },
            ]
          ) {
            assert.throws(
              () => checkPrivileges(attacker, privileges, "public"),
              ReservedSchemaError,
              name,
            );
            await assert.rejects(
              db.syncPluginPrivileges(attacker, privileges),
              ReservedSchemaError,
              name,
            );
          }
        }
        // Another plugin's table, found by what the database resolves.
        await assert.rejects(
          db.syncPluginPrivileges(attacker, {
            read: [`${pluginSchemaName(victim)}.notes`],
            write: null,
          }),
          (e: unknown) =>
            e instanceof ReservedSchemaError &&
            /another plugin/.test(e.message),
        );
        // The application schema cannot be the host's either.
        assert.throws(
          () => new PgDatabase({ url: PG_URL, hostSchema: "GoatKit" }),
          TypeError,
        );
        await assert.rejects(
          db.sqlClient.transaction(
            {},
            (s) =>
              syncPrivileges(
                s,
                attacker,
                { read: "all", write: null },
                "goatkit",
              ),
          ),
          ReservedSchemaError,
        );
        // Through the plugin's own call path: the operator approved the grant,
        // the sync refuses it and the plugin's statement never runs.
        await grants.set(attacker, ["db:read:goatkit.plugin_grants"]);
        await assert.rejects(
          host.dbQuery(ctx(), "SELECT * FROM goatkit.plugin_grants"),
          (e: unknown) =>
            e instanceof ReservedSchemaError ||
            (e instanceof Error && e.name === "PermissionDeniedError"),
        );
        // The role got nothing in goatkit, from any of it.
        const { rows } = await db.sqlClient.query(
          `SELECT c.relname FROM pg_class c, LATERAL aclexplode(c.relacl) a
          WHERE c.relnamespace = $2::regnamespace
            AND a.grantee = (SELECT oid FROM pg_roles WHERE rolname = $1)`,
          [pluginRoleName(attacker), HOST_SCHEMA],
        );
        assert.deepEqual(rows, []);
        assert.deepEqual(await grants.get(victim), ["log"]);
      },
    );
  } finally {
    for (const h of hosts) h.close();
    await grants.delete(victim).catch(() => {});
    await grants.delete(attacker).catch(() => {});
    await state.delete(victim).catch(() => {});
    await db.sqlClient.query("DELETE FROM goatkit.job_ticks WHERE job = $1", [
      `${victim}.job`,
    ]).catch(() => {});
    await db.dropPlugin(attacker).catch(() => {});
    await db.dropPlugin(victim).catch(() => {});
    await db.close();
  }
});

/** The old layout's tables, with a row each, as an upgraded database has them. */
async function legacyTables(run: (sql: string) => Promise<unknown>) {
  await run(
    `CREATE TABLE goatkit_plugin_grants (plugin text PRIMARY KEY, granted jsonb NOT NULL, updated_at timestamptz NOT NULL DEFAULT now())`,
  );
  await run(
    `CREATE TABLE goatkit_plugin_state (name text PRIMARY KEY, enabled boolean NOT NULL, reason text, updated_at timestamptz NOT NULL DEFAULT now())`,
  );
  await run(
    `CREATE TABLE goatkit_job_ticks (job text NOT NULL, tick bigint NOT NULL, claimed_at timestamptz NOT NULL DEFAULT now(), PRIMARY KEY (job, tick))`,
  );
  await run(
    `INSERT INTO goatkit_plugin_grants (plugin, granted) VALUES ('old', '["log"]')`,
  );
  await run(
    `INSERT INTO goatkit_plugin_state (name, enabled, reason) VALUES ('old', false, 'disabled')`,
  );
  await run(
    `INSERT INTO goatkit_job_ticks (job, tick) VALUES ('old.job', 120)`,
  );
}

/** Upgrade: the old tables move into goatkit with their rows, privileges dropped. */
async function upgradeScenario(db: SqlDatabase, plugin: string) {
  const c = db.sqlClient;
  await legacyTables((sql) => c.query(sql));
  // Before the upgrade an unscoped grant covered them.
  await db.syncPluginPrivileges(plugin, { read: "all", write: "all" });
  const held = await c.query(
    `SELECT count(*)::int AS n FROM pg_class c, LATERAL aclexplode(c.relacl) a
      WHERE c.relname LIKE 'goatkit\\_%'
        AND a.grantee = (SELECT oid FROM pg_roles WHERE rolname = $1)`,
    [pluginRoleName(plugin)],
  );
  assert.ok(Number(held.rows[0]?.n) >= 3, "the old layout was open");

  // Two hosts start at once.
  const stores = () => ({
    grants: new PgGrantStore({ client: c, cacheTtlMs: 0 }),
    state: new PgStateStore({ client: c }),
    claim: new PgJobClaim(c),
  });
  const [a, b] = [stores(), stores()];
  const [ga, gb, sa, sb, ca, cb] = await Promise.all([
    a.grants.get("old"),
    b.grants.get("old"),
    a.state.get("old"),
    b.state.get("old"),
    a.claim.claim("old.job", 120),
    b.claim.claim("new.job", 120),
  ]);
  assert.deepEqual([ga, gb], [["log"], ["log"]]);
  assert.deepEqual([sa, sb], [{ enabled: false, reason: "disabled" }, {
    enabled: false,
    reason: "disabled",
  }]);
  assert.deepEqual([ca, cb], [false, true], "the old tick row moved along");
  const { rows } = await c.query(
    `SELECT n.nspname || '.' || c.relname AS t FROM pg_class c
       JOIN pg_namespace n ON n.oid = c.relnamespace
      WHERE c.relkind = 'r' AND (c.relname LIKE 'goatkit\\_%' OR n.nspname = 'goatkit')
      ORDER BY 1`,
  );
  assert.deepEqual(rows.map((r) => r.t), [
    "goatkit.job_ticks",
    "goatkit.plugin_grants",
    "goatkit.plugin_state",
  ]);
  const after = await c.query(
    `SELECT count(*)::int AS n FROM pg_class c, LATERAL aclexplode(c.relacl) a
      WHERE c.relnamespace = 'goatkit'::regnamespace AND a.grantee <> c.relowner`,
  );
  assert.equal(after.rows[0]?.n, 0, "only the owner keeps privileges");
  // The plugin with the same unscoped grants now reaches none of it.
  await db.syncPluginPrivileges(plugin, { read: "all", write: "all" });
  await rejectsCode(
    db.query("SELECT * FROM goatkit.plugin_grants", [], {
      plugin,
      readOnly: false,
    }),
    "42501",
  );
  await rejectsCode(
    db.query("SELECT * FROM goatkit_plugin_grants", [], {
      plugin,
      readOnly: true,
    }),
    "42P01",
  );
}

Deno.test("db walls: an upgraded PostgreSQL database moves its old host tables once", async () => {
  const dbName = `gk_${RUN}_upgrade`;
  const admin = new pg.Client({ connectionString: PG_URL });
  await admin.connect();
  await admin.query(`CREATE DATABASE ${dbName}`);
  const url = PG_URL.replace(/\/[^/]*$/, `/${dbName}`);
  const db = new BarePgDatabase({ url, max: 2 });
  const plugin = `${RUN}-up`;
  try {
    // dblink installed before the host hardens the database.
    await db.sqlClient.query("CREATE EXTENSION dblink");
    await upgradeScenario(db, plugin);
    const { rows } = await db.sqlClient.query(
      `SELECT count(*)::int AS n FROM pg_proc p JOIN pg_depend d ON d.objid = p.oid
         JOIN pg_extension e ON e.oid = d.refobjid
        WHERE e.extname = 'dblink' AND d.deptype = 'e'
          AND has_function_privilege($1, p.oid, 'EXECUTE')`,
      [pluginRoleName(plugin)],
    );
    assert.equal(rows[0]?.n, 0, "no dblink function is open to the plugin");
    await rejectsCode(
      db.query("SELECT dblink_connect('host=127.0.0.1 dbname=test')", [], {
        plugin,
        readOnly: true,
      }),
      "42501",
    );
    await db.dropPlugin(plugin);
  } finally {
    await db.close();
    await admin.query(`DROP DATABASE IF EXISTS ${dbName} WITH (FORCE)`);
    await admin.end();
  }
});

Deno.test("db walls: PGlite keeps the same walls", async (t) => {
  // One in-memory PGlite for every step (slow to start); the statement
  // check is removed so that the database's own walls are what is tested.
  const db = new BarePgliteDatabase({});
  const plugin = `${RUN}-lite`;
  try {
    await t.step("upgrade moves the old host tables into goatkit", async () => {
      await upgradeScenario(db, plugin);
    });
    await t.step("session functions and languages are refused", async () => {
      assert.deepEqual(
        await openSessionFunctions(db, pluginRoleName(plugin)),
        [],
      );
      const rw = { plugin, readOnly: false };
      for (
        const sql of [
          "SELECT pg_advisory_lock(hashtext('goatkit:privileges'))",
          "SELECT pg_notify('app', 'x')",
          "SELECT set_config('role', 'postgres', false)",
          `SELECT ${uescape("set_config")}('role', 'postgres', false)`,
          "SELECT lo_create(0)",
          "DO $$ BEGIN RESET ROLE; END $$",
        ]
      ) {
        await rejectsCode(db.exec(sql, [], rw), "42501");
      }
      // The host itself keeps its own locks and DO blocks.
      await db.syncPluginPrivileges(plugin, { read: null, write: null });
    });
    await t.step("reserved schemas are refused", async () => {
      await assert.rejects(
        db.syncPluginPrivileges(plugin, {
          read: ['"GOATKIT".plugin_state'],
          write: null,
        }),
        ReservedSchemaError,
      );
      const { rows } = await db.sqlClient.query(
        "SELECT has_schema_privilege($1, 'goatkit', 'USAGE') AS u",
        [pluginRoleName(plugin)],
      );
      assert.equal(rows[0]?.u, false);
    });
    await db.dropPlugin(plugin);
  } finally {
    await db.close();
  }
});

Deno.test("db walls: the host's own connections are not the plugins' pool", async () => {
  const db = new PgDatabase({ url: PG_URL, max: 2, hostMax: 2 });
  const hog = `${RUN}-hog`;
  const other = `${RUN}-oth`;
  const grants = new PgGrantStore({ client: db.sqlClient, cacheTtlMs: 0 });
  const state = new PgStateStore({ client: db.sqlClient });
  const claim = new PgJobClaim(db.sqlClient);
  const table = `gk_${RUN}_held`;
  const marker = `/* ${RUN} hog */`;
  const controllers = Array.from({ length: 6 }, () => new AbortController());
  try {
    await db.sqlClient.query(`CREATE TABLE ${table} (id int, v text)`);
    await db.sqlClient.query(`INSERT INTO ${table} VALUES (1, 'x')`);
    await db.syncPluginPrivileges(hog, { read: [table], write: [table] });
    // Six slow statements on a plugin pool of two: two hold row locks on a
    // host table and sleep, four wait for a connection.
    let settled = 0;
    const sleepers = controllers.map((ac) =>
      db.exec(
        `WITH u AS (UPDATE ${table} SET v = v RETURNING id) SELECT pg_sleep(30) FROM u ${marker}`,
        [],
        {
          plugin: hog,
          readOnly: false,
          statementTimeoutMs: 60_000,
          signal: ac.signal,
        },
      ).then(
        () => "done",
        (e) => e instanceof DbQueryError ? e.code : String(e),
      ).finally(() => settled++)
    );
    for (let tries = 0;; tries++) {
      const { rows } = await db.sqlClient.query(
        `SELECT count(*)::int AS n FROM pg_stat_activity
          WHERE state = 'active' AND query LIKE '%' || $1`,
        [marker],
      );
      if (rows[0]?.n === 2) break;
      if (settled > 0) {
        assert.fail(`a slow statement ended early: ${await sleepers[0]}`);
      }
      assert.ok(tries < 1000, "the slow statements never started");
      await new Promise((r) => setTimeout(r, 20));
    }
    assert.equal(
      db.pluginWaitingCount,
      4,
      "the plugin's connections are all taken",
    );

    // The host's own work goes on meanwhile: a privilege sync of another
    // plugin (on the very table whose rows are locked), grant and state
    // writes, a job claim.
    await db.syncPluginPrivileges(other, { read: [table], write: null });
    await grants.set(other, ["db:read"]);
    assert.deepEqual(await grants.get(other), ["db:read"]);
    await state.set(other, { enabled: true });
    assert.equal(await claim.claim(`${other}.job`, 60), true);
    assert.equal(
      settled,
      0,
      "all of it while every plugin connection was held",
    );

    for (const ac of controllers) ac.abort();
    assert.deepEqual(await Promise.all(sleepers), Array(6).fill("57014"));
    // The plugin pool recovers (cancelled connections were replaced).
    assert.deepEqual(
      await db.query(`SELECT count(*)::int AS n FROM ${table}`, [], {
        plugin: other,
        readOnly: true,
      }),
      [{ n: 1 }],
    );
  } finally {
    for (const ac of controllers) ac.abort();
    await grants.delete(other).catch(() => {});
    await state.delete(other).catch(() => {});
    await db.sqlClient.query("DELETE FROM goatkit.job_ticks WHERE job = $1", [
      `${other}.job`,
    ]).catch(() => {});
    await db.dropPlugin(hog).catch(() => {});
    await db.dropPlugin(other).catch(() => {});
    await db.sqlClient.query(`DROP TABLE IF EXISTS ${table}`);
    await db.close();
  }
});

Deno.test("db walls: a late cancel request cannot hit the next plugin's statement", async () => {
  // A pool of one connection: the aborted plugin's connection would be the
  // next one's, if it were reused.
  const db = new PgDatabase({ url: PG_URL, max: 1 });
  const slow = `${RUN}-slow`;
  const next = `${RUN}-next`;
  const hosts: GuardedHostAPI[] = [];
  try {
    const a = await pluginHost(db, slow, ["db:read"]);
    const b = await pluginHost(db, next, ["db:read"]);
    hosts.push(a, b);
    for (let round = 0; round < 5; round++) {
      // Its deadline aborts the call as the statement timeout (derived from
      // the same deadline) fires on the server.
      const aborted = a.dbQuery(ctx(300), "SELECT pg_sleep(10)").then(
        () => "done",
        (e) => e instanceof DbQueryError ? e.code : String(e),
      );
      const queued = Array.from(
        { length: 8 },
        (_, i) =>
          b.dbQuery(ctx(), "SELECT pg_sleep(0.05), $1::int AS i", [i]).then(
            (rows) => rows[0]?.i,
            (e) => String(e),
          ),
      );
      assert.equal(await aborted, "57014");
      assert.deepEqual(await Promise.all(queued), [0, 1, 2, 3, 4, 5, 6, 7]);
    }
  } finally {
    for (const h of hosts) h.close();
    await db.dropPlugin(slow).catch(() => {});
    await db.dropPlugin(next).catch(() => {});
    await db.close();
  }
});

/** `PG_URL` with `user` as its user (trust authentication lets tests log in as any role). */
function urlAs(url: string, user: string, password?: string): string {
  const u = new URL(url);
  u.username = user;
  u.password = password === undefined ? "" : encodeURIComponent(password);
  return u.toString();
}

/** Logs in as `user` on a client of its own; resolves to the SQLSTATE of a refusal, or the open client. */
async function logIn(
  url: string,
  user: string,
  password?: string,
): Promise<pg.Client | string> {
  const c = new pg.Client({ connectionString: urlAs(url, user, password) });
  c.on("error", () => {});
  try {
    await c.connect();
    return c;
  } catch (e) {
    await c.end().catch(() => {});
    return String((e as { code?: unknown }).code ?? e);
  }
}

Deno.test("db walls: logged in as its own role, a plugin cannot leave it (statement check removed)", async (t) => {
  // One connection per plugin: a following statement would meet whatever
  // the previous one left, if the connection were reused.
  const bare = new BarePgDatabase({ url: PG_URL, max: 4, maxPerPlugin: 1 });
  const plugin = `${RUN}-esc`;
  const other = `${RUN}-esc2`;
  const role = pluginRoleName(plugin);
  const otherRole = pluginRoleName(other);
  const vault = `gk_${RUN}_vault`;
  const open = `gk_${RUN}_open`;
  const rw = { plugin, readOnly: false };
  const ro = { plugin, readOnly: true };
  const raw: pg.Client[] = [];
  try {
    await bare.sqlClient.query(`CREATE TABLE ${vault} (secret text)`);
    await bare.sqlClient.query(`INSERT INTO ${vault} VALUES ('top')`);
    await bare.sqlClient.query(`CREATE TABLE ${open} (v text)`);
    await bare.syncPluginPrivileges(plugin, { read: [open], write: [open] });
    await bare.syncPluginPrivileges(other, { read: null, write: null });
    const orw = { plugin: other, readOnly: false };
    await bare.exec("CREATE TABLE mine (v text)", [], orw);
    await bare.exec("INSERT INTO mine VALUES ('theirs')", [], orw);
    assert.equal(bare.pluginSessions, "login");

    /** What a following statement of the plugin reaches: its grants only. */
    const reach = async () => {
      await rejectsCode(bare.query(`SELECT * FROM ${vault}`, [], ro), "42501");
      await rejectsCode(
        bare.exec(`DELETE FROM ${vault}`, [], rw),
        "42501",
      );
      await rejectsCode(
        bare.query("SELECT * FROM goatkit.plugin_grants", [], rw),
        "42501",
      );
      await rejectsCode(
        bare.query(`SELECT * FROM ${pluginSchemaName(other)}.mine`, [], ro),
        "42501",
      );
      assert.deepEqual(
        await bare.query(
          "SELECT session_user AS s, current_user AS u",
          [],
          ro,
        ),
        [{ s: role, u: role }],
      );
    };

    await t.step(
      "RESET ROLE, SET ROLE, SET SESSION AUTHORIZATION through the service",
      async () => {
        const outcomes: Record<string, string> = {};
        for (
          const sql of [
            "RESET ROLE",
            "SET ROLE NONE",
            "SET ROLE postgres",
            `SET ROLE ${otherRole}`,
            "SET SESSION AUTHORIZATION postgres",
            `SET SESSION AUTHORIZATION ${otherRole}`,
            "RESET SESSION AUTHORIZATION",
            "SET SESSION AUTHORIZATION DEFAULT",
            "SET SESSION ROLE postgres",
            "RESET ALL",
            "DISCARD ALL",
          ]
        ) {
          for (const [mode, opts] of [["rw", rw], ["ro", ro]] as const) {
            outcomes[`${mode} ${sql}`] = await bare.exec(sql, [], opts).then(
              () => "ran",
              (e) => e instanceof DbQueryError ? e.code : String(e),
            );
            await reach();
          }
        }
        // Leaving the role is refused by PostgreSQL itself.
        for (
          const sql of [
            "SET ROLE postgres",
            `SET ROLE ${otherRole}`,
            "SET SESSION AUTHORIZATION postgres",
            `SET SESSION AUTHORIZATION ${otherRole}`,
          ]
        ) {
          assert.equal(outcomes[`rw ${sql}`], "42501", sql);
          assert.equal(outcomes[`ro ${sql}`], "42501", sql);
        }
        // Nothing of the host's changed.
        const { rows } = await bare.sqlClient.query(`SELECT * FROM ${vault}`);
        assert.deepEqual(rows, [{ secret: "top" }]);
      },
    );

    await t.step(
      "in one session of the role, RESET ROLE then a read of the host's table",
      async () => {
        // The session the host opens for the plugin, kept open across
        // statements here (the host would close it after RESET).
        const c = await logIn(PG_URL, role);
        assert.ok(c instanceof pg.Client, `login: ${c}`);
        raw.push(c);
        for (
          const sql of [
            "RESET ROLE",
            "SET ROLE NONE",
            "RESET SESSION AUTHORIZATION",
          ]
        ) {
          await c.query(sql);
          await assert.rejects(
            c.query(`SELECT * FROM ${vault}`),
            (e: unknown) => (e as { code?: string }).code === "42501",
          );
          const { rows } = await c.query(
            "SELECT session_user AS s, current_user AS u",
          );
          assert.deepEqual(rows, [{ s: role, u: role }]);
        }
        for (
          const sql of [
            "SET ROLE postgres",
            "SET SESSION AUTHORIZATION postgres",
          ]
        ) {
          await assert.rejects(
            c.query(sql),
            (e: unknown) => (e as { code?: string }).code === "42501",
          );
        }
        await c.end();
        raw.splice(raw.indexOf(c), 1);
      },
    );

    await t.step("a plugin cannot act as another plugin's role", async () => {
      // Interleaved calls of both plugins: each in its own role's session.
      const plugins = Array.from(
        { length: 10 },
        (_, i) => i % 2 ? plugin : other,
      );
      const seen = await Promise.all(
        plugins.map((p) =>
          bare.query(
            "SELECT session_user AS s, current_user AS u, pg_sleep(0.01)::text AS z",
            [],
            { plugin: p, readOnly: true },
          )
        ),
      );
      seen.forEach((rows, i) => {
        const r = pluginRoleName(plugins[i]!);
        assert.deepEqual(rows, [{ s: r, u: r, z: "" }]);
      });
      // Passwords are out of reach.
      await rejectsCode(
        bare.query("SELECT rolpassword FROM pg_authid", [], ro),
        "42501",
      );
      await rejectsCode(
        bare.query("SELECT passwd FROM pg_shadow", [], ro),
        "42501",
      );
      assert.deepEqual(
        await bare.query(
          "SELECT rolpassword AS p FROM pg_roles WHERE rolname = $1",
          [otherRole],
          ro,
        ),
        [{ p: "********" }],
      );
      // Roles cannot be changed or joined.
      for (
        const sql of [
          `ALTER ROLE ${otherRole} PASSWORD 'known'`,
          `ALTER ROLE ${otherRole} NOLOGIN`,
          `ALTER ROLE ${role} CONNECTION LIMIT 100`,
          `ALTER ROLE ${role} SUPERUSER`,
          `GRANT ${otherRole} TO ${role}`,
          `GRANT postgres TO ${role}`,
          `CREATE ROLE ${RUN}_x LOGIN PASSWORD 'known'`,
        ]
      ) {
        await rejectsCode(bare.exec(sql, [], rw), "42501");
      }
      assert.deepEqual(
        await bare.query("SELECT v FROM mine", [], {
          plugin: other,
          readOnly: true,
        }),
        [{ v: "theirs" }],
      );
      const { rows } = await bare.sqlClient.query(
        `SELECT rolname, rolcanlogin, rolconnlimit, rolsuper, rolcreaterole
           FROM pg_roles WHERE rolname = ANY ($1) ORDER BY rolname`,
        [[role, otherRole]],
      );
      assert.deepEqual(
        rows,
        [role, otherRole].sort().map((r) => ({
          rolname: r,
          rolcanlogin: true,
          rolconnlimit: 3,
          rolsuper: false,
          rolcreaterole: false,
        })),
      );
      const members = await bare.sqlClient.query(
        `SELECT count(*)::int AS n FROM pg_auth_members
          WHERE member = (SELECT oid FROM pg_roles WHERE rolname = $1)`,
        [role],
      );
      assert.equal(members.rows[0]?.n, 0);
    });

    await t.step(
      "session state a plugin leaves behind never reaches its next statement",
      async () => {
        const pid = async () =>
          (await bare.query("SELECT pg_backend_pid() AS p", [], ro))[0]?.p;
        const cases: [string, () => Promise<void>][] = [
          ["SET statement_timeout = 0", async () => {
            assert.deepEqual(
              await bare.query("SHOW statement_timeout", [], ro),
              [{ statement_timeout: "5s" }],
            );
          }],
          ["SET default_transaction_read_only = off", async () => {
            await rejectsCode(
              bare.exec(`INSERT INTO ${open} VALUES ('x')`, [], ro),
              "25006",
            );
            await rejectsCode(
              bare.query(`INSERT INTO ${open} VALUES ('x')`, [], ro),
              "25006",
            );
          }],
          ["SET search_path = public", async () => {
            assert.deepEqual(
              await bare.query("SHOW search_path", [], ro),
              [{ search_path: `${pluginSchemaName(plugin)}, public` }],
            );
          }],
          ["BEGIN", async () => {
            // Inside one transaction now() would not move.
            const now = async () =>
              (await bare.query("SELECT now()::text AS t", [], ro))[0]?.t;
            const first = await now();
            await new Promise((r) => setTimeout(r, 5));
            assert.notEqual(await now(), first);
          }],
          ["DECLARE c CURSOR WITH HOLD FOR SELECT 1", async () => {
            assert.deepEqual(
              await bare.query(
                "SELECT count(*)::int AS n FROM pg_cursors WHERE name = 'c'",
                [],
                ro,
              ),
              [{ n: 0 }],
            );
          }],
          ["PREPARE p AS SELECT 1", async () => {
            assert.deepEqual(
              await bare.query(
                "SELECT count(*)::int AS n FROM pg_prepared_statements WHERE name = 'p'",
                [],
                ro,
              ),
              [{ n: 0 }],
            );
          }],
        ];
        for (const [sql, check] of cases) {
          for (const opts of [rw, ro]) {
            const before = await pid();
            await bare.exec(sql, [], opts).catch(() => {});
            assert.notEqual(await pid(), before, `${sql}: a new session`);
            await check();
          }
        }
        // A plain statement keeps its session.
        const p = await pid();
        await bare.exec(`INSERT INTO ${open} VALUES ('ok')`, [], rw);
        assert.equal(await pid(), p);
      },
    );

    await t.step("the role's connection limit holds", async () => {
      // maxPerPlugin 1 + 2: three sessions of the role at most, whoever opens
      // them (trust authentication lets this test log in as the role).
      let refused = "";
      for (let i = 0; i < 10 && !refused; i++) {
        const c = await logIn(PG_URL, role);
        if (typeof c === "string") refused = c;
        else raw.push(c);
      }
      assert.equal(refused, "53300", "too many connections for role");
      const { rows } = await bare.sqlClient.query(
        "SELECT count(*)::int AS n FROM pg_stat_activity WHERE usename = $1",
        [role],
      );
      assert.equal(rows[0]?.n, 3);
      // The host and the other plugin go on.
      assert.deepEqual(
        await bare.query("SELECT v FROM mine", [], {
          plugin: other,
          readOnly: true,
        }),
        [{ v: "theirs" }],
      );
      await bare.syncPluginPrivileges(plugin, { read: [open], write: [open] });
      for (const c of raw.splice(0)) await c.end();
      assert.deepEqual(
        await bare.query("SELECT session_user AS s", [], ro),
        [{ s: role }],
      );
    });
  } finally {
    for (const c of raw) await c.end().catch(() => {});
    await bare.dropPlugin(plugin).catch(() => {});
    await bare.dropPlugin(other).catch(() => {});
    await bare.sqlClient.query(`DROP TABLE IF EXISTS ${vault}, ${open}`);
    await bare.close();
  }
});

Deno.test("db walls: a plugin's statements use at most maxPerPlugin sessions, closed when idle", async () => {
  const db = new PgDatabase({
    url: PG_URL,
    max: 10,
    maxPerPlugin: 2,
    idleTimeoutMs: 200,
  });
  const plugin = `${RUN}-par`;
  try {
    await db.syncPluginPrivileges(plugin, { read: null, write: null });
    const pids = await Promise.all(
      Array.from(
        { length: 8 },
        () =>
          db.query(
            "SELECT pg_backend_pid() AS p, pg_sleep(0.05)::text AS z",
            [],
            {
              plugin,
              readOnly: true,
            },
          ).then((rows) => rows[0]?.p),
      ),
    );
    assert.ok(
      new Set(pids).size <= 2,
      `sessions used: ${new Set(pids).size}`,
    );
    const { rows } = await db.sqlClient.query(
      "SELECT count(*)::int AS n FROM pg_stat_activity WHERE usename = $1",
      [pluginRoleName(plugin)],
    );
    assert.ok(Number(rows[0]?.n) <= 2);
    // Idle sessions are closed (bounded wait, no timing asserted).
    for (let tries = 0;; tries++) {
      const { rows } = await db.sqlClient.query(
        "SELECT count(*)::int AS n FROM pg_stat_activity WHERE usename = $1",
        [pluginRoleName(plugin)],
      );
      if (rows[0]?.n === 0) break;
      assert.ok(tries < 500, "idle plugin sessions were never closed");
      await new Promise((r) => setTimeout(r, 20));
    }
    // And opened again on demand.
    assert.deepEqual(
      await db.query("SELECT session_user AS s", [], {
        plugin,
        readOnly: true,
      }),
      [{ s: pluginRoleName(plugin) }],
    );
  } finally {
    await db.dropPlugin(plugin).catch(() => {});
    await db.close();
  }
});

/** A PostgreSQL cluster of this test's own, with password authentication. */
interface PrivateCluster {
  url(database: string): string;
  /** The server's log (every statement: `log_statement = all`). */
  log(): Promise<string>;
  stop(): Promise<void>;
}

/** The PostgreSQL server binaries, or why there are none. */
async function postgresBin(): Promise<string | { missing: string }> {
  try {
    const out = await new Deno.Command("pg_config", { args: ["--bindir"] })
      .output();
    const dir = new TextDecoder().decode(out.stdout).trim();
    await Deno.stat(`${dir}/initdb`);
    return dir;
  } catch {
    try {
      for await (const e of Deno.readDir("/usr/lib/postgresql")) {
        const dir = `/usr/lib/postgresql/${e.name}/bin`;
        if (await Deno.stat(`${dir}/initdb`).then(() => true, () => false)) {
          return dir;
        }
      }
    } catch {
      // no Debian-style install either
    }
  }
  return { missing: "no initdb (PostgreSQL server binaries) on this machine" };
}

/**
 * Starts a throw-away cluster on a free loopback port: `postgres` logs in by
 * `trust`, every other role by SCRAM password, and in database `refuse`
 * every other role is rejected by `pg_hba.conf` (the fallback case). As
 * root, the server runs as the `postgres` system user (it refuses root).
 */
async function startCluster(bin: string): Promise<PrivateCluster> {
  const dir = await Deno.makeTempDir({ prefix: "gk_pg_" });
  const root = Deno.uid() === 0;
  const run = async (cmd: string, args: string[]) => {
    const out = await new Deno.Command(root ? "runuser" : cmd, {
      args: root ? ["-u", "postgres", "--", cmd, ...args] : args,
      stdout: "piped",
      stderr: "piped",
    }).output();
    if (!out.success) {
      throw new Error(
        `Cannot run ${cmd}: ${new TextDecoder().decode(out.stderr)}`,
      );
    }
  };
  const data = `${dir}/data`;
  let started = false;
  try {
    if (root) {
      const id = await new Deno.Command("id", { args: ["-u", "postgres"] })
        .output();
      await Deno.chown(
        dir,
        Number(new TextDecoder().decode(id.stdout).trim()),
        null,
      );
    }
    await run(`${bin}/initdb`, [
      "-D",
      data,
      "-A",
      "trust",
      "-U",
      "postgres",
      "--no-sync",
      "-E",
      "UTF8",
    ]);
    await Deno.writeTextFile(
      `${data}/pg_hba.conf`,
      [
        "host all postgres 127.0.0.1/32 trust",
        "host refuse all 127.0.0.1/32 reject",
        "host all all 127.0.0.1/32 scram-sha-256",
      ].join("\n") + "\n",
    );
    const probe = Deno.listen({ hostname: "127.0.0.1", port: 0 });
    const port = (probe.addr as Deno.NetAddr).port;
    probe.close();
    await run(`${bin}/pg_ctl`, [
      "-D",
      data,
      "-l",
      `${dir}/server.log`,
      "-w",
      "-t",
      "30",
      "-o",
      `-p ${port} -k ${dir} -c listen_addresses=127.0.0.1 -c fsync=off -c log_statement=all`,
      "start",
    ]);
    started = true;
    const url = (db: string) => `postgres://postgres@127.0.0.1:${port}/${db}`;
    const admin = new pg.Client({ connectionString: url("postgres") });
    await admin.connect();
    await admin.query("CREATE DATABASE refuse");
    await admin.end();
    return {
      url,
      log: () => Deno.readTextFile(`${dir}/server.log`),
      async stop() {
        await run(`${bin}/pg_ctl`, [
          "-D",
          data,
          "-m",
          "immediate",
          "-w",
          "stop",
        ])
          .catch(() => {});
        await Deno.remove(dir, { recursive: true });
      },
    };
  } catch (e) {
    if (started) {
      await run(`${bin}/pg_ctl`, ["-D", data, "-m", "immediate", "-w", "stop"])
        .catch(() => {});
    }
    await Deno.remove(dir, { recursive: true }).catch(() => {});
    throw e;
  }
}

const PG_BIN = await postgresBin();

Deno.test({
  name:
    "db walls: SCRAM logins as plugin roles, passwords the host alone knows, and the pg_hba fallback",
  // Needs the PostgreSQL server binaries to start a cluster of its own.
  ignore: typeof PG_BIN !== "string",
  async fn(t) {
    const cluster = await startCluster(PG_BIN as string);
    const url = cluster.url("postgres");
    const admin = new pg.Client({ connectionString: url });
    await admin.connect();
    const db = new BarePgDatabase({ url, max: 4, maxPerPlugin: 2 });
    const plugin = `${RUN}-scram`;
    const role = pluginRoleName(plugin);
    const rw = { plugin, readOnly: false };
    const ro = { plugin, readOnly: true };
    const passwordOf = async () =>
      (await admin.query(
        "SELECT rolpassword AS p FROM pg_authid WHERE rolname = $1",
        [role],
      )).rows[0]?.p as string | null;
    try {
      await db.syncPluginPrivileges(plugin, { read: null, write: null });

      await t.step(
        "the plugin's session logs in with SCRAM as its role",
        async () => {
          assert.equal(
            await passwordOf(),
            null,
            "no password before first use",
          );
          assert.deepEqual(
            await db.query("SELECT session_user AS s", [], ro),
            [{ s: role }],
          );
          assert.equal(db.pluginSessions, "login");
          assert.match(String(await passwordOf()), /^SCRAM-SHA-256\$4096:/);
          // Only the verifier ever reached the server (its statement log).
          const log = await cluster.log();
          assert.match(log, /PASSWORD 'SCRAM-SHA-256\$4096:/);
          assert.doesNotMatch(log, /PASSWORD '(?!SCRAM-SHA-256\$)/);
        },
      );

      await t.step("nobody else can log in as the role", async () => {
        assert.equal(await logIn(url, role, "guess"), "28P01");
        assert.equal(await logIn(url, role, role), "28P01");
        assert.equal(
          await logIn(cluster.url("refuse"), role, "guess"),
          "28000",
        );
      });

      await t.step(
        "a plugin that sets its own password (check removed) loses it at once",
        async () => {
          assert.equal(
            await db.exec(`ALTER ROLE ${role} PASSWORD 'known-pw'`, [], rw),
            0,
          );
          assert.equal(await logIn(url, role, "known-pw"), "28P01");
          assert.match(String(await passwordOf()), /^SCRAM-SHA-256\$4096:/);
          // Its next statements log in again with the host's password.
          for (let i = 0; i < 3; i++) {
            assert.deepEqual(
              await db.query("SELECT session_user AS s", [], ro),
              [{ s: role }],
            );
          }
        },
      );

      await t.step(
        "a password changed behind the host's back is set again",
        async () => {
          await admin.query(`ALTER ROLE ${role} PASSWORD 'someone-else'`);
          // A statement that closes its session, so the next one logs in anew.
          await db.exec("SET work_mem = '8MB'", [], rw);
          await db.exec("SET work_mem = '8MB'", [], rw);
          assert.deepEqual(
            await db.query("SELECT session_user AS s", [], ro),
            [{ s: role }],
          );
          assert.equal(await logIn(url, role, "someone-else"), "28P01");
        },
      );

      await t.step("close removes the password", async () => {
        await db.close();
        assert.equal(await passwordOf(), null);
      });

      await t.step(
        "pg_hba.conf refusing the role: falls back to SET LOCAL ROLE, logged once",
        async () => {
          const lines: string[] = [];
          const refused = new PgDatabase({
            url: cluster.url("refuse"),
            log: (line) => lines.push(line),
          });
          const p = `${RUN}-refused`;
          try {
            await refused.syncPluginPrivileges(p, { read: null, write: null });
            for (let i = 0; i < 3; i++) {
              assert.deepEqual(
                await refused.query(
                  "SELECT session_user AS s, current_user AS u",
                  [],
                  { plugin: p, readOnly: true },
                ),
                [{ s: "postgres", u: pluginRoleName(p) }],
              );
            }
            assert.equal(refused.pluginSessions, "set-role");
            assert.equal(lines.length, 1, lines.join("\n"));
            assert.match(lines[0]!, /28000/);
            assert.doesNotMatch(lines[0]!, /SCRAM|PASSWORD/i);
            // The statement check is the wall against RESET ROLE there.
            await rejectsCode(
              refused.exec("RESET ROLE", [], { plugin: p, readOnly: false }),
              "GK001",
            );
            await refused.dropPlugin(p);
          } finally {
            await refused.close();
          }
        },
      );
    } finally {
      await db.dropPlugin(plugin).catch(() => {});
      await db.close().catch(() => {});
      await admin.end().catch(() => {});
      await cluster.stop();
    }
  },
});

Deno.test("db walls: the SET LOCAL ROLE fallback (pluginLogin: false) keeps its second walls", async () => {
  // One shared connection for every plugin statement, the statement check
  // removed: what a plugin leaves on it is what the next user would find.
  const bare = new BarePgDatabase({ url: PG_URL, max: 1, pluginLogin: false });
  const plugin = `${RUN}-fb`;
  const channel = `app_${RUN}_fb`;
  const rw = { plugin, readOnly: false };
  const ro = { plugin, readOnly: true };
  try {
    assert.equal(bare.pluginSessions, "set-role");
    await bare.syncPluginPrivileges(plugin, { read: null, write: null });
    const pid = async () =>
      (await bare.pluginClient.query("SELECT pg_backend_pid() AS p")).rows[0]
        ?.p;
    const before = await pid();
    await bare.query(`LISTEN ${channel}`, [], ro); // rolled back
    await bare.exec(`LISTEN ${channel}`, [], rw); // committed, then UNLISTEN *
    assert.equal(await pid(), before, "the same pooled connection");
    const { rows } = await bare.pluginClient.query(
      "SELECT pg_listening_channels() AS c",
    );
    assert.deepEqual(rows, []);
    const who = await bare.pluginClient.query(
      "SELECT current_user AS u, current_setting('role') AS r",
    );
    assert.deepEqual(who.rows, [{ u: "postgres", r: "none" }]);
    await rejectsCode(
      bare.exec("SELECT pg_advisory_lock(1)", [], rw),
      "42501",
    );
    assert.deepEqual(
      await bare.query("SELECT session_user AS s, current_user AS u", [], ro),
      [{ s: "postgres", u: pluginRoleName(plugin) }],
    );
  } finally {
    await bare.dropPlugin(plugin).catch(() => {});
    await bare.close();
  }
});
