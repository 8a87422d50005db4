/**
 * {@linkcode BatchWriter}: collects items written one at a time (log lines,
 * audit entries) and hands them to a writer in batches — after
 * `intervalMs`, or at once when `maxBatch` are waiting — so a chatty plugin
 * costs one multi-row INSERT per batch, not one per line. What waits is
 * bounded (`maxPending`, the oldest dropped and counted), so a database
 * that is down or slow never grows the host's memory without bound; a
 * batch that fails is put back and tried again at the next tick.
 *
 * @module
 */

/** Options of {@linkcode BatchWriter}. */
export interface BatchWriterOptions<T> {
  /** Writes one batch (at most `maxBatch` items, oldest first). */
  write(items: T[]): Promise<void>;
  /**
   * A key per item: an item pushed while one with the same key waits
   * replaces it (in its place). @default every item is new
   */
  key?: (item: T) => string;
  /** Items per batch; this many waiting start a write at once. @default 100 */
  maxBatch?: number;
  /** Longest wait of a pushed item before its batch is written, in ms. @default 200 */
  intervalMs?: number;
  /** Items kept waiting at most (the oldest dropped beyond). @default 10000 */
  maxPending?: number;
  /** Called when a write fails (the batch is kept for the next try). */
  onError?: (error: unknown) => void;
}

/**
 * Batches items for a writer (see the module doc).
 *
 * @example
 * ```ts
 * import { BatchWriter } from "./pg_batch.ts";
 * const batches: number[][] = [];
 * const w = new BatchWriter<number>({
 *   write: (items) => { batches.push(items); return Promise.resolve(); },
 *   maxBatch: 2,
 * });
 * [1, 2, 3].forEach((n) => w.push(n));
 * await w.close();
 * console.log(batches); // [[1, 2], [3]]
 * ```
 */
export class BatchWriter<T> {
  readonly #o: Required<Omit<BatchWriterOptions<T>, "key" | "onError">>;
  readonly #key: ((item: T) => string) | undefined;
  readonly #onError: ((error: unknown) => void) | undefined;
  #pending = new Map<string, T>();
  #seq = 0;
  #timer: ReturnType<typeof setTimeout> | undefined;
  #running: Promise<void> | undefined;
  #dropped = 0;
  #closed = false;

  /** Creates an idle writer. */
  constructor(options: BatchWriterOptions<T>) {
    this.#o = {
      write: options.write,
      maxBatch: Math.max(1, Math.floor(options.maxBatch ?? 100)),
      intervalMs: Math.max(0, options.intervalMs ?? 200),
      maxPending: Math.max(1, Math.floor(options.maxPending ?? 10_000)),
    };
    this.#key = options.key;
    this.#onError = options.onError;
  }

  /** Items dropped because too many were waiting. */
  get dropped(): number {
    return this.#dropped;
  }

  /** Items waiting to be written. */
  get pending(): number {
    return this.#pending.size;
  }

  /** Queues an item (ignored after {@linkcode BatchWriter.close}). */
  push(item: T): void {
    if (this.#closed) return;
    const k = this.#key ? this.#key(item) : `#${++this.#seq}`;
    this.#pending.set(k, item);
    while (this.#pending.size > this.#o.maxPending) {
      const oldest = this.#pending.keys().next().value as string;
      this.#pending.delete(oldest);
      this.#dropped++;
    }
    if (this.#pending.size >= this.#o.maxBatch) this.#schedule(0);
    else this.#schedule(this.#o.intervalMs);
  }

  /** Writes everything waiting now; resolves when it is written (or failed). */
  async flush(): Promise<void> {
    clearTimeout(this.#timer);
    this.#timer = undefined;
    // One write at a time: wait for the running one, then drain.
    while (this.#running) await this.#running;
    while (this.#pending.size > 0) {
      const ok = await (this.#running = this.#writeOne()).finally(() => {
        this.#running = undefined;
      }).then(() => true, () => false);
      if (!ok) break;
    }
  }

  /** Writes what waits and stops; later pushes are ignored. */
  async close(): Promise<void> {
    this.#closed = true;
    await this.flush();
    clearTimeout(this.#timer);
    this.#timer = undefined;
  }

  #schedule(ms: number): void {
    if (this.#timer !== undefined && ms > 0) return;
    clearTimeout(this.#timer);
    this.#timer = setTimeout(() => {
      this.#timer = undefined;
      if (this.#running) {
        this.#schedule(this.#o.intervalMs);
        return;
      }
      this.flush().catch(() => {});
    }, ms);
    Deno.unrefTimer(this.#timer as unknown as number);
  }

  async #writeOne(): Promise<void> {
    const keys: string[] = [];
    const items: T[] = [];
    for (const [k, v] of this.#pending) {
      keys.push(k);
      items.push(v);
      if (items.length >= this.#o.maxBatch) break;
    }
    for (const k of keys) this.#pending.delete(k);
    try {
      await this.#o.write(items);
    } catch (e) {
      // Put the batch back in front (unless newer versions replaced them).
      const back = new Map<string, T>();
      keys.forEach((k, i) => {
        if (!this.#pending.has(k)) back.set(k, items[i]!);
      });
      for (const [k, v] of this.#pending) back.set(k, v);
      this.#pending = back;
      while (this.#pending.size > this.#o.maxPending) {
        this.#pending.delete(this.#pending.keys().next().value as string);
        this.#dropped++;
      }
      if (!this.#closed) this.#schedule(Math.max(this.#o.intervalMs, 1000));
      this.#onError?.(e);
      throw e;
    }
  }
}
