// A hand-written Extism plugin (WAT, compiled with npm:wabt) for
// the host tests: echo, a var that grows by one "x" per call, config_get of
// the input key, http_request of the input request.

/** The plugin's WAT source. */
export const EXTISM_HOST_WAT = `(module
  (import "extism:host/env" "alloc" (func $alloc (param i64) (result i64)))
  (import "extism:host/env" "length" (func $length (param i64) (result i64)))
  (import "extism:host/env" "load_u8" (func $load_u8 (param i64) (result i32)))
  (import "extism:host/env" "store_u8" (func $store_u8 (param i64 i32)))
  (import "extism:host/env" "input_offset" (func $input_offset (result i64)))
  (import "extism:host/env" "input_length" (func $input_length (result i64)))
  (import "extism:host/env" "output_set" (func $output_set (param i64 i64)))
  (import "extism:host/env" "error_set" (func $error_set (param i64)))
  (import "extism:host/env" "config_get" (func $config_get (param i64) (result i64)))
  (import "extism:host/env" "var_get" (func $var_get (param i64) (result i64)))
  (import "extism:host/env" "var_set" (func $var_set (param i64 i64)))
  (import "extism:host/env" "http_request" (func $http_request (param i64 i64) (result i64)))
  (memory (export "memory") 1)
  (data (i32.const 0) "visits")
  (data (i32.const 16) "no such config key")
  (data (i32.const 48) "http request failed")
  ;; guest bytes [ptr, ptr+len) into a new kernel block
  (func $to_kernel (param $ptr i32) (param $len i32) (result i64)
    (local $off i64) (local $i i32)
    (local.set $off (call $alloc (i64.extend_i32_u (local.get $len))))
    (block $done (loop $next
      (br_if $done (i32.ge_u (local.get $i) (local.get $len)))
      (call $store_u8
        (i64.add (local.get $off) (i64.extend_i32_u (local.get $i)))
        (i32.load8_u (i32.add (local.get $ptr) (local.get $i))))
      (local.set $i (i32.add (local.get $i) (i32.const 1)))
      (br $next)))
    (local.get $off))
  (func (export "echo") (result i32)
    (call $output_set (call $input_offset) (call $input_length))
    (i32.const 0))
  ;; var "visits" grows by one "x" per call; the output is its new value
  (func (export "visit") (result i32)
    (local $key i64) (local $old i64) (local $n i64) (local $new i64) (local $i i64)
    (local.set $key (call $to_kernel (i32.const 0) (i32.const 6)))
    (local.set $old (call $var_get (local.get $key)))
    (if (i64.ne (local.get $old) (i64.const 0))
      (then (local.set $n (call $length (local.get $old)))))
    (local.set $new (call $alloc (i64.add (local.get $n) (i64.const 1))))
    (block $done (loop $next
      (br_if $done (i64.ge_u (local.get $i) (local.get $n)))
      (call $store_u8 (i64.add (local.get $new) (local.get $i))
        (call $load_u8 (i64.add (local.get $old) (local.get $i))))
      (local.set $i (i64.add (local.get $i) (i64.const 1)))
      (br $next)))
    (call $store_u8 (i64.add (local.get $new) (local.get $n)) (i32.const 120))
    (call $var_set (local.get $key) (local.get $new))
    (call $output_set (local.get $new) (i64.add (local.get $n) (i64.const 1)))
    (i32.const 0))
  ;; the config value of the key given as input
  (func (export "config") (result i32)
    (local $v i64)
    (local.set $v (call $config_get (call $input_offset)))
    (if (i64.eqz (local.get $v))
      (then
        (call $error_set (call $to_kernel (i32.const 16) (i32.const 18)))
        (return (i32.const 1))))
    (call $output_set (local.get $v) (call $length (local.get $v)))
    (i32.const 0))
  ;; the response body of the Extism HTTP request given as input
  (func (export "fetch") (result i32)
    (local $r i64)
    (local.set $r (call $http_request (call $input_offset) (i64.const 0)))
    (if (i64.eqz (local.get $r))
      (then
        (call $error_set (call $to_kernel (i32.const 48) (i32.const 19)))
        (return (i32.const 1))))
    (call $output_set (local.get $r) (call $length (local.get $r)))
    (i32.const 0))
)`;

/** The plugin compiled to WASM bytes with npm:wabt. */
export async function extismHostWasm(): Promise<Uint8Array> {
  const wabt = await (await import("wabt")).default();
  const mod = wabt.parseWat("extism_host.wat", EXTISM_HOST_WAT);
  try {
    return new Uint8Array(mod.toBinary({}).buffer);
  } finally {
    mod.destroy();
  }
}

/**
 * An Extism plugin calling a user host function: `greet` answers
 * `extism:host/user.hello_world(input)`.
 */
export const EXTISM_USER_FN_WAT = `(module
  (import "extism:host/env" "length" (func $length (param i64) (result i64)))
  (import "extism:host/env" "input_offset" (func $input_offset (result i64)))
  (import "extism:host/env" "output_set" (func $output_set (param i64 i64)))
  (import "extism:host/user" "hello_world" (func $hello (param i64) (result i64)))
  (memory (export "memory") 1)
  (func (export "greet") (result i32)
    (local $r i64)
    (local.set $r (call $hello (call $input_offset)))
    (call $output_set (local.get $r) (call $length (local.get $r)))
    (i32.const 0))
)`;

/** {@linkcode EXTISM_USER_FN_WAT} compiled with npm:wabt. */
export async function extismUserFnWasm(): Promise<Uint8Array> {
  const wabt = await (await import("wabt")).default();
  const mod = wabt.parseWat("extism_user_fn.wat", EXTISM_USER_FN_WAT);
  try {
    return new Uint8Array(mod.toBinary({}).buffer);
  } finally {
    mod.destroy();
  }
}
