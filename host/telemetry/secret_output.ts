/**
 * Where a secret the operator must see once (the admin token created at
 * first start) is shown without reaching logs or telemetry: straight to the
 * terminal, past `console` (which Deno exports as OpenTelemetry log records
 * under `OTEL_DENO=true`), or into a file only its owner can read.
 *
 * @example
 * ```ts ignore
 * import { writeSecretFile, writeTerminal } from "./secret_output.ts";
 * writeTerminal(`\n    ${token}\n\n`);
 * writeSecretFile("./data/admin_token", `${token}\n`);
 * ```
 *
 * @module
 */

/**
 * Writes `text` to the process's stdout directly, bypassing `console`, so
 * that Deno's telemetry never sees it.
 *
 * @example
 * ```ts
 * import { writeTerminal } from "./secret_output.ts";
 * writeTerminal("shown on the terminal only\n");
 * ```
 */
export function writeTerminal(text: string): void {
  const bytes = new TextEncoder().encode(text);
  let written = 0;
  while (written < bytes.length) {
    written += Deno.stdout.writeSync(bytes.subarray(written));
  }
}

/**
 * Writes `text` to `path` readable and writable by its owner only (mode
 * 0600, also when the file existed with another mode), replacing what it
 * held.
 *
 * @example
 * ```ts ignore
 * import { writeSecretFile } from "./secret_output.ts";
 * writeSecretFile("./data/admin_token", "gk_…\n");
 * ```
 */
export function writeSecretFile(path: string, text: string): void {
  // Created (or emptied) and made 0600 before the secret is written: it is
  // never in a file another user may read, even for a moment.
  const file = Deno.openSync(path, {
    write: true,
    create: true,
    truncate: true,
    mode: 0o600,
  });
  try {
    Deno.chmodSync(path, 0o600);
    const bytes = new TextEncoder().encode(text);
    let written = 0;
    while (written < bytes.length) {
      written += file.writeSync(bytes.subarray(written));
    }
  } finally {
    file.close();
  }
}
