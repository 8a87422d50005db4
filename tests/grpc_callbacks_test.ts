// Host callbacks of gRPC plugins are bound, on the host side, to an open
// host→plugin call of that plugin (issue 10, item 11), and the SDK's
// fetch helper goes out only through the host's guarded egress.
//
// Real TypeScript plugin processes: `fixtures/hostile/grpc-callback-forger`
// calls GKHost with a raw gRPC client of its own (bypassing the SDK's call
// id metadata) — no call id, a forged one, a finished one, several, another
// plugin's live one, after its deadline, with forged chain/deadline metadata,
// and a cycle A → B → A — and `fixtures/hostile/grpc-callback-fetch` uses
// `hostFetch` against a real HTTP server on loopback (granted explicitly as
// `http:127.0.0.1:<port>`, as the egress tests do) and against one that is
// not granted. Each refusal is asserted together with what did not happen
// (no cache entry, no HostAPI call, no request at the server, the cycle's
// target never ran) and with the host still serving legitimate calls.
//
// Sanitizers: off for the same reason as in grpc_runtime_test.ts (grpc-js
// releases its channel timers asynchronously); processes and socket
// directories are checked explicitly instead.
//
// Run: `deno test --allow-all tests/grpc_callbacks_test.ts`

import assert from "node:assert/strict";
import { Manager } from "../host/manager.ts";
import { MemoryHostAPI } from "../host/testing/memory_host_api.ts";
import { PluginTimeoutError } from "../host/model/errors.ts";
import type { HostAPI } from "../host/model/host_api.ts";
import { decodeJson, encodeJson } from "../host/model/plugin.ts";
import {
  AuditLog,
  createEgressClient,
  type GuardedHostAPI,
  guardedHostFactory,
  MemoryGrantStore,
} from "../permissions/mod.ts";
import { LogBuffer } from "../host/log_buffer.ts";
import {
  type CallbackRefusal,
  type GrpcPlugin,
  loadGrpcPlugin,
  type LoadGrpcPluginOptions,
} from "../runtimes/grpc/mod.ts";

const FORGER = new URL(
  "../fixtures/hostile/grpc-callback-forger/plugin.ts",
  import.meta.url,
).pathname;
const FETCHER = new URL(
  "../fixtures/hostile/grpc-callback-fetch/plugin.ts",
  import.meta.url,
).pathname;

const opts = { sanitizeOps: false, sanitizeResources: false };
const suffix = () => crypto.randomUUID().slice(0, 8);

interface Outcome {
  ok: boolean;
  code: string;
  details: string;
  value?: string;
}

function exists(path: string): boolean {
  try {
    Deno.lstatSync(path);
    return true;
  } catch {
    return false;
  }
}

async function load(
  entry: string,
  name: string,
  o: LoadGrpcPluginOptions = {},
): Promise<GrpcPlugin> {
  return await loadGrpcPlugin(entry, {
    startTimeoutMs: 20_000,
    ...o,
    args: ["--name", name, ...(o.args ?? [])],
  });
}

/** Checks every plugin process and socket directory is gone. */
function assertGone(plugins: GrpcPlugin[], pids: number[]): void {
  for (const pid of pids) {
    assert.ok(!exists(`/proc/${pid}`), `process ${pid} still in /proc`);
  }
  for (const p of plugins) {
    assert.ok(!exists(p.hostSocket), "host socket left behind");
    assert.ok(
      !exists(p.hostSocket.replace(/\/host\.sock$/, "")),
      "socket directory left behind",
    );
  }
}

/** A Manager whose plugins get MemoryHostAPIs that route plugin calls back. */
function memoryManager(config: Record<string, string> = {}) {
  const hosts = new Map<string, MemoryHostAPI>();
  const ref: { manager?: Manager } = {};
  const manager = ref.manager = new Manager({
    host: (name): HostAPI => {
      const h = new MemoryHostAPI({
        config: { "app.name": "GoatKit", ...config },
        callPlugin: (ctx, target, fn, args) =>
          ref.manager!.callFrom(name, target, fn, args, { parent: ctx }),
      });
      hosts.set(name, h);
      return h;
    },
  });
  return { manager, hosts };
}

async function call<T>(
  manager: Manager,
  name: string,
  fn: string,
  args: unknown = null,
  timeoutMs?: number,
): Promise<T> {
  return decodeJson<T>(
    await manager.call(
      name,
      fn,
      encodeJson(args),
      timeoutMs ? { timeoutMs } : {},
    ),
  )!;
}

/** Polls `report` until `key` is there (bounded). */
async function reported<T>(
  manager: Manager,
  name: string,
  key: string,
): Promise<T> {
  for (let i = 0; i < 200; i++) {
    const r = await call<Record<string, unknown>>(manager, name, "report");
    if (r[key] !== undefined) return r[key] as T;
    await new Promise((r) => setTimeout(r, 25));
  }
  throw new Error(`plugin "${name}" never reported "${key}"`);
}

function auditLines(h: MemoryHostAPI) {
  return h.logs.filter((l) => l.level === "warn" && l.fields?.audit === true);
}

Deno.test(
  "callbacks without a call id, with a forged, finished or doubled one are refused; Log alone works outside a call",
  opts,
  async () => {
    const name = `forger-${suffix()}`;
    const { manager, hosts } = memoryManager({ "init.key": "init-value" });
    const refusals: CallbackRefusal[] = [];
    const plugin = await load(FORGER, name, {
      onCallbackRefused: (r) => refusals.push(r),
    });
    const pid = plugin.status().pid!;
    await manager.register(plugin);
    const host = hosts.get(name)!;
    try {
      // Init is a call the host issued: the SDK's callback carried its id.
      // A raw callback without one, other than Log, was refused.
      const init = await call<Record<string, Outcome>>(
        manager,
        name,
        "report",
      );
      assert.deepEqual(init.initSdk, {
        ok: true,
        code: "OK",
        details: "",
        value: "init-value",
      });
      assert.equal(init.initRawNoId.code, "FAILED_PRECONDITION");
      assert.equal(init.initRawLog.ok, true);

      // The raw client works: with the call's own id the host answers.
      const own = await call<Outcome>(manager, name, "raw", {
        id: "own",
        key: "app.name",
      });
      assert.deepEqual(own, {
        ok: true,
        code: "OK",
        details: "",
        value: "GoatKit",
      });

      const none = await call<Outcome>(manager, name, "raw", {
        id: "none",
        method: "CacheSet",
        key: "k.none",
      });
      assert.equal(none.code, "FAILED_PRECONDITION");
      assert.match(
        none.details,
        new RegExp(
          `Cannot run host callback "CacheSet" of plugin "${name}": it names no call`,
        ),
      );

      const forged = await call<Outcome>(manager, name, "raw", {
        id: "forged",
        method: "CacheSet",
        key: "k.forged",
      });
      assert.equal(forged.code, "PERMISSION_DENIED");
      assert.match(forged.details, /is not an open call of this plugin/);

      const { callId } = await call<{ callId: string }>(manager, name, "stash");
      const finished = await call<Outcome>(manager, name, "raw", {
        id: "stashed",
        method: "CacheSet",
        key: "k.finished",
      });
      assert.equal(finished.code, "PERMISSION_DENIED");
      assert.ok(finished.details.includes(callId), finished.details);

      const both = await call<Outcome>(manager, name, "raw", {
        id: "both",
        method: "CacheSet",
        key: "k.both",
      });
      assert.equal(both.code, "PERMISSION_DENIED");
      assert.match(both.details, /more than one call/);

      // Log needs no call (start-up, background work).
      const log = await call<Outcome>(manager, name, "raw", {
        id: "none",
        method: "Log",
        key: "outside",
      });
      assert.equal(log.ok, true);
      assert.ok(
        host.logs.some((l) =>
          l.plugin === name && l.message === "raw log outside"
        ),
      );

      // Work left running after a call returned: the SDK sends no stale id;
      // the host refuses all but Log.
      await call(manager, name, "bg");
      const bg = await reported<Outcome>(manager, name, "bgLog");
      assert.equal(bg.ok, true);
      const bgGet = await reported<Outcome>(manager, name, "bg");
      assert.equal(bgGet.code, "FAILED_PRECONDITION");

      // Nothing reached the cache, and no refused callback reached the
      // HostAPI at all.
      assert.equal(host.cache.size, 0);
      assert.deepEqual(host.calls.filter((c) => c.method === "cacheSet"), []);
      assert.deepEqual(
        host.calls.filter((c) =>
          c.method === "configGet" &&
          ["init.raw", "bg.key"].includes(c.args[0] as string)
        ),
        [],
      );
      // Every refusal is on the audit trail, attributed to the plugin.
      const audit = auditLines(host);
      for (const attempt of [none, forged, finished, both, init.initRawNoId]) {
        assert.ok(
          audit.some((l) => l.plugin === name && l.message === attempt.details),
          `audited: ${attempt.details}`,
        );
      }
      assert.ok(audit.every((l) => l.plugin === name));
      // …and each reached the host's audit hook, with the status it got.
      assert.ok(refusals.length >= 5, JSON.stringify(refusals));
      assert.ok(refusals.every((r) => r.plugin === name));
      assert.ok(refusals.some((r) => r.status === "FAILED_PRECONDITION"));
      assert.ok(refusals.some((r) => r.status === "PERMISSION_DENIED"));

      // The host survived and legitimate calls still work.
      assert.deepEqual(await call(manager, name, "echo", { x: 1 }), { x: 1 });
      assert.equal(plugin.status().state, "running");
      assert.equal(plugin.status().restarts, 0);
    } finally {
      await manager.shutdownAll();
    }
    assertGone([plugin], [pid]);
  },
);

Deno.test(
  "another plugin's live call id is refused on this plugin's socket",
  opts,
  async () => {
    const a = `holder-${suffix()}`;
    const b = `thief-${suffix()}`;
    const { manager, hosts } = memoryManager();
    const [pa, pb] = await Promise.all([load(FORGER, a), load(FORGER, b)]);
    const pids = [pa.status().pid!, pb.status().pid!];
    await manager.register(pa);
    await manager.register(pb);
    try {
      // A's call is open while B (called by A) presents A's call id.
      const r = await call<{ peer: Outcome; still: Outcome }>(
        manager,
        a,
        "hold",
        { peer: b },
      );
      const peer = JSON.parse(r.peer.value!) as Outcome;
      assert.equal(peer.code, "PERMISSION_DENIED");
      assert.match(
        peer.details,
        new RegExp(`of plugin "${b}".*is not an open call of this plugin`),
      );
      // A's own call was live all along.
      assert.equal(r.still.ok, true);
      for (const h of [hosts.get(a)!, hosts.get(b)!]) {
        assert.equal(h.cache.size, 0);
        assert.deepEqual(h.calls.filter((c) => c.method === "cacheSet"), []);
      }
      assert.ok(
        auditLines(hosts.get(b)!).some((l) => l.message === peer.details),
      );
      assert.deepEqual(await call(manager, b, "echo", "ok"), "ok");
    } finally {
      await manager.shutdownAll();
    }
    assertGone([pa, pb], pids);
  },
);

Deno.test(
  "a callback runs under its call's host-side deadline: refused after it, cut off at it",
  opts,
  async () => {
    const a = `late-${suffix()}`;
    const b = `hang-${suffix()}`;
    const { manager, hosts } = memoryManager();
    const [pa, pb] = await Promise.all([load(FORGER, a), load(FORGER, b)]);
    const pids = [pa.status().pid!, pb.status().pid!];
    await manager.register(pa);
    await manager.register(pb);
    try {
      // The plugin ignores its deadline and calls back after it passed.
      await assert.rejects(
        call(manager, a, "late", null, 500),
        PluginTimeoutError,
      );
      const late = await reported<Outcome>(manager, a, "late");
      assert.equal(late.ok, false);
      assert.ok(
        ["DEADLINE_EXCEEDED", "PERMISSION_DENIED"].includes(late.code),
        late.code,
      );
      assert.deepEqual(
        hosts.get(a)!.calls.filter((c) => c.args[0] === "late.key"),
        [],
      );

      // A callback that claims no deadline (raw client), into a plugin that
      // hangs: answered at A's host-side deadline, and B's call is aborted
      // with a deadline no later than A's.
      await assert.rejects(
        call(manager, a, "slow", { peer: b }, 800),
        PluginTimeoutError,
      );
      const slow = await reported<{ deadline: number; outcome: Outcome }>(
        manager,
        a,
        "slow",
      );
      assert.equal(slow.outcome.code, "DEADLINE_EXCEEDED");
      const hang = await reported<
        { aborted: boolean; deadline: number; chain: string[] }
      >(manager, b, "hang");
      assert.equal(hang.aborted, true);
      assert.ok(hang.deadline <= slow.deadline, JSON.stringify(hang));
      assert.deepEqual(hang.chain, [a, b]);

      assert.deepEqual(await call(manager, a, "echo", 1), 1);
      assert.equal(pa.status().restarts, 0);
      assert.equal(pb.status().restarts, 0);
    } finally {
      await manager.shutdownAll();
    }
    assertGone([pa, pb], pids);
  },
);

Deno.test(
  "a cycle A → B → A through callbacks is refused whether B uses, strips or forges its call",
  opts,
  async () => {
    const a = `cycle-a-${suffix()}`;
    const b = `cycle-b-${suffix()}`;
    const { manager } = memoryManager();
    const [pa, pb] = await Promise.all([load(FORGER, a), load(FORGER, b)]);
    const pids = [pa.status().pid!, pb.status().pid!];
    await manager.register(pa);
    await manager.register(pb);
    try {
      const r = await call<Outcome>(manager, a, "cycle", { peer: b });
      assert.equal(r.ok, true, r.details);
      const back = JSON.parse(r.value!) as Record<string, Outcome>;
      // Through the SDK (B's own call id) and with forged chain, caller and
      // deadline metadata: the host's chain [A, B] already holds A.
      assert.equal(back.sdk!.code, "ABORTED");
      assert.match(back.sdk!.details, /cycle|already/i);
      assert.equal(back.forgedChain!.code, "ABORTED");
      // Stripping the call id, forging one, or presenting A's: refused.
      assert.equal(back.strip!.code, "FAILED_PRECONDITION");
      assert.equal(back.forged!.code, "PERMISSION_DENIED");
      assert.equal(back.foreign!.code, "PERMISSION_DENIED");
      // A's echo never ran.
      const report = await call<{ echoCalls: number }>(manager, a, "report");
      assert.equal(report.echoCalls, 0);

      // A legitimate plugin call through a callback still works.
      const ok = await call<Outcome>(manager, a, "raw", {
        id: "own",
        method: "CallPlugin",
        plugin: b,
        fn: "echo",
        args: { x: 1 },
      });
      assert.deepEqual(ok, {
        ok: true,
        code: "OK",
        details: "",
        value: '{"x":1}',
      });
      assert.equal(
        (await call<{ echoCalls: number }>(manager, b, "report")).echoCalls,
        1,
      );
    } finally {
      await manager.shutdownAll();
    }
    assertGone([pa, pb], pids);
  },
);

Deno.test(
  "hostFetch: a standard Response through the guarded egress; ungranted hosts refused",
  opts,
  async () => {
    const name = `fetcher-${suffix()}`;
    let slowAborted = false;
    let slowStarted = false;
    const ac = new AbortController();
    const server = Deno.serve({
      hostname: "127.0.0.1",
      port: 0,
      signal: ac.signal,
      onListen: () => {},
    }, async (req) => {
      const u = new URL(req.url);
      if (u.pathname === "/slow") {
        // Headers and a first chunk, then nothing: the body ends only when
        // the client goes away (the stream is cancelled).
        slowStarted = true;
        return new Response(
          new ReadableStream({
            start(c) {
              c.enqueue(new TextEncoder().encode("partial"));
            },
            cancel() {
              slowAborted = true;
            },
          }),
        );
      }
      const body = await req.text();
      return Response.json({
        method: req.method,
        path: u.pathname + u.search,
        test: req.headers.get("x-test"),
        body,
      }, { status: 201, headers: { "x-reply": "yes" } });
    });
    const port = (server.addr as Deno.NetAddr).port;
    let otherHits = 0;
    const other = Deno.serve({
      hostname: "127.0.0.1",
      port: 0,
      signal: ac.signal,
      onListen: () => {},
    }, () => {
      otherHits++;
      return new Response("leaked");
    });
    const otherPort = (other.addr as Deno.NetAddr).port;

    const grant = `http:127.0.0.1:${port}`;
    const grants = new MemoryGrantStore();
    await grants.set(name, [grant]);
    const logs = new LogBuffer({ capacity: 500 });
    const audit = new AuditLog({ logs });
    const factory = guardedHostFactory({
      grants,
      services: { http: createEgressClient({ timeoutMs: 10_000 }) },
      logs,
      audit,
    });
    const guarded: GuardedHostAPI[] = [];
    const manager = new Manager({
      logs,
      host: (n, manifest) => {
        const h = factory(n, manifest);
        guarded.push(h);
        return h;
      },
    });
    const plugin = await load(FETCHER, name, { args: ["--grant", grant] });
    const pid = plugin.status().pid!;
    try {
      await manager.register(plugin);
      const post = await call<Record<string, unknown>>(manager, name, "fetch", {
        url: `http://127.0.0.1:${port}/echo`,
        method: "POST",
        headers: { "x-test": "1" },
        body: "ping",
      });
      assert.equal(post.isResponse, true);
      assert.equal(post.status, 201);
      assert.equal(post.ok, true);
      assert.equal(post.url, `http://127.0.0.1:${port}/echo`);
      assert.equal(post.reply, "yes");
      assert.match(String(post.contentType), /application\/json/);
      assert.deepEqual(JSON.parse(post.text as string), {
        method: "POST",
        path: "/echo",
        test: "1",
        body: "ping",
      });
      const viaCtx = await call<Record<string, unknown>>(
        manager,
        name,
        "fetch",
        { url: `http://127.0.0.1:${port}/q?x=1`, viaCtx: true },
      );
      assert.equal(viaCtx.status, 201);
      assert.equal(JSON.parse(viaCtx.text as string).path, "/q?x=1");

      // Hosts outside the grant: another port, and a name for the same
      // address. Refused by the host; nothing reached the other server.
      for (
        const url of [
          `http://127.0.0.1:${otherPort}/`,
          `http://localhost:${port}/echo`,
        ]
      ) {
        const denied = await call<Record<string, unknown>>(
          manager,
          name,
          "fetch",
          { url },
        );
        assert.equal(denied.error, "HostCallError", JSON.stringify(denied));
        assert.equal(denied.code, "PERMISSION_DENIED");
      }
      assert.equal(otherHits, 0);
      assert.ok(audit.query({ plugin: name }).length >= 2);
      // The plugin has no network of its own.
      const direct = await call<Record<string, unknown>>(
        manager,
        name,
        "direct",
        { url: `http://127.0.0.1:${otherPort}/` },
      );
      assert.ok(direct.error, JSON.stringify(direct));
      assert.equal(otherHits, 0);

      // Giving up (init.signal) cancels the request at the host too.
      const aborted = await call<Record<string, unknown>>(
        manager,
        name,
        "fetch",
        { url: `http://127.0.0.1:${port}/slow`, abortMs: 300 },
      );
      assert.ok(
        ["TimeoutError", "AbortError"].includes(aborted.error as string),
        JSON.stringify(aborted),
      );
      for (let i = 0; i < 200 && !slowAborted; i++) {
        await new Promise((r) => setTimeout(r, 25));
      }
      assert.equal(slowStarted, true);
      assert.equal(slowAborted, true);

      // Still serving.
      const again = await call<Record<string, unknown>>(
        manager,
        name,
        "fetch",
        { url: `http://127.0.0.1:${port}/again` },
      );
      assert.equal(again.status, 201);
    } finally {
      await manager.shutdownAll();
      for (const h of guarded) h.close();
      ac.abort();
      await server.finished;
      await other.finished;
    }
    assertGone([plugin], [pid]);
  },
);
