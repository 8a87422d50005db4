/**
 * Builds the host's services from the environment: the embedded defaults
 * unless `DATABASE_URL` / `DATABASE_URL_<NAME>` / `REDIS_URL` / `SMTP_URL`
 * are set.
 *
 * | service | default | configured by |
 * |---|---|---|
 * | database | PGlite in `<dataDir>/pg`, started on first use | `DATABASE_URL`, `DATABASE_URL_<NAME>` (per database: a pool of 10 for plugin statements and one of 3 for the host's own work) |
 * | cache | Deno KV file `<dataDir>/cache.kv`, opened on first use | `REDIS_URL` (`REDIS_PREFIX`, default `goatkit:`) |
 * | mailer | `.eml` files in `<dataDir>/outbox` | `SMTP_URL` |
 * | config | `configPath` (JSON) + `GOATKIT_*` variables | see `config.ts` |
 *
 * The sender address is `SMTP_FROM`, else config `mail.from`, else
 * `goatkit@localhost`.
 *
 * @module
 */

import { join } from "node:path";
import { type CacheStore, KvCacheStore, RedisCacheStore } from "./cache.ts";
import { ConfigStore } from "./config.ts";
import { DatabaseSet } from "./database.ts";
import { type Mailer, OutboxMailer, SmtpMailer } from "./mailer.ts";

/** Options of {@linkcode createServices}. */
export interface CreateServicesOptions {
  /** Environment variables (e.g. `Deno.env.toObject()`). */
  env: Record<string, string | undefined>;
  /** Directory for the embedded defaults (usually `./data`). */
  dataDir: string;
  /** Path of `goatkit.json`; absent file = defaults. */
  configPath?: string;
}

/** The services a host hands to its HostAPI. */
export interface Services {
  /** Default and named databases. */
  db: DatabaseSet;
  /** The cache. */
  cache: CacheStore;
  /** The mailer. */
  mailer: Mailer;
  /** Host configuration. */
  config: ConfigStore;
  /** Closes every service. */
  close(): Promise<void>;
}

/**
 * Creates the services. Nothing connects or starts until first use.
 *
 * @example
 * ```ts ignore
 * import { createServices } from "./services.ts";
 * const services = createServices({ env: Deno.env.toObject(), dataDir: "./data" });
 * await services.cache.set("hello", "k", new Uint8Array([1]), 0);
 * await services.close();
 * ```
 */
export function createServices(opts: CreateServicesOptions): Services {
  const { env, dataDir } = opts;
  const config = ConfigStore.fromFileAndEnv(opts.configPath, env);
  const db = DatabaseSet.fromEnv(env, { dataDir });
  const cache: CacheStore = env.REDIS_URL
    ? new RedisCacheStore({
      url: env.REDIS_URL,
      ...(env.REDIS_PREFIX !== undefined ? { prefix: env.REDIS_PREFIX } : {}),
    })
    : new KvCacheStore({ path: join(dataDir, "cache.kv") });
  const from = env.SMTP_FROM ?? config.hostValue("mail.from") ??
    "goatkit@localhost";
  const mailer: Mailer = env.SMTP_URL
    ? new SmtpMailer({ url: env.SMTP_URL, from })
    : new OutboxMailer({ dir: join(dataDir, "outbox"), from });
  return {
    db,
    cache,
    mailer,
    config,
    async close() {
      await Promise.allSettled([db.close(), cache.close(), mailer.close()]);
    },
  };
}
