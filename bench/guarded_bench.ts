/**
 * The cost of the guarded `dbQuery` over a direct `pg` query, against the
 * real PostgreSQL at 127.0.0.1:5432 (database `test`; override with
 * `GOATKIT_TEST_DATABASE_URL`). Run: `deno bench -A bench/guarded_bench.ts`.
 *
 * - baseline: `pg.Pool.query` of a one-row parameterised SELECT;
 * - `PgDatabase.query`: the same through the database service (transaction,
 *   `SET LOCAL ROLE`, `READ ONLY`, statement timeout, row cap), no guard;
 * - guarded `dbQuery`: the service behind the permission guard (grant read,
 *   effective-permission check, SQL scope pre-check, privilege-sync check).
 */
import pg from "pg";
import { createGuardedHostAPI, MemoryGrantStore } from "../permissions/mod.ts";
import { PgDatabase } from "../host/services/database.ts";
import { createCallContext } from "../host/model/plugin.ts";

const url = Deno.env.get("GOATKIT_TEST_DATABASE_URL") ??
  "postgres://postgres@127.0.0.1:5432/test";
const SQL = "SELECT $1::int AS n, 'x' AS s";
const plugin = "bench-guard";

const pool = new pg.Pool({ connectionString: url, max: 4 });
const db = new PgDatabase({ url, max: 4 });
const grants = new MemoryGrantStore();
await grants.set(plugin, ["db:read"]);
const host = createGuardedHostAPI({
  plugin,
  requested: ["db:read"],
  grants,
  services: { db },
});
const ctx = createCallContext({ timeoutMs: 3_600_000 });
// Warm up: pools connected, privileges synced.
await pool.query(SQL, [1]);
await host.dbQuery(ctx, SQL, [1]);
await db.query(SQL, [1], { plugin, readOnly: true });

let i = 0;
Deno.bench({
  group: "db_query",
  name: "direct pg.Pool.query",
  baseline: true,
  async fn() {
    await pool.query(SQL, [++i]);
  },
});

Deno.bench({
  group: "db_query",
  name: "PgDatabase.query (role, READ ONLY tx, no guard)",
  async fn() {
    await db.query(SQL, [++i], { plugin, readOnly: true });
  },
});

Deno.bench({
  group: "db_query",
  name: "guarded dbQuery",
  async fn() {
    await host.dbQuery(ctx, SQL, [++i]);
  },
});

Deno.bench({
  group: "guard_only",
  name: "guard checks with a no-op database",
  baseline: true,
  async fn() {
    await guardOnly.dbQuery(ctx, SQL, [++i]);
  },
});

const noop = {
  query: () => Promise.resolve([]),
  exec: () => Promise.resolve(0),
  syncPluginPrivileges: () => Promise.resolve(),
};
const guardOnly = createGuardedHostAPI({
  plugin,
  requested: ["db:read"],
  grants,
  services: { db: noop },
});

globalThis.addEventListener("unload", () => {
  host.close();
  guardOnly.close();
  // Best effort: the bench runner exits right after.
  db.dropPlugin(plugin).catch(() => {});
  pool.end().catch(() => {});
  db.close().catch(() => {});
});
