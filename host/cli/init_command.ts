/**
 * `gk init <name> --runtime <runtime> [--dir <parent>]`: a new plugin
 * folder from a template (`init.ts`, `templates/`), made in the caller's
 * working directory unless `--dir` says otherwise.
 *
 * @module
 */

import { errorText } from "../model/errors.ts";
import { need } from "./args.ts";
import type { CommandContext } from "./context.ts";
import { CliError, CliUsageError } from "./errors.ts";
import { initPlugin, TEMPLATE_RUNTIMES } from "./init.ts";
import { resolveFrom } from "./paths.ts";

/** `gk init`. */
export async function initCommand(ctx: CommandContext): Promise<void> {
  const usage = `init <name> --runtime ${
    TEMPLATE_RUNTIMES.join("|")
  } [--dir <parent>]`;
  const name = need(ctx.args.rest[0], usage);
  const runtime = ctx.args.str("runtime");
  if (!runtime) {
    throw new CliUsageError(
      `Missing option: gk init ${name} --runtime <runtime> (one of ${
        TEMPLATE_RUNTIMES.join(", ")
      })`,
    );
  }
  try {
    await initPlugin({
      name,
      runtime,
      parent: resolveFrom(ctx.io, ctx.args.str("dir") ?? "."),
      out: (line) => ctx.io.out(line),
    });
  } catch (e) {
    throw new CliError(errorText(e).split("\n")[0]!, { cause: e });
  }
}
