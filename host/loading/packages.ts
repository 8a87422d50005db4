/**
 * Plugin packages: `.zip` files holding `manifest.json`, the module or
 * entry, and optional `assets/` and `i18n/`. {@linkcode PackageInstaller}
 * validates a package completely before writing anything (see
 * {@linkcode SafeZip}), checks its Ed25519 signature against the trusted
 * keys, records its SHA-256, installs atomically (temporary folder, then
 * rename), keeps the old version of an upgrade until the new one has
 * registered, and uninstalls everything a plugin left.
 *
 * Signatures are detached: Ed25519 over the package's bytes, base64.
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

import { dirname, join, resolve } from "node:path";
import { zipSync } from "fflate";
import { errorText } from "../model/errors.ts";
import type { PluginLogSink } from "../model/host_api.ts";
import { compareVersions } from "../model/version.ts";
import { type Loader, PluginNameMismatchError } from "./loader.ts";
import type { Manager } from "../manager.ts";
import { checkManifest, type GKRegistration } from "../model/manifest.ts";
import { PackageRejectedError, SafeZip, type ZipLimits } from "./zip_reader.ts";
import { signerKeyId, type SignerPin, SignerPinStore } from "./signer_pins.ts";

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
    );
    this.name = "DowngradeRefusedError";
    this.plugin = plugin;
    this.installed = installed;
    this.offered = offered;
  }
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
  /** The trusted key (base64) that signed it, if it was signed. */
  signedBy: string | null;
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
  /** Refuse unsigned packages. @default false (true makes sense with trustedKeys) */
  requireSignature?: boolean;
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
  #pins: SignerPinStore;
  #busy: Promise<unknown> = Promise.resolve();

  /** Creates the installer. */
  constructor(options: PackageInstallerOptions) {
    this.#o = options;
    this.#dir = resolve(options.dir);
    this.#pins = new SignerPinStore(
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
   * Validates a package without writing anything: ZIP structure and limits,
   * manifest, entry file, signature. Returns the manifest and the files.
   */
  async inspect(
    bytes: Uint8Array,
    options: { signature?: string | null } = {},
  ): Promise<
    {
      manifest: GKRegistration;
      files: Map<string, Uint8Array>;
      sha256: string;
      signedBy: string | null;
    }
  > {
    const signedBy = await this.#checkSignature(
      bytes,
      options.signature ?? null,
    );
    const zip = SafeZip.open(bytes, this.#o.limits);
    if (!zip.has("manifest.json")) {
      throw new PackageRejectedError(
        "no manifest.json at the top of the package",
      );
    }
    const files = new Map<string, Uint8Array>();
    for (const e of zip.entries) files.set(e.name, zip.read(e.name));
    let manifest: GKRegistration;
    try {
      manifest = checkManifest(files.get("manifest.json")!).manifest;
    } catch (e) {
      throw new PackageRejectedError(`manifest.json: ${errorText(e)}`);
    }
    const top = [...files.keys()].filter((n) => !n.includes("/"));
    const hasEntry = top.some((n) =>
      n.endsWith(".wasm") || ["main.ts", "plugin.ts", "main.js"].includes(n)
    );
    if (!hasEntry) {
      throw new PackageRejectedError(
        "no module or entry (plugin.wasm, *.wasm, main.ts, plugin.ts or main.js) at the top of the package",
      );
    }
    const digest = await crypto.subtle.digest("SHA-256", bytes as BufferSource);
    const sha256 = [...new Uint8Array(digest)].map((b) =>
      b.toString(16).padStart(2, "0")
    ).join("");
    return { manifest, files, sha256, signedBy };
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
   * Its signer pin stays (a reinstall from another signer still needs the
   * override) unless `forgetSigner` is set.
   */
  uninstall(
    name: string,
    options: { forgetSigner?: boolean } = {},
  ): Promise<void> {
    const run = this.#busy.then(async () => {
      await this.#uninstall(name);
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

  async #install(
    bytes: Uint8Array,
    options: InstallOptions,
  ): Promise<InstallResult> {
    const { manifest, files, sha256, signedBy } = await this.inspect(
      bytes,
      options,
    );
    const name = manifest.name;
    await this.#o.loader.scan();
    const existing = this.#o.loader.source(name);
    const target = existing?.dir ?? join(this.#dir, name);
    const oldManifest = existing?.manifest;
    const admitted = await this.#admit(
      manifest,
      signedBy,
      existing?.dir,
      options,
    );
    if (admitted.result.previousSigner !== undefined) {
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
      installedAt: new Date().toISOString(),
    };

    await Deno.mkdir(this.#dir, { recursive: true });
    const tmp = join(this.#dir, `.install-${crypto.randomUUID()}`);
    try {
      for (const [path, data] of files) {
        const out = join(tmp, path);
        if (!resolve(out).startsWith(tmp + "/")) {
          throw new PackageRejectedError(`entry "${path}" leaves the package`);
        }
        await Deno.mkdir(dirname(out), { recursive: true });
        await Deno.writeFile(out, data, { mode: 0o644 });
      }
      await Deno.writeTextFile(
        join(tmp, PACKAGE_RECORD),
        JSON.stringify(record, null, 2),
      );
    } catch (e) {
      await Deno.remove(tmp, { recursive: true }).catch(() => {});
      throw e;
    }

    // A module that registers under another name than its manifest would
    // take that plugin's place and grants: start a plugin that is not
    // running (a registered one is checked by the reload below) once in the
    // temporary folder and refuse the package before it is put in place.
    if (!this.#o.manager.manifest(name)) {
      try {
        await this.#o.loader.verifyFolder(tmp);
      } catch (e) {
        if (e instanceof PluginNameMismatchError) {
          await Deno.remove(tmp, { recursive: true }).catch(() => {});
          throw new PackageRejectedError(errorText(e));
        }
        // Other start-up failures are reported when the plugin is loaded.
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
      await this.#cleanDotFolders();
      throw new PackageRejectedError(
        `new version of "${name}" failed to start, the old one keeps running: ${
          errorText(e)
        }`,
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
    if (this.#o.manager.manifest(name)) await this.#o.manager.unregister(name);
    if (source) await Deno.remove(source.dir, { recursive: true });
    await this.#o.loader.scan();
    await this.#o.onUninstall?.(name);
  }

  async #cleanDotFolders(): Promise<void> {
    for await (const e of Deno.readDir(this.#dir)) {
      if (e.isDirectory && e.name.startsWith(".failed-")) {
        await Deno.remove(join(this.#dir, e.name), { recursive: true }).catch(
          () => {},
        );
      }
    }
  }

  async #checkSignature(
    bytes: Uint8Array,
    signature: string | null,
  ): Promise<string | null> {
    const keys = this.#o.trustedKeys ?? [];
    if (!signature) {
      if (this.#o.requireSignature) {
        throw new PackageRejectedError(
          "the package is not signed and this host requires signatures",
        );
      }
      return null;
    }
    if (keys.length === 0) {
      throw new PackageRejectedError(
        "the package is signed but this host trusts no signing key",
      );
    }
    let sig: Uint8Array;
    try {
      sig = decodeBase64(signature.trim());
    } catch {
      throw new PackageRejectedError("the signature is not base64");
    }
    for (const k of keys) {
      if (await verifySignature(bytes, sig, k)) return k;
    }
    throw new PackageRejectedError("bad signature: no trusted key verifies it");
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
  const files: Record<string, Uint8Array> = {};
  const walk = async (rel: string): Promise<void> => {
    for await (const e of Deno.readDir(join(dir, rel))) {
      if (e.name.startsWith(".") || e.name === "node_modules") continue;
      const path = rel ? `${rel}/${e.name}` : e.name;
      if (e.isDirectory) await walk(path);
      else if (e.isFile) files[path] = await Deno.readFile(join(dir, path));
    }
  };
  await walk("");
  return zipSync(files, { level: 9 });
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
