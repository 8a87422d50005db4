// PGlite runs in a worker (issue 10, item 6): plugin SQL cannot stall the
// host's event loop, the caller's deadline is honoured, and the embedded
// database behaves as before (JSON-safe rows, transactions, read-only,
// row caps, persistence, concurrent callers). Real PGlite: one in-memory
// instance for most of the file (it takes seconds to start) and one in a
// temporary data directory.

import assert from "node:assert/strict";
import {
  DbQueryError,
  PgliteClient,
  PgliteDatabase,
  PgliteQueryError,
  PgliteUnavailableError,
  pgTextToJson,
} from "../host/services/mod.ts";
import { pluginSchemaName } from "../permissions/mod.ts";

const RUN = `t${crypto.randomUUID().replaceAll("-", "").slice(0, 8)}`;
const ro = (plugin: string, signal?: AbortSignal) => ({
  plugin,
  readOnly: true,
  ...(signal ? { signal } : {}),
});
const rw = (plugin: string, signal?: AbortSignal) => ({
  plugin,
  readOnly: false,
  ...(signal ? { signal } : {}),
});

/** Counts host timer ticks (10 ms interval) until stopped. */
function tickCounter(): { readonly count: number; stop(): void } {
  let count = 0;
  const id = setInterval(() => count++, 10);
  return {
    get count() {
      return count;
    },
    stop: () => clearInterval(id),
  };
}

async function rejection(p: Promise<unknown>): Promise<unknown> {
  try {
    await p;
  } catch (e) {
    return e;
  }
  assert.fail("expected a rejection");
}

function isAbortError(e: unknown): boolean {
  return e instanceof DOMException && e.name === "AbortError";
}

// A statement that computes in memory only: it reads no clock, so nothing
// can interrupt it (about 2 s here).
const CPU_BOUND =
  "SELECT count(*) AS n FROM generate_series(1, 3000) a, generate_series(1, 6000) b";

Deno.test("pglite worker: embedded database off the host thread", async (t) => {
  const db = new PgliteDatabase({});
  const hostile = `${RUN}-hostile`;
  const writer = `${RUN}-writer`;
  const table = `gk_${RUN}_t`;
  try {
    assert.equal(db.sqlClient.started, false, "nothing starts before use");
    await db.syncPluginPrivileges(hostile, { read: null, write: null });
    await db.syncPluginPrivileges(writer, { read: [table], write: [table] });
    await db.sqlClient.query(`CREATE TABLE ${table} (id int, v text)`);
    await db.syncPluginPrivileges(writer, { read: [table], write: [table] });
    assert.equal(
      db.sqlClient.interruptible,
      true,
      "this PGlite build exports the interrupt flags the worker uses",
    );

    await t.step(
      "hostile: pg_sleep(4) against an 800 ms deadline rejects while the host ticks",
      async () => {
        const ticks = tickCounter();
        const events: string[] = [];
        try {
          const hostileCall = db.query(
            "SELECT pg_sleep(4)",
            [],
            ro(hostile, AbortSignal.timeout(800)),
          ).then(
            () => events.push("hostile answered"),
            (e) => {
              events.push("hostile rejected");
              return e;
            },
          );
          // Queued behind it: answered only once the worker is free again.
          const next = db.sqlClient.query("SELECT 42 AS x").then((r) => {
            events.push("next answered");
            return r;
          });
          const e = await hostileCall;
          const ticksAtRejection = ticks.count;
          assert.ok(e instanceof DbQueryError, `got ${e}`);
          assert.equal(e.code, "57014");
          assert.ok(
            ticksAtRejection >= 20,
            `the host's timers ran while PGlite worked (${ticksAtRejection} ticks)`,
          );
          assert.deepEqual((await next).rows, [{ x: 42 }]);
          assert.deepEqual(events, [
            "hostile rejected",
            "next answered",
          ]);
        } finally {
          ticks.stop();
        }
        // The database answers plugin calls again.
        assert.deepEqual(
          await db.query("SELECT $1::int AS n", [7], ro(hostile)),
          [{ n: 7 }],
        );
      },
    );

    await t.step(
      "the worker interrupts the sleeping statement (it does not run to its end)",
      async () => {
        // nextval is not undone by ROLLBACK: the sequence shows how far the
        // statement got.
        await db.exec("CREATE SEQUENCE probe", [], rw(writer));
        const e = await rejection(
          db.query(
            "SELECT nextval('probe') AS a, pg_sleep(4), nextval('probe') AS b",
            [],
            rw(writer, AbortSignal.timeout(500)),
          ),
        );
        assert.ok(e instanceof DbQueryError && e.code === "57014", `${e}`);
        const { rows } = await db.sqlClient.query(
          `SELECT last_value FROM ${pluginSchemaName(writer)}.probe`,
        );
        assert.deepEqual(
          rows,
          [{ last_value: "1" }],
          "second nextval never ran",
        );
      },
    );

    await t.step(
      "statement_timeout is enforced by the worker (57014)",
      async () => {
        const e = await rejection(
          db.query("SELECT pg_sleep(4)", [], {
            ...ro(hostile),
            statementTimeoutMs: 300,
          }),
        );
        assert.ok(e instanceof DbQueryError, `${e}`);
        assert.equal(e.code, "57014");
        assert.match(e.message, /statement timeout/);
      },
    );

    await t.step(
      "hostile: an uncancellable CPU-bound statement — the caller rejects, the host ticks, queued work whose caller left never runs",
      async () => {
        const ticks = tickCounter();
        const events: string[] = [];
        try {
          const heavy = db.query(
            CPU_BOUND,
            [],
            ro(hostile, AbortSignal.timeout(300)),
          )
            .then(
              () => events.push("heavy answered"),
              (e) => {
                events.push("heavy rejected");
                return e;
              },
            );
          // Waits behind the heavy statement and gives up first.
          const dropped = rejection(
            db.exec(
              `INSERT INTO public.${table} VALUES (1, 'must not run')`,
              [],
              rw(writer, AbortSignal.timeout(100)),
            ),
          ).then((e) => {
            events.push("queued insert rejected");
            return e;
          });
          // The host's own statement (no deadline) waits for its turn.
          const next = db.sqlClient.query("SELECT 42 AS x").then((r) => {
            events.push("next answered");
            return r;
          });
          const droppedError = await dropped;
          assert.ok(droppedError instanceof DbQueryError, `${droppedError}`);
          assert.equal(droppedError.code, "57014");
          const heavyError = await heavy;
          assert.ok(heavyError instanceof DbQueryError, `${heavyError}`);
          assert.equal(heavyError.code, "57014");
          const ticksAtRejection = ticks.count;
          assert.deepEqual((await next).rows, [{ x: 42 }]);
          const ticksWhileBusy = ticks.count - ticksAtRejection;
          assert.deepEqual(events, [
            "queued insert rejected",
            "heavy rejected",
            "next answered",
          ]);
          assert.ok(
            ticksWhileBusy >= 5,
            `the host ticked while the worker still ran the statement (${ticksWhileBusy})`,
          );
        } finally {
          ticks.stop();
        }
        const { rows } = await db.sqlClient.query(
          `SELECT count(*) AS n FROM ${table}`,
        );
        assert.deepEqual(rows, [{ n: "0" }], "the dropped INSERT never ran");
      },
    );

    await t.step(
      "a transaction whose caller went away is rolled back; its session is closed",
      async () => {
        const ac = new AbortController();
        let lateError: unknown;
        const e = await rejection(
          db.sqlClient.transaction({ signal: ac.signal }, async (s) => {
            await s.query(`INSERT INTO ${table} VALUES (2, 'rolled back')`);
            setTimeout(() => ac.abort(), 200);
            try {
              await s.query("SELECT pg_sleep(3)");
            } catch {
              lateError = await rejection(s.query("SELECT 1"));
            }
          }),
        );
        assert.ok(isAbortError(e), `${e}`);
        const { rows } = await db.sqlClient.query(
          `SELECT count(*) AS n FROM ${table}`,
        );
        assert.deepEqual(rows, [{ n: "0" }]);
        // fn may keep running after the abort: its statements are refused.
        assert.ok(isAbortError(lateError), `${lateError}`);
      },
    );

    await t.step("rows and types round-trip JSON-safe", async () => {
      const { rows } = await db.sqlClient.query(
        `SELECT 9007199254740993::int8 AS big, 1.50::numeric AS num,
                '{"a":[1,true,null]}'::json AS j, '{"b":2}'::jsonb AS jb,
                '\\x00ff10'::bytea AS bin, DATE '2024-05-01' AS d,
                TIMESTAMPTZ '2024-05-01 10:00:00.123456+02' AS tz,
                TIMESTAMP '2024-05-01 10:00:00' AS ts, true AS yes,
                ARRAY[1, 2]::int4[] AS ints, ARRAY['x', NULL]::text[] AS texts,
                'NaN'::float8 AS nan, 2.5::float8 AS f, NULL::int AS nothing,
                $1::bytea AS param_bin, $2::int8 AS param_big`,
        [new Uint8Array([1, 2, 3]), "12345678901234567"],
      );
      assert.deepEqual(rows, [{
        big: "9007199254740993",
        num: "1.50",
        j: { a: [1, true, null] },
        jb: { b: 2 },
        bin: "AP8Q",
        d: "2024-05-01",
        tz: "2024-05-01T08:00:00.123456Z",
        ts: "2024-05-01T10:00:00",
        yes: true,
        ints: [1, 2],
        texts: ["x", null],
        nan: "NaN",
        f: 2.5,
        nothing: null,
        param_bin: "AQID",
        param_big: "12345678901234567",
      }]);
      assert.equal(rows[0].bin, pgTextToJson(17, "\\x00ff10"));
    });

    await t.step(
      "maxRows keeps maxRows + 1 rows and sets truncated",
      async () => {
        await db.sqlClient.transaction({ readOnly: true }, async (s) => {
          const capped = await s.query(
            "SELECT generate_series(1, 10) AS n",
            [],
            { maxRows: 3 },
          );
          assert.equal(capped.truncated, true);
          assert.deepEqual(capped.rows.map((r) => r.n), [1, 2, 3, 4]);
          assert.equal(capped.rowCount, 10);
          const whole = await s.query(
            "SELECT generate_series(1, 3) AS n",
            [],
            { maxRows: 3 },
          );
          assert.equal(whole.truncated, false);
          assert.equal(whole.rows.length, 3);
        });
        // Through the service: more than maxRows rows is refused.
        await assert.rejects(
          db.query("SELECT generate_series(1, 10)", [], {
            ...ro(hostile),
            maxRows: 3,
          }),
          (e: Error) => e.name === "DbRowLimitError",
        );
      },
    );

    await t.step("transactions commit, and roll back on error", async () => {
      await db.sqlClient.transaction({}, async (s) => {
        const r = await s.query(`INSERT INTO ${table} VALUES ($1, $2)`, [
          10,
          "kept",
        ]);
        assert.equal(r.rowCount, 1);
        await s.exec(`UPDATE ${table} SET v = 'kept!' WHERE id = 10`);
      });
      await assert.rejects(
        db.sqlClient.transaction({}, async (s) => {
          await s.query(`INSERT INTO ${table} VALUES (11, 'gone')`);
          throw new Error("changed my mind");
        }),
        /changed my mind/,
      );
      const sqlError = await rejection(
        db.sqlClient.transaction({}, async (s) => {
          await s.query(`INSERT INTO ${table} VALUES (12, 'gone')`);
          await s.query("SELECT 1/0");
        }),
      );
      assert.ok(sqlError instanceof PgliteQueryError, `${sqlError}`);
      assert.equal(sqlError.code, "22012");
      const { rows } = await db.sqlClient.query(
        `SELECT id, v FROM ${table} ORDER BY id`,
      );
      assert.deepEqual(rows, [{ id: 10, v: "kept!" }]);
      // A setup that fails ends the transaction too.
      const setupError = await rejection(
        db.sqlClient.transaction(
          { setup: "SET LOCAL ROLE gk_no_such_role" },
          () => Promise.resolve(),
        ),
      );
      assert.ok(setupError instanceof PgliteQueryError, `${setupError}`);
      assert.equal(setupError.code, "22023");
      assert.deepEqual(
        (await db.sqlClient.query("SELECT current_user AS u")).rows,
        [{ u: "postgres" }],
      );
    });

    await t.step(
      "rollback ends a successful transaction with ROLLBACK; reset runs after the end",
      async () => {
        const name = `gk_reset_${RUN}`;
        const n = await db.sqlClient.transaction(
          { rollback: true, reset: `SET application_name = '${name}'` },
          async (s) => {
            await s.query(`INSERT INTO ${table} VALUES (30, 'discarded')`);
            return 1;
          },
        );
        assert.equal(n, 1);
        const { rows } = await db.sqlClient.query(
          `SELECT count(*) AS n, current_setting('application_name') AS app
             FROM ${table} WHERE id = 30`,
        );
        assert.deepEqual(rows, [{ n: "0", app: name }]);
        await db.sqlClient.query("RESET application_name");
      },
    );

    await t.step("a read-only transaction refuses writes (25006)", async () => {
      const e = await rejection(
        db.sqlClient.transaction(
          { readOnly: true },
          (s) => s.query(`INSERT INTO ${table} VALUES (20, 'no')`),
        ),
      );
      assert.ok(e instanceof PgliteQueryError, `${e}`);
      assert.equal(e.code, "25006");
      const viaService = await rejection(
        db.exec(`INSERT INTO public.${table} VALUES (21, 'no')`, [], {
          plugin: writer,
          readOnly: true,
        }),
      );
      assert.ok(viaService instanceof DbQueryError);
      assert.equal(viaService.code, "25006");
    });

    await t.step("concurrent callers are serialised", async () => {
      await db.sqlClient.query(
        `CREATE TABLE ${table}_c (k int PRIMARY KEY, n int)`,
      );
      await db.sqlClient.query(`INSERT INTO ${table}_c VALUES (1, 0)`);
      // Read, yield to the host, write: lost updates if two interleaved.
      const bump = () =>
        db.sqlClient.transaction({}, async (s) => {
          const { rows } = await s.query(
            `SELECT n FROM ${table}_c WHERE k = 1`,
          );
          await new Promise((r) => setTimeout(r, 1));
          await s.query(`UPDATE ${table}_c SET n = $1 WHERE k = 1`, [
            (rows[0].n as number) + 1,
          ]);
          return rows[0].n as number;
        });
      const seen = await Promise.all([
        ...Array.from({ length: 20 }, bump),
        ...Array.from(
          { length: 10 },
          (_, i) =>
            db.query("SELECT $1::int AS i", [i], ro(hostile)).then((r) =>
              -1 - (r[0].i as number)
            ),
        ),
      ]);
      assert.deepEqual(
        seen.filter((n) => n >= 0).sort((a, b) => a - b),
        Array.from({ length: 20 }, (_, i) => i),
      );
      const { rows } = await db.sqlClient.query(
        `SELECT n FROM ${table}_c WHERE k = 1`,
      );
      assert.deepEqual(rows, [{ n: 20 }]);
    });
  } finally {
    await db.dropPlugin(hostile).catch(() => {});
    await db.dropPlugin(writer).catch(() => {});
    await db.close();
  }
});

Deno.test("pglite worker: data directory — failed start is retried, data persists across close/reopen", async () => {
  const dir = await Deno.makeTempDir();
  const blocker = `${dir}/blocker`;
  try {
    // The data directory cannot be created: the start fails, is not kept.
    await Deno.writeTextFile(blocker, "a file, not a directory");
    // One call holds the worker (here: its failing start), one more may
    // wait, the next is refused at once.
    const small = new PgliteClient({
      dataDir: `${blocker}/pg`,
      maxWaiting: 1,
    });
    const holding = rejection(small.query("SELECT 1"));
    const waiting = rejection(small.query("SELECT 2"));
    const refused = await rejection(small.query("SELECT 3"));
    assert.ok(refused instanceof PgliteUnavailableError, `${refused}`);
    assert.equal(refused.code, "53300");
    for (const e of [await holding, await waiting]) {
      assert.ok(e instanceof PgliteUnavailableError, `${e}`);
      assert.equal(e.code, "08001", "each call retried the start");
    }
    await small.close();
    const first = new PgliteClient({ dataDir: `${blocker}/pg` });
    const e = await rejection(first.query("SELECT 1"));
    assert.ok(e instanceof PgliteUnavailableError, `${e}`);
    assert.equal(e.code, "08001");
    assert.equal(first.started, false);
    await Deno.remove(blocker);
    await first.query(`CREATE TABLE kept (id int8, note text)`);
    await first.query("INSERT INTO kept VALUES ($1, $2)", [
      "9007199254740993",
      "survives",
    ]);
    assert.equal(first.started, true);
    // close() is idempotent, also when called twice at once.
    await Promise.all([first.close(), first.close()]);
    await first.close();
    const closed = await rejection(first.query("SELECT 1"));
    assert.ok(closed instanceof PgliteUnavailableError, `${closed}`);
    assert.equal(closed.code, "08003");
    assert.ok((await Deno.stat(`${blocker}/pg/PG_VERSION`)).isFile);

    const second = new PgliteClient({ dataDir: `${blocker}/pg` });
    try {
      assert.deepEqual((await second.query("SELECT * FROM kept")).rows, [{
        id: "9007199254740993",
        note: "survives",
      }]);
    } finally {
      await second.close();
    }
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});
