/**
 * API tokens: random secrets handed to people and scripts, stored only as
 * their SHA-256 hash. A token is either an admin token or a user token.
 *
 * Two stores: {@linkcode MemoryTokenStore} (tests, embedding apps that keep
 * their own users) and {@linkcode FileTokenStore} (a JSON file of hashes under
 * the data directory, written atomically, mode 0600).
 *
 * @module
 */

import { Buffer } from "node:buffer";
import { createHash, randomBytes, timingSafeEqual } from "node:crypto";

/** Prefix of every token this host issues (helps secret scanners). */
export const TOKEN_PREFIX = "gk_";

/** A stored token: everything but the secret itself. */
export interface TokenRecord {
  /** Short public identifier (safe to show and log). */
  id: string;
  /** Who or what the token is for. */
  name: string;
  /** Whether the token grants admin rights. */
  admin: boolean;
  /** SHA-256 of the token, lower-case hex. */
  hash: string;
  /** When it was created (ISO 8601). */
  created: string;
}

/** A freshly created token: the secret (shown once) and its record. */
export interface CreatedToken {
  /** The secret. It is not stored anywhere; show it once. */
  token: string;
  /** What is stored. */
  record: TokenRecord;
}

/** Options of {@linkcode TokenStore.create}. */
export interface CreateTokenOptions {
  /** Who or what the token is for. */
  name: string;
  /** Whether it grants admin rights. @default false */
  admin?: boolean;
}

/**
 * Where token hashes live. Implementations must never store the secret.
 */
export interface TokenStore {
  /** Creates a token and stores its hash; returns the secret once. */
  create(options: CreateTokenOptions): Promise<CreatedToken>;
  /** Finds the record of a presented secret; `undefined` if unknown. */
  verify(token: string): Promise<TokenRecord | undefined>;
  /** Every stored record (no secrets). */
  list(): Promise<TokenRecord[]>;
  /** Removes a token by id; returns whether it existed. */
  revoke(id: string): Promise<boolean>;
}

/**
 * Returns the SHA-256 of a token as lower-case hex.
 *
 * @example
 * ```ts
 * import { hashToken } from "./tokens.ts";
 * hashToken("gk_x").length; // 64
 * ```
 */
export function hashToken(token: string): string {
  return createHash("sha256").update(token, "utf8").digest("hex");
}

/**
 * Generates a new random token secret (`gk_` + 32 random bytes, base64url).
 *
 * @example
 * ```ts
 * import { generateToken } from "./tokens.ts";
 * generateToken().startsWith("gk_"); // true
 * ```
 */
export function generateToken(): string {
  return TOKEN_PREFIX + randomBytes(32).toString("base64url");
}

function newRecord(options: CreateTokenOptions): CreatedToken {
  const token = generateToken();
  return {
    token,
    record: {
      id: randomBytes(6).toString("hex"),
      name: options.name,
      admin: options.admin ?? false,
      hash: hashToken(token),
      created: new Date().toISOString(),
    },
  };
}

function findByHash(
  records: Iterable<TokenRecord>,
  token: string,
): TokenRecord | undefined {
  if (typeof token !== "string" || token.length === 0 || token.length > 512) {
    return undefined;
  }
  const presented = Buffer.from(hashToken(token), "hex");
  let found: TokenRecord | undefined;
  for (const r of records) {
    const stored = Buffer.from(r.hash, "hex");
    if (
      stored.length === presented.length && timingSafeEqual(stored, presented)
    ) {
      found = r;
    }
  }
  return found ? { ...found } : undefined;
}

/**
 * A {@linkcode TokenStore} in memory (hashes only).
 *
 * @example
 * ```ts
 * import { MemoryTokenStore } from "./tokens.ts";
 * const store = new MemoryTokenStore();
 * const { token } = await store.create({ name: "ci", admin: true });
 * console.log((await store.verify(token))?.admin); // true
 * ```
 */
export class MemoryTokenStore implements TokenStore {
  #records = new Map<string, TokenRecord>();

  /** Creates a token. */
  create(options: CreateTokenOptions): Promise<CreatedToken> {
    const created = newRecord(options);
    this.#records.set(created.record.id, created.record);
    return Promise.resolve({
      token: created.token,
      record: { ...created.record },
    });
  }

  /** Finds a presented token. */
  verify(token: string): Promise<TokenRecord | undefined> {
    return Promise.resolve(findByHash(this.#records.values(), token));
  }

  /** Every record. */
  list(): Promise<TokenRecord[]> {
    return Promise.resolve([...this.#records.values()].map((r) => ({ ...r })));
  }

  /** Removes a token. */
  revoke(id: string): Promise<boolean> {
    return Promise.resolve(this.#records.delete(id));
  }
}

/**
 * A {@linkcode TokenStore} kept in one JSON file (hashes only), rewritten
 * atomically (temporary file + rename) with mode 0600 on every change.
 *
 * @example
 * ```ts ignore
 * import { FileTokenStore } from "./tokens.ts";
 * const store = new FileTokenStore("./data/tokens.json");
 * if ((await store.list()).length === 0) {
 *   const { token } = await store.create({ name: "admin", admin: true });
 *   console.log("admin token:", token);
 * }
 * ```
 */
export class FileTokenStore implements TokenStore {
  readonly #path: string;
  #records: Map<string, TokenRecord> | undefined;
  #writing: Promise<void> = Promise.resolve();

  /** Creates a store backed by `path` (created on first write). */
  constructor(path: string) {
    this.#path = path;
  }

  async #load(): Promise<Map<string, TokenRecord>> {
    if (this.#records) return this.#records;
    let list: TokenRecord[] = [];
    try {
      const parsed = JSON.parse(await Deno.readTextFile(this.#path));
      if (Array.isArray(parsed?.tokens)) list = parsed.tokens;
    } catch (e) {
      if (!(e instanceof Deno.errors.NotFound)) {
        throw new Error(
          `Cannot read token store "${this.#path}": ${
            e instanceof Error ? e.message : e
          }`,
          { cause: e },
        );
      }
    }
    this.#records ??= new Map(
      list.filter((r) =>
        typeof r?.id === "string" && typeof r?.hash === "string"
      )
        .map((r) => [r.id, r]),
    );
    return this.#records;
  }

  #save(): Promise<void> {
    const records = [...(this.#records?.values() ?? [])];
    const next = this.#writing.then(async () => {
      const dir = this.#path.replace(/[\\/][^\\/]*$/, "") || ".";
      await Deno.mkdir(dir, { recursive: true });
      const tmp = `${this.#path}.${randomBytes(4).toString("hex")}.tmp`;
      await Deno.writeTextFile(
        tmp,
        JSON.stringify({ tokens: records }, null, 2) + "\n",
        { mode: 0o600 },
      );
      await Deno.rename(tmp, this.#path);
    });
    this.#writing = next.catch(() => {});
    return next;
  }

  /** Creates a token and persists its hash. */
  async create(options: CreateTokenOptions): Promise<CreatedToken> {
    const records = await this.#load();
    const created = newRecord(options);
    records.set(created.record.id, created.record);
    await this.#save();
    return { token: created.token, record: { ...created.record } };
  }

  /** Finds a presented token. */
  async verify(token: string): Promise<TokenRecord | undefined> {
    return findByHash((await this.#load()).values(), token);
  }

  /** Every record. */
  async list(): Promise<TokenRecord[]> {
    return [...(await this.#load()).values()].map((r) => ({ ...r }));
  }

  /** Removes a token and persists the change. */
  async revoke(id: string): Promise<boolean> {
    const records = await this.#load();
    const existed = records.delete(id);
    if (existed) await this.#save();
    return existed;
  }
}
