/**
 * The cache service: Deno KV (a file in `./data`) by default, Redis
 * (`REDIS_URL`, `npm:ioredis`) for several hosts.
 *
 * Every entry lives in a namespace (the plugin's name), so a plugin can never
 * read another's keys. Values are bytes and round-trip byte-exact (no JSON
 * encoding on the way in or out). A TTL of 0 means no expiry; a positive TTL
 * is honoured on read even where the store expires lazily. Keys longer than
 * 512 bytes and values larger than 1 MiB (both UTF-8/byte lengths,
 * configurable) are refused with {@linkcode CacheLimitError}.
 *
 * @module
 */

import { Buffer } from "node:buffer";
import { CacheLimitError } from "./errors.ts";

/**
 * A byte cache split into namespaces.
 *
 * @example
 * ```ts ignore
 * import { KvCacheStore } from "./cache.ts";
 * const cache = new KvCacheStore({}); // in memory
 * await cache.set("hello", "greeting", new TextEncoder().encode("hi"), 60);
 * console.log(await cache.get("hello", "greeting")); // Uint8Array [104, 105]
 * console.log(await cache.get("other", "greeting")); // null
 * await cache.close();
 * ```
 */
export interface CacheStore {
  /** Reads an entry; `null` when absent or expired. */
  get(namespace: string, key: string): Promise<Uint8Array | null>;
  /** Writes an entry; `ttlSeconds` 0 = no expiry. */
  set(
    namespace: string,
    key: string,
    value: Uint8Array,
    ttlSeconds: number,
  ): Promise<void>;
  /** Removes an entry (absent is fine). */
  delete(namespace: string, key: string): Promise<void>;
  /** Closes the store. */
  close(): Promise<void>;
}

/** Size limits shared by the cache stores. */
export interface CacheLimits {
  /** Largest key in bytes (UTF-8). @default {512} */
  maxKeyBytes?: number;
  /** Largest value in bytes. @default {1048576} */
  maxValueBytes?: number;
}

const DEFAULT_MAX_KEY = 512;
const DEFAULT_MAX_VALUE = 1024 * 1024;

const encoder = new TextEncoder();

function checkNamespace(namespace: string): void {
  if (namespace === "" || namespace.includes(":")) {
    throw new TypeError(
      `Cannot use cache namespace "${namespace}": it must be non-empty and contain no ":"`,
    );
  }
}

function checkKey(key: string, limits: Required<CacheLimits>): void {
  const size = encoder.encode(key).length;
  if (size > limits.maxKeyBytes) {
    throw new CacheLimitError("key", size, limits.maxKeyBytes);
  }
}

function checkTtl(ttlSeconds: number): void {
  if (!Number.isFinite(ttlSeconds) || ttlSeconds < 0) {
    throw new RangeError(
      `Cannot set cache entry: TTL must be 0 (no expiry) or a positive number of seconds, got ${ttlSeconds}`,
    );
  }
}

function resolveLimits(opts: CacheLimits): Required<CacheLimits> {
  return {
    maxKeyBytes: opts.maxKeyBytes ?? DEFAULT_MAX_KEY,
    maxValueBytes: opts.maxValueBytes ?? DEFAULT_MAX_VALUE,
  };
}

/** Deno KV stores at most 64 KiB per value: bigger values are split. */
const CHUNK_BYTES = 60_000;

/** What the KV store keeps under the entry key. */
interface KvEntry {
  /** Expiry (epoch ms), 0 = none. */
  exp: number;
  /** The value itself when small. */
  v?: Uint8Array;
  /** For chunked values: the chunk set's id and count. */
  id?: string;
  n?: number;
  size?: number;
}

/**
 * A {@linkcode CacheStore} in Deno KV. Entries are `["gk_cache", namespace,
 * key]`; values over 60 000 bytes are split into chunks written before the
 * entry that points to them. Expiry is checked on every read (KV's
 * `expireIn` only deletes eventually) and also passed to KV for cleanup.
 *
 * @example
 * ```ts ignore
 * import { KvCacheStore } from "./cache.ts";
 * const cache = new KvCacheStore({ path: "./data/cache.kv" });
 * await cache.set("hello", "k", new Uint8Array([0, 255]), 0);
 * await cache.close();
 * ```
 */
export class KvCacheStore implements CacheStore {
  #path: string | undefined;
  #kv: Promise<Deno.Kv> | undefined;
  #limits: Required<CacheLimits>;
  #closed = false;

  /** Prepares a store at `path` (`undefined` = in memory); it opens on first use. */
  constructor(opts: { path?: string } & CacheLimits = {}) {
    this.#path = opts.path;
    this.#limits = resolveLimits(opts);
  }

  #open(): Promise<Deno.Kv> {
    if (this.#closed) return Promise.reject(new Error("Cache store is closed"));
    this.#kv ??= (async () => {
      if (this.#path !== undefined) {
        const dir = this.#path.replace(/[/\\][^/\\]*$/, "");
        if (dir && dir !== this.#path) {
          await Deno.mkdir(dir, { recursive: true });
        }
      }
      return await Deno.openKv(this.#path ?? ":memory:");
    })();
    return this.#kv;
  }

  /** Reads an entry; `null` when absent or expired. */
  async get(namespace: string, key: string): Promise<Uint8Array | null> {
    checkNamespace(namespace);
    checkKey(key, this.#limits);
    const kv = await this.#open();
    for (let attempt = 0; attempt < 3; attempt++) {
      const entry = await kv.get<KvEntry>(["gk_cache", namespace, key]);
      const e = entry.value;
      if (!e) return null;
      if (e.exp !== 0 && Date.now() >= e.exp) return null;
      if (e.v) return e.v;
      const keys: Deno.KvKey[] = [];
      for (let i = 0; i < (e.n ?? 0); i++) {
        keys.push(["gk_cache_chunk", namespace, key, e.id!, i]);
      }
      const parts: Uint8Array[] = [];
      let missing = false;
      for (let i = 0; i < keys.length; i += 10) {
        const got = await kv.getMany<Uint8Array[]>(keys.slice(i, i + 10));
        for (const g of got) {
          if (!g.value) missing = true;
          else parts.push(g.value);
        }
      }
      if (missing) continue; // replaced meanwhile: read the new entry
      const out = new Uint8Array(e.size ?? 0);
      let off = 0;
      for (const p of parts) {
        out.set(p, off);
        off += p.length;
      }
      return out;
    }
    return null;
  }

  /** Writes an entry; `ttlSeconds` 0 = no expiry. */
  async set(
    namespace: string,
    key: string,
    value: Uint8Array,
    ttlSeconds: number,
  ): Promise<void> {
    checkNamespace(namespace);
    checkKey(key, this.#limits);
    checkTtl(ttlSeconds);
    if (value.length > this.#limits.maxValueBytes) {
      throw new CacheLimitError(
        "value",
        value.length,
        this.#limits.maxValueBytes,
      );
    }
    const kv = await this.#open();
    const ttlMs = Math.ceil(ttlSeconds * 1000);
    const exp = ttlMs > 0 ? Date.now() + ttlMs : 0;
    const expire = ttlMs > 0 ? { expireIn: ttlMs } : {};
    const entryKey = ["gk_cache", namespace, key];
    const old = await kv.get<KvEntry>(entryKey);
    let entry: KvEntry;
    if (value.length <= CHUNK_BYTES) {
      entry = { exp, v: value.slice() };
    } else {
      const id = crypto.randomUUID();
      const n = Math.ceil(value.length / CHUNK_BYTES);
      // Chunks first (several commits: KV caps one commit's size), then the
      // entry that makes them visible.
      for (let i = 0; i < n; i += 8) {
        const op = kv.atomic();
        for (let j = i; j < Math.min(n, i + 8); j++) {
          op.set(
            ["gk_cache_chunk", namespace, key, id, j],
            value.slice(j * CHUNK_BYTES, (j + 1) * CHUNK_BYTES),
            ttlMs > 0 ? { expireIn: ttlMs + 60_000 } : {},
          );
        }
        await op.commit();
      }
      entry = { exp, id, n, size: value.length };
    }
    await kv.set(entryKey, entry, expire);
    await this.#deleteChunks(kv, namespace, key, old.value);
  }

  async #deleteChunks(
    kv: Deno.Kv,
    namespace: string,
    key: string,
    entry: KvEntry | null,
  ): Promise<void> {
    if (!entry?.id) return;
    const op = kv.atomic();
    for (let i = 0; i < (entry.n ?? 0); i++) {
      op.delete(["gk_cache_chunk", namespace, key, entry.id, i]);
    }
    await op.commit();
  }

  /** Removes an entry. */
  async delete(namespace: string, key: string): Promise<void> {
    checkNamespace(namespace);
    checkKey(key, this.#limits);
    const kv = await this.#open();
    const entryKey = ["gk_cache", namespace, key];
    const old = await kv.get<KvEntry>(entryKey);
    await kv.delete(entryKey);
    await this.#deleteChunks(kv, namespace, key, old.value);
  }

  /** Closes the KV database if it was opened. */
  async close(): Promise<void> {
    this.#closed = true;
    const pending = this.#kv;
    this.#kv = undefined;
    if (pending) {
      const kv = await pending.catch(() => undefined);
      kv?.close();
    }
  }
}

/**
 * The part of an ioredis client the cache uses. Declared here rather than
 * imported so that the client library stays out of the module graph (it is
 * loaded on first use).
 */
interface RedisClient {
  status: string;
  getBuffer(key: string): Promise<Uint8Array | null>;
  set(
    key: string,
    value: Uint8Array,
    mode?: "PX",
    ttlMs?: number,
  ): Promise<unknown>;
  del(key: string): Promise<number>;
  quit(): Promise<unknown>;
  disconnect(): void;
}

/**
 * A {@linkcode CacheStore} in Redis. Keys are `<prefix>plugin:<namespace>:<key>`
 * (prefix default `goatkit:`); values are stored as raw bytes; TTLs use
 * `SET … PX`, which Redis honours exactly on read.
 *
 * @example
 * ```ts ignore
 * import { RedisCacheStore } from "./cache.ts";
 * const cache = new RedisCacheStore({ url: "redis://127.0.0.1:6379" });
 * await cache.set("hello", "k", new Uint8Array([1, 2, 3]), 10);
 * await cache.close();
 * ```
 */
export class RedisCacheStore implements CacheStore {
  #url: string;
  #client: Promise<RedisClient> | undefined;
  #prefix: string;
  #limits: Required<CacheLimits>;

  /**
   * Keeps `url` (the client library loads and connects on first use, so a
   * host without Redis never loads it); keys get `prefix` (default
   * `goatkit:`).
   */
  constructor(opts: { url: string; prefix?: string } & CacheLimits) {
    this.#url = opts.url;
    this.#prefix = opts.prefix ?? "goatkit:";
    this.#limits = resolveLimits(opts);
  }

  #redis(): Promise<RedisClient> {
    this.#client ??= import("ioredis").then(({ Redis }) => {
      const redis = new Redis(this.#url, {
        maxRetriesPerRequest: 2,
        lazyConnect: true,
      });
      // Connection errors surface on the commands; do not crash the host.
      redis.on("error", () => {});
      return redis as unknown as RedisClient;
    });
    // A failed load is not kept: the next command tries again.
    this.#client.catch(() => (this.#client = undefined));
    return this.#client;
  }

  #key(namespace: string, key: string): string {
    checkNamespace(namespace);
    checkKey(key, this.#limits);
    return `${this.#prefix}plugin:${namespace}:${key}`;
  }

  /** Reads an entry; `null` when absent or expired. */
  async get(namespace: string, key: string): Promise<Uint8Array | null> {
    const k = this.#key(namespace, key);
    const value = await (await this.#redis()).getBuffer(k);
    return value === null ? null : new Uint8Array(value);
  }

  /** Writes an entry; `ttlSeconds` 0 = no expiry. */
  async set(
    namespace: string,
    key: string,
    value: Uint8Array,
    ttlSeconds: number,
  ): Promise<void> {
    const k = this.#key(namespace, key);
    checkTtl(ttlSeconds);
    if (value.length > this.#limits.maxValueBytes) {
      throw new CacheLimitError(
        "value",
        value.length,
        this.#limits.maxValueBytes,
      );
    }
    const bytes = Buffer.from(value.buffer, value.byteOffset, value.byteLength);
    const ttlMs = Math.ceil(ttlSeconds * 1000);
    const redis = await this.#redis();
    if (ttlMs > 0) await redis.set(k, bytes, "PX", ttlMs);
    else await redis.set(k, bytes);
  }

  /** Removes an entry. */
  async delete(namespace: string, key: string): Promise<void> {
    const k = this.#key(namespace, key);
    await (await this.#redis()).del(k);
  }

  /** Closes the connection. */
  async close(): Promise<void> {
    const redis = await this.#client?.catch(() => undefined);
    if (!redis) return;
    if (redis.status === "wait" || redis.status === "end") {
      redis.disconnect();
      return;
    }
    await redis.quit().catch(() => redis.disconnect());
  }
}
