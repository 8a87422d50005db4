/**
 * Plain-text tables for `gk list` and `gk grants`: columns padded to their
 * widest cell, two spaces apart, the last column unpadded.
 *
 * @module
 */

/**
 * Formats `rows` under `headers`; returns the lines.
 *
 * @example
 * ```ts
 * import { formatTable } from "./table.ts";
 * formatTable(["NAME", "VERSION"], [["hello-c", "1.0.0"]]);
 * // ["NAME     VERSION", "hello-c  1.0.0"]
 * ```
 */
export function formatTable(
  headers: readonly string[],
  rows: readonly (readonly string[])[],
): string[] {
  const widths = headers.map((h, i) =>
    Math.max(h.length, ...rows.map((r) => (r[i] ?? "").length))
  );
  const line = (cells: readonly string[]) =>
    cells.map((c, i) => i === cells.length - 1 ? c : c.padEnd(widths[i]!))
      .join("  ").trimEnd();
  return [line(headers), ...rows.map(line)];
}

/**
 * A byte count for people: `512 B`, `26.3 KB`, `2.4 MB` (powers of 1024).
 *
 * @example
 * ```ts
 * import { formatBytes } from "./table.ts";
 * formatBytes(26931); // "26.3 KB"
 * ```
 */
export function formatBytes(n: number): string {
  if (n < 1024) return `${n} B`;
  if (n < 1024 * 1024) return `${(n / 1024).toFixed(1)} KB`;
  return `${(n / 1024 / 1024).toFixed(1)} MB`;
}
