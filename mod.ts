/**
 * GoatKit for Deno: a sandboxed plugin host. Plugins are WASM modules or
 * out-of-process gRPC services; each talks to the host through its own
 * guarded HostAPI, which refuses whatever its granted permissions do not
 * cover.
 *
 * ```ts
 * import { Manager, encodeJson, decodeJson } from "./mod.ts";
 *
 * const manager = new Manager();
 * await manager.register({
 *   gkRegister: () => ({ name: "hello", version: "1.0.0" }),
 *   init: async () => {},
 *   call: async (_fn, args) => encodeJson({ echo: decodeJson(args) }),
 *   shutdown: async () => {},
 * });
 * console.log(decodeJson(await manager.call("hello", "echo", encodeJson(1))));
 * await manager.shutdownAll();
 * ```
 *
 * @module
 */

export * from "./host/model/errors.ts";
export * from "./host/model/plugin.ts";
export * from "./host/model/host_api.ts";
export * from "./host/model/manifest.ts";
export * from "./host/model/_duration.ts";
export * from "./host/model/_semver.ts";
export * from "./host/model/version.ts";
export * from "./host/manager.ts";
export * from "./host/state_store.ts";
export * from "./host/log_buffer.ts";
export * from "./host/registries/i18n.ts";
export * from "./host/registries/error_codes.ts";
export * from "./host/registries/templates.ts";
export * from "./host/registries/plugin_caller.ts";
export * from "./host/loading/loader.ts";
export * from "./host/loading/runtimes.ts";
export * from "./host/loading/packages.ts";
export * from "./host/loading/zip_reader.ts";
export * from "./host/scheduler.ts";
export * from "./host/registries/sanitize.ts";
export * from "./host/services/basic_host_api.ts";
export * from "./host/testing/memory_host_api.ts";
export * from "./host/services/mod.ts";
export * from "./permissions/mod.ts";
export * from "./runtimes/wasm/mod.ts";
export * from "./runtimes/grpc/mod.ts";
export * from "./host/server/mod.ts";
