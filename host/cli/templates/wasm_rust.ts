/**
 * The `wasm-rust` template: Rust (std only, no crates) built to a wasm32-wasi
 * cdylib by rustc.
 *
 * @module
 */

import {
  manifestJson,
  type PluginTemplate,
  readme,
  source,
} from "./template.ts";

const PLUGIN_RS =
  source`//! {{name}}: a GoatKit plugin in Rust (std only), built to WebAssembly
//! (wasm32-wasi cdylib) by rustc. See README.md.
//!
//! The ABI: imports gk.log (and gk.host_call, not used here); exports
//! gk_register, gk_call, gk_malloc, gk_free and memory. A buffer travels as
//! one i64, ptr << 32 | len. The host frees what gk_call and gk_register
//! return with gk_free.

use std::alloc::{alloc, dealloc, Layout};

#[link(wasm_import_module = "gk")]
extern "C" {
    #[link_name = "log"]
    fn gk_log(level: i32, ptr: *const u8, len: u32);
}

/// manifest.json, compiled in: the plugin registers the file byte for byte.
static MANIFEST: &str = include_str!("manifest.json");

/// Each block starts with its total size, so gk_free knows its layout.
const HEADER: usize = 8;

/// Allocates size bytes for the host; 0 on failure.
#[no_mangle]
pub extern "C" fn gk_malloc(size: u32) -> *mut u8 {
    let total = size as usize + HEADER;
    let layout = match Layout::from_size_align(total, 8) {
        Ok(l) => l,
        Err(_) => return std::ptr::null_mut(),
    };
    unsafe {
        let base = alloc(layout);
        if base.is_null() {
            return base;
        }
        *(base as *mut usize) = total;
        base.add(HEADER)
    }
}

/// Frees a buffer from gk_malloc (or a result of this plugin).
///
/// # Safety
/// ptr must come from gk_malloc and not have been freed.
#[no_mangle]
pub unsafe extern "C" fn gk_free(ptr: *mut u8) {
    if ptr.is_null() {
        return;
    }
    let base = ptr.sub(HEADER);
    let total = *(base as *const usize);
    dealloc(base, Layout::from_size_align_unchecked(total, 8));
}

/// Copies bytes into a buffer the host frees; 0 on failure.
fn result(bytes: &[u8]) -> u64 {
    let ptr = gk_malloc(bytes.len() as u32);
    if ptr.is_null() {
        return 0;
    }
    unsafe { std::ptr::copy_nonoverlapping(bytes.as_ptr(), ptr, bytes.len()) };
    ((ptr as u64) << 32) | bytes.len() as u64
}

/// Logs a line: level 0 debug, 1 info, 2 warn, 3 error.
fn log(level: i32, message: &str) {
    unsafe { gk_log(level, message.as_ptr(), message.len() as u32) };
}

/// Returns the manifest.
#[no_mangle]
pub extern "C" fn gk_register() -> u64 {
    result(MANIFEST.as_bytes())
}

/// The body of a JSON string holding text.
fn json_escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            c if (c as u32) < 0x20 => out.push_str(&format!("\\u{:04x}", c as u32)),
            c => out.push(c),
        }
    }
    out
}

/// args is JSON: the route's path and query parameters.
fn hello(_args: &[u8]) -> Vec<u8> {
    log(1, "hello called");
    br#"{"plugin":"{{name}}","message":"Hello from {{name}}!","language":"rust"}"#.to_vec()
}

/// Runs plugin function fn with JSON args.
///
/// # Safety
/// The host passes buffers it allocated with gk_malloc (or 0, 0).
#[no_mangle]
pub unsafe extern "C" fn gk_call(fn_ptr: *const u8, fn_len: u32, args_ptr: *const u8, args_len: u32) -> u64 {
    let name = std::slice::from_raw_parts(fn_ptr, fn_len as usize);
    let args: &[u8] = if args_ptr.is_null() || args_len == 0 {
        &[]
    } else {
        std::slice::from_raw_parts(args_ptr, args_len as usize)
    };
    let answer = match name {
        b"hello" => hello(args),
        _ => {
            let fn_name = String::from_utf8_lossy(name);
            let mut e = String::from("{\"error\":\"unknown function: ");
            e.push_str(&json_escape(&fn_name));
            e.push_str("\"}");
            e.into_bytes()
        }
    };
    result(&answer)
}
`;

const BUILD_SH = source`#!/bin/sh
# Builds plugin.wasm from plugin.rs with rustc and the wasm32-wasi standard
# library, no crates (Debian/Ubuntu: apt install rustc libstd-rust-dev-wasm32;
# or rustup with the wasm32-wasi / wasm32-wasip1 target: set RUSTC and TARGET).
# Debian's /usr/bin/rustc comes first: a rustup rustc earlier in PATH may lack
# the wasm target.
# Usage: ./build.sh [output.wasm]   (default: plugin.wasm beside this script)
set -eu
cd "$(dirname "$0")"
out="$\{1:-plugin.wasm}"
case "$out" in /*) ;; *) out="$PWD/$out" ;; esac
rustc="$\{RUSTC:-}"
if [ -z "$rustc" ]; then
  if [ -x /usr/bin/rustc ]; then rustc=/usr/bin/rustc; else rustc=rustc; fi
fi
tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT
"$rustc" --edition 2021 --crate-type cdylib --crate-name {{ident}} \
  --target "$\{TARGET:-wasm32-wasi}" -O -C lto=yes -C panic=abort \
  -C strip=symbols -C codegen-units=1 --remap-path-prefix="$PWD=." \
  -o "$tmp/plugin.wasm" plugin.rs
cp "$tmp/plugin.wasm" "$out"
echo "built $out"
`;

/** The `wasm-rust` template. */
export const WASM_RUST: PluginTemplate = {
  runtime: "wasm-rust",
  language: "Rust",
  summary: "Rust → WebAssembly (rustc --target wasm32-wasi, std only)",
  executables: ["build.sh"],
  files: {
    "manifest.json": manifestJson("Rust"),
    "plugin.rs": PLUGIN_RS,
    "build.sh": BUILD_SH,
    ".gitignore": "*.zip\n",
    "README.md": readme({
      language: "Rust (WebAssembly, wasm32-wasi, std only)",
      files: [
        "- `plugin.rs`: the code (`gk_register`, `gk_call`, `gk_malloc`, `gk_free`).",
        "- `manifest.json`: name, routes, permissions; compiled in with `include_str!`.",
        "- `build.sh`: rustc → `plugin.wasm` (no Cargo, no crates).",
      ].join("\n"),
      build: "./build.sh                     # or: gk build .",
      notes:
        "Needs rustc with the wasm32-wasi standard library (Debian/Ubuntu: `apt install rustc libstd-rust-dev-wasm32`; with rustup: `rustup target add wasm32-wasip1` and `TARGET=wasm32-wasip1 RUSTC=rustc ./build.sh`).",
    }),
  },
};
