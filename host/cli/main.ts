/**
 * `gk`, the command line of GoatKit for Deno: scaffold, build, pack, sign
 * plugins locally, and manage a running host over its JSON API.
 *
 * @module
 */

import { parseArgs } from "node:util";
import { basename, join, resolve } from "node:path";
import { errorText } from "../model/errors.ts";
import {
  generateSigningKeys,
  packFolder,
  signPackage,
} from "../loading/packages.ts";
import { checkManifest, PLUGIN_NAME_REGEXP } from "../model/manifest.ts";
import { compareVersions } from "../model/version.ts";

/** A command failed; the message is one line with the cause. */
export class CliError extends Error {
  /** Creates the error. */
  constructor(message: string) {
    super(message);
    this.name = "CliError";
  }
}

/** Where the CLI writes; replaceable in tests. */
export interface CliIO {
  /** Normal output. */
  out(line: string): void;
  /** Progress and errors. */
  err(line: string): void;
  /** Environment lookup. */
  env(name: string): string | undefined;
}

/** Scaffolds are copies of the example plugins with the name replaced. */
const TEMPLATES: Record<string, { dir: string; name: string }> = {
  "wasm-c": { dir: "hello-c", name: "hello-c" },
  "wasm-as": { dir: "hello-as", name: "hello-as" },
  "grpc-ts": { dir: "hello-grpc-ts", name: "hello-grpc" },
};

const USAGE = `gk — GoatKit for Deno

Local:
  gk init <name> --runtime wasm-c|wasm-as|grpc-ts [--dir <parent>]
  gk build [dir]                    run the plugin's build.sh
  gk pack [dir] [-o out.zip]        validate and zip a plugin folder
  gk keygen [-o prefix]             Ed25519 key pair: prefix.pub, prefix.key
  gk sign <zip> --key <prefix.key>  writes <zip>.sig
Host (--url, default $GOATKIT_URL or http://127.0.0.1:8080; --token, default $GOATKIT_TOKEN):
  gk install <zip> [--sig <file>] [--allow-signer-change] [--allow-downgrade|--force]
                                    install or upgrade a package; a plugin
                                    name keeps its first signer, and the
                                    installed version only goes up, unless
                                    overridden (audited on the host)
  gk uninstall <plugin> [--forget-signer]
                                    remove a plugin (its signer pin stays
                                    unless --forget-signer)
  gk list                           plugins with status
  gk enable <plugin> | gk disable <plugin>
  gk logs [--plugin p] [--level l] [--limit n]
  gk call <plugin> <fn> [json]
  gk grants <plugin> [--approve p,q | --revoke p,q]`;

/**
 * Runs the CLI with `args`; returns the exit code (0 ok, 1 failure,
 * 2 usage).
 *
 * @example
 * ```ts ignore
 * Deno.exit(await runCli(Deno.args));
 * ```
 */
export async function runCli(
  args: string[],
  io: CliIO = {
    out: (l) => console.log(l),
    err: (l) => console.error(l),
    env: (n) => Deno.env.get(n),
  },
): Promise<number> {
  const { values, positionals } = parseArgs({
    args,
    allowPositionals: true,
    options: {
      runtime: { type: "string" },
      dir: { type: "string" },
      out: { type: "string", short: "o" },
      key: { type: "string" },
      sig: { type: "string" },
      url: { type: "string" },
      token: { type: "string" },
      plugin: { type: "string" },
      level: { type: "string" },
      limit: { type: "string" },
      approve: { type: "string" },
      revoke: { type: "string" },
      "allow-signer-change": { type: "boolean" },
      "allow-downgrade": { type: "boolean" },
      force: { type: "boolean" },
      "forget-signer": { type: "boolean" },
      help: { type: "boolean", short: "h" },
    },
    strict: false,
  });
  const [command, ...rest] = positionals;
  if (!command || values.help) {
    io.out(USAGE);
    return command || values.help ? 0 : 2;
  }
  const str = (k: string) => {
    const v = values[k as keyof typeof values];
    return typeof v === "string" ? v : undefined;
  };
  const flag = (k: string) => values[k as keyof typeof values] === true;
  const host = new HostClient(
    str("url") ?? io.env("GOATKIT_URL") ?? "http://127.0.0.1:8080",
    str("token") ?? io.env("GOATKIT_TOKEN"),
  );
  try {
    switch (command) {
      case "init":
        await init(
          need(rest[0], "init <name>"),
          str("runtime"),
          str("dir") ?? ".",
          io,
        );
        break;
      case "build":
        await build(rest[0] ?? ".", io);
        break;
      case "pack": {
        const dir = rest[0] ?? ".";
        io.err(`packing ${dir} …`);
        const bytes = await packFolder(dir);
        const name =
          checkManifest(await Deno.readFile(join(dir, "manifest.json")))
            .manifest;
        const out = str("out") ?? `${name.name}-${name.version}.zip`;
        await Deno.writeFile(out, bytes);
        io.out(`${out} (${bytes.length} bytes)`);
        break;
      }
      case "keygen": {
        const prefix = str("out") ?? "goatkit-signing";
        const keys = await generateSigningKeys();
        await Deno.writeTextFile(`${prefix}.pub`, keys.publicKey + "\n");
        await Deno.writeTextFile(`${prefix}.key`, keys.privateKey + "\n", {
          mode: 0o600,
        });
        io.out(`${prefix}.pub ${keys.publicKey}`);
        io.err(`private key in ${prefix}.key (keep it secret)`);
        break;
      }
      case "sign": {
        const zip = need(rest[0], "sign <zip> --key <file>");
        const key = (await Deno.readTextFile(need(str("key"), "--key <file>")))
          .trim();
        const sig = await signPackage(await Deno.readFile(zip), key);
        await Deno.writeTextFile(`${zip}.sig`, sig + "\n");
        io.out(`${zip}.sig`);
        break;
      }
      case "install": {
        const zip = need(rest[0], "install <zip>");
        const sigPath = str("sig") ??
          (await exists(`${zip}.sig`) ? `${zip}.sig` : undefined);
        io.err(`uploading ${zip} …`);
        const form = new FormData();
        form.append(
          "plugin",
          new Blob([await Deno.readFile(zip)]),
          basename(zip),
        );
        if (sigPath) {
          form.append("signature", (await Deno.readTextFile(sigPath)).trim());
        }
        if (flag("allow-signer-change")) {
          form.append("allow_signer_change", "true");
        }
        if (flag("allow-downgrade") || flag("force")) {
          form.append("allow_downgrade", "true");
        }
        const r = await host.request("POST", "/api/v1/plugins/upload", form);
        const down = r.upgraded && typeof r.previousVersion === "string" &&
          compareVersions(r.version, r.previousVersion) < 0;
        io.out(
          `installed ${r.name} ${r.version}${
            r.upgraded
              ? ` (${
                down ? "downgraded" : "upgraded"
              } from ${r.previousVersion})`
              : ""
          }`,
        );
        if (typeof r.previousSigner === "string") {
          io.out(
            `signer changed by override (was ${r.previousSigner}); recorded in the audit log`,
          );
        }
        if (Array.isArray(r.newPermissions) && r.newPermissions.length) {
          io.out(
            `requests permissions: ${
              r.newPermissions.join(", ")
            } (approve with gk grants ${r.name} --approve …)`,
          );
        }
        break;
      }
      case "uninstall": {
        const name = need(rest[0], "uninstall <plugin>");
        await host.request(
          "DELETE",
          `/api/v1/plugins/${encodeURIComponent(name)}${
            flag("forget-signer") ? "?forget_signer=true" : ""
          }`,
        );
        io.out(
          `${name} uninstalled${
            flag("forget-signer") ? " (signer pin cleared)" : ""
          }`,
        );
        break;
      }
      case "list": {
        const r = await host.request("GET", "/api/v1/plugins");
        for (const p of r.plugins ?? []) {
          const state = !p.loaded
            ? "not loaded"
            : p.enabled
            ? "enabled"
            : `disabled${p.reason ? ` (${p.reason})` : ""}`;
          io.out(
            `${p.name}\t${p.version || "-"}\t${p.runtime ?? "-"}\t${state}`,
          );
        }
        break;
      }
      case "enable":
      case "disable": {
        const name = need(rest[0], `${command} <plugin>`);
        await host.request(
          "POST",
          `/api/v1/plugins/${encodeURIComponent(name)}/${command}`,
        );
        io.out(`${name} ${command}d`);
        break;
      }
      case "logs": {
        const q = new URLSearchParams();
        for (const k of ["plugin", "level", "limit"]) {
          if (str(k)) q.set(k, str(k)!);
        }
        const r = await host.request("GET", `/api/v1/plugins/logs?${q}`);
        for (const e of r.logs ?? []) {
          io.out(
            `${e.timestamp} ${
              String(e.level).toUpperCase().padEnd(5)
            } [${e.plugin}] ${e.message}${
              e.fields ? ` ${JSON.stringify(e.fields)}` : ""
            }`,
          );
        }
        break;
      }
      case "call": {
        const plugin = need(rest[0], "call <plugin> <fn> [json]");
        const fn = need(rest[1], "call <plugin> <fn> [json]");
        if (rest[2] !== undefined) {
          try {
            JSON.parse(rest[2]);
          } catch (e) {
            throw new CliError(
              `Cannot parse the arguments as JSON: ${errorText(e)}`,
            );
          }
        }
        const r = await host.request(
          "POST",
          `/api/v1/plugins/${encodeURIComponent(plugin)}/call/${
            encodeURIComponent(fn)
          }`,
          rest[2] ?? "",
        );
        io.out(typeof r === "string" ? r : JSON.stringify(r, null, 2));
        break;
      }
      case "grants": {
        const name = need(rest[0], "grants <plugin>");
        const path = `/api/v1/plugins/${encodeURIComponent(name)}/grants`;
        const list = (s: string | undefined) =>
          s?.split(",").map((x) => x.trim()).filter(Boolean);
        let r;
        if (str("approve")) {
          r = await host.request(
            "POST",
            path,
            JSON.stringify({ permissions: list(str("approve")) }),
          );
        } else if (str("revoke")) {
          r = await host.request(
            "DELETE",
            path,
            JSON.stringify({ permissions: list(str("revoke")) }),
          );
        } else r = await host.request("GET", path);
        io.out(JSON.stringify(r, null, 2));
        break;
      }
      default:
        io.err(`unknown command "${command}"\n\n${USAGE}`);
        return 2;
    }
    return 0;
  } catch (e) {
    io.err(`gk ${command}: ${errorText(e).split("\n")[0]}`);
    return 1;
  }
}

function need(v: string | undefined, what: string): string {
  if (!v) {
    throw new CliError(`Cannot run command: missing argument (${what})`);
  }
  return v;
}

async function exists(path: string): Promise<boolean> {
  try {
    await Deno.stat(path);
    return true;
  } catch {
    return false;
  }
}

async function init(
  name: string,
  runtime: string | undefined,
  parent: string,
  io: CliIO,
): Promise<void> {
  if (!PLUGIN_NAME_REGEXP.test(name)) {
    throw new CliError(
      `Cannot create plugin "${name}": the name must match ${PLUGIN_NAME_REGEXP.source}`,
    );
  }
  const template = TEMPLATES[runtime ?? ""];
  if (!template) {
    throw new CliError(
      `Cannot create plugin "${name}": --runtime must be one of ${
        Object.keys(TEMPLATES).join(", ")
      }`,
    );
  }
  const src = new URL(
    `../../fixtures/plugins/${template.dir}/`,
    import.meta.url,
  );
  const dest = resolve(parent, name);
  if (await exists(dest)) {
    throw new CliError(
      `Cannot create plugin "${name}": "${dest}" exists already`,
    );
  }
  io.err(`creating ${dest} from the ${template.dir} example …`);
  const skip = new Set([
    "build",
    "node_modules",
    "plugin.wasm",
    "deno.lock",
    ".gitignore",
  ]);
  const copy = async (from: string, to: string): Promise<void> => {
    await Deno.mkdir(to, { recursive: true });
    for await (const e of Deno.readDir(from)) {
      if (skip.has(e.name)) continue;
      const f = join(from, e.name);
      const t = join(to, e.name);
      if (e.isDirectory) await copy(f, t);
      else if (e.isFile) {
        const text = await Deno.readTextFile(f);
        await Deno.writeTextFile(t, text.replaceAll(template.name, name));
        const mode = (await Deno.stat(f)).mode;
        if (mode) await Deno.chmod(t, mode & 0o777);
      }
    }
  };
  await copy(src.pathname, dest);
  io.out(`${dest}: edit it, then gk build ${dest} && gk pack ${dest}`);
}

async function build(dir: string, io: CliIO): Promise<void> {
  const script = join(dir, "build.sh");
  if (!(await exists(script))) {
    if (
      await exists(join(dir, "main.ts")) || await exists(join(dir, "plugin.ts"))
    ) {
      io.out("nothing to build: a TypeScript gRPC plugin runs from source");
      return;
    }
    throw new CliError(`Cannot build "${dir}": it has no build.sh`);
  }
  io.err(`building ${dir} …`);
  const started = performance.now();
  const r = await new Deno.Command("sh", {
    args: [script],
    stdout: "inherit",
    stderr: "inherit",
  }).output();
  if (r.code !== 0) {
    throw new CliError(`Cannot build "${dir}": build.sh exited with ${r.code}`);
  }
  io.out(`built in ${((performance.now() - started) / 1000).toFixed(1)} s`);
}

class HostClient {
  #url: string;
  #token: string | undefined;

  constructor(url: string, token: string | undefined) {
    this.#url = url.replace(/\/$/, "");
    this.#token = token;
  }

  // deno-lint-ignore no-explicit-any
  async request(method: string, path: string, body?: BodyInit): Promise<any> {
    if (!this.#token) {
      throw new CliError(
        "Cannot send request: no token (pass --token or set GOATKIT_TOKEN)",
      );
    }
    let res: Response;
    try {
      res = await fetch(this.#url + path, {
        method,
        headers: {
          authorization: `Bearer ${this.#token}`,
          ...(typeof body === "string"
            ? { "content-type": "application/json" }
            : {}),
        },
        ...(body === undefined ? {} : { body }),
      });
    } catch (e) {
      throw new CliError(`Cannot reach "${this.#url}": ${errorText(e)}`);
    }
    const text = await res.text();
    let data: unknown = text;
    try {
      data = text ? JSON.parse(text) : null;
    } catch { /* not JSON */ }
    if (!res.ok) {
      const msg = (data as { error?: unknown })?.error;
      throw new CliError(
        `Cannot ${method} "${path}": ${res.status} ${
          typeof msg === "string" ? msg : JSON.stringify(msg ?? text)
        }`,
      );
    }
    return data;
  }
}

if (import.meta.main) Deno.exit(await runCli(Deno.args));
