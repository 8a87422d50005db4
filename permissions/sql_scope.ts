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

/** A schema-qualified table reference found in a statement. */
export interface TableRef {
  /** Lower-case schema. */
  schema: string;
  /** Lower-case table. */
  table: string;
  /** Whether the statement writes it (INSERT INTO, UPDATE, DELETE FROM, TRUNCATE, MERGE INTO). */
  write: boolean;
}

/** Replaces string literals, quoted identifiers and comments with spaces (quoted identifiers unquoted). */
function stripSql(sql: string): string {
  let out = "";
  let i = 0;
  while (i < sql.length) {
    const c = sql[i]!;
    const next = sql[i + 1];
    if (c === "-" && next === "-") {
      while (i < sql.length && sql[i] !== "\n") i++;
      out += " ";
    } else if (c === "/" && next === "*") {
      let depth = 1;
      i += 2;
      while (i < sql.length && depth > 0) {
        if (sql[i] === "/" && sql[i + 1] === "*") {
          [depth, i] = [depth + 1, i + 2];
        } else if (sql[i] === "*" && sql[i + 1] === "/") {
          [depth, i] = [depth - 1, i + 2];
        } else i++;
      }
      out += " ";
    } else if (c === "'") {
      i++;
      while (i < sql.length) {
        if (sql[i] === "'" && sql[i + 1] === "'") i += 2;
        else if (sql[i] === "'") break;
        else i++;
      }
      i++;
      out += " '' ";
    } else if (c === '"') {
      let ident = "";
      i++;
      while (i < sql.length) {
        if (sql[i] === '"' && sql[i + 1] === '"') {
          [ident, i] = [ident + '"', i + 2];
        } else if (sql[i] === '"') break;
        else ident += sql[i++];
      }
      i++;
      // Keep simple identifiers (the common case) so "public"."t" is seen.
      out += /^[A-Za-z_][A-Za-z0-9_$]*$/.test(ident)
        ? ident.toLowerCase()
        : " _quoted_ ";
    } else if (c === "$") {
      const m = /^\$([A-Za-z_][A-Za-z0-9_]*)?\$/.exec(sql.slice(i));
      if (m) {
        const end = sql.indexOf(m[0], i + m[0].length);
        i = end < 0 ? sql.length : end + m[0].length;
        out += " '' ";
      } else {
        out += c;
        i++;
      }
    } else {
      out += c;
      i++;
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
