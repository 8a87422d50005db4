/**
 * The manifest of a bare `.wasm` file (GoatFlow's layout: a module dropped
 * into the plugins folder, without `manifest.json`): the module is started
 * once in its sandboxed worker, asked for `gk_register`, and shut down. The
 * answer is kept per file (path, size and modification time), so a rescan
 * does not start it again.
 *
 * @module
 */

import { basename } from "node:path";
import { checkManifest, type GKRegistration } from "../model/manifest.ts";
import { loadWasmPlugin } from "../../runtimes/wasm/mod.ts";

/** Reads the manifest of the module at an absolute path. */
export type WasmManifestReader = (path: string) => Promise<GKRegistration>;

const cache = new Map<
  string,
  { size: number; mtime: number; manifest: GKRegistration }
>();

/**
 * Starts the WASM module at `path` without any grant, reads the manifest its
 * `gk_register` returns, validates it and shuts the module down.
 *
 * @example
 * ```ts ignore
 * import { readWasmManifest } from "./wasm_manifest.ts";
 * const manifest = await readWasmManifest("/srv/plugins/stats.wasm");
 * console.log(manifest.name);
 * ```
 */
export async function readWasmManifest(path: string): Promise<GKRegistration> {
  const info = await Deno.stat(path);
  const mtime = info.mtime?.getTime() ?? 0;
  const hit = cache.get(path);
  if (hit && hit.size === info.size && hit.mtime === mtime) {
    return hit.manifest;
  }
  const plugin = await loadWasmPlugin(path, {
    name: basename(path).replace(/\.wasm$/i, ""),
    idleTimeoutMs: 0,
  });
  try {
    const manifest = checkManifest(plugin.manifestJson).manifest;
    cache.set(path, { size: info.size, mtime, manifest });
    return manifest;
  } finally {
    await plugin.shutdown().catch(() => {});
  }
}
