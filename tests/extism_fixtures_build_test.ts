// The committed Extism fixtures (`fixtures/extism/wat/*`, hand-written WAT,
// and `fixtures/extism/as/*`, Extism's AssemblyScript PDK) are what their
// sources build to: each is rebuilt with the real compiler (npm wabt;
// AssemblyScript 0.28.20 with @extism/as-pdk 1.0.0, fetched from npm by
// `deno install` on the first build) and compared byte for byte, so a source
// edited without a rebuild fails here instead of testing stale code.

import assert from "node:assert/strict";
import { buildWat } from "../fixtures/hostile/wat_build.ts";

const ROOT = new URL("../fixtures/extism/", import.meta.url).pathname;
const dec = new TextDecoder();

/** Fixture folders (`wat/<name>`, `as/<name>`) that have a build.sh. */
function fixtureDirs(): string[] {
  const dirs: string[] = [];
  for (const kind of ["wat", "as"]) {
    for (const e of Deno.readDirSync(`${ROOT}${kind}`)) {
      const dir = `${kind}/${e.name}`;
      try {
        Deno.statSync(`${ROOT}${dir}/build.sh`);
        dirs.push(dir);
      } catch {
        // shared files (prelude.wat, lib/, deno.json …)
      }
    }
  }
  return dirs.sort();
}

function assertSame(dir: string, rebuilt: Uint8Array): void {
  const committed = Deno.readFileSync(`${ROOT}${dir}/plugin.wasm`);
  assert.ok(
    rebuilt.length === committed.length &&
      rebuilt.every((b, i) => b === committed[i]),
    `fixtures/extism/${dir}: rebuilt plugin.wasm (${rebuilt.length} B) differs from the committed one (${committed.length} B); run its build.sh and commit the result`,
  );
}

Deno.test("every Extism fixture has a build.sh and a committed plugin.wasm", () => {
  const dirs = fixtureDirs();
  assert.ok(dirs.filter((d) => d.startsWith("wat/")).length >= 6, `${dirs}`);
  assert.ok(dirs.filter((d) => d.startsWith("as/")).length >= 7, `${dirs}`);
  for (const dir of dirs) Deno.statSync(`${ROOT}${dir}/plugin.wasm`);
});

for (const dir of fixtureDirs()) {
  Deno.test(`fixtures/extism/${dir}: rebuild is byte-identical to the committed plugin.wasm`, async () => {
    if (dir.startsWith("wat/")) {
      // What build.sh runs, in-process (no manifest: an Extism plugin's
      // GoatKit side is its sidecar).
      assertSame(dir, await buildWat(`${ROOT}${dir}/plugin.wat`, "/dev/null"));
      return;
    }
    const tmp = await Deno.makeTempDir({ prefix: "gk-extism-fixture-" });
    try {
      const out = `${tmp}/plugin.wasm`;
      const res = await new Deno.Command("sh", {
        args: [`${ROOT}${dir}/build.sh`, out],
        stdout: "piped",
        stderr: "piped",
        stdin: "null",
      }).output();
      assert.ok(
        res.success,
        `fixtures/extism/${dir}/build.sh failed:\n${dec.decode(res.stderr)}${
          dec.decode(res.stdout)
        }`,
      );
      assertSame(dir, await Deno.readFile(out));
    } finally {
      await Deno.remove(tmp, { recursive: true });
    }
  });
}
