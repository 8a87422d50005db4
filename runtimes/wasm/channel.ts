/**
 * The SharedArrayBuffer channel between the main thread and one plugin
 * instance's worker.
 *
 * The channel is half-duplex: at any moment exactly one side owns the data
 * region. A side sends by writing a message (kind, two byte parts, an aux
 * integer) and bumping its sequence counter (`W_SEQ` main → worker, `M_SEQ`
 * worker → main), then notifying; the other side waits for that counter to
 * change, first with a short bounded spin (`spinMicros`), then blocking (`Atomics.wait` in
 * the worker, `Atomics.waitAsync` on the main thread).
 *
 * A call's log lines do not cost a round trip each: the worker batches
 * them ({@linkcode LogBatch}) and the call's final message (`MSG_RESULT`,
 * `MSG_ABI_ERROR`, `MSG_TRAP`, `MSG_INTERRUPTED`, `MSG_EXIT`, `MSG_FATAL`)
 * carries them in part 1; a batch goes ahead as `MSG_LOG` only before a
 * host call, or when it grows large or old.
 *
 * The buffer is a growable SharedArrayBuffer: a message larger than the
 * current data region grows it, up to the maximum given at creation.
 *
 * This module is loaded in the worker too, so it imports nothing.
 *
 * @module
 */

/** Int32 slot: sequence number bumped by the main thread for each message. */
export const W_SEQ = 0;
/** Int32 slot: sequence number bumped by the worker for each message. */
export const M_SEQ = 1;
/** Int32 slot: the kind of the message in the buffer (`OP_*` / `MSG_*`). */
export const KIND = 2;
/** Int32 slot: byte length of the message's first part. */
export const LEN0 = 3;
/** Int32 slot: byte length of the message's second part. */
export const LEN1 = 4;
/** Int32 slot: an extra integer (log level, null flag, exit code…). */
export const AUX = 5;
/**
 * Int32 slot: the interrupt flag, set by the main thread at a call's
 * deadline or at shutdown; the instrumented guest's `gk.interrupt` reads it.
 */
export const INTERRUPT = 6;
/** Int32 slot: how many times `gk.interrupt` ran (diagnostics, tests). */
export const INTERRUPT_COUNT = 7;
/** Int32 slot: 1 while the worker blocks in `Atomics.wait` (notify only then). */
export const W_WAITING = 8;
/** Int32 slot: 1 while the main thread blocks in `Atomics.waitAsync`. */
export const M_WAITING = 9;
/** Int32 slot: the guest's memory size in 64 KiB pages, set by the worker after each call. */
export const MEM_PAGES = 10;
/** Bytes before the data region. */
export const HEADER_BYTES = 64;

/** Main → worker: call a guest function (part 0 fn, part 1 args; aux 1 = null args). */
export const OP_CALL = 1;
/** Main → worker: run `gk_register` and send back its bytes. */
export const OP_REGISTER = 2;
/** Main → worker: stop the worker loop. */
export const OP_SHUTDOWN = 3;
/** Main → worker: host_call answered (part 0 result bytes). */
export const OP_REPLY_OK = 10;
/** Main → worker: host_call failed (part 0 error JSON). */
export const OP_REPLY_ERR = 11;
/** Main → worker: the call is being interrupted; unwind the guest. */
export const OP_REPLY_INTERRUPTED = 12;
/** Main → worker: acknowledgement (of a log line). */
export const OP_ACK = 13;

/** Worker → main: call result (part 0 bytes; aux 1 = null result). */
export const MSG_RESULT = 20;
/** Worker → main: the guest broke the ABI (part 0 message); instance kept. */
export const MSG_ABI_ERROR = 21;
/** Worker → main: the guest trapped (part 0 message); instance replaced. */
export const MSG_TRAP = 22;
/** Worker → main: the guest was interrupted; instance replaced. */
export const MSG_INTERRUPTED = 23;
/** Worker → main: the instance could not be (re)created (part 0 message). */
export const MSG_FATAL = 24;
/** Worker → main: the guest called `proc_exit` (aux = code); instance replaced. */
export const MSG_EXIT = 25;
/**
 * Worker → main: an Extism call ended in an error (part 0 JSON `{code,
 * message, hostError}`; aux 1 = the instance was replaced).
 */
export const MSG_GUEST_ERROR = 26;
/** Worker → main: a `gk.host_call` (part 0 fn name, part 1 args). */
export const MSG_HOST_CALL = 30;
/** Worker → main: log lines ({@linkcode LogBatch} in part 0; levels 0–3). */
export const MSG_LOG = 31;
/** Worker → main: acknowledgement (of reset/shutdown). */
export const MSG_ACK = 32;

/** The default size of the data region before it grows. */
export const INITIAL_DATA_BYTES = 64 * 1024;

/** A decoded channel message. */
export interface ChannelMessage {
  /** The kind (`OP_*` or `MSG_*`). */
  kind: number;
  /** First byte part (a copy). */
  part0: Uint8Array;
  /** Second byte part (a copy). */
  part1: Uint8Array;
  /** The extra integer. */
  aux: number;
}

/** Raised when a message does not fit the channel's maximum size. */
export class ChannelOverflowError extends Error {
  /** Creates the error for a message of `size` bytes over `max`. */
  constructor(size: number, max: number) {
    super(
      `Cannot send message of ${size} bytes: it exceeds the channel limit of ${max} bytes`,
    );
    this.name = "ChannelOverflowError";
  }
}

const EMPTY = new Uint8Array(0);

/**
 * An adaptive spin budget. Spinning pays when the other thread answers
 * within the budget (the common case on an idle machine: ~5 µs round trips
 * instead of 15–50 µs through a blocking wait). On an oversubscribed machine
 * it backfires: the spinning thread holds the core the other thread needs.
 * So: a spin that catches the answer keeps the full budget; a spin that
 * misses when the answer then came soon after blocking (the sign of that
 * contention) halves it; a miss followed by a long wait (the other side was
 * simply idle) changes nothing; at 0, a full spin is tried every 16th wait.
 */
export class AdaptiveSpin {
  #budget = -1;
  #waits = 0;
  /** The budget in µs for the next wait, given the maximum `max`. */
  budget(max: number): number {
    if (this.#budget < 0 || this.#budget > max) this.#budget = max;
    if (this.#budget < 1 && ++this.#waits % 16 === 0) return max;
    return this.#budget;
  }
  /** The spin caught the answer. */
  hit(max: number): void {
    this.#budget = max;
  }
  /** The spin missed; the blocking wait then took `waitedMicros`. */
  miss(max: number, waitedMicros: number): void {
    if (waitedMicros < 4 * max) {
      this.#budget = this.#budget >= 2 ? this.#budget / 2 : 0;
    }
  }
}

// deno-lint-ignore no-explicit-any
const pause: ((n?: number) => void) | undefined = (Atomics as any).pause;

/**
 * Spins until `ctl[index]` differs from `seen` or `micros` µs pass; returns
 * whether it changed.
 */
export function spinUntil(
  ctl: Int32Array,
  index: number,
  seen: number,
  micros: number,
): boolean {
  if (micros <= 0) return Atomics.load(ctl, index) !== seen;
  const end = performance.now() + micros / 1000;
  for (;;) {
    for (let i = 0; i < 64; i++) {
      if (Atomics.load(ctl, index) !== seen) return true;
      pause?.(i);
    }
    if (performance.now() >= end) return Atomics.load(ctl, index) !== seen;
  }
}

/**
 * One side's view of the shared buffer. Both threads build their own
 * `Channel` over the same SharedArrayBuffer.
 *
 * @example
 * ```ts
 * import { Channel } from "./channel.ts";
 * const ch = Channel.create(1 << 20);
 * const other = new Channel(ch.buffer);
 * ch.write(1, new TextEncoder().encode("echo"), null, 0);
 * console.log(other.read().kind); // 1
 * ```
 */
export class Channel {
  /** The shared buffer. */
  readonly buffer: SharedArrayBuffer;
  /** Int32 view of the header. */
  readonly ctl: Int32Array;
  #bytes: Uint8Array;
  #mainSpin = new AdaptiveSpin();
  #workerSpin = new AdaptiveSpin();

  /** Creates a channel whose messages may reach `maxMessageBytes`. */
  static create(maxMessageBytes: number): Channel {
    const max = HEADER_BYTES + Math.max(maxMessageBytes, 1024);
    const initial = Math.min(max, HEADER_BYTES + INITIAL_DATA_BYTES);
    const sab = new SharedArrayBuffer(initial, { maxByteLength: max });
    return new Channel(sab);
  }

  /** Wraps an existing shared buffer (the worker's side). */
  constructor(buffer: SharedArrayBuffer) {
    this.buffer = buffer;
    this.ctl = new Int32Array(buffer, 0, HEADER_BYTES / 4);
    this.#bytes = new Uint8Array(buffer);
  }

  /** The largest message (both parts together) the channel can carry. */
  get maxMessageBytes(): number {
    return this.buffer.maxByteLength - HEADER_BYTES;
  }

  /** Writes a message into the data region (does not signal it). */
  write(
    kind: number,
    part0: Uint8Array | null,
    part1: Uint8Array | null,
    aux: number,
  ): void {
    const p0 = part0 ?? EMPTY;
    const p1 = part1 ?? EMPTY;
    const need = HEADER_BYTES + p0.length + p1.length;
    if (need > this.buffer.byteLength) {
      if (need > this.buffer.maxByteLength) {
        throw new ChannelOverflowError(
          p0.length + p1.length,
          this.maxMessageBytes,
        );
      }
      // Grow in big steps so repeated large messages do not grow each time.
      const next = Math.min(
        this.buffer.maxByteLength,
        Math.max(need, this.buffer.byteLength * 2),
      );
      this.buffer.grow(next);
      this.#bytes = new Uint8Array(this.buffer);
    }
    const bytes = this.#bytes;
    bytes.set(p0, HEADER_BYTES);
    bytes.set(p1, HEADER_BYTES + p0.length);
    const ctl = this.ctl;
    ctl[KIND] = kind;
    ctl[LEN0] = p0.length;
    ctl[LEN1] = p1.length;
    ctl[AUX] = aux;
  }

  /**
   * Reads the message in the data region, bounds-checked: its parts as
   * copies, or with `views` as views of the shared buffer (valid only until
   * the next message is written).
   */
  read(views = false): ChannelMessage {
    const ctl = this.ctl;
    const kind = Atomics.load(ctl, KIND);
    const len0 = Atomics.load(ctl, LEN0);
    const len1 = Atomics.load(ctl, LEN1);
    const aux = Atomics.load(ctl, AUX);
    if (this.#bytes.length !== this.buffer.byteLength) {
      this.#bytes = new Uint8Array(this.buffer);
    }
    const size = this.#bytes.length - HEADER_BYTES;
    if (len0 < 0 || len1 < 0 || len0 + len1 > size) {
      throw new RangeError(
        `Cannot read channel message: lengths ${len0}+${len1} exceed ${size}`,
      );
    }
    const start = HEADER_BYTES;
    const end0 = start + len0;
    const bytes = this.#bytes;
    return views
      ? {
        kind,
        aux,
        part0: bytes.subarray(start, end0),
        part1: bytes.subarray(end0, end0 + len1),
      }
      : {
        kind,
        aux,
        part0: bytes.slice(start, end0),
        part1: bytes.slice(end0, end0 + len1),
      };
  }

  /** Main thread: publish the written message to the worker. */
  sendToWorker(): void {
    Atomics.add(this.ctl, W_SEQ, 1);
    // Notifying is costly (a futex wake); skip it while the worker spins.
    // Sequentially consistent atomics make this safe: a worker that sets
    // W_WAITING after this load sees the new W_SEQ in its Atomics.wait.
    if (Atomics.load(this.ctl, W_WAITING) !== 0) {
      Atomics.notify(this.ctl, W_SEQ);
    }
  }

  /** Worker: publish the written message to the main thread. */
  sendToMain(): void {
    Atomics.add(this.ctl, M_SEQ, 1);
    if (Atomics.load(this.ctl, M_WAITING) !== 0) {
      Atomics.notify(this.ctl, M_SEQ);
    }
  }

  /**
   * Worker: blocks until `W_SEQ` differs from `seen`, spinning for up to
   * `spinMicros` µs first (less while spinning does not pay: see
   * {@linkcode AdaptiveSpin}); returns the new value.
   */
  waitFromMain(seen: number, spinMicros: number): number {
    const ctl = this.ctl;
    // Adaptive, as on the main thread: a worker that spins while the main
    // thread is slow to answer burns the core the main thread needs.
    const budget = this.#workerSpin.budget(spinMicros);
    if (spinUntil(ctl, W_SEQ, seen, budget)) {
      if (budget > 0) this.#workerSpin.hit(spinMicros);
      return Atomics.load(ctl, W_SEQ);
    }
    const t0 = budget > 0 ? performance.now() : 0;
    for (;;) {
      Atomics.store(ctl, W_WAITING, 1);
      Atomics.wait(ctl, W_SEQ, seen);
      Atomics.store(ctl, W_WAITING, 0);
      const v = Atomics.load(ctl, W_SEQ);
      if (v !== seen) {
        if (budget > 0) {
          this.#workerSpin.miss(spinMicros, (performance.now() - t0) * 1000);
        }
        return v;
      }
    }
  }

  /**
   * Main thread: resolves when `M_SEQ` differs from `seen` (`true`), or when
   * someone calls {@linkcode Channel.wakeMain} without a message (`false`:
   * the caller's deadline, an interrupt, a dead worker). Spins for up to
   * `spinMicros` µs first (a round trip through `Atomics.waitAsync` costs
   * 10–50 µs: its wake-up goes through the event loop). It arms no timer:
   * the caller wakes it at its deadline (one shared timer for every call
   * instead of a timer per wait).
   */
  waitFromWorker(
    seen: number,
    spinMicros: number,
  ): boolean | Promise<boolean> {
    const ctl = this.ctl;
    const budget = this.#mainSpin.budget(spinMicros);
    if (spinUntil(ctl, M_SEQ, seen, budget)) {
      if (budget > 0) this.#mainSpin.hit(spinMicros);
      return true;
    }
    const t0 = performance.now();
    Atomics.store(ctl, M_WAITING, 1);
    // No timeout argument: V8 arms a platform task for each timed
    // waitAsync that outlives an early wake-up.
    const r = Atomics.waitAsync(ctl, M_SEQ, seen);
    if (!r.async) {
      Atomics.store(ctl, M_WAITING, 0);
      return Atomics.load(ctl, M_SEQ) !== seen;
    }
    return r.value.then(() => {
      Atomics.store(ctl, M_WAITING, 0);
      const changed = Atomics.load(ctl, M_SEQ) !== seen;
      if (changed && budget > 0) {
        this.#mainSpin.miss(spinMicros, (performance.now() - t0) * 1000);
      }
      return changed;
    });
  }

  /** Main thread: wakes its own pending {@linkcode waitFromWorker}. */
  wakeMain(): void {
    Atomics.notify(this.ctl, M_SEQ);
  }
}

/**
 * Log lines of one call, batched in the worker and carried to the main
 * thread as one byte part: each line is a level byte, a little-endian u32
 * length and the text. A call's lines travel with its final message (or
 * before a host call, or when the batch grows large or old), so a line
 * costs no round trip of its own.
 *
 * @example
 * ```ts
 * import { LogBatch, readLogBatch } from "./channel.ts";
 * const b = new LogBatch();
 * b.add(1, new TextEncoder().encode("hi"));
 * for (const l of readLogBatch(b.take()!)) console.log(l.level, l.text); // 1 "hi"
 * ```
 */
export class LogBatch {
  #lines: { level: number; text: Uint8Array }[] = [];
  #bytes = 0;
  #since = 0;

  /** Encoded size of the batch, in bytes. */
  get byteLength(): number {
    return this.#bytes;
  }

  /** Milliseconds since the oldest line was added (0 when empty). */
  get ageMs(): number {
    return this.#lines.length === 0 ? 0 : performance.now() - this.#since;
  }

  /** Adds a line (copied: `text` may be a view of guest memory). */
  add(level: number, text: Uint8Array): void {
    if (this.#lines.length === 0) this.#since = performance.now();
    this.#lines.push({ level, text: text.slice() });
    this.#bytes += 5 + text.length;
  }

  /** The encoded batch (`null` when empty), and the batch emptied. */
  take(): Uint8Array | null {
    if (this.#lines.length === 0) return null;
    const out = new Uint8Array(this.#bytes);
    const view = new DataView(out.buffer);
    let at = 0;
    for (const { level, text } of this.#lines) {
      out[at] = level;
      view.setUint32(at + 1, text.length, true);
      out.set(text, at + 5);
      at += 5 + text.length;
    }
    this.#lines = [];
    this.#bytes = 0;
    return out;
  }
}

/** The lines of an encoded {@linkcode LogBatch} (stops at a malformed tail). */
export function* readLogBatch(
  bytes: Uint8Array,
): Generator<{ level: number; text: Uint8Array }> {
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  let at = 0;
  while (at + 5 <= bytes.length) {
    const len = view.getUint32(at + 1, true);
    if (at + 5 + len > bytes.length) return;
    yield { level: bytes[at]!, text: bytes.subarray(at + 5, at + 5 + len) };
    at += 5 + len;
  }
}
