/**
 * {@linkcode HandOffQueue}: a bounded FIFO of callers waiting for a free
 * resource (a plugin instance). A freed resource is handed directly to the
 * oldest waiter still waiting: one waiter is woken per free resource, and
 * nobody else is disturbed. A waiter whose time runs out or whose signal
 * aborts unlinks itself in O(1) (a doubly linked list).
 *
 * Each waiter registers one deadline (on a timer shared by all waiters)
 * and one abort listener when it starts waiting and removes them once;
 * nothing is re-armed while others come and go, so the cost per call does
 * not grow with the length of the queue.
 *
 * @module
 */

import { CallDeadlines } from "../../host/model/call_deadlines.ts";

/** Queue-time budgets of every waiter, on one shared timer. */
const waitDeadlines = new CallDeadlines();

/** Options of {@linkcode HandOffQueue.wait}. */
export interface WaitOptions {
  /** The longest wait, in ms; then the wait rejects with `onTimeout()`. */
  waitMs: number;
  /** Aborts the wait; it then rejects with `onAbort(signal.reason)`. */
  signal?: AbortSignal;
  /** The error a wait that ran out of time rejects with. */
  onTimeout(waitedMs: number): unknown;
  /** The error an aborted wait rejects with. */
  onAbort?(reason: unknown): unknown;
}

interface Waiter<T> {
  prev: Waiter<T> | null;
  next: Waiter<T> | null;
  resolve(item: T): void;
  reject(error: unknown): void;
  /** Disarms the timer and the abort listener. */
  disarm(): void;
}

/**
 * A FIFO of waiters for items handed over by {@linkcode HandOffQueue.handOff}.
 *
 * @example
 * ```ts
 * import { HandOffQueue } from "./handoff_queue.ts";
 * const q = new HandOffQueue<string>();
 * const got = q.wait({ waitMs: 1000, onTimeout: () => new Error("busy") });
 * q.handOff("instance-1"); // true: the oldest waiter has it now
 * console.log(await got); // instance-1
 * ```
 */
export class HandOffQueue<T> {
  #head: Waiter<T> | null = null;
  #tail: Waiter<T> | null = null;
  #length = 0;

  /** Waiters still waiting. */
  get length(): number {
    return this.#length;
  }

  /**
   * Waits for an item. Resolves with the item a later
   * {@linkcode HandOffQueue.handOff} gives this waiter (waiters are served
   * oldest first); rejects when `waitMs` passes or `signal` aborts, after
   * leaving the queue.
   */
  wait(options: WaitOptions): Promise<T> {
    const { signal } = options;
    if (signal?.aborted) {
      return Promise.reject(
        options.onAbort ? options.onAbort(signal.reason) : signal.reason,
      );
    }
    return new Promise<T>((resolve, reject) => {
      const started = Date.now();
      const w: Waiter<T> = {
        prev: this.#tail,
        next: null,
        resolve,
        reject,
        disarm: () => {
          waitDeadlines.delete(watch);
          signal?.removeEventListener("abort", onAbort);
        },
      };
      const watch = waitDeadlines.add(
        started + Math.max(0, options.waitMs),
        () => {
          if (!this.#unlink(w)) return;
          w.disarm();
          reject(options.onTimeout(Date.now() - started));
        },
      );
      const onAbort = () => {
        if (!this.#unlink(w)) return;
        w.disarm();
        reject(
          options.onAbort ? options.onAbort(signal!.reason) : signal!.reason,
        );
      };
      signal?.addEventListener("abort", onAbort, { once: true });
      if (this.#tail) this.#tail.next = w;
      else this.#head = w;
      this.#tail = w;
      this.#length++;
    });
  }

  /**
   * Gives `item` to the oldest waiter and returns `true`; `false` (the item
   * stays with the caller) when nobody waits.
   */
  handOff(item: T): boolean {
    const w = this.#head;
    if (!w) return false;
    this.#unlink(w);
    w.disarm();
    w.resolve(item);
    return true;
  }

  /** Rejects every waiter with `error` and empties the queue. */
  rejectAll(error: unknown): void {
    for (let w = this.#head; w; w = this.#head) {
      this.#unlink(w);
      w.disarm();
      w.reject(error);
    }
  }

  /** Removes `w`; `false` when it already left. */
  #unlink(w: Waiter<T>): boolean {
    const linked = w.prev !== null || w.next !== null || this.#head === w;
    if (!linked) return false;
    if (w.prev) w.prev.next = w.next;
    else this.#head = w.next;
    if (w.next) w.next.prev = w.prev;
    else this.#tail = w.prev;
    w.prev = w.next = null;
    this.#length--;
    return true;
  }
}
