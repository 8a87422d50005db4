// Admission control over HTTP (issue 11 item 2, server side): the
// server-wide in-flight limit answers 503 + Retry-After at once without
// touching the plugin, a runtime's overload refusal becomes the same 503
// (before the call is built when the plugin says it would refuse at once),
// `/healthz` is never limited, and bounded loopback load against a real
// `host/serve.ts` (4,000 connections on a slow gRPC route, 4,000 on a WASM
// route) sheds the excess with 503s, keeps `/healthz` answering, quarantines
// nothing and leaves the host healthy.
//
// Latencies are printed, never asserted (2 shared cores).

import {
  describeOverload,
  PluginOverloadedError,
} from "../host/model/errors.ts";
import { HostMetrics } from "../host/telemetry/metrics.ts";
import {
  Http1Connection,
  type Http1Response,
  requestOnce,
} from "./helpers/http1_client.ts";
import { type HostProcess, startHost } from "./helpers/host_process.ts";
import {
  assert,
  assertEquals,
  assertMatch,
  json,
  nativePlugin,
  setup,
} from "./server_helpers.ts";

Deno.test("the in-flight limit answers 503 + Retry-After at once without calling the plugin; /healthz, widgets and admin calls follow it", async () => {
  const release = Promise.withResolvers<void>();
  const plugin = nativePlugin({
    name: "busy",
    version: "1.0.0",
    routes: [{ method: "GET", path: "/busy", handler: "wait" }],
    widgets: [{ id: "w", title: "W", handler: "w", location: "dashboard" }],
  }, {
    wait: async () => {
      await release.promise;
      return { done: true };
    },
    w: () => ({ html: "<b>w</b>" }),
  });
  const t = await setup({ maxInFlight: 2 });
  try {
    await t.manager.register(plugin);
    const first = t.req("GET", "/busy");
    const second = t.req("GET", "/busy");
    // Both are with the plugin before the third arrives.
    for (let i = 0; i < 100 && plugin.calls.length < 2; i++) {
      await new Promise((resolve) => setTimeout(resolve, 5));
    }
    assertEquals(plugin.calls.length, 2);
    const third = await t.req("GET", "/busy");
    assertEquals(third.status, 503);
    assertEquals(third.headers.get("retry-after"), "1");
    assertEquals(await third.json(), {
      error: "overloaded",
      message:
        "Cannot serve the request now: 2 plugin requests are in flight (the server's limit)",
      retry_after_sec: 1,
    });
    // The widget render and the admin call share the limit.
    const widget = await t.req("GET", "/api/v1/plugins/busy/widgets/w", {
      token: t.userToken,
    });
    assertEquals(widget.status, 503);
    assertEquals(widget.headers.get("retry-after"), "1");
    await widget.body?.cancel();
    const call = await t.req("POST", "/api/v1/plugins/busy/call/w", {
      token: t.adminToken,
    });
    assertEquals(call.status, 503);
    await call.body?.cancel();
    // The plugin never saw them.
    assertEquals(plugin.calls.length, 2);
    // /healthz is not limited, and counts what was shed.
    const health = await json(await t.req("GET", "/healthz"));
    assertEquals(health.requests, {
      in_flight: 2,
      max_in_flight: 2,
      shed_total: 3,
    });
    release.resolve();
    assertEquals((await first).status, 200);
    assertEquals(await json(await second), { done: true });
    assertEquals(await json(await t.req("GET", "/busy")), { done: true });
    assertEquals(
      (await json(await t.req("GET", "/healthz"))).requests,
      { in_flight: 0, max_in_flight: 2, shed_total: 3 },
    );
  } finally {
    release.resolve();
    await t.close();
  }
});

Deno.test("a runtime's overload refusal (PluginOverloadedError) is 503 + its Retry-After, never a plugin fault", async () => {
  const t = await setup();
  try {
    await t.manager.register(nativePlugin({
      name: "queued",
      version: "1.0.0",
      routes: [{ method: "GET", path: "/queued", handler: "q" }],
    }, {
      q: () => {
        throw new PluginOverloadedError("queued", {
          function: "q",
          queued: 256,
          retryAfterSeconds: 2.2,
        });
      },
    }));
    for (let i = 0; i < 10; i++) {
      const res = await t.req("GET", "/queued");
      assertEquals(res.status, 503);
      assertEquals(res.headers.get("retry-after"), "3");
      const body = await res.json();
      assertEquals(
        [body.error, body.plugin, body.retry_after_sec],
        ["overloaded", "queued", 3],
      );
      assertMatch(
        body.message,
        /^Cannot call function "q" of plugin "queued": it is overloaded/,
      );
    }
    // The admin API maps it the same way.
    const call = await t.req("POST", "/api/v1/plugins/queued/call/q", {
      token: t.adminToken,
    });
    assertEquals(call.status, 503);
    assertEquals(call.headers.get("retry-after"), "3");
    await call.body?.cancel();
    assertEquals(t.manager.status("queued")?.enabled, true);
    // Expected under load: not logged as a route error.
    assertEquals(
      t.logs.query({ plugin: "queued", minLevel: "error" }).length,
      0,
    );
  } finally {
    await t.close();
  }
});

Deno.test("a plugin that would refuse a route's call at once gets the same 503 before the call is built, counted in the metrics", async () => {
  const metrics = new HostMetrics();
  const t = await setup({
    metrics,
    interceptors: [metrics.pluginInterceptor],
  });
  // Refuses while `full` is set, as a runtime whose queue is full does; the
  // route's call itself refuses the same way (the full path's answer).
  let full = false;
  let refusals = 0;
  const overload = () =>
    new PluginOverloadedError("queued", {
      function: "q",
      queued: 256,
      retryAfterSeconds: 2.2,
    });
  const plugin = nativePlugin({
    name: "queued",
    version: "1.0.0",
    routes: [
      { method: "GET", path: "/queued", handler: "q" },
      {
        method: "GET",
        path: "/queued/admin",
        handler: "q",
        middleware: ["admin"],
      },
    ],
  }, {
    q: () => {
      throw overload();
    },
  });
  try {
    await t.manager.register({
      ...plugin,
      refuseNow(call: { function: string; timeoutMs: number }) {
        assertEquals(call.function, "q");
        assert(call.timeoutMs > 0, "the route's deadline is passed");
        if (!full) return undefined;
        refusals++;
        return describeOverload("queued", {
          function: "q",
          queued: 256,
          retryAfterSeconds: 2.2,
        });
      },
    });
    // The full path: the call is built and refused by the plugin.
    const late = await t.req("GET", "/queued?x=1");
    assertEquals(plugin.calls.length, 1);
    full = true;
    const early = await t.req("GET", "/queued?x=1");
    // A second one is answered from the same built answer (cloned).
    const again = await t.req("GET", "/queued?x=2");
    assertEquals(await again.json(), await late.clone().json());
    assertEquals(refusals, 2);
    assertEquals(plugin.calls.length, 1, "the refused call was not made");
    assertEquals(early.status, late.status);
    assertEquals(early.status, 503);
    assertEquals(
      [...early.headers].sort(),
      [...late.headers].sort(),
      "the same headers (Retry-After, security headers, content type)",
    );
    assertEquals(await early.json(), await late.json());
    // Counted as the full path counts: the route's 503, the call's overload.
    const text = await metrics.exposition();
    assertMatch(
      text,
      /goatkit_route_requests_total\{plugin="queued",method="GET",route="\/queued",status="503"\} 3/,
    );
    assertMatch(
      text,
      /goatkit_plugin_call_errors_total\{plugin="queued",function="[^"]+",kind="overload"\} 3/,
    );
    assertMatch(
      text,
      /goatkit_plugin_calls_total\{plugin="queued",function="[^"]+"\} 3/,
    );
    // A route with its own auth check answers it first: an anonymous
    // caller learns nothing of the plugin's load (401, not 503), and an
    // admin gets the refusal from the call itself.
    const anonymous = await t.req("GET", "/queued/admin");
    assertEquals(anonymous.status, 401);
    await anonymous.body?.cancel();
    assertEquals(refusals, 2, "not asked before the route's auth");
    const calls = plugin.calls.length;
    const admin = await t.req("GET", "/queued/admin", { token: t.adminToken });
    assertEquals(admin.status, 503);
    assertEquals((await admin.json()).error, "overloaded");
    assertEquals(plugin.calls.length, calls + 1, "refused by the call");
    // Admitted again once the plugin takes calls.
    full = false;
    const after = await t.req("GET", "/queued");
    assertEquals(after.status, 503);
    await after.body?.cancel();
    assertEquals(plugin.calls.length, 3);
  } finally {
    await t.close();
  }
});

/** Percentile of sorted numbers. */
function pct(sorted: number[], p: number): number {
  if (sorted.length === 0) return NaN;
  return sorted[Math.min(sorted.length - 1, Math.floor(sorted.length * p))]!;
}

interface Outcome {
  ms: number;
  res?: Http1Response;
  error?: string;
}

/**
 * `n` keep-alive connections, opened in batches (a burst of 4,000 SYNs
 * would overflow the listen backlog of 511 and measure the kernel's SYN
 * retries instead of the server), then one request on each at the same
 * time, while `/healthz` is probed one request at a time on its own
 * connection (opened before) until they all settled.
 */
async function burst(
  h: HostProcess,
  path: string,
  n: number,
): Promise<{ outcomes: Outcome[]; health: Outcome[] }> {
  const conns: Http1Connection[] = [];
  // The prober is a process of its own: probing from this process would
  // measure this event loop, busy with thousands of connections, too.
  const prober = new Deno.Command(Deno.execPath(), {
    args: [
      "run",
      "--allow-net",
      "--no-config",
      new URL("./helpers/healthz_probe.ts", import.meta.url).pathname,
      h.url,
    ],
    stdout: "piped",
    stderr: "inherit",
  }).spawn();
  const lines = prober.stdout.pipeThrough(new TextDecoderStream());
  const reader = lines.getReader();
  let text = "";
  const readUntilReady = async () => {
    while (!text.includes("ready\n")) {
      const { value, done } = await reader.read();
      if (done) {
        throw new Error("the /healthz prober ended before it was ready");
      }
      text += value;
    }
  };
  try {
    for (let i = 0; i < n; i += 200) {
      conns.push(
        ...await Promise.all(
          Array.from(
            { length: Math.min(200, n - i) },
            () => Http1Connection.open(h.url),
          ),
        ),
      );
    }
    await readUntilReady();
    const collecting = (async () => {
      for (;;) {
        const { value, done } = await reader.read();
        if (done) return;
        text += value;
      }
    })();
    const outcomes = await Promise.all(
      conns.map(async (conn): Promise<Outcome> => {
        const t0 = performance.now();
        let timer: ReturnType<typeof setTimeout> | undefined;
        try {
          const res = await Promise.race([
            conn.request(path),
            new Promise<never>((_, reject) => {
              timer = setTimeout(() => {
                conn.close();
                reject(new Error("no answer within 60 s"));
              }, 60_000);
            }),
          ]);
          return { ms: performance.now() - t0, res };
        } catch (e) {
          return { ms: performance.now() - t0, error: String(e) };
        } finally {
          clearTimeout(timer);
        }
      }),
    );
    prober.kill("SIGTERM");
    await collecting;
    const health: Outcome[] = text.split("\n").slice(1).filter((l) => l)
      .map((l) => {
        const [ms, status] = l.split(" ");
        return ms === "error" ? { ms: NaN, error: l } : {
          ms: Number(ms),
          res: {
            status: Number(status),
            headers: new Headers(),
            body: "",
            closed: false,
          },
        };
      });
    return { outcomes, health };
  } finally {
    try {
      prober.kill("SIGTERM");
    } catch { /* already gone */ }
    await prober.status;
    for (const c of conns) c.close();
  }
}

function report(label: string, outcomes: Outcome[], health: Outcome[]): void {
  const by = new Map<string, number[]>();
  for (const o of outcomes) {
    const key = o.res ? String(o.res.status) : "error";
    by.set(key, [...(by.get(key) ?? []), o.ms]);
  }
  const parts = [...by].map(([k, v]) => {
    v.sort((a, b) => a - b);
    return `${k}: ${v.length} (p50 ${pct(v, 0.5).toFixed(0)} ms, p99 ${
      pct(v, 0.99).toFixed(0)
    } ms)`;
  });
  const hz = health.map((o) => o.ms).sort((a, b) => a - b);
  console.log(
    `${label}: ${
      parts.join("; ")
    }; /healthz during the load: ${hz.length} probes, p50 ${
      pct(hz, 0.5).toFixed(1)
    } ms, max ${(hz.at(-1) ?? NaN).toFixed(1)} ms`,
  );
}

/** Checks one burst: only 200 and 503 (overloaded, with Retry-After). */
function checkBurst(outcomes: Outcome[], health: Outcome[]): number {
  const errors = outcomes.filter((o) => o.error);
  assertEquals(errors.length, 0, `failed requests: ${errors[0]?.error}`);
  let shed = 0;
  for (const o of outcomes) {
    const res = o.res!;
    if (res.status === 503) {
      shed++;
      assert(res.headers.get("retry-after"), "503 has Retry-After");
      assertEquals(JSON.parse(res.body).error, "overloaded");
    } else {
      assertEquals(res.status, 200, res.body);
    }
  }
  assert(health.length > 0, "/healthz was probed during the load");
  for (const o of health) {
    assert(o.res, `/healthz failed during the load: ${o.error}`);
    assertEquals(o.res.status, 200);
  }
  return shed;
}

Deno.test({
  name:
    "bounded loopback load: 4,000 connections on a slow route and 4,000 on a WASM route shed the excess with 503s, /healthz answers throughout, nothing is quarantined, the host is healthy after",
  // The default limit (1,024) and queue settings; fds: 4,000 here and as
  // many in the host (ulimit -n is checked below).
  async fn() {
    const limit = Number(
      new TextDecoder().decode(
        (await new Deno.Command("sh", { args: ["-c", "ulimit -n"] }).output())
          .stdout,
      ).trim(),
    );
    assert(
      limit === Infinity || Number.isNaN(limit) || limit >= 9000,
      `ulimit -n is ${limit}: this test needs 9,000 file descriptors`,
    );
    const h = await startHost({
      plugins: ["faults/slow-grpc-ts", "plugins/hello-c"],
      enable: ["hello-c", "slow-grpc"],
      // No per-plugin concurrency quota (its 429 is tests/quotas_test.ts's):
      // the server-wide limit is what this test drives.
      env: { GOATKIT_QUOTA_CONCURRENT_CALLS: "0" },
      lifetimeMs: 240_000,
    });
    try {
      // 3 s per call: even a slow, loaded host admits its 1,024 before the
      // first ones finish, so the excess is always shed.
      const slow = await burst(
        h,
        "/api/plugins/slow/sleep?ms=3000&size=100",
        4000,
      );
      report("slow gRPC route, 4,000 connections", slow.outcomes, slow.health);
      const shedSlow = checkBurst(slow.outcomes, slow.health);
      const served = slow.outcomes.length - shedSlow;
      assert(shedSlow > 0, "the excess was shed with 503");
      assert(served > 0, "requests within the limit were served");

      const wasm = await burst(h, "/api/plugins/hello-c?name=load", 4000);
      report(
        "WASM route (hello-c), 4,000 connections",
        wasm.outcomes,
        wasm.health,
      );
      checkBurst(wasm.outcomes, wasm.health);
      for (const o of wasm.outcomes) {
        if (o.res?.status === 200) assertMatch(o.res.body, /load/);
      }

      // Nothing was quarantined or disabled by the load.
      const list = await requestOnce(h.url, "/api/v1/plugins", {
        headers: { authorization: `Bearer ${h.token}` },
      });
      assertEquals(list.status, 200);
      const plugins = JSON.parse(list.body).plugins as {
        name: string;
        status: string;
      }[];
      assertEquals(
        plugins.map((p) => [p.name, p.status]).sort(),
        // hello-c asks for more than `log`: its grants wait, and it still runs.
        [["hello-c", "pending-grants"], ["slow-grpc", "running"]],
      );
      // Healthy after: both routes serve, nothing left in flight.
      const fast = await requestOnce(h.url, "/api/plugins/slow/fast");
      assertEquals(fast.status, 200);
      const hello = await requestOnce(h.url, "/api/plugins/hello-c?name=after");
      assertEquals(hello.status, 200);
      assertMatch(hello.body, /after/);
      const health = JSON.parse(
        (await requestOnce(h.url, "/healthz")).body,
      );
      assertEquals(health.plugins.quarantined, 0);
      assertEquals(health.requests.in_flight, 0);
      assert(
        health.requests.shed_total > 0,
        "the limit's refusals are counted",
      );
      console.log(`healthz after: ${JSON.stringify(health.requests)}`);
    } finally {
      await h.cleanup();
    }
  },
});
