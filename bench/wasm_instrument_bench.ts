/**
 * Benchmarks of the WASM instrumenter (`runtimes/wasm/instrument/`):
 *
 * - the run-time overhead of the inserted fuel checks on CPU-bound guests
 *   (original module = baseline, instrumented module with a trivial
 *   `gk.interrupt` that just refuels, both in the same run), target ≤ 15 %:
 *   tight loops, a sieve, floating point, recursion (direct and through a
 *   table) and a real compiler's output (hello-rust: a xorshift loop and a
 *   recursive fib);
 * - the time to instrument a ~100 KB module.
 *
 * The guests are written in WAT and compiled with `npm:wabt` at start.
 *
 * Run: `deno bench -A bench/wasm_instrument_bench.ts`
 *
 * @module
 */
import { FUEL, instrumentModule } from "../runtimes/wasm/instrument/mod.ts";

const wabt = await (await import("wabt")).default();

function wat(source: string): Uint8Array<ArrayBuffer> {
  const module = wabt.parseWat("bench.wat", source, {});
  try {
    module.validate();
    return new Uint8Array(module.toBinary({}).buffer);
  } finally {
    module.destroy();
  }
}

const GUEST = wat(`
(module
  (memory 4)
  ;; sum of i*i mod 7 for i < n: a tight loop, the worst case for loop checks
  (func (export "loop_sum") (param $n i32) (result i64)
    (local $i i32) (local $acc i64)
    (block $done
      (loop $l
        (br_if $done (i32.ge_u (local.get $i) (local.get $n)))
        (local.set $acc (i64.add (local.get $acc)
          (i64.extend_i32_u (i32.rem_u (i32.mul (local.get $i) (local.get $i)) (i32.const 7)))))
        (local.set $i (i32.add (local.get $i) (i32.const 1)))
        (br $l)))
    (local.get $acc))
  ;; sieve of Eratosthenes over n bytes of memory, returns the prime count
  (func (export "sieve") (param $n i32) (result i32)
    (local $i i32) (local $j i32) (local $count i32)
    (memory.fill (i32.const 0) (i32.const 1) (local.get $n))
    (local.set $i (i32.const 2))
    (block $done
      (loop $outer
        (br_if $done (i32.gt_u (i32.mul (local.get $i) (local.get $i)) (local.get $n)))
        (if (i32.load8_u (local.get $i))
          (then
            (local.set $j (i32.mul (local.get $i) (local.get $i)))
            (block $jd
              (loop $inner
                (br_if $jd (i32.ge_u (local.get $j) (local.get $n)))
                (i32.store8 (local.get $j) (i32.const 0))
                (local.set $j (i32.add (local.get $j) (local.get $i)))
                (br $inner)))))
        (local.set $i (i32.add (local.get $i) (i32.const 1)))
        (br $outer)))
    (local.set $i (i32.const 2))
    (block $cd
      (loop $count_loop
        (br_if $cd (i32.ge_u (local.get $i) (local.get $n)))
        (local.set $count (i32.add (local.get $count) (i32.load8_u (local.get $i))))
        (local.set $i (i32.add (local.get $i) (i32.const 1)))
        (br $count_loop)))
    (local.get $count))
  ;; naive recursive fib: the worst case for checks on call cycles
  (func $fib (export "fib") (param $n i32) (result i32)
    (if (result i32) (i32.lt_u (local.get $n) (i32.const 2))
      (then (local.get $n))
      (else (i32.add (call $fib (i32.sub (local.get $n) (i32.const 1)))
                     (call $fib (i32.sub (local.get $n) (i32.const 2)))))))
  ;; floating-point loop: a numerical integration of 4/(1+x^2) (= pi)
  (func (export "pi") (param $n i32) (result f64)
    (local $i i32) (local $x f64) (local $sum f64) (local $h f64)
    (local.set $h (f64.div (f64.const 1) (f64.convert_i32_u (local.get $n))))
    (block $done
      (loop $l
        (br_if $done (i32.ge_u (local.get $i) (local.get $n)))
        (local.set $x (f64.mul (f64.add (f64.convert_i32_u (local.get $i)) (f64.const 0.5)) (local.get $h)))
        (local.set $sum (f64.add (local.get $sum)
          (f64.div (f64.const 4) (f64.add (f64.const 1) (f64.mul (local.get $x) (local.get $x))))))
        (local.set $i (i32.add (local.get $i) (i32.const 1)))
        (br $l)))
    (f64.mul (local.get $sum) (local.get $h)))
)`);

// The naive fib through a table (call_indirect): the conservative case,
// where the fuel cannot travel in a register. A module of its own, so that
// the module above keeps its shape (V8's inlining budget depends on the
// share of small functions in a module).
const INDIRECT = wat(`
(module
  (type $fib_t (func (param i32) (result i32)))
  (table 1 funcref)
  (elem (i32.const 0) $fib_ind)
  (func $fib_ind (export "fib_ind") (param $n i32) (result i32)
    (if (result i32) (i32.lt_u (local.get $n) (i32.const 2))
      (then (local.get $n))
      (else (i32.add
        (call_indirect (type $fib_t) (i32.sub (local.get $n) (i32.const 1)) (i32.const 0))
        (call_indirect (type $fib_t) (i32.sub (local.get $n) (i32.const 2)) (i32.const 0)))))))`);

type Guest = {
  loop_sum(n: number): bigint;
  sieve(n: number): number;
  fib(n: number): number;
  fib_ind(n: number): number;
  pi(n: number): number;
};

let interrupts = 0;
const refuel = {
  gk: {
    interrupt: () => {
      interrupts++;
      return FUEL;
    },
  },
};
const exportsOf = (bytes: Uint8Array<ArrayBuffer>, imports = {}) =>
  new WebAssembly.Instance(new WebAssembly.Module(bytes), imports).exports;
const original = {
  ...exportsOf(GUEST),
  ...exportsOf(INDIRECT),
} as unknown as Guest;
const instrumented = {
  ...exportsOf(instrumentModule(GUEST).bytes, refuel),
  ...exportsOf(instrumentModule(INDIRECT).bytes, refuel),
} as unknown as Guest;

// Same answers, and the interrupt is reached.
for (
  const [name, arg] of [
    ["loop_sum", 100_000],
    ["sieve", 200_000],
    ["fib", 20],
    ["fib_ind", 20],
    ["pi", 100_000],
  ] as const
) {
  const a = (original[name] as (n: number) => unknown)(arg);
  const b = (instrumented[name] as (n: number) => unknown)(arg);
  if (a !== b) throw new Error(`${name}: ${a} !== ${b}`);
}
if (interrupts === 0) throw new Error("gk.interrupt was never called");

const cases: [string, (g: Guest) => unknown][] = [
  ["loop_sum(1e6)", (g) => g.loop_sum(1_000_000)],
  ["sieve(200000)", (g) => g.sieve(200_000)],
  ["fib(25)", (g) => g.fib(25)],
  ["fib_ind(25)", (g) => g.fib_ind(25)],
  ["pi(1e6)", (g) => g.pi(1_000_000)],
];
for (const [label, run] of cases) {
  Deno.bench({
    group: label,
    name: `original ${label}`,
    baseline: true,
    fn: () => {
      run(original);
    },
  });
  Deno.bench({
    group: label,
    name: `instrumented ${label}`,
    fn: () => {
      run(instrumented);
    },
  });
}

// A real compiler's guest, when the fixture is there: hello-rust (rustc -O,
// wasm32-wasi) through its gk_call ABI, with do-nothing host imports.
const RUST = await readOptional("../fixtures/plugins/hello-rust/plugin.wasm");
if (RUST) {
  const original = loadPlugin(RUST);
  const instrumented = loadPlugin(instrumentModule(RUST).bytes);
  for (const [fn, args] of [["prng", `{"n":2000000}`], ["fib", `{"n":25}`]]) {
    if (instrumented(fn!, args!) !== original(fn!, args!)) {
      throw new Error(`hello-rust ${fn}: answers differ`);
    }
    const label = `hello-rust ${fn}${args}`;
    Deno.bench({
      group: label,
      name: `original ${label}`,
      baseline: true,
      fn: () => {
        original(fn!, args!);
      },
    });
    Deno.bench({
      group: label,
      name: `instrumented ${label}`,
      fn: () => {
        instrumented(fn!, args!);
      },
    });
  }
}

async function readOptional(
  path: string,
): Promise<Uint8Array<ArrayBuffer> | undefined> {
  try {
    return new Uint8Array(await Deno.readFile(new URL(path, import.meta.url)));
  } catch (e) {
    if (e instanceof Deno.errors.NotFound) return undefined;
    throw e;
  }
}

/** Instantiates a GoatKit plugin with inert imports; returns a caller. */
function loadPlugin(
  bytes: Uint8Array<ArrayBuffer>,
): (fn: string, args: string) => string {
  const box: { memory?: WebAssembly.Memory } = {};
  const zeroSizes = (a: number, b: number) => {
    new DataView(box.memory!.buffer).setUint32(a, 0, true);
    new DataView(box.memory!.buffer).setUint32(b, 0, true);
    return 0;
  };
  const instance = new WebAssembly.Instance(new WebAssembly.Module(bytes), {
    gk: { log: () => {}, host_call: () => 0n, interrupt: () => FUEL },
    wasi_snapshot_preview1: {
      fd_write: () => 0,
      environ_get: () => 0,
      environ_sizes_get: zeroSizes,
      proc_exit: () => {},
    },
  });
  const e = instance.exports as unknown as {
    memory: WebAssembly.Memory;
    gk_malloc(size: number): number;
    gk_call(fp: number, fl: number, ap: number, al: number): bigint;
  };
  box.memory = e.memory;
  const put = (text: string) => {
    const data = new TextEncoder().encode(text);
    const ptr = e.gk_malloc(data.length);
    new Uint8Array(box.memory!.buffer).set(data, ptr);
    return [ptr, data.length] as const;
  };
  return (fn, args) => {
    const [fp, fl] = put(fn);
    const [ap, al] = put(args);
    const packed = e.gk_call(fp, fl, ap, al);
    return new TextDecoder().decode(
      new Uint8Array(
        box.memory!.buffer,
        Number(packed >> 32n),
        Number(packed & 0xffffffffn),
      ),
    );
  };
}

// A ~100 KB module: many functions with loops, calls, memory and SIMD-free
// arithmetic, so the rewriter touches every kind of edit.
function bigModuleSource(functions: number): string {
  const parts = ["(module (memory 1) (table 16 funcref)"];
  for (let i = 0; i < functions; i++) {
    const callee = i === 0 ? "" : `(drop (call $f${i - 1} (i32.const 1)))`;
    parts.push(
      `(func $f${i} (param $n i32) (result i32) (local $i i32) (local $a i32)
      ${callee}
      (block $d (loop $l
        (br_if $d (i32.ge_u (local.get $i) (local.get $n)))
        (local.set $a (i32.add (local.get $a) (i32.load (i32.and (local.get $i) (i32.const 1020)))))
        (i32.store (i32.const 8) (i32.xor (local.get $a) (i32.const ${i})))
        (local.set $i (i32.add (local.get $i) (i32.const 1)))
        (br $l)))
      (local.get $a))`,
    );
  }
  parts.push(`(elem (i32.const 0) $f0 $f1 $f2)`);
  parts.push(`(export "last" (func $f${functions - 1})))`);
  return parts.join("\n");
}
const BIG = wat(bigModuleSource(1700));
Deno.bench({
  group: "instrument",
  name: `instrumentModule ${Math.round(BIG.length / 1024)} KB module`,
  baseline: true,
  fn: () => {
    instrumentModule(BIG);
  },
});
Deno.bench({
  group: "instrument",
  name: `WebAssembly.validate ${
    Math.round(BIG.length / 1024)
  } KB module (reference)`,
  fn: () => {
    WebAssembly.validate(BIG);
  },
});
const LARGEST = await readOptional("../fixtures/wasi/hello_rust.wasm");
if (LARGEST) {
  Deno.bench({
    group: "instrument",
    name: `instrumentModule ${
      Math.round(LARGEST.length / 1024)
    } KB fixture (hello_rust.wasm)`,
    fn: () => {
      instrumentModule(LARGEST);
    },
  });
}
