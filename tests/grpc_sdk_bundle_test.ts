// The pre-built SDK (runtimes/grpc/sdk_bundle.js) that sandboxed TypeScript
// plugins load: it must match the SDK sources, and a stale one must not be
// used. (The sandboxed plugin tests, such as grpc_runtime_test.ts, run
// their TypeScript plugins on it.)

import assert from "node:assert/strict";
import { basename, dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import {
  sdkBundleIfFresh,
  sdkBundlePath,
  sdkSourceFiles,
} from "../runtimes/grpc/sdk_bundle.ts";

Deno.test("the committed SDK bundle was built from the SDK sources as they are", async () => {
  assert.equal(
    await sdkBundleIfFresh(),
    sdkBundlePath(),
    "runtimes/grpc/sdk_bundle.js is stale or missing: run `deno run -A runtimes/grpc/build_sdk_bundle.ts`",
  );
  // The bundle is made of the SDK's value imports, not of the host model
  // types it only imports as types.
  assert.deepEqual(
    (await sdkSourceFiles()).map((f) => basename(f)),
    [
      "_h2_frames.ts",
      "call_codec.ts",
      "h2_client.ts",
      "h2_server.ts",
      "hpack.ts",
      "hpack_tables.ts",
      "registration.ts",
      "sdk.ts",
      "sdk_codec.ts",
    ],
  );
});

Deno.test("a bundle whose sources changed since it was built is not used", async () => {
  const dir = await Deno.makeTempDir({ prefix: "gk-sdk-bundle-" });
  try {
    const grpcDir = join(dir, "runtimes", "grpc");
    await Deno.mkdir(grpcDir, { recursive: true });
    const here = dirname(fileURLToPath(import.meta.url));
    const sources = join(here, "..", "runtimes", "grpc");
    for (
      const f of [
        ...(await sdkSourceFiles()).map((f) => basename(f)),
        "sdk_bundle.ts",
        "sdk_bundle.js",
      ]
    ) {
      await Deno.copyFile(join(sources, f), join(grpcDir, f));
    }
    const copy = await import(join(grpcDir, "sdk_bundle.ts"));
    assert.equal(await copy.sdkBundleIfFresh(), join(grpcDir, "sdk_bundle.js"));
    // Asked again with nothing changed: the same (remembered) answer.
    assert.equal(await copy.sdkBundleIfFresh(), join(grpcDir, "sdk_bundle.js"));
    // An edit that keeps the size is seen too (the verdict is remembered
    // by size and modification time).
    const tables = join(grpcDir, "hpack_tables.ts");
    const text = await Deno.readTextFile(tables);
    await new Promise((r) => setTimeout(r, 5)); // another mtime
    await Deno.writeTextFile(tables, text.replace("/", "*"));
    assert.equal(await copy.sdkBundleIfFresh(), undefined);
    await Deno.writeTextFile(tables, text);
    // One changed byte in a module the bundle contains.
    const codec = join(grpcDir, "h2_server.ts");
    await Deno.writeTextFile(
      codec,
      (await Deno.readTextFile(codec)) + "\n// edited\n",
    );
    assert.equal(await copy.sdkBundleIfFresh(), undefined);
    // No bundle at all: the sources are used too.
    await Deno.remove(join(grpcDir, "sdk_bundle.js"));
    assert.equal(await copy.sdkBundleIfFresh(), undefined);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});
