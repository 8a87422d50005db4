/**
 * The per-plugin quota limits: their names, units, generous defaults, the
 * environment variables that set the defaults, and the one validator used
 * for the config file, the environment and the admin API.
 *
 * A limit of `0` means "no limit". `hostCallBurst` is the bucket size of
 * `hostCallsPerSecond` (at least the rate).
 *
 * @module
 */

import type { QuotaKind } from "../model/errors.ts";

export type { QuotaKind };

/** A limit's key: each {@linkcode QuotaKind}, plus the host-call burst. */
export type QuotaKey = QuotaKind | "hostCallBurst";

/** Every limit of one plugin (0 = no limit). */
export type QuotaLimits = Record<QuotaKey, number>;

/** The quota kinds, in a fixed order (for pages and the API). */
export const QUOTA_KINDS: readonly QuotaKind[] = [
  "hostCallsPerSecond",
  "cpuMsPerMinute",
  "concurrentCalls",
  "httpBytesPerMinute",
  "emailsPerHour",
  "dbStatementMs",
];

/** Every limit key, in a fixed order: the kinds with the burst after the rate. */
export const QUOTA_KEYS: readonly QuotaKey[] = [
  "hostCallsPerSecond",
  "hostCallBurst",
  "cpuMsPerMinute",
  "concurrentCalls",
  "httpBytesPerMinute",
  "emailsPerHour",
  "dbStatementMs",
];

/**
 * The built-in defaults: generous, so that a well-behaved plugin never
 * meets them; `dbStatementMs` is the host's statement cap of before.
 */
export const DEFAULT_QUOTA_LIMITS: Readonly<QuotaLimits> = Object.freeze({
  hostCallsPerSecond: 1000,
  hostCallBurst: 2000,
  cpuMsPerMinute: 60_000,
  concurrentCalls: 256,
  httpBytesPerMinute: 100 * 1024 * 1024,
  emailsPerHour: 1000,
  dbStatementMs: 5000,
});

/** Each limit's unit, for messages and pages. */
export const QUOTA_UNITS: Readonly<Record<QuotaKey, string>> = Object.freeze({
  hostCallsPerSecond: "calls/s",
  hostCallBurst: "calls",
  cpuMsPerMinute: "ms/min",
  concurrentCalls: "calls",
  httpBytesPerMinute: "bytes/min",
  emailsPerHour: "e-mails/h",
  dbStatementMs: "ms",
});

/**
 * The environment variable that sets a default: `GOATKIT_QUOTA_` and the
 * key in upper snake case.
 *
 * @example
 * ```ts
 * import { quotaEnvName } from "./quota_limits.ts";
 * quotaEnvName("hostCallsPerSecond"); // "GOATKIT_QUOTA_HOST_CALLS_PER_SECOND"
 * ```
 */
export function quotaEnvName(key: QuotaKey): string {
  return `GOATKIT_QUOTA_${key.replace(/[A-Z]/g, (c) => `_${c}`).toUpperCase()}`;
}

/** Whether `key` is a limit key. */
export function isQuotaKey(key: string): key is QuotaKey {
  return (QUOTA_KEYS as readonly string[]).includes(key);
}

/**
 * Reads one limit value: a whole number ≥ 0 (a decimal string too). Throws
 * a `RangeError` naming `where` otherwise.
 */
export function parseQuotaValue(raw: unknown, where: string): number {
  const n = typeof raw === "string" && raw.trim() !== ""
    ? Number(raw.trim())
    : raw;
  if (typeof n !== "number" || !Number.isSafeInteger(n) || n < 0) {
    throw new RangeError(
      `Cannot use quota ${where}: ${
        JSON.stringify(raw) ?? String(raw)
      } is not a whole number ≥ 0 (0 = no limit)`,
    );
  }
  return n;
}

/**
 * Reads a partial set of limits (`{"concurrentCalls": 4}`) from the config
 * file or the API. `null` values are left out (no override). Throws a
 * `TypeError` for a non-object or an unknown key and a `RangeError` for a
 * bad value, each naming `where`.
 *
 * @example
 * ```ts
 * import { parseQuotaLimits } from "./quota_limits.ts";
 * parseQuotaLimits({ concurrentCalls: 4, emailsPerHour: null }, "quotas.default");
 * // { concurrentCalls: 4 }
 * ```
 */
export function parseQuotaLimits(
  raw: unknown,
  where: string,
): Partial<QuotaLimits> {
  if (raw === undefined || raw === null) return {};
  if (typeof raw !== "object" || Array.isArray(raw)) {
    throw new TypeError(`Cannot use quotas ${where}: not an object`);
  }
  const out: Partial<QuotaLimits> = {};
  for (const [key, value] of Object.entries(raw)) {
    if (!isQuotaKey(key)) {
      throw new TypeError(
        `Cannot use quota ${where}.${key}: unknown quota (known: ${
          QUOTA_KEYS.join(", ")
        })`,
      );
    }
    if (value === null) continue;
    out[key] = parseQuotaValue(value, `${where}.${key}`);
  }
  return out;
}

/**
 * The defaults the environment sets (`GOATKIT_QUOTA_<KEY>`); throws a
 * `RangeError` naming the variable for a bad value.
 */
export function quotaLimitsFromEnv(
  env: Record<string, string | undefined>,
): Partial<QuotaLimits> {
  const out: Partial<QuotaLimits> = {};
  for (const key of QUOTA_KEYS) {
    const name = quotaEnvName(key);
    const raw = Object.hasOwn(env, name) ? env[name] : undefined;
    if (raw === undefined || raw === "") continue;
    out[key] = parseQuotaValue(raw, `${name}`);
  }
  return out;
}
