/**
 * Deno flags for a subprocess (gRPC) plugin written in TypeScript, from its
 * effective permissions. Deny by default: no flag grants more than a grant
 * names, and some grants deliberately map to nothing.
 *
 * Mapping (decisions documented here and in the report):
 * - always `--no-prompt`; never `--allow-run`, `--allow-ffi`, `--allow-env`,
 *   `--allow-sys`, `--allow-import` or `-A`;
 * - `http:` grants → nothing. All plugin egress goes through the guarded
 *   HostAPI (`httpRequest`, the SDK's `hostFetch`), whose egress client
 *   checks every resolved address and redirect hop. Deno's `--allow-net`
 *   compares host strings and cannot: a granted name that resolves to
 *   127.0.0.1 or a metadata address would be reachable directly, and its
 *   wildcard also matches the apex domain. (The plugin's OS sandbox has
 *   no network interface anyway; see `runtimes/grpc/sandbox.ts`.);
 * - `fs:read:<p>` → `--allow-read=<dataDir>/<p>`; `fs:write:<p>` →
 *   `--allow-read` and `--allow-write` on `<dataDir>/<p>`;
 * - the socket directory → read and write, and each socket path →
 *   `--allow-net=unix:<path>` (Deno 2.9.6 needs all three to listen on or
 *   connect to a Unix socket): the only `--allow-net` entries there are;
 * - `--no-config` (or `--config=<file>` when given, which must lie outside
 *   every writable path), and `--deny-write` on `deno.json`, `deno.jsonc`,
 *   `deno.lock`, `package.json`, `node_modules` and `import_map.json` in each
 *   writable directory, so a plugin cannot plant a config that grants it more
 *   at its next start.
 *
 * @module
 */

import { isAbsolute, join, relative, resolve, sep } from "node:path";
import type { FsPermission, Permission } from "./grammar.ts";
import { parsePermission } from "./grammar.ts";

/** Options of {@linkcode denoFlagsFor}. */
export interface DenoFlagsOptions {
  /** The plugin's effective permissions (strings or parsed). */
  grants: readonly (string | Permission)[];
  /** The plugin's data directory (absolute); `fs:` paths are inside it. */
  dataDir: string;
  /** Directory holding the plugin's sockets (absolute); read and write. */
  socketDir?: string;
  /** Unix socket paths the plugin listens on or connects to (inside `socketDir`). */
  socketPaths?: readonly string[];
  /** Directory with the plugin's code (read only), when module loading needs it. */
  codeDir?: string;
  /** A config file to use instead of `--no-config`; must not be writable by the plugin. */
  configFile?: string;
}

/** A grant or option that cannot be mapped safely. */
export class DenoFlagsError extends Error {
  /** Creates the error. */
  constructor(message: string) {
    super(message);
    this.name = "DenoFlagsError";
  }
}

const PROTECTED_NAMES = [
  "deno.json",
  "deno.jsonc",
  "deno.lock",
  "package.json",
  "node_modules",
  "import_map.json",
];

function inside(parent: string, child: string): boolean {
  const r = relative(parent, child);
  return r === "" || (!r.startsWith("..") && !isAbsolute(r));
}

/**
 * Returns the `deno run` flags for a subprocess plugin. See the module doc
 * for the mapping.
 *
 * @example
 * ```ts
 * import { denoFlagsFor } from "./deno_flags.ts";
 * denoFlagsFor({
 *   grants: ["http:api.example.com", "http:external", "fs:write:cache"],
 *   dataDir: "/srv/plugins/hello/data",
 * });
 * // ["--no-prompt", "--no-config",
 * //  "--allow-read=/srv/plugins/hello/data/cache", "--allow-write=/srv/plugins/hello/data/cache",
 * //  "--deny-write=/srv/plugins/hello/data/cache/deno.json,…"]
 * ```
 */
export function denoFlagsFor(options: DenoFlagsOptions): string[] {
  const { dataDir } = options;
  if (!isAbsolute(dataDir)) {
    throw new DenoFlagsError(
      `Cannot build Deno flags: "dataDir" must be absolute, got "${dataDir}"`,
    );
  }
  const perms = options.grants.map((g) =>
    typeof g === "string" ? parsePermission(g) : g
  );
  const net = new Set<string>();
  const read = new Set<string>();
  const write = new Set<string>();
  for (const p of perms) {
    if (p.kind === "fs") {
      const path = fsPath(dataDir, p);
      read.add(path);
      if (p.access === "write") write.add(path);
    }
  }
  if (options.socketDir) {
    if (!isAbsolute(options.socketDir)) {
      throw new DenoFlagsError(
        `Cannot build Deno flags: "socketDir" must be absolute, got "${options.socketDir}"`,
      );
    }
    read.add(resolve(options.socketDir));
    write.add(resolve(options.socketDir));
  }
  for (const s of options.socketPaths ?? []) {
    const path = resolve(s);
    if (!options.socketDir || !inside(resolve(options.socketDir), path)) {
      throw new DenoFlagsError(
        `Cannot build Deno flags: socket "${s}" is not inside the socket directory`,
      );
    }
    if (/[,]/.test(path)) {
      throw new DenoFlagsError(
        `Cannot build Deno flags: socket path "${s}" contains a comma`,
      );
    }
    net.add(`unix:${path}`);
  }
  if (options.codeDir) read.add(resolve(options.codeDir));
  for (const w of [...read, ...write]) {
    if (w.includes(",")) {
      throw new DenoFlagsError(
        `Cannot build Deno flags: path "${w}" contains a comma, which Deno flags cannot express`,
      );
    }
  }

  const flags = ["--no-prompt"];
  if (options.configFile) {
    const cfg = resolve(options.configFile);
    for (const w of write) {
      if (inside(w, cfg)) {
        throw new DenoFlagsError(
          `Cannot build Deno flags: config file "${cfg}" lies inside writable path "${w}"`,
        );
      }
    }
    flags.push(`--config=${cfg}`);
  } else {
    flags.push("--no-config");
  }
  if (net.size > 0) flags.push(`--allow-net=${[...net].sort().join(",")}`);
  if (read.size > 0) flags.push(`--allow-read=${[...read].sort().join(",")}`);
  if (write.size > 0) {
    flags.push(`--allow-write=${[...write].sort().join(",")}`);
    const denied = [...write].sort().flatMap((w) =>
      PROTECTED_NAMES.map((n) => join(w, n))
    );
    flags.push(`--deny-write=${denied.join(",")}`);
  }
  return flags;
}

/** The absolute host path of an `fs:` grant inside `dataDir`. */
export function fsPath(dataDir: string, p: FsPermission): string {
  const root = resolve(dataDir);
  const path = p.path === "." ? root : resolve(root, p.path);
  if (!inside(root, path)) {
    throw new DenoFlagsError(
      `Cannot map "${p.text}" to a path: it points outside the data directory`,
    );
  }
  return path.endsWith(sep) && path !== sep ? path.slice(0, -1) : path;
}
