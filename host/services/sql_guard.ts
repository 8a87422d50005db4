/**
 * The statement check run before a plugin's SQL reaches the database.
 *
 * PostgreSQL checks `SET ROLE` / `RESET ROLE` against the *session* user, not
 * the current role, so a plugin that runs `RESET ROLE` (or a `DO` block, a
 * function of its own, or `set_config('role', …)`) inside the host's
 * transaction would get the host's privileges back. The host therefore
 * refuses, before sending, statements that start with transaction control,
 * session settings or procedural code, and any text mentioning `set_config`
 * (which the database setup also revokes from PUBLIC). One statement per call
 * is enforced by the database itself: plugin SQL always goes through the
 * extended query protocol, which rejects several commands in one string.
 *
 * @module
 */

import { DbQueryError } from "./errors.ts";

/** First keyword(s) a plugin statement may not start with. */
const REFUSED_FIRST_WORDS = new Set([
  "set",
  "reset",
  "begin",
  "start",
  "commit",
  "end",
  "rollback",
  "abort",
  "savepoint",
  "release",
  "prepare",
  "do",
  "discard",
  "load",
  "listen",
  "unlisten",
  "copy",
  "checkpoint",
  "vacuum",
  "cluster",
  "reindex",
  "grant",
  "revoke",
  "reassign",
  "security",
  "import",
  "declare",
  "fetch",
  "move",
  "close",
  "notify",
]);

/** Objects a plugin may not create, alter or drop. */
const REFUSED_OBJECTS = new Set([
  "function",
  "procedure",
  "language",
  "extension",
  "role",
  "user",
  "group",
  "database",
  "tablespace",
  "subscription",
  "publication",
  "server",
  "foreign",
  "system",
  "default",
  "event",
  "owned",
  "trusted",
  "procedural",
  "conversion",
  "cast",
  "aggregate",
  "operator",
  "transform",
  "access",
  "policy",
]);

/** The host's code for a statement it refused to send. */
export const STATEMENT_REFUSED_CODE = "GK001";

/**
 * Returns the leading keywords of `sql` (lower case), skipping whitespace,
 * comments and opening parentheses.
 */
export function leadingWords(sql: string, count = 4): string[] {
  let i = 0;
  const n = sql.length;
  const skip = () => {
    for (;;) {
      while (i < n && (/\s/.test(sql[i]) || sql[i] === "(")) i++;
      if (sql.startsWith("--", i)) {
        const nl = sql.indexOf("\n", i);
        i = nl < 0 ? n : nl + 1;
      } else if (sql.startsWith("/*", i)) {
        let depth = 0;
        while (i < n) {
          if (sql.startsWith("/*", i)) {
            depth++;
            i += 2;
          } else if (sql.startsWith("*/", i)) {
            depth--;
            i += 2;
            if (depth === 0) break;
          } else i++;
        }
      } else return;
    }
  };
  const words: string[] = [];
  while (words.length < count) {
    skip();
    const m = /^[A-Za-z_]+/.exec(sql.slice(i, i + 64));
    if (!m) break;
    words.push(m[0].toLowerCase());
    i += m[0].length;
  }
  return words;
}

/**
 * Throws {@linkcode DbQueryError} (code `GK001`) when `sql` is a statement a
 * plugin may not run (see the module doc).
 *
 * @example
 * ```ts
 * import { checkPluginStatement } from "./sql_guard.ts";
 * checkPluginStatement("hello", "SELECT 1"); // fine
 * try {
 *   checkPluginStatement("hello", "RESET ROLE");
 * } catch (e) {
 *   console.log((e as Error).name); // "DbQueryError"
 * }
 * ```
 */
export function checkPluginStatement(plugin: string, sql: string): void {
  const words = leadingWords(sql);
  const [first, ...rest] = words;
  const refuse = (why: string) => {
    throw new DbQueryError(
      plugin,
      STATEMENT_REFUSED_CODE,
      `statement refused by the host: ${why}`,
    );
  };
  if (first !== undefined && REFUSED_FIRST_WORDS.has(first)) {
    refuse(`"${first.toUpperCase()}" statements are not allowed`);
  }
  if (
    first === "create" || first === "alter" || first === "drop" ||
    first === "comment"
  ) {
    const objects = rest.filter((w) =>
      w !== "or" && w !== "replace" && w !== "on"
    );
    if (objects[0] !== undefined && REFUSED_OBJECTS.has(objects[0])) {
      refuse(
        `"${first.toUpperCase()} ${
          objects[0].toUpperCase()
        }" statements are not allowed`,
      );
    }
  }
  if (/set_config/i.test(sql)) refuse("set_config is not allowed");
  if (/u&["']/i.test(sql) && /\\[0-9a-f]{4}|\\\+[0-9a-f]{6}/i.test(sql)) {
    refuse("Unicode escapes in identifiers or strings are not allowed");
  }
}
