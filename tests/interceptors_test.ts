/**
 * The interceptor seam (host/model/interceptors.ts): plugin calls through a
 * real Manager and host calls through a wrapped HostAPI pass every
 * interceptor in order, see the outcome, and may refuse before the call.
 *
 * Run: `deno test -A tests/interceptors_test.ts`
 *
 * @module
 */

import assert from "node:assert/strict";
import { Manager } from "../host/manager.ts";
import {
  createInterceptors,
  interceptHostAPI,
} from "../host/model/interceptors.ts";
import { PluginTimeoutError } from "../host/model/errors.ts";
import {
  createCallContext,
  decodeJson,
  encodeJson,
  type Plugin,
} from "../host/model/plugin.ts";
import { MemoryHostAPI } from "../host/testing/mod.ts";

function echo(): Plugin {
  return {
    gkRegister: () => ({ name: "echo", version: "1.0.0" }),
    init: () => Promise.resolve(),
    call: async (fn, args) => {
      if (fn === "slow") await new Promise((r) => setTimeout(r, 200));
      return args;
    },
    shutdown: () => Promise.resolve(),
  };
}

Deno.test("plugin calls pass the interceptors in order, which see outcomes (a timeout too) and may refuse", async () => {
  const interceptors = createInterceptors();
  const manager = new Manager({ interceptors: interceptors.plugin });
  await manager.register(echo());
  const seen: string[] = [];
  interceptors.plugin.push(async (call, next) => {
    seen.push(`outer>${call.plugin}.${call.fn}`);
    try {
      return await next();
    } catch (e) {
      seen.push(`outer!${(e as Error).name}`);
      throw e;
    } finally {
      seen.push("outer<");
    }
  });
  interceptors.plugin.push((call, next) => {
    if (call.fn === "refused") throw new Error("quota");
    seen.push("inner");
    return next();
  });
  const out = await manager.call("echo", "echo", encodeJson({ a: 1 }));
  assert.deepEqual(decodeJson(out), { a: 1 });
  assert.deepEqual(seen, ["outer>echo.echo", "inner", "outer<"]);
  seen.length = 0;
  await assert.rejects(manager.call("echo", "refused", null), /quota/);
  assert.deepEqual(seen, ["outer>echo.refused", "outer!Error", "outer<"]);
  seen.length = 0;
  // The Manager's deadline reaches the caller even while an interceptor
  // still waits for the plugin.
  await assert.rejects(
    manager.call("echo", "slow", null, { timeoutMs: 50 }),
    PluginTimeoutError,
  );
  await manager.shutdownAll();
});

Deno.test("host calls of a wrapped HostAPI pass the interceptors; log and other members are the API's own", async () => {
  const interceptors = createInterceptors();
  const api = new MemoryHostAPI({ config: { greeting: "hi" } });
  const host = interceptHostAPI(api, "p", interceptors);
  const ctx = createCallContext();
  // No interceptor: the API answers as itself.
  assert.equal(await host.configGet(ctx, "greeting"), "hi");
  const seen: string[] = [];
  interceptors.host.push(async (call, next) => {
    seen.push(`${call.plugin}:${call.method}:${JSON.stringify(call.args)}`);
    if (call.method === "cacheGet") throw new Error("refused");
    return await next();
  });
  assert.equal(await host.configGet(ctx, "greeting"), "hi");
  await assert.rejects(host.cacheGet(ctx, "k"), /refused/);
  host.log(ctx, "info", "not a host call");
  assert.deepEqual(seen, ['p:configGet:["greeting"]', 'p:cacheGet:["k"]']);
  assert.equal(host.log, host.log, "members are bound once");
});
