/**
 * Worker side of {@link runWasiCommand}: instantiates the (already
 * instrumented) command module with our WASI layer, runs `_start`, and posts
 * its output and exit code back. Not a public entry.
 *
 * @module
 */

import {
  CONTROL,
  type HostOp,
  type RunMessage,
  type WorkerReply,
} from "./command_protocol.ts";
import { ERRNO } from "../../wasi/constants.ts";
import { DenoWasiFs, WasiFsError } from "../../wasi/fs.ts";
import {
  WasiDeadlineError,
  WasiExitError,
  WasiPreview1,
} from "../../wasi/preview1.ts";

const FLUSH_AT = 4096;

class Stream {
  #buf: Uint8Array[] = [];
  #size = 0;
  #sent = 0;
  dropped = 0;
  constructor(readonly fd: 1 | 2, readonly limit: number) {}

  write(bytes: Uint8Array): void {
    let data = bytes;
    const room = this.limit - this.#sent - this.#size;
    if (room <= 0) {
      this.dropped += data.length;
      return;
    }
    if (data.length > room) {
      this.dropped += data.length - room;
      data = data.slice(0, room);
    }
    this.#buf.push(data);
    this.#size += data.length;
    if (this.#size >= FLUSH_AT || data.includes(10)) this.flush();
  }

  flush(): void {
    if (this.#size === 0) return;
    const out = new Uint8Array(this.#size);
    let off = 0;
    for (const b of this.#buf) {
      out.set(b, off);
      off += b.length;
    }
    this.#sent += this.#size;
    this.#buf = [];
    this.#size = 0;
    post({ type: "out", fd: this.fd, bytes: out }, [out.buffer]);
  }
}

function post(msg: WorkerReply, transfer: Transferable[] = []): void {
  (self as unknown as Worker).postMessage(msg, transfer);
}

function run(msg: RunMessage): void {
  const control = new Int32Array(msg.control);
  /** Asks the main thread to do `op`, blocking until it answers. */
  const hostOp = (op: HostOp) => {
    Atomics.store(control, CONTROL.REPLY, 0);
    post({ type: "hostop", op });
    Atomics.wait(control, CONTROL.REPLY, 0, 10_000);
    if (Atomics.load(control, CONTROL.REPLY) === 0) {
      throw new WasiFsError(ERRNO.BUSY, op.op, op.linkPath);
    }
    const errno = Atomics.load(control, CONTROL.REPLY_ERRNO);
    if (errno !== 0) throw new WasiFsError(errno, op.op, op.linkPath);
  };
  const out = new Stream(1, msg.outputLimit);
  const err = new Stream(2, msg.outputLimit);
  let wasi: WasiPreview1 | undefined;
  const finish = (reply: WorkerReply) => {
    // Release the guest's open files before the main thread hears the end.
    wasi?.closeAll();
    out.flush();
    err.flush();
    post(reply);
  };
  try {
    wasi = new WasiPreview1({
      args: msg.args,
      env: msg.env,
      preopens: msg.preopens,
      stdin: msg.stdin,
      maxFds: msg.maxFds,
      stdout: (b) => out.write(b),
      stderr: (b) => err.write(b),
      fs: msg.preopens.length
        ? new DenoWasiFs(msg.preopens, {
          escapeErrno: msg.escapeErrno,
          symlink: (target, linkPath) =>
            hostOp({ op: "symlink", target, linkPath }),
          lutimes: (linkPath, atimeMs, mtimeMs) =>
            hostOp({ op: "lutimes", linkPath, atimeMs, mtimeMs }),
        })
        : undefined,
      sleep: (ms) => {
        Atomics.wait(control, CONTROL.INTERRUPT, 0, ms);
        if (Atomics.load(control, CONTROL.INTERRUPT) !== 0) {
          throw new WasiDeadlineError();
        }
      },
    });
    const module = new WebAssembly.Module(msg.bytes as Uint8Array<ArrayBuffer>);
    const instance = new WebAssembly.Instance(module, {
      wasi_snapshot_preview1: wasi.imports(),
      gk: {
        interrupt: () => {
          if (Atomics.load(control, CONTROL.INTERRUPT) !== 0) {
            throw new WasiDeadlineError();
          }
          return msg.fuel;
        },
      },
    });
    const code = wasi.start(instance);
    finish({ type: "exit", code, dropped: [out.dropped, err.dropped] });
  } catch (e) {
    if (e instanceof WasiDeadlineError) {
      finish({ type: "deadline" });
    } else if (e instanceof WasiExitError) {
      finish({
        type: "exit",
        code: e.code,
        dropped: [out.dropped, err.dropped],
      });
    } else {
      const error = e instanceof Error ? e : new Error(String(e));
      finish({ type: "error", name: error.name, message: error.message });
    }
  }
}

(self as unknown as Worker).onmessage = (e: MessageEvent<RunMessage>) => {
  if (e.data?.type === "run") run(e.data);
};
