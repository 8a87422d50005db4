// Browser sessions in PostgreSQL: a session cookie made before a restart
// still works after it, works on a second host process sharing the
// database, ends everywhere at logout, and the database holds only its hash.

import assert from "node:assert/strict";
import pg from "pg";
import { type HostProcess, login, startHost } from "./helpers/host_process.ts";
import { PG_URL } from "./server_helpers.ts";

/** The status of an admin page fetched with the cookie (and its CSRF token). */
async function adminPage(
  h: HostProcess,
  session: string,
): Promise<{ status: number; csrf?: string }> {
  const res = await fetch(`${h.url}/admin/tokens`, {
    headers: { cookie: `gk_session=${session}` },
    redirect: "manual",
  });
  const html = await res.text();
  const csrf = /name="_csrf" value="([^"]+)"/.exec(html)?.[1];
  return { status: res.status, ...(csrf ? { csrf } : {}) };
}

async function stop(h: HostProcess): Promise<void> {
  h.signal("SIGTERM");
  await h.status;
}

Deno.test({
  name:
    "a session survives a restart, works on a second host sharing the database, and logout ends it on both",
  sanitizeResources: false,
  sanitizeOps: false,
  async fn() {
    const a = await startHost({ plugins: [] });
    let b: HostProcess | undefined;
    let a2: HostProcess | undefined;
    try {
      const session = await login(a);
      assert.equal((await adminPage(a, session)).status, 200);

      // Only the SHA-256 of the cookie value is stored.
      const c = new pg.Client({ connectionString: PG_URL });
      await c.connect();
      try {
        const { rows } = await c.query(
          `SELECT id_hash FROM goatkit.sessions WHERE id_hash = $1 OR id_hash = encode(sha256($1::bytea), 'hex')`,
          [session],
        );
        assert.equal(rows.length, 1);
        assert.notEqual(rows[0].id_hash, session);
      } finally {
        await c.end();
      }

      // A second host on its own data folder, same database.
      // Tokens are shared through the database too: a's admin token.
      b = await startHost({
        plugins: [],
        reuse: { db: a.db, token: a.token },
      });
      assert.equal((await adminPage(b, session)).status, 200, "host B");

      // Restart A on the same data folder and database.
      await stop(a);
      a2 = await startHost({
        plugins: [],
        reuse: { data: a.data, db: a.db, token: a.token },
      });
      const after = await adminPage(a2, session);
      assert.equal(after.status, 200, "after the restart");
      assert.ok(after.csrf);

      // Logout on the restarted host ends the session on host B too.
      const out = await fetch(`${a2.url}/logout`, {
        method: "POST",
        body: new URLSearchParams({ _csrf: after.csrf! }),
        headers: {
          cookie: `gk_session=${session}`,
          "content-type": "application/x-www-form-urlencoded",
        },
        redirect: "manual",
      });
      await out.body?.cancel();
      assert.equal(out.status, 303);
      const gone = await adminPage(b, session);
      assert.equal(gone.status, 303, "redirected to the login page on host B");
    } finally {
      await a2?.cleanup();
      await b?.cleanup();
      await a.cleanup();
    }
  },
});
