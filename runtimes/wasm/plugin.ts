/**
 * {@linkcode loadWasmPlugin}: a GoatKit WASM plugin (GoatFlow's ABI, see
 * `abi.ts` and `host_calls.ts`) as a {@linkcode Plugin}.
 *
 * How it runs:
 * - **Isolation.** Each instance runs in its own Deno Worker with
 *   `deno: { permissions: "none" }`; only a plugin with WASI preopens gets
 *   `read` on the preopens' host paths and `write` on the writable ones, and
 *   nothing else. The main thread never runs guest code.
 * - **Host calls.** `gk.host_call`, `gk.log` and stdout/stderr lines travel
 *   over a SharedArrayBuffer channel (`channel.ts`): the worker blocks in
 *   `Atomics.wait`, the main thread (short adaptive spin, then
 *   `Atomics.waitAsync`) serves the request through the plugin's HostAPI
 *   asynchronously, then wakes it.
 * - **`gk.last_error(buf_ptr, buf_len) -> i32`** (our addition): after a
 *   `host_call` returned 0, copies the error JSON
 *   `{"error":{"message":…,"permission":…,"type":…}}` (at most `buf_len`
 *   bytes) into the guest's buffer and returns its full length; 0 when the
 *   last host call did not fail.
 * - **Deadlines.** The module is instrumented (`instrument/`): fuel runs
 *   out every few thousand function entries / loop iterations and calls
 *   `gk.interrupt`, which traps once the main thread set the instance's
 *   interrupt flag (at the call's deadline, on abort, at shutdown). The call
 *   fails with `PluginTimeoutError` and the instance is re-instantiated in the
 *   same worker. A worker that does not answer within `graceMs` after its
 *   interrupt is terminated and replaced, and the plugin is quarantined (a
 *   defect: `Worker.terminate()` cannot stop a busy thread on this Deno).
 * - **Limits.** Memory capped by instrumentation (`memoryLimitPages`); every
 *   pointer and length bounds-checked; results and payloads up to
 *   `maxResultBytes`; log lines per call capped.
 * - **Faults and quarantine.** Only the plugin's own faults count (the
 *   error's `fault`): traps, ABI violations, `proc_exit` and lost workers
 *   (`crash`: `quarantine.maxFailures` within `quarantine.windowMs`, default
 *   5 in 60 s), and deadline overruns of a guest that was still computing
 *   (`deadline`: `quarantine.maxOverruns` within
 *   `quarantine.overrunWindowMs`, default 3 in 10 minutes). Time spent
 *   queued, overload refusals, caller aborts, shutdowns and deadlines that
 *   pass while the host serves a host call never count.
 * - **Concurrency.** Calls wait in one FIFO queue per plugin; a finished
 *   call hands its instance straight to the oldest waiter (one waiter woken
 *   per free instance). The queue is bounded (`queue.maxLength`, default
 *   256): one call more is refused at once with `PluginOverloadedError`, as
 *   is a call that waited its queue budget (`queue.maxWaitMs`, default 1 s,
 *   never more than half of the call's remaining deadline), and a call
 *   that the work queued ahead of it would keep past that budget at the
 *   plugin's recent run time (`queue-wait`, refused before it waits).
 *   `instances` > 1
 *   serves calls in parallel. A re-entrant call (made by this plugin itself,
 *   e.g. through `plugin_call`) is served by a free instance or fails at once
 *   with `PluginCallCycleError`, never deadlocks.
 * - **Idle release.** An instance whose worker served no call for
 *   `idleTimeoutMs` (default 60 s) is released: its worker (about 11–12 MB)
 *   is shut down, the compiled module stays cached in the plugin, and the
 *   next call starts a worker from it again (tens of ms, no recompilation).
 *   A worker serving a call is never released. Guest state does not survive
 *   a release; nothing of the host's relies on it (the manifest from
 *   `gk_register` is read once at load and kept by the host).
 *
 * @module
 */

import { sha256Hex } from "../../host/model/sha256.ts";
import type { HostAPI } from "../../host/model/host_api.ts";
import { logLevelFromNumber } from "../../host/model/host_api.ts";
import type { GKRegistration } from "../../host/model/manifest.ts";
import type {
  CallContext,
  Plugin,
  PluginEnvironment,
  PluginUsage,
} from "../../host/model/plugin.ts";
import {
  describeOverload,
  errorText,
  type OverloadRefusal,
  PluginCallCycleError,
  PluginCrashedError,
  PluginError,
  type PluginErrorOptions,
  type PluginFault,
  PluginOverloadedError,
  type PluginOverloadedErrorOptions,
  PluginTimeoutError,
} from "../../host/model/errors.ts";
import { HandOffQueue } from "./handoff_queue.ts";
import { FUEL, instrumentModuleCached } from "./instrument/mod.ts";
import { OP_CALL, OP_REGISTER } from "./channel.ts";
import { type HostCallResult, serveHostCall } from "./host_calls.ts";
import type { ExtismWorkerData } from "../extism/protocol.ts";
import { spareWorkers } from "./spare_workers.ts";
import {
  InstanceHandle,
  type InstanceSettings,
  type Outcome,
  type RequestHooks,
  type WasmPreopen,
} from "./instance_handle.ts";

export type { WasmPreopen } from "./instance_handle.ts";
export type { Outcome } from "./instance_handle.ts";
export type { HostCallResult } from "./host_calls.ts";

/**
 * Another ABI run on this machinery (same workers, instrumentation, queue,
 * deadline, quarantine, WASI): what differs from GoatKit's ABI. Used by
 * `runtimes/extism/`; GoatKit plugins never have one.
 */
export interface WasmAbiAdapter {
  /** The ABI the worker builds its guest for. */
  readonly abi: "extism";
  /** The worker's settings for that ABI. */
  readonly worker: ExtismWorkerData;
  /** The manifest (instead of `gk_register`). */
  readonly registration: GKRegistration;
  /** Why the module's imports cannot be served, or `null` (`bytes`: the module as compiled). */
  checkImports(module: WebAssembly.Module, bytes: Uint8Array): string | null;
  /**
   * Serves a host call of this ABI's own on the main thread, or returns
   * `undefined` to leave it to GoatKit's host calls.
   */
  hostCall(
    fn: string,
    args: Uint8Array,
    ctx: CallContext,
    plugin: string,
  ): Promise<HostCallResult> | undefined;
  /**
   * Maps a call's outcome: the result bytes, an error to throw, or
   * `undefined` to leave it to the GoatKit handling.
   */
  outcome(
    out: Outcome,
    fn: string,
    plugin: string,
    errOpts: PluginErrorOptions,
  ): { bytes: Uint8Array | null } | Error | undefined;
}

/** WASI settings of a WASM plugin. */
export interface WasmWasiOptions {
  /** Command-line arguments (`argv[0]` included). @default [] */
  args?: string[];
  /** Extra environment variables (merged over `config`). */
  env?: Record<string, string>;
  /**
   * Preopened directories. Only with preopens does the worker get any Deno
   * permission: read on each `hostPath`, write on the writable ones.
   */
  preopens?: WasmPreopen[];
}

/**
 * Quarantine policy: `maxFailures` crashes (traps, ABI violations,
 * `proc_exit`, lost workers) within `windowMs`, or `maxOverruns` deadline
 * overruns within `overrunWindowMs`. Only the plugin's own faults count.
 */
export interface WasmQuarantineOptions {
  /** Crashes that quarantine the plugin. @default 5 */
  maxFailures?: number;
  /** Window in which crashes count, in ms. @default 60000 */
  windowMs?: number;
  /**
   * Deadline overruns (the guest still computing when its deadline passed)
   * that quarantine the plugin. @default 3
   */
  maxOverruns?: number;
  /**
   * Window in which overruns count, in ms: long, so that a guest looping
   * until a 10–30 s deadline is caught too. @default 600000 (10 minutes)
   */
  overrunWindowMs?: number;
}

/**
 * The per-plugin queue of calls waiting for a free instance. Beyond it a
 * call fails with `PluginOverloadedError` (an HTTP front end answers 503 with
 * `Retry-After`); the plugin never sees such a call, and it never counts
 * toward quarantine.
 */
export interface WasmQueueOptions {
  /**
   * Calls that may wait; the next one is refused at once. 256 waiting calls
   * of a fast plugin (hello-c: about 0.25 ms each) drain in well under its
   * budget, while a slow one sheds load instead of holding connections.
   * @default 256
   */
  maxLength?: number;
  /**
   * Longest wait for an instance, in ms; a call that waited this long is
   * refused. Never more than half of the call's remaining deadline, so an
   * admitted call keeps at least half its deadline to run: a deadline that
   * then passes is the guest's own overrun, not the queue's. A client that
   * has waited a second is better served by a prompt 503 and a retry.
   * @default 1000
   */
  maxWaitMs?: number;
}

/** Options of {@linkcode loadWasmPlugin}. */
export interface WasmPluginOptions {
  /** Memory limit in 64 KiB pages. @default 256 (16 MiB) */
  memoryLimitPages?: number;
  /** Deadline of a call when its context has none sooner, in ms. @default 30000 */
  callTimeoutMs?: number;
  /**
   * Time a guest gets after its deadline to stop by itself before its worker
   * is terminated, a replacement spawned and the plugin quarantined. @default 2000
   */
  graceMs?: number;
  /** The plugin's granted config values; they become its WASI environment. */
  config?: Record<string, string>;
  /** WASI settings. */
  wasi?: WasmWasiOptions;
  /** Instances (workers) serving calls in parallel. @default 1 */
  instances?: number;
  /** Largest result or host call payload, in bytes. @default 16 MiB */
  maxResultBytes?: number;
  /** When repeated faults of the plugin quarantine it. */
  quarantine?: WasmQuarantineOptions;
  /** Bounds of the queue of calls waiting for an instance. */
  queue?: WasmQueueOptions;
  /**
   * Rewrite the module for fuel-based interruption and the memory cap.
   * Only tests turn this off (to compare answers with the original); an
   * uninstrumented guest cannot be stopped except by `terminate()`.
   * @default true
   */
  instrument?: boolean;
  /**
   * Idle time, in ms, after which an instance whose worker has served no
   * call is released: its worker is shut down (about 11–12 MB each), while
   * the compiled, instrumented `WebAssembly.Module` stays cached in the
   * plugin. The next call starts a fresh worker from that module (no
   * recompilation): it works the same, only slower (tens of ms). Only an
   * idle worker is ever released, never one serving a call. The guest's
   * state (globals, linear memory, WASI file descriptors) is lost on
   * release, as it is whenever an instance is replaced: instances are
   * pooled, so a plugin must not rely on state kept between calls.
   * `0` or `Infinity` keeps workers for the plugin's lifetime.
   * @default 60000
   */
  idleTimeoutMs?: number;
  /** Main-thread spin, in µs, before `Atomics.waitAsync`. @default 50 */
  spinMicros?: number;
  /** Worker spin, in µs, before `Atomics.wait`. @default 50 */
  workerSpinMicros?: number;
  /** Most log lines (gk.log, stdout, stderr) per call. @default 1000 */
  maxLogLinesPerCall?: number;
  /** Name used in errors before the manifest is known. */
  name?: string;
}

/** A WASM module could not be loaded as a GoatKit plugin. */
export class WasmLoadError extends Error {
  /** Creates the error for `source` with the reason. */
  constructor(
    source: string,
    reason: string,
    options: { cause?: unknown } = {},
  ) {
    super(`Cannot load WASM plugin "${source}": ${reason}`, options);
    this.name = "WasmLoadError";
  }
}

/** A loaded WASM plugin: a {@linkcode Plugin} plus runtime details. */
export interface WasmPlugin extends Plugin {
  /** Always `"wasm"`. */
  readonly runtime: "wasm";
  /** The raw manifest JSON `gk_register` returned at load. */
  readonly manifestJson: string;
  /** Content hash of the (instrumented) module. */
  readonly moduleHash: string;
  /** Whether the module was instrumented. */
  readonly instrumented: boolean;
  /**
   * Live instances (workers); an instance released after
   * `idleTimeoutMs` does not count until a call starts it again.
   */
  readonly instanceCount: number;
  /** Idle workers released after `idleTimeoutMs` so far (diagnostics). */
  readonly releasedWorkers: number;
  /** How many times guests ran `gk.interrupt` (diagnostics). */
  readonly interruptCount: number;
  /** Workers terminated because a guest did not stop (defects). */
  readonly killedWorkers: number;
  /** Calls waiting for an instance now. */
  readonly queueLength: number;
  /** Calls refused as overload so far (queue full or queue budget spent). */
  readonly overloadCount: number;
  /**
   * The refusal a call of `call.function` with a deadline of
   * `call.timeoutMs` made now would get at once (counted in
   * {@linkcode WasmPlugin.overloadCount}), or `undefined` while nobody
   * waits or the call may queue (see {@linkcode Plugin.refuseNow}).
   */
  refuseNow(call: {
    function: string;
    timeoutMs: number;
  }): OverloadRefusal | undefined;
}

interface Slot {
  host: InstanceHandle | null;
  starting: Promise<void> | null;
  /** Held by a call (or handed to a waiter that is about to run). */
  leased: boolean;
  /** Its worker was released after `idleTimeoutMs`; a call restarts it. */
  idleReleased: boolean;
  /** When the instance last became free (epoch ms). */
  freeSince: number;
  /** The pending idle check, if armed. */
  idleTimer: ReturnType<typeof setTimeout> | undefined;
}

const encoder = new TextEncoder();

/**
 * Loads a GoatKit WASM plugin. `source` is the module's bytes or a file path.
 * The module is instrumented (fuel + memory cap), compiled once, and
 * instantiated in `instances` workers; `gk_register` is read once at load.
 *
 * Imports the guest may use, module `gk`: `host_call`, `log` (GoatFlow's),
 * plus `last_error(buf_ptr, buf_len) -> i32`: after a `host_call` returned 0,
 * copies the error JSON `{"error":{"message":…,"permission":…,"type":…}}`
 * (up to `buf_len` bytes) into the guest's buffer and returns its full length
 * (0 when the last host call did not fail). And `wasi_snapshot_preview1`.
 *
 * @example
 * ```ts ignore
 * import { loadWasmPlugin } from "./plugin.ts";
 * import { Manager } from "../../host/manager.ts";
 * const manager = new Manager();
 * await manager.register(await loadWasmPlugin("fixtures/plugins/hello-c/plugin.wasm"));
 * const out = await manager.call("hello-c", "hello", null);
 * await manager.shutdownAll();
 * ```
 */
export function loadWasmPlugin(
  source: Uint8Array | string,
  options: WasmPluginOptions = {},
): Promise<WasmPlugin> {
  return loadWasmPluginWithAbi(source, options, undefined);
}

/**
 * {@linkcode loadWasmPlugin} for a module of another ABI (`adapter`), as
 * `runtimes/extism/` loads Extism plugins; `undefined` is GoatKit's ABI.
 */
export async function loadWasmPluginWithAbi(
  source: Uint8Array | string,
  options: WasmPluginOptions,
  adapter: WasmAbiAdapter | undefined,
): Promise<WasmPlugin> {
  const label = typeof source === "string" ? source : options.name ?? "<bytes>";
  // Worker bootstrap is the slowest part of a cold load: start it first.
  const spawned = Array.from(
    { length: Math.max(1, Math.floor(options.instances ?? 1)) },
    () => InstanceHandle.spawn(instanceSettings(options, adapter)),
  );
  try {
    return await loadWith(label, source, options, spawned, adapter);
  } catch (e) {
    for (const h of spawned) h.terminate("load failed");
    throw e;
  }
}

async function loadWith(
  label: string,
  source: Uint8Array | string,
  options: WasmPluginOptions,
  spawned: InstanceHandle[],
  adapter: WasmAbiAdapter | undefined,
): Promise<WasmPlugin> {
  const original = typeof source === "string"
    ? await Deno.readFile(source)
    : source;
  const memoryLimitPages = options.memoryLimitPages ?? 256;
  const instrument = options.instrument ?? true;
  let bytes: Uint8Array = original;
  let hash: string;
  if (instrument) {
    try {
      const r = await instrumentModuleCached(original, { memoryLimitPages });
      bytes = r.bytes;
      hash = r.hash;
    } catch (e) {
      throw new WasmLoadError(label, errorText(e), { cause: e });
    }
  } else {
    hash = await sha256Hex(original);
  }
  let module: WebAssembly.Module;
  try {
    module = await WebAssembly.compile(bytes as Uint8Array<ArrayBuffer>);
  } catch (e) {
    throw new WasmLoadError(label, errorText(e), { cause: e });
  }
  // Another ABI checks its own imports
  const refused = adapter?.checkImports(module, bytes);
  if (refused) throw new WasmLoadError(label, refused);
  for (const imp of adapter ? [] : WebAssembly.Module.imports(module)) {
    if (imp.module === "wasi_snapshot_preview1" && imp.kind === "function") {
      continue;
    }
    if (
      imp.module === "gk" && imp.kind === "function" &&
      ["host_call", "log", "last_error", "interrupt"].includes(imp.name)
    ) continue;
    if (imp.module === "extism:host/env") {
      throw new WasmLoadError(
        label,
        `it is an Extism-ABI module (it imports extism:host/env.${imp.name}), not a GoatKit one: load it with loadExtismPlugin, or in a plugin folder put an extism.json beside its manifest.json`,
      );
    }
    throw new WasmLoadError(
      label,
      `unsupported import ${imp.module}.${imp.name} (${imp.kind}); only gk.host_call, gk.log, gk.last_error and wasi_snapshot_preview1 are provided`,
    );
  }
  const plugin = new WasmPluginImpl(
    label,
    module,
    hash,
    instrument,
    options,
    adapter,
  );
  try {
    await plugin.load(spawned);
  } catch (e) {
    await plugin.shutdown();
    throw e instanceof WasmLoadError
      ? e
      : new WasmLoadError(label, errorText(e), { cause: e });
  }
  return plugin;
}

class WasmPluginImpl implements WasmPlugin {
  readonly runtime = "wasm" as const;
  manifestJson = "";
  readonly moduleHash: string;
  readonly instrumented: boolean;
  killedWorkers = 0;
  releasedWorkers = 0;
  #label: string;
  #name: string;
  #manifest: GKRegistration | undefined;
  #settings: InstanceSettings;
  #slots: Slot[] = [];
  #queue = new HandOffQueue<Slot>();
  #maxQueue: number;
  #maxWaitMs: number;
  /** Moving average of a call's run time, in ms (for `retryAfterSeconds`). */
  #avgRunMs = 1;
  /** Whether this plugin holds a reference on the spare worker pool. */
  #pooled = false;
  #guestMs = 0;
  #guestCalls = 0;
  #restarts = 0;
  overloadCount = 0;
  #host: HostAPI | undefined;
  #env: PluginEnvironment | undefined;
  #callTimeoutMs: number;
  #graceMs: number;
  #crashes: number[] = [];
  #maxFailures: number;
  #windowMs: number;
  #overruns: number[] = [];
  #maxOverruns: number;
  #overrunWindowMs: number;
  #closed = false;
  /** The ABI adapter (none for GoatKit plugins). */
  #abi: WasmAbiAdapter | undefined;
  /** `idleTimeoutMs`; 0 when workers are never released. */
  #idleMs: number;
  /** Shutdowns of released workers still in progress. */
  #releasing = new Set<Promise<void>>();

  constructor(
    label: string,
    module: WebAssembly.Module,
    hash: string,
    instrumented: boolean,
    options: WasmPluginOptions,
    adapter?: WasmAbiAdapter,
  ) {
    this.#abi = adapter;
    this.#label = label;
    this.#name = options.name ?? label;
    this.moduleHash = hash;
    this.instrumented = instrumented;
    this.#callTimeoutMs = options.callTimeoutMs ?? 30_000;
    this.#graceMs = options.graceMs ?? 2_000;
    const idle = options.idleTimeoutMs ?? 60_000;
    this.#idleMs = idle > 0 && Number.isFinite(idle) ? idle : 0;
    this.#maxFailures = options.quarantine?.maxFailures ?? 5;
    this.#windowMs = options.quarantine?.windowMs ?? 60_000;
    this.#maxOverruns = options.quarantine?.maxOverruns ?? 3;
    this.#overrunWindowMs = options.quarantine?.overrunWindowMs ?? 600_000;
    this.#maxQueue = Math.max(0, Math.floor(options.queue?.maxLength ?? 256));
    this.#maxWaitMs = Math.max(0, options.queue?.maxWaitMs ?? 1_000);
    this.#settings = { module, ...instanceSettings(options, adapter) };
    const n = Math.max(1, Math.floor(options.instances ?? 1));
    for (let i = 0; i < n; i++) {
      this.#slots.push({
        host: null,
        starting: null,
        leased: false,
        idleReleased: false,
        freeSince: 0,
        idleTimer: undefined,
      });
    }
  }

  get queueLength(): number {
    return this.#queue.length;
  }

  get instanceCount(): number {
    return this.#slots.filter((s) => s.host && !s.host.dead).length;
  }

  get interruptCount(): number {
    return this.#slots.reduce((n, s) => n + (s.host?.interruptCount ?? 0), 0);
  }

  /** Starts every instance and reads the manifest with `gk_register`. */
  async load(spawned: InstanceHandle[]): Promise<void> {
    await Promise.all(
      this.#slots.map((s, i) => this.#startSlot(s, true, spawned[i])),
    );
    // Another ABI's manifest comes from its adapter; GoatKit's from gk_register.
    if (this.#abi) {
      this.#manifest = this.#abi.registration;
      this.manifestJson = JSON.stringify(this.#manifest);
    } else {
      this.manifestJson = await this.#register();
      try {
        this.#manifest = JSON.parse(this.manifestJson) as GKRegistration;
      } catch (e) {
        throw new WasmLoadError(
          this.#label,
          `gk_register failed: parse manifest: ${errorText(e)}`,
        );
      }
    }
    if (typeof this.#manifest?.name === "string" && this.#manifest.name) {
      this.#name = this.#manifest.name;
    }
    for (const s of this.#slots) this.#markFree(s);
    if (this.#idleMs > 0 && !this.#closed) {
      spareWorkers.retain();
      this.#pooled = true;
    }
  }

  /** Runs `gk_register` on the first instance: the manifest's JSON text. */
  async #register(): Promise<string> {
    const out = await this.#slots[0]!.host!.request(
      OP_REGISTER,
      null,
      null,
      0,
      this.#hooks(Date.now() + this.#callTimeoutMs, undefined, undefined),
    );
    if (out.kind !== "result" || !out.bytes) {
      throw new WasmLoadError(
        this.#label,
        `gk_register failed: ${describe(out)}`,
      );
    }
    return new TextDecoder().decode(out.bytes);
  }

  /** Notes that `slot` became free and arms its idle check. */
  #markFree(slot: Slot): void {
    if (this.#idleMs === 0 || this.#closed) return;
    slot.freeSince = Date.now();
    if (slot.idleTimer === undefined) this.#armIdle(slot, this.#idleMs);
  }

  #armIdle(slot: Slot, ms: number): void {
    // setTimeout fires at once beyond 2^31-1 ms; a later check re-arms.
    const timer = setTimeout(
      () => this.#idleCheck(slot),
      Math.min(ms, 2_147_483_647),
    );
    // An idle check never keeps the process alive.
    Deno.unrefTimer(timer);
    slot.idleTimer = timer;
  }

  /**
   * Releases the slot's worker when it has been free for `idleTimeoutMs`.
   * A leased slot (serving a call or handed to a waiter) is left alone: it
   * is checked again once it is free.
   */
  #idleCheck(slot: Slot): void {
    slot.idleTimer = undefined;
    const host = slot.host;
    if (
      this.#closed || slot.leased || slot.starting || !host || host.dead ||
      host.busy
    ) return;
    const left = slot.freeSince + this.#idleMs - Date.now();
    if (left > 0) {
      this.#armIdle(slot, left);
      return;
    }
    slot.host = null;
    slot.idleReleased = true;
    this.releasedWorkers++;
    // The next start skips the worker's bootstrap (see spare_workers.ts).
    spareWorkers.prime(this.#settings);
    // The worker is idle (blocked waiting for a request): it leaves its loop
    // on OP_SHUTDOWN and is terminated.
    const done: Promise<void> = host.shutdown(this.#graceMs)
      .catch(() => {})
      .finally(() => this.#releasing.delete(done));
    this.#releasing.add(done);
  }

  async #startSlot(
    slot: Slot,
    atLoad: boolean,
    spawned?: InstanceHandle,
  ): Promise<void> {
    if (slot.starting) return await slot.starting;
    slot.starting = (async () => {
      const hooks = this.#hooks(
        Date.now() + this.#callTimeoutMs,
        undefined,
        undefined,
      );
      const handle = spawned ??
        (atLoad ? undefined : spareWorkers.take(this.#settings));
      const { host, outcome } = handle
        ? await handle.boot(this.#settings.module, hooks)
        : await InstanceHandle.start(this.#settings, hooks);
      if (outcome.kind !== "result") {
        host.terminate("start failed");
        if (outcome.kind === "killed") this.killedWorkers++;
        const reason = `instantiation failed: ${describe(outcome)}`;
        if (atLoad) throw new WasmLoadError(this.#label, reason);
        this.#defect(reason);
        return;
      }
      slot.host = host;
    })();
    try {
      await slot.starting;
    } finally {
      slot.starting = null;
    }
  }

  #hooks(
    deadline: number,
    signal: AbortSignal | undefined,
    ctx: CallContext | undefined,
  ): RequestHooks {
    const hostCtx: CallContext | undefined = ctx &&
      { ...ctx, caller: this.#name };
    return {
      deadline,
      ...(signal ? { signal } : {}),
      hostCall: (fn: string, args: Uint8Array): Promise<HostCallResult> => {
        if (!this.#host || !hostCtx) {
          return Promise.resolve({
            error: encoder.encode(
              '{"error":{"message":"host_call before init","type":"PluginError"}}',
            ),
          });
        }
        // The ABI's own host calls first
        const own = this.#abi?.hostCall(fn, args, hostCtx, this.#name);
        if (own) return own;
        return serveHostCall(this.#host, hostCtx, fn, args);
      },
      log: (level: number, text: string) => {
        if (!this.#host || !hostCtx) return; // GoatFlow drops logs before Init
        this.#host.log(hostCtx, logLevelFromNumber(level), text, {
          plugin: this.#name,
        });
      },
    };
  }

  /**
   * Guest CPU time (cumulative run time of calls less the time the host
   * spent serving their host calls), calls, the linear memory of live
   * instances and how many instances were replaced.
   */
  usage(): PluginUsage {
    let pages = 0;
    for (const s of this.#slots) {
      if (s.host && !s.host.dead) pages += s.host.memoryPages;
    }
    return {
      cpuMs: this.#guestMs,
      calls: this.#guestCalls,
      memoryBytes: pages * 65536,
      restarts: this.#restarts,
    };
  }

  gkRegister(): GKRegistration {
    if (!this.#manifest) throw new WasmLoadError(this.#label, "not loaded");
    return this.#manifest;
  }

  init(host: HostAPI, env?: PluginEnvironment): Promise<void> {
    this.#host = host;
    this.#env = env;
    if (env?.name) this.#name = env.name;
    return Promise.resolve();
  }

  /**
   * An instance for a call: a free one at once when nobody waits, else a
   * place in the FIFO queue until a finished call hands one over. Refuses
   * with {@linkcode PluginOverloadedError} when the queue is full or the
   * wait exceeds its budget.
   */
  async #acquire(
    ctx: CallContext,
    deadline: number,
    errOpts: PluginErrorOptions,
  ): Promise<Slot> {
    if (this.#closed) {
      throw new PluginCrashedError(this.#name, "plugin is shut down", errOpts);
    }
    // Waiters exist only while every live instance is leased (a freed one
    // goes straight to the oldest waiter), so a newcomer never overtakes.
    if (this.#queue.length === 0) {
      for (const s of this.#slots) {
        if (!s.leased && s.host && !s.host.dead) {
          s.leased = true;
          return s;
        }
      }
      // An instance released when idle: this call starts it again from
      // the cached module (nobody waits, so nobody is overtaken).
      for (const s of this.#slots) {
        if (!s.leased && !s.starting && !s.host && s.idleReleased) {
          return await this.#restartReleased(s, errOpts);
        }
      }
    }
    // Idle dead instances restart in the background; each goes to the
    // oldest waiter once it is up.
    for (const s of this.#slots) {
      if (!s.leased && (!s.host || s.host.dead)) this.#restart(s);
    }
    const reentrant = ctx.caller === this.#name ||
      ctx.chain.filter((p) => p === this.#name).length > 1;
    if (reentrant) throw new PluginCallCycleError(this.#name, ctx.chain);
    if (ctx.signal.aborted) throw this.#abortError(ctx.signal.reason, errOpts);
    const waitMs = this.#queueBudgetMs(deadline - Date.now());
    const refusal = this.#refusal(waitMs);
    if (refusal) {
      throw new PluginOverloadedError(this.#name, { ...errOpts, ...refusal });
    }
    const slot = await this.#queue.wait({
      waitMs,
      signal: ctx.signal,
      onTimeout: (waitedMs) => {
        this.overloadCount++;
        const q = this.#queue.length;
        return new PluginOverloadedError(this.#name, {
          ...errOpts,
          reason: "queue-timeout",
          queued: q,
          waitedMs,
          retryAfterSeconds: this.#retryAfterSeconds(q),
        });
      },
      onAbort: (reason) => this.#abortError(reason, errOpts),
    });
    if (this.#closed) {
      slot.leased = false;
      throw new PluginCrashedError(this.#name, "plugin is shut down", errOpts);
    }
    return slot;
  }

  /** Starts a released slot's worker again for the calling caller. */
  async #restartReleased(
    slot: Slot,
    errOpts: PluginErrorOptions,
  ): Promise<Slot> {
    slot.leased = true;
    slot.idleReleased = false;
    await this.#startSlot(slot, false).catch(() => {});
    if (!this.#closed && slot.host && !slot.host.dead) return slot;
    // Shut down meanwhile, or it could not start (then the plugin is
    // quarantined as a defect): free the slot for the waiters' sake.
    this.#release(slot);
    throw new PluginCrashedError(
      this.#name,
      this.#closed ? "plugin is shut down" : "no instance could be started",
      errOpts,
    );
  }

  /** Gives a finished call's instance to the oldest waiter, or frees it. */
  #release(slot: Slot): void {
    slot.leased = false;
    if (this.#closed) return;
    if (!slot.host || slot.host.dead) {
      this.#restart(slot);
      return;
    }
    this.#dispatch(slot);
  }

  #dispatch(slot: Slot): void {
    slot.leased = true;
    if (!this.#queue.handOff(slot)) {
      slot.leased = false;
      this.#markFree(slot);
    }
  }

  /** Starts a new instance in `slot` in the background; waiters get it. */
  #restart(slot: Slot): void {
    if (this.#closed || slot.starting) return;
    slot.host = null;
    slot.idleReleased = false;
    this.#startSlot(slot, false).catch(() => {}).finally(() => {
      if (this.#closed) return;
      if (slot.host && !slot.host.dead) {
        if (!slot.leased) this.#dispatch(slot);
        return;
      }
      // It could not start (the plugin is quarantined as a defect). Unless
      // another instance lives or starts, nobody would serve the waiters.
      const serving = this.#slots.some((s) =>
        (s.host && !s.host.dead) || s.starting
      );
      if (!serving) {
        this.#queue.rejectAll(
          new PluginCrashedError(this.#name, "no instance could be started"),
        );
      }
    });
  }

  /**
   * How long a call may wait in the queue: at most half of what is left
   * of its deadline (an admitted call keeps the other half to run).
   */
  #queueBudgetMs(leftMs: number): number {
    return Math.min(this.#maxWaitMs, Math.floor(leftMs / 2));
  }

  /**
   * The refusal (counted) of a call that would have to queue now with a
   * queue-time budget of `waitMs`, or `undefined` when it may queue: the
   * queue is full, or the work already queued ahead of it (at the recent
   * run time) would keep it waiting past its budget. The latter is refused
   * now rather than after the budget: its caller learns at once, and the
   * host does not hold a request it will refuse anyway.
   */
  #refusal(waitMs: number): PluginOverloadedErrorOptions | undefined {
    const queued = this.#queue.length;
    const expectedWaitMs = this.#waitAheadMs(queued);
    const full = queued >= this.#maxQueue;
    if (!full && !(queued > 0 && expectedWaitMs > waitMs)) return undefined;
    this.overloadCount++;
    return {
      reason: full ? "queue-full" : "queue-wait",
      queued,
      ...(full ? {} : { expectedWaitMs: Math.round(expectedWaitMs) }),
      retryAfterSeconds: retryAfterSeconds(expectedWaitMs),
    };
  }

  /** The wait of a call behind `queued` others, at the recent run time. */
  #waitAheadMs(queued: number): number {
    return ((queued + 1) * this.#avgRunMs) / this.#slots.length;
  }

  refuseNow(
    call: { function: string; timeoutMs: number },
  ): OverloadRefusal | undefined {
    // Only while callers already wait (every instance is leased): a call
    // that would get an instance, or start a released one, is never refused.
    if (this.#closed || this.#queue.length === 0) return undefined;
    const timeoutMs = Math.min(call.timeoutMs, this.#callTimeoutMs);
    const refusal = this.#refusal(this.#queueBudgetMs(timeoutMs));
    return refusal &&
      describeOverload(this.#name, { ...refusal, function: call.function });
  }

  /** `Retry-After` for a call behind `queued` others. */
  #retryAfterSeconds(queued: number): number {
    return retryAfterSeconds(this.#waitAheadMs(queued));
  }

  /** The error of a call its caller gave up on: the caller's reason. */
  #abortError(reason: unknown, errOpts: PluginErrorOptions): unknown {
    if (reason instanceof Error) return reason;
    return new PluginError(
      this.#name,
      `Cannot call ${
        errOpts.function
          ? `function "${errOpts.function}" of plugin "${this.#name}"`
          : `plugin "${this.#name}"`
      }: the caller cancelled it`,
      errOpts,
    );
  }

  async call(
    fn: string,
    args: Uint8Array | null,
    ctx: CallContext,
  ): Promise<Uint8Array | null> {
    const fnBytes = encoder.encode(fn);
    const size = fnBytes.length + (args?.length ?? 0);
    if (size > this.#settings.maxResultBytes) {
      throw new PluginError(
        this.#name,
        `Cannot call function "${fn}" of plugin "${this.#name}": arguments of ${size} bytes exceed the limit of ${this.#settings.maxResultBytes}`,
        { function: fn },
      );
    }
    const started = Date.now();
    const deadline = Math.min(ctx.deadline, started + this.#callTimeoutMs);
    const timeoutMs = Math.max(0, deadline - started);
    const errOpts: PluginErrorOptions = {
      function: fn,
      ...(ctx.caller ? { caller: ctx.caller } : {}),
    };
    const slot = await this.#acquire(ctx, deadline, errOpts);
    const host = slot.host!;
    const ran = performance.now();
    let out: Outcome;
    try {
      out = await host.request(
        OP_CALL,
        fnBytes,
        args,
        args === null ? 1 : 0,
        this.#hooks(deadline, ctx.signal, ctx),
      );
    } finally {
      const runMs = performance.now() - ran;
      this.#avgRunMs += (runMs - this.#avgRunMs) * 0.2;
      this.#guestMs += Math.max(0, runMs - host.hostMs);
      this.#guestCalls++;
      this.#release(slot);
    }
    const fault = (kind: PluginFault) => ({ ...errOpts, fault: kind });
    // The ABI maps its own outcomes (errors, exits)
    const mapped = this.#abi?.outcome(out, fn, this.#name, errOpts);
    if (mapped) {
      if (
        out.kind === "exit" || (out.kind === "guest-error" && out.replaced)
      ) this.#restarts++;
      if (mapped instanceof Error) throw mapped;
      return mapped.bytes;
    }
    // Every outcome but a result or an ABI error replaces the instance.
    if (out.kind !== "result" && out.kind !== "abi") this.#restarts++;
    switch (out.kind) {
      case "result":
        return out.bytes;
      case "abi":
        this.#fault("crash", `ABI violation in ${fn}: ${out.message}`);
        throw new PluginCrashedError(
          this.#name,
          `ABI violation: ${out.message}`,
          fault("crash"),
        );
      case "trap":
        this.#fault("crash", `trap in ${fn}: ${out.message}`);
        throw new PluginCrashedError(this.#name, out.message, fault("crash"));
      case "exit":
        this.#fault("crash", `proc_exit(${out.code}) in ${fn}`);
        throw new PluginCrashedError(
          this.#name,
          `guest called proc_exit(${out.code})`,
          fault("crash"),
        );
      case "interrupted": {
        if (this.#closed) {
          throw new PluginCrashedError(
            this.#name,
            "plugin shut down during the call",
            errOpts,
          );
        }
        const signal = ctx.signal;
        if (signal.aborted && !isDeadlineReason(signal.reason)) {
          // The caller gave up: not the plugin's fault.
          throw this.#abortError(signal.reason, errOpts);
        }
        if (out.inHostCall) {
          // The deadline passed while the host served a host call: the
          // time was the host's (a slow database, a nested plugin call).
          this.#log(
            "warn",
            `deadline of ${fn} passed during a host call (not counted against the plugin)`,
          );
          throw new PluginTimeoutError(this.#name, timeoutMs, errOpts);
        }
        this.#fault(
          "deadline",
          `${fn} still running at its deadline of ${timeoutMs} ms`,
        );
        throw new PluginTimeoutError(this.#name, timeoutMs, fault("deadline"));
      }
      case "killed":
        this.killedWorkers++;
        this.#defect(
          `guest did not stop within ${this.#graceMs} ms after the interrupt of ${fn}; worker terminated (its thread may keep running)`,
        );
        throw new PluginTimeoutError(this.#name, timeoutMs, fault("defect"));
      case "fatal":
        this.#fault("crash", `instance lost in ${fn}: ${out.message}`);
        throw new PluginCrashedError(this.#name, out.message, fault("crash"));
      case "guest-error": // Only another ABI reports it
        throw new PluginCrashedError(
          this.#name,
          out.message ?? `returned ${out.code}`,
          errOpts,
        );
    }
  }

  #log(level: "warn" | "error", message: string): void {
    if (!this.#host) return;
    const ctx: CallContext = {
      caller: this.#name,
      chain: [this.#name], // files the line under this plugin, not ""
      deadline: Date.now() + 1000,
      signal: new AbortController().signal,
    };
    this.#host.log(ctx, level, message, {
      plugin: this.#name,
      runtime: "wasm",
    });
  }

  #defect(reason: string): void {
    this.#log("error", `defect: ${reason}`);
    this.#quarantine(reason);
  }

  /**
   * Counts one of the plugin's own faults; enough of one kind within its
   * window quarantine the plugin. Nothing else ever reaches here.
   */
  #fault(kind: "crash" | "deadline", reason: string): void {
    if (this.#closed) return;
    const now = Date.now();
    const crash = kind === "crash";
    const windowMs = crash ? this.#windowMs : this.#overrunWindowMs;
    const max = crash ? this.#maxFailures : this.#maxOverruns;
    const list = (crash ? this.#crashes : this.#overruns)
      .filter((t) => now - t < windowMs);
    list.push(now);
    if (crash) this.#crashes = list;
    else this.#overruns = list;
    this.#log("warn", reason);
    if (list.length >= max) {
      this.#quarantine(
        `${list.length} ${
          crash ? "failures" : "deadline overruns"
        } within ${windowMs} ms; last: ${reason}`,
      );
      if (crash) this.#crashes = [];
      else this.#overruns = [];
    }
  }

  #quarantine(reason: string): void {
    this.#env?.quarantine(reason);
  }

  async shutdown(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    if (this.#pooled) spareWorkers.release();
    this.#pooled = false;
    for (const s of this.#slots) {
      clearTimeout(s.idleTimer);
      s.idleTimer = undefined;
    }
    this.#queue.rejectAll(
      new PluginCrashedError(this.#name, "plugin is shut down"),
    );
    await Promise.all(this.#slots.map(async (s) => {
      if (s.starting) await s.starting.catch(() => {});
      await s.host?.shutdown(this.#graceMs);
      s.host = null;
    }));
    await Promise.all([...this.#releasing]);
  }
}

/** `Retry-After` (1–60 s) for an expected wait of `ms`. */
function retryAfterSeconds(ms: number): number {
  return Math.min(60, Math.max(1, Math.ceil(ms / 1000)));
}

function instanceSettings(
  options: WasmPluginOptions,
  adapter?: WasmAbiAdapter,
): Omit<InstanceSettings, "module"> {
  return {
    ...(adapter ? { abi: adapter.abi, extism: adapter.worker } : {}),
    maxResultBytes: options.maxResultBytes ?? 16 * 1024 * 1024,
    memoryLimitPages: options.memoryLimitPages ?? 256,
    spinMicros: options.spinMicros ?? 50,
    workerSpinMicros: options.workerSpinMicros ?? 50,
    fuel: FUEL,
    maxLogLinesPerCall: options.maxLogLinesPerCall ?? 1000,
    args: options.wasi?.args ?? [],
    env: { ...(options.config ?? {}), ...(options.wasi?.env ?? {}) },
    preopens: options.wasi?.preopens ?? [],
    graceMs: options.graceMs ?? 2_000,
  };
}

/** Whether an abort reason is a deadline (the Manager's or a timeout signal's). */
function isDeadlineReason(reason: unknown): boolean {
  return reason instanceof PluginTimeoutError ||
    (reason instanceof DOMException && reason.name === "TimeoutError");
}

function describe(o: Outcome): string {
  switch (o.kind) {
    case "result":
      return "no result";
    case "abi":
    case "trap":
    case "fatal":
      return o.message;
    case "exit":
      return `proc_exit(${o.code})`;
    case "interrupted":
      return "interrupted at the deadline";
    case "killed":
      return "did not stop; worker terminated";
    case "guest-error":
      return o.message ?? `returned ${o.code}`;
  }
}
