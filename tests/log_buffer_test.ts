import assert from "node:assert/strict";
import { LogBuffer } from "../mod.ts";

Deno.test("LogBuffer returns entries newest first", () => {
  const logs = new LogBuffer();
  logs.log("p", "info", "first");
  logs.log("p", "error", "second");
  const all = logs.getAll();
  assert.equal(all.length, 2);
  assert.equal(all[0]?.message, "second");
  assert.equal(all[0]?.level, "error");
});

Deno.test("LogBuffer drops the oldest entries beyond its capacity", () => {
  const logs = new LogBuffer({ capacity: 3 });
  for (const m of ["1", "2", "3", "4"]) logs.log("p", "info", m);
  assert.deepEqual(logs.getAll().map((e) => e.message), ["4", "3", "2"]);
  assert.equal(logs.count(), 3);
});

Deno.test("LogBuffer filters by plugin, minimum level and count", () => {
  const logs = new LogBuffer();
  logs.log("a", "debug", "a-debug");
  logs.log("b", "warn", "b-warn");
  logs.log("a", "error", "a-error");
  logs.log("a", "info", "a-info");
  logs.log("c", "info", "c-info");
  assert.deepEqual(logs.getByPlugin("a").map((e) => e.message), [
    "a-info",
    "a-error",
    "a-debug",
  ]);
  assert.deepEqual(logs.getByLevel("warn").map((e) => e.message), [
    "a-error",
    "b-warn",
  ]);
  assert.equal(logs.getByLevel("error").length, 1);
  assert.equal(logs.getRecent(3).length, 3);
  assert.equal(logs.getRecent(100).length, 5);
  assert.equal(logs.getRecent(-1).length, 0);
  assert.deepEqual(
    logs.query({ plugin: "a", minLevel: "info", limit: 1 }).map((e) =>
      e.message
    ),
    ["a-info"],
  );
  assert.deepEqual(logs.getByPlugin("nobody"), []);
});

Deno.test("LogBuffer.clear() empties it", () => {
  const logs = new LogBuffer();
  logs.log("p", "info", "x");
  logs.log("p", "info", "y");
  assert.equal(logs.count(), 2);
  logs.clear();
  assert.equal(logs.count(), 0);
  assert.deepEqual(logs.getAll(), []);
  logs.log("p", "info", "z");
  assert.deepEqual(logs.getAll().map((e) => e.message), ["z"]);
});

Deno.test("LogBuffer stamps entries with the current time and keeps fields", () => {
  const logs = new LogBuffer();
  const before = Date.now();
  logs.log("p", "warn", "x", { code: 7 });
  const after = Date.now();
  const e = logs.getAll()[0]!;
  const t = Date.parse(e.timestamp);
  assert.ok(t >= before && t <= after);
  assert.deepEqual(e.fields, { code: 7 });
});

Deno.test("LogBuffer uses 1000 entries for a non-positive capacity", () => {
  assert.equal(new LogBuffer({ capacity: 0 }).capacity, 1000);
  assert.equal(new LogBuffer({ capacity: -5 }).capacity, 1000);
});

Deno.test("LogBuffer passes each entry to onEntry", () => {
  const seen: string[] = [];
  const logs = new LogBuffer({ onEntry: (e) => seen.push(e.message) });
  logs.log("p", "info", "hello");
  assert.deepEqual(seen, ["hello"]);
});
