// The layering check of `deno task check` (.ci/check_layers.ts): each rule
// fires on a tree that breaks it, and the real tree passes.
import assert from "node:assert/strict";
import { dirname, join } from "node:path";
import {
  checkLayers,
  moduleReferences,
  stripComments,
} from "../.ci/check_layers.ts";

const ROOT = new URL("..", import.meta.url).pathname;

async function tree(files: Record<string, string>): Promise<string> {
  const root = await Deno.makeTempDir({ prefix: "gk-layers-" });
  const all: Record<string, string> = {
    "deno.json": JSON.stringify({ exports: { ".": "./mod.ts" } }),
    "mod.ts": "",
    ...files,
  };
  for (const [path, text] of Object.entries(all)) {
    await Deno.mkdir(join(root, dirname(path)), { recursive: true });
    await Deno.writeTextFile(join(root, path), text);
  }
  return root;
}

async function rulesBroken(files: Record<string, string>): Promise<string[]> {
  const root = await tree(files);
  try {
    return checkLayers({ root }).map((v) => `${v.from} → ${v.to}: ${v.rule}`);
  } finally {
    await Deno.remove(root, { recursive: true });
  }
}

Deno.test("checkLayers() passes on the repository's own tree", () => {
  assert.deepEqual(checkLayers({ root: ROOT }), []);
});

Deno.test("checkLayers() refuses runtimes/ imported outside host/loading/", async () => {
  const broken = await rulesBroken({
    "runtimes/wasm/plugin.ts": "export const x = 1;",
    "host/manager.ts": 'import { x } from "../runtimes/wasm/plugin.ts";',
    "permissions/grants.ts": 'export { x } from "../runtimes/wasm/plugin.ts";',
    "host/loading/runtimes.ts":
      'import { x } from "../../runtimes/wasm/plugin.ts";',
  });
  assert.deepEqual(broken, [
    "host/manager.ts → runtimes/wasm/plugin.ts: only host/loading/ imports runtimes/",
    "permissions/grants.ts → runtimes/wasm/plugin.ts: only host/loading/ imports runtimes/",
  ]);
});

Deno.test("checkLayers() lets runtimes/ and permissions/ import only host/model/", async () => {
  const broken = await rulesBroken({
    "host/model/plugin.ts": "export type P = 1;",
    "host/log_buffer.ts": "export class LogBuffer {}",
    "runtimes/grpc/plugin.ts": [
      'import type { P } from "../../host/model/plugin.ts";',
      'import type { LogBuffer } from "../../host/log_buffer.ts";',
    ].join("\n"),
    "permissions/audit.ts": [
      'import type { P } from "../host/model/plugin.ts";',
      'const w = new URL("../host/log_buffer.ts", import.meta.url);',
    ].join("\n"),
  });
  assert.deepEqual(broken.sort(), [
    "permissions/audit.ts → host/log_buffer.ts: permissions/ imports from host/ only host/model/",
    "runtimes/grpc/plugin.ts → host/log_buffer.ts: runtimes/ imports from host/ only host/model/",
  ]);
});

Deno.test("checkLayers() refuses runtimes/wasi/ importing runtimes/wasm/", async () => {
  const broken = await rulesBroken({
    "runtimes/wasm/instrument/mod.ts": "export const i = 1;",
    "runtimes/wasi/run.ts":
      'const { i } = await import("../wasm/instrument/mod.ts");',
  });
  assert.deepEqual(broken, [
    "runtimes/wasi/run.ts → runtimes/wasm/instrument/mod.ts: runtimes/wasi/ never imports runtimes/wasm/",
  ]);
});

Deno.test("checkLayers() refuses a _ module re-exported from a public entry, also through another module", async () => {
  const broken = await rulesBroken({
    "mod.ts": [
      'export { a } from "./host/a.ts";',
      'import { b } from "./host/_b.ts";',
      "export const c = b;",
    ].join("\n"),
    "host/a.ts": 'export { a } from "./_internal/a.ts";',
    "host/_internal/a.ts": "export const a = 1;",
    "host/_b.ts": "export const b = 1;",
  });
  assert.deepEqual(broken, [
    'host/a.ts → host/_internal/a.ts: public entry "./mod.ts" re-exports a _ module',
  ]);
});

Deno.test("moduleReferences() ignores comments and keeps string contents", () => {
  const source = [
    "// import { x } from './commented.ts';",
    "/* export * from './block.ts'; */",
    'import type { A } from "./a.ts";',
    "export * from './b.ts';",
    'const s = "/* not a comment */";',
    'const w = new Worker(new URL("./worker.ts", import.meta.url));',
    'await import("./lazy.ts");',
  ].join("\n");
  assert.deepEqual(moduleReferences(source), [
    { specifier: "./a.ts", reexport: false },
    { specifier: "./b.ts", reexport: true },
    { specifier: "./worker.ts", reexport: false },
    { specifier: "./lazy.ts", reexport: false },
  ]);
  assert.ok(stripComments(source).includes('"/* not a comment */"'));
});
