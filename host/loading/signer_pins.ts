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

import { dirname } from "node:path";

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
  const digest = await crypto.subtle.digest("SHA-256", bytes as BufferSource);
  return [...new Uint8Array(digest)].slice(0, 8)
    .map((b) => b.toString(16).padStart(2, "0")).join("");
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
export class SignerPinStore {
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
