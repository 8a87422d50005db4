/**
 * `gk keygen`, `gk sign`, `gk verify`: Ed25519 package signatures. Keys
 * live outside any repository by default (`$XDG_CONFIG_HOME/goatkit/keys/`
 * or `~/.config/goatkit/keys/`), the private key with mode 0600, and are
 * never overwritten.
 *
 * @module
 */

import { dirname } from "node:path";
import { errorText } from "../model/errors.ts";
import {
  generateSigningKeys,
  signPackage,
  verifySignature,
} from "../loading/packages.ts";
import { signerKeyId } from "../loading/signer_pins.ts";
import { need } from "./args.ts";
import type { CommandContext } from "./context.ts";
import { CliError } from "./errors.ts";
import { defaultKeyDir, displayPath, exists, resolveFrom } from "./paths.ts";

/** The default key pair's file name prefix inside the key folder. */
export const DEFAULT_KEY_NAME = "signing";

function defaultPrefix(ctx: CommandContext): string {
  return `${defaultKeyDir(ctx.io)}/${DEFAULT_KEY_NAME}`;
}

async function readText(path: string, what: string): Promise<string> {
  try {
    return (await Deno.readTextFile(path)).trim();
  } catch (e) {
    throw new CliError(
      `Cannot read ${what} "${path}": ${errorText(e).split("\n")[0]}`,
    );
  }
}

async function readBytes(path: string, what: string): Promise<Uint8Array> {
  try {
    return await Deno.readFile(path);
  } catch (e) {
    throw new CliError(
      `Cannot read ${what} "${path}": ${errorText(e).split("\n")[0]}`,
    );
  }
}

/** The base64 raw public key of a base64 PKCS#8 Ed25519 private key. */
export async function publicKeyOf(privateKey: string): Promise<string> {
  const key = await crypto.subtle.importKey(
    "pkcs8",
    Uint8Array.fromBase64(privateKey.replace(/\s+/g, "")) as BufferSource,
    "Ed25519",
    true,
    ["sign"],
  );
  const jwk = await crypto.subtle.exportKey("jwk", key);
  return Uint8Array.fromBase64(jwk.x!, { alphabet: "base64url" }).toBase64();
}

/** `gk keygen [-o prefix]`: writes `<prefix>.key` (0600) and `<prefix>.pub`. */
export async function keygenCommand(ctx: CommandContext): Promise<void> {
  const given = ctx.args.str("out");
  const prefix = given ? resolveFrom(ctx.io, given) : defaultPrefix(ctx);
  const priv = `${prefix}.key`;
  const pub = `${prefix}.pub`;
  for (const f of [priv, pub]) {
    if (await exists(f)) {
      throw new CliError(
        `Cannot write key pair: "${f}" exists already; keys are never overwritten (pass -o <prefix> for another pair)`,
      );
    }
  }
  await Deno.mkdir(dirname(prefix), { recursive: true, mode: 0o700 });
  const keys = await generateSigningKeys();
  try {
    await Deno.writeTextFile(priv, keys.privateKey + "\n", {
      mode: 0o600,
      createNew: true,
    });
    await Deno.chmod(priv, 0o600);
    await Deno.writeTextFile(pub, keys.publicKey + "\n", { createNew: true });
  } catch (e) {
    throw new CliError(
      `Cannot write key pair "${prefix}": ${errorText(e).split("\n")[0]}`,
    );
  }
  const id = await signerKeyId(keys.publicKey);
  ctx.io.out(`public key:  ${displayPath(ctx.io, pub)}`);
  ctx.io.out(
    `private key: ${displayPath(ctx.io, priv)} (mode 0600, keep it secret)`,
  );
  ctx.io.out(`fingerprint: ${id}`);
  ctx.io.out(keys.publicKey);
}

/** `gk sign <zip> [--key file] [-o sig]`: writes `<zip>.sig`. */
export async function signCommand(ctx: CommandContext): Promise<void> {
  const zip = resolveFrom(
    ctx.io,
    need(ctx.args.rest[0], "sign <zip> [--key <file>]"),
  );
  const keyFile = ctx.args.str("key")
    ? resolveFrom(ctx.io, ctx.args.str("key")!)
    : `${defaultPrefix(ctx)}.key`;
  const privateKey = await readText(keyFile, "private key");
  const bytes = await readBytes(zip, "package");
  let sig: string;
  let id: string;
  try {
    sig = await signPackage(bytes, privateKey);
    id = await signerKeyId(await publicKeyOf(privateKey));
  } catch (e) {
    throw new CliError(
      `Cannot sign "${zip}" with "${keyFile}": not an Ed25519 private key (${
        errorText(e).split("\n")[0]
      })`,
    );
  }
  const out = ctx.args.str("out")
    ? resolveFrom(ctx.io, ctx.args.str("out")!)
    : `${zip}.sig`;
  await Deno.writeTextFile(out, sig + "\n");
  ctx.io.out(`${displayPath(ctx.io, out)} (signed by ${id})`);
}

/**
 * `gk verify <zip> [--sig file] [--pub file|base64]`: checks the signature
 * and prints the signer's fingerprint.
 */
export async function verifyCommand(ctx: CommandContext): Promise<void> {
  const zip = resolveFrom(
    ctx.io,
    need(ctx.args.rest[0], "verify <zip> [--sig <file>] [--pub <file>]"),
  );
  const sigFile = ctx.args.str("sig")
    ? resolveFrom(ctx.io, ctx.args.str("sig")!)
    : `${zip}.sig`;
  const pubArg = ctx.args.str("pub");
  let publicKey: string;
  if (pubArg === undefined) {
    publicKey = await readText(`${defaultPrefix(ctx)}.pub`, "public key");
  } else if (await exists(resolveFrom(ctx.io, pubArg))) {
    publicKey = await readText(resolveFrom(ctx.io, pubArg), "public key");
  } else if (/^[A-Za-z0-9+/]{43}=?$/.test(pubArg.trim())) {
    publicKey = pubArg.trim();
  } else {
    throw new CliError(
      `Cannot read public key "${pubArg}": no such file, and not a base64 Ed25519 key`,
    );
  }
  const bytes = await readBytes(zip, "package");
  const sigText = await readText(sigFile, "signature");
  let signature: Uint8Array;
  try {
    signature = Uint8Array.fromBase64(sigText.replace(/\s+/g, ""));
  } catch {
    throw new CliError(`Cannot verify "${zip}": "${sigFile}" is not base64`);
  }
  const id = await signerKeyId(publicKey);
  if (!(await verifySignature(bytes, signature, publicKey))) {
    throw new CliError(
      `Cannot verify "${displayPath(ctx.io, zip)}": the signature in "${
        displayPath(ctx.io, sigFile)
      }" was not made by key ${id} for these bytes`,
    );
  }
  ctx.io.out(`good signature: ${displayPath(ctx.io, zip)} signed by ${id}`);
}
