// Cluster mode (issue 15, host/cluster/**): two real `host/serve.ts`
// processes on one private schema of the test PostgreSQL. A plugin disabled
// on host A answers 503 on host B within 1 s; a grant revoked on A is
// refused on B's next call within 1 s; an API token created on A works on
// B; after the test kills B's LISTEN connection (pg_terminate_backend), B
// reconnects and still converges. /readyz says each host's id and roles and
// that the cluster has two hosts.

import assert from "node:assert/strict";
import pg from "pg";
import { type HostProcess, startHost } from "./helpers/host_process.ts";
import { PG_URL } from "./server_helpers.ts";

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** Polls `check` every 25 ms for up to `ms`; the time it took, or undefined. */
async function within(
  ms: number,
  check: () => Promise<boolean>,
): Promise<number | undefined> {
  const t0 = performance.now();
  while (performance.now() - t0 <= ms) {
    if (await check()) return performance.now() - t0;
    await sleep(25);
  }
  return undefined;
}

async function call(
  h: HostProcess,
  method: string,
  path: string,
  options: { token?: string; body?: unknown } = {},
): Promise<{ status: number; body: string }> {
  const res = await fetch(`${h.url}${path}`, {
    method,
    headers: {
      authorization: `Bearer ${options.token ?? h.token}`,
      ...(options.body !== undefined
        ? { "content-type": "application/json" }
        : {}),
    },
    ...(options.body !== undefined
      ? { body: JSON.stringify(options.body) }
      : {}),
  });
  return { status: res.status, body: await res.text() };
}

/** An admin call on `h` that must answer 200. */
async function adminCall(h: HostProcess, method: string, path: string) {
  const r = await call(h, method, path);
  assert.equal(r.status, 200, `${method} ${path}: ${r.body}`);
}

/** Asserts that `check` holds within `ms`. */
async function eventually(
  ms: number,
  check: () => Promise<boolean>,
  message: string | (() => Promise<string>),
): Promise<void> {
  if (await within(ms, check) !== undefined) return;
  assert.fail(typeof message === "string" ? message : await message());
}

interface Readyz {
  status: string;
  host: { id: string; roles: string[] };
  cluster: { hosts: number };
}

async function readyz(h: HostProcess): Promise<Readyz> {
  const res = await fetch(`${h.url}/readyz`);
  return await res.json() as Readyz;
}

Deno.test({
  name:
    "cluster: state, grants and tokens changed (and revoked) on host A apply on host B",
  sanitizeResources: false,
  sanitizeOps: false,
  async fn(t) {
    const plugins = ["bench/echo-wat", "plugins/hello-c"];
    let a: HostProcess | undefined;
    let b: HostProcess | undefined;
    try {
      a = await startHost({ plugins, enable: ["bench-echo", "hello-c"] });
      const hostA = a;
      // B's start creates no admin token: A's is in the database.
      b = await startHost({
        plugins,
        reuse: { db: a.db, token: a.token },
      });
      const hostB = b;

      await t.step("/readyz names each host and counts two", async () => {
        const took = await within(3000, async () => {
          const [ra, rb] = [await readyz(hostA), await readyz(hostB)];
          return ra.cluster.hosts === 2 && rb.cluster.hosts === 2;
        });
        assert.ok(took !== undefined, "both hosts see two live hosts");
        const [ra, rb] = [await readyz(hostA), await readyz(hostB)];
        assert.notEqual(ra.host.id, rb.host.id);
        assert.deepEqual(ra.host.roles, ["http", "scheduler"]);
        assert.equal(rb.status, "ready");
      });

      await t.step("a token created on A works on B", async () => {
        const created = await call(hostA, "POST", "/api/v1/tokens", {
          body: { name: "ci", admin: true },
        });
        assert.equal(created.status, 201, created.body);
        const token = JSON.parse(created.body).token as string;
        assert.match(token, /^gk_/);
        const onB = await call(hostB, "GET", "/api/v1/tokens", { token });
        assert.equal(onB.status, 200, onB.body);
        assert.ok(onB.body.includes('"ci"'));
        const bogus = await call(hostB, "GET", "/api/v1/tokens", {
          token: `${token}x`,
        });
        assert.equal(bogus.status, 401);
      });

      await t.step(
        "a token revoked on A is refused on B within 1 s, though B has just verified it",
        async () => {
          const created = await call(hostA, "POST", "/api/v1/tokens", {
            body: { name: "revoked-soon" },
          });
          assert.equal(created.status, 201, created.body);
          const { token, id } = JSON.parse(created.body);
          // B verifies it (and remembers it for 2 s).
          const before = await call(hostB, "GET", "/api/v1/plugins", { token });
          assert.equal(before.status, 200, before.body);
          const revoked = await call(hostA, "DELETE", `/api/v1/tokens/${id}`);
          assert.equal(revoked.status, 200, revoked.body);
          // Well inside B's 2 s: only A's change notice can end it this soon.
          await eventually(
            1000,
            async () =>
              (await call(hostB, "GET", "/api/v1/plugins", { token }))
                .status ===
                401,
            "B still accepts the revoked token after 1 s",
          );
        },
      );

      const route = "/api/plugins/bench-echo";
      const statusOn = async (h: HostProcess) => {
        const res = await fetch(`${h.url}${route}`);
        await res.body?.cancel();
        return res.status;
      };

      await t.step("disable on A: B answers 503 within 1 s", async () => {
        assert.equal(await statusOn(hostB), 200, "B serves it first");
        await adminCall(hostA, "POST", "/api/v1/plugins/bench-echo/disable");
        await eventually(
          1000,
          async () => (await statusOn(hostB)) === 503,
          "B refuses within 1 s",
        );
        await adminCall(hostB, "POST", "/api/v1/plugins/bench-echo/enable");
        await eventually(
          1000,
          async () => (await statusOn(hostA)) === 200,
          "A serves again within 1 s of B's enable",
        );
      });

      // hello-c's admin route `test` calls every host function; with no
      // cache grant its cache_set is denied (null).
      const cacheDenied = async (h: HostProcess) => {
        const r = await call(h, "GET", "/api/plugins/hello-c/test");
        assert.equal(r.status, 200, r.body);
        // A denied host call answers null; a granted cache_set answers true.
        return JSON.parse(r.body).results.cache_set === null;
      };

      await t.step(
        "grant revoke on A: B refuses the next call within 1 s",
        async () => {
          await adminCall(hostA, "POST", "/api/v1/plugins/hello-c/grants");
          await eventually(
            1000,
            async () => !(await cacheDenied(hostB)),
            "B uses the grant within 1 s",
          );
          await adminCall(hostA, "DELETE", "/api/v1/plugins/hello-c/grants");
          await eventually(
            1000,
            () => cacheDenied(hostB),
            async () =>
              `B refuses within 1 s of the revoke: ${
                (await call(hostB, "GET", "/api/plugins/hello-c/test")).body
              }`,
          );
        },
      );

      await t.step(
        "B's LISTEN connection killed: it reconnects and converges",
        async () => {
          const id = (await readyz(hostB)).host.id;
          const admin = new pg.Client({ connectionString: PG_URL });
          await admin.connect();
          try {
            const killed = await admin.query(
              `SELECT pg_terminate_backend(pid) AS ok FROM pg_stat_activity
              WHERE application_name = $1`,
              [`goatkit-listen ${id}`],
            );
            assert.equal(killed.rows.length, 1, "B's listener found");
            assert.equal(killed.rows[0].ok, true);
            const reconnected = await within(5000, async () => {
              const r = await admin.query(
                `SELECT count(*)::int AS n FROM pg_stat_activity
                WHERE application_name = $1`,
                [`goatkit-listen ${id}`],
              );
              return r.rows[0].n === 1;
            });
            assert.ok(reconnected !== undefined, "B listens again");
          } finally {
            await admin.end();
          }
          await adminCall(hostA, "POST", "/api/v1/plugins/bench-echo/disable");
          await eventually(
            1000,
            async () => (await statusOn(hostB)) === 503,
            "B follows A's disable within 1 s again",
          );
        },
      );
    } finally {
      await b?.cleanup();
      await a?.cleanup();
    }
  },
});
