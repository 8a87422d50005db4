/**
 * Host events on stdout that the log buffer does not carry: grant changes.
 * (Registration, replacement, unregistration, quarantine, job failures and
 * permission denials are log-buffer entries already, printed through
 * `LogOutput.entry`; start, plugin loading and package installs are the
 * host's progress lines.)
 *
 * @example
 * ```ts ignore
 * import { printGrantChanges } from "./host_events.ts";
 * const stop = printGrantChanges(grants, out);
 * ```
 *
 * @module
 */

import type { GrantStore } from "../../permissions/mod.ts";
import type { LogOutput } from "./log_output.ts";

/**
 * Prints a host event for every change of a plugin's grants made through
 * `grants` (by the operator, the grant policy at load, a signer change, an
 * uninstall): the permissions granted and revoked since the last change
 * seen, and the whole list. Returns the unsubscribe function.
 *
 * @example
 * ```ts ignore
 * const stop = printGrantChanges(grants, out);
 * stop();
 * ```
 */
export function printGrantChanges(
  grants: Pick<GrantStore, "get" | "subscribe">,
  out: Pick<LogOutput, "host">,
): () => void {
  const known = new Map<string, readonly string[]>();
  // Changes of one plugin are read and printed in order.
  let queue: Promise<void> = Promise.resolve();
  return grants.subscribe((plugin) => {
    queue = queue.then(async () => {
      const now = (await grants.get(plugin)) ?? [];
      const before = known.get(plugin);
      known.set(plugin, now);
      if (before === undefined) {
        out.host("info", `grants of plugin "${plugin}" set`, {
          plugin,
          event: "grants.changed",
          granted: now,
        });
        return;
      }
      const added = now.filter((p) => !before.includes(p));
      const removed = before.filter((p) => !now.includes(p));
      if (added.length === 0 && removed.length === 0) return;
      out.host("info", `grants of plugin "${plugin}" changed`, {
        plugin,
        event: "grants.changed",
        added,
        removed,
        granted: now,
      });
    }).catch((e) => {
      out.host("warn", `grants of plugin "${plugin}" could not be read`, {
        plugin,
        event: "grants.changed",
        error: e instanceof Error ? e.message : String(e),
      });
    });
  });
}
