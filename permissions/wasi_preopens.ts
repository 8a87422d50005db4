/**
 * WASI preopened directories for a WASM plugin, from its `fs:` grants. Each
 * grant becomes one preopen of a directory inside the plugin's data
 * directory; the guest sees it at `/data/<path>` (`/data` for the whole data
 * directory). `fs:write` preopens are writable, `fs:read` ones read-only; a
 * read grant inside a write grant's directory adds nothing. No grant, no
 * preopen: the WASI layer then has no files at all.
 *
 * @module
 */

import type { Permission } from "./grammar.ts";
import { parsePermission } from "./grammar.ts";
import { fsPath } from "./deno_flags.ts";

/** One preopened directory. */
export interface WasiPreopen {
  /** The path the guest sees, such as `/data/cache`. */
  guestPath: string;
  /** The absolute host directory. */
  hostPath: string;
  /** Whether writes (create, write, rename, unlink, mkdir) are refused. */
  readOnly: boolean;
}

/** Options of {@linkcode wasiPreopensFor}. */
export interface WasiPreopensOptions {
  /** The plugin's effective permissions. */
  grants: readonly (string | Permission)[];
  /** The plugin's data directory (absolute). */
  dataDir: string;
  /** Where the data directory appears in the guest. @default "/data" */
  guestRoot?: string;
}

/**
 * Returns the preopens for a WASM plugin, sorted by guest path; the WASI
 * layer must still refuse paths that escape a preopen (`..`, symlinks).
 *
 * @example
 * ```ts
 * import { wasiPreopensFor } from "./wasi_preopens.ts";
 * wasiPreopensFor({ grants: ["fs:read:assets", "fs:write:cache", "db:read"], dataDir: "/srv/p/data" });
 * // [{ guestPath: "/data/assets", hostPath: "/srv/p/data/assets", readOnly: true },
 * //  { guestPath: "/data/cache", hostPath: "/srv/p/data/cache", readOnly: false }]
 * ```
 */
export function wasiPreopensFor(options: WasiPreopensOptions): WasiPreopen[] {
  const root = (options.guestRoot ?? "/data").replace(/\/+$/, "") || "/";
  const perms = options.grants.map((g) =>
    typeof g === "string" ? parsePermission(g) : g
  );
  const fs = perms.filter((p) => p.kind === "fs");
  const writable = fs.filter((p) => p.access === "write").map((p) => p.path);
  const within = (dir: string, path: string) =>
    dir === "." || path === dir || path.startsWith(`${dir}/`);
  const byGuest = new Map<string, WasiPreopen>();
  for (const p of fs) {
    if (p.kind !== "fs") continue;
    const readOnly = p.access === "read";
    if (readOnly && writable.some((w) => within(w, p.path))) continue;
    const guestPath = p.path === "."
      ? root
      : `${root === "/" ? "" : root}/${p.path}`;
    const prev = byGuest.get(guestPath);
    if (prev && !prev.readOnly) continue;
    byGuest.set(guestPath, {
      guestPath,
      hostPath: fsPath(options.dataDir, p),
      readOnly,
    });
  }
  return [...byGuest.values()].sort((a, b) =>
    a.guestPath < b.guestPath ? -1 : 1
  );
}
