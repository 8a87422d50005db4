/**
 * `GrpcPlugin.usage()` (metrics and quotas read it through
 * `Manager.usage`): the plugin process's CPU time and resident memory from
 * `/proc`, its calls and restarts; CPU time stays cumulative across a
 * restart.
 *
 * Run: `deno test -A tests/grpc_usage_test.ts`
 *
 * @module
 */

import assert from "node:assert/strict";
import { Manager } from "../host/manager.ts";
import { MemoryHostAPI } from "../host/testing/memory_host_api.ts";
import { encodeJson } from "../host/model/plugin.ts";
import { loadGrpcPlugin } from "../runtimes/grpc/mod.ts";

const HELLO =
  new URL("../fixtures/plugins/hello-grpc-ts/plugin.ts", import.meta.url)
    .pathname;

Deno.test({
  name:
    "usage(): a gRPC plugin's CPU, memory, calls and restarts; CPU time survives a restart",
  sanitizeOps: false,
  sanitizeResources: false,
  async fn() {
    const manager = new Manager({ host: new MemoryHostAPI() });
    const plugin = await loadGrpcPlugin(HELLO, { startTimeoutMs: 20_000 });
    await manager.register(plugin);
    try {
      for (let i = 0; i < 50; i++) {
        await manager.call("hello-grpc", "echo", encodeJson({ name: "u" }));
      }
      const first = manager.usage("hello-grpc")!;
      assert.equal(first.calls, 50);
      // A Deno process that loaded grpc-js: tens of MB, and some CPU.
      assert.ok(
        (first.rssBytes ?? 0) > 10 * 1024 * 1024,
        `rss ${first.rssBytes}`,
      );
      assert.ok(first.cpuMs > 0, `cpu ${first.cpuMs} ms`);
      assert.equal(first.restarts, 0);

      const pid = plugin.status().pid!;
      Deno.kill(pid, "SIGKILL");
      for (let i = 0; i < 200 && plugin.status().state !== "running"; i++) {
        await new Promise((r) => setTimeout(r, 50));
      }
      // The first usage() after the restart notices the new process.
      for (let i = 0; i < 200 && plugin.status().pid === pid; i++) {
        await new Promise((r) => setTimeout(r, 50));
      }
      await manager.call("hello-grpc", "echo", encodeJson({ name: "again" }));
      // usage() reads /proc at most once a second.
      await new Promise((r) => setTimeout(r, 1100));
      const after = manager.usage("hello-grpc")!;
      assert.equal(after.restarts, 1);
      assert.ok(
        after.cpuMs >= first.cpuMs,
        `cpu went back from ${first.cpuMs} to ${after.cpuMs} ms`,
      );
      assert.equal(after.calls, 51);
    } finally {
      await manager.shutdownAll();
    }
  },
});
