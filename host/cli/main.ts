/**
 * `gk`, the command line of GoatKit for Deno: scaffold, build, pack, sign
 * and run plugins locally, and manage a running host over its JSON API.
 *
 * Run it from your plugin's folder; relative paths are taken from there:
 *
 * ```sh
 * deno install -g -A -n gk jsr:@goatkit/deno/cli
 * gk init my-plugin --runtime wasm-c && cd my-plugin && gk build && gk pack
 * ```
 *
 * In this repository, `deno task gk …` does the same (paths relative to the
 * directory the task was started from).
 *
 * @module
 */

import { errorText } from "../model/errors.ts";
import { parseCliArgs } from "./args.ts";
import { type CommandContext, commandContext } from "./context.ts";
import { CliError } from "./errors.ts";
import { devCommand } from "./dev.ts";
import {
  callCommand,
  grantsCommand,
  installCommand,
  listCommand,
  toggleCommand,
  uninstallCommand,
} from "./host_commands.ts";
import { initCommand } from "./init_command.ts";
import { type CliIO, consoleIO } from "./io.ts";
import { keygenCommand, signCommand, verifyCommand } from "./keys.ts";
import { buildCommand, packCommand } from "./local_commands.ts";
import { logsCommand } from "./logs.ts";
import { USAGE } from "./usage.ts";

export { CliError, CliUsageError } from "./errors.ts";
export type { CliIO } from "./io.ts";

const COMMANDS: Record<string, (ctx: CommandContext) => Promise<void>> = {
  init: initCommand,
  build: buildCommand,
  pack: packCommand,
  keygen: keygenCommand,
  sign: signCommand,
  verify: verifyCommand,
  run: async (ctx) => {
    // Loads the WASM runtime only when needed: other commands start faster.
    const { runCommand } = await import("./run_local.ts");
    await runCommand(ctx);
  },
  dev: devCommand,
  install: (ctx) => installCommand(ctx, "install"),
  upgrade: (ctx) => installCommand(ctx, "upgrade"),
  uninstall: uninstallCommand,
  list: listCommand,
  enable: (ctx) => toggleCommand(ctx, "enable"),
  disable: (ctx) => toggleCommand(ctx, "disable"),
  logs: logsCommand,
  call: callCommand,
  grants: grantsCommand,
};

/**
 * Runs the CLI with `args`; returns the exit code: 0 ok, 1 failure (one
 * line on `io.err` naming what failed and why), 2 usage.
 *
 * @example
 * ```ts ignore
 * import { runCli } from "./main.ts";
 * Deno.exit(await runCli(["pack", "my-plugin"]));
 * ```
 */
export async function runCli(
  args: string[],
  io: CliIO = consoleIO(),
): Promise<number> {
  let command: string | undefined;
  try {
    const parsed = parseCliArgs(args);
    command = parsed.command;
    if (!command || parsed.help || command === "help") {
      io.out(USAGE);
      return command || parsed.help ? 0 : 2;
    }
    const run = COMMANDS[command];
    if (!run) {
      io.err(`gk: unknown command "${command}" (gk --help lists them)`);
      return 2;
    }
    await run(commandContext(io, parsed));
    return 0;
  } catch (e) {
    io.err(`gk${command ? ` ${command}` : ""}: ${errorText(e).split("\n")[0]}`);
    return e instanceof CliError ? e.exitCode : 1;
  }
}

if (import.meta.main) Deno.exit(await runCli(Deno.args));
