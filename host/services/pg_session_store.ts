/**
 * Browser sessions in PostgreSQL: table `goatkit.sessions` in the host's
 * own schema, keyed by the SHA-256 of the session id (the cookie value is
 * never stored), so a session survives a restart and a cookie made on one
 * host is valid on every host sharing the database (and application
 * schema: rows are scoped like the logs, see `pg_log_store.ts`). Expiry is
 * checked on every read against the database's clock; expired rows are
 * deleted now and then as new sessions are made.
 *
 * @module
 */

import type { Session, SessionBackend } from "../server/auth/sessions.ts";
import { HostTable } from "../../permissions/host_schema.ts";
import { ScopedTable } from "./pg_scoped_table.ts";
import type { SqlClient } from "./sql_client.ts";

/** Options of {@linkcode PgSessionStore}. */
export interface PgSessionStoreOptions {
  /** The host's own SQL client. */
  client: SqlClient;
  /** `schema.table`. @default "goatkit.sessions" */
  table?: string;
}

const COLUMNS = `id_hash text PRIMARY KEY,
  scope text NOT NULL DEFAULT current_schema(),
  token_id text NOT NULL,
  name text NOT NULL,
  admin boolean NOT NULL,
  csrf text NOT NULL,
  expires timestamptz NOT NULL,
  created timestamptz NOT NULL DEFAULT now()`;

/**
 * A {@linkcode SessionBackend} over the host's SQL client.
 *
 * @example
 * ```ts ignore
 * import { SessionStore } from "../server/auth/sessions.ts";
 * import { PgSessionStore } from "./pg_session_store.ts";
 * const sessions = new SessionStore({ backend: new PgSessionStore({ client: db.sqlClient }) });
 * const { id } = await sessions.create({ tokenId: "t1", name: "admin", admin: true });
 * console.log((await sessions.get(id))?.name); // "admin"
 * ```
 */
export class PgSessionStore implements SessionBackend {
  readonly #client: SqlClient;
  readonly #table: ScopedTable;
  #puts = 0;

  /** Creates the store; nothing is sent before first use. */
  constructor(options: PgSessionStoreOptions) {
    this.#client = options.client;
    const host = new HostTable(options.client, {
      table: options.table ?? "goatkit.sessions",
      columns: COLUMNS,
    });
    this.#table = new ScopedTable(options.client, host, ["token_id"]);
  }

  /** Stores a new session (and every 100th time, drops expired ones). */
  async put(idHash: string, s: Session): Promise<void> {
    await this.#table.ready();
    await this.#client.query(
      `INSERT INTO ${this.#table.sqlName}
         (id_hash, token_id, name, admin, csrf, expires)
       VALUES ($1, $2, $3, $4, $5, $6::timestamptz)`,
      [
        idHash,
        s.tokenId,
        s.name,
        s.admin,
        s.csrf,
        new Date(s.expires)
          .toISOString(),
      ],
    );
    if (++this.#puts % 100 === 1) {
      await this.#client.query(
        `DELETE FROM ${this.#table.sqlName} WHERE expires <= now()`,
      );
    }
  }

  /** The live session of an id hash in this scope. */
  async get(idHash: string): Promise<Session | undefined> {
    await this.#table.ready();
    const { rows } = await this.#client.query(
      `SELECT token_id, name, admin, csrf,
              (extract(epoch FROM expires) * 1000)::float8 AS expires
         FROM ${this.#table.sqlName}
        WHERE id_hash = $1 AND scope = current_schema() AND expires > now()`,
      [idHash],
    );
    const r = rows[0];
    if (!r) return undefined;
    return {
      tokenId: String(r.token_id),
      name: String(r.name),
      admin: r.admin === true,
      csrf: String(r.csrf),
      expires: Number(r.expires),
    };
  }

  /** Removes one session. */
  async delete(idHash: string): Promise<void> {
    await this.#table.ready();
    await this.#client.query(
      `DELETE FROM ${this.#table.sqlName} WHERE id_hash = $1`,
      [idHash],
    );
  }

  /** Removes every session of a token in this scope. */
  async deleteByToken(tokenId: string): Promise<void> {
    await this.#table.ready();
    await this.#client.query(
      `DELETE FROM ${this.#table.sqlName}
        WHERE scope = current_schema() AND token_id = $1`,
      [tokenId],
    );
  }
}
