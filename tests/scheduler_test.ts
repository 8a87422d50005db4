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
import { loadConfig } from "../host/services/config.ts";
import { parseManifest } from "../host/model/manifest.ts";

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
    assert.equal(
      runs.find((r) => r.outcome === "skipped")?.reason,
      "previous run still running",
    );
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

/**
 * A tick claim kept in memory that can be "down" (every claim fails as a
 * refused connection would), shared by several schedulers like PostgreSQL.
 */
class SwitchableClaim {
  down = false;
  readonly won = new Map<string, number>();
  readonly attempts: number[] = [];
  #next = 0;
  /** Which host (0, 1, …) won each claim, by `key@tick`. */
  forHost(): JobClaim {
    const host = this.#next++;
    return {
      claim: (key, tick) => {
        this.attempts.push(tick);
        if (this.down) {
          return Promise.reject(
            new Error("connect ECONNREFUSED 127.0.0.1:5432"),
          );
        }
        const id = `${key}@${tick}`;
        if (this.won.has(id)) return Promise.resolve(false);
        this.won.set(id, host);
        return Promise.resolve(true);
      },
    };
  }
}

/** Advances `clock` one second at a time to `at`, letting runs finish. */
async function stepTo(
  clock: FakeClock,
  schedulers: Scheduler[],
  at: number,
): Promise<void> {
  while (clock.now() < at) {
    await clock.advance(Math.min(1000, at - clock.now()));
    await Promise.all(schedulers.map((s) => s.idle()));
  }
}

const MIN = 60_000;

for (const policy of ["skip", "once"] as const) {
  Deno.test(`Scheduler records ticks it could not claim as one skipped run (catch-up ${policy})`, async () => {
    const m = new Manager();
    const ran: [number, string][] = [];
    const clock = new FakeClock(T0);
    await m.register(jobPlugin("outage", [
      { id: "j", handler: "h", schedule: "* * * * *", enabled: true },
    ], () => {
      ran.push([clock.now() - T0, "run"]);
      return Promise.resolve(null);
    }));
    const claims = new SwitchableClaim();
    const s = new Scheduler(m, {
      clock,
      claim: claims.forHost(),
      catchUp: policy,
    });
    s.start();
    const runs = () =>
      s.list()[0]!.lastRuns.map((r) => [
        r.start,
        r.outcome,
        r.trigger,
        r.reason ?? "",
        r.missedTicks ?? 0,
      ]);
    try {
      await stepTo(clock, [s], T0 + MIN); // tick 1 runs
      claims.down = true;
      // Ticks 2, 3, 4 fail; so do the retries 1, 2, 4, 8, 16, 30, 30, 30 s
      // after the first failure (121, 123, 127, 135, 151, 181, 211, 241 s).
      await stepTo(clock, [s], T0 + 4 * MIN + 5000);
      assert.deepEqual(ran, [[MIN, "run"]]);
      assert.equal(s.list()[0]!.lastRuns.length, 1, "nothing recorded yet");
      const warnings = m.logs.getByPlugin("outage").filter((l) =>
        /cannot claim/.test(l.message)
      );
      assert.equal(warnings.length, 1, "one warning per outage, not per tick");
      assert.match(warnings[0]!.message, /database unavailable/);
      claims.down = false;
      await stepTo(clock, [s], T0 + 4 * MIN + 31_000); // the retry at 271 s
      const back = T0 + 4 * MIN + 31_000;
      const record = s.list()[0]!.lastRuns.find((r) =>
        r.outcome === "skipped"
      )!;
      assert.equal(record.missedTicks, 3);
      assert.equal(record.start, iso(T0 + 2 * MIN));
      assert.equal(record.lastTick, iso(T0 + 4 * MIN));
      assert.equal(record.reason, "database unavailable");
      assert.match(
        record.error ?? "",
        /^Cannot run 3 ticks from .+ to .+: database unavailable \(connect ECONNREFUSED/,
      );
      assert.deepEqual(
        ran,
        policy === "once" ? [[MIN, "run"], [back - T0, "run"]] : [[MIN, "run"]],
        "at most one catch-up run, right after the outage",
      );
      await stepTo(clock, [s], T0 + 5 * MIN); // tick 5, as usual
      assert.deepEqual(runs(), [
        [iso(T0 + 5 * MIN), "ok", "schedule", "", 0],
        ...(policy === "once" ? [[iso(back), "ok", "catch-up", "", 0]] : []),
        [iso(T0 + 2 * MIN), "skipped", "schedule", "database unavailable", 3],
        [iso(T0 + MIN), "ok", "schedule", "", 0],
      ]);
      // The outage's record holds the last missed tick, so no other host
      // records or catches it up again.
      assert.ok(claims.won.has(`outage.j@${(T0 + 4 * MIN) / 1000}`));
      assert.ok(!claims.won.has(`outage.j@${(T0 + 2 * MIN) / 1000}`));
    } finally {
      s.stop();
      await s.idle();
      await m.shutdownAll();
    }
    assert.equal(clock.pending, 0);
  });
}

Deno.test("Scheduler: a regular tick that finds the database back ends the outage without an extra run", async () => {
  const m = new Manager();
  const clock = new FakeClock(T0);
  const ran: number[] = [];
  await m.register(jobPlugin("blip", [
    { id: "j", handler: "h", schedule: "* * * * *", enabled: true },
  ], () => {
    ran.push(clock.now() - T0);
    return Promise.resolve(null);
  }));
  const claims = new SwitchableClaim();
  const s = new Scheduler(m, { clock, claim: claims.forHost() }); // "once"
  s.start();
  try {
    claims.down = true;
    await stepTo(clock, [s], T0 + MIN + 45_000); // tick 1 fails, retries too
    claims.down = false;
    // Retries after the failure at 60 s: 61, 63, 67, 75, 91, 121 s — the
    // tick at 120 s comes first and finds the database back.
    await stepTo(clock, [s], T0 + 2 * MIN);
    assert.deepEqual(ran, [2 * MIN], "the tick's own run, no catch-up");
    assert.deepEqual(
      s.list()[0]!.lastRuns.map((r) => [r.start, r.outcome, r.missedTicks]),
      [
        [iso(T0 + 2 * MIN), "ok", undefined],
        [iso(T0 + MIN), "skipped", 1],
      ],
    );
    assert.match(
      s.list()[0]!.lastRuns[1]!.error ?? "",
      /^Cannot run the tick of 2030-01-01T00:01:00.000Z: database unavailable/,
    );
    await stepTo(clock, [s], T0 + 2 * MIN + 5000);
    assert.equal(ran.length, 1, "no retry is left to run it again");
  } finally {
    s.stop();
    await m.shutdownAll();
  }
  assert.equal(clock.pending, 0);
});

Deno.test("Scheduler: after an outage two hosts record and catch up once between them", async () => {
  const clock = new FakeClock(T0);
  const claims = new SwitchableClaim();
  const hosts = await Promise.all([0, 1].map(async () => {
    const m = new Manager();
    const ran: string[] = [];
    await m.register(jobPlugin("pair", [
      { id: "j", handler: "h", schedule: "* * * * *", enabled: true },
    ], () => {
      ran.push("run");
      return Promise.resolve(null);
    }));
    const s = new Scheduler(m, { clock, claim: claims.forHost() });
    s.start();
    return { m, s, ran };
  }));
  const all = hosts.map((h) => h.s);
  try {
    claims.down = true;
    await stepTo(clock, all, T0 + 3 * MIN + 5000); // ticks 1-3 missed
    claims.down = false;
    await stepTo(clock, all, T0 + 3 * MIN + 31_000); // both retry at 211 s
    const records = hosts.map((h) =>
      h.s.list()[0]!.lastRuns.map((r) => `${r.outcome}/${r.trigger}`)
    );
    assert.deepEqual(
      records.map((r) => r.join(",")).sort(),
      ["", "ok/catch-up,skipped/schedule"],
      `one host records the gap and runs once: ${JSON.stringify(records)}`,
    );
    assert.equal(hosts[0]!.ran.length + hosts[1]!.ran.length, 1);
  } finally {
    for (const h of hosts) {
      h.s.stop();
      await h.m.shutdownAll();
    }
  }
});

Deno.test("Scheduler: a job's manifest catch_up wins over the host's policy; stop() ends the retries", async () => {
  const m = new Manager();
  const clock = new FakeClock(T0);
  let runs = 0;
  await m.register(jobPlugin("perjob", [
    {
      id: "j",
      handler: "h",
      schedule: "* * * * *",
      enabled: true,
      catch_up: "skip",
    },
  ], () => {
    runs++;
    return Promise.resolve(null);
  }));
  const claims = new SwitchableClaim();
  const s = new Scheduler(m, {
    clock,
    claim: claims.forHost(),
    catchUp: "once",
  });
  s.start();
  try {
    claims.down = true;
    await stepTo(clock, [s], T0 + MIN + 5000);
    claims.down = false;
    await stepTo(clock, [s], T0 + MIN + 7000); // the retry at 67 s
    assert.equal(runs, 0, "catch_up: skip in the manifest");
    assert.equal(s.list()[0]!.lastRuns[0]?.missedTicks, 1);
    claims.down = true;
    await stepTo(clock, [s], T0 + 2 * MIN + 1000); // a new outage, retrying
    assert.ok(clock.pending > 1, "a retry is armed");
  } finally {
    s.stop();
    await m.shutdownAll();
  }
  assert.equal(clock.pending, 0, "stop() cancels the retry too");
});

Deno.test("server.jobCatchUp (GOATKIT_JOB_CATCH_UP) and a job's catch_up are read and checked", () => {
  const setting = (env: Record<string, string>) =>
    loadConfig({ env, defaultPath: "/nonexistent/goatkit.json" }).server
      .jobCatchUp;
  assert.equal(setting({}), "once");
  assert.equal(setting({ GOATKIT_JOB_CATCH_UP: "skip" }), "skip");
  assert.equal(setting({ GOATKIT_SERVER__JOBCATCHUP: " SKIP " }), "skip");
  assert.throws(
    () => setting({ GOATKIT_JOB_CATCH_UP: "always" }),
    /Cannot use environment variable GOATKIT_JOB_CATCH_UP: "always" is not skip or once/,
  );
  const job = { id: "j", handler: "h", schedule: "* * * * *" };
  const manifest = (extra: Record<string, unknown>) =>
    parseManifest({
      name: "mf",
      version: "1.0.0",
      jobs: [{ ...job, ...extra }],
    });
  assert.equal(manifest({ catch_up: "skip" }).jobs?.[0]?.catch_up, "skip");
  assert.equal(manifest({}).jobs?.[0]?.catch_up, undefined);
  assert.throws(
    () => manifest({ catch_up: "burst" }),
    /jobs\[0\]\.catch_up: must be skip or once/,
  );
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
