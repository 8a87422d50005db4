/**
 * What a TypeScript plugin launch pays to know that the pre-built SDK
 * (`runtimes/grpc/sdk_bundle.js`) is fresh (issue 12, cold start): reading
 * and hashing every SDK source (the baseline: what each launch did before)
 * against `sdkBundleIfFresh()`, which remembers its verdict while the
 * files keep their sizes and modification times.
 *
 * ```sh
 * deno bench -A bench/sdk_bundle_bench.ts
 * ```
 *
 * @module
 */

import {
  sdkBundleIfFresh,
  sdkSourceFiles,
  sdkSourceHash,
} from "../runtimes/grpc/sdk_bundle.ts";

Deno.bench({
  name: "read and hash the SDK sources (every launch before)",
  group: "sdk-bundle",
  baseline: true,
  async fn() {
    await sdkSourceHash(await sdkSourceFiles());
  },
});

Deno.bench({
  name: "sdkBundleIfFresh() (remembered verdict)",
  group: "sdk-bundle",
  async fn() {
    if (!await sdkBundleIfFresh()) throw new Error("the bundle is stale");
  },
});
