/**
 * The private folders of gRPC plugins (their unix sockets and import map):
 * where they are made, how they are marked, and how the ones a killed host
 * left behind are removed at the next start.
 *
 * Each plugin gets `<root>/gk-<label>-<random>` (mode 0700), where `label`
 * is its folder name cut to 14 characters, with a marker file
 * {@linkcode RUN_DIR_MARKER} naming the process that made it (pid, and on
 * Linux its start time and the boot id, so that a reused pid is not taken
 * for the maker). A host's root is `<dataDir>/run`
 * ({@linkcode preparePluginRunRoot}); when that path is too long for the
 * unix socket limit (104 bytes, the smallest among Linux and the BSDs),
 * it is `<tmpdir>/goatkit-run-<hash of the data dir>`, which the next start
 * with the same data dir finds again.
 *
 * {@linkcode removeStaleRunDirs} removes only what the host itself made: a
 * real directory (never a link) owned by the host's uid, named like above,
 * holding a regular marker file whose maker is gone. Removal never follows
 * symbolic links, and works as root whatever uid the sandboxed plugin
 * wrote its files as.
 *
 * @module
 */

import { createHash } from "node:crypto";
import { basename, dirname, join, resolve } from "node:path";
import { tmpdir } from "node:os";

/** The marker file in every plugin run folder: who made it (JSON). */
export const RUN_DIR_MARKER = ".goatkit-run";

/**
 * The unix socket path limit the run folders are sized for, in bytes: 104
 * (the BSDs and macOS; Linux allows 107).
 */
export const SOCKET_PATH_LIMIT = 104;

/** A run folder's name: `gk-<label>-<8 random>`. */
const RUN_DIR_NAME = /^gk-[a-z0-9-]{1,14}-[a-z0-9]{8}$/;
const LABEL_MAX = 14;
const RANDOM_CHARS = "abcdefghijklmnopqrstuvwxyz0123456789";

/** This process, told apart from an earlier one with the same pid. */
const INSTANCE = crypto.randomUUID();

/** What the marker file says. */
interface Marker {
  pid: number;
  instance: string;
  /** `/proc/<pid>/stat` start time (Linux). */
  start?: string;
  /** `/proc/sys/kernel/random/boot_id` (Linux). */
  boot?: string;
}

/** The start time of process `pid` (clock ticks since boot), Linux only. */
function processStart(pid: number): string | undefined {
  try {
    const stat = Deno.readTextFileSync(`/proc/${pid}/stat`);
    // Fields after the command (which may hold spaces) start at field 3;
    // the start time is field 22.
    return stat.slice(stat.lastIndexOf(")") + 2).split(" ")[19];
  } catch {
    return undefined;
  }
}

function bootId(): string | undefined {
  try {
    return Deno.readTextFileSync("/proc/sys/kernel/random/boot_id").trim();
  } catch {
    return undefined;
  }
}

function ownMarker(): Marker {
  const start = processStart(Deno.pid);
  const boot = bootId();
  return {
    pid: Deno.pid,
    instance: INSTANCE,
    ...(start ? { start } : {}),
    ...(boot ? { boot } : {}),
  };
}

/**
 * Whether the process that wrote `m` still runs: this process, or (Linux)
 * a process with that pid, start time and boot id. Elsewhere only this
 * process counts (one host per data dir).
 */
function makerAlive(m: Marker): boolean {
  if (m.instance === INSTANCE) return true;
  if (!m.start || !m.boot || m.boot !== bootId()) return false;
  return processStart(m.pid) === m.start;
}

/** `label` as a run folder name part: `[a-z0-9-]`, 1–14 characters. */
function cleanLabel(label: string): string {
  const s = label.toLowerCase().replace(/[^a-z0-9-]+/g, "-").slice(
    0,
    LABEL_MAX,
  );
  return /[a-z0-9]/.test(s) ? s : "grpc";
}

function randomPart(): string {
  const bytes = crypto.getRandomValues(new Uint8Array(8));
  return [...bytes].map((b) => RANDOM_CHARS[b % RANDOM_CHARS.length]).join("");
}

/**
 * The longest socket path a plugin gets under `root`: its run folder with
 * the longest label, then `plugin/` and go-plugin's `pluginNNNNNNNNNN`.
 */
export function longestSocketPath(root: string): string {
  const dir = `gk-${"x".repeat(LABEL_MAX)}-${"x".repeat(8)}`;
  return `${root}/${dir}/plugin/plugin0123456789`;
}

/**
 * Makes a plugin's run folder under `parent` (which must exist): named
 * `gk-<label>-<random>`, mode 0700, with the {@linkcode RUN_DIR_MARKER}.
 *
 * @example
 * ```ts ignore
 * const dir = await makeRunDir("data/run", "hello-grpc");
 * // data/run/gk-hello-grpc-k3v9q0xa
 * ```
 */
export async function makeRunDir(
  parent: string,
  label: string,
): Promise<string> {
  const name = cleanLabel(label);
  for (let attempt = 0;; attempt++) {
    const dir = join(parent, `gk-${name}-${randomPart()}`);
    try {
      await Deno.mkdir(dir, { mode: 0o700 });
    } catch (e) {
      if (e instanceof Deno.errors.AlreadyExists && attempt < 10) continue;
      throw e;
    }
    await Deno.chmod(dir, 0o700);
    await Deno.writeTextFile(
      join(dir, RUN_DIR_MARKER),
      JSON.stringify(ownMarker()),
      { mode: 0o600, createNew: true },
    );
    return dir;
  }
}

/**
 * Removes a run folder and everything in it, never following a symbolic
 * link (a link is removed, not its target). A folder the plugin made
 * unreadable is made accessible again (real folders only) and retried.
 */
export async function removeRunDir(dir: string): Promise<void> {
  try {
    await Deno.remove(dir, { recursive: true });
    return;
  } catch (e) {
    if (e instanceof Deno.errors.NotFound) return;
  }
  await makeAccessible(dir);
  await Deno.remove(dir, { recursive: true });
}

/** Gives the real folders under `path` mode 0700 (never through a link). */
async function makeAccessible(path: string): Promise<void> {
  const info = await Deno.lstat(path).catch(() => undefined);
  if (!info?.isDirectory) return;
  await Deno.chmod(path, 0o700).catch(() => {});
  for await (const e of Deno.readDir(path)) {
    if (e.isDirectory) await makeAccessible(join(path, e.name));
  }
}

/** What {@linkcode removeStaleRunDirs} did. */
export interface StaleRunDirs {
  /** The folders removed. */
  removed: string[];
  /** Folders named like run folders that were left, with why. */
  kept: { dir: string; why: string }[];
}

/** Reads a marker file, if it is a small regular file of the right shape. */
async function readMarker(path: string): Promise<Marker | undefined> {
  const info = await Deno.lstat(path).catch(() => undefined);
  if (!info?.isFile || info.size > 4096) return undefined;
  try {
    const m = JSON.parse(await Deno.readTextFile(path));
    return typeof m?.pid === "number" && typeof m?.instance === "string"
      ? m
      : undefined;
  } catch {
    return undefined;
  }
}

/**
 * Removes the run folders under `root` whose maker is gone (see the module
 * doc for what counts as the host's own). Folders of a live host, and
 * anything not made by a host, are left alone.
 *
 * @example
 * ```ts ignore
 * const { removed } = await removeStaleRunDirs("data/run");
 * ```
 */
export async function removeStaleRunDirs(root: string): Promise<StaleRunDirs> {
  const out: StaleRunDirs = { removed: [], kept: [] };
  const uid = Deno.uid();
  let entries: Deno.DirEntry[];
  try {
    entries = await Array.fromAsync(Deno.readDir(root));
  } catch (e) {
    if (e instanceof Deno.errors.NotFound) return out;
    throw e;
  }
  for (const e of entries) {
    if (!RUN_DIR_NAME.test(e.name)) continue;
    const dir = join(root, e.name);
    const info = await Deno.lstat(dir).catch(() => undefined);
    if (!info?.isDirectory) {
      out.kept.push({ dir, why: "not a directory (or a link)" });
      continue;
    }
    if (uid !== null && info.uid !== uid) {
      out.kept.push({ dir, why: `owned by uid ${info.uid}, not ${uid}` });
      continue;
    }
    const marker = await readMarker(join(dir, RUN_DIR_MARKER));
    if (!marker) {
      // Made, then killed before the marker was written: empty.
      const empty = (await Array.fromAsync(Deno.readDir(dir))).length === 0;
      if (empty) {
        await Deno.remove(dir);
        out.removed.push(dir);
      } else out.kept.push({ dir, why: `no ${RUN_DIR_MARKER} marker` });
      continue;
    }
    if (makerAlive(marker)) {
      out.kept.push({ dir, why: `its host (pid ${marker.pid}) still runs` });
      continue;
    }
    await removeRunDir(dir);
    out.removed.push(dir);
  }
  return out;
}

/** What {@linkcode preparePluginRunRoot} chose and cleaned. */
export interface PluginRunRoot extends StaleRunDirs {
  /** The folder to make plugin run folders in (the loader's `tempDir`). */
  dir: string;
  /**
   * Why `dir` is not `<dataDir>/run`: that path is too long for unix
   * sockets, or the short folder in the temp dir is not the host's.
   */
  fallback?: string;
}

/**
 * Whether `path` is a real directory owned by this process's uid; makes
 * it (mode 0700) when it is missing.
 */
async function ownedDir(path: string, recursive: boolean): Promise<boolean> {
  await Deno.mkdir(path, { recursive, mode: 0o700 }).catch((e) => {
    if (!(e instanceof Deno.errors.AlreadyExists)) throw e;
  });
  const info = await Deno.lstat(path);
  const uid = Deno.uid();
  if (!info.isDirectory || (uid !== null && info.uid !== uid)) return false;
  await Deno.chmod(path, 0o700);
  return true;
}

/**
 * Chooses where a host with data folder `dataDir` makes its gRPC plugins'
 * run folders and removes the ones an earlier run left there (and in the
 * other place it may have used, the short temp folder or `<dataDir>/run`).
 * Call it once at host start, before any plugin loads.
 *
 * @example
 * ```ts ignore
 * import { preparePluginRunRoot } from "./run_dir.ts";
 * const run = await preparePluginRunRoot("./data");
 * for (const d of run.removed) console.log(`removed ${d}`);
 * // loadGrpcPlugin(entry, { tempDir: run.dir, … })
 * ```
 */
export async function preparePluginRunRoot(
  dataDir: string,
): Promise<PluginRunRoot> {
  const abs = resolve(dataDir);
  const preferred = join(abs, "run");
  const hash = createHash("sha256").update(abs).digest("hex").slice(0, 12);
  const short = join(tmpdir(), `goatkit-run-${hash}`);
  const fits = new TextEncoder().encode(longestSocketPath(preferred)).length <=
    SOCKET_PATH_LIMIT;
  const result: PluginRunRoot = { dir: preferred, removed: [], kept: [] };
  const merge = (r: StaleRunDirs) => {
    result.removed.push(...r.removed);
    result.kept.push(...r.kept);
  };
  if (fits) {
    if (!(await ownedDir(preferred, true))) {
      throw new Error(
        `Cannot use "${preferred}" for plugin sockets: it is not a directory owned by this user`,
      );
    }
    merge(await removeStaleRunDirs(preferred));
    // An earlier start may have used the short folder (a longer path).
    const old = await Deno.lstat(short).catch(() => undefined);
    if (old?.isDirectory && old.uid === Deno.uid()) {
      merge(await removeStaleRunDirs(short));
    }
    return result;
  }
  const why = `"${
    longestSocketPath(preferred)
  }" would pass the ${SOCKET_PATH_LIMIT}-byte unix socket limit`;
  if (await ownedDir(short, false)) {
    result.dir = short;
    result.fallback = why;
  } else {
    // Someone else holds that name in the shared temp folder: a private
    // folder of our own, which no later start will find (and clean).
    result.dir = await Deno.makeTempDir({ prefix: "goatkit-run-" });
    result.fallback =
      `${why}, and "${short}" is not a directory owned by this user; "${result.dir}" is not cleaned at the next start`;
  }
  merge(await removeStaleRunDirs(result.dir));
  if ((await Deno.lstat(preferred).catch(() => undefined))?.isDirectory) {
    merge(await removeStaleRunDirs(preferred));
  }
  return result;
}

/**
 * The label of a plugin's run folder: the name of its data folder, else of
 * the folder its entry is in.
 */
export function runDirLabel(entry: string, dataDir?: string): string {
  return basename(dataDir ? resolve(dataDir) : dirname(resolve(entry)));
}
