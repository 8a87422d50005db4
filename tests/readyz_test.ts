/**
 * `/readyz` is readiness, `/healthz` liveness: a host whose database does
 * not answer is alive (`/healthz` 200) but not ready (`/readyz` 503 naming
 * the database), and ready once the database answers. Real hosts on
 * loopback; the unreachable database is a closed loopback port.
 */

import assert from "node:assert/strict";
import { join } from "node:path";
import { boot, type RunningHost } from "../host/boot.ts";
import { hostConfig, privateSchema } from "./server_helpers.ts";

/** A loopback port nobody listens on (bound, then closed). */
function closedPort(): number {
  const l = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const port = (l.addr as Deno.NetAddr).port;
  l.close();
  return port;
}

async function withHost(
  databaseUrl: string,
  body: (host: RunningHost) => Promise<void>,
): Promise<void> {
  const data = await Deno.makeTempDir({ prefix: "gk_readyz_" });
  let host: RunningHost | undefined;
  try {
    host = await boot({
      config: hostConfig(
        join(data, "data"),
        join(data, "plugins"),
        databaseUrl,
      ),
      print: () => {},
    });
    await body(host);
  } finally {
    await host?.close();
    await Deno.remove(data, { recursive: true });
  }
}

Deno.test("/readyz: database unreachable → 503 naming it, while /healthz stays 200", async () => {
  const url = `postgres://postgres@127.0.0.1:${closedPort()}/test`;
  await withHost(url, async (host) => {
    const health = await fetch(`${host.url}/healthz`);
    assert.equal(health.status, 200);
    assert.equal((await health.json()).status, "ok");
    const ready = await fetch(`${host.url}/readyz`);
    assert.equal(ready.status, 503);
    assert.equal(ready.headers.get("cache-control"), "no-store");
    const report = await ready.json();
    assert.equal(report.status, "not-ready");
    assert.deepEqual(
      report.failures.map((f: { check: string }) => f.check),
      ["database"],
      JSON.stringify(report),
    );
    assert.ok(report.failures[0].error.length > 0);
  });
});

Deno.test("/readyz: database and cache answer, plugins folder empty → 200 ready", async () => {
  const db = await privateSchema();
  try {
    await withHost(db.url, async (host) => {
      const ready = await fetch(`${host.url}/readyz`);
      const body = await ready.json();
      assert.deepEqual([ready.status, body], [200, {
        status: "ready",
        failures: [],
        // This host's id and roles; the only live host of its schema.
        host: { id: body.host?.id, roles: ["http", "scheduler"] },
        cluster: { hosts: 1 },
      }]);
      assert.equal(typeof body.host.id, "string");
      // The plugins folder is created at start.
      assert.ok((await Deno.stat(host.config.server.pluginsDir)).isDirectory);
    });
  } finally {
    await db.drop();
  }
});
