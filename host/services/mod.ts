/**
 * The host's services: databases (PostgreSQL via `npm:pg`, embedded PGlite),
 * cache (Deno KV, Redis), mail (SMTP, `.eml` outbox), configuration, and the
 * PostgreSQL plugin state store. {@linkcode createServices} builds them from
 * the environment with embedded defaults.
 *
 * @module
 */

export {
  type Database,
  DatabaseSet,
  type DbCallOptions,
  PgDatabase,
  PgliteDatabase,
  SqlDatabase,
  type SqlDatabaseOptions,
} from "./database.ts";
export {
  type CacheLimits,
  type CacheStore,
  KvCacheStore,
  RedisCacheStore,
} from "./cache.ts";
export {
  checkEmailMessage,
  type EmailRateLimit,
  EmailRateLimiter,
  isPlainAddress,
  type Mailer,
  type MailerOptions,
  OutboxMailer,
  SmtpMailer,
} from "./mailer.ts";
export {
  ConfigStore,
  type ConfigStoreOptions,
  ConfigValueError,
  type HostConfig,
  loadConfig,
  type LoadConfigOptions,
  type QuotaSettings,
  SERVER_SETTING_ALIASES,
  type ServerSettings,
} from "./config.ts";
export { PgStateStore } from "./pg_state_store.ts";
export {
  PgliteClient,
  type PgliteClientOptions,
  PgliteQueryError,
  PgliteUnavailableError,
  PgPoolClient,
  type SqlClient,
  type SqlQueryOptions,
  type SqlResult,
  type SqlSession,
  type SqlTransactionOptions,
} from "./sql_client.ts";
export { checkPluginStatement, STATEMENT_REFUSED_CODE } from "./sql_guard.ts";
export { bytesToBase64, pgTextToJson } from "./pg_types.ts";
export {
  CacheLimitError,
  ConfigError,
  DatabaseNotFoundError,
  DbQueryError,
  DbRowLimitError,
  EmailRateLimitError,
  EmailRejectedError,
} from "./errors.ts";
export {
  createServices,
  type CreateServicesOptions,
  type Services,
} from "./services.ts";
