/**
 * `deno task serve`: starts the host with `goatkit.json` + environment
 * configuration, prints its URL and how to log in, and shuts down gracefully
 * on SIGINT/SIGTERM.
 *
 * Configuration (environment overrides the file):
 * | env | goatkit.json | default |
 * |---|---|---|
 * | `GOATKIT_CONFIG` | — | `./goatkit.json` (optional) |
 * | `PORT` | `port` | 8080 |
 * | `GOATKIT_HOSTNAME` | `hostname` | `0.0.0.0` |
 * | `GOATKIT_DATA_DIR` | `dataDir` | `./data` |
 * | `GOATKIT_PLUGINS_DIR` | `pluginsDir` | `./fixtures/plugins` |
 * | `GOATKIT_TITLE` | `title` | `GoatKit` |
 * | `GOATKIT_SECURE_COOKIES` | `secureCookies` | false |
 *
 * An admin token is created on first start and printed once; only its
 * SHA-256 is stored (`<dataDir>/tokens.json`). `--new-admin-token` creates
 * and prints another one.
 *
 * @module
 */

import { join } from "node:path";
import { errorText } from "./errors.ts";
import { LogBuffer } from "./log_buffer.ts";
import { Manager } from "./manager.ts";
import { Scheduler } from "./scheduler.ts";
import {
  createApp,
  type GoatKitApp,
  routeCollisionCheck,
} from "./server/mod.ts";
import type { AppOptions, GrantsProvider } from "./server/mod.ts";
import { FileTokenStore, type TokenStore } from "./server/tokens.ts";
import { HOST_VERSION } from "./version.ts";
import { AuditLog } from "../permissions/audit.ts";
import {
  type GrantStore,
  MemoryGrantStore,
  pendingPermissions,
} from "../permissions/grants.ts";
import { loadWasmPlugin } from "../runtimes/wasm/plugin.ts";

/** The resolved configuration of {@linkcode startHost}. */
export interface ServeConfig {
  /** TCP port (0 picks a free one). */
  port: number;
  /** Interface to listen on. */
  hostname: string;
  /** Where the host keeps its data (tokens, database, cache, outbox). */
  dataDir: string;
  /** Where plugins are discovered. */
  pluginsDir: string;
  /** Title of the admin pages. */
  title: string;
  /** `Secure` cookies (behind HTTPS). */
  secureCookies: boolean;
}

/**
 * Reads `goatkit.json` (if present) and the environment into a
 * {@linkcode ServeConfig}.
 */
export async function loadServeConfig(
  env: Record<string, string | undefined> = Deno.env.toObject(),
  defaultConfigPath = "goatkit.json",
): Promise<ServeConfig> {
  const path = env.GOATKIT_CONFIG ?? defaultConfigPath;
  let file: Record<string, unknown> = {};
  try {
    const parsed = JSON.parse(await Deno.readTextFile(path));
    if (parsed && typeof parsed === "object" && !Array.isArray(parsed)) {
      file = parsed;
    } else throw new Error("must be a JSON object");
  } catch (e) {
    if (!(e instanceof Deno.errors.NotFound) || env.GOATKIT_CONFIG) {
      throw new Error(`cannot read configuration ${path}: ${errorText(e)}`, {
        cause: e,
      });
    }
  }
  const str = (k: string, f: string, d: string) =>
    env[k] ?? (typeof file[f] === "string" ? file[f] as string : d);
  const portText = env.PORT ??
    (file.port !== undefined ? String(file.port) : "8080");
  const port = Number(portText);
  if (!Number.isInteger(port) || port < 0 || port > 65535) {
    throw new Error(`invalid port "${portText}" (PORT or goatkit.json "port")`);
  }
  return {
    port,
    hostname: str("GOATKIT_HOSTNAME", "hostname", "0.0.0.0"),
    dataDir: str("GOATKIT_DATA_DIR", "dataDir", "./data"),
    pluginsDir: str("GOATKIT_PLUGINS_DIR", "pluginsDir", "./fixtures/plugins"),
    title: str("GOATKIT_TITLE", "title", "GoatKit"),
    secureCookies:
      (env.GOATKIT_SECURE_COOKIES ?? String(file.secureCookies ?? "false")) ===
        "true",
  };
}

/** A running host. */
export interface RunningHost {
  /** Base URL, such as `http://localhost:8080`. */
  url: string;
  /** The admin token, when this start created one (shown once). */
  adminToken?: string;
  /** The Manager. */
  manager: Manager;
  /** The HTTP app. */
  app: GoatKitApp;
  /** The token store. */
  tokens: TokenStore;
  /** Stops serving and shuts every plugin down. */
  close(): Promise<void>;
}

/** Options of {@linkcode startHost}. */
export interface StartHostOptions {
  /** Create another admin token even if one exists. */
  newAdminToken?: boolean;
  /** Where progress lines go. @default console.log */
  print?: (line: string) => void;
  /** Load the plugins of `pluginsDir` at start. @default true */
  loadPlugins?: boolean;
}

/** Adapts the permission layer's {@linkcode GrantStore} to the server's grants seam. */
export function grantsProvider(store: GrantStore): GrantsProvider {
  return {
    granted: async (plugin) => (await store.get(plugin)) ?? [],
    approve: async (plugin, permissions) => {
      const current = (await store.get(plugin)) ?? [];
      await store.set(plugin, [...new Set([...current, ...permissions])]);
    },
    revoke: (plugin, permissions) => store.revoke(plugin, permissions),
    pending: (requested, granted) => pendingPermissions(requested, granted),
  };
}

/**
 * Loads every `<pluginsDir>/<name>/plugin.wasm` eagerly. Interim: the loader
 * (discovery, lazy load, hot reload, gRPC entries) replaces this.
 */
async function loadPluginDir(
  manager: Manager,
  dir: string,
  print: (line: string) => void,
): Promise<void> {
  let entries: Deno.DirEntry[];
  try {
    entries = [...Deno.readDirSync(dir)].filter((e) => e.isDirectory).sort((
      a,
      b,
    ) => a.name < b.name ? -1 : 1);
  } catch (e) {
    if (e instanceof Deno.errors.NotFound) return;
    throw e;
  }
  for (const e of entries) {
    const wasm = join(dir, e.name, "plugin.wasm");
    try {
      await Deno.stat(wasm);
    } catch {
      continue;
    }
    try {
      const plugin = await loadWasmPlugin(wasm);
      const m = await manager.register(plugin);
      print(`  plugin ${m.name} ${m.version} (wasm) loaded from ${wasm}`);
    } catch (err) {
      print(`  plugin in ${join(dir, e.name)} not loaded: ${errorText(err)}`);
      manager.logs.log(e.name, "error", `load failed: ${errorText(err)}`);
    }
  }
}

/** Builds the Manager, services and app from `config` and starts serving. */
export async function startHost(
  config: ServeConfig,
  options: StartHostOptions = {},
): Promise<RunningHost> {
  const print = options.print ?? ((l: string) => console.log(l));
  await Deno.mkdir(config.dataDir, { recursive: true });
  const logs = new LogBuffer({ capacity: 2000 });
  const audit = new AuditLog({ logs });
  const grants = new MemoryGrantStore();
  let manager: Manager | undefined = undefined;
  manager = new Manager({
    logs,
    manifestChecks: [routeCollisionCheck(() => manager)],
  });
  const m: Manager = manager;
  const scheduler = new Scheduler(m);
  const tokens = new FileTokenStore(join(config.dataDir, "tokens.json"));

  let adminToken: string | undefined;
  const existing = await tokens.list();
  if (options.newAdminToken || !existing.some((t) => t.admin)) {
    const created = await tokens.create({ name: "admin", admin: true });
    adminToken = created.token;
  }

  const appOptions: AppOptions = {
    manager: m,
    tokens,
    logs,
    audit,
    grants: grantsProvider(grants),
    scheduler,
    title: config.title,
    secureCookies: config.secureCookies,
  };
  const app = createApp(appOptions);

  if (options.loadPlugins ?? true) {
    await loadPluginDir(m, config.pluginsDir, print);
  }
  scheduler.start();

  const ac = new AbortController();
  let resolveListen: (addr: Deno.NetAddr) => void;
  const listening = new Promise<Deno.NetAddr>((r) => resolveListen = r);
  const server = Deno.serve({
    port: config.port,
    hostname: config.hostname,
    signal: ac.signal,
    onListen: (addr) => resolveListen(addr as Deno.NetAddr),
  }, app.fetch);
  const addr = await listening;
  const shownHost = config.hostname === "0.0.0.0" || config.hostname === "::"
    ? "localhost"
    : config.hostname;
  const url = `http://${shownHost}:${addr.port}`;

  let closed = false;
  return {
    url,
    ...(adminToken ? { adminToken } : {}),
    manager: m,
    app,
    tokens,
    async close() {
      if (closed) return;
      closed = true;
      scheduler.stop();
      ac.abort();
      await server.finished;
      app.close();
      await m.shutdownAll().catch((e) => print(`shutdown: ${errorText(e)}`));
    },
  };
}

async function main(): Promise<void> {
  const config = await loadServeConfig();
  console.log(
    `GoatKit host ${HOST_VERSION} starting (data ${config.dataDir}, plugins ${config.pluginsDir})`,
  );
  const host = await startHost(config, {
    newAdminToken: Deno.args.includes("--new-admin-token"),
  });
  console.log(`Listening on ${host.url}  (health: ${host.url}/healthz)`);
  if (host.adminToken) {
    console.log(
      `\nAdmin token (shown ONCE; only its hash is stored in ${
        join(config.dataDir, "tokens.json")
      }):\n\n    ${host.adminToken}\n\nLog in at ${host.url}/login with it, or use it as "Authorization: Bearer <token>" on ${host.url}/api/v1/…\n`,
    );
  } else {
    console.log(
      `Log in at ${host.url}/login with the admin token printed at first start (lost it? restart with: deno task serve --new-admin-token)`,
    );
  }
  let stopping = false;
  const stop = async (sig: string) => {
    if (stopping) return;
    stopping = true;
    console.log(`\n${sig}: shutting down…`);
    await host.close();
    Deno.exit(0);
  };
  Deno.addSignalListener("SIGINT", () => void stop("SIGINT"));
  Deno.addSignalListener("SIGTERM", () => void stop("SIGTERM"));
}

if (import.meta.main) await main();
