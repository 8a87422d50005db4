/**
 * {@link nodeLutimes}: sets a symlink's own times through `node:fs`, for the
 * `lutimes` option of `DenoWasiFs` (Deno has no `lutime`). Kept apart so
 * that loading `node:fs` (about 100 ms in a fresh worker here) is only paid by
 * those who want it.
 *
 * @module
 */

import { lutimesSync } from "node:fs";

/**
 * Sets the access and modification times (ms since the epoch) of the symlink
 * at `linkPath` itself, without following it.
 *
 * @example
 * ```ts
 * import { DenoWasiFs } from "./fs.ts";
 * import { nodeLutimes } from "./node_lutimes.ts";
 * const dir = Deno.makeTempDirSync();
 * const fs = new DenoWasiFs([{ hostPath: dir }], { lutimes: nodeLutimes });
 * Deno.removeSync(dir, { recursive: true });
 * ```
 */
export function nodeLutimes(
  linkPath: string,
  atimeMs: number,
  mtimeMs: number,
): void {
  lutimesSync(linkPath, atimeMs / 1000, mtimeMs / 1000);
}
