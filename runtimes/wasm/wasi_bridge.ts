/**
 * Builds the WASI preview1 layer the worker gives a guest: our own
 * `WasiPreview1` from `runtimes/wasi/` (deny by default; files only through
 * the preopens, confined host-side by `DenoWasiFs`).
 *
 * @module
 */

import { WasiExitError, WasiPreview1 } from "../wasi/preview1.ts";

/** Options of {@linkcode createGuestWasi}. */
export interface GuestWasiOptions {
  /** Command-line arguments. */
  args: string[];
  /** Environment. */
  env: Record<string, string>;
  /** Preopened directories. */
  preopens: { guestPath: string; hostPath: string; readOnly?: boolean }[];
  /** Bytes written to fd 1. */
  stdout: (bytes: Uint8Array) => void;
  /** Bytes written to fd 2. */
  stderr: (bytes: Uint8Array) => void;
  /** Blocks for `ms` (poll_oneoff); may throw to interrupt the guest. */
  sleep?: (ms: number) => void;
}

/** A guest's WASI: import object, memory binding, exit detection. */
export interface GuestWasi {
  /** The `wasi_snapshot_preview1` import object. */
  imports: Record<string, unknown>;
  /** Attaches the instance. */
  bind(instance: WebAssembly.Instance): void;
  /** The exit code if `e` is a `proc_exit`, else `undefined`. */
  exitCode(e: unknown): number | undefined;
  /** Closes every host file the guest still holds open. */
  close(): void;
}

/** Builds the WASI layer for one instance of `_module`. */
export function createGuestWasi(
  _module: WebAssembly.Module,
  options: GuestWasiOptions,
): GuestWasi {
  const wasi = new WasiPreview1({
    args: options.args,
    env: options.env,
    preopens: options.preopens,
    stdout: options.stdout,
    stderr: options.stderr,
    ...(options.sleep ? { sleep: options.sleep } : {}),
  });
  return {
    imports: wasi.imports() as Record<string, unknown>,
    bind: (i) => {
      if (i.exports.memory instanceof WebAssembly.Memory) wasi.bind(i);
    },
    exitCode: (e) => (e instanceof WasiExitError ? e.code : undefined),
    close: () => wasi.closeAll(),
  };
}
