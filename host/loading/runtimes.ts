/**
 * The part of the Loader that picks a runtime by the plugin's kind (the one
 * place in `host/` that imports `runtimes/`): it turns a discovered
 * {@linkcode PluginSource} into a running plugin, with what its effective
 * permissions (requested ∩ granted) map to — WASI preopens for WASM, Deno
 * flags for a TypeScript gRPC plugin — and its config section as WASI
 * environment. These launch-time mappings take effect at the next load or
 * reload; HostAPI checks follow grant changes at once. gRPC plugins run in
 * the runtime's OS sandbox (bubblewrap) with the options given here.
 *
 * @module
 */

import { join, resolve } from "node:path";
import type { LogBuffer } from "../log_buffer.ts";
import type { PluginFactory, PluginSource } from "./loader.ts";
import type { Plugin } from "../model/plugin.ts";
import { effectivePermissions } from "../../permissions/grammar.ts";
import type { GrantStore } from "../../permissions/grants.ts";
import type { AuditLog } from "../../permissions/audit.ts";
import { denoFlagsFor } from "../../permissions/deno_flags.ts";
import { assertFsContained } from "../../permissions/fs_check.ts";
import { wasiPreopensFor } from "../../permissions/wasi_preopens.ts";
import {
  loadWasmPlugin,
  type WasmPluginOptions,
} from "../../runtimes/wasm/mod.ts";
import {
  type CallbackRefusal,
  loadGrpcPlugin,
  type LoadGrpcPluginOptions,
  type SandboxOptions,
} from "../../runtimes/grpc/mod.ts";

export {
  type PluginRunRoot,
  preparePluginRunRoot,
} from "../../runtimes/grpc/mod.ts";

/** Options of {@linkcode createRuntimeFactory}. */
export interface RuntimeFactoryOptions {
  /** Where approved permissions are kept. */
  grants: GrantStore;
  /** Data root; each plugin gets `<dataDir>/plugins/<name>`. */
  dataDir: string;
  /** A plugin's own configuration values (become WASI environment). */
  pluginConfig?: (name: string) => Record<string, string>;
  /** Native executables the operator trusts (absolute paths). */
  trustedExecutables?: readonly string[];
  /** Where gRPC plugins' stderr lines go. */
  logs?: LogBuffer;
  /** Extra options for every WASM plugin. */
  wasm?: Omit<WasmPluginOptions, "config" | "wasi" | "name">;
  /** Extra options for every gRPC plugin. */
  grpc?: Omit<LoadGrpcPluginOptions, "denoFlags" | "dataDir" | "logs">;
  /**
   * The OS sandbox of gRPC plugins (wins over `grpc.sandbox`); `"none"`
   * runs them without one (development only; the host's
   * `GOATKIT_UNSANDBOXED_PLUGINS=1`).
   * @default {} (sandboxed; refused without bubblewrap)
   */
  sandbox?: SandboxOptions | "none";
  /** Where refused gRPC host callbacks are recorded (the host's audit log). */
  audit?: Pick<AuditLog, "record">;
  /**
   * The folder gRPC plugins' private folders (sockets, import map) are made
   * in: the `dir` of {@linkcode preparePluginRunRoot} (`<dataDir>/run`),
   * whose leftovers the next start removes. `grpc.tempDir` wins.
   * @default the OS temp dir
   */
  runDir?: string;
}

/**
 * Builds the Loader's plugin factory; see the module doc.
 *
 * @example
 * ```ts ignore
 * const loader = new Loader(manager, {
 *   dir: "./plugins",
 *   load: createRuntimeFactory({ grants, dataDir: "./data" }),
 * });
 * ```
 */
export function createRuntimeFactory(
  options: RuntimeFactoryOptions,
): PluginFactory {
  return async (source: PluginSource): Promise<Plugin> => {
    const name = source.name;
    const granted = (await options.grants.get(name)) ?? [];
    const effective = effectivePermissions(
      source.manifest.permissions ?? [],
      granted,
    );
    const dataDir = resolve(join(options.dataDir, "plugins", name));
    await Deno.mkdir(dataDir, { recursive: true });
    // Deno's flags and our WASI layer both follow symlinks that already
    // exist: refuse to start a plugin whose granted folders contain one
    // leading out of its data directory.
    await assertFsContained({ grants: effective, dataDir });
    const config = options.pluginConfig?.(name) ?? {};
    switch (source.kind) {
      case "wasm":
        return await loadWasmPlugin(source.entry, {
          ...options.wasm,
          name,
          config,
          wasi: { preopens: wasiPreopensFor({ grants: effective, dataDir }) },
        });
      case "grpc-deno":
      case "grpc-native": {
        const logs = options.logs;
        return await loadGrpcPlugin(source.entry, {
          ...(options.runDir !== undefined ? { tempDir: options.runDir } : {}),
          ...options.grpc,
          ...(options.sandbox !== undefined
            ? { sandbox: options.sandbox }
            : {}),
          dataDir,
          ...(source.kind === "grpc-deno"
            ? {
              denoFlags: denoFlagsFor({
                grants: effective,
                dataDir,
                codeDir: source.dir,
              }),
            }
            : {}),
          trustedExecutables: options.trustedExecutables ?? [],
          ...(options.audit
            ? {
              onCallbackRefused: (r: CallbackRefusal) =>
                options.audit?.record({
                  plugin: name,
                  permission: "call",
                  attempted: `${
                    r.method ?? "callback"
                  } outside a live call: ${r.reason}`,
                  ...(r.method ? { method: r.method } : {}),
                }),
            }
            : {}),
          ...(logs
            ? {
              logs: (level, message, fields) =>
                logs.log(name, level, message, fields),
            }
            : {}),
        });
      }
    }
  };
}
