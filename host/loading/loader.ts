/**
 * The Loader: finds plugins in the plugins directory (a folder per plugin
 * holding `manifest.json` and a `.wasm` module or a gRPC entry), keyed by the
 * manifest's name; loads them eagerly or lazily (it is the Manager's
 * {@linkcode LazyLoader}); and reloads a plugin when its files change,
 * replacing the running instance only once the new one has registered.
 *
 * Entry files, first match wins: `extism.json` (an Extism plugin, see
 * `extism_manifest.ts`); `plugin.wasm`, any other `*.wasm` (WASM runtime); `main.ts`, `plugin.ts`, `main.js` (gRPC, run by Deno); an
 * executable file named `plugin` (gRPC, native: the host must trust it).
 *
 * A bare `*.wasm` file (any case of the extension) directly in the plugins
 * directory is a plugin too, as in GoatFlow: it is named by the manifest its
 * `gk_register` returns (read once per file version, see
 * `wasm_manifest.ts`), not by its file name.
 *
 * Example folders (`exampleDirs`, the host's `GOATKIT_EXAMPLE_PLUGINS`) are
 * scanned after the plugins directory; a plugin there is shadowed by one of
 * the same name in the plugins directory.
 *
 * Load failures are kept per plugin ({@linkcode Loader.failure}) until the
 * plugin loads, so the list and `/readyz` can say why it is not running.
 *
 * The Loader does not know the runtimes: `load` turns a
 * {@linkcode PluginSource} into a {@linkcode Plugin} (the server wires it to
 * `loadWasmPlugin` / `loadGrpcPlugin` with the plugin's grants).
 *
 * @module
 */

import { join, relative, resolve, sep } from "node:path";
import { errorText, PluginNotFoundError } from "../model/errors.ts";
import type { LazyLoader, Manager } from "../manager.ts";
import { checkManifest, type GKRegistration } from "../model/manifest.ts";
import type { Plugin } from "../model/plugin.ts";
import { readWasmManifest, type WasmManifestReader } from "./wasm_manifest.ts";
import { assertManifestMatches } from "./manifest_match.ts";
import {
  EXTISM_MANIFEST_FILE,
  mapExtismManifest,
  parseExtismManifest,
  withExtismPermissions,
} from "./extism_manifest.ts";

/**
 * How a discovered plugin runs (`extism`: a folder with `extism.json`, see
 * `extism_manifest.ts`).
 */
export type PluginSourceKind = "wasm" | "grpc-deno" | "grpc-native" | "extism";

/** A plugin found on disk. */
export interface PluginSource {
  /** The manifest name (the registry key). */
  name: string;
  /**
   * The plugin's folder (absolute); for a bare `.wasm` file, the file
   * itself.
   */
  dir: string;
  /** How it runs. */
  kind: PluginSourceKind;
  /** The entry file (absolute). */
  entry: string;
  /** The validated `manifest.json` (for a bare `.wasm`: its `gk_register`). */
  manifest: GKRegistration;
  /** Found in one of the loader's `exampleDirs` (never installed over or removed). */
  example?: boolean;
}

/** Builds a runnable plugin from its source. */
export type PluginFactory = (source: PluginSource) => Promise<Plugin>;

/**
 * A plugin whose module registers (`gkRegister()` / `gk_register`) under
 * another name than its `manifest.json`: refused, since it would otherwise
 * take the place, routes and grants of the plugin it names.
 */
export class PluginNameMismatchError extends Error {
  /** The name in `manifest.json`. */
  readonly manifestName: string;
  /** The name the module registers as. */
  readonly registeredName: string;
  /** Creates the error. */
  constructor(manifestName: string, registeredName: string) {
    super(
      `Cannot load plugin "${manifestName}": it registers as "${registeredName}"`,
    );
    this.name = "PluginNameMismatchError";
    this.manifestName = manifestName;
    this.registeredName = registeredName;
  }
}

/** A folder (or bare `.wasm` file) that could not be used as a plugin. */
export interface DiscoveryProblem {
  /** The folder or file (absolute). */
  dir: string;
  /** What is wrong. */
  error: string;
}

/** Options of {@linkcode Loader}. */
export interface LoaderOptions {
  /** The plugins directory (created when missing). */
  dir: string;
  /** Builds plugins from sources. */
  load: PluginFactory;
  /** Debounce of file events per plugin folder, in ms. @default 300 */
  debounceMs?: number;
  /**
   * Further folders of plugins, scanned after `dir` and never written to:
   * the repository's examples. A plugin of the same name in `dir` wins.
   * @default []
   */
  exampleDirs?: readonly string[];
  /**
   * Reads the manifest of a bare `.wasm` file from its `gk_register`.
   * @default readWasmManifest (starts the module once in its sandbox)
   */
  readWasmManifest?: WasmManifestReader;
}

/** A plugin that did not load, and why. */
export interface LoadFailure {
  /** The plugin name. */
  name: string;
  /** The error text. */
  error: string;
}

/**
 * Discovers, loads and hot-reloads plugins; see the module doc.
 *
 * @example
 * ```ts ignore
 * import { Loader, Manager } from "../../mod.ts";
 * const manager = new Manager();
 * const loader = new Loader(manager, { dir: "./plugins", load: async (src) => await myFactory(src) });
 * await loader.scan();
 * manager.setLazyLoader(loader); // load on first call
 * loader.watch(); // hot reload
 * ```
 */
export class Loader implements LazyLoader {
  #manager: Manager;
  #options: LoaderOptions;
  #dir: string;
  #exampleDirs: string[];
  #sources = new Map<string, PluginSource>();
  #problems: DiscoveryProblem[] = [];
  #failures = new Map<string, string>();
  #loadedFrom = new Map<string, string>(); // name → folder it was loaded from
  #watcher: Deno.FsWatcher | undefined;
  #timers = new Map<string, ReturnType<typeof setTimeout>>();
  #reloads = new Set<Promise<void>>();
  #queue: Promise<void> = Promise.resolve();

  /** Creates a loader for `manager`. */
  constructor(manager: Manager, options: LoaderOptions) {
    this.#manager = manager;
    this.#options = options;
    this.#dir = resolve(options.dir);
    this.#exampleDirs = (options.exampleDirs ?? []).map((d) => resolve(d))
      .filter((d) => d !== this.#dir);
  }

  /** The plugins directory (absolute). */
  get dir(): string {
    return this.#dir;
  }

  /** The example folders scanned after it (absolute). */
  get exampleDirs(): readonly string[] {
    return [...this.#exampleDirs];
  }

  /**
   * Finds every plugin folder and bare `.wasm` file; returns the sources
   * (problems via `problems()`).
   */
  async scan(): Promise<PluginSource[]> {
    await Deno.mkdir(this.#dir, { recursive: true });
    const sources = new Map<string, PluginSource>();
    const problems: DiscoveryProblem[] = [];
    const readManifest = this.#options.readWasmManifest ?? readWasmManifest;
    for (const root of [this.#dir, ...this.#exampleDirs]) {
      const example = root !== this.#dir;
      const entries: { path: string; bare: boolean }[] = [];
      try {
        for await (const e of Deno.readDir(root)) {
          if (e.name.startsWith(".")) continue;
          if (e.isDirectory) {
            entries.push({ path: join(root, e.name), bare: false });
          } else if (e.isFile && /\.wasm$/i.test(e.name)) {
            entries.push({ path: join(root, e.name), bare: true });
          }
        }
      } catch (e) {
        if (!example) throw e;
        problems.push({ dir: root, error: errorText(e) });
        continue;
      }
      entries.sort((a, b) => a.path < b.path ? -1 : a.path > b.path ? 1 : 0);
      for (const { path, bare } of entries) {
        const found = bare
          ? await inspectBareWasm(path, readManifest)
          : await inspectFolder(path);
        if ("error" in found) {
          if (found.error !== NOT_A_PLUGIN) {
            problems.push({ dir: path, error: found.error });
          }
          continue;
        }
        const other = sources.get(found.name);
        if (other) {
          // An installed plugin shadows the example of the same name.
          if (example && !other.example) continue;
          problems.push({
            dir: path,
            error: `plugin "${found.name}" is already provided by ${other.dir}`,
          });
          continue;
        }
        sources.set(found.name, example ? { ...found, example } : found);
      }
    }
    this.#sources = sources;
    this.#problems = problems;
    for (const name of this.#failures.keys()) {
      if (!sources.has(name)) this.#failures.delete(name);
    }
    return [...sources.values()];
  }

  /** Names of discovered plugins, sorted. */
  discovered(): string[] {
    return [...this.#sources.keys()].sort();
  }

  /** The source of a discovered plugin. */
  source(name: string): PluginSource | undefined {
    return this.#sources.get(name);
  }

  /** Folders that could not be used, with the reason. */
  problems(): DiscoveryProblem[] {
    return [...this.#problems];
  }

  /**
   * Why `name` did not load at its last attempt (start, lazy load, reload);
   * `undefined` once it has loaded, or when it was never tried.
   */
  failure(name: string): string | undefined {
    return this.#failures.get(name);
  }

  /** Every plugin whose last load attempt failed, by name. */
  failures(): LoadFailure[] {
    return [...this.#failures].sort(([a], [b]) => a < b ? -1 : 1).map((
      [name, error],
    ) => ({ name, error }));
  }

  /** Loads and registers `name` unless it is registered already. */
  async ensureLoaded(name: string): Promise<void> {
    if (this.#manager.manifest(name)) return;
    let source = this.#sources.get(name);
    if (!source) {
      await this.scan();
      source = this.#sources.get(name);
    }
    if (!source) throw new PluginNotFoundError(name);
    try {
      const plugin = await this.#build(source);
      try {
        await this.#manager.register(plugin);
      } catch (e) {
        await plugin.shutdown().catch(() => {});
        throw e;
      }
    } catch (e) {
      // A concurrent load of the same plugin is no failure of this one.
      if (!this.#manager.manifest(name)) {
        this.#failures.set(name, errorText(e));
      }
      throw e;
    }
    this.#failures.delete(name);
    this.#loadedFrom.set(name, source.dir);
  }

  /** Loads every discovered plugin; a failure does not stop the others. */
  async loadAll(): Promise<
    { loaded: string[]; failed: { name: string; error: string }[] }
  > {
    const loaded: string[] = [];
    const failed: { name: string; error: string }[] = [];
    for (const name of this.discovered()) {
      try {
        await this.ensureLoaded(name);
        loaded.push(name);
      } catch (e) {
        failed.push({ name, error: errorText(e) });
        this.#manager.logs.log(name, "error", `load failed: ${errorText(e)}`);
      }
    }
    return { loaded, failed };
  }

  /**
   * Reloads a plugin from disk: the new instance is loaded and registered in
   * place of the old one, whose in-flight calls finish first. A plugin that
   * is not registered is only re-discovered.
   */
  async reload(name: string): Promise<void> {
    await this.scan();
    const source = this.#sources.get(name);
    if (!source) {
      if (this.#manager.manifest(name)) await this.#manager.unregister(name);
      else throw new PluginNotFoundError(name);
      return;
    }
    if (!this.#manager.manifest(name)) return;
    let plugin: Plugin;
    try {
      plugin = await this.#build(source);
    } catch (e) {
      this.#failures.set(name, `reload failed: ${errorText(e)}`);
      throw e;
    }
    try {
      await this.#manager.replace(plugin);
      this.#loadedFrom.set(name, source.dir);
      this.#failures.delete(name);
    } catch (e) {
      await plugin.shutdown().catch(() => {});
      this.#failures.set(name, `reload failed: ${errorText(e)}`);
      throw e;
    }
  }

  /**
   * Starts the plugin in folder `dir` (inside or outside the plugins
   * directory) only to check it, then shuts it down: it must load and
   * register under its manifest name (else {@linkcode PluginNameMismatchError}).
   * Nothing is registered. The package installer checks a new package with
   * it before the package is put in place.
   */
  async verifyFolder(dir: string): Promise<void> {
    const source = await inspectFolder(resolve(dir));
    if ("error" in source) {
      throw new Error(`Cannot load plugin in "${dir}": ${source.error}`);
    }
    const plugin = await this.#build(source);
    await plugin.shutdown().catch(() => {});
  }

  /**
   * Builds a plugin from its source and checks that it registers under the
   * manifest name (the name its grants were looked up by) before anyone
   * registers it; on a mismatch or failure the plugin is shut down.
   */
  async #build(source: PluginSource): Promise<Plugin> {
    const plugin = await this.#options.load(source);
    let registration: GKRegistration;
    try {
      registration = await plugin.gkRegister();
    } catch (e) {
      await plugin.shutdown().catch(() => {});
      throw e;
    }
    const registered = registration.name;
    if (registered !== source.name) {
      await plugin.shutdown().catch(() => {});
      throw new PluginNameMismatchError(source.name, registered);
    }
    // One manifest per plugin: the code registers what manifest.json says.
    try {
      assertManifestMatches(source.manifest, registration);
    } catch (e) {
      await plugin.shutdown().catch(() => {});
      throw e;
    }
    return plugin;
  }

  /** Watches the plugins directory (and example folders) and reloads changed plugins. */
  watch(): void {
    if (this.#watcher) return;
    const watcher = Deno.watchFs([this.#dir, ...this.#exampleDirs], {
      recursive: true,
    });
    this.#watcher = watcher;
    (async () => {
      try {
        for await (const event of watcher) {
          for (const path of event.paths) this.#onChange(path);
        }
      } catch (e) {
        this.#manager.logs.log(
          "",
          "error",
          `plugin watcher stopped: ${errorText(e)}`,
        );
      }
    })();
  }

  /** Stops watching and waits for reloads in progress. */
  async close(): Promise<void> {
    this.#watcher?.close();
    this.#watcher = undefined;
    for (const t of this.#timers.values()) clearTimeout(t);
    this.#timers.clear();
    await Promise.allSettled([...this.#reloads]);
  }

  #onChange(path: string): void {
    const root = [this.#dir, ...this.#exampleDirs].find((d) => {
      const r = relative(d, path);
      return r !== "" && !r.startsWith("..");
    });
    if (root === undefined) return;
    const top = relative(root, path).split(sep)[0]!;
    if (top.startsWith(".")) return; // temp and upload folders
    const folder = join(root, top);
    clearTimeout(this.#timers.get(folder));
    this.#timers.set(
      folder,
      setTimeout(() => {
        this.#timers.delete(folder);
        const p = this.#queue = this.#queue.then(() =>
          this.#reloadFolder(folder)
        );
        this.#reloads.add(p);
        p.finally(() => this.#reloads.delete(p));
      }, this.#options.debounceMs ?? 300),
    );
  }

  async #reloadFolder(dir: string): Promise<void> {
    const before = [...this.#loadedFrom].find(([, d]) => d === dir)?.[0] ??
      [...this.#sources.values()].find((s) => s.dir === dir)?.name;
    try {
      await this.scan();
      const after = [...this.#sources.values()].find((s) => s.dir === dir)
        ?.name;
      if (before && before !== after && this.#manager.manifest(before)) {
        await this.#manager.unregister(before);
        this.#loadedFrom.delete(before);
        this.#manager.logs.log(
          before,
          "info",
          "plugin removed from disk: unregistered",
        );
      }
      if (after && this.#manager.manifest(after)) {
        await this.reload(after);
        this.#manager.logs.log(after, "info", "plugin reloaded from disk");
      }
    } catch (e) {
      this.#manager.logs.log(
        before ?? "",
        "error",
        `hot reload of ${dir} failed: ${errorText(e)}`,
      );
    }
  }
}

const NOT_A_PLUGIN = "no manifest.json";

async function inspectBareWasm(
  path: string,
  read: WasmManifestReader,
): Promise<PluginSource | { error: string }> {
  let manifest: GKRegistration;
  try {
    manifest = await read(path);
  } catch (e) {
    return {
      error: `cannot read the manifest of this module: ${errorText(e)}`,
    };
  }
  return {
    name: manifest.name,
    dir: path,
    kind: "wasm",
    entry: path,
    manifest,
  };
}

async function inspectFolder(
  dir: string,
): Promise<PluginSource | { error: string }> {
  let text: string;
  try {
    text = await Deno.readTextFile(join(dir, "manifest.json"));
  } catch {
    return { error: NOT_A_PLUGIN };
  }
  let manifest: GKRegistration;
  try {
    manifest = checkManifest(text).manifest;
  } catch (e) {
    return { error: errorText(e) };
  }
  const files: Deno.DirEntry[] = [];
  for await (const e of Deno.readDir(dir)) files.push(e);
  const names = files.filter((f) => f.isFile).map((f) => f.name).sort();
  const wasm = names.includes("plugin.wasm")
    ? "plugin.wasm"
    : names.find((n) => /\.wasm$/i.test(n));
  const base = { name: manifest.name, dir, manifest };
  // An Extism plugin; its permissions join the sidecar's.
  if (names.includes(EXTISM_MANIFEST_FILE)) {
    try {
      const extism = parseExtismManifest(
        await Deno.readTextFile(join(dir, EXTISM_MANIFEST_FILE)),
        { file: EXTISM_MANIFEST_FILE },
      );
      return {
        ...base,
        manifest: withExtismPermissions(manifest, mapExtismManifest(extism)),
        kind: "extism",
        entry: join(dir, EXTISM_MANIFEST_FILE),
      };
    } catch (e) {
      return { error: errorText(e) };
    }
  }
  if (wasm) return { ...base, kind: "wasm", entry: join(dir, wasm) };
  const ts = ["main.ts", "plugin.ts", "main.js"].find((n) => names.includes(n));
  if (ts) return { ...base, kind: "grpc-deno", entry: join(dir, ts) };
  if (names.includes("plugin")) {
    const info = await Deno.stat(join(dir, "plugin"));
    if ((info.mode ?? 0) & 0o111) {
      return { ...base, kind: "grpc-native", entry: join(dir, "plugin") };
    }
  }
  return {
    error:
      "no entry: expected plugin.wasm, *.wasm, main.ts, plugin.ts, main.js or an executable named plugin",
  };
}
