// Server benchmarks: a plugin route through the swapped route table vs the
// same plugin call behind a plain Hono route (baseline); and rebuilding the
// collision-checked table vs building a plain Hono app with the same routes.

import { Hono } from "hono";
import { Manager } from "../host/manager.ts";
import type { GKRegistration, RouteSpec } from "../host/model/manifest.ts";
import { encodeJson, type Plugin } from "../host/model/plugin.ts";
import {
  buildRouteTable,
  type PluginRoute,
} from "../host/server/route_table.ts";
import { createApp } from "../host/server/mod.ts";

function plugin(manifest: GKRegistration): Plugin {
  return {
    gkRegister: () => manifest,
    init: () => Promise.resolve(),
    call: () => Promise.resolve(encodeJson({ ok: true })),
    shutdown: () => Promise.resolve(),
  };
}

const manager = new Manager();
await manager.register(plugin({
  name: "bench",
  version: "1.0.0",
  routes: [{ method: "GET", path: "/bench/:id", handler: "h" }],
}));
// 50 more plugins so the table is not trivially small.
for (let i = 0; i < 50; i++) {
  await manager.register(plugin({
    name: `p${i}`,
    version: "1.0.0",
    routes: [
      { method: "GET", path: `/p${i}/items/:id`, handler: "h" },
      { method: "POST", path: `/p${i}/items`, handler: "h" },
    ],
  }));
}
const server = createApp({ manager });

const plain = new Hono();
plain.get("/bench/:id", async (c) => {
  const out = await manager.call(
    "bench",
    "h",
    encodeJson({ id: c.req.param("id") }),
  );
  return new Response(out as Uint8Array<ArrayBuffer>, {
    headers: { "content-type": "application/json" },
  });
});

Deno.bench({
  group: "plugin route",
  name: "plain Hono route → manager.call",
  baseline: true,
  async fn() {
    const res = await plain.fetch(new Request("http://h/bench/7?x=1"));
    await res.arrayBuffer();
  },
});

Deno.bench({
  group: "plugin route",
  name: "createApp swapped table → manager.call",
  async fn() {
    const res = await server.fetch(new Request("http://h/bench/7?x=1"));
    await res.arrayBuffer();
  },
});

const routes: PluginRoute[] = [];
for (let i = 0; i < 100; i++) {
  for (let j = 0; j < 5; j++) {
    routes.push({
      plugin: `p${i}`,
      method: "GET",
      path: `/p${i}/r${j}/:id`,
      handler: "h",
    });
  }
}
const noop = () => [(c: { text(t: string): Response }) => c.text("x")];

Deno.bench({
  group: "table rebuild (500 routes)",
  name: "plain Hono app, compiled",
  baseline: true,
  fn() {
    const app = new Hono();
    for (const r of routes as RouteSpec[]) {
      app.on(r.method, r.path, (c) => c.text("x"));
    }
    app.router.match("GET", "/");
  },
});

Deno.bench({
  group: "table rebuild (500 routes)",
  name: "buildRouteTable (collision-checked), compiled",
  fn() {
    buildRouteTable(routes, noop as never);
  },
});
