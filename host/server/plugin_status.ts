/**
 * One word and one sentence for each plugin, shown by the plugin list, its
 * detail page, `GET /api/v1/plugins[/<name>]` and `/readyz`:
 *
 * | `status` | when | `statusReason` |
 * |---|---|---|
 * | `running` | registered, enabled, every requested permission granted | absent (or the last failed reload, the old version still runs) |
 * | `pending-grants` | registered and enabled, some requested permissions wait for the operator | which ones |
 * | `disabled` | an admin disabled it | `disabled by admin` |
 * | `quarantined` | the host disabled it after repeated faults | the quarantine reason |
 * | `failed` | discovered, its last load failed | the load error |
 * | `not-loaded` | discovered, not loaded yet (lazy loading, or start-up still loading) | which of the two |
 *
 * Texts never show the server's absolute paths ({@linkcode withoutServerPaths}).
 *
 * @module
 */

import { basename, relative } from "node:path";

/** The states a plugin is listed with; see the module doc. */
export const PLUGIN_STATUSES = [
  "running",
  "pending-grants",
  "disabled",
  "quarantined",
  "failed",
  "not-loaded",
] as const;

/** One of {@linkcode PLUGIN_STATUSES}. */
export type PluginStatus = typeof PLUGIN_STATUSES[number];

/** What {@linkcode pluginStatus} decides from. */
export interface PluginStatusInput {
  /** Whether the Manager has it registered. */
  loaded: boolean;
  /** Whether calls are accepted. */
  enabled: boolean;
  /** The quarantine reason (registered and disabled by the host). */
  quarantineReason?: string | undefined;
  /** Requested permissions that wait for the operator. */
  pending: readonly string[];
  /** The last load (or reload) error, if its last attempt failed. */
  loadError?: string | undefined;
  /** Whether plugins load on first use. */
  lazy?: boolean;
  /** Folders whose absolute paths are shown relative (the plugins folder first). */
  roots?: readonly string[];
}

/** What {@linkcode pluginStatus} returns. */
export interface PluginStatusView {
  /** One word. */
  status: PluginStatus;
  /** Why, for everything but a plain `running`. */
  statusReason?: string;
}

/**
 * The status and reason of a plugin; see the module doc.
 *
 * @example
 * ```ts
 * import { pluginStatus } from "./plugin_status.ts";
 * pluginStatus({ loaded: true, enabled: true, pending: ["db:read"] });
 * // { status: "pending-grants", statusReason: "waiting for the operator to approve: db:read" }
 * ```
 */
export function pluginStatus(input: PluginStatusInput): PluginStatusView {
  const clean = (t: string) => withoutServerPaths(t, input.roots ?? []);
  if (!input.loaded) {
    if (input.loadError !== undefined) {
      return { status: "failed", statusReason: clean(input.loadError) };
    }
    return {
      status: "not-loaded",
      statusReason: input.lazy
        ? "not loaded yet: lazy loading loads it on first use"
        : "not loaded yet",
    };
  }
  if (!input.enabled) {
    return input.quarantineReason !== undefined
      ? {
        status: "quarantined",
        statusReason: clean(input.quarantineReason),
      }
      : { status: "disabled", statusReason: "disabled by admin" };
  }
  if (input.pending.length > 0) {
    return {
      status: "pending-grants",
      statusReason: `waiting for the operator to approve: ${
        input.pending.join(", ")
      }`,
    };
  }
  return input.loadError !== undefined
    ? {
      status: "running",
      statusReason: `the previous version runs: ${clean(input.loadError)}`,
    }
    : { status: "running" };
}

/** An absolute path (or `file://` URL) not preceded by a word, `:`, `/` or `.`. */
const ABSOLUTE_PATH_REGEXP =
  /(?<![\w:/.\\-])(?:file:\/\/)?(\/[^\s"'`,;:()<>[\]{}]+)/g;

/**
 * `text` with every absolute path replaced: one inside `roots` by its path
 * relative to that root (prefixed with the root's own name, such as
 * `plugins/hello/plugin.wasm`), any other by its last part. Error texts of
 * the runtimes name the files they read; admins and API clients need to
 * know which plugin file, not where the server keeps it.
 *
 * @example
 * ```ts
 * import { withoutServerPaths } from "./plugin_status.ts";
 * withoutServerPaths(
 *   'cannot read "/srv/gk/data/plugins/hello/plugin.wasm": /usr/lib/x.so',
 *   ["/srv/gk/data/plugins"],
 * ); // 'cannot read "plugins/hello/plugin.wasm": x.so'
 * ```
 */
export function withoutServerPaths(
  text: string,
  roots: readonly string[] = [],
): string {
  return text.replace(ABSOLUTE_PATH_REGEXP, (_m, path: string) => {
    for (const root of roots) {
      const r = relative(root, path);
      if (r === "") return basename(root);
      if (!r.startsWith("..") && !r.startsWith("/")) {
        return `${basename(root)}/${r}`;
      }
    }
    return basename(path) || path;
  });
}
