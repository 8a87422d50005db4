import assert from "node:assert/strict";
import { privilegesOf, PrivilegeSync } from "../permissions/privilege_sync.ts";
import type { PluginPrivileges } from "../permissions/pg_privileges.ts";
import { type DbPermission, parsePermission } from "../permissions/grammar.ts";

Deno.test("PrivilegeSync: a set changed in place is synced again; privilegesOf's sets cannot be changed", async () => {
  const synced: string[] = [];
  const db = {
    syncPluginPrivileges(_plugin: string, p: PluginPrivileges) {
      synced.push(JSON.stringify(p));
      return Promise.resolve();
    },
  };
  const sync = new PrivilegeSync("p");
  const mine: PluginPrivileges = { read: ["a"], write: null };
  await sync.sync(db, mine);
  await sync.sync(db, mine);
  assert.equal(synced.length, 1);
  // A revoke done by changing the same object must reach the database.
  mine.read = null;
  await sync.sync(db, mine);
  assert.deepEqual(synced, [
    '{"read":["a"],"write":null}',
    '{"read":null,"write":null}',
  ]);
  const grants = ["db:read:ticket", "db:write:note"].map((g) =>
    parsePermission(g) as DbPermission
  );
  const frozen = privilegesOf(grants);
  assert.throws(() => {
    (frozen as { read: unknown }).read = "all";
  }, TypeError);
  assert.throws(() => (frozen.read as string[]).push("secret"), TypeError);
});
