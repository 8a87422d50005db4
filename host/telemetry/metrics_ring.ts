/**
 * The last hour of one plugin's calls, minute by minute, kept in memory for
 * the admin "Operations" page: a ring of 60 per-minute buckets holding
 * calls, errors, quota refusals, guest CPU and a latency histogram (fine
 * geometric buckets, so p50/p99 over the hour come from merged counts).
 *
 * @example
 * ```ts
 * import { MinuteRing } from "./metrics_ring.ts";
 * const ring = new MinuteRing();
 * const minute = Math.floor(Date.now() / 60_000);
 * ring.record(minute, 2.5, false, false);
 * ring.record(minute, 40, true, false);
 * const hour = ring.summary(minute);
 * console.log(hour.calls, hour.errors); // 2 1
 * ```
 *
 * @module
 */

/** Minutes the ring keeps. */
export const RING_MINUTES = 60;

/** Lower bound of the first latency bucket, in ms. */
const LATENCY_FLOOR_MS = 0.05;
/** Ratio between two latency bucket bounds. */
const LATENCY_STEP = 1.5;
const LOG_STEP = Math.log(LATENCY_STEP);
/** Latency buckets: [0, 0.05 ms), then ×1.5 up to about 20 min, then the rest. */
const LATENCY_BUCKETS = 36;

/** Upper bound of latency bucket `i`, in ms. */
function bucketUpperMs(i: number): number {
  return LATENCY_FLOOR_MS * LATENCY_STEP ** i;
}

/** The latency bucket of a duration in ms. */
function bucketOf(ms: number): number {
  if (!(ms >= LATENCY_FLOOR_MS)) return 0;
  const i = Math.floor(Math.log(ms / LATENCY_FLOOR_MS) / LOG_STEP) + 1;
  return i < LATENCY_BUCKETS ? i : LATENCY_BUCKETS - 1;
}

/** One plugin's last hour, as {@linkcode MinuteRing.summary} returns it. */
export interface HourSummary {
  /** Calls in the hour (every outcome). */
  calls: number;
  /** Calls that failed (any kind, quota refusals included). */
  errors: number;
  /** Calls refused by a quota. */
  quotaRefusals: number;
  /** Guest CPU time in ms (from the runtime's usage, sampled). */
  cpuMs: number;
  /** Median latency in ms; `undefined` without calls. */
  p50Ms: number | undefined;
  /** 99th percentile latency in ms; `undefined` without calls. */
  p99Ms: number | undefined;
  /** Per minute, oldest first (60 values, the last is the current minute). */
  series: {
    /** Calls per minute. */
    calls: number[];
    /** Errors per minute. */
    errors: number[];
    /** Guest CPU ms per minute. */
    cpuMs: number[];
    /** 99th percentile latency per minute (0 for a minute without calls). */
    p99Ms: number[];
  };
}

/**
 * A ring of {@linkcode RING_MINUTES} per-minute buckets for one plugin.
 * Minutes are whole minutes since the epoch (`Math.floor(ms / 60000)`);
 * a bucket older than an hour is reused (cleared) by the next minute that
 * maps onto it.
 */
export class MinuteRing {
  readonly #minute = new Float64Array(RING_MINUTES).fill(-1);
  readonly #calls = new Uint32Array(RING_MINUTES);
  readonly #errors = new Uint32Array(RING_MINUTES);
  readonly #quota = new Uint32Array(RING_MINUTES);
  readonly #cpuMs = new Float64Array(RING_MINUTES);
  readonly #latency = new Uint32Array(RING_MINUTES * LATENCY_BUCKETS);
  #lastCpuMs: number | undefined;

  #slot(minute: number): number {
    const slot = minute % RING_MINUTES;
    if (this.#minute[slot] !== minute) {
      this.#minute[slot] = minute;
      this.#calls[slot] = 0;
      this.#errors[slot] = 0;
      this.#quota[slot] = 0;
      this.#cpuMs[slot] = 0;
      this.#latency.fill(
        0,
        slot * LATENCY_BUCKETS,
        (slot + 1) * LATENCY_BUCKETS,
      );
    }
    return slot;
  }

  /** Records one call that took `ms`, in `minute`. */
  record(minute: number, ms: number, error: boolean, quota: boolean): void {
    const slot = this.#slot(minute);
    this.#calls[slot]!++;
    if (error) this.#errors[slot]!++;
    if (quota) this.#quota[slot]!++;
    this.#latency[slot * LATENCY_BUCKETS + bucketOf(ms)]!++;
  }

  /**
   * Credits the guest CPU used since the previous sample to `minute`, from
   * the runtime's cumulative `cpuMs` (a smaller value than last time means
   * the plugin was reloaded: all of it is new).
   */
  sampleCpu(minute: number, cumulativeCpuMs: number): void {
    const last = this.#lastCpuMs;
    this.#lastCpuMs = cumulativeCpuMs;
    if (last === undefined) return; // the first sample is the baseline
    const delta = cumulativeCpuMs >= last
      ? cumulativeCpuMs - last
      : cumulativeCpuMs;
    if (delta > 0) this.#cpuMs[this.#slot(minute)]! += delta;
  }

  /** The hour that ends with `minute` (inclusive). */
  summary(minute: number): HourSummary {
    const calls: number[] = [];
    const errors: number[] = [];
    const cpuMs: number[] = [];
    const p99Ms: number[] = [];
    const merged = new Float64Array(LATENCY_BUCKETS);
    let quotaRefusals = 0;
    for (let m = minute - RING_MINUTES + 1; m <= minute; m++) {
      const slot = ((m % RING_MINUTES) + RING_MINUTES) % RING_MINUTES;
      if (this.#minute[slot] !== m) {
        calls.push(0);
        errors.push(0);
        cpuMs.push(0);
        p99Ms.push(0);
        continue;
      }
      calls.push(this.#calls[slot]!);
      errors.push(this.#errors[slot]!);
      cpuMs.push(this.#cpuMs[slot]!);
      quotaRefusals += this.#quota[slot]!;
      const row = this.#latency.subarray(
        slot * LATENCY_BUCKETS,
        (slot + 1) * LATENCY_BUCKETS,
      );
      for (let i = 0; i < LATENCY_BUCKETS; i++) merged[i]! += row[i]!;
      p99Ms.push(quantile(row, 0.99) ?? 0);
    }
    const sum = (xs: number[]) => xs.reduce((a, b) => a + b, 0);
    return {
      calls: sum(calls),
      errors: sum(errors),
      quotaRefusals,
      cpuMs: sum(cpuMs),
      p50Ms: quantile(merged, 0.5),
      p99Ms: quantile(merged, 0.99),
      series: { calls, errors, cpuMs, p99Ms },
    };
  }
}

/**
 * The `q` quantile of latency bucket counts, in ms, interpolated
 * geometrically inside its bucket; `undefined` when there are no counts.
 */
function quantile(
  counts: ArrayLike<number>,
  q: number,
): number | undefined {
  let total = 0;
  for (let i = 0; i < counts.length; i++) total += counts[i]!;
  if (total === 0) return undefined;
  const rank = q * total;
  let seen = 0;
  for (let i = 0; i < counts.length; i++) {
    const n = counts[i]!;
    if (n > 0 && seen + n >= rank) {
      const upper = bucketUpperMs(i);
      if (i === 0) return upper * Math.max(0, (rank - seen) / n);
      const lower = bucketUpperMs(i - 1);
      return lower * (upper / lower) ** Math.max(0, (rank - seen) / n);
    }
    seen += n;
  }
  return bucketUpperMs(counts.length - 1);
}
