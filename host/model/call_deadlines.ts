/**
 * Deadlines of in-flight calls sharing one timer: the Manager's per-call
 * deadline without a `setTimeout` / `clearTimeout` pair per call (a few µs
 * each, and a timer-wheel change the event loop pays for on every turn).
 *
 * The timer is armed at the earliest deadline; a call whose deadline is
 * later adds nothing but a set entry. When it fires, every due call
 * expires and the timer is armed again at the next deadline. While no call
 * is pending the timer is unreferenced, so it never keeps the process alive
 * by itself; while one is, it does (as a per-call timer would).
 *
 * @example
 * ```ts
 * import { CallDeadlines } from "./call_deadlines.ts";
 * const deadlines = new CallDeadlines();
 * const expired = await new Promise<boolean>((resolve) => {
 *   deadlines.add(Date.now() + 10, () => resolve(true));
 * });
 * console.log(expired); // true
 * ```
 *
 * @module
 */

/** One call's deadline, and what happens when it passes. */
export interface PendingDeadline {
  /** Absolute deadline, in milliseconds since the epoch. */
  readonly deadline: number;
  /** Called once at (or just after) the deadline unless removed before. */
  readonly expire: () => void;
}

/** A watched deadline: a node of an intrusive list (no hashing per call). */
class Node implements PendingDeadline {
  prev: Node | null = null;
  next: Node | null = null;
  linked = true;
  constructor(readonly deadline: number, readonly expire: () => void) {}
}

/** Deadlines of in-flight calls on one shared timer. */
export class CallDeadlines {
  #head: Node | null = null;
  #size = 0;
  #timer: ReturnType<typeof setTimeout> | undefined;
  #timerAt = Infinity;
  #referenced = false;

  /**
   * Calls `expire` at `deadline` (epoch ms) unless the returned handle is
   * passed to {@linkcode CallDeadlines.delete} before.
   */
  add(deadline: number, expire: () => void): PendingDeadline {
    const n = new Node(deadline, expire);
    n.next = this.#head;
    if (this.#head) this.#head.prev = n;
    this.#head = n;
    this.#size++;
    if (deadline < this.#timerAt) this.#arm(deadline);
    else if (Number.isNaN(deadline)) this.#arm(0); // as setTimeout(NaN)
    else if (this.#timer !== undefined && !this.#referenced) {
      Deno.refTimer(this.#timer);
      this.#referenced = true;
    }
    return n;
  }

  /** Stops watching `p` (its call ended); a no-op when it expired. */
  delete(p: PendingDeadline): void {
    const n = p as Node;
    if (!n.linked) return;
    this.#unlink(n);
    if (this.#size === 0 && this.#referenced && this.#timer !== undefined) {
      Deno.unrefTimer(this.#timer);
      this.#referenced = false;
    }
  }

  /** Calls pending now (for tests and diagnostics). */
  get size(): number {
    return this.#size;
  }

  #unlink(n: Node): void {
    n.linked = false;
    if (n.prev) n.prev.next = n.next;
    else this.#head = n.next;
    if (n.next) n.next.prev = n.prev;
    n.prev = n.next = null;
    this.#size--;
  }

  #arm(at: number): void {
    if (this.#timer !== undefined) clearTimeout(this.#timer);
    this.#timerAt = at;
    this.#timer = setTimeout(() => this.#fire(), Math.max(0, at - Date.now()));
    this.#referenced = true;
  }

  #fire(): void {
    this.#timer = undefined;
    this.#timerAt = Infinity;
    this.#referenced = false;
    const now = Date.now();
    let next = Infinity;
    const due: Node[] = [];
    for (let n = this.#head; n; n = n.next) {
      if (!(n.deadline > now)) due.push(n);
      else if (n.deadline < next) next = n.deadline;
    }
    for (const n of due) this.#unlink(n);
    if (next < Infinity) this.#arm(next);
    for (const n of due) {
      try {
        n.expire();
      } catch { /* one call's handler must not stop the others' */ }
    }
  }
}
