// Cost of Manager.call (lookup, deadline, call chain, abort signal) over
// calling the plugin object directly, with a native plugin that echoes.
import { createCallContext, encodeJson, Manager, type Plugin } from "../mod.ts";

const echo: Plugin = {
  gkRegister: () => ({ name: "echo", version: "1.0.0" }),
  init: () => Promise.resolve(),
  call: (_fn, args) => Promise.resolve(args),
  shutdown: () => Promise.resolve(),
};
const manager = new Manager();
await manager.register(echo);
const args = encodeJson({ message: "x".repeat(80) });
const ctx = createCallContext();

Deno.bench({
  group: "call",
  name: "plugin.call directly",
  baseline: true,
  fn: async () => {
    await echo.call("echo", args, ctx);
  },
});

Deno.bench({
  group: "call",
  name: "Manager.call",
  fn: async () => {
    await manager.call("echo", "echo", args);
  },
});

Deno.bench({
  group: "call",
  name: "Manager.call with a caller's signal",
  fn: async () => {
    await manager.call("echo", "echo", args, { signal: ctx.signal });
  },
});
