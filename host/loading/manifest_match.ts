/**
 * One manifest per plugin: the `manifest.json` in a plugin's folder or
 * package (what the operator reviews, what `gk install` shows, what grants
 * are asked for) must say the same as what the plugin's code registers
 * (`gk_register` in WASM, `register()` / `GKRegister` over gRPC). The
 * Loader compares them for every runtime before anything is registered and
 * refuses a plugin whose two manifests drift with
 * {@linkcode PluginManifestMismatchError}, listing the differing fields.
 *
 * Compared: `name`, `version`, `permissions` (as a set), `routes` (method,
 * path, handler and middleware), `jobs` (id, handler, schedule) and
 * `widgets` (id, handler). Descriptions, labels and the like may differ.
 *
 * @module
 */

import type { GKRegistration } from "../model/manifest.ts";

/** One field that differs between `manifest.json` and the registration. */
export interface ManifestDifference {
  /** The field: `version`, `permissions`, `routes`, `jobs` or `widgets`. */
  field: string;
  /** What `manifest.json` says (normalised). */
  manifest: unknown;
  /** What the plugin registers (normalised). */
  registered: unknown;
}

/**
 * What a plugin registers differs from its `manifest.json` (beyond the name,
 * which `PluginNameMismatchError` reports): the plugin is refused.
 *
 * @example
 * ```ts
 * import { PluginManifestMismatchError } from "./manifest_match.ts";
 * const e = new PluginManifestMismatchError("hello", [
 *   { field: "version", manifest: "1.0.0", registered: "1.1.0" },
 * ]);
 * console.log(e.fields); // ["version"]
 * ```
 */
export class PluginManifestMismatchError extends Error {
  /** The plugin name. */
  readonly plugin: string;
  /** The differing fields, in the order compared. */
  readonly fields: string[];
  /** Each difference with both sides. */
  readonly differences: ManifestDifference[];

  /** Creates the error. */
  constructor(plugin: string, differences: ManifestDifference[]) {
    const fields = differences.map((d) => d.field);
    super(
      `Cannot load plugin "${plugin}": what its code registers differs from its manifest.json in ${
        fields.join(", ")
      }: ${
        differences.map((d) =>
          `${d.field}: manifest.json has ${
            show(d.manifest)
          }, the code registers ${show(d.registered)}`
        ).join("; ")
      } (make both say the same and build again)`,
    );
    this.name = "PluginManifestMismatchError";
    this.plugin = plugin;
    this.fields = fields;
    this.differences = differences;
  }
}

function show(v: unknown): string {
  const text = JSON.stringify(v) ?? String(v);
  return text.length > 300 ? `${text.slice(0, 297)}...` : text;
}

type Loose = Record<string, unknown>;

function list(v: unknown): Loose[] {
  return Array.isArray(v)
    ? v.filter((x): x is Loose => x !== null && typeof x === "object")
    : [];
}

function text(v: unknown): string {
  return typeof v === "string" ? v : v === undefined ? "" : String(v);
}

function sortedSet(items: string[]): string[] {
  return [...new Set(items)].sort();
}

/** The compared fields of a manifest, normalised for comparison. */
function comparable(m: GKRegistration): Record<string, unknown> {
  const loose = m as unknown as Loose;
  return {
    version: text(loose.version),
    permissions: sortedSet(
      (Array.isArray(loose.permissions) ? loose.permissions : []).map(text),
    ),
    routes: sortedSet(
      list(loose.routes).map((r) =>
        `${text(r.method).toUpperCase()} ${text(r.path)} -> ${text(r.handler)}${
          Array.isArray(r.middleware) && r.middleware.length > 0
            ? ` [${sortedSet(r.middleware.map(text)).join(",")}]`
            : ""
        }`
      ),
    ),
    jobs: sortedSet(
      list(loose.jobs).map((j) =>
        `${text(j.id)} -> ${text(j.handler)} @ ${text(j.schedule)}`
      ),
    ),
    widgets: sortedSet(
      list(loose.widgets).map((w) => `${text(w.id)} -> ${text(w.handler)}`),
    ),
  };
}

/**
 * The fields (other than the name) in which `registered` differs from
 * `manifest`; empty when they agree.
 *
 * @example
 * ```ts
 * import { manifestDifferences } from "./manifest_match.ts";
 * manifestDifferences(
 *   { name: "a", version: "1.0.0", permissions: ["log", "db:read"] },
 *   { name: "a", version: "1.0.0", permissions: ["db:read", "log"] },
 * ); // []
 * ```
 */
export function manifestDifferences(
  manifest: GKRegistration,
  registered: GKRegistration,
): ManifestDifference[] {
  const a = comparable(manifest);
  const b = comparable(registered);
  const out: ManifestDifference[] = [];
  for (const field of Object.keys(a)) {
    if (JSON.stringify(a[field]) !== JSON.stringify(b[field])) {
      out.push({ field, manifest: a[field], registered: b[field] });
    }
  }
  return out;
}

/**
 * Throws {@linkcode PluginManifestMismatchError} when `registered` differs
 * from `manifest` in a compared field.
 */
export function assertManifestMatches(
  manifest: GKRegistration,
  registered: GKRegistration,
): void {
  const differences = manifestDifferences(manifest, registered);
  if (differences.length > 0) {
    throw new PluginManifestMismatchError(manifest.name, differences);
  }
}
