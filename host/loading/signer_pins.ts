/**
 * Signer pins: which key signed each plugin name's packages, kept in a small
 * JSON file so it survives restarts and uninstalls. The package installer
 * pins the signer at the first signed install and refuses a package of the
 * same name from another key (or unsigned) unless an operator overrides it.
 *
 * File shape (`version` is the file format):
 *
 * ```json
 * { "version": 1, "pins": { "hello": { "signer": "<base64 key>", "keyId": "3f2a…", "pinnedAt": "…", "pluginVersion": "1.2.0" } } }
 * ```
 *
 * @module
 */

import { sha256Hex } from "../model/sha256.ts";
import { dirname } from "node:path";
import { HostTable } from "../../permissions/host_schema.ts";
import type { SqlClient } from "../services/sql_client.ts";

/** One plugin name's pinned signer. */
export interface SignerPin {
  /** The trusted public key (base64 raw Ed25519) that signed it. */
  signer: string;
  /** Short fingerprint of the key (see {@linkcode signerKeyId}). */
  keyId: string;
  /** When the pin was set or last changed (RFC 3339). */
  pinnedAt: string;
  /** The plugin version installed when the pin was set. */
  pluginVersion: string;
}

interface PinFile {
  version: 1;
  pins: Record<string, SignerPin>;
}

/** The pin file cannot be read or parsed (installs stop until it is fixed). */
export class SignerPinFileError extends Error {
  /** Creates the error. */
  constructor(path: string, reason: string, options?: ErrorOptions) {
    super(`Cannot read signer pins "${path}": ${reason}`, options);
    this.name = "SignerPinFileError";
  }
}

/**
 * A short fingerprint of a base64 public key: the first 16 hex digits of
 * the SHA-256 of the key's bytes (so two spellings of one key, with or
 * without padding or whitespace, get the same id). Pins are compared by it;
 * it is shown in errors, logs and the audit log.
 *
 * @example
 * ```ts
 * import { signerKeyId } from "./signer_pins.ts";
 * (await signerKeyId("MCowBQYDK2VwAyEA")).length; // 16
 * ```
 */
export async function signerKeyId(publicKey: string): Promise<string> {
  let bytes: Uint8Array;
  try {
    bytes = Uint8Array.fromBase64(publicKey.replace(/\s+/g, ""));
  } catch {
    bytes = new TextEncoder().encode(publicKey.trim());
  }
  return (await sha256Hex(bytes)).slice(0, 16);
}

/**
 * Where signer pins are kept: {@linkcode SignerPinStore} (a JSON file) or
 * {@linkcode PgSignerPinStore} (the database, shared by the hosts of a
 * deployment).
 */
export interface SignerPins {
  /** The pin of `plugin`, if any. */
  get(plugin: string): Promise<SignerPin | undefined>;
  /** Every pin, by plugin name. */
  all(): Promise<Record<string, SignerPin>>;
  /** Sets (or replaces) the pin of `plugin`. */
  set(plugin: string, pin: SignerPin): Promise<void>;
  /** Removes the pin of `plugin`; returns whether there was one. */
  delete(plugin: string): Promise<boolean>;
}

/**
 * Signer pins in a JSON file, read on every lookup (so a restart, or an
 * operator editing the file, is seen at once) and replaced atomically
 * (temporary file, then rename). A missing file means no pins; an
 * unreadable or malformed one throws {@linkcode SignerPinFileError} rather
 * than being taken for "no pins".
 *
 * @example
 * ```ts ignore
 * const pins = new SignerPinStore("./data/package_signers.json");
 * await pins.set("hello", { signer: key, keyId: await signerKeyId(key), pinnedAt: new Date().toISOString(), pluginVersion: "1.0.0" });
 * (await pins.get("hello"))?.keyId;
 * ```
 */
export class SignerPinStore implements SignerPins {
  readonly #path: string;

  /** Creates a store kept in `path` (created on the first pin). */
  constructor(path: string) {
    this.#path = path;
  }

  /** The file the pins are kept in. */
  get path(): string {
    return this.#path;
  }

  /** The pin of `plugin`, if any. */
  async get(plugin: string): Promise<SignerPin | undefined> {
    const pins = (await this.#read()).pins;
    return Object.hasOwn(pins, plugin) ? pins[plugin] : undefined;
  }

  /** Every pin, by plugin name. */
  async all(): Promise<Record<string, SignerPin>> {
    return { ...(await this.#read()).pins };
  }

  /** Sets (or replaces) the pin of `plugin`. */
  async set(plugin: string, pin: SignerPin): Promise<void> {
    const file = await this.#read();
    file.pins[plugin] = pin;
    await this.#write(file);
  }

  /** Removes the pin of `plugin`; returns whether there was one. */
  async delete(plugin: string): Promise<boolean> {
    const file = await this.#read();
    if (!Object.hasOwn(file.pins, plugin)) return false;
    delete file.pins[plugin];
    await this.#write(file);
    return true;
  }

  async #read(): Promise<PinFile> {
    let text: string;
    try {
      text = await Deno.readTextFile(this.#path);
    } catch (e) {
      if (e instanceof Deno.errors.NotFound) {
        return { version: 1, pins: Object.create(null) };
      }
      throw new SignerPinFileError(this.#path, String(e), { cause: e });
    }
    let parsed: unknown;
    try {
      parsed = JSON.parse(text);
    } catch (e) {
      throw new SignerPinFileError(this.#path, "it is not valid JSON", {
        cause: e,
      });
    }
    const pins = (parsed as { pins?: unknown } | null)?.pins;
    if (
      (parsed as { version?: unknown } | null)?.version !== 1 ||
      pins === null || typeof pins !== "object" || Array.isArray(pins)
    ) {
      throw new SignerPinFileError(this.#path, "unknown format");
    }
    const out: Record<string, SignerPin> = Object.create(null);
    for (const [name, pin] of Object.entries(pins)) {
      const p = pin as Partial<SignerPin> | null;
      if (typeof p?.signer !== "string" || p.signer === "") {
        throw new SignerPinFileError(
          this.#path,
          `the pin of "${name}" has no signer`,
        );
      }
      out[name] = {
        signer: p.signer,
        keyId: typeof p.keyId === "string" ? p.keyId : "",
        pinnedAt: typeof p.pinnedAt === "string" ? p.pinnedAt : "",
        pluginVersion: typeof p.pluginVersion === "string"
          ? p.pluginVersion
          : "",
      };
    }
    return { version: 1, pins: out };
  }

  async #write(file: PinFile): Promise<void> {
    await Deno.mkdir(dirname(this.#path), { recursive: true });
    const tmp = `${this.#path}.${crypto.randomUUID()}.tmp`;
    try {
      await Deno.writeTextFile(
        tmp,
        JSON.stringify({ version: 1, pins: { ...file.pins } }, null, 2) + "\n",
        { mode: 0o600 },
      );
      await Deno.rename(tmp, this.#path);
    } catch (e) {
      await Deno.remove(tmp).catch(() => {});
      throw e;
    }
  }
}

/** Options of {@linkcode PgSignerPinStore}. */
export interface PgSignerPinStoreOptions {
  /** The host's own SQL client. */
  client: SqlClient;
  /**
   * A pin file of an earlier start ({@linkcode SignerPinStore}): its pins
   * are copied into the table once, where the table has none for that
   * plugin name (the file is left as it is).
   */
  legacyFile?: string;
}

/**
 * Signer pins in PostgreSQL, shared by every host of a deployment: table
 * `goatkit.package_signers`, rows scoped by the application schema
 * (`current_schema()`) like the host's other tables. A pin set on one host
 * holds on all of them at once.
 *
 * @example
 * ```ts ignore
 * const pins = new PgSignerPinStore({ client: sql, legacyFile: "./data/package_signers.json" });
 * (await pins.get("hello"))?.keyId;
 * ```
 */
export class PgSignerPinStore implements SignerPins {
  #client: SqlClient;
  #table: HostTable;
  #legacyFile: string | undefined;
  #ready: Promise<void> | undefined;

  /** Creates the store; nothing is sent before the first call. */
  constructor(options: PgSignerPinStoreOptions) {
    this.#client = options.client;
    this.#legacyFile = options.legacyFile;
    this.#table = new HostTable(options.client, {
      table: "goatkit.package_signers",
      columns: `scope text NOT NULL DEFAULT current_schema(),
         name text NOT NULL,
         signer text NOT NULL,
         key_id text NOT NULL,
         pinned_at text NOT NULL,
         plugin_version text NOT NULL,
         PRIMARY KEY (scope, name)`,
      scopedKey: ["name"],
    });
  }

  #ensure(): Promise<void> {
    this.#ready ??= (async () => {
      await this.#table.ready();
      if (this.#legacyFile === undefined) return;
      const pins = await new SignerPinStore(this.#legacyFile).all();
      for (const [name, pin] of Object.entries(pins)) {
        await this.#insert(name, pin, false);
      }
    })().catch((e) => {
      this.#ready = undefined;
      throw e;
    });
    return this.#ready;
  }

  async #insert(name: string, pin: SignerPin, replace: boolean) {
    await this.#client.query(
      `INSERT INTO ${this.#table.sqlName}
         (name, signer, key_id, pinned_at, plugin_version)
       VALUES ($1, $2, $3, $4, $5)
       ON CONFLICT (scope, name) DO ${
        replace
          ? `UPDATE SET signer = EXCLUDED.signer, key_id = EXCLUDED.key_id,
               pinned_at = EXCLUDED.pinned_at,
               plugin_version = EXCLUDED.plugin_version`
          : "NOTHING"
      }`,
      [name, pin.signer, pin.keyId, pin.pinnedAt, pin.pluginVersion],
    );
  }

  /** The pin of `plugin`, if any. */
  async get(plugin: string): Promise<SignerPin | undefined> {
    return (await this.#select(plugin))[plugin];
  }

  /** Every pin, by plugin name. */
  all(): Promise<Record<string, SignerPin>> {
    return this.#select();
  }

  async #select(plugin?: string): Promise<Record<string, SignerPin>> {
    await this.#ensure();
    const { rows } = await this.#client.query(
      `SELECT name, signer, key_id, pinned_at, plugin_version
         FROM ${this.#table.sqlName}
        WHERE scope = current_schema()${
        plugin === undefined ? "" : " AND name = $1"
      }`,
      plugin === undefined ? [] : [plugin],
    );
    const out: Record<string, SignerPin> = Object.create(null);
    for (const r of rows) {
      out[String(r.name)] = {
        signer: String(r.signer),
        keyId: String(r.key_id),
        pinnedAt: String(r.pinned_at),
        pluginVersion: String(r.plugin_version),
      };
    }
    return out;
  }

  /** Sets (or replaces) the pin of `plugin`. */
  async set(plugin: string, pin: SignerPin): Promise<void> {
    await this.#ensure();
    await this.#insert(plugin, pin, true);
  }

  /** Removes the pin of `plugin`; returns whether there was one. */
  async delete(plugin: string): Promise<boolean> {
    await this.#ensure();
    const { rowCount } = await this.#client.query(
      `DELETE FROM ${this.#table.sqlName}
        WHERE scope = current_schema() AND name = $1`,
      [plugin],
    );
    return rowCount > 0;
  }
}
