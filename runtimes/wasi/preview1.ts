/**
 * Our own deny-by-default WASI preview1 (`wasi_snapshot_preview1`)
 * implementation.
 *
 * What the guest gets:
 * - `args`, `environ`: exactly what the host passes, nothing else.
 * - clocks: realtime and monotonic from `performance.timeOrigin` +
 *   `performance.now()` (resolution reported as 1 µs); the process and thread
 *   CPU-time clocks return the monotonic clock (Deno exposes no per-thread CPU
 *   time).
 * - `random_get`: `crypto.getRandomValues`.
 * - file times: Deno's file APIs read and set times in milliseconds. The
 *   nanoseconds a guest sets are remembered per file (dev, inode) in this
 *   instance and reported back while the stored millisecond still matches;
 *   times set by others read with millisecond precision.
 * - fd 0 reads the given stdin bytes; fds 1 and 2 write to the given sinks
 *   (discarded when none is given).
 * - files: only through the preopened directories, via a {@link WasiFs}
 *   backend that confines every path (see `fs.ts`).
 * - `poll_oneoff`: clock subscriptions block the thread (`Atomics.wait` or the
 *   host's `sleep` hook); fd subscriptions are reported ready at once (stdin
 *   with the bytes left, files with the bytes up to their end, writes with 0).
 * - `proc_exit` throws {@link WasiExitError}, which unwinds the guest; the
 *   caller ends the instance. Nothing ever ends the host.
 * - sockets: `EBADF` for a bad fd, else `ENOTSOCK`; `proc_raise`: `ENOSYS`.
 *
 * Every preview1 function is present in {@link WasiPreview1.imports}; none
 * throws except `proc_exit` and what the host's own hooks (`stdout`,
 * `stderr`, `sleep`) throw: errors of the file-system backend become errnos,
 * out-of-bounds pointers `EFAULT`.
 *
 * @module
 */

import {
  CLOCKID,
  ERRNO,
  EVENTTYPE,
  FDFLAGS,
  FILETYPE,
  FSTFLAGS,
  LOOKUPFLAGS,
  OFLAGS,
  PREOPENTYPE,
  PREVIEW1_FUNCTIONS,
  RIGHTS,
  WHENCE,
} from "./constants.ts";
import {
  DenoWasiFs,
  type WasiDirEntry,
  type WasiFileStat,
  type WasiFs,
  WasiFsError,
  type WasiPathRef,
} from "./fs.ts";

/** One preopened directory. */
export interface WasiDirPreopen {
  /** Name the guest sees (`fd_prestat_dir_name`), e.g. `/data` or `.`. */
  guestPath: string;
  /** Host directory it maps to. */
  hostPath: string;
  /** Refuse every change below it. */
  readOnly?: boolean;
}

/** Options of {@link WasiPreview1}. */
export interface WasiPreview1Options {
  /** Command-line arguments (`argv[0]` included). */
  args?: string[];
  /** Environment variables. */
  env?: Record<string, string>;
  /** Preopened directories, fds 3, 4, … in this order. */
  preopens?: WasiDirPreopen[];
  /** Bytes fd 0 reads; empty by default. */
  stdin?: Uint8Array;
  /** Receives each `fd_write` to fd 1 (a copy). */
  stdout?: (bytes: Uint8Array) => void;
  /** Receives each `fd_write` to fd 2 (a copy). */
  stderr?: (bytes: Uint8Array) => void;
  /**
   * File-system backend; by default a {@link DenoWasiFs} over `preopens`
   * (without its `symlink`/`lutimes` options).
   */
  fs?: WasiFs;
  /**
   * Most file descriptors the guest may hold at once (stdio and preopens
   * included); `path_open` beyond it fails with `EMFILE`, so a guest cannot
   * exhaust the host process's descriptors.
   * @default {1024}
   */
  maxFds?: number;
  /**
   * Blocks the thread for `ms` milliseconds (for `poll_oneoff`). Whatever it
   * throws (e.g. {@link WasiDeadlineError}) unwinds the guest, like anything
   * `stdout` and `stderr` throw. Default: `Atomics.wait` on a private
   * SharedArrayBuffer.
   */
  sleep?: (ms: number) => void;
}

/**
 * Thrown by `proc_exit`: unwinds the guest. Catch it around `_start` and end
 * the instance.
 *
 * @example
 * ```ts
 * import { WasiExitError } from "./preview1.ts";
 * try {
 *   throw new WasiExitError(3);
 * } catch (e) {
 *   if (e instanceof WasiExitError) console.log(e.code); // 3
 * }
 * ```
 */
export class WasiExitError extends Error {
  /** The exit code the guest passed. */
  readonly code: number;
  /** Creates the error for exit `code`. */
  constructor(code: number) {
    super(`WASI guest called proc_exit(${code})`);
    this.name = "WasiExitError";
    this.code = code;
  }
}

/**
 * Thrown inside the guest's thread when its deadline has passed (from the
 * fuel interrupt or from a sleep); it unwinds the guest.
 */
export class WasiDeadlineError extends Error {
  /** Creates the error. */
  constructor(message = "WASI guest interrupted: deadline reached") {
    super(message);
    this.name = "WasiDeadlineError";
  }
}

const R = RIGHTS;
/** Rights a directory fd carries. */
const DIR_BASE = R.PATH_CREATE_DIRECTORY | R.PATH_CREATE_FILE |
  R.PATH_LINK_SOURCE | R.PATH_LINK_TARGET | R.PATH_OPEN | R.FD_READDIR |
  R.PATH_READLINK | R.PATH_RENAME_SOURCE | R.PATH_RENAME_TARGET |
  R.PATH_SYMLINK | R.PATH_REMOVE_DIRECTORY | R.PATH_UNLINK_FILE |
  R.PATH_FILESTAT_GET | R.PATH_FILESTAT_SET_SIZE | R.PATH_FILESTAT_SET_TIMES |
  R.FD_FILESTAT_GET | R.FD_FILESTAT_SET_TIMES | R.FD_FDSTAT_SET_FLAGS |
  R.FD_SYNC | R.FD_DATASYNC;
/** Rights a regular file fd can carry. */
const FILE_ALL = R.FD_DATASYNC | R.FD_READ | R.FD_SEEK |
  R.FD_FDSTAT_SET_FLAGS | R.FD_SYNC | R.FD_TELL | R.FD_WRITE | R.FD_ADVISE |
  R.FD_ALLOCATE | R.FD_FILESTAT_GET | R.FD_FILESTAT_SET_SIZE |
  R.FD_FILESTAT_SET_TIMES | R.POLL_FD_READWRITE;
const FILE_WRITE = R.FD_WRITE | R.FD_ALLOCATE | R.FD_FILESTAT_SET_SIZE |
  R.FD_DATASYNC | R.FD_SYNC;
const DIR_MUTATE = R.PATH_CREATE_DIRECTORY | R.PATH_CREATE_FILE |
  R.PATH_LINK_TARGET | R.PATH_RENAME_SOURCE | R.PATH_RENAME_TARGET |
  R.PATH_SYMLINK | R.PATH_REMOVE_DIRECTORY | R.PATH_UNLINK_FILE |
  R.PATH_FILESTAT_SET_SIZE | R.PATH_FILESTAT_SET_TIMES |
  R.FD_FILESTAT_SET_TIMES;

type FdKind = "stdin" | "stdout" | "stderr" | "file" | "dir";

interface FdEntry {
  kind: FdKind;
  filetype: number;
  base: bigint;
  inheriting: bigint;
  flags: number;
  handle?: number;
  preopen?: number;
  dir?: string;
  preopenName?: Uint8Array;
  listing?: WasiDirEntry[];
}

/** Internal: an errno to return. */
class Errno extends Error {
  constructor(readonly errno: number) {
    super(`errno ${errno}`);
  }
}

const MAX_IO = 16 * 1024 * 1024;
const encoder = new TextEncoder();
const decoder = new TextDecoder("utf-8", { fatal: true });

function defaultSleep(): (ms: number) => void {
  let cell: Int32Array | null = null;
  return (ms: number) => {
    cell ??= new Int32Array(new SharedArrayBuffer(4));
    Atomics.wait(cell, 0, 0, ms);
  };
}

function realtimeNs(): bigint {
  return BigInt(Math.round((performance.timeOrigin + performance.now()) * 1e6));
}

function monotonicNs(): bigint {
  return BigInt(Math.round(performance.now() * 1e6));
}

/**
 * A WASI preview1 instance for one guest.
 *
 * @example
 * ```ts
 * import { WasiExitError, WasiPreview1 } from "./preview1.ts";
 * const bytes = Deno.readFileSync("fixtures/wasi/hello_c.wasm");
 * const wasi = new WasiPreview1({
 *   args: ["hello", "world"],
 *   stdout: (b) => Deno.stdout.writeSync(b),
 * });
 * const { instance } = await WebAssembly.instantiate(bytes, {
 *   wasi_snapshot_preview1: wasi.imports(),
 * });
 * wasi.bind(instance);
 * let code = 0;
 * try {
 *   (instance.exports._start as () => void)();
 * } catch (e) {
 *   if (!(e instanceof WasiExitError)) throw e;
 *   code = e.code;
 * }
 * ```
 */
export class WasiPreview1 {
  #args: Uint8Array[];
  #env: Uint8Array[];
  #stdin: Uint8Array;
  #stdinPos = 0;
  #stdout?: (bytes: Uint8Array) => void;
  #stderr?: (bytes: Uint8Array) => void;
  #fs: WasiFs | null;
  #sleep: (ms: number) => void;
  #fds = new Map<number, FdEntry>();
  #memory: WebAssembly.Memory | null = null;
  #setNs = new Map<string, bigint>();
  #maxFds: number;
  #hookFailed = false;
  #hookError: unknown = undefined;

  /** Sets up fds 0–2 and the preopens (fds 3, 4, …). */
  constructor(options: WasiPreview1Options = {}) {
    this.#args = (options.args ?? []).map((a) => encoder.encode(a + "\0"));
    this.#env = Object.entries(options.env ?? {}).map(([k, v]) =>
      encoder.encode(`${k}=${v}\0`)
    );
    this.#stdin = options.stdin ?? new Uint8Array(0);
    this.#stdout = options.stdout;
    this.#stderr = options.stderr;
    this.#sleep = options.sleep ?? defaultSleep();
    this.#maxFds = options.maxFds ?? 1024;
    const preopens = options.preopens ?? [];
    this.#fs = options.fs ??
      (preopens.length ? new DenoWasiFs(preopens) : null);
    const chr = FILETYPE.CHARACTER_DEVICE;
    this.#fds.set(0, {
      kind: "stdin",
      filetype: chr,
      base: R.FD_READ | R.POLL_FD_READWRITE | R.FD_FDSTAT_SET_FLAGS |
        R.FD_FILESTAT_GET,
      inheriting: 0n,
      flags: 0,
    });
    for (const [fd, kind] of [[1, "stdout"], [2, "stderr"]] as const) {
      this.#fds.set(fd, {
        kind,
        filetype: chr,
        base: R.FD_WRITE | R.POLL_FD_READWRITE | R.FD_FDSTAT_SET_FLAGS |
          R.FD_FILESTAT_GET,
        inheriting: 0n,
        flags: FDFLAGS.APPEND,
      });
    }
    preopens.forEach((p, i) => {
      if (!this.#fs) return;
      const opened = this.#fs.open({ preopen: i, dir: "", path: "." }, {
        follow: true,
        create: false,
        exclusive: false,
        truncate: false,
        directory: true,
        read: true,
        write: false,
      });
      const mask = p.readOnly ? ~DIR_MUTATE & ~FILE_WRITE : ~0n;
      this.#fds.set(3 + i, {
        kind: "dir",
        filetype: FILETYPE.DIRECTORY,
        base: DIR_BASE & mask,
        inheriting: (DIR_BASE | FILE_ALL) & mask,
        flags: 0,
        handle: opened.handle,
        preopen: i,
        dir: "",
        preopenName: encoder.encode(p.guestPath),
      });
    });
  }

  /** Uses the instance's exported `memory` (or the given memory) from now on. */
  bind(target: WebAssembly.Instance | WebAssembly.Memory): void {
    if (target instanceof WebAssembly.Memory) {
      this.#memory = target;
      return;
    }
    const mem = target.exports.memory;
    if (!(mem instanceof WebAssembly.Memory)) {
      throw new TypeError(
        'Cannot bind WASI to instance: it exports no memory named "memory"',
      );
    }
    this.#memory = mem;
  }

  /**
   * Runs the command's `_start` and returns its exit code (0 when `_start`
   * returns). Binds the instance first.
   */
  start(instance: WebAssembly.Instance): number {
    this.bind(instance);
    const start = instance.exports._start;
    if (typeof start !== "function") {
      throw new TypeError("Cannot start WASI command: no _start export");
    }
    try {
      start();
      return 0;
    } catch (e) {
      if (e instanceof WasiExitError) return e.code;
      throw e;
    }
  }

  /**
   * Closes every descriptor the guest still holds (files and directories,
   * preopens included), releasing their host resources. Call it when the
   * instance is finished with; the guest sees `EBADF` afterwards.
   */
  closeAll(): void {
    for (const [fd, e] of this.#fds) {
      if (e.handle !== undefined && this.#fs) {
        try {
          this.#fs.close(e.handle);
        } catch {
          // already gone
        }
      }
      this.#fds.delete(fd);
    }
  }

  /** The `wasi_snapshot_preview1` import object, with every preview1 function. */
  imports(): WebAssembly.ModuleImports {
    const table = this.#table();
    const out: WebAssembly.ModuleImports = {};
    for (const name of PREVIEW1_FUNCTIONS) {
      const impl = table[name];
      out[name] = (...args: unknown[]) => {
        try {
          return impl ? (impl(...args) ?? ERRNO.SUCCESS) : ERRNO.NOSYS;
        } catch (e) {
          if (e instanceof Errno) return e.errno;
          if (e instanceof WasiFsError) return e.errno;
          if (
            e instanceof WasiExitError || e instanceof WasiDeadlineError ||
            (this.#hookFailed && e === this.#hookError)
          ) {
            throw e;
          }
          if (e instanceof RangeError) return ERRNO.FAULT;
          return ERRNO.IO;
        }
      };
    }
    return out;
  }

  /**
   * Runs a host-provided hook (sink or sleep); whatever it throws unwinds the
   * guest instead of becoming an errno.
   */
  #hook(fn: () => void): void {
    try {
      fn();
    } catch (e) {
      this.#hookFailed = true;
      this.#hookError = e;
      throw e;
    }
  }

  // ---- memory helpers (views re-read on every call: memory can grow) ----

  #mem(): { dv: DataView; u8: Uint8Array } {
    if (!this.#memory) throw new Errno(ERRNO.FAULT);
    const buf = this.#memory.buffer;
    return { dv: new DataView(buf), u8: new Uint8Array(buf) };
  }

  #check(u8: Uint8Array, ptr: number, len: number): void {
    if (ptr < 0 || len < 0 || ptr + len > u8.length) {
      throw new RangeError("guest pointer out of bounds");
    }
  }

  #str(ptr: number, len: number): string {
    const { u8 } = this.#mem();
    ptr >>>= 0;
    len >>>= 0;
    this.#check(u8, ptr, len);
    try {
      return decoder.decode(u8.subarray(ptr, ptr + len));
    } catch {
      throw new Errno(ERRNO.ILSEQ);
    }
  }

  #iovs(ptr: number, count: number): { ptr: number; len: number }[] {
    const { dv, u8 } = this.#mem();
    ptr >>>= 0;
    count >>>= 0;
    this.#check(u8, ptr, count * 8);
    const out = [];
    for (let i = 0; i < count; i++) {
      const p = dv.getUint32(ptr + i * 8, true);
      const l = dv.getUint32(ptr + i * 8 + 4, true);
      this.#check(u8, p, l);
      out.push({ ptr: p, len: l });
    }
    return out;
  }

  #gather(iovsPtr: number, count: number): Uint8Array {
    const iovs = this.#iovs(iovsPtr, count);
    const { u8 } = this.#mem();
    let total = 0;
    for (const v of iovs) total += v.len;
    if (total > MAX_IO) total = MAX_IO;
    const out = new Uint8Array(total);
    let off = 0;
    for (const v of iovs) {
      const n = Math.min(v.len, total - off);
      out.set(u8.subarray(v.ptr, v.ptr + n), off);
      off += n;
      if (off >= total) break;
    }
    return out;
  }

  #scatter(
    iovsPtr: number,
    count: number,
    read: (n: number) => Uint8Array,
  ): number {
    const iovs = this.#iovs(iovsPtr, count);
    let total = 0;
    for (const v of iovs) total += v.len;
    const data = read(Math.min(total, MAX_IO));
    const { u8 } = this.#mem();
    let off = 0;
    for (const v of iovs) {
      if (off >= data.length) break;
      const n = Math.min(v.len, data.length - off);
      u8.set(data.subarray(off, off + n), v.ptr);
      off += n;
    }
    return off;
  }

  #fd(fd: number): FdEntry {
    const e = this.#fds.get(fd >>> 0);
    if (!e) throw new Errno(ERRNO.BADF);
    return e;
  }

  #need(e: FdEntry, right: bigint): void {
    if ((e.base & right) === 0n) throw new Errno(ERRNO.NOTCAPABLE);
  }

  #fsOf(): WasiFs {
    if (!this.#fs) throw new Errno(ERRNO.BADF);
    return this.#fs;
  }

  #ref(
    fd: number,
    pathPtr: number,
    pathLen: number,
    right: bigint,
  ): WasiPathRef {
    const e = this.#fd(fd);
    if (e.kind !== "dir") throw new Errno(ERRNO.NOTDIR);
    this.#need(e, right);
    return {
      preopen: e.preopen!,
      dir: e.dir!,
      path: this.#str(pathPtr, pathLen),
    };
  }

  #nextFd(): number {
    let fd = 3;
    while (this.#fds.has(fd)) fd++;
    return fd;
  }

  #writeStat(ptr: number, s: {
    dev: number;
    ino: number;
    filetype: number;
    nlink: number;
    size: number;
    atimeMs: number;
    mtimeMs: number;
    ctimeMs: number;
  }): void {
    const { dv } = this.#mem();
    ptr >>>= 0;
    const ns = (ms: number) => BigInt(Math.round(ms)) * 1_000_000n;
    const time = (ms: number, kind: "a" | "m") => {
      const set = this.#setNs.get(`${s.dev}:${s.ino}:${kind}`);
      return set !== undefined && set / 1_000_000n === BigInt(Math.round(ms))
        ? set
        : ns(ms);
    };
    dv.setBigUint64(ptr, BigInt(s.dev), true);
    dv.setBigUint64(ptr + 8, BigInt(s.ino), true);
    dv.setUint8(ptr + 16, s.filetype);
    for (let i = 17; i < 24; i++) dv.setUint8(ptr + i, 0);
    dv.setBigUint64(ptr + 24, BigInt(s.nlink), true);
    dv.setBigUint64(ptr + 32, BigInt(s.size), true);
    dv.setBigUint64(ptr + 40, time(s.atimeMs, "a"), true);
    dv.setBigUint64(ptr + 48, time(s.mtimeMs, "m"), true);
    dv.setBigUint64(ptr + 56, ns(s.ctimeMs), true);
  }

  /**
   * Remembers the exact nanoseconds the guest set, which Deno's millisecond
   * file APIs cannot store: a later stat of the same file reports them as long
   * as the stored time still has the same millisecond.
   */
  #rememberTimes(
    st: WasiFileStat,
    atim: bigint,
    mtim: bigint,
    fst: number,
  ): void {
    const pairs = [
      ["a", FSTFLAGS.ATIM, atim],
      ["m", FSTFLAGS.MTIM, mtim],
    ] as const;
    for (const [kind, flag, value] of pairs) {
      const key = `${st.dev}:${st.ino}:${kind}`;
      this.#setNs.delete(key);
      if (fst & flag) this.#setNs.set(key, BigInt.asUintN(64, value));
    }
    for (const key of this.#setNs.keys()) {
      if (this.#setNs.size <= 4096) break;
      this.#setNs.delete(key);
    }
  }

  #clock(id: number): bigint {
    switch (id) {
      case CLOCKID.REALTIME:
        return realtimeNs();
      case CLOCKID.MONOTONIC:
      case CLOCKID.PROCESS_CPUTIME_ID:
      case CLOCKID.THREAD_CPUTIME_ID:
        return monotonicNs();
      default:
        throw new Errno(ERRNO.INVAL);
    }
  }

  #times(
    atim: bigint,
    mtim: bigint,
    fst: number,
  ): [number | null, number | null] {
    if (
      ((fst & FSTFLAGS.ATIM) && (fst & FSTFLAGS.ATIM_NOW)) ||
      ((fst & FSTFLAGS.MTIM) && (fst & FSTFLAGS.MTIM_NOW)) || (fst & ~15)
    ) {
      throw new Errno(ERRNO.INVAL);
    }
    const now = Date.now();
    const a = fst & FSTFLAGS.ATIM_NOW
      ? now
      : fst & FSTFLAGS.ATIM
      ? Number(BigInt.asUintN(64, atim) / 1_000_000n)
      : null;
    const m = fst & FSTFLAGS.MTIM_NOW
      ? now
      : fst & FSTFLAGS.MTIM
      ? Number(BigInt.asUintN(64, mtim) / 1_000_000n)
      : null;
    return [a, m];
  }

  #listing(e: FdEntry, refresh: boolean): WasiDirEntry[] {
    if (e.listing && !refresh) return e.listing;
    const fs = this.#fsOf();
    const self = fs.fstat(e.handle!);
    let parentIno = self.ino;
    if (e.dir) {
      const parts = e.dir.split("/");
      parts.pop();
      try {
        parentIno = fs.stat(
          { preopen: e.preopen!, dir: "", path: parts.join("/") || "." },
          true,
        ).ino;
      } catch {
        // keep the directory's own inode
      }
    }
    e.listing = [
      { name: ".", filetype: FILETYPE.DIRECTORY, ino: self.ino },
      { name: "..", filetype: FILETYPE.DIRECTORY, ino: parentIno },
      ...fs.readdir(e.handle!),
    ];
    return e.listing;
  }

  // deno-lint-ignore no-explicit-any
  #table(): Record<string, ((...a: any[]) => number | void) | undefined> {
    return {
      args_sizes_get: (argc: number, size: number) => {
        const { dv } = this.#mem();
        dv.setUint32(argc >>> 0, this.#args.length, true);
        dv.setUint32(
          size >>> 0,
          this.#args.reduce((n, a) => n + a.length, 0),
          true,
        );
      },
      args_get: (argv: number, buf: number) =>
        this.#strings(this.#args, argv, buf),
      environ_sizes_get: (count: number, size: number) => {
        const { dv } = this.#mem();
        dv.setUint32(count >>> 0, this.#env.length, true);
        dv.setUint32(
          size >>> 0,
          this.#env.reduce((n, a) => n + a.length, 0),
          true,
        );
      },
      environ_get: (ptrs: number, buf: number) =>
        this.#strings(this.#env, ptrs, buf),

      clock_res_get: (id: number, ptr: number) => {
        this.#clock(id);
        this.#mem().dv.setBigUint64(ptr >>> 0, 1000n, true);
      },
      clock_time_get: (id: number, _precision: bigint, ptr: number) => {
        const t = this.#clock(id);
        this.#mem().dv.setBigUint64(ptr >>> 0, t, true);
      },
      random_get: (ptr: number, len: number) => {
        const { u8 } = this.#mem();
        ptr >>>= 0;
        len >>>= 0;
        this.#check(u8, ptr, len);
        for (let off = 0; off < len; off += 65536) {
          const n = Math.min(65536, len - off);
          const chunk = new Uint8Array(n);
          crypto.getRandomValues(chunk);
          u8.set(chunk, ptr + off);
        }
      },
      sched_yield: () => ERRNO.SUCCESS,
      proc_exit: (code: number) => {
        throw new WasiExitError(code >>> 0);
      },
      proc_raise: () => ERRNO.NOSYS,

      fd_write: (fd: number, iovs: number, count: number, nwritten: number) => {
        const e = this.#fd(fd);
        if (e.kind === "dir") throw new Errno(ERRNO.BADF);
        this.#need(e, R.FD_WRITE);
        const data = this.#gather(iovs, count);
        let n = data.length;
        if (e.kind === "stdout") this.#hook(() => this.#stdout?.(data));
        else if (e.kind === "stderr") this.#hook(() => this.#stderr?.(data));
        else if (e.kind === "file") {
          const fs = this.#fsOf();
          if (e.flags & FDFLAGS.APPEND) fs.seek(e.handle!, 0, WHENCE.END);
          n = fs.write(e.handle!, data, null);
        } else throw new Errno(ERRNO.BADF);
        this.#mem().dv.setUint32(nwritten >>> 0, n, true);
      },
      fd_pwrite: (
        fd: number,
        iovs: number,
        count: number,
        offset: bigint,
        nwritten: number,
      ) => {
        const e = this.#fd(fd);
        if (e.kind === "dir") throw new Errno(ERRNO.BADF);
        if (e.kind !== "file") throw new Errno(ERRNO.SPIPE);
        this.#need(e, R.FD_WRITE | R.FD_SEEK);
        const off = BigInt.asUintN(64, offset);
        if (off > BigInt(Number.MAX_SAFE_INTEGER)) throw new Errno(ERRNO.INVAL);
        const data = this.#gather(iovs, count);
        const fs = this.#fsOf();
        const pos = e.flags & FDFLAGS.APPEND
          ? fs.fstat(e.handle!).size // Linux: O_APPEND pwrite appends
          : Number(off);
        const n = fs.write(e.handle!, data, pos);
        this.#mem().dv.setUint32(nwritten >>> 0, n, true);
      },
      fd_read: (fd: number, iovs: number, count: number, nread: number) => {
        const e = this.#fd(fd);
        if (e.kind === "dir") throw new Errno(ERRNO.BADF);
        this.#need(e, R.FD_READ);
        let n: number;
        if (e.kind === "stdin") {
          n = this.#scatter(iovs, count, (len) => {
            const out = this.#stdin.subarray(
              this.#stdinPos,
              this.#stdinPos + len,
            );
            this.#stdinPos += out.length;
            return out;
          });
        } else if (e.kind === "file") {
          const fs = this.#fsOf();
          n = this.#scatter(
            iovs,
            count,
            (len) => fs.read(e.handle!, len, null),
          );
        } else throw new Errno(ERRNO.BADF);
        this.#mem().dv.setUint32(nread >>> 0, n, true);
      },
      fd_pread: (
        fd: number,
        iovs: number,
        count: number,
        offset: bigint,
        nread: number,
      ) => {
        const e = this.#fd(fd);
        if (e.kind === "dir") throw new Errno(ERRNO.BADF);
        if (e.kind !== "file") throw new Errno(ERRNO.SPIPE);
        this.#need(e, R.FD_READ | R.FD_SEEK);
        const off = BigInt.asUintN(64, offset);
        if (off > BigInt(Number.MAX_SAFE_INTEGER)) throw new Errno(ERRNO.INVAL);
        const fs = this.#fsOf();
        const n = this.#scatter(
          iovs,
          count,
          (len) => fs.read(e.handle!, len, Number(off)),
        );
        this.#mem().dv.setUint32(nread >>> 0, n, true);
      },
      fd_seek: (
        fd: number,
        offset: bigint,
        whence: number,
        newOffset: number,
      ) => {
        const e = this.#fd(fd);
        if (e.kind === "dir") throw new Errno(ERRNO.BADF);
        if (e.kind !== "file") throw new Errno(ERRNO.SPIPE);
        if (whence > 2) throw new Errno(ERRNO.INVAL);
        this.#need(
          e,
          whence === WHENCE.CUR && offset === 0n
            ? R.FD_TELL | R.FD_SEEK
            : R.FD_SEEK,
        );
        const off = BigInt.asIntN(64, offset);
        if (
          off > BigInt(Number.MAX_SAFE_INTEGER) ||
          off < -BigInt(Number.MAX_SAFE_INTEGER)
        ) {
          throw new Errno(ERRNO.INVAL);
        }
        const pos = this.#fsOf().seek(e.handle!, Number(off), whence);
        this.#mem().dv.setBigUint64(newOffset >>> 0, BigInt(pos), true);
      },
      fd_tell: (fd: number, ptr: number) => {
        const e = this.#fd(fd);
        if (e.kind === "dir") throw new Errno(ERRNO.BADF);
        if (e.kind !== "file") throw new Errno(ERRNO.SPIPE);
        this.#need(e, R.FD_TELL);
        const pos = this.#fsOf().seek(e.handle!, 0, WHENCE.CUR);
        this.#mem().dv.setBigUint64(ptr >>> 0, BigInt(pos), true);
      },
      fd_close: (fd: number) => {
        const e = this.#fd(fd);
        if (e.handle !== undefined) this.#fsOf().close(e.handle);
        this.#fds.delete(fd >>> 0);
      },
      fd_renumber: (from: number, to: number) => {
        const a = this.#fd(from);
        const b = this.#fd(to);
        if ((from >>> 0) === (to >>> 0)) return;
        if (b.handle !== undefined) this.#fsOf().close(b.handle);
        this.#fds.set(to >>> 0, a);
        this.#fds.delete(from >>> 0);
      },
      fd_sync: (fd: number) => {
        const e = this.#fd(fd);
        if (e.kind !== "file" && e.kind !== "dir") throw new Errno(ERRNO.INVAL);
        this.#fsOf().sync(e.handle!, false);
      },
      fd_datasync: (fd: number) => {
        const e = this.#fd(fd);
        if (e.kind !== "file" && e.kind !== "dir") throw new Errno(ERRNO.INVAL);
        this.#fsOf().sync(e.handle!, true);
      },
      fd_advise: (fd: number, _o: bigint, _l: bigint, advice: number) => {
        const e = this.#fd(fd);
        if (e.kind === "dir") throw new Errno(ERRNO.BADF);
        if (e.kind !== "file") throw new Errno(ERRNO.SPIPE);
        if (advice > 5) throw new Errno(ERRNO.INVAL);
      },
      fd_allocate: (fd: number, offset: bigint, len: bigint) => {
        const e = this.#fd(fd);
        if (e.kind !== "file") throw new Errno(ERRNO.BADF);
        this.#need(e, R.FD_ALLOCATE);
        const end = BigInt.asUintN(64, offset) + BigInt.asUintN(64, len);
        if (end > BigInt(Number.MAX_SAFE_INTEGER)) throw new Errno(ERRNO.FBIG);
        const fs = this.#fsOf();
        if (Number(end) > fs.fstat(e.handle!).size) {
          fs.setSize(e.handle!, Number(end));
        }
      },
      fd_fdstat_get: (fd: number, ptr: number) => {
        const e = this.#fd(fd);
        const { dv } = this.#mem();
        ptr >>>= 0;
        dv.setUint8(ptr, e.filetype);
        dv.setUint8(ptr + 1, 0);
        dv.setUint16(ptr + 2, e.flags, true);
        dv.setUint32(ptr + 4, 0, true);
        dv.setBigUint64(ptr + 8, e.base, true);
        dv.setBigUint64(ptr + 16, e.inheriting, true);
      },
      fd_fdstat_set_flags: (fd: number, flags: number) => {
        const e = this.#fd(fd);
        if (flags & ~31) throw new Errno(ERRNO.INVAL);
        e.flags = flags;
      },
      fd_fdstat_set_rights: (fd: number, base: bigint, inheriting: bigint) => {
        const e = this.#fd(fd);
        const b = BigInt.asUintN(64, base);
        const i = BigInt.asUintN(64, inheriting);
        if ((b & ~e.base) !== 0n || (i & ~e.inheriting) !== 0n) {
          throw new Errno(ERRNO.NOTCAPABLE);
        }
        e.base = b;
        e.inheriting = i;
      },
      fd_filestat_get: (fd: number, ptr: number) => {
        const e = this.#fd(fd);
        if (e.handle === undefined) {
          this.#writeStat(ptr, {
            dev: 0,
            ino: 0,
            filetype: e.filetype,
            nlink: 1,
            size: 0,
            atimeMs: 0,
            mtimeMs: 0,
            ctimeMs: 0,
          });
          return;
        }
        this.#need(e, R.FD_FILESTAT_GET);
        this.#writeStat(ptr, this.#fsOf().fstat(e.handle));
      },
      fd_filestat_set_size: (fd: number, size: bigint) => {
        const e = this.#fd(fd);
        if (e.kind !== "file") throw new Errno(ERRNO.BADF);
        this.#need(e, R.FD_FILESTAT_SET_SIZE);
        const s = BigInt.asUintN(64, size);
        if (s > BigInt(Number.MAX_SAFE_INTEGER)) throw new Errno(ERRNO.FBIG);
        this.#fsOf().setSize(e.handle!, Number(s));
      },
      fd_filestat_set_times: (
        fd: number,
        atim: bigint,
        mtim: bigint,
        fst: number,
      ) => {
        const e = this.#fd(fd);
        const [a, m] = this.#times(atim, mtim, fst);
        if (e.handle === undefined) throw new Errno(ERRNO.BADF);
        this.#need(e, R.FD_FILESTAT_SET_TIMES);
        const fs = this.#fsOf();
        fs.setTimes({ handle: e.handle }, a, m);
        this.#rememberTimes(fs.fstat(e.handle), atim, mtim, fst);
      },
      fd_prestat_get: (fd: number, ptr: number) => {
        const e = this.#fd(fd);
        if (!e.preopenName) throw new Errno(ERRNO.BADF);
        const { dv } = this.#mem();
        dv.setUint32(ptr >>> 0, PREOPENTYPE.DIR, true);
        dv.setUint32((ptr >>> 0) + 4, e.preopenName.length, true);
      },
      fd_prestat_dir_name: (fd: number, ptr: number, len: number) => {
        const e = this.#fd(fd);
        if (!e.preopenName) throw new Errno(ERRNO.BADF);
        if ((len >>> 0) < e.preopenName.length) {
          throw new Errno(ERRNO.NAMETOOLONG);
        }
        const { u8 } = this.#mem();
        this.#check(u8, ptr >>> 0, e.preopenName.length);
        u8.set(e.preopenName, ptr >>> 0);
      },
      fd_readdir: (
        fd: number,
        buf: number,
        bufLen: number,
        cookie: bigint,
        bufUsed: number,
      ) => {
        const e = this.#fd(fd);
        if (e.kind !== "dir") throw new Errno(ERRNO.NOTDIR);
        this.#need(e, R.FD_READDIR);
        buf >>>= 0;
        bufLen >>>= 0;
        const c = BigInt.asUintN(64, cookie);
        const list = this.#listing(e, c === 0n);
        const { u8 } = this.#mem();
        this.#check(u8, buf, bufLen);
        let used = 0;
        for (let i = Number(c); i < list.length && used < bufLen; i++) {
          const ent = list[i];
          const name = encoder.encode(ent.name);
          const rec = new Uint8Array(24 + name.length);
          const dv = new DataView(rec.buffer);
          dv.setBigUint64(0, BigInt(i + 1), true);
          dv.setBigUint64(8, BigInt(ent.ino), true);
          dv.setUint32(16, name.length, true);
          dv.setUint8(20, ent.filetype);
          rec.set(name, 24);
          const n = Math.min(rec.length, bufLen - used);
          u8.set(rec.subarray(0, n), buf + used);
          used += n;
        }
        this.#mem().dv.setUint32(bufUsed >>> 0, used, true);
      },

      path_open: (
        fd: number,
        dirflags: number,
        pathPtr: number,
        pathLen: number,
        oflags: number,
        rightsBase: bigint,
        _rightsInheriting: bigint,
        fdflags: number,
        fdPtr: number,
      ) => {
        const d = this.#fd(fd);
        const ref = this.#ref(fd, pathPtr, pathLen, R.PATH_OPEN);
        // Check the result pointer first, so a bad one cannot leak an fd.
        this.#check(this.#mem().u8, fdPtr >>> 0, 4);
        if (this.#fds.size >= this.#maxFds) throw new Errno(ERRNO.MFILE);
        const base = BigInt.asUintN(64, rightsBase);
        let read = (base & (R.FD_READ | R.FD_READDIR)) !== 0n;
        // Like wasmtime: FD_WRITE asks for a writable fd; ALLOCATE and
        // FILESTAT_SET_SIZE only count for files (a directory opened with
        // them stays a directory).
        let write = (base & R.FD_WRITE) !== 0n ||
          ((oflags & OFLAGS.DIRECTORY) === 0 &&
            (base & (R.FD_ALLOCATE | R.FD_FILESTAT_SET_SIZE)) !== 0n);
        if (!read && !write) read = true;
        const creat = (oflags & OFLAGS.CREAT) !== 0;
        const trunc = (oflags & OFLAGS.TRUNC) !== 0;
        if (creat) this.#need(d, R.PATH_CREATE_FILE);
        if (trunc) this.#need(d, R.PATH_FILESTAT_SET_SIZE);
        if (
          (write || (fdflags & FDFLAGS.APPEND)) &&
          (d.inheriting & R.FD_WRITE) === 0n
        ) {
          throw new Errno(ERRNO.NOTCAPABLE);
        }
        if (fdflags & FDFLAGS.APPEND) write = true;
        const opened = this.#fsOf().open(ref, {
          follow: (dirflags & LOOKUPFLAGS.SYMLINK_FOLLOW) !== 0,
          create: creat,
          exclusive: (oflags & OFLAGS.EXCL) !== 0,
          truncate: trunc,
          directory: (oflags & OFLAGS.DIRECTORY) !== 0,
          read,
          write,
        });
        const isDir = opened.filetype === FILETYPE.DIRECTORY;
        let rights: bigint;
        if (isDir) rights = DIR_BASE & d.inheriting;
        else {
          rights = FILE_ALL & d.inheriting;
          if (!read) rights &= ~R.FD_READ;
          if (!write) rights &= ~FILE_WRITE;
        }
        const newFd = this.#nextFd();
        this.#fds.set(newFd, {
          kind: isDir ? "dir" : "file",
          filetype: opened.filetype,
          base: rights,
          inheriting: isDir ? d.inheriting : 0n,
          flags: fdflags & 31,
          handle: opened.handle,
          preopen: ref.preopen,
          dir: isDir ? opened.path : undefined,
        });
        this.#mem().dv.setUint32(fdPtr >>> 0, newFd, true);
      },
      path_create_directory: (fd: number, p: number, l: number) => {
        this.#fsOf().mkdir(this.#ref(fd, p, l, R.PATH_CREATE_DIRECTORY));
      },
      path_remove_directory: (fd: number, p: number, l: number) => {
        this.#fsOf().rmdir(this.#ref(fd, p, l, R.PATH_REMOVE_DIRECTORY));
      },
      path_unlink_file: (fd: number, p: number, l: number) => {
        this.#fsOf().unlink(this.#ref(fd, p, l, R.PATH_UNLINK_FILE));
      },
      path_filestat_get: (
        fd: number,
        flags: number,
        p: number,
        l: number,
        buf: number,
      ) => {
        const ref = this.#ref(fd, p, l, R.PATH_FILESTAT_GET);
        const st = this.#fsOf().stat(
          ref,
          (flags & LOOKUPFLAGS.SYMLINK_FOLLOW) !== 0,
        );
        this.#writeStat(buf, st);
      },
      path_filestat_set_times: (
        fd: number,
        flags: number,
        p: number,
        l: number,
        atim: bigint,
        mtim: bigint,
        fst: number,
      ) => {
        const ref = this.#ref(fd, p, l, R.PATH_FILESTAT_SET_TIMES);
        const [a, m] = this.#times(atim, mtim, fst);
        const follow = (flags & LOOKUPFLAGS.SYMLINK_FOLLOW) !== 0;
        const fs = this.#fsOf();
        fs.setTimes({ ref, follow }, a, m);
        this.#rememberTimes(fs.stat(ref, follow), atim, mtim, fst);
      },
      path_rename: (
        fd: number,
        p: number,
        l: number,
        fd2: number,
        p2: number,
        l2: number,
      ) => {
        const from = this.#ref(fd, p, l, R.PATH_RENAME_SOURCE);
        const to = this.#ref(fd2, p2, l2, R.PATH_RENAME_TARGET);
        if (from.preopen !== to.preopen) throw new Errno(ERRNO.XDEV);
        this.#fsOf().rename(from, to);
      },
      path_link: (
        fd: number,
        flags: number,
        p: number,
        l: number,
        fd2: number,
        p2: number,
        l2: number,
      ) => {
        const from = this.#ref(fd, p, l, R.PATH_LINK_SOURCE);
        const to = this.#ref(fd2, p2, l2, R.PATH_LINK_TARGET);
        if (from.preopen !== to.preopen) throw new Errno(ERRNO.XDEV);
        this.#fsOf().link(from, to, (flags & LOOKUPFLAGS.SYMLINK_FOLLOW) !== 0);
      },
      path_symlink: (
        op: number,
        ol: number,
        fd: number,
        p: number,
        l: number,
      ) => {
        const target = this.#str(op, ol);
        this.#fsOf().symlink(target, this.#ref(fd, p, l, R.PATH_SYMLINK));
      },
      path_readlink: (
        fd: number,
        p: number,
        l: number,
        buf: number,
        bufLen: number,
        used: number,
      ) => {
        const target = encoder.encode(
          this.#fsOf().readlink(this.#ref(fd, p, l, R.PATH_READLINK)),
        );
        const { u8 } = this.#mem();
        const n = Math.min(target.length, bufLen >>> 0);
        this.#check(u8, buf >>> 0, n);
        u8.set(target.subarray(0, n), buf >>> 0);
        this.#mem().dv.setUint32(used >>> 0, n, true);
      },

      poll_oneoff: (
        inPtr: number,
        outPtr: number,
        nsubs: number,
        neventsPtr: number,
      ) => this.#poll(inPtr >>> 0, outPtr >>> 0, nsubs >>> 0, neventsPtr >>> 0),

      sock_accept: (fd: number) => {
        this.#fd(fd);
        return ERRNO.NOTSOCK;
      },
      sock_recv: (fd: number) => {
        this.#fd(fd);
        return ERRNO.NOTSOCK;
      },
      sock_send: (fd: number) => {
        this.#fd(fd);
        return ERRNO.NOTSOCK;
      },
      sock_shutdown: (fd: number) => {
        this.#fd(fd);
        return ERRNO.NOTSOCK;
      },
    };
  }

  #strings(list: Uint8Array[], ptrs: number, buf: number): void {
    const { dv, u8 } = this.#mem();
    ptrs >>>= 0;
    buf >>>= 0;
    this.#check(u8, ptrs, list.length * 4);
    let off = buf;
    for (let i = 0; i < list.length; i++) {
      this.#check(u8, off, list[i].length);
      dv.setUint32(ptrs + i * 4, off, true);
      u8.set(list[i], off);
      off += list[i].length;
    }
  }

  #poll(
    inPtr: number,
    outPtr: number,
    nsubs: number,
    neventsPtr: number,
  ): number {
    if (nsubs === 0) return ERRNO.INVAL;
    const { dv, u8 } = this.#mem();
    this.#check(u8, inPtr, nsubs * 48);
    this.#check(u8, outPtr, nsubs * 32);
    type Ev = { userdata: bigint; error: number; type: number; nbytes: bigint };
    const events: Ev[] = [];
    const clocks: { userdata: bigint; remaining: bigint }[] = [];
    for (let i = 0; i < nsubs; i++) {
      const s = inPtr + i * 48;
      const userdata = dv.getBigUint64(s, true);
      const tag = dv.getUint8(s + 8);
      if (tag === EVENTTYPE.CLOCK) {
        const id = dv.getUint32(s + 16, true);
        const timeout = dv.getBigUint64(s + 24, true);
        const flags = dv.getUint16(s + 40, true);
        let now: bigint;
        try {
          now = this.#clock(id);
        } catch {
          events.push({ userdata, error: ERRNO.INVAL, type: tag, nbytes: 0n });
          continue;
        }
        const remaining = flags & 1 ? timeout - now : timeout;
        clocks.push({ userdata, remaining: remaining < 0n ? 0n : remaining });
      } else if (tag === EVENTTYPE.FD_READ || tag === EVENTTYPE.FD_WRITE) {
        const fd = dv.getUint32(s + 16, true);
        const e = this.#fds.get(fd);
        if (!e) {
          events.push({ userdata, error: ERRNO.BADF, type: tag, nbytes: 0n });
          continue;
        }
        let nbytes = 0n;
        if (tag === EVENTTYPE.FD_READ) {
          if (e.kind === "stdin") {
            nbytes = BigInt(this.#stdin.length - this.#stdinPos);
          } else if (e.kind === "file") {
            try {
              const fs = this.#fsOf();
              const pos = fs.seek(e.handle!, 0, WHENCE.CUR);
              nbytes = BigInt(Math.max(0, fs.fstat(e.handle!).size - pos));
            } catch {
              nbytes = 0n;
            }
          } else {
            events.push({ userdata, error: ERRNO.BADF, type: tag, nbytes: 0n });
            continue;
          }
        } else if (e.kind === "stdin" || e.kind === "dir") {
          events.push({ userdata, error: ERRNO.BADF, type: tag, nbytes: 0n });
          continue;
        }
        events.push({ userdata, error: 0, type: tag, nbytes });
      } else {
        events.push({ userdata, error: ERRNO.INVAL, type: tag, nbytes: 0n });
      }
    }
    if (events.length === 0 && clocks.length > 0) {
      let min = clocks[0].remaining;
      for (const c of clocks) if (c.remaining < min) min = c.remaining;
      if (min > 0n) this.#hook(() => this.#sleep(Number(min) / 1e6));
      for (const c of clocks) {
        if (c.remaining <= min) {
          events.push({
            userdata: c.userdata,
            error: 0,
            type: EVENTTYPE.CLOCK,
            nbytes: 0n,
          });
        }
      }
    } else {
      for (const c of clocks) {
        if (c.remaining === 0n) {
          events.push({
            userdata: c.userdata,
            error: 0,
            type: EVENTTYPE.CLOCK,
            nbytes: 0n,
          });
        }
      }
    }
    const mem = this.#mem();
    events.forEach((ev, i) => {
      const o = outPtr + i * 32;
      mem.u8.fill(0, o, o + 32);
      mem.dv.setBigUint64(o, ev.userdata, true);
      mem.dv.setUint16(o + 8, ev.error, true);
      mem.dv.setUint8(o + 10, ev.type);
      mem.dv.setBigUint64(o + 16, ev.nbytes, true);
    });
    mem.dv.setUint32(neventsPtr, events.length, true);
    return ERRNO.SUCCESS;
  }
}
