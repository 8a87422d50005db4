import assert from "node:assert/strict";
import { BoundedCache } from "../host/model/bounded_cache.ts";

Deno.test("BoundedCache: builds once per key, never holds more than its bound", () => {
  const built: string[] = [];
  const cache = new BoundedCache<string, number>(3);
  const len = (s: string) => {
    built.push(s);
    return s.length;
  };
  assert.equal(cache.get("a", len), 1);
  assert.equal(cache.get("a", len), 1);
  assert.deepEqual(built, ["a"]);
  for (let i = 0; i < 100; i++) {
    cache.get(`k${i}`, len);
    assert.ok(cache.size <= 3, `size ${cache.size}`);
  }
  // Dropped when full: "a" is built again.
  cache.get("a", len);
  assert.equal(built.filter((s) => s === "a").length, 2);
});
