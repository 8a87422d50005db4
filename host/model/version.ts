/**
 * The host's own version, compared with a manifest's `min_host_version` and
 * sent to gRPC plugins at `Init`. Kept equal to `deno.json`'s `version`.
 *
 * @module
 */

import { compareSemver } from "./_semver.ts";

/** This host's semantic version. */
export const HOST_VERSION = "0.1.0";

/**
 * Compares two semantic versions (such as manifest versions): negative when
 * `a < b`, 0 when equal, positive when `a > b`. Build metadata is ignored;
 * a pre-release ranks below its release. Throws a `TypeError` when either is
 * not a semantic version.
 *
 * @example
 * ```ts
 * import { compareVersions } from "./version.ts";
 * compareVersions("1.0.0", "2.0.0") < 0; // true: a downgrade
 * ```
 */
export function compareVersions(a: string, b: string): number {
  return compareSemver(a, b);
}
