// The plugin-route path in front of the Hono app (`GoatKitApp.fetch` and
// `GoatKitApp.front`): over a real loopback `Deno.serve`, a plugin route's
// answers (served, shed by the in-flight limit, draining) carry the same
// status, body and headers as the middleware chain gives them, host paths
// and routes of disabled plugins keep their own answers while the limit is
// reached, and the args and result mapping are unchanged.

import { auditOrigins } from "../host/audit_trail.ts";
import {
  buildRouteArgs,
  resultToResponse,
} from "../host/server/plugin_http.ts";
import { SessionStore } from "../host/server/auth/sessions.ts";
import { AuditLog } from "../permissions/audit.ts";
import {
  assertEquals,
  json,
  nativePlugin,
  setup,
  type TestServer,
} from "./server_helpers.ts";

/** Serves `t.server` on loopback as boot.ts does (front, audit, fetch). */
function serveLikeBoot(t: TestServer, trustProxy: boolean | string[] = false) {
  const handler = t.server.front(auditOrigins(t.server.fetch, {
    audit: new AuditLog(),
    tokens: t.tokens,
    sessions: new SessionStore(),
    trustProxy,
  }));
  const listening = Promise.withResolvers<number>();
  const http = Deno.serve({
    port: 0,
    hostname: "127.0.0.1",
    onListen: (a) => listening.resolve(a.port),
  }, handler);
  return {
    async url(): Promise<string> {
      return `http://127.0.0.1:${await listening.promise}`;
    },
    close: () => http.shutdown(),
  };
}

/** Status, body and the headers a client sees (minus date/length). */
async function seen(res: Response) {
  const headers = [...res.headers].filter(([k]) =>
    k !== "date" && k !== "content-length"
  );
  return { status: res.status, headers, body: await res.text() };
}

function busyPlugin(release: Promise<void>) {
  return nativePlugin({
    name: "busy",
    version: "1.0.0",
    routes: [
      { method: "GET", path: "/busy/:id", handler: "wait" },
      { method: "POST", path: "/busy/:id", handler: "wait" },
    ],
  }, {
    wait: async () => {
      await release;
      return { done: true };
    },
  });
}

Deno.test("while the in-flight limit is reached, a plugin route's 503 over HTTP is the chain's 503 (body, Retry-After, security headers) and is counted", async () => {
  const release = Promise.withResolvers<void>();
  const t = await setup({ maxInFlight: 1 });
  const http = serveLikeBoot(t);
  try {
    const plugin = busyPlugin(release.promise);
    await t.manager.register(plugin);
    const url = await http.url();
    const first = fetch(`${url}/busy/1`);
    for (let i = 0; i < 100 && plugin.calls.length < 1; i++) {
      await new Promise((resolve) => setTimeout(resolve, 5));
    }
    assertEquals(plugin.calls.length, 1);
    // Answered in front of the chain.
    const early = await seen(await fetch(`${url}/busy/2?x=1`));
    const earlyPost = await seen(
      await fetch(`${url}/busy/3`, { method: "POST", body: "{}" }),
    );
    // A `%` escape in the path goes through the chain's own check.
    const chain = await seen(await fetch(`${url}/busy/a%20b`));
    assertEquals(early.status, 503);
    assertEquals(early, chain);
    assertEquals(earlyPost, chain);
    assertEquals(JSON.parse(early.body), {
      error: "overloaded",
      message:
        "Cannot serve the request now: 1 plugin requests are in flight (the server's limit)",
      retry_after_sec: 1,
    });
    assertEquals(Object.fromEntries(early.headers), {
      "cache-control": "no-store",
      "content-type": "application/json; charset=utf-8",
      "retry-after": "1",
      "x-content-type-options": "nosniff",
    });
    // HEAD goes through the chain too: the same headers, no body.
    const head = await fetch(`${url}/busy/4`, { method: "HEAD" });
    assertEquals(head.status, 503);
    assertEquals(head.headers.get("retry-after"), "1");
    await head.body?.cancel();
    // Host paths, unknown paths and the API are not shed.
    const health = await json(await fetch(`${url}/healthz`));
    assertEquals(health.requests, {
      in_flight: 1,
      max_in_flight: 1,
      shed_total: 4,
    });
    const missing = await fetch(`${url}/nothing/here`);
    assertEquals(missing.status, 404);
    await missing.body?.cancel();
    const list = await fetch(`${url}/api/v1/plugins`, {
      headers: { authorization: `Bearer ${t.adminToken}` },
    });
    assertEquals(list.status, 200);
    await list.body?.cancel();
    release.resolve();
    assertEquals(await json(await first), { done: true });
    assertEquals(await json(await fetch(`${url}/busy/5`)), { done: true });
    assertEquals(plugin.calls.length, 2);
  } finally {
    release.resolve();
    await http.close();
    await t.close();
  }
});

Deno.test("behind a trusted HTTPS proxy, served and shed plugin answers carry HSTS; on plain HTTP they do not", async () => {
  const release = Promise.withResolvers<void>();
  const t = await setup({ maxInFlight: 1, trustProxy: ["127.0.0.1"] });
  const http = serveLikeBoot(t, ["127.0.0.1"]);
  try {
    await t.manager.register(busyPlugin(release.promise));
    await t.manager.register(nativePlugin({
      name: "hsts",
      version: "1.0.0",
      routes: [{ method: "GET", path: "/hsts", handler: "h" }],
    }, { h: () => ({ ok: true }) }));
    const url = await http.url();
    const https = { "x-forwarded-proto": "https" };
    const served = await fetch(`${url}/hsts`, { headers: https });
    assertEquals(served.status, 200);
    assertEquals(
      served.headers.get("strict-transport-security"),
      "max-age=31536000",
    );
    assertEquals(served.headers.get("x-content-type-options"), "nosniff");
    assertEquals(await served.json(), { ok: true });
    const plain = await fetch(`${url}/hsts`);
    assertEquals(plain.headers.get("strict-transport-security"), null);
    await plain.body?.cancel();
    const first = fetch(`${url}/busy/1`);
    await new Promise((resolve) => setTimeout(resolve, 50));
    const shed = await fetch(`${url}/busy/2`, { headers: https });
    assertEquals(shed.status, 503);
    assertEquals(
      shed.headers.get("strict-transport-security"),
      "max-age=31536000",
    );
    await shed.body?.cancel();
    release.resolve();
    assertEquals((await first).status, 200);
    await (await first).body?.cancel();
  } finally {
    release.resolve();
    await http.close();
    await t.close();
  }
});

Deno.test("while the limit is reached, a disabled plugin's route still answers 'plugin unavailable', and draining answers 'shutting down' with Connection: close", async () => {
  const release = Promise.withResolvers<void>();
  const t = await setup({ maxInFlight: 1 });
  try {
    await t.manager.register(busyPlugin(release.promise));
    await t.manager.register(nativePlugin({
      name: "off",
      version: "1.0.0",
      routes: [{ method: "GET", path: "/off", handler: "h" }],
    }, { h: () => ({ ok: true }) }));
    await t.manager.disable("off");
    const first = t.req("GET", "/busy/1");
    await new Promise((resolve) => setTimeout(resolve, 20));
    const off = await t.req("GET", "/off");
    assertEquals(off.status, 503);
    assertEquals((await off.json()).error, "plugin unavailable");
    const shed = await t.req("GET", "/busy/2");
    assertEquals((await shed.json()).error, "overloaded");
    t.server.drain();
    const drained = await t.req("GET", "/busy/3");
    assertEquals(drained.status, 503);
    assertEquals(drained.headers.get("connection"), "close");
    assertEquals((await drained.json()).error, "shutting down");
    const wrapped = await t.server.front(t.server.fetch)(
      new Request("http://localhost/busy/4"),
      {},
    );
    assertEquals((await wrapped.json()).error, "shutting down");
    release.resolve();
    assertEquals((await first).status, 200);
    await (await first).body?.cancel();
  } finally {
    release.resolve();
    await t.close();
  }
});

Deno.test("route args: path parameters, then the query (a repeated key is an array), then the body's keys", () => {
  const body = new TextEncoder().encode('{"q":"y"}');
  assertEquals(
    buildRouteArgs(
      "GET",
      new URL("http://h/items/7?tag=a&id=9&tag=b&tag=c&q=x&e="),
      { id: "7" },
      body,
    ),
    {
      id: "9",
      tag: ["a", "b", "c"],
      q: "y",
      e: "",
      _method: "GET",
      _path: "/items/7",
    },
  );
  assertEquals(
    buildRouteArgs("POST", new URL("http://h/items/7"), { id: "7" }, null),
    { id: "7", _method: "POST", _path: "/items/7" },
  );
  assertEquals(
    buildRouteArgs("GET", new URL("http://h/x?a=1+2&a=%41"), {}, null).a,
    ["1 2", "A"],
  );
});

Deno.test("plugin results: html (also spelled with \\u escapes) is sanitised HTML, declared error codes map, anything else passes through as JSON with nosniff", async () => {
  const enc = (s: string) => new TextEncoder().encode(s);
  const sanitize = (html: string) => html.replace(/<script.*?<\/script>/g, "");
  const codes = {
    lookup: (code: string) =>
      code === "p:gone" ? { message: "gone", httpStatus: 410 } : undefined,
  };
  const html = resultToResponse(
    enc('{"\\u0068tml":"<b>x</b><script>1</script>"}'),
    "p",
    sanitize,
  );
  assertEquals(html.headers.get("content-type"), "text/html; charset=utf-8");
  assertEquals(await html.text(), "<b>x</b>");
  const err = resultToResponse(
    enc('{"error":{"code":"gone"}}'),
    "p",
    sanitize,
    codes,
  );
  assertEquals(err.status, 410);
  assertEquals(await err.json(), {
    error: { code: "p:gone", message: "gone" },
  });
  const raw = '{"message":"hello","list":[1,2]}';
  const plain = resultToResponse(enc(raw), "p", sanitize);
  assertEquals(plain.status, 200);
  assertEquals(
    plain.headers.get("content-type"),
    "application/json; charset=utf-8",
  );
  assertEquals(plain.headers.get("x-content-type-options"), "nosniff");
  assertEquals(await plain.text(), raw);
  const none = resultToResponse(null, "p", sanitize);
  assertEquals(await none.text(), "null");
  const notJson = resultToResponse(enc("not json"), "p", sanitize);
  assertEquals(await notJson.text(), "not json");
  // Small results are looked at byte by byte, large ones as text: both
  // find the key past multi-byte characters.
  for (const pad of ["é€😀", "é€😀".repeat(100)]) {
    const res = resultToResponse(
      enc(`{"note":"${pad}","html":"<i>y</i><script>2</script>"}`),
      "p",
      sanitize,
    );
    assertEquals(res.headers.get("content-type"), "text/html; charset=utf-8");
    assertEquals(await res.text(), "<i>y</i>");
    const passed = resultToResponse(enc(`{"note":"${pad}"}`), "p", sanitize);
    assertEquals(await passed.text(), `{"note":"${pad}"}`);
  }
});
