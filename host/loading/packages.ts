/**
 * Plugin packages: `.zip` files holding `manifest.json`, the module or
 * entry, and optional `assets/` and `i18n/`. {@linkcode PackageInstaller}
 * validates a package completely before writing anything (see
 * {@linkcode SafeZip}), checks its Ed25519 signature against the trusted
 * keys, records its SHA-256, installs atomically (temporary folder, then
 * rename), keeps the old version of an upgrade until the new one has
 * registered, and uninstalls everything a plugin left.
 *
 * A package is a `.zip`, or a bare WebAssembly module (recognised by its
 * magic bytes, whatever the file name): the module is run once without
 * permissions to read what it registers, and installed as `plugin.wasm`
 * with that registration as its `manifest.json`.
 *
 * Signatures are detached: Ed25519 over the package's bytes, base64. Their
 * status is recorded with the package: `verified` (a trusted key verifies
 * it), `unverified` (signed, but by no key this host trusts; installed
 * unless the host requires signatures) or `unsigned`.
 *
 * Every refusal is a {@linkcode PackageRejectedError} whose `status` (400
 * bad package, 403 signature or trust, 409 conflict, 413 too big, 422
 * manifest), `code` and message (which names the fix) the API answers
 * with. Nothing is left in the plugins folder by a refused install: a new
 * plugin is started once from its temporary folder before it is put in
 * place. Uninstall removes only what a package installed (its folder holds
 * the package record, {@linkcode PACKAGE_RECORD}); other plugin folders are
 * refused with {@linkcode PackageUninstallError}.
 *
 * Native executables (an executable file named `plugin`) keep their mode,
 * and are refused with status 403 unless the SHA-256 of the binary is among
 * `trustedExecutables`.
 *
 * Two operator decisions are kept sticky:
 *
 * - **Signer pinning.** The first signed install of a plugin name pins the
 *   key that signed it ({@linkcode SignerPinStore}, a JSON file that
 *   survives restarts and uninstalls; `uninstall(name, { forgetSigner:
 *   true })` clears it). A later package of that name signed by another
 *   trusted key, or not signed at all, is refused with
 *   {@linkcode SignerMismatchError} unless the install passes
 *   `allowSignerChange` (then the pin moves to the new key; an unsigned
 *   install leaves it). Two trusted vendors can thus not take over each
 *   other's plugins, nor their approved grants.
 * - **No silent downgrades.** A package whose manifest version is lower
 *   (semantic versioning) than the installed one is refused with
 *   {@linkcode DowngradeRefusedError} unless the install passes
 *   `allowDowngrade`. Reinstalling the same version is allowed.
 *
 * Every refusal and every override is logged (`logs`) and audited (`audit`)
 * under the plugin's name.
 *
 * @module
 */

import { basename, dirname, join, resolve } from "node:path";
import { type Zippable, zipSync } from "fflate";
import { errorText } from "../model/errors.ts";
import type { PluginLogSink } from "../model/host_api.ts";
import { compareVersions } from "../model/version.ts";
import { type Loader, PluginNameMismatchError } from "./loader.ts";
import type { Manager } from "../manager.ts";
import { checkManifest, type GKRegistration } from "../model/manifest.ts";
import { PluginManifestMismatchError } from "./manifest_match.ts";
import { ExecutableNotTrustedError, readWasmRegistration } from "./runtimes.ts";
import { sha256Hex } from "../model/sha256.ts";
import { PackageRejectedError, SafeZip, type ZipLimits } from "./zip_reader.ts";
import {
  signerKeyId,
  type SignerPin,
  type SignerPins,
  SignerPinStore,
} from "./signer_pins.ts";

/** File (in the plugins directory) that keeps signer pins unless `pinsFile` says otherwise. */
export const SIGNER_PINS_FILE = ".goatkit-signers.json";

/**
 * A package of a plugin name whose signer is pinned is signed by another
 * key, or not signed. Install it anyway only with `allowSignerChange`.
 *
 * @example
 * ```ts ignore
 * try {
 *   await installer.install(bytes, { signature });
 * } catch (e) {
 *   if (e instanceof SignerMismatchError) console.log(e.pinnedKeyId, e.presentedKeyId);
 * }
 * ```
 */
export class SignerMismatchError extends PackageRejectedError {
  /** The plugin name. */
  readonly plugin: string;
  /** Fingerprint of the pinned key. */
  readonly pinnedKeyId: string;
  /** Fingerprint of the key that signed this package; `null` when unsigned. */
  readonly presentedKeyId: string | null;

  /** Creates the error. */
  constructor(
    plugin: string,
    pinnedKeyId: string,
    presentedKeyId: string | null,
  ) {
    super(
      `plugin "${plugin}" is pinned to signer ${pinnedKeyId} and this package is ${
        presentedKeyId ? `signed by ${presentedKeyId}` : "not signed"
      } (an operator may allow a signer change explicitly)`,
      {
        code: "signer_pinned",
        status: 409,
        fix:
          "install a package signed by the pinned key, or let an operator allow the signer change (gk install --allow-signer-change, or the upload form's checkbox)",
        details: { plugin, pinnedKeyId, presentedKeyId },
      },
    );
    this.name = "SignerMismatchError";
    this.plugin = plugin;
    this.pinnedKeyId = pinnedKeyId;
    this.presentedKeyId = presentedKeyId;
  }
}

/**
 * A package's version is lower than the installed version of its plugin.
 * Install it anyway only with `allowDowngrade`.
 */
export class DowngradeRefusedError extends PackageRejectedError {
  /** The plugin name. */
  readonly plugin: string;
  /** The installed version. */
  readonly installed: string;
  /** The package's version. */
  readonly offered: string;

  /** Creates the error. */
  constructor(plugin: string, installed: string, offered: string) {
    super(
      `plugin "${plugin}" ${offered} is older than the installed ${installed} (an operator may force a downgrade explicitly)`,
      {
        code: "downgrade_refused",
        status: 409,
        fix:
          "install a version at least as new, or let an operator force the downgrade (gk install --allow-downgrade, or the upload form's checkbox)",
        details: { plugin, installed, offered },
      },
    );
    this.name = "DowngradeRefusedError";
    this.plugin = plugin;
    this.installed = installed;
    this.offered = offered;
  }
}

/**
 * An uninstall is refused: the plugin is unknown (`status` 404), or its
 * folder was not installed from a package (409: source plugins, such as
 * folders kept in git, are never deleted by the host).
 *
 * @example
 * ```ts ignore
 * try {
 *   await installer.uninstall("wat-edge");
 * } catch (e) {
 *   if (e instanceof PackageUninstallError) console.log(e.status, e.code);
 * }
 * ```
 */
export class PackageUninstallError extends Error {
  /** The plugin name. */
  readonly plugin: string;
  /** `plugin_not_found` or `plugin_not_from_package`. */
  readonly code: string;
  /** HTTP status for the API: 404 or 409. */
  readonly status: number;
  /** Structured details. */
  readonly details: Record<string, unknown>;

  /** Creates the error. */
  constructor(
    plugin: string,
    why: "not-found" | "not-from-package",
    folder?: string,
  ) {
    super(
      why === "not-found"
        ? `Cannot uninstall plugin "${plugin}": no plugin of that name is installed (gk list shows the installed ones)`
        : `Cannot uninstall plugin "${plugin}": it was not installed from a package (its folder "${
          folder ?? "?"
        }" in the plugins folder has no ${PACKAGE_RECORD}), and the host removes only what a package installed; to remove it, delete or move that folder yourself, or disable the plugin`,
    );
    this.name = "PackageUninstallError";
    this.plugin = plugin;
    this.code = why === "not-found"
      ? "plugin_not_found"
      : "plugin_not_from_package";
    this.status = why === "not-found" ? 404 : 409;
    this.details = {
      plugin,
      ...(folder !== undefined ? { folder } : {}),
    };
  }
}

/** How a package's signature checked out. */
export type SignatureStatus = "verified" | "unverified" | "unsigned";

/** The signature status of an installed package, as the API shows it. */
export interface SignatureInfo {
  /**
   * `verified` (a trusted key verifies the signature), `unverified`
   * (signed, but by no key this host trusts) or `unsigned`.
   */
  status: SignatureStatus;
  /**
   * Fingerprint of the key (see `signerKeyId`): the trusted key of a
   * `verified` package, the key sent with an `unverified` one (when the
   * uploader named it and it verifies the signature).
   */
  fingerprint?: string;
}

/** One audit entry the installer writes (the permissions layer's `AuditLog` accepts it). */
export interface PackageAuditEntry {
  /** The plugin name. */
  plugin: string;
  /** What was at stake: `package:signer` or `package:downgrade`. */
  permission: string;
  /** What was attempted, in words. */
  attempted: string;
  /**
   * `denied` (refused), `overridden` (installed by operator override) or
   * `cleared` (an operator cleared the signer pin).
   */
  outcome: "denied" | "overridden" | "cleared";
}

/** Where the installer records refusals and overrides (an `AuditLog` fits). */
export interface PackageAuditSink {
  /** Records one entry. */
  record(entry: PackageAuditEntry): unknown;
}

/** Options of {@linkcode PackageInstaller.install}. */
export interface InstallOptions {
  /** Detached Ed25519 signature of the package bytes, base64. */
  signature?: string | null;
  /**
   * The public key (base64 raw Ed25519) the uploader says signed it. Only
   * used to name the signer of an `unverified` package: trust comes from
   * `trustedKeys` alone.
   */
  signer?: string | null;
  /**
   * Operator override: install although the plugin name is pinned to
   * another signer (or the package is unsigned). Logged and audited.
   * @default false
   */
  allowSignerChange?: boolean;
  /**
   * Operator override: install although the version is lower than the
   * installed one. Logged and audited.
   * @default false
   */
  allowDowngrade?: boolean;
  /**
   * The install follows the package store of a deployment (another host
   * took the upload): every check runs as for an upload, but
   * `onSignerChange` is not called again (the grants it revokes are shared,
   * and the host that took the upload revoked them already).
   * @default false
   */
  replica?: boolean;
}

/** Name of the file an installed plugin keeps its package record in. */
export const PACKAGE_RECORD = ".goatkit-package.json";

/** What the installer records about an installed package. */
export interface PackageRecord {
  /** Plugin name. */
  name: string;
  /** Version. */
  version: string;
  /** SHA-256 of the package bytes, hex. */
  sha256: string;
  /** The trusted key (base64) that signed it, if a trusted key did. */
  signedBy: string | null;
  /**
   * The signature status (absent in records written before it existed:
   * `verified` when `signedBy` is set, else `unsigned`).
   */
  signature?: SignatureInfo;
  /** When it was installed (RFC 3339). */
  installedAt: string;
}

/** What an install or upgrade did. */
export interface InstallResult extends PackageRecord {
  /** Whether it replaced an installed version. */
  upgraded: boolean;
  /** The version it replaced. */
  previousVersion?: string;
  /** Permissions the new version requests that the old one did not. */
  newPermissions: string[];
  /**
   * The key the plugin name was pinned to before, when `allowSignerChange`
   * let another signer (or an unsigned package) in.
   */
  previousSigner?: string;
}

/** Options of {@linkcode PackageInstaller}. */
export interface PackageInstallerOptions {
  /** The plugins directory. */
  dir: string;
  /** The Manager plugins register with. */
  manager: Manager;
  /** The Loader that loads installed folders (upgrades go through its reload). */
  loader: Loader;
  /** Public keys (base64 raw 32-byte Ed25519) whose signatures are trusted. */
  trustedKeys?: readonly string[];
  /**
   * Refuse unsigned packages, and signed ones no trusted key verifies.
   * @default false (true makes sense with trustedKeys)
   */
  requireSignature?: boolean;
  /**
   * SHA-256 digests (hex) of the native plugin executables the operator
   * trusts; a package carrying another executable is refused (403).
   * @default []
   */
  trustedExecutables?: readonly string[];
  /**
   * Reads what a bare WASM module registers (an uploaded `.wasm` file).
   * @default runs it once without permissions (`readWasmRegistration`)
   */
  readRegistration?: (wasm: Uint8Array) => Promise<unknown>;
  /** ZIP limits. */
  limits?: ZipLimits;
  /** Called after uninstall to drop grants, state, database role… */
  onUninstall?: (name: string) => Promise<void>;
  /**
   * The JSON file keeping signer pins. Put it where the host keeps its
   * state (`boot` uses `<dataDir>/package_signers.json`).
   * @default `<dir>/.goatkit-signers.json`
   */
  pinsFile?: string;
  /**
   * Where signer pins are kept, instead of `pinsFile` (`boot` gives a
   * `PgSignerPinStore` when the host runs on PostgreSQL, so that every host
   * of a deployment shares them).
   */
  pins?: SignerPins;
  /**
   * Called when an operator override lets a package of another signer (or
   * an unsigned one) replace a signed plugin, before the new code is put in
   * place and started. `boot` revokes the plugin's grants here: what the
   * operator approved for one vendor's code is not handed to another's (if
   * the new version then fails to start, the old one runs without them
   * until they are approved again).
   */
  onSignerChange?: (
    name: string,
    change: { from: string; to: string | null },
  ) => Promise<void>;
  /** Where refusals and overrides are logged (warn, under the plugin's name). */
  logs?: PluginLogSink;
  /** Where refusals and overrides are audited. */
  audit?: PackageAuditSink;
}

/**
 * Installs, upgrades and uninstalls plugin packages; see the module doc.
 *
 * @example
 * ```ts ignore
 * const installer = new PackageInstaller({ dir: "./plugins", manager, loader });
 * const result = await installer.install(await Deno.readFile("hello.zip"));
 * console.log(result.name, result.sha256);
 * ```
 */
export class PackageInstaller {
  #o: PackageInstallerOptions;
  #dir: string;
  #pins: SignerPins;
  #busy: Promise<unknown> = Promise.resolve();

  /** Creates the installer. */
  constructor(options: PackageInstallerOptions) {
    this.#o = options;
    this.#dir = resolve(options.dir);
    this.#pins = options.pins ?? new SignerPinStore(
      options.pinsFile ?? join(this.#dir, SIGNER_PINS_FILE),
    );
  }

  /** The signer pin of a plugin name, if one is set. */
  signerPin(name: string): Promise<SignerPin | undefined> {
    return this.#pins.get(name);
  }

  /**
   * Clears the signer pin of a plugin name (the next signed install pins
   * again); returns whether there was one. Logged and audited.
   */
  forgetSigner(name: string): Promise<boolean> {
    const run = this.#busy.then(() => this.#forgetSigner(name));
    this.#busy = run.catch(() => {});
    return run;
  }

  /**
   * Validates a package without writing anything: ZIP structure and limits
   * (or a bare WASM module and what it registers), manifest, entry file,
   * signature, a native executable's trust. Returns the manifest and the
   * files.
   */
  async inspect(
    bytes: Uint8Array,
    options: { signature?: string | null; signer?: string | null } = {},
  ): Promise<
    {
      manifest: GKRegistration;
      files: Map<string, Uint8Array>;
      modes: Map<string, number>;
      sha256: string;
      signedBy: string | null;
      signature: SignatureInfo;
    }
  > {
    const checked = await this.#checkSignature(
      bytes,
      options.signature ?? null,
      options.signer ?? null,
    );
    const files = new Map<string, Uint8Array>();
    const modes = new Map<string, number>();
    if (isWasmModule(bytes)) {
      files.set("manifest.json", await this.#registrationOf(bytes));
      files.set("plugin.wasm", bytes);
    } else {
      try {
        const zip = SafeZip.open(bytes, this.#o.limits);
        for (const e of zip.entries) {
          files.set(e.name, zip.read(e.name));
          modes.set(e.name, e.mode);
        }
      } catch (e) {
        if (!(e instanceof PackageRejectedError) || e.fix) throw e;
        throw new PackageRejectedError(e.reason, {
          code: e.code,
          status: e.status,
          fix: REPACK,
        });
      }
    }
    if (!files.has("manifest.json")) {
      throw new PackageRejectedError(
        "no manifest.json at the top of the package",
        { fix: `put manifest.json next to the module and ${REPACK}` },
      );
    }
    let manifest: GKRegistration;
    try {
      manifest = checkManifest(files.get("manifest.json")!).manifest;
    } catch (e) {
      throw new PackageRejectedError(`manifest.json: ${errorText(e)}`, {
        code: "manifest_invalid",
        status: 422,
        fix: "correct manifest.json as listed (gk pack checks it)",
      });
    }
    const kind = entryKind([...files.keys()]);
    if (!kind) {
      throw new PackageRejectedError(
        "no module or entry (plugin.wasm, *.wasm, main.ts, plugin.ts, main.js, an executable named plugin, or extism.json) at the top of the package",
        { fix: `build the plugin first, then ${REPACK}` },
      );
    }
    if (kind === "grpc-native") {
      await this.#checkExecutable(manifest.name, files.get("plugin")!);
    }
    const sha256 = await sha256Hex(bytes);
    return {
      manifest,
      files,
      modes,
      sha256,
      signedBy: checked.signedBy,
      signature: checked.signature,
    };
  }

  /**
   * Installs a package, or upgrades the installed version of its plugin.
   * Nothing is written unless the package passes every check; an upgrade
   * whose new version fails to register leaves the old one running.
   */
  install(
    bytes: Uint8Array,
    options: InstallOptions = {},
  ): Promise<InstallResult> {
    const run = this.#busy.then(() => this.#install(bytes, options));
    this.#busy = run.catch(() => {});
    return run;
  }

  /**
   * Unregisters a plugin and removes its files, then runs `onUninstall`.
   * Only a plugin installed from a package is removed: an unknown name or a
   * folder without a package record throws {@linkcode PackageUninstallError}
   * and nothing changes. Its signer pin stays (a reinstall from another
   * signer still needs the override) unless `forgetSigner` is set (which
   * also clears the pin of a plugin uninstalled earlier).
   */
  uninstall(
    name: string,
    options: { forgetSigner?: boolean } = {},
  ): Promise<void> {
    const run = this.#busy.then(async () => {
      try {
        await this.#uninstall(name);
      } catch (e) {
        // Forgetting the pin of a plugin uninstalled earlier is allowed.
        const pinOnly = options.forgetSigner &&
          e instanceof PackageUninstallError && e.status === 404 &&
          (await this.#pins.get(name)) !== undefined;
        if (!pinOnly) throw e;
      }
      if (options.forgetSigner) await this.#forgetSigner(name);
    });
    this.#busy = run.catch(() => {});
    return run;
  }

  /** The package record of an installed plugin, if it came from a package. */
  record(name: string): Promise<PackageRecord | undefined> {
    const dir = this.#o.loader.source(name)?.dir;
    return dir ? readRecord(dir) : Promise.resolve(undefined);
  }

  /**
   * The signature status of an installed plugin's package; `undefined` for
   * a plugin that was not installed from a package (or is unknown).
   */
  async signature(name: string): Promise<SignatureInfo | undefined> {
    const record = await this.record(name);
    if (!record) return undefined;
    if (record.signature) return record.signature;
    return record.signedBy
      ? { status: "verified", fingerprint: await signerKeyId(record.signedBy) }
      : { status: "unsigned" };
  }

  async #install(
    bytes: Uint8Array,
    options: InstallOptions,
  ): Promise<InstallResult> {
    const { manifest, files, modes, sha256, signedBy, signature } = await this
      .inspect(bytes, options);
    const name = manifest.name;
    await this.#o.loader.scan();
    const existing = this.#o.loader.source(name);
    if (existing && !(await readRecord(existing.dir))) {
      const folder = basename(existing.dir);
      throw new PackageRejectedError(
        `plugin "${name}" is already provided by the folder "${folder}" in the plugins folder, which was not installed from a package`,
        {
          code: "plugin_not_from_package",
          status: 409,
          fix:
            `remove or move that folder first (the host never overwrites it), or give the package another plugin name`,
          details: { plugin: name, folder },
        },
      );
    }
    const target = existing?.dir ?? join(this.#dir, name);
    const oldManifest = existing?.manifest;
    const admitted = await this.#admit(
      manifest,
      signedBy,
      existing?.dir,
      options,
    );
    if (admitted.result.previousSigner !== undefined && !options.replica) {
      await this.#o.onSignerChange?.(name, {
        from: admitted.result.previousSigner,
        to: signedBy,
      });
    }
    const record: PackageRecord = {
      name,
      version: manifest.version,
      sha256,
      signedBy,
      signature,
      installedAt: new Date().toISOString(),
    };

    await Deno.mkdir(this.#dir, { recursive: true });
    await this.#cleanDotFolders(".install-");
    const tmp = join(this.#dir, `.install-${crypto.randomUUID()}`);
    const native = entryKind([...files.keys()]) === "grpc-native";
    try {
      for (const [path, data] of files) {
        const out = join(tmp, path);
        if (!resolve(out).startsWith(tmp + "/")) {
          throw new PackageRejectedError(`entry "${path}" leaves the package`, {
            fix: REPACK,
          });
        }
        // Executables keep their mode (ZIP external attributes); the
        // native entry is executable whatever the archive says (it runs
        // only when its SHA-256 is trusted).
        const exec = ((modes.get(path) ?? 0) & 0o111) !== 0 ||
          (native && path === "plugin");
        await Deno.mkdir(dirname(out), { recursive: true });
        await Deno.writeFile(out, data, { mode: exec ? 0o755 : 0o644 });
        await Deno.chmod(out, exec ? 0o755 : 0o644);
      }
      await Deno.writeTextFile(
        join(tmp, PACKAGE_RECORD),
        JSON.stringify(record, null, 2),
      );
    } catch (e) {
      await Deno.remove(tmp, { recursive: true }).catch(() => {});
      throw e;
    }

    // Start a plugin that is not running once in the temporary folder (a
    // registered one is checked by the reload below) and refuse the
    // package before it is put in place when it does not start, registers
    // under another name (it would take that plugin's place and grants) or
    // registers something else than its manifest.json says.
    if (!this.#o.manager.manifest(name)) {
      try {
        await this.#o.loader.verifyFolder(tmp);
      } catch (e) {
        await Deno.remove(tmp, { recursive: true }).catch(() => {});
        throw this.#startRefusal(name, e, tmp);
      }
    }

    if (!existing) {
      await Deno.rename(tmp, target);
      await this.#o.loader.scan();
      await admitted.commit();
      return {
        ...record,
        upgraded: false,
        newPermissions: manifest.permissions ?? [],
        ...admitted.result,
      };
    }

    // Upgrade: move the old version aside, put the new one in place, and
    // swap the running plugin; on failure put everything back.
    const aside = join(this.#dir, `.previous-${name}-${crypto.randomUUID()}`);
    await Deno.rename(target, aside);
    await Deno.rename(tmp, target);
    try {
      if (this.#o.manager.manifest(name)) await this.#o.loader.reload(name);
      else await this.#o.loader.scan();
    } catch (e) {
      await Deno.rename(
        target,
        join(this.#dir, `.failed-${crypto.randomUUID()}`),
      )
        .then(() => {})
        .catch(() => {});
      await Deno.rename(aside, target);
      await this.#o.loader.scan();
      await this.#cleanDotFolders(".failed-");
      const refusal = this.#startRefusal(name, e, target);
      throw new PackageRejectedError(
        `new version of "${name}" failed to start, the old one keeps running: ${refusal.reason}`,
        {
          code: refusal.code,
          status: refusal.status,
          fix: refusal.fix,
          details: refusal.details,
        },
      );
    }
    await Deno.remove(aside, { recursive: true });
    await admitted.commit();
    const old = new Set(oldManifest?.permissions ?? []);
    return {
      ...record,
      upgraded: true,
      ...(oldManifest ? { previousVersion: oldManifest.version } : {}),
      newPermissions: (manifest.permissions ?? []).filter((p) => !old.has(p)),
      ...admitted.result,
    };
  }

  /**
   * Undoes a fresh install whose plugin then failed to load or register
   * (the host's install seam calls it when `ensureLoaded` fails: the
   * Manager's checks, such as a route or translation namespace taken by
   * another plugin, run only then), so that nothing of it stays on disk,
   * and rejects with the {@linkcode PackageRejectedError} to answer. Only a
   * plugin installed from a package is removed; its grants and state are
   * dropped through `onUninstall`.
   */
  rollback(name: string, cause: unknown): Promise<never> {
    const run = this.#busy.then(async () => {
      const dir = this.#o.loader.source(name)?.dir ?? join(this.#dir, name);
      try {
        await this.#uninstall(name);
      } catch (e) {
        if (!(e instanceof PackageUninstallError)) throw e;
      }
      this.#o.logs?.log(
        name,
        "warn",
        `package install undone: the plugin did not load: ${
          this.#redact(errorText(cause), dir, name)
        }`,
      );
      throw this.#startRefusal(name, cause, dir);
    });
    this.#busy = run.catch(() => {});
    return run;
  }

  /** The refusal of a plugin that did not start from `dir`. */
  #startRefusal(name: string, e: unknown, dir: string): PackageRejectedError {
    const why = this.#redact(errorText(e), dir, name);
    if (
      e instanceof PluginNameMismatchError ||
      e instanceof PluginManifestMismatchError
    ) {
      return new PackageRejectedError(why, {
        code: "manifest_mismatch",
        status: 422,
        fix:
          "make manifest.json and what the code registers say the same, build and pack again",
        details: {
          plugin: name,
          fields: e instanceof PluginManifestMismatchError
            ? e.fields
            : ["name"],
          ...(e instanceof PluginManifestMismatchError
            ? { differences: e.differences }
            : {}),
        },
      });
    }
    const kind = (e as { name?: unknown } | null)?.name;
    if (kind === "InvalidManifestError") {
      return new PackageRejectedError(why, {
        code: "manifest_invalid",
        status: 422,
        fix: "correct manifest.json as listed, build and pack again",
        details: { plugin: name },
      });
    }
    if (
      kind === "TranslationConflictError" ||
      kind === "ErrorCodeConflictError" ||
      kind === "TemplateOverrideConflictError" ||
      kind === "PluginAlreadyRegisteredError"
    ) {
      return new PackageRejectedError(why, {
        code: "plugin_conflict",
        status: 409,
        fix:
          "use names of its own (i18n namespace, error codes, template overrides) that no other plugin holds",
        details: { plugin: name },
      });
    }
    if (e instanceof ExecutableNotTrustedError) {
      return new PackageRejectedError(why, {
        code: "executable_untrusted",
        status: 403,
        details: { plugin: name, sha256: e.sha256 },
      });
    }
    return new PackageRejectedError(`plugin "${name}" does not start: ${why}`, {
      code: "plugin_start_failed",
      status: 400,
      fix:
        "build it for GoatKit (gk build) and try it locally (gk run) before installing",
      details: { plugin: name },
    });
  }

  /**
   * Replaces the server's folders in a message: a temporary or plugin
   * folder by the plugin's name, the plugins folder by `<plugins>`.
   */
  #redact(text: string, dir: string, name: string): string {
    return text.split(dir).join(name).split(this.#dir).join("<plugins>");
  }

  /** What a bare WASM module registers, as `manifest.json` bytes. */
  async #registrationOf(wasm: Uint8Array): Promise<Uint8Array> {
    let registration: unknown;
    try {
      registration = await (this.#o.readRegistration ?? readWasmRegistration)(
        wasm,
      );
    } catch (e) {
      throw new PackageRejectedError(
        `the WebAssembly module does not load or register: ${
          errorText(e).split(this.#dir).join("<plugins>")
        }`,
        {
          code: "module_invalid",
          fix:
            "build it for GoatKit: it must export gk_register, gk_call, gk_malloc and memory (gk pack checks it)",
        },
      );
    }
    return new TextEncoder().encode(JSON.stringify(registration, null, 2));
  }

  /** Refuses (403, logged and audited) a native executable not trusted by its SHA-256. */
  async #checkExecutable(name: string, binary: Uint8Array): Promise<void> {
    const sha256 = await sha256Hex(binary);
    const trusted = (this.#o.trustedExecutables ?? []).map((d) =>
      d.trim().toLowerCase()
    );
    if (trusted.includes(sha256)) return;
    this.#note(
      name,
      "package:executable",
      `install native executable with SHA-256 ${sha256}: not in trustedExecutables`,
      "denied",
    );
    throw new PackageRejectedError(
      `the package carries a native executable (plugin, SHA-256 ${sha256}) that this host does not trust`,
      {
        code: "executable_untrusted",
        status: 403,
        fix:
          `to trust it, add ${sha256} to GOATKIT_TRUSTED_EXECUTABLES (or server.trustedExecutables in goatkit.json), restart the host and install again`,
        details: { plugin: name, sha256 },
      },
    );
  }

  /**
   * Applies the signer pin and the downgrade rule to a package that passed
   * inspection. Throws {@linkcode SignerMismatchError} or
   * {@linkcode DowngradeRefusedError} (logged and audited as `denied`)
   * unless overridden; returns what to record once the install succeeded.
   */
  async #admit(
    manifest: GKRegistration,
    signedBy: string | null,
    existingDir: string | undefined,
    options: InstallOptions,
  ): Promise<
    { commit(): Promise<void>; result: { previousSigner?: string } }
  > {
    const name = manifest.name;
    const version = manifest.version;
    // The pin; a plugin installed signed before pins existed is pinned to
    // the signer its package record names.
    let pin = await this.#pins.get(name);
    if (!pin && existingDir) {
      const old = await readRecord(existingDir);
      if (old?.signedBy) {
        pin = {
          signer: old.signedBy,
          keyId: await signerKeyId(old.signedBy),
          pinnedAt: old.installedAt,
          pluginVersion: old.version,
        };
      }
    }
    const presentedKeyId = signedBy ? await signerKeyId(signedBy) : null;
    const overrides: { permission: string; attempted: string }[] = [];
    if (pin && presentedKeyId !== pin.keyId) {
      const attempted = `install ${name} ${version} ${
        presentedKeyId ? `signed by ${presentedKeyId}` : "unsigned"
      } over signer pin ${pin.keyId}`;
      if (!options.allowSignerChange) {
        this.#note(name, "package:signer", attempted, "denied");
        throw new SignerMismatchError(name, pin.keyId, presentedKeyId);
      }
      overrides.push({ permission: "package:signer", attempted });
    }
    const installed = existingDir
      ? this.#o.loader.source(name)?.manifest.version
      : undefined;
    if (installed !== undefined && compareVersions(version, installed) < 0) {
      const attempted = `install ${name} ${version} over ${installed}`;
      if (!options.allowDowngrade) {
        this.#note(name, "package:downgrade", attempted, "denied");
        throw new DowngradeRefusedError(name, installed, version);
      }
      overrides.push({ permission: "package:downgrade", attempted });
    }
    const changed = pin !== undefined && presentedKeyId !== pin.keyId;
    return {
      result: changed ? { previousSigner: pin!.signer } : {},
      commit: async () => {
        // Pin the first signer, and move the pin on an allowed change to
        // another key (an allowed unsigned install leaves the pin).
        if (signedBy && (!pin || changed || !(await this.#pins.get(name)))) {
          await this.#pins.set(name, {
            signer: signedBy,
            keyId: presentedKeyId!,
            pinnedAt: new Date().toISOString(),
            pluginVersion: version,
          });
        }
        for (const o of overrides) {
          this.#note(
            name,
            o.permission,
            `${o.attempted} (operator override)`,
            "overridden",
          );
        }
      },
    };
  }

  /** Logs and audits a refusal or an override. */
  #note(
    plugin: string,
    permission: string,
    attempted: string,
    outcome: PackageAuditEntry["outcome"],
  ): void {
    this.#o.logs?.log(
      plugin,
      "warn",
      outcome === "denied"
        ? `package refused: ${attempted}`
        : outcome === "cleared"
        ? `package signer pin cleared by operator: ${attempted}`
        : `package installed by operator override: ${attempted}`,
      { permission, outcome },
    );
    this.#o.audit?.record({ plugin, permission, attempted, outcome });
  }

  async #forgetSigner(name: string): Promise<boolean> {
    const pin = await this.#pins.get(name);
    if (!(await this.#pins.delete(name))) return false;
    this.#note(
      name,
      "package:signer",
      `forget signer pin ${pin?.keyId ?? "?"} of ${name}`,
      "cleared",
    );
    return true;
  }

  async #uninstall(name: string): Promise<void> {
    await this.#o.loader.scan();
    const source = this.#o.loader.source(name);
    if (!source) {
      throw new PackageUninstallError(
        name,
        this.#o.manager.manifest(name) ? "not-from-package" : "not-found",
        this.#o.manager.manifest(name) ? "(none)" : undefined,
      );
    }
    if (!(await readRecord(source.dir))) {
      throw new PackageUninstallError(
        name,
        "not-from-package",
        basename(source.dir),
      );
    }
    if (this.#o.manager.manifest(name)) await this.#o.manager.unregister(name);
    await Deno.remove(source.dir, { recursive: true });
    await this.#o.loader.scan();
    await this.#o.onUninstall?.(name);
  }

  /** Removes folders of the plugins folder that an interrupted install left. */
  async #cleanDotFolders(prefix: string): Promise<void> {
    for await (const e of Deno.readDir(this.#dir)) {
      if (e.isDirectory && e.name.startsWith(prefix)) {
        await Deno.remove(join(this.#dir, e.name), { recursive: true }).catch(
          () => {},
        );
      }
    }
  }

  /**
   * Checks a package's signature: `verified` by a trusted key,
   * `unverified` (signed, no trusted key verifies it: refused when the host
   * requires signatures) or `unsigned` (refused likewise).
   */
  async #checkSignature(
    bytes: Uint8Array,
    signature: string | null,
    signer: string | null,
  ): Promise<{ signedBy: string | null; signature: SignatureInfo }> {
    const keys = this.#o.trustedKeys ?? [];
    const trustHow =
      "add the signer's public key to GOATKIT_TRUSTED_KEYS (or server.trustedKeys in goatkit.json)";
    if (!signature) {
      if (this.#o.requireSignature) {
        throw new PackageRejectedError(
          "the package is not signed and this host requires signatures",
          {
            code: "signature_required",
            status: 403,
            fix:
              "sign it with a trusted key (gk sign) and upload the signature with it (field signature, or gk install, which sends the .sig file)",
          },
        );
      }
      return { signedBy: null, signature: { status: "unsigned" } };
    }
    let sig: Uint8Array;
    try {
      sig = decodeBase64(signature.trim());
    } catch {
      throw new PackageRejectedError("the signature is not base64", {
        code: "signature_malformed",
        fix: "send the content of the .sig file that gk sign wrote, unchanged",
      });
    }
    for (const k of keys) {
      if (await verifySignature(bytes, sig, k)) {
        return {
          signedBy: k,
          signature: { status: "verified", fingerprint: await signerKeyId(k) },
        };
      }
    }
    if (this.#o.requireSignature) {
      throw new PackageRejectedError(
        keys.length === 0
          ? "the package is signed but this host trusts no signing key and requires signatures"
          : "bad signature: no trusted key verifies it",
        {
          code: "signature_untrusted",
          status: 403,
          fix:
            `sign exactly these bytes with a trusted key, or ${trustHow} and restart the host`,
        },
      );
    }
    // Not required: installed as "unverified". A key sent along names the
    // signer when it verifies the signature (a key that does not is a
    // broken upload).
    if (signer) {
      if (!(await verifySignature(bytes, sig, signer.trim()))) {
        throw new PackageRejectedError(
          "the signature does not verify with the signer key sent with it",
          {
            code: "signature_invalid",
            status: 403,
            fix:
              "sign exactly the bytes you upload (gk sign, after gk pack) and send that key's signature",
          },
        );
      }
      return {
        signedBy: null,
        signature: {
          status: "unverified",
          fingerprint: await signerKeyId(signer),
        },
      };
    }
    return { signedBy: null, signature: { status: "unverified" } };
  }
}

/** The package record in an installed plugin's folder, if any. */
async function readRecord(dir: string): Promise<PackageRecord | undefined> {
  try {
    return JSON.parse(await Deno.readTextFile(join(dir, PACKAGE_RECORD)));
  } catch {
    return undefined;
  }
}

/**
 * Creates an Ed25519 key pair for signing packages: base64 raw public key,
 * base64 PKCS#8 private key.
 *
 * @example
 * ```ts
 * import { generateSigningKeys } from "./packages.ts";
 * const { publicKey } = await generateSigningKeys();
 * console.log(publicKey.length); // 44
 * ```
 */
export async function generateSigningKeys(): Promise<
  { publicKey: string; privateKey: string }
> {
  const pair = await crypto.subtle.generateKey("Ed25519", true, [
    "sign",
    "verify",
  ]) as CryptoKeyPair;
  const pub = new Uint8Array(
    await crypto.subtle.exportKey("raw", pair.publicKey),
  );
  const priv = new Uint8Array(
    await crypto.subtle.exportKey("pkcs8", pair.privateKey),
  );
  return { publicKey: pub.toBase64(), privateKey: priv.toBase64() };
}

/**
 * Signs package bytes with a base64 PKCS#8 Ed25519 private key; returns the
 * base64 signature.
 *
 * @example
 * ```ts
 * import { generateSigningKeys, signPackage } from "./packages.ts";
 * const { privateKey } = await generateSigningKeys();
 * const sig = await signPackage(new Uint8Array([1, 2, 3]), privateKey);
 * console.log(sig.length); // 88
 * ```
 */
export async function signPackage(
  bytes: Uint8Array,
  privateKey: string,
): Promise<string> {
  const key = await crypto.subtle.importKey(
    "pkcs8",
    decodeBase64(privateKey) as BufferSource,
    "Ed25519",
    false,
    ["sign"],
  );
  const sig = await crypto.subtle.sign("Ed25519", key, bytes as BufferSource);
  return new Uint8Array(sig).toBase64();
}

/** Verifies an Ed25519 signature with a base64 raw public key. */
export async function verifySignature(
  bytes: Uint8Array,
  signature: Uint8Array,
  publicKey: string,
): Promise<boolean> {
  try {
    const key = await crypto.subtle.importKey(
      "raw",
      decodeBase64(publicKey) as BufferSource,
      "Ed25519",
      false,
      ["verify"],
    );
    return await crypto.subtle.verify(
      "Ed25519",
      key,
      signature as BufferSource,
      bytes as BufferSource,
    );
  } catch {
    return false;
  }
}

/**
 * Packs a plugin folder into package bytes: every regular file except
 * hidden ones and `node_modules/`, with `manifest.json` validated first.
 *
 * @example
 * ```ts ignore
 * const bytes = await packFolder("fixtures/plugins/hello-c");
 * ```
 */
export async function packFolder(dir: string): Promise<Uint8Array> {
  checkManifest(await Deno.readFile(join(dir, "manifest.json")));
  const files: Zippable = {};
  const walk = async (rel: string): Promise<void> => {
    for await (const e of Deno.readDir(join(dir, rel))) {
      if (e.name.startsWith(".") || e.name === "node_modules") continue;
      const path = rel ? `${rel}/${e.name}` : e.name;
      if (e.isDirectory) await walk(path);
      else if (e.isFile) {
        const full = join(dir, path);
        files[path] = [
          await Deno.readFile(full),
          zipAttributes(
            (await Deno.stat(full)).mode,
          ),
        ];
      }
    }
  };
  await walk("");
  return zipSync(files, { level: 9 });
}

/**
 * ZIP attributes that keep a file's Unix mode (executables stay
 * executable): made on Unix, a regular file, `0o755` when any `x` bit is
 * set, else `0o644`.
 *
 * @example
 * ```ts
 * import { zipSync } from "fflate";
 * import { zipAttributes } from "./packages.ts";
 * const zip = zipSync({ plugin: [new Uint8Array([1]), zipAttributes(0o755)] });
 * console.log(zip.length > 0); // true
 * ```
 */
export function zipAttributes(
  mode: number | null,
): { os: number; attrs: number } {
  const perm = (mode ?? 0) & 0o111 ? 0o755 : 0o644;
  return { os: 3, attrs: ((0o100000 | perm) << 16) >>> 0 };
}

/** Whether `bytes` start with the WebAssembly magic (`\0asm`). */
export function isWasmModule(bytes: Uint8Array): boolean {
  return bytes.length >= 8 && bytes[0] === 0x00 && bytes[1] === 0x61 &&
    bytes[2] === 0x73 && bytes[3] === 0x6d;
}

const REPACK = "pack the plugin folder again with gk pack";

/**
 * How a package's top-level files run (as the Loader chooses): WASM,
 * a Deno entry, or a native executable named `plugin`.
 */
function entryKind(
  paths: readonly string[],
): "wasm" | "grpc-deno" | "grpc-native" | "extism" | undefined {
  const top = paths.filter((n) => !n.includes("/"));
  if (top.includes("extism.json")) return "extism";
  if (top.some((n) => n.toLowerCase().endsWith(".wasm"))) return "wasm";
  if (top.some((n) => ["main.ts", "plugin.ts", "main.js"].includes(n))) {
    return "grpc-deno";
  }
  return top.includes("plugin") ? "grpc-native" : undefined;
}

/**
 * Decodes base64 with the built-in `Uint8Array.fromBase64` (forgiving, like
 * `atob`: whitespace skipped, padding optional), failing the way `atob` does:
 * a `DOMException` named `InvalidCharacterError`.
 */
function decodeBase64(text: string): Uint8Array {
  try {
    return Uint8Array.fromBase64(text);
  } catch {
    throw new DOMException("Failed to decode base64", "InvalidCharacterError");
  }
}
