/**
 * `gk init`: creates a new plugin folder from a template (see
 * `templates/mod.ts`), named after the plugin, with everything it needs to
 * build outside this repository.
 *
 * @module
 */

import { resolve } from "node:path";
import { PLUGIN_NAME_REGEXP } from "../model/manifest.ts";
import { HOST_VERSION } from "../model/version.ts";
import { renderTemplate, TEMPLATES } from "./templates/mod.ts";

/** The `--runtime` values `gk init` accepts, one per template. */
export const TEMPLATE_RUNTIMES: readonly string[] = Object.freeze(
  Object.keys(TEMPLATES),
);

/** What went wrong in {@linkcode initPlugin}. */
export type InitErrorReason =
  | "invalid-name"
  | "unknown-runtime"
  | "target-not-empty"
  | "write-failed";

/** A plugin folder could not be created; `reason` says why. */
export class InitError extends Error {
  /** Why. */
  readonly reason: InitErrorReason;
  /** Creates the error. */
  constructor(
    message: string,
    reason: InitErrorReason,
    options?: ErrorOptions,
  ) {
    super(message, options);
    this.name = "InitError";
    this.reason = reason;
  }
}

/** Options of {@linkcode initPlugin}. */
export interface InitPluginOptions {
  /** The plugin name (`^[a-z][a-z0-9-]{1,62}$`); also the folder name. */
  name: string;
  /** One of {@linkcode TEMPLATE_RUNTIMES}. */
  runtime: string;
  /** The folder the plugin folder is made in (relative to the working directory). */
  parent: string;
  /** Where progress and next steps are written, one line at a time. */
  out: (line: string) => void;
}

/**
 * Where `@goatkit/deno/sdk` resolves for a new TypeScript plugin: the `./sdk`
 * export of the GoatKit copy this CLI runs from when that copy is on disk (a
 * `file:` URL, read from its `deno.json`), else the published package of the
 * same version.
 *
 * @example
 * ```ts ignore
 * console.log(await sdkSpecifier()); // file:///…/runtimes/grpc/sdk.ts
 * ```
 */
export async function sdkSpecifier(
  base: string = import.meta.url,
): Promise<string> {
  const published = `jsr:@goatkit/deno@${HOST_VERSION}/sdk`;
  const config = new URL("../../deno.json", base);
  if (config.protocol !== "file:") return published;
  try {
    const { exports } = JSON.parse(await Deno.readTextFile(config));
    const sdk = exports?.["./sdk"];
    return typeof sdk === "string" ? new URL(sdk, config).href : published;
  } catch {
    return published;
  }
}

/**
 * Creates `<parent>/<name>` from the template of `runtime` and returns its
 * absolute path. Refuses an invalid name, an unknown runtime and a target
 * that exists and is not an empty folder; a failure while writing removes
 * what was written.
 *
 * @throws {InitError} when the plugin folder cannot be created.
 *
 * @example
 * ```ts ignore
 * const dir = await initPlugin({
 *   name: "my-plugin",
 *   runtime: "wasm-c",
 *   parent: ".",
 *   out: (line) => console.log(line),
 * });
 * ```
 */
export async function initPlugin(options: InitPluginOptions): Promise<string> {
  const { name, runtime, parent, out } = options;
  if (!PLUGIN_NAME_REGEXP.test(name)) {
    throw new InitError(
      `Cannot create plugin "${name}": the name must match ${PLUGIN_NAME_REGEXP.source} (lower-case letters, digits and "-", starting with a letter)`,
      "invalid-name",
    );
  }
  const template = TEMPLATES[runtime];
  if (!template) {
    throw new InitError(
      `Cannot create plugin "${name}": unknown runtime "${runtime}" (choose one of ${
        TEMPLATE_RUNTIMES.join(", ")
      })`,
      "unknown-runtime",
    );
  }
  const dir = resolve(parent, name);
  const created = await makeEmptyFolder(dir, name);
  const values = {
    name,
    sdk: await sdkSpecifier(),
    goatkitVersion: HOST_VERSION,
  };
  out(`creating ${dir} (${template.summary})`);
  try {
    for (const [path, text] of Object.entries(template.files)) {
      const file = resolve(dir, path);
      const slash = file.lastIndexOf("/");
      await Deno.mkdir(file.slice(0, slash), { recursive: true });
      await Deno.writeTextFile(file, renderTemplate(text, values), {
        mode: template.executables.includes(path) ? 0o755 : 0o644,
      });
      if (template.executables.includes(path)) await Deno.chmod(file, 0o755);
    }
  } catch (e) {
    if (created) await Deno.remove(dir, { recursive: true }).catch(() => {});
    else await emptyFolder(dir);
    throw new InitError(
      `Cannot create plugin "${name}": writing "${dir}" failed: ${
        e instanceof Error ? e.message : String(e)
      }`,
      "write-failed",
      { cause: e },
    );
  }
  for (const path of Object.keys(template.files).sort()) out(`  ${path}`);
  out(
    `next: cd ${dir} && ./build.sh && gk pack . && gk install ${name}-0.1.0.zip`,
  );
  return dir;
}

/** Makes `dir` or accepts it when empty; returns whether it was made. */
async function makeEmptyFolder(dir: string, name: string): Promise<boolean> {
  let info: Deno.FileInfo;
  try {
    info = await Deno.stat(dir);
  } catch (e) {
    if (!(e instanceof Deno.errors.NotFound)) {
      throw new InitError(
        `Cannot create plugin "${name}": cannot read "${dir}": ${
          e instanceof Error ? e.message : String(e)
        }`,
        "write-failed",
        { cause: e },
      );
    }
    try {
      await Deno.mkdir(dir, { recursive: true });
    } catch (e) {
      throw new InitError(
        `Cannot create plugin "${name}": cannot make "${dir}": ${
          e instanceof Error ? e.message : String(e)
        }`,
        "write-failed",
        { cause: e },
      );
    }
    return true;
  }
  if (!info.isDirectory) {
    throw new InitError(
      `Cannot create plugin "${name}": "${dir}" exists and is not a folder`,
      "target-not-empty",
    );
  }
  for await (const _ of Deno.readDir(dir)) {
    throw new InitError(
      `Cannot create plugin "${name}": "${dir}" exists and is not empty`,
      "target-not-empty",
    );
  }
  return false;
}

/** Removes everything inside `dir` (after a failed write into an empty folder). */
async function emptyFolder(dir: string): Promise<void> {
  try {
    for await (const e of Deno.readDir(dir)) {
      await Deno.remove(`${dir}/${e.name}`, { recursive: true }).catch(
        () => {},
      );
    }
  } catch { /* nothing to clean */ }
}
