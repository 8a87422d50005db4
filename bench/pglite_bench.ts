// Cost of running PGlite in a worker (PgliteClient: a message to the worker
// and one back per statement) against PGlite on the calling thread (the
// baseline, as the host did before issue 10 item 6), both in memory, in the
// same run. Run: deno bench -A bench/pglite_bench.ts

import { PGlite } from "@electric-sql/pglite";
import { PgliteClient, pgTextToJson } from "../host/services/mod.ts";

const SETUP = "SET LOCAL statement_timeout = 5000";

const inThread = new PGlite();
await inThread.waitReady;
const types = await inThread.query<{ oid: number }>(
  "SELECT oid::int4 AS oid FROM pg_type",
);
for (const { oid } of types.rows) {
  inThread.parsers[oid] = (text: string) => pgTextToJson(oid, text);
}
const worker = new PgliteClient({});
await worker.query("SELECT 1");

addEventListener("unload", () => {
  inThread.close();
  worker.close();
});

let i = 0;

Deno.bench({
  group: "pglite_query",
  name: "PGlite on this thread: SELECT $1::int",
  baseline: true,
  async fn() {
    await inThread.query("SELECT $1::int AS n", [i++]);
  },
});

Deno.bench({
  group: "pglite_query",
  name: "PgliteClient (worker): SELECT $1::int",
  async fn() {
    await worker.query("SELECT $1::int AS n", [i++]);
  },
});

Deno.bench({
  group: "pglite_transaction",
  name: "PGlite on this thread: read-only txn + setup + SELECT",
  baseline: true,
  async fn() {
    await inThread.transaction(async (tx) => {
      await tx.exec(`SET TRANSACTION READ ONLY; ${SETUP}`);
      await tx.query("SELECT $1::int AS n", [i++]);
    });
  },
});

Deno.bench({
  group: "pglite_transaction",
  name: "PgliteClient (worker): read-only txn + setup + SELECT",
  async fn() {
    await worker.transaction(
      { readOnly: true, setup: SETUP },
      (s) => s.query("SELECT $1::int AS n", [i++]),
    );
  },
});

Deno.bench({
  group: "pglite_rows",
  name: "PGlite on this thread: 1000 rows",
  baseline: true,
  async fn() {
    await inThread.query(
      "SELECT g AS id, md5(g::text) AS v FROM generate_series(1, 1000) g",
    );
  },
});

Deno.bench({
  group: "pglite_rows",
  name: "PgliteClient (worker): 1000 rows",
  async fn() {
    await worker.query(
      "SELECT g AS id, md5(g::text) AS v FROM generate_series(1, 1000) g",
    );
  },
});
