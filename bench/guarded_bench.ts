/**
 * The cost of the guarded `dbQuery` over a direct `pg` query, against the
 * real PostgreSQL at 127.0.0.1:5432 (database `test`; override with
 * `GOATKIT_TEST_DATABASE_URL`). Run: `deno bench -A bench/guarded_bench.ts`.
 *
 * - baseline: `pg.Pool.query` of a one-row parameterised SELECT (one round
 *   trip);
 * - `PgDatabase.query`: the same through the database service on a
 *   connection logged in as the plugin's role (statement check, row cap,
 *   JSON-safe rows; one round trip), no permission guard;
 * - guarded `dbQuery`: the service behind the permission guard (grant read,
 *   effective-permission check, SQL scope pre-check, privilege-sync check)
 *   — the figure issue 12 asks to be ≤ 1.2× the baseline;
 * - the `SET LOCAL ROLE` fallback (`pluginLogin: false`): `BEGIN READ ONLY`
 *   + `SET LOCAL …`, the statement, `ROLLBACK` + session reset, several round
 *   trips (what every plugin statement cost before the login roles).
 *
 * Each pool has the same size and is warmed up before the runs. On a busy
 * machine compare the p75 column too: the averages carry scheduling noise.
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
const shared = new PgDatabase({ url, max: 4, pluginLogin: false });
const grants = new MemoryGrantStore();
await grants.set(plugin, ["db:read"]);
const host = createGuardedHostAPI({
  plugin,
  requested: ["db:read"],
  grants,
  services: { db },
});
const ctx = createCallContext({ timeoutMs: 3_600_000 });
const ro = { plugin, readOnly: true };
// Warm up (pools connected, privileges synced, the role's login set, the
// JIT settled): without it the first bench of the group runs slower.
for (let i = 0; i < 2000; i++) {
  await pool.query(SQL, [i]);
  await host.dbQuery(ctx, SQL, [i]);
  await db.query(SQL, [i], ro);
  await shared.query(SQL, [i], ro);
}

// The first bench of a run is slowed by the runner itself (up to 2× here):
// a throw-away bench takes that place, and the baseline runs last.
let i = 0;
Deno.bench({
  group: "warm_up",
  name: "warm-up (not compared)",
  async fn() {
    await pool.query(SQL, [++i]);
    await host.dbQuery(ctx, SQL, [++i]);
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
  group: "db_query",
  name: "PgDatabase.query (login role, no guard)",
  async fn() {
    await db.query(SQL, [++i], ro);
  },
});

Deno.bench({
  group: "db_query",
  name: "PgDatabase.query (SET LOCAL ROLE fallback)",
  async fn() {
    await shared.query(SQL, [++i], ro);
  },
});

Deno.bench({
  group: "db_query",
  name: "direct pg.Pool.query",
  baseline: true,
  async fn() {
    await pool.query(SQL, [++i]);
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
  shared.close().catch(() => {});
});
