/**
 * Installed packages kept in PostgreSQL, so that every host of a deployment
 * installs the same bytes: table `goatkit.packages` (one row per plugin name,
 * scoped by the application schema like the host's other tables) holds the
 * package bytes, their SHA-256, the detached signature and who installed
 * it; table `goatkit.package_removals` remembers uninstalls, so that a host
 * that was down when a package was removed removes it too when it comes
 * back (and never mistakes a package it installed before the store existed
 * for a removed one).
 *
 * Every change is followed by `pg_notify('goatkit_changes', …)` with the
 * JSON payload `{scope, kind: "package", name, host}`; the other hosts sync
 * (see `package_sync.ts`).
 *
 * Bytes travel as base64 text (`decode($1, 'base64')` in, bytea comes back
 * as base64 through the host's SQL client), which works the same through
 * `npm:pg` and PGlite.
 *
 * @module
 */

import { HostTable } from "../../permissions/host_schema.ts";
import type { SqlClient } from "../services/sql_client.ts";

/** The channel every host change is notified on. */
export const CHANGES_CHANNEL = "goatkit_changes";

/** What a package row says, without its bytes. */
export interface StoredPackage {
  /** Plugin name. */
  name: string;
  /** Version (manifest). */
  version: string;
  /** SHA-256 of the bytes, hex (lower case). */
  sha256: string;
  /** Length of the bytes. */
  size: number;
  /** Whether a signature is stored with it. */
  signed: boolean;
  /** Fingerprint of the key that verified it on the installing host, if any. */
  signerFingerprint: string | null;
  /** Operator override the installing host was given: another signer. */
  allowSignerChange: boolean;
  /** Operator override the installing host was given: a lower version. */
  allowDowngrade: boolean;
  /** When it was installed (RFC 3339, database clock). */
  installedAt: string;
  /** The host that installed it. */
  installedByHost: string;
}

/** A package's bytes and detached signature, as stored. */
export interface StoredPackageBytes {
  /** The stored bytes (not yet checked against the row's SHA-256). */
  bytes: Uint8Array;
  /** Detached Ed25519 signature, base64; `null` when unsigned. */
  signature: string | null;
}

/** One remembered uninstall. */
export interface PackageRemoval {
  /** Plugin name. */
  name: string;
  /** SHA-256 of the package that was removed. */
  sha256: string;
  /** When (RFC 3339, database clock). */
  removedAt: string;
}

/** What {@linkcode PackageStore.put} writes. */
export interface PackagePut {
  /** Plugin name. */
  name: string;
  /** Version. */
  version: string;
  /** SHA-256 of `bytes`, hex. */
  sha256: string;
  /** The package bytes, exactly as uploaded. */
  bytes: Uint8Array;
  /** Detached signature, base64. */
  signature?: string | null;
  /** Fingerprint of the key that verified it. */
  signerFingerprint?: string | null;
  /** The operator allowed another signer. */
  allowSignerChange?: boolean;
  /** The operator allowed a lower version. */
  allowDowngrade?: boolean;
}

/** The JSON payload of a change notification on {@linkcode CHANGES_CHANNEL}. */
export interface ChangePayload {
  /** The application schema of the deployment. */
  scope: string;
  /** What changed: `package` here (other kinds belong to other stores). */
  kind: string;
  /** The plugin name. */
  name: string;
  /** The host that made the change. */
  host: string;
}

/** Options of {@linkcode PackageStore}. */
export interface PackageStoreOptions {
  /** The host's own SQL client (`sqlClient` of the database service). */
  client: SqlClient;
  /** This host's id, recorded in `installed_by_host` and notifications. */
  hostId: string;
}

/**
 * The package rows of one deployment (application schema); see the module
 * doc.
 *
 * @example
 * ```ts ignore
 * const store = new PackageStore({ client: sql, hostId: "web-1" });
 * await store.put({ name: "hello", version: "1.0.0", sha256, bytes });
 * for (const p of await store.list()) console.log(p.name, p.sha256);
 * ```
 */
export class PackageStore {
  #client: SqlClient;
  #packages: HostTable;
  #removals: HostTable;
  /** This host's id. */
  readonly hostId: string;

  /** Creates the store; nothing is sent before the first call. */
  constructor(options: PackageStoreOptions) {
    this.#client = options.client;
    this.hostId = options.hostId;
    this.#packages = new HostTable(options.client, {
      table: "goatkit.packages",
      columns: `scope text NOT NULL DEFAULT current_schema(),
         name text NOT NULL,
         version text NOT NULL,
         sha256 text NOT NULL,
         size bigint NOT NULL,
         bytes bytea NOT NULL,
         signature bytea,
         signer_fingerprint text,
         allow_signer_change boolean NOT NULL DEFAULT false,
         allow_downgrade boolean NOT NULL DEFAULT false,
         installed_at timestamptz NOT NULL DEFAULT now(),
         installed_by_host text NOT NULL,
         PRIMARY KEY (scope, name)`,
      scopedKey: ["name"],
    });
    this.#removals = new HostTable(options.client, {
      table: "goatkit.package_removals",
      columns: `scope text NOT NULL DEFAULT current_schema(),
         name text NOT NULL,
         sha256 text NOT NULL,
         removed_at timestamptz NOT NULL DEFAULT now(),
         removed_by_host text NOT NULL,
         PRIMARY KEY (scope, name)`,
      scopedKey: ["name"],
    });
  }

  async #ready(): Promise<void> {
    await this.#packages.ready();
    await this.#removals.ready();
  }

  /** The deployment's scope (`current_schema()` of the connection). */
  async scope(): Promise<string> {
    const { rows } = await this.#client.query(
      "SELECT current_schema() AS s",
    );
    return String(rows[0]?.s ?? "");
  }

  /** Every package row of the deployment, without bytes. */
  async list(): Promise<StoredPackage[]> {
    await this.#ready();
    const { rows } = await this.#client.query(
      `SELECT name, version, sha256, size, signature IS NOT NULL AS signed,
              signer_fingerprint, allow_signer_change, allow_downgrade,
              installed_at, installed_by_host
         FROM ${this.#packages.sqlName}
        WHERE scope = current_schema() ORDER BY name`,
    );
    return rows.map((r) => ({
      name: String(r.name),
      version: String(r.version),
      sha256: String(r.sha256).toLowerCase(),
      size: Number(r.size),
      signed: r.signed === true,
      signerFingerprint: r.signer_fingerprint === null
        ? null
        : String(r.signer_fingerprint),
      allowSignerChange: r.allow_signer_change === true,
      allowDowngrade: r.allow_downgrade === true,
      installedAt: new Date(String(r.installed_at)).toISOString(),
      installedByHost: String(r.installed_by_host),
    }));
  }

  /** The bytes and signature of `name`'s row; `undefined` when there is none. */
  async fetch(name: string): Promise<StoredPackageBytes | undefined> {
    await this.#ready();
    const { rows } = await this.#client.query(
      `SELECT encode(bytes, 'base64') AS bytes,
              encode(signature, 'base64') AS signature
         FROM ${this.#packages.sqlName}
        WHERE scope = current_schema() AND name = $1`,
      [name],
    );
    const row = rows[0];
    if (!row) return undefined;
    return {
      bytes: Uint8Array.fromBase64(String(row.bytes).replace(/\s+/g, "")),
      signature: row.signature === null
        ? null
        : String(row.signature).replace(/\s+/g, ""),
    };
  }

  /** Every remembered uninstall of the deployment. */
  async removals(): Promise<PackageRemoval[]> {
    await this.#ready();
    const { rows } = await this.#client.query(
      `SELECT name, sha256, removed_at FROM ${this.#removals.sqlName}
        WHERE scope = current_schema()`,
    );
    return rows.map((r) => ({
      name: String(r.name),
      sha256: String(r.sha256).toLowerCase(),
      removedAt: new Date(String(r.removed_at)).toISOString(),
    }));
  }

  /**
   * Writes (or replaces) `name`'s row, forgets an earlier uninstall of it,
   * then notifies the other hosts.
   */
  async put(p: PackagePut): Promise<void> {
    await this.#ready();
    await this.#client.transaction({}, async (s) => {
      await s.query(
        `INSERT INTO ${this.#packages.sqlName}
           (name, version, sha256, size, bytes, signature, signer_fingerprint,
            allow_signer_change, allow_downgrade, installed_by_host)
         VALUES ($1, $2, $3, $4, decode($5, 'base64'),
                 decode($6, 'base64'), $7, $8, $9, $10)
         ON CONFLICT (scope, name) DO UPDATE SET
           version = EXCLUDED.version, sha256 = EXCLUDED.sha256,
           size = EXCLUDED.size, bytes = EXCLUDED.bytes,
           signature = EXCLUDED.signature,
           signer_fingerprint = EXCLUDED.signer_fingerprint,
           allow_signer_change = EXCLUDED.allow_signer_change,
           allow_downgrade = EXCLUDED.allow_downgrade,
           installed_at = now(), installed_by_host = EXCLUDED.installed_by_host`,
        [
          p.name,
          p.version,
          p.sha256.toLowerCase(),
          p.bytes.byteLength,
          p.bytes.toBase64(),
          p.signature?.trim()
            ? Uint8Array.fromBase64(p.signature.replace(/\s+/g, "")).toBase64()
            : null,
          p.signerFingerprint ?? null,
          p.allowSignerChange === true,
          p.allowDowngrade === true,
          this.hostId,
        ],
      );
      await s.query(
        `DELETE FROM ${this.#removals.sqlName}
          WHERE scope = current_schema() AND name = $1`,
        [p.name],
      );
      await this.#notify(s, p.name);
    });
  }

  /**
   * Deletes `name`'s row and remembers the uninstall, then notifies the
   * other hosts. `sha256` is the removed package's (the row's when unknown).
   */
  async delete(name: string, sha256?: string): Promise<void> {
    await this.#ready();
    await this.#client.transaction({}, async (s) => {
      const { rows } = await s.query(
        `DELETE FROM ${this.#packages.sqlName}
          WHERE scope = current_schema() AND name = $1 RETURNING sha256`,
        [name],
      );
      const removed = sha256 ?? (rows[0]?.sha256 as string | undefined) ?? "";
      await s.query(
        `INSERT INTO ${this.#removals.sqlName} (name, sha256, removed_by_host)
         VALUES ($1, $2, $3)
         ON CONFLICT (scope, name) DO UPDATE SET sha256 = EXCLUDED.sha256,
           removed_at = now(), removed_by_host = EXCLUDED.removed_by_host`,
        [name, removed.toLowerCase(), this.hostId],
      );
      await this.#notify(s, name);
    });
  }

  async #notify(
    s: { query(sql: string, params?: unknown[]): Promise<unknown> },
    name: string,
  ): Promise<void> {
    await s.query(
      `SELECT pg_notify($1, json_build_object('scope', current_schema(),
         'kind', 'package', 'name', $2::text, 'host', $3::text)::text)`,
      [CHANGES_CHANNEL, name, this.hostId],
    );
  }
}
