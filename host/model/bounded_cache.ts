/**
 * {@linkcode BoundedCache}: values built once per key and kept for the next
 * asks, up to a bound; the whole cache is dropped when it is full (no
 * bookkeeping per hit). For what hot paths see again and again (statement
 * texts, route patterns, answers to refusals): a key that comes once more
 * than the bound costs a rebuild, never unbounded memory.
 *
 * @module
 */

/**
 * A map of built values with at most `max` entries.
 *
 * @example
 * ```ts
 * import { BoundedCache } from "./bounded_cache.ts";
 * const lengths = new BoundedCache<string, number>(2);
 * console.log(lengths.get("abc", (s) => s.length)); // 3 (built)
 * console.log(lengths.get("abc", () => -1)); // 3 (kept)
 * ```
 */
export class BoundedCache<K, V> {
  readonly #max: number;
  readonly #map = new Map<K, V>();

  /** A cache of at most `max` entries (at least 1). */
  constructor(max: number) {
    this.#max = Math.max(1, Math.floor(max));
  }

  /** The value kept for `key`, else `build(key)`, kept (and returned). */
  get(key: K, build: (key: K) => V): V {
    let value = this.#map.get(key);
    if (value === undefined) {
      value = build(key);
      if (this.#map.size >= this.#max) this.#map.clear();
      this.#map.set(key, value);
    }
    return value;
  }

  /** Entries kept now. */
  get size(): number {
    return this.#map.size;
  }
}
