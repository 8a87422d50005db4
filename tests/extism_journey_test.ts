// An Extism plugin author's journey (issue 16, host part), with real
// subprocesses and real HTTP from a temp folder outside the repository:
// write the plugin folder (sidecar manifest.json, extism.json and a WAT
// plugin compiled with npm:wabt), `gk run --abi extism` it locally, `gk
// pack` it, start a host (`host/serve.ts`, PostgreSQL in a private schema),
// `gk install` the package, approve its config grant with `gk grants`, POST
// a body to its route and get the plugin's output; a second host on the same
// database serves it from the synced package with the same grant and vars;
// restart the host: the plugin is still served and its vars are kept.

import assert from "node:assert/strict";
import { join } from "node:path";
import { gk } from "./cli_helpers.ts";
import { startHost } from "./helpers/host_process.ts";
import { extismHostWasm } from "./helpers/extism_wat.ts";

Deno.test(
  "Extism journey: gk run, gk pack, gk install, gk grants, POST to the route; a second host serves it with the same vars; after a restart still served with its vars",
  async () => {
    const dir = await Deno.makeTempDir({ prefix: "gk_extism_journey_" });
    const name = `ex-journey-${crypto.randomUUID().slice(0, 6)}`;
    const folder = join(dir, name);
    await Deno.mkdir(folder);
    await Deno.writeFile(join(folder, "plugin.wasm"), await extismHostWasm());
    await Deno.writeTextFile(
      join(folder, "manifest.json"),
      JSON.stringify({
        name,
        version: "1.0.0",
        description: "Echo, visits and a greeting, through the Extism ABI",
        routes: ["echo", "visit", "config"].map((fn) => ({
          method: "POST",
          path: `/api/plugins/${name}/${fn}`,
          handler: fn,
        })),
      }),
    );
    await Deno.writeTextFile(
      join(folder, "extism.json"),
      JSON.stringify({
        wasm: [{ path: "plugin.wasm" }],
        config: { greeting: "Grüezi from extism.json" },
        memory: { max_pages: 16 },
        timeout_ms: 5000,
      }),
    );

    // Locally, without a host: the module is recognised by its imports.
    const run = await gk(dir, [
      "run",
      "--abi",
      "extism",
      join(name, "plugin.wasm"),
      "echo",
      "--input",
      "raw input, not JSON",
    ]);
    assert.equal(run.code, 0, run.err);
    assert.equal(run.out.trim(), "raw input, not JSON");
    const auto = await gk(dir, [
      "run",
      join(name, "plugin.wasm"),
      "config",
      "--input",
      "greeting",
    ]);
    assert.equal(auto.code, 0, auto.err);
    assert.equal(auto.out.trim(), "Grüezi from extism.json");
    const failing = await gk(dir, [
      "run",
      join(name, "plugin.wasm"),
      "config",
      "--input",
      "absent",
    ]);
    assert.equal(failing.code, 1);
    assert.match(failing.err, /no such config key/);

    const packed = await gk(dir, ["pack", name, "-o", "ex.zip"]);
    assert.equal(packed.code, 0, packed.err);
    assert.match(packed.out, /extism\.json/);
    assert.match(packed.out, /plugin\.wasm/);

    // A folder without extism.json is told what is missing.
    const bare = join(dir, "bare");
    await Deno.mkdir(bare);
    await Deno.copyFile(join(folder, "plugin.wasm"), join(bare, "plugin.wasm"));
    await Deno.writeTextFile(
      join(bare, "manifest.json"),
      JSON.stringify({ name: "bare-extism", version: "1.0.0" }),
    );
    const refused = await gk(dir, ["pack", "bare"]);
    assert.equal(refused.code, 1);
    assert.match(refused.err, /is an Extism plugin module; add extism\.json/);

    const first = await startHost({ plugins: [] });
    let second: Awaited<ReturnType<typeof startHost>> | undefined;
    try {
      const cli = (url: string, ...args: string[]) =>
        gk(dir, [...args, "--url", url, "--token", first.token]);
      const installed = await cli(first.url, "install", "ex.zip");
      assert.equal(installed.code, 0, installed.err);
      assert.match(
        installed.out,
        new RegExp(`^installed ${name} 1\\.0\\.0`, "m"),
      );

      const post = async (url: string, fn: string, body: string) => {
        const r = await fetch(`${url}/api/plugins/${name}/${fn}`, {
          method: "POST",
          body,
        });
        return { status: r.status, text: await r.text() };
      };
      assert.deepEqual(await post(first.url, "echo", "hello, Extism"), {
        status: 200,
        text: "hello, Extism",
      });
      // The config key extism.json names waits for the operator.
      const pending = await cli(first.url, "grants", name);
      assert.match(pending.out, /^config:greeting +yes +no +yes$/m);
      assert.notEqual(
        (await post(first.url, "config", "greeting")).status,
        200,
      );
      const approved = await cli(
        first.url,
        "grants",
        name,
        "--approve",
        "config:greeting",
      );
      assert.equal(approved.code, 0, approved.err);
      assert.deepEqual(await post(first.url, "config", "greeting"), {
        status: 200,
        text: "Grüezi from extism.json",
      });
      assert.equal((await post(first.url, "visit", "")).text, "x");
      assert.equal((await post(first.url, "visit", "")).text, "xx");

      // A second host on the same database, with its own data folder: the
      // package comes from the database, and the grant and the vars are
      // the shared ones.
      const other = await startHost({
        plugins: [],
        reuse: { db: first.db, token: first.token },
      });
      try {
        let served = await post(other.url, "echo", "on the second host");
        for (let i = 0; i < 40 && served.status !== 200; i++) {
          await new Promise((r) => setTimeout(r, 250));
          served = await post(other.url, "echo", "on the second host");
        }
        assert.deepEqual(served, { status: 200, text: "on the second host" });
        assert.equal((await post(other.url, "visit", "")).text, "xxx");
        assert.deepEqual(await post(other.url, "config", "greeting"), {
          status: 200,
          text: "Grüezi from extism.json",
        });
      } finally {
        await other.cleanup();
      }

      // Restart on the same data folder and database.
      first.signal("SIGTERM");
      await first.status;
      second = await startHost({
        plugins: [],
        reuse: { data: first.data, db: first.db, token: first.token },
      });
      assert.deepEqual(await post(second.url, "echo", "still here"), {
        status: 200,
        text: "still here",
      });
      assert.equal((await post(second.url, "visit", "")).text, "xxxx");
      assert.equal(
        (await post(second.url, "config", "greeting")).text,
        "Grüezi from extism.json",
      );
    } finally {
      await second?.cleanup();
      await first.cleanup();
      await Deno.remove(dir, { recursive: true }).catch(() => {});
    }
  },
);
