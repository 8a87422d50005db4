import assert from "node:assert/strict";
import pg from "pg";
import {
  encodeJson,
  jobTimeoutMs,
  Manager,
  PgJobClaim,
  type Plugin,
  Scheduler,
} from "../mod.ts";

const PG_URL = Deno.env.get("GOATKIT_TEST_PG_URL") ??
  "postgres://postgres@127.0.0.1:5432/test";

function jobPlugin(
  name: string,
  jobs: Record<string, unknown>[],
  call: Plugin["call"],
): Plugin {
  return {
    gkRegister: () => ({ name, version: "1.0.0", jobs }) as never,
    init: () => Promise.resolve(),
    call,
    shutdown: () => Promise.resolve(),
  };
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

async function until(cond: () => boolean, ms = 10_000): Promise<void> {
  const end = Date.now() + ms;
  while (!cond()) {
    if (Date.now() > end) throw new Error("condition not met in time");
    await sleep(20);
  }
}

Deno.test("Scheduler runs an enabled job on its schedule and records the runs", async () => {
  const m = new Manager();
  const calls: string[] = [];
  await m.register(jobPlugin("ticker", [
    { id: "tick", handler: "on_tick", schedule: "* * * * * *", enabled: true },
    { id: "off", handler: "never", schedule: "* * * * * *" },
  ], (fn) => {
    calls.push(fn);
    return Promise.resolve(encodeJson({ ok: true }));
  }));
  const s = new Scheduler(m);
  s.start();
  try {
    await until(() => calls.length >= 2, 5000);
    assert.ok(
      calls.every((c) => c === "on_tick"),
      "the disabled job never runs",
    );
    const [job] = s.list();
    assert.equal(s.list().length, 1);
    assert.equal(job?.id, "tick");
    assert.equal(job?.timeoutMs, 300_000);
    assert.ok(job?.nextRun);
    assert.ok(job!.lastRuns.length >= 1);
    assert.equal(job!.lastRuns[0]?.outcome, "ok");
  } finally {
    s.stop();
    await s.idle();
    await m.shutdownAll();
  }
});

Deno.test("Scheduler cuts a slow job at its timeout and never overlaps runs", async () => {
  const m = new Manager();
  let running = 0;
  let maxRunning = 0;
  let started = 0;
  await m.register(jobPlugin("slowjob", [
    {
      id: "slow",
      handler: "slow",
      schedule: "* * * * * *",
      enabled: true,
      timeout: "1500ms",
    },
  ], async (_fn, _args, ctx) => {
    started++;
    running++;
    maxRunning = Math.max(maxRunning, running);
    // Works for 5 s unless the deadline aborts it.
    await new Promise<void>((resolve) => {
      const t = setTimeout(resolve, 5000);
      ctx.signal.addEventListener("abort", () => {
        clearTimeout(t);
        resolve();
      });
    });
    running--;
    return null;
  }));
  const s = new Scheduler(m);
  s.start();
  try {
    await until(
      () => (s.list()[0]?.lastRuns ?? []).some((r) => r.outcome === "timeout"),
      8000,
    );
    await until(
      () => (s.list()[0]?.lastRuns ?? []).some((r) => r.outcome === "skipped"),
      8000,
    );
    const runs = s.list()[0]!.lastRuns;
    const timedOut = runs.find((r) => r.outcome === "timeout")!;
    assert.ok(
      timedOut.durationMs >= 1400 && timedOut.durationMs < 4000,
      `${timedOut.durationMs}`,
    );
    assert.match(timedOut.error ?? "", /timed out after 1500 ms/);
    assert.equal(maxRunning, 1, "two runs of one job never overlap");
    assert.ok(started >= 1);
  } finally {
    s.stop();
    await s.idle();
    await m.shutdownAll();
  }
});

Deno.test("Scheduler follows disable, enable and unregister live", async () => {
  const m = new Manager();
  await m.register(jobPlugin("live", [
    { id: "j", handler: "h", schedule: "0 0 1 1 *", enabled: true },
  ], () => Promise.resolve(null)));
  const s = new Scheduler(m);
  s.start();
  try {
    assert.equal(s.list().length, 1);
    await m.disable("live");
    assert.equal(s.list().length, 0);
    await m.enable("live");
    assert.equal(s.list().length, 1);
    const run = await s.runNow("live", "j");
    assert.equal(run.outcome, "ok");
    assert.equal(run.trigger, "manual");
    await m.unregister("live");
    assert.equal(s.list().length, 0);
    await assert.rejects(() => s.runNow("live", "j"), /no such scheduled job/);
  } finally {
    s.stop();
    await m.shutdownAll();
  }
});

Deno.test("jobTimeoutMs() honours sub-second timeouts and defaults to 5 minutes", () => {
  assert.equal(jobTimeoutMs("500ms"), 500);
  assert.equal(jobTimeoutMs("2m"), 120_000);
  assert.equal(jobTimeoutMs(undefined), 300_000);
  assert.equal(jobTimeoutMs("soon"), 300_000);
});

Deno.test("PgJobClaim: two host processes on one PostgreSQL run each tick once", async () => {
  const job = `twohosts-${crypto.randomUUID().slice(0, 8)}`;
  const pool = new pg.Pool({ connectionString: PG_URL, max: 2 });
  try {
    await pool.query("SELECT 1");
    const script = new URL("./helpers/scheduler_host.ts", import.meta.url);
    const hosts = [0, 1].map(() =>
      new Deno.Command(Deno.execPath(), {
        args: ["run", "-A", script.pathname, PG_URL, job, "4500"],
        stdout: "piped",
        stderr: "piped",
      }).spawn()
    );
    const outs = await Promise.all(hosts.map((h) => h.output()));
    const ticks = outs.map((o) => {
      assert.equal(o.code, 0, new TextDecoder().decode(o.stderr));
      return new TextDecoder().decode(o.stdout).split("\n").filter(Boolean)
        .map(Number);
    });
    const all = [...ticks[0]!, ...ticks[1]!];
    assert.ok(all.length >= 3, `expected ≥ 3 ticks, got ${all.length}`);
    assert.equal(new Set(all).size, all.length, `a tick ran twice: ${all}`);
    const claimed = await pool.query(
      "SELECT count(*)::int AS n FROM goatkit_job_ticks WHERE job = $1",
      [`${job}.every-second`],
    );
    assert.equal(claimed.rows[0].n, all.length);
    await pool.query("DELETE FROM goatkit_job_ticks WHERE job = $1", [
      `${job}.every-second`,
    ]);
    // The claim itself, directly: only the first of two claims wins.
    const c = new PgJobClaim(pool);
    const key = `${job}.direct`;
    const won = await Promise.all([c.claim(key, 42), c.claim(key, 42)]);
    assert.deepEqual(won.sort(), [false, true]);
    await pool.query("DELETE FROM goatkit_job_ticks WHERE job = $1", [key]);
  } finally {
    await pool.end();
  }
});
