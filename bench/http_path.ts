/**
 * The host's per-request cost over HTTP, route kind by route kind (issues 11
 * and 12): a server process wired as `boot.ts` wires it (`createApp` with
 * metrics, `auditOrigins`, `server.front`, `Deno.serve`) with an in-process
 * echo plugin, loaded by closed loops on keep-alive HTTP/1.1 connections
 * from this process, and the server's CPU time per answered request
 * (`process.cpuUsage()` of the server process, all threads) for:
 *
 * - `plain`: `GET /healthz` (the baseline);
 * - `shed`: a plugin route while the in-flight limit is reached (`503
 *   overloaded`: the limit is 1 and one call is held);
 * - `refused`: a plugin route whose plugin refuses every call at once
 *   (`refuseNow`, as a WASM plugin with a full queue does: `503
 *   overloaded`, answered before the call is built);
 * - `echo`: a plugin route whose plugin returns its input (the host's route
 *   path without a runtime: Hono route, auth chain, args, `Manager.call`).
 *
 * CPU per request is the figure to compare (it does not count the time the
 * server waits for a core on a shared machine); req/s is printed too.
 *
 * ```sh
 * deno run -A bench/http_path.ts                       # 100 connections, 3 s per cell, 3 rounds
 * deno run -A bench/http_path.ts --conns=400 --seconds=2 --rounds=5
 * # one server under a profiler, loaded by hand (SIGTERM writes the profile):
 * deno run -A --cpu-prof bench/http_path.ts --serve open   # or: --serve shed
 * ```
 *
 * @module
 */

import process from "node:process";
import { parseArgs } from "node:util";
import { Http1Connection } from "../tests/helpers/http1_client.ts";

const ROUTES: Record<string, { path: string; status: number }> = {
  plain: { path: "/healthz", status: 200 },
  shed: { path: "/bench/echo?message=hello", status: 503 },
  refused: { path: "/bench/refused?message=hello", status: 503 },
  echo: { path: "/bench/echo?message=hello", status: 200 },
};

/** Runs the server: prints its URL, answers `/__cpu` with its CPU time. */
async function serve(shed: boolean): Promise<void> {
  const { Manager } = await import("../host/manager.ts");
  const { createApp } = await import("../host/server/mod.ts");
  const { HostMetrics } = await import("../host/telemetry/metrics.ts");
  const { auditOrigins } = await import("../host/audit_trail.ts");
  const { AuditLog } = await import("../permissions/audit.ts");
  const { MemoryTokenStore } = await import("../host/server/auth/tokens.ts");
  const { SessionStore } = await import("../host/server/auth/sessions.ts");
  const hold = Promise.withResolvers<void>();
  const manager = new Manager();
  await manager.register({
    gkRegister: () => ({
      name: "bench",
      version: "1.0.0",
      routes: [
        { method: "GET", path: "/bench/echo", handler: "echo" },
        { method: "GET", path: "/bench/hold", handler: "hold" },
      ],
    }),
    init: () => Promise.resolve(),
    call: async (fn: string, input: Uint8Array | null) => {
      if (fn === "hold") await hold.promise;
      return input;
    },
    shutdown: () => Promise.resolve(),
  });
  const { describeOverload } = await import("../host/model/errors.ts");
  await manager.register({
    gkRegister: () => ({
      name: "busy",
      version: "1.0.0",
      routes: [{ method: "GET", path: "/bench/refused", handler: "work" }],
    }),
    init: () => Promise.resolve(),
    call: (_fn: string, input: Uint8Array | null) => Promise.resolve(input),
    refuseNow: (call: { function: string }) =>
      describeOverload("busy", {
        function: call.function,
        queued: 256,
        retryAfterSeconds: 1,
      }),
    shutdown: () => Promise.resolve(),
  });
  const tokens = new MemoryTokenStore();
  const sessions = new SessionStore();
  const app = createApp({
    manager,
    tokens,
    sessions,
    metrics: new HostMetrics(),
    ...(shed ? { maxInFlight: 1 } : {}),
  });
  const handler = auditOrigins(app.fetch, {
    audit: new AuditLog(),
    tokens,
    sessions,
    trustProxy: false,
  });
  const front = app.front ? app.front(handler) : handler;
  const server = Deno.serve({
    port: 0,
    hostname: "127.0.0.1",
    onListen: (addr) => console.log(`http://127.0.0.1:${addr.port}`),
  }, (request, info) => {
    if (request.url.endsWith("/__cpu")) {
      const u = process.cpuUsage();
      return new Response(String(u.user + u.system));
    }
    return front(request, info);
  });
  // Exit on SIGTERM (so that `--cpu-prof` writes its profile).
  Deno.addSignalListener("SIGTERM", () => Deno.exit(0));
  if (shed) {
    // Take the one place and keep it.
    app.fetch(new Request("http://h/bench/hold")).catch(() => {});
  }
  await server.finished;
  hold.resolve();
}

async function cpuOf(url: string): Promise<number> {
  return Number(await (await fetch(`${url}/__cpu`)).text());
}

/** Closed loops on `n` connections for `seconds`; answers per status. */
async function load(
  url: string,
  path: string,
  n: number,
  seconds: number,
): Promise<{ done: number; statuses: Map<number, number> }> {
  const conns = await Promise.all(
    Array.from({ length: n }, () => Http1Connection.open(url)),
  );
  const statuses = new Map<number, number>();
  let done = 0;
  const deadline = performance.now() + seconds * 1000;
  await Promise.all(conns.map(async (conn) => {
    while (performance.now() < deadline) {
      const res = await conn.request(path);
      statuses.set(res.status, (statuses.get(res.status) ?? 0) + 1);
      done++;
    }
    conn.close();
  }));
  return { done, statuses };
}

async function main(): Promise<void> {
  const { values } = parseArgs({
    args: Deno.args,
    options: {
      conns: { type: "string", default: "100" },
      seconds: { type: "string", default: "3" },
      rounds: { type: "string", default: "3" },
      routes: { type: "string", default: "plain,shed,refused,echo" },
    },
  });
  const conns = Math.max(1, Number(values.conns) || 100);
  const seconds = Math.max(0.5, Number(values.seconds) || 3);
  const rounds = Math.max(1, Number(values.rounds) || 3);
  const keys = values.routes.split(",");
  console.log(
    `${conns} connections, ${seconds} s per cell, ${rounds} rounds\n`,
  );
  console.log("| round | route | req/s | server CPU µs/req | statuses |");
  console.log("|---:|---|---:|---:|---|");
  for (let round = 1; round <= rounds; round++) {
    for (const key of keys) {
      const route = ROUTES[key];
      if (!route) throw new Error(`Cannot run route "${key}": unknown`);
      const child = new Deno.Command(Deno.execPath(), {
        args: [
          "run",
          "-A",
          new URL(import.meta.url).pathname,
          "--serve",
          key === "shed" ? "shed" : "open",
        ],
        stdout: "piped",
        stderr: "inherit",
      }).spawn();
      const reader = child.stdout.pipeThrough(new TextDecoderStream())
        .getReader();
      let first = "";
      while (!first.includes("\n")) {
        const { value, done } = await reader.read();
        if (done) throw new Error("the server ended before listening");
        first += value;
      }
      const url = first.trim().split("\n")[0]!;
      try {
        await load(url, route.path, 10, 0.5); // warm up
        const c0 = await cpuOf(url);
        const t0 = performance.now();
        const { done, statuses } = await load(url, route.path, conns, seconds);
        const elapsed = (performance.now() - t0) / 1000;
        const c1 = await cpuOf(url);
        const wrong = [...statuses.keys()].filter((s) => s !== route.status);
        console.log(
          `| ${round} | ${key} | ${Math.round(done / elapsed)} | ${
            ((c1 - c0) / done).toFixed(1)
          } | ${[...statuses].map(([s, c]) => `${s}: ${c}`).join(", ")}${
            wrong.length ? " (unexpected)" : ""
          } |`,
        );
      } finally {
        child.kill("SIGKILL");
        await child.status;
        await reader.cancel().catch(() => {});
      }
    }
  }
}

if (import.meta.main) {
  const at = Deno.args.indexOf("--serve");
  if (at >= 0) await serve(Deno.args[at + 1] === "shed");
  else await main();
}
