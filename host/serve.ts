/**
 * `deno task serve`: starts the host with `goatkit.json` + environment
 * configuration, prints its URL and how to log in, and shuts down gracefully
 * on SIGINT/SIGTERM.
 *
 * Server settings (environment overrides the file's `server` section):
 * | env | goatkit.json `server.` | default |
 * |---|---|---|
 * | `GOATKIT_CONFIG` | — | `./goatkit.json` (optional) |
 * | `PORT` | `port` | 8080 |
 * | `GOATKIT_HOSTNAME` | `hostname` | `0.0.0.0` |
 * | `GOATKIT_DATA_DIR` | `dataDir` | `./data` |
 * | `GOATKIT_PLUGINS_DIR` | `pluginsDir` | `./fixtures/plugins` |
 * | `GOATKIT_TITLE` | `title` | `GoatKit` |
 * | `GOATKIT_SECURE_COOKIES` | `secureCookies` | false |
 * | `GOATKIT_LAZY_LOAD` | `lazyLoad` | false (load every plugin at start) |
 * | `GOATKIT_HOT_RELOAD` | `hotReload` | true |
 * | `GOATKIT_TRUSTED_KEYS` (comma-separated) | `trustedKeys` | none |
 * | `GOATKIT_REQUIRE_SIGNATURE` | `requireSignature` | false |
 *
 * Services (database, cache, mail, plugin configuration) come from
 * `createServices` (`DATABASE_URL`, `REDIS_URL`, `SMTP_URL`, … else PGlite,
 * Deno KV and an `.eml` outbox under the data directory).
 *
 * An admin token is created on first start and printed once; only its
 * SHA-256 is stored (`<dataDir>/tokens.json`). `--new-admin-token` creates
 * and prints another one.
 *
 * @module
 */

import { join } from "node:path";
import { errorText } from "./model/errors.ts";
import { LogBuffer } from "./log_buffer.ts";
import { Loader } from "./loading/loader.ts";
import { createRuntimeFactory } from "./loading/runtimes.ts";
import { Manager } from "./manager.ts";
import { PackageInstaller } from "./loading/packages.ts";
import { PgJobClaim, Scheduler, type SqlPool } from "./scheduler.ts";
import {
  createApp,
  type GoatKitApp,
  reservedNameCheck,
  routeCollisionCheck,
} from "./server/mod.ts";
import type { GrantsProvider } from "./server/mod.ts";
import { FileTokenStore, type TokenStore } from "./server/auth/tokens.ts";
import {
  createServices,
  PgStateStore,
  type SqlDatabase,
} from "./services/mod.ts";
import { HOST_VERSION } from "./model/version.ts";
import {
  applyGrantPolicy,
  AuditLog,
  checkPermissions,
  createEgressClient,
  createGuardedHostAPI,
  type GrantStore,
  type GuardedHostAPI,
  pendingPermissions,
  PgGrantStore,
} from "../permissions/mod.ts";

/** The resolved configuration of {@linkcode startHost}. */
export interface ServeConfig {
  /** TCP port (0 picks a free one). */
  port: number;
  /** Interface to listen on. */
  hostname: string;
  /** Where the host keeps its data (tokens, database, cache, outbox). */
  dataDir: string;
  /** Where plugins are discovered (and packages installed). */
  pluginsDir: string;
  /** Title of the admin pages. */
  title: string;
  /** `Secure` cookies (behind HTTPS). */
  secureCookies: boolean;
  /** Load plugins on first use instead of at start. */
  lazyLoad: boolean;
  /** Reload plugins when their files change. */
  hotReload: boolean;
  /** Ed25519 public keys (base64) whose package signatures are trusted. */
  trustedKeys: string[];
  /** Refuse unsigned packages. */
  requireSignature: boolean;
  /** Path of `goatkit.json` (may not exist). */
  configPath: string;
  /** The environment the services read. */
  env: Record<string, string | undefined>;
}

/**
 * Reads `goatkit.json` (if present; its `server` section) and the
 * environment into a {@linkcode ServeConfig}.
 */
export async function loadServeConfig(
  env: Record<string, string | undefined> = Deno.env.toObject(),
  defaultConfigPath = "goatkit.json",
): Promise<ServeConfig> {
  const path = env.GOATKIT_CONFIG ?? defaultConfigPath;
  let file: Record<string, unknown> = {};
  try {
    const parsed = JSON.parse(await Deno.readTextFile(path));
    if (!parsed || typeof parsed !== "object" || Array.isArray(parsed)) {
      throw new Error("must be a JSON object");
    }
    const server = (parsed as Record<string, unknown>).server;
    if (server && typeof server === "object" && !Array.isArray(server)) {
      file = server as Record<string, unknown>;
    }
  } catch (e) {
    if (!(e instanceof Deno.errors.NotFound) || env.GOATKIT_CONFIG) {
      throw new Error(`cannot read configuration ${path}: ${errorText(e)}`, {
        cause: e,
      });
    }
  }
  const str = (k: string, f: string, d: string) =>
    env[k] ?? (typeof file[f] === "string" ? file[f] as string : d);
  const bool = (k: string, f: string, d: boolean) => {
    const v = env[k] ?? (file[f] !== undefined ? String(file[f]) : undefined);
    return v === undefined ? d : v === "true" || v === "1";
  };
  const portText = env.PORT ??
    (file.port !== undefined ? String(file.port) : "8080");
  const port = Number(portText);
  if (!Number.isInteger(port) || port < 0 || port > 65535) {
    throw new Error(
      `invalid port "${portText}" (PORT or goatkit.json "server.port")`,
    );
  }
  const keys = env.GOATKIT_TRUSTED_KEYS !== undefined
    ? env.GOATKIT_TRUSTED_KEYS.split(",")
    : Array.isArray(file.trustedKeys)
    ? file.trustedKeys.map(String)
    : [];
  return {
    port,
    hostname: str("GOATKIT_HOSTNAME", "hostname", "0.0.0.0"),
    dataDir: str("GOATKIT_DATA_DIR", "dataDir", "./data"),
    pluginsDir: str("GOATKIT_PLUGINS_DIR", "pluginsDir", "./fixtures/plugins"),
    title: str("GOATKIT_TITLE", "title", "GoatKit"),
    secureCookies: bool("GOATKIT_SECURE_COOKIES", "secureCookies", false),
    lazyLoad: bool("GOATKIT_LAZY_LOAD", "lazyLoad", false),
    hotReload: bool("GOATKIT_HOT_RELOAD", "hotReload", true),
    trustedKeys: keys.map((k) => k.trim()).filter(Boolean),
    requireSignature: bool(
      "GOATKIT_REQUIRE_SIGNATURE",
      "requireSignature",
      false,
    ),
    configPath: path,
    env,
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
  /** The plugin loader. */
  loader: Loader;
  /** Stops serving and shuts every plugin and service down. */
  close(): Promise<void>;
}

/** Options of {@linkcode startHost}. */
export interface StartHostOptions {
  /** Create another admin token even if one exists. */
  newAdminToken?: boolean;
  /** Where progress lines go. @default console.log */
  print?: (line: string) => void;
  /** Discover and load the plugins of `pluginsDir` at start. @default true */
  loadPlugins?: boolean;
  /**
   * Called as soon as the server listens, before plugins load (so the URL
   * and token can be shown while the embedded database starts).
   */
  onListen?: (info: { url: string; adminToken?: string }) => void;
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

/** Builds services, Manager, loader, packages, scheduler and app from `config`, and serves. */
export async function startHost(
  config: ServeConfig,
  options: StartHostOptions = {},
): Promise<RunningHost> {
  const print = options.print ?? ((l: string) => console.log(l));
  await Deno.mkdir(config.dataDir, { recursive: true });
  const logs = new LogBuffer({ capacity: 2000 });
  const audit = new AuditLog({ logs });
  const services = createServices({
    env: config.env,
    dataDir: config.dataDir,
    configPath: config.configPath,
  });
  const sql = (services.db.default as SqlDatabase).sqlClient;
  const grants = new PgGrantStore({ client: sql });
  const stateStore = new PgStateStore({ client: sql });
  const http = createEgressClient();

  // Guarded HostAPIs per plugin, newest last; older ones are closed when
  // their instance is replaced or unregistered (they listen for grant changes).
  const hosts = new Map<string, GuardedHostAPI[]>();
  const track = (name: string, host: GuardedHostAPI): GuardedHostAPI => {
    hosts.set(name, [...(hosts.get(name) ?? []), host]);
    return host;
  };
  let manager: Manager | undefined = undefined;
  manager = new Manager({
    logs,
    stateStore,
    host: (name, manifest) =>
      track(
        name,
        createGuardedHostAPI({
          plugin: name,
          requested: manifest.permissions ?? [],
          grants,
          services: {
            db: services.db,
            cache: services.cache,
            mailer: services.mailer,
            config: services.config,
            http,
          },
          i18n: m.i18n,
          logs,
          audit,
          callPlugin: (caller, target, fn, args, opts) =>
            m.callFrom(caller, target, fn, args, opts),
        }),
      ),
    manifestChecks: [
      routeCollisionCheck(() => manager),
      reservedNameCheck,
      checkPermissions,
    ],
  });
  const m: Manager = manager;
  m.subscribe((e) => {
    const list = hosts.get(e.name) ?? [];
    if (e.type === "unregistered") {
      for (const h of list) h.close();
      hosts.delete(e.name);
    } else if (e.type === "replaced" && list.length > 1) {
      for (const h of list.slice(0, -1)) h.close();
      hosts.set(e.name, list.slice(-1));
    }
  });

  const runtimeFactory = createRuntimeFactory({
    grants,
    dataDir: config.dataDir,
    logs,
    pluginConfig: (name) => services.config.pluginSection(name),
  });
  const loader = new Loader(m, {
    dir: config.pluginsDir,
    load: async (source) => {
      // The default policy decides new requests before the runtime maps
      // grants onto WASI preopens and Deno flags.
      const previous = m.manifest(source.name)?.permissions;
      await applyGrantPolicy(
        grants,
        source.name,
        source.manifest.permissions ?? [],
        {
          ...(previous ? { previousRequested: previous } : {}),
        },
      );
      return await runtimeFactory(source);
    },
  });
  const installer = new PackageInstaller({
    dir: config.pluginsDir,
    manager: m,
    loader,
    trustedKeys: config.trustedKeys,
    requireSignature: config.requireSignature,
    onUninstall: async (name) => {
      await grants.delete(name);
      await stateStore.delete(name);
    },
  });
  const pool = (sql as { pool?: SqlPool }).pool;
  const scheduler = new Scheduler(
    m,
    config.env.DATABASE_URL && pool ? { claim: new PgJobClaim(pool) } : {},
  );
  const tokens = new FileTokenStore(join(config.dataDir, "tokens.json"));

  let adminToken: string | undefined;
  const existing = await tokens.list();
  if (options.newAdminToken || !existing.some((t) => t.admin)) {
    adminToken = (await tokens.create({ name: "admin", admin: true })).token;
  }

  let loading = false;
  let lastDiscovered = "";
  let rescan: ReturnType<typeof setInterval> | undefined;
  const app: GoatKitApp = createApp({
    manager: m,
    tokens,
    logs,
    audit,
    grants: grantsProvider(grants),
    scheduler,
    packages: {
      // A fresh install is only discovered by the installer: load it now
      // (unless loading is lazy) and mount what it declares.
      install: async (bytes, opts) => {
        const result = await installer.install(
          bytes,
          opts?.signature ? { signature: opts.signature } : {},
        );
        try {
          if (!config.lazyLoad) await loader.ensureLoaded(result.name);
        } finally {
          app.rebuildRoutes();
        }
        return result;
      },
      uninstall: async (name) => {
        try {
          await installer.uninstall(name);
        } finally {
          app.rebuildRoutes();
        }
      },
    },
    loader,
    discovered: () =>
      loader.discovered().flatMap((n) => {
        const src = loader.source(n);
        return src ? [src.manifest] : [];
      }),
    title: config.title,
    secureCookies: config.secureCookies,
    health: () => ({
      plugins_loading: loading,
      lazy_load: config.lazyLoad,
      hot_reload: config.hotReload,
      discovery_problems: loader.problems().length,
    }),
  });

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

  options.onListen?.({ url, ...(adminToken ? { adminToken } : {}) });

  if (options.loadPlugins ?? true) {
    loading = true;
    print(`  loading plugins from ${config.pluginsDir} …`);
    await loader.scan();
    for (const p of loader.problems()) {
      print(`  not a plugin: ${p.dir}: ${p.error}`);
      logs.log("", "warn", `plugin folder ${p.dir} skipped: ${p.error}`);
    }
    m.setLazyLoader(loader);
    app.rebuildRoutes(); // mount discovered plugins' routes (lazy loading)
    if (!config.lazyLoad) {
      const { loaded, failed } = await loader.loadAll();
      for (const name of loaded) {
        const mf = m.manifest(name);
        print(
          `  plugin ${name} ${mf?.version ?? ""} (${
            m.status(name)?.runtime ?? "?"
          }) loaded`,
        );
      }
      for (const f of failed) {
        print(`  plugin ${f.name} not loaded: ${f.error}`);
      }
    } else {
      print(
        `  ${loader.discovered().length} plugin(s) discovered (lazy loading)`,
      );
    }
    if (config.hotReload) {
      loader.watch();
      // The loader re-discovers new folders without registering them when
      // loading is lazy: mount their routes when the discovered set changes.
      lastDiscovered = loader.discovered().join("\n");
      rescan = setInterval(() => {
        const now = loader.discovered().join("\n");
        if (now !== lastDiscovered) {
          lastDiscovered = now;
          app.rebuildRoutes();
        }
      }, 2000);
    }
    loading = false;
  }
  scheduler.start();

  let closed = false;
  return {
    url,
    ...(adminToken ? { adminToken } : {}),
    manager: m,
    app,
    tokens,
    loader,
    async close() {
      if (closed) return;
      closed = true;
      clearInterval(rescan);
      scheduler.stop();
      ac.abort();
      await server.finished;
      app.close();
      await loader.close().catch((e) => print(`loader: ${errorText(e)}`));
      await m.shutdownAll().catch((e) => print(`shutdown: ${errorText(e)}`));
      await services.close().catch((e) => print(`services: ${errorText(e)}`));
    },
  };
}

async function main(): Promise<void> {
  const config = await loadServeConfig();
  console.log(
    `GoatKit host ${HOST_VERSION} starting (data ${config.dataDir}, plugins ${config.pluginsDir})`,
  );
  // Signals during start-up are honoured once the host is up (so plugins,
  // workers and the database are shut down properly).
  // Assigned once the host is up; `stop` (defined first) reads it earlier.
  // deno-lint-ignore prefer-const
  let running: RunningHost | undefined;
  let pendingSignal: string | undefined;
  let stopping = false;
  const stop = async (sig: string) => {
    if (!running) {
      pendingSignal ??= sig;
      return;
    }
    if (stopping) return;
    stopping = true;
    console.log(`\n${sig}: shutting down…`);
    await running.close();
    Deno.exit(0);
  };
  Deno.addSignalListener("SIGINT", () => void stop("SIGINT"));
  Deno.addSignalListener("SIGTERM", () => void stop("SIGTERM"));
  const host = await startHost(config, {
    newAdminToken: Deno.args.includes("--new-admin-token"),
    onListen: ({ url, adminToken }) => {
      console.log(`Listening on ${url}  (health: ${url}/healthz)`);
      if (adminToken) {
        console.log(
          `\nAdmin token (shown ONCE; only its hash is stored in ${
            join(config.dataDir, "tokens.json")
          }):\n\n    ${adminToken}\n\nLog in at ${url}/login with it, or use it as "Authorization: Bearer <token>" on ${url}/api/v1/…\n`,
        );
      } else {
        console.log(
          `Log in at ${url}/login with the admin token printed at first start (lost it? restart with: deno task serve --new-admin-token)`,
        );
      }
    },
  });
  console.log(`Ready: ${host.manager.list().length} plugin(s) registered.`);
  running = host;
  if (pendingSignal) await stop(pendingSignal);
}
if (import.meta.main) await main();
