// Database service against the real PostgreSQL (127.0.0.1:5432, database
// `test`, user `postgres`, trust) and against PGlite (one in-memory instance
// for the whole file: it takes seconds to start). Every run uses its own
// table, role and schema names and removes them at the end.

import assert from "node:assert/strict";
import {
  DatabaseNotFoundError,
  DatabaseSet,
  DbQueryError,
  DbRowLimitError,
  PgDatabase,
  PgliteDatabase,
  PgStateStore,
  type SqlDatabase,
} from "../host/services/mod.ts";
import { pluginRoleName, pluginSchemaName } from "../permissions/mod.ts";
import {
  checkPluginStatement,
  leadingWords,
} from "../host/services/sql_guard.ts";
import { pgTextToJson } from "../host/services/pg_types.ts";

const PG_URL = Deno.env.get("GK_TEST_PG_URL") ??
  "postgres://postgres@127.0.0.1:5432/test";
const RUN = `t${crypto.randomUUID().replaceAll("-", "").slice(0, 8)}`;
const TICKET = `gk_${RUN}_ticket`;
const SECRET = `gk_${RUN}_secret`;
const READER = `${RUN}-reader`;
const WRITER = `${RUN}-writer`;
const OTHER = `${RUN}-other`;

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

const ro = (plugin: string) => ({ plugin, readOnly: true });
const rw = (plugin: string) => ({ plugin, readOnly: false });

/** The behaviour both databases must show. */
async function sharedSuite(
  t: Deno.TestContext,
  db: SqlDatabase,
  real: boolean,
) {
  const c = db.sqlClient;
  await c.query(
    `CREATE TABLE ${TICKET} (id serial PRIMARY KEY, title text NOT NULL)`,
  );
  await c.query(`CREATE TABLE ${SECRET} (id int PRIMARY KEY, v text)`);
  await c.query(`INSERT INTO ${TICKET} (title) VALUES ('first'), ('second')`);
  await c.query(`INSERT INTO ${SECRET} VALUES (1, 'hidden')`);
  try {
    await db.syncPluginPrivileges(READER, { read: [TICKET], write: null });
    await db.syncPluginPrivileges(WRITER, { read: [TICKET], write: [TICKET] });
    await db.syncPluginPrivileges(OTHER, { read: null, write: null });

    await t.step("roles start without login and own their schema", async () => {
      const { rows } = await c.query(
        `SELECT r.rolcanlogin, r.rolsuper, n.nspowner = r.oid AS owns
           FROM pg_roles r, pg_namespace n WHERE r.rolname = $1 AND n.nspname = $2`,
        [pluginRoleName(READER), pluginSchemaName(READER)],
      );
      assert.deepEqual(rows, [{
        rolcanlogin: false,
        rolsuper: false,
        owns: true,
      }]);
      assert.equal(pluginRoleName(READER), `gk_plugin_${RUN}_reader`);
    });

    await t.step(
      "statements run as the plugin role with its search_path",
      async () => {
        const rows = await db.query(
          "SELECT current_user AS u, current_setting('search_path') AS sp",
          [],
          ro(READER),
        );
        assert.deepEqual(rows, [{
          u: pluginRoleName(READER),
          sp: `${pluginSchemaName(READER)}, public`,
        }]);
      },
    );

    await t.step(
      "db:read plugin reads its table; zero rows is []",
      async () => {
        const rows = await db.query(
          `SELECT id, title FROM ${TICKET} WHERE id = $1`,
          [1],
          ro(READER),
        );
        assert.deepEqual(rows, [{ id: 1, title: "first" }]);
        assert.deepEqual(
          await db.query(
            `SELECT * FROM ${TICKET} WHERE id < 0`,
            [],
            ro(READER),
          ),
          [],
        );
      },
    );

    await t.step(
      "db:read plugin's INSERT is refused by the database (25006)",
      async () => {
        await rejectsCode(
          db.exec(
            `INSERT INTO ${TICKET} (title) VALUES ($1)`,
            ["x"],
            ro(READER),
          ),
          "25006",
        );
        // Even outside READ ONLY the role has no INSERT privilege.
        await rejectsCode(
          db.exec(
            `INSERT INTO ${TICKET} (title) VALUES ($1)`,
            ["x"],
            rw(READER),
          ),
          "42501",
        );
      },
    );

    await t.step(
      "db:write plugin inserts (with the serial sequence)",
      async () => {
        assert.equal(
          await db.exec(`INSERT INTO ${TICKET} (title) VALUES ($1), ($2)`, [
            "a",
            "b",
          ], rw(WRITER)),
          2,
        );
        const rows = await db.query(
          `UPDATE ${TICKET} SET title = $1 WHERE title = $2 RETURNING id`,
          ["c", "b"],
          rw(WRITER),
        );
        assert.equal(rows.length, 1);
      },
    );

    await t.step("a table outside the grant is refused (42501)", async () => {
      await rejectsCode(
        db.query(`SELECT * FROM ${SECRET}`, [], ro(READER)),
        "42501",
      );
      await rejectsCode(
        db.query(`SELECT * FROM ${TICKET}`, [], ro(OTHER)),
        "42501",
      );
    });

    await t.step(
      "own schema works; another plugin's schema is unreachable",
      async () => {
        await db.exec("CREATE TABLE notes (id int, body text)", [], rw(READER));
        await db.exec("INSERT INTO notes VALUES (1, $1)", ["mine"], rw(READER));
        assert.deepEqual(
          await db.query("SELECT body FROM notes", [], ro(READER)),
          [{
            body: "mine",
          }],
        );
        const other = `${pluginSchemaName(READER)}.notes`;
        await rejectsCode(
          db.query(`SELECT * FROM ${other}`, [], ro(OTHER)),
          "42501",
        );
        await rejectsCode(
          db.exec(`DROP TABLE ${other}`, [], rw(OTHER)),
          "42501",
        );
        // Nothing can be created among the host's tables.
        await rejectsCode(
          db.exec(`CREATE TABLE public.${RUN}_evil (x int)`, [], rw(WRITER)),
          "42501",
        );
        // Unqualified, the other plugin's search_path does not see it.
        await rejectsCode(
          db.query("SELECT * FROM notes", [], ro(OTHER)),
          "42P01",
        );
      },
    );

    await t.step(
      "$ inside string literals is safe; $n placeholders pass through",
      async () => {
        assert.deepEqual(
          await db.query("SELECT 'costs $1' AS x", [], ro(READER)),
          [{
            x: "costs $1",
          }],
        );
        assert.deepEqual(
          await db.query(
            "SELECT $1::text || ' and $2' AS y, $$dollar $1$$ AS z",
            ["a"],
            ro(READER),
          ),
          [{ y: "a and $2", z: "dollar $1" }],
        );
        // A `?` is not rewritten.
        assert.deepEqual(await db.query("SELECT '?' AS q", [], ro(READER)), [{
          q: "?",
        }]);
      },
    );

    await t.step("rows are JSON-safe", async () => {
      const [row] = await db.query(
        `SELECT 9007199254740993::int8 AS big, 12.50::numeric AS num, 42::int4 AS i,
                1.5::float8 AS f, true AS b, NULL::text AS n,
                '2024-05-01 10:00:00.123456+00'::timestamptz AS tz,
                '2024-05-01 10:00:00'::timestamp AS ts, '2024-05-01'::date AS d,
                '\\x00ff10'::bytea AS bin, '{"a":[1,null,"x"]}'::jsonb AS j,
                '[1,2]'::json AS jj, ARRAY[1,2,3]::int4[] AS arr,
                ARRAY['a b', NULL]::text[] AS tarr, 'NaN'::float8 AS nan,
                count(*) AS cnt`,
        [],
        ro(READER),
      );
      assert.deepEqual(row, {
        big: "9007199254740993",
        num: "12.50",
        i: 42,
        f: 1.5,
        b: true,
        n: null,
        tz: "2024-05-01T10:00:00.123456Z",
        ts: "2024-05-01T10:00:00",
        d: "2024-05-01",
        bin: "AP8Q",
        j: { a: [1, null, "x"] },
        jj: [1, 2],
        arr: [1, 2, 3],
        tarr: ["a b", null],
        nan: "NaN",
        cnt: "1",
      });
      // The whole row survives JSON.
      assert.deepEqual(JSON.parse(JSON.stringify(row)), row);
      // All 256 byte values through bytea.
      const all = Uint8Array.from({ length: 256 }, (_, i) => i);
      const [b] = await db.query("SELECT $1::bytea AS v", [all], ro(READER));
      assert.equal(b.v, btoa(String.fromCharCode(...all)));
    });

    await t.step(
      "statements that could leave the role are refused",
      async () => {
        for (
          const sql of [
            "RESET ROLE",
            "SET ROLE postgres",
            "set role none",
            "/* x */ RESET ROLE",
            "  (SET SESSION AUTHORIZATION postgres)",
            "SELECT set_config('role', 'postgres', false)",
            `SELECT pg_catalog."set_config"('role', 'postgres', true)`,
            "DO $$ BEGIN EXECUTE 'RESET ROLE'; END $$",
            "COMMIT",
            "BEGIN",
            "ROLLBACK",
            "CREATE FUNCTION f() RETURNS void LANGUAGE sql AS 'RESET ROLE'",
            "CREATE OR REPLACE PROCEDURE p() LANGUAGE sql AS 'SELECT 1'",
            "ALTER ROLE postgres NOSUPERUSER",
            "GRANT ALL ON ALL TABLES IN SCHEMA public TO PUBLIC",
            "DECLARE c CURSOR WITH HOLD FOR SELECT 1",
            "FETCH ALL FROM c",
            "LISTEN x",
            "NOTIFY x",
          ]
        ) {
          await rejectsCode(db.exec(sql, [], rw(WRITER)), "GK001");
        }
        // Several statements in one string are refused by PostgreSQL itself.
        await rejectsCode(
          db.exec("SELECT 1; RESET ROLE", [], rw(WRITER)),
          "42601",
        );
        await rejectsCode(
          db.exec(`SELECT 1; DELETE FROM ${TICKET}`, [], rw(WRITER)),
          "42601",
        );
        // The pooled connection is back to the session user afterwards.
        const { rows } = await c.query("SELECT current_user AS u");
        assert.equal(rows[0].u, real ? "postgres" : "postgres");
      },
    );

    await t.step(
      "temporary tables (which outlive the transaction) are refused",
      async () => {
        await rejectsCode(
          db.exec(`CREATE TEMP TABLE ${TICKET} (x int)`, [], rw(WRITER)),
          "42501",
        );
        await rejectsCode(
          db.exec("SELECT 1 AS x INTO TEMP t", [], rw(WRITER)),
          "42501",
        );
      },
    );

    await t.step("set_config is not executable by plugin roles", async () => {
      const { rows } = await c.query(
        "SELECT has_function_privilege($1, 'pg_catalog.set_config(text,text,boolean)', 'EXECUTE') AS ok",
        [pluginRoleName(WRITER)],
      );
      assert.equal(rows[0].ok, false);
    });

    await t.step("row cap refuses the result (DbRowLimitError)", async () => {
      await assert.rejects(
        db.query("SELECT generate_series(1, 50) AS g", [], {
          ...ro(READER),
          maxRows: 10,
        }),
        DbRowLimitError,
      );
      assert.equal(
        (await db.query("SELECT generate_series(1, 10) AS g", [], {
          ...ro(READER),
          maxRows: 10,
        }))
          .length,
        10,
      );
      // A write whose RETURNING rows overflow the cap changes nothing.
      const count = async () =>
        Number(
          (await c.query(`SELECT count(*)::int AS n FROM ${TICKET}`)).rows[0]
            ?.n,
        );
      const before = await count();
      await assert.rejects(
        db.query(
          `INSERT INTO ${TICKET} (title) SELECT 'bulk' FROM generate_series(1, 20) RETURNING id`,
          [],
          { ...rw(WRITER), maxRows: 5 },
        ),
        DbRowLimitError,
      );
      assert.equal(await count(), before);
      assert.equal(
        (await db.query(
          `WITH n AS (INSERT INTO ${TICKET} (title) VALUES ('one') RETURNING id) SELECT id FROM n`,
          [],
          { ...rw(WRITER), maxRows: 5 },
        )).length,
        1,
      );
      assert.equal(await count(), before + 1);
    });

    await t.step("resync revokes what is no longer granted", async () => {
      await db.syncPluginPrivileges(READER, { read: null, write: null });
      await rejectsCode(
        db.query(`SELECT * FROM ${TICKET}`, [], ro(READER)),
        "42501",
      );
      await db.syncPluginPrivileges(READER, { read: "all", write: null });
      assert.equal(
        (await db.query(`SELECT * FROM ${SECRET}`, [], ro(READER))).length,
        1,
      );
      await db.syncPluginPrivileges(READER, { read: [TICKET], write: null });
      await rejectsCode(
        db.query(`SELECT * FROM ${SECRET}`, [], ro(READER)),
        "42501",
      );
      // Its own table survived the resync.
      assert.equal(
        (await db.query("SELECT * FROM notes", [], ro(READER))).length,
        1,
      );
    });

    await t.step("a plugin without a role gets a clear error", async () => {
      const e = await rejectsCode(
        db.query("SELECT 1", [], ro(`${RUN}-nobody`)),
        "22023",
      );
      assert.match(e.message, /syncPluginPrivileges/);
    });

    await t.step("PgStateStore keeps enabled state", async () => {
      const store = new PgStateStore({ client: c, table: `gk_${RUN}_state` });
      assert.equal(await store.get("hello"), undefined);
      await store.set("hello", { enabled: false, reason: "quarantined" });
      assert.deepEqual(await store.get("hello"), {
        enabled: false,
        reason: "quarantined",
      });
      await store.set("hello", { enabled: true });
      assert.deepEqual(await store.get("hello"), { enabled: true });
      await store.delete("hello");
      assert.equal(await store.get("hello"), undefined);
      await c.query(`DROP TABLE gk_${RUN}_state`);
    });
  } finally {
    for (const p of [READER, WRITER, OTHER]) await db.dropPlugin(p);
    await c.query(`DROP TABLE IF EXISTS ${TICKET}, ${SECRET}`);
  }
  const { rows } = await c.query(
    "SELECT count(*) AS n FROM pg_roles WHERE rolname LIKE $1",
    [
      `gk_plugin_${RUN}%`,
    ],
  );
  assert.equal(rows[0].n, "0", "roles are dropped");
}

Deno.test("database: real PostgreSQL", async (t) => {
  const db = new PgDatabase({ url: PG_URL, max: 4 });
  try {
    await sharedSuite(t, db, true);

    await t.step("statement timeout cancels (57014)", async () => {
      await db.syncPluginPrivileges(OTHER, { read: null, write: null });
      try {
        await rejectsCode(
          db.query("SELECT pg_sleep(5)", [], {
            ...ro(OTHER),
            statementTimeoutMs: 100,
          }),
          "57014",
        );
        const ac = new AbortController();
        const timer = setTimeout(() => ac.abort(), 200);
        const started = Date.now();
        await rejectsCode(
          db.query("SELECT pg_sleep(5)", [], {
            ...ro(OTHER),
            signal: ac.signal,
          }),
          "57014",
        );
        clearTimeout(timer);
        assert.ok(Date.now() - started < 4500, "abort cancelled the statement");
      } finally {
        await db.dropPlugin(OTHER);
      }
    });

    await t.step(
      "login roles: each call in a session of the plugin's role",
      async () => {
        const one = new PgDatabase({ url: PG_URL, max: 2, maxPerPlugin: 1 });
        try {
          assert.equal(one.pluginSessions, "login");
          await one.syncPluginPrivileges(OTHER, { read: null, write: null });
          const role = pluginRoleName(OTHER);
          const seen = new Set<unknown>();
          for (let i = 0; i < 3; i++) {
            for (
              const [opts, readOnly] of [[ro(OTHER), "on"], [
                rw(OTHER),
                "off",
              ]] as const
            ) {
              const [row] = await one.query(
                `SELECT session_user AS s, current_user AS u,
                        current_setting('transaction_read_only') AS ro,
                        pg_backend_pid() AS pid`,
                [],
                opts,
              );
              assert.deepEqual(
                { s: row?.s, u: row?.u, ro: row?.ro },
                { s: role, u: role, ro: readOnly },
              );
              seen.add(row?.pid);
            }
          }
          // One session throughout: read-only switched in the same round trip.
          assert.equal(seen.size, 1);
          const { rows } = await one.sqlClient.query(
            "SELECT rolcanlogin, rolconnlimit FROM pg_roles WHERE rolname = $1",
            [role],
          );
          assert.deepEqual(rows, [{ rolcanlogin: true, rolconnlimit: 3 }]);
          await one.dropPlugin(OTHER);
        } finally {
          await one.close();
        }
      },
    );

    await t.step(
      "SET LOCAL ROLE fallback, one pooled connection: the role ends with each call",
      async () => {
        const one = new PgDatabase({ url: PG_URL, max: 1, pluginLogin: false });
        try {
          assert.equal(one.pluginSessions, "set-role");
          await one.syncPluginPrivileges(OTHER, { read: null, write: null });
          for (let i = 0; i < 3; i++) {
            const [row] = await one.query(
              "SELECT session_user AS s, current_user AS u",
              [],
              ro(OTHER),
            );
            assert.deepEqual(row, { s: "postgres", u: pluginRoleName(OTHER) });
            // Read-only COMMIT is queued, not awaited: the next statement on
            // the same connection still runs after it.
            const { rows } = await one.pluginClient.query(
              "SELECT current_user AS u, current_setting('transaction_read_only') AS ro",
            );
            assert.deepEqual(rows, [{ u: "postgres", ro: "off" }]);
            await one.exec("SELECT 1", [], rw(OTHER));
          }
          await one.dropPlugin(OTHER);
        } finally {
          await one.close();
        }
      },
    );

    await t.step("named databases through @name:", async () => {
      const dbName = `gk_${RUN}_reports`;
      await db.sqlClient.query(`CREATE DATABASE ${dbName}`);
      const url2 = PG_URL.replace(/\/[^/]*$/, `/${dbName}`);
      const set = DatabaseSet.fromEnv(
        { DATABASE_URL: PG_URL, DATABASE_URL_REPORTS: url2 },
        { dataDir: "/nonexistent" },
      );
      try {
        assert.deepEqual(set.names, ["reports"]);
        const [reports, sql] = set.resolve(
          "@reports:SELECT current_database() AS d",
        );
        assert.equal(sql, "SELECT current_database() AS d");
        await reports.syncPluginPrivileges(READER, { read: null, write: null });
        await set.default.syncPluginPrivileges(READER, {
          read: null,
          write: null,
        });
        assert.deepEqual(await reports.query(sql, [], ro(READER)), [{
          d: dbName,
        }]);
        const [def, sql2] = set.resolve("SELECT current_database() AS d");
        assert.deepEqual(await def.query(sql2, [], ro(READER)), [{
          d: "test",
        }]);
        assert.throws(
          () => set.resolve("@nope:SELECT 1"),
          DatabaseNotFoundError,
        );
        // The plugin's schema in one database is not the other's.
        await reports.exec("CREATE TABLE only_here (x int)", [], rw(READER));
        await rejectsCode(
          def.query("SELECT * FROM only_here", [], ro(READER)),
          "42P01",
        );
        await reports.dropPlugin(READER);
        await set.default.dropPlugin(READER);
      } finally {
        await set.close();
        await db.sqlClient.query(
          `DROP DATABASE IF EXISTS ${dbName} WITH (FORCE)`,
        );
      }
    });
  } finally {
    await db.close();
  }
});

Deno.test("database: PGlite (embedded)", async (t) => {
  // One PGlite for the file, in a data directory as `deno task serve` uses
  // it; started lazily by the first query (it takes seconds). PGlite runs on
  // this thread, so statement_timeout and abort signals cannot interrupt a
  // running statement there: those are tested on PostgreSQL only.
  const dir = await Deno.makeTempDir();
  const db = new PgliteDatabase({ dataDir: `${dir}/pg` });
  try {
    await sharedSuite(t, db, false);
    await t.step("the data directory holds the database", async () => {
      assert.ok((await Deno.stat(`${dir}/pg/PG_VERSION`)).isFile);
    });
  } finally {
    await db.close();
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("database: @name: prefix follows GoatFlow's rule", () => {
  const def = new PgliteDatabase({});
  const other = new PgliteDatabase({});
  const set = new DatabaseSet({ default: def, named: { Reports: other } });
  assert.deepEqual(set.resolve("@reports: SELECT 1"), [other, " SELECT 1"]);
  assert.deepEqual(set.resolve("@REPORTS:x"), [other, "x"]);
  assert.deepEqual(set.resolve("@:SELECT 1"), [def, "@:SELECT 1"]);
  assert.deepEqual(set.resolve("@default:SELECT 1"), [def, "SELECT 1"]);
  assert.deepEqual(set.resolve("SELECT '@x:y'"), [def, "SELECT '@x:y'"]);
  assert.deepEqual(set.resolve("@noColon"), [def, "@noColon"]);
  assert.throws(() => set.resolve("@missing:SELECT 1"), DatabaseNotFoundError);
  // Nothing was started, so nothing to close but the objects.
  assert.equal(def.sqlClient.started, false);
});

Deno.test("database: statement guard and type conversion units", () => {
  assert.deepEqual(leadingWords("-- c\n /* a /* nested */ b */ ((select 1"), [
    "select",
  ]);
  assert.doesNotThrow(() =>
    checkPluginStatement("p", "WITH x AS (SELECT 1) SELECT * FROM x")
  );
  assert.doesNotThrow(() =>
    checkPluginStatement("p", "CREATE TABLE t (x int)")
  );
  assert.doesNotThrow(() => checkPluginStatement("p", "SELECT 'reset role'"));
  assert.throws(
    () => checkPluginStatement("p", "create or replace function f()"),
    DbQueryError,
  );
  assert.throws(() =>
    checkPluginStatement("p", `SELECT U&"\\0073et_config"('role','x',true)`)
  );
  // Functions whose effects outlive the transaction, in any case, anywhere.
  for (
    const sql of [
      "SELECT pg_advisory_lock(1)",
      "SELECT PG_TRY_ADVISORY_XACT_LOCK_SHARED(1)",
      "SELECT pg_notify('app', 'x')",
      "SELECT pg_catalog.pg_cancel_backend(1)",
      "SELECT pg_terminate_backend(1)",
      "SELECT lo_create(0)",
      "SELECT loread(0, 1)",
      "SELECT query_to_xml('SELECT pg_notify(''a'', ''b'')', true, true, '')",
      "SELECT dblink_connect('x')",
      "SELECT setseed(0.5)",
      "CREATE RULE r AS ON INSERT TO t DO ALSO NOTIFY app",
    ]
  ) {
    assert.throws(() => checkPluginStatement("p", sql), DbQueryError, sql);
  }
  // Look-alikes are fine.
  for (
    const sql of [
      "SELECT hello_world, lo_price, pg_sleep(0) FROM t",
      "SELECT 'pg advisory' AS x",
    ]
  ) {
    assert.doesNotThrow(() => checkPluginStatement("p", sql), sql);
  }
  assert.equal(
    pgTextToJson(1184, "2024-05-01 12:00:00+05:30"),
    "2024-05-01T12:00:00+05:30",
  );
  assert.equal(pgTextToJson(1184, "infinity"), "infinity");
  assert.equal(pgTextToJson(1082, "2024-05-01"), "2024-05-01");
  assert.equal(pgTextToJson(17, "\\x"), "");
  assert.deepEqual(pgTextToJson(1007, "{{1,2},{3,NULL}}"), [[1, 2], [3, null]]);
});
