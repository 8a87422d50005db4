/**
 * The help text of `gk`.
 *
 * @module
 */

import { TEMPLATE_RUNTIMES } from "./init.ts";

/** What `gk --help` prints. */
export const USAGE: string = `gk — GoatKit for Deno

Paths are relative to the directory you run gk from.

Plugin authors (no host needed):
  gk init <name> --runtime <rt> [--dir <parent>]
                                    new plugin folder; <rt>: ${
  TEMPLATE_RUNTIMES.join(", ")
}
  gk build [dir]                    run the plugin's build.sh (or deno task build)
  gk pack [dir] [-o out.zip]        validate and zip a plugin folder, list what is
                                    packed (.gkignore: gitignore-style exclusions)
  gk run <plugin.wasm> <fn> [--input <json> | --input-file <f>] [--config k=v]…
       [--abi gk|extism]            call a WASM plugin locally, without a host
                                    (an Extism module is recognised by its imports;
                                    its input is the raw --input text or file)
  gk keygen [-o prefix]             Ed25519 key pair; default
                                    $XDG_CONFIG_HOME/goatkit/keys/signing.{key,pub}
                                    (~/.config/goatkit/keys/); never overwrites
  gk sign <zip> [--key file]        write <zip>.sig
  gk verify <zip> [--sig file] [--pub file|base64]
                                    check a signature, print the signer's fingerprint

With a host (--url, default $GOATKIT_URL or http://127.0.0.1:8080;
             --token, default $GOATKIT_TOKEN, an admin API token):
  gk dev [dir] [--debounce ms]      build, pack and install; rebuild and reinstall
                                    on every change until Ctrl-C
  gk install <zip> [--sig file] [--allow-signer-change] [--allow-downgrade]
  gk upgrade <zip> [--sig file] [--allow-downgrade]
                                    show the permission diff, refuse a downgrade
                                    unless --allow-downgrade, then install
  gk uninstall <plugin> [--forget-signer]
  gk list [--json]                  plugins with version, runtime, status and reason
  gk enable <plugin> | gk disable <plugin>
  gk logs [--plugin p] [--level l] [--since t] [--until t] [--grep text]
          [--limit n] [--follow [--seconds s]]
                                    t: RFC 3339 or a duration ago (15m, 2h, 7d)
  gk call <plugin> <fn> [json | --input <json> | --input-file <f>]
  gk grants <plugin> [--approve p,q | --revoke p,q] [--json]

Exit codes: 0 ok, 1 failure, 2 usage.`;
