/**
 * The options and the result shared by {@link instrumentModule} and
 * {@link instrumentModuleCached}: {@link InstrumentOptions} and
 * {@link InstrumentedModule}.
 *
 * @module
 */

/** Options of {@link instrumentModule}. */
export interface InstrumentOptions {
  /**
   * Largest memory the module may have, in 64 KiB pages (0–65536).
   *
   * @default {256}
   */
  memoryLimitPages?: number;
  /**
   * Not configurable: the fuel per refill is what `gk.interrupt` returns
   * (normally {@link FUEL}).
   */
  fuelPerRefill?: never;
}

/** The result of {@link instrumentModule}. */
export interface InstrumentedModule {
  /**
   * The rewritten module (backed by a plain `ArrayBuffer`, so it can be given
   * to `new WebAssembly.Module` as it is). Treat as read-only: the cache may
   * share it.
   */
  bytes: Uint8Array<ArrayBuffer>;
  /** Hex SHA-256 of the input bytes together with the options and rewriter version. */
  hash: string;
  /**
   * The memory maximum written into the module, in pages: the smaller of the
   * module's declared maximum and the limit; 0 when the module defines no
   * memory.
   */
  memoryMaxPages: number;
}
