/**
 * The OS sandbox every subprocess (gRPC) plugin runs in: a second wall under
 * Deno's permission flags, built with bubblewrap (`bwrap`), `setpriv` and
 * `prlimit` (util-linux). This module finds the tools, probes once per
 * process whether they work, allocates the per-plugin uid, lists the shared
 * libraries a binary needs and turns a list of mounts into the command line;
 * `launch.ts` decides what to mount (`buildSandboxedLaunch`).
 *
 * What the plugin sees, under its own mount, PID, IPC, UTS, network and
 * (where the kernel allows) cgroup namespaces, with `/` read-only:
 *
 * - `/deno/bin/deno` and `/deno/cache` (the host's `DENO_DIR`), read-only,
 *   with a private scratch tmpfs over `/deno/cache/gen` (Deno's emit cache:
 *   it retries failed writes there with sleeps, 150 ms per module);
 * - `/goatkit/…`: the SDK's own modules and `.proto` files, read-only;
 * - `/plugin/code` (its folder) and `/plugin/exe` (a native plugin's
 *   executable), read-only; `/plugin/data` and `/plugin/sock` read-write;
 *   `/plugin/host.sock`; the import map, lock file and a `--config` file;
 * - exactly the shared libraries `ldd` names, at their own paths;
 * - a fresh `/proc` of its PID namespace (bwrap's init is pid 1, the
 *   plugin pid 2); bwrap's minimal `/dev` (null, zero, full, random,
 *   urandom, tty); a small tmpfs `/tmp`; its own loopback and no other
 *   network interface.
 *
 * Nothing else of the host: no host `/proc`, `/sys`, `/etc`, `/home`,
 * `/root`, no repository, no other plugin's folders. Unix sockets in the
 * bind-mounted socket folder connect across the network namespace. Host
 * paths in its flags, arguments, environment and `Init` config are
 * translated; the sources of its mounts can still be read in
 * `/proc/self/mountinfo` and in bwrap's command line (`/proc/1/cmdline`):
 * naming them does not reach them.
 *
 * When the host runs as root, bwrap runs without a user namespace (one
 * would map the plugin back onto uid 0 outside), and `setpriv`, after the
 * mounts, drops to a per-plugin uid and gid ({@linkcode allocateSandboxUid}:
 * `uidBase + FNV-1a(key) % uidCount`, skipping uids other plugins of this
 * process hold; a data folder owned by a uid in the range keeps it),
 * clears supplementary groups and the capability bounding set and sets
 * `no_new_privs`. Otherwise bwrap makes
 * an unprivileged user namespace (`--unshare-user --disable-userns`) and
 * the plugin keeps the host's uid.
 *
 * Limits ({@linkcode SandboxLimits}), set with `prlimit` on bwrap and
 * inherited: `RLIMIT_NPROC` (processes and threads of the uid, so only
 * with a dedicated uid), `RLIMIT_FSIZE` (a larger write gets `SIGXFSZ`,
 * which ends the plugin: a crash, restarted by the supervisor),
 * `RLIMIT_DATA` (heap, `ArrayBuffer`s and every private writable mapping;
 * Deno needs about 600 MiB, reserved address space does not count),
 * `RLIMIT_NOFILE`, and `RLIMIT_CORE` 0. `RLIMIT_AS` is unusable: V8
 * reserves tens of GiB of address space at start.
 *
 * Which wall stops what: Deno's flags stop file, network, environment and
 * subprocess access through its APIs; the sandbox stops what they do not
 * cover (string-literal imports of any file, `/proc/<pid>/environ`,
 * loopback services under a granted name, host unix sockets, devices) and
 * whatever a native plugin or a Deno bug reaches by system call; the uid
 * and the limits contain the rest (other processes, fork and thread bombs,
 * disk and memory filling).
 *
 * Not covered: no seccomp filter (a native plugin of a root host may still
 * create user namespaces); `RLIMIT_FSIZE` caps each file, not a folder's
 * total (give data folders a quota or a size-limited file system); a
 * non-root host applies no `RLIMIT_NPROC`.
 *
 * @module
 */

import { dirname, isAbsolute, join } from "node:path";
import type { SandboxLimits, SandboxOptions } from "./options.ts";

/** Where things are mounted inside the sandbox. */
export const SANDBOX_PATHS: Readonly<{
  /** The plugin's folder (read-only). */
  code: string;
  /** A native plugin's executable (read-only). */
  exe: string;
  /** The plugin's data folder (read-write). */
  data: string;
  /** The plugin's socket folder (read-write). */
  sock: string;
  /** The host's `GKHost` socket. */
  hostSocket: string;
  /** The import map of TypeScript plugins. */
  importMap: string;
  /** The lock file npm packages resolve with. */
  lockFile: string;
  /** Folder of a `--config` file given by the operator. */
  config: string;
  /** The Deno binary. */
  deno: string;
  /** The host's Deno cache (read-only). */
  denoDir: string;
  /** Root of the SDK's own modules. */
  sdk: string;
  /** The `setpriv` binary (root hosts only). */
  setpriv: string;
}> = Object.freeze({
  code: "/plugin/code",
  exe: "/plugin/exe",
  data: "/plugin/data",
  sock: "/plugin/sock",
  hostSocket: "/plugin/host.sock",
  importMap: "/plugin/import_map.json",
  lockFile: "/plugin/deno.lock",
  config: "/plugin/config",
  deno: "/deno/bin/deno",
  denoDir: "/deno/cache",
  sdk: "/goatkit",
  setpriv: "/sandbox/setpriv",
});

/** The defaults of {@linkcode SandboxLimits}. */
export const DEFAULT_SANDBOX_LIMITS: Readonly<Required<SandboxLimits>> = Object
  .freeze({
    maxProcesses: 128,
    maxFileBytes: 1024 ** 3,
    maxMemoryBytes: 4 * 1024 ** 3,
    maxOpenFiles: 1024,
    tmpBytes: 64 * 1024 ** 2,
  });

/** Default first uid of the per-plugin range (root hosts). */
export const DEFAULT_UID_BASE = 200_000;
/** Default size of the per-plugin uid range. */
export const DEFAULT_UID_COUNT = 100_000;

/** The sandbox tools and policy, resolved from {@linkcode SandboxOptions}. */
export interface SandboxTools {
  /** Absolute path of `bwrap`. */
  bwrap: string;
  /** Absolute path of `prlimit`. */
  prlimit: string;
  /** Absolute path of `setpriv` (root hosts). */
  setpriv: string;
  /** Whether the host runs as root (then the plugin gets its own uid). */
  root: boolean;
  /** The limits, defaults filled in. */
  limits: Required<SandboxLimits>;
  /** First uid of the per-plugin range. */
  uidBase: number;
  /** Size of the per-plugin uid range. */
  uidCount: number;
}

const SEARCH_DIRS = [
  "/usr/bin",
  "/bin",
  "/usr/sbin",
  "/sbin",
  "/usr/local/bin",
];

function envPath(): string[] {
  try {
    return (Deno.env.get("PATH") ?? "").split(":").filter((d) => isAbsolute(d));
  } catch {
    return [];
  }
}

function executable(path: string): boolean {
  try {
    const info = Deno.statSync(path);
    return info.isFile && ((info.mode ?? 0o111) & 0o111) !== 0;
  } catch {
    return false;
  }
}

/** Finds `name` in the system folders, else on `PATH`. */
function findTool(name: string): string | undefined {
  for (const dir of [...SEARCH_DIRS, ...envPath()]) {
    const path = join(dir, name);
    if (executable(path)) return path;
  }
  return undefined;
}

/** Whether this process runs as uid 0. */
export function hostIsRoot(): boolean {
  try {
    return Deno.uid() === 0;
  } catch {
    return false;
  }
}

function positive(name: string, value: number): number {
  if (!Number.isSafeInteger(value) || value <= 0) {
    throw new RangeError(
      `Cannot use sandbox limit "${name}": ${value} is not a positive integer`,
    );
  }
  return value;
}

/**
 * Resolves {@linkcode SandboxOptions} into tool paths and limits. A tool
 * that is not found keeps its bare name, so the probe reports it.
 *
 * @example
 * ```ts
 * import { resolveSandbox } from "./sandbox.ts";
 * const tools = resolveSandbox({ limits: { maxProcesses: 64 } });
 * console.log(tools.limits.maxProcesses); // 64
 * ```
 */
export function resolveSandbox(options: SandboxOptions = {}): SandboxTools {
  const limits = { ...DEFAULT_SANDBOX_LIMITS, ...options.limits };
  for (const [k, v] of Object.entries(limits)) positive(k, v);
  const uidBase = options.uidBase ?? DEFAULT_UID_BASE;
  const uidCount = options.uidCount ?? DEFAULT_UID_COUNT;
  if (
    !Number.isSafeInteger(uidBase) || !Number.isSafeInteger(uidCount) ||
    uidBase < 1000 || uidCount < 1 || uidBase + uidCount > 2 ** 31
  ) {
    throw new RangeError(
      `Cannot use sandbox uid range ${uidBase}+${uidCount}: it must lie within 1000…2^31`,
    );
  }
  return {
    bwrap: options.bwrapPath ?? findTool("bwrap") ?? "bwrap",
    prlimit: options.prlimitPath ?? findTool("prlimit") ?? "prlimit",
    setpriv: options.setprivPath ?? findTool("setpriv") ?? "setpriv",
    root: hostIsRoot(),
    limits,
    uidBase,
    uidCount,
  };
}

// ---------------------------------------------------------------------------
// Shared libraries

/** A shared library to mount: the path the loader asks for and the file. */
export interface LibraryMount {
  /** The path as `ldd` names it (where it is mounted). */
  path: string;
  /** The real file on the host. */
  file: string;
}

const libraries = new Map<string, Promise<LibraryMount[]>>();

/**
 * The shared libraries (and the ELF interpreter) `binary` loads, from
 * `ldd`; empty for a static executable. Cached per path; a failure is not
 * kept. Only run it on trusted binaries (`ldd` may execute the loader the
 * binary names).
 */
export function sharedLibraries(binary: string): Promise<LibraryMount[]> {
  const cached = libraries.get(binary);
  if (cached) return cached;
  const p = listLibraries(binary);
  libraries.set(binary, p);
  p.catch(() => libraries.delete(binary));
  return p;
}

async function listLibraries(binary: string): Promise<LibraryMount[]> {
  const ldd = findTool("ldd");
  if (!ldd) {
    throw new Error(
      `Cannot list the shared libraries of "${binary}": ldd is not installed`,
    );
  }
  const out = await new Deno.Command(ldd, {
    args: [binary],
    clearEnv: true,
    env: { LC_ALL: "C" },
    stdin: "null",
    stdout: "piped",
    stderr: "piped",
  }).output();
  const text = new TextDecoder().decode(out.stdout) +
    new TextDecoder().decode(out.stderr);
  if (/not a dynamic executable|statically linked/.test(text)) return [];
  if (!out.success) {
    throw new Error(
      `Cannot list the shared libraries of "${binary}": ldd failed: ${text.trim()}`,
    );
  }
  const mounts: LibraryMount[] = [];
  for (const line of text.split("\n")) {
    if (/=>\s*not found/.test(line)) {
      throw new Error(
        `Cannot list the shared libraries of "${binary}": ${line.trim()}`,
      );
    }
    const m = /(?:=>\s*)?(\/\S+)\s+\(0x[0-9a-f]+\)/.exec(line);
    if (!m) continue;
    const path = m[1]!;
    mounts.push({ path, file: await Deno.realPath(path) });
  }
  return mounts;
}

// ---------------------------------------------------------------------------
// Per-plugin uid

const uidByKey = new Map<string, number>();
const keyByUid = new Map<number, string>();

function fnv1a(text: string): number {
  let h = 0x811c9dc5;
  for (const b of new TextEncoder().encode(text)) {
    h ^= b;
    h = Math.imul(h, 0x01000193) >>> 0;
  }
  return h;
}

/** Options of {@linkcode allocateSandboxUid}. */
export interface AllocateUidOptions {
  /** What identifies the plugin: its data folder, else its entry path. */
  key: string;
  /** First uid of the range. */
  base: number;
  /** Size of the range. */
  count: number;
  /** A uid the plugin already had (its data folder's owner), if any. */
  previous?: number;
}

/**
 * The unprivileged uid (and gid, the same number) a plugin runs as when
 * the host is root: the one it had (`previous`, when in the range and not
 * held by another plugin of this process), else `base + FNV-1a(key) %
 * count`, moving on while another key of this process holds it. Stable for
 * a key within a process; the data folder's owner carries it across
 * restarts.
 *
 * @example
 * ```ts
 * import { allocateSandboxUid } from "./sandbox.ts";
 * const uid = allocateSandboxUid({ key: "/srv/data/plugins/hello", base: 200000, count: 100000 });
 * console.log(uid >= 200000 && uid < 300000); // true
 * ```
 */
export function allocateSandboxUid(options: AllocateUidOptions): number {
  const { key, base, count, previous } = options;
  const known = uidByKey.get(key);
  if (known !== undefined && known >= base && known < base + count) {
    return known;
  }
  const free = (uid: number) => {
    const holder = keyByUid.get(uid);
    return holder === undefined || holder === key;
  };
  let uid: number | undefined;
  if (
    previous !== undefined && previous >= base && previous < base + count &&
    free(previous)
  ) {
    uid = previous;
  } else {
    const start = fnv1a(key) % count;
    for (let i = 0; i < count && uid === undefined; i++) {
      const candidate = base + (start + i) % count;
      if (free(candidate)) uid = candidate;
    }
  }
  if (uid === undefined) {
    throw new RangeError(
      `Cannot allocate a sandbox uid for "${key}": all ${count} uids from ${base} are taken`,
    );
  }
  uidByKey.set(key, uid);
  keyByUid.set(uid, key);
  return uid;
}

// ---------------------------------------------------------------------------
// Command line

/** One thing mounted into the sandbox. */
export interface SandboxMount {
  /** The host path (file or folder; symlinks are followed). */
  host: string;
  /** Where it appears inside. */
  inside: string;
  /** Read-only or read-write. */
  access: "ro" | "rw";
}

/** Inputs of {@linkcode bwrapCommand}. */
export interface BwrapCommandOptions {
  /** Tools and limits. */
  tools: SandboxTools;
  /** What to mount, besides `/proc`, `/dev` and `/tmp`. */
  mounts: readonly SandboxMount[];
  /** Shared libraries to mount read-only at their own paths. */
  libraries: readonly LibraryMount[];
  /** The uid (and gid) to drop to; root hosts only. */
  uid?: number;
  /**
   * Private scratch tmpfs folders (mode 1777, `tmpBytes` each) mounted
   * over read-only mounts: Deno's `gen/` emit cache, which Deno otherwise
   * retries to write with back-off sleeps (150 ms per module).
   */
  scratch?: readonly string[];
  /** Working directory inside. */
  cwd: string;
  /** The program inside and its arguments. */
  command: readonly string[];
}

/** The `prlimit` options for `tools.limits`. */
function limitArgs(tools: SandboxTools, dedicatedUid: boolean): string[] {
  const l = tools.limits;
  return [
    // RLIMIT_NPROC counts every process of the real uid: only meaningful
    // when that uid is the plugin's alone.
    ...(dedicatedUid ? [`--nproc=${l.maxProcesses}`] : []),
    `--fsize=${l.maxFileBytes}`,
    `--data=${l.maxMemoryBytes}`,
    `--nofile=${l.maxOpenFiles}`,
    "--core=0",
  ];
}

/**
 * The whole command line of a sandboxed plugin: `prlimit <limits> --
 * bwrap <namespaces> <mounts> -- [setpriv <drop> --] <command>`. The
 * process id of the result is bwrap's; the plugin is its grandchild
 * ({@linkcode sandboxedPids}).
 */
export function bwrapCommand(options: BwrapCommandOptions): string[] {
  const { tools, uid } = options;
  const dropUid = tools.root && uid !== undefined;
  const args: string[] = [
    tools.prlimit,
    ...limitArgs(tools, dropUid),
    "--",
    tools.bwrap,
    "--unshare-ipc",
    "--unshare-pid",
    "--unshare-net",
    "--unshare-uts",
    "--unshare-cgroup-try",
    // Root: no user namespace (it would map the plugin onto uid 0 outside);
    // setpriv drops to the plugin's uid instead. Otherwise: an unprivileged
    // user namespace, and no further ones inside.
    ...(tools.root ? [] : ["--unshare-user", "--disable-userns"]),
    // bwrap's own init is pid 1 inside and keeps its parent-death signal
    // (the plugin's is cleared by the uid change, and bwrap, without
    // capabilities, could not signal another uid anyway): when bwrap dies,
    // its init dies, and with it everything in the PID namespace.
    "--die-with-parent",
    "--new-session",
    "--hostname",
    "goatkit-plugin",
    "--cap-drop",
    "ALL",
    // setpriv needs these to change uid; changing uid away from 0 clears
    // them again and setpriv empties the bounding set.
    ...(dropUid
      ? [
        "--cap-add",
        "CAP_SETUID",
        "--cap-add",
        "CAP_SETGID",
        "--cap-add",
        "CAP_SETPCAP",
      ]
      : []),
  ];
  const targets = [
    ...options.mounts.map((m) => m.inside),
    ...options.libraries.map((l) => l.path),
    ...(dropUid ? [SANDBOX_PATHS.setpriv] : []),
  ];
  // bwrap creates missing parents with mode 0700, which the plugin's uid
  // could not traverse: make them 0755 first.
  const parents = new Set<string>();
  for (const t of targets) {
    for (let d = dirname(t); d !== "/" && d !== "."; d = dirname(d)) {
      parents.add(d);
    }
  }
  for (const d of [...parents].sort()) args.push("--perms", "0755", "--dir", d);
  args.push(
    "--proc",
    "/proc",
    "--dev",
    "/dev",
    "--perms",
    "01777",
    "--size",
    String(tools.limits.tmpBytes),
    "--tmpfs",
    "/tmp",
  );
  for (const lib of options.libraries) {
    args.push("--ro-bind", lib.file, lib.path);
  }
  if (dropUid) args.push("--ro-bind", tools.setpriv, SANDBOX_PATHS.setpriv);
  for (const m of options.mounts) {
    args.push(m.access === "rw" ? "--bind" : "--ro-bind", m.host, m.inside);
  }
  for (const dir of options.scratch ?? []) {
    args.push(
      "--perms",
      "01777",
      "--size",
      String(tools.limits.tmpBytes),
      "--tmpfs",
      dir,
    );
  }
  args.push("--remount-ro", "/", "--chdir", options.cwd, "--");
  if (dropUid) {
    args.push(
      SANDBOX_PATHS.setpriv,
      `--reuid=${uid}`,
      `--regid=${uid}`,
      "--clear-groups",
      "--no-new-privs",
      "--bounding-set=-all",
      "--inh-caps=-all",
      "--",
    );
  }
  args.push(...options.command);
  return args;
}

/** `LD_LIBRARY_PATH` for the libraries, so no `/etc/ld.so.cache` is needed. */
export function libraryPath(libs: readonly LibraryMount[]): string {
  return [...new Set(libs.map((l) => dirname(l.path)))].join(":");
}

// ---------------------------------------------------------------------------
// Probe

/** The result of {@linkcode probeSandbox}. */
export type SandboxProbe =
  | { ok: true }
  | { ok: false; reason: string };

/** Failed probes are repeated after this long (a fix needs no restart). */
export const FAILED_PROBE_RETRY_MS = 10_000;
const probes = new Map<string, { at: number; result: Promise<SandboxProbe> }>();

/**
 * Whether bubblewrap works here with the namespaces, mounts and (as root)
 * the uid drop plugins get: runs `deno --version` in such a sandbox once
 * per process and set of tools. A success is kept; a failure for
 * {@linkcode FAILED_PROBE_RETRY_MS}. Never rejects.
 *
 * @example
 * ```ts ignore
 * import { probeSandbox, resolveSandbox } from "./sandbox.ts";
 * const probe = await probeSandbox(resolveSandbox());
 * if (!probe.ok) console.error(probe.reason);
 * ```
 */
export function probeSandbox(tools: SandboxTools): Promise<SandboxProbe> {
  const key = JSON.stringify([
    tools.bwrap,
    tools.prlimit,
    tools.setpriv,
    tools.root,
  ]);
  const cached = probes.get(key);
  if (cached) {
    const fresh = Date.now() - cached.at < FAILED_PROBE_RETRY_MS;
    return cached.result.then((r) =>
      r.ok || fresh ? r : (probes.delete(key), probeSandbox(tools))
    );
  }
  const result = runProbe(tools).catch((e): SandboxProbe => ({
    ok: false,
    reason: e instanceof Error ? e.message : String(e),
  }));
  probes.set(key, { at: Date.now(), result });
  return result;
}

async function runProbe(tools: SandboxTools): Promise<SandboxProbe> {
  for (
    const [name, path] of [["bwrap", tools.bwrap], ["prlimit", tools.prlimit]]
  ) {
    if (!isAbsolute(path!) || !executable(path!)) {
      return { ok: false, reason: `${name} not found (looked for "${path}")` };
    }
  }
  if (
    tools.root && (!isAbsolute(tools.setpriv) || !executable(tools.setpriv))
  ) {
    return {
      ok: false,
      reason: `setpriv not found (looked for "${tools.setpriv}")`,
    };
  }
  const deno = Deno.realPathSync(Deno.execPath());
  const libs = [
    ...await sharedLibraries(deno),
    ...(tools.root ? await sharedLibraries(tools.setpriv) : []),
  ];
  const argv = bwrapCommand({
    tools,
    mounts: [{ host: deno, inside: SANDBOX_PATHS.deno, access: "ro" }],
    libraries: dedupeLibraries(libs),
    ...(tools.root ? { uid: tools.uidBase } : {}),
    cwd: "/",
    command: [SANDBOX_PATHS.deno, "--version"],
  });
  const child = new Deno.Command(argv[0]!, {
    args: argv.slice(1),
    clearEnv: true,
    env: { LD_LIBRARY_PATH: libraryPath(libs), NO_COLOR: "1" },
    stdin: "null",
    stdout: "piped",
    stderr: "piped",
  }).spawn();
  const timer = setTimeout(() => {
    try {
      child.kill("SIGKILL");
    } catch { /* gone */ }
  }, 10_000);
  try {
    const out = await child.output();
    const stdout = new TextDecoder().decode(out.stdout);
    if (out.success && /^deno \d/.test(stdout)) return { ok: true };
    const stderr = new TextDecoder().decode(out.stderr).trim();
    return {
      ok: false,
      reason: `a test run of bwrap failed (exit ${out.code}${
        out.signal ? `, ${out.signal}` : ""
      })${stderr ? `: ${stderr.slice(0, 500)}` : ""}`,
    };
  } finally {
    clearTimeout(timer);
  }
}

/** Libraries without duplicate mount paths. */
export function dedupeLibraries(
  libs: readonly LibraryMount[],
): LibraryMount[] {
  const seen = new Map<string, LibraryMount>();
  for (const l of libs) if (!seen.has(l.path)) seen.set(l.path, l);
  return [...seen.values()];
}

// ---------------------------------------------------------------------------
// Paths and processes

/**
 * Translates host paths to the paths the plugin sees and back, along the
 * mounts (longest match first).
 *
 * @example
 * ```ts
 * import { PathMap } from "./sandbox.ts";
 * const map = new PathMap([{ host: "/srv/data/p", inside: "/plugin/data", access: "rw" }]);
 * map.toInside("/srv/data/p/cache"); // "/plugin/data/cache"
 * map.toHost("/plugin/data/x"); // "/srv/data/p/x"
 * map.toInside("/etc/passwd"); // undefined
 * ```
 */
export class PathMap {
  readonly #mounts: readonly SandboxMount[];

  /** Creates the map of `mounts`. */
  constructor(mounts: readonly SandboxMount[]) {
    this.#mounts = mounts;
  }

  /** The inside path of host path `path`, or `undefined` when not mounted. */
  toInside(path: string): string | undefined {
    return this.#translate(path, "host", "inside");
  }

  /** The inside paths of the mounts whose host path lies in folder `path`. */
  mountsUnder(path: string): string[] {
    const prefix = path.endsWith("/") ? path : path + "/";
    return this.#mounts.filter((m) => m.host.startsWith(prefix)).map((m) =>
      m.inside
    );
  }

  /** The host path of inside path `path`, or `undefined` when not mounted. */
  toHost(path: string): string | undefined {
    return this.#translate(path, "inside", "host");
  }

  #translate(
    path: string,
    from: "host" | "inside",
    to: "host" | "inside",
  ): string | undefined {
    if (!isAbsolute(path) || path.split("/").includes("..")) return undefined;
    const best = [...this.#mounts]
      .filter((m) => path === m[from] || path.startsWith(m[from] + "/"))
      .sort((a, b) => b[from].length - a[from].length)[0];
    return best ? best[to] + path.slice(best[from].length) : undefined;
  }
}

/** Parent pid of each process, from `/proc/<pid>/stat`. */
function parentPids(): Map<number, number> {
  const out = new Map<number, number>();
  for (const e of Deno.readDirSync("/proc")) {
    if (!/^\d+$/.test(e.name)) continue;
    try {
      const stat = Deno.readTextFileSync(`/proc/${e.name}/stat`);
      const ppid = Number(stat.slice(stat.lastIndexOf(")") + 2).split(" ")[1]);
      out.set(Number(e.name), ppid);
    } catch { /* gone */ }
  }
  return out;
}

/**
 * The host pids of the plugin in the sandbox whose bwrap has pid `outer`:
 * the children of bwrap's init (bwrap → init, pid 1 inside → the plugin,
 * pid 2). Signals for the plugin go there: bwrap forwards none (it dies of
 * them, and its init, and so the whole PID namespace, with it).
 */
export function sandboxedPids(outer: number): number[] {
  const parents = [...parentPids()];
  const inits = new Set(
    parents.filter(([, pp]) => pp === outer).map(([p]) => p),
  );
  return parents.filter(([, pp]) => inits.has(pp)).map(([p]) => p);
}
