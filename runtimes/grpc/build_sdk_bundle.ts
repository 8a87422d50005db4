/**
 * Writes `sdk_bundle.js`: the plugin SDK (`sdk.ts` and the modules it
 * imports) as one minified JavaScript file, which sandboxed TypeScript
 * plugins load instead of the sources. Inside the sandbox Deno's emit cache
 * is a private scratch folder, so every start would otherwise transpile the
 * SDK again (~10–15 ms of a ~150 ms cold start on 2 shared cores).
 *
 * The bundle's first line records the SHA-256 of the sources it was built
 * from; the host uses it only while that matches (`sdk_bundle.ts`) and
 * loads the sources otherwise, so a stale bundle is never run. `tests/grpc_sdk_bundle_test.ts` fails while it is stale.
 *
 * Run after changing any SDK module:
 *
 * ```sh
 * deno run -A runtimes/grpc/build_sdk_bundle.ts
 * ```
 *
 * @module
 */

import { fileURLToPath } from "node:url";
import {
  SDK_BUNDLE_HEADER,
  sdkBundlePath,
  sdkSourceFiles,
  sdkSourceHash,
} from "./sdk_bundle.ts";

/** The bundle could not be built. */
export class SdkBundleError extends Error {
  /** Creates the error with `deno bundle`'s output. */
  constructor(output: string) {
    super(`Cannot bundle the plugin SDK: deno bundle failed: ${output}`);
    this.name = "SdkBundleError";
  }
}

/**
 * Bundles the SDK and returns the file's text (header included).
 *
 * @example
 * ```ts ignore
 * const text = await buildSdkBundle();
 * ```
 */
export async function buildSdkBundle(): Promise<string> {
  const hash = await sdkSourceHash(await sdkSourceFiles());
  const out = await Deno.makeTempFile({ suffix: ".js" });
  try {
    const result = await new Deno.Command(Deno.execPath(), {
      args: [
        "bundle",
        "--quiet",
        "--no-config",
        "--no-lock",
        "--minify",
        "--keep-names",
        "--platform=deno",
        "-o",
        out,
        fileURLToPath(new URL("./sdk.ts", import.meta.url)),
      ],
      stdout: "piped",
      stderr: "piped",
    }).output();
    if (!result.success) {
      throw new SdkBundleError(new TextDecoder().decode(result.stderr));
    }
    const code = await Deno.readTextFile(out);
    return `${SDK_BUNDLE_HEADER}${hash}\n// deno-fmt-ignore-file\n// deno-lint-ignore-file\n${code}`;
  } finally {
    await Deno.remove(out).catch(() => {});
  }
}

if (import.meta.main) {
  const path = sdkBundlePath()!;
  await Deno.writeTextFile(path, await buildSdkBundle());
  console.log(`wrote ${path}`);
}
