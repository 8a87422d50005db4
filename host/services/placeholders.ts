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

/** What {@linkcode toPgPlaceholders} returns. */
export interface PlaceholderRewrite {
  /** The statement, with `$1…$n` for each `?` in code. */
  sql: string;
  /** How many `?` were rewritten. */
  count: number;
}

const IDENT_CHAR = /[A-Za-z0-9_$\u0080-\uffff]/;
const DOLLAR_TAG = /\$(?:[A-Za-z_\u0080-\uffff][A-Za-z0-9_\u0080-\uffff]*)?\$/y;

/**
 * Calls `onCode(offset)` for every character of `sql` that is SQL code (not
 * inside a literal, quoted identifier, dollar quote or comment).
 */
function forEachCodeChar(sql: string, onCode: (i: number) => void): void {
  const n = sql.length;
  let i = 0;
  while (i < n) {
    const c = sql[i]!;
    const next = sql[i + 1];
    const prevIdent = i > 0 && IDENT_CHAR.test(sql[i - 1]!);
    if (c === "-" && next === "-") {
      const end = sql.indexOf("\n", i + 2);
      i = end === -1 ? n : end;
    } else if (c === "/" && next === "*") {
      let depth = 1;
      i += 2;
      while (i < n && depth > 0) {
        if (sql[i] === "/" && sql[i + 1] === "*") {
          depth++;
          i += 2;
        } else if (sql[i] === "*" && sql[i + 1] === "/") {
          depth--;
          i += 2;
        } else i++;
      }
    } else if (c === "'") {
      // E'…' (and e'…'): backslash escapes; the E must start a word.
      const escapes = i > 0 && /[Ee]/.test(sql[i - 1]!) &&
        !(i > 1 && IDENT_CHAR.test(sql[i - 2]!));
      i++;
      while (i < n) {
        if (escapes && sql[i] === "\\") i += 2;
        else if (sql[i] === "'" && sql[i + 1] === "'") i += 2;
        else if (sql[i] === "'") {
          i++;
          break;
        } else i++;
      }
    } else if (c === '"') {
      i++;
      while (i < n) {
        if (sql[i] === '"' && sql[i + 1] === '"') i += 2;
        else if (sql[i] === '"') {
          i++;
          break;
        } else i++;
      }
    } else if (c === "$" && !prevIdent) {
      DOLLAR_TAG.lastIndex = i;
      const m = DOLLAR_TAG.exec(sql);
      if (m) {
        const end = sql.indexOf(m[0], i + m[0].length);
        i = end === -1 ? n : end + m[0].length;
      } else {
        onCode(i);
        i++;
      }
    } else {
      onCode(i);
      i++;
    }
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
