/**
 * Private: what identifies a rewrite, shared by `instrument_module.ts` and
 * the cache in `cache.ts`: the checked memory limit ({@link resolveLimit})
 * and the content hash ({@link computeHash}) that `InstrumentedModule.hash`
 * reports and the cache is keyed by.
 *
 * @module
 */

import { createHash } from "node:crypto";
import { DEFAULT_MEMORY_LIMIT_PAGES, FUEL } from "./constants.ts";
import type { InstrumentOptions } from "./types.ts";

/** Version of the rewriting scheme; part of the hash so caches never mix schemes. */
const REWRITER_VERSION = "gk-instrument/3";

/**
 * The memory limit of `options` in pages (default
 * {@link DEFAULT_MEMORY_LIMIT_PAGES}).
 *
 * @throws {RangeError} `memoryLimitPages` is not an integer from 0 to 65536.
 */
export function resolveLimit(options: InstrumentOptions | undefined): number {
  const limit = options?.memoryLimitPages ?? DEFAULT_MEMORY_LIMIT_PAGES;
  if (!Number.isInteger(limit) || limit < 0 || limit > 65536) {
    throw new RangeError(
      `Cannot instrument WebAssembly module: "memoryLimitPages" must be an integer from 0 to 65536, got ${limit}`,
    );
  }
  return limit;
}

/**
 * Hex SHA-256 of the input bytes together with the memory limit, the fuel
 * and the rewriter version: two rewrites with the same hash give the same
 * output.
 */
export function computeHash(bytes: Uint8Array, limit: number): string {
  return createHash("sha256")
    .update(bytes)
    .update(`\0${REWRITER_VERSION};memoryLimitPages=${limit};fuel=${FUEL}`)
    .digest("hex");
}
