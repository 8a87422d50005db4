// Durable logs and audit: real host processes on a private PostgreSQL
// schema, restarted on the same data folder and database; the log store's
// batching and retention against real PostgreSQL.

import assert from "node:assert/strict";
import { join } from "node:path";
import pg from "pg";
import { type HostProcess, startHost } from "./helpers/host_process.ts";
import { PG_URL } from "./server_helpers.ts";
import { PgLogStore } from "../host/services/pg_log_store.ts";
import { PgPoolClient } from "../host/services/sql_client.ts";
import type { SqlClient } from "../host/services/sql_client.ts";

const ROOT = new URL("..", import.meta.url).pathname;

async function api(
  h: HostProcess,
  method: string,
  path: string,
  token = h.token,
  // deno-lint-ignore no-explicit-any
): Promise<{ status: number; body: any }> {
  const res = await fetch(`${h.url}${path}`, {
    method,
    headers: { authorization: `Bearer ${token}`, connection: "close" },
  });
  const text = await res.text();
  return { status: res.status, body: text ? JSON.parse(text) : null };
}

async function stop(h: HostProcess): Promise<void> {
  h.signal("SIGTERM");
  const st = await h.status;
  assert.ok(st.code === 0 || st.signal === "SIGTERM", `exit: ${st.code}`);
}

Deno.test({
  name:
    "plugin logs and audit entries survive a restart and are queried by plugin, level, time and text (API and gk logs)",
  sanitizeResources: false,
  sanitizeOps: false,
  async fn() {
    const a = await startHost({
      plugins: ["plugins/hello-c"],
      enable: ["hello-c"],
    });
    let b: HostProcess | undefined;
    try {
      const t0 = new Date().toISOString();
      const logged = await api(
        a,
        "POST",
        "/api/v1/plugins/hello-c/call/log_all",
      );
      assert.equal(logged.status, 200, JSON.stringify(logged.body));
      // Its host calls are refused (grants revoked; the grant table is
      // shared by the test hosts): denials in the audit log.
      await api(a, "DELETE", "/api/v1/plugins/hello-c/grants");
      const t = await api(a, "POST", "/api/v1/plugins/hello-c/call/test");
      assert.equal(t.status, 200, JSON.stringify(t.body));

      const check = async (h: HostProcess) => {
        const warn = await api(
          h,
          "GET",
          "/api/v1/plugins/logs?plugin=hello-c&level=warn&limit=50",
        );
        const msgs = warn.body.logs.map((e: { message: string }) => e.message);
        assert.ok(msgs.includes("Warn from hello-c"), msgs.join("\n"));
        assert.ok(msgs.includes("Error from hello-c"));
        assert.ok(!msgs.includes("Info from hello-c"), "level filter");
        assert.ok(!msgs.includes("Debug from hello-c"));
        const text = await api(
          h,
          "GET",
          "/api/v1/plugins/logs?q=ERROR%20FROM%20HELLO&limit=50",
        );
        assert.deepEqual(
          text.body.logs.map((e: { message: string }) => e.message),
          ["Error from hello-c"],
        );
        const since = await api(
          h,
          "GET",
          `/api/v1/plugins/logs?plugin=hello-c&since=${
            encodeURIComponent(t0)
          }&limit=200`,
        );
        assert.ok(since.body.logs.length >= 4);
        const before = await api(
          h,
          "GET",
          `/api/v1/plugins/logs?plugin=hello-c&until=${
            encodeURIComponent(new Date(Date.parse(t0) - 60_000).toISOString())
          }`,
        );
        assert.equal(before.body.logs.length, 0, "until filter");
        const bad = await api(h, "GET", "/api/v1/plugins/logs?since=yesterday");
        assert.equal(bad.status, 400);
        const audit = await api(
          h,
          "GET",
          "/api/v1/audit?plugin=hello-c&outcome=denied&limit=100",
        );
        const denials = audit.body.entries as {
          permission: string;
          actor: string;
          method?: string;
        }[];
        assert.ok(
          denials.some((e) => /^(db|cache|http|email):/.test(e.permission)),
          JSON.stringify(denials),
        );
        assert.ok(denials.every((e) => e.actor === "plugin:hello-c"));
      };
      await check(a);
      await stop(a);

      b = await startHost({
        plugins: [],
        reuse: { data: a.data, db: a.db, token: a.token },
      });
      await check(b);

      // gk logs reads the same record.
      const out = await new Deno.Command(Deno.execPath(), {
        args: [
          "run",
          "-A",
          join(ROOT, "host/cli/main.ts"),
          "logs",
          "--url",
          b.url,
          "--token",
          b.token,
          "--plugin",
          "hello-c",
          "--grep",
          "from hello",
          "--since",
          "1h",
        ],
        stdout: "piped",
        stderr: "piped",
      }).output();
      const text = new TextDecoder().decode(out.stdout);
      assert.equal(out.code, 0, new TextDecoder().decode(out.stderr));
      const lines = text.trim().split("\n");
      assert.equal(lines.length, 4, text);
      assert.match(lines[0]!, /DEBUG \[hello-c\] Debug from hello-c/);
      assert.match(lines[3]!, /ERROR \[hello-c\] Error from hello-c/);
    } finally {
      await b?.cleanup();
      await a.cleanup();
    }
  },
});

Deno.test({
  name:
    "log store: lines are written in batches, and retention keeps the newest maxRows",
  sanitizeResources: false,
  sanitizeOps: false,
  async fn() {
    const schema = `gk_logs_test_${
      crypto.randomUUID().replaceAll("-", "").slice(0, 10)
    }`;
    const admin = new pg.Client({ connectionString: PG_URL });
    await admin.connect();
    await admin.query(`CREATE SCHEMA ${schema}`);
    const pool = new PgPoolClient({ url: PG_URL });
    let inserts = 0;
    const client: SqlClient = {
      query: (sql, params) => {
        if (/^\s*INSERT/i.test(sql)) inserts++;
        return pool.query(sql, params);
      },
      transaction: (o, fn) => pool.transaction(o, fn),
      close: () => pool.close(),
    };
    const store = new PgLogStore({
      client,
      table: `${schema}.logs`,
      maxRows: 50,
      pruneIntervalMs: 0,
    });
    try {
      for (let i = 0; i < 500; i++) {
        store.add({
          timestamp: new Date(Date.now() + i).toISOString(),
          plugin: "flood",
          level: i % 2 ? "info" : "error",
          message: `line ${i}\u0000`,
        });
      }
      await store.flush();
      assert.ok(inserts <= 6, `${inserts} INSERT statements for 500 lines`);
      // A flood prunes as it goes (every max(100, maxRows / 10) lines): the
      // table never holds all 500.
      const during = await store.count();
      assert.ok(
        during >= 50 && during <= 200,
        `${during} rows after the flood`,
      );
      await store.prune();
      assert.equal(await store.count(), 50);
      const newest = await store.search({ limit: 1 });
      assert.equal(newest[0]?.message, "line 499\uFFFD");
      const oldest = await store.search({ order: "asc", limit: 1 });
      assert.equal(oldest[0]?.message, "line 450\uFFFD");
    } finally {
      await store.close();
      await pool.close();
      await admin.query(`DROP SCHEMA ${schema} CASCADE`);
      await admin.end();
    }
  },
});
