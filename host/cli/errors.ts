/**
 * The errors of `gk`: {@linkcode CliError} for a command that failed (exit
 * code 1) and {@linkcode CliUsageError} for a command line that is wrong
 * (exit code 2). Each message is one line naming what failed and why.
 *
 * @module
 */

/** A command failed; the message is one line with the cause (exit code 1). */
export class CliError extends Error {
  /** The exit code `gk` ends with. */
  readonly exitCode: number = 1;

  /** Creates the error. */
  constructor(message: string, options: { cause?: unknown } = {}) {
    super(message, options);
    this.name = "CliError";
  }
}

/** The command line is wrong: missing argument, unknown option (exit code 2). */
export class CliUsageError extends CliError {
  /** The exit code `gk` ends with. */
  override readonly exitCode: number = 2;

  /** Creates the error. */
  constructor(message: string) {
    super(message);
    this.name = "CliUsageError";
  }
}
