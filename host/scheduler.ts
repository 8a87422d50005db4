/**
 * The job scheduler: runs the `jobs` of enabled plugins on their cron
 * schedules (`npm:croner`), with their `timeout`, never two runs of one job at
 * once, and the last runs kept for the admin pages. It follows the Manager
 * live: enabling, disabling, registering or replacing a plugin adds, removes
 * or reschedules its jobs. With a {@linkcode JobClaim} (PostgreSQL), each tick
 * runs on one host only.
 *
 * Croner only computes the next fire time of each schedule; the waiting (the
 * ticks and the job deadlines) goes through a {@linkcode SchedulerClock}, the
 * system clock unless {@linkcode SchedulerOptions.clock} gives another, so
 * that tests can drive the scheduler with a clock they advance.
 *
 * Misfires: a tick whose claim fails (the database is down) is not lost
 * silently. The scheduler retries the claim of the last missed tick (1 s,
 * then doubling up to 30 s); once the database answers, the host that wins
 * that tick records one `skipped` run per job and outage (reason `database
 * unavailable`, how many ticks, the first and the last) and, under the
 * `once` {@linkcode CatchUpPolicy} (the default; the job's manifest
 * `catch_up` or {@linkcode SchedulerOptions.catchUp}), runs the job once
 * (trigger `catch-up`) — never once per missed tick. A regular tick that
 * finds the database back also ends the outage; its own run is then the
 * run after the outage, so no catch-up run is added.
 *
 * @module
 */

import { Cron } from "croner";
import { errorText, PluginTimeoutError } from "./model/errors.ts";
import { parseDuration } from "./model/_duration.ts";
import type { Contributed, Manager } from "./manager.ts";
import type { JobSpec } from "./model/manifest.ts";
import { HostTable } from "../permissions/host_schema.ts";

/** The default job timeout: 5 minutes. */
export const DEFAULT_JOB_TIMEOUT_MS = 300_000;

/** How one run of a job ended. */
export type JobOutcome = "ok" | "error" | "timeout" | "skipped";

/**
 * What a scheduler does about the ticks of a job it could not claim because
 * the database was down, once it is back: `once` runs the job one time
 * (trigger `catch-up`; cron's usual misfire handling, as Quartz's "fire
 * once now", systemd's `Persistent=` and Kubernetes CronJobs do), `skip`
 * only records the gap. Either way the missed ticks are one `skipped`
 * record, and never make a burst of runs.
 */
export type CatchUpPolicy = "skip" | "once";

/** The default {@linkcode CatchUpPolicy}: run once after an outage. */
export const DEFAULT_CATCH_UP: CatchUpPolicy = "once";

/** Why a `skipped` run of ticks that could not be claimed did not run. */
export const REASON_DATABASE_UNAVAILABLE = "database unavailable";

/** Why a `skipped` run did not run because the previous one was still going. */
export const REASON_STILL_RUNNING = "previous run still running";

/** The first retry of a failed claim, in ms (then doubled). */
export const CLAIM_RETRY_MS = 1000;

/** The longest wait between two retries of a failed claim, in ms. */
export const CLAIM_RETRY_MAX_MS = 30_000;

/** One run of a job. */
export interface JobRun {
  /** When it started (RFC 3339). */
  start: string;
  /** How long it took, in ms. */
  durationMs: number;
  /**
   * How it ended; `skipped` when the previous run was still going, or for
   * ticks that could not be claimed (see `reason`).
   */
  outcome: JobOutcome;
  /**
   * The error message, for `error` and `timeout`; for ticks that could not
   * be claimed, which ticks and the database's last error.
   */
  error?: string;
  /**
   * Why a `skipped` run did not run: {@linkcode REASON_STILL_RUNNING} or
   * {@linkcode REASON_DATABASE_UNAVAILABLE}.
   */
  reason?: string;
  /**
   * For ticks that could not be claimed: how many this one record stands
   * for, from `start` to `lastTick`.
   */
  missedTicks?: number;
  /** The last of the `missedTicks` (RFC 3339). */
  lastTick?: string;
  /**
   * `schedule`, `manual`, or `catch-up` (the one run after ticks were
   * missed, under the `once` {@linkcode CatchUpPolicy}).
   */
  trigger: "schedule" | "manual" | "catch-up";
}

/** A scheduled job as the admin pages show it. */
export interface ScheduledJob {
  /** The plugin. */
  plugin: string;
  /** The job id within the plugin. */
  id: string;
  /** Cron expression. */
  schedule: string;
  /** The plugin function it calls. */
  handler: string;
  /** Description from the manifest. */
  description?: string;
  /** Timeout in ms. */
  timeoutMs: number;
  /** Next planned run (RFC 3339), if any. */
  nextRun: string | null;
  /** Whether a run is in progress. */
  running: boolean;
  /** The last runs, newest first. */
  lastRuns: JobRun[];
}

/**
 * Decides which host runs a tick when several hosts share a database.
 * `claim` returns true for exactly one caller per (job, tick).
 */
export interface JobClaim {
  /** Claims tick `tick` (epoch seconds) of job `key`; true when this host won. */
  claim(key: string, tick: number): Promise<boolean>;
  /**
   * Keeps a run record where every host sees it (the shared run history);
   * `tick` (epoch seconds) for a scheduled run. The scheduler does not wait
   * for it, and a failure only loses that record.
   */
  record?(key: string, run: JobRun, tick?: number): Promise<void>;
}

/**
 * The time source of a {@linkcode Scheduler}: what time it is, and one-shot
 * timers on that time line. The default is the system clock (`Date.now()`,
 * `setTimeout`, `clearTimeout`); tests pass a fake clock that they advance.
 * The scheduler never asks for a delay over 2³¹−1 ms (it waits in steps), and
 * checks `now()` when a timer fires, so a timer that fires early is harmless.
 *
 * @example A clock that moves only when told to
 * ```ts
 * import type { SchedulerClock } from "./scheduler.ts";
 * class ManualClock implements SchedulerClock {
 *   #now = Date.UTC(2030, 0, 1);
 *   #id = 0;
 *   #timers = new Map<number, { at: number; callback: () => void }>();
 *   now(): number {
 *     return this.#now;
 *   }
 *   setTimer(callback: () => void, delayMs: number): number {
 *     this.#timers.set(++this.#id, { at: this.#now + delayMs, callback });
 *     return this.#id;
 *   }
 *   clearTimer(timer: number): void {
 *     this.#timers.delete(timer);
 *   }
 *   advance(ms: number): void {
 *     const end = this.#now + ms;
 *     for (;;) {
 *       const due = [...this.#timers].filter(([, t]) => t.at <= end)
 *         .sort(([a, x], [b, y]) => x.at - y.at || a - b)[0];
 *       if (!due) break;
 *       this.#timers.delete(due[0]);
 *       this.#now = due[1].at;
 *       due[1].callback();
 *     }
 *     this.#now = end;
 *   }
 * }
 * ```
 */
export interface SchedulerClock {
  /** The current time, in milliseconds since the epoch. */
  now(): number;
  /**
   * Calls `callback` once, `delayMs` from now; returns an opaque handle for
   * {@linkcode SchedulerClock.clearTimer}.
   */
  setTimer(callback: () => void, delayMs: number): unknown;
  /** Cancels a timer that has not fired yet; does nothing otherwise. */
  clearTimer(timer: unknown): void;
}

const SYSTEM_CLOCK: SchedulerClock = {
  now: () => Date.now(),
  setTimer: (callback, delayMs) => setTimeout(callback, delayMs),
  clearTimer: (timer) => clearTimeout(timer as ReturnType<typeof setTimeout>),
};

/** The longest delay `setTimeout` takes (about 24.8 days). */
const MAX_TIMER_DELAY_MS = 2 ** 31 - 1;

/**
 * Calls `fn` once `clock` reaches `when`, in steps of at most
 * {@linkcode MAX_TIMER_DELAY_MS}; returns a function that cancels the wait.
 */
function callAt(
  clock: SchedulerClock,
  when: number,
  fn: () => void,
): () => void {
  let timer: unknown;
  let cancelled = false;
  const arm = () => {
    const left = Math.max(0, when - clock.now());
    timer = clock.setTimer(fire, Math.min(left, MAX_TIMER_DELAY_MS));
  };
  const fire = () => {
    if (cancelled) return;
    if (clock.now() < when) arm();
    else fn();
  };
  arm();
  return () => {
    cancelled = true;
    clock.clearTimer(timer);
  };
}

/** Options of {@linkcode Scheduler}. */
export interface SchedulerOptions {
  /** Shares ticks between hosts (see {@linkcode PgJobClaim}). */
  claim?: JobClaim;
  /** Time zone for cron expressions. @default "UTC" */
  timezone?: string;
  /** Runs kept per job. @default 20 */
  historySize?: number;
  /**
   * The clock that times the ticks, the run records, the job deadlines and
   * the claim retries. The Manager's own deadline for the call stays in
   * real time as a backstop.
   * @default the system clock
   */
  clock?: SchedulerClock;
  /**
   * What to do about ticks missed while the claim failed (the host's
   * `server.jobCatchUp`, `GOATKIT_JOB_CATCH_UP`); see
   * {@linkcode CatchUpPolicy}. A job's manifest `catch_up` wins.
   * @default "once"
   */
  catchUp?: CatchUpPolicy;
  /**
   * Called with every run record as it is kept (metrics, host events); an
   * error it throws is ignored.
   */
  onRun?: (plugin: string, job: string, run: JobRun) => void;
}

/** Ticks of one job that could not be claimed, until the database is back. */
interface Outage {
  /** The first and the last missed tick (epoch ms). */
  first: number;
  last: number;
  /** How many ticks were missed. */
  count: number;
  /** The last error of the claim. */
  error: string;
  /** The wait before the next retry. */
  delayMs: number;
  /** Cancels the armed retry, if any. */
  retry: (() => void) | undefined;
  /** The attempt to end the outage in progress, if any. */
  ending: Promise<void> | undefined;
  /** A regular tick was claimed since: its run is the run after the outage. */
  tickClaimed: boolean;
}

interface Slot {
  job: Contributed<JobSpec>;
  key: string;
  signature: string;
  timeoutMs: number;
  /** The schedule; only computes fire times (it never runs anything). */
  cron: Cron;
  /** The planned tick (epoch ms), or null when the schedule has no more. */
  nextAt: number | null;
  /** Cancels the wait for `nextAt`. */
  cancel: () => void;
  /** Ticks missed because the claim failed, until one is claimed again. */
  outage: Outage | null;
  running: boolean;
  runs: JobRun[];
}

/** The job is not scheduled (unknown plugin or job id, or the plugin is disabled). */
export class JobNotFoundError extends Error {
  /** Creates the error for `plugin`/`id`. */
  constructor(plugin: string, id: string) {
    super(
      `Cannot run job "${id}" of plugin "${plugin}": no such scheduled job`,
    );
    this.name = "JobNotFoundError";
  }
}

/**
 * Runs plugin jobs; see the module doc.
 *
 * @example
 * ```ts
 * import { Manager } from "./manager.ts";
 * import { Scheduler } from "./scheduler.ts";
 * const manager = new Manager();
 * const scheduler = new Scheduler(manager);
 * scheduler.start();
 * console.log(scheduler.list().length); // 0
 * scheduler.stop();
 * ```
 */
export class Scheduler {
  #manager: Manager;
  #options: SchedulerOptions;
  #clock: SchedulerClock;
  #slots = new Map<string, Slot>();
  #unsubscribe: (() => void) | undefined;
  #inFlight = new Set<Promise<void>>();

  /** Creates a scheduler for `manager`'s jobs; call `start()`. */
  constructor(manager: Manager, options: SchedulerOptions = {}) {
    this.#manager = manager;
    this.#options = options;
    this.#clock = options.clock ?? SYSTEM_CLOCK;
  }

  /** Schedules the current jobs and follows the Manager's changes. */
  start(): void {
    if (this.#unsubscribe) return;
    this.#unsubscribe = this.#manager.subscribe(() => this.sync());
    this.sync();
  }

  /** Stops every schedule; runs in progress finish on their own. */
  stop(): void {
    this.#unsubscribe?.();
    this.#unsubscribe = undefined;
    for (const s of this.#slots.values()) drop(s);
    this.#slots.clear();
  }

  /** Waits for the runs in progress (for a clean shutdown). */
  async idle(): Promise<void> {
    while (this.#inFlight.size > 0) {
      await Promise.allSettled([...this.#inFlight]);
    }
  }

  /** Brings the schedules in line with the enabled plugins' `enabled` jobs. */
  sync(): void {
    const wanted = new Map<string, Contributed<JobSpec>>();
    for (const job of this.#manager.jobs()) {
      if (job.enabled === true) wanted.set(`${job.plugin}.${job.id}`, job);
    }
    for (const [key, slot] of this.#slots) {
      const job = wanted.get(key);
      if (!job || signature(job) !== slot.signature) {
        drop(slot);
        this.#slots.delete(key);
      }
    }
    for (const [key, job] of wanted) {
      if (this.#slots.has(key)) continue;
      const timeoutMs = jobTimeoutMs(job.timeout);
      const slot: Slot = {
        job,
        key,
        signature: signature(job),
        timeoutMs,
        runs: [],
        running: false,
        cron: new Cron(job.schedule, {
          timezone: this.#options.timezone ?? "UTC",
          paused: true,
        }),
        nextAt: null,
        cancel: () => {},
        outage: null,
      };
      this.#slots.set(key, slot);
      this.#plan(slot, this.#clock.now());
    }
  }

  /** The scheduled jobs with their last runs, sorted by plugin then id. */
  list(): ScheduledJob[] {
    return [...this.#slots.values()].sort((a, b) => a.key < b.key ? -1 : 1).map(
      (s) => ({
        plugin: s.job.plugin,
        id: s.job.id,
        schedule: s.job.schedule,
        handler: s.job.handler,
        ...(s.job.description ? { description: s.job.description } : {}),
        timeoutMs: s.timeoutMs,
        nextRun: s.nextAt === null ? null : new Date(s.nextAt).toISOString(),
        running: s.running,
        lastRuns: [...s.runs],
      }),
    );
  }

  /** Runs a job now (admin "run now"); resolves with the run's record. */
  async runNow(plugin: string, id: string): Promise<JobRun> {
    const slot = this.#slots.get(`${plugin}.${id}`);
    if (!slot) throw new JobNotFoundError(plugin, id);
    let run: JobRun | undefined;
    const p = this.#run(slot, "manual").then((r) => {
      run = r;
    });
    this.#track(p);
    await p;
    return run!;
  }

  /** Waits for the slot's first tick after `from` (epoch ms). */
  #plan(slot: Slot, from: number): void {
    const next = slot.cron.nextRun(new Date(from));
    slot.nextAt = next ? next.getTime() : null;
    if (slot.nextAt === null) {
      slot.cancel = () => {};
      return;
    }
    const tickAt = slot.nextAt;
    slot.cancel = callAt(this.#clock, tickAt, () => {
      if (this.#slots.get(slot.key) !== slot) return;
      // Ticks missed while the process was stalled are not made up.
      this.#plan(slot, Math.max(tickAt, this.#clock.now()));
      this.#track(this.#tick(slot, tickAt));
    });
  }

  async #tick(slot: Slot, tickAt: number): Promise<void> {
    const claim = this.#options.claim;
    if (claim) {
      let won: boolean;
      try {
        won = await claim.claim(slot.key, epochSeconds(tickAt));
      } catch (e) {
        this.#missed(slot, tickAt, e);
        return;
      }
      const outage = slot.outage;
      if (outage) {
        // The database answers again, and this tick runs (here or on
        // another host): it is the run after the outage.
        outage.tickClaimed = true;
        await this.#endOutage(slot, outage);
      }
      if (!won) return;
    }
    await this.#run(slot, "schedule", tickAt);
  }

  /** Counts a tick whose claim failed; the first one starts the retries. */
  #missed(slot: Slot, tickAt: number, e: unknown): void {
    const error = errorText(e);
    const o = slot.outage;
    if (o) {
      o.count++;
      o.first = Math.min(o.first, tickAt);
      o.last = Math.max(o.last, tickAt);
      o.error = error;
      return;
    }
    if (this.#slots.get(slot.key) !== slot) return; // dropped meanwhile
    const outage: Outage = {
      first: tickAt,
      last: tickAt,
      count: 1,
      error,
      delayMs: CLAIM_RETRY_MS,
      retry: undefined,
      ending: undefined,
      tickClaimed: false,
    };
    slot.outage = outage;
    this.#manager.logs.log(
      slot.job.plugin,
      "warn",
      `job "${slot.job.id}": cannot claim the tick of ${
        new Date(tickAt).toISOString()
      }: ${REASON_DATABASE_UNAVAILABLE} (${error}); retrying`,
    );
    this.#retryLater(slot, outage);
  }

  /** Arms the next retry of an outage (at most one at a time). */
  #retryLater(slot: Slot, o: Outage): void {
    if (o.retry) return;
    const at = this.#clock.now() + o.delayMs;
    o.delayMs = Math.min(o.delayMs * 2, CLAIM_RETRY_MAX_MS);
    o.retry = callAt(this.#clock, at, () => {
      o.retry = undefined;
      if (slot.outage !== o || this.#slots.get(slot.key) !== slot) return;
      this.#track(this.#endOutage(slot, o));
    });
  }

  /** Tries to end `o` (one attempt at a time; callers share it). */
  #endOutage(slot: Slot, o: Outage): Promise<void> {
    o.ending ??= this.#tryEndOutage(slot, o).finally(() => {
      o.ending = undefined;
    });
    return o.ending;
  }

  /**
   * Claims the last missed tick. Still failing: retries later. Lost:
   * another host ran that tick or holds the outage's record (it claimed
   * it first), so this host records nothing. Won: records the missed
   * ticks as one `skipped` run and, under `once`, runs the job once unless
   * a regular tick was claimed meanwhile.
   */
  async #tryEndOutage(slot: Slot, o: Outage): Promise<void> {
    let won: boolean;
    try {
      won = await this.#options.claim!.claim(slot.key, epochSeconds(o.last));
    } catch (e) {
      if (slot.outage === o) {
        o.error = errorText(e);
        this.#retryLater(slot, o);
      }
      return;
    }
    if (slot.outage !== o) return;
    slot.outage = null;
    o.retry?.();
    o.retry = undefined;
    if (!won) return;
    const first = new Date(o.first).toISOString();
    const last = new Date(o.last).toISOString();
    const ticks = o.count === 1
      ? `the tick of ${first}`
      : `${o.count} ticks from ${first} to ${last}`;
    this.#record(slot, {
      start: first,
      durationMs: 0,
      outcome: "skipped",
      reason: REASON_DATABASE_UNAVAILABLE,
      error: `Cannot run ${ticks}: ${REASON_DATABASE_UNAVAILABLE} (${o.error})`,
      missedTicks: o.count,
      lastTick: last,
      trigger: "schedule",
    });
    const policy = slot.job.catch_up ?? this.#options.catchUp ??
      DEFAULT_CATCH_UP;
    const catchUp = policy === "once" && !o.tickClaimed;
    this.#manager.logs.log(
      slot.job.plugin,
      "warn",
      `job "${slot.job.id}": the database is back; ${ticks} skipped (${
        catchUp ? "running once to catch up" : "no catch-up run"
      })`,
    );
    if (catchUp) await this.#run(slot, "catch-up");
  }

  async #run(
    slot: Slot,
    trigger: JobRun["trigger"],
    tickAt?: number,
  ): Promise<JobRun> {
    const clock = this.#clock;
    const startedAt = clock.now();
    const start = new Date(startedAt).toISOString();
    if (slot.running) {
      return this.#record(slot, {
        start,
        durationMs: 0,
        outcome: "skipped",
        reason: REASON_STILL_RUNNING,
        trigger,
      }, tickAt);
    }
    slot.running = true;
    const { plugin, id, handler } = slot.job;
    // The deadline on the scheduler's clock; the Manager's (real time, same
    // length) is a backstop. Either fails the call with PluginTimeoutError
    // and aborts the plugin's context signal.
    const deadline = new AbortController();
    const cancelDeadline = callAt(clock, startedAt + slot.timeoutMs, () => {
      deadline.abort(
        new PluginTimeoutError(plugin, slot.timeoutMs, { function: handler }),
      );
    });
    try {
      await this.#manager.call(plugin, handler, null, {
        timeoutMs: slot.timeoutMs,
        signal: deadline.signal,
      });
      return this.#record(slot, {
        start,
        durationMs: clock.now() - startedAt,
        outcome: "ok",
        trigger,
      }, tickAt);
    } catch (e) {
      const outcome = e instanceof PluginTimeoutError ? "timeout" : "error";
      this.#manager.logs.log(
        plugin,
        "error",
        `job "${id}" failed: ${errorText(e)}`,
      );
      return this.#record(slot, {
        start,
        durationMs: clock.now() - startedAt,
        outcome,
        error: errorText(e),
        trigger,
      }, tickAt);
    } finally {
      cancelDeadline();
      slot.running = false;
    }
  }

  #record(slot: Slot, run: JobRun, tickAt?: number): JobRun {
    try {
      this.#options.onRun?.(slot.job.plugin, slot.job.id, run);
    } catch { /* an observer never breaks the scheduler */ }
    const shared = this.#options.claim?.record?.(
      slot.key,
      run,
      tickAt === undefined ? undefined : epochSeconds(tickAt),
    );
    // Lost on failure (the database is down): the local list still has it.
    if (shared) this.#track(shared.catch(() => {}));
    slot.runs.unshift(run);
    slot.runs.length = Math.min(
      slot.runs.length,
      this.#options.historySize ?? 20,
    );
    return run;
  }

  #track(p: Promise<void>): void {
    this.#inFlight.add(p);
    p.finally(() => this.#inFlight.delete(p));
  }
}

/**
 * A job's timeout in ms from its Go duration; absent or unparsable means
 * {@linkcode DEFAULT_JOB_TIMEOUT_MS}. Unlike GoatFlow, sub-second timeouts are
 * honoured.
 *
 * @example
 * ```ts
 * import { jobTimeoutMs } from "./scheduler.ts";
 * jobTimeoutMs("30s"); // 30000
 * jobTimeoutMs(undefined); // 300000
 * ```
 */
export function jobTimeoutMs(timeout: string | undefined): number {
  const ms = timeout ? parseDuration(timeout) : undefined;
  return ms && ms > 0 ? ms : DEFAULT_JOB_TIMEOUT_MS;
}

/** A tick's claim key: its time in whole epoch seconds. */
function epochSeconds(ms: number): number {
  return Math.round(ms / 1000);
}

/** Cancels everything a slot waits for (its tick, its claim retry). */
function drop(slot: Slot): void {
  slot.cancel();
  slot.outage?.retry?.();
  slot.outage = null;
}

function signature(job: Contributed<JobSpec>): string {
  return JSON.stringify([
    job.schedule,
    job.handler,
    job.timeout ?? "",
    job.catch_up ?? "",
  ]);
}

/**
 * The subset of a `pg` Pool that {@linkcode PgJobClaim} uses (the services'
 * `PgPoolClient` fits too).
 */
export interface SqlPool {
  /** Runs a parameterised query. */
  query(sql: string, params?: unknown[]): Promise<{ rowCount: number | null }>;
}

/** Options of {@linkcode PgJobClaim}. */
export interface PgJobClaimOptions {
  /**
   * The ticks table (`table` or `schema.table`, plain lower-case names).
   * @default "goatkit.job_ticks"
   */
  table?: string;
  /**
   * The shared run history table (same name rules).
   * @default "goatkit.job_runs"
   */
  runsTable?: string;
  /**
   * This host's name in the run history.
   * @default `<hostname>:<pid>`
   */
  host?: string;
}

/** One row of the shared run history ({@linkcode PgJobClaim.runs}). */
export interface SharedJobRun extends JobRun {
  /** The host that ran it ({@linkcode PgJobClaimOptions.host}). */
  host: string;
  /** The tick (epoch seconds) of a scheduled run; null otherwise. */
  tick: number | null;
}

/**
 * Claims ticks in PostgreSQL so that several hosts sharing a database (and
 * application schema: rows are scoped by `current_schema()`) run each tick
 * once: the first host to insert (job, tick) into
 * `goatkit.job_ticks` wins (the primary key decides; a concurrent insert of
 * the same row waits for the first and then does nothing). No advisory lock
 * is taken, so nothing a plugin does to the lock space can hold claims up.
 * The table lives in the host's own schema, which no plugin role can see;
 * the old `goatkit_job_ticks` table of an upgraded database is moved there.
 * Old ticks are pruned. Give it the host's own connections (the services'
 * `SqlDatabase.sqlClient`), not the pool plugin statements run on.
 *
 * @example
 * ```ts ignore
 * import pg from "pg";
 * import { PgJobClaim } from "./scheduler.ts";
 * const claim = new PgJobClaim(new pg.Pool({ connectionString: Deno.env.get("DATABASE_URL") }));
 * ```
 */
export class PgJobClaim implements JobClaim {
  #pool: SqlPool;
  #table: HostTable;
  #runs: HostTable;
  #host: string;

  /** Creates the claim over a `pg` Pool (or anything with its `query`). */
  constructor(pool: SqlPool, options: PgJobClaimOptions = {}) {
    this.#pool = pool;
    this.#table = new HostTable(pool, {
      table: options.table ?? "goatkit.job_ticks",
      // Scoped by the application schema: hosts of one deployment share
      // ticks, deployments on other schemas of the database do not.
      columns:
        "scope text NOT NULL DEFAULT current_schema(), job text NOT NULL, tick bigint NOT NULL, claimed_at timestamptz NOT NULL DEFAULT now(), PRIMARY KEY (scope, job, tick)",
      scopedKey: ["job", "tick"],
      ...(options.table === undefined ? { legacy: "goatkit_job_ticks" } : {}),
    });
    // The run history of every host, scoped the same way.
    this.#runs = new HostTable(pool, {
      table: options.runsTable ?? "goatkit.job_runs",
      columns:
        "scope text NOT NULL DEFAULT current_schema(), id bigint GENERATED ALWAYS AS IDENTITY, job text NOT NULL, tick bigint, host text NOT NULL, run jsonb NOT NULL, recorded_at timestamptz NOT NULL DEFAULT now(), PRIMARY KEY (scope, id)",
      scopedKey: ["id"],
    });
    this.#host = options.host ?? `${Deno.hostname()}:${Deno.pid}`;
  }

  /** Adds `run` of job `key` to the shared run history; old rows are pruned. */
  async record(key: string, run: JobRun, tick?: number): Promise<void> {
    await this.#runs.ready();
    const table = this.#runs.sqlName;
    await this.#pool.query(
      `INSERT INTO ${table} (job, tick, host, run) VALUES ($1, $2, $3, $4)`,
      [key, tick ?? null, this.#host, JSON.stringify(run)],
    );
    if (tick !== undefined && tick % 60 === 0) {
      await this.#pool.query(
        `DELETE FROM ${table} WHERE scope = current_schema() AND job = $1
         AND recorded_at < now() - interval '1 day'`,
        [key],
      );
    }
  }

  /** The shared run history of job `key` (`plugin.job`), newest first. */
  async runs(key: string, limit = 100): Promise<SharedJobRun[]> {
    await this.#runs.ready();
    const { rows } = await (this.#pool as unknown as {
      query(sql: string, params: unknown[]): Promise<{
        rows: { tick: string | null; host: string; run: JobRun }[];
      }>;
    }).query(
      `SELECT tick, host, run FROM ${this.#runs.sqlName}
       WHERE scope = current_schema() AND job = $1 ORDER BY id DESC LIMIT $2`,
      [key, limit],
    );
    return rows.map((r) => ({
      ...r.run,
      host: r.host,
      tick: r.tick === null ? null : Number(r.tick),
    }));
  }

  /** Claims (job, tick); true for exactly one host. */
  async claim(key: string, tick: number): Promise<boolean> {
    await this.#table.ready();
    const table = this.#table.sqlName;
    const res = await this.#pool.query(
      `INSERT INTO ${table} (job, tick) VALUES ($1, $2) ON CONFLICT DO NOTHING`,
      [key, tick],
    );
    if (tick % 60 === 0) {
      await this.#pool.query(
        `DELETE FROM ${table}
         WHERE scope = current_schema() AND job = $1 AND tick < $2`,
        [key, tick - 86_400],
      );
    }
    return (res.rowCount ?? 0) === 1;
  }
}
