/**
 * PostgreSQL connections that log in as the plugins' own roles: a few
 * connections per plugin, opened on first use, closed after an idle time,
 * each used by that plugin alone.
 *
 * Logging in as the role (rather than `SET ROLE` on a shared connection)
 * makes the role the session user, so nothing a plugin sends can leave it:
 * `RESET ROLE` and `SET ROLE NONE` return to the plugin's role, `SET ROLE`
 * to any role it is not a member of and `SET SESSION AUTHORIZATION` are
 * refused by PostgreSQL. The session's settings come in the startup packet
 * (`search_path = plugin_<name>, public`, `statement_timeout`,
 * `default_transaction_read_only`), which takes precedence over anything
 * the role may have set on itself with `ALTER ROLE … SET`.
 *
 * What a connection carries over to the plugin's next statement is checked
 * after every statement, without a round trip:
 *
 * - the command tag: after anything but a plain statement (`SELECT`, DML,
 *   DDL in its own schema, `SHOW`, …) — e.g. `SET`, `RESET`, `LISTEN`,
 *   `BEGIN`, `PREPARE`, `DECLARE`, `DISCARD`, `DO`, `CALL` — the connection
 *   is closed, not reused (see {@linkcode KEPT_COMMANDS});
 * - the transaction state of the server's ReadyForQuery: a connection not
 *   idle outside a transaction is closed;
 * - what the server reports by itself (ParameterStatus, PostgreSQL 14+):
 *   `default_transaction_read_only` is tracked, and a connection whose
 *   `session_authorization` is not the plugin's role, or that reports
 *   `is_superuser = on`, is never used.
 *
 * A statement whose call is aborted is cancelled (the cancel request goes
 * out on a connection of its own) and its connection closed once the server
 * has taken the request, never reused, so a late cancel request cannot hit
 * a later statement. At most `maxPerPlugin` connections are open per plugin
 * and `max` for all plugins together; when all are taken, an idle connection
 * of another plugin (least recently used first) is closed to make room, and
 * otherwise callers wait in order.
 *
 * @module
 */

import pg from "pg";
import { sendCancel } from "./sql_client.ts";
import {
  isServerError,
  type PipelineResult,
  runPipelined,
} from "./pg_pipeline.ts";

/** How to log in as one plugin's role (asked for before opening its connections). */
export interface PluginCredentials {
  /** The role. */
  user: string;
  /** Its password; kept in memory only. */
  password: string;
  /** The plugin's schema, first in the search path. */
  schema: string;
}

/** Options of {@linkcode PgPluginPool}. */
export interface PgPluginPoolOptions {
  /** The database (host, port, database name, TLS) to connect to; its user is replaced. */
  url: string;
  /** Most connections for all plugins together. */
  max: number;
  /** Most connections of one plugin. */
  maxPerPlugin: number;
  /** Idle connections are closed after this many ms. @default {10000} */
  idleTimeoutMs?: number;
  /** The sessions' `statement_timeout` in ms (a statement asking for another pays one pipelined `SET`). */
  statementTimeoutMs: number;
  /**
   * Makes sure the plugin's role can log in and says how. `renewOf` is the
   * login the server just refused (password changed meanwhile, role
   * re-created): set a new one unless that was done already.
   */
  credentials(
    plugin: string,
    renewOf?: PluginCredentials,
  ): Promise<PluginCredentials>;
}

/**
 * PostgreSQL refused to let the host log in as a plugin's role even with a
 * password it had just set (`pg_hba.conf` rejects the role or wants another
 * method), or the host may not set one.
 */
export class PluginLoginRefusedError extends Error {
  /** The plugin. */
  readonly plugin: string;
  /** SQLSTATE of the refusal (`28000`, `28P01`, `42501`, …). */
  readonly code: string;

  /** Creates the error for `plugin`. */
  constructor(
    plugin: string,
    code: string,
    why: string,
    options?: { cause?: unknown },
  ) {
    super(
      `Cannot log in as the database role of plugin "${plugin}" (${code}): ${why}`,
      options,
    );
    this.name = "PluginLoginRefusedError";
    this.plugin = plugin;
    this.code = code;
  }
}

/** Options of {@linkcode PgPluginPool.run}. */
export interface PluginStatementOptions {
  /** Run read-only (`default_transaction_read_only` of the session, or `BEGIN READ ONLY`). */
  readOnly: boolean;
  /** `statement_timeout` of this statement, in ms. */
  statementTimeoutMs: number;
  /** Row cap (queries). */
  maxRows?: number;
  /** Cancels the statement (or the wait for a connection). */
  signal?: AbortSignal;
  /**
   * Run inside an explicit transaction instead of alone:
   * - `"rollback"`: `BEGIN READ ONLY … ROLLBACK` in the same round trip, so
   *   what the statement registered (`LISTEN`, `NOTIFY`) is discarded;
   * - `"commit"`: `BEGIN READ WRITE …`, then `COMMIT` in a second round trip
   *   unless the statement failed or overflowed `maxRows` (`ROLLBACK`).
   */
  transaction?: "rollback" | "commit";
}

/**
 * The command tags (first word) after which a connection is reused: plain
 * statements that leave no session state behind. Anything else closes it.
 */
export const KEPT_COMMANDS: ReadonlySet<string> = new Set([
  "",
  "SELECT",
  "INSERT",
  "UPDATE",
  "DELETE",
  "MERGE",
  "CREATE",
  "ALTER",
  "DROP",
  "COMMENT",
  "TRUNCATE",
  "EXPLAIN",
  "SHOW",
  "COPY",
  "REFRESH",
  "GRANT",
  "REVOKE",
  "ANALYZE",
]);

interface Entry {
  plugin: string;
  /** Open (or opening) connections of the plugin. */
  open: number;
  idle: Conn[];
  /** Bumped by closePlugin: older connections are closed at release. */
  generation: number;
}

interface Conn {
  entry: Entry;
  generation: number;
  client: pg.Client;
  role: string;
  readOnly: boolean;
  /** The server reports default_transaction_read_only (PostgreSQL 14+). */
  reportsReadOnly: boolean;
  statementTimeoutMs: number;
  sessionUser: string | undefined;
  superuser: boolean;
  lastUsed: number;
  ended: Promise<void> | undefined;
}

interface Waiter {
  plugin: string;
  readOnly: boolean;
  resolve(conn: Conn): void;
  reject(err: unknown): void;
  signal: AbortSignal | undefined;
  onAbort: (() => void) | undefined;
}

function abortError(signal: AbortSignal): unknown {
  return signal.reason ?? new DOMException("aborted", "AbortError");
}

function commandOf(tag: string): string {
  const space = tag.indexOf(" ");
  return space < 0 ? tag : tag.slice(0, space);
}

/** A search_path element: bare when it needs no quotes (so it reads back as written). */
function pathElement(schema: string): string {
  return /^[a-z_][a-z0-9_$]*$/.test(schema)
    ? schema
    : `"${schema.replaceAll('"', '""')}"`;
}

/** Escapes a value for the startup packet's `options` (spaces and backslashes). */
function optionValue(value: string): string {
  return value.replaceAll("\\", "\\\\").replaceAll(" ", "\\ ");
}

const LOGIN_REFUSED = new Set(["28000", "28P01"]);
const TOO_MANY_FOR_ROLE = "53300";

/**
 * The per-plugin connections of one database (see the module doc).
 *
 * @example
 * ```ts ignore
 * import { PgPluginPool } from "./pg_plugin_pool.ts";
 * const pool = new PgPluginPool({
 *   url: "postgres://postgres@127.0.0.1:5432/test",
 *   max: 10,
 *   maxPerPlugin: 3,
 *   statementTimeoutMs: 5000,
 *   credentials: async (plugin) => ({ user: `gk_plugin_${plugin}`, password, schema: `plugin_${plugin}` }),
 * });
 * const r = await pool.run("hello", "SELECT 1 AS one", [], { readOnly: true, statementTimeoutMs: 5000 });
 * console.log(r.rows); // [{ one: 1 }]
 * await pool.close();
 * ```
 */
export class PgPluginPool {
  #opts: PgPluginPoolOptions;
  #base: pg.ConnectionConfig;
  #url: string;
  #idleMs: number;
  #entries = new Map<string, Entry>();
  #waiters: Waiter[] = [];
  /** Open or opening connections, all plugins. */
  #open = 0;
  #all = new Set<Promise<void>>();
  #closed = false;
  #drained: (() => void)[] = [];
  #sweeper: ReturnType<typeof setTimeout> | undefined;

  /** Prepares the pool; nothing connects before the first statement. */
  constructor(opts: PgPluginPoolOptions) {
    this.#opts = opts;
    this.#url = opts.url;
    this.#idleMs = opts.idleTimeoutMs ?? 10_000;
    // pg's own reading of the URL (host, port, socket, database, TLS, …).
    const p = new pg.Client({ connectionString: opts.url })
      // deno-lint-ignore no-explicit-any
      .connectionParameters as any;
    this.#base = {
      host: p.host,
      port: p.port,
      database: p.database,
      ...(p.ssl !== undefined ? { ssl: p.ssl } : {}),
      ...(p.options ? { options: p.options } : {}),
      ...(p.client_encoding ? { client_encoding: p.client_encoding } : {}),
    };
  }

  /** Most connections one plugin may have open. */
  get maxPerPlugin(): number {
    return Math.max(1, Math.min(this.#opts.maxPerPlugin, this.#opts.max));
  }

  /** Callers waiting for a connection. */
  get waitingCount(): number {
    return this.#waiters.length;
  }

  /** Connections open or being opened, all plugins. */
  get openCount(): number {
    return this.#open;
  }

  /**
   * Runs one statement of `plugin` on one of its own connections, in one
   * round trip (two for `transaction: "commit"`). Rejects with what the
   * server said (an error with a SQLSTATE `code`), an `AbortError` when
   * `signal` aborted, or {@linkcode PluginLoginRefusedError}.
   */
  async run(
    plugin: string,
    sql: string,
    params: unknown[],
    options: PluginStatementOptions,
  ): Promise<PipelineResult> {
    const { signal } = options;
    signal?.throwIfAborted();
    const conn = this.#takeIdle(plugin, options.readOnly) ??
      await this.#acquire(plugin, options.readOnly, signal);
    const before: string[] = [];
    const after: string[] = [];
    const timeout = Math.max(1, Math.floor(options.statementTimeoutMs));
    let newReadOnly = conn.readOnly;
    let newTimeout = conn.statementTimeoutMs;
    if (options.transaction) {
      before.push(
        options.transaction === "rollback"
          ? "BEGIN READ ONLY"
          : "BEGIN READ WRITE",
      );
      if (timeout !== conn.statementTimeoutMs) {
        before.push(`SET LOCAL statement_timeout = ${timeout}`);
      }
      if (options.transaction === "rollback") after.push("ROLLBACK");
    } else {
      if (options.readOnly !== conn.readOnly) {
        // transaction_read_only for this (implicit) transaction, the
        // default for the session's next ones; undone if anything fails.
        const v = options.readOnly ? "on" : "off";
        before.push(
          `SET transaction_read_only = ${v}`,
          `SET default_transaction_read_only = ${v}`,
        );
        newReadOnly = options.readOnly;
      }
      if (timeout !== conn.statementTimeoutMs) {
        before.push(`SET statement_timeout = ${timeout}`);
        newTimeout = timeout;
      }
    }
    const client = conn.client;
    const { query, done } = runPipelined(client, sql, params, {
      before,
      after,
      ...(options.maxRows !== undefined ? { maxRows: options.maxRows } : {}),
    });
    let cancelled: Promise<void> | undefined;
    let current: unknown = query;
    const onAbort = () => {
      // deno-lint-ignore no-explicit-any
      const active = (client as any).activeQuery;
      if (cancelled || !active || active !== current) return;
      cancelled = sendCancel(this.#url, client as pg.PoolClient, active);
    };
    signal?.addEventListener("abort", onAbort, { once: true });
    let broken: Error | undefined;
    /**
     * Awaits one step; on failure, a broken connection is marked, and an
     * explicit transaction of ours left open is rolled back before reuse.
     */
    const settle = async <T>(step: Promise<T>): Promise<T> => {
      try {
        return await step;
      } catch (e) {
        if (!isServerError(e)) broken = e as Error;
        else if (!cancelled && txStatus(client) !== "I") {
          current = undefined;
          await client.query("ROLLBACK").catch((r: unknown) =>
            broken = r as Error
          );
        }
        throw e;
      }
    };
    try {
      const result: PipelineResult = await settle(done);
      if (options.transaction === "commit") {
        const end = runPipelined(
          client,
          result.truncated ? "ROLLBACK" : "COMMIT",
          [],
        );
        current = end.query;
        await settle(end.done);
      }
      if (cancelled) signal?.throwIfAborted();
      // What we sent took effect (the server's own report of read-only wins).
      conn.statementTimeoutMs = newTimeout;
      if (!conn.reportsReadOnly) conn.readOnly = newReadOnly;
      const command = commandOf(result.command);
      const alterRole = /^ALTER (ROLE|USER)\b/.test(result.command);
      if (!KEPT_COMMANDS.has(command) || alterRole) {
        broken = new Error(
          `Cannot reuse a plugin connection after "${result.command}"`,
        );
      }
      // It may have changed its own password: set the host's again at once.
      if (alterRole) await this.#renew(plugin).catch(() => {});
      return result;
    } finally {
      signal?.removeEventListener("abort", onAbort);
      if (cancelled) {
        // Never reused: closed once the server has taken the cancel request.
        const why = new Error("Cannot reuse a cancelled connection");
        cancelled.then(() => this.#release(conn, why));
      } else {
        if (!broken && txStatus(client) !== "I") {
          broken = new Error("Cannot reuse a connection inside a transaction");
        }
        this.#release(conn, broken);
      }
    }
  }

  async #renew(plugin: string): Promise<void> {
    const current = await this.#opts.credentials(plugin);
    await this.#opts.credentials(plugin, current);
  }

  #entry(plugin: string): Entry {
    let e = this.#entries.get(plugin);
    if (!e) {
      e = { plugin, open: 0, idle: [], generation: 0 };
      this.#entries.set(plugin, e);
    }
    return e;
  }

  /** An idle connection of `plugin` when nobody is waiting (no promise needed). */
  #takeIdle(plugin: string, readOnly: boolean): Conn | undefined {
    if (this.#closed || this.#waiters.length) return undefined;
    const idle = this.#entries.get(plugin)?.idle;
    if (!idle?.length) return undefined;
    let k = idle.length - 1;
    for (let j = idle.length - 1; j >= 0; j--) {
      if (idle[j]!.readOnly === readOnly) {
        k = j;
        break;
      }
    }
    return idle.splice(k, 1)[0];
  }

  #acquire(
    plugin: string,
    readOnly: boolean,
    signal: AbortSignal | undefined,
  ): Promise<Conn> {
    if (this.#closed) {
      return Promise.reject(
        new Error("Cannot run a plugin statement: the database is closed"),
      );
    }
    return new Promise<Conn>((resolve, reject) => {
      const w: Waiter = {
        plugin,
        readOnly,
        resolve,
        reject,
        signal,
        onAbort: undefined,
      };
      if (signal) {
        w.onAbort = () => {
          const i = this.#waiters.indexOf(w);
          if (i >= 0) {
            this.#waiters.splice(i, 1);
            reject(abortError(signal));
          }
        };
        signal.addEventListener("abort", w.onAbort, { once: true });
      }
      this.#waiters.push(w);
      this.#pump();
    });
  }

  /** Serves waiters in order, as far as connections allow. */
  #pump(): void {
    for (let i = 0; i < this.#waiters.length;) {
      const w = this.#waiters[i]!;
      const e = this.#entry(w.plugin);
      if (e.idle.length) {
        // Most recently used first, preferring the wanted mode.
        let k = e.idle.length - 1;
        for (let j = e.idle.length - 1; j >= 0; j--) {
          if (e.idle[j]!.readOnly === w.readOnly) {
            k = j;
            break;
          }
        }
        const [conn] = e.idle.splice(k, 1);
        this.#take(i, w);
        w.resolve(conn!);
        continue;
      }
      if (e.open < this.maxPerPlugin) {
        if (this.#open >= this.#opts.max) this.#evictIdle(e);
        if (this.#open < this.#opts.max) {
          this.#take(i, w);
          this.#openFor(e, w);
          continue;
        }
      }
      i++;
    }
  }

  #take(index: number, w: Waiter): void {
    this.#waiters.splice(index, 1);
    if (w.onAbort) w.signal?.removeEventListener("abort", w.onAbort);
  }

  /** Closes the least recently used idle connection of another plugin. */
  #evictIdle(except: Entry): void {
    let oldest: Conn | undefined;
    for (const e of this.#entries.values()) {
      if (e === except) continue;
      for (const c of e.idle) {
        if (!oldest || c.lastUsed < oldest.lastUsed) oldest = c;
      }
    }
    if (oldest) {
      const idle = oldest.entry.idle;
      idle.splice(idle.indexOf(oldest), 1);
      this.#destroy(oldest);
    }
  }

  #openFor(e: Entry, w: Waiter): void {
    e.open++;
    this.#open++;
    const generation = e.generation;
    this.#connect(e, w.readOnly).then(
      (conn) => {
        conn.generation = generation;
        if (w.signal?.aborted) {
          w.reject(abortError(w.signal));
          this.#release(conn);
        } else {
          w.resolve(conn);
        }
      },
      (err) => {
        e.open--;
        this.#open--;
        w.reject(err);
        this.#checkDrained();
        this.#pump();
      },
    );
  }

  async #connect(e: Entry, readOnly: boolean): Promise<Conn> {
    let creds = await this.#opts.credentials(e.plugin);
    let renewed = false;
    for (let attempt = 0;; attempt++) {
      try {
        return await this.#login(e, creds, readOnly);
      } catch (err) {
        const code = (err as { code?: unknown }).code;
        if (typeof code === "string" && LOGIN_REFUSED.has(code)) {
          if (renewed) {
            throw new PluginLoginRefusedError(
              e.plugin,
              code,
              (err as Error).message,
              { cause: err },
            );
          }
          // The password changed meanwhile (another host, a plugin's own
          // ALTER ROLE) or the role was re-created: set ours again, once.
          creds = await this.#opts.credentials(e.plugin, creds);
          renewed = true;
          continue;
        }
        if (code === TOO_MANY_FOR_ROLE && attempt < 5) {
          // A closed session of the role not gone yet on the server.
          await new Promise((r) => setTimeout(r, 20 << attempt));
          continue;
        }
        throw err;
      }
    }
  }

  async #login(
    e: Entry,
    creds: PluginCredentials,
    readOnly: boolean,
  ): Promise<Conn> {
    const opts = this.#opts;
    const settings = [
      `-c search_path=${optionValue(`${pathElement(creds.schema)}, public`)}`,
      `-c statement_timeout=${
        Math.max(1, Math.floor(opts.statementTimeoutMs))
      }`,
      `-c default_transaction_read_only=${readOnly ? "on" : "off"}`,
    ].join(" ");
    const client = new pg.Client({
      ...this.#base,
      user: creds.user,
      password: creds.password,
      application_name: "goatkit-plugin",
      options: this.#base.options
        ? `${this.#base.options} ${settings}`
        : settings,
    });
    const conn: Conn = {
      entry: e,
      generation: e.generation,
      client,
      role: creds.user,
      readOnly,
      reportsReadOnly: false,
      statementTimeoutMs: Math.max(1, Math.floor(opts.statementTimeoutMs)),
      sessionUser: undefined,
      superuser: false,
      lastUsed: Date.now(),
      ended: undefined,
    };
    // deno-lint-ignore no-explicit-any
    (client as any).connection.on(
      "parameterStatus",
      (m: { parameterName: string; parameterValue: string }) => {
        if (m.parameterName === "default_transaction_read_only") {
          conn.readOnly = m.parameterValue === "on";
          conn.reportsReadOnly = true;
        } else if (m.parameterName === "session_authorization") {
          conn.sessionUser = m.parameterValue;
        } else if (m.parameterName === "is_superuser") {
          conn.superuser = m.parameterValue === "on";
        }
      },
    );
    // An idle connection that errors or ends (server restart, terminated
    // backend) must not crash the host, nor be handed out again.
    const lost = () => {
      const i = e.idle.indexOf(conn);
      if (i >= 0) {
        e.idle.splice(i, 1);
        this.#destroy(conn);
        this.#pump();
      }
    };
    client.on("error", lost);
    client.on("end", lost);
    try {
      await client.connect();
    } catch (err) {
      client.end().catch(() => {});
      throw err;
    }
    if (conn.sessionUser !== creds.user || conn.superuser) {
      await client.end().catch(() => {});
      throw new PluginLoginRefusedError(
        e.plugin,
        "28000",
        `the session is "${conn.sessionUser}"${
          conn.superuser ? " (superuser)" : ""
        }, not the plugin's role "${creds.user}"`,
      );
    }
    return conn;
  }

  #release(conn: Conn, broken?: Error): void {
    const e = conn.entry;
    if (
      broken || this.#closed || conn.generation !== e.generation ||
      // deno-lint-ignore no-explicit-any
      !(conn.client as any)._queryable || conn.sessionUser !== conn.role ||
      conn.superuser
    ) {
      this.#destroy(conn);
      this.#pump();
      return;
    }
    conn.lastUsed = Date.now();
    e.idle.push(conn);
    if (this.#waiters.length) this.#pump();
    this.#sweepLater();
  }

  /**
   * One timer for all idle connections (not one per release): closes those
   * idle for `idleTimeoutMs`, again as long as any are idle.
   */
  #sweepLater(): void {
    if (this.#sweeper !== undefined || this.#closed) return;
    this.#sweeper = setTimeout(() => {
      this.#sweeper = undefined;
      const limit = Date.now() - this.#idleMs;
      let idle = 0;
      for (const e of this.#entries.values()) {
        for (const conn of [...e.idle]) {
          if (conn.lastUsed <= limit) {
            e.idle.splice(e.idle.indexOf(conn), 1);
            this.#destroy(conn);
          }
        }
        idle += e.idle.length;
        if (!e.open && !e.idle.length) this.#entries.delete(e.plugin);
      }
      if (idle) this.#sweepLater();
      this.#pump();
    }, Math.max(50, Math.floor(this.#idleMs / 2)));
  }

  #destroy(conn: Conn): void {
    if (conn.ended) return;
    conn.entry.open--;
    this.#open--;
    const ended = conn.client.end().catch(() => {});
    conn.ended = ended;
    this.#all.add(ended);
    ended.finally(() => {
      this.#all.delete(ended);
      this.#checkDrained();
    });
  }

  #checkDrained(): void {
    if (this.#open === 0 && this.#all.size === 0) {
      for (const resolve of this.#drained.splice(0)) resolve();
    }
  }

  /**
   * Closes `plugin`'s idle connections now and its busy ones when their
   * statement ends (before its role is dropped).
   */
  async closePlugin(plugin: string): Promise<void> {
    const e = this.#entries.get(plugin);
    if (!e) return;
    e.generation++;
    for (const conn of e.idle.splice(0)) this.#destroy(conn);
    await Promise.all(this.#all);
    this.#pump();
  }

  /**
   * Closes every connection (busy ones when their statement ends); waiting
   * callers are refused. Resolves when all are closed.
   */
  async close(): Promise<void> {
    this.#closed = true;
    clearTimeout(this.#sweeper);
    this.#sweeper = undefined;
    for (const w of this.#waiters.splice(0)) {
      if (w.onAbort) w.signal?.removeEventListener("abort", w.onAbort);
      w.reject(
        new Error("Cannot run a plugin statement: the database is closed"),
      );
    }
    for (const e of this.#entries.values()) {
      for (const conn of e.idle.splice(0)) this.#destroy(conn);
    }
    const drained = new Promise<void>((r) => this.#drained.push(r));
    this.#checkDrained();
    await drained;
  }
}

function txStatus(client: pg.Client): string | null {
  // deno-lint-ignore no-explicit-any
  return (client as any)._txStatus ?? null;
}
