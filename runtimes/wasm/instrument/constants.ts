/**
 * The constants of the instrumenter that its host relies on: the function
 * import every instrumented module calls to refuel or stop
 * ({@link INTERRUPT_IMPORT}), the fuel per refill ({@link FUEL}), how much
 * code one fuel unit stands for ({@link BYTES_PER_FUEL}) and the default
 * memory limit ({@link DEFAULT_MEMORY_LIMIT_PAGES}).
 *
 * @module
 */

/** The function import added to every instrumented module: `() -> i32`. */
export const INTERRUPT_IMPORT = { module: "gk", name: "interrupt" } as const;

/**
 * Fuel units per refill, and the fuel global's initial value. A tight loop
 * spends one unit per iteration, so it reaches `gk.interrupt` every
 * {@link FUEL} iterations (10–50 µs); bigger loop bodies and call trees spend
 * more per check (see {@link BYTES_PER_FUEL}), so guest code reaches it
 * within about 0.1–1 ms. The host's `interrupt` should return this value to
 * refuel.
 */
export const FUEL = 10_000;

/**
 * Code bytes per fuel unit when weighing a check by the code it covers: a
 * loop check spends `1 + body bytes / 64` units per iteration (at most 1001),
 * an entry check `1 + covered bytes / 64`.
 */
export const BYTES_PER_FUEL = 64;

/** Default memory limit in 64 KiB pages (16 MiB). */
export const DEFAULT_MEMORY_LIMIT_PAGES = 256;
