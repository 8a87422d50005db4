import assert from "node:assert/strict";
import pg from "pg";
import { encodeJson, Manager, type Plugin } from "../mod.ts";
import {
  type JobClaim,
  jobTimeoutMs,
  PgJobClaim,
  Scheduler,
} from "../host/scheduler.ts";
import { FakeClock } from "./helpers/fake_clock.ts";

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

/** 2030-01-01T00:00:00Z: the fake clocks start on a whole second. */
const T0 = Date.UTC(2030, 0, 1);
const iso = (ms: number) => new Date(ms).toISOString();

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
  const clock = new FakeClock(T0);
  const s = new Scheduler(m, { clock });
  s.start();
  try {
    assert.equal(s.list()[0]?.nextRun, iso(T0 + 1000));
    await clock.advance(999);
    assert.equal(calls.length, 0, "nothing runs before the first tick");
    await clock.advance(1);
    await clock.advance(1000);
    await s.idle();
    assert.deepEqual(
      calls,
      ["on_tick", "on_tick"],
      "the disabled job never runs",
    );
    const [job] = s.list();
    assert.equal(s.list().length, 1);
    assert.equal(job?.id, "tick");
    assert.equal(job?.timeoutMs, 300_000);
    assert.equal(job?.nextRun, iso(T0 + 3000));
    assert.deepEqual(
      job!.lastRuns.map((r) => [r.start, r.outcome, r.trigger]),
      [
        [iso(T0 + 2000), "ok", "schedule"],
        [iso(T0 + 1000), "ok", "schedule"],
      ],
    );
  } finally {
    s.stop();
    await s.idle();
    await m.shutdownAll();
  }
  assert.equal(clock.pending, 0, "stop() leaves no timer behind");
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
    // Works for 5 s (real time) unless the deadline aborts it.
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
  const clock = new FakeClock(T0);
  const s = new Scheduler(m, { clock });
  s.start();
  const outcomes = () => s.list()[0]!.lastRuns.map((r) => r.outcome);
  try {
    await clock.advance(1000); // T0+1s: the run starts
    assert.equal(started, 1);
    assert.equal(s.list()[0]?.running, true);
    await clock.advance(1000); // T0+2s: still running, so this tick skips
    assert.deepEqual(outcomes(), ["skipped"]);
    await clock.advance(499); // T0+2.499s: 1499 ms in, not cut yet
    assert.deepEqual(outcomes(), ["skipped"]);
    await clock.advance(1); // T0+2.5s: the 1500 ms deadline
    assert.deepEqual(outcomes(), ["timeout", "skipped"]);
    const runs = s.list()[0]!.lastRuns;
    const timedOut = runs.find((r) => r.outcome === "timeout")!;
    assert.equal(timedOut.start, iso(T0 + 1000));
    assert.equal(timedOut.durationMs, 1500);
    assert.match(timedOut.error ?? "", /timed out after 1500 ms/);
    assert.equal(runs.find((r) => r.outcome === "skipped")?.durationMs, 0);
    await clock.advance(500); // T0+3s: the next tick runs again
    assert.equal(started, 2);
    assert.equal(maxRunning, 1, "two runs of one job never overlap");
  } finally {
    s.stop();
    // The run in progress finishes on its own, at its deadline.
    await clock.advance(1500);
    await s.idle();
    await m.shutdownAll();
  }
  assert.equal(running, 0, "the cut runs ended");
});

Deno.test("Scheduler follows disable, enable and unregister live", async () => {
  const m = new Manager();
  await m.register(jobPlugin("live", [
    { id: "j", handler: "h", schedule: "0 0 1 1 *", enabled: true },
  ], () => Promise.resolve(null)));
  const clock = new FakeClock(Date.UTC(2030, 5, 15));
  const s = new Scheduler(m, { clock });
  s.start();
  try {
    assert.equal(s.list().length, 1);
    assert.equal(s.list()[0]?.nextRun, "2031-01-01T00:00:00.000Z");
    await m.disable("live");
    assert.equal(s.list().length, 0);
    assert.equal(clock.pending, 0, "the disabled job's wait is cancelled");
    await m.enable("live");
    assert.equal(s.list().length, 1);
    const run = await s.runNow("live", "j");
    assert.equal(run.outcome, "ok");
    assert.equal(run.trigger, "manual");
    await m.unregister("live");
    assert.equal(s.list().length, 0);
    await assert.rejects(() => s.runNow("live", "j"), /no such scheduled job/);
    assert.equal(clock.pending, 0);
  } finally {
    s.stop();
    await m.shutdownAll();
  }
});

Deno.test("Scheduler waits for a tick further away than one timer can wait", async () => {
  const newYear = Date.UTC(2031, 0, 1);
  const clock = new FakeClock(Date.UTC(2030, 5, 15)); // 200 days before
  const m = new Manager();
  const calls: number[] = [];
  await m.register(jobPlugin("yearly", [
    { id: "j", handler: "h", schedule: "0 0 1 1 *", enabled: true },
  ], () => {
    calls.push(clock.now());
    return Promise.resolve(null);
  }));
  const s = new Scheduler(m, { clock });
  s.start();
  try {
    await clock.advance(newYear - 1 - clock.now());
    assert.deepEqual(calls, [], "no run before the tick");
    await clock.advance(1);
    await s.idle();
    assert.deepEqual(calls, [newYear]);
    assert.equal(s.list()[0]?.nextRun, "2032-01-01T00:00:00.000Z");
  } finally {
    s.stop();
    await m.shutdownAll();
  }
});

Deno.test("Scheduler runs a tick only on the host whose claim wins", async () => {
  const claims: [string, number][] = [];
  const won = new Set<string>();
  // One claim shared by two schedulers, as PostgreSQL is by two hosts.
  const claim: JobClaim = {
    claim(key, tick) {
      claims.push([key, tick]);
      const id = `${key}@${tick}`;
      if (won.has(id)) return Promise.resolve(false);
      won.add(id);
      return Promise.resolve(true);
    },
  };
  const clock = new FakeClock(T0);
  const hosts = await Promise.all([0, 1].map(async () => {
    const m = new Manager();
    const ran: number[] = [];
    await m.register(jobPlugin("shared", [
      { id: "j", handler: "h", schedule: "* * * * * *", enabled: true },
    ], () => {
      ran.push(clock.now() / 1000);
      return Promise.resolve(null);
    }));
    const s = new Scheduler(m, { clock, claim });
    return { m, s, ran };
  }));
  for (const h of hosts) h.s.start();
  try {
    for (let i = 0; i < 3; i++) {
      await clock.advance(1000);
      await Promise.all(hosts.map((h) => h.s.idle()));
    }
    const ticks = [1, 2, 3].map((i) => T0 / 1000 + i);
    assert.deepEqual(
      claims,
      ticks.flatMap((t) => [["shared.j", t], ["shared.j", t]]),
      "both hosts claim each tick, in epoch seconds",
    );
    assert.deepEqual(
      [...hosts[0]!.ran, ...hosts[1]!.ran].sort(),
      ticks,
      "each tick ran once",
    );
    assert.equal(
      hosts[1]!.s.list()[0]?.lastRuns.length,
      0,
      "losers record nothing",
    );
  } finally {
    for (const h of hosts) {
      h.s.stop();
      await h.m.shutdownAll();
    }
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
  const TICKS = 20;
  try {
    // The claim itself, directly: only the first of two claims wins. (This
    // also creates the table before the hosts race on it.)
    const c = new PgJobClaim(pool);
    const key = `${job}.direct`;
    const won = await Promise.all([c.claim(key, 42), c.claim(key, 42)]);
    assert.deepEqual(won.sort(), [false, true]);
    await pool.query("DELETE FROM goatkit.job_ticks WHERE job = $1", [key]);

    // Two processes, each with a fake clock from T0 that it advances one
    // second at a time for TICKS ticks, once both are ready.
    const script = new URL("./helpers/scheduler_host.ts", import.meta.url);
    const hosts = [0, 1].map(() =>
      new Deno.Command(Deno.execPath(), {
        args: ["run", "-A", script.pathname, PG_URL, job, `${T0}`, `${TICKS}`],
        stdin: "piped",
        stdout: "piped",
        stderr: "piped",
      }).spawn()
    );
    const lines = hosts.map((h) => readLines(h.stdout));
    for (const l of lines) assert.equal((await l.next()).value, "ready");
    for (const h of hosts) {
      const w = h.stdin.getWriter();
      await w.write(new TextEncoder().encode("go\n"));
      await w.close();
    }
    const [ticks, statuses] = await Promise.all([
      Promise.all(lines.map((l) => Array.fromAsync(l))),
      Promise.all(hosts.map((h) => h.status)),
    ]);
    for (const [i, st] of statuses.entries()) {
      const stderr = await new Response(hosts[i]!.stderr).text();
      assert.equal(st.code, 0, stderr);
    }
    const all = ticks.flat().map(Number);
    assert.deepEqual(
      [...all].sort((a, b) => a - b),
      Array.from({ length: TICKS }, (_, i) => T0 / 1000 + i + 1),
      `each tick runs once, on one host: ${ticks.join(" | ")}`,
    );
    const claimed = await pool.query(
      "SELECT count(*)::int AS n FROM goatkit.job_ticks WHERE job = $1",
      [`${job}.every-second`],
    );
    assert.equal(claimed.rows[0].n, all.length);
    await pool.query("DELETE FROM goatkit.job_ticks WHERE job = $1", [
      `${job}.every-second`,
    ]);
  } finally {
    await pool.end();
  }
});

/** The lines of a byte stream. */
async function* readLines(
  stream: ReadableStream<Uint8Array>,
): AsyncGenerator<string> {
  let rest = "";
  for await (const chunk of stream.pipeThrough(new TextDecoderStream())) {
    const parts = (rest + chunk).split("\n");
    rest = parts.pop()!;
    yield* parts;
  }
  if (rest) yield rest;
}
