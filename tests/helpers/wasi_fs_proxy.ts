/**
 * Carrying {@link WasiFs} calls across a thread boundary: {@link ProxyWasiFs}
 * turns each call into `(method, args)` plain data for a synchronous
 * transport the caller provides (e.g. a SharedArrayBuffer channel that blocks
 * with `Atomics.wait`), and {@link serveWasiFsCall} runs such a call against
 * a real backend on the other side and answers with plain data. Everything
 * passed is structured-cloneable (numbers, strings, booleans, `Uint8Array`s,
 * plain objects and arrays).
 *
 * This lets a guest run in a worker with no Deno permissions at all while
 * the file system is served, confined by {@link DenoWasiFs}, elsewhere.
 *
 * @module
 */

import { ERRNO } from "../../runtimes/wasi/constants.ts";
import {
  errnoFromError,
  type WasiDirEntry,
  type WasiFileStat,
  type WasiFs,
  WasiFsError,
  type WasiOpenOptions,
  type WasiOpenResult,
  type WasiPathRef,
  type WasiTimesTarget,
} from "../../runtimes/wasi/fs.ts";

/** Names of the {@link WasiFs} methods, in a fixed order. */
export const WASI_FS_METHODS = [
  "open",
  "close",
  "read",
  "write",
  "seek",
  "fstat",
  "stat",
  "setSize",
  "sync",
  "readdir",
  "mkdir",
  "rmdir",
  "unlink",
  "rename",
  "link",
  "symlink",
  "readlink",
  "setTimes",
] as const;

/** One {@link WasiFs} method name. */
export type WasiFsMethod = typeof WASI_FS_METHODS[number];

/** The answer to one call: its value, or the WASI errno it failed with. */
export type WasiFsReply =
  | { ok: true; value: unknown }
  | { ok: false; errno: number };

/**
 * Runs one proxied call against `fs`. Unknown methods answer `ENOSYS`;
 * failures answer their errno (never throw).
 *
 * @example
 * ```ts
 * import { DenoWasiFs } from "../../runtimes/wasi/fs.ts";
 * import { serveWasiFsCall } from "./wasi_fs_proxy.ts";
 * const dir = Deno.makeTempDirSync();
 * const fs = new DenoWasiFs([{ hostPath: dir }]);
 * const reply = serveWasiFsCall(fs, "mkdir", [{ preopen: 0, dir: "", path: "x" }]);
 * console.log(reply); // { ok: true, value: undefined }
 * Deno.removeSync(dir, { recursive: true });
 * ```
 */
export function serveWasiFsCall(
  fs: WasiFs,
  method: string,
  args: unknown[],
): WasiFsReply {
  if (!(WASI_FS_METHODS as readonly string[]).includes(method)) {
    return { ok: false, errno: ERRNO.NOSYS };
  }
  if (!Array.isArray(args)) return { ok: false, errno: ERRNO.INVAL };
  try {
    const fn = fs[method as WasiFsMethod] as (...a: unknown[]) => unknown;
    return { ok: true, value: fn.apply(fs, args) };
  } catch (e) {
    return { ok: false, errno: errnoFromError(e) };
  }
}

/**
 * A {@link WasiFs} whose every call goes through `call` (a synchronous
 * transport to a thread running {@link serveWasiFsCall}).
 *
 * @example
 * ```ts
 * import { DenoWasiFs } from "../../runtimes/wasi/fs.ts";
 * import { ProxyWasiFs, serveWasiFsCall } from "./wasi_fs_proxy.ts";
 * const dir = Deno.makeTempDirSync();
 * const inner = new DenoWasiFs([{ hostPath: dir }]);
 * // In-process stand-in for a cross-thread channel:
 * const fs = new ProxyWasiFs((m, a) =>
 *   structuredClone(serveWasiFsCall(inner, m, structuredClone(a)))
 * );
 * fs.mkdir({ preopen: 0, dir: "", path: "x" });
 * Deno.removeSync(dir, { recursive: true });
 * ```
 */
export class ProxyWasiFs implements WasiFs {
  #call: (method: WasiFsMethod, args: unknown[]) => WasiFsReply;

  /** Uses `call` to reach the real backend. */
  constructor(call: (method: WasiFsMethod, args: unknown[]) => WasiFsReply) {
    this.#call = call;
  }

  #do<T>(method: WasiFsMethod, args: unknown[]): T {
    const reply = this.#call(method, args);
    if (!reply.ok) throw new WasiFsError(reply.errno, method);
    return reply.value as T;
  }

  /** Opens a file or directory. */
  open(ref: WasiPathRef, options: WasiOpenOptions): WasiOpenResult {
    return this.#do("open", [ref, options]);
  }
  /** Closes a handle. */
  close(handle: number): void {
    this.#do("close", [handle]);
  }
  /** Reads from a file handle. */
  read(handle: number, length: number, position: number | null): Uint8Array {
    return this.#do("read", [handle, length, position]);
  }
  /** Writes to a file handle. */
  write(handle: number, data: Uint8Array, position: number | null): number {
    return this.#do("write", [handle, data, position]);
  }
  /** Moves a file handle's offset. */
  seek(handle: number, offset: number, whence: number): number {
    return this.#do("seek", [handle, offset, whence]);
  }
  /** Metadata of an open handle. */
  fstat(handle: number): WasiFileStat {
    return this.#do("fstat", [handle]);
  }
  /** Metadata of a path. */
  stat(ref: WasiPathRef, follow: boolean): WasiFileStat {
    return this.#do("stat", [ref, follow]);
  }
  /** Truncates or extends a file. */
  setSize(handle: number, size: number): void {
    this.#do("setSize", [handle, size]);
  }
  /** Flushes a file. */
  sync(handle: number, dataOnly: boolean): void {
    this.#do("sync", [handle, dataOnly]);
  }
  /** Lists a directory handle. */
  readdir(handle: number): WasiDirEntry[] {
    return this.#do("readdir", [handle]);
  }
  /** Creates a directory. */
  mkdir(ref: WasiPathRef): void {
    this.#do("mkdir", [ref]);
  }
  /** Removes an empty directory. */
  rmdir(ref: WasiPathRef): void {
    this.#do("rmdir", [ref]);
  }
  /** Removes a file or symlink. */
  unlink(ref: WasiPathRef): void {
    this.#do("unlink", [ref]);
  }
  /** Renames. */
  rename(from: WasiPathRef, to: WasiPathRef): void {
    this.#do("rename", [from, to]);
  }
  /** Creates a hard link. */
  link(from: WasiPathRef, to: WasiPathRef, follow: boolean): void {
    this.#do("link", [from, to, follow]);
  }
  /** Creates a symlink. */
  symlink(target: string, ref: WasiPathRef): void {
    this.#do("symlink", [target, ref]);
  }
  /** Reads a symlink's target. */
  readlink(ref: WasiPathRef): string {
    return this.#do("readlink", [ref]);
  }
  /** Sets access/modification times. */
  setTimes(
    target: WasiTimesTarget,
    atimeMs: number | null,
    mtimeMs: number | null,
  ): void {
    this.#do("setTimes", [target, atimeMs, mtimeMs]);
  }
}
