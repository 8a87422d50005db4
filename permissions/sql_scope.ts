/**
 * A cheap, conservative look at the tables an SQL statement names, so the
 * guarded HostAPI can refuse an obviously out-of-scope statement before it
 * reaches the database (with an audit entry naming the table). It is not
 * the enforcement: the database refuses anything the plugin's role has no
 * privilege for. Only schema-qualified names are judged, because an
 * unqualified name may be one of the plugin's own tables (its schema comes
 * first on the `search_path`).
 *
 * @module
 */

import { scanSql } from "./sql_lexer.ts";

/** A schema-qualified table reference found in a statement. */
export interface TableRef {
  /** Lower-case schema. */
  schema: string;
  /** Lower-case table. */
  table: string;
  /** Whether the statement writes it (INSERT INTO, UPDATE, DELETE FROM, TRUNCATE, MERGE INTO). */
  write: boolean;
}

/**
 * Replaces string literals, dollar-quoted strings and comments with spaces
 * (quoted identifiers unquoted), using the shared {@linkcode scanSql}.
 */
function stripSql(sql: string): string {
  let out = "";
  for (const t of scanSql(sql)) {
    switch (t.kind) {
      case "code":
        out += sql.slice(t.start, t.end);
        break;
      case "line-comment":
      case "block-comment":
        out += " ";
        break;
      case "string":
      case "dollar-string":
        out += " '' ";
        break;
      case "quoted-identifier": {
        // Keep simple identifiers (the common case) so "public"."t" is seen.
        const name = t.identifier ?? "";
        out += /^[A-Za-z_][A-Za-z0-9_$]*$/.test(name)
          ? name.toLowerCase()
          : " _quoted_ ";
        break;
      }
    }
  }
  return out;
}

const REF_REGEXP =
  /\b(from|join|into|update|table|truncate|using)\s+(?:only\s+)?([a-z_][a-z0-9_$]*)\s*\.\s*([a-z_][a-z0-9_$]*)/gi;

/**
 * The schema-qualified tables a statement names after `FROM`, `JOIN`,
 * `INTO`, `UPDATE`, `TABLE`, `TRUNCATE` or `USING`, outside literals and
 * comments.
 *
 * @example
 * ```ts
 * import { qualifiedTables } from "./sql_scope.ts";
 * qualifiedTables("INSERT INTO public.t SELECT * FROM plugin_x.y WHERE a = 'FROM z.w'");
 * // [{ schema: "public", table: "t", write: true }, { schema: "plugin_x", table: "y", write: false }]
 * ```
 */
export function qualifiedTables(sql: string): TableRef[] {
  const text = stripSql(sql);
  const out: TableRef[] = [];
  const firstWord = /^\s*(\w+)/.exec(text)?.[1]?.toLowerCase();
  for (const m of text.matchAll(REF_REGEXP)) {
    const kw = m[1]!.toLowerCase();
    const before = text.slice(0, m.index).trimEnd().toLowerCase();
    const write = kw === "into" && /\b(insert|merge)$/.test(before) ||
      kw === "update" || kw === "truncate" ||
      (kw === "from" && /\bdelete$/.test(before)) ||
      (kw === "table" && firstWord === "truncate");
    out.push({
      schema: m[2]!.toLowerCase(),
      table: m[3]!.toLowerCase(),
      write,
    });
  }
  return out;
}
