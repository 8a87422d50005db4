/**
 * Stores that tell the cluster about their changes: a plugin state store
 * ({@linkcode PublishedStateStore}) and a quota store
 * ({@linkcode publishedQuotaStore}) that call `publish(name)` after each
 * change they write, so that the other hosts reconcile to it.
 *
 * A state that another host wrote is applied here through the Manager
 * inside {@linkcode PublishedStateStore.applying}: the Manager's own write of
 * that same state is then skipped (the row is already so), and nothing is
 * published back, so changes never loop.
 *
 * @module
 */

import type { PluginState, StateStore } from "../state_store.ts";
import type { QuotaLimits } from "../quotas/quota_limits.ts";
import type { QuotaStore } from "../quotas/quota_store.ts";

/** A {@linkcode StateStore} that can also list every stored state. */
export interface ListableStateStore extends StateStore {
  /** Every plugin's stored state, read now. */
  all(): Promise<Map<string, PluginState>>;
}

/** Options of {@linkcode PublishedStateStore}. */
export interface PublishedStateStoreOptions {
  /** Where the states are kept (`PgStateStore`). */
  inner: ListableStateStore;
  /** Called after each change written through this store. */
  publish?: (name: string) => void;
}

function sameState(a: PluginState, b: PluginState): boolean {
  return a.enabled === b.enabled && (a.reason ?? "") === (b.reason ?? "");
}

/**
 * A state store that publishes its writes, and applies other hosts' writes
 * without writing them again (see the module doc).
 *
 * @example
 * ```ts
 * import { MemoryStateStore } from "../state_store.ts";
 * import { PublishedStateStore } from "./published_stores.ts";
 * const inner = Object.assign(new MemoryStateStore(), {
 *   all: () => Promise.resolve(new Map()),
 * });
 * const sent: string[] = [];
 * const store = new PublishedStateStore({ inner, publish: (n) => sent.push(n) });
 * await store.set("hello", { enabled: false });
 * await store.applying("hello", { enabled: true }, () => store.set("hello", { enabled: true }));
 * console.log(sent); // ["hello"]
 * ```
 */
export class PublishedStateStore implements ListableStateStore {
  readonly #inner: ListableStateStore;
  readonly #publish: ((name: string) => void) | undefined;
  readonly #applying = new Map<string, PluginState>();

  /** Wraps `options.inner`. */
  constructor(options: PublishedStateStoreOptions) {
    this.#inner = options.inner;
    this.#publish = options.publish;
  }

  /** Whether a state from another host is being applied to `name` now. */
  isApplying(name: string): boolean {
    return this.#applying.has(name);
  }

  /**
   * Runs `fn` (the Manager applying `state` to `name`) so that its write of
   * exactly `state` is skipped and not published.
   */
  async applying<T>(
    name: string,
    state: PluginState,
    fn: () => Promise<T>,
  ): Promise<T> {
    this.#applying.set(name, state);
    try {
      return await fn();
    } finally {
      this.#applying.delete(name);
    }
  }

  /** Reads a plugin's state. */
  get(name: string): Promise<PluginState | undefined> {
    return this.#inner.get(name);
  }

  /** Every plugin's stored state. */
  all(): Promise<Map<string, PluginState>> {
    return this.#inner.all();
  }

  /** Stores a plugin's state and publishes it (unless it is being applied). */
  async set(name: string, state: PluginState): Promise<void> {
    const applied = this.#applying.get(name);
    if (applied && sameState(applied, state)) return;
    await this.#inner.set(name, state);
    this.#publish?.(name);
  }

  /** Forgets a plugin's state and publishes it. */
  async delete(name: string): Promise<void> {
    await this.#inner.delete(name);
    this.#publish?.(name);
  }
}

/**
 * A {@linkcode QuotaStore} that calls `publish(plugin)` after each change of
 * a plugin's overrides.
 *
 * @example
 * ```ts
 * import { MemoryQuotaStore } from "../quotas/quota_store.ts";
 * import { publishedQuotaStore } from "./published_stores.ts";
 * const sent: string[] = [];
 * const store = publishedQuotaStore(new MemoryQuotaStore(), (p) => sent.push(p));
 * await store.set("hello", { concurrentCalls: 2 });
 * console.log(sent); // ["hello"]
 * ```
 */
export function publishedQuotaStore(
  store: QuotaStore,
  publish: (plugin: string) => void,
): QuotaStore {
  return {
    all: () => store.all(),
    get: (plugin) => store.get(plugin),
    async set(plugin: string, limits: Partial<QuotaLimits>): Promise<void> {
      await store.set(plugin, limits);
      publish(plugin);
    },
  };
}
