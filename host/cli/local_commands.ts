/**
 * The commands that work without a host: `gk build` and `gk pack` (keys
 * are in `keys.ts`, `gk run` in `run_local.ts`, `gk init` in
 * `init_command.ts`).
 *
 * @module
 */

import { buildPlugin } from "./build.ts";
import type { CommandContext } from "./context.ts";
import { CliError } from "./errors.ts";
import { packPlugin } from "./pack.ts";
import { displayPath, resolveFrom } from "./paths.ts";
import { formatBytes, formatTable } from "./table.ts";

/** `gk build [dir]`: runs the plugin's build. */
export async function buildCommand(ctx: CommandContext): Promise<void> {
  const dir = resolveFrom(ctx.io, ctx.args.rest[0] ?? ".");
  ctx.io.err(`building ${displayPath(ctx.io, dir)} …`);
  const r = await buildPlugin({ dir });
  if (r.ran === undefined) {
    ctx.io.out("nothing to build: a TypeScript gRPC plugin runs from source");
    return;
  }
  ctx.io.out(`built with ${r.ran} in ${(r.ms / 1000).toFixed(1)} s`);
}

/**
 * `gk pack [dir] [-o out.zip]`: validates and zips a plugin folder, lists
 * what went in.
 */
export async function packCommand(ctx: CommandContext): Promise<void> {
  const dir = resolveFrom(ctx.io, ctx.args.rest[0] ?? ".");
  const r = await packPlugin(dir);
  for (const w of r.warnings) ctx.io.err(`warning: manifest.json ${w}`);
  const out = resolveFrom(
    ctx.io,
    ctx.args.str("out") ?? `${r.manifest.name}-${r.manifest.version}.zip`,
  );
  try {
    await Deno.writeFile(out, r.bytes);
  } catch (e) {
    throw new CliError(
      `Cannot write "${out}": ${
        (e instanceof Error ? e.message : String(e)).split("\n")[0]
      }`,
    );
  }
  const total = r.files.reduce((n, f) => n + f.size, 0);
  for (
    const line of formatTable(
      ["SIZE".padStart(9), "FILE"],
      r.files.map((f) => [
        formatBytes(f.size).padStart(9),
        `${f.path}${
          f.path === r.entry.path ? `  (entry, ${r.entry.kind})` : ""
        }`,
      ]),
    )
  ) ctx.io.out(line);
  ctx.io.out(
    `${
      displayPath(ctx.io, out)
    }: ${r.manifest.name} ${r.manifest.version}, ${r.files.length} file${
      r.files.length === 1 ? "" : "s"
    }, ${formatBytes(total)} packed into ${formatBytes(r.bytes.length)}`,
  );
}
