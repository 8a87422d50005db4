// A SchedulerClock for tests: time stands still until `advance` moves it.
import type { SchedulerClock } from "../../host/scheduler.ts";

interface Timer {
  at: number;
  callback: () => void;
}

/** Lets pending promise callbacks (a job run's awaits) go on. */
export function settle(): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, 0));
}

/**
 * A clock that moves only when told to. Timers fire in time order (ties in
 * the order they were set), each with `now()` at its due time, and the
 * promises they start get to settle before the next one fires.
 *
 * @example
 * ```ts ignore
 * const clock = new FakeClock(Date.UTC(2030, 0, 1));
 * const scheduler = new Scheduler(manager, { clock });
 * scheduler.start();
 * await clock.advance(1000); // one tick of "* * * * * *"
 * ```
 */
export class FakeClock implements SchedulerClock {
  #now: number;
  #ids = 0;
  #timers = new Map<number, Timer>();

  /** Creates the clock at `start` (epoch ms). */
  constructor(start: number) {
    this.#now = start;
  }

  /** The clock's time, in epoch ms. */
  now(): number {
    return this.#now;
  }

  /** Sets a timer `delayMs` after the clock's time. */
  setTimer(callback: () => void, delayMs: number): number {
    this.#timers.set(++this.#ids, {
      at: this.#now + Math.max(0, delayMs),
      callback,
    });
    return this.#ids;
  }

  /** Cancels a timer. */
  clearTimer(timer: unknown): void {
    this.#timers.delete(timer as number);
  }

  /** Timers set and not yet fired or cleared. */
  get pending(): number {
    return this.#timers.size;
  }

  /** Moves the clock `ms` forward, firing the timers that come due. */
  async advance(ms: number): Promise<void> {
    const end = this.#now + ms;
    for (;;) {
      let next: [number, Timer] | undefined;
      for (const entry of this.#timers) {
        if (entry[1].at <= end && (!next || entry[1].at < next[1].at)) {
          next = entry;
        }
      }
      if (!next) break;
      this.#timers.delete(next[0]);
      this.#now = next[1].at;
      next[1].callback();
      await settle();
    }
    this.#now = end;
    await settle();
  }
}
