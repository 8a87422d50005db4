// Faults, with real processes and a real database outage (issue 11 items 5
// and 6, server side):
// - graceful shutdown of `host/serve.ts` as a subprocess: SIGTERM lets a
//   slow call in flight finish with 200 and its whole body while new
//   connections are refused, and the process exits 0 by itself; a second
//   SIGTERM exits at once; a call that outlasts the drain timeout does not
//   keep the process alive;
// - a PostgreSQL outage (a TCP proxy in front of the real server, cut and
//   restored; the server itself is never touched) answers the admin API
//   with 503 + Retry-After instead of 500, changes nothing meanwhile, and
//   recovers by itself.

import { join } from "node:path";
import pg from "pg";
import { boot } from "../host/boot.ts";
import { isDatabaseUnavailable } from "../host/server/unavailable.ts";
import { PgliteClient } from "../host/services/mod.ts";
import {
  ConnectionClosedError,
  Http1Connection,
  type Http1Response,
  requestOnce,
} from "./helpers/http1_client.ts";
import { type HostProcess, startHost } from "./helpers/host_process.ts";
import {
  assert,
  assertEquals,
  assertMatch,
  hostConfig,
  nativePlugin,
  PG_URL,
  privateSchema,
  setup,
} from "./server_helpers.ts";

const ROOT = new URL("..", import.meta.url).pathname;
const SLOW = "faults/slow-grpc-ts";

Deno.test("drain(): a request in flight finishes; every request that still reaches the app gets 503 + Connection: close", async () => {
  const release = Promise.withResolvers<void>();
  const plugin = nativePlugin({
    name: "draining",
    version: "1.0.0",
    routes: [{ method: "GET", path: "/draining", handler: "wait" }],
  }, {
    wait: async () => {
      await release.promise;
      return { done: true };
    },
  });
  const t = await setup();
  try {
    await t.manager.register(plugin);
    const inFlight = t.req("GET", "/draining");
    for (let i = 0; i < 100 && plugin.calls.length < 1; i++) {
      await new Promise((resolve) => setTimeout(resolve, 5));
    }
    assertEquals(plugin.calls.length, 1);
    t.server.drain();
    assertEquals(t.server.draining, true);
    for (const path of ["/draining", "/healthz", "/api/v1/plugins"]) {
      const res = await t.req("GET", path, { token: t.adminToken });
      assertEquals(res.status, 503, path);
      assertEquals(res.headers.get("connection"), "close");
      assertEquals(res.headers.get("retry-after"), "5");
      assertEquals((await res.json()).error, "shutting down");
    }
    assertEquals(plugin.calls.length, 1, "nothing new reached the plugin");
    release.resolve();
    const done = await inFlight;
    assertEquals([done.status, await done.json()], [200, { done: true }]);
  } finally {
    release.resolve();
    await t.close();
  }
});

/** Waits until the host reports at least `n` plugin requests in flight. */
async function untilInFlight(h: HostProcess, n: number): Promise<void> {
  for (let i = 0; i < 400; i++) {
    const r = await requestOnce(h.url, "/healthz", { timeoutMs: 5_000 });
    if (JSON.parse(r.body).requests.in_flight >= n) return;
    await new Promise((resolve) => setTimeout(resolve, 25));
  }
  throw new Error(`the host never had ${n} plugin request(s) in flight`);
}

/** A request's response, or the error it failed with. */
function settle(p: Promise<Http1Response>): Promise<Http1Response | Error> {
  return p.then((r) => r, (e) => e instanceof Error ? e : new Error(String(e)));
}

Deno.test("SIGTERM drains: a slow call in flight completes with 200 and its whole body, new connections are refused, the process exits 0 by itself", async () => {
  const h = await startHost({
    plugins: [SLOW],
    enable: ["slow-grpc"],
    env: { GOATKIT_DRAIN_TIMEOUT_MS: "30000" },
    lifetimeMs: 90_000,
  });
  const idle = await Http1Connection.open(h.url);
  try {
    // A keep-alive connection that is idle when the signal comes.
    assertEquals((await idle.request("/healthz")).status, 200);
    const slow = settle(requestOnce(
      h.url,
      "/api/plugins/slow/sleep?ms=3000&size=200000",
      { timeoutMs: 60_000 },
    ));
    await untilInFlight(h, 1);
    h.signal("SIGTERM");
    await h.waitForOutput(/SIGTERM: shutting down/);

    // From now on nothing new is served: connections are refused (or,
    // while the listener closes, answered 503 + Connection: close).
    let refused = false;
    for (let i = 0; i < 50 && !refused; i++) {
      const late = await settle(
        requestOnce(h.url, "/api/plugins/slow/fast", { timeoutMs: 10_000 }),
      );
      // Refused; or reset: accepted into the kernel's backlog just before
      // the listener closed, then dropped with it. Either way never served.
      if (
        late instanceof Deno.errors.ConnectionRefused ||
        late instanceof Deno.errors.ConnectionReset
      ) refused = true;
      else if (late instanceof Error) {
        assert(late instanceof ConnectionClosedError, String(late));
      } else {
        assertEquals(late.status, 503, late.body);
        assertEquals(late.headers.get("connection"), "close");
        assertEquals(JSON.parse(late.body).error, "shutting down");
        await new Promise((resolve) => setTimeout(resolve, 20));
      }
    }
    assert(refused, "new connections are refused during the drain");
    // The idle keep-alive connection: closed by the server, or a request on
    // it is refused with 503 + Connection: close; never served.
    const onIdle = await settle(idle.request("/api/plugins/slow/fast"));
    if (onIdle instanceof Error) {
      assert(onIdle instanceof ConnectionClosedError, String(onIdle));
    } else {
      assertEquals([onIdle.status, onIdle.closed], [503, true]);
    }

    // The call that was in flight completes, whole.
    const r = await slow;
    assert(!(r instanceof Error), `slow call failed: ${r}`);
    assertEquals(r.status, 200, r.body);
    const body = JSON.parse(r.body);
    assertEquals([body.slept_ms, body.size, body.data.length], [
      3000,
      200000,
      200000,
    ]);
    // And the process stops by itself, cleanly.
    const status = await h.status;
    assertEquals(status.code, 0, h.stderr());
    assertMatch(h.stdout(), /Stopped\./);
    assert(
      !/drain timeout/.test(h.stdout()),
      "drained before the timeout",
    );
  } finally {
    idle.close();
    await h.cleanup();
  }
});

Deno.test("SIGTERM twice exits at once (143), cutting the call in flight instead of waiting for the drain", async () => {
  const h = await startHost({
    plugins: [SLOW],
    enable: ["slow-grpc"],
    env: { GOATKIT_DRAIN_TIMEOUT_MS: "60000" },
    lifetimeMs: 90_000,
  });
  try {
    const slow = settle(requestOnce(
      h.url,
      "/api/plugins/slow/sleep?ms=8000",
      { timeoutMs: 60_000 },
    ));
    await untilInFlight(h, 1);
    h.signal("SIGTERM");
    await h.waitForOutput(/SIGTERM: shutting down/);
    h.signal("SIGTERM");
    const status = await h.status;
    // Had the second signal waited for the drain, the call would have
    // completed (200) and the process exited 0.
    assertEquals(status.code, 143, h.stderr());
    assertMatch(h.stderr(), /SIGTERM again: exiting now/);
    const r = await slow;
    assert(r instanceof Error || r.status !== 200, "the call was cut");
    assert(!/Stopped\./.test(h.stdout()), "no orderly stop");
  } finally {
    await h.cleanup();
  }
});

Deno.test("a call that outlasts the drain timeout does not keep the host alive: it stops by itself after the timeout", async () => {
  const h = await startHost({
    plugins: [SLOW],
    enable: ["slow-grpc"],
    env: { GOATKIT_DRAIN_TIMEOUT_MS: "1000" },
    lifetimeMs: 90_000,
  });
  try {
    const slow = settle(requestOnce(
      h.url,
      "/api/plugins/slow/sleep?ms=8000",
      { timeoutMs: 60_000 },
    ));
    await untilInFlight(h, 1);
    h.signal("SIGTERM");
    const status = await h.status;
    assertEquals(status.code, 0, h.stderr());
    assertMatch(h.stdout(), /drain timeout of 1000 ms reached/);
    assertMatch(h.stdout(), /Stopped\./);
    const r = await slow;
    assert(
      r instanceof Error || r.status !== 200,
      "the call was cut when the host stopped, not awaited",
    );
  } finally {
    await h.cleanup();
  }
});

/**
 * A TCP proxy on loopback in front of the test PostgreSQL: `cut()` closes
 * its listener and every connection through it (an outage as the host sees
 * it), `restore()` listens on the same port again.
 */
class TcpProxy {
  readonly port: number;
  #listener: Deno.TcpListener | undefined;
  #conns = new Set<Deno.TcpConn>();

  private constructor(listener: Deno.TcpListener) {
    this.port = listener.addr.port;
    this.#accept(listener);
  }

  static start(): TcpProxy {
    return new TcpProxy(Deno.listen({ hostname: "127.0.0.1", port: 0 }));
  }

  #accept(listener: Deno.TcpListener): void {
    this.#listener = listener;
    (async () => {
      try {
        for await (const client of listener) this.#pipe(client);
      } catch { /* closed */ }
    })();
  }

  async #pipe(client: Deno.TcpConn): Promise<void> {
    this.#conns.add(client);
    let server: Deno.TcpConn;
    try {
      server = await Deno.connect({ hostname: "127.0.0.1", port: 5432 });
    } catch {
      this.#drop(client);
      return;
    }
    this.#conns.add(server);
    await Promise.all([
      client.readable.pipeTo(server.writable).catch(() => {}),
      server.readable.pipeTo(client.writable).catch(() => {}),
    ]);
    this.#drop(client);
    this.#drop(server);
  }

  #drop(c: Deno.TcpConn): void {
    this.#conns.delete(c);
    try {
      c.close();
    } catch { /* closed */ }
  }

  /** The outage: no listener, every connection closed. */
  cut(): void {
    try {
      this.#listener?.close();
    } catch { /* closed */ }
    this.#listener = undefined;
    for (const c of [...this.#conns]) this.#drop(c);
  }

  /** The database is back (same port). */
  restore(): void {
    this.#accept(Deno.listen({ hostname: "127.0.0.1", port: this.port }));
  }

  get connections(): number {
    return this.#conns.size;
  }
}

Deno.test("a database outage answers the admin API 503 + Retry-After (not 500), changes nothing, and recovers by itself", async () => {
  const data = await Deno.makeTempDir();
  const plugins = await Deno.makeTempDir();
  const db = await privateSchema();
  const proxy = TcpProxy.start();
  try {
    // slow-grpc: a plugin only these tests use (the host tables are shared
    // by every test host on the test database, whatever its schema).
    await Deno.mkdir(join(plugins, "slow-grpc-ts"));
    for (const f of ["plugin.ts", "manifest.json"]) {
      await Deno.copyFile(
        join(ROOT, "fixtures", SLOW, f),
        join(plugins, "slow-grpc-ts", f),
      );
    }
    const viaProxy = db.url.replace(
      "127.0.0.1:5432",
      `127.0.0.1:${proxy.port}`,
    );
    assert(viaProxy !== db.url, "the host goes through the proxy");
    const host = await boot({
      config: hostConfig(data, plugins, viaProxy, {
        GOATKIT_HOSTNAME: "127.0.0.1",
      }),
      print: () => {},
    });
    try {
      await host.manager.enable("slow-grpc");
      const auth = { authorization: `Bearer ${host.adminToken}` };
      const api = (path: string, method = "GET", body?: string) =>
        fetch(`${host.url}${path}`, {
          method,
          headers: { ...auth, "content-type": "application/json" },
          ...(body !== undefined ? { body } : {}),
        });
      const before = await api("/api/v1/plugins");
      assertEquals(before.status, 200);
      await before.body?.cancel();
      assert(proxy.connections > 0, "the host's pool is connected");

      proxy.cut();
      // The grant store caches a read for 1 s: let it expire.
      await new Promise((resolve) => setTimeout(resolve, 1_100));
      for (
        const [method, path] of [
          ["GET", "/api/v1/plugins"],
          ["GET", "/api/v1/plugins/slow-grpc"],
          ["GET", "/api/v1/plugins/slow-grpc/grants"],
          ["POST", "/api/v1/plugins/slow-grpc/grants"],
          ["POST", "/api/v1/plugins/slow-grpc/disable"],
        ]
      ) {
        const res = await api(
          path!,
          method,
          method === "POST" ? "{}" : undefined,
        );
        const body = await res.json();
        assertEquals(
          res.status,
          503,
          `${method} ${path}: ${JSON.stringify(body)}`,
        );
        assertEquals(res.headers.get("retry-after"), "5");
        assertEquals(body.error, "database unavailable");
        assertEquals(body.retry_after_sec, 5);
        assertMatch(body.message, /^Cannot reach the database: /);
      }
      // Nothing changed: the disable did not happen, the plugin serves.
      assertEquals(host.manager.isEnabled("slow-grpc"), true);
      const served = await fetch(`${host.url}/api/plugins/slow/fast`);
      assertEquals(served.status, 200);
      assertEquals((await served.json()).ok, true);
      const health = await fetch(`${host.url}/healthz`);
      assertEquals(health.status, 200);
      await health.body?.cancel();

      proxy.restore();
      let back = 0;
      for (let i = 0; i < 200 && back !== 200; i++) {
        const res = await api("/api/v1/plugins");
        back = res.status;
        await res.body?.cancel();
        if (back !== 200) {
          assertEquals(back, 503);
          await new Promise((resolve) => setTimeout(resolve, 100));
        }
      }
      assertEquals(back, 200, "the API recovers once the database is back");
      // Writes work again (the grant store; the plugin requests nothing,
      // so the approval changes nothing another test could see).
      const write = await api("/api/v1/plugins/slow-grpc/grants", "POST", "{}");
      assertEquals(write.status, 200);
      assertEquals((await write.json()).pending, []);
      const again = await fetch(`${host.url}/api/plugins/slow/fast`);
      assertEquals(again.status, 200);
      await again.body?.cancel();
    } finally {
      await host.close();
    }
  } finally {
    proxy.cut();
    await Deno.remove(data, { recursive: true });
    await Deno.remove(plugins, { recursive: true });
    await db.drop();
  }
});

Deno.test("isDatabaseUnavailable: real connection failures (pg refused, PGlite closed) yes; a real SQL error no", async () => {
  // A loopback port with nothing listening: a real refused connection.
  const l = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const port = l.addr.port;
  l.close();
  const refused = new pg.Client({
    connectionString: `postgres://postgres@127.0.0.1:${port}/test`,
  });
  let connectError: unknown;
  try {
    await refused.connect();
  } catch (e) {
    connectError = e;
  } finally {
    await refused.end().catch(() => {});
  }
  assert(connectError, "connecting to a closed port fails");
  assertEquals(isDatabaseUnavailable(connectError), true);

  const pglite = new PgliteClient({});
  await pglite.close();
  let closedError: unknown;
  try {
    await pglite.query("SELECT 1");
  } catch (e) {
    closedError = e;
  }
  assertEquals((closedError as Error)?.name, "PgliteUnavailableError");
  assertEquals(isDatabaseUnavailable(closedError), true);

  const client = new pg.Client({ connectionString: PG_URL });
  await client.connect();
  try {
    let syntax: unknown;
    try {
      await client.query("SELEC 1");
    } catch (e) {
      syntax = e;
    }
    assertEquals((syntax as { code?: string }).code, "42601");
    assertEquals(isDatabaseUnavailable(syntax), false);
  } finally {
    await client.end();
  }
});
