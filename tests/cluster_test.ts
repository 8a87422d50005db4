// Several hosts as one (issue 15): three `host/serve.ts` processes on
// loopback sharing one database schema on the test PostgreSQL and one Redis
// (a unique REDIS_PREFIX). A session made on host 1 works on host 2; a job
// every second (fixtures/faults/tick-wat) runs each tick exactly once across
// the hosts while host 1 is killed with SIGKILL, as the shared run history
// (`goatkit.job_runs`) and the claim table (`goatkit.job_ticks`) show; a
// restart of a private PostgreSQL loses nothing and every host comes back;
// a disable on host 1 is honoured by hosts 2 and 3 within 1 s, a grant
// revoked on host 2 is refused on host 3 within 1 s, and a package
// installed on host 3 serves on hosts 1 and 2.

import assert from "node:assert/strict";
import { join } from "node:path";
import pg from "pg";
import { zipSync } from "fflate";
import {
  type HostDatabase,
  type HostProcess,
  login,
  startHost,
} from "./helpers/host_process.ts";
import { PG_URL } from "./server_helpers.ts";

const REDIS_URL = Deno.env.get("REDIS_URL") ?? "redis://127.0.0.1:6379";
const JOB = "fault-tick.tick";
const PG_BIN = "/usr/lib/postgresql/15/bin";

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** The status of an admin page on `h` with the session cookie. */
async function adminPage(h: HostProcess, session: string): Promise<number> {
  const res = await fetch(`${h.url}/admin/tokens`, {
    headers: { cookie: `gk_session=${session}` },
    redirect: "manual",
  });
  await res.body?.cancel();
  return res.status;
}

/** An admin API call on `h`; returns the status and the JSON body. */
async function api(
  h: HostProcess,
  method: string,
  path: string,
  body?: unknown,
): Promise<{ status: number; json: unknown }> {
  const res = await fetch(`${h.url}/api/v1${path}`, {
    method,
    headers: {
      authorization: `Bearer ${h.token}`,
      ...(body === undefined ? {} : { "content-type": "application/json" }),
    },
    ...(body === undefined ? {} : { body: JSON.stringify(body) }),
  });
  const text = await res.text();
  let json: unknown = text;
  try {
    json = JSON.parse(text);
  } catch { /* not JSON */ }
  return { status: res.status, json };
}

/** The status of `GET url`, 0 when nothing answers. */
async function statusOf(url: string, init?: RequestInit): Promise<number> {
  try {
    const res = await fetch(url, {
      ...init,
      signal: AbortSignal.timeout(3000),
    });
    await res.body?.cancel();
    return res.status;
  } catch {
    return 0;
  }
}

/** Polls `check` every 100 ms until it is true or `ms` pass; the time taken. */
async function within(
  ms: number,
  check: () => Promise<boolean>,
): Promise<number | undefined> {
  const start = Date.now();
  while (Date.now() - start < ms) {
    if (await check()) return Date.now() - start;
    await sleep(100);
  }
  return undefined;
}

/** The schema name in a private schema's URL (`-c search_path=<schema>`). */
function schemaOf(db: HostDatabase): string {
  const options = new URL(db.url).searchParams.get("options") ?? "";
  return /search_path=(\S+)/.exec(options)?.[1] ?? "public";
}

/** One row of the shared run history or the claim table. */
interface TickRow {
  tick: number;
  host?: string;
}

/** The scheduled runs and the claims of {@linkcode JOB} in `scope`. */
async function ticksOf(
  url: string,
  scope: string,
): Promise<{ runs: TickRow[]; claims: TickRow[] }> {
  const c = new pg.Client({ connectionString: url });
  await c.connect();
  try {
    const runs = await c.query(
      `SELECT tick, host FROM goatkit.job_runs
       WHERE scope = $1 AND job = $2 AND tick IS NOT NULL
         AND run->>'trigger' = 'schedule' AND run->>'outcome' = 'ok'
       ORDER BY tick`,
      [scope, JOB],
    );
    const claims = await c.query(
      `SELECT tick FROM goatkit.job_ticks WHERE scope = $1 AND job = $2
       ORDER BY tick`,
      [scope, JOB],
    );
    return {
      runs: runs.rows.map((r: { tick: string; host: string }) => ({
        tick: Number(r.tick),
        host: r.host,
      })),
      claims: claims.rows.map((r: { tick: string }) => ({
        tick: Number(r.tick),
      })),
    };
  } finally {
    await c.end();
  }
}

/** Removes this deployment's rows from the run history (not in privateSchema's list). */
async function dropRuns(url: string, scope: string): Promise<void> {
  const c = new pg.Client({ connectionString: url });
  await c.connect();
  try {
    const t = await c.query("SELECT to_regclass('goatkit.job_runs') AS t");
    if (t.rows[0]?.t !== null) {
      await c.query("DELETE FROM goatkit.job_runs WHERE scope = $1", [scope]);
    }
  } finally {
    await c.end();
  }
}

/**
 * Checks the ticks in [from, to] (epoch seconds): each ran at most once,
 * and no two runs are further apart than two seconds (at most one tick
 * missed at a time). Returns the ticks run, by host.
 */
function assertEachTickOnce(
  runs: TickRow[],
  from: number,
  to: number,
): Map<string, number[]> {
  const inWindow = runs.filter((r) => r.tick >= from && r.tick <= to);
  const seen = new Map<number, string>();
  for (const r of inWindow) {
    assert.ok(
      !seen.has(r.tick),
      `tick ${r.tick} ran twice (${seen.get(r.tick)} and ${r.host})`,
    );
    seen.set(r.tick, r.host!);
  }
  const ticks = [...seen.keys()].sort((a, b) => a - b);
  assert.ok(ticks.length > 0, "some ticks ran");
  assert.ok(ticks[0]! - from <= 2, `the first tick ran late: ${ticks[0]}`);
  assert.ok(
    to - ticks.at(-1)! <= 2,
    `the last tick ran early: ${ticks.at(-1)}`,
  );
  for (let i = 1; i < ticks.length; i++) {
    assert.ok(
      ticks[i]! - ticks[i - 1]! <= 2,
      `no run between ticks ${ticks[i - 1]} and ${ticks[i]}`,
    );
  }
  const byHost = new Map<string, number[]>();
  for (const [tick, host] of seen) {
    byHost.set(host, [...(byHost.get(host) ?? []), tick]);
  }
  return byHost;
}

/** The name a host process has in the run history. */
function runName(h: HostProcess): string {
  return `${Deno.hostname()}:${h.child.pid}`;
}

/** Starts three hosts on `db` with the tick plugin, host 1 enabling it. */
async function startThree(
  db: HostDatabase | undefined,
  env: Record<string, string>,
): Promise<HostProcess[]> {
  const hosts: HostProcess[] = [];
  try {
    hosts.push(
      await startHost({
        plugins: ["faults/tick-wat"],
        env,
        enable: ["fault-tick"],
        lifetimeMs: 150_000,
        ...(db ? { reuse: { db } } : {}),
      }),
    );
    for (let i = 0; i < 2; i++) {
      hosts.push(
        await startHost({
          plugins: ["faults/tick-wat"],
          env,
          // The enabled state is a row of the shared database: hosts 2 and 3
          // start with the plugin enabled.
          lifetimeMs: 150_000,
          // Tokens are shared through the database: the first host printed it.
          reuse: { db: db ?? hosts[0]!.db, token: hosts[0]!.token },
        }),
      );
    }
  } catch (e) {
    for (const h of hosts) await h.cleanup();
    throw e;
  }
  return hosts;
}

Deno.test({
  name:
    "three hosts on one database: a session works on another host, and each 1-second tick runs once while host 1 is killed",
  sanitizeResources: false,
  sanitizeOps: false,
  async fn() {
    const env = {
      REDIS_URL,
      REDIS_PREFIX: `gk_cluster_${crypto.randomUUID().slice(0, 8)}:`,
    };
    const hosts = await startThree(undefined, env);
    const [h1, h2, h3] = hosts as [HostProcess, HostProcess, HostProcess];
    const db = h1.db;
    const scope = schemaOf(db);
    try {
      // Every host schedules the job (the plugin is enabled on all three).
      for (const h of hosts) {
        const { status, json } = await api(h, "GET", "/jobs");
        assert.equal(status, 200);
        const jobs = (json as { jobs: { plugin: string; id: string }[] }).jobs;
        assert.ok(
          jobs.some((j) => j.plugin === "fault-tick" && j.id === "tick"),
          `host ${h.url} schedules the tick job: ${JSON.stringify(json)}`,
        );
      }

      // A session made on host 1 opens the admin pages of host 2.
      const session = await login(h1);
      assert.equal(await adminPage(h2, session), 200, "host 1's session on 2");
      assert.equal(
        await adminPage(h3, "not-a-session"),
        303,
        "a made-up session is refused",
      );

      // 12 s with three hosts, SIGKILL host 1, 14 s with two.
      const from = Math.ceil(Date.now() / 1000) + 1;
      await sleep(12_000);
      const killedAt = Date.now() / 1000;
      h1.signal("SIGKILL");
      await h1.status;
      await sleep(14_000);
      const to = Math.floor(Date.now() / 1000) - 2;
      // Let the last runs' records land.
      await sleep(1500);

      const { runs, claims } = await ticksOf(PG_URL, scope);
      const byHost = assertEachTickOnce(runs, from, to);
      const total = [...byHost.values()].reduce((n, t) => n + t.length, 0);
      // At most the tick host 1 was running when it died is lost.
      assert.ok(total >= to - from, `${total} runs for ${to - from + 1} ticks`);
      // Every tick of the window was claimed exactly once (the primary key),
      // and each run has its claim.
      const claimed = new Set(claims.map((c) => c.tick));
      for (let t = from; t <= to; t++) {
        assert.ok(claimed.has(t), `tick ${t} was claimed`);
      }
      for (const ticks of byHost.values()) {
        for (const t of ticks) assert.ok(claimed.has(t));
      }
      // Host 1 ran nothing after it died; the others went on.
      const h1Ticks = byHost.get(runName(h1)) ?? [];
      assert.ok(
        h1Ticks.every((t) => t <= killedAt + 1),
        `host 1 ran ticks after its death: ${h1Ticks}`,
      );
      const after = [runName(h2), runName(h3)].flatMap((n) =>
        (byHost.get(n) ?? []).filter((t) => t > killedAt + 1)
      );
      assert.ok(after.length >= to - Math.ceil(killedAt) - 3, "2 and 3 go on");
      console.log(
        `ticks ${from}..${to}: ${total} runs; by host: ${
          [...byHost].map(([h, t]) => `${h}=${t.length}`).join(", ")
        }; killed at ${killedAt.toFixed(1)}`,
      );
      // The surviving hosts are ready.
      for (const h of [h2, h3]) {
        assert.equal(await statusOf(`${h.url}/readyz`), 200, `${h.url} ready`);
      }
    } finally {
      await h3.cleanup();
      await h2.cleanup();
      await dropRuns(PG_URL, scope);
      await h1.cleanup();
    }
  },
});

/** A private PostgreSQL 15 cluster on a free loopback port (trust auth). */
interface PrivatePostgres {
  url: string;
  restart(): Promise<void>;
  stop(): Promise<void>;
}

async function run(cmd: string, args: string[]): Promise<void> {
  const out = await new Deno.Command(cmd, {
    args,
    stdin: "null",
    stdout: "piped",
    stderr: "piped",
  }).output();
  if (!out.success) {
    throw new Error(
      `${cmd} ${args.join(" ")} failed: ${
        new TextDecoder().decode(out.stderr)
      }`,
    );
  }
}

function freePort(): number {
  const l = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const port = (l.addr as Deno.NetAddr).port;
  l.close();
  return port;
}

/**
 * initdb into a temp folder and pg_ctl start, as the `postgres` user when
 * run as root (initdb refuses root).
 */
async function privatePostgres(): Promise<PrivatePostgres> {
  const dir = await Deno.makeTempDir({ prefix: "gk_cluster_pg_" });
  const data = join(dir, "data");
  const port = freePort();
  const root = Deno.uid() === 0;
  if (root) await run("chown", ["postgres:postgres", dir]);
  const as = (bin: string, args: string[]) =>
    root
      ? run("runuser", ["-u", "postgres", "--", join(PG_BIN, bin), ...args])
      : run(join(PG_BIN, bin), args);
  await as("initdb", [
    "-D",
    data,
    "-A",
    "trust",
    "-U",
    "postgres",
    "--no-sync",
  ]);
  const ctl = (action: string) =>
    as("pg_ctl", [
      "-D",
      data,
      "-w",
      "-t",
      "30",
      "-m",
      "fast",
      "-l",
      join(dir, "log"),
      "-o",
      `-p ${port} -k ${dir} -c listen_addresses=127.0.0.1 -c fsync=off`,
      action,
    ]);
  await ctl("start");
  return {
    url: `postgres://postgres@127.0.0.1:${port}/postgres`,
    restart: () => ctl("restart"),
    async stop() {
      await ctl("stop").catch(() => {});
      await Deno.remove(dir, { recursive: true }).catch(() => {});
    },
  };
}

Deno.test({
  name:
    "a PostgreSQL restart in the middle loses no session and no tick, and every host comes back",
  // A private PostgreSQL (initdb, pg_ctl on a free loopback port) that the
  // test restarts.
  sanitizeResources: false,
  sanitizeOps: false,
  async fn() {
    const postgres = await privatePostgres();
    const db: HostDatabase = { url: postgres.url, drop: async () => {} };
    let hosts: HostProcess[] = [];
    try {
      hosts = await startThree(db, {
        REDIS_URL,
        REDIS_PREFIX: `gk_cluster_${crypto.randomUUID().slice(0, 8)}:`,
      });
      const session = await login(hosts[0]!);
      const from = Math.ceil(Date.now() / 1000) + 1;
      await sleep(5000);
      await postgres.restart();
      const restartedAt = Date.now() / 1000;
      // Every host is ready again and still knows the session.
      for (const h of hosts) {
        // 30 s: on a loaded CI box a pool's dead connections are found and
        // replaced one statement timeout at a time.
        const took = await within(
          30_000,
          async () => (await statusOf(`${h.url}/readyz`)) === 200,
        );
        if (took === undefined) {
          const res = await fetch(`${h.url}/readyz`).catch((e) => e);
          const why = res instanceof Response ? await res.text() : String(res);
          // Whether the host is gone, and its last words (a crash, or a
          // pool that never came back, tell apart here).
          const exited = await Promise.race([
            h.status.then((st) => `exited with ${st.code}`),
            sleep(100).then(() => "still running"),
          ]);
          assert.fail(
            `${h.url} not ready 30 s after the restart: ${why}; ${exited}; its stderr ends: ${
              h.stderr().slice(-2000)
            }; its stdout ends: ${h.stdout().slice(-2000)}`,
          );
        }
        assert.equal(await adminPage(h, session), 200, "the session lives");
      }
      await sleep(8000);
      const to = Math.floor(Date.now() / 1000) - 2;
      await sleep(1500);
      const { runs } = await ticksOf(postgres.url, "public");
      // No tick ran twice, and the ticks after the restart run again
      // (the ones the outage took are made up by one catch-up run at most).
      const after = runs.filter((r) =>
        r.tick > restartedAt + 2 && r.tick <= to
      );
      assertEachTickOnce(after, Math.ceil(restartedAt) + 3, to);
      const before = runs.filter((r) => r.tick >= from && r.tick < restartedAt);
      assert.ok(before.length >= 3, "ticks ran before the restart");
      // No host died on the way.
      for (const h of hosts) {
        assert.equal(await statusOf(`${h.url}/healthz`), 200, `${h.url} lives`);
      }
    } finally {
      for (const h of hosts) await h.cleanup();
      await postgres.stop();
    }
  },
});

/**
 * Three hosts on one fresh private schema and the test Redis (a unique
 * prefix): `plugins` copied into each, `enable` enabled through host 1
 * (the enabled state is a shared row). Cleans up what started on failure.
 */
async function threeHosts(
  plugins: string[],
  enable: string[] = [],
): Promise<[HostProcess, HostProcess, HostProcess]> {
  const env = { REDIS_URL, REDIS_PREFIX: `gk_cluster_${Date.now()}:` };
  const hosts: HostProcess[] = [];
  try {
    hosts.push(await startHost({ plugins, env, enable }));
    for (let i = 0; i < 2; i++) {
      hosts.push(
        await startHost({
          plugins,
          env,
          // Tokens are shared through the database: host 1 printed it.
          reuse: { db: hosts[0]!.db, token: hosts[0]!.token },
        }),
      );
    }
  } catch (e) {
    await stopAll(hosts);
    throw e;
  }
  return hosts as [HostProcess, HostProcess, HostProcess];
}

/** Stops the hosts, host 1 last (its cleanup drops the shared schema). */
async function stopAll(hosts: HostProcess[]): Promise<void> {
  for (const h of hosts.slice(1)) await h.cleanup();
  await hosts[0]?.cleanup();
}

// --- The change feed (host/cluster/**) and packages in the database ------

Deno.test({
  name: "disable on host 1 is honoured by hosts 2 and 3 within 1 s",
  // The change feed (host/cluster/**): a NOTIFY on every plugin_state
  // change and each host's LISTEN reconcile of enable/disable.
  sanitizeResources: false,
  sanitizeOps: false,
  async fn() {
    let hosts: HostProcess[] = [];
    try {
      hosts = await threeHosts(["bench/echo-wat"], ["bench-echo"]);
      const route = "/api/plugins/bench-echo";
      for (const h of hosts) {
        assert.equal(await statusOf(`${h.url}${route}`), 200, "served");
      }
      const { status } = await api(
        hosts[0]!,
        "POST",
        "/plugins/bench-echo/disable",
      );
      assert.equal(status, 200);
      for (const h of hosts.slice(1)) {
        const took = await within(
          1000,
          // A disabled plugin's route answers 503 (not 404).
          async () => (await statusOf(`${h.url}${route}`)) === 503,
        );
        assert.ok(took !== undefined, `${h.url} stops serving within 1 s`);
      }
      // And enabling again on host 3 brings it back on 1 and 2.
      assert.equal(
        (await api(hosts[2]!, "POST", "/plugins/bench-echo/enable")).status,
        200,
      );
      for (const h of hosts.slice(0, 2)) {
        const took = await within(
          1000,
          async () => (await statusOf(`${h.url}${route}`)) === 200,
        );
        assert.ok(took !== undefined, `${h.url} serves again within 1 s`);
      }
    } finally {
      await stopAll(hosts);
    }
  },
});

Deno.test({
  name: "a grant revoked on host 2 refuses the next call on host 3",
  // The change feed (host/cluster/**): grant changes NOTIFYed and every
  // host's grant cache invalidated. hello-c's admin route `test` calls
  // every host function: a denied cache_set answers null, a granted one
  // true. The grant API is POST (approve every requested permission) and
  // DELETE (revoke all) /api/v1/plugins/<name>/grants.
  sanitizeResources: false,
  sanitizeOps: false,
  async fn() {
    let hosts: HostProcess[] = [];
    try {
      hosts = await threeHosts(["plugins/hello-c"], ["hello-c"]);
      const [, h2, h3] = hosts as [HostProcess, HostProcess, HostProcess];
      const cacheDenied = async () => {
        const res = await fetch(`${h3.url}/api/plugins/hello-c/test`, {
          headers: { authorization: `Bearer ${h3.token}` },
        });
        const body = await res.text();
        assert.equal(res.status, 200, body);
        return JSON.parse(body).results.cache_set === null;
      };
      assert.equal(await cacheDenied(), true, "not granted yet");
      const approve = await api(h2, "POST", "/plugins/hello-c/grants");
      assert.equal(approve.status, 200);
      const ok = await within(1000, async () => !(await cacheDenied()));
      assert.ok(ok !== undefined, "host 3 uses the grant made on host 2");
      const revoke = await api(h2, "DELETE", "/plugins/hello-c/grants");
      assert.equal(revoke.status, 200);
      const refused = await within(1000, cacheDenied);
      assert.ok(refused !== undefined, "host 3 refuses after the revoke");
    } finally {
      await stopAll(hosts);
    }
  },
});

// --- Waiting for packages in the database (host/loading/**) --------------

Deno.test({
  name: "a package installed on host 3 serves on hosts 1 and 2",
  // Packages in the database (host/loading/package_sync.ts): the bytes
  // stored once in PostgreSQL, checked (SHA-256, signature) and loaded by
  // every host on the change feed's NOTIFY of the install.
  sanitizeResources: false,
  sanitizeOps: false,
  async fn() {
    let hosts: HostProcess[] = [];
    try {
      hosts = await threeHosts([]);
      const [h1, h2, h3] = hosts as [HostProcess, HostProcess, HostProcess];
      const dir = new URL("../fixtures/bench/echo-wat/", import.meta.url);
      const bytes = zipSync({
        "manifest.json": await Deno.readFile(new URL("manifest.json", dir)),
        "plugin.wasm": await Deno.readFile(new URL("plugin.wasm", dir)),
      }) as Uint8Array<ArrayBuffer>;
      const res = await fetch(
        `${h3.url}/api/v1/plugins/upload?filename=bench-echo.zip`,
        {
          method: "POST",
          headers: { authorization: `Bearer ${h3.token}` },
          body: bytes,
        },
      );
      await res.body?.cancel();
      assert.equal(res.status, 200, "installed on host 3");
      for (const h of [h1, h2]) {
        await api(h, "POST", "/plugins/bench-echo/enable");
        const took = await within(
          5000,
          async () =>
            (await statusOf(`${h.url}/api/plugins/bench-echo`)) === 200,
        );
        assert.ok(took !== undefined, `${h.url} serves the package`);
      }
    } finally {
      await stopAll(hosts);
    }
  },
});
