/**
 * The `wasm-as` template: AssemblyScript built to a WASI reactor module by
 * asc with the WASI shim, both from npm (pinned in `deno.json` and
 * `deno.lock`), run by Deno.
 *
 * @module
 */

import {
  manifestJson,
  type PluginTemplate,
  readme,
  source,
} from "./template.ts";

const INDEX_TS =
  source`// {{name}}: a GoatKit plugin in AssemblyScript, built to WebAssembly (a WASI
// reactor exporting _initialize) by asc with @assemblyscript/wasi-shim. See
// README.md. This is AssemblyScript, not TypeScript for Deno: i32, usize and
// u64 are AssemblyScript's types.
//
// The ABI: imports gk.log (and gk.host_call, not used here); exports
// gk_register, gk_call, gk_malloc, gk_free and memory. A buffer travels as
// one i64, ptr << 32 | len. The host frees what gk_call and gk_register
// return with gk_free.

import { log } from "./gk";
import { MANIFEST } from "../.build/manifest";

/** Allocates size bytes for the host (raw heap memory, not GC-managed). */
export function gk_malloc(size: usize): usize {
  return heap.alloc(size > 0 ? size : 1);
}

/** Frees a buffer from gk_malloc or a result of this plugin. */
export function gk_free(ptr: usize): void {
  if (ptr != 0) heap.free(ptr);
}

function result(text: string): u64 {
  const bytes = String.UTF8.encode(text);
  const len = <usize> bytes.byteLength;
  const ptr = heap.alloc(len > 0 ? len : 1);
  memory.copy(ptr, changetype<usize>(bytes), len);
  return (<u64> ptr << 32) | <u64> len;
}

/** Logs a line: level 0 debug, 1 info, 2 warn, 3 error. */
function logLine(level: i32, message: string): void {
  const bytes = String.UTF8.encode(message);
  log(level, changetype<usize>(bytes), <usize> bytes.byteLength);
}

function jsonEscape(s: string): string {
  let out = "";
  for (let i = 0; i < s.length; i++) {
    const c = s.charCodeAt(i);
    if (c == 0x22) out += '\\"';
    else if (c == 0x5c) out += "\\\\";
    else if (c < 0x20) {
      out += "\\u00" + (c < 0x10 ? "0" : "") + c.toString(16);
    } else out += String.fromCharCode(c);
  }
  return out;
}

/** Returns the manifest (manifest.json, byte for byte). */
export function gk_register(): u64 {
  return result(MANIFEST);
}

/** args is JSON: the route's path and query parameters. */
function hello(args: string): u64 {
  logLine(1, "hello called");
  return result(
    '{"plugin":"{{name}}","message":"Hello from {{name}}!","language":"assemblyscript"}',
  );
}

/** Runs plugin function fn with JSON args; returns the packed result. */
export function gk_call(
  fnPtr: usize,
  fnLen: usize,
  argsPtr: usize,
  argsLen: usize,
): u64 {
  const fn = String.UTF8.decodeUnsafe(fnPtr, fnLen);
  const args = argsLen > 0 ? String.UTF8.decodeUnsafe(argsPtr, argsLen) : "";
  if (fn == "hello") return hello(args);
  return result('{"error":"unknown function: ' + jsonEscape(fn) + '"}');
}
`;

const GK_TS =
  source`// The host functions of GoatKit's ABI. AssemblyScript imports a declared
// function from the module named after its file, so these come from "gk".

/** Calls host function fn with JSON args; returns the packed answer. */
export declare function host_call(
  fnPtr: usize,
  fnLen: usize,
  argsPtr: usize,
  argsLen: usize,
): u64;

/** Logs a line: level 0 debug, 1 info, 2 warn, 3 error. */
export declare function log(level: i32, msgPtr: usize, msgLen: usize): void;
`;

const DENO_JSON = `{
  "nodeModulesDir": "auto",
  "imports": {
    "assemblyscript": "npm:assemblyscript@0.28.20",
    "@assemblyscript/wasi-shim": "npm:@assemblyscript/wasi-shim@0.1.0"
  }
}
`;

const DENO_LOCK = `{
  "version": "5",
  "specifiers": {
    "npm:@assemblyscript/wasi-shim@0.1.0": "0.1.0",
    "npm:assemblyscript@0.28.20": "0.28.20"
  },
  "npm": {
    "@assemblyscript/wasi-shim@0.1.0": {
      "integrity": "sha512-fSLH7MdJHf2uDW5llA5VCF/CG62Jp2WkYGui9/3vIWs3jDhViGeQF7nMYLUjpigluM5fnq61I6obtCETy39FZw=="
    },
    "assemblyscript@0.28.20": {
      "integrity": "sha512-5PM7GZpvcLypHcLmi30aP8mqm5HjU+LL3BdV1xDyA3USGtL2w+iMiUnhtH+vW8+2kOuHlAyPu7M+QgyEw5he1g==",
      "dependencies": [
        "binaryen",
        "long"
      ],
      "bin": true
    },
    "binaryen@131.0.0-nightly.20260721": {
      "integrity": "sha512-AAQIkhfbYXh4FBObwBrlO+5L+6Rp6OOMOjh6AdT0M+GLNLyrwKWgtW+EzmizNgx9CWDfTJPfDtKoZi62QESbtg==",
      "bin": true
    },
    "long@5.3.2": {
      "integrity": "sha512-mNAgZ1GmyNhD7AuqnTG3/VQ26o760+ZYBPKjPvugO8+nLbYfX6TVpJPseBvopbdY+qpZ/lKUnmEc1LeZYS3QAA=="
    }
  },
  "workspace": {
    "dependencies": [
      "npm:@assemblyscript/wasi-shim@0.1.0",
      "npm:assemblyscript@0.28.20"
    ]
  }
}
`;

const BUILD_SH = source`#!/bin/sh
# Builds plugin.wasm from assembly/index.ts with AssemblyScript 0.28.20 and
# @assemblyscript/wasi-shim 0.1.0 from npm (pinned in deno.json and
# deno.lock), run by Deno. deno install puts them in ./node_modules; asc
# needs the shim's asconfig.json on disk, given by a RELATIVE path.
# Usage: ./build.sh [output.wasm]   (default: plugin.wasm beside this script)
set -eu
cd "$(dirname "$0")"
out="$\{1:-plugin.wasm}"
case "$out" in /*) ;; *) out="$PWD/$out" ;; esac
if [ ! -f node_modules/@assemblyscript/wasi-shim/asconfig.json ] ||
  [ ! -f node_modules/assemblyscript/package.json ]; then
  deno install --frozen --quiet
fi
mkdir -p .build
# manifest.json -> an AssemblyScript string, so gk_register returns the file.
deno eval --no-config 'const t = Deno.readTextFileSync("manifest.json");
Deno.writeTextFileSync(".build/manifest.ts",
  "// Made by build.sh from manifest.json.\nexport const MANIFEST: string = " +
  JSON.stringify(t) + ";\n");'
deno run --frozen -A npm:assemblyscript@0.28.20/asc assembly/index.ts \
  --config node_modules/@assemblyscript/wasi-shim/asconfig.json \
  --exportStart _initialize -O3 --runtime incremental --noAssert \
  -o "$out"
echo "built $out"
`;

/** The `wasm-as` template. */
export const WASM_AS: PluginTemplate = {
  runtime: "wasm-as",
  language: "AssemblyScript",
  summary: "AssemblyScript → WebAssembly (asc + WASI shim from npm, via Deno)",
  executables: ["build.sh"],
  files: {
    "manifest.json": manifestJson("AssemblyScript"),
    "assembly/index.ts": INDEX_TS,
    "assembly/gk.ts": GK_TS,
    "deno.json": DENO_JSON,
    "deno.lock": DENO_LOCK,
    "build.sh": BUILD_SH,
    ".gitignore": "node_modules/\n.build/\n*.zip\n",
    "README.md": readme({
      language: "AssemblyScript (WebAssembly, WASI reactor)",
      files: [
        "- `assembly/index.ts`: the code (`gk_register`, `gk_call`, `gk_malloc`, `gk_free`).",
        "- `assembly/gk.ts`: the host functions the plugin imports.",
        "- `manifest.json`: name, routes, permissions; compiled in by `build.sh`.",
        "- `deno.json`, `deno.lock`: the pinned compiler (npm `assemblyscript`, `@assemblyscript/wasi-shim`).",
        "- `build.sh`: `deno install` + asc → `plugin.wasm`.",
      ].join("\n"),
      build: "./build.sh                     # or: gk build .",
      notes: "Needs only Deno: the compiler comes from npm on the first build.",
    }),
  },
};
