/**
 * {@linkcode StdoutLines}: log lines for stdout written together, once per
 * turn of the event loop, instead of one synchronous write per line.
 *
 * A busy route whose plugin logs a line per call otherwise pays a
 * `console.log` (formatting and a `write` syscall) on the main thread for
 * every request. Here each line is queued, and the queue goes out in one
 * write when a 0 ms timer fires, when it holds `maxBytes`, or when the
 * process exits (`unload`, an uncaught error or rejection). What a
 * `SIGKILL` interrupts is at most one turn's lines.
 *
 * @example
 * ```ts
 * import { StdoutLines } from "./stdout_lines.ts";
 * const written: string[] = [];
 * const lines = new StdoutLines({
 *   out: { writeSync: (b) => (written.push(new TextDecoder().decode(b)), b.length) },
 * });
 * lines.write("one");
 * lines.write("two");
 * lines.flush();
 * console.log(written); // [ "one\ntwo\n" ]
 * ```
 *
 * @module
 */

/** Where the lines go: `Deno.stdout` by default. */
export interface SyncWriter {
  /** Writes some of `p`; returns how many bytes were written. */
  writeSync(p: Uint8Array): number;
}

/** Options of {@linkcode StdoutLines}. */
export interface StdoutLinesOptions {
  /** @default Deno.stdout */
  out?: SyncWriter;
  /**
   * Queued text that is written at once, counted in UTF-16 code units (the
   * bytes of ASCII lines; more bytes for other text). @default 65536
   */
  maxBytes?: number;
}

const encoder = new TextEncoder();

/** Lines queued for stdout and written once per event-loop turn. */
export class StdoutLines {
  readonly #out: SyncWriter;
  readonly #maxBytes: number;
  #queued = "";
  #timer: ReturnType<typeof setTimeout> | undefined;

  /** Creates the queue; nothing is written until a line comes. */
  constructor(options: StdoutLinesOptions = {}) {
    this.#out = options.out ?? Deno.stdout;
    this.#maxBytes = options.maxBytes ?? 65536;
  }

  /**
   * Flushes the queue when the process exits normally (`unload`) or on an
   * uncaught error or rejection (which end it). Returns the function that
   * stops doing so.
   */
  flushAtExit(): () => void {
    const flush = () => this.flush();
    const events = ["unload", "error", "unhandledrejection"] as const;
    for (const e of events) globalThis.addEventListener(e, flush);
    return () => {
      for (const e of events) globalThis.removeEventListener(e, flush);
    };
  }

  /** Queues `line` (a newline is added). */
  write(line: string): void {
    this.#queued += line + "\n";
    if (this.#queued.length >= this.#maxBytes) {
      this.flush();
      return;
    }
    if (this.#timer === undefined) {
      this.#timer = setTimeout(() => {
        this.#timer = undefined;
        this.flush();
      }, 0);
      // The lines do not keep the process alive: exit flushes them.
      Deno.unrefTimer(this.#timer as unknown as number);
    }
  }

  /**
   * Writes everything queued now, synchronously (dropped if stdout is
   * gone).
   */
  flush(): void {
    if (this.#timer !== undefined) {
      clearTimeout(this.#timer);
      this.#timer = undefined;
    }
    if (this.#queued === "") return;
    let bytes = encoder.encode(this.#queued);
    this.#queued = "";
    try {
      while (bytes.length > 0) {
        const n = this.#out.writeSync(bytes);
        if (n <= 0) break;
        bytes = bytes.subarray(n);
      }
    } catch {
      // Stdout is gone (a closed pipe): the lines are dropped, as the
      // log buffer and the durable log still hold them.
    }
  }
}
