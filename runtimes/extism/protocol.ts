/**
 * What the worker side and the main-thread side of the Extism runtime tell
 * each other: the worker's settings, the names of the Extism-only host calls
 * (reachable only from Extism plugins: the main-side hook of an Extism plugin
 * serves them before GoatKit's host calls; a GoatKit plugin asking for them
 * gets "unknown function"), and their byte encodings.
 *
 * Loaded in the worker too: imports nothing.
 *
 * @module
 */

/** The import module of Extism's kernel and host functions (marks an Extism plugin). */
export const EXTISM_ENV_MODULE = "extism:host/env";

/** Host call: read a var. Args: the key (UTF-8). Answer: flag byte (1 found) + value. */
export const HC_VAR_GET = "extism:var_get";
/** Host call: set or delete a var. Args: {@linkcode encodeVarSet}. Answer: empty. */
export const HC_VAR_SET = "extism:var_set";
/** Host call: a user host function. Args: JSON {@linkcode UserCallRequest}. Answer: {@linkcode encodeUserResult}. */
export const HC_USER = "extism:user";

/** Extism's log level numbers (`get_log_level`): trace 0 … error 4. */
export const LOG_LEVEL_NUMBERS = {
  trace: 0,
  debug: 1,
  info: 2,
  warn: 3,
  error: 4,
} as const;

/** A user host function as the worker sees it (no handler). */
export interface UserFunctionSignature {
  /** Import module. */
  namespace: string;
  /** Import name. */
  name: string;
  /** Parameter types. */
  params: string[];
  /** Result types (none or one). */
  results: string[];
}

/** The Extism part of the worker's init message. */
export interface ExtismWorkerData {
  /** Kernel memory cap in bytes. */
  maxKernelBytes: number;
  /** `get_log_level` answer and the lowest level kept (Extism numbers). */
  logLevel: number;
  /** User host functions, by index. */
  functions: UserFunctionSignature[];
}

/** The request of a user host function call. */
export interface UserCallRequest {
  /** Index in {@linkcode ExtismWorkerData.functions}. */
  i: number;
  /** The plugin function being called. */
  f: string;
  /** Arguments: numbers, decimal strings (i64) or base64 (blocks). */
  a: (number | string | null)[];
}

/** Encodes a `var_set` request: u32 key length, key, flag (1 = set), value. */
export function encodeVarSet(
  key: Uint8Array,
  value: Uint8Array | null,
): Uint8Array {
  const out = new Uint8Array(5 + key.length + (value?.length ?? 0));
  new DataView(out.buffer).setUint32(0, key.length, true);
  out.set(key, 4);
  out[4 + key.length] = value ? 1 : 0;
  if (value) out.set(value, 5 + key.length);
  return out;
}

/** Decodes {@linkcode encodeVarSet}. */
export function decodeVarSet(
  bytes: Uint8Array,
): { key: Uint8Array; value: Uint8Array | null } {
  if (bytes.length < 5) throw new RangeError("Cannot decode var_set request");
  const n = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength)
    .getUint32(0, true);
  if (5 + n > bytes.length) {
    throw new RangeError("Cannot decode var_set request");
  }
  const key = bytes.slice(4, 4 + n);
  const value = bytes[4 + n] === 1 ? bytes.slice(5 + n) : null;
  return { key, value };
}

/** Tags of a user function's answer. */
export const RESULT_NONE = 0;
/** A block's bytes follow. */
export const RESULT_BYTES = 1;
/** A number follows as decimal text. */
export const RESULT_NUMBER = 2;
/** A bigint follows as decimal text. */
export const RESULT_BIGINT = 3;

/** Encodes a user function's answer: a tag byte and its payload. */
export function encodeUserResult(tag: number, payload: Uint8Array): Uint8Array {
  const out = new Uint8Array(1 + payload.length);
  out[0] = tag;
  out.set(payload, 1);
  return out;
}
