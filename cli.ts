/**
 * Entry of `deno task gk`: see `host/cli/main.ts`.
 *
 * @module
 */
import { runCli } from "./host/cli/main.ts";

if (import.meta.main) Deno.exit(await runCli(Deno.args));
