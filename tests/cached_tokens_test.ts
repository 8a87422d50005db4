// Verified tokens remembered for a short time (host/server/auth/
// cached_token_store.ts): one store query per token per TTL, and a revoke —
// here, or on another host through invalidate() — is never outlived by the
// cache, even by a verification that was in flight across it. The cluster
// journey (a token revoked on host A refused on host B at once) is in
// tests/cluster_sync_test.ts.

import assert from "node:assert/strict";
import { CachedTokenStore } from "../host/server/auth/cached_token_store.ts";
import {
  MemoryTokenStore,
  type TokenRecord,
  type TokenStore,
} from "../host/server/auth/tokens.ts";

/** A store that counts verifications and can hold them until released. */
class CountingStore implements TokenStore {
  readonly inner = new MemoryTokenStore();
  verifies = 0;
  hold: Promise<void> | undefined;
  create = this.inner.create.bind(this.inner);
  list = this.inner.list.bind(this.inner);
  revoke = this.inner.revoke.bind(this.inner);
  async verify(token: string): Promise<TokenRecord | undefined> {
    this.verifies++;
    const found = await this.inner.verify(token);
    await this.hold;
    return found;
  }
}

Deno.test("a verified token is asked for once per TTL; an unknown one every time", async () => {
  let now = 1_000;
  const store = new CountingStore();
  const tokens = new CachedTokenStore(store, { ttlMs: 2000, now: () => now });
  const { token, record } = await tokens.create({ name: "ci", admin: true });
  for (let i = 0; i < 50; i++) {
    assert.equal((await tokens.verify(token))?.id, record.id);
  }
  assert.equal(store.verifies, 1);
  now += 1999;
  await tokens.verify(token);
  assert.equal(store.verifies, 1, "still within the TTL");
  now += 1;
  await tokens.verify(token);
  assert.equal(store.verifies, 2, "asked again once the TTL passed");
  for (let i = 0; i < 3; i++) {
    assert.equal(await tokens.verify(`${token}x`), undefined);
  }
  assert.equal(store.verifies, 5, "unknown tokens are never remembered");
  assert.equal(tokens.size, 1);
  // What is handed out is a copy: a caller cannot change the cache.
  (await tokens.verify(token))!.admin = false;
  assert.equal((await tokens.verify(token))?.admin, true);
});

Deno.test("a revoke here, or invalidate() for another host's, ends the token at once", async () => {
  const changes: string[] = [];
  const store = new CountingStore();
  const tokens = new CachedTokenStore(store, {
    ttlMs: 60_000,
    onChange: (id) => changes.push(id),
  });
  const a = await tokens.create({ name: "a" });
  const b = await tokens.create({ name: "b" });
  // A new token is stale nowhere: creating one tells nobody.
  assert.deepEqual(changes, []);
  await tokens.verify(a.token);
  await tokens.verify(b.token);
  assert.equal(tokens.size, 2);
  assert.equal(await tokens.revoke(a.record.id), true);
  assert.equal(await tokens.verify(a.token), undefined);
  assert.deepEqual(changes, [a.record.id], "the others are told");
  assert.equal(await tokens.revoke("no-such-id"), false);
  assert.equal(changes.length, 1, "a revoke of nothing tells nobody");
  // Another host revoked b in the shared store and said so.
  await tokens.verify(b.token);
  await store.inner.revoke(b.record.id);
  tokens.invalidate();
  assert.equal(await tokens.verify(b.token), undefined);
});

Deno.test("a verification in flight across an invalidation is not remembered", async () => {
  const store = new CountingStore();
  const tokens = new CachedTokenStore(store, { ttlMs: 60_000 });
  const { token, record } = await tokens.create({ name: "ci" });
  const release = Promise.withResolvers<void>();
  store.hold = release.promise;
  // Read before the revoke lands, answered after it.
  const inFlight = tokens.verify(token);
  await store.inner.revoke(record.id);
  tokens.invalidate();
  release.resolve();
  assert.equal((await inFlight)?.id, record.id, "it saw the old state");
  store.hold = undefined;
  assert.equal(
    await tokens.verify(token),
    undefined,
    "but the cache did not keep it",
  );
});
