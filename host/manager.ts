/**
 * The plugin Manager: registers plugins, keeps their enabled state, routes
 * calls to them with a deadline and a call chain, and publishes what they
 * contribute (routes, menu items, widgets, jobs, translations, error codes,
 * template overrides).
 *
 * @module
 */

import {
  AggregatePluginError,
  errorText,
  PluginAlreadyRegisteredError,
  PluginCallCycleError,
  PluginDisabledError,
  PluginError,
  PluginInitError,
  PluginNotFoundError,
  PluginTimeoutError,
} from "./model/errors.ts";
import type { ManifestIssue } from "./model/errors.ts";
import type { HostAPI } from "./model/host_api.ts";
import {
  type PluginCallInterceptor,
  runIntercepted,
} from "./model/interceptors.ts";
import { I18nRegistry } from "./registries/i18n.ts";
import { ErrorCodeRegistry } from "./registries/error_codes.ts";
import { LogBuffer } from "./log_buffer.ts";
import {
  checkManifest,
  DEFAULT_ROUTE_TIMEOUT_MS,
  functionTimeoutMs,
  type GKRegistration,
  type JobSpec,
  type MenuItemSpec,
  type RouteSpec,
  routeTimeoutMs,
  type WidgetSpec,
} from "./model/manifest.ts";
import type {
  CallContext,
  Plugin,
  PluginEnvironment,
  PluginRuntimeKind,
  PluginUsage,
} from "./model/plugin.ts";
import { MemoryStateStore, type StateStore } from "./state_store.ts";
import { TemplateOverrideRegistry } from "./registries/templates.ts";
import { BasicHostAPI } from "./services/basic_host_api.ts";
import { CallDeadlines } from "./model/call_deadlines.ts";

/** Loads plugins on demand by manifest name (the Loader implements it). */
export interface LazyLoader {
  /** Loads and registers `name` if it is discovered and not loaded yet. */
  ensureLoaded(name: string): Promise<void>;
  /** Names of plugins found but maybe not loaded. */
  discovered(): string[];
}

/** Builds the HostAPI a plugin receives at `init`. */
export type HostFactory = (
  name: string,
  manifest: GKRegistration,
) => HostAPI | Promise<HostAPI>;

/** Options of {@linkcode Manager}. */
export interface ManagerOptions {
  /**
   * The HostAPI plugins receive: one shared instance, or a factory called
   * per plugin (the permissions layer passes one that builds a guarded
   * HostAPI). @default a {@linkcode BasicHostAPI} (logs, translations and
   * plugin calls only)
   */
  host?: HostAPI | HostFactory;
  /** Where enabled state persists. @default a new {@linkcode MemoryStateStore} */
  stateStore?: StateStore;
  /** Where plugin and host log lines go. @default a new {@linkcode LogBuffer} */
  logs?: LogBuffer;
  /** Translation tables. @default a new {@linkcode I18nRegistry} */
  i18n?: I18nRegistry;
  /** API error codes. @default a new {@linkcode ErrorCodeRegistry} */
  errorCodes?: ErrorCodeRegistry;
  /** Template overrides. @default a new {@linkcode TemplateOverrideRegistry} */
  templates?: TemplateOverrideRegistry;
  /**
   * Call deadline when a call names none and the manifest declares none for
   * the function (`timeouts`), in ms. @default 30000
   */
  defaultTimeoutMs?: number;
  /**
   * Deadline of a route's call when the manifest declares none (route
   * `timeout`, then `timeouts[handler]`); see
   * {@linkcode Manager.routeTimeoutMs}. @default 10000 (`DEFAULT_ROUTE_TIMEOUT_MS`)
   */
  defaultRouteTimeoutMs?: number;
  /**
   * Longest deadline a manifest may declare (route `timeout`, `timeouts`),
   * in ms; longer ones are cut to it. Deadlines the host names itself
   * (`CallOptions.timeoutMs`) are not cut. @default 300000 (5 minutes)
   */
  maxManifestTimeoutMs?: number;
  /** How long `shutdownAll` and `unregister` wait for in-flight calls, in ms. @default 5000 */
  shutdownGraceMs?: number;
  /** The host version `min_host_version` is compared with. */
  hostVersion?: string;
  /** Extra manifest checks run at register (permission grammar, route collisions). */
  manifestChecks?: readonly ((m: GKRegistration) => ManifestIssue[])[];
  /**
   * Wrap every call made through {@linkcode Manager.call} once the plugin
   * is found and enabled (metrics, traces, quotas; the first outermost).
   * The array is read at each call, so it may be filled after this
   * Manager is built. @default none
   */
  interceptors?: PluginCallInterceptor[];
}

/** Options of {@linkcode Manager.call}. */
export interface CallOptions {
  /**
   * Deadline in ms from now (capped by the parent's deadline). Absent: the
   * manifest's `timeouts[fn]`, else `defaultTimeoutMs`; see
   * {@linkcode Manager.functionTimeoutMs}.
   */
  timeoutMs?: number;
  /** Request language (defaults to the parent's). */
  language?: string;
  /** Aborts the call when it aborts. */
  signal?: AbortSignal;
  /** The context of the plugin call this call is made from (nested calls). */
  parent?: CallContext;
}

/** A spec contributed by a plugin, tagged with the plugin's name. */
export type Contributed<T> = T & {
  /** The plugin that contributed it. */
  plugin: string;
};

/** What happened to a plugin; the server rebuilds its routes on each. */
export interface ManagerEvent {
  /** The kind of change. */
  type: "registered" | "unregistered" | "enabled" | "disabled" | "replaced";
  /** The plugin's name. */
  name: string;
}

/** A plugin's status as admins see it. */
export interface PluginStatus {
  /** Whether calls are accepted. */
  enabled: boolean;
  /** Why it is disabled, when the host disabled it (quarantine). */
  reason?: string;
  /** How the plugin runs. */
  runtime: PluginRuntimeKind;
  /** Calls in progress. */
  inFlight: number;
}

/** A route's deadline, and the manifest it was computed from. */
interface RouteTimeout {
  manifest: GKRegistration | undefined;
  ms: number;
}

interface Entry {
  plugin: Plugin;
  host: HostAPI;
  manifest: GKRegistration;
  enabled: boolean;
  reason?: string;
  inFlight: number;
  drained: (() => void)[];
  /** Deadlines of declared `timeouts`, parsed once. */
  timeouts?: Map<string, number>;
}

/**
 * Registers plugins and routes calls to them. Semantics follow GoatFlow's
 * GoatKit Manager, plus: deadlines, cycle detection, sorted menu items and
 * widgets, contributions removed at unregister, persisted enabled state.
 *
 * @example
 * ```ts
 * import { Manager, encodeJson, decodeJson } from "../mod.ts";
 * const manager = new Manager();
 * await manager.register({
 *   gkRegister: () => ({ name: "hello", version: "1.0.0" }),
 *   init: async () => {},
 *   call: async (fn, args) => encodeJson({ fn, args: decodeJson(args) }),
 *   shutdown: async () => {},
 * });
 * const out = await manager.call("hello", "greet", encodeJson({ name: "Ana" }));
 * console.log(decodeJson(out)); // { fn: "greet", args: { name: "Ana" } }
 * await manager.shutdownAll();
 * ```
 */
export class Manager {
  /** Log lines of plugins and the host. */
  readonly logs: LogBuffer;
  /** Translation tables. */
  readonly i18n: I18nRegistry;
  /** API error codes. */
  readonly errorCodes: ErrorCodeRegistry;
  /** Template overrides. */
  readonly templates: TemplateOverrideRegistry;

  #entries = new Map<string, Entry>();
  #pending = new Set<string>();
  #host: HostAPI | HostFactory;
  #state: StateStore;
  #lazy: LazyLoader | null = null;
  #loading = new Map<string, Promise<void>>();
  #listeners = new Set<(e: ManagerEvent) => void>();
  #defaultTimeoutMs: number;
  #defaultRouteTimeoutMs: number;
  #maxManifestTimeoutMs: number;
  #graceMs: number;
  #hostVersion: string | undefined;
  #checks: readonly ((m: GKRegistration) => ManifestIssue[])[];
  #interceptors: PluginCallInterceptor[];
  #deadlines = new CallDeadlines();
  #routeTimeouts = new WeakMap<object, RouteTimeout>();

  /** Creates a Manager; every part can be replaced through `options`. */
  constructor(options: ManagerOptions = {}) {
    this.logs = options.logs ?? new LogBuffer();
    this.i18n = options.i18n ?? new I18nRegistry();
    this.errorCodes = options.errorCodes ?? new ErrorCodeRegistry();
    this.templates = options.templates ?? new TemplateOverrideRegistry();
    this.#host = options.host ??
      new BasicHostAPI({ logs: this.logs, i18n: this.i18n, manager: this });
    this.#state = options.stateStore ?? new MemoryStateStore();
    this.#defaultTimeoutMs = options.defaultTimeoutMs ?? 30_000;
    this.#defaultRouteTimeoutMs = options.defaultRouteTimeoutMs ??
      DEFAULT_ROUTE_TIMEOUT_MS;
    this.#maxManifestTimeoutMs = options.maxManifestTimeoutMs ?? 300_000;
    this.#graceMs = options.shutdownGraceMs ?? 5_000;
    this.#hostVersion = options.hostVersion;
    this.#checks = options.manifestChecks ?? [];
    this.#interceptors = options.interceptors ?? [];
  }

  /**
   * Validates the plugin's manifest, initialises it with its HostAPI and
   * registers it with everything it contributes. Throws
   * {@linkcode InvalidManifestError}, {@linkcode PluginAlreadyRegisteredError}
   * or {@linkcode PluginInitError}; on any failure nothing stays registered.
   */
  async register(plugin: Plugin): Promise<GKRegistration> {
    const manifest = await this.#validate(plugin);
    const name = manifest.name;
    if (this.#entries.has(name) || this.#pending.has(name)) {
      throw new PluginAlreadyRegisteredError(name);
    }
    for (const e of this.#entries.values()) {
      if (e.plugin === plugin) throw new PluginAlreadyRegisteredError(name);
    }
    this.#pending.add(name);
    try {
      this.#checkContributions(name, manifest);
      const host = await this.#init(plugin, manifest);
      let state;
      try {
        state = await this.#state.get(name);
      } catch (e) {
        await this.#release(host);
        await plugin.shutdown().catch(() => {});
        throw e;
      }
      this.#addContributions(name, manifest);
      this.#entries.set(name, {
        plugin,
        host,
        manifest,
        enabled: state?.enabled ?? true,
        ...(state?.reason ? { reason: state.reason } : {}),
        inFlight: 0,
        drained: [],
      });
    } finally {
      this.#pending.delete(name);
    }
    this.logs.log(
      name,
      "info",
      `plugin "${name}" ${manifest.version} registered`,
    );
    this.#emit({ type: "registered", name });
    return manifest;
  }

  /**
   * Replaces a registered plugin by a new instance (hot reload, upgrade):
   * the new one is validated and initialised first; only then does it take
   * the old one's place. In-flight calls of the old instance finish (up to
   * the grace period) before it is shut down. The enabled state is kept.
   */
  async replace(plugin: Plugin): Promise<GKRegistration> {
    const manifest = await this.#validate(plugin);
    const name = manifest.name;
    const old = this.#entries.get(name);
    if (!old) return await this.register(plugin);
    this.#removeContributions(name);
    let host: HostAPI;
    try {
      this.#checkContributions(name, manifest);
      host = await this.#init(plugin, manifest);
    } catch (e) {
      this.#addContributions(name, old.manifest);
      throw e;
    }
    this.#addContributions(name, manifest);
    const { timeouts: _parsed, ...kept } = old;
    const entry: Entry = {
      ...kept,
      plugin,
      host,
      manifest,
      inFlight: 0,
      drained: [],
    };
    this.#entries.set(name, entry);
    this.#emit({ type: "replaced", name });
    await this.#drain(old, this.#graceMs);
    try {
      await old.plugin.shutdown();
    } catch (e) {
      this.logs.log(
        name,
        "warn",
        `old instance shutdown failed: ${errorText(e)}`,
      );
    }
    await this.#release(old.host);
    this.logs.log(
      name,
      "info",
      `plugin "${name}" replaced by ${manifest.version}`,
    );
    return manifest;
  }

  /**
   * Shuts a plugin down and removes it with all it contributed. If its
   * shutdown fails the plugin stays registered (as in GoatFlow).
   */
  async unregister(name: string): Promise<void> {
    const entry = this.#entries.get(name);
    if (!entry) throw new PluginNotFoundError(name);
    await this.#drain(entry, this.#graceMs);
    try {
      await entry.plugin.shutdown();
    } catch (e) {
      throw new PluginError(
        name,
        `Cannot shut down plugin "${name}": ${errorText(e)}`,
        {
          cause: e,
        },
      );
    }
    this.#entries.delete(name);
    this.#removeContributions(name);
    await this.#release(entry.host);
    this.logs.log(name, "info", `plugin "${name}" unregistered`);
    this.#emit({ type: "unregistered", name });
  }

  /**
   * Loads `name` through the lazy loader when it is discovered but not
   * registered yet, as its first call would (nothing to do otherwise); a
   * failed load rejects with a {@linkcode PluginNotFoundError}. For a caller
   * that must see the plugin before calling it.
   */
  load(name: string): Promise<void> {
    if (this.#entries.has(name) || !this.#lazy) return Promise.resolve();
    return this.#ensureLoaded(name).catch((e) => {
      throw new PluginNotFoundError(name, { cause: e });
    });
  }

  /** The plugin, if it is registered and enabled (no lazy load). */
  get(name: string): Plugin | undefined {
    const e = this.#entries.get(name);
    return e?.enabled ? e.plugin : undefined;
  }

  /** The manifest of a registered plugin (enabled or not). */
  manifest(name: string): GKRegistration | undefined {
    return this.#entries.get(name)?.manifest;
  }

  /** Manifests of all registered plugins, enabled or not, sorted by name. */
  list(): GKRegistration[] {
    return [...this.#entries.values()].map((e) => e.manifest).sort(byName);
  }

  /** Whether the plugin is registered and enabled. */
  isEnabled(name: string): boolean {
    return this.#entries.get(name)?.enabled ?? false;
  }

  /** A registered plugin's status; `undefined` when not registered. */
  status(name: string): PluginStatus | undefined {
    const e = this.#entries.get(name);
    if (!e) return undefined;
    return {
      enabled: e.enabled,
      ...(e.reason ? { reason: e.reason } : {}),
      runtime: e.plugin.runtime ?? "native",
      inFlight: e.inFlight,
    };
  }

  /**
   * A registered plugin's resource use as its runtime reports it
   * ({@linkcode Plugin.usage}); `undefined` when not registered or the
   * runtime cannot tell.
   */
  usage(name: string): PluginUsage | undefined {
    return this.#entries.get(name)?.plugin.usage?.();
  }

  /**
   * The deadline, in ms, of a call of `fn` of plugin `name` that names none
   * itself: the manifest's `timeouts[fn]` (cut to `maxManifestTimeoutMs`),
   * else `defaultTimeoutMs`. {@linkcode Manager.call} uses it when
   * `timeoutMs` is absent.
   *
   * @example
   * ```ts
   * import { Manager } from "../mod.ts";
   * const manager = new Manager();
   * await manager.register({
   *   gkRegister: () => ({ name: "slow", version: "1.0.0", timeouts: { report: "20s" } }),
   *   init: async () => {},
   *   call: async () => null,
   *   shutdown: async () => {},
   * });
   * console.log(manager.functionTimeoutMs("slow", "report")); // 20000
   * console.log(manager.functionTimeoutMs("slow", "other")); // 30000
   * await manager.shutdownAll();
   * ```
   */
  functionTimeoutMs(name: string, fn: string): number {
    const e = this.#entries.get(name);
    // A manifest's durations are parsed once per instance.
    const known = e?.timeouts?.get(fn);
    if (known !== undefined) return known;
    const declared = e && functionTimeoutMs(e.manifest, fn);
    const ms = declared === undefined
      ? this.#defaultTimeoutMs
      : Math.min(declared, this.#maxManifestTimeoutMs);
    if (e && e.manifest.timeouts && Object.hasOwn(e.manifest.timeouts, fn)) {
      (e.timeouts ??= new Map()).set(fn, ms);
    }
    return ms;
  }

  /**
   * The deadline, in ms, of the call a plugin route makes: the route's
   * `timeout`, else the manifest's `timeouts[handler]` (either cut to
   * `maxManifestTimeoutMs`), else `defaultRouteTimeoutMs` (10 s). An HTTP
   * front end passes it as `timeoutMs`. `route` is one of
   * {@linkcode Manager.routes} (its `plugin` names the plugin).
   *
   * @example
   * ```ts
   * import { Manager } from "../mod.ts";
   * const manager = new Manager();
   * await manager.register({
   *   gkRegister: () => ({
   *     name: "pages",
   *     version: "1.0.0",
   *     routes: [{ method: "GET", path: "/slow", handler: "slow", timeout: "2s" }],
   *   }),
   *   init: async () => {},
   *   call: async () => null,
   *   shutdown: async () => {},
   * });
   * console.log(manager.routeTimeoutMs(manager.routes()[0]!)); // 2000
   * await manager.shutdownAll();
   * ```
   */
  routeTimeoutMs(
    route: Pick<Contributed<RouteSpec>, "plugin" | "handler" | "timeout">,
  ): number {
    const manifest = this.#entries.get(route.plugin)?.manifest;
    // Remembered per route object (routes() makes new ones from each
    // manifest) while its plugin's manifest stays: a server asks on every
    // request.
    const known = this.#routeTimeouts.get(route);
    if (known && known.manifest === manifest) return known.ms;
    const declared = routeTimeoutMs(
      manifest ?? { name: route.plugin, version: "0.0.0" },
      route,
    );
    const ms = declared === undefined
      ? this.#defaultRouteTimeoutMs
      : Math.min(declared, this.#maxManifestTimeoutMs);
    this.#routeTimeouts.set(route, { manifest, ms });
    return ms;
  }

  /** Enables a plugin (loading it lazily when discovered) and persists it. */
  async enable(name: string): Promise<void> {
    if (!this.#entries.has(name) && this.#lazy) {
      await this.#ensureLoaded(name).catch(() => {});
    }
    const e = this.#entries.get(name);
    if (!e) throw new PluginNotFoundError(name);
    await this.#state.set(name, { enabled: true });
    const changed = !e.enabled;
    e.enabled = true;
    delete e.reason;
    if (changed) this.#emit({ type: "enabled", name });
  }

  /** Disables a plugin and persists it; it stays loaded. */
  async disable(name: string): Promise<void> {
    await this.#setDisabled(name, undefined);
  }

  /**
   * Disables a plugin with a reason an admin can read (repeated crashes,
   * timeouts, a runaway guest). Logged at error.
   */
  async quarantine(name: string, reason: string): Promise<void> {
    this.logs.log(name, "error", `plugin "${name}" quarantined: ${reason}`);
    await this.#setDisabled(name, reason);
  }

  /** Names the lazy loader has discovered (empty without a loader). */
  discovered(): string[] {
    return this.#lazy?.discovered() ?? [];
  }

  /** Sets (or with `null` removes) the lazy loader. */
  setLazyLoader(loader: LazyLoader | null): void {
    this.#lazy = loader;
  }

  /**
   * Calls `fn` of plugin `name` with JSON `args`. Loads the plugin lazily
   * when needed; refuses disabled plugins (with
   * {@linkcode PluginDisabledError}, whose `reason` tells a quarantine) and
   * call cycles; fails with {@linkcode PluginTimeoutError} at the deadline
   * (the plugin's context signal aborts, so runtimes stop the guest). A
   * runtime that queues calls may refuse one with `PluginOverloadedError`
   * (never counted against the plugin).
   */
  call(
    name: string,
    fn: string,
    args: Uint8Array | null,
    options: CallOptions = {},
  ): Promise<Uint8Array | null> {
    return this.#call(options.parent?.caller, name, fn, args, options);
  }

  /**
   * Like {@linkcode Manager.call}, made by plugin `caller`: errors name the
   * caller, and a call back into a plugin already on the chain fails at once
   * with {@linkcode PluginCallCycleError}.
   */
  callFrom(
    caller: string,
    target: string,
    fn: string,
    args: Uint8Array | null,
    options: CallOptions = {},
  ): Promise<Uint8Array | null> {
    return this.#call(caller, target, fn, args, options);
  }

  /**
   * Shuts every plugin down after in-flight calls finish (up to the grace
   * period), then forgets them all, even on errors, which are aggregated.
   */
  async shutdownAll(options: { graceMs?: number } = {}): Promise<void> {
    const grace = options.graceMs ?? this.#graceMs;
    const entries = [...this.#entries];
    await Promise.all(entries.map(([, e]) => this.#drain(e, grace)));
    const errors: Error[] = [];
    await Promise.all(entries.map(async ([name, e]) => {
      try {
        await e.plugin.shutdown();
      } catch (err) {
        errors.push(
          new PluginError(
            name,
            `Cannot shut down plugin "${name}": ${errorText(err)}`,
          ),
        );
      }
    }));
    await Promise.all(entries.map(([, e]) => this.#release(e.host)));
    for (const [name] of entries) {
      this.#entries.delete(name);
      this.#removeContributions(name);
      this.#emit({ type: "unregistered", name });
    }
    if (errors.length > 0) {
      throw new AggregatePluginError("Cannot shut down all plugins", errors);
    }
  }

  /** Routes of enabled plugins, by plugin name then declaration order. */
  routes(): Contributed<RouteSpec>[] {
    return this.#collect((m) => m.routes);
  }

  /** Menu items of enabled plugins at `location`, sorted by order then id. */
  menuItems(location: string): Contributed<MenuItemSpec>[] {
    return sortByOrder(
      this.#collect((m) => m.menu_items).filter((i) => i.location === location),
    );
  }

  /** Widgets of enabled plugins at `location`, sorted by order then id. */
  widgets(location: string): Contributed<WidgetSpec>[] {
    return sortByOrder(
      this.#collect((m) => m.widgets).filter((w) => w.location === location),
    );
  }

  /** Loads every discovered plugin (errors logged), then {@linkcode Manager.widgets}. */
  async allWidgets(location: string): Promise<Contributed<WidgetSpec>[]> {
    for (const name of this.discovered()) {
      if (this.#entries.has(name)) continue;
      try {
        await this.#ensureLoaded(name);
      } catch (e) {
        this.logs.log(name, "warn", `lazy load failed: ${errorText(e)}`);
      }
    }
    return this.widgets(location);
  }

  /** Jobs of enabled plugins. */
  jobs(): Contributed<JobSpec>[] {
    return this.#collect((m) => m.jobs);
  }

  /** Calls `listener` on every change; returns a function that unsubscribes. */
  subscribe(listener: (event: ManagerEvent) => void): () => void {
    this.#listeners.add(listener);
    return () => this.#listeners.delete(listener);
  }

  // -- internals -----------------------------------------------------------

  async #validate(plugin: Plugin): Promise<GKRegistration> {
    const raw = await plugin.gkRegister();
    const { manifest, warnings } = checkManifest(raw, {
      ...(this.#hostVersion ? { hostVersion: this.#hostVersion } : {}),
      extraChecks: this.#checks,
    });
    for (const w of warnings) {
      this.logs.log(manifest.name, "warn", `manifest ${w.path}: ${w.message}`);
    }
    return manifest;
  }

  async #init(plugin: Plugin, manifest: GKRegistration): Promise<HostAPI> {
    const name = manifest.name;
    const env: PluginEnvironment = {
      name,
      quarantine: (reason) => {
        this.quarantine(name, reason).catch((e) =>
          this.logs.log(name, "error", `quarantine failed: ${errorText(e)}`)
        );
      },
    };
    let host: HostAPI | undefined;
    try {
      host = typeof this.#host === "function"
        ? await this.#host(name, manifest)
        : this.#host;
      await plugin.init(host, env);
      return host;
    } catch (e) {
      try {
        await plugin.shutdown();
      } catch { /* the init error is what matters */ }
      if (host) await this.#release(host);
      throw new PluginInitError(name, e);
    }
  }

  /** Closes a HostAPI made for one plugin; a shared HostAPI stays open. */
  async #release(host: HostAPI): Promise<void> {
    if (typeof this.#host !== "function") return;
    try {
      await host.close?.();
    } catch { /* closing is best effort */ }
  }

  #checkContributions(name: string, m: GKRegistration): void {
    this.i18n.check(name, m.i18n);
    this.errorCodes.check(name, m.error_codes);
    this.templates.check(name, m.templates);
  }

  #addContributions(name: string, m: GKRegistration): void {
    if (m.i18n) this.i18n.addPlugin(name, m.i18n);
    this.errorCodes.addPlugin(name, m.error_codes);
    this.templates.addPlugin(name, m.templates);
  }

  #removeContributions(name: string): void {
    this.i18n.removePlugin(name);
    this.errorCodes.removePlugin(name);
    this.templates.removePlugin(name);
  }

  async #setDisabled(name: string, reason: string | undefined): Promise<void> {
    const e = this.#entries.get(name);
    if (!e) throw new PluginNotFoundError(name);
    await this.#state.set(name, {
      enabled: false,
      ...(reason ? { reason } : {}),
    });
    const changed = e.enabled;
    e.enabled = false;
    if (reason) e.reason = reason;
    else delete e.reason;
    if (changed) this.#emit({ type: "disabled", name });
  }

  #ensureLoaded(name: string): Promise<void> {
    const lazy = this.#lazy;
    if (!lazy) return Promise.resolve();
    let p = this.#loading.get(name);
    if (!p) {
      p = lazy.ensureLoaded(name).finally(() => this.#loading.delete(name));
      this.#loading.set(name, p);
    }
    return p;
  }

  // One Promise, no per-call timer (a shared CallDeadlines),
  // no arrays or closures beyond what the call needs; the async paths
  // (lazy load, a pending drain) are unchanged.
  #call(
    caller: string | undefined,
    name: string,
    fn: string,
    args: Uint8Array | null,
    options: CallOptions,
  ): Promise<Uint8Array | null> {
    const parent = options.parent;
    const chain = parent?.chain ?? (caller ? [caller] : EMPTY_CHAIN);
    if (chain.includes(name)) {
      return Promise.reject(new PluginCallCycleError(name, chain));
    }
    const entry = this.#entries.get(name);
    if (!entry && this.#lazy) {
      return this.#ensureLoaded(name).then(
        () => this.#callEntry(caller, name, fn, args, options, chain),
        (e) => {
          throw new PluginNotFoundError(name, {
            ...errorOptions(caller, fn),
            cause: e,
          });
        },
      );
    }
    return this.#callEntry(caller, name, fn, args, options, chain);
  }

  #callEntry(
    caller: string | undefined,
    name: string,
    fn: string,
    args: Uint8Array | null,
    options: CallOptions,
    chain: readonly string[],
  ): Promise<Uint8Array | null> {
    const entry = this.#entries.get(name);
    if (!entry) {
      return Promise.reject(
        new PluginNotFoundError(name, errorOptions(caller, fn)),
      );
    }
    if (!entry.enabled) {
      return Promise.reject(
        new PluginDisabledError(name, {
          ...errorOptions(caller, fn),
          ...(entry.reason ? { reason: entry.reason } : {}),
        }),
      );
    }

    const parent = options.parent;
    const now = Date.now();
    let deadline = now +
      (options.timeoutMs ?? this.functionTimeoutMs(name, fn));
    if (parent && parent.deadline < deadline) deadline = parent.deadline;
    const timeoutMs = Math.max(0, deadline - now);
    // One controller per call; the parent's and the caller's signals are
    // linked by listeners (AbortSignal.any costs tens of µs per call here).
    const controller = new AbortController();
    const language = options.language ?? parent?.language;
    const ctx: {
      caller?: string;
      language?: string;
      chain: readonly string[];
      deadline: number;
      signal: AbortSignal;
    } = {
      chain: chain.length === 0 ? [name] : [...chain, name],
      deadline,
      signal: controller.signal,
    };
    if (caller) ctx.caller = caller;
    if (language) ctx.language = language;
    const upParent = parent?.signal;
    const upOwn = options.signal;
    if (upParent?.aborted) return Promise.reject(upParent.reason);
    if (upOwn?.aborted) return Promise.reject(upOwn.reason);

    entry.inFlight++;
    const deadlines = this.#deadlines;
    return new Promise<Uint8Array | null>((resolve, reject) => {
      let settled = false;
      const settle = () => {
        settled = true;
        deadlines.delete(pending);
        if (onAbort) {
          upParent?.removeEventListener("abort", onAbort);
          upOwn?.removeEventListener("abort", onAbort);
        }
        if (--entry.inFlight === 0 && entry.drained.length > 0) {
          for (const done of entry.drained.splice(0)) done();
        }
      };
      const pending = deadlines.add(deadline, () => {
        if (settled) return;
        const err = new PluginTimeoutError(
          name,
          timeoutMs,
          errorOptions(caller, fn),
        );
        controller.abort(err);
        settle();
        reject(err);
      });
      let onAbort: (() => void) | undefined;
      if (upParent || upOwn) {
        onAbort = () => {
          if (settled) return;
          const reason = upParent?.aborted ? upParent.reason : upOwn!.reason;
          controller.abort(reason);
          settle();
          reject(reason);
        };
        upParent?.addEventListener("abort", onAbort, { once: true });
        upOwn?.addEventListener("abort", onAbort, { once: true });
      }
      const interceptors = this.#interceptors;
      let result: Promise<Uint8Array | null>;
      try {
        result = interceptors.length === 0
          ? entry.plugin.call(fn, args, ctx)
          : runIntercepted(
            interceptors,
            caller
              ? { plugin: name, fn, args, ctx, caller }
              : { plugin: name, fn, args, ctx },
            () => entry.plugin.call(fn, args, ctx),
          );
      } catch (e) {
        result = Promise.reject(e);
      }
      result.then((out) => {
        if (settled) return;
        settle();
        resolve(out);
      }, (e) => {
        if (settled) return;
        settle();
        reject(e);
      });
    });
  }

  #drain(entry: Entry, graceMs: number): Promise<void> {
    if (entry.inFlight === 0) return Promise.resolve();
    return new Promise((resolve) => {
      const timer = setTimeout(resolve, graceMs);
      entry.drained.push(() => {
        clearTimeout(timer);
        resolve();
      });
    });
  }

  #collect<T>(
    pick: (m: GKRegistration) => readonly T[] | undefined,
  ): Contributed<T>[] {
    const out: Contributed<T>[] = [];
    for (const [name, e] of [...this.#entries].sort(([a], [b]) => cmp(a, b))) {
      if (!e.enabled) continue;
      for (const spec of pick(e.manifest) ?? []) {
        out.push({ ...spec, plugin: name });
      }
    }
    return out;
  }

  #emit(event: ManagerEvent): void {
    for (const l of this.#listeners) {
      try {
        l(event);
      } catch (e) {
        this.logs.log(event.name, "error", `listener failed: ${errorText(e)}`);
      }
    }
  }
}

const EMPTY_CHAIN: readonly string[] = Object.freeze([]);

/** The options naming the function (and caller) in a call's errors. */
function errorOptions(
  caller: string | undefined,
  fn: string,
): { caller?: string; function: string } {
  return caller ? { caller, function: fn } : { function: fn };
}

function cmp(a: string, b: string): number {
  return a < b ? -1 : a > b ? 1 : 0;
}

function byName(a: GKRegistration, b: GKRegistration): number {
  return cmp(a.name, b.name);
}

function sortByOrder<T extends { id: string; order?: number | undefined }>(
  items: T[],
): T[] {
  return items.sort((a, b) =>
    (a.order ?? 0) - (b.order ?? 0) || cmp(a.id, b.id)
  );
}
