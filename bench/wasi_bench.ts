// Benchmarks of the WASI layer: running a small C command (hello_c.wasm, no
// preopen) in a fresh confined worker with runWasiCommand, against the same
// command run in-thread with WasiPreview1 (baseline, no worker, no
// instrumentation).
import { WasiPreview1 } from "../runtimes/wasi/mod.ts";
import { runWasiCommand } from "../runtimes/wasm/mod.ts";

const bytes = Deno.readFileSync(
  new URL("../fixtures/wasi/hello_c.wasm", import.meta.url),
);
const module = new WebAssembly.Module(bytes);
const stdin = new TextEncoder().encode("bench");

Deno.bench({
  group: "wasi command",
  name: "in-thread WasiPreview1 (compiled module, instantiate + _start)",
  baseline: true,
  fn: () => {
    const wasi = new WasiPreview1({ args: ["hello"], stdin, stdout: () => {} });
    const instance = new WebAssembly.Instance(module, {
      wasi_snapshot_preview1: wasi.imports(),
    });
    wasi.start(instance);
  },
});

Deno.bench({
  group: "wasi command",
  name:
    "runWasiCommand (worker spawn + instrument cache hit + compile + _start)",
  fn: async () => {
    await runWasiCommand(bytes, {
      args: ["hello"],
      stdin,
      stdout: () => {},
      deadline: 10_000,
    });
  },
});
