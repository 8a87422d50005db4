/**
 * `gk dev [dir] [--url] [--token] [--debounce ms]`: the inner loop of a
 * plugin author. Builds, packs and installs the plugin into a local host,
 * then watches the folder: each change (debounced) rebuilds with the
 * plugin's build script, packs, and installs the new version, which the
 * host loads in place. Build outputs (`*.wasm`, the native `plugin`,
 * `build/`, `target/`, `node_modules/`, hidden files, packages) never
 * trigger a rebuild. Stops on Ctrl-C.
 *
 * @module
 */

import { basename, relative, sep } from "node:path";
import { errorText } from "../model/errors.ts";
import { buildPlugin } from "./build.ts";
import type { CommandContext } from "./context.ts";
import { CliError } from "./errors.ts";
import { uploadPackage } from "./host_commands.ts";
import { interruptSignal } from "./io.ts";
import { packPlugin } from "./pack.ts";
import { displayPath, resolveFrom } from "./paths.ts";

const OUTPUT_DIRS = new Set(["build", "target", "node_modules", "dist"]);

/**
 * Whether a change of `rel` (relative to the plugin folder) should trigger
 * a rebuild: not a build output, package, hidden file or editor backup.
 *
 * @example
 * ```ts
 * import { triggersRebuild } from "./dev.ts";
 * triggersRebuild("plugin.c"); // true
 * triggersRebuild("plugin.wasm"); // false
 * triggersRebuild("plugin.wasm.tmp4f2a"); // false
 * triggersRebuild("target/release/x"); // false
 * ```
 */
export function triggersRebuild(rel: string): boolean {
  if (!rel || rel.startsWith("..")) return false;
  const parts = rel.split(sep);
  if (parts.some((p) => p.startsWith(".") || OUTPUT_DIRS.has(p))) return false;
  const name = parts.at(-1)!;
  // Outputs and the linkers' temporaries (`plugin.wasm.tmp1234`), packages,
  // editor backups and swap files.
  if (/\.(wasm|zip|sig)(\.|$)|\.tmp|~$|\.swp$|^\d+$/i.test(name)) {
    return false;
  }
  return !(parts.length === 1 && name === "plugin");
}

/** `gk dev`. */
export async function devCommand(ctx: CommandContext): Promise<void> {
  const { io, args } = ctx;
  const dir = resolveFrom(io, args.rest[0] ?? ".");
  try {
    if (!(await Deno.stat(dir)).isDirectory) throw new Error("not a folder");
  } catch (e) {
    throw new CliError(`Cannot watch "${dir}": ${errorText(e).split("\n")[0]}`);
  }
  const debounceMs = args.num("debounce", 300);
  using stop = interruptSignal(io);
  const host = ctx.host(stop.signal);
  const shown = displayPath(io, dir);

  const cycle = async (why: string): Promise<void> => {
    const started = performance.now();
    io.err(`${why}: building ${shown} …`);
    try {
      const built = await buildPlugin({ dir, output: "piped" });
      const packed = await packPlugin(dir);
      const r = await uploadPackage(host, {
        bytes: packed.bytes,
        filename: `${packed.manifest.name}-${packed.manifest.version}.zip`,
      });
      const secs = ((performance.now() - started) / 1000).toFixed(1);
      io.out(
        `${
          r.upgraded ? "reloaded" : "installed"
        } ${r.name} ${r.version} into ${host.url} in ${secs} s${
          built.ran ? ` (build ${(built.ms / 1000).toFixed(1)} s)` : ""
        }`,
      );
      if (r.newPermissions?.length) {
        io.out(
          `requests permissions: ${
            r.newPermissions.join(", ")
          } (approve with gk grants ${r.name} --approve ${
            r.newPermissions.join(",")
          })`,
        );
      }
    } catch (e) {
      if (stop.signal.aborted) return;
      io.err(`gk dev: ${errorText(e).split("\n")[0]}`);
    }
  };

  let watcher: Deno.FsWatcher;
  try {
    watcher = Deno.watchFs(dir, { recursive: true });
  } catch (e) {
    throw new CliError(`Cannot watch "${dir}": ${errorText(e).split("\n")[0]}`);
  }
  const closeWatcher = () => {
    try {
      watcher.close();
    } catch { /* closed */ }
  };
  stop.signal.addEventListener("abort", closeWatcher, { once: true });
  if (stop.signal.aborted) closeWatcher();

  const pending = new Set<string>();
  let timer: ReturnType<typeof setTimeout> | undefined;
  let running: Promise<void> | undefined;
  const drain = async () => {
    while (pending.size > 0 && !stop.signal.aborted) {
      const changed = [...pending];
      pending.clear();
      await cycle(
        `changed ${changed.slice(0, 3).join(", ")}${
          changed.length > 3 ? ` and ${changed.length - 3} more` : ""
        }`,
      );
    }
    running = undefined;
  };
  const fire = () => {
    timer = undefined;
    if (!running) running = drain();
  };

  await cycle("start");
  io.err(`watching ${shown} for changes (Ctrl-C to stop)`);
  try {
    for await (const event of watcher) {
      if (event.kind === "access") continue;
      for (const p of event.paths) {
        const rel = relative(dir, p);
        if (triggersRebuild(rel)) pending.add(rel || basename(p));
      }
      if (pending.size === 0) continue;
      if (timer !== undefined) clearTimeout(timer);
      timer = setTimeout(fire, debounceMs);
    }
  } finally {
    if (timer !== undefined) clearTimeout(timer);
    closeWatcher();
    await running;
  }
  io.err("stopped");
}
