/**
 * Where `gk` reads and writes: {@linkcode CliIO}, replaceable in tests, and
 * {@linkcode interruptSignal} for the commands that run until Ctrl-C.
 *
 * @module
 */

/** Where the CLI writes and what it reads from its environment. */
export interface CliIO {
  /** Normal output (results, tables, listings). */
  out(line: string): void;
  /** Progress and errors. */
  err(line: string): void;
  /** Environment lookup. */
  env(name: string): string | undefined;
  /** The process's working directory. @default Deno.cwd */
  cwd?(): string;
  /**
   * Stops the long-running commands (`dev`, `logs --follow`) when aborted;
   * SIGINT and SIGTERM stop them too.
   */
  signal?: AbortSignal;
}

/** The CLI's IO on the real console and environment. */
export function consoleIO(): CliIO {
  return {
    out: (line) => console.log(line),
    err: (line) => console.error(line),
    env: (name) => Deno.env.get(name),
    cwd: () => Deno.cwd(),
  };
}

/** A signal aborted by Ctrl-C (SIGINT), SIGTERM or `io.signal`. */
export interface Interrupt extends Disposable {
  /** Aborted when the command should stop. */
  readonly signal: AbortSignal;
}

/**
 * Listens for Ctrl-C and SIGTERM until disposed; the returned signal also
 * follows `io.signal`.
 *
 * @example
 * ```ts ignore
 * using stop = interruptSignal(io);
 * while (!stop.signal.aborted) await tick();
 * ```
 */
export function interruptSignal(io: CliIO): Interrupt {
  const controller = new AbortController();
  const abort = () => controller.abort();
  const signals: Deno.Signal[] = ["SIGINT", "SIGTERM"];
  for (const s of signals) Deno.addSignalListener(s, abort);
  io.signal?.addEventListener("abort", abort, { once: true });
  if (io.signal?.aborted) abort();
  return {
    signal: controller.signal,
    [Symbol.dispose]() {
      for (const s of signals) Deno.removeSignalListener(s, abort);
      io.signal?.removeEventListener("abort", abort);
    },
  };
}

/** Resolves after `ms`, or at once when `signal` is aborted. */
export function sleep(ms: number, signal: AbortSignal): Promise<void> {
  return new Promise((resolve) => {
    if (signal.aborted) return resolve();
    const done = () => {
      clearTimeout(timer);
      signal.removeEventListener("abort", done);
      resolve();
    };
    const timer = setTimeout(done, ms);
    signal.addEventListener("abort", done, { once: true });
  });
}
