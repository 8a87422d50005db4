/**
 * {@linkcode loadGrpcPlugin}, the entry of the gRPC runtime. It loads the
 * gRPC library (grpc-js, protobufjs) only when the first gRPC plugin starts,
 * so a host without gRPC plugins never pays for it.
 *
 * @module
 */

import type { GrpcPlugin, LoadGrpcPluginOptions } from "./options.ts";

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
  const dir = await Deno.makeTempDir({
    prefix: "gk-grpc-",
    ...(options.tempDir ? { dir: options.tempDir } : {}),
  });
  await Deno.chmod(dir, 0o700);
  const { SupervisedGrpcPlugin } = await import("./plugin.ts");
  const plugin = new SupervisedGrpcPlugin(entry, dir, options);
  await plugin.start();
  return plugin;
}
