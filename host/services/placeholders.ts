/**
 * GoatFlow's `?` placeholders for PostgreSQL: GoatFlow's host converts
 * `SELECT … WHERE id = ?` to `$1` before it reaches PostgreSQL, and its
 * plugins rely on that. {@linkcode toPgPlaceholders} does the same, but
 * only in SQL code: a `?` inside a string literal (`'…'`, `E'…'` with
 * backslash escapes), a quoted identifier (`"…"`), a dollar-quoted string
 * (`$$…$$`, `$tag$…$tag$`) or a comment (`-- …`, nested `/* … *\/`) is left
 * alone.
 *
 * A statement is left unchanged when it passes no arguments (then a `?` can
 * only be an operator, such as `jsonb ? 'key'`) or already uses PostgreSQL's
 * own `$1…` placeholders (then `?`, `?|` and `?&` are its operators).
 *
 * @module
 */

import { scanSql } from "../../permissions/sql_lexer.ts";

/** What {@linkcode toPgPlaceholders} returns. */
export interface PlaceholderRewrite {
  /** The statement, with `$1…$n` for each `?` in code. */
  sql: string;
  /** How many `?` were rewritten. */
  count: number;
}

const IDENT_CHAR = /[A-Za-z0-9_$\u0080-\uffff]/;

/**
 * Calls `onCode(offset)` for every character of `sql` that is SQL code (not
 * inside a literal, quoted identifier, dollar quote or comment), as the
 * host's one SQL scanner ({@linkcode scanSql}) reads it: the rewrite and
 * the statement checks see the same code.
 */
function forEachCodeChar(sql: string, onCode: (i: number) => void): void {
  for (const t of scanSql(sql)) {
    if (t.kind !== "code") continue;
    for (let i = t.start; i < t.end; i++) onCode(i);
  }
}

/**
 * Whether `sql` uses PostgreSQL's `$1…` placeholders in code.
 *
 * @example
 * ```ts
 * import { usesDollarPlaceholders } from "./placeholders.ts";
 * usesDollarPlaceholders("SELECT $1::int"); // true
 * usesDollarPlaceholders("SELECT '$1', ?"); // false
 * ```
 */
export function usesDollarPlaceholders(sql: string): boolean {
  let found = false;
  forEachCodeChar(sql, (i) => {
    if (
      !found && sql[i] === "$" && /[0-9]/.test(sql[i + 1] ?? "") &&
      !(i > 0 && IDENT_CHAR.test(sql[i - 1]!))
    ) {
      found = true;
    }
  });
  return found;
}

/**
 * Rewrites GoatFlow's `?` placeholders to `$1…$n` (see the module doc);
 * `argCount` is how many arguments the statement passes.
 *
 * @example
 * ```ts
 * import { toPgPlaceholders } from "./placeholders.ts";
 * toPgPlaceholders("SELECT * FROM t WHERE a = ? AND b = '?'", 1).sql;
 * // "SELECT * FROM t WHERE a = $1 AND b = '?'"
 * toPgPlaceholders("SELECT data ? 'k' FROM t", 0).sql; // unchanged
 * ```
 */
export function toPgPlaceholders(
  sql: string,
  argCount: number,
): PlaceholderRewrite {
  if (argCount === 0 || !sql.includes("?") || usesDollarPlaceholders(sql)) {
    return { sql, count: 0 };
  }
  const at: number[] = [];
  forEachCodeChar(sql, (i) => {
    if (sql[i] === "?") at.push(i);
  });
  if (at.length === 0) return { sql, count: 0 };
  let out = "";
  let last = 0;
  at.forEach((pos, k) => {
    out += sql.slice(last, pos) + `$${k + 1}`;
    last = pos + 1;
  });
  return { sql: out + sql.slice(last), count: at.length };
}
