/**
 * What every command of `gk` gets: the IO, the parsed command line, and a
 * client of the host named by `--url`/`--token` (or `GOATKIT_URL`,
 * `GOATKIT_TOKEN`).
 *
 * @module
 */

import type { ParsedArgs } from "./args.ts";
import { HostClient } from "./host_client.ts";
import type { CliIO } from "./io.ts";

/** The default host URL when neither `--url` nor `GOATKIT_URL` is set. */
export const DEFAULT_HOST_URL = "http://127.0.0.1:8080";

/** The context of one command. */
export interface CommandContext {
  /** Where output goes. */
  io: CliIO;
  /** The command line. */
  args: ParsedArgs;
  /** A client of the host (`--url`, `--token`). */
  host(signal?: AbortSignal): HostClient;
}

/** Builds the context of a command. */
export function commandContext(io: CliIO, args: ParsedArgs): CommandContext {
  return {
    io,
    args,
    host: (signal) =>
      new HostClient({
        url: args.str("url") ?? io.env("GOATKIT_URL") ?? DEFAULT_HOST_URL,
        token: args.str("token") ?? io.env("GOATKIT_TOKEN"),
        ...(signal ? { signal } : {}),
      }),
  };
}
