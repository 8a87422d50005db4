/**
 * Paths as the caller means them: relative paths resolve against the
 * directory `gk` was started from, which is `INIT_CWD` under `deno task`
 * (Deno runs tasks in the folder of their `deno.json`), else the process's
 * working directory. Also where keys live by default.
 *
 * @module
 */

import { existsSync } from "node:fs";
import { isAbsolute, join, relative, resolve } from "node:path";
import { CliError } from "./errors.ts";
import type { CliIO } from "./io.ts";

const CONFIG_FILES = ["deno.json", "deno.jsonc", "package.json"];

/**
 * The caller's working directory. `deno task` starts a task in the folder
 * of its config file and sets `INIT_CWD` to the caller's directory, so
 * `INIT_CWD` wins when it is set and the process runs in a folder holding
 * `deno.json`, `deno.jsonc` or `package.json`. Elsewhere an `INIT_CWD`
 * can only be inherited from an unrelated parent task, and is ignored.
 *
 * @example
 * ```ts
 * import { callerCwd } from "./paths.ts";
 * const io = { out() {}, err() {}, env: () => undefined, cwd: () => "/tmp" };
 * callerCwd(io); // "/tmp"
 * ```
 */
export function callerCwd(io: CliIO): string {
  const cwd = io.cwd?.() ?? Deno.cwd();
  const init = io.env("INIT_CWD");
  if (!init || !isAbsolute(init)) return cwd;
  const inTaskFolder = CONFIG_FILES.some((f) => existsSync(join(cwd, f)));
  return inTaskFolder ? init : cwd;
}

/** `path` resolved against the caller's working directory. */
export function resolveFrom(io: CliIO, path: string): string {
  return resolve(callerCwd(io), path);
}

/**
 * `path` as the caller would type it: relative to their working directory
 * when it lies inside it, else absolute.
 */
export function displayPath(io: CliIO, path: string): string {
  const rel = relative(callerCwd(io), path);
  if (rel === "") return ".";
  return !rel.startsWith("..") && !isAbsolute(rel) ? rel : path;
}

/**
 * The default folder of signing keys, outside any repository:
 * `$XDG_CONFIG_HOME/goatkit/keys`, else `~/.config/goatkit/keys`.
 *
 * @example
 * ```ts
 * import { defaultKeyDir } from "./paths.ts";
 * const env: Record<string, string> = { HOME: "/home/ana" };
 * const io = { out() {}, err() {}, env: (n: string) => env[n] };
 * defaultKeyDir(io); // "/home/ana/.config/goatkit/keys"
 * ```
 */
export function defaultKeyDir(io: CliIO): string {
  const xdg = io.env("XDG_CONFIG_HOME");
  if (xdg && isAbsolute(xdg)) return join(xdg, "goatkit", "keys");
  const home = io.env("HOME") ?? io.env("USERPROFILE");
  if (!home) {
    throw new CliError(
      "Cannot find the key folder: neither XDG_CONFIG_HOME nor HOME is set (pass -o <prefix>)",
    );
  }
  return join(home, ".config", "goatkit", "keys");
}

/** Whether `path` exists (any kind of file). */
export async function exists(path: string): Promise<boolean> {
  try {
    await Deno.lstat(path);
    return true;
  } catch (e) {
    if (e instanceof Deno.errors.NotFound) return false;
    throw e;
  }
}
