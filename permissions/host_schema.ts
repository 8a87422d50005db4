/**
 * The host's own tables (grants, plugin state, job ticks) live in the schema
 * {@linkcode HOST_SCHEMA} (`goatkit`), which no plugin role can see:
 *
 * - the schema is created under an advisory lock, owned by the connection
 *   user, with `REVOKE ALL ON SCHEMA goatkit FROM PUBLIC` (re-applied every
 *   time a host table is ensured);
 * - plugin privileges (`pg_privileges.ts`) never give a plugin role `USAGE`
 *   on it: an unscoped `db:` grant covers only the host's application
 *   schema, and a table grant naming `goatkit` (any spelling) is refused with
 *   {@linkcode ReservedSchemaError};
 * - an upgraded database keeps its data: a table of the old layout
 *   (`public.goatkit_plugin_grants`, `goatkit_plugin_state`,
 *   `goatkit_job_ticks`) is moved once, under the same lock, with
 *   `ALTER TABLE … SET SCHEMA goatkit` and renamed; every privilege other than
 *   its owner's is revoked on the way. When both the old and the new table
 *   exist, the old one is left alone (never merged).
 *
 * Everything is one `DO` statement, so it works through any client that can
 * run a single statement (`npm:pg` pools and clients, PGlite) and is atomic.
 *
 * @module
 */

/** The schema of the host's own tables. */
export const HOST_SCHEMA = "goatkit";

/**
 * The class id of the host's advisory locks (the two-key form, so they never
 * meet single-key locks): `0x474b4954`, "GKIT".
 */
export const HOST_LOCK_CLASS = 0x474b4954;

/** Object ids of the host's advisory locks within {@linkcode HOST_LOCK_CLASS}. */
export const HOST_LOCKS = {
  /** Privilege syncs, drops and database hardening. */
  privileges: 1,
  /** Creating the host schema and its tables. */
  schema: 2,
} as const;

/** What {@linkcode ensureHostTable} needs: one statement at a time. */
export interface HostTableClient {
  /** Runs one statement. */
  query(sql: string): Promise<unknown>;
}

/** A host table and how to create it. */
export interface HostTableSpec {
  /**
   * `table` (in the connection's search path) or `schema.table`; plain
   * lower-case identifiers. In schema {@linkcode HOST_SCHEMA} the schema is
   * created and closed to PUBLIC.
   */
  table: string;
  /** The column list, as in `CREATE TABLE t (<columns>)`. */
  columns: string;
  /**
   * The table's name in the old layout (unqualified, found through the
   * search path), moved into place once when the new table does not exist.
   */
  legacy?: string;
  /**
   * Rows scoped by the connection's application schema: `columns` declares
   * `scope text NOT NULL DEFAULT current_schema()` and the primary key
   * `(scope, ...scopedKey)`; a table of an earlier layout (no `scope`) gains
   * the column (its rows go to the schema of the host that upgrades it) and
   * the primary key.
   */
  scopedKey?: readonly string[];
}

const NAME_REGEXP = /^[a-z_][a-z0-9_]{0,62}(\.[a-z_][a-z0-9_]{0,62})?$/;

/**
 * Splits `table` or `schema.table` (plain lower-case identifiers); throws a
 * `TypeError` otherwise.
 *
 * @example
 * ```ts
 * import { splitTableName } from "./host_schema.ts";
 * splitTableName("goatkit.plugin_state"); // ["goatkit", "plugin_state"]
 * splitTableName("my_state"); // [undefined, "my_state"]
 * ```
 */
export function splitTableName(name: string): [string | undefined, string] {
  if (!NAME_REGEXP.test(name)) {
    throw new TypeError(
      `Cannot use table "${name}": not a plain lower-case SQL identifier or schema.table`,
    );
  }
  const dot = name.indexOf(".");
  return dot < 0
    ? [undefined, name]
    : [name.slice(0, dot), name.slice(dot + 1)];
}

/**
 * The quoted, qualified form of a host table name.
 *
 * @example
 * ```ts
 * import { qualifiedTable } from "./host_schema.ts";
 * qualifiedTable("goatkit.plugin_state"); // '"goatkit"."plugin_state"'
 * ```
 */
export function qualifiedTable(name: string): string {
  const [schema, table] = splitTableName(name);
  return schema === undefined
    ? quoteIdent(table)
    : `${quoteIdent(schema)}.${quoteIdent(table)}`;
}

function quoteIdent(name: string): string {
  return `"${name.replaceAll('"', '""')}"`;
}

function literal(text: string): string {
  return `'${text.replaceAll("'", "''")}'`;
}

/**
 * The `DO` statement of {@linkcode ensureHostTable} (trusted names only:
 * checked by {@linkcode splitTableName}).
 */
export function hostTableSql(spec: HostTableSpec): string {
  const [schema, table] = splitTableName(spec.table);
  const target = qualifiedTable(spec.table);
  const lines = [
    `PERFORM pg_catalog.pg_advisory_xact_lock(${HOST_LOCK_CLASS}, ${HOST_LOCKS.schema});`,
  ];
  if (schema === HOST_SCHEMA) {
    lines.push(
      `IF pg_catalog.to_regnamespace(${literal(schema)}) IS NULL THEN`,
      `  CREATE SCHEMA ${quoteIdent(schema)};`,
      `END IF;`,
      `REVOKE ALL ON SCHEMA ${quoteIdent(schema)} FROM PUBLIC;`,
    );
  }
  if (spec.legacy !== undefined && schema !== undefined) {
    const [legacySchema, legacy] = splitTableName(spec.legacy);
    if (legacySchema !== undefined) {
      throw new TypeError(
        `Cannot move legacy table "${spec.legacy}": give its unqualified name`,
      );
    }
    lines.push(
      `old := pg_catalog.to_regclass(${literal(quoteIdent(legacy))});`,
      `IF pg_catalog.to_regclass(${
        literal(target)
      }) IS NULL AND old IS NOT NULL`,
      `   AND (SELECT relkind FROM pg_catalog.pg_class WHERE oid = old) = 'r' THEN`,
      `  EXECUTE pg_catalog.format('ALTER TABLE %s SET SCHEMA %I', old, ${
        literal(schema)
      });`,
      `  EXECUTE pg_catalog.format('ALTER TABLE %I.%I RENAME TO %I', ${
        literal(schema)
      }, ${literal(legacy)}, ${literal(table)});`,
      `  FOR grantee IN`,
      `    SELECT DISTINCT a.grantee FROM pg_catalog.pg_class c,`,
      `           LATERAL pg_catalog.aclexplode(c.relacl) a`,
      `     WHERE c.oid = ${
        literal(target)
      }::regclass AND a.grantee <> c.relowner`,
      `  LOOP`,
      `    EXECUTE pg_catalog.format('REVOKE ALL ON TABLE %s FROM %s', ${
        literal(target)
      },`,
      `      CASE WHEN grantee = 0 THEN 'PUBLIC'`,
      `           ELSE pg_catalog.quote_ident(pg_catalog.pg_get_userbyid(grantee)) END);`,
      `  END LOOP;`,
      `END IF;`,
    );
  }
  lines.push(`CREATE TABLE IF NOT EXISTS ${target} (${spec.columns});`);
  if (spec.scopedKey !== undefined) {
    for (const c of spec.scopedKey) splitTableName(c); // plain names only
    const key = ["scope", ...spec.scopedKey].join(", ");
    lines.push(
      `ALTER TABLE ${target} ADD COLUMN IF NOT EXISTS scope text NOT NULL DEFAULT pg_catalog.current_schema();`,
      `SELECT conname INTO pk FROM pg_catalog.pg_constraint`,
      ` WHERE conrelid = ${literal(target)}::regclass AND contype = 'p'`,
      `   AND pg_catalog.pg_get_constraintdef(oid) <> ${
        literal(`PRIMARY KEY (${key})`)
      };`,
      `IF pk IS NOT NULL THEN`,
      `  EXECUTE pg_catalog.format('ALTER TABLE %s DROP CONSTRAINT %I', ${
        literal(target)
      }, pk);`,
      `  ALTER TABLE ${target} ADD PRIMARY KEY (${key});`,
      `END IF;`,
    );
  }
  return `DO $goatkit$
DECLARE
  old regclass;
  grantee oid;
  pk name;
BEGIN
  ${lines.join("\n  ")}
END
$goatkit$`;
}

/**
 * Creates the host table `spec.table` if it does not exist (and its schema
 * when it is {@linkcode HOST_SCHEMA}), moving the old-layout table into place
 * when there is one; see the module doc. Safe to run concurrently from
 * several hosts. Callers cache the promise and forget it when it fails.
 *
 * @example
 * ```ts ignore
 * import { ensureHostTable } from "./host_schema.ts";
 * await ensureHostTable(pool, {
 *   table: "goatkit.plugin_state",
 *   columns: "name text PRIMARY KEY, enabled boolean NOT NULL",
 *   legacy: "goatkit_plugin_state",
 * });
 * ```
 */
export async function ensureHostTable(
  client: HostTableClient,
  spec: HostTableSpec,
): Promise<void> {
  await client.query(hostTableSql(spec));
}

/**
 * Remembers one {@linkcode ensureHostTable} per store: the first caller
 * starts it, later callers wait for the same promise, and a failure is
 * forgotten so that the next call tries again (a rejected promise is never
 * kept).
 *
 * @example
 * ```ts ignore
 * import { HostTable } from "./host_schema.ts";
 * const table = new HostTable(pool, { table: "goatkit.t", columns: "x int" });
 * await table.ready();
 * ```
 */
export class HostTable {
  #client: HostTableClient;
  #spec: HostTableSpec;
  #ready: Promise<void> | undefined;
  /** The quoted, qualified table name for SQL text. */
  readonly sqlName: string;

  /** Checks the names now; nothing is sent until {@linkcode HostTable.ready}. */
  constructor(client: HostTableClient, spec: HostTableSpec) {
    hostTableSql(spec);
    this.#client = client;
    this.#spec = spec;
    this.sqlName = qualifiedTable(spec.table);
  }

  /** Resolves once the table exists. */
  ready(): Promise<void> {
    this.#ready ??= ensureHostTable(this.#client, this.#spec).catch((e) => {
      this.#ready = undefined;
      throw e;
    });
    return this.#ready;
  }
}
