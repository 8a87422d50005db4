/**
 * PostgreSQL's SCRAM-SHA-256 password verifier (RFC 5802 / RFC 7677), built
 * on the client so that `ALTER ROLE … PASSWORD` carries only the verifier:
 * the clear password never reaches the server, its statement log or
 * `pg_stat_activity`. A verifier lets the server check a login, not make
 * one (logging in needs the ClientKey, which it does not contain).
 *
 * @module
 */

const encoder = new TextEncoder();

function base64(bytes: Uint8Array): string {
  let text = "";
  for (const b of bytes) text += String.fromCharCode(b);
  return btoa(text);
}

async function hmac(key: Uint8Array, message: string): Promise<Uint8Array> {
  const k = await crypto.subtle.importKey(
    "raw",
    key as Uint8Array<ArrayBuffer>,
    { name: "HMAC", hash: "SHA-256" },
    false,
    ["sign"],
  );
  return new Uint8Array(
    await crypto.subtle.sign("HMAC", k, encoder.encode(message)),
  );
}

/** Options of {@linkcode scramSha256Verifier}. */
export interface ScramOptions {
  /** The salt. @default {16 random bytes} */
  salt?: Uint8Array;
  /** PBKDF2 iterations. @default {4096} (PostgreSQL's `scram_iterations` default) */
  iterations?: number;
}

/**
 * The verifier PostgreSQL stores for `password`:
 * `SCRAM-SHA-256$<iterations>:<salt>$<StoredKey>:<ServerKey>` (base64).
 * `password` is used as UTF-8 without SASLprep, which is the same for the
 * printable ASCII passwords the host generates.
 *
 * @example
 * ```ts
 * import { scramSha256Verifier } from "./pg_scram.ts";
 * const v = await scramSha256Verifier("secret", { salt: new Uint8Array(16) });
 * console.log(v.startsWith("SCRAM-SHA-256$4096:AAAAAAAAAAAAAAAAAAAAAA==$")); // true
 * ```
 */
export async function scramSha256Verifier(
  password: string,
  options: ScramOptions = {},
): Promise<string> {
  const salt = options.salt ?? crypto.getRandomValues(new Uint8Array(16));
  const iterations = options.iterations ?? 4096;
  const key = await crypto.subtle.importKey(
    "raw",
    encoder.encode(password),
    "PBKDF2",
    false,
    ["deriveBits"],
  );
  const salted = new Uint8Array(
    await crypto.subtle.deriveBits(
      {
        name: "PBKDF2",
        hash: "SHA-256",
        salt: salt as Uint8Array<ArrayBuffer>,
        iterations,
      },
      key,
      256,
    ),
  );
  const clientKey = await hmac(salted, "Client Key");
  const storedKey = new Uint8Array(
    await crypto.subtle.digest("SHA-256", clientKey as Uint8Array<ArrayBuffer>),
  );
  const serverKey = await hmac(salted, "Server Key");
  return `SCRAM-SHA-256$${iterations}:${base64(salt)}$${base64(storedKey)}:${
    base64(serverKey)
  }`;
}

/**
 * A random password for a plugin's role: 32 random bytes, base64url (43
 * printable ASCII characters, no quotes or backslashes).
 */
export function randomRolePassword(): string {
  const bytes = crypto.getRandomValues(new Uint8Array(32));
  return base64(bytes).replaceAll("+", "-").replaceAll("/", "_").replace(
    /=+$/,
    "",
  );
}
