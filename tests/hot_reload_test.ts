// Hot reload with real WASM: replacing a plugin's .wasm changes its answer
// without a restart, and no call fails while it happens.
import assert from "node:assert/strict";
import { join } from "node:path";
import { decodeJson, loadWasmPlugin, Manager } from "../mod.ts";
import { Loader, type PluginSource } from "../host/loading/loader.ts";

const te = new TextEncoder();

/** A minimal GoatKit module (compiled with npm:wabt) answering `answer`. */
async function buildModule(
  version: string,
  answer: string,
): Promise<Uint8Array> {
  const manifest = JSON.stringify({ name: "reload-me", version });
  const watString = (s: string) =>
    [...te.encode(s)].map((b) => `\\${b.toString(16).padStart(2, "0")}`).join(
      "",
    );
  const answerJson = JSON.stringify(answer);
  const wat = `(module
  (memory (export "memory") 1)
  (global $top (mut i32) (i32.const 8192))
  (data (i32.const 16) "${watString(manifest)}")
  (data (i32.const 4096) "${watString(answerJson)}")
  (func (export "gk_malloc") (param $n i32) (result i32) (local $p i32)
    (if (i32.gt_u (i32.add (global.get $top) (local.get $n)) (i32.const 60000))
      (then (global.set $top (i32.const 8192))))
    (local.set $p (global.get $top))
    (global.set $top (i32.add (global.get $top) (local.get $n)))
    (local.get $p))
  (func (export "gk_free") (param i32))
  (func (export "gk_register") (result i64)
    (i64.or (i64.shl (i64.const 16) (i64.const 32)) (i64.const ${
    te.encode(manifest).length
  })))
  (func (export "gk_call") (param i32 i32 i32 i32) (result i64)
    (i64.or (i64.shl (i64.const 4096) (i64.const 32)) (i64.const ${
    te.encode(answerJson).length
  }))))`;
  const wabt = await (await import("wabt")).default();
  const mod = wabt.parseWat("reload.wat", wat);
  try {
    return new Uint8Array(mod.toBinary({}).buffer);
  } finally {
    mod.destroy();
  }
}

Deno.test("replacing a plugin's .wasm changes its answer without restart, and no call fails", async () => {
  const root = await Deno.makeTempDir();
  const dir = join(root, "reload-me");
  await Deno.mkdir(dir);
  const manager = new Manager();
  const loader = new Loader(manager, {
    dir: root,
    debounceMs: 100,
    load: (s: PluginSource) => loadWasmPlugin(s.entry, { callTimeoutMs: 5000 }),
  });
  try {
    await Deno.writeTextFile(
      join(dir, "manifest.json"),
      JSON.stringify({ name: "reload-me", version: "1.0.0" }),
    );
    await Deno.writeFile(
      join(dir, "plugin.wasm"),
      await buildModule("1.0.0", "v1"),
    );
    await loader.scan();
    await loader.loadAll();
    assert.equal(decodeJson(await manager.call("reload-me", "x", null)), "v1");
    loader.watch();

    let stop = false;
    let calls = 0;
    const failures: string[] = [];
    const answers = new Set<unknown>();
    const callers = Array.from({ length: 3 }, async () => {
      while (!stop) {
        try {
          answers.add(decodeJson(await manager.call("reload-me", "x", null)));
          calls++;
        } catch (e) {
          failures.push(String(e));
        }
      }
    });
    await new Promise((r) => setTimeout(r, 200));
    // Write the new version to a temp file and rename it in, as deploys do.
    const v2 = await buildModule("2.0.0", "v2");
    await Deno.writeFile(join(root, ".v2.tmp"), v2);
    await Deno.writeTextFile(
      join(dir, "manifest.json"),
      JSON.stringify({ name: "reload-me", version: "2.0.0" }),
    );
    await Deno.rename(join(root, ".v2.tmp"), join(dir, "plugin.wasm"));
    const end = Date.now() + 20_000;
    while (
      manager.manifest("reload-me")?.version !== "2.0.0" && Date.now() < end
    ) {
      await new Promise((r) => setTimeout(r, 50));
    }
    const before = calls;
    while (calls < before + 20 && Date.now() < end) {
      await new Promise((r) => setTimeout(r, 10));
    }
    stop = true;
    await Promise.all(callers);
    assert.equal(manager.manifest("reload-me")?.version, "2.0.0");
    assert.ok(
      answers.has("v1") && answers.has("v2"),
      `answers: ${[...answers]}`,
    );
    assert.equal(decodeJson(await manager.call("reload-me", "x", null)), "v2");
    assert.deepEqual(failures, [], "no call failed during the reload");
    assert.ok(calls > 20, `only ${calls} calls were made`);
  } finally {
    await loader.close();
    await manager.shutdownAll();
    await Deno.remove(root, { recursive: true });
  }
});
