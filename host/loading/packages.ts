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
 * @module
 */

import { dirname, join, resolve } from "node:path";
import { zipSync } from "fflate";
import { errorText } from "../model/errors.ts";
import { type Loader, PluginNameMismatchError } from "./loader.ts";
import type { Manager } from "../manager.ts";
import { checkManifest, type GKRegistration } from "../model/manifest.ts";
import { PackageRejectedError, SafeZip, type ZipLimits } from "./zip_reader.ts";

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
  #busy: Promise<unknown> = Promise.resolve();

  /** Creates the installer. */
  constructor(options: PackageInstallerOptions) {
    this.#o = options;
    this.#dir = resolve(options.dir);
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
    options: { signature?: string | null } = {},
  ): Promise<InstallResult> {
    const run = this.#busy.then(() => this.#install(bytes, options));
    this.#busy = run.catch(() => {});
    return run;
  }

  /** Unregisters a plugin and removes its files, then runs `onUninstall`. */
  uninstall(name: string): Promise<void> {
    const run = this.#busy.then(() => this.#uninstall(name));
    this.#busy = run.catch(() => {});
    return run;
  }

  /** The package record of an installed plugin, if it came from a package. */
  async record(name: string): Promise<PackageRecord | undefined> {
    const dir = this.#o.loader.source(name)?.dir;
    if (!dir) return undefined;
    try {
      return JSON.parse(await Deno.readTextFile(join(dir, PACKAGE_RECORD)));
    } catch {
      return undefined;
    }
  }

  async #install(
    bytes: Uint8Array,
    options: { signature?: string | null },
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
      return {
        ...record,
        upgraded: false,
        newPermissions: manifest.permissions ?? [],
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
    const old = new Set(oldManifest?.permissions ?? []);
    return {
      ...record,
      upgraded: true,
      ...(oldManifest ? { previousVersion: oldManifest.version } : {}),
      newPermissions: (manifest.permissions ?? []).filter((p) => !old.has(p)),
    };
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
