/**
 * The one SQL scanner the host's statement checks share: it splits a
 * statement into code and the regions where SQL keywords mean nothing —
 * comments, string literals, quoted identifiers and dollar-quoted strings —
 * so each check can skip or blank them the same way.
 *
 * | Kind | Starts with | Ends with | Notes |
 * |---|---|---|---|
 * | `line-comment` | `--` | before the next `\n` (the `\n` is code) | |
 * | `block-comment` | `/*` | the matching `*\/` | nested, as PostgreSQL does |
 * | `string` | `'` | the next lone `'` | `''` is a quote inside; a backslash is an ordinary character, but escapes the next one in `E'…'` (an `E` or `e` that starts a word) |
 * | `quoted-identifier` | `"` | the next lone `"` | `""` is a quote inside; `identifier` holds the unquoted name |
 * | `dollar-string` | `$$` or `$tag$` not right after an identifier character | the same delimiter | `a$b$` is an identifier, as in PostgreSQL |
 * | `code` | anything else | the next start above | |
 *
 * An unterminated comment, literal or identifier runs to the end of the
 * text. It reads `E'…'` escapes and `$` inside identifiers as PostgreSQL
 * does (standard-conforming strings): where the scanner and the database
 * disagree on what is code, a check in front of the database could be led
 * to skip code. Callers use it for checks in front of the database, which
 * remains the enforcement, and to rewrite GoatFlow's `?` placeholders.
 *
 * It lives in `permissions/` because both the permission layer
 * (`sql_scope.ts`) and the services (`host/services/sql_guard.ts`) use it,
 * and `host/services/` may import `permissions/` but not the other way round.
 *
 * @module
 */

/** What a {@linkcode SqlToken} is. */
export type SqlTokenKind =
  | "code"
  | "line-comment"
  | "block-comment"
  | "string"
  | "quoted-identifier"
  | "dollar-string";

/**
 * One region of an SQL text: `sql.slice(start, end)`. Consecutive tokens
 * cover the text without gaps.
 *
 * @example
 * ```ts
 * import { type SqlToken } from "./sql_lexer.ts";
 * const t: SqlToken = { kind: "code", start: 0, end: 6 };
 * console.log(t.kind); // "code"
 * ```
 */
export interface SqlToken {
  /** What the region is. */
  kind: SqlTokenKind;
  /** Offset of its first character. */
  start: number;
  /** Offset just after its last character. */
  end: number;
  /** For `quoted-identifier`: the name without quotes, `""` unescaped. */
  identifier?: string;
}

/** The next place a non-code token may start. */
const SPECIAL_START = /--|\/\*|['"]|\$(?:[A-Za-z_][A-Za-z0-9_]*)?\$/g;
/** A character that continues an identifier (PostgreSQL allows `$`). */
const IDENT_CHAR = /[A-Za-z0-9_$\u0080-\uffff]/;
/** A dollar-quote delimiter (`$$`, `$tag$`) at a given offset. */
const DOLLAR_DELIMITER = /\$(?:[A-Za-z_][A-Za-z0-9_]*)?\$/y;

/**
 * Splits `sql` into {@linkcode SqlToken}s, lazily (a caller that only needs
 * the first words stops early). Code runs are as long as possible.
 *
 * @example
 * ```ts
 * import { scanSql } from "./sql_lexer.ts";
 * const kinds = [...scanSql("SELECT 'a' -- note\n")].map((t) => t.kind);
 * console.log(kinds); // ["code", "string", "code", "line-comment", "code"]
 * ```
 */
export function* scanSql(sql: string): Generator<SqlToken> {
  const n = sql.length;
  let i = 0;
  while (i < n) {
    SPECIAL_START.lastIndex = i;
    let special = SPECIAL_START.exec(sql);
    // `$tag$` right after an identifier character is part of the identifier.
    while (
      special && special[0][0] === "$" && special.index > 0 &&
      IDENT_CHAR.test(sql[special.index - 1]!)
    ) {
      SPECIAL_START.lastIndex = special.index + 1;
      special = SPECIAL_START.exec(sql);
    }
    const at = special ? special.index : n;
    if (at > i) {
      yield { kind: "code", start: i, end: at };
      i = at;
      if (i >= n) return;
    }
    const token = specialAt(sql, i);
    yield token;
    i = token.end;
  }
}

/** The comment, literal or identifier starting at `start`. */
function specialAt(sql: string, start: number): SqlToken {
  const n = sql.length;
  const c = sql[start];
  let i = start;
  if (c === "-") {
    const nl = sql.indexOf("\n", start);
    return { kind: "line-comment", start, end: nl < 0 ? n : nl };
  }
  if (c === "/") {
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
    return { kind: "block-comment", start, end: i };
  }
  if (c === "'") {
    // E'…' (e'…'): a backslash escapes the next character; the E must
    // start a word (`name'…'` is no escape string).
    const escapes = start > 0 && (sql[start - 1] === "E" ||
      sql[start - 1] === "e") &&
      !(start > 1 && IDENT_CHAR.test(sql[start - 2]!));
    i++;
    while (i < n) {
      if (escapes && sql[i] === "\\") i += 2;
      else if (sql[i] === "'" && sql[i + 1] === "'") i += 2;
      else if (sql[i] === "'") break;
      else i++;
    }
    return { kind: "string", start, end: Math.min(i + 1, n) };
  }
  if (c === '"') {
    let identifier = "";
    i++;
    while (i < n) {
      if (sql[i] === '"' && sql[i + 1] === '"') {
        identifier += '"';
        i += 2;
      } else if (sql[i] === '"') break;
      else identifier += sql[i++];
    }
    return {
      kind: "quoted-identifier",
      start,
      end: Math.min(i + 1, n),
      identifier,
    };
  }
  DOLLAR_DELIMITER.lastIndex = start;
  const delimiter = DOLLAR_DELIMITER.exec(sql)![0];
  const close = sql.indexOf(delimiter, start + delimiter.length);
  return {
    kind: "dollar-string",
    start,
    end: close < 0 ? n : close + delimiter.length,
  };
}
