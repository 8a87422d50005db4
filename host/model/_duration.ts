/**
 * Go-style duration strings (`30s`, `5m`, `1h30m`, `250ms`), as GoatFlow's
 * job `timeout` uses them.
 *
 * @module
 */

const UNIT_MS: Record<string, number> = {
  ns: 1e-6,
  us: 1e-3,
  "µs": 1e-3,
  ms: 1,
  s: 1000,
  m: 60_000,
  h: 3_600_000,
};

const DURATION_REGEXP = /^(?:\d+(?:\.\d+)?(?:ns|us|µs|ms|s|m|h))+$/;
const PART_REGEXP = /(\d+(?:\.\d+)?)(ns|us|µs|ms|s|m|h)/g;

/**
 * Parses a Go duration string into milliseconds; `undefined` when the text
 * is not a duration.
 *
 * @example
 * ```ts
 * import { parseDuration } from "./_duration.ts";
 * parseDuration("1m30s"); // 90000
 * parseDuration("soon"); // undefined
 * ```
 */
export function parseDuration(text: string): number | undefined {
  if (!DURATION_REGEXP.test(text)) return undefined;
  let ms = 0;
  for (const m of text.matchAll(PART_REGEXP)) {
    ms += Number(m[1]) * UNIT_MS[m[2]!]!;
  }
  return ms;
}
