/**
 * The two counters behind the quotas: a token bucket (host calls per
 * second, with a burst) and a sliding window of time buckets (CPU ms, HTTP
 * bytes and e-mails over the last minute or hour). Both take the time as an
 * argument, so they are plain arithmetic.
 *
 * @module
 */

/**
 * A token bucket: `rate` tokens per second, holding at most `burst`.
 *
 * @example
 * ```ts
 * import { TokenBucket } from "./limiters.ts";
 * const b = new TokenBucket(1, 2, 0);
 * b.take(0); // true
 * b.take(0); // true
 * b.take(0); // false
 * b.take(1000); // true (one token refilled)
 * ```
 */
export class TokenBucket {
  /** Tokens per second. */
  readonly rate: number;
  /** The most tokens it holds. */
  readonly burst: number;
  #tokens: number;
  #at: number;

  /** A full bucket at time `now` (ms). */
  constructor(rate: number, burst: number, now: number) {
    this.rate = rate;
    this.burst = Math.max(1, burst, rate);
    this.#tokens = this.burst;
    this.#at = now;
  }

  #refill(now: number): void {
    if (now > this.#at) {
      this.#tokens = Math.min(
        this.burst,
        this.#tokens + ((now - this.#at) / 1000) * this.rate,
      );
      this.#at = now;
    }
  }

  /** Takes one token; `false` when the bucket is empty. */
  take(now: number): boolean {
    this.#refill(now);
    if (this.#tokens < 1) return false;
    this.#tokens -= 1;
    return true;
  }

  /** Tokens left now. */
  tokens(now: number): number {
    this.#refill(now);
    return this.#tokens;
  }

  /** Seconds until one token is there (0 when one is). */
  retryAfterSeconds(now: number): number {
    this.#refill(now);
    return this.#tokens >= 1 ? 0 : (1 - this.#tokens) / this.rate;
  }
}

/**
 * Sums amounts over the last `windowMs`, kept in `buckets` time buckets
 * (so the window slides by one bucket at a time: a minute in 60 one-second
 * buckets, an hour in 60 one-minute buckets).
 *
 * @example
 * ```ts
 * import { SlidingWindow } from "./limiters.ts";
 * const w = new SlidingWindow(60_000);
 * w.add(0, 700);
 * w.add(30_000, 500);
 * w.sum(30_000); // 1200
 * w.sum(61_000); // 500 (the first second has left the window)
 * w.retryAfterSeconds(30_000, 1000); // 31: then 500 < 1000
 * ```
 */
export class SlidingWindow {
  /** The window, in ms. */
  readonly windowMs: number;
  readonly #bucketMs: number;
  /** [bucket start, amount], oldest first. */
  #entries: [number, number][] = [];

  /** An empty window of `windowMs` in `buckets` buckets. */
  constructor(windowMs: number, buckets = 60) {
    this.windowMs = windowMs;
    this.#bucketMs = Math.max(1, Math.floor(windowMs / buckets));
  }

  #prune(now: number): void {
    const from = now - this.windowMs;
    let drop = 0;
    while (
      drop < this.#entries.length &&
      this.#entries[drop]![0] + this.#bucketMs <= from
    ) drop++;
    if (drop > 0) this.#entries.splice(0, drop);
  }

  /** Adds `amount` at time `now` (a negative amount takes a count back). */
  add(now: number, amount: number): void {
    if (amount === 0) return;
    this.#prune(now);
    const start = now - (now % this.#bucketMs);
    const last = this.#entries.at(-1);
    if (last && last[0] === start) last[1] += amount;
    else this.#entries.push([start, amount]);
  }

  /** The sum over the window ending at `now`. */
  sum(now: number): number {
    this.#prune(now);
    let s = 0;
    for (const [, v] of this.#entries) s += v;
    return s;
  }

  /**
   * Seconds until the sum plus `need` is within `limit` (at least `< limit`
   * when `need` is 0), as the oldest buckets leave the window; 0 when it is
   * now, the whole window when `need` alone exceeds `limit`.
   */
  retryAfterSeconds(now: number, limit: number, need = 0): number {
    const fits = (s: number) => need === 0 ? s < limit : s + need <= limit;
    let s = this.sum(now);
    if (fits(s)) return 0;
    if (need > limit) return this.windowMs / 1000;
    for (const [start, v] of this.#entries) {
      s -= v;
      if (fits(s)) {
        return Math.max(0, start + this.#bucketMs + this.windowMs - now) /
          1000;
      }
    }
    return this.windowMs / 1000;
  }
}
