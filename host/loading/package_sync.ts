/**
 * Keeps a host's package-installed plugins equal to the package store of
 * its deployment (`package_store.ts`), so that a package installed through
 * one host serves on all of them:
 *
 * - {@linkcode PackageSync.publishInstall} / {@linkcode PackageSync.publishUninstall}
 *   write the row after the local install or uninstall succeeded (and
 *   notify the other hosts);
 * - {@linkcode PackageSync.syncPackages} (at start, on a notification, and
 *   periodically as a fallback) installs every row whose SHA-256 differs
 *   from the local package record, through the host's own install path: the
 *   same checks as an upload (the bytes' SHA-256 must equal the row's, then
 *   signature against the trusted keys, `requireSignature`, signer pins,
 *   the downgrade rule with the override the operator gave on the host that
 *   took the upload), atomic, then loaded. Bytes whose SHA-256 differs from
 *   the row are never installed: the host logs why and keeps what it has. A
 *   removed row (remembered in `goatkit.package_removals`) uninstalls the
 *   plugin here too, when it came from a package;
 * - {@linkcode PackageSync.handleChange} takes a `goatkit_changes`
 *   notification payload (`{scope, kind, name, host}`); the host's cluster
 *   change feed calls it.
 *
 * Local installs, uninstalls and syncs of one host run one at a time
 * ({@linkcode PackageSync.exclusive}), so a sync never sees a local install
 * whose row is not written yet.
 *
 * @module
 */

import { errorText } from "../model/errors.ts";
import type { PluginLogSink } from "../model/host_api.ts";
import type { InstallOptions, PackageRecord } from "./packages.ts";
import type {
  ChangePayload,
  PackageStore,
  StoredPackage,
} from "./package_store.ts";
import { sha256Hex } from "../model/sha256.ts";

/** What a sync did. */
export interface SyncReport {
  /** Plugins installed or upgraded from the store. */
  installed: string[];
  /** Plugins uninstalled because their row was removed. */
  removed: string[];
  /** Rows refused, with why (the local plugin was kept). */
  refused: { name: string; reason: string }[];
}

/** Options of {@linkcode PackageSync}. */
export interface PackageSyncOptions {
  /** The deployment's package store. */
  store: PackageStore;
  /** The loader's view of the plugins folder. */
  loader: {
    /** Re-discovers the plugins folder. */
    scan(): Promise<unknown>;
    /** Names discovered. */
    discovered(): string[];
  };
  /** The package record of an installed plugin (the installer's `record`). */
  record(name: string): Promise<PackageRecord | undefined>;
  /**
   * The host's local install path (installer, load, routes): the same one
   * an upload takes, without publishing.
   */
  install(bytes: Uint8Array, options: InstallOptions): Promise<unknown>;
  /** The host's local uninstall path, without publishing. */
  uninstall(name: string): Promise<void>;
  /** Where refusals and changes are logged (under the plugin's name). */
  logs?: PluginLogSink;
}

/**
 * Syncs a host's packages with its deployment's package store; see the
 * module doc.
 *
 * @example
 * ```ts ignore
 * const sync = new PackageSync({ store, loader, record, install, uninstall, logs });
 * const report = await sync.syncPackages();
 * console.log(report.installed, report.refused);
 * ```
 */
export class PackageSync {
  #o: PackageSyncOptions;
  #queue: Promise<unknown> = Promise.resolve();
  #pending: Promise<SyncReport> | undefined;
  #scope: Promise<string> | undefined;
  /** The last refusal logged per plugin name (logged once, not every sync). */
  #refused = new Map<string, string>();

  /** Creates the sync. */
  constructor(options: PackageSyncOptions) {
    this.#o = options;
  }

  /** Runs `fn` after every local install, uninstall and sync before it. */
  exclusive<T>(fn: () => Promise<T>): Promise<T> {
    const run = this.#queue.then(fn);
    this.#queue = run.catch(() => {});
    return run;
  }

  /**
   * Writes the row of a package this host installed (after the local
   * install and load succeeded) and notifies the other hosts.
   */
  async publishInstall(
    installed: { name: string; version: string; sha256: string },
    bytes: Uint8Array,
    options: InstallOptions & { signerFingerprint?: string | null },
  ): Promise<void> {
    await this.#o.store.put({
      name: installed.name,
      version: installed.version,
      sha256: installed.sha256,
      bytes,
      signature: options.signature ?? null,
      signerFingerprint: options.signerFingerprint ?? null,
      allowSignerChange: options.allowSignerChange === true,
      allowDowngrade: options.allowDowngrade === true,
    });
    this.#refused.delete(installed.name);
  }

  /** Deletes the row of a package this host uninstalled and notifies. */
  async publishUninstall(name: string, sha256?: string): Promise<void> {
    await this.#o.store.delete(name, sha256);
    this.#refused.delete(name);
  }

  /**
   * Takes a change notification: a `package` change of this deployment
   * (scope) made by another host starts a sync. Other kinds and scopes are
   * ignored. Resolves when that sync is done.
   */
  async handleChange(
    payload: ChangePayload | string,
  ): Promise<SyncReport | undefined> {
    let p: Partial<ChangePayload>;
    try {
      p = typeof payload === "string" ? JSON.parse(payload) : payload;
    } catch {
      return undefined;
    }
    if (p?.kind !== "package") return undefined;
    if (p.host === this.#o.store.hostId) return undefined;
    this.#scope ??= this.#o.store.scope().catch((e) => {
      this.#scope = undefined;
      throw e;
    });
    if (p.scope !== await this.#scope) return undefined;
    return await this.syncPackages();
  }

  /**
   * Brings the local packages in line with the store (see the module doc).
   * Calls made while one is waiting to run share it.
   */
  syncPackages(): Promise<SyncReport> {
    if (this.#pending) return this.#pending;
    const run = this.exclusive(() => {
      this.#pending = undefined;
      return this.#sync();
    });
    this.#pending = run;
    return run;
  }

  async #sync(): Promise<SyncReport> {
    const report: SyncReport = { installed: [], removed: [], refused: [] };
    const { store, loader } = this.#o;
    const rows = await store.list();
    await loader.scan();
    for (const row of rows) {
      const local = await this.#o.record(row.name);
      if (local?.sha256.toLowerCase() === row.sha256) {
        this.#refused.delete(row.name);
        continue;
      }
      if (!local && loader.discovered().includes(row.name)) {
        this.#refuse(
          report,
          row,
          "a plugin of that name is provided by a folder of this host's plugins folder that was not installed from a package (the host never overwrites it)",
        );
        continue;
      }
      const fetched = await store.fetch(row.name);
      if (!fetched) continue; // removed meanwhile: the next sync sees it
      const actual = await sha256Hex(fetched.bytes);
      if (actual !== row.sha256) {
        this.#refuse(
          report,
          row,
          `the SHA-256 of the stored bytes is ${actual}, the row says ${row.sha256} (the bytes were altered in the database)`,
        );
        continue;
      }
      try {
        await this.#o.install(fetched.bytes, {
          signature: fetched.signature,
          allowSignerChange: row.allowSignerChange,
          allowDowngrade: row.allowDowngrade,
          replica: true,
        });
        this.#refused.delete(row.name);
        report.installed.push(row.name);
        this.#o.logs?.log(
          row.name,
          "info",
          `package ${row.name} ${row.version} (SHA-256 ${row.sha256}) installed from the package store (uploaded through host ${row.installedByHost})`,
        );
      } catch (e) {
        this.#refuse(report, row, errorText(e));
      }
    }
    const named = new Set(rows.map((r) => r.name));
    const removals = new Map(
      (await store.removals()).map((r) => [r.name, r]),
    );
    for (const name of loader.discovered()) {
      if (named.has(name)) continue;
      const removal = removals.get(name);
      if (!removal) continue;
      const local = await this.#o.record(name);
      if (!local) continue; // not from a package: never removed
      // Removed after this host installed it, or the very package removed.
      if (
        removal.sha256 !== local.sha256.toLowerCase() &&
        Date.parse(removal.removedAt) <= Date.parse(local.installedAt)
      ) continue;
      try {
        await this.#o.uninstall(name);
        report.removed.push(name);
        this.#o.logs?.log(
          name,
          "info",
          `package ${name} ${local.version} uninstalled: it was removed from the package store`,
        );
      } catch (e) {
        this.#o.logs?.log(
          name,
          "warn",
          `package ${name} was removed from the package store but could not be uninstalled here: ${
            errorText(e)
          }`,
        );
      }
    }
    return report;
  }

  /** Records a refusal; logs it once per plugin and reason. */
  #refuse(report: SyncReport, row: StoredPackage, reason: string): void {
    report.refused.push({ name: row.name, reason });
    const key = `${row.sha256} ${reason}`;
    if (this.#refused.get(row.name) === key) return;
    this.#refused.set(row.name, key);
    this.#o.logs?.log(
      row.name,
      "warn",
      `package ${row.name} ${row.version} from the package store refused (uploaded through host ${row.installedByHost}): ${reason}; this host keeps what it has`,
      { sha256: row.sha256 },
    );
  }
}
