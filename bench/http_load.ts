/**
 * HTTP load generator (issues 11 and 12): starts `host/serve.ts` as a
 * subprocess (temp data dir, a private schema on the test PostgreSQL, the
 * `hello-c` WASM, `bench-echo` WASM and `hello-grpc-ts` gRPC fixtures) and,
 * for a plain route (`/healthz`, the baseline), a WASM echo route (`GET
 * /api/plugins/bench-echo`: the guest does nothing, so the figure is the
 * host's route path), the `hello-c` WASM route (it logs a line per call) and
 * a gRPC route (`GET /api/plugins/hello-grpc/status`, with the admin token),
 * runs closed loops on N keep-alive HTTP/1.1 connections (raw
 * `Deno.connect`, one request at a time per connection) for a fixed time
 * per cell, then prints req/s, the ratio to the plain route at the same
 * connection count, p50/p99 latency, the host's CPU time per request (its
 * main thread, and its WASM worker threads, from Linux `/proc`) and the
 * answers by status (or error) per cell.
 *
 * A script, not a `Deno.bench` file (a cell is a timed run against a
 * separate process, not a function to repeat):
 *
 * ```sh
 * deno run -A bench/http_load.ts                        # 10, 100, 1000, 2000 connections, 3 s per cell
 * deno run -A bench/http_load.ts --conns=100,2000 --seconds=5 --routes=wasm
 * deno run -A bench/http_load.ts --routes=plain,echo --honor-retry-after  # clients wait as a 503 asks
 * deno run -A bench/http_load.ts --conns=100 --routes=plain,echo --rounds=5  # median ratio over 5 rounds
 * deno run -A bench/http_load.ts --warmup=0             # no unreported warm-up run per route (default 1 s)
 * GOATKIT_MAX_IN_FLIGHT=256 deno run -A bench/http_load.ts   # host settings pass through
 * ```
 *
 * Loopback only; every loop stops at its cell's deadline and each request
 * has a 10 s cap. The generator shares the machine (and its cores) with
 * the host: figures are comparative, not absolute.
 *
 * @module
 */

import { parseArgs } from "node:util";
import { startHost } from "../tests/helpers/host_process.ts";
import { Http1Connection, requestOnce } from "../tests/helpers/http1_client.ts";
import { threadCpu } from "../tests/helpers/thread_ticks.ts";

const { values } = parseArgs({
  args: Deno.args,
  options: {
    conns: { type: "string", default: "10,100,1000,2000" },
    seconds: { type: "string", default: "3" },
    routes: { type: "string", default: "plain,echo,wasm,grpc" },
    "honor-retry-after": { type: "boolean", default: false },
    rounds: { type: "string", default: "1" },
    warmup: { type: "string", default: "1" },
  },
});
const CONNS = values.conns.split(",").map(Number).filter((n) => n > 0);
const SECONDS = Math.max(0.5, Number(values.seconds) || 3);
const PER_REQUEST_TIMEOUT_MS = 10_000;
const HONOR_RETRY_AFTER = values["honor-retry-after"];
const ROUNDS = Math.max(1, Math.floor(Number(values.rounds) || 1));
const WARMUP_SECONDS = Math.max(0, Number(values.warmup) || 0);

interface Cell {
  route: string;
  conns: number;
  done: number;
  /** Answers with status 200. */
  ok: number;
  elapsedMs: number;
  latencies: number[];
  byStatus: Map<string, number>;
}

/** Closed loops on `n` connections for `seconds`. */
async function runCell(
  url: string,
  route: string,
  path: string,
  headers: Record<string, string>,
  n: number,
  seconds = SECONDS,
): Promise<Cell> {
  const cell: Cell = {
    route,
    conns: n,
    done: 0,
    ok: 0,
    elapsedMs: 0,
    latencies: [],
    byStatus: new Map(),
  };
  const count = (key: string) =>
    cell.byStatus.set(key, (cell.byStatus.get(key) ?? 0) + 1);
  // Open the connections in batches: a burst of SYNs beyond the listen
  // backlog (511) would measure the kernel's SYN retries.
  const conns: Http1Connection[] = [];
  for (let i = 0; i < n; i += 200) {
    const batch = await Promise.allSettled(
      Array.from(
        { length: Math.min(200, n - i) },
        () => Http1Connection.open(url),
      ),
    );
    for (const b of batch) {
      if (b.status === "fulfilled") conns.push(b.value);
      else count(`connect error`);
    }
  }
  const start = performance.now();
  const deadline = start + seconds * 1000;
  await Promise.all(conns.map(async (first) => {
    let conn: Http1Connection | undefined = first;
    let retryAfterMs = 0;
    while (performance.now() < deadline) {
      if (!conn) {
        try {
          conn = await Http1Connection.open(url);
        } catch {
          count("connect error");
          continue;
        }
      }
      const t0 = performance.now();
      let timer: ReturnType<typeof setTimeout> | undefined;
      try {
        const res = await Promise.race([
          conn.request(path, { headers }),
          new Promise<never>((_, reject) => {
            timer = setTimeout(
              () => reject(new Error("timeout")),
              PER_REQUEST_TIMEOUT_MS,
            );
          }),
        ]);
        cell.latencies.push(performance.now() - t0);
        if (res.status === 503) {
          retryAfterMs = 1000 * Number(res.headers.get("retry-after") ?? "1");
        }
        cell.done++;
        count(String(res.status));
        if (res.status === 200) cell.ok++;
        if (res.closed) {
          conn.close();
          conn = undefined;
        }
      } catch (e) {
        count((e as Error).message === "timeout" ? "timeout" : "error");
        conn?.close();
        conn = undefined;
      } finally {
        clearTimeout(timer);
      }
      // A well-behaved client waits as a 503 asks (up to the cell's end).
      if (HONOR_RETRY_AFTER && retryAfterMs > 0) {
        const wait = Math.min(retryAfterMs, deadline - performance.now());
        retryAfterMs = 0;
        if (wait > 0) await new Promise((r) => setTimeout(r, wait));
      }
    }
    conn?.close();
  }));
  cell.elapsedMs = performance.now() - start;
  return cell;
}

function pct(sorted: number[], p: number): string {
  if (sorted.length === 0) return "—";
  const v = sorted[Math.min(sorted.length - 1, Math.floor(sorted.length * p))]!;
  return v < 10 ? v.toFixed(2) : v.toFixed(0);
}

const ROUTES: Record<string, { path: string; auth: boolean; label: string }> = {
  plain: { path: "/healthz", auth: false, label: "plain /healthz" },
  echo: {
    path: "/api/plugins/bench-echo?message=hello",
    auth: false,
    label: "WASM echo",
  },
  wasm: {
    path: "/api/plugins/hello-c?name=bench",
    auth: false,
    label: "WASM hello-c",
  },
  grpc: {
    path: "/api/plugins/hello-grpc/status",
    auth: true,
    label: "gRPC hello-grpc",
  },
};

/** The routes asked for, checked before the host starts. */
const SELECTED = values.routes.split(",").map((key) => {
  const r = ROUTES[key];
  if (!r) {
    throw new Error(
      `Cannot run route "${key}": not one of ${Object.keys(ROUTES)}`,
    );
  }
  return { key, ...r };
});

const hostEnv: Record<string, string> = {};
for (const [k, v] of Object.entries(Deno.env.toObject())) {
  if (k.startsWith("GOATKIT_")) hostEnv[k] = v;
}
const host = await startHost({
  plugins: ["plugins/hello-c", "plugins/hello-grpc-ts", "bench/echo-wat"],
  env: hostEnv,
  enable: ["hello-c", "hello-grpc", "bench-echo"],
  lifetimeMs: 30 * 60_000,
});
try {
  const health = JSON.parse((await requestOnce(host.url, "/healthz")).body);
  console.log(
    `host ${host.url}: ${health.plugins.registered} plugins, max_in_flight ${health.requests.max_in_flight}; ${SECONDS} s per cell\n`,
  );
  console.log(
    "| route | conns | req/s | 200/s | vs plain | p50 ms | p99 ms | host CPU µs/req (main + workers) | generator CPU µs/req | answers by status |",
  );
  console.log("|---|---:|---:|---:|---:|---:|---:|---|---:|---|");
  // Every route once, unreported, before the first round: otherwise the
  // first route measured (the plain one) runs cold and flatters the ratio.
  const headersOf = (r: { auth?: boolean }): Record<string, string> =>
    r.auth ? { authorization: `Bearer ${host.token}` } : {};
  for (const r of WARMUP_SECONDS > 0 ? SELECTED : []) {
    await runCell(
      host.url,
      r.label,
      r.path,
      headersOf(r),
      CONNS[0]!,
      WARMUP_SECONDS,
    );
    await new Promise((resolve) => setTimeout(resolve, 500));
  }
  const plainRate = new Map<number, number>();
  /** Ratios to the plain route, by route label and connection count. */
  const ratios = new Map<string, number[]>();
  for (let round = 0; round < ROUNDS; round++) {
    for (const r of SELECTED) {
      const key = r.key;
      const headers = headersOf(r);
      for (const n of CONNS) {
        const cpu0 = threadCpu(host.child.pid);
        const gen0 = threadCpu(Deno.pid);
        const cell = await runCell(host.url, r.label, r.path, headers, n);
        const cpu1 = threadCpu(host.child.pid);
        const gen1 = threadCpu(Deno.pid);
        const sorted = cell.latencies.sort((a, b) => a - b);
        const statuses = [...cell.byStatus].sort().map(([k, v]) => `${k}: ${v}`)
          .join(", ");
        const rate = Math.round(cell.done / (cell.elapsedMs / 1000));
        if (key === "plain") plainRate.set(n, rate);
        const base = plainRate.get(n);
        if (base && key !== "plain") {
          const k = `${r.label} | ${n}`;
          ratios.set(k, [...(ratios.get(k) ?? []), rate / base]);
        }
        const perReq = (ms: number) =>
          cell.done > 0 ? ((ms * 1000) / cell.done).toFixed(0) : "—";
        const okRate = Math.round(cell.ok / (cell.elapsedMs / 1000));
        console.log(
          `| ${r.label} | ${n} | ${rate} | ${okRate} | ${
            base ? (rate / base).toFixed(2) : "—"
          } | ${pct(sorted, 0.5)} | ${pct(sorted, 0.99)} | ${
            perReq(cpu1.main - cpu0.main)
          } + ${perReq(cpu1.workers - cpu0.workers)} | ${
            perReq(gen1.main - gen0.main)
          } | ${statuses} |`,
        );
        // Let the host settle between cells (queues drain, sockets close).
        await new Promise((resolve) => setTimeout(resolve, 500));
      }
    }
  }
  if (ROUNDS > 1) {
    console.log(
      "\n| route | conns | ratio to plain, each round | median |\n|---|---:|---|---:|",
    );
    for (const [k, v] of ratios) {
      const sorted = [...v].sort((a, b) => a - b);
      console.log(
        `| ${k} | ${v.map((x) => x.toFixed(2)).join(", ")} | ${
          sorted[Math.floor(sorted.length / 2)]!.toFixed(2)
        } |`,
      );
    }
  }
  const after = JSON.parse((await requestOnce(host.url, "/healthz")).body);
  console.log(
    `\nafter: quarantined ${after.plugins.quarantined}, in flight ${after.requests.in_flight}, shed by the in-flight limit ${after.requests.shed_total}`,
  );
} finally {
  await host.cleanup();
}
