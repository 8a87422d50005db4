/**
 * Tests of the WASM instrumenter (`runtimes/wasm/instrument/`), through real
 * WebAssembly: hand-written modules (compiled with `npm:wabt`) covering each
 * supported proposal run original and instrumented and must give the same
 * answers; infinite loops and recursion stop at `gk.interrupt`; the memory cap
 * holds inside the guest; malformed and unsupported modules are refused; every
 * `.wasm` under `fixtures/` still compiles after instrumentation.
 *
 * @module
 */
import assert from "node:assert/strict";
import {
  FUEL,
  instrumentModule,
  instrumentModuleCached,
  INTERRUPT_IMPORT,
  WasmInstrumentError,
} from "../runtimes/wasm/instrument/mod.ts";

const wabt = await (await import("wabt")).default();

const ALL_FEATURES = {
  sign_extension: true,
  sat_float_to_int: true,
  bulk_memory: true,
  reference_types: true,
  multi_value: true,
  simd: true,
  tail_call: true,
};

/** Compiles WAT to a binary with wabt (features as given). */
function wat(
  source: string,
  features: Record<string, boolean> = ALL_FEATURES,
  debugNames = false,
): Uint8Array<ArrayBuffer> {
  const module = wabt.parseWat("test.wat", source, features);
  try {
    module.resolveNames();
    module.validate();
    return new Uint8Array(
      module.toBinary({ write_debug_names: debugNames }).buffer,
    );
  } finally {
    module.destroy();
  }
}

type Exports = Record<string, (...args: unknown[]) => unknown>;

/** Instantiates a module; the interrupt import just refuels unless given. */
function instantiate(
  bytes: Uint8Array<ArrayBuffer>,
  imports: WebAssembly.Imports = {},
  interrupt: () => number = () => FUEL,
): { exports: Exports; instance: WebAssembly.Instance } {
  const instance = new WebAssembly.Instance(new WebAssembly.Module(bytes), {
    ...imports,
    [INTERRUPT_IMPORT.module]: { [INTERRUPT_IMPORT.name]: interrupt },
  });
  return { exports: instance.exports as unknown as Exports, instance };
}

/** Runs a call and captures its result or the error's class and message. */
function outcome(fn: () => unknown): unknown {
  try {
    const value = fn();
    return { value: typeof value === "function" ? ["fn", value()] : value };
  } catch (e) {
    return {
      error: (e as Error).constructor.name,
      message: (e as Error).message,
    };
  }
}

/**
 * Runs the same scenario against the original and the instrumented module and
 * asserts identical outcomes. Returns the instrumented module's interrupt count.
 */
function assertSameAnswers(
  bytes: Uint8Array<ArrayBuffer>,
  makeImports: () => WebAssembly.Imports,
  scenario: (exports: Exports) => unknown[],
): number {
  const instrumented = instrumentModule(bytes);
  let interrupts = 0;
  const original = instantiate(bytes, makeImports());
  const rewritten = instantiate(instrumented.bytes, makeImports(), () => {
    interrupts++;
    return FUEL;
  });
  const expected = scenario(original.exports);
  const actual = scenario(rewritten.exports);
  assert.deepStrictEqual(actual, expected);
  // Exports keep their names and kinds.
  const mod = new WebAssembly.Module(instrumented.bytes);
  assert.deepStrictEqual(
    WebAssembly.Module.exports(mod),
    WebAssembly.Module.exports(new WebAssembly.Module(bytes)),
  );
  return interrupts;
}

const MVP = `
(module
  (import "env" "add" (func $add (param i32 i32) (result i32)))
  (import "env" "base" (global $base i32))
  (type $binop (func (param i32 i32) (result i32)))
  (table 5 funcref)
  (elem (i32.const 0) $sub $mul $addw $fib2 $c1)
  (memory (export "memory") 1)
  (data (i32.const 16) "hello, world")
  (global $started (mut i32) (i32.const 0))
  (global $calls (mut i64) (i64.const 0))
  (start $init)
  (func $init (global.set $started (i32.add (global.get $base) (i32.const 1))))
  (func (export "started") (result i32) (global.get $started))
  (func $c0 (export "c0") (result i32) (i32.const 100))
  (func $c1 (export "c1") (param i32 i32) (result i32) (i32.const 101))
  (func $c2 (export "c2") (result i32) (i32.const 102))
  (func $sub (param i32 i32) (result i32) (i32.sub (local.get 0) (local.get 1)))
  (func $mul (param i32 i32) (result i32) (i32.mul (local.get 0) (local.get 1)))
  (func $addw (param i32 i32) (result i32) (call $add (local.get 0) (local.get 1)))
  (func $fib2 (param i32 i32) (result i32) (call $fib (local.get 0)))
  (func (export "dispatch") (param i32 i32 i32) (result i32)
    (global.set $calls (i64.add (global.get $calls) (i64.const 1)))
    (call_indirect (type $binop) (local.get 1) (local.get 2) (local.get 0)))
  (func (export "calls") (result i64) (global.get $calls))
  (func $fib (export "fib") (param $n i32) (result i32)
    (if (result i32) (i32.lt_u (local.get $n) (i32.const 2))
      (then (local.get $n))
      (else (i32.add (call $fib (i32.sub (local.get $n) (i32.const 1)))
                     (call $fib (i32.sub (local.get $n) (i32.const 2)))))))
  (func (export "sum") (param $n i32) (result i64) (local $i i32) (local $acc i64)
    (block $done
      (loop $l
        (br_if $done (i32.ge_u (local.get $i) (local.get $n)))
        (local.set $acc (i64.add (local.get $acc) (i64.extend_i32_u (local.get $i))))
        (local.set $i (i32.add (local.get $i) (i32.const 1)))
        (br $l)))
    (local.get $acc))
  (func (export "collatz") (param $n i64) (result i32) (local $steps i32)
    (block $done
      (loop $l
        (br_if $done (i64.le_u (local.get $n) (i64.const 1)))
        (if (i64.eqz (i64.and (local.get $n) (i64.const 1)))
          (then (local.set $n (i64.shr_u (local.get $n) (i64.const 1))))
          (else (local.set $n (i64.add (i64.mul (local.get $n) (i64.const 3)) (i64.const 1)))))
        (local.set $steps (i32.add (local.get $steps) (i32.const 1)))
        (br $l)))
    (local.get $steps))
  (func (export "classify") (param i32) (result i32)
    (block $d (block $c (block $b (block $a
      (br_table $a $b $c $d (local.get 0)))
      (return (i32.const 10)))
      (return (i32.const 20)))
      (return (i32.const 30)))
    (i32.const 40))
  (func (export "early") (param i32) (result i32) (local $i i32)
    ;; returns from inside a loop, and branches to the function label
    (loop $l
      (if (i32.eq (local.get $i) (local.get 0)) (then (return (i32.mul (local.get $i) (i32.const 2)))))
      (local.set $i (i32.add (local.get $i) (i32.const 1)))
      (br_if $l (i32.lt_u (local.get $i) (i32.const 50))))
    (i32.const -1))
  (func (export "fmath") (param f64) (result f64)
    (f64.add (f64.sqrt (local.get 0)) (f64.convert_i32_s (i32.trunc_f64_s (f64.nearest (local.get 0))))))
  (func (export "f32math") (param f32) (result f32) (f32.mul (f32.abs (local.get 0)) (f32.const 1.5)))
  (func (export "load") (param i32) (result i32) (i32.load8_u offset=16 (local.get 0)))
  (func (export "store_load") (param i32 i64) (result i64)
    (i64.store (local.get 0) (local.get 1)) (i64.load32_s (local.get 0)))
  (func (export "grow") (param i32) (result i32) (memory.grow (local.get 0)))
  (func (export "size") (result i32) (memory.size))
  (func (export "div") (param i32 i32) (result i32) (i32.div_s (local.get 0) (local.get 1)))
  (func (export "trap") (unreachable))
)`;

function mvpImports(): WebAssembly.Imports {
  return {
    env: {
      add: (a: number, b: number) => a + b + 1000,
      base: new WebAssembly.Global({ value: "i32", mutable: false }, 41),
    },
  };
}

Deno.test("MVP module: same answers; call_indirect, exports and start survive the index shift", () => {
  const bytes = wat(MVP);
  const interrupts = assertSameAnswers(bytes, mvpImports, (e) => [
    outcome(() => e.started!()),
    outcome(() => e.c0!()),
    outcome(() => e.c1!(0, 0)),
    outcome(() => e.c2!()),
    // call_indirect through the element segment: sub, mul, add (import), fib, c1
    outcome(() => e.dispatch!(0, 10, 3)),
    outcome(() => e.dispatch!(1, 10, 3)),
    outcome(() => e.dispatch!(2, 10, 3)),
    outcome(() => e.dispatch!(3, 20, 0)),
    outcome(() => e.dispatch!(4, 0, 0)),
    outcome(() => e.dispatch!(5, 0, 0)), // out of bounds: trap
    outcome(() => e.calls!()),
    outcome(() => e.fib!(22)),
    outcome(() => e.sum!(100_000)),
    outcome(() => e.collatz!(27n)),
    outcome(() => e.collatz!(837799n)),
    ...[0, 1, 2, 3, 7].map((i) => outcome(() => e.classify!(i))),
    ...[0, 5, 49, 50].map((i) => outcome(() => e.early!(i))),
    outcome(() => e.fmath!(10.7)),
    outcome(() => e.f32math!(-2)),
    outcome(() => e.load!(4)),
    outcome(() => e.store_load!(64, -5n)),
    outcome(() => e.div!(7, 0)),
    outcome(() => e.trap!()),
    outcome(() => e.size!()),
    outcome(() => e.grow!(2)),
    outcome(() => e.size!()),
  ]);
  // fib(22) alone makes ~57k calls and sum 100k iterations.
  assert.ok(interrupts >= 5, `expected refills, got ${interrupts}`);
});

Deno.test("instrumented module imports gk.interrupt after the other function imports", () => {
  const { bytes } = instrumentModule(wat(MVP));
  const imports = WebAssembly.Module.imports(new WebAssembly.Module(bytes));
  assert.deepStrictEqual(imports, [
    { module: "env", name: "add", kind: "function" },
    { module: "env", name: "base", kind: "global" },
    { module: "gk", name: "interrupt", kind: "function" },
  ]);
});

Deno.test("sign-extension and saturating float-to-int", () => {
  const bytes = wat(`(module
    (func (export "e8") (param i32) (result i32) (i32.extend8_s (local.get 0)))
    (func (export "e16") (param i32) (result i32) (i32.extend16_s (local.get 0)))
    (func (export "e64_32") (param i64) (result i64) (i64.extend32_s (local.get 0)))
    (func (export "e64_8") (param i64) (result i64) (i64.extend8_s (local.get 0)))
    (func (export "sat") (param f64) (result i32) (i32.trunc_sat_f64_s (local.get 0)))
    (func (export "satu") (param f32) (result i64) (i64.trunc_sat_f32_u (local.get 0)))
    (func (export "sat32u") (param f32) (result i32) (i32.trunc_sat_f32_u (local.get 0)))
    (func (export "sat64s") (param f64) (result i64) (i64.trunc_sat_f64_s (local.get 0))))`);
  assertSameAnswers(bytes, () => ({}), (e) => [
    outcome(() => e.e8!(0x80)),
    outcome(() => e.e16!(0x8001)),
    outcome(() => e.e64_32!(0x80000000n)),
    outcome(() => e.e64_8!(0xffn)),
    outcome(() => e.sat!(NaN)),
    outcome(() => e.sat!(1e20)),
    outcome(() => e.sat!(-1e20)),
    outcome(() => e.satu!(-5)),
    outcome(() => e.satu!(3.9)),
    outcome(() => e.sat32u!(5e9)),
    outcome(() => e.sat64s!(-1e300)),
  ]);
});

Deno.test("bulk memory: fill, copy, init, data.drop, passive segments", () => {
  const bytes = wat(`(module
    (memory (export "mem") 1)
    (data $d "abcdefgh")
    (data (i32.const 400) "active")
    (func (export "fill") (param i32 i32 i32) (memory.fill (local.get 0) (local.get 1) (local.get 2)))
    (func (export "copy") (param i32 i32 i32) (memory.copy (local.get 0) (local.get 1) (local.get 2)))
    (func (export "init") (param i32) (memory.init $d (local.get 0) (i32.const 2) (i32.const 4)))
    (func (export "drop") (data.drop $d))
    (func (export "checksum") (param $p i32) (param $n i32) (result i32) (local $acc i32)
      (block $done (loop $l
        (br_if $done (i32.eqz (local.get $n)))
        (local.set $acc (i32.add (i32.mul (local.get $acc) (i32.const 31)) (i32.load8_u (local.get $p))))
        (local.set $p (i32.add (local.get $p) (i32.const 1)))
        (local.set $n (i32.sub (local.get $n) (i32.const 1)))
        (br $l)))
      (local.get $acc)))`);
  assertSameAnswers(bytes, () => ({}), (e) => [
    outcome(() => e.fill!(0, 7, 100)),
    outcome(() => e.copy!(50, 0, 20)),
    outcome(() => e.init!(200)),
    outcome(() => e.checksum!(0, 500)),
    outcome(() => e.drop!()),
    outcome(() => e.init!(300)), // dropped segment: trap
    outcome(() => e.fill!(65530, 1, 10)), // out of bounds: trap
    outcome(() => e.checksum!(0, 500)),
  ]);
});

Deno.test("reference types: ref.func/null/is_null, table ops, typed select, multiple tables, element expressions", () => {
  const bytes = wat(`(module
    (type $ret (func (result i32)))
    (table $t0 2 funcref)
    (table $t1 3 10 funcref)
    (table $ext 1 externref)
    (elem (table $t1) (i32.const 0) funcref (ref.func $a) (ref.null func) (ref.func $b))
    (elem $passive funcref (ref.func $b) (ref.func $a))
    (elem declare func $c)
    (global $gref funcref (ref.func $c))
    (func $a (result i32) (i32.const 11))
    (func $b (result i32) (i32.const 22))
    (func $c (result i32) (i32.const 33))
    (func (export "call_t1") (param i32) (result i32) (call_indirect $t1 (type $ret) (local.get 0)))
    (func (export "is_null_t1") (param i32) (result i32) (ref.is_null (table.get $t1 (local.get 0))))
    (func (export "grow") (result i32) (table.grow $t1 (ref.func $c) (i32.const 2)))
    (func (export "size") (result i32) (table.size $t1))
    (func (export "fill_and_call") (result i32)
      (table.fill $t0 (i32.const 0) (global.get $gref) (i32.const 2))
      (call_indirect $t0 (type $ret) (i32.const 1)))
    (func (export "init_and_call") (result i32)
      (table.init $t0 $passive (i32.const 0) (i32.const 0) (i32.const 2))
      (elem.drop $passive)
      (call_indirect $t0 (type $ret) (i32.const 0)))
    (func (export "copy_and_call") (result i32)
      (table.copy $t0 $t1 (i32.const 0) (i32.const 2) (i32.const 1))
      (call_indirect $t0 (type $ret) (i32.const 0)))
    (func (export "set_ext") (param externref) (table.set $ext (i32.const 0) (local.get 0)))
    (func (export "get_ext") (result externref) (table.get $ext (i32.const 0)))
    (func (export "pick") (param i32) (result funcref)
      (select (result funcref) (ref.func $a) (ref.null func) (local.get 0)))
    (func (export "pick_call") (param i32) (result i32)
      (table.set $t0 (i32.const 1) (select (result funcref) (ref.func $b) (ref.func $c) (local.get 0)))
      (call_indirect $t0 (type $ret) (i32.const 1))))`);
  const token = { secret: 1 };
  assertSameAnswers(bytes, () => ({}), (e) => [
    ...[0, 1, 2, 3].map((i) => outcome(() => e.call_t1!(i))),
    ...[0, 1, 2].map((i) => outcome(() => e.is_null_t1!(i))),
    outcome(() => e.grow!()),
    outcome(() => e.size!()),
    outcome(() => e.call_t1!(4)),
    outcome(() => e.fill_and_call!()),
    outcome(() => e.init_and_call!()),
    outcome(() => e.init_and_call!()), // dropped: trap
    outcome(() => e.copy_and_call!()),
    outcome(() => e.set_ext!(token)),
    outcome(() => e.get_ext!() === token),
    outcome(() => e.pick!(1)),
    outcome(() => e.pick!(0)),
    outcome(() => e.pick_call!(1)),
    outcome(() => e.pick_call!(0)),
  ]);
});

Deno.test("multi-value: multiple results, block and loop types with parameters", () => {
  const bytes = wat(`(module
    (func $divmod (param i32 i32) (result i32 i32)
      (i32.div_u (local.get 0) (local.get 1)) (i32.rem_u (local.get 0) (local.get 1)))
    (func (export "divmod") (param i32 i32) (result i32 i32) (call $divmod (local.get 0) (local.get 1)))
    (func (export "divmod_sum") (param i32 i32) (result i32)
      (call $divmod (local.get 0) (local.get 1)) (i32.add))
    (func (export "swap") (param i32 i64) (result i64 i32) (local.get 1) (local.get 0))
    (func (export "block_params") (param i32) (result i32)
      (local.get 0) (i32.const 5)
      (block (param i32 i32) (result i32) (i32.mul)))
    (func (export "tri") (param $n i32) (result i32) (local $t i32)
      (i32.const 0) (local.get $n)
      (loop $l (param i32 i32) (result i32)
        (local.set $t)
        (local.get $t) (i32.add)
        (i32.sub (local.get $t) (i32.const 1))
        (i32.gt_s (local.get $t) (i32.const 1))
        (br_if $l)
        (drop)))
    (func (export "loop_result") (param $n i32) (result i32)
      (loop $l (result i32)
        (local.set $n (i32.add (local.get $n) (i32.const 3)))
        (br_if $l (i32.lt_u (local.get $n) (i32.const 1000)))
        (local.get $n))))`);
  assertSameAnswers(bytes, () => ({}), (e) => [
    outcome(() => e.divmod!(17, 5)),
    outcome(() => e.divmod_sum!(17, 5)),
    outcome(() => e.divmod!(1, 0)),
    outcome(() => e.swap!(7, 9n)),
    outcome(() => e.block_params!(8)),
    outcome(() => e.tri!(10)),
    outcome(() => e.tri!(30_000)),
    outcome(() => e.loop_result!(1)),
  ]);
});

Deno.test("SIMD: v128.const, shuffle, lanes, load/store lanes, arithmetic", () => {
  const bytes = wat(`(module
    (memory (export "mem") 1)
    (func (export "mix") (param i32) (result i32) (local $v v128)
      (local.set $v (v128.const i32x4 1 2 3 4))
      (local.set $v (i32x4.replace_lane 2 (local.get $v) (local.get 0)))
      (local.set $v (i8x16.shuffle 15 14 13 12 11 10 9 8 7 6 5 4 3 2 1 0 (local.get $v) (local.get $v)))
      (v128.store offset=16 (i32.const 0) (local.get $v))
      (local.set $v (v128.load32_zero (i32.const 20)))
      (local.set $v (v128.load8_lane 1 (i32.const 17) (local.get $v)))
      (v128.store16_lane 0 (i32.const 48) (local.get $v))
      (i32.add
        (i8x16.bitmask (i8x16.eq (local.get $v) (v128.const i8x16 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0)))
        (i32.add (i32x4.extract_lane 0 (local.get $v)) (i32.load16_u (i32.const 48)))))
    (func (export "dot") (param $n i32) (result f64) (local $i i32) (local $acc v128)
      (local.set $acc (f64x2.splat (f64.const 0)))
      (block $done (loop $l
        (br_if $done (i32.ge_u (local.get $i) (local.get $n)))
        (local.set $acc (f64x2.add (local.get $acc)
          (f64x2.mul (f64x2.convert_low_i32x4_s (i32x4.splat (local.get $i)))
                     (f64x2.splat (f64.const 0.5)))))
        (local.set $i (i32.add (local.get $i) (i32.const 1)))
        (br $l)))
      (f64.add (f64x2.extract_lane 0 (local.get $acc)) (f64x2.extract_lane 1 (local.get $acc))))
    (func (export "sat") (param i32 i32) (result i32)
      (i16x8.extract_lane_s 3 (i16x8.add_sat_s (i16x8.splat (local.get 0)) (i16x8.splat (local.get 1)))))
    (func (export "minmax") (param f32) (result f32)
      (f32x4.extract_lane 1 (f32x4.pmin (f32x4.splat (local.get 0)) (v128.const f32x4 1 -1 2 -2))))
    (func (export "alltrue") (param i32) (result i32)
      (i32x4.all_true (i32x4.replace_lane 3 (v128.const i32x4 1 1 1 1) (local.get 0)))))`);
  assertSameAnswers(bytes, () => ({}), (e) => [
    outcome(() => e.mix!(0x01020304)),
    outcome(() => e.dot!(1000)),
    outcome(() => e.sat!(30000, 30000)),
    outcome(() => e.minmax!(0.5)),
    outcome(() => e.alltrue!(0)),
    outcome(() => e.alltrue!(7)),
  ]);
});

const TAIL = `(module
  (type $t (func (param i64 i64) (result i64)))
  (table 1 funcref)
  (elem (i32.const 0) $sum_ind)
  (func $sum (export "sum_tail") (param $n i64) (param $acc i64) (result i64)
    (if (result i64) (i64.eqz (local.get $n))
      (then (local.get $acc))
      (else (return_call $sum (i64.sub (local.get $n) (i64.const 1)) (i64.add (local.get $acc) (local.get $n))))))
  (func $sum_ind (export "sum_ind") (param $n i64) (param $acc i64) (result i64)
    (if (result i64) (i64.eqz (local.get $n))
      (then (local.get $acc))
      (else (return_call_indirect (type $t)
        (i64.sub (local.get $n) (i64.const 1)) (i64.add (local.get $acc) (local.get $n)) (i32.const 0)))))
  (func $spin (export "spin_tail") (return_call $spin)))`;

Deno.test("tail calls: return_call and return_call_indirect, 1e6 deep", () => {
  const interrupts = assertSameAnswers(wat(TAIL), () => ({}), (e) => [
    outcome(() => e.sum_tail!(1_000_000n, 0n)),
    outcome(() => e.sum_ind!(1_000_000n, 0n)),
  ]);
  // Two million function entries in a call cycle: at least 2e6 / FUEL refills.
  assert.ok(interrupts >= Math.floor(2_000_000 / FUEL) - 1, `${interrupts}`);
});

class StopGuest extends Error {
  constructor() {
    super("stopped by the host");
    this.name = "StopGuest";
  }
}

/** An interrupt that refuels `refills` times, then throws. */
function stopAfter(
  refills: number,
): { interrupt: () => number; calls: () => number } {
  let calls = 0;
  return {
    interrupt: () => {
      calls++;
      if (calls > refills) throw new StopGuest();
      return FUEL;
    },
    calls: () => calls,
  };
}

Deno.test("an infinite loop stops when gk.interrupt throws, after the given refills", () => {
  const bytes = wat(`(module
    (func (export "spin") (loop $l (br $l)))
    (func (export "spin_nested") (param i32) (local $x i32)
      (loop $outer
        (block $b
          (loop $inner
            (local.set $x (i32.add (local.get $x) (i32.const 1)))
            (br_if $b (i32.eq (local.get $x) (local.get 0)))
            (br $inner)))
        (br $outer)))
    (func (export "spin_result") (result i32) (loop $l (result i32) (br $l))))`);
  const { bytes: out } = instrumentModule(bytes);
  for (const name of ["spin", "spin_nested", "spin_result"]) {
    const stop = stopAfter(3);
    const { exports } = instantiate(out, {}, stop.interrupt);
    assert.throws(() => exports[name]!(1_000_000), StopGuest);
    assert.equal(stop.calls(), 4);
    // The instance stays usable: the guest runs again until the next stop.
    assert.throws(() => exports[name]!(1_000_000), StopGuest);
    assert.equal(stop.calls(), 5);
  }
});

Deno.test("recursion without any loop stops too (checks on call cycles)", () => {
  const bytes = wat(`(module
    (func $f (export "forever") (param i32) (result i32)
      (i32.add (call $g (local.get 0)) (i32.const 1)))
    (func $g (param i32) (result i32)
      (if (result i32) (i32.eqz (local.get 0))
        (then (call $f (i32.const 0)))
        (else (call $f (i32.const 0))))))`);
  const stop = stopAfter(0);
  const { exports } = instantiate(
    instrumentModule(bytes).bytes,
    {},
    stop.interrupt,
  );
  assert.throws(() => exports.forever!(0), StopGuest);
  assert.equal(stop.calls(), 1);

  const tail = stopAfter(5);
  const t = instantiate(instrumentModule(wat(TAIL)).bytes, {}, tail.interrupt);
  assert.throws(() => t.exports.spin_tail!(), StopGuest);
  assert.equal(tail.calls(), 6);
});

Deno.test("indirect recursion through a table stops", () => {
  const bytes = wat(`(module
    (type $v (func))
    (table 1 funcref)
    (elem (i32.const 0) $f)
    (func $f (export "f") (call_indirect (type $v) (i32.const 0))))`);
  const stop = stopAfter(0);
  const { exports } = instantiate(
    instrumentModule(bytes).bytes,
    {},
    stop.interrupt,
  );
  assert.throws(() => exports.f!(), StopGuest);
});

Deno.test("an exponential call tree without loops or cycles still reaches gk.interrupt", () => {
  // f0 calls f1 twice, f1 calls f2 twice, …: 2^24 calls, no cycle, no loop.
  const depth = 24;
  const funcs = [];
  for (let i = 0; i < depth; i++) {
    funcs.push(
      `(func $f${i} (export "f${i}") (call $f${i + 1}) (call $f${i + 1}))`,
    );
  }
  funcs.push(
    `(func $f${depth} (global.set $n (i32.add (global.get $n) (i32.const 1))))`,
  );
  const bytes = wat(
    `(module (global $n (mut i32) (i32.const 0)) ${funcs.join("\n")})`,
  );
  const stop = stopAfter(2);
  const { exports } = instantiate(
    instrumentModule(bytes).bytes,
    {},
    stop.interrupt,
  );
  assert.throws(() => exports.f0!(), StopGuest);
});

Deno.test("cycles through a table, an export the host calls back, and tail-call loops stop at gk.interrupt", () => {
  const bytes = wat(`(module
    (import "env" "again" (func $again (param i32)))
    (type $level (func (param i32) (result i64)))
    (type $v (func))
    (table 3 funcref)
    (elem (i32.const 0) $even $odd $spin_ind)
    ;; Bounds the test if a cycle went unchecked: traps after 2^25 calls.
    (global $ticks (mut i32) (i32.const 0))
    (func $tick
      (global.set $ticks (i32.add (global.get $ticks) (i32.const 1)))
      (if (i32.gt_u (global.get $ticks) (i32.const 33554432)) (then unreachable)))
    ;; $even and $odd call each other through the table, twice per level
    (func $even (export "even") (param $n i32) (result i64)
      (call $tick)
      (if (result i64) (i32.eqz (local.get $n)) (then (i64.const 1))
        (else (i64.add
          (call_indirect (type $level) (i32.sub (local.get $n) (i32.const 1)) (i32.const 1))
          (call_indirect (type $level) (i32.sub (local.get $n) (i32.const 1)) (i32.const 1))))))
    (func $odd (param $n i32) (result i64)
      (call $tick)
      (if (result i64) (i32.eqz (local.get $n)) (then (i64.const 0))
        (else (i64.add
          (call_indirect (type $level) (i32.sub (local.get $n) (i32.const 1)) (i32.const 0))
          (call_indirect (type $level) (i32.sub (local.get $n) (i32.const 1)) (i32.const 0))))))
    ;; the host's "again" calls this export back, twice per level
    (func (export "reenter") (param $n i32)
      (call $tick)
      (if (local.get $n) (then
        (call $again (i32.sub (local.get $n) (i32.const 1)))
        (call $again (i32.sub (local.get $n) (i32.const 1))))))
    (func $spin_ind (export "spin_ind")
      (call $tick)
      (return_call_indirect (type $v) (i32.const 2)))
    (func $ping (export "ping") (param $n i64) (param $acc i64) (result i64)
      (call $tick)
      (return_call $pong (i64.add (local.get $n) (i64.const 1)) (i64.xor (local.get $acc) (local.get $n))))
    (func $pong (param $n i64) (param $acc i64) (result i64)
      (return_call $ping (local.get $n) (i64.rotl (local.get $acc) (i64.const 7))))
    ;; rustc's fib: a loop around one recursive call
    (func $rfib (export "rfib") (param $n i64) (result i64) (local $acc i64)
      (call $tick)
      (block $done
        (br_if $done (i64.lt_u (local.get $n) (i64.const 2)))
        (loop $l
          (local.set $acc (i64.add (local.get $acc) (call $rfib (i64.sub (local.get $n) (i64.const 1)))))
          (local.set $n (i64.sub (local.get $n) (i64.const 2)))
          (br_if $l (i64.gt_u (local.get $n) (i64.const 1)))))
      (i64.add (local.get $n) (local.get $acc))))`);
  const out = instrumentModule(bytes).bytes;
  const runs: [string, unknown[]][] = [
    ["even", [60]],
    ["reenter", [40]],
    ["spin_ind", []],
    ["ping", [0n, 1n]],
    ["rfib", [90n]],
  ];
  for (const [name, args] of runs) {
    const stop = stopAfter(2);
    const box: { exports?: Exports } = {};
    const { exports } = instantiate(out, {
      env: { again: (n: number) => box.exports!.reenter!(n) },
    }, stop.interrupt);
    box.exports = exports;
    assert.throws(() => exports[name]!(...args), StopGuest, name);
    assert.equal(stop.calls(), 3, name);
  }
});

/**
 * Recursion through a table: naive fib and mutual recursion (even/odd), a
 * table entry outside the cycle, an exported entry, callers holding the fuel
 * in the global (straight-line) and in a local (a loop), and a recursion that
 * never ends. `extra` adds module fields; `forever` is the index `spin` calls.
 */
function tableRecursion(extra = "", imports = ""): string {
  return `(module
    ${imports}
    (type $t (func (param i32) (result i32)))
    (table $tab 8 funcref)
    (elem (i32.const 0) $fib $even $odd $triple $spin $exported)
    (func $fib (export "fib") (param $n i32) (result i32)
      (if (result i32) (i32.lt_u (local.get $n) (i32.const 2))
        (then (local.get $n))
        (else (i32.add
          (call_indirect (type $t) (i32.sub (local.get $n) (i32.const 1)) (i32.const 0))
          (call_indirect (type $t) (i32.sub (local.get $n) (i32.const 2)) (i32.const 0))))))
    (func $even (export "even") (param $n i32) (result i32)
      (if (result i32) (i32.eqz (local.get $n)) (then (i32.const 1))
        (else (call_indirect (type $t) (i32.sub (local.get $n) (i32.const 1)) (i32.const 2)))))
    (func $odd (param $n i32) (result i32)
      (if (result i32) (i32.eqz (local.get $n)) (then (i32.const 0))
        (else (call_indirect (type $t) (i32.sub (local.get $n) (i32.const 1)) (i32.const 1)))))
    (func $triple (param $n i32) (result i32) (i32.mul (local.get $n) (i32.const 3)))
    ;; never returns: each activation calls itself again through the table
    (func $spin (export "spin") (param $n i32) (result i32)
      (i32.add (call_indirect (type $t) (i32.add (local.get $n) (i32.const 1)) (i32.const 4))
               (local.get $n)))
    (func $exported (export "exported") (param $n i32) (result i32)
      (call_indirect (type $t) (local.get $n) (i32.const 3)))
    ;; straight-line: the fuel in the global
    (func (export "via") (param $i i32) (param $n i32) (result i32)
      (call_indirect (type $t) (local.get $n) (local.get $i)))
    ;; a loop: the fuel in a local
    (func (export "sum") (param $n i32) (result i32) (local $i i32) (local $acc i32)
      (block $d (loop $l
        (br_if $d (i32.ge_u (local.get $i) (local.get $n)))
        (local.set $acc (i32.add (local.get $acc)
          (call_indirect (type $t) (i32.and (local.get $i) (i32.const 15))
                                   (i32.and (local.get $i) (i32.const 3)))))
        (local.set $i (i32.add (local.get $i) (i32.const 1)))
        (br $l)))
      (local.get $acc))
    ${extra})`;
}

/** The scenario `tableRecursion` modules share (without `spin`). */
function tableScenario(e: Exports): unknown[] {
  return [
    outcome(() => e.fib!(20)),
    outcome(() => e.even!(1001)),
    outcome(() => e.exported!(7)),
    outcome(() => e.via!(3, 14)),
    outcome(() => e.via!(5, 9)),
    outcome(() => e.via!(6, 1)), // null entry: trap
    outcome(() => e.sum!(2000)),
  ];
}

/**
 * Asserts a never-ending recursion through the table stops at the first
 * interrupt (unchecked, it would overflow the stack instead).
 */
function assertSpinStops(bytes: Uint8Array<ArrayBuffer>, imports = {}): void {
  const stop = stopAfter(0);
  const { exports } = instantiate(
    instrumentModule(bytes).bytes,
    imports,
    stop.interrupt,
  );
  assert.throws(() => exports.spin!(0), StopGuest);
  assert.equal(stop.calls(), 1);
}

Deno.test("fuel carried through call_indirect: same answers, every refill path, and table recursion still stops", () => {
  const bytes = wat(tableRecursion());
  assertSameAnswers(bytes, () => ({}), tableScenario);
  // Tiny refills: nearly every check refills.
  let interrupts = 0;
  const tiny = instantiate(
    instrumentModule(bytes).bytes,
    {},
    () => 1 + (interrupts++ % 3),
  );
  assert.deepStrictEqual(
    tableScenario(tiny.exports),
    tableScenario(instantiate(bytes).exports),
  );
  assert.ok(interrupts > 1000, `${interrupts}`);
  // Every table entry of the signature got a fuel-carrying copy.
  assert.ok(
    bodySizes(instrumentModule(bytes).bytes).length >=
      bodySizes(bytes).length + 6,
  );
  assertSpinStops(bytes);
});

Deno.test("fuel is not carried through call_indirect where the guest could forge it or a table entry is not ours", () => {
  // Each module would let guest code hand the fuel out or in, or put a
  // function the instrumenter did not copy into the table, if its
  // signature were threaded: answers must be the original's (traps
  // included) and the endless recursion must still stop.
  const wide = `(type $wide (func (param i32 i32) (result i32 i32)))`;
  const cases: [string, string, string, (e: Exports) => unknown[]][] = [
    [
      "an entry of the extended signature",
      `${wide}
      (elem (i32.const 6) $forge)
      (func $forge (param i32 i32) (result i32 i32) (local.get 0) (i32.const 2147483647))`,
      "",
      () => [],
    ],
    [
      "a call_indirect of the extended signature",
      `${wide}
      (func (export "grab") (param $n i32) (result i32)
        (call_indirect (type $wide) (local.get $n) (i32.const 2147483647) (i32.const 0))
        (drop))`,
      "",
      (e) => [outcome(() => e.grab!(25))],
    ],
    [
      "table.set",
      `(func (export "swap") (param $i i32) (param $n i32) (result i32)
        (table.set $tab (i32.const 7) (ref.func $triple))
        (call_indirect (type $t) (local.get $n) (local.get $i)))`,
      "",
      (e) => [outcome(() => e.swap!(7, 5)), outcome(() => e.swap!(0, 10))],
    ],
    [
      "an exported table",
      `(export "tab" (table $tab))`,
      "",
      (e) => {
        const table = (e as unknown as { tab: WebAssembly.Table }).tab;
        return [
          outcome(() => (table.get(0) as (n: number) => number)(15)),
          outcome(() => (table.get(3) as (n: number) => number)(4)),
        ];
      },
    ],
    [
      "an imported function in the table",
      `(elem (i32.const 6) $host)`,
      `(import "env" "host" (func $host (param i32) (result i32)))`,
      (e) => [outcome(() => e.via!(6, 8))],
    ],
  ];
  for (const [what, extra, imports, more] of cases) {
    const bytes = wat(tableRecursion(extra, imports));
    const box: { exports?: Exports } = {};
    const makeImports = () => ({
      env: { host: (n: number) => n < 2 ? n : box.exports!.fib!(n - 1) },
    });
    const scenario = (e: Exports) => {
      box.exports = e;
      return [...tableScenario(e), ...more(e)];
    };
    try {
      assertSameAnswers(
        bytes,
        imports ? makeImports : () => ({}),
        scenario,
      );
      assertSpinStops(bytes, imports ? makeImports() : {});
    } catch (e) {
      throw new Error(`with ${what}: ${(e as Error).message}`, { cause: e });
    }
  }
});

Deno.test("a check that restarts its function after a refill repeats no effect: stores, globals, parameters, growth, calls", () => {
  // The first check of these functions sits before their first call; a
  // refill restarts the function from its entry only when nothing before
  // the check has an effect. Tiny refills (once the initial fuel is spent)
  // make nearly every check refill, so a restart over an effect would show
  // in the answers.
  const bytes = wat(`(module
    (import "env" "count" (func $count))
    (type $t (func (param i32) (result i32)))
    (memory 1 200)
    (global $g (mut i32) (i32.const 0))
    (table 2 funcref)
    (elem (i32.const 0) $ind $ind_pure)
    (func $set_global (export "set_global") (param $n i32) (result i32)
      (if (result i32) (i32.eqz (local.get $n)) (then (global.get $g))
        (else (global.set $g (i32.add (global.get $g) (i32.const 1)))
              (call $set_global (i32.sub (local.get $n) (i32.const 1))))))
    (func $store (export "store") (param $n i32) (result i32)
      (if (result i32) (i32.eqz (local.get $n)) (then (i32.load (i32.const 0)))
        (else (i32.store (i32.const 0) (i32.add (i32.load (i32.const 0)) (i32.const 1)))
              (call $store (i32.sub (local.get $n) (i32.const 1))))))
    (func $param (export "param") (param $n i32) (param $acc i32) (result i32)
      (if (result i32) (i32.eqz (local.get $n)) (then (local.get $acc))
        (else (local.set $acc (i32.add (local.get $acc) (i32.const 1)))
              (call $param (i32.sub (local.get $n) (i32.const 1)) (local.get $acc)))))
    (func $tee (export "tee") (param $n i32) (result i32)
      (if (result i32) (i32.eqz (local.get $n)) (then (i32.const 0))
        (else (i32.add (local.tee $n (i32.sub (local.get $n) (i32.const 1)))
                       (call $tee (local.get $n))))))
    (func $grow (export "grow") (param $n i32) (result i32)
      (if (result i32) (i32.eqz (local.get $n)) (then (memory.size))
        (else (drop (memory.grow (i32.const 1)))
              (call $grow (i32.sub (local.get $n) (i32.const 1))))))
    (func $bump (global.set $g (i32.add (global.get $g) (i32.const 3))))
    (func $helper (export "helper") (param $n i32) (result i32)
      (if (result i32) (i32.eqz (local.get $n)) (then (global.get $g))
        (else (call $bump)
              (call $helper (i32.sub (local.get $n) (i32.const 1))))))
    (func $host (export "host") (param $n i32) (result i32)
      (if (result i32) (i32.eqz (local.get $n)) (then (i32.const 0))
        (else (call $count)
              (call $host (i32.sub (local.get $n) (i32.const 1))))))
    (func $ind (export "ind") (param $n i32) (result i32)
      (if (result i32) (i32.eqz (local.get $n)) (then (global.get $g))
        (else (global.set $g (i32.add (global.get $g) (i32.const 2)))
              (call_indirect (type $t) (i32.sub (local.get $n) (i32.const 1)) (i32.const 0)))))
    ;; effect-free before the call: loads, a non-parameter local, a branch
    (func $ind_pure (export "ind_pure") (param $n i32) (result i32) (local $x i32)
      (local.set $x (i32.load8_u (local.get $n)))
      (block $b (br_if $b (i32.eqz (local.get $x))) (local.set $x (i32.const 7)))
      (if (result i32) (i32.eqz (local.get $n)) (then (local.get $x))
        (else (i32.add (local.get $x)
          (call_indirect (type $t) (i32.sub (local.get $n) (i32.const 1)) (i32.const 1)))))))`);
  const box = { counted: 0 };
  const imports = () => ({ env: { count: () => void box.counted++ } });
  const scenario = (e: Exports) => {
    box.counted = 0;
    return [
      // First: spends the initial fuel, so the tiny refills below count.
      outcome(() => e.ind_pure!(12000)),
      outcome(() => e.set_global!(3000)),
      outcome(() => e.store!(3000)),
      outcome(() => e.param!(3000, 5)),
      outcome(() => e.tee!(3000)),
      outcome(() => e.grow!(150)),
      outcome(() => e.helper!(3000)),
      outcome(() => e.host!(3000)),
      box.counted,
      outcome(() => e.ind!(3000)),
      outcome(() => e.ind_pure!(3000)),
    ];
  };
  assertSameAnswers(bytes, imports, scenario);
  let interrupts = 0;
  const tiny = instantiate(
    instrumentModule(bytes).bytes,
    imports(),
    () => 1 + (interrupts++ % 3),
  );
  assert.deepStrictEqual(
    scenario(tiny.exports),
    scenario(instantiate(bytes, imports()).exports),
  );
  assert.ok(interrupts > 5000, `${interrupts}`);
});

/** Function body sizes of a module's code section. */
function bodySizes(bytes: Uint8Array): number[] {
  let pos = 8;
  const u32 = () => {
    let v = 0;
    let shift = 0;
    for (;;) {
      const b = bytes[pos++]!;
      v += (b & 0x7f) * 2 ** shift;
      shift += 7;
      if (!(b & 0x80)) return v;
    }
  };
  while (pos < bytes.length) {
    const id = bytes[pos++]!;
    const size = u32();
    const end = pos + size;
    if (id === 10) {
      const sizes = [];
      for (let n = u32(); n > 0; n--) {
        const s = u32();
        sizes.push(s);
        pos += s;
      }
      return sizes;
    }
    pos = end;
  }
  return [];
}

const THREADED = `(module
  (type $t (func (param i32) (result i32)))
  (memory 1)
  (table 2 funcref)
  (elem (i32.const 0) $fact $triple)
  ;; two results; returns from a branch, a br_table to the function label
  ;; and the end
  (func $mv (export "mv") (param $n i32) (result i32 i64) (local $a i32) (local $b i64)
    (if (i32.lt_s (local.get $n) (i32.const 2))
      (then (return (local.get $n) (i64.const 1))))
    (call $mv (i32.sub (local.get $n) (i32.const 1)))
    (local.set $b) (local.set $a)
    (block $x (result i32 i64)
      (block $y (result i32 i64)
        (i32.add (local.get $a) (local.get $n))
        (i64.mul (local.get $b) (i64.extend_i32_u (local.get $n)))
        (br_table $x $y 2 (i32.and (local.get $n) (i32.const 3))))
      (local.set $b) (local.set $a)
      (return (i32.sub (local.get $a) (i32.const 1)) (local.get $b))))
  ;; 200 locals: renumbered indices cross the one-byte LEB128 limit
  (func $many (export "many") (param $n i32) (result i32) ${
  Array.from({ length: 200 }, (_, i) => `(local $x${i} i32)`).join(" ")
}
    (local.set $x150 (local.get $n))
    (block $d (loop $l
      (br_if $d (i32.ge_u (local.get $x199) (local.get $n)))
      (local.set $x199 (i32.add (local.get $x199) (i32.const 1)))
      (local.set $x128 (i32.add (local.get $x128) (i32.mul (local.get $x199) (local.get $x150))))
      (br $l)))
    (if (result i32) (i32.lt_s (local.get $n) (i32.const 1))
      (then (local.get $x128))
      (else (i32.add (local.get $x128) (call $many (i32.sub (local.get $n) (i32.const 1)))))))
  ;; a bulk operation (its scratch local) in a recursive function
  (func $bulk (export "bulk") (param $n i32) (result i32)
    (memory.fill (i32.mul (local.get $n) (i32.const 64)) (local.get $n) (i32.const 64))
    (if (result i32) (i32.eqz (local.get $n))
      (then (i32.load8_u (i32.const 0)))
      (else (i32.add (i32.load8_u (i32.mul (local.get $n) (i32.const 64)))
                     (call $bulk (i32.sub (local.get $n) (i32.const 1)))))))
  ;; a loop with a parameter in a recursive function
  (func $lp (export "lp") (param $n i32) (result i32) (local $t i32)
    (if (result i32) (i32.lt_s (local.get $n) (i32.const 1))
      (then (i32.const 1))
      (else
        (i32.add
          (call $lp (i32.sub (local.get $n) (i32.const 1)))
          (i32.const 0)
          (loop $l (param i32) (result i32)
            (local.set $t (i32.add (i32.const 1)))
            (local.get $t)
            (br_if $l (i32.lt_u (local.get $t) (local.get $n))))))))
  ;; tail calls between two threaded functions, a million deep
  (func $ta (export "ta") (param $n i64) (param $acc i64) (result i64)
    (if (result i64) (i64.eqz (local.get $n))
      (then (local.get $acc))
      (else (return_call $tb (i64.sub (local.get $n) (i64.const 1))
                             (i64.add (local.get $acc) (local.get $n))))))
  (func $tb (param $n i64) (param $acc i64) (result i64)
    (return_call $ta (local.get $n) (i64.xor (local.get $acc) (i64.const 5))))
  ;; recursive, exported and in the table: reached through its wrapper
  (func $fact (export "fact") (param $n i32) (result i32)
    (if (result i32) (i32.le_s (local.get $n) (i32.const 1))
      (then (i32.const 1))
      (else (i32.mul (local.get $n) (call $fact (i32.sub (local.get $n) (i32.const 1)))))))
  (func $triple (param $n i32) (result i32) (i32.mul (local.get $n) (i32.const 3)))
  (func $inc (param i32) (result i32) (i32.add (local.get 0) (i32.const 1)))
  ;; a loop calling a threaded function directly (fuel passed in a local),
  ;; both table entries and a fuel-neutral helper
  (func (export "drive") (param $n i32) (result i32) (local $i i32) (local $acc i32)
    (block $d (loop $l
      (br_if $d (i32.ge_u (local.get $i) (local.get $n)))
      (local.set $acc (i32.add (local.get $acc) (call $fact (i32.and (local.get $i) (i32.const 7)))))
      (local.set $acc (i32.add (local.get $acc)
        (call_indirect (type $t) (local.get $i) (i32.and (local.get $i) (i32.const 1)))))
      (local.set $i (call $inc (local.get $i)))
      (br $l)))
    (local.get $acc))
  ;; a straight-line function calling a threaded one (through its wrapper)
  (func (export "once") (param $n i32) (result i32) (call $fact (local.get $n))))`;

Deno.test("threaded copies of cycle members give the same answers: results, locals, bulk, loop parameters, tail calls, tables", () => {
  const bytes = wat(THREADED);
  const scenario = (e: Exports) => [
    outcome(() => e.mv!(25)),
    outcome(() => e.many!(40)),
    outcome(() => e.bulk!(100)),
    outcome(() => e.bulk!(2000)), // out of bounds: trap
    outcome(() => e.lp!(60)),
    outcome(() => e.ta!(1_000_000n, 0n)),
    outcome(() => e.fact!(12)),
    outcome(() => e.drive!(3000)),
    outcome(() => e.once!(10)),
  ];
  assertSameAnswers(bytes, () => ({}), scenario);
  // Tiny refills: nearly every check refills, so every refill path runs.
  let interrupts = 0;
  const tiny = instantiate(
    instrumentModule(bytes).bytes,
    {},
    () => 1 + (interrupts++ % 3),
  );
  assert.deepStrictEqual(
    scenario(tiny.exports),
    scenario(instantiate(bytes).exports),
  );
  assert.ok(interrupts > 1000, `${interrupts}`);
  // The cycle members got threaded copies (and the module its padding).
  assert.ok(
    bodySizes(instrumentModule(bytes).bytes).length >=
      bodySizes(bytes).length + 7,
  );
});

Deno.test("the share of small functions that V8's inlining budget depends on is kept", async () => {
  const modules: [string, Uint8Array][] = [["THREADED", wat(THREADED)]];
  for (const dir of ["plugins", "wasi"]) {
    for await (
      const entry of Deno.readDir(
        new URL(`../fixtures/${dir}/`, import.meta.url),
      )
    ) {
      const file = entry.isDirectory
        ? new URL(
          `../fixtures/${dir}/${entry.name}/plugin.wasm`,
          import.meta.url,
        )
        : new URL(`../fixtures/${dir}/${entry.name}`, import.meta.url);
      if (!file.pathname.endsWith(".wasm")) continue;
      try {
        modules.push([file.pathname, await Deno.readFile(file)]);
      } catch (e) {
        if (!(e instanceof Deno.errors.NotFound)) throw e;
      }
    }
  }
  assert.ok(modules.length > 3);
  const share = (sizes: number[]) =>
    sizes.filter((s) => s < 50).length / sizes.length;
  for (const [name, bytes] of modules) {
    const before = share(bodySizes(bytes));
    const after = share(
      bodySizes(instrumentModule(bytes, { memoryLimitPages: 65536 }).bytes),
    );
    assert.ok(after >= Math.min(before, 0.5), `${name}: ${before} -> ${after}`);
  }
});

Deno.test("bulk memory and table operations spend fuel by length, so big fills reach gk.interrupt", () => {
  const bytes = wat(`(module
    (memory 32 32)
    (table 10 funcref)
    (elem declare func $f)
    (func $f)
    (func (export "fills") (param $n i32) (result i32) (local $i i32)
      (block $done (loop $l
        (br_if $done (i32.ge_u (local.get $i) (local.get $n)))
        (memory.fill (i32.const 0) (local.get $i) (i32.const 1048576))
        (memory.copy (i32.const 1048576) (i32.const 0) (i32.const 1024))
        (local.set $i (i32.add (local.get $i) (i32.const 1)))
        (br $l)))
      (i32.load8_u (i32.const 1048576)))
    (func (export "one_fill") (param $len i32)
      (memory.fill (i32.const 0) (i32.const 1) (local.get $len)))
    (func (export "table") (param $n i32) (result i32)
      (table.fill (i32.const 0) (ref.func $f) (local.get $n))
      (table.grow (ref.null func) (local.get $n))))`);
  const interrupts = assertSameAnswers(bytes, () => ({}), (e) => [
    outcome(() => e.fills!(200)),
    outcome(() => e.one_fill!(100)),
    outcome(() => e.one_fill!(32 * 65536 + 1)), // out of bounds: trap
    outcome(() => e.table!(10)),
  ]);
  // 200 fills of 1 MiB = 200 * 1024 units: at least 20 refills.
  assert.ok(interrupts >= 20, `${interrupts}`);
  // A loop of big fills stops.
  const stop = stopAfter(2);
  const { exports } = instantiate(
    instrumentModule(bytes).bytes,
    {},
    stop.interrupt,
  );
  assert.throws(() => exports.fills!(1_000_000), StopGuest);
});

Deno.test("checks are weighed by the code they cover: a loop with a big body spends more", () => {
  const statements = Array.from(
    { length: 200 },
    (_, i) => `(local.set $x (i32.add (local.get $x) (i32.const ${i})))`,
  ).join("\n");
  const bytes = wat(`(module
    (func (export "big") (param $n i32) (result i32) (local $i i32) (local $x i32)
      (block $done (loop $l
        (br_if $done (i32.ge_u (local.get $i) (local.get $n)))
        ${statements}
        (local.set $i (i32.add (local.get $i) (i32.const 1)))
        (br $l)))
      (local.get $x)))`);
  // ~1.4 KB of body: over 20 units per iteration, so 5000 turns need refills.
  const interrupts = assertSameAnswers(bytes, () => ({}), (e) => [
    outcome(() => e.big!(5000)),
  ]);
  assert.ok(interrupts >= 10, `${interrupts}`);
});

Deno.test("a loop's check also covers the unchecked functions it calls, directly or indirectly", () => {
  const statements = Array.from(
    { length: 200 },
    (_, i) => `(global.set $x (i32.add (global.get $x) (i32.const ${i})))`,
  ).join("\n");
  const bytes = wat(`(module
    (type $v (func))
    (table 1 funcref)
    (elem (i32.const 0) $heavy)
    (global $x (mut i32) (i32.const 0))
    (func $heavy ${statements})
    (func (export "direct") (param $n i32) (result i32) (local $i i32)
      (block $done (loop $l
        (br_if $done (i32.ge_u (local.get $i) (local.get $n)))
        (call $heavy)
        (local.set $i (i32.add (local.get $i) (i32.const 1)))
        (br $l)))
      (global.get $x))
    (func (export "indirect") (param $n i32) (result i32) (local $i i32)
      (block $done (loop $l
        (br_if $done (i32.ge_u (local.get $i) (local.get $n)))
        (call_indirect (type $v) (i32.const 0))
        (local.set $i (i32.add (local.get $i) (i32.const 1)))
        (br $l)))
      (global.get $x)))`);
  for (const name of ["direct", "indirect"]) {
    const interrupts = assertSameAnswers(bytes, () => ({}), (e) => [
      outcome(() => e[name]!(5000)),
    ]);
    assert.ok(interrupts >= 10, `${name}: ${interrupts}`);
  }
});

Deno.test("the guest cannot reach the fuel global (index past its own globals is refused)", () => {
  // (func (global.set 0 (i32.const 999999))) in a module without globals
  const bytes = moduleOf(
    section(1, [1, 0x60, 0, 0]),
    section(3, [1, 0]),
    section(10, [1, ...sized([0, 0x41, 0xbf, 0x84, 0x3d, 0x24, 0x00, 0x0b])]),
  );
  assert.throws(() => instrumentModule(bytes), WasmInstrumentError);
});

Deno.test("memory cap: maximum rewritten, memory.grow past it returns -1 inside the guest", () => {
  const bytes = wat(`(module
    (memory (export "memory") 1)
    (func (export "grow") (param i32) (result i32) (memory.grow (local.get 0))))`);
  const result = instrumentModule(bytes, { memoryLimitPages: 4 });
  assert.equal(result.memoryMaxPages, 4);
  const { exports, instance } = instantiate(result.bytes);
  assert.equal(exports.grow!(2), 1);
  assert.equal(exports.grow!(2), -1);
  assert.equal(exports.grow!(1), 3);
  assert.equal(exports.grow!(1), -1);
  const memory = instance.exports.memory as WebAssembly.Memory;
  assert.equal(memory.buffer.byteLength, 4 * 65536);
  assert.throws(() => memory.grow(1), RangeError);
  // The original grows freely.
  assert.equal(instantiate(bytes).exports.grow!(10), 1);

  // A smaller declared maximum is kept.
  const small = instrumentModule(wat(`(module (memory 1 2))`), {
    memoryLimitPages: 4,
  });
  assert.equal(small.memoryMaxPages, 2);
  // Default limit: 256 pages.
  assert.equal(instrumentModule(bytes).memoryMaxPages, 256);
  // No memory: 0.
  assert.equal(instrumentModule(wat(`(module)`)).memoryMaxPages, 0);
});

Deno.test("memory too big at start is refused", () => {
  assert.throws(
    () => instrumentModule(wat(`(module (memory 300))`)),
    (e: unknown) =>
      e instanceof WasmInstrumentError &&
      /needs 300 pages at start, limit is 256/.test(e.message),
  );
  assert.throws(
    () => instrumentModule(wat(`(module (memory 5))`), { memoryLimitPages: 4 }),
    /needs 5 pages at start, limit is 4/,
  );
  assert.throws(
    () => instrumentModule(wat(`(module)`), { memoryLimitPages: 70000 }),
    RangeError,
  );
});

Deno.test("imported, shared, 64-bit and multiple memories are refused", () => {
  assert.throws(
    () => instrumentModule(wat(`(module (import "env" "mem" (memory 1)))`)),
    /imported memory "env.mem"/,
  );
  assert.throws(
    () => instrumentModule(moduleOf(section(5, [1, 0x03, 1, 1]))),
    /shared memory/,
  );
  assert.throws(
    () => instrumentModule(wat(`(module (memory i64 1))`, { memory64: true })),
    /memory64/,
  );
  assert.throws(
    () => instrumentModule(moduleOf(section(5, [2, 0, 1, 0, 1]))),
    /multiple memories/,
  );
});

Deno.test("unsupported proposals are refused with the opcode and offset", () => {
  // exception handling: a tag section
  assert.throws(
    () =>
      instrumentModule(
        wat(`(module (tag $e) (func (throw $e)))`, { exceptions: true }),
      ),
    /exception handling/,
  );
  // try (0x06) in a body
  assertRefused(
    bodyModule([0x06, 0x40, 0x0b]),
    /opcode 0x06 \(exception handling\) at byte offset \d+/,
  );
  // atomics (0xfe) in a body, on a non-shared memory
  assertRefused(
    bodyModule([0x41, 0x00, 0xfe, 0x10, 0x02, 0x00, 0x1a], true),
    /opcode 0xfe \(threads\/atomics\) at byte offset \d+/,
  );
  // GC prefix
  assertRefused(bodyModule([0xfb, 0x01, 0x00]), /opcode 0xfb \(GC\)/);
  // relaxed SIMD
  assertRefused(bodyModule([0xfd, 0x80, 0x02]), /0xfd 256 \(relaxed SIMD\)/);
  // typed function references: call_ref
  assertRefused(bodyModule([0x14, 0x00]), /0x14 \(typed function references\)/);
  // unknown opcode
  assertRefused(bodyModule([0x27]), /opcode 0x27 \(unknown opcode\)/);
  // unknown 0xfc sub-opcode
  assertRefused(bodyModule([0xfc, 0x12]), /0xfc 18/);
  // unknown SIMD hole
  assertRefused(
    bodyModule([0xfd, 0x9a, 0x01]),
    /0xfd 154 \(unknown SIMD opcode\)/,
  );
  // GC type in the type section
  assertRefused(moduleOf(section(1, [1, 0x5f, 0])), /type form 0x5f \(GC\)/);
  // the module already imports gk.interrupt
  assert.throws(
    () =>
      instrumentModule(
        wat(`(module (import "gk" "interrupt" (func (result i32))))`),
      ),
    /already imports "gk.interrupt"/,
  );
});

Deno.test("malformed modules are refused with WasmInstrumentError", () => {
  const cases: [string, Uint8Array, RegExp][] = [
    ["empty", new Uint8Array(0), /too short/],
    [
      "bad magic",
      new Uint8Array([0, 0x61, 0x73, 0x6e, 1, 0, 0, 0]),
      /bad magic/,
    ],
    [
      "bad version",
      new Uint8Array([0, 0x61, 0x73, 0x6d, 2, 0, 0, 0]),
      /version/,
    ],
    [
      "component",
      new Uint8Array([0, 0x61, 0x73, 0x6d, 0x0d, 0, 1, 0]),
      /components/,
    ],
    ["section overrun", moduleOf([1, 100, 1, 0x60, 0]), /overruns the module/],
    [
      "LEB too long",
      moduleOf([1, 0x80, 0x80, 0x80, 0x80, 0x80, 0x00]),
      /LEB128/,
    ],
    ["LEB unused bits", moduleOf([1, 0xff, 0xff, 0xff, 0xff, 0x7f]), /LEB128/],
    ["truncated LEB", moduleOf([1, 0x80]), /end of data/],
    ["unknown section", moduleOf([14, 0]), /unknown section id 14/],
    [
      "duplicate section",
      moduleOf(section(1, [0]), section(1, [0])),
      /out of order/,
    ],
    [
      "section size mismatch",
      moduleOf(section(1, [1, 0x60, 0, 0, 0x99])),
      /size does not match/,
    ],
    [
      "body without end",
      bodyModule([0x41, 0x00, 0x1a], false, false),
      /ends before its final end/,
    ],
    [
      "bad signed LEB",
      bodyModule([0x41, 0xff, 0xff, 0xff, 0xff, 0x4f, 0x1a]),
      /signed LEB128/,
    ],
    [
      "call out of range",
      bodyModule([0x10, 0x05]),
      /function index 5 out of range/,
    ],
    [
      "branch out of range",
      bodyModule([0x0c, 0x03]),
      /branch depth 3 out of range/,
    ],
    [
      "code count mismatch",
      moduleOf(
        section(1, [1, 0x60, 0, 0]),
        section(3, [2, 0, 0]),
        section(10, [1, 2, 0, 0x0b]),
      ),
      /2 functions|declares 2/,
    ],
    [
      "invalid (type error)",
      moduleOf(
        section(1, [1, 0x60, 0, 0]),
        section(3, [1, 0]),
        section(10, [1, 4, 0, 0x41, 0, 0x0b]),
      ),
      /not valid/,
    ],
  ];
  for (const [name, bytes, message] of cases) {
    assert.throws(() => instrumentModule(bytes), (e: unknown) => {
      assert.ok(e instanceof WasmInstrumentError, `${name}: ${e}`);
      assert.match(e.message, message, name);
      return true;
    });
  }
});

Deno.test("every truncation and 3000 random corruptions: refused or valid, never a crash", () => {
  const samples = [
    wat(MVP),
    wat(TAIL),
    wat(randomProgram(7)),
    wat(randomProgram(8)),
  ];
  let refused = 0;
  let accepted = 0;
  const check = (bytes: Uint8Array) => {
    try {
      const out = instrumentModule(bytes);
      assert.ok(WebAssembly.validate(out.bytes));
      accepted++;
    } catch (e) {
      if (!(e instanceof WasmInstrumentError)) throw e;
      // A valid input must never produce an invalid output.
      assert.doesNotMatch(e.message, /internal error/);
      refused++;
    }
  };
  for (const sample of samples) {
    for (let len = 0; len < sample.length; len++) {
      check(sample.subarray(0, len));
    }
  }
  let seed = 12345;
  const random = () => {
    seed = (seed * 1103515245 + 12345) >>> 0;
    return seed / 2 ** 32;
  };
  for (let i = 0; i < 3000; i++) {
    const sample = samples[i % samples.length]!;
    const copy = sample.slice();
    const flips = 1 + Math.floor(random() * 3);
    for (let j = 0; j < flips; j++) {
      copy[8 + Math.floor(random() * (copy.length - 8))] = Math.floor(
        random() * 256,
      );
    }
    check(copy);
  }
  assert.ok(refused > 1000, `refused ${refused}`);
  assert.ok(accepted > 0, `accepted ${accepted}`);
});

Deno.test("index encodings that change length (>= 128 imports, globals, functions) stay right", () => {
  const imports = [];
  for (let i = 0; i < 130; i++) {
    imports.push(`(import "env" "i${i}" (func $i${i} (result i32)))`);
  }
  const globals = [];
  for (let i = 0; i < 130; i++) {
    globals.push(`(global $g${i} (mut i32) (i32.const ${i}))`);
  }
  const funcs = [];
  for (let i = 0; i < 200; i++) {
    const next = i === 199 ? `(call $i129)` : `(call $f${i + 1})`;
    funcs.push(
      `(func $f${i} (result i32) (i32.add (global.get $g${i % 130}) ${next}))`,
    );
  }
  const bytes = wat(
    `(module ${imports.join("\n")} ${globals.join("\n")} ${funcs.join("\n")}
    (table 1 funcref) (elem (i32.const 0) $f127)
    (type $r (func (result i32)))
    (func (export "run") (result i32) (local $i i32) (local $acc i32)
      (loop $l
        (local.set $acc (i32.add (local.get $acc) (call $f127)))
        (local.set $acc (i32.add (local.get $acc) (call_indirect (type $r) (i32.const 0))))
        (local.set $i (i32.add (local.get $i) (i32.const 1)))
        (br_if $l (i32.lt_u (local.get $i) (i32.const 3))))
      (local.get $acc)))`,
  );
  const envImports = () => {
    const env: Record<string, () => number> = {};
    for (let i = 0; i < 130; i++) env[`i${i}`] = () => i * 1000;
    return { env };
  };
  assertSameAnswers(bytes, envImports, (e) => [outcome(() => e.run!())]);
});

Deno.test("name section dropped, other custom sections kept", () => {
  const named = wat(
    `(module (func $hello (export "hello")))`,
    ALL_FEATURES,
    true,
  );
  assert.equal(
    WebAssembly.Module.customSections(new WebAssembly.Module(named), "name")
      .length,
    1,
  );
  const withCustom = concat(
    named,
    section(0, [...nameBytes("gk-test"), 1, 2, 3]),
  );
  const out = new WebAssembly.Module(instrumentModule(withCustom).bytes);
  assert.equal(WebAssembly.Module.customSections(out, "name").length, 0);
  const kept = WebAssembly.Module.customSections(out, "gk-test");
  assert.equal(kept.length, 1);
  assert.deepStrictEqual([...new Uint8Array(kept[0]!)], [1, 2, 3]);
});

Deno.test("modules without type, import or global sections get them", () => {
  for (
    const source of [
      `(module)`,
      `(module (func (export "f") (loop $l (br_if $l (i32.const 0)))))`,
    ]
  ) {
    const { bytes } = instrumentModule(wat(source));
    const mod = new WebAssembly.Module(bytes);
    assert.deepStrictEqual(WebAssembly.Module.imports(mod), [
      { module: "gk", name: "interrupt", kind: "function" },
    ]);
  }
});

Deno.test("hash and cache", async () => {
  const bytes = wat(MVP);
  const a = instrumentModule(bytes);
  const b = instrumentModule(bytes);
  assert.match(a.hash, /^[0-9a-f]{64}$/);
  assert.equal(a.hash, b.hash);
  assert.deepStrictEqual(a.bytes, b.bytes);
  assert.notEqual(
    instrumentModule(bytes, { memoryLimitPages: 8 }).hash,
    a.hash,
  );
  const c1 = await instrumentModuleCached(bytes);
  const c2 = await instrumentModuleCached(bytes.slice());
  assert.equal(c1, c2);
  assert.equal(c1.hash, a.hash);
  const c3 = await instrumentModuleCached(bytes, { memoryLimitPages: 8 });
  assert.notEqual(c3, c1);
  await assert.rejects(
    () => instrumentModuleCached(new Uint8Array(3)),
    WasmInstrumentError,
  );
});

Deno.test("every .wasm under fixtures/ instruments, validates and compiles", async () => {
  const root = new URL("../fixtures/", import.meta.url);
  const files: URL[] = [];
  const walk = async (dir: URL) => {
    for await (const entry of Deno.readDir(dir)) {
      const url = new URL(entry.name + (entry.isDirectory ? "/" : ""), dir);
      if (entry.isDirectory && entry.name !== "node_modules") await walk(url);
      else if (entry.isFile && entry.name.endsWith(".wasm")) files.push(url);
    }
  };
  try {
    await walk(root);
  } catch (e) {
    if (!(e instanceof Deno.errors.NotFound)) throw e;
  }
  for (const file of files) {
    const original = await Deno.readFile(file);
    if (!WebAssembly.validate(original)) continue; // deliberately broken fixtures
    let result;
    try {
      result = instrumentModule(original, { memoryLimitPages: 65536 });
    } catch (e) {
      throw new Error(`${file.pathname}: ${(e as Error).message}`);
    }
    const before = new WebAssembly.Module(original);
    const after = new WebAssembly.Module(result.bytes);
    assert.deepStrictEqual(
      WebAssembly.Module.exports(after),
      WebAssembly.Module.exports(before),
      file.pathname,
    );
    assert.deepStrictEqual(WebAssembly.Module.imports(after), [
      ...WebAssembly.Module.imports(before),
      { module: "gk", name: "interrupt", kind: "function" },
    ], file.pathname);
  }
  console.log(`instrumented ${files.length} fixture module(s)`);
});

// ---- hand-assembled binaries ------------------------------------------------

function leb(n: number): number[] {
  const out = [];
  do {
    let b = n & 0x7f;
    n >>>= 7;
    if (n) b |= 0x80;
    out.push(b);
  } while (n);
  return out;
}

function sized(content: number[]): number[] {
  return [...leb(content.length), ...content];
}

function section(id: number, content: number[]): number[] {
  return [id, ...sized(content)];
}

function nameBytes(text: string): number[] {
  return sized([...new TextEncoder().encode(text)]);
}

function moduleOf(...sections: number[][]): Uint8Array {
  return new Uint8Array([0, 0x61, 0x73, 0x6d, 1, 0, 0, 0, ...sections.flat()]);
}

function concat(a: Uint8Array, b: number[]): Uint8Array {
  return new Uint8Array([...a, ...b]);
}

/** A module with one `() -> ()` function whose body is `code` (+ end). */
function bodyModule(code: number[], memory = false, end = true): Uint8Array {
  const body = [0, ...code, ...(end ? [0x0b] : [])];
  return moduleOf(
    section(1, [1, 0x60, 0, 0]),
    section(3, [1, 0]),
    ...(memory ? [section(5, [1, 0, 1])] : []),
    section(10, [1, ...sized(body)]),
  );
}

function assertRefused(bytes: Uint8Array, message: RegExp): void {
  assert.throws(() => instrumentModule(bytes), (e: unknown) => {
    assert.ok(e instanceof WasmInstrumentError, String(e));
    assert.match(e.message, message);
    return true;
  });
}

// ---- real compiler output: run the fixtures original and instrumented -------

class ExitSignal extends Error {
  constructor(readonly code: number) {
    super(`proc_exit(${code})`);
    this.name = "ExitSignal";
  }
}

/**
 * A deterministic WASI preview1 stand-in (test double): stdio captured, fixed
 * args/env/clock/random, no files (no preopens), everything else ENOSYS. Both
 * the original and the instrumented module run against identical copies.
 */
function fakeHost(memoryOf: () => WebAssembly.Memory) {
  const out: string[] = [];
  const decoder = new TextDecoder();
  const args = ["prog", "hello world"];
  const env = ["GK_TEST=1"];
  let stdin = new TextEncoder().encode("some input\n");
  const view = () => new DataView(memoryOf().buffer);
  const bytes = () => new Uint8Array(memoryOf().buffer);
  const strings = (list: string[], ptrs: number, buf: number) => {
    for (const item of list) {
      const data = new TextEncoder().encode(item + "\0");
      view().setUint32(ptrs, buf, true);
      bytes().set(data, buf);
      ptrs += 4;
      buf += data.length;
    }
    return 0;
  };
  const sizes = (list: string[], countPtr: number, sizePtr: number) => {
    view().setUint32(countPtr, list.length, true);
    view().setUint32(
      sizePtr,
      list.reduce((n, s) => n + new TextEncoder().encode(s).length + 1, 0),
      true,
    );
    return 0;
  };
  const wasi: Record<string, (...a: never[]) => unknown> = {
    args_sizes_get: (c: number, s: number) => sizes(args, c, s),
    args_get: (p: number, b: number) => strings(args, p, b),
    environ_sizes_get: (c: number, s: number) => sizes(env, c, s),
    environ_get: (p: number, b: number) => strings(env, p, b),
    fd_write: (fd: number, iovs: number, n: number, written: number) => {
      let total = 0;
      for (let i = 0; i < n; i++) {
        const ptr = view().getUint32(iovs + 8 * i, true);
        const len = view().getUint32(iovs + 8 * i + 4, true);
        out.push(`${fd}:` + decoder.decode(bytes().slice(ptr, ptr + len)));
        total += len;
      }
      view().setUint32(written, total, true);
      return 0;
    },
    fd_read: (fd: number, iovs: number, n: number, read: number) => {
      if (fd !== 0) return 8;
      let total = 0;
      for (let i = 0; i < n && stdin.length; i++) {
        const ptr = view().getUint32(iovs + 8 * i, true);
        const len = Math.min(
          view().getUint32(iovs + 8 * i + 4, true),
          stdin.length,
        );
        bytes().set(stdin.subarray(0, len), ptr);
        stdin = stdin.subarray(len);
        total += len;
      }
      view().setUint32(read, total, true);
      return 0;
    },
    fd_fdstat_get: (fd: number, ptr: number) => {
      if (fd > 2) return 8;
      view().setUint8(ptr, 2);
      view().setUint16(ptr + 2, 0, true);
      view().setBigUint64(ptr + 8, 0xffffn, true);
      view().setBigUint64(ptr + 16, 0xffffn, true);
      return 0;
    },
    fd_prestat_get: () => 8,
    fd_seek: () => 70,
    fd_close: () => 0,
    clock_time_get: (_id: number, _precision: bigint, ptr: number) => {
      view().setBigUint64(ptr, 1_700_000_000_000_000_000n, true);
      return 0;
    },
    random_get: (ptr: number, len: number) => {
      bytes().fill(7, ptr, ptr + len);
      return 0;
    },
    proc_exit: (code: number) => {
      throw new ExitSignal(code);
    },
  };
  const wasiProxy = new Proxy(wasi, {
    get: (target, name: string) => target[name] ?? (() => 52),
  });
  const gk = {
    host_call: () => 0n,
    log: (level: number, ptr: number, len: number) => {
      out.push(`log${level}:` + decoder.decode(bytes().slice(ptr, ptr + len)));
    },
  };
  return { imports: { wasi_snapshot_preview1: wasiProxy, gk }, out };
}

/** Runs a fixture (command or GoatKit plugin) and records everything it does. */
function runFixture(
  bytes: Uint8Array<ArrayBuffer>,
  interrupt: () => number,
): unknown[] {
  let memory: WebAssembly.Memory | undefined;
  const host = fakeHost(() => memory!);
  const trace: unknown[] = [];
  const record = (what: string, fn: () => unknown) => {
    const result = outcome(fn);
    trace.push(what, result);
    return result as { value?: unknown };
  };
  let exports: Exports = {};
  const made = record("instantiate", () => {
    const instance = new WebAssembly.Instance(new WebAssembly.Module(bytes), {
      ...host.imports,
      gk: { ...host.imports.gk, interrupt },
    });
    exports = instance.exports as unknown as Exports;
    memory = instance.exports.memory as WebAssembly.Memory;
    return "ok";
  });
  if (!("value" in made)) return [...trace, host.out];
  const readPacked = (packed: unknown) => {
    if (typeof packed !== "bigint" || packed === 0n) return packed;
    const ptr = Number(packed >> 32n);
    const len = Number(packed & 0xffffffffn);
    return new TextDecoder().decode(new Uint8Array(memory!.buffer, ptr, len));
  };
  const put = (text: string) => {
    const data = new TextEncoder().encode(text);
    const ptr = exports.gk_malloc!(data.length) as number;
    new Uint8Array(memory!.buffer).set(data, ptr);
    return [ptr, data.length];
  };
  if (exports._start) record("_start", () => exports._start!());
  if (exports._initialize) record("_initialize", () => exports._initialize!());
  if (exports.gk_register) {
    const reg = record("gk_register", () => readPacked(exports.gk_register!()));
    const handlers = new Set<string>(["hello", "loop", "tight", "calls"]);
    try {
      JSON.stringify(JSON.parse(String(reg.value)), (key, value) => {
        if (
          (key === "handler" || key === "name") && typeof value === "string"
        ) {
          handlers.add(value);
        }
        return value;
      });
    } catch {
      // not JSON: only the known names
    }
    for (const name of [...handlers].sort()) {
      record(`gk_call ${name}`, () => {
        const [fp, fl] = put(name);
        const [ap, al] = put(`{"name":"instrumenter"}`);
        return readPacked(exports.gk_call!(fp, fl, ap, al));
      });
    }
  }
  return [...trace, host.out];
}

Deno.test("fixtures built by real compilers give the same answers instrumented; hostile ones terminate", async () => {
  const root = new URL("../fixtures/", import.meta.url);
  const files: URL[] = [];
  const walk = async (dir: URL) => {
    for await (const entry of Deno.readDir(dir)) {
      const url = new URL(entry.name + (entry.isDirectory ? "/" : ""), dir);
      if (entry.isDirectory && entry.name !== "node_modules") await walk(url);
      else if (entry.isFile && entry.name.endsWith(".wasm")) files.push(url);
    }
  };
  try {
    await walk(root);
  } catch (e) {
    if (!(e instanceof Deno.errors.NotFound)) throw e;
  }
  let compared = 0;
  let stopped = 0;
  for (
    const file of files.sort((a, b) => a.pathname.localeCompare(b.pathname))
  ) {
    const original = await Deno.readFile(file);
    if (!WebAssembly.validate(original)) continue;
    let instrumented;
    try {
      instrumented = instrumentModule(original);
    } catch (e) {
      // Only a memory larger than the default limit may be refused here.
      assert.match((e as Error).message, /pages at start/, file.pathname);
      continue;
    }
    // Instrumented first, with a budget: if it finishes, so does the original.
    let budgetHit = false;
    let refills = 0;
    const actual = runFixture(instrumented.bytes, () => {
      if (++refills > 300) {
        budgetHit = true;
        throw new StopGuest();
      }
      return FUEL;
    });
    const hostile = /hostile/.test(file.pathname);
    if (budgetHit) {
      stopped++;
      assert.ok(hostile, `${file.pathname} ran out of budget`);
      continue;
    }
    if (hostile) continue; // e.g. memory bombs: the original is not capped
    const expected = runFixture(new Uint8Array(original), () => FUEL);
    assert.deepStrictEqual(actual, expected, file.pathname);
    compared++;
  }
  console.log(
    `compared ${compared} fixture(s), stopped ${stopped} hostile run(s)`,
  );
});

// ---- differential test on random structured programs ------------------------

/**
 * Generates a random, always-terminating module: functions with nested
 * blocks, loops (bounded by counters), ifs, br/br_if/br_table to random
 * enclosing labels (including the function's own), returns, calls to later
 * functions, call_indirect, memory traffic and bulk fills. All effects go into
 * a global accumulator and memory, which `run` returns a digest of. With
 * `recursive`, calls (and tail calls, direct or through the table) go to any
 * function, itself included, while the depth parameter `$p` is positive:
 * call cycles of every shape, bounded by the depth.
 */
function randomProgram(seed: number, recursive = false): string {
  let state = seed >>> 0;
  const rnd = (n: number) => {
    state = (state * 1664525 + 1013904223) >>> 0;
    return state % n;
  };
  const FUNCS = 6;
  const HALF = 3;
  const funcs: string[] = [];
  for (let f = 0; f < FUNCS; f++) {
    let loops = 0;
    const labels: string[] = ["$fn"]; // innermost last
    const stmt = (depth: number): string => {
      const mix =
        `(global.set $acc (i32.add (i32.mul (global.get $acc) (i32.const 31)) (i32.const ${
          rnd(1000)
        })))`;
      const choice = rnd(depth > 3 ? 5 : 11);
      const target = () => labels[labels.length - 1 - rnd(labels.length)]!;
      switch (choice) {
        case 0:
          return mix;
        case 1:
          return `(br_if ${target()} (i32.eqz (i32.and (global.get $acc) (i32.const ${
            1 + rnd(7)
          }))))`;
        case 2:
          return `(i32.store (i32.and (global.get $acc) (i32.const 1020)) (global.get $acc))`;
        case 3:
          if (recursive) {
            // The upper half stays out of the table and calls only itself,
            // so that its cycles get threaded copies.
            const callee = f >= HALF ? HALF + rnd(FUNCS - HALF) : rnd(FUNCS);
            switch (rnd(4)) {
              case 0:
                return `(if (i32.gt_s (local.get $p) (i32.const 0)) (then (return_call $f${callee} (i32.sub (local.get $p) (i32.const 1)))))`;
              case 1:
                return f >= HALF
                  ? mix
                  : `(if (i32.gt_s (local.get $p) (i32.const 0)) (then (return_call_indirect (type $t) (i32.sub (local.get $p) (i32.const 1)) (i32.const ${
                    rnd(HALF)
                  }))))`;
              default:
                return `(if (i32.gt_s (local.get $p) (i32.const 0)) (then (call $f${callee} (i32.sub (local.get $p) (i32.const 1)))))`;
            }
          }
          return f + 1 < FUNCS
            ? `(call $f${f + 1 + rnd(FUNCS - f - 1)} (i32.const ${rnd(5)}))`
            : mix;
        case 4:
          return `(if (i32.and (global.get $acc) (i32.const 1)) (then (return)))`;
        case 5: {
          labels.push(`$b${depth}`);
          const body = block(depth + 1);
          labels.pop();
          return `(block $b${depth} ${body})`;
        }
        case 6: {
          const k = loops++;
          const c = `$c${k}`;
          labels.push(`$x${k}`);
          labels.push(`$l${k}`);
          const body = block(depth + 1);
          labels.pop();
          labels.pop();
          return `(local.set ${c} (i32.const ${1 + rnd(4)}))
            (block $x${k} (loop $l${k}
              (local.set ${c} (i32.sub (local.get ${c}) (i32.const 1)))
              (br_if $x${k} (i32.lt_s (local.get ${c}) (i32.const 0)))
              ${body}
              (br $l${k})))`;
        }
        case 7: {
          const n = 1 + rnd(3);
          const ls = Array.from({ length: n + 1 }, () => target()).join(" ");
          return `(br_table ${ls} (i32.and (global.get $acc) (i32.const 3)))`;
        }
        case 8:
          if (recursive) {
            return f >= HALF
              ? mix
              : `(if (i32.gt_s (local.get $p) (i32.const 0)) (then (call_indirect (type $t) (i32.sub (local.get $p) (i32.const 1)) (i32.const ${
                rnd(HALF)
              }))))`;
          }
          return f + 1 < FUNCS
            ? `(call_indirect (type $t) (i32.const ${rnd(3)}) (i32.const ${
              f + 1 + rnd(FUNCS - f - 1)
            }))`
            : mix;
        case 9:
          return `(memory.fill (i32.const 2048) (global.get $acc) (i32.and (global.get $acc) (i32.const 4095)))`;
        default: {
          labels.push(`$i${depth}`);
          const a = block(depth + 1);
          const b = block(depth + 1);
          labels.pop();
          return `(if $i${depth} (i32.and (global.get $acc) (i32.const 2)) (then ${a}) (else ${b}))`;
        }
      }
    };
    const block = (depth: number): string =>
      Array.from({ length: 1 + rnd(4) }, () => stmt(depth)).join("\n");
    const body = block(0);
    const locals = Array.from({ length: loops }, (_, k) => `(local $c${k} i32)`)
      .join(" ");
    funcs.push(`(func $f${f} (type $t) (param $p i32) ${locals}
      (block $fn ${body}))`);
  }
  return `(module
    (type $t (func (param i32)))
    (memory 1)
    (table ${FUNCS} funcref)
    (elem (i32.const 0) ${
    Array.from({ length: recursive ? HALF : FUNCS }, (_, i) => `$f${i}`).join(
      " ",
    )
  })
    (global $acc (mut i32) (i32.const 7))
    ${funcs.join("\n")}
    (func (export "run") (result i32) (local $i i32) (local $h i32)
      ;; burn the initial fuel, so refills happen inside the functions below
      (loop $burn
        (local.set $i (i32.add (local.get $i) (i32.const 1)))
        (br_if $burn (i32.lt_u (local.get $i) (i32.const ${FUEL + 1}))))
      (local.set $i (i32.const 0))
      (call $f0 (i32.const ${recursive ? 3 : 0}))
      (local.set $h (global.get $acc))
      (block $d (loop $l
        (br_if $d (i32.ge_u (local.get $i) (i32.const 8192)))
        (local.set $h (i32.add (i32.mul (local.get $h) (i32.const 33)) (i32.load (local.get $i))))
        (local.set $i (i32.add (local.get $i) (i32.const 4)))
        (br $l)))
      (local.get $h)))`;
}

for (const recursive of [false, true]) {
  const what = recursive ? " with call cycles" : "";
  Deno.test(`random structured programs${what}: instrumented and original agree (200 programs)`, () => {
    let interrupts = 0;
    for (let seed = 1; seed <= 200; seed++) {
      const bytes = wat(randomProgram(seed, recursive));
      const expected = outcome(() => instantiate(bytes).exports.run!());
      // Refill with tiny amounts: nearly every check runs out and refills, so
      // the refill paths (wrapped loops re-entered, reloads) all run. A
      // broken rewrite that loops forever ends at a budget.
      const budget = interrupts + 2_000_000;
      const actual = outcome(() =>
        instantiate(
          instrumentModule(bytes).bytes,
          {},
          () => {
            if (interrupts > budget) throw new StopGuest();
            return 1 + (interrupts++ % 3);
          },
        )
          .exports.run!()
      );
      assert.deepStrictEqual(actual, expected, `seed ${seed}`);
    }
    assert.ok(interrupts > 1000, `${interrupts}`);
  });
}
