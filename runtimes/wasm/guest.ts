/**
 * The plugin instance's worker: owns one WebAssembly instance of the plugin,
 * runs every guest call, and talks to the main thread only through the
 * SharedArrayBuffer {@linkcode Channel}. Started by `instance_handle.ts` with
 * `deno: { permissions: "none" }` (or read/write on the preopens only).
 *
 * After the init message it never returns to its event loop: it blocks in
 * `Atomics.wait` between calls and while the main thread serves a host call.
 *
 * @module
 */

import {
  Channel,
  INTERRUPT,
  INTERRUPT_COUNT,
  LogBatch,
  MEM_PAGES,
  MSG_ABI_ERROR,
  MSG_ACK,
  MSG_EXIT,
  MSG_FATAL,
  MSG_GUEST_ERROR,
  MSG_HOST_CALL,
  MSG_INTERRUPTED,
  MSG_LOG,
  MSG_RESULT,
  MSG_TRAP,
  OP_CALL,
  OP_REGISTER,
  OP_REPLY_ERR,
  OP_REPLY_OK,
  OP_SHUTDOWN,
  W_SEQ,
} from "./channel.ts";
import {
  type GuestBridge,
  GuestInstance,
  GuestInterrupt,
  type HostCallAnswer,
  WasmAbiError,
} from "./abi.ts";
import { createGuestWasi, type GuestWasi } from "./wasi_bridge.ts";
// The Extism ABI's guest, built instead of GuestInstance
import { ExtismCallFailure, ExtismGuest } from "../extism/guest.ts";
import type { ExtismWorkerData } from "../extism/protocol.ts";

/** The init message the main thread posts. */
export interface WorkerInit {
  /** The compiled (instrumented) module. */
  module: WebAssembly.Module;
  /** The channel's shared buffer. */
  sab: SharedArrayBuffer;
  /** Largest result / payload in bytes. */
  maxResultBytes: number;
  /** Largest initial memory in pages. */
  memoryLimitPages: number;
  /** Spin (µs) before blocking. */
  spinMicros: number;
  /** Fuel refill returned by `gk.interrupt`. */
  fuel: number;
  /** Most log lines (gk.log + stdout/stderr) per call. */
  maxLogLinesPerCall: number;
  /** WASI arguments. */
  args: string[];
  /** WASI environment. */
  env: Record<string, string>;
  /** WASI preopens. */
  preopens: { guestPath: string; hostPath: string; readOnly?: boolean }[];
  /** The module's ABI. @default "goatkit" */
  abi?: "goatkit" | "extism";
  /** Settings of an Extism guest (with `abi: "extism"`). */
  extism?: ExtismWorkerData;
}

/** Longest log line forwarded; longer lines are cut. */
const MAX_LINE = 16 * 1024;
/** A log batch this large goes ahead of the call's final message. */
const LOG_BATCH_BYTES = 64 * 1024;
/** A log batch this old (ms) goes ahead of the call's final message. */
const LOG_BATCH_MS = 100;

const encoder = new TextEncoder();

function start(init: WorkerInit): void {
  const ch = new Channel(init.sab);
  const ctl = ch.ctl;
  let lastW = Atomics.load(ctl, W_SEQ);
  let logLines = 0;
  let droppedLines = 0;

  const send = (
    kind: number,
    p0: Uint8Array | null,
    p1: Uint8Array | null,
    aux: number,
  ) => {
    ch.write(kind, p0, p1, aux);
    ch.sendToMain();
  };
  const receive = () => {
    lastW = ch.waitFromMain(lastW, init.spinMicros);
    return ch.read();
  };
  const logs = new LogBatch();
  /** Sends the batched log lines now (one round trip), if any. */
  const flushLogs = () => {
    const batch = logs.take();
    if (batch === null) return;
    send(MSG_LOG, batch, null, 0);
    receive(); // ack
  };
  /** Sends a call's final message with the batched log lines in part 1. */
  const sendFinal = (kind: number, p0: Uint8Array | null, aux: number) => {
    if ((p0?.length ?? 0) + logs.byteLength > ch.maxMessageBytes) flushLogs();
    Atomics.store(ctl, MEM_PAGES, guest?.memoryPages ?? 0);
    send(kind, p0, logs.take(), aux);
  };
  const sendLog = (level: number, text: Uint8Array) => {
    if (logLines >= init.maxLogLinesPerCall) {
      droppedLines++;
      return;
    }
    logLines++;
    logs.add(level, text.length > MAX_LINE ? text.subarray(0, MAX_LINE) : text);
    // Lines of a long call still arrive while it runs.
    if (logs.byteLength >= LOG_BATCH_BYTES || logs.ageMs >= LOG_BATCH_MS) {
      flushLogs();
    }
  };

  // Line-buffered stdout (info) and stderr (warn).
  const streams = [1, 2].map((fd) => {
    let pending: Uint8Array[] = [];
    let size = 0;
    const level = fd === 1 ? 1 : 2;
    const flushLine = () => {
      const line = new Uint8Array(size);
      let o = 0;
      for (const p of pending) {
        line.set(p, o);
        o += p.length;
      }
      pending = [];
      size = 0;
      sendLog(level, line);
    };
    return {
      write(bytes: Uint8Array) {
        let from = 0;
        for (let i = 0; i < bytes.length; i++) {
          if (bytes[i] === 10) {
            pending.push(bytes.subarray(from, i));
            size += i - from;
            flushLine();
            from = i + 1;
          }
        }
        if (from < bytes.length) {
          pending.push(bytes.slice(from));
          size += bytes.length - from;
          if (size >= MAX_LINE) flushLine();
        }
      },
      flush() {
        if (size > 0) flushLine();
      },
    };
  });

  const bridge: GuestBridge = {
    hostCall(fn: Uint8Array, args: Uint8Array): HostCallAnswer {
      // Lines logged before a host call reach the host before it.
      flushLogs();
      send(MSG_HOST_CALL, fn, args, 0);
      const reply = receive();
      if (reply.kind === OP_REPLY_OK) return { ok: reply.part0 };
      if (reply.kind === OP_REPLY_ERR) return { error: reply.part0 };
      return { interrupted: true };
    },
    log(level: number, message: Uint8Array) {
      sendLog(level >= 0 && level <= 3 ? level : 1, message);
    },
    interrupt(): number {
      Atomics.add(ctl, INTERRUPT_COUNT, 1);
      if (Atomics.load(ctl, INTERRUPT) !== 0) throw new GuestInterrupt();
      return init.fuel;
    },
  };

  let wasi: GuestWasi | undefined;
  let guest: GuestInstance | ExtismGuest | undefined;
  const create = () => {
    guest = undefined;
    try {
      wasi?.close(); // the replaced instance's open files
    } catch {
      // nothing more to release
    }
    wasi = createGuestWasi(init.module, {
      args: init.args,
      env: init.env,
      preopens: init.preopens,
      stdout: (b) => streams[0]!.write(b),
      stderr: (b) => streams[1]!.write(b),
      sleep: (ms) => {
        // Sleeps wake early when the main thread sets the interrupt flag.
        if (Atomics.load(ctl, INTERRUPT) === 0) {
          Atomics.wait(ctl, INTERRUPT, 0, Math.max(0, ms));
        }
        if (Atomics.load(ctl, INTERRUPT) !== 0) throw new GuestInterrupt();
      },
    });
    const shared = {
      bridge,
      wasi: wasi.imports,
      onInstance: (i: WebAssembly.Instance) => wasi!.bind(i),
      maxResultBytes: init.maxResultBytes,
      memoryLimitPages: init.memoryLimitPages,
      exitCode: (e: unknown) => wasi!.exitCode(e),
    };
    guest = init.abi === "extism"
      ? ExtismGuest.create(init.module, { ...shared, data: init.extism! })
      : GuestInstance.create(init.module, shared);
  };
  const flushStreams = () => {
    try {
      for (const s of streams) s.flush();
      if (droppedLines > 0) {
        const n = droppedLines;
        droppedLines = 0;
        logLines = 0;
        sendLog(
          2,
          encoder.encode(`${n} further log lines of this call dropped`),
        );
      }
    } catch {
      // a flush that fails must not hide the call's outcome
    }
    logLines = 0;
    droppedLines = 0;
  };
  const message = (e: unknown) =>
    encoder.encode(e instanceof Error ? `${e.name}: ${e.message}` : String(e));
  /** Replaces the instance after a trap; reports MSG_FATAL when that fails. */
  const recreate = (): boolean => {
    Atomics.store(ctl, INTERRUPT, 0);
    try {
      create();
      return true;
    } catch (e) {
      sendFinal(MSG_FATAL, message(e), 0);
      return false;
    }
  };

  // First instance: report success with MSG_RESULT, failure with MSG_FATAL.
  try {
    create();
    flushStreams();
    sendFinal(MSG_RESULT, null, 1);
  } catch (e) {
    sendFinal(MSG_FATAL, message(e), 0);
    return;
  }

  // An Extism guest's request is read as views of the
  // channel (no copies): ExtismGuest.call copies the name and the input
  // into its own memory before the guest runs (and before a host call
  // overwrites the channel).
  const views = init.abi === "extism";
  for (;;) {
    const req = views
      ? (lastW = ch.waitFromMain(lastW, init.spinMicros), ch.read(true))
      : receive();
    switch (req.kind) {
      case OP_SHUTDOWN:
        try {
          wasi?.close();
        } catch {
          // shutting down anyway
        }
        send(MSG_ACK, null, null, 0);
        return;
      case OP_REGISTER:
      case OP_CALL: {
        logLines = 0;
        droppedLines = 0;
        try {
          if (!guest) {
            throw new WasmAbiError("Cannot call guest: it has no instance");
          }
          const out = req.kind === OP_REGISTER
            ? guest.register()
            : guest.call(req.part0, req.aux === 1 ? null : req.part1);
          flushStreams();
          sendFinal(MSG_RESULT, out, out === null ? 1 : 0);
        } catch (e) {
          flushStreams();
          const code = wasi?.exitCode(e);
          // An Extism call's error (instance kept unless a
          // host function failed), and proc_exit keeping the output.
          if (e instanceof ExtismCallFailure) {
            const report = encoder.encode(JSON.stringify({
              code: e.code,
              message: e.detail,
              hostError: e.hostError,
            }));
            if (!e.replace || recreate()) {
              sendFinal(MSG_GUEST_ERROR, report, e.replace ? 1 : 0);
            }
            continue;
          }
          if (code !== undefined && guest instanceof ExtismGuest) {
            const out = guest.pendingOutput();
            const tagged = new Uint8Array(1 + (out?.length ?? 0));
            tagged[0] = out ? 1 : 0;
            if (out) tagged.set(out, 1);
            if (recreate()) sendFinal(MSG_EXIT, tagged, code);
            continue;
          }
          if (e instanceof GuestInterrupt) {
            if (recreate()) sendFinal(MSG_INTERRUPTED, null, 0);
          } else if (e instanceof WasmAbiError) {
            sendFinal(MSG_ABI_ERROR, encoder.encode(e.message), 0);
          } else if (code !== undefined) {
            if (recreate()) sendFinal(MSG_EXIT, null, code);
          } else {
            const text =
              e instanceof RangeError && /call stack/i.test(e.message)
                ? `stack overflow (${e.message})`
                : e instanceof Error
                ? e.message
                : String(e);
            if (recreate()) sendFinal(MSG_TRAP, encoder.encode(text), 0);
          }
        }
        continue;
      }
      default:
        send(MSG_FATAL, encoder.encode(`unknown op ${req.kind}`), null, 0);
        return;
    }
  }
}

// deno-lint-ignore no-explicit-any
const scope = self as any;
scope.onmessage = (e: MessageEvent<WorkerInit>) => {
  scope.onmessage = null;
  start(e.data);
  scope.close();
};
