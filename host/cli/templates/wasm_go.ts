/**
 * The `wasm-go` template: Go built to a wasip1 reactor module
 * (`-buildmode=c-shared`, `//go:wasmexport`), which needs Go 1.24 or newer.
 *
 * @module
 */

import {
  manifestJson,
  type PluginTemplate,
  readme,
  source,
} from "./template.ts";

const MAIN_GO =
  source`// {{name}}: a GoatKit plugin in Go, built to WebAssembly (GOOS=wasip1,
// -buildmode=c-shared: a reactor exporting _initialize) by Go 1.24 or newer.
// See README.md.
//
// The ABI: imports gk.log (and gk.host_call, not used here); exports
// gk_register, gk_call, gk_malloc, gk_free and memory. A buffer travels as
// one i64, ptr << 32 | len. The host frees what gk_call and gk_register
// return with gk_free.
package main

import (
	_ "embed"
	"encoding/json"
	"unsafe"
)

// The plugin registers manifest.json byte for byte.
//
//go:embed manifest.json
var manifest []byte

//go:wasmimport gk log
func gkLog(level int32, ptr unsafe.Pointer, n uint32)

// Buffers handed to the host stay referenced here until gk_free, so Go's
// garbage collector does not reuse memory the host still holds.
var live = map[uint32][]byte{}

//go:wasmexport gk_malloc
func gkMalloc(size uint32) uint32 {
	if size == 0 {
		size = 1
	}
	b := make([]byte, size)
	p := uint32(uintptr(unsafe.Pointer(&b[0])))
	live[p] = b
	return p
}

//go:wasmexport gk_free
func gkFree(ptr uint32) {
	delete(live, ptr)
}

// result copies b into a buffer the host frees.
func result(b []byte) uint64 {
	p := gkMalloc(uint32(len(b)))
	copy(live[p], b)
	return uint64(p)<<32 | uint64(len(b))
}

// bytesAt is a view of guest memory the host wrote.
func bytesAt(ptr, n uint32) []byte {
	if n == 0 {
		return nil
	}
	return unsafe.Slice((*byte)(unsafe.Pointer(uintptr(ptr))), n)
}

// logLine logs a line: level 0 debug, 1 info, 2 warn, 3 error.
func logLine(level int32, message string) {
	b := []byte(message)
	if len(b) > 0 {
		gkLog(level, unsafe.Pointer(&b[0]), uint32(len(b)))
	}
}

//go:wasmexport gk_register
func gkRegister() uint64 {
	return result(manifest)
}

// hello gets JSON args: the route's path and query parameters.
func hello(args []byte) ([]byte, error) {
	logLine(1, "hello called")
	return json.Marshal(map[string]string{
		"plugin":   "{{name}}",
		"message":  "Hello from {{name}}!",
		"language": "go",
	})
}

//go:wasmexport gk_call
func gkCall(fnPtr, fnLen, argsPtr, argsLen uint32) uint64 {
	fn := string(bytesAt(fnPtr, fnLen))
	args := append([]byte(nil), bytesAt(argsPtr, argsLen)...)
	var out []byte
	var err error
	switch fn {
	case "hello":
		out, err = hello(args)
	default:
		out, err = json.Marshal(map[string]string{"error": "unknown function: " + fn})
	}
	if err != nil {
		out, _ = json.Marshal(map[string]string{"error": err.Error()})
	}
	return result(out)
}

// main is required by -buildmode=c-shared; the host calls the exports.
func main() {}
`;

const GO_MOD = `module {{name}}

go 1.24
`;

const BUILD_SH = source`#!/bin/sh
# Builds plugin.wasm from main.go with Go >= 1.24 (GOOS=wasip1, c-shared).
# Go is taken from $GOATKIT_GO, else "go" in PATH when it is 1.24 or newer,
# else a copy in ~/.cache/goatkit/go1.24. When none is there and this is a
# Debian/Ubuntu machine (apt-get, dpkg-deb), Debian's golang-1.24-go and
# golang-1.24-src are downloaded once from Debian's archive (trixie, about
# 50 MB) and unpacked into that folder; nothing is installed system-wide.
# Usage: ./build.sh [output.wasm]   (default: plugin.wasm beside this script)
set -eu
cd "$(dirname "$0")"
out="$\{1:-plugin.wasm}"
case "$out" in /*) ;; *) out="$PWD/$out" ;; esac
cache="$\{XDG_CACHE_HOME:-$\{HOME:-/tmp}/.cache}/goatkit"
local_go="$cache/go1.24/usr/lib/go-1.24/bin/go"

is_new_go() { # $1: a go command; true when it is Go >= 1.24
  v=$("$1" env GOVERSION 2>/dev/null) || return 1
  minor=$(echo "$v" | sed -n 's/^go1\.\([0-9]*\).*/\1/p')
  [ -n "$minor" ] && [ "$minor" -ge 24 ]
}

fetch_go() {
  command -v apt-get >/dev/null 2>&1 && command -v dpkg-deb >/dev/null 2>&1 ||
    return 1
  echo "build.sh: fetching Debian's Go 1.24 into $cache/go1.24 (once) …" >&2
  t=$(mktemp -d)
  mkdir -p "$t/lists/partial" "$t/cache/archives/partial" "$t/x"
  echo "deb http://deb.debian.org/debian trixie main" >"$t/sources.list"
  set -- -o Dir::Etc::sourcelist="$t/sources.list" -o Dir::Etc::sourceparts=- \
    -o Dir::State::Lists="$t/lists" -o Dir::State::status=/dev/null \
    -o Dir::Cache="$t/cache" -o Debug::NoLocking=1
  # As root, apt would hand the download to user _apt, who cannot write here.
  if [ "$(id -u)" = 0 ]; then set -- "$@" -o APT::Sandbox::User=root; fi
  apt-get "$@" -qq update >&2
  (cd "$t" && apt-get "$@" -qq download golang-1.24-go golang-1.24-src) >&2 2>&1
  for d in "$t"/*.deb; do dpkg-deb -x "$d" "$t/x"; done
  mkdir -p "$cache"
  rm -rf "$cache/go1.24"
  mv "$t/x" "$cache/go1.24"
  rm -rf "$t"
}

go=""
for g in "$\{GOATKIT_GO:-}" go "$local_go"; do
  if [ -n "$g" ] && is_new_go "$g"; then go="$g"; break; fi
done
if [ -z "$go" ] && fetch_go && is_new_go "$local_go"; then go="$local_go"; fi
if [ -z "$go" ]; then
  echo "build.sh: needs Go 1.24 or newer (//go:wasmexport); set GOATKIT_GO to its go command" >&2
  exit 1
fi
export GOOS=wasip1 GOARCH=wasm GOTOOLCHAIN=local GOFLAGS=-mod=mod GOPROXY=off
export GOCACHE="$\{GOCACHE:-$cache/go-build}"
# Go >= 1.23 writes telemetry under XDG_CONFIG_HOME; keep it in the cache.
export XDG_CONFIG_HOME="$\{XDG_CONFIG_HOME:-$cache/xdg}"
"$go" build -buildmode=c-shared -trimpath -ldflags=-s -o "$out" .
echo "built $out"
`;

/** The `wasm-go` template. */
export const WASM_GO: PluginTemplate = {
  runtime: "wasm-go",
  language: "Go (wasip1)",
  summary: "Go → WebAssembly (GOOS=wasip1 -buildmode=c-shared, Go >= 1.24)",
  executables: ["build.sh"],
  files: {
    "manifest.json": manifestJson("Go (WebAssembly)"),
    "main.go": MAIN_GO,
    "go.mod": GO_MOD,
    "build.sh": BUILD_SH,
    ".gitignore": "*.zip\n",
    "README.md": readme({
      language: "Go (WebAssembly, wasip1 reactor)",
      files: [
        "- `main.go`: the code (`//go:wasmexport gk_register`, `gk_call`, `gk_malloc`, `gk_free`).",
        "- `manifest.json`: name, routes, permissions; compiled in with `//go:embed`.",
        "- `go.mod`: the module (standard library only).",
        "- `build.sh`: `GOOS=wasip1 GOARCH=wasm go build -buildmode=c-shared` → `plugin.wasm`.",
      ].join("\n"),
      build: "./build.sh                     # or: gk build .",
      notes:
        "Needs Go 1.24 or newer (`//go:wasmexport`). On Debian/Ubuntu without it, `build.sh` fetches Debian's Go 1.24 once into `~/.cache/goatkit/go1.24`; elsewhere set `GOATKIT_GO` to a Go 1.24+ `go` command.",
    }),
  },
};
