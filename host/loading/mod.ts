/**
 * Loading plugins: discovery of a plugins folder (manifests and bare
 * `*.wasm` files; Extism plugins by their `extism.json`), lazy loading and
 * hot reload ({@linkcode Loader}), the runtime chosen by a plugin's kind
 * ({@linkcode createRuntimeFactory}; `host/loading/` is the one folder of
 * `host/` that imports `runtimes/`, and this module re-exports the Extism
 * runtime's API for the rest of `host/`), and packages: ZIP
 * install, upgrade and uninstall with SHA-256 and Ed25519 signatures
 * ({@linkcode PackageInstaller}), read by a ZIP reader that refuses unsafe
 * archives before inflating anything ({@linkcode SafeZip}).
 *
 * ```ts ignore
 * import { createRuntimeFactory, Loader } from "./mod.ts";
 * import { MemoryGrantStore } from "../../permissions/mod.ts";
 * import { Manager } from "../manager.ts";
 * const manager = new Manager();
 * const load = createRuntimeFactory({
 *   grants: new MemoryGrantStore(),
 *   dataDir: "./data",
 * });
 * const loader = new Loader(manager, { dir: "./plugins", load });
 * console.log(await loader.loadAll());
 * ```
 *
 * @module
 */

export {
  type DiscoveryProblem,
  Loader,
  type LoaderOptions,
  type LoadFailure,
  type PluginFactory,
  PluginNameMismatchError,
  type PluginSource,
  type PluginSourceKind,
} from "./loader.ts";
export { readWasmManifest, type WasmManifestReader } from "./wasm_manifest.ts";
export {
  createRuntimeFactory,
  ExecutableNotTrustedError,
  type ExtismRuntimeOptions,
  type RuntimeFactoryOptions,
} from "./runtimes.ts";
export {
  EXTISM_MANIFEST_FILE,
  ExtismHashMismatchError,
  type ExtismHostLimits,
  type ExtismManifest,
  ExtismManifestError,
  type ExtismMapping,
  type ExtismPathMapping,
  type ExtismWasmSource,
  mapExtismManifest,
  parseExtismManifest,
  readExtismModule,
  withExtismPermissions,
} from "./extism_manifest.ts";
export {
  type ExtismCallContext,
  ExtismCallError,
  ExtismExitError,
  type ExtismHostFunction,
  type ExtismLogLevel,
  type ExtismPluginOptions,
  type ExtismValue,
  type ExtismValueType,
  type ExtismVarStore,
  isExtismModule,
  loadExtismPlugin,
} from "../../runtimes/extism/mod.ts";
export {
  type ManifestDifference,
  manifestDifferences,
  PluginManifestMismatchError,
} from "./manifest_match.ts";
export {
  DowngradeRefusedError,
  generateSigningKeys,
  type InstallOptions,
  type InstallResult,
  PACKAGE_RECORD,
  type PackageAuditEntry,
  type PackageAuditSink,
  PackageInstaller,
  type PackageInstallerOptions,
  type PackageRecord,
  PackageUninstallError,
  packFolder,
  type SignatureInfo,
  type SignatureStatus,
  SIGNER_PINS_FILE,
  SignerMismatchError,
  signPackage,
  verifySignature,
} from "./packages.ts";
export {
  PgSignerPinStore,
  type PgSignerPinStoreOptions,
  signerKeyId,
  type SignerPin,
  SignerPinFileError,
  type SignerPins,
  SignerPinStore,
} from "./signer_pins.ts";
export {
  type ChangePayload,
  CHANGES_CHANNEL,
  type PackagePut,
  type PackageRemoval,
  PackageStore,
  type PackageStoreOptions,
  type StoredPackage,
  type StoredPackageBytes,
} from "./package_store.ts";
export {
  PackageSync,
  type PackageSyncOptions,
  type SyncReport,
} from "./package_sync.ts";
export {
  PackageRejectedError,
  type PackageRejectedErrorOptions,
  SafeZip,
  type ZipEntry,
  type ZipLimits,
} from "./zip_reader.ts";
