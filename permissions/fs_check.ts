/**
 * Checks that the directories an `fs:` grant exposes (as Deno flags or WASI
 * preopens) stay inside the plugin's data directory on disk. Deno follows a
 * symlink that already exists inside an allowed directory (measured on
 * 2.9.6: `--allow-read=/sandbox` read `/sandbox/link → /etc/passwd`), so the
 * host looks for symlinks that lead outside before it starts the plugin.
 *
 * @module
 */

import { isAbsolute, join, relative, resolve } from "node:path";
import { parsePermission, type Permission } from "./grammar.ts";

/** A path that leads outside the data directory. */
export interface FsEscape {
  /** The path found (a symlink, or a granted directory itself). */
  path: string;
  /** Where it leads (its real path), or the link text when it dangles. */
  target: string;
}

/** Options of {@linkcode findFsEscapes}. */
export interface FindFsEscapesOptions {
  /** The plugin's effective permissions. */
  grants: readonly (string | Permission)[];
  /** The plugin's data directory (absolute). */
  dataDir: string;
  /** Entries visited at most before giving up with an error. @default 100000 */
  maxEntries?: number;
}

/** A granted directory holds a path that leads outside the data directory. */
export class FsEscapeError extends Error {
  /** What was found. */
  readonly escapes: readonly FsEscape[];

  /** Creates the error. */
  constructor(escapes: readonly FsEscape[]) {
    super(
      `Cannot expose the plugin's files: ${
        escapes.map((e) => `"${e.path}" leads to "${e.target}"`).join(", ")
      }, outside its data directory`,
    );
    this.name = "FsEscapeError";
    this.escapes = escapes;
  }
}

function inside(parent: string, child: string): boolean {
  const r = relative(parent, child);
  return r === "" || (!r.startsWith("..") && !isAbsolute(r));
}

/**
 * Walks every directory an `fs:` grant names (those that exist) and returns
 * each symlink — and each granted directory — whose real path lies outside
 * the real data directory. Symlinks that stay inside are fine. A dangling
 * symlink counts as an escape unless its text resolves inside.
 *
 * @example
 * ```ts ignore
 * import { findFsEscapes } from "./fs_check.ts";
 * const escapes = await findFsEscapes({ grants: ["fs:read:."], dataDir: "/srv/p/data" });
 * if (escapes.length) throw new Error("refusing to start the plugin");
 * ```
 */
export async function findFsEscapes(
  options: FindFsEscapesOptions,
): Promise<FsEscape[]> {
  const root = await Deno.realPath(resolve(options.dataDir));
  const max = options.maxEntries ?? 100_000;
  const perms = options.grants.map((g) =>
    typeof g === "string" ? parsePermission(g) : g
  );
  const dirs = [
    ...new Set(
      perms.flatMap((p) =>
        p.kind === "fs" ? [p.path === "." ? root : join(root, p.path)] : []
      ),
    ),
  ];
  const escapes: FsEscape[] = [];
  let visited = 0;
  const walk = async (dir: string): Promise<void> => {
    for await (const entry of Deno.readDir(dir)) {
      if (++visited > max) {
        throw new RangeError(
          `Cannot check "${root}": more than ${max} entries`,
        );
      }
      const path = join(dir, entry.name);
      if (entry.isSymlink) {
        let target: string;
        try {
          target = await Deno.realPath(path);
        } catch {
          const text = await Deno.readLink(path);
          target = resolve(dir, text);
          if (!inside(root, target)) escapes.push({ path, target: text });
          continue;
        }
        if (!inside(root, target)) escapes.push({ path, target });
      } else if (entry.isDirectory) {
        await walk(path);
      }
    }
  };
  for (const dir of dirs) {
    let real: string;
    try {
      real = await Deno.realPath(dir);
    } catch (e) {
      if (e instanceof Deno.errors.NotFound) continue;
      throw e;
    }
    if (!inside(root, real)) {
      escapes.push({ path: dir, target: real });
      continue;
    }
    if ((await Deno.stat(real)).isDirectory) await walk(real);
  }
  return escapes;
}

/**
 * Throws {@linkcode FsEscapeError} when {@linkcode findFsEscapes} finds
 * anything.
 *
 * @example
 * ```ts ignore
 * import { assertFsContained } from "./fs_check.ts";
 * await assertFsContained({ grants: ["fs:write:cache"], dataDir: "/srv/p/data" });
 * ```
 */
export async function assertFsContained(
  options: FindFsEscapesOptions,
): Promise<void> {
  const escapes = await findFsEscapes(options);
  if (escapes.length > 0) throw new FsEscapeError(escapes);
}
