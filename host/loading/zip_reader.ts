/**
 * A defensive ZIP reader for plugin packages. It reads the central
 * directory first and refuses, before inflating anything, what a package
 * must never contain: absolute or `..` paths, symlinks, encrypted or
 * unsupported entries, duplicates, too many entries, too many bytes, and
 * compression ratios of zip bombs. Inflation is then bounded by each
 * entry's declared size and checked against its CRC-32, so a lying header
 * cannot make it allocate more.
 *
 * @module
 */

import { Inflate } from "fflate";

/** Limits a package must stay within. */
export interface ZipLimits {
  /** Most entries. @default 1000 */
  maxEntries?: number;
  /** Most uncompressed bytes in all. @default 64 MiB */
  maxTotalBytes?: number;
  /** Most uncompressed bytes of one entry. @default 32 MiB */
  maxEntryBytes?: number;
  /** Highest uncompressed/compressed ratio of an entry over 1 MiB. @default 100 */
  maxRatio?: number;
}

/** One file of a package. */
export interface ZipEntry {
  /** Path inside the package, `/`-separated, never absolute, no `..`. */
  name: string;
  /** Uncompressed size. */
  size: number;
  /** Compressed size. */
  compressedSize: number;
  /**
   * Unix permission bits from the entry's external attributes (`0o755`,
   * `0o644`…), or 0 when the archive was not made on Unix. An executable
   * plugin keeps its `x` bits through them.
   */
  mode: number;
}

/** Options of {@linkcode PackageRejectedError}. */
export interface PackageRejectedErrorOptions extends ErrorOptions {
  /**
   * Machine-readable code, such as `package_invalid`.
   * @default "package_invalid"
   */
  code?: string;
  /**
   * The HTTP status the API answers with: 400 (bad package), 403
   * (signature or trust), 409 (conflict with what is installed), 413 (too
   * big), 422 (invalid manifest).
   * @default 400
   */
  status?: number;
  /** What the client needs to fix it (appended to the message after `; `). */
  fix?: string;
  /** Structured details (JSON-serialisable). */
  details?: Record<string, unknown>;
}

/**
 * A package (or an uninstall) is refused; `reason` says why, `fix` what to
 * do about it, `code` and `status` how the API reports it.
 *
 * @example
 * ```ts
 * import { PackageRejectedError } from "./zip_reader.ts";
 * const e = new PackageRejectedError("no manifest.json at the top of the package", {
 *   fix: "add manifest.json next to the module",
 * });
 * console.log(e.status, e.code); // 400 "package_invalid"
 * ```
 */
export class PackageRejectedError extends Error {
  /** Why, in a few words (also in the message). */
  readonly reason: string;
  /** Machine-readable code. */
  readonly code: string;
  /** HTTP status for the API. */
  readonly status: number;
  /** What to do about it ("" when the reason says it). */
  readonly fix: string;
  /** Structured details. */
  readonly details: Record<string, unknown>;

  /** Creates the error. */
  constructor(reason: string, options: PackageRejectedErrorOptions = {}) {
    const { code, status, fix, details, ...errorOptions } = options;
    super(
      `Cannot install package: ${reason}${fix ? `; ${fix}` : ""}`,
      errorOptions,
    );
    this.name = "PackageRejectedError";
    this.reason = reason;
    this.code = code ?? "package_invalid";
    this.status = status ?? 400;
    this.fix = fix ?? "";
    this.details = details ?? {};
  }
}

/** A limit of {@linkcode ZipLimits} was passed: 413, `package_too_large`. */
function tooLarge(reason: string): PackageRejectedError {
  return new PackageRejectedError(reason, {
    code: "package_too_large",
    status: 413,
    fix: "make the package smaller (leave build outputs and dependencies out)",
  });
}

interface RawEntry extends ZipEntry {
  method: number;
  crc: number;
  localOffset: number;
}

const DEFAULTS: Required<ZipLimits> = {
  maxEntries: 1000,
  maxTotalBytes: 64 * 1024 * 1024,
  maxEntryBytes: 32 * 1024 * 1024,
  maxRatio: 100,
};

/**
 * A ZIP archive whose directory has been checked; entries are inflated on
 * demand with {@linkcode SafeZip.read}.
 *
 * @example
 * ```ts
 * import { zipSync } from "fflate";
 * import { SafeZip } from "./zip_reader.ts";
 * const zip = SafeZip.open(zipSync({ "manifest.json": new TextEncoder().encode("{}") }));
 * console.log(zip.entries.map((e) => e.name)); // ["manifest.json"]
 * ```
 */
export class SafeZip {
  /** The files, in directory order (directories omitted). */
  readonly entries: readonly ZipEntry[];
  #bytes: Uint8Array;
  #raw: Map<string, RawEntry>;

  private constructor(bytes: Uint8Array, raw: RawEntry[]) {
    this.#bytes = bytes;
    this.#raw = new Map(raw.map((e) => [e.name, e]));
    this.entries = raw.map(({ name, size, compressedSize, mode }) => ({
      name,
      size,
      compressedSize,
      mode,
    }));
  }

  /** Reads and checks the directory; throws {@linkcode PackageRejectedError}. */
  static open(bytes: Uint8Array, limits: ZipLimits = {}): SafeZip {
    const l = { ...DEFAULTS, ...limits };
    const dv = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
    const eocd = findEocd(bytes, dv);
    const count = dv.getUint16(eocd + 10, true);
    const cdSize = dv.getUint32(eocd + 12, true);
    const cdOffset = dv.getUint32(eocd + 16, true);
    if (count === 0xffff || cdOffset === 0xffffffff) {
      throw new PackageRejectedError("ZIP64 archives are not supported");
    }
    if (cdOffset + cdSize > bytes.length) {
      throw new PackageRejectedError("central directory out of bounds");
    }
    if (count > l.maxEntries) {
      throw tooLarge(
        `${count} entries, more than the limit of ${l.maxEntries}`,
      );
    }
    const raw: RawEntry[] = [];
    const seen = new Set<string>();
    let total = 0;
    let p = cdOffset;
    for (let i = 0; i < count; i++) {
      if (p + 46 > bytes.length || dv.getUint32(p, true) !== 0x02014b50) {
        throw new PackageRejectedError("corrupt central directory");
      }
      const versionMadeBy = dv.getUint16(p + 4, true);
      const flags = dv.getUint16(p + 8, true);
      const method = dv.getUint16(p + 10, true);
      const crc = dv.getUint32(p + 16, true);
      const compressedSize = dv.getUint32(p + 20, true);
      const size = dv.getUint32(p + 24, true);
      const nameLen = dv.getUint16(p + 28, true);
      const extraLen = dv.getUint16(p + 30, true);
      const commentLen = dv.getUint16(p + 32, true);
      const external = dv.getUint32(p + 38, true);
      const localOffset = dv.getUint32(p + 42, true);
      const nameBytes = bytes.subarray(p + 46, p + 46 + nameLen);
      p += 46 + nameLen + extraLen + commentLen;
      const name = new TextDecoder("utf-8", { fatal: false }).decode(nameBytes);
      checkName(name);
      const unixMode = (versionMadeBy >> 8) === 3 ? external >>> 16 : 0;
      if ((unixMode & 0o170000) === 0o120000) {
        throw new PackageRejectedError(`entry "${name}" is a symbolic link`);
      }
      if (flags & 0x1) {
        throw new PackageRejectedError(`entry "${name}" is encrypted`);
      }
      if (name.endsWith("/")) continue; // directory
      if (method !== 0 && method !== 8) {
        throw new PackageRejectedError(
          `entry "${name}" uses unsupported compression method ${method}`,
        );
      }
      if (seen.has(name)) {
        throw new PackageRejectedError(`entry "${name}" appears twice`);
      }
      seen.add(name);
      if (size > l.maxEntryBytes) {
        throw tooLarge(
          `entry "${name}" is ${size} bytes, more than the limit of ${l.maxEntryBytes}`,
        );
      }
      if (
        size > 1024 * 1024 && size / Math.max(1, compressedSize) > l.maxRatio
      ) {
        throw tooLarge(
          `entry "${name}" compresses ${
            Math.round(size / Math.max(1, compressedSize))
          }:1, above the limit of ${l.maxRatio}:1 (zip bomb?)`,
        );
      }
      total += size;
      if (total > l.maxTotalBytes) {
        throw tooLarge(
          `more than ${l.maxTotalBytes} bytes uncompressed in all`,
        );
      }
      raw.push({
        name,
        size,
        compressedSize,
        mode: unixMode & 0o7777,
        method,
        crc,
        localOffset,
      });
    }
    return new SafeZip(bytes, raw);
  }

  /** Whether the package holds `name`. */
  has(name: string): boolean {
    return this.#raw.has(name);
  }

  /**
   * Inflates one entry, never past its declared size, and checks its CRC-32.
   */
  read(name: string): Uint8Array {
    const e = this.#raw.get(name);
    if (!e) throw new PackageRejectedError(`no entry "${name}"`);
    const bytes = this.#bytes;
    const dv = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
    const lo = e.localOffset;
    if (lo + 30 > bytes.length || dv.getUint32(lo, true) !== 0x04034b50) {
      throw new PackageRejectedError(
        `entry "${name}" has a corrupt local header`,
      );
    }
    const start = lo + 30 + dv.getUint16(lo + 26, true) +
      dv.getUint16(lo + 28, true);
    const data = bytes.subarray(start, start + e.compressedSize);
    if (start + e.compressedSize > bytes.length) {
      throw new PackageRejectedError(`entry "${name}" is truncated`);
    }
    let out: Uint8Array;
    if (e.method === 0) {
      if (e.compressedSize !== e.size) {
        throw new PackageRejectedError(
          `entry "${name}" has inconsistent sizes`,
        );
      }
      out = data.slice();
    } else {
      out = new Uint8Array(e.size);
      let written = 0;
      let overflow = false;
      const inflate = new Inflate((chunk) => {
        if (written + chunk.length > e.size) {
          overflow = true;
          throw new PackageRejectedError(
            `entry "${name}" inflates beyond its declared ${e.size} bytes (zip bomb?)`,
          );
        }
        out.set(chunk, written);
        written += chunk.length;
      });
      try {
        for (let i = 0; i < data.length; i += 16384) {
          inflate.push(
            data.subarray(i, i + 16384),
            i + 16384 >= data.length,
          );
        }
        if (data.length === 0) inflate.push(new Uint8Array(), true);
      } catch (err) {
        if (overflow || err instanceof PackageRejectedError) throw err;
        throw new PackageRejectedError(
          `entry "${name}" is not valid deflate data`,
        );
      }
      if (written !== e.size) {
        throw new PackageRejectedError(
          `entry "${name}" inflates to ${written} bytes, not the declared ${e.size}`,
        );
      }
    }
    if (crc32(out) !== e.crc) {
      throw new PackageRejectedError(`entry "${name}" fails its CRC-32 check`);
    }
    return out;
  }
}

function findEocd(bytes: Uint8Array, dv: DataView): number {
  const min = Math.max(0, bytes.length - 22 - 0xffff);
  for (let i = bytes.length - 22; i >= min; i--) {
    if (dv.getUint32(i, true) === 0x06054b50) return i;
  }
  throw new PackageRejectedError("not a ZIP archive", {
    fix: "upload a .zip made with gk pack, or a bare .wasm module",
  });
}

function checkName(name: string): void {
  if (name.length === 0) throw new PackageRejectedError("an entry has no name");
  if (name.includes("\0") || name.includes("\\")) {
    throw new PackageRejectedError(`entry "${name}" has a forbidden character`);
  }
  if (name.startsWith("/") || /^[A-Za-z]:/.test(name)) {
    throw new PackageRejectedError(`entry "${name}" has an absolute path`);
  }
  if (name.split("/").some((seg) => seg === ".." || seg === ".")) {
    throw new PackageRejectedError(`entry "${name}" leaves the package (..)`);
  }
}

let CRC_TABLE: Uint32Array | undefined;

/**
 * CRC-32 (IEEE) of `data`, as ZIP uses it.
 *
 * @example
 * ```ts
 * import { crc32 } from "./zip_reader.ts";
 * crc32(new TextEncoder().encode("123456789")).toString(16); // "cbf43926"
 * ```
 */
export function crc32(data: Uint8Array): number {
  if (!CRC_TABLE) {
    CRC_TABLE = new Uint32Array(256);
    for (let n = 0; n < 256; n++) {
      let c = n;
      for (let k = 0; k < 8; k++) c = c & 1 ? 0xedb88320 ^ (c >>> 1) : c >>> 1;
      CRC_TABLE[n] = c >>> 0;
    }
  }
  let crc = 0xffffffff;
  for (let i = 0; i < data.length; i++) {
    crc = CRC_TABLE[(crc ^ data[i]!) & 0xff]! ^ (crc >>> 8);
  }
  return (crc ^ 0xffffffff) >>> 0;
}
