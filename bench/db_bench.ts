// Overhead of running a plugin's query through the database service (a
// transaction, SET LOCAL ROLE / search_path / statement_timeout, the
// statement guard, JSON-safe row conversion, COMMIT) over a direct `pg`
// query on the same real PostgreSQL (127.0.0.1:5432/test), and the same for
// PGlite. Run: deno bench -A bench/db_bench.ts
//
// The permissions helper adds the guarded HostAPI `dbQuery` row to group
// "db_query" below.

import pg from "pg";
import { PgDatabase, PgliteDatabase } from "../host/services/mod.ts";

const PG_URL = Deno.env.get("GK_TEST_PG_URL") ??
  "postgres://postgres@127.0.0.1:5432/test";
const PLUGIN = "bench-db";

const pool = new pg.Pool({ connectionString: PG_URL, max: 1 });
const db = new PgDatabase({ url: PG_URL, max: 1 });
await db.syncPluginPrivileges(PLUGIN, { read: null, write: null });
const pglite = new PgliteDatabase({});
await pglite.syncPluginPrivileges(PLUGIN, { read: null, write: null });

addEventListener("unload", () => {
  // Leave the role for the next run (sync is idempotent); close connections.
  pool.end();
  db.close();
  pglite.close();
});

let i = 0;

Deno.bench({
  group: "db_query",
  name: "direct pg: SELECT $1::int",
  baseline: true,
  async fn() {
    await pool.query("SELECT $1::int AS n", [i++]);
  },
});

Deno.bench({
  group: "db_query",
  name: "PgDatabase.query (txn + SET LOCAL ROLE, read only)",
  async fn() {
    await db.query("SELECT $1::int AS n", [i++], {
      plugin: PLUGIN,
      readOnly: true,
    });
  },
});

Deno.bench({
  group: "db_query_pglite",
  name: "direct PGlite: SELECT $1::int",
  baseline: true,
  async fn() {
    await pglite.sqlClient.query("SELECT $1::int AS n", [i++]);
  },
});

Deno.bench({
  group: "db_query_pglite",
  name: "PgliteDatabase.query (txn + SET LOCAL ROLE, read only)",
  async fn() {
    await pglite.query("SELECT $1::int AS n", [i++], {
      plugin: PLUGIN,
      readOnly: true,
    });
  },
});
