/**
 * The commands that manage a running host over its JSON API: `install`,
 * `upgrade` (with the permission diff and a downgrade guard), `uninstall`,
 * `list`, `enable`, `disable`, `call` and `grants`.
 *
 * @module
 */

import { basename } from "node:path";
import { errorText } from "../model/errors.ts";
import { checkManifest, type GKRegistration } from "../model/manifest.ts";
import { compareVersions } from "../model/version.ts";
import { SafeZip } from "../loading/zip_reader.ts";
import { need } from "./args.ts";
import type { CommandContext } from "./context.ts";
import { CliError } from "./errors.ts";
import { type HostClient, pluginPath } from "./host_client.ts";
import { displayPath, exists, resolveFrom } from "./paths.ts";
import { formatTable } from "./table.ts";

/** A plugin as `GET /api/v1/plugins[/<name>]` describes it (fields used here). */
export interface PluginInfoView {
  /** Name. */
  name: string;
  /** Version ("" when unknown). */
  version?: string;
  /** `wasm`, `grpc`, `native`. */
  runtime?: string;
  /** Whether it runs. */
  enabled?: boolean;
  /** Whether it is loaded. */
  loaded?: boolean;
  /** `enabled`, `disabled`, `quarantined`, `not-loaded`, `failed`, … */
  status?: string;
  /** Why it is in that status. */
  statusReason?: string;
  /** Older name of `statusReason`. */
  reason?: string;
  /** Signature status, when the host reports one. */
  signature?: unknown;
  /** Signature status, another spelling. */
  signatureStatus?: string;
  /** Permissions. */
  permissions?: {
    requested?: string[];
    granted?: string[] | null;
    pending?: string[];
  };
}

function statusOf(p: PluginInfoView): string {
  if (p.status) return p.status;
  if (p.loaded === false) return "not-loaded";
  return p.enabled ? "enabled" : "disabled";
}

/** The signature column of `gk list`, or `undefined` when the host gives none. */
function signatureOf(p: PluginInfoView): string | undefined {
  const s = p.signature ?? p.signatureStatus;
  if (s === undefined || s === null) return undefined;
  if (typeof s === "string") return s;
  if (typeof s === "object") {
    const o = s as Record<string, unknown>;
    const status = typeof o.status === "string" ? o.status : "signed";
    const id = o.keyId ?? o.signer ?? o.fingerprint;
    return typeof id === "string" && id ? `${status} (${id})` : status;
  }
  return String(s);
}

/** Reads the manifest inside a package (a ZIP), or `undefined` for a bare module. */
function packageManifest(
  bytes: Uint8Array,
  file: string,
): GKRegistration | undefined {
  if (!(bytes[0] === 0x50 && bytes[1] === 0x4b)) return undefined;
  try {
    const zip = SafeZip.open(bytes);
    if (!zip.has("manifest.json")) {
      throw new Error("no manifest.json at the top of the package");
    }
    return checkManifest(zip.read("manifest.json")).manifest;
  } catch (e) {
    throw new CliError(
      `Cannot read package "${file}": ${errorText(e).split("\n")[0]}`,
    );
  }
}

/** Added, removed and kept permissions between two manifests. */
export interface PermissionDiff {
  /** Requested by the new version only. */
  added: string[];
  /** Requested by the installed version only. */
  removed: string[];
  /** Requested by both. */
  kept: string[];
}

/**
 * Compares requested permissions.
 *
 * @example
 * ```ts
 * import { permissionDiff } from "./host_commands.ts";
 * permissionDiff(["log", "db:read"], ["log", "http:api.x.com"]);
 * // { added: ["http:api.x.com"], removed: ["db:read"], kept: ["log"] }
 * ```
 */
export function permissionDiff(
  installed: readonly string[],
  next: readonly string[],
): PermissionDiff {
  return {
    added: next.filter((p) => !installed.includes(p)).sort(),
    removed: installed.filter((p) => !next.includes(p)).sort(),
    kept: next.filter((p) => installed.includes(p)).sort(),
  };
}

/** Options of {@linkcode uploadPackage}. */
export interface UploadOptions {
  /** The package (or bare module) bytes. */
  bytes: Uint8Array;
  /** Its file name. */
  filename: string;
  /** The base64 signature, if signed. */
  signature?: string;
  /** Let a lower version replace the installed one. */
  allowDowngrade?: boolean;
  /** Let another signer replace the pinned one. */
  allowSignerChange?: boolean;
}

/** What the host answers to an upload (fields used here). */
export interface UploadResult {
  /** Plugin name. */
  name: string;
  /** Installed version. */
  version: string;
  /** Whether it replaced an installed version. */
  upgraded?: boolean;
  /** The version it replaced. */
  previousVersion?: string;
  /** The signer it replaced (override). */
  previousSigner?: string;
  /** Permissions that now wait for approval. */
  newPermissions?: string[];
}

/** Uploads a package to `POST /api/v1/plugins/upload`. */
export async function uploadPackage(
  host: HostClient,
  options: UploadOptions,
): Promise<UploadResult> {
  const form = new FormData();
  form.append(
    "plugin",
    new Blob([options.bytes as Uint8Array<ArrayBuffer>]),
    options.filename,
  );
  if (options.signature) form.append("signature", options.signature);
  if (options.allowSignerChange) form.append("allow_signer_change", "true");
  if (options.allowDowngrade) form.append("allow_downgrade", "true");
  return await host.request("POST", "/api/v1/plugins/upload", { body: form });
}

async function installedInfo(
  host: HostClient,
  name: string,
): Promise<PluginInfoView | undefined> {
  return await host.request("GET", pluginPath(name), { allowNotFound: true });
}

/**
 * `gk install <zip>` and `gk upgrade <zip>`: uploads a package; when a
 * version is installed, prints the permission diff first. `upgrade` needs
 * an installed version and refuses a downgrade without `--allow-downgrade`.
 */
export async function installCommand(
  ctx: CommandContext,
  mode: "install" | "upgrade",
): Promise<void> {
  const { io, args } = ctx;
  const file = resolveFrom(io, need(args.rest[0], `${mode} <zip>`));
  let bytes: Uint8Array;
  try {
    bytes = await Deno.readFile(file);
  } catch (e) {
    throw new CliError(
      `Cannot read package "${file}": ${errorText(e).split("\n")[0]}`,
    );
  }
  const manifest = packageManifest(bytes, file);
  const host = ctx.host();
  const allowDowngrade = args.flag("allow-downgrade") || args.flag("force");
  if (manifest) {
    const current = await installedInfo(host, manifest.name);
    if (!current && mode === "upgrade") {
      throw new CliError(
        `Cannot upgrade "${manifest.name}": it is not installed on ${host.url} (use gk install)`,
      );
    }
    if (current) {
      const from = current.version || "?";
      let down = false;
      try {
        down = !!current.version &&
          compareVersions(manifest.version, current.version) < 0;
      } catch { /* not semver: leave it to the host */ }
      if (down) {
        io.err(
          `warning: ${manifest.name} ${manifest.version} is older than the installed ${from} (a downgrade)`,
        );
        if (mode === "upgrade" && !allowDowngrade) {
          throw new CliError(
            `Cannot upgrade "${manifest.name}" from ${from} to ${manifest.version}: it is a downgrade (pass --allow-downgrade)`,
          );
        }
      }
      const diff = permissionDiff(
        current.permissions?.requested ?? [],
        manifest.permissions ?? [],
      );
      io.out(
        `${manifest.name} ${from} → ${manifest.version}: permissions ${
          diff.added.length || diff.removed.length ? "change" : "unchanged"
        }`,
      );
      const granted = current.permissions?.granted ?? [];
      for (const p of diff.added) {
        io.out(
          `  + ${p}${
            p === "log" || granted.includes(p) ? "" : "  (needs approval)"
          }`,
        );
      }
      for (const p of diff.removed) io.out(`  - ${p}`);
      for (const p of diff.kept) io.out(`    ${p}`);
    }
  }
  const sigArg = args.str("sig");
  const sigPath = sigArg
    ? resolveFrom(io, sigArg)
    : (await exists(`${file}.sig`) ? `${file}.sig` : undefined);
  let signature: string | undefined;
  if (sigPath) {
    try {
      signature = (await Deno.readTextFile(sigPath)).trim();
    } catch (e) {
      throw new CliError(
        `Cannot read signature "${sigPath}": ${errorText(e).split("\n")[0]}`,
      );
    }
  }
  io.err(`uploading ${displayPath(io, file)} to ${host.url} …`);
  const r = await uploadPackage(host, {
    bytes,
    filename: basename(file),
    ...(signature ? { signature } : {}),
    allowDowngrade,
    allowSignerChange: args.flag("allow-signer-change"),
  });
  const down = r.upgraded && typeof r.previousVersion === "string" &&
    safeCompare(r.version, r.previousVersion) < 0;
  io.out(
    `installed ${r.name} ${r.version}${
      r.upgraded
        ? ` (${down ? "downgraded" : "upgraded"} from ${r.previousVersion})`
        : ""
    }${sigPath ? "" : " (unsigned)"}`,
  );
  if (typeof r.previousSigner === "string") {
    io.out(
      `signer changed by override (was ${r.previousSigner}); recorded in the audit log`,
    );
  }
  // `log` needs no approval.
  const waiting = (r.newPermissions ?? []).filter((p) => p !== "log");
  if (waiting.length) {
    io.out(
      `requests permissions: ${
        waiting.join(", ")
      } (approve with gk grants ${r.name} --approve ${waiting.join(",")})`,
    );
  }
}

function safeCompare(a: string, b: string): number {
  try {
    return compareVersions(a, b);
  } catch {
    return 0;
  }
}

/** `gk uninstall <plugin> [--forget-signer]`. */
export async function uninstallCommand(ctx: CommandContext): Promise<void> {
  const name = need(ctx.args.rest[0], "uninstall <plugin>");
  const forget = ctx.args.flag("forget-signer");
  await ctx.host().request(
    "DELETE",
    pluginPath(name, forget ? "?forget_signer=true" : ""),
  );
  ctx.io.out(`${name} uninstalled${forget ? " (signer pin cleared)" : ""}`);
}

/** `gk list [--json]`: the plugins with status, reason and signature. */
export async function listCommand(ctx: CommandContext): Promise<void> {
  const r = await ctx.host().request("GET", "/api/v1/plugins");
  const plugins: PluginInfoView[] = r?.plugins ?? [];
  if (ctx.args.flag("json")) {
    ctx.io.out(JSON.stringify(plugins, null, 2));
    return;
  }
  if (plugins.length === 0) {
    ctx.io.out("no plugins");
    return;
  }
  const withSignature = plugins.some((p) => signatureOf(p) !== undefined);
  const headers = ["NAME", "VERSION", "RUNTIME", "STATUS", "REASON"];
  if (withSignature) headers.splice(4, 0, "SIGNATURE");
  const rows = plugins.map((p) => {
    const row = [
      p.name,
      p.version || "-",
      p.runtime ?? "-",
      statusOf(p),
      oneLine(p.statusReason ?? p.reason ?? ""),
    ];
    if (withSignature) row.splice(4, 0, signatureOf(p) ?? "-");
    return row;
  });
  for (const line of formatTable(headers, rows)) ctx.io.out(line);
}

function oneLine(s: string): string {
  return s.replace(/\s*\n\s*/g, " ");
}

/** `gk enable <plugin>` / `gk disable <plugin>`. */
export async function toggleCommand(
  ctx: CommandContext,
  action: "enable" | "disable",
): Promise<void> {
  const name = need(ctx.args.rest[0], `${action} <plugin>`);
  await ctx.host().request("POST", pluginPath(name, `/${action}`));
  ctx.io.out(`${name} ${action}d`);
}

/** The JSON input of `call` and `run`: positional, `--input` or `--input-file`. */
export async function readInput(
  ctx: CommandContext,
  positional: string | undefined,
): Promise<string | undefined> {
  const given = [positional, ctx.args.str("input"), ctx.args.str("input-file")]
    .filter((x) => x !== undefined);
  if (given.length > 1) {
    throw new CliError(
      "Cannot read the input: give one of [json], --input and --input-file",
    );
  }
  let text = positional ?? ctx.args.str("input");
  const file = ctx.args.str("input-file");
  if (file !== undefined) {
    const path = resolveFrom(ctx.io, file);
    try {
      text = await Deno.readTextFile(path);
    } catch (e) {
      throw new CliError(
        `Cannot read input file "${path}": ${errorText(e).split("\n")[0]}`,
      );
    }
  }
  if (text === undefined) return undefined;
  try {
    JSON.parse(text);
  } catch (e) {
    throw new CliError(`Cannot parse the input as JSON: ${errorText(e)}`);
  }
  return text;
}

/** `gk call <plugin> <fn> [json|--input json|--input-file f]`. */
export async function callCommand(ctx: CommandContext): Promise<void> {
  const usage = "call <plugin> <fn> [json | --input <json> | --input-file <f>]";
  const plugin = need(ctx.args.rest[0], usage);
  const fn = need(ctx.args.rest[1], usage);
  const input = await readInput(ctx, ctx.args.rest[2]);
  const r = await ctx.host().request(
    "POST",
    pluginPath(plugin, `/call/${encodeURIComponent(fn)}`),
    { body: input ?? "" },
  );
  ctx.io.out(typeof r === "string" ? r : JSON.stringify(r, null, 2));
}

/** The answer of the grants API. */
interface GrantsView {
  plugin?: string;
  requested?: string[];
  granted?: string[] | null;
  pending?: string[];
}

/**
 * The rows of `gk grants`: one per permission requested or approved.
 *
 * @example
 * ```ts
 * import { grantRows } from "./host_commands.ts";
 * grantRows({ requested: ["log", "db:read"], granted: ["log"], pending: ["db:read"] });
 * // [["db:read", "yes", "no", "yes"], ["log", "yes", "yes", "no"]]
 * ```
 */
export function grantRows(view: {
  requested?: string[];
  granted?: string[] | null;
  pending?: string[];
}): string[][] {
  const requested = view.requested ?? [];
  const granted = view.granted ?? [];
  const pending = view.pending ?? [];
  const all = [...new Set([...requested, ...granted, ...pending])].sort();
  const yes = (b: boolean) => b ? "yes" : "no";
  return all.map((p) => [
    p,
    yes(requested.includes(p)),
    view.granted === null || view.granted === undefined
      ? "-"
      : yes(granted.includes(p)),
    yes(pending.includes(p)),
  ]);
}

/** `gk grants <plugin> [--approve p,q | --revoke p,q] [--json]`. */
export async function grantsCommand(ctx: CommandContext): Promise<void> {
  const name = need(
    ctx.args.rest[0],
    "grants <plugin> [--approve p,q | --revoke p,q]",
  );
  const path = pluginPath(name, "/grants");
  const list = (s: string) => s.split(",").map((x) => x.trim()).filter(Boolean);
  const host = ctx.host();
  const approve = ctx.args.str("approve");
  const revoke = ctx.args.str("revoke");
  if (approve !== undefined && revoke !== undefined) {
    throw new CliError(
      "Cannot change grants: give --approve or --revoke, not both",
    );
  }
  let r: GrantsView;
  if (approve !== undefined) {
    r = await host.request("POST", path, {
      body: JSON.stringify({ permissions: list(approve) }),
    });
    ctx.io.err(`approved for ${name}: ${list(approve).join(", ")}`);
  } else if (revoke !== undefined) {
    r = await host.request("DELETE", path, {
      body: JSON.stringify({ permissions: list(revoke) }),
    });
    ctx.io.err(`revoked for ${name}: ${list(revoke).join(", ")}`);
  } else r = await host.request("GET", path);
  if (ctx.args.flag("json")) {
    ctx.io.out(JSON.stringify(r, null, 2));
    return;
  }
  const rows = grantRows(r);
  if (rows.length === 0) {
    ctx.io.out(`${name} requests no permissions`);
    return;
  }
  for (
    const line of formatTable(
      ["PERMISSION", "REQUESTED", "APPROVED", "PENDING"],
      rows,
    )
  ) ctx.io.out(line);
}
