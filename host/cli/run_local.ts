/**
 * `gk run <plugin.wasm> <fn> [--input <json> | --input-file <f>]
 * [--config k=v]… [--timeout ms] [--abi gk|extism]`: loads a WASM plugin
 * locally, without a
 * host or a database, calls one function and prints its output (like
 * `extism call`). The plugin runs in the real WASM runtime (its own worker,
 * instrumented, with WASI); its host calls are answered by the in-memory
 * test host ({@linkcode MemoryHostAPI}: config from `--config`, empty
 * database answers, log lines printed on stderr). A failing call, or an
 * answer `{"error": …}` (GoatFlow's convention), exits with code 1.
 *
 * An Extism module (`--abi extism`, or without `--abi` any module importing
 * from `extism:host/env`) runs in the same runtime through the Extism ABI:
 * its input is the `--input` text (or the `--input-file` bytes) as given,
 * not JSON; its output is printed as it is. An `extism.json` (and
 * `manifest.json`) next to the module are used when present: permissions
 * they request are granted, config defaults apply (`--config` wins).
 *
 * @module
 */

import { basename, dirname, join } from "node:path";
import { errorText } from "../model/errors.ts";
import type { LogLevel } from "../model/host_api.ts";
import { checkManifest, type GKRegistration } from "../model/manifest.ts";
import { type CallContext, createCallContext } from "../model/plugin.ts";
import { createRuntimeFactory } from "../loading/runtimes.ts";
import type { PluginSource } from "../loading/loader.ts";
import { MemoryHostAPI } from "../testing/memory_host_api.ts";
import { MemoryGrantStore } from "../../permissions/grants.ts";
import { need } from "./args.ts";
import type { CommandContext } from "./context.ts";
import { CliError, CliUsageError } from "./errors.ts";
import { readInput } from "./host_commands.ts";
import type { CliIO } from "./io.ts";
import { resolveFrom } from "./paths.ts";
import {
  checkExtismModule,
  checkWasmModule,
  isExtismWasm,
} from "./wasm_check.ts";
import {
  EXTISM_MANIFEST_FILE,
  mapExtismManifest,
  parseExtismManifest,
  withExtismPermissions,
} from "../loading/extism_manifest.ts";

/** A memory host that also prints the plugin's log lines. */
class PrintingHost extends MemoryHostAPI {
  #io: CliIO;

  constructor(io: CliIO, config: Record<string, string>) {
    super({ config });
    this.#io = io;
  }

  override log(
    ctx: CallContext,
    level: LogLevel,
    message: string,
    fields?: Record<string, unknown>,
  ): void {
    super.log(ctx, level, message, fields);
    const { plugin: _plugin, ...rest } = fields ?? {};
    this.#io.err(
      `[${level}] ${message}${
        Object.keys(rest).length ? ` ${JSON.stringify(rest)}` : ""
      }`,
    );
  }
}

/** Parses `--config k=v` values. */
export function parseConfig(values: readonly string[]): Record<string, string> {
  const config: Record<string, string> = {};
  for (const v of values) {
    const i = v.indexOf("=");
    if (i <= 0) {
      throw new CliUsageError(
        `Cannot read --config "${v}": expected key=value`,
      );
    }
    config[v.slice(0, i)] = v.slice(i + 1);
  }
  return config;
}

async function siblingManifest(
  wasm: string,
): Promise<GKRegistration | undefined> {
  try {
    const text = await Deno.readTextFile(join(dirname(wasm), "manifest.json"));
    return checkManifest(text).manifest;
  } catch {
    return undefined;
  }
}

/** The error text of a `{"error": …}` answer, or `undefined`. */
function answerError(text: string): string | undefined {
  let v: unknown;
  try {
    v = JSON.parse(text);
  } catch {
    return undefined;
  }
  if (!v || typeof v !== "object" || Array.isArray(v) || !("error" in v)) {
    return undefined;
  }
  const e = (v as { error: unknown }).error;
  if (e === null || e === undefined || e === false || e === "") {
    return undefined;
  }
  if (typeof e === "string") return e;
  const m = (e as { message?: unknown }).message;
  return typeof m === "string" ? m : JSON.stringify(e);
}

/** `gk run`. */
export async function runCommand(ctx: CommandContext): Promise<void> {
  const usage =
    "run <plugin.wasm> <fn> [--input <json> | --input-file <f>] [--config k=v]";
  const wasmArg = need(ctx.args.rest[0], usage);
  const fn = need(ctx.args.rest[1], usage);
  if (ctx.args.rest.length > 2) {
    throw new CliUsageError(
      `Cannot read the command line: unexpected "${
        ctx.args.rest[2]
      }" (pass the input with --input)`,
    );
  }
  const path = resolveFrom(ctx.io, wasmArg);
  const abi = ctx.args.str("abi");
  if (abi !== undefined && abi !== "gk" && abi !== "extism") {
    throw new CliUsageError(
      `Cannot read --abi "${abi}": expected gk or extism`,
    );
  }
  const config = parseConfig(ctx.args.all("config"));
  const timeoutMs = Math.max(1, ctx.args.num("timeout", 30_000));
  let bytes: Uint8Array;
  try {
    bytes = await Deno.readFile(path);
  } catch (e) {
    throw new CliError(
      `Cannot read "${path}": ${errorText(e).split("\n")[0]}`,
    );
  }
  if (abi === "extism" || (abi === undefined && isExtismWasm(bytes))) {
    checkExtismModule(bytes, path);
    return await runExtism(ctx, path, fn, config, timeoutMs);
  }
  const input = await readInput(ctx, undefined);
  checkWasmModule(bytes, path);
  const manifest = await localManifest(path);
  const dataDir = await Deno.makeTempDir({ prefix: "gk_run_" });
  const where = `Cannot run function "${fn}" of "${wasmArg}"`;
  try {
    const out = await callLocally(ctx, {
      where,
      source: {
        name: manifest.name,
        dir: dirname(path),
        kind: "wasm",
        entry: path,
        manifest,
      },
      dataDir,
      config,
      timeoutMs,
      fn,
      input: input === undefined ? null : new TextEncoder().encode(input),
    });
    const text = out && out.length ? new TextDecoder().decode(out) : "null";
    const failed = answerError(text);
    if (failed !== undefined) {
      throw new CliError(`${where}: the plugin answered an error: ${failed}`);
    }
    ctx.io.out(text);
  } finally {
    await Deno.remove(dataDir, { recursive: true }).catch(() => {});
  }
}

/**
 * The manifest `gk run` gives a module: its folder's `manifest.json`, else
 * a minimal one named after the file.
 */
async function localManifest(path: string): Promise<GKRegistration> {
  const fallbackName = basename(path).replace(/\.wasm$/i, "").toLowerCase()
    .replace(/[^a-z0-9-]+/g, "-").replace(/^[^a-z]+/, "") || "plugin";
  return await siblingManifest(path) ??
    { name: fallbackName.padEnd(2, "x"), version: "0.0.0" };
}

/**
 * Loads `source` as the host would (its requested permissions all granted,
 * `config` as its config), calls `fn` once with `input`, and shuts it down;
 * a failure is a one-line {@linkcode CliError} starting with `where`.
 */
async function callLocally(ctx: CommandContext, options: {
  where: string;
  source: PluginSource;
  dataDir: string;
  config: Record<string, string>;
  timeoutMs: number;
  fn: string;
  input: Uint8Array | null;
}): Promise<Uint8Array | null> {
  const { where, source, config, timeoutMs } = options;
  const manifest = source.manifest!;
  const grants = new MemoryGrantStore();
  try {
    await grants.set(manifest.name, manifest.permissions ?? []);
  } catch { /* unparsable permissions: grant none */ }
  const load = createRuntimeFactory({
    grants,
    dataDir: options.dataDir,
    pluginConfig: () => config,
    wasm: { idleTimeoutMs: 0, callTimeoutMs: timeoutMs },
  });
  let plugin;
  try {
    plugin = await load(source);
  } catch (e) {
    throw new CliError(`${where}: ${errorText(e).split("\n")[0]}`);
  }
  try {
    const registered = await plugin.gkRegister();
    await plugin.init(new PrintingHost(ctx.io, config), {
      name: registered.name,
      quarantine: (reason) => ctx.io.err(`quarantined: ${reason}`),
    });
    try {
      return await plugin.call(
        options.fn,
        options.input,
        createCallContext({ timeoutMs, chain: [registered.name] }),
      );
    } catch (e) {
      throw new CliError(`${where}: ${errorText(e).split("\n")[0]}`);
    }
  } finally {
    await plugin.shutdown();
  }
}

/** The raw input of an Extism call: `--input` text or `--input-file` bytes. */
async function rawInput(ctx: CommandContext): Promise<Uint8Array | null> {
  const text = ctx.args.str("input");
  const file = ctx.args.str("input-file");
  if (text !== undefined && file !== undefined) {
    throw new CliError(
      "Cannot read the input: give one of --input and --input-file",
    );
  }
  if (text !== undefined) return new TextEncoder().encode(text);
  if (file === undefined) return null;
  const path = resolveFrom(ctx.io, file);
  try {
    return await Deno.readFile(path);
  } catch (e) {
    throw new CliError(
      `Cannot read input file "${path}": ${errorText(e).split("\n")[0]}`,
    );
  }
}

/**
 * `gk run` of an Extism module: its folder's `extism.json` when there is
 * one naming it, else a generated one (`{"wasm": [{"path": <file>}]}`) in a
 * temporary plugin folder holding a copy of the module.
 */
async function runExtism(
  ctx: CommandContext,
  path: string,
  fn: string,
  config: Record<string, string>,
  timeoutMs: number,
): Promise<void> {
  const where = `Cannot run function "${fn}" of "${path}"`;
  const input = await rawInput(ctx);
  const work = await Deno.makeTempDir({ prefix: "gk_run_" });
  try {
    let dir = dirname(path);
    let text: string | undefined;
    try {
      text = await Deno.readTextFile(join(dir, EXTISM_MANIFEST_FILE));
    } catch { /* none: generated below */ }
    let extism = text === undefined ? undefined : parseExtismManifest(text, {
      file: join(dir, EXTISM_MANIFEST_FILE),
    });
    const names = (extism?.wasm ?? []).map((w) =>
      "path" in w ? join(dir, w.path) : ""
    );
    if (!extism || !names.includes(path)) {
      dir = join(work, "plugin");
      await Deno.mkdir(dir);
      await Deno.copyFile(path, join(dir, "plugin.wasm"));
      extism = { wasm: [{ path: "plugin.wasm" }] };
      await Deno.writeTextFile(
        join(dir, EXTISM_MANIFEST_FILE),
        JSON.stringify(extism),
      );
    }
    const sidecar = await localManifest(path);
    let manifest: GKRegistration;
    try {
      manifest = withExtismPermissions(sidecar, mapExtismManifest(extism));
    } catch (e) {
      throw new CliError(`${where}: ${errorText(e)}`);
    }
    const out = await callLocally(ctx, {
      where,
      source: {
        name: manifest.name,
        dir,
        kind: "extism",
        entry: join(dir, EXTISM_MANIFEST_FILE),
        manifest,
      },
      dataDir: join(work, "data"),
      config,
      timeoutMs,
      fn,
      input,
    });
    ctx.io.out(out ? new TextDecoder().decode(out) : "");
  } finally {
    await Deno.remove(work, { recursive: true }).catch(() => {});
  }
}
