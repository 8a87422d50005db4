/**
 * `gk pack`: a plugin folder into a package ZIP. Leaves out hidden files,
 * `node_modules/` and what `.gkignore` names; validates `manifest.json`
 * and the entry (a real WASM module exporting the GoatKit ABI, an Extism
 * plugin's `extism.json` and module, or the gRPC entry file); keeps each file's Unix mode (so a native executable
 * stays executable); lists what was packed with sizes.
 *
 * @module
 */

import { join, posix } from "node:path";
import { type Zippable, zipSync } from "fflate";
import { checkManifest, type GKRegistration } from "../model/manifest.ts";
import { errorText } from "../model/errors.ts";
import { CliError } from "./errors.ts";
import { IGNORE_FILE, type IgnoreRules, loadIgnoreRules } from "./gkignore.ts";
import {
  checkExtismModule,
  checkWasmModule,
  isExtismWasm,
} from "./wasm_check.ts";
import {
  EXTISM_MANIFEST_FILE,
  mapExtismManifest,
  parseExtismManifest,
  readExtismModule,
} from "../loading/extism_manifest.ts";

/** One file that goes into the package. */
export interface PackedFile {
  /** Path inside the package (`/`-separated). */
  path: string;
  /** Size in bytes. */
  size: number;
  /** Unix permission bits (0 when unknown). */
  mode: number;
}

/** How the packed plugin runs, as the host's loader will see it. */
export type PackedEntryKind = "wasm" | "grpc-deno" | "grpc-native" | "extism";

/** The result of {@linkcode packPlugin}. */
export interface PackResult {
  /** The validated manifest. */
  manifest: GKRegistration;
  /** Non-fatal manifest findings, as `path: message`. */
  warnings: string[];
  /** The entry file and its kind. */
  entry: { path: string; kind: PackedEntryKind };
  /** The packed files, sorted by path. */
  files: PackedFile[];
  /** The ZIP bytes. */
  bytes: Uint8Array;
}

async function walk(
  dir: string,
  rules: IgnoreRules,
): Promise<PackedFile[]> {
  const files: PackedFile[] = [];
  const visit = async (rel: string): Promise<void> => {
    const entries: Deno.DirEntry[] = [];
    for await (const e of Deno.readDir(join(dir, rel))) entries.push(e);
    for (const e of entries) {
      if (e.name.startsWith(".") || e.name === "node_modules") continue;
      const path = rel ? `${rel}/${e.name}` : e.name;
      if (rules.ignores(path, e.isDirectory)) continue;
      if (e.isDirectory) await visit(path);
      else if (e.isFile) {
        const info = await Deno.stat(join(dir, path));
        files.push({ path, size: info.size, mode: (info.mode ?? 0) & 0o777 });
      }
      // Symlinks are never packed: the host refuses them in a package.
    }
  };
  await visit("");
  return files.sort((a, b) => a.path < b.path ? -1 : a.path > b.path ? 1 : 0);
}

/** The entry the host's loader would pick among the top-level files. */
function findEntry(
  files: PackedFile[],
): { path: string; kind: PackedEntryKind } | undefined {
  const top = files.filter((f) => !f.path.includes("/"));
  const names = top.map((f) => f.path);
  // Extism's manifest marks an Extism plugin.
  if (names.includes(EXTISM_MANIFEST_FILE)) {
    return { path: EXTISM_MANIFEST_FILE, kind: "extism" };
  }
  const wasm = names.includes("plugin.wasm")
    ? "plugin.wasm"
    : names.find((n) => /\.wasm$/i.test(n));
  if (wasm) return { path: wasm, kind: "wasm" };
  const ts = ["main.ts", "plugin.ts", "main.js"].find((n) => names.includes(n));
  if (ts) return { path: ts, kind: "grpc-deno" };
  const native = top.find((f) => f.path === "plugin");
  if (native) return { path: "plugin", kind: "grpc-native" };
  return undefined;
}

/**
 * Checks an Extism plugin folder: `extism.json` valid and mappable onto
 * GoatKit's permissions, its module inside the folder, packed (not left
 * out by `.gkignore`), of the named hash, and a real Extism module.
 */
async function checkExtismFolder(
  dir: string,
  files: readonly PackedFile[],
  where: string,
): Promise<void> {
  try {
    const manifest = parseExtismManifest(
      await Deno.readTextFile(join(dir, EXTISM_MANIFEST_FILE)),
      { file: EXTISM_MANIFEST_FILE },
    );
    mapExtismManifest(manifest);
    const source = manifest.wasm[0]!;
    if ("path" in source) {
      // As the loader reads it: relative to the folder, normalised (a
      // backslash is part of a name there, not a separator).
      const rel = posix.normalize(source.path);
      if (!files.some((f) => f.path === rel)) {
        throw new CliError(
          `${where}: ${EXTISM_MANIFEST_FILE} names "${source.path}", which is not packed (missing, hidden or left out by ${IGNORE_FILE})`,
        );
      }
    }
    const bytes = await readExtismModule(manifest, dir);
    checkExtismModule(bytes, `${join(dir, EXTISM_MANIFEST_FILE)} wasm[0]`);
  } catch (e) {
    if (e instanceof CliError) throw e;
    throw new CliError(`${where}: ${errorText(e)}`);
  }
}

/**
 * Packs the plugin folder `dir` (absolute) into package bytes; throws a
 * {@linkcode CliError} naming the first problem.
 *
 * @example
 * ```ts ignore
 * const { bytes, files } = await packPlugin("/home/ana/my-plugin");
 * ```
 */
export async function packPlugin(dir: string): Promise<PackResult> {
  const where = `Cannot pack "${dir}"`;
  let info: Deno.FileInfo;
  try {
    info = await Deno.stat(dir);
  } catch (e) {
    throw new CliError(`${where}: ${errorText(e).split("\n")[0]}`);
  }
  if (!info.isDirectory) throw new CliError(`${where}: not a folder`);
  let manifestText: string;
  try {
    manifestText = await Deno.readTextFile(join(dir, "manifest.json"));
  } catch (e) {
    if (e instanceof Deno.errors.NotFound) {
      throw new CliError(`${where}: it has no manifest.json`);
    }
    throw new CliError(`${where}: ${errorText(e)}`);
  }
  let manifest: GKRegistration;
  let warnings: string[];
  try {
    const parsed = checkManifest(manifestText);
    manifest = parsed.manifest;
    warnings = parsed.warnings.map((w) => `${w.path}: ${w.message}`);
  } catch (e) {
    throw new CliError(
      `${where}: manifest.json is invalid: ${
        errorText(e).replace(/\n/g, "; ")
      }`,
    );
  }
  const rules = await loadIgnoreRules(dir);
  if (rules.ignores("manifest.json", false)) {
    throw new CliError(`${where}: ${IGNORE_FILE} leaves out manifest.json`);
  }
  const files = await walk(dir, rules);
  const entry = findEntry(files);
  if (!entry) {
    throw new CliError(
      `${where}: no entry (plugin.wasm, *.wasm, main.ts, plugin.ts, main.js, an executable named plugin, or extism.json for an Extism plugin); build it first (gk build) or check ${IGNORE_FILE}`,
    );
  }
  if (entry.kind === "extism") {
    await checkExtismFolder(dir, files, where);
  }
  const contents: Zippable = {};
  for (const f of files) {
    const data = await Deno.readFile(join(dir, f.path));
    if (f.path === entry.path && entry.kind === "wasm") {
      try {
        checkWasmModule(data, join(dir, f.path));
      } catch (e) {
        // An Extism module (refused for its imports) needs its extism.json.
        if (!isExtismWasm(data)) throw e;
        throw new CliError(
          `${where}: "${f.path}" is an Extism plugin module; add ${EXTISM_MANIFEST_FILE} next to manifest.json (at least {"wasm": [{"path": "${f.path}"}]})`,
        );
      }
    }
    if (entry.kind === "grpc-native" && f.path === entry.path) {
      if (!(f.mode & 0o111)) {
        throw new CliError(
          `${where}: the native entry "plugin" is not executable (chmod +x it)`,
        );
      }
    }
    contents[f.path] = [data, {
      os: 3,
      // Regular file with its permission bits, in the upper 16 bits.
      attrs: (0o100000 | (f.mode || 0o644)) * 0x10000,
    }];
  }
  const bytes = zipSync(contents, { level: 9 });
  return { manifest, warnings, entry, files, bytes };
}
