/**
 * Admission control of plugin work: {@linkcode AdmissionGate} counts the
 * plugin requests in flight server-wide and refuses one more beyond its
 * limit, at once and without a queue (the runtimes keep their own bounded
 * queues behind it). A refused request is answered `503` with `Retry-After`
 * ({@linkcode AdmissionGate.overloaded}) before it reaches the plugin, so an
 * overload never becomes plugin timeouts, and never counts against the
 * plugin's quarantine.
 *
 * @module
 */

import {
  OVERLOAD_RETRY_AFTER_SEC,
  type UnavailableBody,
  unavailableResponse,
} from "./unavailable.ts";
import { BoundedCache } from "../model/bounded_cache.ts";

/** Options of {@linkcode AdmissionGate}. */
export interface AdmissionGateOptions {
  /** Most plugin requests in flight at once (at least 1). @default 1024 */
  maxInFlight?: number;
  /** `Retry-After` of a refusal, in seconds. @default 1 */
  retryAfterSec?: number;
}

/** What {@linkcode AdmissionGate.stats} reports (shown by `/healthz`). */
export interface AdmissionStats {
  /** Plugin requests in flight now. */
  in_flight: number;
  /** The limit. */
  max_in_flight: number;
  /** Plugin requests refused with 503 since the start. */
  shed_total: number;
}

/**
 * A server-wide limit on plugin requests in flight.
 *
 * @example
 * ```ts
 * import { AdmissionGate } from "./admission.ts";
 * const gate = new AdmissionGate({ maxInFlight: 1 });
 * gate.tryEnter(); // true
 * gate.tryEnter(); // false: answer gate.overloaded()
 * gate.leave();
 * gate.stats(); // { in_flight: 0, max_in_flight: 1, shed_total: 1 }
 * ```
 */
export class AdmissionGate {
  readonly #max: number;
  readonly #retryAfterSec: number;
  #inFlight = 0;
  #shed = 0;
  // A refusal is a clone of a response built once per set of extra headers
  // (a clone copies no header through validation: ~10x cheaper than a new
  // Response); `run` settles with two functions bound once.
  readonly #refusals = new BoundedCache<object | undefined, Response>(8);
  readonly #settled = (res: Response): Response => {
    this.leave();
    return res;
  };
  readonly #failed = (e: unknown): never => {
    this.leave();
    throw e;
  };

  /** Creates a gate; throws `RangeError` for a limit below 1. */
  constructor(options: AdmissionGateOptions = {}) {
    const max = options.maxInFlight ?? 1024;
    if (!Number.isSafeInteger(max) || max < 1) {
      throw new RangeError(
        `Cannot limit plugin requests to ${max}: the limit must be an integer of at least 1`,
      );
    }
    this.#max = max;
    this.#retryAfterSec = options.retryAfterSec ?? OVERLOAD_RETRY_AFTER_SEC;
  }

  /**
   * Takes a place and returns true, or counts a refusal and returns false
   * when {@linkcode AdmissionGateOptions.maxInFlight} requests are in flight.
   * Every `true` must be followed by one {@linkcode AdmissionGate.leave}.
   */
  tryEnter(): boolean {
    if (this.#inFlight >= this.#max) {
      this.#shed++;
      return false;
    }
    this.#inFlight++;
    return true;
  }

  /**
   * Whether every place is taken now (the next
   * {@linkcode AdmissionGate.tryEnter} would refuse). Counts nothing.
   */
  get full(): boolean {
    return this.#inFlight >= this.#max;
  }

  /**
   * Counts one refusal and returns {@linkcode AdmissionGate.overloaded}: for
   * a caller that saw {@linkcode AdmissionGate.full} and refuses before
   * doing any other work for the request.
   */
  refuse(extraHeaders?: Readonly<Record<string, string>>): Response {
    this.#shed++;
    return this.overloaded(extraHeaders);
  }

  /** Gives back a place taken by {@linkcode AdmissionGate.tryEnter}. */
  leave(): void {
    if (this.#inFlight > 0) this.#inFlight--;
  }

  /**
   * Runs `work` in a place, or returns {@linkcode AdmissionGate.overloaded}
   * at once when none is free.
   */
  run(work: () => Promise<Response>): Promise<Response> {
    if (!this.tryEnter()) return Promise.resolve(this.overloaded());
    let pending: Promise<Response>;
    try {
      pending = work();
    } catch (e) {
      this.leave();
      return Promise.reject(e);
    }
    return pending.then(this.#settled, this.#failed);
  }

  /** The 503 body of a refusal. */
  overloadedBody(): UnavailableBody {
    return {
      error: "overloaded",
      message:
        `Cannot serve the request now: ${this.#max} plugin requests are in flight (the server's limit)`,
      retry_after_sec: this.#retryAfterSec,
    };
  }

  /**
   * The 503 answer to a refused request (with `Retry-After`, as
   * `unavailableResponse` builds it), plus `extraHeaders` if given.
   */
  overloaded(extraHeaders?: Readonly<Record<string, string>>): Response {
    // Keyed by the object: callers pass shared constants (one passing a
    // new object each time only pays for the build, and cannot fill it).
    return this.#refusals.get(extraHeaders, () => {
      // unavailableResponse's body and headers, plus the extra ones (set in
      // the constructor: a template whose `headers` was read clones slowly).
      const body = this.overloadedBody();
      const base = Object.fromEntries(unavailableResponse(body).headers);
      return new Response(JSON.stringify(body), {
        status: 503,
        headers: { ...base, ...extraHeaders },
      });
    }).clone();
  }

  /** Counters for `/healthz`. */
  stats(): AdmissionStats {
    return {
      in_flight: this.#inFlight,
      max_in_flight: this.#max,
      shed_total: this.#shed,
    };
  }
}
