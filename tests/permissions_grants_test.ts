/**
 * Grant stores (memory and the real PostgreSQL at 127.0.0.1:5432, database
 * `test`), the default policy, applyGrantPolicy at install and upgrade.
 */
import assert from "node:assert/strict";
import pg from "pg";
import {
  applyGrantPolicy,
  GrantPolicy,
  type GrantStore,
  MemoryGrantStore,
  pendingPermissions,
  PermissionSyntaxError,
  PgGrantStore,
} from "../permissions/mod.ts";

const DATABASE_URL = Deno.env.get("GOATKIT_TEST_DATABASE_URL") ??
  "postgres://postgres@127.0.0.1:5432/test";

async function exerciseStore(store: GrantStore) {
  const changes: string[] = [];
  const off = store.subscribe((p) => changes.push(p));
  assert.equal(await store.get("hello"), undefined, "never decided");
  await store.set("hello", ["log", "db:read:b,a", "http:API.example.com"]);
  assert.deepEqual(await store.get("hello"), [
    "db:read:a,b",
    "http:api.example.com",
    "log",
  ]);
  await store.revoke("hello", ["http:api.example.com"]);
  assert.deepEqual(await store.get("hello"), ["db:read:a,b", "log"]);
  await store.revoke("hello");
  assert.deepEqual(await store.get("hello"), [], "decided: nothing granted");
  await assert.rejects(store.set("hello", ["db:admin"]), PermissionSyntaxError);
  assert.deepEqual(await store.get("hello"), [], "a bad grant changes nothing");
  off();
  await store.set("hello", ["log"]);
  assert.deepEqual(changes, ["hello", "hello", "hello"]);
}

Deno.test("grants: memory store", async () => {
  await exerciseStore(new MemoryGrantStore());
});

Deno.test("grants: PostgreSQL store (real server)", async () => {
  const pool = new pg.Pool({ connectionString: DATABASE_URL, max: 2 });
  const table = `goatkit_plugin_grants_t${crypto.randomUUID().slice(0, 8)}`;
  try {
    const store = new PgGrantStore({ client: pool, table, cacheTtlMs: 60_000 });
    await exerciseStore(store);
    // Another host's store sees the change after its cache expires (0 = every read).
    const other = new PgGrantStore({ client: pool, table, cacheTtlMs: 0 });
    await store.set("hello", ["cache:read"]);
    assert.deepEqual(await other.get("hello"), ["cache:read"]);
    await other.set("hello", ["cache:write"]);
    assert.deepEqual(await other.get("hello"), ["cache:write"]);
    // `store` still serves its cached read until it changes something itself.
    await store.revoke("hello", ["cache:read"]);
    assert.deepEqual(await store.get("hello"), ["cache:write"]);
    await store.delete("hello");
    assert.equal(await other.get("hello"), undefined);
    const { rows } = await pool.query(
      `SELECT count(*)::int AS n FROM ${table}`,
    );
    assert.equal(rows[0].n, 0);
    assert.throws(
      () => new PgGrantStore({ client: pool, table: "x; drop table y" }),
      TypeError,
    );
  } finally {
    await pool.query(`DROP TABLE IF EXISTS ${table}`);
    await pool.end();
  }
});

Deno.test("grants: the default policy holds back network and e-mail", () => {
  const policy = new GrantPolicy();
  assert.deepEqual(
    policy.decide([
      "db:read",
      "db:write:t",
      "cache:read",
      "http:external",
      "http:api.x.com",
      "email:*@x.com",
      "config:app.*",
      "plugins:call",
      "fs:write:cache",
      "log",
    ]),
    {
      granted: [
        "cache:read",
        "config:app.*",
        "db:read",
        "db:write:t",
        "fs:write:cache",
        "log",
        "plugins:call",
      ],
      pending: ["email:*@x.com", "http:api.x.com", "http:external"],
    },
  );
  assert.deepEqual(
    new GrantPolicy({ requireApproval: ["db", "http", "email"] }).decide([
      "db:read",
      "cache:read",
    ]),
    { granted: ["cache:read"], pending: ["db:read"] },
  );
  assert.deepEqual(
    new GrantPolicy({ autoGrant: (p) => p.kind === "http" && !p.external })
      .decide([
        "http:a.x.com",
        "http:external",
        "db:read",
      ]),
    { granted: ["http:a.x.com"], pending: ["db:read", "http:external"] },
  );
});

Deno.test("grants: policy from a setting (GOATKIT_REQUIRE_APPROVAL)", () => {
  assert.deepEqual(GrantPolicy.fromSetting(undefined).requireApproval, [
    "email",
    "http",
  ]);
  assert.deepEqual(GrantPolicy.fromSetting(" HTTP, fs ").requireApproval, [
    "fs",
    "http",
  ]);
  assert.deepEqual(
    GrantPolicy.fromSetting("none").decide(["http:external", "email:*"]),
    {
      granted: ["email:*", "http:external"],
      pending: [],
    },
  );
  assert.deepEqual(GrantPolicy.fromSetting("all").decide(["db:read", "log"]), {
    granted: ["log"],
    pending: ["db:read"],
  });
  assert.throws(() => GrantPolicy.fromSetting("http,kv"), TypeError);
});

Deno.test("grants: applyGrantPolicy at install, operator approval, and upgrade", async () => {
  const store = new MemoryGrantStore();
  const v1 = ["db:read", "http:api.x.com"];
  let r = await applyGrantPolicy(store, "hello", v1);
  assert.deepEqual(r, { granted: ["db:read"], pending: ["http:api.x.com"] });
  // The operator approves the host, and revokes db:read.
  await store.set("hello", ["http:api.x.com"]);
  r = await applyGrantPolicy(store, "hello", v1);
  assert.deepEqual(
    r,
    { granted: ["http:api.x.com"], pending: ["db:read"] },
    "decisions kept",
  );
  // v2 asks for more: only the new requests are decided by the policy.
  const v2 = ["db:read", "http:api.x.com", "cache:write", "email:*@x.com"];
  r = await applyGrantPolicy(store, "hello", v2, { previousRequested: v1 });
  assert.deepEqual(r.granted, ["cache:write", "http:api.x.com"]);
  assert.deepEqual(r.pending, ["db:read", "email:*@x.com"]);
  assert.deepEqual(pendingPermissions(["db:read:t", "log"], ["db:read"]), []);
});
