/**
 * The command line of `gk`: one set of options shared by every command,
 * parsed strictly (an unknown option is a usage error, exit code 2).
 *
 * @module
 */

import { parseArgs } from "node:util";
import { CliUsageError } from "./errors.ts";

const OPTIONS = {
  runtime: { type: "string" },
  dir: { type: "string" },
  out: { type: "string", short: "o" },
  key: { type: "string" },
  pub: { type: "string" },
  sig: { type: "string" },
  url: { type: "string" },
  token: { type: "string" },
  plugin: { type: "string" },
  level: { type: "string" },
  since: { type: "string" },
  until: { type: "string" },
  grep: { type: "string" },
  limit: { type: "string" },
  seconds: { type: "string" },
  interval: { type: "string" },
  debounce: { type: "string" },
  approve: { type: "string" },
  revoke: { type: "string" },
  input: { type: "string" },
  "input-file": { type: "string" },
  abi: { type: "string" },
  config: { type: "string", multiple: true },
  timeout: { type: "string" },
  follow: { type: "boolean", short: "f" },
  json: { type: "boolean" },
  "allow-signer-change": { type: "boolean" },
  "allow-downgrade": { type: "boolean" },
  force: { type: "boolean" },
  "forget-signer": { type: "boolean" },
  help: { type: "boolean", short: "h" },
} as const;

/** A parsed command line. */
export interface ParsedArgs {
  /** The command (first positional), if any. */
  command: string | undefined;
  /** The positionals after the command. */
  rest: string[];
  /** Whether `--help` was given. */
  help: boolean;
  /** A string option's value. */
  str(name: keyof typeof OPTIONS): string | undefined;
  /** Whether a boolean option was given. */
  flag(name: keyof typeof OPTIONS): boolean;
  /** Every value of a repeatable option (`--config`). */
  all(name: keyof typeof OPTIONS): string[];
  /** A positive number option, or `fallback`; a bad value is a usage error. */
  num(name: keyof typeof OPTIONS, fallback: number): number;
}

/**
 * Parses `args`; throws {@linkcode CliUsageError} for unknown options or
 * missing option values.
 *
 * @example
 * ```ts
 * import { parseCliArgs } from "./args.ts";
 * const a = parseCliArgs(["pack", "my-plugin", "-o", "x.zip"]);
 * console.log(a.command, a.rest[0], a.str("out")); // pack my-plugin x.zip
 * ```
 */
export function parseCliArgs(args: string[]): ParsedArgs {
  let parsed;
  try {
    parsed = parseArgs({
      args,
      allowPositionals: true,
      options: OPTIONS,
      strict: true,
    });
  } catch (e) {
    throw new CliUsageError(
      `Cannot read the command line: ${
        (e instanceof Error ? e.message : String(e)).split("\n")[0]
      }`,
    );
  }
  const { values, positionals } = parsed;
  const [command, ...rest] = positionals;
  const v = values as Record<string, string | boolean | string[] | undefined>;
  const str = (name: string) => {
    const x = v[name];
    return typeof x === "string" ? x : undefined;
  };
  return {
    command,
    rest,
    help: v.help === true,
    str,
    flag: (name) => v[name] === true,
    all: (name) => {
      const x = v[name];
      return Array.isArray(x) ? x : typeof x === "string" ? [x] : [];
    },
    num: (name, fallback) => {
      const x = str(name);
      if (x === undefined) return fallback;
      const n = Number(x);
      if (!Number.isFinite(n) || n < 0) {
        throw new CliUsageError(
          `Cannot read --${name} "${x}": it must be a number of at least 0`,
        );
      }
      return n;
    },
  };
}

/** `value`, or a usage error naming what is missing (`usage`). */
export function need(value: string | undefined, usage: string): string {
  if (!value) {
    throw new CliUsageError(`Missing argument: gk ${usage}`);
  }
  return value;
}
