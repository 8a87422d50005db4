/**
 * The hosts of one deployment (database and application schema) find each
 * other in table `goatkit.hosts` (`scope, host_id, started_at, heartbeat_at,
 * url, roles`): each host upserts its row every second
 * ({@linkcode HostRegistryOptions.heartbeatMs}); a host whose heartbeat is
 * older than {@linkcode HostRegistryOptions.staleMs} (5 s) counts as gone.
 * A host that stops cleanly deletes its row; rows of hosts gone for an hour
 * are deleted by the next heartbeat of any host.
 *
 * @module
 */

import { HostTable } from "../../permissions/host_schema.ts";
import type { SqlQueryClient } from "../../permissions/grants.ts";

/** One row of `goatkit.hosts`, as {@linkcode HostRegistry.hosts} shows it. */
export interface HostRow {
  /** The host's id (see {@linkcode newHostId}). */
  id: string;
  /** When it started (ISO 8601). */
  startedAt: string;
  /** Its last heartbeat (ISO 8601). */
  heartbeatAt: string;
  /** Its base URL, when known. */
  url?: string;
  /** What it does (`http`, `scheduler`, …). */
  roles: string[];
  /** Whether its heartbeat is recent enough. */
  live: boolean;
}

/** Options of {@linkcode HostRegistry}. */
export interface HostRegistryOptions {
  /** The host's own connection. */
  client: SqlQueryClient;
  /** This host's id. */
  id: string;
  /** This host's roles. */
  roles: readonly string[];
  /** This host's base URL. */
  url?: string;
  /** Heartbeat interval, in ms. @default 1000 */
  heartbeatMs?: number;
  /** A host without a heartbeat for this long is gone, in ms. @default 5000 */
  staleMs?: number;
  /** Called when a heartbeat fails (once per failure streak). */
  onError?: (e: unknown) => void;
  /** Table. @default "goatkit.hosts" */
  table?: string;
}

/**
 * A short id for this host process: `<hostname>-<pid>-<random>`, at most 40
 * characters (it is part of the LISTEN connection's `application_name`).
 *
 * @example
 * ```ts
 * import { newHostId } from "./host_registry.ts";
 * newHostId().length <= 40; // true
 * ```
 */
export function newHostId(): string {
  let name = "host";
  try {
    name = Deno.hostname().replace(/[^A-Za-z0-9.-]/g, "").slice(0, 20) ||
      "host";
  } catch { /* no permission: keep "host" */ }
  const rand = crypto.randomUUID().replaceAll("-", "").slice(0, 6);
  return `${name}-${Deno.pid}-${rand}`;
}

/** This host's row in `goatkit.hosts` and the count of live hosts. */
export class HostRegistry {
  readonly #client: SqlQueryClient;
  readonly #host: HostTable;
  readonly #table: string;
  readonly #heartbeatMs: number;
  readonly #staleMs: number;
  readonly #onError: ((e: unknown) => void) | undefined;
  readonly #startedAt = new Date().toISOString();
  #timer: ReturnType<typeof setInterval> | undefined;
  #beating: Promise<void> | undefined;
  #failing = false;
  #live = 1;
  /** This host's id. */
  readonly id: string;
  /** This host's roles. */
  readonly roles: readonly string[];
  /** This host's base URL (set before {@linkcode HostRegistry.start}). */
  url: string | undefined;

  /** Creates the registry; nothing is sent until {@linkcode HostRegistry.start}. */
  constructor(options: HostRegistryOptions) {
    this.#client = options.client;
    this.id = options.id;
    this.roles = [...options.roles];
    this.url = options.url;
    this.#heartbeatMs = options.heartbeatMs ?? 1000;
    this.#staleMs = options.staleMs ?? 5000;
    this.#onError = options.onError;
    this.#host = new HostTable(options.client, {
      table: options.table ?? "goatkit.hosts",
      columns: `scope text NOT NULL DEFAULT current_schema(),
        host_id text NOT NULL,
        started_at timestamptz NOT NULL,
        heartbeat_at timestamptz NOT NULL DEFAULT now(),
        url text,
        roles jsonb NOT NULL DEFAULT '[]',
        PRIMARY KEY (scope, host_id)`,
      scopedKey: ["host_id"],
    });
    this.#table = this.#host.sqlName;
  }

  /** Live hosts (this one included) as of the last heartbeat. */
  get liveHosts(): number {
    return this.#live;
  }

  /** Writes the first heartbeat and keeps beating. */
  async start(): Promise<void> {
    await this.heartbeat();
    this.#timer ??= setInterval(() => void this.heartbeat(), this.#heartbeatMs);
  }

  /**
   * Upserts this host's row and counts the live hosts (one statement);
   * failures go to `onError` and never throw.
   */
  heartbeat(): Promise<void> {
    this.#beating ??= this.#beat().finally(() => this.#beating = undefined);
    return this.#beating;
  }

  async #beat(): Promise<void> {
    try {
      await this.#host.ready();
      const { rows } = await this.#client.query(
        `WITH up AS (
           INSERT INTO ${this.#table} (host_id, started_at, heartbeat_at, url, roles)
           VALUES ($1, $2, now(), $3, $4::jsonb)
           ON CONFLICT (scope, host_id) DO UPDATE
             SET heartbeat_at = now(), url = EXCLUDED.url, roles = EXCLUDED.roles
           RETURNING 1
         ), old AS (
           DELETE FROM ${this.#table}
            WHERE scope = current_schema() AND host_id <> $1
              AND heartbeat_at < now() - interval '1 hour'
           RETURNING 1
         )
         SELECT count(*)::int AS n FROM ${this.#table}
          WHERE scope = current_schema() AND host_id <> $1
            AND heartbeat_at > now() - ($5::int * interval '1 millisecond')`,
        [
          this.id,
          this.#startedAt,
          this.url ?? null,
          JSON.stringify(this.roles),
          this.#staleMs,
        ],
      );
      this.#live = 1 + Number(rows[0]?.n ?? 0);
      this.#failing = false;
    } catch (e) {
      if (!this.#failing) this.#onError?.(e);
      this.#failing = true;
    }
  }

  /** Every host row of this deployment, live or not. */
  async hosts(): Promise<HostRow[]> {
    await this.#host.ready();
    const { rows } = await this.#client.query(
      `SELECT host_id, started_at, heartbeat_at, url, roles,
              heartbeat_at > now() - ($1::int * interval '1 millisecond') AS live
         FROM ${this.#table} WHERE scope = current_schema()
        ORDER BY started_at, host_id`,
      [this.#staleMs],
    );
    return rows.map((r) => ({
      id: String(r.host_id),
      startedAt: String(r.started_at),
      heartbeatAt: String(r.heartbeat_at),
      ...(r.url ? { url: String(r.url) } : {}),
      roles: Array.isArray(r.roles) ? r.roles.map(String) : [],
      live: r.live === true,
    }));
  }

  /** Stops beating and deletes this host's row (errors are ignored). */
  async stop(): Promise<void> {
    clearInterval(this.#timer);
    this.#timer = undefined;
    await this.#beating;
    await this.#client.query(
      `DELETE FROM ${this.#table} WHERE scope = current_schema() AND host_id = $1`,
      [this.id],
    ).catch(() => {});
  }
}
