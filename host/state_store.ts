/**
 * Where a plugin's enabled state (and quarantine reason) is kept, so that it
 * survives restarts. The Manager reads it at register and writes it on
 * enable, disable and quarantine.
 *
 * @module
 */

/** The persisted state of one plugin. */
export interface PluginState {
  /** Whether the plugin is enabled. */
  enabled: boolean;
  /** Why it is disabled, when the host disabled it (quarantine). */
  reason?: string;
}

/**
 * Storage for {@linkcode PluginState}, keyed by plugin name. Implementations:
 * {@linkcode MemoryStateStore} here; PostgreSQL in `host/services/`.
 */
export interface StateStore {
  /** Reads a plugin's state; `undefined` when never stored. */
  get(name: string): Promise<PluginState | undefined>;
  /** Stores a plugin's state. */
  set(name: string, state: PluginState): Promise<void>;
  /** Forgets a plugin's state (at uninstall). */
  delete(name: string): Promise<void>;
}

/**
 * A {@linkcode StateStore} in memory: state lasts as long as the object.
 *
 * @example
 * ```ts
 * import { MemoryStateStore } from "./state_store.ts";
 * const store = new MemoryStateStore();
 * await store.set("hello", { enabled: false });
 * console.log((await store.get("hello"))?.enabled); // false
 * ```
 */
export class MemoryStateStore implements StateStore {
  #states = new Map<string, PluginState>();

  /** Reads a plugin's state. */
  get(name: string): Promise<PluginState | undefined> {
    const s = this.#states.get(name);
    return Promise.resolve(s ? { ...s } : undefined);
  }

  /** Stores a plugin's state. */
  set(name: string, state: PluginState): Promise<void> {
    this.#states.set(name, { ...state });
    return Promise.resolve();
  }

  /** Forgets a plugin's state. */
  delete(name: string): Promise<void> {
    this.#states.delete(name);
    return Promise.resolve();
  }
}
