/**
 * Cluster mode (switched on by `DATABASE_URL`): several hosts on one
 * PostgreSQL database and application schema act as one.
 *
 * - {@linkcode HostRegistry}: each host's row in `goatkit.hosts`, a heartbeat
 *   every second, hosts silent for 5 s count as gone.
 * - {@linkcode ChangeFeed}: every change of shared state is a row plus a
 *   `NOTIFY goatkit_changes`; every host LISTENs on its own connection.
 * - {@linkcode Cluster} reconciles this host to what another host changed,
 *   as soon as the notification arrives (well within 1 s):
 *   - `state`: the Manager enables, disables or quarantines the plugin to
 *     match its row, without writing the row back (see
 *     `published_stores.ts`);
 *   - `grants`: the grant store forgets its cached grants of the plugin and
 *     tells its listeners, so guarded HostAPIs read them again;
 *   - `quotas`: the quota overrides are read again.
 *
 *   A resync every 10 s, and after the LISTEN connection reconnects (a
 *   database restart), compares every plugin's stored state and grants with
 *   the live ones, so a missed notification is caught up.
 *
 * @module
 */

import { errorText } from "../model/errors.ts";
import type { PluginState } from "../state_store.ts";
import { type Change, ChangeFeed, type ChangeHandler } from "./change_feed.ts";
import { HostRegistry } from "./host_registry.ts";
import type { PublishedStateStore } from "./published_stores.ts";
import type { SqlQueryClient } from "../../permissions/grants.ts";

/** What the cluster needs of the Manager. */
export interface ClusterManager {
  /** Registered plugins. */
  list(): { name: string }[];
  /** A registered plugin's live state. */
  status(name: string): { enabled: boolean; reason?: string } | undefined;
  /** Enables a plugin. */
  enable(name: string): Promise<void>;
  /** Disables a plugin. */
  disable(name: string): Promise<void>;
  /** Disables a plugin with a reason. */
  quarantine(name: string, reason: string): Promise<void>;
}

/** What the cluster needs of the grant store (`PgGrantStore`). */
export interface ClusterGrants {
  /** Every plugin's stored grants, read now. */
  all(): Promise<Map<string, string[]>>;
  /** Forgets the cached grants of `plugin` and tells the listeners. */
  invalidate(plugin: string): void;
}

/** Where the cluster logs (a `LogBuffer`). */
export interface ClusterLog {
  /** Logs one line under `plugin` (`""` for the host). */
  log(plugin: string, level: "info" | "warn" | "error", msg: string): void;
}

/** This host and its cluster, as `/readyz` shows them. */
export interface ClusterInfo {
  /** This host. */
  host: { id: string; roles: string[] };
  /** The cluster: live hosts, this one included. */
  cluster: { hosts: number };
}

/** Options of {@linkcode Cluster}. */
export interface ClusterOptions {
  /** The database (`DATABASE_URL`), for the LISTEN connection. */
  url: string;
  /** The host's own connection (heartbeats, NOTIFY, reads). */
  client: SqlQueryClient;
  /** This host's id. */
  hostId: string;
  /** This host's roles (`http`, `scheduler`). */
  roles: readonly string[];
  /** Where remote changes are logged. */
  logs?: ClusterLog;
  /** How often everything is compared with the database, in ms. @default 10000 */
  resyncMs?: number;
  /** Heartbeat interval, in ms. @default 1000 */
  heartbeatMs?: number;
  /** A host without a heartbeat for this long is gone, in ms. @default 5000 */
  staleMs?: number;
}

/** What {@linkcode Cluster.attach} reconciles. */
export interface ClusterTargets {
  /** The Manager. */
  manager: ClusterManager;
  /** The Manager's state store. */
  states: PublishedStateStore;
  /** The grant store. */
  grants: ClusterGrants;
  /** The quotas (re-read on a change). */
  quotas?: { refresh(): Promise<void> };
}

function sameAsLive(
  manager: ClusterManager,
  name: string,
  stored: PluginState,
): boolean {
  const live = manager.status(name);
  return live === undefined || (live.enabled === stored.enabled &&
    (stored.enabled || (live.reason ?? "") === (stored.reason ?? "")));
}

/** One host's part in the cluster (see the module doc). */
export class Cluster {
  readonly #logs: ClusterLog | undefined;
  readonly #resyncMs: number;
  readonly registry: HostRegistry;
  readonly feed: ChangeFeed;
  #targets: ClusterTargets | undefined;
  #timer: ReturnType<typeof setInterval> | undefined;
  #resyncing: Promise<void> | undefined;
  #grantsSeen: Map<string, string> | undefined;
  #chains = new Map<string, Promise<void>>();
  #closed = false;
  /** Remote changes applied so far (state changes and grant invalidations). */
  applied = 0;

  /** Creates the cluster part; nothing is sent until {@linkcode Cluster.start}. */
  constructor(options: ClusterOptions) {
    this.#logs = options.logs;
    this.#resyncMs = options.resyncMs ?? 10_000;
    const onError = (what: string) => (e: unknown) =>
      this.#logs?.log("", "warn", `cluster: ${what} failed: ${errorText(e)}`);
    this.registry = new HostRegistry({
      client: options.client,
      id: options.hostId,
      roles: options.roles,
      heartbeatMs: options.heartbeatMs ?? 1000,
      staleMs: options.staleMs ?? 5000,
      onError: onError("heartbeat"),
    });
    this.feed = new ChangeFeed({
      url: options.url,
      client: options.client,
      hostId: options.hostId,
      onConnect: (reconnected) => {
        if (reconnected) {
          this.#logs?.log(
            "",
            "info",
            "cluster: change feed reconnected; resyncing",
          );
        }
        return this.resync();
      },
      onError: (what, e) => onError(what)(e),
    });
    this.feed.on("state", (c) => this.#onState(c));
    this.feed.on("grants", (c) => this.#onGrants(c));
    this.feed.on("quotas", () => this.#targets?.quotas?.refresh());
  }

  /** This host's id. */
  get hostId(): string {
    return this.registry.id;
  }

  /** This host and the live hosts, for `/readyz`. */
  info(): ClusterInfo {
    return {
      host: { id: this.registry.id, roles: [...this.registry.roles] },
      cluster: { hosts: this.registry.liveHosts },
    };
  }

  /** Sends a change to the other hosts (see {@linkcode ChangeFeed.publish}). */
  publish(kind: string, name: string): void {
    void this.feed.publish(kind, name);
  }

  /** Handles other hosts' changes of `kind` (for kinds beyond state, grants, quotas). */
  on(kind: string, handler: ChangeHandler): () => void {
    return this.feed.on(kind, handler);
  }

  /** Sets what to reconcile (before {@linkcode Cluster.start}). */
  attach(targets: ClusterTargets): void {
    this.#targets = targets;
  }

  /**
   * Writes the first heartbeat (with `url`), starts listening (which runs
   * the first resync) and the periodic resync.
   */
  async start(url?: string): Promise<void> {
    if (url !== undefined) this.registry.url = url;
    await this.registry.start();
    await this.feed.start();
    this.#timer ??= setInterval(() => void this.resync(), this.#resyncMs);
  }

  /**
   * Compares every registered plugin's stored state and every plugin's
   * stored grants with the live ones and applies the differences; re-reads
   * the quota overrides. Never throws (failures are logged).
   */
  resync(): Promise<void> {
    this.#resyncing ??= this.#resync().catch((e) =>
      this.#logs?.log("", "warn", `cluster: resync failed: ${errorText(e)}`)
    ).finally(() => this.#resyncing = undefined);
    return this.#resyncing;
  }

  async #resync(): Promise<void> {
    const t = this.#targets;
    if (!t || this.#closed) return;
    const [states, grants] = await Promise.all([
      t.states.all(),
      t.grants.all(),
    ]);
    await Promise.all(
      t.manager.list().map(({ name }) => {
        const stored = states.get(name);
        return stored ? this.#apply(name, stored, "resync") : undefined;
      }),
    );
    const seen = new Map(
      [...grants].map(([p, g]) => [p, JSON.stringify([...g].sort())]),
    );
    const before = this.#grantsSeen;
    this.#grantsSeen = seen;
    if (before) {
      for (const p of new Set([...before.keys(), ...seen.keys()])) {
        if (before.get(p) !== seen.get(p)) {
          t.grants.invalidate(p);
          this.applied++;
        }
      }
    }
    await t.quotas?.refresh();
  }

  async #onState(change: Change): Promise<void> {
    const t = this.#targets;
    if (!t || !t.manager.status(change.name)) return;
    await this.#apply(change.name, undefined, `host ${change.host}`);
  }

  #onGrants(change: Change): void {
    const t = this.#targets;
    if (!t) return;
    t.grants.invalidate(change.name);
    this.applied++;
  }

  /**
   * Applies the stored state of the live plugin `name` (one at a time per
   * plugin), read again just before (so a local change made meanwhile is
   * not undone); `hint` is what a resync read.
   */
  #apply(
    name: string,
    hint: PluginState | undefined,
    by: string,
  ): Promise<void> {
    const prev = this.#chains.get(name) ?? Promise.resolve();
    const next = prev.then(() => this.#applyNow(name, hint, by)).catch((e) =>
      this.#logs?.log(
        name,
        "warn",
        `cluster: applying the stored state failed: ${errorText(e)}`,
      )
    );
    this.#chains.set(name, next);
    void next.finally(() => {
      if (this.#chains.get(name) === next) this.#chains.delete(name);
    });
    return next;
  }

  async #applyNow(
    name: string,
    hint: PluginState | undefined,
    by: string,
  ): Promise<void> {
    const t = this.#targets;
    if (!t || !t.manager.status(name) || this.#closed) return;
    if (hint && sameAsLive(t.manager, name, hint)) return;
    const stored = await t.states.get(name);
    const live = t.manager.status(name);
    if (!stored || !live || this.#closed) return;
    if (sameAsLive(t.manager, name, stored)) return;
    const { manager, states } = t;
    await states.applying(
      name,
      stored,
      () =>
        stored.enabled
          ? manager.enable(name)
          : stored.reason
          ? manager.quarantine(name, stored.reason)
          : manager.disable(name),
    );
    this.applied++;
    this.#logs?.log(
      name,
      "info",
      `cluster: plugin "${name}" ${
        stored.enabled ? "enabled" : stored.reason ? "quarantined" : "disabled"
      } to match the database (${by})`,
    );
  }

  /** Stops the resync, the LISTEN connection and the heartbeat (deleting this host's row). */
  async close(): Promise<void> {
    this.#closed = true;
    clearInterval(this.#timer);
    await this.feed.close();
    await this.#resyncing;
    await this.registry.stop();
  }
}
