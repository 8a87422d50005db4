/**
 * The synchronous file-system backend behind our WASI preview1 layer, and
 * {@link DenoWasiFs}, the implementation on Deno's sync file APIs.
 *
 * Every path operation names a preopened directory (its index in the list
 * given to the backend), the directory file descriptor's own path relative to
 * that preopen (`dir`, already resolved) and the guest's path relative to it
 * (`path`). The backend resolves the path itself, component by component,
 * following symbolic links by hand, and refuses anything that would leave the
 * directory (`..` above `dir`, absolute paths, absolute symlink targets,
 * symlinks that climb out) with `ENOTCAPABLE`. Nothing outside the preopen is
 * ever read, written or even `lstat`ed.
 *
 * The interface only takes and returns plain data (numbers, strings,
 * `Uint8Array`s, plain objects), so another backend can proxy the calls to a
 * different thread.
 *
 * @module
 */

import { ERRNO, FILETYPE } from "./constants.ts";

/** A guest path, relative to a directory inside a preopen. */
export interface WasiPathRef {
  /** Index of the preopen in the backend's list. */
  preopen: number;
  /** Resolved path of the directory fd, relative to the preopen root ("" for the root). */
  dir: string;
  /** The guest's path, relative to `dir`. */
  path: string;
}

/** File metadata as WASI reports it (times in milliseconds since the epoch). */
export interface WasiFileStat {
  /** Device id. */
  dev: number;
  /** Inode number. */
  ino: number;
  /** WASI file type ({@link FILETYPE}). */
  filetype: number;
  /** Number of hard links. */
  nlink: number;
  /** Size in bytes. */
  size: number;
  /** Last access time, ms since the epoch. */
  atimeMs: number;
  /** Last modification time, ms since the epoch. */
  mtimeMs: number;
  /** Last status change time, ms since the epoch. */
  ctimeMs: number;
}

/** One directory entry. */
export interface WasiDirEntry {
  /** Entry name (no slashes). */
  name: string;
  /** WASI file type of the entry itself (symlinks are not followed). */
  filetype: number;
  /** Inode number. */
  ino: number;
}

/** How {@link WasiFs.open} opens a path. */
export interface WasiOpenOptions {
  /** Follow a symlink in the final component. */
  follow: boolean;
  /** Create the file if it does not exist (`O_CREAT`). */
  create: boolean;
  /** Fail if it exists (`O_EXCL`, with `create`). */
  exclusive: boolean;
  /** Truncate to 0 bytes (`O_TRUNC`). */
  truncate: boolean;
  /** Must be a directory (`O_DIRECTORY`). */
  directory: boolean;
  /** Open for reading. */
  read: boolean;
  /** Open for writing. */
  write: boolean;
}

/** What {@link WasiFs.open} returns. */
export interface WasiOpenResult {
  /** Backend handle for the other handle-based calls. */
  handle: number;
  /** WASI file type of the opened object. */
  filetype: number;
  /** The resolved path relative to the preopen root (used as `dir` for a directory). */
  path: string;
}

/** Which object {@link WasiFs.setTimes} changes. */
export type WasiTimesTarget =
  | { handle: number }
  | { ref: WasiPathRef; follow: boolean };

/**
 * The synchronous file-system interface of the WASI layer. Methods throw
 * {@link WasiFsError} with a WASI errno on failure.
 */
export interface WasiFs {
  /** Opens a file or directory; directories get a handle too. */
  open(ref: WasiPathRef, options: WasiOpenOptions): WasiOpenResult;
  /** Closes a handle. */
  close(handle: number): void;
  /** Reads up to `length` bytes, at `position` or at the current offset when `null`. */
  read(handle: number, length: number, position: number | null): Uint8Array;
  /** Writes bytes at `position` (offset unchanged) or at the current offset; returns the count. */
  write(handle: number, data: Uint8Array, position: number | null): number;
  /** Moves the offset (`whence` 0 set, 1 current, 2 end); returns the new offset. */
  seek(handle: number, offset: number, whence: number): number;
  /** Metadata of an open handle. */
  fstat(handle: number): WasiFileStat;
  /** Metadata of a path. */
  stat(ref: WasiPathRef, follow: boolean): WasiFileStat;
  /** Truncates or extends a file. */
  setSize(handle: number, size: number): void;
  /** Flushes a file to storage. */
  sync(handle: number, dataOnly: boolean): void;
  /** Lists a directory handle (without `.` and `..`). */
  readdir(handle: number): WasiDirEntry[];
  /** Creates a directory. */
  mkdir(ref: WasiPathRef): void;
  /** Removes an empty directory. */
  rmdir(ref: WasiPathRef): void;
  /** Removes a file or symlink. */
  unlink(ref: WasiPathRef): void;
  /** Renames a file or directory. */
  rename(from: WasiPathRef, to: WasiPathRef): void;
  /** Creates a hard link. */
  link(from: WasiPathRef, to: WasiPathRef, follow: boolean): void;
  /** Creates a symlink at `ref` pointing to the relative `target`. */
  symlink(target: string, ref: WasiPathRef): void;
  /** Reads a symlink's target. */
  readlink(ref: WasiPathRef): string;
  /** Sets access/modification times (ms since the epoch; `null` keeps the current value). */
  setTimes(
    target: WasiTimesTarget,
    atimeMs: number | null,
    mtimeMs: number | null,
  ): void;
}

/**
 * A failed file-system operation, carrying the WASI errno to return to the
 * guest.
 *
 * @example
 * ```ts
 * import { WasiFsError } from "./fs.ts";
 * const e = new WasiFsError(44, "open", "missing.txt");
 * console.log(e.errno); // 44 (ENOENT)
 * ```
 */
export class WasiFsError extends Error {
  /** WASI errno. */
  readonly errno: number;
  /** Creates the error for `operation` on `path` with `errno`. */
  constructor(errno: number, operation: string, path = "", cause?: unknown) {
    super(
      `Cannot ${operation}${path ? ` "${path}"` : ""}: WASI errno ${errno}`,
      cause === undefined ? undefined : { cause },
    );
    this.name = "WasiFsError";
    this.errno = errno;
  }
}

/** One preopened host directory for {@link DenoWasiFs}. */
export interface DenoWasiFsPreopen {
  /** Host directory. */
  hostPath: string;
  /** Refuse every change below it. */
  readOnly?: boolean;
}

/** Options of {@link DenoWasiFs}. */
export interface DenoWasiFsOptions {
  /**
   * Errno for a path that leaves its directory.
   * @default {76} ENOTCAPABLE (wasmtime's newer cap-std answers EPERM, 63)
   */
  escapeErrno?: number;
  /**
   * Creates a symlink at the (already checked) host path `linkPath` instead
   * of `Deno.symlinkSync`, which needs unscoped Deno permissions. The worker
   * of `runWasiCommand` uses it to ask the main thread. Throws like
   * `Deno.symlinkSync` or a {@link WasiFsError}.
   */
  symlink?: (target: string, linkPath: string) => void;
  /**
   * Sets the times of the symlink at the (already checked) host path
   * `linkPath` itself. Deno has no `lutime`; without this option, setting the
   * times of a symlink without following it fails with `ENOTSUP`. Pass
   * `nodeLutimes` (`node_lutimes.ts`) where loading `node:fs` is acceptable.
   */
  lutimes?: (linkPath: string, atimeMs: number, mtimeMs: number) => void;
}

/**
 * Whether the relative symlink `target`, placed in directory `parent`
 * (relative to the preopen root), would point above the root when resolved
 * lexically. Absolute targets always escape.
 */
export function symlinkTargetEscapes(parent: string, target: string): boolean {
  if (target.startsWith("/")) return true;
  const stack = parent.split("/").filter((c) => c !== "" && c !== ".");
  for (const c of target.split("/")) {
    if (c === "" || c === ".") continue;
    if (c === "..") {
      if (stack.length === 0) return true;
      stack.pop();
    } else stack.push(c);
  }
  return false;
}

const OS_ERRNO: Record<string, number> = {
  ENOENT: ERRNO.NOENT,
  EEXIST: ERRNO.EXIST,
  ENOTDIR: ERRNO.NOTDIR,
  EISDIR: ERRNO.ISDIR,
  ENOTEMPTY: ERRNO.NOTEMPTY,
  EACCES: ERRNO.ACCES,
  EPERM: ERRNO.PERM,
  ELOOP: ERRNO.LOOP,
  EINVAL: ERRNO.INVAL,
  EXDEV: ERRNO.XDEV,
  ENAMETOOLONG: ERRNO.NAMETOOLONG,
  ENOSPC: ERRNO.NOSPC,
  EDQUOT: ERRNO.DQUOT,
  EBADF: ERRNO.BADF,
  EBUSY: ERRNO.BUSY,
  EMLINK: ERRNO.MLINK,
  EFBIG: ERRNO.FBIG,
  EROFS: ERRNO.ROFS,
  ESPIPE: ERRNO.SPIPE,
  EIO: ERRNO.IO,
  ENXIO: ERRNO.NXIO,
  EAGAIN: ERRNO.AGAIN,
  ETXTBSY: ERRNO.TXTBSY,
  EOVERFLOW: ERRNO.OVERFLOW,
};

/** Maps an exception from a Deno file API to a WASI errno. */
export function errnoFromError(error: unknown): number {
  if (error instanceof WasiFsError) return error.errno;
  if (error instanceof Error) {
    const code = (error as { code?: unknown }).code;
    if (typeof code === "string" && code in OS_ERRNO) return OS_ERRNO[code];
    if (error.name === "NotCapable" || error.name === "PermissionDenied") {
      // Deno's own permission check refused it (worker confinement).
      return code === "EACCES" ? ERRNO.ACCES : ERRNO.NOTCAPABLE;
    }
    if (error.name === "NotFound") return ERRNO.NOENT;
    if (error.name === "AlreadyExists") return ERRNO.EXIST;
    if (error instanceof RangeError) return ERRNO.INVAL;
  }
  return ERRNO.IO;
}

function filetypeOf(info: Deno.FileInfo): number {
  if (info.isSymlink) return FILETYPE.SYMBOLIC_LINK;
  if (info.isFile) return FILETYPE.REGULAR_FILE;
  if (info.isDirectory) return FILETYPE.DIRECTORY;
  if (info.isBlockDevice) return FILETYPE.BLOCK_DEVICE;
  if (info.isCharDevice) return FILETYPE.CHARACTER_DEVICE;
  if (info.isSocket) return FILETYPE.SOCKET_STREAM;
  return FILETYPE.UNKNOWN;
}

function toStat(info: Deno.FileInfo): WasiFileStat {
  const mtimeMs = info.mtime?.getTime() ?? 0;
  return {
    dev: info.dev ?? 0,
    ino: info.ino ?? 0,
    filetype: filetypeOf(info),
    nlink: info.nlink ?? 1,
    size: info.size,
    atimeMs: info.atime?.getTime() ?? mtimeMs,
    mtimeMs,
    ctimeMs: info.ctime?.getTime() ?? mtimeMs,
  };
}

function lstatOrNull(path: string): Deno.FileInfo | null {
  try {
    return Deno.lstatSync(path);
  } catch (e) {
    const errno = errnoFromError(e);
    if (errno === ERRNO.NOENT) return null;
    throw new WasiFsError(errno, "stat", path, e);
  }
}

/** Result of resolving a guest path inside a preopen. */
interface Resolved {
  /** Host path (no symlinks before the last component). */
  host: string;
  /** Path relative to the preopen root. */
  rel: string;
  /** lstat of the final component, `null` when it does not exist. */
  info: Deno.FileInfo | null;
  /** The guest path ended in a slash. */
  trailingSlash: boolean;
  /** The last component the guest wrote ("" when the path named the dir itself). */
  lastName: string;
}

type Entry =
  | { kind: "file"; file: Deno.FsFile; host: string; preopen: number }
  | { kind: "dir"; host: string; preopen: number };

const MAX_SYMLINKS = 40;
const MAX_PATH = 4096;

/**
 * {@link WasiFs} on Deno's synchronous file APIs, confined to the given host
 * directories. Needs Deno read (and, for writable preopens, write) permission
 * on those directories only.
 *
 * How confinement works: every path is resolved here component by component
 * (symlinks followed by hand, `..` never above the directory fd), and the
 * real path of the last directory is checked to lie inside the preopen before
 * anything is opened, created or removed. Deno's own path permissions do not
 * see symlinks, so they are only a second fence.
 *
 * Limits:
 * - A concurrent host process that swaps a checked directory for a symlink
 *   between the check and the use is not defended against (the guest itself
 *   cannot race: it is single-threaded and blocked while a call runs).
 * - `symlink` refuses targets that point above the preopen root when read
 *   lexically, but a guest can still build links that escape *physically*
 *   (through other links, now or later). This layer never follows them out;
 *   other host code must not follow symlinks it finds in a guest-writable
 *   directory either.
 * - `symlink` needs unscoped Deno read/write permissions (in a confined
 *   worker, pass the `symlink` option to create the link elsewhere).
 * - Times have millisecond precision (Deno's APIs).
 *
 * @example
 * ```ts
 * import { DenoWasiFs } from "./fs.ts";
 * const dir = Deno.makeTempDirSync();
 * const fs = new DenoWasiFs([{ hostPath: dir }]);
 * fs.mkdir({ preopen: 0, dir: "", path: "sub" });
 * console.log(fs.stat({ preopen: 0, dir: "", path: "sub" }, true).filetype); // 3
 * Deno.removeSync(dir, { recursive: true });
 * ```
 */
export class DenoWasiFs implements WasiFs {
  #roots: { root: string; readOnly: boolean }[];
  #handles = new Map<number, Entry>();
  #nextHandle = 1;
  #escapeErrno: number;
  #symlink?: (target: string, linkPath: string) => void;
  #lutimes?: (linkPath: string, atimeMs: number, mtimeMs: number) => void;

  /** Confines the backend to `preopens` (resolved with realpath now). */
  constructor(preopens: DenoWasiFsPreopen[], options: DenoWasiFsOptions = {}) {
    this.#roots = preopens.map((p) => {
      const root = Deno.realPathSync(p.hostPath);
      if (!Deno.statSync(root).isDirectory) {
        throw new TypeError(
          `Cannot preopen "${p.hostPath}": not a directory`,
        );
      }
      return { root, readOnly: p.readOnly ?? false };
    });
    this.#escapeErrno = options.escapeErrno ?? ERRNO.NOTCAPABLE;
    this.#symlink = options.symlink;
    this.#lutimes = options.lutimes;
  }

  #root(preopen: number): { root: string; readOnly: boolean } {
    const r = this.#roots[preopen];
    if (!r) throw new WasiFsError(ERRNO.BADF, "use preopen", String(preopen));
    return r;
  }

  #writable(preopen: number, op: string, path: string): void {
    if (this.#root(preopen).readOnly) {
      throw new WasiFsError(ERRNO.ROFS, op, path);
    }
  }

  /**
   * Resolves `ref` component by component; symlinks in intermediate
   * components are always followed, in the last only when `follow`.
   */
  #resolve(ref: WasiPathRef, follow: boolean, op: string): Resolved {
    const { root } = this.#root(ref.preopen);
    const path = ref.path;
    if (path.includes("\0")) throw new WasiFsError(ERRNO.INVAL, op, path);
    if (path.length > MAX_PATH) {
      throw new WasiFsError(ERRNO.NAMETOOLONG, op, path);
    }
    if (path === "") throw new WasiFsError(ERRNO.NOENT, op, path);
    if (path.startsWith("/")) {
      throw new WasiFsError(this.#escapeErrno, op, path);
    }
    const trailingSlash = path.endsWith("/");
    const parts = path.split("/").filter((c) => c !== "");
    const lastName = parts.length ? parts[parts.length - 1] : "";
    const stack = ref.dir.split("/").filter((c) => c !== "" && c !== ".");
    const floor = stack.length;
    if (floor > 0) {
      // The directory fd's path was resolved when it was opened; make sure it
      // still names a real directory inside (it may have been swapped for a
      // symlink since), before touching anything below it.
      const base = `${root}/${stack.join("/")}`;
      let real: string;
      try {
        real = Deno.realPathSync(base);
      } catch (e) {
        throw new WasiFsError(errnoFromError(e), op, path, e);
      }
      if (real !== base) throw new WasiFsError(this.#escapeErrno, op, path);
    }
    const pending = parts.filter((c) => c !== ".");
    let links = 0;
    let info: Deno.FileInfo | null = null;
    let host = root;
    // The directory the fd names exists and is a directory (checked at open).
    info = null;
    if (pending.length === 0) {
      host = stack.length ? `${root}/${stack.join("/")}` : root;
      info = lstatOrNull(host);
    }
    while (pending.length > 0) {
      const c = pending.shift()!;
      const isLast = pending.length === 0;
      if (c === "..") {
        if (stack.length <= floor) {
          throw new WasiFsError(this.#escapeErrno, op, path);
        }
        stack.pop();
        host = stack.length ? `${root}/${stack.join("/")}` : root;
        info = isLast ? lstatOrNull(host) : null;
        continue;
      }
      stack.push(c);
      host = `${root}/${stack.join("/")}`;
      info = lstatOrNull(host);
      if (info === null) {
        if (isLast) break;
        throw new WasiFsError(ERRNO.NOENT, op, path);
      }
      if (info.isSymlink && (!isLast || follow)) {
        if (++links > MAX_SYMLINKS) throw new WasiFsError(ERRNO.LOOP, op, path);
        let target: string;
        try {
          target = Deno.readLinkSync(host);
        } catch (e) {
          throw new WasiFsError(errnoFromError(e), op, path, e);
        }
        if (target.startsWith("/")) {
          throw new WasiFsError(this.#escapeErrno, op, path);
        }
        stack.pop();
        const tparts = target.split("/").filter((t) => t !== "" && t !== ".");
        pending.unshift(...tparts);
        if (pending.length === 0) {
          // A link to "." names the directory holding it.
          host = stack.length ? `${root}/${stack.join("/")}` : root;
          info = lstatOrNull(host);
        }
        continue;
      }
      if (!isLast && !info.isDirectory) {
        throw new WasiFsError(ERRNO.NOTDIR, op, path);
      }
    }
    // Belt and braces: the deepest existing ancestor must really be inside.
    const parent = stack.length > 0
      ? (stack.length > 1 ? `${root}/${stack.slice(0, -1).join("/")}` : root)
      : root;
    let real: string;
    try {
      real = Deno.realPathSync(parent);
    } catch (e) {
      throw new WasiFsError(errnoFromError(e), op, path, e);
    }
    if (real !== root && !real.startsWith(root + "/")) {
      throw new WasiFsError(this.#escapeErrno, op, path);
    }
    return { host, rel: stack.join("/"), info, trailingSlash, lastName };
  }

  #entry(handle: number): Entry {
    const e = this.#handles.get(handle);
    if (!e) throw new WasiFsError(ERRNO.BADF, "use handle", String(handle));
    return e;
  }

  #file(handle: number, op: string): Deno.FsFile {
    const e = this.#entry(handle);
    if (e.kind !== "file") throw new WasiFsError(ERRNO.ISDIR, op, e.host);
    return e.file;
  }

  #add(entry: Entry): number {
    const h = this.#nextHandle++;
    this.#handles.set(h, entry);
    return h;
  }

  /** Registers an opened regular file and describes it to the guest. */
  #opened(
    file: Deno.FsFile,
    host: string,
    rel: string,
    preopen: number,
  ): WasiOpenResult {
    return {
      handle: this.#add({ kind: "file", file, host, preopen }),
      filetype: FILETYPE.REGULAR_FILE,
      path: rel,
    };
  }

  /** Opens a file or directory inside the preopen (see {@link WasiFs.open}). */
  open(ref: WasiPathRef, o: WasiOpenOptions): WasiOpenResult {
    // As in POSIX, a trailing slash makes the last symlink be followed.
    const r = this.#resolve(ref, o.follow || ref.path.endsWith("/"), "open");
    const wantWrite = o.write || o.truncate;
    if (r.info === null) {
      if (!o.create) throw new WasiFsError(ERRNO.NOENT, "open", ref.path);
      if (o.directory) throw new WasiFsError(ERRNO.INVAL, "open", ref.path);
      if (r.trailingSlash) throw new WasiFsError(ERRNO.ISDIR, "open", ref.path);
      this.#writable(ref.preopen, "create", ref.path);
      try {
        const file = Deno.openSync(r.host, {
          read: true,
          write: true,
          createNew: true,
        });
        return this.#opened(file, r.host, r.rel, ref.preopen);
      } catch (e) {
        throw new WasiFsError(errnoFromError(e), "create", ref.path, e);
      }
    }
    if (o.create && o.exclusive) {
      throw new WasiFsError(ERRNO.EXIST, "open", ref.path);
    }
    const info = r.info;
    if (info.isSymlink) {
      // Only reached without `follow`: like O_NOFOLLOW.
      throw new WasiFsError(ERRNO.LOOP, "open", ref.path);
    }
    if (info.isDirectory) {
      if (wantWrite) throw new WasiFsError(ERRNO.ISDIR, "open", ref.path);
      return {
        handle: this.#add({ kind: "dir", host: r.host, preopen: ref.preopen }),
        filetype: FILETYPE.DIRECTORY,
        path: r.rel,
      };
    }
    if (o.directory || r.trailingSlash) {
      throw new WasiFsError(ERRNO.NOTDIR, "open", ref.path);
    }
    if (!info.isFile) {
      // FIFOs, sockets and devices could block the worker forever.
      throw new WasiFsError(ERRNO.NOTSUP, "open", ref.path);
    }
    if (wantWrite) this.#writable(ref.preopen, "open for writing", ref.path);
    try {
      const file = Deno.openSync(r.host, {
        read: true,
        write: wantWrite,
        truncate: o.truncate,
      });
      return this.#opened(file, r.host, r.rel, ref.preopen);
    } catch (e) {
      throw new WasiFsError(errnoFromError(e), "open", ref.path, e);
    }
  }

  /** Closes a handle. */
  close(handle: number): void {
    const e = this.#entry(handle);
    this.#handles.delete(handle);
    if (e.kind === "file") e.file.close();
  }

  /** Reads from a file handle (see {@link WasiFs.read}). */
  read(handle: number, length: number, position: number | null): Uint8Array {
    const file = this.#file(handle, "read");
    try {
      const saved = position === null
        ? -1
        : file.seekSync(0, Deno.SeekMode.Current);
      if (position !== null) file.seekSync(position, Deno.SeekMode.Start);
      const buf = new Uint8Array(length);
      let total = 0;
      while (total < length) {
        const n = file.readSync(buf.subarray(total));
        if (n === null || n === 0) break;
        total += n;
      }
      if (position !== null) file.seekSync(saved, Deno.SeekMode.Start);
      return buf.subarray(0, total);
    } catch (e) {
      throw new WasiFsError(errnoFromError(e), "read", "", e);
    }
  }

  /** Writes to a file handle (see {@link WasiFs.write}). */
  write(handle: number, data: Uint8Array, position: number | null): number {
    const file = this.#file(handle, "write");
    try {
      const saved = position === null
        ? -1
        : file.seekSync(0, Deno.SeekMode.Current);
      if (position !== null) file.seekSync(position, Deno.SeekMode.Start);
      let total = 0;
      while (total < data.length) {
        total += file.writeSync(data.subarray(total));
      }
      if (position !== null) file.seekSync(saved, Deno.SeekMode.Start);
      return total;
    } catch (e) {
      throw new WasiFsError(errnoFromError(e), "write", "", e);
    }
  }

  /** Moves a file handle's offset. */
  seek(handle: number, offset: number, whence: number): number {
    const file = this.#file(handle, "seek");
    try {
      return file.seekSync(offset, whence as Deno.SeekMode);
    } catch (e) {
      throw new WasiFsError(errnoFromError(e), "seek", "", e);
    }
  }

  /** Metadata of an open handle. */
  fstat(handle: number): WasiFileStat {
    const e = this.#entry(handle);
    try {
      return toStat(
        e.kind === "file" ? e.file.statSync() : Deno.statSync(e.host),
      );
    } catch (err) {
      throw new WasiFsError(errnoFromError(err), "stat", e.host, err);
    }
  }

  /** Metadata of a confined path. */
  stat(ref: WasiPathRef, follow: boolean): WasiFileStat {
    const r = this.#resolve(ref, follow || ref.path.endsWith("/"), "stat");
    if (r.info === null) throw new WasiFsError(ERRNO.NOENT, "stat", ref.path);
    if (r.trailingSlash && !r.info.isDirectory) {
      throw new WasiFsError(ERRNO.NOTDIR, "stat", ref.path);
    }
    return toStat(r.info);
  }

  /** Truncates or extends a file. */
  setSize(handle: number, size: number): void {
    const file = this.#file(handle, "truncate");
    this.#writable(this.#entry(handle).preopen, "truncate", "");
    try {
      file.truncateSync(size);
    } catch (e) {
      throw new WasiFsError(errnoFromError(e), "truncate", "", e);
    }
  }

  /** Flushes a file to storage. */
  sync(handle: number, dataOnly: boolean): void {
    const e = this.#entry(handle);
    if (e.kind !== "file") return;
    try {
      if (dataOnly) e.file.syncDataSync();
      else e.file.syncSync();
    } catch (err) {
      throw new WasiFsError(errnoFromError(err), "sync", e.host, err);
    }
  }

  /** Lists a directory handle (without `.` and `..`). */
  readdir(handle: number): WasiDirEntry[] {
    const e = this.#entry(handle);
    if (e.kind !== "dir") {
      throw new WasiFsError(ERRNO.NOTDIR, "readdir", e.host);
    }
    try {
      const out: WasiDirEntry[] = [];
      for (const d of Deno.readDirSync(e.host)) {
        const info = lstatOrNull(`${e.host}/${d.name}`);
        if (!info) continue; // removed meanwhile
        out.push({
          name: d.name,
          filetype: filetypeOf(info),
          ino: info.ino ?? 0,
        });
      }
      return out;
    } catch (err) {
      throw new WasiFsError(errnoFromError(err), "readdir", e.host, err);
    }
  }

  #mutable(ref: WasiPathRef, op: string): Resolved {
    this.#writable(ref.preopen, op, ref.path);
    const r = this.#resolve(ref, false, op);
    if (r.lastName === "." || r.lastName === ".." || r.rel === "") {
      throw new WasiFsError(
        op === "create directory" ? ERRNO.EXIST : ERRNO.INVAL,
        op,
        ref.path,
      );
    }
    return r;
  }

  /** Creates a directory. */
  mkdir(ref: WasiPathRef): void {
    const r = this.#mutable(ref, "create directory");
    if (r.info !== null) throw new WasiFsError(ERRNO.EXIST, "mkdir", ref.path);
    try {
      Deno.mkdirSync(r.host);
    } catch (e) {
      throw new WasiFsError(errnoFromError(e), "mkdir", ref.path, e);
    }
  }

  /** Removes an empty directory. */
  rmdir(ref: WasiPathRef): void {
    const r = this.#mutable(ref, "remove directory");
    if (r.info === null) throw new WasiFsError(ERRNO.NOENT, "rmdir", ref.path);
    if (!r.info.isDirectory) {
      throw new WasiFsError(ERRNO.NOTDIR, "rmdir", ref.path);
    }
    try {
      Deno.removeSync(r.host);
    } catch (e) {
      throw new WasiFsError(errnoFromError(e), "rmdir", ref.path, e);
    }
  }

  /** Removes a file or symlink. */
  unlink(ref: WasiPathRef): void {
    const r = this.#mutable(ref, "unlink");
    if (r.info === null) throw new WasiFsError(ERRNO.NOENT, "unlink", ref.path);
    if (r.info.isDirectory) {
      throw new WasiFsError(ERRNO.ISDIR, "unlink", ref.path);
    }
    if (r.trailingSlash) {
      throw new WasiFsError(ERRNO.NOTDIR, "unlink", ref.path);
    }
    try {
      Deno.removeSync(r.host);
    } catch (e) {
      throw new WasiFsError(errnoFromError(e), "unlink", ref.path, e);
    }
  }

  /** Renames within the preopen. */
  rename(from: WasiPathRef, to: WasiPathRef): void {
    const a = this.#mutable(from, "rename");
    const b = this.#mutable(to, "rename to");
    if (a.info === null) {
      throw new WasiFsError(ERRNO.NOENT, "rename", from.path);
    }
    if ((a.trailingSlash || b.trailingSlash) && !a.info.isDirectory) {
      throw new WasiFsError(ERRNO.NOTDIR, "rename", from.path);
    }
    try {
      Deno.renameSync(a.host, b.host);
    } catch (e) {
      throw new WasiFsError(errnoFromError(e), "rename", from.path, e);
    }
  }

  /** Creates a hard link within the preopen. */
  link(from: WasiPathRef, to: WasiPathRef, follow: boolean): void {
    this.#writable(to.preopen, "link", to.path);
    const a = this.#resolve(from, follow, "link");
    const b = this.#mutable(to, "link to");
    if (a.info === null) throw new WasiFsError(ERRNO.NOENT, "link", from.path);
    if (a.info.isDirectory) {
      throw new WasiFsError(ERRNO.PERM, "link", from.path);
    }
    if (b.info !== null) throw new WasiFsError(ERRNO.EXIST, "link", to.path);
    if (b.trailingSlash) throw new WasiFsError(ERRNO.NOENT, "link", to.path);
    if (a.trailingSlash) {
      throw new WasiFsError(ERRNO.NOTDIR, "link", from.path);
    }
    try {
      Deno.linkSync(a.host, b.host);
    } catch (e) {
      throw new WasiFsError(errnoFromError(e), "link", to.path, e);
    }
  }

  /** Creates a symlink; absolute targets are refused. */
  symlink(target: string, ref: WasiPathRef): void {
    if (target.includes("\0")) {
      throw new WasiFsError(ERRNO.INVAL, "symlink", target);
    }
    if (target.startsWith("/")) {
      throw new WasiFsError(this.#escapeErrno, "symlink", target);
    }
    const r = this.#mutable(ref, "symlink");
    if (r.info !== null) {
      throw new WasiFsError(ERRNO.EXIST, "symlink", ref.path);
    }
    if (r.trailingSlash) {
      throw new WasiFsError(ERRNO.NOENT, "symlink", ref.path);
    }
    const parent = r.rel.split("/").slice(0, -1).join("/");
    if (symlinkTargetEscapes(parent, target)) {
      throw new WasiFsError(this.#escapeErrno, "symlink", target);
    }
    try {
      if (this.#symlink) this.#symlink(target, r.host);
      else Deno.symlinkSync(target, r.host);
    } catch (e) {
      throw new WasiFsError(errnoFromError(e), "symlink", ref.path, e);
    }
  }

  /** Reads a symlink's target text. */
  readlink(ref: WasiPathRef): string {
    const r = this.#resolve(ref, false, "readlink");
    if (r.info === null) {
      throw new WasiFsError(ERRNO.NOENT, "readlink", ref.path);
    }
    if (!r.info.isSymlink) {
      throw new WasiFsError(ERRNO.INVAL, "readlink", ref.path);
    }
    try {
      return Deno.readLinkSync(r.host);
    } catch (e) {
      throw new WasiFsError(errnoFromError(e), "readlink", ref.path, e);
    }
  }

  /** Sets access/modification times. */
  setTimes(
    target: WasiTimesTarget,
    atimeMs: number | null,
    mtimeMs: number | null,
  ): void {
    try {
      if ("handle" in target) {
        const e = this.#entry(target.handle);
        this.#writable(e.preopen, "set times", e.host);
        const cur = this.fstat(target.handle);
        const at = new Date(atimeMs ?? cur.atimeMs);
        const mt = new Date(mtimeMs ?? cur.mtimeMs);
        if (e.kind === "file") e.file.utimeSync(at, mt);
        else Deno.utimeSync(e.host, at, mt);
        return;
      }
      this.#writable(target.ref.preopen, "set times", target.ref.path);
      const r = this.#resolve(target.ref, target.follow, "set times");
      if (r.info === null) {
        throw new WasiFsError(ERRNO.NOENT, "set times", target.ref.path);
      }
      const cur = toStat(r.info);
      if (r.info.isSymlink) {
        // Only reached without `follow`: change the link itself.
        if (!this.#lutimes) {
          throw new WasiFsError(ERRNO.NOTSUP, "set times", target.ref.path);
        }
        this.#lutimes(
          r.host,
          atimeMs ?? cur.atimeMs,
          mtimeMs ?? cur.mtimeMs,
        );
        return;
      }
      Deno.utimeSync(
        r.host,
        new Date(atimeMs ?? cur.atimeMs),
        new Date(mtimeMs ?? cur.mtimeMs),
      );
    } catch (e) {
      if (e instanceof WasiFsError) throw e;
      throw new WasiFsError(errnoFromError(e), "set times", "", e);
    }
  }
}
