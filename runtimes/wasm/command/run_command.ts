/**
 * {@link runWasiCommand}: runs a WASI preview1 command module (`_start`) in
 * its own Deno Worker, confined by Deno's permissions to its preopened
 * directories and by our WASI layer, and stoppable at a deadline.
 *
 * Needs Deno's `worker-options` unstable feature (`"unstable":
 * ["worker-options"]` in deno.json, as this project has, or
 * `--unstable-worker-options`): without it Deno ends the whole process when
 * the worker is created, which no code can catch.
 *
 * @module
 */

import { FUEL, instrumentModuleCached } from "../instrument/mod.ts";
import {
  CONTROL,
  type RunMessage,
  type WorkerReply,
} from "./command_protocol.ts";
import { ERRNO } from "../../wasi/constants.ts";
import { errnoFromError, symlinkTargetEscapes } from "../../wasi/fs.ts";
import { nodeLutimes } from "../../wasi/node_lutimes.ts";
import type { WasiDirPreopen } from "../../wasi/preview1.ts";

/** Options of {@link runWasiCommand}. */
export interface RunWasiCommandOptions {
  /** `argv`, including `argv[0]`. @default {["command"]} */
  args?: string[];
  /** Environment variables the guest sees (nothing else). @default {{}} */
  env?: Record<string, string>;
  /** Preopened directories (fd 3, 4, …). @default {[]} */
  preopens?: WasiDirPreopen[];
  /** Bytes the guest reads from fd 0. @default {empty} */
  stdin?: Uint8Array;
  /** Receives fd 1 output, in chunks (flushed at newlines or every 4 KiB). */
  stdout?: (bytes: Uint8Array) => void;
  /** Receives fd 2 output, in chunks. */
  stderr?: (bytes: Uint8Array) => void;
  /** Wall-clock limit in milliseconds. @default {30000} */
  deadline?: number;
  /** Most bytes forwarded per output stream; the rest is counted and dropped. @default {1048576} */
  outputLimit?: number;
  /** Memory limit in 64 KiB pages. @default {1024} (64 MiB) */
  memoryLimitPages?: number;
  /** Aborts the command like a deadline. */
  signal?: AbortSignal;
  /**
   * How long to wait after the deadline for the guest to stop itself before
   * the worker is terminated anyway. @default {2000}
   */
  graceMs?: number;
  /**
   * Most file descriptors the guest may hold at once (`EMFILE` beyond).
   * @default {1024}
   */
  maxFds?: number;
  /**
   * Errno for a path that would leave its preopen. wasmtime's current
   * cap-std answers `EPERM` (63), which some conformance tests expect.
   * @default {76} ENOTCAPABLE
   */
  escapeErrno?: number;
}

/** What {@link runWasiCommandWithStats} returns. */
export interface WasiCommandResult {
  /** Exit code: the `proc_exit` argument, 0 when `_start` returned. */
  exitCode: number;
  /** Bytes of stdout dropped beyond `outputLimit`. */
  stdoutDropped: number;
  /** Bytes of stderr dropped beyond `outputLimit`. */
  stderrDropped: number;
}

/**
 * The command did not finish before its deadline (or was aborted). `stopped`
 * tells whether the guest stopped itself (true) or the worker had to be
 * terminated while it may still be running.
 */
export class WasiTimeoutError extends Error {
  /** The deadline in milliseconds. */
  readonly timeoutMs: number;
  /** Whether the guest thread was seen to stop. */
  readonly stopped: boolean;
  /** Creates the error. */
  constructor(timeoutMs: number, stopped: boolean, reason = "deadline") {
    super(
      `Cannot finish WASI command: ${reason} of ${timeoutMs} ms reached${
        stopped ? "" : " and the guest did not stop itself"
      }`,
    );
    this.name = "WasiTimeoutError";
    this.timeoutMs = timeoutMs;
    this.stopped = stopped;
  }
}

/** The command trapped, failed to instantiate or was refused by the instrumenter. */
export class WasiCommandError extends Error {
  /** Creates the error with the guest-side message. */
  constructor(message: string, options?: ErrorOptions) {
    super(`Cannot run WASI command: ${message}`, options);
    this.name = "WasiCommandError";
  }
}

/**
 * Runs a WASI command and returns its exit code.
 *
 * @example
 * ```ts
 * import { runWasiCommand } from "./run_command.ts";
 * const bytes = await Deno.readFile("fixtures/wasi/hello_c.wasm");
 * const out: Uint8Array[] = [];
 * const code = await runWasiCommand(bytes, {
 *   args: ["hello", "a"],
 *   env: { GK_NAME: "x" },
 *   stdout: (b) => out.push(b),
 *   deadline: 5000,
 * });
 * ```
 */
export async function runWasiCommand(
  bytes: Uint8Array,
  options: RunWasiCommandOptions = {},
): Promise<number> {
  return (await runWasiCommandWithStats(bytes, options)).exitCode;
}

/** {@link runWasiCommand}, also reporting how much output was dropped. */
export async function runWasiCommandWithStats(
  bytes: Uint8Array,
  options: RunWasiCommandOptions = {},
): Promise<WasiCommandResult> {
  const deadline = options.deadline ?? 30_000;
  const grace = options.graceMs ?? 2000;
  const preopens = (options.preopens ?? []).map((p) => {
    let hostPath: string;
    try {
      hostPath = Deno.realPathSync(p.hostPath);
      if (!Deno.statSync(hostPath).isDirectory) {
        throw new Error("not a directory");
      }
    } catch (e) {
      throw new TypeError(
        `Cannot preopen "${p.hostPath}" as "${p.guestPath}": ${
          e instanceof Error ? e.message : String(e)
        }`,
        { cause: e },
      );
    }
    return { guestPath: p.guestPath, hostPath, readOnly: p.readOnly ?? false };
  });
  if (options.signal?.aborted) {
    throw new WasiTimeoutError(deadline, true, "abort before start");
  }
  let instrumented: Uint8Array;
  try {
    instrumented = (await instrumentModuleCached(bytes, {
      memoryLimitPages: options.memoryLimitPages ?? 1024,
    })).bytes;
  } catch (e) {
    throw new WasiCommandError(
      `module refused: ${e instanceof Error ? e.message : String(e)}`,
      { cause: e },
    );
  }
  const read = preopens.map((p) => p.hostPath);
  const write = preopens.filter((p) => !p.readOnly).map((p) => p.hostPath);
  const worker = new Worker(new URL("./command_worker.ts", import.meta.url), {
    type: "module",
    deno: {
      permissions: {
        read: read.length ? read : false,
        write: write.length ? write : false,
        net: false,
        env: false,
        run: false,
        ffi: false,
        sys: false,
        import: false,
      },
    },
  });
  const control = new SharedArrayBuffer(4 * CONTROL.CELLS);
  const flag = new Int32Array(control);
  return await new Promise<WasiCommandResult>((resolve, reject) => {
    let done = false;
    let graceTimer: ReturnType<typeof setTimeout> | undefined;
    let reason = "deadline";
    const end = (fn: () => void) => {
      if (done) return;
      done = true;
      clearTimeout(timer);
      clearTimeout(graceTimer);
      options.signal?.removeEventListener("abort", onAbort);
      worker.terminate();
      fn();
    };
    const interrupt = () => {
      Atomics.store(flag, CONTROL.INTERRUPT, 1);
      Atomics.notify(flag, CONTROL.INTERRUPT);
      graceTimer = setTimeout(
        () => end(() => reject(new WasiTimeoutError(deadline, false, reason))),
        grace,
      );
    };
    const onAbort = () => {
      reason = "abort";
      clearTimeout(timer);
      interrupt();
    };
    options.signal?.addEventListener("abort", onAbort, { once: true });
    const timer = setTimeout(interrupt, deadline);
    worker.onmessage = (e: MessageEvent<WorkerReply>) => {
      const m = e.data;
      try {
        if (m.type === "out") {
          (m.fd === 1 ? options.stdout : options.stderr)?.(m.bytes);
        } else if (m.type === "exit") {
          end(() =>
            resolve({
              exitCode: m.code,
              stdoutDropped: m.dropped[0],
              stderrDropped: m.dropped[1],
            })
          );
        } else if (m.type === "deadline") {
          end(() => reject(new WasiTimeoutError(deadline, true, reason)));
        } else if (m.type === "hostop") {
          const errno = m.op.op === "symlink"
            ? hostSymlink(preopens, m.op.target, m.op.linkPath)
            : hostLutimes(preopens, m.op.linkPath, m.op.atimeMs, m.op.mtimeMs);
          Atomics.store(flag, CONTROL.REPLY_ERRNO, errno);
          Atomics.store(flag, CONTROL.REPLY, 1);
          Atomics.notify(flag, CONTROL.REPLY);
        } else if (m.type === "error") {
          end(() => reject(new WasiCommandError(`${m.name}: ${m.message}`)));
        }
      } catch (err) {
        end(() => reject(err));
      }
    };
    worker.onerror = (e: ErrorEvent) => {
      e.preventDefault();
      end(() => reject(new WasiCommandError(e.message)));
    };
    worker.onmessageerror = () => {
      end(() => reject(new WasiCommandError("unreadable message from worker")));
    };
    const copy = new Uint8Array(instrumented.length);
    copy.set(instrumented);
    const msg: RunMessage = {
      type: "run",
      bytes: copy,
      args: options.args ?? ["command"],
      env: options.env ?? {},
      preopens,
      stdin: options.stdin ?? new Uint8Array(0),
      control,
      outputLimit: options.outputLimit ?? 1024 * 1024,
      fuel: FUEL,
      escapeErrno: options.escapeErrno,
      maxFds: options.maxFds ?? 1024,
    };
    worker.postMessage(msg, [copy.buffer]);
  });
}

/**
 * Returns the writable preopen root that directly or indirectly contains
 * `path`, provided `path`'s parent is a real (symlink-free) directory and its
 * last component is a plain name; otherwise a WASI errno.
 */
function checkedRoot(
  preopens: { hostPath: string; readOnly: boolean }[],
  path: string,
): { root: string; relParent: string } | number {
  const root = preopens.find((p) =>
    !p.readOnly && path.startsWith(p.hostPath + "/")
  )?.hostPath;
  if (root === undefined) return ERRNO.NOTCAPABLE;
  const slash = path.lastIndexOf("/");
  const parent = path.slice(0, slash);
  const name = path.slice(slash + 1);
  if (!name || name === "." || name === "..") return ERRNO.INVAL;
  try {
    if (Deno.realPathSync(parent) !== parent) return ERRNO.NOTCAPABLE;
  } catch (e) {
    return errnoFromError(e);
  }
  return {
    root,
    relParent: parent === root ? "" : parent.slice(root.length + 1),
  };
}

/** Sets the times of a symlink the worker asked for (after checking it). */
function hostLutimes(
  preopens: { hostPath: string; readOnly: boolean }[],
  linkPath: string,
  atimeMs: number,
  mtimeMs: number,
): number {
  const checked = checkedRoot(preopens, linkPath);
  if (typeof checked === "number") return checked;
  try {
    if (!Deno.lstatSync(linkPath).isSymlink) return ERRNO.INVAL;
    nodeLutimes(linkPath, atimeMs, mtimeMs);
    return 0;
  } catch (e) {
    return errnoFromError(e);
  }
}

/**
 * Creates a symlink the worker asked for, after checking again that the link
 * lies directly in a real (symlink-free) directory inside a writable preopen
 * and that its target stays inside that preopen. Returns a WASI errno.
 */
function hostSymlink(
  preopens: { hostPath: string; readOnly: boolean }[],
  target: string,
  linkPath: string,
): number {
  if (target.includes("\0")) return ERRNO.INVAL;
  const checked = checkedRoot(preopens, linkPath);
  if (typeof checked === "number") return checked;
  if (symlinkTargetEscapes(checked.relParent, target)) {
    return ERRNO.NOTCAPABLE;
  }
  try {
    Deno.symlinkSync(target, linkPath);
    return 0;
  } catch (e) {
    return errnoFromError(e);
  }
}
