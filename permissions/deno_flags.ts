/**
 * Deno flags for a subprocess (gRPC) plugin written in TypeScript, from its
 * effective permissions. Deny by default: no flag grants more than a grant
 * names, and some grants deliberately map to nothing.
 *
 * Mapping (decisions documented here and in the report):
 * - always `--no-prompt`; never `--allow-run`, `--allow-ffi`, `--allow-env`,
 *   `--allow-sys`, `--allow-import` or `-A`;
 * - `http:<name>` and `http:<ip>` (exact) → `--allow-net=<host>:<port>` with
 *   the ports the grant allows (80 and 443 when none is named). Deno compares
 *   host strings literally, so `http:localhost` allows `localhost` and not
 *   `127.0.0.1`; this is what the grant says;
 * - `http:*.example.com` → nothing: Deno's wildcard also matches the apex
 *   `example.com`, which the grant does not name; the plugin uses the
 *   HostAPI's `httpRequest` for those hosts;
 * - `http:external` → nothing: `--allow-net` cannot express "public
 *   addresses only" (a granted name may resolve to 127.0.0.1 or a metadata
 *   address), so such plugins reach the network only through the HostAPI,
 *   whose egress client checks every resolved address;
 * - `fs:read:<p>` → `--allow-read=<dataDir>/<p>`; `fs:write:<p>` →
 *   `--allow-read` and `--allow-write` on `<dataDir>/<p>`;
 * - the socket directory → read and write, and each socket path →
 *   `--allow-net=unix:<path>` (Deno 2.9.6 needs all three to listen on or
 *   connect to a Unix socket);
 * - `--no-config` (or `--config=<file>` when given, which must lie outside
 *   every writable path), and `--deny-write` on `deno.json`, `deno.jsonc`,
 *   `deno.lock`, `package.json`, `node_modules` and `import_map.json` in each
 *   writable directory, so a plugin cannot plant a config that grants it more
 *   at its next start.
 *
 * @module
 */

import { isAbsolute, join, relative, resolve, sep } from "node:path";
import type { FsPermission, HttpPermission, Permission } from "./grammar.ts";
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

function netEntries(p: HttpPermission): string[] {
  if (p.external || p.wildcard) return [];
  const ports = p.port !== undefined
    ? [p.port]
    : p.scheme === "https"
    ? [443]
    : p.scheme === "http"
    ? [80]
    : [80, 443];
  return ports.map((port) => `${p.host}:${port}`);
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
 * // ["--no-prompt", "--no-config", "--allow-net=api.example.com:80,api.example.com:443",
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
    if (p.kind === "http") { for (const e of netEntries(p)) net.add(e); }
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
