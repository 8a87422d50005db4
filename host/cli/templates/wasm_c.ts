/**
 * The `wasm-c` template: C built to a WASI reactor module by clang and
 * wasi-libc.
 *
 * @module
 */

import {
  manifestJson,
  type PluginTemplate,
  readme,
  source,
} from "./template.ts";

const PLUGIN_C =
  source`// {{name}}: a GoatKit plugin in C, built to WebAssembly (a wasm32-wasi
// reactor) by clang and wasi-libc. See README.md.
//
// The ABI: imports gk.log (and gk.host_call, not used here); exports
// gk_register, gk_call, gk_malloc, gk_free and memory. A buffer travels as
// one i64, ptr << 32 | len. The host frees what gk_call and gk_register
// return with gk_free.

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "manifest.h" // made by build.sh from manifest.json: MANIFEST_JSON

__attribute__((import_module("gk"), import_name("log"))) extern void
gk_log(int32_t level, const char *msg, uint32_t msg_len);

__attribute__((export_name("gk_malloc"))) void *gk_malloc(uint32_t size) {
  return malloc(size ? size : 1);
}

__attribute__((export_name("gk_free"))) void gk_free(void *ptr) { free(ptr); }

// Copies len bytes into a new buffer the host frees; 0 on failure.
static uint64_t result(const char *bytes, uint32_t len) {
  char *copy = malloc(len ? len : 1);
  if (!copy) return 0;
  memcpy(copy, bytes, len);
  return ((uint64_t)(uintptr_t)copy << 32) | (uint64_t)len;
}

static int fn_is(const char *fn, uint32_t fn_len, const char *name) {
  return strlen(name) == fn_len && memcmp(fn, name, fn_len) == 0;
}

// Level 0 debug, 1 info, 2 warn, 3 error.
static void log_line(int32_t level, const char *msg) {
  gk_log(level, msg, (uint32_t)strlen(msg));
}

__attribute__((export_name("gk_register"))) uint64_t gk_register(void) {
  return result(MANIFEST_JSON, sizeof(MANIFEST_JSON) - 1);
}

static uint64_t hello(const char *args, uint32_t args_len) {
  (void)args; // JSON: the route's path and query parameters
  (void)args_len;
  log_line(1, "hello called");
  static const char answer[] =
      "{\"plugin\":\"{{name}}\",\"message\":\"Hello from {{name}}!\","
      "\"language\":\"c\"}";
  return result(answer, sizeof(answer) - 1);
}

// {"error":"unknown function: <fn>"}, GoatFlow's convention.
static uint64_t unknown(const char *fn, uint32_t fn_len) {
  static const char head[] = "{\"error\":\"unknown function: ";
  char *out = malloc(sizeof(head) + 6 * (size_t)fn_len + 2);
  if (!out) return 0;
  uint32_t n = sizeof(head) - 1;
  memcpy(out, head, n);
  for (uint32_t i = 0; i < fn_len; i++) {
    unsigned char c = (unsigned char)fn[i];
    if (c == '"' || c == '\\') {
      out[n++] = '\\';
      out[n++] = (char)c;
    } else if (c < 0x20) {
      static const char hex[] = "0123456789abcdef";
      memcpy(out + n, "\\u00", 4);
      out[n + 4] = hex[c >> 4];
      out[n + 5] = hex[c & 15];
      n += 6;
    } else {
      out[n++] = (char)c;
    }
  }
  out[n++] = '"';
  out[n++] = '}';
  return ((uint64_t)(uintptr_t)out << 32) | (uint64_t)n;
}

__attribute__((export_name("gk_call"))) uint64_t
gk_call(const char *fn, uint32_t fn_len, const char *args, uint32_t args_len) {
  if (fn_is(fn, fn_len, "hello")) return hello(args, args_len);
  return unknown(fn, fn_len);
}
`;

const BUILD_SH = source`#!/bin/sh
# Builds plugin.wasm from plugin.c with clang, lld and wasi-libc (Debian/Ubuntu:
# apt install clang lld wasi-libc libclang-rt-14-dev-wasm32).
# Usage: ./build.sh [output.wasm]   (default: plugin.wasm beside this script)
set -eu
cd "$(dirname "$0")"
out="$\{1:-plugin.wasm}"
case "$out" in /*) ;; *) out="$PWD/$out" ;; esac
gen="$(mktemp -d)"
trap 'rm -rf "$gen"' EXIT
# manifest.json -> a C string, so gk_register returns the file byte for byte.
{
  printf 'static const char MANIFEST_JSON[] =\n'
  sed -e 's/\\/\\\\/g' -e 's/"/\\"/g' -e 's/^/"/' -e 's/$/\\n"/' manifest.json
  printf ';\n'
} >"$gen/manifest.h"
"$\{CC:-clang}" --target=wasm32-wasi -O2 -mexec-model=reactor -Wall -Werror \
  -I"$gen" -Wl,--strip-all -o "$out" plugin.c
echo "built $out"
`;

/** The `wasm-c` template. */
export const WASM_C: PluginTemplate = {
  runtime: "wasm-c",
  language: "C",
  summary: "C → WebAssembly (clang --target=wasm32-wasi, wasi-libc)",
  executables: ["build.sh"],
  files: {
    "manifest.json": manifestJson("C"),
    "plugin.c": PLUGIN_C,
    "build.sh": BUILD_SH,
    ".gitignore": "*.zip\n",
    "README.md": readme({
      language: "C (WebAssembly, WASI reactor)",
      files: [
        "- `plugin.c`: the code (`gk_register`, `gk_call`, `gk_malloc`, `gk_free`).",
        "- `manifest.json`: name, routes, permissions; compiled into the module.",
        "- `build.sh`: clang + wasi-libc → `plugin.wasm`.",
      ].join("\n"),
      build: "./build.sh                     # or: gk build .",
      notes:
        "Needs clang, lld, wasi-libc and the wasm32 compiler-rt (Debian/Ubuntu: `apt install clang lld wasi-libc libclang-rt-14-dev-wasm32`).",
    }),
  },
};
