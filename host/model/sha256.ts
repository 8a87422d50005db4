/**
 * The SHA-256 of bytes as lower-case hex: the one helper for package,
 * module, signer and bundle hashes (host, runtimes and CLI alike).
 *
 * @example
 * ```ts
 * import { sha256Hex } from "./sha256.ts";
 * console.log(await sha256Hex(new TextEncoder().encode("abc")));
 * // ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad
 * ```
 *
 * @module
 */

/** The SHA-256 of `bytes`, lower-case hex. */
export async function sha256Hex(bytes: Uint8Array): Promise<string> {
  const digest = await crypto.subtle.digest("SHA-256", bytes as BufferSource);
  return new Uint8Array(digest).toHex();
}
