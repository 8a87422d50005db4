/**
 * Typed errors raised by the plugin host. Each names what failed and why, and
 * carries the data a caller needs to react (plugin, caller, function, …).
 *
 * Messages follow Deno std's form: `Cannot <action>: <why>`, values in double
 * quotes, no final period.
 *
 * @module
 */

/**
 * A failure that was the plugin's own fault, as its runtime judged it; only
 * these count toward quarantine.
 *
 * - `crash`: a trap, an ABI violation, `proc_exit`, a lost instance or process.
 * - `deadline`: the guest was still computing when its call's deadline passed
 *   (time spent queued before the call ran, and time the host spent serving
 *   a pending host call, are not the guest's).
 * - `defect`: the guest ignored its interrupt and its worker was terminated.
 *
 * Overload refusals, caller aborts and shutdowns never carry a fault.
 */
export type PluginFault = "crash" | "deadline" | "defect";

/** Options shared by the plugin error classes. */
export interface PluginErrorOptions {
  /** The plugin that made the call, when one did. */
  caller?: string;
  /** The function that was called, when known. */
  function?: string;
  /** The underlying error. */
  cause?: unknown;
  /** Set by a runtime when the failure was the plugin's own fault. */
  fault?: PluginFault;
}

/**
 * Base class of every error the host raises about a plugin.
 *
 * @example Catch any plugin error
 * ```ts
 * import { PluginError } from "./errors.ts";
 * try {
 *   // manager.call(...)
 * } catch (e) {
 *   if (e instanceof PluginError) console.log(e.plugin);
 * }
 * ```
 */
export class PluginError extends Error {
  /** The plugin the error is about. */
  readonly plugin: string;
  /** The plugin that made the call, when one did. */
  readonly caller: string | undefined;
  /** The function that was called, when known. */
  readonly function: string | undefined;
  /**
   * The plugin's own fault, when its runtime judged the failure to be one
   * (then it counted toward quarantine); `undefined` for every other failure.
   */
  readonly fault: PluginFault | undefined;

  /** Creates an error about `plugin` with `message`. */
  constructor(
    plugin: string,
    message: string,
    options: PluginErrorOptions = {},
  ) {
    super(message, options.cause === undefined ? {} : { cause: options.cause });
    this.name = "PluginError";
    this.plugin = plugin;
    this.caller = options.caller;
    this.function = options.function;
    this.fault = options.fault;
  }
}

/**
 * Whether `e` is a failure the plugin's runtime counted as the plugin's own
 * fault (see {@linkcode PluginFault}); overload refusals, caller aborts,
 * host-side timeouts and everything that is not a {@linkcode PluginError}
 * are not.
 *
 * @example
 * ```ts
 * import { isPluginFault, PluginCrashedError, PluginOverloadedError } from "./errors.ts";
 * isPluginFault(new PluginCrashedError("p", "unreachable", { fault: "crash" })); // true
 * isPluginFault(new PluginOverloadedError("p", { queued: 256, retryAfterSeconds: 1 })); // false
 * ```
 */
export function isPluginFault(e: unknown): e is PluginError {
  return e instanceof PluginError && e.fault !== undefined;
}

/**
 * The plugin is not registered (and the lazy loader could not load it).
 *
 * Message: `Cannot find plugin "<p>"`, or with a caller
 * `Cannot find plugin "<p>" (required by "<c>" to call "<f>")`.
 */
export class PluginNotFoundError extends PluginError {
  /** Creates the error for `plugin`, optionally naming caller and function. */
  constructor(plugin: string, options: PluginErrorOptions = {}) {
    const msg = options.caller
      ? `Cannot find plugin "${plugin}" (required by "${options.caller}" to call "${
        options.function ?? ""
      }")`
      : `Cannot find plugin "${plugin}"`;
    super(plugin, msg, options);
    this.name = "PluginNotFoundError";
  }
}

/**
 * The plugin is registered but disabled (by an admin or by quarantine).
 *
 * Message: `Cannot call plugin "<p>": it is disabled`, or with a caller
 * `Cannot call plugin "<p>" (required by "<c>"): it is disabled`; a known
 * reason follows after a colon.
 */
export class PluginDisabledError extends PluginError {
  /**
   * Why the host disabled the plugin (a quarantine reason such as
   * `3 deadline overruns within 600000 ms; last: …`); `undefined` when an
   * admin disabled it.
   */
  readonly reason: string | undefined;
  /** Whether the host quarantined the plugin (rather than an admin disabling it). */
  readonly quarantined: boolean;

  /** Creates the error for `plugin`. */
  constructor(
    plugin: string,
    options: PluginErrorOptions & { reason?: string } = {},
  ) {
    let msg = options.caller
      ? `Cannot call plugin "${plugin}" (required by "${options.caller}"): it is disabled`
      : `Cannot call plugin "${plugin}": it is disabled`;
    if (options.reason) msg += `: ${options.reason}`;
    super(plugin, msg, options);
    this.name = "PluginDisabledError";
    this.reason = options.reason;
    this.quarantined = options.reason !== undefined;
  }
}

/** The plugin is already registered under that name. */
export class PluginAlreadyRegisteredError extends PluginError {
  /** Creates the error for `plugin`. */
  constructor(plugin: string) {
    super(
      plugin,
      `Cannot register plugin "${plugin}": it is already registered`,
    );
    this.name = "PluginAlreadyRegisteredError";
  }
}

/** The plugin's `init` failed; the plugin was not registered. */
export class PluginInitError extends PluginError {
  /** Creates the error for `plugin`, wrapping the init failure. */
  constructor(plugin: string, cause: unknown) {
    super(plugin, `Cannot initialize plugin "${plugin}": ${errorText(cause)}`, {
      cause,
    });
    this.name = "PluginInitError";
  }
}

/** `function "f" of plugin "p"`, or `plugin "p"` when the function is unknown. */
function callee(plugin: string, fn: string | undefined): string {
  return fn ? `function "${fn}" of plugin "${plugin}"` : `plugin "${plugin}"`;
}

/** A call did not finish before its deadline. */
export class PluginTimeoutError extends PluginError {
  /** The deadline that passed, in milliseconds after the call started. */
  readonly timeoutMs: number;

  /** Creates the error for a call of `plugin` that ran past `timeoutMs`. */
  constructor(
    plugin: string,
    timeoutMs: number,
    options: PluginErrorOptions = {},
  ) {
    super(
      plugin,
      `Cannot call ${
        callee(plugin, options.function)
      }: timed out after ${timeoutMs} ms`,
      options,
    );
    this.name = "PluginTimeoutError";
    this.timeoutMs = timeoutMs;
  }
}

/**
 * The plugin crashed during the call: a WASM trap, a dead subprocess, a
 * broken connection. The message includes the runtime's own text.
 */
export class PluginCrashedError extends PluginError {
  /** Creates the error for `plugin` with the runtime's `detail`. */
  constructor(
    plugin: string,
    detail: string,
    options: PluginErrorOptions = {},
  ) {
    super(
      plugin,
      `Cannot call ${callee(plugin, options.function)}: it crashed: ${detail}`,
      options,
    );
    this.name = "PluginCrashedError";
  }
}

/** Why a call was refused as overload (see {@linkcode PluginOverloadedError}). */
export type OverloadReason = "queue-full" | "queue-wait" | "queue-timeout";

/** Options of {@linkcode PluginOverloadedError}. */
export interface PluginOverloadedErrorOptions
  extends Omit<PluginErrorOptions, "fault"> {
  /**
   * `queue-full` (refused at once: the plugin's queue held its maximum),
   * `queue-wait` (refused at once: the calls ahead of it, at the plugin's
   * recent run time, would keep it waiting past its queue budget) or
   * `queue-timeout` (waited its whole queue budget without getting an
   * instance). @default "queue-full"
   */
  reason?: OverloadReason;
  /** Calls waiting in the plugin's queue when this one was refused. */
  queued: number;
  /** For `queue-timeout`: how long the call waited, in ms. */
  waitedMs?: number;
  /** For `queue-wait`: the wait it would have had, in ms. */
  expectedWaitMs?: number;
  /** When a retry is likely to be admitted, in whole seconds (at least 1). */
  retryAfterSeconds: number;
}

/**
 * What a refusal as overload says, without an error object: what a
 * {@linkcode PluginOverloadedError} made with the same arguments carries
 * (see {@linkcode describeOverload}). A runtime answers
 * `Plugin.refuseNow` with it, where the call is refused before it is made.
 */
export interface OverloadRefusal {
  /** The plugin that refuses. */
  plugin: string;
  /** `queue-full`, `queue-wait` or `queue-timeout`. */
  reason: OverloadReason;
  /** The error's message. */
  message: string;
  /** When a retry is likely to be admitted, in whole seconds (at least 1). */
  retryAfterSeconds: number;
}

/**
 * The {@linkcode OverloadRefusal} of a call of `plugin` refused as overload:
 * the message and retry time its {@linkcode PluginOverloadedError} would
 * carry, at the cost of a string (no error, no stack).
 *
 * @example
 * ```ts
 * import { describeOverload } from "./errors.ts";
 * const r = describeOverload("hello", { queued: 256, retryAfterSeconds: 0.2 });
 * console.log(r.retryAfterSeconds, r.message);
 * // 1 Cannot call plugin "hello": it is overloaded (256 calls queued); retry after 1 s
 * ```
 */
export function describeOverload(
  plugin: string,
  options: PluginOverloadedErrorOptions,
): OverloadRefusal {
  const reason = options.reason ?? "queue-full";
  const retryAfterSeconds = Math.max(1, Math.ceil(options.retryAfterSeconds));
  const why = reason === "queue-timeout"
    ? `waited ${options.waitedMs ?? 0} ms in its queue`
    : reason === "queue-wait"
    ? `${options.queued} calls queued, about ${
      options.expectedWaitMs ?? 0
    } ms of work ahead`
    : `${options.queued} calls queued`;
  return {
    plugin,
    reason,
    message: `Cannot call ${
      callee(plugin, options.function)
    }: it is overloaded (${why}); retry after ${retryAfterSeconds} s`,
    retryAfterSeconds,
  };
}

/**
 * A call was refused because the plugin is busy: its queue is full, or the
 * call waited its whole queue budget. The plugin never saw the call, so this
 * is never the plugin's fault (it does not count toward quarantine). An HTTP
 * front end answers 503 with `Retry-After: <retryAfterSeconds>`.
 *
 * Message: `Cannot call function "f" of plugin "p": it is overloaded (256
 * calls queued); retry after 1 s`, or `… it is overloaded (waited 1000 ms in
 * its queue); retry after 2 s`.
 *
 * @example
 * ```ts
 * import { PluginOverloadedError } from "./errors.ts";
 * const e = new PluginOverloadedError("hello", { queued: 256, retryAfterSeconds: 1 });
 * console.log(e.reason, e.retryAfterSeconds); // queue-full 1
 * ```
 */
export class PluginOverloadedError extends PluginError {
  /** `queue-full`, `queue-wait` or `queue-timeout`. */
  readonly reason: OverloadReason;
  /** When a retry is likely to be admitted, in whole seconds (at least 1). */
  readonly retryAfterSeconds: number;
  /** Calls waiting in the plugin's queue when this one was refused. */
  readonly queued: number;
  /** For `queue-timeout`: how long the call waited, in ms. */
  readonly waitedMs: number | undefined;

  /** Creates the error for a call of `plugin` refused as overload. */
  constructor(plugin: string, options: PluginOverloadedErrorOptions) {
    const {
      reason: _r,
      queued: _q,
      waitedMs: _w,
      expectedWaitMs: _e,
      retryAfterSeconds: _s,
      ...rest
    } = options;
    const said = describeOverload(plugin, options);
    super(plugin, said.message, rest);
    this.name = "PluginOverloadedError";
    this.reason = said.reason;
    this.retryAfterSeconds = said.retryAfterSeconds;
    this.queued = options.queued;
    this.waitedMs = options.waitedMs;
  }
}

/**
 * A plugin asked the host for something its granted permissions do not cover.
 *
 * @example
 * ```ts
 * import { PermissionDeniedError } from "./errors.ts";
 * const e = new PermissionDeniedError("hello", "db:write", "db_exec DELETE FROM ticket");
 * console.log(e.message);
 * // Cannot run db_exec DELETE FROM ticket: plugin "hello" lacks permission "db:write"
 * ```
 */
export class PermissionDeniedError extends PluginError {
  /** The permission that would have allowed the action. */
  readonly permission: string;
  /** What the plugin attempted, in a short human-readable form. */
  readonly attempted: string;

  /** Creates the error: `plugin` needed `permission` to do `attempted`. */
  constructor(plugin: string, permission: string, attempted: string) {
    super(
      plugin,
      `Cannot run ${attempted}: plugin "${plugin}" lacks permission "${permission}"`,
    );
    this.name = "PermissionDeniedError";
    this.permission = permission;
    this.attempted = attempted;
  }
}

/**
 * A per-plugin quota the operator sets (see `host/quotas/`):
 *
 * - `hostCallsPerSecond`: host calls per second (a token bucket with a burst);
 * - `cpuMsPerMinute`: guest CPU milliseconds over the last minute;
 * - `concurrentCalls`: calls of the plugin in flight at once;
 * - `httpBytesPerMinute`: outbound HTTP request + response body bytes over
 *   the last minute;
 * - `emailsPerHour`: e-mails sent over the last hour;
 * - `dbStatementMs`: the longest one database statement may run.
 */
export type QuotaKind =
  | "hostCallsPerSecond"
  | "cpuMsPerMinute"
  | "concurrentCalls"
  | "httpBytesPerMinute"
  | "emailsPerHour"
  | "dbStatementMs";

/** Options of {@linkcode QuotaExceededError}. */
export interface QuotaExceededErrorOptions
  extends Omit<PluginErrorOptions, "fault"> {
  /** The quota that was exceeded. */
  quota: QuotaKind;
  /** Its limit (in the quota's unit: calls, ms, bytes, e-mails). */
  limit: number;
  /** When a retry may be admitted, in whole seconds (at least 1). */
  retryAfterSeconds: number;
  /**
   * What was refused, such as `http_request POST https://api.example.com/x`;
   * @default `call function "f" of plugin "p"`
   */
  attempted?: string;
}

/**
 * A plugin went over one of its quotas. A refused plugin call never reached
 * the plugin, and a refused host call is the host's decision, so this is
 * never the plugin's fault (it does not count toward quarantine). An HTTP
 * front end answers 429 with `Retry-After: <retryAfterSeconds>`; a guest
 * sees a refused host call as a host-call error, like a denial.
 *
 * Message: `Cannot call function "f" of plugin "p": it is over its quota
 * "concurrentCalls" (limit 4); retry after 1 s`.
 *
 * @example
 * ```ts
 * import { isPluginFault, QuotaExceededError } from "./errors.ts";
 * const e = new QuotaExceededError("hello", {
 *   quota: "emailsPerHour",
 *   limit: 10,
 *   retryAfterSeconds: 60,
 *   attempted: "send_email to a@example.com",
 * });
 * console.log(e.message);
 * // Cannot send_email to a@example.com: plugin "hello" is over its quota "emailsPerHour" (limit 10); retry after 60 s
 * isPluginFault(e); // false
 * ```
 */
export class QuotaExceededError extends PluginError {
  /** The quota that was exceeded. */
  readonly quota: QuotaKind;
  /** Its limit. */
  readonly limit: number;
  /** When a retry may be admitted, in whole seconds (at least 1). */
  readonly retryAfterSeconds: number;
  /** What was refused. */
  readonly attempted: string;

  /** Creates the error for `plugin`. */
  constructor(plugin: string, options: QuotaExceededErrorOptions) {
    const {
      quota,
      limit,
      retryAfterSeconds,
      attempted: what,
      ...rest
    } = options;
    const retry = Math.max(1, Math.ceil(retryAfterSeconds));
    const attempted = what ?? `call ${callee(plugin, options.function)}`;
    super(
      plugin,
      what === undefined
        ? `Cannot ${attempted}: it is over its quota "${quota}" (limit ${limit}); retry after ${retry} s`
        : `Cannot ${attempted}: plugin "${plugin}" is over its quota "${quota}" (limit ${limit}); retry after ${retry} s`,
      rest,
    );
    this.name = "QuotaExceededError";
    this.quota = quota;
    this.limit = limit;
    this.retryAfterSeconds = retry;
    this.attempted = attempted;
  }
}

/**
 * A plugin call would re-enter a plugin already on the call chain (a self
 * call or a cycle such as a → b → a). It fails at once instead of
 * deadlocking.
 */
export class PluginCallCycleError extends PluginError {
  /** The chain of plugins, outermost first, ending with the repeated one. */
  readonly chain: readonly string[];

  /** Creates the error for a call into `plugin` along `chain`. */
  constructor(plugin: string, chain: readonly string[]) {
    super(
      plugin,
      `Cannot call plugin "${plugin}": the call would form the cycle ${
        [...chain, plugin].map((p) => `"${p}"`).join(" -> ")
      }`,
    );
    this.name = "PluginCallCycleError";
    this.chain = chain;
  }
}

/** One problem found in a manifest, with its JSON path. */
export interface ManifestIssue {
  /** JSON path such as `routes[0].method` (empty for the whole manifest). */
  path: string;
  /** What is wrong there. */
  message: string;
}

/**
 * A manifest was refused. `issues` lists every problem with its JSON path.
 *
 * @example
 * ```ts
 * import { InvalidManifestError } from "./errors.ts";
 * const e = new InvalidManifestError([{ path: "name", message: "is required" }]);
 * console.log(e.message); // Cannot accept manifest: name: is required
 * ```
 */
export class InvalidManifestError extends Error {
  /** Every problem, each with its JSON path. */
  readonly issues: readonly ManifestIssue[];

  /** Creates the error from its list of issues. */
  constructor(
    issues: readonly ManifestIssue[],
    options: { cause?: unknown } = {},
  ) {
    super(
      `Cannot accept manifest: ${
        issues.map((i) => i.path ? `${i.path}: ${i.message}` : i.message).join(
          "; ",
        )
      }`,
      options.cause === undefined ? {} : { cause: options.cause },
    );
    this.name = "InvalidManifestError";
    this.issues = issues;
  }
}

/** Several errors raised by one operation (such as `shutdownAll`). */
export class AggregatePluginError extends Error {
  /** The individual errors. */
  readonly errors: readonly Error[];

  /** Creates the error with a `prefix` and the individual errors. */
  constructor(prefix: string, errors: readonly Error[]) {
    super(`${prefix}: [${errors.map((e) => e.message).join("; ")}]`);
    this.name = "AggregatePluginError";
    this.errors = errors;
  }
}

/**
 * Returns the message of an unknown thrown value.
 *
 * @example
 * ```ts
 * import { errorText } from "./errors.ts";
 * errorText(new Error("x")); // "x"
 * ```
 */
export function errorText(e: unknown): string {
  return e instanceof Error ? e.message : String(e);
}

/** A service the host was not configured with was asked for. */
export class ServiceUnavailableError extends Error {
  /** The service, such as `database`. */
  readonly service: string;

  /** Creates the error for `service`. */
  constructor(service: string) {
    super(`Cannot use ${service}: the host has no ${service} configured`);
    this.name = "ServiceUnavailableError";
    this.service = service;
  }
}

/**
 * An Extism plugin's `var_set` was refused: its vars (keys plus values)
 * would exceed their cap (`limit` bytes; 0 turns vars off). Nothing was
 * stored. Raised by the runtime's cap and by a store's own check.
 *
 * @example
 * ```ts
 * import { ExtismVarLimitError } from "./errors.ts";
 * const e = new ExtismVarLimitError({ key: "n", limit: 8, total: 12 });
 * console.log(e.message); // Cannot set var "n": the plugin's vars would take 12 bytes, over the limit of 8
 * ```
 */
export class ExtismVarLimitError extends Error {
  /** The plugin, when the thrower knows it. */
  readonly plugin: string | undefined;
  /** The var being set. */
  readonly key: string;
  /** The cap in bytes. */
  readonly limit: number;

  /** Creates the error; `total` is the size the set would have reached. */
  constructor(
    options: { plugin?: string; key: string; limit: number; total?: number },
  ) {
    const { plugin, key, limit, total } = options;
    const who = plugin ? ` of plugin "${plugin}"` : "";
    const why = limit === 0
      ? "vars are disabled for this plugin"
      : total === undefined
      ? `the plugin's vars would exceed the limit of ${limit} bytes`
      : `the plugin's vars would take ${total} bytes, over the limit of ${limit}`;
    super(`Cannot set var "${key}"${who}: ${why}`);
    this.name = "ExtismVarLimitError";
    this.plugin = plugin;
    this.key = key;
    this.limit = limit;
  }
}
