/**
 * {@linkcode SpareWorkers}: workers bootstrapped ahead of need, so that an
 * instance which starts after load (a worker released when idle and called
 * again, a crashed one replaced) skips the worker's bootstrap (most of a
 * cold start: tens of ms) and only instantiates its cached module.
 *
 * One spare at most per channel size, shared by every plugin of the
 * process; made only once a plugin has released an idle worker (a host
 * that never releases keeps none), refilled in the background when taken,
 * and terminated when the last plugin that uses the pool shuts down.
 * Plugins with preopens never use spares (a worker's permissions are fixed
 * when it is spawned).
 *
 * @module
 */

import { InstanceHandle, type InstanceSettings } from "./instance_handle.ts";

type Settings = Omit<InstanceSettings, "module">;

/**
 * A pool of spare workers.
 *
 * @example
 * ```ts ignore
 * const pool = new SpareWorkers();
 * pool.retain();
 * pool.prime(settings);             // after an idle release
 * const handle = pool.take(settings) ?? InstanceHandle.spawn(settings);
 * pool.release();                   // at shutdown
 * ```
 */
export class SpareWorkers {
  #users = 0;
  #spares: { settings: Settings; handle: InstanceHandle }[] = [];
  #wanted: Settings[] = [];
  #timer: ReturnType<typeof setTimeout> | undefined;

  /** Spares waiting now (diagnostics, tests). */
  get size(): number {
    return this.#spares.length;
  }

  /** A plugin starts using the pool. */
  retain(): void {
    this.#users++;
  }

  /** A plugin stops using the pool; the last one terminates the spares. */
  release(): void {
    this.#users = Math.max(0, this.#users - 1);
    if (this.#users > 0) return;
    clearTimeout(this.#timer);
    this.#timer = undefined;
    this.#wanted = [];
    for (const s of this.#spares.splice(0)) s.handle.terminate("pool closed");
  }

  /** Keeps a spare ready for instances with `settings` (no-op with preopens). */
  prime(settings: Settings): void {
    if (this.#users === 0 || settings.preopens.length > 0) return;
    if (this.#find(settings) >= 0) return;
    if (this.#wanted.some((w) => InstanceHandle.compatible(w, settings))) {
      return;
    }
    this.#wanted.push(settings);
    this.#schedule();
  }

  /**
   * A spare worker for `settings`, adopted and ready to boot, or
   * `undefined`; a taken spare is replaced in the background.
   */
  take(settings: Settings): InstanceHandle | undefined {
    const i = this.#find(settings);
    if (i < 0) return undefined;
    const [spare] = this.#spares.splice(i, 1);
    if (spare!.handle.dead) return undefined;
    this.prime(settings);
    return spare!.handle.adopt(settings);
  }

  #find(settings: Settings): number {
    return this.#spares.findIndex((s) =>
      InstanceHandle.compatible(s.settings, settings)
    );
  }

  #schedule(): void {
    if (this.#timer !== undefined) return;
    // Spawned a moment later, off the path of the call that took one.
    this.#timer = setTimeout(() => {
      this.#timer = undefined;
      if (this.#users === 0) return;
      for (const settings of this.#wanted.splice(0)) {
        if (this.#find(settings) >= 0) continue;
        this.#spares.push({ settings, handle: InstanceHandle.spawn(settings) });
      }
    }, 10);
    Deno.unrefTimer(this.#timer);
  }
}

/** The process's pool, shared by every WASM plugin. */
export const spareWorkers: SpareWorkers = new SpareWorkers();
