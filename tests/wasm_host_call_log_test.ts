import assert from "node:assert/strict";
import {
  createCallContext,
  encodeJson,
  PermissionDeniedError,
} from "../mod.ts";
import { MemoryHostAPI } from "../host/testing/memory_host_api.ts";
import { serveHostCall } from "../runtimes/wasm/host_calls.ts";

Deno.test("a failed host_call is logged at error under the plugin, as in GoatFlow; a denial is not logged twice", async () => {
  const host = new MemoryHostAPI({
    query: () => {
      throw new Error('relation "nope" does not exist');
    },
    exec: () => {
      throw new PermissionDeniedError("demo", "db:write", "db_exec");
    },
  });
  const ctx = createCallContext({ chain: ["demo"], caller: "demo" });
  const failed = await serveHostCall(
    host,
    ctx,
    "db_query",
    encodeJson({ query: "SELECT * FROM nope", args: [] }),
  );
  assert.ok("error" in failed);
  assert.deepEqual(host.logs.map((l) => [l.level, l.message]), [[
    "error",
    'host_call db_query failed: relation "nope" does not exist',
  ]]);
  const denied = await serveHostCall(
    host,
    ctx,
    "db_exec",
    encodeJson({ query: "DELETE FROM t", args: [] }),
  );
  assert.ok("error" in denied);
  assert.equal(host.logs.length, 1);
});
