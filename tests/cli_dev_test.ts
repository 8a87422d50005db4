/**
 * `gk dev` against a real host: it builds (clang), packs and installs the
 * plugin, then a change to the C source is rebuilt and installed within
 * seconds and the route answers with the new code; Ctrl-C stops it with
 * exit code 0.
 *
 * Run: `deno test -A tests/cli_dev_test.ts`
 *
 * @module
 */

import assert from "node:assert/strict";
import { join } from "node:path";
import { startHost } from "./helpers/host_process.ts";
import { makeCPlugin, spawnGk } from "./cli_helpers.ts";

Deno.test("gk dev rebuilds and reinstalls on change; the host answers with the new code; Ctrl-C stops it", async () => {
  const dir = await Deno.makeTempDir({ prefix: "gk_cli_dev_" });
  const host = await startHost({ plugins: [] });
  const name = `cli-dev-${crypto.randomUUID().slice(0, 8)}`;
  const route = async () => {
    const res = await fetch(`${host.url}/api/plugins/${name}?name=Ana`);
    return { status: res.status, body: await res.text() };
  };
  try {
    const plugin = await makeCPlugin(dir, { name, build: false });
    const dev = spawnGk(plugin, [
      "dev",
      "--debounce",
      "200",
      "--url",
      host.url,
      "--token",
      host.token,
    ]);
    try {
      await dev.waitFor(new RegExp(`installed ${name} 1\\.0\\.0`), 90_000);
      await dev.waitFor(/watching \. for changes/);
      const first = await route();
      assert.equal(first.status, 200, first.body);
      assert.equal(JSON.parse(first.body).message, "Hello from C, Ana!");

      // Edit the source: one rebuild, one reinstall, the new answer.
      const source = join(plugin, "plugin.c");
      const text = await Deno.readTextFile(source);
      await Deno.writeTextFile(
        source,
        text.replace("Hello from C, ", "Hello from dev, "),
      );
      await dev.waitFor(
        new RegExp(`reloaded ${name} 1\\.0\\.0 into`),
        60_000,
      );
      const second = await route();
      assert.equal(JSON.parse(second.body).message, "Hello from dev, Ana!");
      // The build's own output (plugin.wasm) did not trigger another round.
      await new Promise((r) => setTimeout(r, 1000));
      assert.equal(dev.out().match(/reloaded /g)?.length, 1, dev.err());
      assert.match(dev.err(), /changed plugin\.c: building/);
    } finally {
      dev.child.kill("SIGINT");
      const status = await dev.status;
      assert.equal(status.code, 0, dev.err());
    }
    assert.match(dev.err(), /stopped/);
  } finally {
    await host.cleanup();
    await Deno.remove(dir, { recursive: true });
  }
});
