/**
 * GoatFlow's `?` placeholders become PostgreSQL's `$n` only in SQL code:
 * never inside literals, quoted identifiers, dollar quotes or comments, and
 * not at all in statements that use `$n` already or pass no arguments.
 * (The end-to-end path, a WASM plugin's `db_query` with `?` against a real
 * PostgreSQL, is in `goatflow_compat_test.ts`.)
 */

import assert from "node:assert/strict";
import {
  toPgPlaceholders,
  usesDollarPlaceholders,
} from "../host/services/placeholders.ts";

const rewrite = (sql: string, args = 9) => toPgPlaceholders(sql, args).sql;

Deno.test("placeholders: every ? in code becomes $1..$n, in order", () => {
  assert.deepEqual(
    toPgPlaceholders("SELECT * FROM t WHERE a = ? AND b IN (?, ?)", 3),
    { sql: "SELECT * FROM t WHERE a = $1 AND b IN ($2, $3)", count: 3 },
  );
  assert.equal(
    rewrite("INSERT INTO t(a,b)VALUES(?,?)"),
    "INSERT INTO t(a,b)VALUES($1,$2)",
  );
  // Twelve placeholders: two-digit numbers.
  assert.equal(
    rewrite(Array(12).fill("?").join(",")),
    Array.from({ length: 12 }, (_, i) => `$${i + 1}`).join(","),
  );
});

Deno.test("placeholders: literals, identifiers, dollar quotes and comments keep their ?", () => {
  const cases: [string, string][] = [
    ["SELECT '?', ?", "SELECT '?', $1"],
    ["SELECT 'it''s ?', ?", "SELECT 'it''s ?', $1"],
    // E'' strings: a backslash escapes the quote, so the string goes on.
    ["SELECT E'a\\'?', ?", "SELECT E'a\\'?', $1"],
    ["SELECT e'\\\\', ?", "SELECT e'\\\\', $1"],
    // A word ending in e before a quote is not an E'' string.
    ["SELECT some'\\', ?", "SELECT some'\\', $1"],
    [
      'SELECT "col?" FROM "we""ird?" WHERE x = ?',
      'SELECT "col?" FROM "we""ird?" WHERE x = $1',
    ],
    ["SELECT $$ ? $$, ?", "SELECT $$ ? $$, $1"],
    ["SELECT $fn$ it's ? $x$ ? $fn$, ?", "SELECT $fn$ it's ? $x$ ? $fn$, $1"],
    ["SELECT ? -- why?\n, ?", "SELECT $1 -- why?\n, $2"],
    [
      "SELECT /* a ? /* nested ? */ still ? */ ?",
      "SELECT /* a ? /* nested ? */ still ? */ $1",
    ],
    // An identifier with a $ in it is no dollar quote.
    ["SELECT a$b$ FROM t WHERE c = ?", "SELECT a$b$ FROM t WHERE c = $1"],
    // Unterminated regions run to the end.
    ["SELECT ? /* open ?", "SELECT $1 /* open ?"],
    ["SELECT ?, 'open ?", "SELECT $1, 'open ?"],
  ];
  for (const [sql, want] of cases) assert.equal(rewrite(sql), want, sql);
});

Deno.test("placeholders: statements with $n or without arguments are left alone", () => {
  // jsonb operators are ? too: with $n placeholders they stay operators.
  const pg = "SELECT data ? 'k', data ?| array['a'] FROM t WHERE id = $1";
  assert.deepEqual(toPgPlaceholders(pg, 1), { sql: pg, count: 0 });
  assert.equal(usesDollarPlaceholders(pg), true);
  // No arguments: a ? can only be an operator.
  const op = "SELECT '{\"a\":1}'::jsonb ? 'a'";
  assert.deepEqual(toPgPlaceholders(op, 0), { sql: op, count: 0 });
  // $1 inside a literal or comment is no placeholder.
  assert.equal(usesDollarPlaceholders("SELECT '$1' -- $2\n, ?"), false);
  assert.equal(rewrite("SELECT '$1' -- $2\n, ?"), "SELECT '$1' -- $2\n, $1");
  // A dollar-quoted body that mentions $1 is no placeholder either.
  assert.equal(usesDollarPlaceholders("SELECT $q$ $1 $q$, ?"), false);
});

Deno.test("the one SQL scanner reads E'…' escapes and $ in identifiers as PostgreSQL does, so a table check cannot be led to skip code", async () => {
  const { qualifiedTables } = await import("../permissions/sql_scope.ts");
  // E'\'' is one quote: what follows is code, and its table is seen.
  assert.deepEqual(
    qualifiedTables(
      "SELECT E'\\'', (SELECT s FROM other.secrets) -- '",
    ).map((t) => `${t.schema}.${t.table}`),
    ["other.secrets"],
  );
  // foo$a$ is an identifier, not the start of a dollar quote.
  assert.deepEqual(
    qualifiedTables(
      "SELECT foo$a$, (SELECT s FROM other.secrets), x$a$ FROM t",
    ).map((t) => `${t.schema}.${t.table}`),
    ["other.secrets"],
  );
  // The placeholder rewrite reads them the same way.
  assert.equal(rewrite("SELECT E'it\\'s ?', ?"), "SELECT E'it\\'s ?', $1");
  assert.equal(rewrite("SELECT a$b$, ? FROM t"), "SELECT a$b$, $1 FROM t");
  // A plain '…' keeps a backslash as an ordinary character.
  assert.equal(rewrite("SELECT '\\', ?"), "SELECT '\\', $1");
});
