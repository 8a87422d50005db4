/**
 * Building a plugin folder: its `build.sh`, else the `build` task of its
 * `deno.json`; a TypeScript gRPC plugin without either runs from source.
 *
 * @module
 */

import { join } from "node:path";
import { CliError } from "./errors.ts";
import { exists } from "./paths.ts";

/** Options of {@linkcode buildPlugin}. */
export interface BuildOptions {
  /** The plugin folder (absolute). */
  dir: string;
  /**
   * `inherit` shows the build's output as it runs; `piped` keeps it and
   * puts its last lines into the error when the build fails.
   * @default "inherit"
   */
  output?: "inherit" | "piped";
}

/** What {@linkcode buildPlugin} did. */
export interface BuildResult {
  /** What ran, such as `sh build.sh`; `undefined` when nothing needed building. */
  ran: string | undefined;
  /** Wall time in ms. */
  ms: number;
}

async function hasBuildTask(dir: string): Promise<boolean> {
  for (const name of ["deno.json", "deno.jsonc"]) {
    try {
      const text = await Deno.readTextFile(join(dir, name));
      const config = JSON.parse(
        text.replace(/^\s*\/\/.*$/gm, ""),
      ) as { tasks?: Record<string, unknown> };
      return config.tasks?.build !== undefined;
    } catch { /* absent or not plain JSON */ }
  }
  return false;
}

/**
 * Builds the plugin in `options.dir`; throws {@linkcode CliError} when the
 * build fails or there is nothing to build it with.
 *
 * @example
 * ```ts ignore
 * await buildPlugin({ dir: "/home/ana/my-plugin" });
 * ```
 */
export async function buildPlugin(options: BuildOptions): Promise<BuildResult> {
  const { dir } = options;
  const output = options.output ?? "inherit";
  let command: string;
  let args: string[];
  if (await exists(join(dir, "build.sh"))) {
    command = "sh";
    args = [join(dir, "build.sh")];
  } else if (await hasBuildTask(dir)) {
    command = Deno.execPath();
    args = ["task", "--cwd", dir, "build"];
  } else if (
    await exists(join(dir, "main.ts")) || await exists(join(dir, "plugin.ts"))
  ) {
    return { ran: undefined, ms: 0 };
  } else {
    throw new CliError(
      `Cannot build "${dir}": it has no build.sh and no build task in deno.json`,
    );
  }
  const ran = command === "sh" ? "build.sh" : "deno task build";
  const started = performance.now();
  let r: Deno.CommandOutput;
  try {
    r = await new Deno.Command(command, {
      args,
      cwd: dir,
      stdin: "null",
      stdout: output,
      stderr: output,
    }).output();
  } catch (e) {
    throw new CliError(
      `Cannot build "${dir}": cannot start ${command}: ${
        e instanceof Error ? e.message : String(e)
      }`,
    );
  }
  if (r.code !== 0) {
    let tail = "";
    if (output === "piped") {
      const text = new TextDecoder().decode(r.stderr).trim() ||
        new TextDecoder().decode(r.stdout).trim();
      const last = text.split("\n").filter((l) => l.trim()).at(-1);
      if (last) tail = `: ${last.trim()}`;
    }
    throw new CliError(
      `Cannot build "${dir}": ${ran} exited with ${r.code}${tail}`,
    );
  }
  return { ran, ms: performance.now() - started };
}
