/**
 * The small part of semantic versioning the host needs: validate and compare.
 *
 * @module
 */

/** Matches a semantic version such as `1.2.3`, `1.0.0-rc.1+build.5`. */
export const SEMVER_REGEXP =
  /^(0|[1-9]\d*)\.(0|[1-9]\d*)\.(0|[1-9]\d*)(?:-((?:0|[1-9]\d*|\d*[a-zA-Z-][0-9a-zA-Z-]*)(?:\.(?:0|[1-9]\d*|\d*[a-zA-Z-][0-9a-zA-Z-]*))*))?(?:\+([0-9a-zA-Z-]+(?:\.[0-9a-zA-Z-]+)*))?$/;

/**
 * Compares two semantic versions: negative when `a < b`, 0 when equal,
 * positive when `a > b`. Build metadata is ignored; a pre-release ranks
 * below its release.
 *
 * @example
 * ```ts
 * import { compareSemver } from "./_semver.ts";
 * compareSemver("1.2.0", "1.10.0") < 0; // true
 * ```
 */
export function compareSemver(a: string, b: string): number {
  const pa = SEMVER_REGEXP.exec(a);
  const pb = SEMVER_REGEXP.exec(b);
  if (!pa || !pb) {
    throw new TypeError(
      `Cannot compare "${a}" and "${b}": not semantic versions`,
    );
  }
  for (let i = 1; i <= 3; i++) {
    const d = Number(pa[i]) - Number(pb[i]);
    if (d !== 0) return d;
  }
  const ra = pa[4];
  const rb = pb[4];
  if (ra === undefined || rb === undefined) {
    return ra === rb ? 0 : ra === undefined ? 1 : -1;
  }
  const xa = ra.split(".");
  const xb = rb.split(".");
  for (let i = 0; i < Math.max(xa.length, xb.length); i++) {
    const ia = xa[i];
    const ib = xb[i];
    if (ia === undefined) return -1;
    if (ib === undefined) return 1;
    const na = /^\d+$/.test(ia);
    const nb = /^\d+$/.test(ib);
    if (na && nb) {
      const d = Number(ia) - Number(ib);
      if (d !== 0) return d;
    } else if (na !== nb) {
      return na ? -1 : 1;
    } else if (ia !== ib) {
      return ia < ib ? -1 : 1;
    }
  }
  return 0;
}
