/**
 * The change feed of a cluster: after each change of shared state (a
 * plugin's enabled state, its grants, its quota overrides, …) a host sends
 * `NOTIFY goatkit_changes, '{"scope","kind","name","host"}'` on its own
 * connection ({@linkcode ChangeFeed.publish}), and every host LISTENs on a
 * dedicated `npm:pg` client (not the pool) and hands the changes of its own
 * deployment (same `scope`, another `host`) to the handlers of their kind.
 *
 * The LISTEN connection reconnects on its own (with a back-off of 100 ms
 * doubling to 2 s) when it fails or is terminated (a database restart,
 * `pg_terminate_backend`); after every (re)connection
 * {@linkcode ChangeFeedOptions.onConnect} runs, so the host can resync what
 * it may have missed. The connection's `application_name` is
 * `goatkit-listen <host id>`.
 *
 * @module
 */

import pg from "pg";
import type { SqlQueryClient } from "../../permissions/grants.ts";
import { CHANGES_CHANNEL } from "../loading/package_store.ts";

/** The NOTIFY channel of the change feed (the package store notifies on it too). */
export { CHANGES_CHANNEL };

/** One change, as it travels in the NOTIFY payload. */
export interface Change {
  /** The deployment: the application schema (`current_schema()`). */
  scope: string;
  /** What changed: `state`, `grants`, `quotas`, … */
  kind: string;
  /** The plugin (or other object) concerned. */
  name: string;
  /** The host that made the change. */
  host: string;
}

/** Handles one change of a kind. */
export type ChangeHandler = (change: Change) => void | Promise<void>;

/** Options of {@linkcode ChangeFeed}. */
export interface ChangeFeedOptions {
  /** The connection string of the LISTEN client (the host's `DATABASE_URL`). */
  url: string;
  /** The host's own connection, for NOTIFY. */
  client: SqlQueryClient;
  /** This host's id (changes it sent itself are not handed back). */
  hostId: string;
  /** Runs after every (re)connection of the LISTEN client (a resync). */
  onConnect?: (reconnected: boolean) => void | Promise<void>;
  /** Where failures are reported. */
  onError?: (what: string, e: unknown) => void;
}

/** Publishes changes and listens for other hosts' (see the module doc). */
export class ChangeFeed {
  readonly #url: string;
  readonly #client: SqlQueryClient;
  readonly #hostId: string;
  readonly #onConnect: ChangeFeedOptions["onConnect"];
  readonly #onError: (what: string, e: unknown) => void;
  readonly #handlers = new Map<string, Set<ChangeHandler>>();
  #listener: pg.Client | undefined;
  #scope: string | undefined;
  #closed = false;
  #connects = 0;
  #retryTimer: ReturnType<typeof setTimeout> | undefined;
  #backoffMs = 100;
  #connected = Promise.withResolvers<void>();

  /** Creates the feed; nothing is sent until {@linkcode ChangeFeed.start}. */
  constructor(options: ChangeFeedOptions) {
    this.#url = options.url;
    this.#client = options.client;
    this.#hostId = options.hostId;
    this.#onConnect = options.onConnect;
    this.#onError = options.onError ?? (() => {});
  }

  /** The `application_name` of the LISTEN connection. */
  get applicationName(): string {
    return `goatkit-listen ${this.#hostId}`;
  }

  /** How many times the LISTEN client has connected. */
  get connections(): number {
    return this.#connects;
  }

  /** Calls `handler` for each change of `kind` from another host; returns the unsubscribe function. */
  on(kind: string, handler: ChangeHandler): () => void {
    let set = this.#handlers.get(kind);
    if (!set) this.#handlers.set(kind, set = new Set());
    set.add(handler);
    return () => set.delete(handler);
  }

  /**
   * Sends a change of `kind` to `name` to the other hosts (on the host's own
   * connection, after the change is stored). Never throws: a lost
   * notification is caught up by the periodic resync.
   */
  async publish(kind: string, name: string): Promise<void> {
    if (this.#closed) return;
    try {
      await this.#client.query(
        `SELECT pg_notify($1, json_build_object(
           'scope', current_schema(), 'kind', $2::text,
           'name', $3::text, 'host', $4::text)::text)`,
        [CHANGES_CHANNEL, kind, name, this.#hostId],
      );
    } catch (e) {
      this.#onError(`notify of ${kind} "${name}"`, e);
    }
  }

  /** Connects the LISTEN client; resolves once it listens the first time. */
  start(): Promise<void> {
    void this.#connect();
    return this.#connected.promise;
  }

  async #connect(): Promise<void> {
    if (this.#closed) return;
    const client = new pg.Client({
      connectionString: this.#url,
      application_name: this.applicationName,
    });
    let failed = false;
    const fail = (e: unknown) => {
      if (failed) return;
      failed = true;
      if (this.#listener === client) this.#listener = undefined;
      client.end().catch(() => {});
      if (this.#closed) return;
      this.#onError("change feed connection", e);
      this.#retryTimer = setTimeout(
        () => void this.#connect(),
        this.#backoffMs,
      );
      this.#backoffMs = Math.min(this.#backoffMs * 2, 2000);
    };
    client.on("error", fail);
    client.on("end", () => fail(new Error("connection ended")));
    client.on("notification", (msg: { channel: string; payload?: string }) => {
      if (msg.channel === CHANGES_CHANNEL) this.#dispatch(msg.payload);
    });
    try {
      await client.connect();
      const { rows } = await client.query(
        `SELECT current_schema() AS scope`,
      );
      this.#scope = String(rows[0]?.scope);
      await client.query(`LISTEN ${CHANGES_CHANNEL}`);
    } catch (e) {
      fail(e);
      return;
    }
    if (this.#closed || failed) {
      client.end().catch(() => {});
      return;
    }
    this.#listener = client;
    this.#backoffMs = 100;
    const reconnected = this.#connects > 0;
    this.#connects++;
    this.#connected.resolve();
    try {
      await this.#onConnect?.(reconnected);
    } catch (e) {
      this.#onError("resync after connecting", e);
    }
  }

  #dispatch(payload: string | undefined): void {
    let change: Change;
    try {
      change = JSON.parse(payload ?? "") as Change;
    } catch {
      return;
    }
    if (
      change === null || typeof change !== "object" ||
      change.scope !== this.#scope || change.host === this.#hostId ||
      typeof change.kind !== "string" || typeof change.name !== "string"
    ) {
      return;
    }
    for (const h of [...(this.#handlers.get(change.kind) ?? [])]) {
      Promise.resolve().then(() => h(change)).catch((e) =>
        this.#onError(`${change.kind} change of "${change.name}"`, e)
      );
    }
  }

  /** Stops listening and reconnecting. */
  async close(): Promise<void> {
    this.#closed = true;
    clearTimeout(this.#retryTimer);
    const l = this.#listener;
    this.#listener = undefined;
    this.#connected.resolve();
    await l?.end().catch(() => {});
  }
}
