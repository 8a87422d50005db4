/**
 * `gk` against a real host (`host/serve.ts` as a subprocess, real HTTP,
 * PostgreSQL grants) from a temp directory outside the repository, with
 * plugins compiled by clang: install, list, call, the grants table,
 * upgrade with its permission diff and downgrade guard, enable/disable,
 * `logs --follow`, uninstall, and the host's errors in one line.
 *
 * Run: `deno test -A tests/cli_host_test.ts`
 *
 * @module
 */

import assert from "node:assert/strict";
import { join } from "node:path";
import { startHost } from "./helpers/host_process.ts";
import { gk, makeCPlugin, spawnGk } from "./cli_helpers.ts";

Deno.test("gk manages a plugin on a running host: install, list, call, grants, upgrade diff, downgrade guard, logs --follow, uninstall", async () => {
  const dir = await Deno.makeTempDir({ prefix: "gk_cli_host_" });
  const host = await startHost({ plugins: [] });
  const name = `cli-demo-${crypto.randomUUID().slice(0, 8)}`;
  const cli = (...args: string[]) =>
    gk(dir, [...args, "--url", host.url, "--token", host.token]);
  try {
    // Three versions, each compiled so its module registers its manifest.
    for (
      const [version, permissions] of [
        ["1.0.0", ["log"]],
        ["1.1.0", ["log", "cache:read"]],
        ["0.9.0", ["log"]],
      ] as const
    ) {
      const src = await makeCPlugin(join(dir, `v${version}`), {
        name,
        version,
        permissions: [...permissions],
      });
      const packed = await gk(dir, [
        "pack",
        src,
        "-o",
        `${name}-${version}.zip`,
      ]);
      assert.equal(packed.code, 0, packed.err);
    }

    const upgradeMissing = await cli("upgrade", `${name}-1.0.0.zip`);
    assert.equal(upgradeMissing.code, 1);
    assert.equal(
      upgradeMissing.err.trim(),
      `gk upgrade: Cannot upgrade "${name}": it is not installed on ${host.url} (use gk install)`,
    );

    const installed = await cli("install", `${name}-1.0.0.zip`);
    assert.equal(installed.code, 0, installed.err);
    assert.match(
      installed.out,
      new RegExp(`^installed ${name} 1\\.0\\.0`, "m"),
    );

    const list = await cli("list");
    assert.equal(list.code, 0, list.err);
    const header = list.out.split("\n")[0]!;
    assert.match(header, /^NAME +VERSION +RUNTIME +STATUS/);
    assert.match(
      list.out,
      new RegExp(`^${name} +1\\.0\\.0 +wasm +(enabled|running)\\b`, "m"),
    );

    const call = await cli("call", name, "hello", '{"name":"Ana"}');
    assert.equal(call.code, 0, call.err);
    assert.equal(JSON.parse(call.out).message, "Hello from C, Ana!");

    // Upgrade: the diff is printed before installing; the new permission
    // waits for approval.
    const up = await cli("upgrade", `${name}-1.1.0.zip`);
    assert.equal(up.code, 0, up.err);
    assert.match(
      up.out,
      new RegExp(`^${name} 1\\.0\\.0 → 1\\.1\\.0: permissions change$`, "m"),
    );
    assert.match(up.out, /^ {2}\+ cache:read {2}\(needs approval\)$/m);
    assert.match(up.out, /^ {4}log$/m);
    assert.match(up.out, /upgraded from 1\.0\.0/);

    const pending = await cli("grants", name);
    assert.equal(pending.code, 0, pending.err);
    assert.match(pending.out, /^PERMISSION +REQUESTED +APPROVED +PENDING$/m);
    assert.match(pending.out, /^cache:read +yes +no +yes$/m);
    const approved = await cli("grants", name, "--approve", "cache:read");
    assert.equal(approved.code, 0, approved.err);
    assert.match(approved.out, /^cache:read +yes +yes +no$/m);
    const notRequested = await cli("grants", name, "--approve", "db:write");
    assert.equal(notRequested.code, 1);
    assert.match(
      notRequested.err,
      /^gk grants: Cannot POST ".*\/grants": 400 Cannot grant "db:write" to plugin ".*": manifest does not request it/m,
    );

    // Downgrade: warned and refused by upgrade, then allowed.
    const down = await cli("upgrade", `${name}-0.9.0.zip`);
    assert.equal(down.code, 1);
    assert.match(
      down.err,
      /warning: .* 0\.9\.0 is older than the installed 1\.1\.0/,
    );
    assert.match(
      down.err,
      new RegExp(
        `gk upgrade: Cannot upgrade "${name}" from 1\\.1\\.0 to 0\\.9\\.0: it is a downgrade \\(pass --allow-downgrade\\)`,
      ),
    );
    const forced = await cli(
      "upgrade",
      `${name}-0.9.0.zip`,
      "--allow-downgrade",
    );
    assert.equal(forced.code, 0, forced.err);
    assert.match(forced.out, /^ {2}- cache:read$/m);
    assert.match(forced.out, /downgraded from 1\.1\.0/);

    const disabled = await cli("disable", name);
    assert.equal(disabled.code, 0, disabled.err);
    assert.match(
      (await cli("list")).out,
      new RegExp(`^${name} +0\\.9\\.0 +wasm +disabled`, "m"),
    );
    assert.equal((await cli("enable", name)).code, 0);

    // logs --follow prints lines logged after it started, then stops.
    const follow = spawnGk(dir, [
      "logs",
      "--follow",
      "--plugin",
      name,
      "--limit",
      "1",
      "--interval",
      "100",
      "--seconds",
      "20",
      "--url",
      host.url,
      "--token",
      host.token,
    ]);
    try {
      await new Promise((r) => setTimeout(r, 1500));
      const logged = await cli("call", name, "log_all");
      assert.equal(logged.code, 0, logged.err);
      await follow.waitFor(/ERROR \[.*\] Error from hello-c/, 15_000);
      assert.match(follow.out(), /WARN {2}\[.*\] Warn from hello-c/);
    } finally {
      follow.child.kill("SIGINT");
      assert.equal((await follow.status).code, 0, follow.err());
    }
    // Each line once, although every poll sees it again.
    assert.equal(follow.out().match(/Error from hello-c/g)?.length, 1);

    // The host's errors, in one line each.
    await Deno.writeTextFile(join(dir, "junk.zip"), "not a zip");
    const junk = await cli("install", "junk.zip");
    assert.equal(junk.code, 1);
    assert.equal(junk.err.trim().split("\n").length, 2, junk.err); // progress + error
    assert.match(
      junk.err,
      /^gk install: Cannot POST "\/api\/v1\/plugins\/upload": [45]\d\d \S/m,
    );

    const removed = await cli("uninstall", name);
    assert.equal(removed.code, 0, removed.err);
    assert.doesNotMatch((await cli("list")).out, new RegExp(name));
    const unknown = await cli("call", name, "hello");
    assert.equal(unknown.code, 1);
    assert.match(unknown.err, /^gk call: Cannot POST .* 404 /m);
  } finally {
    await host.cleanup();
    await Deno.remove(dir, { recursive: true });
  }
});
