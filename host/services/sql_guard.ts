/**
 * The statement check run before a plugin's SQL reaches the database.
 *
 * PostgreSQL checks `SET ROLE` / `RESET ROLE` against the *session* user, not
 * the current role, so where a plugin's statement runs under `SET LOCAL ROLE`
 * on the host's connection (PGlite, and PostgreSQL when it refuses the
 * plugin roles' login), a `RESET ROLE` (or a `DO` block, a function of its
 * own, or `set_config('role', …)`) would get the host's privileges back; on
 * connections logged in as the plugin's role it has nothing to return to.
 * The host therefore refuses, before sending, statements that start with
 * transaction control, session settings, `LISTEN`/`NOTIFY` or procedural
 * code, and any text
 * mentioning a function whose effects outlive the plugin's transaction
 * (`set_config`, advisory locks, `pg_notify`, `pg_cancel_backend`,
 * `pg_terminate_backend`, large objects, `dblink`, …). One statement per call
 * is enforced by the database itself: plugin SQL always goes through the
 * extended query protocol, which rejects several commands in one string.
 *
 * This is the first wall, never the only one: text can be spelled in ways a
 * check cannot follow (`U&"…" UESCAPE`, query text built at run time and run
 * by `query_to_xml`). The database refuses the same functions to plugin
 * roles (`hardenDatabase` revokes them from PUBLIC), and what a plugin's
 * statement leaves on its session (`LISTEN`, settings, session locks) is
 * undone or dies with the connection (see `database.ts`).
 *
 * @module
 */

import { scanSql } from "../../permissions/sql_lexer.ts";
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
  "rule",
]);

/**
 * Functions a plugin statement may not mention (whole words, any case,
 * anywhere in the text — also inside literals, which `query_to_xml` could
 * run). The database refuses them too (see `SESSION_FUNCTIONS` in
 * `permissions/pg_privileges.ts`).
 */
const REFUSED_FUNCTIONS =
  /\b(?:set_config|pg_notify|pg_(?:try_)?advisory_[a-z_]*|pg_cancel_backend|pg_terminate_backend|pg_logical_emit_message|setseed|dblink[a-z_]*|lo_(?:import|export|create|creat|unlink|open|close|put|get|from_bytea|truncate|truncate64|lseek|lseek64|tell|tell64)|loread|lowrite)\b/i;

/** The host's code for a statement it refused to send. */
export const STATEMENT_REFUSED_CODE = "GK001";

/** A keyword as the guard reads it (at most 64 letters at a time). */
const WORD = /[A-Za-z_]{1,64}/y;

/**
 * Returns the leading keywords of `sql` (lower case), skipping whitespace,
 * comments and opening parentheses; stops at anything else (a literal, a
 * quoted identifier, a digit, punctuation). Comments are found by the shared
 * {@linkcode scanSql}.
 *
 * @example
 * ```ts
 * import { leadingWords } from "./sql_guard.ts";
 * leadingWords("-- why\n(SELECT 1"); // ["select"]
 * leadingWords("create or replace function f()"); // ["create", "or", "replace", "function"]
 * ```
 */
export function leadingWords(sql: string, count = 4): string[] {
  const words: string[] = [];
  const full = () => !(words.length < count);
  if (full()) return words;
  for (const t of scanSql(sql)) {
    if (t.kind === "line-comment" || t.kind === "block-comment") continue;
    if (t.kind !== "code") return words;
    let i = t.start;
    while (i < t.end) {
      const c = sql[i]!;
      if (c === "(" || /\s/.test(c)) {
        i++;
        continue;
      }
      WORD.lastIndex = i;
      const m = WORD.exec(sql);
      if (!m) return words;
      words.push(m[0].toLowerCase());
      if (full()) return words;
      i += m[0].length;
    }
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
  const fn = REFUSED_FUNCTIONS.exec(sql);
  if (fn) refuse(`${fn[0].toLowerCase()} is not allowed`);
  if (/u&["']/i.test(sql) && /\\[0-9a-f]{4}|\\\+[0-9a-f]{6}/i.test(sql)) {
    refuse("Unicode escapes in identifiers or strings are not allowed");
  }
}
