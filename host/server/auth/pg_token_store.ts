/**
 * API tokens kept in PostgreSQL, so that a token created through one host
 * works on every host of the same database and application schema: table
 * `goatkit.api_tokens` (`scope, id, name, admin, hash, created`), created
 * under the host's advisory lock in the host's own schema, which no plugin
 * role can see. Only the SHA-256 of each token is stored, as in
 * {@linkcode FileTokenStore}; rows are scoped by `current_schema()`.
 *
 * @module
 */

import { Buffer } from "node:buffer";
import { timingSafeEqual } from "node:crypto";
import { HostTable } from "../../../permissions/host_schema.ts";
import type { SqlQueryClient } from "../../../permissions/grants.ts";
import {
  type CreatedToken,
  type CreateTokenOptions,
  generateToken,
  hashToken,
  type TokenRecord,
  type TokenStore,
} from "./tokens.ts";

/** Options of {@linkcode PgTokenStore}. */
export interface PgTokenStoreOptions {
  /** The host's own connection (never the pool plugin statements run on). */
  client: SqlQueryClient;
  /** Table (`table` or `schema.table`). @default "goatkit.api_tokens" */
  table?: string;
}

/**
 * A {@linkcode TokenStore} in PostgreSQL (hashes only), shared by every host
 * on the database and application schema. A presented token is looked up by
 * its hash and compared in constant time.
 *
 * @example
 * ```ts ignore
 * import { PgTokenStore } from "./pg_token_store.ts";
 * const store = new PgTokenStore({ client: pool });
 * const { token } = await store.create({ name: "ci" });
 * console.log((await store.verify(token))?.name); // "ci"
 * ```
 */
export class PgTokenStore implements TokenStore {
  #client: SqlQueryClient;
  #host: HostTable;
  #table: string;

  /** Creates the store; nothing is sent until first use. */
  constructor(options: PgTokenStoreOptions) {
    this.#client = options.client;
    this.#host = new HostTable(options.client, {
      table: options.table ?? "goatkit.api_tokens",
      columns: `scope text NOT NULL DEFAULT current_schema(),
        id text NOT NULL,
        name text NOT NULL,
        admin boolean NOT NULL,
        hash text NOT NULL,
        created timestamptz NOT NULL DEFAULT now(),
        PRIMARY KEY (scope, id)`,
      scopedKey: ["id"],
    });
    this.#table = this.#host.sqlName;
  }

  /** Creates a token and stores its hash; returns the secret once. */
  async create(options: CreateTokenOptions): Promise<CreatedToken> {
    await this.#host.ready();
    const token = generateToken();
    const record: TokenRecord = {
      id: crypto.getRandomValues(new Uint8Array(6)).reduce(
        (s, b) => s + b.toString(16).padStart(2, "0"),
        "",
      ),
      name: options.name,
      admin: options.admin ?? false,
      hash: hashToken(token),
      created: new Date().toISOString(),
    };
    await this.#client.query(
      `INSERT INTO ${this.#table} (id, name, admin, hash, created)
       VALUES ($1, $2, $3, $4, $5)`,
      [record.id, record.name, record.admin, record.hash, record.created],
    );
    return { token, record: { ...record } };
  }

  /** Finds the record of a presented secret; `undefined` if unknown. */
  async verify(token: string): Promise<TokenRecord | undefined> {
    if (typeof token !== "string" || token.length === 0 || token.length > 512) {
      return undefined;
    }
    await this.#host.ready();
    const hash = hashToken(token);
    const { rows } = await this.#client.query(
      `SELECT id, name, admin, hash, created FROM ${this.#table}
       WHERE scope = current_schema() AND hash = $1`,
      [hash],
    );
    const presented = Buffer.from(hash, "hex");
    for (const row of rows) {
      const r = toRecord(row);
      const stored = Buffer.from(r.hash, "hex");
      if (
        stored.length === presented.length &&
        timingSafeEqual(stored, presented)
      ) {
        return r;
      }
    }
    return undefined;
  }

  /** Every stored record (no secrets), oldest first. */
  async list(): Promise<TokenRecord[]> {
    await this.#host.ready();
    const { rows } = await this.#client.query(
      `SELECT id, name, admin, hash, created FROM ${this.#table}
       WHERE scope = current_schema() ORDER BY created, id`,
    );
    return rows.map(toRecord);
  }

  /** Removes a token by id; returns whether it existed. */
  async revoke(id: string): Promise<boolean> {
    await this.#host.ready();
    const { rows } = await this.#client.query(
      `DELETE FROM ${this.#table} WHERE scope = current_schema() AND id = $1
       RETURNING id`,
      [id],
    );
    return rows.length > 0;
  }
}

function toRecord(row: Record<string, unknown>): TokenRecord {
  const created = row.created;
  return {
    id: String(row.id),
    name: String(row.name),
    admin: row.admin === true,
    hash: String(row.hash),
    created: created instanceof Date
      ? created.toISOString()
      : new Date(String(created)).toISOString(),
  };
}
