/**
 * Extism's manifest (the `extism.json` file of an Extism plugin folder) and
 * its mapping onto GoatKit's model.
 *
 * An Extism plugin folder holds three things:
 * - `manifest.json`: the GoatKit side (name, version, routes, widgets, jobs,
 *   permissions …), as for every plugin;
 * - `extism.json` ({@linkcode EXTISM_MANIFEST_FILE}): Extism's own manifest,
 *   with the keys of Extism's schema (`wasm`, `memory`, `config`,
 *   `allowed_hosts`, `allowed_paths`, `timeout_ms`; the JS SDK's camelCase
 *   spellings are accepted too, unknown keys are refused as Extism does);
 * - the `.wasm` module its `wasm[0].path` names (or none, with `{data}`).
 *
 * The mapping ({@linkcode mapExtismManifest}) is pure:
 * - `allowed_hosts` → requested `http:` permissions (GoatKit's egress then
 *   checks each request): `*` → `http:external` (any public host; loopback
 *   and private addresses never, they need their own entry), `*.x.com` →
 *   `http:*.x.com`, `api.x.com` → `http:api.x.com`. Extism matches the host
 *   name on any port; a GoatKit host pattern means ports 80/443 unless one is
 *   written, so an entry may carry a port (`127.0.0.1:8080`, our extension).
 *   Other wildcards (`api.*.com`) cannot be expressed and are refused.
 * - `allowed_paths` (`host path → guest path`) → `fs:write:<path>` (or
 *   `fs:read:<path>` for a `ro:` host path) inside the plugin's data
 *   directory; a host path is relative to that directory, and an absolute
 *   one, `..` or `~` is refused. The guest sees the folder at its guest path
 *   once the operator granted the permission.
 * - `config` → the plugin's config defaults, each key also a requested
 *   `config:<key>` permission: `config_get` of such a key is refused until
 *   the operator grants it; the operator's own value (the plugin's section
 *   of `goatkit.json`, then a host value of that key) wins over the default.
 * - `memory.max_pages` → the memory cap (never above the host's),
 *   `memory.max_var_bytes` → the vars cap (never above the host's; 0 turns
 *   vars off), `timeout_ms` → the call deadline (never above the host's).
 *   `memory.max_http_response_bytes` is accepted; the egress's own response
 *   limit applies.
 *
 * Modules: one module only (`{path}` relative to the plugin folder and
 * inside it, or `{data}` base64), with an optional hex SHA-256 `hash`
 * checked before loading ({@linkcode ExtismHashMismatchError}). `{url}`
 * modules are refused: a module fetched at load time would escape the
 * package's SHA-256 and signature and make every start depend on a network;
 * download it into the folder and name it with `{path}`. Several modules
 * (Extism links them by name) are refused too.
 *
 * @module
 */

import { sha256Hex } from "../model/sha256.ts";
import { isAbsolute, join, relative, resolve, sep } from "node:path";
import { z } from "zod";
import { InvalidManifestError, type ManifestIssue } from "../model/errors.ts";
import type { GKRegistration } from "../model/manifest.ts";
import {
  canonicalPermissions,
  parsePermission,
} from "../../permissions/grammar.ts";

/** The file name of Extism's manifest in a plugin folder. */
export const EXTISM_MANIFEST_FILE = "extism.json";

/** One module of an Extism manifest. */
export type ExtismWasmSource =
  | { path: string; name?: string; hash?: string }
  | { data: string; name?: string; hash?: string }
  | {
    url: string;
    name?: string;
    hash?: string;
    headers?: Record<string, string>;
    method?: string;
  };

/** Extism's manifest, validated (snake_case keys). */
export interface ExtismManifest {
  /** The modules (exactly one is accepted). */
  wasm: ExtismWasmSource[];
  /** Memory limits. */
  memory?: {
    max_pages?: number;
    max_http_response_bytes?: number;
    max_var_bytes?: number;
  };
  /** Static config values, read with `config_get`. */
  config?: Record<string, string>;
  /** Host names the plugin may reach over HTTP. */
  allowed_hosts?: string[];
  /** Host path → guest path. */
  allowed_paths?: Record<string, string>;
  /** Per-call timeout, in ms. */
  timeout_ms?: number;
}

/**
 * An Extism manifest was refused; `issues` lists every problem with its
 * JSON path (such as `wasm[0].path` or `allowed_paths["/etc"]`).
 *
 * @example
 * ```ts
 * import { ExtismManifestError } from "./extism_manifest.ts";
 * const e = new ExtismManifestError([{ path: "wasm", message: "is required" }]);
 * console.log(e.message); // Cannot accept Extism manifest: wasm: is required
 * ```
 */
export class ExtismManifestError extends InvalidManifestError {
  /** Creates the error from its list of issues. */
  constructor(
    issues: readonly ManifestIssue[],
    options: { file?: string } = {},
  ) {
    super(issues);
    this.name = "ExtismManifestError";
    this.message = `Cannot accept Extism manifest${
      options.file ? ` "${options.file}"` : ""
    }: ${
      issues.map((i) => i.path ? `${i.path}: ${i.message}` : i.message).join(
        "; ",
      )
    }`;
  }
}

/**
 * A module's bytes do not have the SHA-256 the Extism manifest names: it is
 * not loaded.
 *
 * @example
 * ```ts
 * import { ExtismHashMismatchError } from "./extism_manifest.ts";
 * const e = new ExtismHashMismatchError("wasm[0]", "ab".repeat(32), "cd".repeat(32));
 * console.log(e.expected.length); // 64
 * ```
 */
export class ExtismHashMismatchError extends Error {
  /** The module's JSON path, such as `wasm[0]`. */
  readonly source: string;
  /** The hash the manifest names. */
  readonly expected: string;
  /** The hash of the bytes found. */
  readonly actual: string;
  /** Creates the error. */
  constructor(source: string, expected: string, actual: string) {
    super(
      `Cannot load Extism module ${source}: hash mismatch (the manifest names SHA-256 ${expected}, the module has ${actual})`,
    );
    this.name = "ExtismHashMismatchError";
    this.source = source;
    this.expected = expected;
    this.actual = actual;
  }
}

const HASH_REGEXP = /^[0-9a-fA-F]{64}$/;

const common = {
  name: z.string().min(1).optional(),
  hash: z.string().regex(HASH_REGEXP, "must be a hex SHA-256 (64 digits)")
    .optional(),
};

const wasmSchema = z.union([
  z.strictObject({ path: z.string().min(1), ...common }),
  z.strictObject({ data: z.string().min(1), ...common }),
  z.strictObject({
    url: z.string().min(1),
    headers: z.record(z.string(), z.string()).optional(),
    method: z.string().optional(),
    ...common,
  }),
], { error: "must be one of {path}, {data} or {url}" });

const count = (max: number) =>
  z.number().int("must be a whole number").min(0, "must not be negative").max(
    max,
    `must be at most ${max}`,
  );

const schema = z.strictObject({
  wasm: z.array(wasmSchema).min(1, "must name one module"),
  memory: z.strictObject({
    max_pages: count(65_536).optional(),
    max_http_response_bytes: count(Number.MAX_SAFE_INTEGER).optional(),
    max_var_bytes: count(Number.MAX_SAFE_INTEGER).optional(),
  }).optional(),
  config: z.record(z.string(), z.string()).optional(),
  allowed_hosts: z.array(z.string().min(1, "must not be empty")).optional(),
  allowed_paths: z.record(z.string(), z.string()).optional(),
  timeout_ms: count(Number.MAX_SAFE_INTEGER).optional(),
});

const TOP_ALIASES: Record<string, string> = {
  allowedHosts: "allowed_hosts",
  allowedPaths: "allowed_paths",
  timeoutMs: "timeout_ms",
  timeout: "timeout_ms",
};
const MEMORY_ALIASES: Record<string, string> = {
  maxPages: "max_pages",
  max: "max_pages",
  maxHttpResponseBytes: "max_http_response_bytes",
  maxVarBytes: "max_var_bytes",
};

function isObject(v: unknown): v is Record<string, unknown> {
  return v !== null && typeof v === "object" && !Array.isArray(v);
}

/** Renames camelCase and alias keys to Extism's snake_case ones. */
function snakeCase(
  value: Record<string, unknown>,
  aliases: Record<string, string>,
  at: string,
  issues: ManifestIssue[],
): Record<string, unknown> {
  const out: Record<string, unknown> = {};
  for (const [k, v] of Object.entries(value)) {
    const key = Object.hasOwn(aliases, k) ? aliases[k]! : k;
    if (Object.hasOwn(out, key)) {
      issues.push({
        path: `${at}${key}`,
        message: `given twice (as "${key}" and an alias)`,
      });
      continue;
    }
    out[key] = v;
  }
  return out;
}

function jsonPath(path: readonly PropertyKey[]): string {
  let out = "";
  for (const p of path) {
    if (typeof p === "number") out += `[${p}]`;
    else if (/^[A-Za-z_][A-Za-z0-9_]*$/.test(String(p))) {
      out += out ? `.${String(p)}` : String(p);
    } else out += `[${JSON.stringify(String(p))}]`;
  }
  return out;
}

/**
 * Parses and validates an Extism manifest (JSON text or an already parsed
 * value). Every problem is thrown together in an
 * {@linkcode ExtismManifestError}, each with its JSON path.
 *
 * @example
 * ```ts
 * import { parseExtismManifest } from "./extism_manifest.ts";
 * const m = parseExtismManifest('{"wasm":[{"path":"plugin.wasm"}],"allowedHosts":["*"]}');
 * console.log(m.allowed_hosts); // ["*"]
 * ```
 */
export function parseExtismManifest(
  input: string | unknown,
  options: { file?: string } = {},
): ExtismManifest {
  let value: unknown = input;
  if (typeof input === "string") {
    try {
      value = JSON.parse(input);
    } catch (e) {
      throw new ExtismManifestError([{
        path: "",
        message: `not valid JSON: ${(e as Error).message}`,
      }], options);
    }
  }
  if (!isObject(value)) {
    throw new ExtismManifestError(
      [{ path: "", message: "must be a JSON object" }],
      options,
    );
  }
  const issues: ManifestIssue[] = [];
  const top = snakeCase(value, TOP_ALIASES, "", issues);
  if (isObject(top.memory)) {
    top.memory = snakeCase(top.memory, MEMORY_ALIASES, "memory.", issues);
  }
  const parsed = schema.safeParse(top);
  if (!parsed.success) {
    for (const i of parsed.error.issues) {
      const message = i.code === "unrecognized_keys"
        ? `unknown key${i.keys.length > 1 ? "s" : ""} ${
          i.keys.map((k) => `"${k}"`).join(", ")
        }`
        : i.message;
      issues.push({ path: jsonPath(i.path), message });
    }
  }
  // The checks below read the raw values too, so one answer lists every
  // problem, not only the schema's.
  const wasm = Array.isArray(top.wasm) ? top.wasm as unknown[] : [];
  if (wasm.length > 1) {
    issues.push({
      path: "wasm",
      message:
        `names ${wasm.length} modules; linking several modules is not supported, give one`,
    });
  }
  wasm.forEach((w, i) => {
    if (!isObject(w)) return;
    if (typeof w.url === "string") {
      issues.push({
        path: `wasm[${i}].url`,
        message:
          'modules fetched from a URL are not supported (they would bypass the package\'s SHA-256 and signature and make every start depend on the network); download the module into the plugin folder and name it with {"path": …}',
      });
    }
    if (typeof w.path === "string") {
      const p = w.path;
      if (isAbsolute(p) || p.startsWith("~") || /^[a-zA-Z]:[\\/]/.test(p)) {
        issues.push({
          path: `wasm[${i}].path`,
          message: `"${p}" must be relative to the plugin folder`,
        });
      } else if (escapes(p)) {
        issues.push({
          path: `wasm[${i}].path`,
          message: `"${p}" leaves the plugin folder`,
        });
      }
    }
    if (typeof w.data === "string") {
      try {
        Uint8Array.fromBase64(w.data.replace(/\s+/g, ""));
      } catch {
        issues.push({ path: `wasm[${i}].data`, message: "is not base64" });
      }
    }
  });
  if (issues.length > 0 || !parsed.success) {
    throw new ExtismManifestError(issues, options);
  }
  return parsed.data as ExtismManifest;
}

/** Whether a relative path leaves its base folder. */
function escapes(p: string): boolean {
  const r = relative("/base", resolve("/base", p.replaceAll("\\", "/")));
  return r === "" || r === ".." || r.startsWith(`..${sep}`) || isAbsolute(r);
}

/** One `allowed_paths` entry as GoatKit runs it. */
export interface ExtismPathMapping {
  /** The folder inside the plugin's data directory (`.` for all of it). */
  path: string;
  /** Where the guest sees it. */
  guestPath: string;
  /** A `ro:` host path: reads only. */
  readOnly: boolean;
  /** The permission that must be granted: `fs:read:<path>` or `fs:write:<path>`. */
  permission: string;
}

/** Limits of the host an Extism manifest cannot exceed. */
export interface ExtismHostLimits {
  /** The host's memory cap, in 64 KiB pages. @default 256 */
  maxPages?: number;
  /** The host's call deadline, in ms. @default 30000 */
  callTimeoutMs?: number;
  /** The host's cap on one plugin's vars, in bytes. @default 1048576 */
  maxVarBytes?: number;
}

/** What an Extism manifest means in GoatKit's model. */
export interface ExtismMapping {
  /** Permissions it requests (canonical, sorted). */
  permissions: string[];
  /** Config defaults (`config`). */
  config: Record<string, string>;
  /** Where `allowed_paths` entries are mounted, once granted. */
  paths: ExtismPathMapping[];
  /** Memory cap in 64 KiB pages (the smaller of the manifest's and the host's). */
  memoryLimitPages: number;
  /** Call deadline in ms (the smaller of `timeout_ms` and the host's). */
  callTimeoutMs: number;
  /** Vars cap in bytes (the smaller of `max_var_bytes` and the host's). */
  maxVarBytes: number;
}

/**
 * Maps a validated Extism manifest onto GoatKit's permissions and limits
 * (see the module doc); throws {@linkcode ExtismManifestError} listing every
 * entry that cannot be expressed (a host pattern, a path outside the data
 * directory, a config key).
 *
 * @example
 * ```ts
 * import { mapExtismManifest, parseExtismManifest } from "./extism_manifest.ts";
 * const m = mapExtismManifest(parseExtismManifest({
 *   wasm: [{ path: "plugin.wasm" }],
 *   allowed_hosts: ["*", "api.example.com"],
 *   allowed_paths: { "ro:assets": "/assets" },
 *   config: { greeting: "hi" },
 * }));
 * console.log(m.permissions);
 * // ["config:greeting", "fs:read:assets", "http:api.example.com", "http:external"]
 * ```
 */
export function mapExtismManifest(
  manifest: ExtismManifest,
  limits: ExtismHostLimits = {},
): ExtismMapping {
  const issues: ManifestIssue[] = [];
  const permissions: string[] = [];
  for (const [i, host] of (manifest.allowed_hosts ?? []).entries()) {
    const at = `allowed_hosts[${i}]`;
    const h = host.trim();
    if (h === "*") {
      permissions.push("http:external");
      continue;
    }
    if (h.includes("*") && !/^\*\.[^*]+$/.test(h)) {
      issues.push({
        path: at,
        message:
          `"${host}" cannot be expressed: GoatKit host patterns allow "*" only as the whole first label ("*.example.com") or alone ("*": any public host)`,
      });
      continue;
    }
    try {
      permissions.push(parsePermission(`http:${h}`).text);
    } catch (e) {
      issues.push({ path: at, message: reason(e, host) });
    }
  }
  const paths: ExtismPathMapping[] = [];
  for (
    const [hostPath, guestPath] of Object.entries(
      manifest.allowed_paths ?? {},
    )
  ) {
    const at = `allowed_paths[${JSON.stringify(hostPath)}]`;
    const readOnly = hostPath.startsWith("ro:");
    const p = readOnly ? hostPath.slice(3) : hostPath;
    if (isAbsolute(p) || p.startsWith("~") || p.startsWith("\\")) {
      issues.push({
        path: at,
        message:
          `"${p}" is outside the plugin's data directory: host paths are folders inside it, written relative to it (such as "cache")`,
      });
      continue;
    }
    if (p.split(/[\\/]/).includes("..")) {
      issues.push({
        path: at,
        message: `"${p}" leaves the plugin's data directory`,
      });
      continue;
    }
    if (!guestPath.startsWith("/") || guestPath.split("/").includes("..")) {
      issues.push({
        path: at,
        message: `guest path "${guestPath}" must be absolute, without ".."`,
      });
      continue;
    }
    try {
      const perm = parsePermission(
        `fs:${readOnly ? "read" : "write"}:${p === "" ? "." : p}`,
      );
      if (perm.kind !== "fs") throw new Error("not an fs permission");
      permissions.push(perm.text);
      paths.push({
        path: perm.path,
        guestPath: guestPath.replace(/\/+$/, "") || "/",
        readOnly,
        permission: perm.text,
      });
    } catch (e) {
      issues.push({ path: at, message: reason(e, p) });
    }
  }
  const config: Record<string, string> = {};
  for (const [key, value] of Object.entries(manifest.config ?? {})) {
    try {
      const perm = parsePermission(`config:${key}`);
      if (perm.kind !== "config" || perm.wildcard) {
        throw new Error("a config key cannot be a pattern");
      }
      permissions.push(perm.text);
      config[key] = value;
    } catch (e) {
      issues.push({
        path: `config[${JSON.stringify(key)}]`,
        message: reason(e, key),
      });
    }
  }
  if (issues.length > 0) throw new ExtismManifestError(issues);
  const hostPages = limits.maxPages ?? 256;
  const hostTimeout = limits.callTimeoutMs ?? 30_000;
  const hostVars = limits.maxVarBytes ?? 1024 * 1024;
  const pages = manifest.memory?.max_pages;
  const vars = manifest.memory?.max_var_bytes;
  return {
    permissions: canonicalPermissions(permissions),
    config,
    paths,
    memoryLimitPages: pages === undefined || pages === 0
      ? hostPages
      : Math.min(pages, hostPages),
    callTimeoutMs: manifest.timeout_ms === undefined ||
        manifest.timeout_ms === 0
      ? hostTimeout
      : Math.min(manifest.timeout_ms, hostTimeout),
    maxVarBytes: vars === undefined ? hostVars : Math.min(vars, hostVars),
  };
}

function reason(e: unknown, value: string): string {
  const text = e instanceof Error ? e.message : String(e);
  return `"${value}" cannot be used: ${text}`;
}

/**
 * The GoatKit registration of an Extism plugin: its sidecar `manifest.json`
 * with the Extism manifest's permissions added to what it requests (so the
 * operator approves them as any plugin's).
 *
 * @example
 * ```ts
 * import { withExtismPermissions } from "./extism_manifest.ts";
 * const r = withExtismPermissions(
 *   { name: "echo", version: "1.0.0", permissions: ["db:read"] },
 *   { permissions: ["http:external"] },
 * );
 * console.log(r.permissions); // ["db:read", "http:external"]
 * ```
 */
export function withExtismPermissions(
  registration: GKRegistration,
  mapping: Pick<ExtismMapping, "permissions">,
): GKRegistration {
  const own = registration.permissions ?? [];
  const added = mapping.permissions.filter((p) => !own.includes(p));
  if (added.length === 0) return registration;
  return { ...registration, permissions: [...own, ...added] };
}

/**
 * Reads the module of a validated Extism manifest: `{path}` relative to
 * `dir` (the plugin folder, which it may not leave, not even through a
 * symlink) or `{data}`; checks its `hash`. Throws
 * {@linkcode ExtismHashMismatchError} on a mismatch,
 * {@linkcode ExtismManifestError} for a path outside `dir` or a missing file.
 *
 * @example
 * ```ts ignore
 * const bytes = await readExtismModule(manifest, "/srv/plugins/echo");
 * ```
 */
export async function readExtismModule(
  manifest: ExtismManifest,
  dir: string,
): Promise<Uint8Array> {
  const source = manifest.wasm[0]!;
  let bytes: Uint8Array;
  if ("data" in source) {
    bytes = Uint8Array.fromBase64(source.data.replace(/\s+/g, ""));
  } else if ("path" in source) {
    const root = await Deno.realPath(dir);
    let real: string;
    try {
      real = await Deno.realPath(join(root, source.path));
    } catch (e) {
      throw new ExtismManifestError([{
        path: "wasm[0].path",
        message: `cannot read "${source.path}": ${
          e instanceof Error ? e.message.split("\n")[0] : String(e)
        }`,
      }]);
    }
    const inside = relative(root, real);
    if (inside === "" || inside.startsWith("..") || isAbsolute(inside)) {
      throw new ExtismManifestError([{
        path: "wasm[0].path",
        message: `"${source.path}" leads out of the plugin folder`,
      }]);
    }
    bytes = await Deno.readFile(real);
  } else {
    throw new ExtismManifestError([{
      path: "wasm[0].url",
      message: "modules fetched from a URL are not supported",
    }]);
  }
  if (source.hash) {
    const actual = await sha256Hex(bytes);
    if (actual !== source.hash.toLowerCase()) {
      throw new ExtismHashMismatchError("wasm[0]", source.hash, actual);
    }
  }
  return bytes;
}
