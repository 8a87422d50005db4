/**
 * Extism vars on the main thread: the default in-memory
 * {@linkcode MemoryVarStore} and the size cap ({@linkcode VarLedger}) every
 * store is used through.
 *
 * @module
 */

import { ExtismVarLimitError } from "../../host/model/errors.ts";
import type { ExtismVarStore } from "./types.ts";

/**
 * Vars in memory (the default store): lost when the process ends.
 *
 * @example
 * ```ts
 * import { MemoryVarStore } from "./vars.ts";
 * const s = new MemoryVarStore();
 * await s.set("n", new Uint8Array([1]));
 * console.log(await s.get("n")); // Uint8Array [ 1 ]
 * ```
 */
export class MemoryVarStore implements ExtismVarStore {
  #map = new Map<string, Uint8Array>();
  /** The value of `key`, or `null`. */
  get(key: string): Promise<Uint8Array | null> {
    return Promise.resolve(this.#map.get(key)?.slice() ?? null);
  }
  /** Stores (or with `null` deletes) `key`. */
  set(key: string, value: Uint8Array | null): Promise<void> {
    if (value === null) this.#map.delete(key);
    else this.#map.set(key, value.slice());
    return Promise.resolve();
  }
  /** Bytes held (keys and values). */
  usage(): Promise<number> {
    let n = 0;
    for (const [k, v] of this.#map) {
      n += new TextEncoder().encode(k).length + v.length;
    }
    return Promise.resolve(n);
  }
}

/**
 * A plugin's vars through its store, capped at `maxBytes` (keys plus
 * values). Sets are serialised, so concurrent instances cannot race past
 * the cap; an over-cap set changes nothing. The total starts from the
 * store's `usage()` when it has one, else from the vars this process saw.
 */
export class VarLedger {
  readonly #store: ExtismVarStore;
  readonly #max: number;
  #sizes = new Map<string, number>();
  #total: number | undefined;
  #chain: Promise<unknown> = Promise.resolve();

  /** Creates the ledger over `store` with the cap `maxBytes`. */
  constructor(store: ExtismVarStore, maxBytes: number) {
    this.#store = store;
    this.#max = maxBytes;
  }

  /** The value of `key`, or `null`. */
  get(key: string): Promise<Uint8Array | null> {
    return this.#store.get(key);
  }

  /** Sets (or with `null` deletes) `key`; refuses over the cap. */
  set(key: string, value: Uint8Array | null): Promise<void> {
    const run = this.#chain.then(() => this.#set(key, value));
    this.#chain = run.catch(() => {});
    return run;
  }

  async #set(key: string, value: Uint8Array | null): Promise<void> {
    const keyBytes = new TextEncoder().encode(key).length;
    if (this.#total === undefined) {
      this.#total = this.#store.usage ? await this.#store.usage() : 0;
    }
    let old = this.#sizes.get(key);
    if (old === undefined) {
      const v = await this.#store.get(key);
      old = v ? keyBytes + v.length : 0;
      if (v && !this.#store.usage) {
        this.#total += old; // a var from before this process
      }
    }
    if (value === null) {
      await this.#store.set(key, null);
      this.#sizes.set(key, 0);
      this.#total = Math.max(0, this.#total - old);
      return;
    }
    const next = this.#total - old + keyBytes + value.length;
    if (this.#max === 0 || next > this.#max) {
      throw new ExtismVarLimitError({ key, limit: this.#max, total: next });
    }
    await this.#store.set(key, value);
    this.#sizes.set(key, keyBytes + value.length);
    this.#total = next;
  }
}
