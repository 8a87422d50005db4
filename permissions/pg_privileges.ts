/**
 * PostgreSQL roles, schemas and table privileges per plugin: the database's
 * own enforcement of `db:read` / `db:write` grants.
 *
 * Each plugin gets a `NOLOGIN` role `gk_plugin_<name>` (`-` → `_`) that owns a
 * schema `plugin_<name>`; its grants become `SELECT` (read) and
 * `INSERT, UPDATE, DELETE` (write, plus `USAGE` on the tables' own sequences)
 * on host tables. Names longer than PostgreSQL's 63-byte identifier limit are
 * shortened with a hash so two plugins never share a role.
 *
 * @module
 */

import type { Row } from "../host/model/host_api.ts";

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

const TABLE_REGEXP =
  /^(?:([A-Za-z_][A-Za-z0-9_$]*)\.)?([A-Za-z_][A-Za-z0-9_$]*)$/;

/** Splits `table` or `schema.table` (plain identifiers only; case-folded like unquoted SQL). */
function parseTable(name: string, hostSchema: string): [string, string] {
  const m = TABLE_REGEXP.exec(name);
  if (!m) {
    throw new TypeError(
      `Cannot grant table "${name}": not a plain identifier or schema.table`,
    );
  }
  return [m[1]?.toLowerCase() ?? hostSchema, m[2].toLowerCase()];
}

/**
 * Serialises privilege changes in one database: concurrent GRANT/REVOKE on
 * the same table fail in PostgreSQL with "tuple concurrently updated".
 */
async function lockPrivileges(s: PrivilegeSession): Promise<void> {
  await s.query("SELECT pg_advisory_xact_lock(hashtext('goatkit:privileges'))");
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
 * (Re)creates `plugin`'s role and schema and makes its table privileges
 * exactly `privileges`: what is no longer granted is revoked. Tables that do
 * not exist are skipped (sync again after creating them); `"all"` covers the
 * tables that exist now. Runs inside the caller's transaction.
 */
export async function syncPrivileges(
  s: PrivilegeSession,
  plugin: string,
  privileges: PluginPrivileges,
  hostSchema: string,
): Promise<void> {
  const role = pluginRoleName(plugin);
  const schema = pluginSchemaName(plugin);
  const r = quoteIdent(role);
  const attrs =
    "NOLOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE NOINHERIT NOREPLICATION NOBYPASSRLS";
  await lockPrivileges(s);
  const exists = await s.query("SELECT 1 FROM pg_roles WHERE rolname = $1", [
    role,
  ]);
  await s.exec(
    exists.rows.length
      ? `ALTER ROLE ${r} ${attrs}`
      : `CREATE ROLE ${r} ${attrs}`,
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
      const found = await s.query("SELECT to_regclass($1)::oid AS oid", [
        qualified,
      ]);
      if (found.rows[0]?.oid === null || found.rows[0]?.oid === undefined) {
        continue;
      }
      usedSchemas.add(sch);
      await s.exec(`GRANT ${what} ON TABLE ${qualified} TO ${r}`);
      if (write) {
        const seqs = await s.query(
          `SELECT n.nspname AS schema, c.relname AS name FROM pg_depend d
             JOIN pg_class c ON c.oid = d.objid AND c.relkind = 'S'
             JOIN pg_namespace n ON n.oid = c.relnamespace
            WHERE d.refobjid = $1::oid AND d.deptype IN ('a', 'i')`,
          [found.rows[0].oid],
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

/**
 * Database-wide hardening run once per database before plugins use it:
 *
 * - a plugin role must not be able to call `set_config('role', …)`, which
 *   PostgreSQL checks against the session user: `EXECUTE` on `set_config` is
 *   revoked from PUBLIC;
 * - a plugin must not create temporary tables, which outlive its transaction
 *   on the pooled connection and, through the implicit `pg_temp` first entry
 *   of every search_path, would shadow tables for later users of that
 *   connection (other plugins, the host): `TEMPORARY` on the database is
 *   revoked from PUBLIC;
 * - on PostgreSQL < 15, `CREATE` on schema `public` is revoked from PUBLIC
 *   (the default since 15), so plugins cannot put objects among the host's.
 *
 * When the connection user is not a superuser, both are granted back to it.
 */
export async function hardenDatabase(s: PrivilegeSession): Promise<void> {
  await lockPrivileges(s);
  const open = await s.query(
    "SELECT has_function_privilege('public', 'pg_catalog.set_config(text,text,boolean)', 'EXECUTE') AS open",
  );
  if (open.rows[0]?.open === true) {
    await s.exec(
      "REVOKE EXECUTE ON FUNCTION pg_catalog.set_config(text, text, boolean) FROM PUBLIC",
    );
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
  const me = await s.query(
    "SELECT rolsuper FROM pg_roles WHERE rolname = current_user",
  );
  if (!me.rows[0]?.rolsuper) {
    await s.exec(
      "GRANT EXECUTE ON FUNCTION pg_catalog.set_config(text, text, boolean) TO CURRENT_USER",
    );
    await s.exec(`GRANT TEMPORARY ON DATABASE ${dbName} TO CURRENT_USER`);
    if (publicOpen) {
      await s.exec("GRANT CREATE ON SCHEMA public TO CURRENT_USER");
    }
  }
}
