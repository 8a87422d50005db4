/**
 * {@linkcode loadGrpcPlugin}, the entry of the gRPC runtime. It loads the
 * gRPC library (grpc-js, protobufjs) only when the first gRPC plugin starts,
 * so a host without gRPC plugins never pays for it.
 *
 * @module
 */

import { tmpdir } from "node:os";
import type { GrpcPlugin, LoadGrpcPluginOptions } from "./options.ts";
import { makeRunDir, runDirLabel } from "./run_dir.ts";

/**
 * Launches a gRPC plugin, performs go-plugin's handshake, connects, checks
 * its health and calls `GKRegister`; returns it as a {@linkcode Plugin} with
 * `runtime: "grpc"`. `Init` follows when the Manager calls `init(host, env)`
 * with the plugin's guarded HostAPI; the host then serves `GKHost` to it on
 * its own unix socket (`host_socket` in Init's config).
 *
 * An entry ending in `.ts`/`.js` runs under `deno run` with least-privilege
 * flags; any other entry is a native executable and must be listed in
 * `trustedExecutables`.
 *
 * Its sockets and import map live in a private folder under
 * `options.tempDir` (see `run_dir.ts`), removed when the plugin stops and,
 * after a crash of the host, by `removeStaleRunDirs` at the next start.
 *
 * @example
 * ```ts ignore
 * import { loadGrpcPlugin } from "./load.ts";
 * const plugin = await loadGrpcPlugin("fixtures/plugins/hello-grpc-ts/plugin.ts");
 * await manager.register(plugin);
 * await manager.call("hello-grpc", "get_status", null);
 * ```
 */
export async function loadGrpcPlugin(
  entry: string,
  options: LoadGrpcPluginOptions = {},
): Promise<GrpcPlugin> {
  const dir = await makeRunDir(
    options.tempDir ?? tmpdir(),
    runDirLabel(entry, options.dataDir),
  );
  const { SupervisedGrpcPlugin } = await import("./plugin.ts");
  const plugin = new SupervisedGrpcPlugin(entry, dir, options);
  await plugin.start();
  return plugin;
}
