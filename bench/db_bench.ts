// Overhead of running a plugin's query through the database service over a
// direct `pg` query on the same real PostgreSQL (127.0.0.1:5432/test): on a
// connection logged in as the plugin's role (statement check, row cap,
// JSON-safe rows; one round trip), and on the SET LOCAL ROLE fallback
// (transaction, SET LOCAL ROLE / search_path / statement_timeout, ROLLBACK
// and session reset); and the same for PGlite (always the SET LOCAL ROLE
// path). Run: deno bench -A bench/db_bench.ts
//
// The guarded HostAPI `dbQuery` against the same baseline is in
// `guarded_bench.ts`.

import pg from "pg";
import { PgDatabase, PgliteDatabase } from "../host/services/mod.ts";

const PG_URL = Deno.env.get("GK_TEST_PG_URL") ??
  "postgres://postgres@127.0.0.1:5432/test";
const PLUGIN = "bench-db";

const pool = new pg.Pool({ connectionString: PG_URL, max: 1 });
const db = new PgDatabase({ url: PG_URL, max: 1 });
const shared = new PgDatabase({ url: PG_URL, max: 1, pluginLogin: false });
await db.syncPluginPrivileges(PLUGIN, { read: null, write: null });
// Warm up: connections open, the role's login set.
for (let n = 0; n < 20; n++) {
  await pool.query("SELECT 1");
  await db.query("SELECT 1", [], { plugin: PLUGIN, readOnly: true });
  await shared.query("SELECT 1", [], { plugin: PLUGIN, readOnly: true });
}
const pglite = new PgliteDatabase({});
await pglite.syncPluginPrivileges(PLUGIN, { read: null, write: null });

addEventListener("unload", () => {
  // Leave the role for the next run (sync is idempotent); close connections.
  pool.end();
  db.close();
  shared.close();
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
  name: "PgDatabase.query (login role, read only)",
  async fn() {
    await db.query("SELECT $1::int AS n", [i++], {
      plugin: PLUGIN,
      readOnly: true,
    });
  },
});

Deno.bench({
  group: "db_query",
  name: "PgDatabase.query (fallback: txn + SET LOCAL ROLE, read only)",
  async fn() {
    await shared.query("SELECT $1::int AS n", [i++], {
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
