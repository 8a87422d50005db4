/**
 * {@link instrumentModuleCached}: `instrumentModule` behind a bounded LRU
 * cache keyed by the content hash, so that loading or re-instantiating the
 * same plugin does not rewrite it again.
 *
 * @module
 */

import { computeHash, resolveLimit } from "./_rewrite_key.ts";
import { rewriteModule } from "./_module_rewriter.ts";
import type { InstrumentedModule, InstrumentOptions } from "./types.ts";

interface CacheEntry {
  promise: Promise<InstrumentedModule>;
  size: number;
}

/** Most entries kept by {@link instrumentModuleCached}. */
const CACHE_MAX_ENTRIES = 64;
/** Most output bytes kept by {@link instrumentModuleCached}. */
const CACHE_MAX_BYTES = 128 * 1024 * 1024;
const cache = new Map<string, CacheEntry>();
let cacheBytes = 0;

/**
 * {@link instrumentModule} with a bounded LRU cache keyed by the content hash
 * (input bytes + options): loading the same plugin again, or re-instantiating
 * it, does not rewrite it again. Failures are not cached. The returned object
 * may be shared between callers: do not modify its bytes.
 *
 * @param bytes The original module.
 * @param options Memory limit.
 * @returns The rewritten module, its content hash and its memory maximum.
 * @throws {WasmInstrumentError} As {@link instrumentModule}.
 *
 * @example
 * ```ts
 * import { instrumentModuleCached } from "./mod.ts";
 * const wasm = new Uint8Array([0, 97, 115, 109, 1, 0, 0, 0]); // an empty module
 * const a = await instrumentModuleCached(wasm);
 * const b = await instrumentModuleCached(wasm);
 * console.log(a === b); // true
 * ```
 */
export async function instrumentModuleCached(
  bytes: Uint8Array,
  options?: InstrumentOptions,
): Promise<InstrumentedModule> {
  const limit = resolveLimit(options);
  const hash = computeHash(bytes, limit);
  const hit = cache.get(hash);
  if (hit) {
    cache.delete(hash);
    cache.set(hash, hit);
    return await hit.promise;
  }
  const { bytes: out, memoryMaxPages } = rewriteModule(bytes, limit);
  const result: InstrumentedModule = { bytes: out, hash, memoryMaxPages };
  const size = result.bytes.length;
  if (size <= CACHE_MAX_BYTES) {
    cache.set(hash, { promise: Promise.resolve(result), size });
    cacheBytes += size;
    for (const [key, entry] of cache) {
      if (cache.size <= CACHE_MAX_ENTRIES && cacheBytes <= CACHE_MAX_BYTES) {
        break;
      }
      cache.delete(key);
      cacheBytes -= entry.size;
    }
  }
  return await Promise.resolve(result);
}
