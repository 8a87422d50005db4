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

import { sha256Hex } from "../model/sha256.ts";
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
  type ExtismHostFunction,
  type ExtismLogLevel,
  type ExtismVarStore,
  loadExtismPlugin,
} from "../../runtimes/extism/mod.ts";
import {
  EXTISM_MANIFEST_FILE,
  mapExtismManifest,
  parseExtismManifest,
  readExtismModule,
} from "./extism_manifest.ts";
import {
  covers,
  parsePermission,
  type Permission,
} from "../../permissions/grammar.ts";
import type { HostAPI } from "../model/host_api.ts";
import { PermissionDeniedError } from "../model/errors.ts";
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
  /**
   * Data root; each plugin gets `<dataDir>/plugin-data/<name>` (apart from
   * the default plugins folder `<dataDir>/plugins`, so a package upgrade
   * never touches a plugin's data).
   */
  dataDir: string;
  /** A plugin's own configuration values (become WASI environment). */
  pluginConfig?: (name: string) => Record<string, string>;
  /**
   * Native executables the operator trusts: SHA-256 digests of the binary
   * (64 hex digits, the `trustedExecutables` setting) or absolute paths.
   * A digest trusts those exact bytes wherever they are; a path trusts
   * whatever is there, so prefer digests. A native plugin whose binary
   * matches neither is refused with {@linkcode ExecutableNotTrustedError}
   * (logged under the plugin's name).
   */
  trustedExecutables?: readonly string[];
  /** Where gRPC plugins' stderr lines go. */
  logs?: LogBuffer;
  /** Extra options for every WASM plugin. */
  wasm?: Omit<WasmPluginOptions, "config" | "wasi" | "name">;
  /** Options of Extism plugins. */
  extism?: ExtismRuntimeOptions;
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
    const dataDir = resolve(join(options.dataDir, "plugin-data", name));
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
      case "extism":
        return await loadExtism(source, effective, dataDir, config, options);
      case "grpc-deno":
      case "grpc-native": {
        const logs = options.logs;
        const trustedExecutables = source.kind === "grpc-native"
          ? await trustedEntry(name, source.entry, options)
          : [];
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
          trustedExecutables,
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

/** Options of Extism plugins ({@linkcode RuntimeFactoryOptions.extism}). */
export interface ExtismRuntimeOptions {
  /** User host functions offered to every Extism plugin. */
  functions?: readonly ExtismHostFunction[];
  /**
   * Where a plugin's vars persist (the host: its database).
   * @default the runtime's in-memory store (lost at reload)
   */
  vars?: (plugin: string, maxBytes: number) => ExtismVarStore;
  /**
   * The host's cap on one plugin's vars, in bytes; an `extism.json` may
   * ask for less (`memory.max_var_bytes`). @default 1048576
   */
  maxVarBytes?: number;
  /** Lowest level of `log_*` lines kept. @default "info" */
  logLevel?: ExtismLogLevel;
}

/**
 * Loads an Extism plugin folder: `extism.json` mapped onto the plugin's
 * effective permissions (`allowed_paths` become preopens at their guest
 * paths once granted; other `fs:` grants at `/data/<path>`), its limits
 * capped by the host's, its `config` served as defaults behind the
 * operator's grants, and routes that hand it the raw request body.
 */
async function loadExtism(
  source: PluginSource,
  effective: readonly Permission[],
  dataDir: string,
  config: Record<string, string>,
  options: RuntimeFactoryOptions,
): Promise<Plugin> {
  const name = source.name;
  const manifest = parseExtismManifest(
    await Deno.readTextFile(source.entry),
    { file: EXTISM_MANIFEST_FILE },
  );
  const hostVars = options.extism?.maxVarBytes ?? 1024 * 1024;
  const mapping = mapExtismManifest(manifest, {
    maxPages: options.wasm?.memoryLimitPages ?? 256,
    callTimeoutMs: options.wasm?.callTimeoutMs ?? 30_000,
    maxVarBytes: hostVars,
  });
  const wasm = await readExtismModule(manifest, source.dir);
  const mapped = new Set(mapping.paths.map((p) => p.permission));
  const preopens = [
    ...wasiPreopensFor({
      grants: effective.filter((p) => !mapped.has(p.text)),
      dataDir,
    }),
    ...mapping.paths.filter((p) => {
      const want = parsePermission(p.permission);
      return effective.some((g) => covers(g, want));
    }).map((p) => ({
      guestPath: p.guestPath,
      hostPath: p.path === "." ? dataDir : join(dataDir, p.path),
      readOnly: p.readOnly,
    })),
  ];
  for (const p of preopens) await Deno.mkdir(p.hostPath, { recursive: true });
  const ext = options.extism ?? {};
  const plugin = await loadExtismPlugin(wasm, {
    ...options.wasm,
    name,
    config,
    wasi: { preopens },
    memoryLimitPages: mapping.memoryLimitPages,
    callTimeoutMs: mapping.callTimeoutMs,
    registration: source.manifest,
    maxVarBytes: mapping.maxVarBytes,
    ...(ext.vars ? { vars: ext.vars(name, mapping.maxVarBytes) } : {}),
    ...(ext.functions ? { functions: ext.functions } : {}),
    ...(ext.logLevel ? { logLevel: ext.logLevel } : {}),
  });
  return extismFacade(plugin, mapping.config);
}

/**
 * The Extism plugin as the host sees it: routes hand it the raw body
 * (`routeInput: "raw"`), and its HostAPI answers `config_get` of a key of
 * `extism.json`'s `config` with that default when the guarded HostAPI
 * allowed the key (granted `config:<key>`) but has no value of its own
 * (no value in the plugin's section nor a host value); a refusal stays a
 * refusal.
 * Everything else is the runtime's plugin itself.
 */
function extismFacade(
  plugin: Plugin,
  defaults: Record<string, string>,
): Plugin {
  const withDefaults = (host: HostAPI): HostAPI =>
    delegate(host, {
      configGet: async (ctx, key) => {
        try {
          const value = await host.configGet(ctx, key);
          // An empty answer is an unset key (as `config_get` reads it).
          return value === "" && Object.hasOwn(defaults, key)
            ? defaults[key]!
            : value;
        } catch (e) {
          if (e instanceof PermissionDeniedError) throw e;
          if (Object.hasOwn(defaults, key)) return defaults[key]!;
          throw e;
        }
      },
    });
  return delegate(plugin, {
    routeInput: "raw",
    init: (host, env) => plugin.init(withDefaults(host), env),
  });
}

/**
 * `target` with the members of `own` in place of its own; its other methods
 * are bound to it, each once (`call` is read at every plugin call, a
 * HostAPI method at every host call).
 */
function delegate<T extends object>(target: T, own: Partial<T>): T {
  const bound = new WeakMap<object, unknown>();
  return new Proxy(target, {
    get(t, prop) {
      if (Object.hasOwn(own, prop)) return own[prop as keyof T];
      const v = Reflect.get(t, prop, t);
      if (typeof v !== "function") return v;
      let b = bound.get(v);
      if (b === undefined) bound.set(v, b = v.bind(t));
      return b;
    },
  });
}

/** Whether `entry` is a SHA-256 digest (64 hex digits), not a path. */
function isDigest(entry: string): boolean {
  return /^[0-9a-f]{64}$/i.test(entry.trim());
}

/**
 * The SHA-256 of a file, lower-case hex.
 *
 * @example
 * ```ts ignore
 * console.log(await fileSha256("./plugins/hello-go/plugin"));
 * ```
 */
export async function fileSha256(path: string): Promise<string> {
  const bytes = await Deno.readFile(path);
  return sha256Hex(bytes);
}

/**
 * A native plugin's executable is trusted neither by the SHA-256 of its
 * bytes nor by its path (`trustedExecutables`): it is not run.
 *
 * @example
 * ```ts
 * import { ExecutableNotTrustedError } from "./runtimes.ts";
 * const e = new ExecutableNotTrustedError("hello-go", "ab".repeat(32));
 * console.log(e.sha256.length); // 64
 * ```
 */
export class ExecutableNotTrustedError extends Error {
  /** The plugin name. */
  readonly plugin: string;
  /** SHA-256 of the executable, hex. */
  readonly sha256: string;

  /** Creates the error. */
  constructor(plugin: string, sha256: string) {
    super(
      `Cannot run native plugin "${plugin}": its executable (SHA-256 ${sha256}) is not trusted; to trust it, add ${sha256} to GOATKIT_TRUSTED_EXECUTABLES (or server.trustedExecutables in goatkit.json) and restart the host`,
    );
    this.name = "ExecutableNotTrustedError";
    this.plugin = plugin;
    this.sha256 = sha256;
  }
}

/**
 * The `trustedExecutables` list the gRPC runtime gets for a native entry:
 * the entry itself when its SHA-256 is trusted, the trusted paths
 * otherwise; throws {@linkcode ExecutableNotTrustedError} (logged) when
 * neither trusts it.
 */
async function trustedEntry(
  name: string,
  entry: string,
  options: RuntimeFactoryOptions,
): Promise<string[]> {
  const listed = options.trustedExecutables ?? [];
  const digests = new Set(
    listed.filter(isDigest).map((d) => d.trim().toLowerCase()),
  );
  const paths = listed.filter((p) => !isDigest(p)).map((p) => resolve(p));
  const sha256 = await fileSha256(entry);
  if (digests.has(sha256)) return [entry];
  let real = entry;
  try {
    real = await Deno.realPath(entry);
  } catch { /* the runtime reports a missing file */ }
  if (paths.includes(resolve(entry)) || paths.includes(real)) return paths;
  const error = new ExecutableNotTrustedError(name, sha256);
  options.logs?.log(name, "warn", error.message, { sha256 });
  throw error;
}

/**
 * Runs a bare WASM module once, with no permissions, to read what it
 * registers (`gk_register`), then shuts it down. The package installer
 * names an uploaded `.wasm` file by it.
 *
 * @example
 * ```ts ignore
 * const manifest = await readWasmRegistration(await Deno.readFile("hello.wasm"));
 * console.log(manifest.name);
 * ```
 */
export async function readWasmRegistration(
  wasm: Uint8Array,
  options: Omit<WasmPluginOptions, "config" | "wasi" | "name"> = {},
): Promise<unknown> {
  const plugin = await loadWasmPlugin(wasm, {
    ...options,
    name: "uploaded-module",
    config: {},
    wasi: { preopens: [] },
    instances: 1,
  });
  try {
    return await plugin.gkRegister();
  } finally {
    await plugin.shutdown().catch(() => {});
  }
}
