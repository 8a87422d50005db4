/**
 * Grant stores (memory and the real PostgreSQL at 127.0.0.1:5432, database
 * `test`), the default policy (consent by default: only `log` is granted
 * without the operator; secrets wait under every policy), the
 * `GOATKIT_REQUIRE_APPROVAL` setting, applyGrantPolicy at install and
 * upgrade, and the setting end to end on a real host (`boot`) with the WAT
 * permission probe: requests wait and calls are refused until the operator
 * approves them through the admin API; with `none` they are granted at once.
 */
import assert from "node:assert/strict";
import { callProbe } from "./helpers/probe.ts";
import { join } from "node:path";
import pg from "pg";
import { boot, type RunningHost } from "../host/boot.ts";
import { PgDatabase } from "../host/services/database.ts";
import { pluginRoleName } from "../permissions/pg_privileges.ts";
import { buildWat } from "../fixtures/hostile/wat_build.ts";
import {
  applyGrantPolicy,
  APPROVAL_KINDS,
  GrantPolicy,
  type GrantStore,
  MemoryGrantStore,
  parseApprovalSetting,
  pendingPermissions,
  PermissionSyntaxError,
  PgGrantStore,
} from "../permissions/mod.ts";
import { hostConfig, privateSchema } from "./server_helpers.ts";

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

Deno.test("grants: the default policy grants only log; everything else waits", () => {
  const policy = new GrantPolicy();
  const requested = [
    "db:read",
    "db:write:t",
    "cache:read",
    "http:external",
    "http:api.x.com",
    "email:*@x.com",
    "config:app.*",
    "config:API_KEY",
    "plugins:call",
    "fs:write:cache",
    "log",
  ];
  assert.deepEqual(policy.decide(requested), {
    granted: ["log"],
    pending: [
      "cache:read",
      "config:API_KEY",
      "config:app.*",
      "db:read",
      "db:write:t",
      "email:*@x.com",
      "fs:write:cache",
      "http:api.x.com",
      "http:external",
      "plugins:call",
    ],
  });
  assert.deepEqual(policy.requireApproval, [...APPROVAL_KINDS]);
  assert.deepEqual(APPROVAL_KINDS, [
    "cache",
    "config",
    "db",
    "email",
    "fs",
    "http",
    "plugins",
  ]);
  // The former default, now opted into explicitly.
  assert.deepEqual(
    new GrantPolicy({
      requireApproval: ["http", "email"],
      mayBeSecret: () => false,
    })
      .decide(["db:read", "cache:read", "http:external", "config:app.name"]),
    {
      granted: ["cache:read", "config:app.name", "db:read"],
      pending: ["http:external"],
    },
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

Deno.test("grants: a secret waits for the operator under every policy", () => {
  const secrets = new Set(["RT_API_KEY"]);
  const mayBeSecret = (k: string) => secrets.has(k);
  const requested = [
    "config:RT_API_KEY",
    "config:app.name",
    "config:*",
    "db:read",
  ];
  for (
    const policy of [
      GrantPolicy.fromSetting("none", { mayBeSecret }),
      new GrantPolicy({ requireApproval: ["http"], mayBeSecret }),
      // Even a policy that grants everything by its own rule.
      new GrantPolicy({ autoGrant: () => true, mayBeSecret }),
    ]
  ) {
    assert.deepEqual(policy.decide(requested), {
      granted: ["config:*", "config:app.name", "db:read"],
      pending: ["config:RT_API_KEY"],
    });
  }
  // Without knowing the secrets, every exact config key is treated as one.
  assert.deepEqual(GrantPolicy.fromSetting("none").decide(requested), {
    granted: ["config:*", "db:read"],
    pending: ["config:RT_API_KEY", "config:app.name"],
  });
});

Deno.test("grants: policy from a setting (GOATKIT_REQUIRE_APPROVAL)", () => {
  assert.deepEqual(
    GrantPolicy.fromSetting(undefined).requireApproval,
    [...APPROVAL_KINDS],
  );
  assert.deepEqual(
    GrantPolicy.fromSetting("").requireApproval,
    [...APPROVAL_KINDS],
  );
  assert.deepEqual(
    GrantPolicy.fromSetting(" ALL ").requireApproval,
    [...APPROVAL_KINDS],
  );
  assert.deepEqual(GrantPolicy.fromSetting(" HTTP, fs ").requireApproval, [
    "fs",
    "http",
  ]);
  assert.deepEqual(GrantPolicy.fromSetting(["email", "db"]).requireApproval, [
    "db",
    "email",
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
  assert.deepEqual(parseApprovalSetting("none"), []);
  for (const bad of ["http,kv", "log", "none,db", "all,db", "*"]) {
    assert.throws(
      () => GrantPolicy.fromSetting(bad),
      (e: unknown) =>
        e instanceof TypeError &&
        /^Cannot use approval setting/.test(e.message),
      bad,
    );
  }
});

Deno.test("grants: applyGrantPolicy at install, operator approval, and upgrade", async () => {
  const store = new MemoryGrantStore();
  const v1 = ["db:read", "http:api.x.com", "log"];
  let r = await applyGrantPolicy(store, "hello", v1);
  assert.deepEqual(r, {
    granted: ["log"],
    pending: ["db:read", "http:api.x.com"],
  });
  // The operator approves the host only.
  await store.set("hello", ["http:api.x.com", "log"]);
  r = await applyGrantPolicy(store, "hello", v1);
  assert.deepEqual(
    r,
    { granted: ["http:api.x.com", "log"], pending: ["db:read"] },
    "decisions kept",
  );
  // v2 asks for more: only the new requests are decided by the policy.
  const v2 = [...v1, "cache:write", "email:*@x.com"];
  const open = new GrantPolicy({ requireApproval: ["email"] });
  r = await applyGrantPolicy(store, "hello", v2, {
    previousRequested: v1,
    policy: open,
  });
  assert.deepEqual(r.granted, ["cache:write", "http:api.x.com", "log"]);
  assert.deepEqual(r.pending, ["db:read", "email:*@x.com"]);
  // With the default policy an upgrade's new requests wait too.
  r = await applyGrantPolicy(store, "hello", [...v2, "fs:read:x"], {
    previousRequested: v2,
  });
  assert.deepEqual(r.pending, ["db:read", "email:*@x.com", "fs:read:x"]);
  assert.deepEqual(pendingPermissions(["db:read:t", "log"], ["db:read"]), []);
});

// -- GOATKIT_REQUIRE_APPROVAL end to end -------------------------------------

const ROOT = new URL("..", import.meta.url).pathname;
const PROBE_WAT = join(ROOT, "fixtures/plugins/perm-probe-wat/plugin.wat");

/**
 * Boots a real host (loopback, port 0, private schema) whose plugin folder
 * holds the WAT permission probe requesting `db:read`, `cache:read`,
 * `cache:write` and `log`, with `GOATKIT_REQUIRE_APPROVAL` = `approval`
 * (unset when undefined); runs `body`, then closes everything and drops the
 * plugin's database role.
 */
async function withProbeHost(
  approval: string | undefined,
  body: (t: {
    host: RunningHost;
    name: string;
    lines: string[];
    api(method: string, path: string, json?: unknown): Promise<Response>;
    probe(fn: string, req: unknown): Promise<
      { ok: true; value: unknown } | {
        ok: false;
        type: string;
        permission?: string;
      }
    >;
  }) => Promise<void>,
): Promise<void> {
  const name = `approval-probe-${crypto.randomUUID().slice(0, 8)}`;
  const data = await Deno.makeTempDir({ prefix: "gk_approval_" });
  const plugins = join(data, "plugins");
  const dir = join(plugins, name);
  await Deno.mkdir(dir, { recursive: true });
  const manifest = join(dir, "manifest.json");
  await Deno.writeTextFile(
    manifest,
    JSON.stringify({
      name,
      version: "1.0.0",
      description: "permission probe (WAT) for GOATKIT_REQUIRE_APPROVAL",
      permissions: ["db:read", "cache:read", "cache:write", "log"],
    }),
  );
  await Deno.writeFile(
    join(dir, "plugin.wasm"),
    await buildWat(PROBE_WAT, manifest),
  );
  const db = await privateSchema();
  const lines: string[] = [];
  let host: RunningHost | undefined;
  try {
    host = await boot({
      config: hostConfig(
        join(data, "data"),
        plugins,
        db.url,
        approval === undefined ? {} : { GOATKIT_REQUIRE_APPROVAL: approval },
      ),
      print: (l) => lines.push(l),
    });
    const h = host;
    assert.deepEqual(
      h.manager.list().map((p) => p.name),
      [name],
      lines.join("\n"),
    );
    await body({
      host: h,
      name,
      lines,
      api: (method, path, json) =>
        fetch(`${h.url}/api/v1${path}`, {
          method,
          headers: {
            authorization: `Bearer ${h.adminToken}`,
            ...(json === undefined
              ? {}
              : { "content-type": "application/json" }),
          },
          ...(json === undefined ? {} : { body: JSON.stringify(json) }),
        }),
      async probe(fn, req) {
        const a = await callProbe(h.manager, name, fn, req);
        return a.ok ? a : { ok: false, type: a.type, permission: a.permission };
      },
    });
  } finally {
    await host?.close();
    const pgdb = new PgDatabase({ url: DATABASE_URL, max: 1 });
    try {
      await pgdb.dropPlugin(name);
      const left = await pgdb.sqlClient.query(
        "SELECT 1 FROM pg_roles WHERE rolname = $1",
        [pluginRoleName(name)],
      );
      assert.equal(left.rows.length, 0, "the plugin's role is gone");
    } finally {
      await pgdb.close();
      await db.drop();
      await Deno.remove(data, { recursive: true });
    }
  }
}

const QUERY = { query: "SELECT 41 + 1 AS answer", args: [] };
const SET = { key: "k", value: btoa("v"), ttl: 0 };

Deno.test("GOATKIT_REQUIRE_APPROVAL unset: a real host holds db/cache requests until the operator approves them", async () => {
  await withProbeHost(undefined, async ({ name, api, probe, lines }) => {
    assert.ok(!lines.some((l) => /WARNING/.test(l)), "no warning by default");
    let res = await api("GET", `/plugins/${name}/grants`);
    let g = await res.json();
    assert.equal(res.status, 200, JSON.stringify(g));
    assert.deepEqual(g.granted, ["log"]);
    assert.deepEqual(g.pending.sort(), [
      "cache:read",
      "cache:write",
      "db:read",
    ]);

    // The plugin tries anyway: refused, audited, nothing written.
    for (
      const [fn, req, permission] of [
        ["db_query", QUERY, "db:read"],
        ["cache_set", SET, "cache:write"],
        ["cache_get", { key: "k" }, "cache:read"],
      ] as const
    ) {
      const out = await probe(fn, req);
      assert.deepEqual(out, {
        ok: false,
        type: "PermissionDeniedError",
        permission,
      });
    }
    res = await api("GET", `/audit?plugin=${name}`);
    const audit = await res.json();
    assert.deepEqual(
      audit.entries.map((e: { permission: string; outcome: string }) =>
        `${e.outcome} ${e.permission}`
      ),
      ["denied cache:read", "denied cache:write", "denied db:read"],
    );

    // The operator approves through the admin API; the next calls work.
    res = await api("POST", `/plugins/${name}/grants`, {
      permissions: ["db:read", "cache:read", "cache:write"],
    });
    g = await res.json();
    assert.equal(res.status, 200, JSON.stringify(g));
    assert.deepEqual(g.pending, []);
    assert.deepEqual(await probe("db_query", QUERY), {
      ok: true,
      value: [{ answer: 42 }],
    });
    assert.deepEqual(await probe("cache_set", SET), {
      ok: true,
      value: { ok: true },
    });
    assert.deepEqual(await probe("cache_get", { key: "k" }), {
      ok: true,
      value: { found: true, value: btoa("v") },
    });
    // The approvals are audited too.
    res = await api("GET", `/audit?plugin=${name}&limit=3`);
    assert.deepEqual(
      (await res.json()).entries.map((
        e: { permission: string; outcome: string },
      ) => `${e.outcome} ${e.permission}`).sort(),
      ["granted cache:read", "granted cache:write", "granted db:read"],
    );
  });
});

Deno.test("GOATKIT_REQUIRE_APPROVAL=none: a real host grants at once, and warns", async () => {
  await withProbeHost("none", async ({ name, api, probe, lines, host }) => {
    assert.deepEqual(host.config.server.requireApproval, []);
    assert.ok(
      lines.some((l) => /WARNING: GOATKIT_REQUIRE_APPROVAL=none/.test(l)),
      lines.join("\n"),
    );
    const res = await api("GET", `/plugins/${name}/grants`);
    const g = await res.json();
    assert.deepEqual(g.pending, []);
    assert.deepEqual(g.granted, [
      "cache:read",
      "cache:write",
      "db:read",
      "log",
    ]);
    assert.deepEqual(await probe("db_query", QUERY), {
      ok: true,
      value: [{ answer: 42 }],
    });
    assert.deepEqual(await probe("cache_set", SET), {
      ok: true,
      value: { ok: true },
    });
  });
});
