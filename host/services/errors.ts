/**
 * Typed errors raised by the host services (database, cache, mailer,
 * configuration). Each names what failed and why; the guarded HostAPI passes
 * them on to the guest as readable errors.
 *
 * @module
 */

/**
 * A database statement failed. `code` is PostgreSQL's SQLSTATE when the
 * database reported one (for example `25006` read_only_sql_transaction,
 * `42501` insufficient_privilege, `57014` query_canceled), or a host code for
 * refusals made before the statement reached the database (`GK001` statement
 * refused).
 *
 * @example
 * ```ts
 * import { DbQueryError } from "./errors.ts";
 * const e = new DbQueryError("hello", "42501", "permission denied for table ticket");
 * console.log(e.code); // "42501"
 * ```
 */
export class DbQueryError extends Error {
  /** The plugin whose statement failed. */
  readonly plugin: string;
  /** SQLSTATE (or `GK…` for host refusals). */
  readonly code: string;
  /** PostgreSQL's detail line, when given. */
  readonly detail: string | undefined;

  /** Creates an error for `plugin` with SQLSTATE `code`. */
  constructor(
    plugin: string,
    code: string,
    message: string,
    options: { detail?: string; cause?: unknown } = {},
  ) {
    super(
      `Cannot run database statement of plugin "${plugin}" (${code}): ${message}`,
      options.cause === undefined ? {} : { cause: options.cause },
    );
    this.name = "DbQueryError";
    this.plugin = plugin;
    this.code = code;
    this.detail = options.detail;
  }
}

/**
 * A query returned more rows than the cap (`maxRows`, default 10 000). The
 * host refuses the whole result rather than truncating it silently, and rolls
 * the transaction back.
 */
export class DbRowLimitError extends Error {
  /** The plugin whose query was refused. */
  readonly plugin: string;
  /** The cap that was exceeded. */
  readonly maxRows: number;

  /** Creates an error for `plugin` that exceeded `maxRows`. */
  constructor(plugin: string, maxRows: number) {
    super(
      `Cannot run query of plugin "${plugin}": it returns more than ${maxRows} rows (add a LIMIT)`,
    );
    this.name = "DbRowLimitError";
    this.plugin = plugin;
    this.maxRows = maxRows;
  }
}

/** The `@name:` prefix of a query names a database the host does not have. */
export class DatabaseNotFoundError extends Error {
  /** The database name that was asked for. */
  readonly database: string;

  /** Creates an error for the unknown database `name`. */
  constructor(name: string) {
    super(`Cannot find database "${name}"`);
    this.name = "DatabaseNotFoundError";
    this.database = name;
  }
}

/** A cache key or value exceeds the configured size limit. */
export class CacheLimitError extends Error {
  /** Which limit: the key or the value. */
  readonly what: "key" | "value";
  /** Size given, in bytes. */
  readonly size: number;
  /** The limit, in bytes. */
  readonly limit: number;

  /** Creates an error for a `what` of `size` bytes over `limit`. */
  constructor(what: "key" | "value", size: number, limit: number) {
    super(
      `Cannot ${
        what === "key" ? "use cache key" : "store cache value"
      }: ${size} bytes exceeds the limit of ${limit} bytes`,
    );
    this.name = "CacheLimitError";
    this.what = what;
    this.size = size;
    this.limit = limit;
  }
}

/** An e-mail was refused before sending: bad address or header injection. */
export class EmailRejectedError extends Error {
  /** The plugin that tried to send. */
  readonly plugin: string;

  /** Creates an error for `plugin` with the `reason`. */
  constructor(plugin: string, reason: string) {
    super(`Cannot send e-mail from plugin "${plugin}": ${reason}`);
    this.name = "EmailRejectedError";
    this.plugin = plugin;
  }
}

/** A plugin sent more e-mails than its rate limit allows. */
export class EmailRateLimitError extends Error {
  /** The plugin that was limited. */
  readonly plugin: string;
  /** Milliseconds until the next message would be accepted. */
  readonly retryAfterMs: number;

  /** Creates an error for `plugin`, retryable after `retryAfterMs`. */
  constructor(
    plugin: string,
    limit: number,
    windowMs: number,
    retryAfterMs: number,
  ) {
    super(
      `Cannot send e-mail from plugin "${plugin}": rate limit of ${limit} per ${windowMs} ms reached`,
    );
    this.name = "EmailRateLimitError";
    this.plugin = plugin;
    this.retryAfterMs = retryAfterMs;
  }
}

/** The configuration file could not be read or is not valid. */
export class ConfigError extends Error {
  /** Creates an error with `message`. */
  constructor(message: string, options: { cause?: unknown } = {}) {
    super(message, options.cause === undefined ? {} : { cause: options.cause });
    this.name = "ConfigError";
  }
}
