// OpenTelemetry traces of a real host process (`OTEL_DENO=true`), exported
// over OTLP/HTTP JSON to a receiver this test runs on loopback: one plugin
// route request is one trace (Deno's HTTP span → plugin.call → host.<method>
// → service spans), and no secret (admin token, secret config value,
// Authorization or Cookie header) is in anything exported.

import assert from "node:assert/strict";
import {
  type Context,
  context,
  ROOT_CONTEXT,
  trace,
  type Tracer,
} from "@opentelemetry/api";
import {
  PermissionDeniedError,
  PluginTimeoutError,
} from "../host/model/errors.ts";
import { runIntercepted } from "../host/model/interceptors.ts";
import { createTracing, errorKind } from "../host/telemetry/tracing.ts";
import { startHost } from "./helpers/host_process.ts";

/** An OTLP attribute list, as the JSON encoding writes it. */
type OtlpAttribute = {
  key: string;
  value: { stringValue?: string; intValue?: string; boolValue?: boolean };
};

/** One exported span, flattened. */
interface ExportedSpan {
  traceId: string;
  spanId: string;
  parentSpanId: string;
  name: string;
  kind: number;
  scope: string;
  attributes: Record<string, string | boolean | undefined>;
}

/** A loopback OTLP/HTTP receiver keeping every body it is sent. */
function startReceiver() {
  const bodies: { path: string; text: string }[] = [];
  const server = Deno.serve(
    { hostname: "127.0.0.1", port: 0, onListen: () => {} },
    async (req) => {
      bodies.push({ path: new URL(req.url).pathname, text: await req.text() });
      return Response.json({});
    },
  );
  const spans = (): ExportedSpan[] => {
    const out: ExportedSpan[] = [];
    for (const b of bodies) {
      if (b.path !== "/v1/traces") continue;
      const doc = JSON.parse(b.text);
      for (const rs of doc.resourceSpans ?? []) {
        for (const ss of rs.scopeSpans ?? []) {
          for (const s of ss.spans ?? []) {
            const attributes: ExportedSpan["attributes"] = {};
            for (const a of (s.attributes ?? []) as OtlpAttribute[]) {
              attributes[a.key] = a.value.stringValue ?? a.value.intValue ??
                a.value.boolValue;
            }
            out.push({
              traceId: s.traceId,
              spanId: s.spanId,
              parentSpanId: s.parentSpanId ?? "",
              name: s.name,
              kind: s.kind,
              scope: ss.scope?.name ?? "",
              attributes,
            });
          }
        }
      }
    }
    return out;
  };
  return {
    port: (server.addr as Deno.NetAddr).port,
    bodies,
    spans,
    close: () => server.shutdown(),
  };
}

/** Waits until `done()` holds, polling; fails after `ms`. */
async function until(done: () => boolean, ms: number, what: string) {
  const end = Date.now() + ms;
  while (!done()) {
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

Deno.test({
  name:
    "OTEL_DENO host: a plugin route is one trace (HTTP → plugin.call → host calls → services) and no secret is exported",
  sanitizeResources: false,
  sanitizeOps: false,
  async fn() {
    const receiver = startReceiver();
    const secret = `s3cr3t-${crypto.randomUUID()}`;
    const cookie = `cookie-${crypto.randomUUID()}`;
    const host = await startHost({
      plugins: ["plugins/hello-c", "plugins/hello-rust"],
      env: {
        OTEL_DENO: "true",
        OTEL_EXPORTER_OTLP_ENDPOINT: `http://127.0.0.1:${receiver.port}`,
        OTEL_EXPORTER_OTLP_PROTOCOL: "http/json",
        OTEL_SERVICE_NAME: "goatkit-telemetry-test",
        GOATKIT_REQUIRE_APPROVAL: "none",
        GOATKIT_SECRET_API_KEY: secret,
      },
    });
    try {
      const auth = { authorization: `Bearer ${host.token}` };
      // Every permission granted but one, so one kind of host call is
      // refused (grants live in the host tables every test host shares:
      // revoke all first).
      const cleared = await fetch(`${host.url}/api/v1/plugins/hello-c/grants`, {
        method: "DELETE",
        headers: auth,
      });
      assert.equal(cleared.status, 200, await cleared.text());
      const granted = await fetch(`${host.url}/api/v1/plugins/hello-c/grants`, {
        method: "POST",
        headers: { ...auth, "content-type": "application/json" },
        body: JSON.stringify({
          permissions: [
            "db:read",
            "db:write",
            "cache:read",
            "http:example.com",
            "email:test@example.com",
            "config:app.name",
            "plugins:call:hello-rust",
            "log",
          ],
        }),
      });
      assert.equal(granted.status, 200, await granted.text());
      const res = await fetch(`${host.url}/api/plugins/hello-c/test`, {
        headers: { ...auth, cookie: `gk_session=${cookie}` },
      });
      const body = await res.text();
      assert.equal(res.status, 200, body);

      const isTestCall = (s: ExportedSpan) =>
        s.name === "plugin.call" &&
        s.attributes["goatkit.plugin"] === "hello-c" &&
        s.attributes["goatkit.function"] === "test";
      await until(
        () => {
          const spans = receiver.spans();
          const call = spans.find(isTestCall);
          return call !== undefined &&
            spans.some((s) =>
              s.parentSpanId === call.spanId && s.name === "host.callPlugin"
            ) &&
            spans.some((s) => s.kind === 2 && s.traceId === call.traceId);
        },
        20_000,
        "the trace of the test route",
      );
      // A graceful stop flushes what is left (log records included).
      host.signal("SIGTERM");
      assert.equal((await host.status).code, 0);

      const spans = receiver.spans();
      const call = spans.find(isTestCall)!;
      const trace = spans.filter((s) => s.traceId === call.traceId);
      const byId = new Map(trace.map((s) => [s.spanId, s]));
      const children = (parent: ExportedSpan) =>
        trace.filter((s) => s.parentSpanId === parent.spanId);

      // Deno's own HTTP server span is the plugin call's parent.
      const http = byId.get(call.parentSpanId);
      assert.ok(http, "the plugin call's parent span is exported");
      assert.equal(http.kind, 2, "the parent is a SERVER span");
      assert.equal(http.scope, "deno");
      assert.equal(call.scope, "goatkit");
      assert.equal(call.attributes["goatkit.outcome"], "ok");
      assert.equal(call.attributes["goatkit.runtime"], "wasm");

      // Each host call is a child of the plugin call.
      const hostSpans = children(call).filter((s) =>
        s.name.startsWith("host.")
      );
      const methods = hostSpans.map((s) => s.attributes["goatkit.host.method"])
        .sort();
      assert.deepEqual(methods, [
        "cacheDelete",
        "cacheGet",
        "cacheSet",
        "callPlugin",
        "configGet",
        "dbExec",
        "dbQuery",
        "httpRequest",
        "sendEmail",
        "translate",
      ]);
      for (const s of hostSpans) {
        assert.equal(s.name, `host.${s.attributes["goatkit.host.method"]}`);
        assert.equal(s.attributes["goatkit.plugin"], "hello-c");
      }
      const named = (m: string) =>
        hostSpans.find((s) => s.name === `host.${m}`)!;
      assert.equal(named("dbQuery").attributes["goatkit.outcome"], "allowed");
      const denied = named("cacheSet");
      assert.equal(denied.attributes["goatkit.outcome"], "denied");
      assert.equal(denied.attributes["goatkit.permission"], "cache:write");
      assert.equal(denied.attributes["goatkit.error.kind"], "denied");

      // The services run under their host calls.
      const service = (m: string, name: string) =>
        children(named(m)).find((s) => s.name === name);
      const query = service("dbQuery", "db.query");
      assert.ok(query, "db.query under host.dbQuery");
      assert.equal(query.attributes["db.operation.name"], "SELECT");
      assert.ok(
        service("cacheGet", "cache.get"),
        "cache.get under host.cacheGet",
      );
      assert.ok(
        service("sendEmail", "email.send"),
        "email.send under host.sendEmail",
      );
      assert.ok(
        service("httpRequest", "http.request"),
        "http.request under host.httpRequest",
      );
      // A refused call never reached the cache.
      assert.equal(service("cacheSet", "cache.set"), undefined);
      // A plugin calling a plugin: the callee's call under host.callPlugin.
      const callee = children(named("callPlugin")).find((s) =>
        s.name === "plugin.call"
      );
      assert.ok(callee, "plugin.call of hello-rust under host.callPlugin");
      assert.equal(callee.attributes["goatkit.plugin"], "hello-rust");
      assert.equal(callee.attributes["goatkit.caller"], "hello-c");

      // Nothing secret in anything exported: spans, logs, metrics.
      const logs = receiver.bodies.filter((b) => b.path === "/v1/logs");
      assert.ok(
        logs.some((b) => b.text.includes("Ready:")),
        "console lines are exported as log records (so the check below sees them)",
      );
      const exported = receiver.bodies.map((b) => b.text).join("\n");
      assert.ok(host.token.startsWith("gk_"));
      assert.ok(!exported.includes(host.token), "the admin token is exported");
      assert.ok(!exported.includes(host.token.slice(3)));
      assert.ok(
        !exported.includes(secret),
        "a secret config value is exported",
      );
      assert.ok(!exported.includes(cookie), "a cookie value is exported");
      assert.ok(!/"(authorization|cookie)"/i.test(exported));
      // The token was shown on the terminal all the same.
      assert.ok(host.stdout().includes(host.token));
    } finally {
      await host.cleanup();
      await receiver.close();
    }
  },
});

/** A span as the fake tracer records it. */
interface FakeSpan {
  name: string;
  id: string;
  parent: string | undefined;
  attributes: Record<string, unknown>;
  status?: { code: number; message?: string };
  ended: boolean;
}

/** A tracer recording spans and their parents (no exporter needed). */
function fakeTracer() {
  const spans: FakeSpan[] = [];
  let n = 0;
  const tracer = {
    startSpan(
      name: string,
      options: { attributes?: Record<string, unknown> },
      ctx: Context,
    ) {
      const id = (++n).toString(16).padStart(16, "0");
      const rec: FakeSpan = {
        name,
        id,
        parent: trace.getSpan(ctx)?.spanContext().spanId,
        attributes: { ...options.attributes },
        ended: false,
      };
      spans.push(rec);
      const span = {
        spanContext: () => ({
          traceId: "1".repeat(32),
          spanId: id,
          traceFlags: 1,
        }),
        setAttribute(k: string, v: unknown) {
          rec.attributes[k] = v;
          return span;
        },
        setAttributes(a: Record<string, unknown>) {
          Object.assign(rec.attributes, a);
          return span;
        },
        setStatus(s: { code: number; message?: string }) {
          rec.status = s;
          return span;
        },
        end() {
          rec.ended = true;
        },
        isRecording: () => true,
      };
      return span;
    },
  } as unknown as Tracer;
  return { tracer, spans };
}

Deno.test("createTracing() parents host calls on their plugin call when they arrive outside its async context", async () => {
  const { tracer, spans } = fakeTracer();
  const tracing = createTracing({ tracer, runtimeOf: () => "wasm" });
  const ctx = {
    chain: ["hello"],
    deadline: Date.now() + 5000,
    signal: new AbortController().signal,
  };
  const hostCall = (c: typeof ctx, method: "dbQuery" | "cacheSet") =>
    // Run from the root context, as a worker's message handler would.
    context.with(ROOT_CONTEXT, () =>
      runIntercepted([tracing.host], {
        plugin: "hello",
        method,
        ctx: c,
        args: ["SELECT 1"],
      }, () =>
        method === "cacheSet"
          ? Promise.reject(
            new PermissionDeniedError("hello", "cache:write", "cache_set k"),
          )
          : Promise.resolve([])));
  await runIntercepted([tracing.plugin], {
    plugin: "hello",
    fn: "greet",
    args: null,
    ctx,
  }, async () => {
    // WASM: the same chain and signal come back with the host call.
    await hostCall({ ...ctx }, "dbQuery");
    // gRPC: both copied; the plugin's only open call is the parent.
    await hostCall(
      { ...ctx, chain: [...ctx.chain], signal: new AbortController().signal },
      "cacheSet",
    ).catch(() => {});
    return null;
  });
  const call = spans.find((s) => s.name === "plugin.call")!;
  assert.equal(call.attributes["goatkit.runtime"], "wasm");
  assert.equal(call.attributes["goatkit.outcome"], "ok");
  const query = spans.find((s) => s.name === "host.dbQuery")!;
  assert.equal(query.parent, call.id);
  assert.equal(query.attributes["goatkit.outcome"], "allowed");
  const denied = spans.find((s) => s.name === "host.cacheSet")!;
  assert.equal(denied.parent, call.id);
  assert.equal(denied.attributes["goatkit.outcome"], "denied");
  assert.equal(denied.attributes["goatkit.permission"], "cache:write");
  assert.equal(denied.status?.message, "denied"); // the kind, not the message
  assert.ok(spans.every((s) => s.ended));
  assert.equal(tracing.openCalls(), 0);
});

Deno.test("createTracing() does not guess the parent of a copied context while two calls of the plugin are open", async () => {
  const { tracer, spans } = fakeTracer();
  const tracing = createTracing({ tracer });
  const open = Promise.withResolvers<null>();
  const call = (fn: string) =>
    runIntercepted([tracing.plugin], {
      plugin: "hello",
      fn,
      args: null,
      ctx: {
        chain: ["hello"],
        deadline: Date.now() + 5000,
        signal: new AbortController().signal,
      },
    }, () => open.promise);
  const both = Promise.all([call("a"), call("b")]);
  assert.equal(tracing.openCalls(), 2);
  await runIntercepted([tracing.host], {
    plugin: "hello",
    method: "configGet",
    ctx: {
      chain: ["hello"],
      deadline: Date.now() + 5000,
      signal: new AbortController().signal,
    },
    args: ["app.name"],
  }, () => Promise.resolve("x"));
  open.resolve(null);
  await both;
  assert.equal(
    spans.find((s) => s.name === "host.configGet")!.parent,
    undefined,
  );
  const timedOut = new PluginTimeoutError("hello", 10);
  assert.equal(errorKind(timedOut), "timeout");
});
