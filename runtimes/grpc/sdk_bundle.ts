/**
 * The pre-built plugin SDK: `sdk_bundle.js`, made by `build_sdk_bundle.ts`
 * from `sdk.ts` and the modules it imports, which sandboxed TypeScript
 * plugins load instead of the sources (inside the sandbox Deno's emit cache
 * is private scratch space, so the sources would be transpiled at every
 * start). The bundle names the SHA-256 of the sources it was built from in
 * its first line; {@linkcode sdkBundleIfFresh} returns it only while that
 * matches the sources on disk, so a stale bundle is never run.
 *
 * @module
 */

import { dirname, relative } from "node:path";
import { fileURLToPath } from "node:url";
import { concat } from "./_h2_frames.ts";

/** The first line of `sdk_bundle.js`, up to the hash. */
export const SDK_BUNDLE_HEADER = "// goatkit-sdk-bundle sources-sha256=";

/**
 * Imports by relative path (`import … from`, `export … from`, `import "…"`);
 * a statement starts its line, so doc-comment examples do not count. The
 * value-only form leaves out `import type`/`export type` (the bundle does
 * not need those files).
 */
const IMPORT_REGEXP =
  /^(?:import|export)(?:[^;]*?\bfrom)?\s*["'](\.{1,2}\/[^"'\n]+)["']/gm;
const VALUE_IMPORT_REGEXP =
  /^(?:import|export)(?!\s+type\s)(?:[^;]*?\bfrom)?\s*["'](\.{1,2}\/[^"'\n]+)["']/gm;

/** `sdk_bundle.js` next to this module (`undefined` unless loaded from `file:`). */
export function sdkBundlePath(): string | undefined {
  const url = new URL("./sdk_bundle.js", import.meta.url);
  return url.protocol === "file:" ? fileURLToPath(url) : undefined;
}

/**
 * The SDK's source files: `sdk.ts` and its imports by relative path,
 * transitively, sorted. By default only value imports (what the bundle is
 * made of); with `typeImports` also the files imported for types only (what
 * Deno reads when it runs the sources).
 */
export async function sdkSourceFiles(
  options: { typeImports?: boolean } = {},
): Promise<string[]> {
  const imports = options.typeImports ? IMPORT_REGEXP : VALUE_IMPORT_REGEXP;
  const seen = new Set<string>();
  const queue = [new URL("./sdk.ts", import.meta.url)];
  while (queue.length) {
    const url = queue.pop()!;
    const path = fileURLToPath(url);
    if (seen.has(path)) continue;
    seen.add(path);
    const text = await Deno.readTextFile(path);
    for (const m of text.matchAll(imports)) {
      queue.push(new URL(m[1]!, url));
    }
  }
  return [...seen].sort();
}

/**
 * SHA-256 (hex) of `files`' names (relative to this folder) and contents.
 *
 * @example
 * ```ts ignore
 * const hash = await sdkSourceHash(await sdkSourceFiles());
 * ```
 */
export async function sdkSourceHash(files: readonly string[]): Promise<string> {
  const here = dirname(fileURLToPath(import.meta.url));
  const encoder = new TextEncoder();
  const parts: Uint8Array[] = [];
  for (const file of files) {
    parts.push(encoder.encode(`${relative(here, file)}\0`));
    parts.push(await Deno.readFile(file));
    parts.push(encoder.encode("\0"));
  }
  const digest = await crypto.subtle.digest(
    "SHA-256",
    concat(parts) as BufferSource,
  );
  return new Uint8Array(digest).toHex();
}

/** The last verdict, and the sizes and times of the files it read. */
let lastVerdict:
  | { files: string[]; stamp: string; result: string | undefined }
  | undefined;

/** Size and modification time of each of `paths` (throws if one is gone). */
async function stamp(paths: readonly string[]): Promise<string> {
  const stats = await Promise.all(paths.map((p) => Deno.stat(p)));
  return stats.map((s) => `${s.size}:${s.mtime?.getTime()}`).join("|");
}

/**
 * The path of `sdk_bundle.js` when it exists and was built from the sources
 * as they are now; `undefined` otherwise (the sources are loaded instead).
 * The verdict is remembered while none of the files it read changed size
 * or modification time: a plugin launch then costs a few `stat` calls
 * instead of reading and hashing every source again.
 */
export async function sdkBundleIfFresh(): Promise<string | undefined> {
  const path = sdkBundlePath();
  if (!path) return undefined;
  if (lastVerdict) {
    const now = await stamp([path, ...lastVerdict.files]).catch(() => "");
    if (now === lastVerdict.stamp) return lastVerdict.result;
  }
  lastVerdict = undefined;
  const files = await sdkSourceFiles();
  // Taken before the files are read again: a change while they are read
  // gives another stamp next time.
  const before = await stamp([path, ...files]).catch(() => "");
  const result = await bundleIfBuiltFrom(path, files);
  if (before) lastVerdict = { files, stamp: before, result };
  return result;
}

/** `path` when its header names the hash of `files`' sources now. */
async function bundleIfBuiltFrom(
  path: string,
  files: readonly string[],
): Promise<string | undefined> {
  let head: string;
  try {
    using file = await Deno.open(path);
    const buf = new Uint8Array(SDK_BUNDLE_HEADER.length + 64);
    const n = await file.read(buf) ?? 0;
    head = new TextDecoder().decode(buf.subarray(0, n));
  } catch {
    return undefined;
  }
  if (!head.startsWith(SDK_BUNDLE_HEADER)) return undefined;
  const built = head.slice(SDK_BUNDLE_HEADER.length);
  return built === await sdkSourceHash(files) ? path : undefined;
}
