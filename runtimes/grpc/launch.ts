/**
 * Decides how a gRPC plugin process is started: a TypeScript/JavaScript
 * entry runs under `deno run` with least-privilege flags; a native
 * executable runs only when trusted. Both get a cleared environment holding
 * only the handshake variables. {@linkcode buildSandboxedLaunch} puts
 * either into the OS sandbox of `sandbox.ts`: it decides what is mounted
 * where and translates every host path in the flags and arguments into the
 * path the plugin sees.
 *
 * @module
 */

import { basename, dirname, extname, relative, resolve, sep } from "node:path";
import { fileURLToPath } from "node:url";
import { PROTO_FILES } from "./proto.ts";
import { UntrustedExecutableError } from "./errors.ts";
import { sdkBundleIfFresh, sdkSourceFiles } from "./sdk_bundle.ts";
import {
  bwrapCommand,
  dedupeLibraries,
  libraryPath,
  PathMap,
  SANDBOX_PATHS,
  type SandboxMount,
  type SandboxTools,
  sharedLibraries,
} from "./sandbox.ts";

/** go-plugin's magic cookie for GoatKit: key. */
export const MAGIC_COOKIE_KEY = "GOATKIT_PLUGIN";
/** go-plugin's magic cookie for GoatKit: value. */
export const MAGIC_COOKIE_VALUE = "goatkit-v1";
/** The application protocol versions the host offers. */
export const PROTOCOL_VERSIONS: readonly number[] = [1];

/** Entry file extensions run with `deno run`. */
export const SCRIPT_EXTENSIONS: readonly string[] = [
  ".ts",
  ".mts",
  ".js",
  ".mjs",
  ".tsx",
  ".jsx",
];

/**
 * Environment variables `@grpc/grpc-js` reads when it loads. The plugin may
 * read exactly these (they are unset, since the environment is cleared);
 * every other variable is refused by Deno.
 */
export const GRPC_JS_ENV: readonly string[] = [
  "GRPC_DEFAULT_SSL_ROOTS_FILE_PATH",
  "GRPC_EXPERIMENTAL_ENABLE_OUTLIER_DETECTION",
  "GRPC_NODE_DEBUG_SEND_ERROR_DETAILS",
  "GRPC_NODE_TRACE",
  "GRPC_NODE_USE_ALTERNATIVE_RESOLVER",
  "GRPC_NODE_VERBOSITY",
  "GRPC_SSL_CIPHER_SUITES",
  "GRPC_TRACE",
  "GRPC_VERBOSITY",
  "grpc_proxy",
  "http_proxy",
  "https_proxy",
  "no_grpc_proxy",
  "no_proxy",
];

/**
 * npm packages in TS plugins' import map, as pinned in the repository's
 * `deno.json` (a test checks they agree). The SDK itself imports none any
 * more (`sdk_codec.ts`, `h2_server.ts`); a plugin may (the hostile fixtures
 * that forge raw gRPC do), which is why {@linkcode GRPC_JS_ENV} and the
 * `.proto` files stay readable.
 */
export const SDK_NPM_IMPORTS: Readonly<Record<string, string>> = {
  "@grpc/grpc-js": "npm:@grpc/grpc-js@1.14.7",
  "@grpc/proto-loader": "npm:@grpc/proto-loader@0.8.1",
};

/** The specifier plugins import the SDK by. */
export const SDK_SPECIFIER = "@goatkit/deno/sdk";

/** How to start one plugin process. */
export interface LaunchSpec {
  /** `deno` for scripts, `native` for executables. */
  kind: "deno" | "native";
  /** Program to run. */
  command: string;
  /** Its arguments. */
  args: string[];
  /** Its whole environment (cleared otherwise). */
  env: Record<string, string>;
  /** Its working directory (the entry's directory). */
  cwd: string;
}

/** Inputs of {@linkcode buildLaunch}. */
export interface BuildLaunchOptions {
  /** Absolute path of the entry. */
  entry: string;
  /** The private socket directory the plugin may use. */
  socketDir: string;
  /** Exact path the plugin must listen on (TS plugins). */
  pluginSocket: string;
  /** The host's GKHost socket path. */
  hostSocket: string;
  /** The import map file for TS plugins. */
  importMap: string;
  /** The plugin's data directory, if any. */
  dataDir?: string;
  /** Extra permission flags computed from grants (see {@linkcode mergeDenoFlags}). */
  denoFlags?: readonly string[];
  /** Executables allowed to run natively. */
  trustedExecutables?: readonly string[];
  /** Deno's cache directory for the child. */
  denoDir: string;
  /** Extra arguments for the plugin. */
  args?: readonly string[];
  /**
   * A lockfile the child resolves npm packages with (`--lock --frozen`,
   * never written), so it picks exactly the host's cached versions.
   * Without it, `--no-lock`.
   */
  lockFile?: string;
  /** The Deno binary to run. @default Deno.execPath() */
  denoPath?: string;
  /** The `.proto` files the SDK reads. @default PROTO_FILES */
  protoFiles?: readonly string[];
}

/** Whether `entry` is a script run with `deno run`. */
export function isScriptEntry(entry: string): boolean {
  return SCRIPT_EXTENSIONS.includes(extname(entry).toLowerCase());
}

/** Flags a grant may contribute; everything else is refused. */
const MERGEABLE = ["--allow-net", "--allow-read", "--allow-write"];
/** Flags that only restrict; accepted (and deduplicated) as they are. */
const HARMLESS = [
  "--no-prompt",
  "--no-config",
  "--no-remote",
  "--cached-only",
  "--no-lock",
];

/** A `denoFlags` entry was refused. */
export class DenoFlagError extends Error {
  /** Creates the error for `flag`. */
  constructor(flag: string, why: string) {
    super(`Cannot use Deno flag "${flag}" for a plugin: ${why}`);
    this.name = "DenoFlagError";
  }
}

/**
 * Merges the runtime's own permission lists with the grant-derived
 * `denoFlags` into one flag per permission. Accepted from grants:
 * `--allow-net`, `--allow-read`, `--allow-write` (scoped or not), `--deny-*`,
 * `--config=<file>`, `--v8-flags=` and the restricting `--no-prompt`,
 * `--no-config`, `--no-remote`, `--cached-only`, `--no-lock`; `--allow-all`,
 * `--allow-env`, `--allow-run`, `--allow-ffi`, `--allow-sys` and the rest are
 * refused.
 *
 * @example
 * ```ts
 * import { mergeDenoFlags } from "./launch.ts";
 * mergeDenoFlags({ "--allow-net": ["unix:/t/p.sock"] }, ["--allow-net=api.example.com"]);
 * // ["--allow-net=unix:/t/p.sock,api.example.com"]
 * ```
 */
export function mergeDenoFlags(
  base: Readonly<Record<string, readonly string[]>>,
  extra: readonly string[] = [],
): string[] {
  const lists = new Map<string, string[] | "all">();
  for (const [k, v] of Object.entries(base)) lists.set(k, [...(v ?? [])]);
  const passthrough: string[] = [];
  for (const flag of extra) {
    const [name, value] = flag.includes("=")
      ? [flag.slice(0, flag.indexOf("=")), flag.slice(flag.indexOf("=") + 1)]
      : [flag, undefined];
    if (MERGEABLE.includes(name!)) {
      const current = lists.get(name!) ?? [];
      if (value === undefined || current === "all") lists.set(name!, "all");
      else current.push(...value.split(",").filter(Boolean));
      if (value !== undefined && current !== "all") lists.set(name!, current);
    } else if (
      name!.startsWith("--deny-") || name === "--v8-flags" ||
      (name === "--config" && value) || HARMLESS.includes(flag)
    ) {
      if (!passthrough.includes(flag)) passthrough.push(flag);
    } else {
      throw new DenoFlagError(
        flag,
        "only --allow-net, --allow-read, --allow-write, --deny-*, --config=, --v8-flags= and --no-prompt/--no-config/--no-remote/--cached-only/--no-lock may come from grants",
      );
    }
  }
  const out: string[] = [];
  for (const [name, list] of lists) {
    if (list === "all") out.push(name);
    else if (list.length) out.push(`${name}=${[...new Set(list)].join(",")}`);
  }
  return [...out, ...passthrough];
}

/**
 * Builds the command line and environment for a plugin entry, or throws
 * {@linkcode UntrustedExecutableError} for an untrusted native executable.
 */
export function buildLaunch(options: BuildLaunchOptions): LaunchSpec {
  const entry = resolve(options.entry);
  const cwd = dirname(entry);
  const handshakeEnv = {
    [MAGIC_COOKIE_KEY]: MAGIC_COOKIE_VALUE,
    PLUGIN_PROTOCOL_VERSIONS: PROTOCOL_VERSIONS.join(","),
  };
  if (isScriptEntry(entry)) {
    // Grant-derived flags decide about the data directory (fs: grants);
    // without them the plugin gets its whole data directory.
    const rw = [
      options.socketDir,
      ...(options.dataDir && !options.denoFlags ? [options.dataDir] : []),
    ];
    const perms = mergeDenoFlags({
      "--allow-read": [
        ...rw,
        options.hostSocket,
        ...(options.protoFiles ?? PROTO_FILES),
      ],
      "--allow-write": [...rw, options.hostSocket],
      "--allow-net": [
        `unix:${options.pluginSocket}`,
        `unix:${options.hostSocket}`,
      ],
    }, options.denoFlags);
    return {
      kind: "deno",
      command: options.denoPath ?? Deno.execPath(),
      args: [
        "run",
        // --quiet: Deno's own notices (such as "Ignored build scripts for
        // npm:protobufjs" at each launch) stay out of the plugin's log;
        // errors are still printed.
        "--quiet",
        ...["--no-prompt", "--cached-only", "--no-remote"]
          .filter((f) => !perms.includes(f)),
        ...(options.lockFile
          ? [`--lock=${options.lockFile}`, "--frozen"]
          : perms.includes("--no-lock")
          ? []
          : ["--no-lock"]),
        ...(perms.some((f) => f.startsWith("--config=") || f === "--no-config")
          ? []
          : ["--no-config"]),
        `--import-map=${options.importMap}`,
        `--allow-env=${GRPC_JS_ENV.join(",")}`,
        ...(options.lockFile ? perms.filter((f) => f !== "--no-lock") : perms),
        entry,
        "--gk-socket",
        options.pluginSocket,
        ...(options.args ?? []),
      ],
      env: {
        ...handshakeEnv,
        NO_COLOR: "1",
        DENO_DIR: options.denoDir,
        DENO_NO_UPDATE_CHECK: "1",
        DENO_NO_PACKAGE_JSON: "1",
      },
      cwd,
    };
  }
  const trusted = (options.trustedExecutables ?? []).map((p) => resolve(p));
  let real = entry;
  try {
    real = Deno.realPathSync(entry);
  } catch { /* reported by spawn */ }
  if (!trusted.includes(entry) && !trusted.includes(real)) {
    throw new UntrustedExecutableError(entry);
  }
  return {
    kind: "native",
    command: entry,
    args: [...(options.args ?? [])],
    env: {
      ...handshakeEnv,
      PLUGIN_MIN_PORT: "10000",
      PLUGIN_MAX_PORT: "25000",
      // go-plugin 1.0 makes its socket with ioutil.TempFile("", "plugin"),
      // newer releases honour PLUGIN_UNIX_SOCKET_DIR: both land in the
      // plugin's private socket directory.
      TMPDIR: options.socketDir,
      PLUGIN_UNIX_SOCKET_DIR: options.socketDir,
    },
    cwd,
  };
}

/**
 * The import map TS plugins run with (SDK + its npm packages); `sdk` is
 * where the SDK is found (default: this runtime's own `sdk.ts`).
 */
export function importMapJson(
  sdk: string = new URL("./sdk.ts", import.meta.url).href,
): string {
  return JSON.stringify(
    {
      imports: {
        [SDK_SPECIFIER]: sdk,
        ...SDK_NPM_IMPORTS,
      },
    },
    null,
    2,
  );
}

/** The repository's `deno.lock`, when the runtime runs from a checkout. */
export function hostLockFile(): string | undefined {
  const path = new URL("../../deno.lock", import.meta.url);
  if (path.protocol !== "file:") return undefined;
  try {
    Deno.statSync(path);
    return path.pathname;
  } catch {
    return undefined;
  }
}

/** Deno's cache directory, as the host process uses it. */
export function hostDenoDir(): string {
  const env = (k: string) => {
    try {
      return Deno.env.get(k);
    } catch {
      return undefined;
    }
  };
  const explicit = env("DENO_DIR");
  if (explicit) return resolve(explicit);
  const xdg = env("XDG_CACHE_HOME");
  if (xdg) return `${xdg}/deno`;
  const home = env("HOME");
  if (home) return `${home}/.cache/deno`;
  return "/root/.cache/deno";
}

// ---------------------------------------------------------------------------
// The sandboxed launch

/** The SDK's own modules and data files, for mounting them read-only. */
interface SdkModules {
  /** Their common ancestor folder. */
  root: string;
  /** The files (absolute). */
  files: string[];
}

let sdkModulesCache: Promise<SdkModules | undefined> | undefined;

/**
 * The local files the SDK loads: `sdk.ts` and what it imports by relative
 * path, transitively, plus the `.proto` files. `undefined` when the runtime
 * is not loaded from `file:` (the SDK then comes from the Deno cache).
 */
function sdkModules(): Promise<SdkModules | undefined> {
  sdkModulesCache ??= (async () => {
    if (new URL(import.meta.url).protocol !== "file:") return undefined;
    const seen = await sdkSourceFiles({ typeImports: true });
    const files = [...seen, ...PROTO_FILES];
    let root = dirname(files[0]!);
    const under = (f: string) => root === sep || f.startsWith(root + sep);
    while (!files.every(under)) root = dirname(root);
    return { root, files };
  })();
  sdkModulesCache.catch(() => sdkModulesCache = undefined);
  return sdkModulesCache;
}

/** Inputs of {@linkcode buildSandboxedLaunch}. */
export interface SandboxedLaunchOptions extends BuildLaunchOptions {
  /** The sandbox tools and limits. */
  tools: SandboxTools;
  /** The uid to drop to (root hosts), from `allocateSandboxUid`. */
  uid?: number;
}

/** A sandboxed launch: the command, plus how its paths translate. */
export interface SandboxedLaunch extends LaunchSpec {
  /** Host ↔ inside paths of this launch. */
  paths: PathMap;
  /** The uid the plugin runs as, when it has its own. */
  uid: number | undefined;
}

const PATH_FLAGS = [
  "--allow-read",
  "--allow-write",
  "--deny-read",
  "--deny-write",
];

/**
 * Translates the host paths in Deno permission flags into inside paths: a
 * mounted path becomes its inside path, a folder holding mounts stands for
 * those mounts, anything else is dropped (it does not exist inside). A flag
 * left without paths is dropped (`--allow-read=` with nothing would mean
 * everything). `unix:` entries of `--allow-net` are translated the same
 * way; other entries stay (the network namespace has no way out).
 *
 * @example
 * ```ts
 * import { translateDenoFlags } from "./launch.ts";
 * import { PathMap } from "./sandbox.ts";
 * const paths = new PathMap([{ host: "/srv/d/p", inside: "/plugin/data", access: "rw" }]);
 * translateDenoFlags(["--allow-write=/srv/d/p/cache,/etc", "--deny-read=/srv"], paths);
 * // ["--allow-write=/plugin/data/cache", "--deny-read=/plugin/data"]
 * ```
 */
export function translateDenoFlags(
  flags: readonly string[],
  paths: PathMap,
): string[] {
  const out: string[] = [];
  for (const flag of flags) {
    const eq = flag.indexOf("=");
    const name = eq < 0 ? flag : flag.slice(0, eq);
    if (eq < 0 || (!PATH_FLAGS.includes(name) && name !== "--allow-net")) {
      out.push(flag);
      continue;
    }
    const values = flag.slice(eq + 1).split(",").filter(Boolean).flatMap(
      (v) => {
        if (name === "--allow-net") {
          if (!v.startsWith("unix:")) return [v];
          const inside = paths.toInside(v.slice(5));
          return inside ? [`unix:${inside}`] : [];
        }
        const host = resolve(v);
        const inside = paths.toInside(host);
        return inside ? [inside] : paths.mountsUnder(host);
      },
    );
    if (values.length) out.push(`${name}=${[...new Set(values)].join(",")}`);
  }
  return out;
}

/**
 * Builds the launch of a plugin inside the OS sandbox: the same Deno flags
 * and environment as {@linkcode buildLaunch}, with every host path replaced
 * by its mount point, wrapped in `prlimit … bwrap … [setpriv …]`. Writes
 * the sandbox's import map to `options.importMap`. Throws
 * {@linkcode UntrustedExecutableError} for an untrusted native executable.
 */
export async function buildSandboxedLaunch(
  options: SandboxedLaunchOptions,
): Promise<SandboxedLaunch> {
  const entry = resolve(options.entry);
  const native = !isScriptEntry(entry);
  const P = SANDBOX_PATHS;
  // The trust check runs on the host path.
  if (native) buildLaunch(options);
  const mounts: SandboxMount[] = [
    { host: dirname(entry), inside: P.code, access: "ro" },
    { host: options.socketDir, inside: P.sock, access: "rw" },
    { host: options.hostSocket, inside: P.hostSocket, access: "ro" },
  ];
  if (options.dataDir) {
    mounts.push({
      host: resolve(options.dataDir),
      inside: P.data,
      access: "rw",
    });
  }
  let denoFlags = options.denoFlags;
  let inside: LaunchSpec;
  let binary: string;
  if (native) {
    binary = await Deno.realPath(entry);
    mounts.push({ host: binary, inside: P.exe, access: "ro" });
    inside = buildLaunch({
      ...options,
      entry: P.exe,
      socketDir: P.sock,
      pluginSocket: `${P.sock}/${basename(options.pluginSocket)}`,
      hostSocket: P.hostSocket,
      trustedExecutables: [P.exe],
    });
  } else {
    binary = await Deno.realPath(options.denoPath ?? Deno.execPath());
    // The scratch tmpfs over gen/ needs the folder as its mount point.
    await Deno.mkdir(resolve(options.denoDir, "gen"), { recursive: true });
    mounts.push(
      { host: binary, inside: P.deno, access: "ro" },
      { host: resolve(options.denoDir), inside: P.denoDir, access: "ro" },
      { host: options.importMap, inside: P.importMap, access: "ro" },
    );
    if (options.lockFile) {
      mounts.push({ host: options.lockFile, inside: P.lockFile, access: "ro" });
    }
    const config = denoFlags?.find((f) => f.startsWith("--config="));
    if (config) {
      const file = resolve(config.slice("--config=".length));
      const at = `${P.config}/${basename(file)}`;
      mounts.push({ host: file, inside: at, access: "ro" });
      denoFlags = denoFlags!.map((f) => f === config ? `--config=${at}` : f);
    }
    const sdk = await sdkModules();
    let sdkUrl: string | undefined;
    if (sdk) {
      // The pre-built SDK while it matches the sources (checked at
      // every launch, so an edited SDK is never run stale), else the sources.
      const bundle = await sdkBundleIfFresh();
      const files = bundle ? [bundle, ...PROTO_FILES] : sdk.files;
      for (const file of files) {
        const at = `${P.sdk}/${relative(sdk.root, file)}`;
        mounts.push({ host: file, inside: at, access: "ro" });
      }
      sdkUrl = `file://${P.sdk}/${
        relative(
          sdk.root,
          bundle ?? fileURLToPath(new URL("./sdk.ts", import.meta.url)),
        )
      }`;
    }
    const paths = new PathMap(mounts);
    await Deno.writeTextFile(options.importMap, importMapJson(sdkUrl), {
      mode: 0o644,
    });
    await Deno.chmod(options.importMap, 0o644);
    inside = buildLaunch({
      entry: `${P.code}/${basename(entry)}`,
      socketDir: P.sock,
      pluginSocket: `${P.sock}/${basename(options.pluginSocket)}`,
      hostSocket: P.hostSocket,
      importMap: P.importMap,
      denoDir: P.denoDir,
      denoPath: P.deno,
      protoFiles: PROTO_FILES.map((f) => paths.toInside(f) ?? f),
      ...(options.dataDir ? { dataDir: P.data } : {}),
      ...(options.lockFile ? { lockFile: P.lockFile } : {}),
      ...(denoFlags ? { denoFlags: translateDenoFlags(denoFlags, paths) } : {}),
      ...(options.args ? { args: options.args } : {}),
    });
  }
  const libraries = dedupeLibraries([
    ...await sharedLibraries(binary),
    ...(options.tools.root && options.uid !== undefined
      ? await sharedLibraries(options.tools.setpriv)
      : []),
  ]);
  const argv = bwrapCommand({
    tools: options.tools,
    mounts,
    libraries,
    ...(native ? {} : { scratch: [`${P.denoDir}/gen`] }),
    ...(options.uid !== undefined ? { uid: options.uid } : {}),
    cwd: P.code,
    command: [inside.command, ...inside.args],
  });
  return {
    kind: inside.kind,
    command: argv[0]!,
    args: argv.slice(1),
    // Deno's libraries sit in the loader's default folders, and Deno treats
    // LD_LIBRARY_PATH as sensitive; native plugins may link libraries
    // elsewhere, and there is no /etc/ld.so.cache inside.
    env: {
      ...inside.env,
      ...(native && libraries.length
        ? { LD_LIBRARY_PATH: libraryPath(libraries) }
        : {}),
    },
    cwd: "/",
    paths: new PathMap(mounts),
    uid: options.uid,
  };
}
