/**
 * The database service: PostgreSQL through `npm:pg` (`DATABASE_URL`), named
 * databases through the `@name:` query prefix (`DATABASE_URL_<NAME>`), and
 * the embedded default PGlite in `./data/pg`, started lazily.
 *
 * Every plugin statement runs as the plugin's own role, so the database
 * itself enforces the grant. First the host refuses statements that could
 * leave the role or outlive the call (see `sql_guard.ts`); then, with `$1…`
 * placeholders passed to PostgreSQL as they are (extended protocol: one
 * statement, `$` inside literals is just text; GoatFlow's `?` placeholders
 * are rewritten to `$n` first, see `placeholders.ts`):
 *
 * - **PostgreSQL** ({@linkcode PgDatabase}): the statement runs on a
 *   connection that logged in as the plugin's role — the session user, which
 *   `RESET ROLE`, `SET ROLE` and `SET SESSION AUTHORIZATION` cannot leave —
 *   used by that plugin alone, in one round trip like a direct query. Read
 *   calls run read-only (`default_transaction_read_only` of the session, or
 *   `BEGIN READ ONLY … ROLLBACK` for anything but a plain query), and a
 *   connection that may carry session state is closed, not reused. If the
 *   server refuses that login (`pg_hba.conf`), the database falls back,
 *   logged once, to the path below on a shared pool.
 * - **PGlite** ({@linkcode PgliteDatabase}, a single session) and the
 *   fallback: `BEGIN` (`READ ONLY` for read calls), `SET LOCAL ROLE
 *   gk_plugin_<name>`, `SET LOCAL search_path = plugin_<name>, public`,
 *   `SET LOCAL statement_timeout = <ms>` in one round trip; the statement;
 *   `COMMIT` (`ROLLBACK` for read calls, and on any error) followed by
 *   {@linkcode PLUGIN_SESSION_RESET}. `SET LOCAL` ends with the transaction,
 *   so the connection is back to the host's user and holds nothing the plugin
 *   left behind; there the statement check is what stops `RESET ROLE`.
 *
 * Walls under the statement check, on both paths: `hardenDatabase` (in
 * `permissions/pg_privileges.ts`) revokes from PUBLIC the functions whose
 * effects outlive a transaction (advisory locks, `pg_notify`, `set_config`,
 * `pg_cancel_backend`, …), temporary tables and the procedural languages;
 * a read call's `NOTIFY` or `LISTEN` is rolled back; a `LISTEN` or session
 * lock that got through anyway is undone (shared pool) or dies with its
 * connection (login path).
 *
 * On PostgreSQL the host's own work (privilege syncs, hardening, the grant
 * and state stores, job claims: everything on {@linkcode SqlDatabase.sqlClient})
 * runs on a small pool of its own, apart from the plugins' connections, so a
 * plugin that ties up its connections cannot hold the host up. A plugin
 * statement whose call is aborted is cancelled and its connection closed,
 * never reused (see `pg_plugin_pool.ts` and `PgPoolClient`), so a late
 * cancel request cannot hit another statement.
 *
 * Rows are JSON-safe objects (`int8`/`numeric` as strings, dates RFC 3339,
 * `bytea` base64, `json` as values; see `pg_types.ts`). A query returning more
 * than `maxRows` rows is refused with {@linkcode DbRowLimitError} (never
 * silently truncated). Errors are {@linkcode DbQueryError} with the SQLSTATE.
 *
 * @module
 */

import type { Row } from "../model/host_api.ts";
import {
  DatabaseNotFoundError,
  DbQueryError,
  DbRowLimitError,
} from "./errors.ts";
import {
  checkPrivileges,
  clearPluginPassword,
  dropPrivileges,
  enablePluginLogin,
  hardenDatabase,
  type PluginPrivileges,
  pluginRoleName,
  pluginSchemaName,
  quoteIdent,
  ReservedSchemaError,
  syncPrivileges,
} from "../../permissions/pg_privileges.ts";
import { HOST_SCHEMA } from "../../permissions/host_schema.ts";
import {
  PgliteClient,
  PgPoolClient,
  type SqlClient,
  type SqlResult,
} from "./sql_client.ts";
import { checkPluginStatement, leadingWords } from "./sql_guard.ts";
import { toPgPlaceholders } from "./placeholders.ts";
import {
  PgPluginPool,
  type PluginCredentials,
  PluginLoginRefusedError,
} from "./pg_plugin_pool.ts";
import {
  randomRolePassword,
  scramSha256Verifier,
} from "../../permissions/pg_scram.ts";
import { dbSpan } from "../telemetry/service_spans.ts";

/** Per-call options: who runs the statement, and its limits. */
export interface DbCallOptions {
  /** The plugin whose role runs the statement. */
  plugin: string;
  /** Run read-only (`db:read` without `db:write`). */
  readOnly: boolean;
  /** Cancels the statement when aborted. */
  signal?: AbortSignal;
  /** PostgreSQL `statement_timeout` in ms. @default {5000} */
  statementTimeoutMs?: number;
  /** Most rows a query may return; more is a {@linkcode DbRowLimitError}. @default {10000} */
  maxRows?: number;
}

/**
 * One database as the plugins see it.
 *
 * @example
 * ```ts ignore
 * import { PgliteDatabase } from "./database.ts";
 * const db = new PgliteDatabase({}); // in memory
 * await db.syncPluginPrivileges("hello", { read: "all", write: null });
 * const rows = await db.query("SELECT $1::int AS n", [1], { plugin: "hello", readOnly: true });
 * console.log(rows); // [{ n: 1 }]
 * await db.close();
 * ```
 */
export interface Database {
  /** Runs a query as `opts.plugin`; zero rows is `[]`. */
  query(sql: string, args: unknown[], opts: DbCallOptions): Promise<Row[]>;
  /** Runs a statement as `opts.plugin`; returns the affected row count. */
  exec(sql: string, args: unknown[], opts: DbCallOptions): Promise<number>;
  /**
   * (Re)creates role `gk_plugin_<name>` (name's `-` → `_`), its schema
   * `plugin_<name>` (owned by it), and grants: read → SELECT on the listed
   * tables of the host schema (or all its tables when `"all"`), write →
   * INSERT/UPDATE/DELETE likewise; revokes what is no longer granted.
   * `null` = nothing.
   */
  syncPluginPrivileges(
    plugin: string,
    privileges: PluginPrivileges,
  ): Promise<void>;
  /** Drops the plugin's schema and role (at uninstall). */
  dropPlugin(plugin: string): Promise<void>;
  /** Closes the connections. */
  close(): Promise<void>;
}

const DEFAULT_TIMEOUT_MS = 5000;
const DEFAULT_MAX_ROWS = 10_000;

/**
 * Sent after every plugin transaction, with its end, before the connection
 * serves anyone else: drops a `LISTEN` and session advisory locks, should
 * any get past the statement check and the revoked functions.
 */
export const PLUGIN_SESSION_RESET =
  "UNLISTEN *; SELECT pg_catalog.pg_advisory_unlock_all()";

/** Options shared by the SQL-backed databases. */
export interface SqlDatabaseOptions {
  /**
   * Schema holding the application's tables that grants refer to (never
   * `goatkit`, the host's own). @default {"public"}
   */
  hostSchema?: string;
  /**
   * Revoke from PUBLIC the session-level functions and procedural languages
   * on first privilege sync (see `hardenDatabase` in
   * `permissions/pg_privileges.ts`). Turn off only when the database is
   * hardened otherwise. @default {true}
   */
  harden?: boolean;
}

/**
 * The {@linkcode Database} logic over any {@linkcode SqlClient}; the base of
 * {@linkcode PgDatabase} and {@linkcode PgliteDatabase}.
 */
export abstract class SqlDatabase implements Database {
  /**
   * The host's own connection(s), as the connection user: privilege syncs,
   * hardening, and host tables such as the grant and state stores and job
   * claims. Never used for plugin statements.
   */
  abstract readonly sqlClient: SqlClient;
  /**
   * The connection(s) plugin statements run on (the same client as
   * {@linkcode SqlDatabase.sqlClient} where the database has a single
   * session, as PGlite does).
   */
  abstract readonly pluginClient: SqlClient;
  #hostSchema: string;
  #harden: boolean;
  #hardened: Promise<void> | undefined;

  /** Stores the options; a `hostSchema` of `goatkit` is a `TypeError`. */
  constructor(opts: SqlDatabaseOptions) {
    this.#hostSchema = opts.hostSchema ?? "public";
    if (this.#hostSchema.toLowerCase() === HOST_SCHEMA) {
      throw new TypeError(
        `Cannot use "${this.#hostSchema}" as the application schema: it holds the host's own tables`,
      );
    }
    this.#harden = opts.harden ?? true;
  }

  /**
   * The host's statement check, the first wall (see `sql_guard.ts`); throws
   * to refuse. Tests of the database's own walls override it.
   */
  protected checkStatement(plugin: string, sql: string): void {
    checkPluginStatement(plugin, sql);
  }

  /** Runs a query as the plugin's role. */
  async query(
    sql: string,
    args: unknown[],
    opts: DbCallOptions,
  ): Promise<Row[]> {
    return (await dbSpan(
      "db.query",
      sql,
      opts.plugin,
      () => this.#run(sql, args, opts, true),
    )).rows;
  }

  /** Runs a statement as the plugin's role; returns the affected rows. */
  async exec(
    sql: string,
    args: unknown[],
    opts: DbCallOptions,
  ): Promise<number> {
    return (await dbSpan(
      "db.exec",
      sql,
      opts.plugin,
      () => this.#run(sql, args, opts, false),
    )).rowCount;
  }

  async #run(
    sql: string,
    args: unknown[],
    opts: DbCallOptions,
    isQuery: boolean,
  ): Promise<SqlResult> {
    const { plugin } = opts;
    // GoatFlow's `?` placeholders (its plugins rely on them) become `$n`.
    sql = toPgPlaceholders(sql, args.length).sql;
    this.checkStatement(plugin, sql);
    const maxRows = opts.maxRows ?? DEFAULT_MAX_ROWS;
    const call: DbCallOptions = {
      plugin,
      readOnly: opts.readOnly,
      statementTimeoutMs: Math.max(
        1,
        Math.floor(opts.statementTimeoutMs ?? DEFAULT_TIMEOUT_MS),
      ),
      maxRows,
      ...(opts.signal ? { signal: opts.signal } : {}),
    };
    try {
      const r = await this.runPluginStatement(sql, args, call, isQuery);
      if (isQuery && (r.truncated || r.rows.length > maxRows)) {
        throw new DbRowLimitError(plugin, maxRows);
      }
      return r;
    } catch (e) {
      throw toDbError(plugin, pluginRoleName(plugin), e);
    }
  }

  /**
   * Runs one plugin statement that passed the statement check, as the
   * plugin's role; `opts` has its limits filled in. This implementation is
   * the transaction path on {@linkcode SqlDatabase.pluginClient}: `BEGIN`
   * (`READ ONLY` for read calls), `SET LOCAL ROLE`, `search_path` and
   * `statement_timeout`, the statement, `COMMIT` (`ROLLBACK` for read calls)
   * and {@linkcode PLUGIN_SESSION_RESET}. A query over `opts.maxRows` rows
   * throws {@linkcode DbRowLimitError} inside the transaction (so a write is
   * rolled back).
   */
  protected async runPluginStatement(
    sql: string,
    args: unknown[],
    opts: DbCallOptions,
    isQuery: boolean,
  ): Promise<SqlResult> {
    const { plugin } = opts;
    const maxRows = opts.maxRows ?? DEFAULT_MAX_ROWS;
    const setup = `SET LOCAL ROLE ${quoteIdent(pluginRoleName(plugin))}; ` +
      `SET LOCAL search_path = ${
        quoteIdent(pluginSchemaName(plugin))
      }, public; ` +
      `SET LOCAL statement_timeout = ${
        opts.statementTimeoutMs ?? DEFAULT_TIMEOUT_MS
      }`;
    return await this.pluginClient.transaction(
      {
        readOnly: opts.readOnly,
        setup,
        // A read call has nothing to commit: what it may have registered
        // (LISTEN, NOTIFY) ends with the transaction.
        rollback: opts.readOnly,
        reset: PLUGIN_SESSION_RESET,
        ...(opts.signal ? { signal: opts.signal } : {}),
      },
      async (s) => {
        const r = await s.query(sql, args, isQuery ? { maxRows } : {});
        if (r.truncated || (isQuery && r.rows.length > maxRows)) {
          throw new DbRowLimitError(plugin, maxRows);
        }
        return r;
      },
    );
  }

  #hardenOnce(): Promise<void> {
    if (!this.#harden) return Promise.resolve();
    this.#hardened ??= this.sqlClient.transaction({}, hardenDatabase).catch(
      (e) => {
        this.#hardened = undefined;
        throw e;
      },
    );
    return this.#hardened;
  }

  /**
   * Creates or updates the plugin's role, schema and table privileges, on
   * the host's own connection; hardens the database first (once). A grant
   * naming a reserved schema throws `ReservedSchemaError`.
   */
  async syncPluginPrivileges(
    plugin: string,
    privileges: PluginPrivileges,
  ): Promise<void> {
    // A grant naming a reserved schema is refused before any round trip.
    checkPrivileges(plugin, privileges, this.#hostSchema);
    await this.#hardenOnce();
    try {
      await this.sqlClient.transaction(
        {},
        (s) => syncPrivileges(s, plugin, privileges, this.#hostSchema),
      );
    } catch (e) {
      throw toDbError(plugin, pluginRoleName(plugin), e);
    }
  }

  /** Drops the plugin's schema and role. */
  async dropPlugin(plugin: string): Promise<void> {
    try {
      await this.sqlClient.transaction({}, (s) => dropPrivileges(s, plugin));
    } catch (e) {
      throw toDbError(plugin, pluginRoleName(plugin), e);
    }
  }

  /** Closes the client. */
  close(): Promise<void> {
    return this.sqlClient.close();
  }
}

function toDbError(plugin: string, role: string, e: unknown): unknown {
  if (
    e instanceof DbQueryError || e instanceof DbRowLimitError ||
    e instanceof ReservedSchemaError
  ) {
    return e;
  }
  if (
    e instanceof DOMException &&
    (e.name === "AbortError" || e.name === "TimeoutError")
  ) {
    return new DbQueryError(
      plugin,
      "57014",
      "statement canceled: call aborted",
      { cause: e },
    );
  }
  if (e && typeof e === "object" && "code" in e && typeof e.code === "string") {
    const err = e as { code: string; message?: string; detail?: string };
    let message = err.message ?? String(e);
    if (err.code === "22023" || err.code === "42704") {
      if (message.includes(role)) {
        message += ` (the plugin's role is created by syncPluginPrivileges)`;
      }
    }
    return new DbQueryError(plugin, err.code, message, {
      ...(err.detail ? { detail: err.detail } : {}),
      cause: e,
    });
  }
  return new DbQueryError(
    plugin,
    "08000",
    e instanceof Error ? e.message : String(e),
    {
      cause: e,
    },
  );
}

/**
 * The passwords of the plugin roles this process logs in as: random, in
 * memory only, one per role (shared by every {@linkcode PgDatabase} of the
 * process, so two databases of one cluster agree on a role's password).
 */
const ROLE_PASSWORDS = new Map<string, string>();

/**
 * Per plugin role, the databases of this process that log in as it and how
 * many sessions each may open: the role's `CONNECTION LIMIT` is their sum
 * plus 2 (two databases of one cluster share the role).
 */
const ROLE_SESSIONS = new Map<string, Map<object, number>>();

function roleConnectionLimit(role: string): number {
  let sum = 0;
  for (const n of ROLE_SESSIONS.get(role)?.values() ?? []) sum += n;
  return sum + 2;
}

/**
 * First keywords of statements that run alone on a read-only session: they
 * cannot `NOTIFY` or `LISTEN`, and read-only refuses any write in them.
 */
const READ_ALONE = new Set([
  "select",
  "values",
  "table",
  "show",
  "with",
  "explain",
]);

/**
 * First keywords of queries that run alone on a read-write session: they
 * write nothing themselves, so a row cap overflow has nothing to roll back.
 */
const WRITE_ALONE = new Set(["select", "values", "table", "show"]);

/**
 * A PostgreSQL database reached through `npm:pg`.
 *
 * **Plugin statements log in as the plugin's role.** Each plugin gets a few
 * connections of its own ({@linkcode PgPluginPool}: at most `maxPerPlugin`
 * per plugin and `max` in all, opened on first use, closed when idle for
 * `idleTimeoutMs`) whose session user is `gk_plugin_<name>`, with
 * `search_path`, `statement_timeout` and `default_transaction_read_only` set
 * in the startup packet. A statement is then one round trip, like a direct
 * query:
 *
 * - read calls (`readOnly`) run on a session that is read-only by default
 *   (switched in the same round trip when needed), write calls on one that
 *   is not; a statement runs alone, committed by the server like any single
 *   statement, when it is a read call starting with `SELECT`, `WITH`,
 *   `VALUES`, `TABLE`, `SHOW` or `EXPLAIN`, a write call's query starting
 *   with `SELECT`, `VALUES`, `TABLE` or `SHOW`, or any `exec` write call;
 * - any other read call runs as `BEGIN READ ONLY; …; ROLLBACK` in the same
 *   round trip, so a `NOTIFY` or `LISTEN` past the statement check is
 *   discarded as before; any other write call that returns rows (`INSERT …
 *   RETURNING` through `query`) runs in `BEGIN … COMMIT` (a second round
 *   trip) so that overflowing `maxRows` rolls it back. (A `SELECT` calling a
 *   function that writes keeps the writes when its rows overflow `maxRows`:
 *   the error still reports the overflow.)
 * - a statement that asks for another `statement_timeout` than the
 *   session's sends `SET statement_timeout` in the same round trip.
 *
 * What the database enforces does not depend on the statement check: the
 * session user is the plugin's role, so `RESET ROLE`, `SET ROLE` and
 * `SET SESSION AUTHORIZATION` cannot leave it; the role has only the
 * privileges its grants give (a `db:read` role holds nothing but `SELECT`
 * outside its own schema); a connection is never shared with another
 * plugin or the host, and one that may carry session state (after `SET`,
 * `LISTEN`, `BEGIN`, … or a cancel) is closed rather than reused (see
 * `pg_plugin_pool.ts`).
 *
 * **The role's login.** At its first statement in this process the host
 * makes the role `LOGIN` with a random password (32 bytes) that lives only
 * in this process's memory and reaches the server only as a SCRAM-SHA-256
 * verifier (never in clear, so never in a statement log), and with
 * `CONNECTION LIMIT` = `maxPerPlugin` + 2 (summed over this process's
 * databases that share the role). A role that can log in could be used by
 * anyone reaching PostgreSQL who learnt the password: it is never logged or
 * stored, the connection limit bounds such sessions, and
 * {@linkcode PgDatabase.close} removes the passwords this database set.
 * (Under `trust` authentication anyone reaching the server can log in as
 * any role anyway, the superuser included.) When the server refuses the
 * password later (a plugin's own `ALTER ROLE … PASSWORD` past the statement
 * check, a re-created role, another host process on the same cluster, which
 * sets its own password) the host sets a new one and logs in again; after a
 * plugin statement that altered its own role it does so at once. Several
 * host processes on one cluster therefore take turns on a role's password
 * (each time one opens a new connection), and the limit one of them sets
 * does not count the others' sessions: a plugin busy on several hosts at
 * once may meet "too many connections for role" (53300, retried briefly,
 * then reported).
 *
 * **Fallback.** When PostgreSQL refuses the login even with a password just
 * set (`pg_hba.conf` rejects the role or asks for another method) or the
 * host's user may not set role passwords, the database falls back, once and
 * with one log line, to the transaction path of {@linkcode SqlDatabase}
 * (`SET LOCAL ROLE` on the shared plugin pool, {@linkcode SqlDatabase.pluginClient},
 * several round trips per statement); `pluginLogin: false` chooses it from
 * the start. PGlite always uses that path (a single session).
 *
 * @example
 * ```ts ignore
 * import { PgDatabase } from "./database.ts";
 * const db = new PgDatabase({ url: "postgres://postgres@127.0.0.1:5432/test" });
 * await db.syncPluginPrivileges("hello", { read: ["ticket"], write: null });
 * await db.query("SELECT * FROM ticket", [], { plugin: "hello", readOnly: true });
 * await db.close();
 * ```
 */
export class PgDatabase extends SqlDatabase {
  /** The host's own pool (its `pool` is the raw `pg.Pool`). */
  readonly sqlClient: PgPoolClient;
  /**
   * The shared pool of the fallback path (plugin statements as
   * `SET LOCAL ROLE`); connects only if that path is used.
   */
  readonly pluginClient: PgPoolClient;
  #plugins: PgPluginPool;
  #shared: boolean;
  #log: (message: string) => void;
  #current = new Map<string, PluginCredentials>();
  #pending = new Map<string, Promise<PluginCredentials>>();

  /**
   * Connects lazily to `url`: at most `max` (default 10) connections for
   * plugin statements, `maxPerPlugin` (default 3) of them for one plugin,
   * closed after `idleTimeoutMs` (default 10 000) idle; plus `hostMax`
   * (default 3) for the host's own work. `pluginLogin: false` runs plugin
   * statements on a shared pool with `SET LOCAL ROLE` instead of logging in
   * as their roles; `log` receives the line written when the database falls
   * back to that (default `console.warn`).
   */
  constructor(
    opts: {
      url: string;
      max?: number;
      hostMax?: number;
      maxPerPlugin?: number;
      idleTimeoutMs?: number;
      pluginLogin?: boolean;
      log?: (message: string) => void;
    } & SqlDatabaseOptions,
  ) {
    super(opts);
    this.sqlClient = new PgPoolClient({
      url: opts.url,
      max: opts.hostMax ?? 3,
      applicationName: "goatkit-host",
    });
    this.pluginClient = new PgPoolClient({
      url: opts.url,
      max: opts.max ?? 10,
      applicationName: "goatkit-plugins",
    });
    this.#plugins = new PgPluginPool({
      url: opts.url,
      max: opts.max ?? 10,
      maxPerPlugin: opts.maxPerPlugin ?? 3,
      ...(opts.idleTimeoutMs !== undefined
        ? { idleTimeoutMs: opts.idleTimeoutMs }
        : {}),
      statementTimeoutMs: DEFAULT_TIMEOUT_MS,
      credentials: (plugin, renewOf) => this.#credentials(plugin, renewOf),
    });
    this.#shared = opts.pluginLogin === false;
    this.#log = opts.log ?? ((message) => console.warn(message));
  }

  /**
   * How plugin statements reach the database: `"login"` (connections logged
   * in as the plugin's role) or `"set-role"` (the fallback: `SET LOCAL ROLE`
   * on the shared pool).
   */
  get pluginSessions(): "login" | "set-role" {
    return this.#shared ? "set-role" : "login";
  }

  /** Plugin statements waiting for a connection of their plugin. */
  get pluginWaitingCount(): number {
    return this.#shared
      ? this.pluginClient.pool.waitingCount
      : this.#plugins.waitingCount;
  }

  /** Runs the statement on a connection logged in as the plugin's role. */
  protected override async runPluginStatement(
    sql: string,
    args: unknown[],
    opts: DbCallOptions,
    isQuery: boolean,
  ): Promise<SqlResult> {
    if (this.#shared) {
      return await super.runPluginStatement(sql, args, opts, isQuery);
    }
    const first = leadingWords(sql, 1)[0] ?? "";
    const transaction = opts.readOnly
      ? (READ_ALONE.has(first) ? undefined : "rollback" as const)
      : isQuery && !WRITE_ALONE.has(first)
      ? "commit" as const
      : undefined;
    try {
      return await this.#plugins.run(opts.plugin, sql, args, {
        readOnly: opts.readOnly,
        statementTimeoutMs: opts.statementTimeoutMs ?? DEFAULT_TIMEOUT_MS,
        ...(isQuery ? { maxRows: opts.maxRows ?? DEFAULT_MAX_ROWS } : {}),
        ...(opts.signal ? { signal: opts.signal } : {}),
        ...(transaction ? { transaction } : {}),
      });
    } catch (e) {
      if (!(e instanceof PluginLoginRefusedError)) throw e;
      if (!this.#shared) {
        this.#shared = true;
        this.#log(
          `${e.message}; plugin statements on this database now run on a shared pool with SET LOCAL ROLE (slower; see PgDatabase)`,
        );
      }
      return await super.runPluginStatement(sql, args, opts, isQuery);
    }
  }

  #credentials(
    plugin: string,
    renewOf?: PluginCredentials,
  ): Promise<PluginCredentials> {
    const pending = this.#pending.get(plugin);
    if (pending) return pending;
    const current = this.#current.get(plugin);
    if (current && (!renewOf || renewOf.password !== current.password)) {
      return Promise.resolve(current);
    }
    const p = this.#enableLogin(plugin, renewOf).finally(() =>
      this.#pending.delete(plugin)
    );
    this.#pending.set(plugin, p);
    return p;
  }

  async #enableLogin(
    plugin: string,
    renewOf: PluginCredentials | undefined,
  ): Promise<PluginCredentials> {
    const role = pluginRoleName(plugin);
    let password = ROLE_PASSWORDS.get(role);
    if (!password || renewOf?.password === password) {
      password = randomRolePassword();
      ROLE_PASSWORDS.set(role, password);
    }
    const verifier = await scramSha256Verifier(password);
    let sessions = ROLE_SESSIONS.get(role);
    if (!sessions) ROLE_SESSIONS.set(role, sessions = new Map());
    sessions.set(this, this.#plugins.maxPerPlugin);
    let exists: boolean;
    try {
      exists = await this.sqlClient.transaction(
        {},
        (s) =>
          enablePluginLogin(s, plugin, {
            verifier,
            connectionLimit: roleConnectionLimit(role),
          }),
      );
    } catch (e) {
      const code = (e as { code?: unknown }).code;
      if (code === "42501") {
        throw new PluginLoginRefusedError(
          plugin,
          code,
          `the host's database user may not set the role's password: ${
            (e as Error).message
          }`,
          { cause: e },
        );
      }
      throw e;
    }
    if (!exists) {
      throw Object.assign(new Error(`role "${role}" does not exist`), {
        code: "22023",
      });
    }
    const creds = { user: role, password, schema: pluginSchemaName(plugin) };
    this.#current.set(plugin, creds);
    return creds;
  }

  #forgetRole(plugin: string): void {
    const role = pluginRoleName(plugin);
    const sessions = ROLE_SESSIONS.get(role);
    sessions?.delete(this);
    if (sessions?.size === 0) ROLE_SESSIONS.delete(role);
  }

  /** Closes the plugin's own connections, then drops its schema and role. */
  override async dropPlugin(plugin: string): Promise<void> {
    await this.#plugins.closePlugin(plugin);
    this.#current.delete(plugin);
    this.#forgetRole(plugin);
    await super.dropPlugin(plugin);
  }

  /**
   * Closes the plugin connections, removes the passwords this database set
   * on plugin roles (best effort), and closes both pools.
   */
  override async close(): Promise<void> {
    await this.#plugins.close();
    const enabled = [...this.#current.keys()];
    this.#current.clear();
    for (const plugin of enabled) this.#forgetRole(plugin);
    if (enabled.length) {
      // Bounded: a server that is gone must not hold the host's shutdown.
      let timer: ReturnType<typeof setTimeout> | undefined;
      await Promise.race([
        this.sqlClient.transaction({}, async (s) => {
          for (const plugin of enabled) await clearPluginPassword(s, plugin);
        }).catch(() => {}),
        new Promise<void>((resolve) => timer = setTimeout(resolve, 2000)),
      ]);
      clearTimeout(timer);
    }
    await Promise.all([this.pluginClient.close(), this.sqlClient.close()]);
  }
}

/**
 * The embedded PostgreSQL (PGlite, WASM), opened lazily on first use and run
 * in a worker off the host's thread (see `PgliteClient` for what a deadline
 * can and cannot interrupt there); the row cap applies after PGlite has built
 * the result.
 *
 * @example
 * ```ts ignore
 * import { PgliteDatabase } from "./database.ts";
 * const db = new PgliteDatabase({ dataDir: "./data/pg" });
 * await db.close(); // nothing was started
 * ```
 */
export class PgliteDatabase extends SqlDatabase {
  /** The PGlite client. */
  readonly sqlClient: PgliteClient;
  /** The same client: PGlite has a single session, host and plugins share it. */
  readonly pluginClient: PgliteClient;

  /** Prepares PGlite in `dataDir` (`undefined` = in memory); it starts on first use. */
  constructor(opts: { dataDir?: string } & SqlDatabaseOptions) {
    super(opts);
    this.sqlClient = new PgliteClient(
      opts.dataDir === undefined ? {} : { dataDir: opts.dataDir },
    );
    this.pluginClient = this.sqlClient;
  }
}

/**
 * The default database plus named ones, chosen per query by GoatFlow's
 * `@name:` prefix.
 *
 * @example
 * ```ts ignore
 * import { DatabaseSet, PgDatabase } from "./database.ts";
 * const set = new DatabaseSet({
 *   default: new PgDatabase({ url: "postgres://postgres@127.0.0.1:5432/test" }),
 *   named: { reports: new PgDatabase({ url: "postgres://postgres@127.0.0.1:5432/reports" }) },
 * });
 * const [db, sql] = set.resolve("@reports:SELECT 1"); // reports database, " SELECT 1" without the prefix
 * ```
 */
export class DatabaseSet {
  /** The default database. */
  readonly default: Database;
  #named: Map<string, Database>;

  /** Creates a set; named databases are matched case-insensitively. */
  constructor(opts: { default: Database; named?: Record<string, Database> }) {
    this.default = opts.default;
    this.#named = new Map(
      Object.entries(opts.named ?? {}).map(([k, v]) => [k.toLowerCase(), v]),
    );
  }

  /**
   * From the environment: `DATABASE_URL` (else PGlite in `<dataDir>/pg`) and
   * one named database per `DATABASE_URL_<NAME>` (name lower-cased).
   */
  static fromEnv(
    env: Record<string, string | undefined>,
    opts: { dataDir: string },
  ): DatabaseSet {
    const url = env.DATABASE_URL;
    const def: Database = url
      ? new PgDatabase({ url })
      : new PgliteDatabase({ dataDir: `${opts.dataDir}/pg` });
    const named: Record<string, Database> = {};
    for (const [key, value] of Object.entries(env)) {
      const m = /^DATABASE_URL_([A-Za-z0-9_]+)$/.exec(key);
      if (m && value) {
        named[m[1].toLowerCase()] = new PgDatabase({ url: value });
      }
    }
    return new DatabaseSet({ default: def, named });
  }

  /** Names of the named databases (lower case). */
  get names(): string[] {
    return [...this.#named.keys()];
  }

  /** The default database followed by every named one. */
  all(): Database[] {
    return [this.default, ...this.#named.values()];
  }

  /** The database called `name` (`""` or `"default"` = the default). */
  get(name: string): Database {
    const key = name.toLowerCase();
    const db = this.#named.get(key) ??
      (key === "" || key === "default" ? this.default : undefined);
    if (!db) throw new DatabaseNotFoundError(name);
    return db;
  }

  /**
   * Splits GoatFlow's `@name:` prefix off `sql` and returns the database and
   * the rest of the statement. The prefix counts when `sql` starts with `@`
   * and its first `:` is at index > 1 (so `@:…` is no prefix); an unknown
   * name throws {@linkcode DatabaseNotFoundError}.
   */
  resolve(sql: string): [Database, string] {
    if (sql.startsWith("@")) {
      const colon = sql.indexOf(":");
      if (colon > 1) {
        return [this.get(sql.slice(1, colon)), sql.slice(colon + 1)];
      }
    }
    return [this.default, sql];
  }

  /** Closes every database. */
  async close(): Promise<void> {
    await Promise.all(this.all().map((db) => db.close()));
  }
}
