// Hostile gRPC plugins: each failure mode ends in a typed error or is
// refused by Deno's flags, the hostile process is gone afterwards, and a
// well-behaved plugin loaded first keeps answering throughout.
//
// Sanitizers: off for the same reason as in grpc_runtime_test.ts (grpc-js
// releases its channel timers asynchronously); processes and socket
// directories are checked explicitly instead.

import assert from "node:assert/strict";
import { dirname } from "node:path";
import { Manager } from "../host/manager.ts";
import { MemoryHostAPI } from "../host/testing/memory_host_api.ts";
import { PluginCrashedError } from "../host/model/errors.ts";
import { decodeJson } from "../host/model/plugin.ts";
import type { LogLevel } from "../host/model/host_api.ts";
import {
  GrpcHandshakeError,
  loadGrpcPlugin as load,
  type LoadGrpcPluginOptions,
  UntrustedExecutableError,
} from "../runtimes/grpc/mod.ts";

const fixture = (p: string) =>
  new URL(`../fixtures/${p}`, import.meta.url).pathname;
const opts = { sanitizeOps: false, sanitizeResources: false };

/** Socket directories under this test's private temp directory. */
let tempDir = "";
function gkDirs(): Set<string> {
  const out = new Set<string>();
  for (const e of Deno.readDirSync(tempDir)) out.add(e.name);
  return out;
}

/**
 * Processes running a given fixture (by command line): an unsandboxed
 * `deno run` names the entry, a sandbox's bwrap names the entry's folder
 * (what runs inside dies with bwrap: it is its PID namespace).
 */
function processesRunning(path: string): number[] {
  const pids: number[] = [];
  for (const e of Deno.readDirSync("/proc")) {
    if (!/^\d+$/.test(e.name)) continue;
    try {
      const args = Deno.readTextFileSync(`/proc/${e.name}/cmdline`)
        .split("\0");
      if (args.includes(path) || args.includes(dirname(path))) {
        pids.push(Number(e.name));
      }
    } catch { /* gone */ }
  }
  return pids;
}

Deno.test(
  "hostile gRPC plugins are contained and the host keeps serving",
  opts,
  async (t) => {
    tempDir = await Deno.makeTempDir({ prefix: "gk-grpc-hostile-" });
    const loadGrpcPlugin = (entry: string, o: LoadGrpcPluginOptions = {}) =>
      load(entry, { tempDir, ...o });
    const host = new MemoryHostAPI();
    const manager = new Manager({ host });
    const hello = await loadGrpcPlugin(
      fixture("plugins/hello-grpc-ts/plugin.ts"),
    );
    await manager.register(hello);
    const dirsBefore = gkDirs();
    const stillServing = async () =>
      assert.deepEqual(
        decodeJson(await manager.call("hello-grpc", "get_status", null)),
        { status: "running", type: "grpc", version: "1.0.0" },
      );

    const handshakeFails = async (
      path: string,
      reason: string,
      check: (e: GrpcHandshakeError) => void,
      startTimeoutMs = 10_000,
    ) => {
      const entry = fixture(path);
      const e = await loadGrpcPlugin(entry, { startTimeoutMs }).then(
        () => assert.fail("loaded"),
        (e) => e,
      );
      assert.ok(e instanceof GrpcHandshakeError, String(e));
      assert.equal(e.reason, reason, e.message);
      check(e);
      assert.deepEqual(processesRunning(entry), [], "process killed");
      assert.deepEqual(gkDirs(), dirsBefore, "socket directory removed");
      await stillServing();
    };

    await t.step("never handshakes → timeout, killed", async () => {
      await handshakeFails("hostile/grpc-silent/plugin.ts", "timeout", (e) => {
        assert.match(e.stderr, /waiting forever/);
        assert.match(e.message, /no handshake line within 3000 ms/);
      }, 3000);
    });

    await t.step("prints garbage → malformed, with its stdout", async () => {
      await handshakeFails(
        "hostile/grpc-garbage/plugin.ts",
        "malformed",
        (e) => {
          assert.match(e.stdout, /definitely a plugin/);
        },
      );
    });

    await t.step("exits at once → exited, with code and stderr", async () => {
      await handshakeFails("hostile/grpc-exit/plugin.ts", "exited", (e) => {
        assert.equal(e.exitCode, 7);
        assert.match(e.stderr, /giving up immediately/);
      });
    });

    await t.step(
      "a native executable that is not trusted is refused",
      async () => {
        await assert.rejects(
          loadGrpcPlugin("/bin/true"),
          UntrustedExecutableError,
        );
        assert.deepEqual(gkDirs(), dirsBefore);
      },
    );

    await t.step(
      "crashes mid-call → PluginCrashedError; quarantined after repeats",
      async () => {
        const p = await loadGrpcPlugin(
          fixture("hostile/grpc-crash/plugin.ts"),
          {
            restart: { maxCrashes: 2, backoffMs: 10 },
          },
        );
        await manager.register(p);
        await assert.rejects(
          manager.call("grpc-crash", "boom", null),
          PluginCrashedError,
        );
        assert.deepEqual(
          decodeJson(await manager.call("grpc-crash", "ok", null)),
          { ok: true },
        );
        await assert.rejects(
          manager.call("grpc-crash", "boom", null),
          PluginCrashedError,
        );
        for (let i = 0; i < 100 && manager.isEnabled("grpc-crash"); i++) {
          await new Promise((r) => setTimeout(r, 20));
        }
        assert.equal(manager.isEnabled("grpc-crash"), false);
        await stillServing();
        await manager.unregister("grpc-crash");
        assert.deepEqual(
          processesRunning(fixture("hostile/grpc-crash/plugin.ts")),
          [],
        );
      },
    );

    await t.step(
      "floods stderr → lines capped and rate-limited, calls still answered",
      async () => {
        const lines: { level: LogLevel; message: string }[] = [];
        const p = await loadGrpcPlugin(
          fixture("hostile/grpc-flood/plugin.ts"),
          {
            logs: (level, message) => lines.push({ level, message }),
            logLinesPerSecond: 100,
          },
        );
        await manager.register(p);
        const t0 = Date.now();
        for (let i = 0; i < 20; i++) {
          assert.deepEqual(
            decodeJson(await manager.call("grpc-flood", "ping", null)),
            { fn: "ping", flooding: true },
          );
        }
        await new Promise((r) => setTimeout(r, 300));
        const seconds = (Date.now() - t0) / 1000 + 1;
        assert.ok(lines.length > 0);
        assert.ok(
          lines.length <= 100 * (seconds + 2) + 20,
          `${lines.length} lines in ${seconds}s`,
        );
        assert.ok(lines.every((l) => l.message.length <= 16384 + 20));
        assert.ok(lines.some((l) => l.message.endsWith("…[truncated]")));
        assert.ok(lines.some((l) => /dropped \d+ log lines/.test(l.message)));
        await stillServing();
        await manager.unregister("grpc-flood");
        assert.deepEqual(
          processesRunning(fixture("hostile/grpc-flood/plugin.ts")),
          [],
        );
      },
    );

    await t.step(
      "env, files outside, PostgreSQL, subprocesses: all refused by Deno's flags",
      async () => {
        const p = await loadGrpcPlugin(
          fixture("hostile/grpc-escape/plugin.ts"),
        );
        assert.equal(p.status().sandboxed, true);
        await manager.register(p);
        const r = decodeJson<Record<string, string>>(
          await manager.call("grpc-escape", "escape", null),
        )!;
        for (const [what, outcome] of Object.entries(r)) {
          assert.match(
            outcome,
            /^NotCapable: Requires /,
            `${what}: ${outcome}`,
          );
        }
        assert.match(r.connect_pg!, /net access to "127\.0\.0\.1:5432"/);
        assert.match(r.read_passwd!, /read access to "\/etc\/passwd"/);
        assert.match(r.env_home!, /env access to "HOME"/);
        assert.match(r.run!, /run access/);
        await stillServing();
        await manager.unregister("grpc-escape");
      },
    );

    await t.step(
      "refuses to stop → Shutdown, controller, SIGTERM, then SIGKILL",
      async () => {
        const entry = fixture("hostile/grpc-stubborn/plugin.ts");
        const lines: string[] = [];
        const p = await loadGrpcPlugin(entry, {
          shutdownGraceMs: 300,
          logs: (_l, m) => lines.push(m),
        });
        await manager.register(p);
        const { pid } = decodeJson<{ pid: number }>(
          await manager.call("grpc-stubborn", "pid", null),
        )!;
        assert.ok(processesRunning(entry).length > 0, "the check sees it");
        const t0 = Date.now();
        await manager.unregister("grpc-stubborn").catch(() => {});
        assert.ok(Date.now() - t0 < 10_000);
        assert.ok(
          lines.some((l) => /ignoring SIGTERM/.test(l)),
          "SIGTERM was sent",
        );
        assert.deepEqual(processesRunning(entry), [], `process ${pid} killed`);
        await stillServing();
      },
    );

    await manager.shutdownAll();
    assert.deepEqual(gkDirs(), new Set(), "no socket directories left");
    await Deno.remove(tempDir);
  },
);
