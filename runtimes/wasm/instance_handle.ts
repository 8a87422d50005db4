/**
 * The main thread's handle on one plugin instance: spawns its worker, sends
 * it requests over the SharedArrayBuffer channel, serves the guest's host
 * calls and log lines asynchronously while it waits, and enforces the call
 * deadline (interrupt flag, then `terminate()` after the grace period).
 *
 * The main thread never runs guest code: the worker does.
 *
 * @module
 */

import {
  Channel,
  INTERRUPT,
  INTERRUPT_COUNT,
  M_SEQ,
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
  OP_ACK,
  OP_REPLY_ERR,
  OP_REPLY_INTERRUPTED,
  OP_REPLY_OK,
  OP_SHUTDOWN,
  readLogBatch,
} from "./channel.ts";
import { errorJson, type HostCallResult } from "./host_calls.ts";
import type { WorkerInit } from "./guest.ts";
import type { ExtismWorkerData } from "../extism/protocol.ts";
import { CallDeadlines } from "../../host/model/call_deadlines.ts";

/** A WASI preopen: a host directory visible to the guest at `guestPath`. */
export interface WasmPreopen {
  /** Path the guest sees, such as `/data`. */
  guestPath: string;
  /** The host directory. */
  hostPath: string;
  /** Refuse writes. @default false */
  readOnly?: boolean;
}

/** Settings of one instance's worker. */
export interface InstanceSettings {
  /** The compiled module. */
  module: WebAssembly.Module;
  /** Largest result / payload in bytes. */
  maxResultBytes: number;
  /** Largest initial memory in pages. */
  memoryLimitPages: number;
  /** Main-thread spin (µs) before `Atomics.waitAsync`. */
  spinMicros: number;
  /** Worker spin (µs) before `Atomics.wait`. */
  workerSpinMicros: number;
  /** Fuel refill for `gk.interrupt`. */
  fuel: number;
  /** Most log lines per call. */
  maxLogLinesPerCall: number;
  /** WASI args. */
  args: string[];
  /** WASI env. */
  env: Record<string, string>;
  /** WASI preopens. */
  preopens: WasmPreopen[];
  /** Time after the deadline before the worker is terminated. */
  graceMs: number;
  /** The module's ABI. @default "goatkit" */
  abi?: "goatkit" | "extism";
  /** Settings of an Extism guest. */
  extism?: ExtismWorkerData;
}

/** What the main thread does for the guest while a request runs. */
export interface RequestHooks {
  /** Absolute deadline (epoch ms). */
  deadline: number;
  /** Aborts like a deadline. */
  signal?: AbortSignal;
  /** Serves a `gk.host_call`. */
  hostCall?(fn: string, args: Uint8Array): Promise<HostCallResult>;
  /** Receives a log line (level 0–3). */
  log?(level: number, text: string): void;
}

/** How a request ended. */
export type Outcome =
  | { kind: "result"; bytes: Uint8Array | null }
  | { kind: "abi"; message: string }
  | { kind: "trap"; message: string }
  | {
    kind: "exit";
    code: number;
    /** An Extism guest's output when it exited, if set. */
    output?: Uint8Array | null;
  }
  | {
    kind: "guest-error";
    /** The export's return code (-1: a host function failed). */
    code: number;
    /** The guest's `error_set` message or the host function's error. */
    message: string | null;
    /** The failed host call's error JSON, if any. */
    hostError: string | null;
    /** Whether the instance was replaced. */
    replaced: boolean;
  }
  | {
    kind: "interrupted";
    /**
     * Whether the deadline (or abort) came while the host was still serving
     * one of the guest's host calls: then the time was the host's, not the
     * guest's.
     */
    inHostCall: boolean;
  }
  | { kind: "killed" }
  | { kind: "fatal"; message: string };

const decoder = new TextDecoder();

/** Deadlines and grace periods of every call in flight, on one timer. */
const callWakeups = new CallDeadlines();

/**
 * Deno permissions of an instance's worker: none at all, or, only when the
 * plugin has preopens, read on every preopen and write on the writable ones.
 */
export function workerPermissions(
  preopens: readonly WasmPreopen[],
): "none" | Record<string, unknown> {
  if (preopens.length === 0) return "none";
  const writable = preopens.filter((p) => !p.readOnly).map((p) => p.hostPath);
  return {
    read: preopens.map((p) => p.hostPath),
    write: writable.length > 0 ? writable : false,
    net: false,
    env: false,
    run: false,
    ffi: false,
    sys: false,
    import: false,
  };
}

/**
 * Hands each line of an encoded log batch to `hooks.log`; a line the host
 * fails to record does not fail the call.
 */
function deliverLogs(hooks: RequestHooks, batch: Uint8Array): void {
  if (batch.length === 0 || !hooks.log) return;
  for (const { level, text } of readLogBatch(batch)) {
    try {
      hooks.log(level, decoder.decode(text));
    } catch {
      // the host's log is not the guest's outcome
    }
  }
}

/** One worker running one instance. */
export class InstanceHandle {
  #settings: Omit<InstanceSettings, "module">;
  readonly #ch: Channel;
  readonly #worker: Worker;
  #mSeen = 0;
  #dead = false;
  #deathReason = "";
  /** Whether a request is in progress. */
  busy = false;
  /**
   * Time (ms) the main thread spent serving the last request's host calls
   * and log lines, while the guest waited: not guest time.
   */
  hostMs = 0;
  #current: Promise<Outcome> | null = null;

  private constructor(settings: Omit<InstanceSettings, "module">) {
    this.#settings = settings;
    this.#ch = Channel.create(settings.maxResultBytes + 4096);
    this.#worker = new Worker(new URL("./guest.ts", import.meta.url), {
      type: "module",
      name: "goatkit-wasm",
      deno: { permissions: workerPermissions(settings.preopens) },
    } as WorkerOptions);
    this.#worker.onerror = (e) => {
      e.preventDefault();
      this.#markDead(`worker error: ${e.message}`);
    };
    this.#worker.onmessageerror = () => this.#markDead("worker message error");
  }

  #markDead(reason: string): void {
    if (this.#dead) return;
    this.#dead = true;
    this.#deathReason = reason;
    this.#ch.wakeMain();
  }

  /** Whether the worker is gone (terminated or broken). */
  get dead(): boolean {
    return this.#dead;
  }

  /** The guest's memory after its last call, in 64 KiB pages. */
  get memoryPages(): number {
    return Atomics.load(this.#ch.ctl, MEM_PAGES);
  }

  /** How often the guest's `gk.interrupt` ran (diagnostics). */
  get interruptCount(): number {
    return Atomics.load(this.#ch.ctl, INTERRUPT_COUNT);
  }

  /**
   * Spawns the worker and instantiates the module in it (running
   * `_initialize`/`_start`). Resolves to the handle, or to the failure.
   */
  static start(
    settings: InstanceSettings,
    hooks: RequestHooks,
  ): Promise<{ host: InstanceHandle; outcome: Outcome }> {
    return InstanceHandle.spawn(settings).boot(settings.module, hooks);
  }

  /**
   * Spawns the worker only (its bootstrap takes most of a cold load), so it
   * can start while the module is still being instrumented and compiled;
   * {@linkcode InstanceHandle.boot} then instantiates `module` in it.
   */
  static spawn(settings: Omit<InstanceSettings, "module">): InstanceHandle {
    return new InstanceHandle(settings);
  }

  /**
   * Whether a worker spawned with `settings` could serve `other` (same
   * channel size, and no preopens on either side: a worker's permissions
   * are fixed at spawn).
   */
  static compatible(
    settings: Omit<InstanceSettings, "module">,
    other: Omit<InstanceSettings, "module">,
  ): boolean {
    return settings.maxResultBytes === other.maxResultBytes &&
      settings.preopens.length === 0 && other.preopens.length === 0;
  }

  /**
   * Takes on `settings` before {@linkcode boot} (a spare worker spawned for
   * another plugin); they must be {@linkcode InstanceHandle.compatible}.
   */
  adopt(settings: Omit<InstanceSettings, "module">): this {
    if (!InstanceHandle.compatible(this.#settings, settings)) {
      throw new RangeError(
        "Cannot adopt settings: the worker was spawned for another channel size or permissions",
      );
    }
    this.#settings = settings;
    return this;
  }

  /** Instantiates `module` in the spawned worker (see {@linkcode spawn}). */
  async boot(
    module: WebAssembly.Module,
    hooks: RequestHooks,
  ): Promise<{ host: InstanceHandle; outcome: Outcome }> {
    const host = this as InstanceHandle;
    const settings = this.#settings;
    const init: WorkerInit = {
      module,
      sab: host.#ch.buffer,
      maxResultBytes: settings.maxResultBytes,
      memoryLimitPages: settings.memoryLimitPages,
      spinMicros: settings.workerSpinMicros,
      fuel: settings.fuel,
      maxLogLinesPerCall: settings.maxLogLinesPerCall,
      args: settings.args,
      env: settings.env,
      preopens: settings.preopens,
      ...(settings.abi ? { abi: settings.abi } : {}),
      ...(settings.extism ? { extism: settings.extism } : {}),
    };
    host.busy = true;
    host.#worker.postMessage(init);
    const outcome = await host.#await(hooks);
    host.busy = false;
    return { host, outcome };
  }

  /**
   * Sends a request (`OP_*`) and serves the worker until it answers, the
   * deadline passes (interrupt, then terminate after the grace period) or
   * the worker dies.
   */
  async request(
    kind: number,
    part0: Uint8Array | null,
    part1: Uint8Array | null,
    aux: number,
    hooks: RequestHooks,
  ): Promise<Outcome> {
    if (this.#dead) return { kind: "fatal", message: this.#deathReason };
    this.busy = true;
    this.hostMs = 0;
    try {
      Atomics.store(this.#ch.ctl, INTERRUPT, 0);
      this.#ch.write(kind, part0, part1, aux);
      this.#ch.sendToWorker();
      const current = this.#await(hooks);
      this.#current = current;
      return await current;
    } finally {
      this.#current = null;
      this.busy = false;
    }
  }

  /** Sets the interrupt flag: the guest stops at its next fuel check. */
  interrupt(): void {
    Atomics.store(this.#ch.ctl, INTERRUPT, 1);
    Atomics.notify(this.#ch.ctl, INTERRUPT);
    this.#ch.wakeMain();
  }

  #reply(kind: number, bytes: Uint8Array | null): void {
    this.#ch.write(kind, bytes, null, 0);
    this.#ch.sendToWorker();
  }

  async #await(hooks: RequestHooks): Promise<Outcome> {
    const ch = this.#ch;
    const { signal } = hooks;
    let interrupting = false;
    let inHostCall = false;
    // The grace period runs from when the interrupt flag was set, not from
    // the deadline: a main thread that was late (busy with other work) must
    // not take its own delay out of the guest's grace.
    let graceEnd = Infinity;
    // The wait below arms no timer: one shared timer wakes it at the
    // deadline, then at the end of the grace period.
    const wake = () => ch.wakeMain();
    let watch = callWakeups.add(hooks.deadline, wake);
    const startInterrupt = (now: number) => {
      interrupting = true;
      graceEnd = now + this.#settings.graceMs;
      callWakeups.delete(watch);
      watch = callWakeups.add(graceEnd, wake);
      Atomics.store(ch.ctl, INTERRUPT, 1);
      Atomics.notify(ch.ctl, INTERRUPT);
    };
    const onAbort = () => this.interrupt();
    signal?.addEventListener("abort", onAbort);
    try {
      for (;;) {
        if (this.#dead) {
          return { kind: "fatal", message: this.#deathReason };
        }
        const now = Date.now();
        if (!interrupting && (now >= hooks.deadline || signal?.aborted)) {
          startInterrupt(now);
        }
        // An answer already waiting is read before the grace period is
        // judged: a late main thread must not kill a guest that stopped.
        const pending = Atomics.load(ch.ctl, M_SEQ) !== this.#mSeen;
        if (interrupting && now >= graceEnd && !pending) {
          this.terminate(
            "no answer within the grace period after the interrupt",
          );
          return { kind: "killed" };
        }
        const got = pending || await ch.waitFromWorker(
          this.#mSeen,
          this.#settings.spinMicros,
        );
        if (!got) continue;
        this.#mSeen = Atomics.load(ch.ctl, M_SEQ);
        const msg = ch.read();
        switch (msg.kind) {
          case MSG_LOG:
            try {
              deliverLogs(hooks, msg.part0);
            } finally {
              this.#reply(OP_ACK, null);
            }
            continue;
          case MSG_HOST_CALL: {
            if (interrupting || !hooks.hostCall) {
              if (interrupting) this.#reply(OP_REPLY_INTERRUPTED, null);
              else {
                this.#reply(
                  OP_REPLY_ERR,
                  new TextEncoder().encode(
                    '{"error":{"message":"host_call before init","type":"PluginError"}}',
                  ),
                );
              }
              continue;
            }
            const fn = decoder.decode(msg.part0);
            const served = performance.now();
            const answer = await this.#serveUntilDeadline(
              hooks,
              fn,
              msg.part1,
            );
            this.hostMs += performance.now() - served;
            if (answer === "deadline") {
              inHostCall = true;
              startInterrupt(Date.now());
              this.#reply(OP_REPLY_INTERRUPTED, null);
            } else if ("ok" in answer) {
              if (answer.ok.length > this.#settings.maxResultBytes) {
                this.#reply(
                  OP_REPLY_ERR,
                  new TextEncoder().encode(
                    JSON.stringify({
                      error: {
                        message:
                          `host_call ${fn}: result of ${answer.ok.length} bytes exceeds the limit of ${this.#settings.maxResultBytes}`,
                        type: "PluginError",
                      },
                    }),
                  ),
                );
              } else this.#reply(OP_REPLY_OK, answer.ok);
            } else {
              this.#reply(
                OP_REPLY_ERR,
                answer.error.length <= 65536
                  ? answer.error
                  : new TextEncoder().encode(
                    '{"error":{"message":"host_call failed (error text too long)","type":"PluginError"}}',
                  ),
              );
            }
            continue;
          }
        }
        // A final message: the call's remaining log lines come with it.
        deliverLogs(hooks, msg.part1);
        switch (msg.kind) {
          case MSG_RESULT:
            return { kind: "result", bytes: msg.aux === 1 ? null : msg.part0 };
          case MSG_ABI_ERROR:
            return { kind: "abi", message: decoder.decode(msg.part0) };
          case MSG_TRAP:
            return { kind: "trap", message: decoder.decode(msg.part0) };
          case MSG_EXIT:
            // Part 0 = flag byte (1 = output) + output
            if (msg.part0.length > 0) {
              return {
                kind: "exit",
                code: msg.aux,
                output: msg.part0[0] === 1 ? msg.part0.subarray(1) : null,
              };
            }
            return { kind: "exit", code: msg.aux };
          case MSG_GUEST_ERROR: {
            const r = JSON.parse(decoder.decode(msg.part0));
            return {
              kind: "guest-error",
              code: r.code,
              message: r.message ?? null,
              hostError: r.hostError ?? null,
              replaced: msg.aux === 1,
            };
          }
          case MSG_INTERRUPTED:
            return { kind: "interrupted", inHostCall };
          case MSG_ACK:
            return { kind: "result", bytes: null };
          case MSG_FATAL: {
            const message = decoder.decode(msg.part0);
            this.terminate(message);
            return { kind: "fatal", message };
          }
          default:
            this.terminate(`unexpected message kind ${msg.kind}`);
            return {
              kind: "fatal",
              message: `unexpected message kind ${msg.kind}`,
            };
        }
      }
    } finally {
      callWakeups.delete(watch);
      signal?.removeEventListener("abort", onAbort);
    }
  }

  async #serveUntilDeadline(
    hooks: RequestHooks,
    fn: string,
    args: Uint8Array,
  ): Promise<HostCallResult | "deadline"> {
    let timer: ReturnType<typeof setTimeout> | undefined;
    let onAbort: (() => void) | undefined;
    const stop = new Promise<"deadline">((resolve) => {
      timer = setTimeout(
        () => resolve("deadline"),
        Math.max(0, hooks.deadline - Date.now()),
      );
      onAbort = () => resolve("deadline");
      hooks.signal?.addEventListener("abort", onAbort);
    });
    try {
      const served = Promise.resolve()
        .then(() => hooks.hostCall!(fn, args))
        .catch((e): HostCallResult => ({ error: errorJson(e) }));
      const answer = await Promise.race([served, stop]);
      // An answer that comes only after the deadline (often the failure the
      // deadline itself caused, such as a nested call's timeout) still means
      // the deadline passed while the host was serving.
      if (
        answer !== "deadline" &&
        (Date.now() >= hooks.deadline || hooks.signal?.aborted)
      ) return "deadline";
      return answer;
    } finally {
      clearTimeout(timer);
      if (onAbort) hooks.signal?.removeEventListener("abort", onAbort);
    }
  }

  /** Terminates the worker (it may keep spinning if busy: see module doc). */
  terminate(reason = "terminated"): void {
    Atomics.store(this.#ch.ctl, INTERRUPT, 1);
    this.#worker.terminate();
    this.#markDead(reason);
  }

  /**
   * Stops the worker: a running guest is interrupted first and given
   * `graceMs` to stop (terminating a thread that runs guest code may leave it
   * spinning), then the worker leaves its loop and is terminated.
   */
  async shutdown(graceMs: number): Promise<void> {
    if (this.#dead) return;
    const current = this.#current;
    if (current) {
      this.interrupt();
      let timer: ReturnType<typeof setTimeout> | undefined;
      await Promise.race([
        current.catch(() => {}),
        new Promise((r) => timer = setTimeout(r, graceMs)),
      ]);
      clearTimeout(timer);
    }
    if (!this.#dead && !this.#current) {
      await this.request(OP_SHUTDOWN, null, null, 0, {
        deadline: Date.now() + graceMs,
      });
    }
    this.terminate("shut down");
  }
}
