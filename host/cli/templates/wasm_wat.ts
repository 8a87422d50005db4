/**
 * The `wasm-wat` template: hand-written WebAssembly text, assembled by
 * `npm:wabt` (pinned in `deno.json` and `deno.lock`) from a small Deno
 * script. No WASI, no compiler.
 *
 * @module
 */

import {
  manifestJson,
  type PluginTemplate,
  readme,
  source,
} from "./template.ts";

const PLUGIN_WAT =
  source`;; {{name}}: a GoatKit plugin in hand-written WebAssembly text. See README.md.
;;
;; The ABI: imports gk.log (and gk.host_call, not used here); exports
;; gk_register, gk_call, gk_malloc, gk_free and memory. A buffer travels as
;; one i64, ptr << 32 | len. The host frees what gk_call and gk_register
;; return with gk_free.
;;
;; build.ts puts manifest.json (as a WAT string) and its length in bytes in
;; place of the two MANIFEST markers below, so gk_register returns the file.
;;
;; Memory: constant strings below 64 KiB (the manifest from 4096); a bump
;; allocator above that which grows memory as needed and starts over when
;; every block it gave out has been freed.
(module
  (import "gk" "log" (func $log (param i32 i32 i32)))

  (memory (export "memory") 2)

  (global $heap_base i32 (i32.const 65536))
  (global $top (mut i32) (i32.const 65536))
  (global $live (mut i32) (i32.const 0))

  (data (i32.const 256) "hello")
  (data (i32.const 272) "hello called")
  ;; Constant answers end in a 0 byte ($strlen).
  (data (i32.const 512) "{\"plugin\":\"{{name}}\",\"message\":\"Hello from {{name}}!\",\"language\":\"wat\"}\00")
  (data (i32.const 2048) "{\"error\":\"unknown function\"}\00")
  (data (i32.const 4096) "@MANIFEST@")

  (func $gk_malloc (export "gk_malloc") (param $size i32) (result i32)
    (local $p i32) (local $end i32) (local $pages i32)
    (local.set $p
      (i32.and (i32.add (global.get $top) (i32.const 7)) (i32.const -8)))
    (local.set $end (i32.add (local.get $p) (local.get $size)))
    (if (i32.lt_u (local.get $end) (local.get $p))
      (then (return (i32.const 0))))
    (local.set $pages
      (i32.add (i32.shr_u (local.get $end) (i32.const 16))
               (i32.ne (i32.and (local.get $end) (i32.const 0xffff)) (i32.const 0))))
    (if (i32.gt_u (local.get $pages) (memory.size))
      (then
        (if (i32.eq (memory.grow (i32.sub (local.get $pages) (memory.size)))
                    (i32.const -1))
          (then (return (i32.const 0))))))
    (global.set $top (local.get $end))
    (global.set $live (i32.add (global.get $live) (i32.const 1)))
    (local.get $p))

  (func $gk_free (export "gk_free") (param $ptr i32)
    (if (i32.lt_u (local.get $ptr) (global.get $heap_base)) (then (return)))
    (if (i32.eqz (global.get $live)) (then (return)))
    (global.set $live (i32.sub (global.get $live) (i32.const 1)))
    (if (i32.eqz (global.get $live))
      (then (global.set $top (global.get $heap_base)))))

  ;; The length of the 0-terminated string at $p.
  (func $strlen (param $p i32) (result i32)
    (local $n i32)
    (block $done
      (loop $next
        (br_if $done
          (i32.eqz (i32.load8_u (i32.add (local.get $p) (local.get $n)))))
        (local.set $n (i32.add (local.get $n) (i32.const 1)))
        (br $next)))
    (local.get $n))

  ;; Copies $len bytes at $src into a new block the host frees; packed.
  (func $result (param $src i32) (param $len i32) (result i64)
    (local $p i32)
    (local.set $p (call $gk_malloc (local.get $len)))
    (if (i32.eqz (local.get $p)) (then (return (i64.const 0))))
    (memory.copy (local.get $p) (local.get $src) (local.get $len))
    (i64.or
      (i64.shl (i64.extend_i32_u (local.get $p)) (i64.const 32))
      (i64.extend_i32_u (local.get $len))))

  ;; Whether $len bytes at $a equal those at $b.
  (func $equal (param $a i32) (param $b i32) (param $len i32) (result i32)
    (local $i i32)
    (block $differ
      (loop $next
        (if (i32.ge_u (local.get $i) (local.get $len)) (then (return (i32.const 1))))
        (br_if $differ
          (i32.ne (i32.load8_u (i32.add (local.get $a) (local.get $i)))
                  (i32.load8_u (i32.add (local.get $b) (local.get $i)))))
        (local.set $i (i32.add (local.get $i) (i32.const 1)))
        (br $next)))
    (i32.const 0))

  (func (export "gk_register") (result i64)
    (call $result (i32.const 4096) (i32.const @MANIFEST_LEN@)))

  (func (export "gk_call")
    (param $fn i32) (param $fn_len i32) (param $args i32) (param $args_len i32)
    (result i64)
    ;; hello: log a line (level 1, info), answer JSON. $args is JSON: the
    ;; route's path and query parameters.
    (if (i32.and (i32.eq (local.get $fn_len) (i32.const 5))
                 (call $equal (local.get $fn) (i32.const 256) (i32.const 5)))
      (then
        (call $log (i32.const 1) (i32.const 272) (i32.const 12))
        (return (call $result (i32.const 512) (call $strlen (i32.const 512))))))
    (call $result (i32.const 2048) (call $strlen (i32.const 2048))))
)
`;

const BUILD_TS = source`/**
 * Assembles plugin.wat into plugin.wasm with npm:wabt (pinned in deno.json
 * and deno.lock), putting manifest.json in place of @MANIFEST@ and its
 * length in place of @MANIFEST_LEN@.
 *
 * Usage: deno run --allow-read --allow-write build.ts [output.wasm]
 *
 * @module
 */

import wabtInit from "wabt";

const out = Deno.args[0] ?? "plugin.wasm";
const manifest = await Deno.readFile("manifest.json");
if (manifest.length > 60000) {
  throw new Error("Cannot build: manifest.json is over 60000 bytes");
}
let body = "";
for (const b of manifest) {
  body += b >= 0x20 && b < 0x7f && b !== 0x22 && b !== 0x5c
    ? String.fromCharCode(b)
    : "\\" + b.toString(16).padStart(2, "0");
}
const wat = (await Deno.readTextFile("plugin.wat"))
  .replaceAll("@MANIFEST@", () => body)
  .replaceAll("@MANIFEST_LEN@", () => String(manifest.length));
const wabt = await wabtInit();
const module = wabt.parseWat("plugin.wat", wat, { bulk_memory: true });
try {
  module.validate();
  await Deno.writeFile(out, module.toBinary({}).buffer);
} finally {
  module.destroy();
}
console.log("built " + out);
`;

const DENO_JSON = `{
  "imports": {
    "wabt": "npm:wabt@1.0.39"
  }
}
`;

const DENO_LOCK = `{
  "version": "5",
  "specifiers": {
    "npm:wabt@1.0.39": "1.0.39"
  },
  "npm": {
    "wabt@1.0.39": {
      "integrity": "sha512-ba+dRL/75VQQY7RkU/CgriGbkoWAfS8TDyUlJfJhJ8KhtXgMl5dhNvoPNUcQ9IWRhW8u41glMSuZeTvsYq2rRg==",
      "bin": true
    }
  },
  "workspace": {
    "dependencies": [
      "npm:wabt@1.0.39"
    ]
  }
}
`;

const BUILD_SH = source`#!/bin/sh
# Builds plugin.wasm from plugin.wat with build.ts (Deno + npm:wabt).
# Usage: ./build.sh [output.wasm]   (default: plugin.wasm beside this script)
set -eu
cd "$(dirname "$0")"
out="$\{1:-plugin.wasm}"
case "$out" in /*) ;; *) out="$PWD/$out" ;; esac
exec deno run --frozen --allow-read=. --allow-write=. --allow-write="$out" \
  build.ts "$out"
`;

/** The `wasm-wat` template. */
export const WASM_WAT: PluginTemplate = {
  runtime: "wasm-wat",
  language: "WebAssembly text (WAT)",
  summary: "hand-written WAT → WebAssembly (npm:wabt, via Deno)",
  executables: ["build.sh"],
  files: {
    "manifest.json": manifestJson("WebAssembly text"),
    "plugin.wat": PLUGIN_WAT,
    "build.ts": BUILD_TS,
    "deno.json": DENO_JSON,
    "deno.lock": DENO_LOCK,
    "build.sh": BUILD_SH,
    ".gitignore": "*.zip\n",
    "README.md": readme({
      language: "WebAssembly text (WAT)",
      files: [
        "- `plugin.wat`: the module (`gk_register`, `gk_call`, `gk_malloc`, `gk_free`).",
        "- `manifest.json`: name, routes, permissions; embedded by `build.ts`.",
        "- `build.ts`, `deno.json`, `deno.lock`: the assembler (npm `wabt`, pinned).",
        "- `build.sh`: runs `build.ts` → `plugin.wasm`.",
      ].join("\n"),
      build: "./build.sh                     # or: gk build .",
      notes:
        "Needs only Deno: the assembler comes from npm on the first build.",
    }),
  },
};
