/**
 * PostgreSQL roles, schemas and table privileges per plugin: the database's
 * own enforcement of `db:read` / `db:write` grants.
 *
 * Each plugin gets a role `gk_plugin_<name>` (`-` → `_`; `NOINHERIT`, no
 * superuser, role or database creation) that owns a schema
 * `plugin_<name>`; its grants become `SELECT` (read) and
 * `INSERT, UPDATE, DELETE` (write, plus `USAGE` on the tables' own sequences)
 * on host tables. Names longer than PostgreSQL's 63-byte identifier limit are
 * shortened with a hash so two plugins never share a role.
 *
 * The role is created `NOLOGIN`. On PostgreSQL the host then logs in as it
 * ({@linkcode enablePluginLogin}: `LOGIN`, a `CONNECTION LIMIT`, a random
 * password the host keeps in memory and sends only as a SCRAM verifier, see
 * `pg_scram.ts`), so the plugin's statements run with the role as the
 * session user; a resync leaves the login as it is.
 *
 * Never granted, whatever the grants say ({@linkcode ReservedSchemaError}):
 * the host's own schema `goatkit` (see `host_schema.ts`), PostgreSQL's
 * catalogs (`pg_*`, `information_schema`) and other plugins' schemas. An
 * unscoped grant (`"all"`) covers only the host's application schema.
 *
 * {@linkcode hardenDatabase} closes, for every role but the host's
 * connection user, the functions whose effects outlive a plugin's
 * transaction (see {@linkcode SESSION_FUNCTIONS}).
 *
 * @module
 */

import type { Row } from "../host/model/host_api.ts";
import { HOST_LOCK_CLASS, HOST_LOCKS, HOST_SCHEMA } from "./host_schema.ts";

/**
 * What privilege sync needs of a database session: one-statement queries
 * with `$1…` parameters and trusted multi-statement SQL, on one connection
 * inside a transaction. The services' `SqlSession` fits it.
 */
export interface PrivilegeSession {
  /** Runs one statement with `$1…` parameters. */
  query(sql: string, params?: unknown[]): Promise<{ rows: Row[] }>;
  /** Runs trusted host SQL. */
  exec(sql: string): Promise<void>;
}

/** Which host tables a plugin may read and write. */
export interface PluginPrivileges {
  /** Tables it may `SELECT`: `"all"` = every table of the host schema, `null` = none. */
  read: "all" | string[] | null;
  /** Tables it may `INSERT`/`UPDATE`/`DELETE`: `"all"`, a list, or `null`. */
  write: "all" | string[] | null;
}

/** Quotes an SQL identifier. */
export function quoteIdent(name: string): string {
  return `"${name.replaceAll('"', '""')}"`;
}

function fnv1a(text: string): string {
  let h = 0x811c9dc5;
  for (const b of new TextEncoder().encode(text)) {
    h ^= b;
    h = Math.imul(h, 0x01000193) >>> 0;
  }
  return h.toString(16).padStart(8, "0");
}

function boundedName(prefix: string, plugin: string): string {
  const base = prefix + plugin.replaceAll("-", "_");
  if (base.length <= 63) return base;
  return `${base.slice(0, 54)}_${fnv1a(plugin)}`;
}

/**
 * The PostgreSQL role of `plugin`.
 *
 * @example
 * ```ts
 * import { pluginRoleName } from "./pg_privileges.ts";
 * pluginRoleName("ticket-stats"); // "gk_plugin_ticket_stats"
 * ```
 */
export function pluginRoleName(plugin: string): string {
  return boundedName("gk_plugin_", plugin);
}

/**
 * The schema `plugin` owns for its own tables.
 *
 * @example
 * ```ts
 * import { pluginSchemaName } from "./pg_privileges.ts";
 * pluginSchemaName("ticket-stats"); // "plugin_ticket_stats"
 * ```
 */
export function pluginSchemaName(plugin: string): string {
  return boundedName("plugin_", plugin);
}

/**
 * A table grant, or the host schema itself, names a schema no plugin may be
 * given: the host's own `goatkit` schema, a PostgreSQL catalog schema
 * (`pg_*`, `information_schema`) or another plugin's schema. Nothing was
 * changed (the sync's transaction is rolled back).
 *
 * @example
 * ```ts ignore
 * import { ReservedSchemaError, syncPrivileges } from "./pg_privileges.ts";
 * try {
 *   await syncPrivileges(session, "hello", { read: ["goatkit.plugin_grants"], write: null }, "public");
 * } catch (e) {
 *   console.log(e instanceof ReservedSchemaError); // true
 * }
 * ```
 */
export class ReservedSchemaError extends Error {
  /** The plugin whose privileges were being synced. */
  readonly plugin: string;
  /** The schema, as PostgreSQL names it. */
  readonly schema: string;

  /** Creates the error for `plugin` and the grant `what` in `schema`. */
  constructor(plugin: string, what: string, schema: string, why: string) {
    super(
      `Cannot grant ${what} to plugin "${plugin}": schema "${schema}" ${why}`,
    );
    this.name = "ReservedSchemaError";
    this.plugin = plugin;
    this.schema = schema;
  }
}

/** Why `schema` (as PostgreSQL names it) is closed to plugins, or `undefined`. */
function reservedSchema(schema: string): string | undefined {
  const lower = schema.toLowerCase();
  // Case-insensitive on purpose: "GoatKit" is another schema, but no
  // plugin needs one that only differs from the host's by case.
  if (lower === HOST_SCHEMA) return "holds the host's own tables";
  if (lower.startsWith("pg_") || lower === "information_schema") {
    return "is a PostgreSQL system schema";
  }
  return undefined;
}

/** One identifier: plain (case-folded like unquoted SQL) or "quoted". */
const IDENT = /\s*(?:([A-Za-z_][A-Za-z0-9_$]*)|"((?:[^"]|"")+)")\s*/y;

/**
 * Splits `table`, `schema.table` or their quoted forms (`"Schema"."t"`) into
 * the names PostgreSQL would use, with `hostSchema` for an unqualified name.
 */
function parseTable(name: string, hostSchema: string): [string, string] {
  const parts: string[] = [];
  let i = 0;
  for (;;) {
    IDENT.lastIndex = i;
    const m = IDENT.exec(name);
    if (!m) break;
    parts.push(
      m[1] !== undefined ? m[1].toLowerCase() : m[2]!.replaceAll('""', '"'),
    );
    i = IDENT.lastIndex;
    if (name[i] !== ".") break;
    i++;
  }
  if (i !== name.length || parts.length < 1 || parts.length > 2) {
    throw new TypeError(
      `Cannot grant table "${name}": not an identifier or schema.table`,
    );
  }
  return parts.length === 2 ? [parts[0]!, parts[1]!] : [hostSchema, parts[0]!];
}

/**
 * Serialises privilege changes in one database: concurrent GRANT/REVOKE on
 * the same table fail in PostgreSQL with "tuple concurrently updated". The
 * lock is the two-key form in the host's lock class (plugin roles cannot
 * take advisory locks at all once the database is hardened).
 */
async function lockPrivileges(s: PrivilegeSession): Promise<void> {
  await s.query(
    `SELECT pg_catalog.pg_advisory_xact_lock(${HOST_LOCK_CLASS}, ${HOST_LOCKS.privileges})`,
  );
}

/**
 * Runs one GRANT/REVOKE in a savepoint and ignores the relation having been
 * dropped meanwhile (42P01) or changed concurrently (XX000), so syncs do not
 * fail because of unrelated tables coming and going.
 */
async function tolerant(s: PrivilegeSession, sql: string): Promise<void> {
  await s.exec("SAVEPOINT gk_priv");
  try {
    await s.exec(sql);
    await s.exec("RELEASE SAVEPOINT gk_priv");
  } catch (e) {
    const code = (e as { code?: unknown }).code;
    if (code !== "42P01" && code !== "XX000") throw e;
    await s.exec("ROLLBACK TO SAVEPOINT gk_priv");
  }
}

/**
 * Throws {@linkcode ReservedSchemaError} when `hostSchema` or a table of
 * `privileges` names a schema no plugin may be given (by its name: whether
 * the table exists does not matter), and a `TypeError` for a table name that
 * is not an identifier or `schema.table`.
 *
 * @example
 * ```ts
 * import { checkPrivileges } from "./pg_privileges.ts";
 * checkPrivileges("hello", { read: ["ticket"], write: null }, "public"); // fine
 * try {
 *   checkPrivileges("hello", { read: ['"GOATKIT".plugin_grants'], write: null }, "public");
 * } catch (e) {
 *   console.log((e as Error).name); // "ReservedSchemaError"
 * }
 * ```
 */
export function checkPrivileges(
  plugin: string,
  privileges: PluginPrivileges,
  hostSchema: string,
): void {
  const hostWhy = reservedSchema(hostSchema);
  if (hostWhy) {
    throw new ReservedSchemaError(
      plugin,
      "the host schema's tables",
      hostSchema,
      hostWhy,
    );
  }
  for (const list of [privileges.read, privileges.write]) {
    if (list === null || list === "all") continue;
    for (const name of list) {
      const [sch] = parseTable(name, hostSchema);
      const why = reservedSchema(sch);
      if (why) {
        throw new ReservedSchemaError(plugin, `table "${name}"`, sch, why);
      }
    }
  }
}

/**
 * (Re)creates `plugin`'s role and schema and makes its table privileges
 * exactly `privileges`: what is no longer granted is revoked. Tables that do
 * not exist are skipped (sync again after creating them); `"all"` covers the
 * tables of `hostSchema` that exist now (never the host's own `goatkit`
 * schema). A grant naming a reserved schema throws
 * {@linkcode ReservedSchemaError} before anything changes; see
 * {@linkcode checkPrivileges}. Runs inside the caller's transaction.
 */
export async function syncPrivileges(
  s: PrivilegeSession,
  plugin: string,
  privileges: PluginPrivileges,
  hostSchema: string,
): Promise<void> {
  checkPrivileges(plugin, privileges, hostSchema);
  const role = pluginRoleName(plugin);
  const schema = pluginSchemaName(plugin);
  const r = quoteIdent(role);
  const attrs =
    "NOSUPERUSER NOCREATEDB NOCREATEROLE NOINHERIT NOREPLICATION NOBYPASSRLS";
  await lockPrivileges(s);
  const exists = await s.query("SELECT 1 FROM pg_roles WHERE rolname = $1", [
    role,
  ]);
  // A new role cannot log in until the host enables it (enablePluginLogin);
  // a resync leaves LOGIN as it is, so connections the host opens as the
  // plugin keep working while grants change.
  await s.exec(
    exists.rows.length
      ? `ALTER ROLE ${r} ${attrs}`
      : `CREATE ROLE ${r} NOLOGIN ${attrs}`,
  );
  const me = await s.query(
    "SELECT rolsuper FROM pg_roles WHERE rolname = current_user",
  );
  if (!me.rows[0]?.rolsuper) {
    // A non-superuser host needs membership to SET ROLE to the plugin role.
    await s.exec(`GRANT ${r} TO CURRENT_USER`);
  }
  await s.exec(
    `CREATE SCHEMA IF NOT EXISTS ${quoteIdent(schema)} AUTHORIZATION ${r}; ` +
      `ALTER SCHEMA ${quoteIdent(schema)} OWNER TO ${r}; ` +
      `REVOKE ALL ON SCHEMA ${quoteIdent(schema)} FROM PUBLIC`,
  );

  // Revoke everything held outside the plugin's own schema.
  const held = await s.query(
    `SELECT DISTINCT n.nspname AS schema, c.relname AS name, c.relkind AS kind
       FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace,
            LATERAL aclexplode(c.relacl) a
      WHERE a.grantee = (SELECT oid FROM pg_roles WHERE rolname = $1)
        AND n.nspname <> $2`,
    [role, schema],
  );
  for (const row of held.rows) {
    const kind = row.kind === "S" ? "SEQUENCE" : "TABLE";
    await tolerant(
      s,
      `REVOKE ALL ON ${kind} ${quoteIdent(String(row.schema))}.${
        quoteIdent(String(row.name))
      } FROM ${r}`,
    );
  }
  const schemas = await s.query(
    `SELECT n.nspname AS schema FROM pg_namespace n, LATERAL aclexplode(n.nspacl) a
      WHERE a.grantee = (SELECT oid FROM pg_roles WHERE rolname = $1) AND n.nspname <> $2`,
    [role, schema],
  );
  for (const row of schemas.rows) {
    await s.exec(
      `REVOKE ALL ON SCHEMA ${quoteIdent(String(row.schema))} FROM ${r}`,
    );
  }

  const usedSchemas = new Set<string>();
  const grant = async (
    list: "all" | string[] | null,
    what: string,
    write: boolean,
  ) => {
    if (list === null) return;
    if (list === "all") {
      // Like GRANT … ON ALL TABLES IN SCHEMA, one relation at a time, so a
      // table dropped meanwhile by someone else does not fail the sync.
      usedSchemas.add(hostSchema);
      const rels = await s.query(
        `SELECT c.relname AS name, c.relkind AS kind FROM pg_class c
           JOIN pg_namespace n ON n.oid = c.relnamespace
          WHERE n.nspname = $1 AND c.relkind IN ('r', 'v', 'm', 'f', 'p', 'S')`,
        [hostSchema],
      );
      for (const rel of rels.rows) {
        const qualified = `${quoteIdent(hostSchema)}.${
          quoteIdent(String(rel.name))
        }`;
        if (rel.kind === "S") {
          if (write) {
            await tolerant(s, `GRANT USAGE ON SEQUENCE ${qualified} TO ${r}`);
          }
        } else {
          await tolerant(s, `GRANT ${what} ON TABLE ${qualified} TO ${r}`);
        }
      }
      return;
    }
    for (const name of list) {
      const [sch, tbl] = parseTable(name, hostSchema);
      const qualified = `${quoteIdent(sch)}.${quoteIdent(tbl)}`;
      // The schema as the database resolved it, and whether a plugin role
      // owns it: checked again here, whatever the spelling was.
      const found = await s.query(
        `SELECT c.oid, n.nspname AS schema, o.rolname AS owner
           FROM pg_catalog.pg_class c
           JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
           JOIN pg_catalog.pg_roles o ON o.oid = n.nspowner
          WHERE c.oid = pg_catalog.to_regclass($1)`,
        [qualified],
      );
      const rel = found.rows[0];
      if (rel === undefined) continue;
      const resolved = String(rel.schema);
      if (resolved === schema) continue; // its own: it owns everything there
      const why = reservedSchema(resolved) ??
        (String(rel.owner).startsWith("gk_plugin_")
          ? "belongs to another plugin"
          : undefined);
      if (why) {
        throw new ReservedSchemaError(plugin, `table "${name}"`, resolved, why);
      }
      usedSchemas.add(sch);
      await s.exec(`GRANT ${what} ON TABLE ${qualified} TO ${r}`);
      if (write) {
        const seqs = await s.query(
          `SELECT n.nspname AS schema, c.relname AS name FROM pg_depend d
             JOIN pg_class c ON c.oid = d.objid AND c.relkind = 'S'
             JOIN pg_namespace n ON n.oid = c.relnamespace
            WHERE d.refobjid = $1::oid AND d.deptype IN ('a', 'i')`,
          [rel.oid],
        );
        for (const seq of seqs.rows) {
          await s.exec(
            `GRANT USAGE ON SEQUENCE ${quoteIdent(String(seq.schema))}.${
              quoteIdent(String(seq.name))
            } TO ${r}`,
          );
        }
      }
    }
  };
  await grant(privileges.read, "SELECT", false);
  await grant(privileges.write, "INSERT, UPDATE, DELETE", true);
  for (const sch of usedSchemas) {
    await s.exec(`GRANT USAGE ON SCHEMA ${quoteIdent(sch)} TO ${r}`);
  }
}

/**
 * Drops `plugin`'s schema (with its tables) and its privileges in this
 * database, then its role. The role stays when it still holds privileges in
 * another database of the cluster (drop the plugin there too).
 */
export async function dropPrivileges(
  s: PrivilegeSession,
  plugin: string,
): Promise<void> {
  const role = pluginRoleName(plugin);
  const r = quoteIdent(role);
  await lockPrivileges(s);
  await s.exec(
    `DROP SCHEMA IF EXISTS ${quoteIdent(pluginSchemaName(plugin))} CASCADE`,
  );
  const exists = await s.query("SELECT 1 FROM pg_roles WHERE rolname = $1", [
    role,
  ]);
  if (!exists.rows.length) return;
  await s.exec(`DROP OWNED BY ${r}`);
  await s.exec("SAVEPOINT gk_drop_role");
  try {
    await s.exec(`DROP ROLE ${r}`);
  } catch {
    await s.exec("ROLLBACK TO SAVEPOINT gk_drop_role");
  }
}

/** What {@linkcode enablePluginLogin} sets on the plugin's role. */
export interface PluginLogin {
  /**
   * The password as a SCRAM-SHA-256 verifier (`SCRAM-SHA-256$<iterations>:
   * <salt>$<StoredKey>:<ServerKey>`, see `pg_scram.ts`): the clear password
   * never reaches the server, its logs or `pg_stat_activity`.
   */
  verifier: string;
  /** The role's `CONNECTION LIMIT`. */
  connectionLimit: number;
}

const SCRAM_VERIFIER =
  /^SCRAM-SHA-256\$[1-9][0-9]{0,8}:[A-Za-z0-9+/]+={0,2}\$[A-Za-z0-9+/]+={0,2}:[A-Za-z0-9+/]+={0,2}$/;

/**
 * Lets `plugin`'s role log in with `login.verifier`'s password and at most
 * `login.connectionLimit` sessions, and clears role-level settings it may
 * have set on itself (`ALTER ROLE … SET`, which an ordinary role may do).
 * Returns `false` (and changes nothing) when the role does not exist yet
 * ({@linkcode syncPrivileges} creates it). Runs inside the caller's
 * transaction; a verifier that is not SCRAM-SHA-256 is a `TypeError`.
 *
 * @example
 * ```ts ignore
 * import { enablePluginLogin } from "./pg_privileges.ts";
 * import { scramSha256Verifier } from "./pg_scram.ts";
 * const verifier = await scramSha256Verifier(password);
 * await enablePluginLogin(session, "hello", { verifier, connectionLimit: 5 });
 * ```
 */
export async function enablePluginLogin(
  s: PrivilegeSession,
  plugin: string,
  login: PluginLogin,
): Promise<boolean> {
  if (!SCRAM_VERIFIER.test(login.verifier)) {
    throw new TypeError(
      `Cannot enable login for plugin "${plugin}": the password must be a SCRAM-SHA-256 verifier`,
    );
  }
  const limit = Math.floor(login.connectionLimit);
  if (!(limit >= 1)) {
    throw new TypeError(
      `Cannot enable login for plugin "${plugin}": the connection limit must be at least 1`,
    );
  }
  const role = pluginRoleName(plugin);
  const r = quoteIdent(role);
  await lockPrivileges(s);
  const exists = await s.query("SELECT 1 FROM pg_roles WHERE rolname = $1", [
    role,
  ]);
  if (!exists.rows.length) return false;
  const db = await s.query("SELECT current_database() AS name");
  await s.exec(
    `ALTER ROLE ${r} LOGIN CONNECTION LIMIT ${limit} PASSWORD '${login.verifier}'; ` +
      `ALTER ROLE ${r} RESET ALL; ` +
      `ALTER ROLE ${r} IN DATABASE ${
        quoteIdent(String(db.rows[0]?.name))
      } RESET ALL`,
  );
  return true;
}

/**
 * Removes the password of `plugin`'s role (no session can log in with a
 * password any more; open sessions go on). Does nothing when the role does
 * not exist. Runs inside the caller's transaction.
 */
export async function clearPluginPassword(
  s: PrivilegeSession,
  plugin: string,
): Promise<void> {
  const role = pluginRoleName(plugin);
  await lockPrivileges(s);
  const exists = await s.query("SELECT 1 FROM pg_roles WHERE rolname = $1", [
    role,
  ]);
  if (exists.rows.length) {
    await s.exec(`ALTER ROLE ${quoteIdent(role)} PASSWORD NULL`);
  }
}

/**
 * The PostgreSQL functions that PUBLIC can execute by default and whose
 * effects outlive the calling transaction or reach other sessions;
 * {@linkcode hardenDatabase} revokes `EXECUTE` on them from PUBLIC (every
 * overload; found in `pg_proc` by name, `%` as in `LIKE`), and grants it
 * back to the host's connection user when that is not a superuser.
 *
 * | functions | why |
 * |---|---|
 * | `pg_advisory_%`, `pg_try_advisory_%` | session locks outlive the plugin's transaction on the pooled connection and block the host (privilege syncs) and other plugins; transaction locks block them for the statement's duration. Plugins have no use for the host's lock space |
 * | `pg_notify` | sends to the application's `LISTEN` channels (the `NOTIFY` statement is refused by the host's statement check) |
 * | `set_config` | `set_config('role', …, false)` changes the session (checked against the session user) and other session settings outlive the transaction |
 * | `pg_cancel_backend`, `pg_terminate_backend` | a plugin must not cancel or end other sessions' statements |
 * | `lo_%`, `loread`, `lowrite` | large objects are database-wide objects outside every schema (not covered by table grants), outlive the plugin's transaction and fill the disk; plugins keep data in tables |
 * | `pg_logical_emit_message` | writes (optionally non-transactional) messages into the WAL for logical decoding consumers |
 * | `setseed` | seeds `random()` for the rest of the session, i.e. for later users of the pooled connection |
 * | every function of the `dblink` extension, when installed | opens connections and remote sessions outside the transaction (and to other hosts) |
 *
 * Kept: `pg_sleep*` (the statement timeout bounds it), `pg_listening_channels`
 * (reads the caller's own session), functions that check privileges
 * themselves (replication slots, `binary_upgrade_*`, `pg_read_file_old`,
 * `brin_summarize_*`, …), `nextval`/`setval` (governed by sequence grants),
 * and `query_to_xml`/`ts_stat` (they run query text, but only with the
 * caller's privileges, so they reach nothing the statement could not).
 */
export const SESSION_FUNCTIONS: readonly string[] = Object.freeze([
  "pg_advisory_%",
  "pg_try_advisory_%",
  "pg_notify",
  "set_config",
  "pg_cancel_backend",
  "pg_terminate_backend",
  "lo_%",
  "loread",
  "lowrite",
  "pg_logical_emit_message",
  "setseed",
]);

/**
 * Procedural languages whose `USAGE` is revoked from PUBLIC: `DO` blocks and
 * functions a plugin could write in its own schema would run `RESET ROLE`
 * (checked against the session user) or `LISTEN` out of sight of the host's
 * statement check. Granted back to the host's connection user (the host's
 * own `DO` statements need `plpgsql`).
 */
export const CLOSED_LANGUAGES: readonly string[] = Object.freeze([
  "plpgsql",
  "sql",
]);

/**
 * The database refused to close what {@linkcode hardenDatabase} must close
 * (typically: the host connects as a user that does not own the catalog
 * functions, so PostgreSQL only warns "no privileges could be revoked").
 * Plugins get no database access until it is fixed: run the hardening once
 * as a superuser (for example by starting the host with a superuser's URL),
 * or pass `harden: false` when the database is hardened otherwise.
 */
export class DatabaseHardeningError extends Error {
  /** What is still open to PUBLIC (functions and languages). */
  readonly open: string[];

  /** Creates the error listing what stayed open. */
  constructor(open: string[]) {
    super(
      `Cannot harden the database for plugins: PUBLIC can still use ${
        open.join(", ")
      } (revoking needs the objects' owner, usually a superuser)`,
    );
    this.name = "DatabaseHardeningError";
    this.open = open;
  }
}

/** The functions of {@linkcode SESSION_FUNCTIONS} (and dblink's), and whether PUBLIC may execute them. */
async function sessionFunctions(
  s: PrivilegeSession,
): Promise<{ fn: string; open: boolean }[]> {
  const { rows } = await s.query(
    `SELECT p.oid::pg_catalog.regprocedure::text AS fn,
            pg_catalog.has_function_privilege('public', p.oid, 'EXECUTE') AS open
       FROM pg_catalog.pg_proc p
      WHERE (p.pronamespace = 'pg_catalog'::regnamespace
             AND p.proname::text LIKE ANY ($1::text[]))
         OR p.oid IN (SELECT d.objid FROM pg_catalog.pg_depend d
                        JOIN pg_catalog.pg_extension e ON e.oid = d.refobjid
                       WHERE d.classid = 'pg_catalog.pg_proc'::regclass
                         AND d.deptype = 'e' AND e.extname = 'dblink')
      ORDER BY 1`,
    [SESSION_FUNCTIONS.map((f) => f.replaceAll("_", "\\_"))],
  );
  return rows.map((r) => ({ fn: String(r.fn), open: r.open === true }));
}

async function closedLanguages(
  s: PrivilegeSession,
): Promise<{ name: string; open: boolean }[]> {
  const { rows } = await s.query(
    `SELECT l.lanname AS name,
            pg_catalog.has_language_privilege('public', l.oid, 'USAGE') AS open
       FROM pg_catalog.pg_language l WHERE l.lanname = ANY ($1::text[])`,
    [CLOSED_LANGUAGES],
  );
  return rows.map((r) => ({ name: String(r.name), open: r.open === true }));
}

/**
 * Database-wide hardening run once per database before plugins use it:
 *
 * - `EXECUTE` on the {@linkcode SESSION_FUNCTIONS} (advisory locks,
 *   `pg_notify`, `set_config`, `pg_cancel_backend`, `pg_terminate_backend`,
 *   large objects, `pg_logical_emit_message`, `setseed`, dblink) is revoked
 *   from PUBLIC, and `USAGE` on the {@linkcode CLOSED_LANGUAGES} (`plpgsql`,
 *   `sql`): the database itself refuses them to plugin roles, whatever
 *   spelling gets past the host's statement check;
 * - a plugin must not create temporary tables, which outlive its transaction
 *   on the pooled connection and, through the implicit `pg_temp` first entry
 *   of every search_path, would shadow tables for later users of that
 *   connection (other plugins, the host): `TEMPORARY` on the database is
 *   revoked from PUBLIC;
 * - on PostgreSQL < 15, `CREATE` on schema `public` is revoked from PUBLIC
 *   (the default since 15), so plugins cannot put objects among the host's.
 *
 * When the connection user is not a superuser, all of it is granted back to
 * it (so the host itself keeps advisory locks, `DO` blocks and the rest).
 * Other roles of the application that need one of these must be granted it
 * explicitly. Throws {@linkcode DatabaseHardeningError} when something stays
 * open to PUBLIC.
 */
export async function hardenDatabase(s: PrivilegeSession): Promise<void> {
  await lockPrivileges(s);
  const me = await s.query(
    "SELECT rolsuper FROM pg_catalog.pg_roles WHERE rolname = current_user",
  );
  const superuser = me.rows[0]?.rolsuper === true;
  for (const f of await sessionFunctions(s)) {
    if (!f.open) continue;
    await s.exec(`REVOKE EXECUTE ON FUNCTION ${f.fn} FROM PUBLIC`);
    if (!superuser) {
      await s.exec(`GRANT EXECUTE ON FUNCTION ${f.fn} TO CURRENT_USER`);
    }
  }
  for (const l of await closedLanguages(s)) {
    if (!l.open) continue;
    const lang = quoteIdent(l.name);
    await s.exec(`REVOKE USAGE ON LANGUAGE ${lang} FROM PUBLIC`);
    if (!superuser) {
      await s.exec(`GRANT USAGE ON LANGUAGE ${lang} TO CURRENT_USER`);
    }
  }
  const db = await s.query(
    "SELECT current_database() AS name, has_database_privilege('public', current_database(), 'TEMPORARY') AS temp",
  );
  const dbName = quoteIdent(String(db.rows[0]?.name));
  if (db.rows[0]?.temp === true) {
    await s.exec(`REVOKE TEMPORARY ON DATABASE ${dbName} FROM PUBLIC`);
  }
  // PostgreSQL < 15 lets everyone create objects in schema public.
  const pub = await s.query(
    "SELECT has_schema_privilege('public', n.oid, 'CREATE') AS open FROM pg_namespace n WHERE n.nspname = 'public'",
  );
  const publicOpen = pub.rows[0]?.open === true;
  if (publicOpen) await s.exec("REVOKE CREATE ON SCHEMA public FROM PUBLIC");
  if (!superuser) {
    await s.exec(`GRANT TEMPORARY ON DATABASE ${dbName} TO CURRENT_USER`);
    if (publicOpen) {
      await s.exec("GRANT CREATE ON SCHEMA public TO CURRENT_USER");
    }
  }
  // A REVOKE by a non-owner only warns: check what is still open.
  const open = [
    ...(await sessionFunctions(s)).filter((f) => f.open).map((f) => f.fn),
    ...(await closedLanguages(s)).filter((l) => l.open).map((l) =>
      `language ${l.name}`
    ),
  ];
  const left = await s.query(
    "SELECT has_database_privilege('public', current_database(), 'TEMPORARY') AS temp",
  );
  if (left.rows[0]?.temp === true) open.push("temporary tables");
  if (open.length) throw new DatabaseHardeningError(open);
}
