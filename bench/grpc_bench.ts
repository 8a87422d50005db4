// gRPC runtime benchmarks: one `Call` with a 105-byte JSON payload to the Go
// plugin (go-plugin 1.0.1, baseline) and to the TypeScript plugin, and cold
// start (spawn → handshake → connect → GKRegister → Init → first call).
//
//   deno bench -A bench/grpc_bench.ts
//
// `deno bench` prints avg/p75/p99; p50 and p99 from a separate sequential
// run of 5,000 calls (after 1,000 warm-up calls) are printed first, as a
// table, together with the anchor measured in the same run: a Go host using
// go-plugin's own client calling the same Go plugin
// (fixtures/plugins/hello-go/gohost). The Go plugin is built on first use (needs the Go toolchain; see
// fixtures/plugins/hello-go/build.sh); without it only the TS rows run.

import * as grpc from "@grpc/grpc-js";
import { dirname } from "node:path";
import { buildHelloGoAll } from "../fixtures/plugins/hello-go/build_go.ts";
import { createCallContext } from "../host/model/plugin.ts";
import { Manager } from "../host/manager.ts";
import { MemoryHostAPI } from "../host/testing/memory_host_api.ts";
import { type GrpcPlugin, loadGrpcPlugin } from "../runtimes/grpc/mod.ts";
import { loadProto, LOCAL_CHANNEL_OPTIONS } from "../runtimes/grpc/proto.ts";
import { H2Channel, REQUEST_PREFIX } from "../runtimes/grpc/h2_client.ts";
import {
  decodeCallResponse,
  encodeCallRequest,
} from "../runtimes/grpc/call_codec.ts";

const TS_ENTRY =
  new URL("../fixtures/plugins/hello-grpc-ts/plugin.ts", import.meta.url)
    .pathname;
const PAYLOAD = new TextEncoder().encode(
  JSON.stringify({
    name: "World",
    message: "Hello from the benchmark, a small JSON payload",
    n: 12345,
  }).padEnd(105, " "),
);
if (PAYLOAD.length !== 105) throw new Error(`payload is ${PAYLOAD.length} B`);

const built = await buildHelloGoAll();
const goBin = built?.plugin;
const loaded: GrpcPlugin[] = [];
globalThis.addEventListener("unload", () => {
  // Plugins exit when their stdin closes with this process; remove the
  // private socket directories here.
  for (const p of loaded) {
    try {
      Deno.removeSync(dirname(p.hostSocket), { recursive: true });
    } catch { /* gone */ }
  }
});

async function load(entry: string): Promise<GrpcPlugin> {
  const p = await loadGrpcPlugin(entry, {
    ...(entry === goBin ? { trustedExecutables: [entry] } : {}),
    startTimeoutMs: 30_000,
  });
  await p.init(new MemoryHostAPI());
  loaded.push(p);
  return p;
}

const ctx = createCallContext({ timeoutMs: 3_600_000 });
const go = goBin ? await load(goBin) : undefined;
const ts = await load(TS_ENTRY);
const manager = new Manager({ host: new MemoryHostAPI() });
if (go) {
  await manager.register(await load(goBin!));
}

// Two floors, no runtime wrapper, to the Go plugin: grpc-js (what
// GrpcPlugin.call used before issue 12) and the host's own HTTP/2 client
// (what it uses now), each with the same request.
let raw: (() => Promise<unknown>) | undefined;
let h2: (() => Promise<unknown>) | undefined;
if (go) {
  const probe = await loadGrpcPlugin(goBin!, { trustedExecutables: [goBin!] });
  loaded.push(probe);
  const address = [...Deno.readDirSync(`${dirname(probe.hostSocket)}/plugin`)]
    .map((e) => `${dirname(probe.hostSocket)}/plugin/${e.name}`)[0]!;
  const client = new (loadProto().GKPlugin)(
    `unix:${address}`,
    grpc.credentials.createInsecure(),
    LOCAL_CHANNEL_OPTIONS,
  ) as unknown as {
    Call: (r: unknown, cb: (e: unknown, r: unknown) => void) => void;
  };
  const req = { function: "echo", args_json: PAYLOAD };
  raw = () =>
    new Promise((res, rej) => client.Call(req, (e, r) => e ? rej(e) : res(r)));
  const channel = new H2Channel({ transport: "unix", path: address });
  h2 = () => {
    const deadline = Date.now() + 60_000;
    const body = encodeCallRequest({
      function: "echo",
      args: PAYLOAD,
      callId: crypto.randomUUID(),
      caller: "",
      language: "",
      deadline,
      chain: [],
    }, REQUEST_PREFIX);
    return new Promise((res, rej) =>
      channel.call(
        "/goatkit.plugin.v1.GKPlugin/Call",
        body,
        deadline,
        (e, m) => e ? rej(e) : res(decodeCallResponse(m!)),
      )
    );
  };
}

async function percentiles(
  label: string,
  fn: () => Promise<unknown>,
): Promise<string> {
  for (let i = 0; i < 1000; i++) await fn();
  const t: number[] = [];
  for (let i = 0; i < 5000; i++) {
    const s = performance.now();
    await fn();
    t.push(performance.now() - s);
  }
  t.sort((a, b) => a - b);
  const us = (q: number) => (t[Math.floor(q * t.length)]! * 1000).toFixed(0);
  return `| ${label} | ${us(0.5)} µs | ${us(0.99)} µs |`;
}

// The anchor, in the same run: go-plugin's own Go client calling hello-go
// (median of 3 runs of 5,000 calls).
interface GoHostResult {
  p50_us: number;
  p99_us: number;
  cold_ms: number;
}
const anchor: GoHostResult[] = [];
if (built) {
  for (let i = 0; i < 3; i++) {
    const out = await new Deno.Command(built.gohost, {
      args: [built.plugin, "5000"],
      stdin: "null",
    }).output();
    if (out.success) {
      anchor.push(JSON.parse(new TextDecoder().decode(out.stdout)));
    }
  }
}
const median = (xs: number[]) => xs.sort((a, b) => a - b)[xs.length >> 1]!;

const rows = ["| call (105-byte JSON echo) | p50 | p99 |", "|---|---|---|"];
if (anchor.length) {
  rows.push(
    `| anchor: Go host (go-plugin client) → Go plugin | ${
      median(anchor.map((a) => a.p50_us)).toFixed(0)
    } µs | ${median(anchor.map((a) => a.p99_us)).toFixed(0)} µs |`,
  );
}
if (raw) rows.push(await percentiles("grpc-js alone → Go plugin", raw));
if (h2) rows.push(await percentiles("h2_client alone → Go plugin", h2));
if (go) {
  rows.push(
    await percentiles(
      "GrpcPlugin.call → Go plugin",
      () => go.call("echo", PAYLOAD, ctx),
    ),
  );
  rows.push(
    await percentiles(
      "Manager.call → Go plugin",
      () => manager.call("hello-go", "echo", PAYLOAD),
    ),
  );
}
rows.push(
  await percentiles(
    "GrpcPlugin.call → TS plugin",
    () => ts.call("echo", PAYLOAD, ctx),
  ),
);
console.log(rows.join("\n"));

if (go) {
  Deno.bench({
    group: "call",
    name: "Go plugin (go-plugin 1.0.1)",
    baseline: true,
    fn: async () => {
      await go.call("echo", PAYLOAD, ctx);
    },
  });
  Deno.bench({
    group: "call",
    name: "Go plugin via Manager.call",
    fn: async () => {
      await manager.call("hello-go", "echo", PAYLOAD);
    },
  });
}
Deno.bench({
  group: "call",
  name: "TS plugin (SDK)",
  baseline: !go,
  fn: async () => {
    await ts.call("echo", PAYLOAD, ctx);
  },
});

async function coldStart(entry: string, sandboxed = true): Promise<number> {
  const t0 = performance.now();
  const p = await loadGrpcPlugin(entry, {
    ...(entry === goBin ? { trustedExecutables: [entry] } : {}),
    ...(sandboxed ? {} : { sandbox: "none" as const, logs: () => {} }),
    startTimeoutMs: 30_000,
  });
  await p.init(new MemoryHostAPI());
  await p.call("get_status", null, ctx);
  const ms = performance.now() - t0;
  await p.shutdown();
  return ms;
}

// Cold start, measured by hand (median of 5 after one warm-up), then as
// bench rows (which include the shutdown).
const cold = [
  "| cold start (spawn → first call) | median | min |",
  "|---|---|---|",
];
if (anchor.length) {
  cold.push(
    `| anchor: Go host → Go plugin (spawn → GKRegister) | ${
      median(anchor.map((a) => a.cold_ms)).toFixed(1)
    } ms | ${Math.min(...anchor.map((a) => a.cold_ms)).toFixed(1)} ms |`,
  );
}
for (
  const [label, entry, sandboxed] of [
    ["Go plugin (sandboxed)", goBin, true],
    ["TS plugin (sandboxed)", TS_ENTRY, true],
    ["TS plugin (unsandboxed)", TS_ENTRY, false],
  ] as const
) {
  if (!entry) continue;
  await coldStart(entry, sandboxed);
  const t: number[] = [];
  for (let i = 0; i < 5; i++) t.push(await coldStart(entry, sandboxed));
  t.sort((a, b) => a - b);
  cold.push(`| ${label} | ${t[2]!.toFixed(1)} ms | ${t[0]!.toFixed(1)} ms |`);
}
console.log(cold.join("\n"));

if (go) {
  Deno.bench({
    group: "cold start + shutdown",
    name: "Go plugin",
    baseline: true,
    n: 10,
    warmup: 1,
    fn: async () => {
      await coldStart(goBin!);
    },
  });
}
Deno.bench({
  group: "cold start + shutdown",
  name: "TS plugin",
  baseline: !go,
  n: 5,
  warmup: 1,
  fn: async () => {
    await coldStart(TS_ENTRY);
  },
});
