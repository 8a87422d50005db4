/**
 * The typed errors an Extism plugin's calls end with.
 *
 * @module
 */

import {
  PluginError,
  type PluginErrorOptions,
} from "../../host/model/errors.ts";

/** What a failed host call told the guest (`{type, message, permission}`). */
export interface ExtismHostErrorInfo {
  /** The error class, such as `PermissionDeniedError`. */
  type: string;
  /** Its message. */
  message: string;
  /** The permission that would have allowed it, for a denial. */
  permission?: string;
}

/**
 * An Extism call failed: the export returned non-zero or set an error with
 * `error_set` (`code` is its return value), or a host function it called
 * failed (`code` -1, `hostError` set: a refused HTTP request, a var over
 * the cap, a user host function that threw, a bad kernel handle).
 *
 * Message: `Cannot call function "<fn>" of Extism plugin "<p>": <message>`.
 */
export class ExtismCallError extends PluginError {
  /**
   * The export's return code; -1 when a host function failed or the guest
   * trapped after setting an error (the instance was then replaced).
   */
  readonly code: number;
  /** The guest's `error_set` message or the host function's error (`null`: none). */
  readonly guestMessage: string | null;
  /** The failed host call's error, when a host function failed. */
  readonly hostError: ExtismHostErrorInfo | undefined;

  /** Creates the error. */
  constructor(
    plugin: string,
    fn: string,
    code: number,
    guestMessage: string | null,
    options: PluginErrorOptions & { hostError?: ExtismHostErrorInfo } = {},
  ) {
    super(
      plugin,
      `Cannot call function "${fn}" of Extism plugin "${plugin}": ${
        guestMessage ?? `it returned ${code}`
      }`,
      { ...options, function: fn },
    );
    this.name = "ExtismCallError";
    this.code = code;
    this.guestMessage = guestMessage;
    this.hostError = options.hostError;
  }
}

/**
 * An Extism call ended with WASI `proc_exit(code)`, `code` non-zero (exit 0
 * is success, with the output kept). The instance is replaced for the next
 * call.
 *
 * Message: `Cannot call function "<fn>" of Extism plugin "<p>": it exited with code <n>`.
 */
export class ExtismExitError extends PluginError {
  /** The exit code. */
  readonly code: number;

  /** Creates the error. */
  constructor(
    plugin: string,
    fn: string,
    code: number,
    options: PluginErrorOptions = {},
  ) {
    super(
      plugin,
      `Cannot call function "${fn}" of Extism plugin "${plugin}": it exited with code ${code}`,
      { ...options, function: fn },
    );
    this.name = "ExtismExitError";
    this.code = code;
  }
}
