/**
 * Messages between {@link runWasiCommand}'s main thread and its worker
 * (`command_worker.ts`). Not a public entry.
 *
 * @module
 */

import type { WasiDirPreopen } from "../../wasi/preview1.ts";

/** The message that starts the command. */
export interface RunMessage {
  type: "run";
  bytes: Uint8Array;
  args: string[];
  env: Record<string, string>;
  preopens: WasiDirPreopen[];
  stdin: Uint8Array;
  control: SharedArrayBuffer;
  outputLimit: number;
  fuel: number;
  escapeErrno?: number;
  maxFds: number;
}

/** Messages the worker posts. */
export type WorkerReply =
  | { type: "out"; fd: 1 | 2; bytes: Uint8Array }
  | { type: "exit"; code: number; dropped: [number, number] }
  | { type: "deadline" }
  | { type: "error"; name: string; message: string }
  | { type: "hostop"; op: HostOp };

/**
 * A file-system operation the confined worker cannot do itself and asks the
 * main thread for (which checks it again): creating a symlink needs unscoped
 * Deno permissions, and setting a symlink's own times needs `node:fs`.
 */
export type HostOp =
  | { op: "symlink"; target: string; linkPath: string }
  | { op: "lutimes"; linkPath: string; atimeMs: number; mtimeMs: number };

/**
 * Layout of the control SharedArrayBuffer (Int32 cells): the main thread sets
 * `INTERRUPT` at the deadline; `REPLY`/`REPLY_ERRNO` carry the answer to a
 * synchronous {@link HostOp} request the worker posted.
 */
export const CONTROL = { INTERRUPT: 0, REPLY: 1, REPLY_ERRNO: 2, CELLS: 4 };
