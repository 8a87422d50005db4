// Cache service against Deno KV (a real file in a temp dir) and the real
// Redis on 127.0.0.1:6379 (keys under a prefix unique to this run, removed at
// the end).

import assert from "node:assert/strict";
import { Redis } from "ioredis";
import {
  CacheLimitError,
  type CacheStore,
  KvCacheStore,
  RedisCacheStore,
} from "../host/services/mod.ts";

const REDIS_URL = Deno.env.get("GK_TEST_REDIS_URL") ?? "redis://127.0.0.1:6379";
const RUN = `gktest:${crypto.randomUUID().slice(0, 8)}:`;

const enc = (s: string) => new TextEncoder().encode(s);

async function waitUntilGone(
  cache: CacheStore,
  ns: string,
  key: string,
): Promise<number> {
  // TTL 1 s: poll until the entry reads as absent; never longer than 10 s.
  const started = Date.now();
  while (Date.now() - started < 10_000) {
    if (await cache.get(ns, key) === null) return Date.now() - started;
    await new Promise((r) => setTimeout(r, 100));
  }
  return -1;
}

async function sharedSuite(t: Deno.TestContext, cache: CacheStore) {
  await t.step("namespacing: a plugin cannot read another's key", async () => {
    await cache.set("plugin-a", "secret", enc("a's value"), 0);
    assert.deepEqual(await cache.get("plugin-a", "secret"), enc("a's value"));
    assert.equal(await cache.get("plugin-b", "secret"), null);
    // Colons in keys cannot reach into another namespace.
    await cache.set("plugin-b", "x:secret", enc("b"), 0);
    assert.deepEqual(await cache.get("plugin-a", "secret"), enc("a's value"));
    await assert.rejects(cache.get("plugin-b:x", "secret"), TypeError);
    await cache.delete("plugin-b", "secret"); // absent is fine
    assert.deepEqual(await cache.get("plugin-a", "secret"), enc("a's value"));
    await cache.delete("plugin-a", "secret");
    assert.equal(await cache.get("plugin-a", "secret"), null);
  });

  await t.step("values round-trip byte-exact", async () => {
    const all = Uint8Array.from({ length: 256 }, (_, i) => i);
    await cache.set("p", "all", all, 0);
    assert.deepEqual(await cache.get("p", "all"), all);
    await cache.set("p", "empty", new Uint8Array(0), 0);
    const empty = await cache.get("p", "empty");
    assert.ok(empty instanceof Uint8Array);
    assert.equal(empty.length, 0);
    // JSON-looking and invalid UTF-8 bytes stay as they are.
    const tricky = new Uint8Array([0x22, 0x41, 0x22, 0xff, 0xfe, 0x00]);
    await cache.set("p", "tricky", tricky, 0);
    assert.deepEqual(await cache.get("p", "tricky"), tricky);
    // A view into a bigger buffer stores only its own bytes.
    const view = new Uint8Array([9, 8, 7, 6, 5]).subarray(1, 3);
    await cache.set("p", "view", view, 0);
    assert.deepEqual(await cache.get("p", "view"), new Uint8Array([8, 7]));
    // Largest allowed value (1 MiB), split into chunks on KV.
    const big = new Uint8Array(1024 * 1024);
    crypto.getRandomValues(big.subarray(0, 65536));
    big.set(big.subarray(0, 65536), 1024 * 1024 - 65536);
    await cache.set("p", "big", big, 0);
    assert.deepEqual(await cache.get("p", "big"), big);
    // Overwrite a big value with a small one and back.
    await cache.set("p", "big", enc("small"), 0);
    assert.deepEqual(await cache.get("p", "big"), enc("small"));
    for (const k of ["all", "empty", "tricky", "view", "big"]) {
      await cache.delete("p", k);
    }
  });

  await t.step("TTL is honoured on read; 0 means no expiry", async () => {
    await cache.set("p", "short", enc("soon gone"), 1);
    await cache.set("p", "forever", enc("stays"), 0);
    assert.deepEqual(await cache.get("p", "short"), enc("soon gone"));
    const after = await waitUntilGone(cache, "p", "short");
    assert.ok(after >= 0, "the entry expired");
    assert.deepEqual(await cache.get("p", "forever"), enc("stays"));
    await cache.delete("p", "forever");
    await assert.rejects(cache.set("p", "bad", enc("x"), -1), RangeError);
  });

  await t.step("key and value limits", async () => {
    await cache.set("p", "k".repeat(512), enc("ok"), 0);
    await cache.delete("p", "k".repeat(512));
    const e = await cache.set("p", "k".repeat(513), enc("x"), 0).then(
      () => null,
      (e) => e,
    );
    assert.ok(e instanceof CacheLimitError && e.what === "key", String(e));
    await assert.rejects(cache.get("p", "é".repeat(300)), CacheLimitError); // 600 bytes
    const v = await cache.set("p", "v", new Uint8Array(1024 * 1024 + 1), 0)
      .then(
        () => null,
        (e) => e,
      );
    assert.ok(v instanceof CacheLimitError && v.what === "value", String(v));
    assert.match(v.message, /1048577 bytes exceeds the limit of 1048576 bytes/);
  });
}

Deno.test("cache: Deno KV file", async (t) => {
  const dir = await Deno.makeTempDir();
  const cache = new KvCacheStore({ path: `${dir}/sub/cache.kv` });
  try {
    await sharedSuite(t, cache);
    await t.step(
      "the KV file is in the data directory and persists",
      async () => {
        await cache.set("p", "kept", enc("v"), 0);
        await cache.close();
        const again = new KvCacheStore({ path: `${dir}/sub/cache.kv` });
        assert.deepEqual(await again.get("p", "kept"), enc("v"));
        await again.close();
      },
    );
    await t.step("configurable limits", async () => {
      const small = new KvCacheStore({ maxKeyBytes: 4, maxValueBytes: 2 });
      await small.set("p", "abcd", new Uint8Array(2), 0);
      await assert.rejects(
        small.set("p", "abcde", new Uint8Array(1), 0),
        CacheLimitError,
      );
      await assert.rejects(
        small.set("p", "a", new Uint8Array(3), 0),
        CacheLimitError,
      );
      await small.close();
    });
  } finally {
    await cache.close();
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("cache: real Redis", async (t) => {
  const cache = new RedisCacheStore({ url: REDIS_URL, prefix: RUN });
  const raw = new Redis(REDIS_URL);
  try {
    await sharedSuite(t, cache);
    await t.step(
      "keys are <prefix>plugin:<namespace>:<key>, raw bytes, PX TTL",
      async () => {
        await cache.set("hello", "greeting", new Uint8Array([0, 0xff]), 30);
        const stored = await raw.getBuffer(`${RUN}plugin:hello:greeting`);
        assert.deepEqual(stored && [...stored], [0, 0xff]);
        const ttl = await raw.pttl(`${RUN}plugin:hello:greeting`);
        assert.ok(ttl > 0 && ttl <= 30_000, `pttl ${ttl}`);
        await cache.set("hello", "greeting", new Uint8Array([1]), 0);
        assert.equal(await raw.pttl(`${RUN}plugin:hello:greeting`), -1);
      },
    );
  } finally {
    const keys = await raw.keys(`${RUN}*`);
    if (keys.length) await raw.del(...keys);
    await raw.quit();
    await cache.close();
  }
});
