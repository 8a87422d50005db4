/**
 * Keeping one plugin's PostgreSQL role in step with its grants: the table
 * privileges its `db:` grants add up to, synced once per database and grant
 * set, again when the grants change, and once more when the database refuses
 * a statement for lack of privilege on a table created since the last sync.
 * The SQL that makes a role match lives in `pg_privileges.ts`.
 *
 * @module
 */

import type { DbPermission } from "./grammar.ts";
import type { PluginPrivileges } from "./pg_privileges.ts";

/** A database whose plugin roles can be synced (the services' `Database`). */
export interface PrivilegeTarget {
  /** Makes `plugin`'s role match `privileges`. */
  syncPluginPrivileges(
    plugin: string,
    privileges: PluginPrivileges,
  ): Promise<void>;
}

/**
 * The table privileges that `db:` grants add up to. `db:write` includes
 * reading the same tables (`UPDATE … WHERE` needs `SELECT`).
 *
 * @example
 * ```ts
 * import { parsePermission, type DbPermission } from "./grammar.ts";
 * import { privilegesOf } from "./privilege_sync.ts";
 * const grants = ["db:read:ticket", "db:write:note"].map((g) =>
 *   parsePermission(g) as DbPermission
 * );
 * console.log(privilegesOf(grants)); // { read: ["note", "ticket"], write: ["note"] }
 * ```
 */
export function privilegesOf(
  grants: readonly DbPermission[],
): PluginPrivileges {
  const tablesOf = (ps: readonly DbPermission[]): "all" | string[] | null => {
    if (ps.length === 0) return null;
    if (ps.some((p) => p.tables === null)) return "all";
    return Object.freeze(
      [...new Set(ps.flatMap((p) => p.tables ?? []))].sort(),
    ) as string[];
  };
  // Frozen: its comparison key is remembered by object (see keyOf).
  return Object.freeze({
    read: tablesOf(grants),
    write: tablesOf(grants.filter((p) => p.access === "write")),
  });
}

/**
 * Privilege sets' comparison keys, by object (a plugin's set is reused);
 * only for frozen sets ({@linkcode privilegesOf}'s): one that could still
 * change is compared by its contents every time.
 */
const KEYS = new WeakMap<PluginPrivileges, string>();
function keyOf(privileges: PluginPrivileges): string {
  if (!Object.isFrozen(privileges)) return JSON.stringify(privileges);
  let key = KEYS.get(privileges);
  if (key === undefined) {
    key = JSON.stringify(privileges);
    KEYS.set(privileges, key);
  }
  return key;
}

/**
 * Tracks, per database, which privileges were last synced for one plugin,
 * so that a statement waits for at most one sync per grant change.
 *
 * @example
 * ```ts
 * import { PrivilegeSync } from "./privilege_sync.ts";
 * const db = {
 *   syncs: 0,
 *   async syncPluginPrivileges() {
 *     this.syncs++;
 *   },
 * };
 * const sync = new PrivilegeSync("hello");
 * const privileges = { read: "all" as const, write: null };
 * await sync.run(db, privileges, async () => "first");
 * await sync.run(db, privileges, async () => "second");
 * console.log(db.syncs); // 1
 * ```
 */
export class PrivilegeSync<D extends PrivilegeTarget = PrivilegeTarget> {
  #plugin: string;
  #synced = new Map<D, { key: string; done: Promise<void>; at: number }>();

  /** Creates the tracker for `plugin`. */
  constructor(plugin: string) {
    this.#plugin = plugin;
  }

  /** The databases synced so far (the ones to re-sync on a grant change). */
  databases(): D[] {
    return [...this.#synced.keys()];
  }

  /**
   * Syncs `privileges` to `db` unless the same set was synced (or is being
   * synced) already; `force` syncs anyway. A failed sync is forgotten, so
   * the next call tries again.
   */
  sync(db: D, privileges: PluginPrivileges, force = false): Promise<void> {
    const key = keyOf(privileges);
    const current = this.#synced.get(db);
    if (!force && current?.key === key) return current.done;
    const done = db.syncPluginPrivileges(this.#plugin, privileges);
    const entry = { key, done, at: Date.now() };
    this.#synced.set(db, entry);
    done.catch(() => {
      if (this.#synced.get(db) === entry) this.#synced.delete(db);
    });
    return done;
  }

  /**
   * Runs `fn` after syncing. When the database answers 42501 (insufficient
   * privilege) and the last sync is over a second old, the privileges are
   * synced again and `fn` retried once: `"all"` covers only the tables that
   * existed at the last sync, and a refused statement did nothing (its
   * transaction was rolled back).
   */
  async run<T>(
    db: D,
    privileges: PluginPrivileges,
    fn: () => Promise<T>,
  ): Promise<T> {
    await this.sync(db, privileges);
    try {
      return await fn();
    } catch (e) {
      const code = (e as { code?: unknown } | null)?.code;
      const last = this.#synced.get(db);
      if (code !== "42501" || !last || Date.now() - last.at < 1000) throw e;
      await this.sync(db, privileges, true);
      return await fn();
    }
  }
}
