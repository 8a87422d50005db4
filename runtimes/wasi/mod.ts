/**
 * Our own deny-by-default WASI preview1 layer: {@link WasiPreview1} (the
 * `wasi_snapshot_preview1` imports), the confined file-system backend
 * {@link DenoWasiFs}. The command runner that uses it in an interruptible
 * worker is `runWasiCommand` in `runtimes/wasm/`.
 *
 * Code that runs inside a worker should import `preview1.ts` and `fs.ts`
 * directly: this entry also loads `node:fs` (for {@link nodeLutimes}).
 *
 * @module
 */

export {
  WasiDeadlineError,
  type WasiDirPreopen,
  WasiExitError,
  WasiPreview1,
  type WasiPreview1Options,
} from "./preview1.ts";
export {
  DenoWasiFs,
  type DenoWasiFsOptions,
  type DenoWasiFsPreopen,
  errnoFromError,
  type WasiDirEntry,
  type WasiFileStat,
  type WasiFs,
  WasiFsError,
  type WasiOpenOptions,
  type WasiOpenResult,
  type WasiPathRef,
  type WasiTimesTarget,
} from "./fs.ts";
export { nodeLutimes } from "./node_lutimes.ts";
export {
  CLOCKID,
  ERRNO,
  EVENTTYPE,
  FDFLAGS,
  FILETYPE,
  FSTFLAGS,
  LOOKUPFLAGS,
  OFLAGS,
  PREOPENTYPE,
  PREVIEW1_FUNCTIONS,
  RIGHTS,
  WHENCE,
} from "./constants.ts";
