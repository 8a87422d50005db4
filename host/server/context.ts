/**
 * What the API and page modules share: the Manager, auth, stores, seams, the
 * current route table, and the plugin summary both of them show.
 *
 * @module
 */

import type { Context } from "hono";
import type { LogBuffer } from "../log_buffer.ts";
import type { Manager } from "../manager.ts";
import type { GKRegistration } from "../model/manifest.ts";
import { decodeJson, encodeJson } from "../model/plugin.ts";
import type { Authenticator } from "./auth/authenticator.ts";
import type { AdmissionGate } from "./admission.ts";
import { overloadRetryAfter } from "./unavailable.ts";
import type { AppOptions } from "./options.ts";
import type { RouteTable } from "./route_table.ts";
import type { SessionStore } from "./auth/sessions.ts";
import type { TokenStore } from "./auth/tokens.ts";
import { type PluginStatus, pluginStatus } from "./plugin_status.ts";

/** Internal state shared by the server's modules. */
export interface ServerContext {
  /** The Manager. */
  manager: Manager;
  /** The options given to `createApp`. */
  options: AppOptions;
  /** Request authentication. */
  auth: Authenticator;
  /** API tokens. */
  tokens: TokenStore;
  /** Browser sessions. */
  sessions: SessionStore;
  /** Log buffer. */
  logs: LogBuffer;
  /** Plugin HTML sanitiser. */
  sanitize: (html: string) => string;
  /** The current route table snapshot. */
  table(): RouteTable;
  /** Call timeout for HTTP-initiated plugin calls. */
  callTimeoutMs: number | undefined;
  /** The server-wide limit on plugin requests in flight. */
  admission: AdmissionGate;
  /**
   * Whether the request came over HTTPS (TLS, or a trusted proxy's
   * `X-Forwarded-Proto`); see `transport.ts`.
   */
  https(c: Context): boolean;
}

/** A plugin as the API lists it: GoatFlow's shape plus status and permissions. */
export interface PluginInfo {
  /** Manifest name. */
  name: string;
  /** Version (`""` when not loaded). */
  version: string;
  /** Description. */
  description: string;
  /** Author. */
  author: string;
  /** License. */
  license: string;
  /** Homepage. */
  homepage: string;
  /** Declared routes. */
  routes: NonNullable<GKRegistration["routes"]>;
  /** Declared widgets. */
  widgets: NonNullable<GKRegistration["widgets"]>;
  /** Declared jobs. */
  jobs: NonNullable<GKRegistration["jobs"]>;
  /** Declared menu items. */
  menuItems: NonNullable<GKRegistration["menu_items"]>;
  /** Whether calls are accepted. */
  enabled: boolean;
  /** Whether the plugin is registered (else only discovered). */
  loaded: boolean;
  /**
   * One word: `running`, `pending-grants`, `disabled`, `quarantined`,
   * `failed` or `not-loaded` (see `plugin_status.ts`).
   */
  status: PluginStatus;
  /** Why it has that status (load error, quarantine, pending grants, …). */
  statusReason?: string;
  /** Why the host disabled it (quarantine). */
  reason?: string;
  /** `native`, `wasm` or `grpc`. */
  runtime?: string;
  /** Calls in progress. */
  inFlight?: number;
  /** Permissions requested by the manifest vs granted by the operator. */
  permissions: {
    /** Requested by the manifest. */
    requested: string[];
    /** Granted (`null` without a grants seam). */
    granted: string[] | null;
    /** Requested and not granted: what an approval would add. */
    pending: string[];
    /** Granted but no longer requested. */
    unused: string[];
  };
  /** Set when the plugin's routes are left out of the table. */
  routeConflict?: string;
}

/** Builds the {@linkcode PluginInfo} of a registered or discovered plugin. */
export async function pluginInfo(
  ctx: ServerContext,
  name: string,
): Promise<PluginInfo | undefined> {
  const m = ctx.manager.manifest(name);
  const st = ctx.manager.status(name);
  if (!m || !st) {
    if (!ctx.manager.discovered().includes(name)) return undefined;
    const d = ctx.options.discovered?.().find((x) => x.name === name);
    const requested = [...(d?.permissions ?? [])];
    const view = pluginStatus({
      loaded: false,
      enabled: false,
      pending: [],
      loadError: ctx.options.loader?.failure?.(name),
      lazy: ctx.options.loader?.lazy ?? false,
      roots: statusRoots(ctx),
    });
    return {
      name,
      version: d?.version ?? "",
      description: d?.description ??
        (view.status === "failed"
          ? "Not loaded (failed)"
          : "Not loaded (lazy loading enabled)"),
      author: d?.author ?? "",
      license: d?.license ?? "",
      homepage: d?.homepage ?? "",
      routes: d?.routes ?? [],
      widgets: d?.widgets ?? [],
      jobs: d?.jobs ?? [],
      menuItems: d?.menu_items ?? [],
      enabled: false,
      loaded: false,
      ...view,
      permissions: { requested, granted: null, pending: [], unused: [] },
    };
  }
  const requested = [...(m.permissions ?? [])];
  let granted: string[] | null = null;
  if (ctx.options.grants) {
    granted = [...await ctx.options.grants.granted(name)];
  }
  const conflict = ctx.table().refused.find((r) => r.plugin === name);
  const pending = granted
    ? (ctx.options.grants?.pending?.(requested, granted) ??
      requested.filter((p) => p !== "log" && !granted.includes(p)))
    : [];
  const view = pluginStatus({
    loaded: true,
    enabled: st.enabled,
    quarantineReason: st.reason,
    pending,
    loadError: ctx.options.loader?.failure?.(name),
    roots: statusRoots(ctx),
  });
  return {
    name: m.name,
    version: m.version,
    description: m.description ?? "",
    author: m.author ?? "",
    license: m.license ?? "",
    homepage: m.homepage ?? "",
    routes: m.routes ?? [],
    widgets: m.widgets ?? [],
    jobs: m.jobs ?? [],
    menuItems: m.menu_items ?? [],
    enabled: st.enabled,
    loaded: true,
    ...view,
    ...(st.reason ? { reason: st.reason } : {}),
    runtime: st.runtime,
    inFlight: st.inFlight,
    permissions: {
      requested,
      granted,
      pending,
      unused: granted ? granted.filter((p) => !requested.includes(p)) : [],
    },
    ...(conflict ? { routeConflict: conflict.error.message } : {}),
  };
}

/** Folders whose absolute paths status texts show relative. */
function statusRoots(ctx: ServerContext): string[] {
  const l = ctx.options.loader;
  return [...(l?.dir ? [l.dir] : []), ...(l?.exampleDirs ?? [])];
}

/** Every registered plugin, then discovered ones not loaded, by name. */
export async function allPluginInfos(
  ctx: ServerContext,
): Promise<PluginInfo[]> {
  const names = ctx.manager.list().map((m) => m.name);
  const loaded = new Set(names);
  const discovered = ctx.manager.discovered().filter((n) => !loaded.has(n))
    .sort();
  const out: PluginInfo[] = [];
  for (const n of [...names, ...discovered]) {
    const info = await pluginInfo(ctx, n);
    if (info) out.push(info);
  }
  return out;
}

/** Outcome of rendering one widget. */
export type WidgetRender =
  | { ok: true; html: string }
  | { ok: false; status: number; message: string };

/**
 * Renders a widget: calls its handler with `{}` and the request language,
 * expects `{"html": "…"}`, returns the sanitised HTML. The call takes a
 * place of the server-wide in-flight limit: none free (or the runtime
 * overloaded) is status 503.
 */
export async function renderWidget(
  ctx: ServerContext,
  plugin: string,
  widgetId: string,
  language: string | undefined,
): Promise<WidgetRender> {
  if (
    !ctx.manager.isEnabled(plugin) && !ctx.manager.discovered().includes(plugin)
  ) {
    return { ok: false, status: 404, message: `Plugin not found: ${plugin}` };
  }
  if (!ctx.manager.manifest(plugin)) {
    // Discovered but not loaded: load it (through the loader when there is
    // one, else by loading every discovered plugin, as GoatFlow's AllWidgets).
    try {
      if (ctx.options.loader?.ensureLoaded) {
        await ctx.options.loader.ensureLoaded(plugin);
      } else await ctx.manager.allWidgets("");
    } catch (e) {
      ctx.logs.log(
        plugin,
        "warn",
        `lazy load failed: ${e instanceof Error ? e.message : e}`,
      );
    }
  }
  const m = ctx.manager.manifest(plugin);
  if (!m || !ctx.manager.isEnabled(plugin)) {
    return { ok: false, status: 404, message: `Plugin not found: ${plugin}` };
  }
  const w = (m.widgets ?? []).find((x) => x.id === widgetId);
  if (!w) {
    return {
      ok: false,
      status: 404,
      message: `Widget not found: ${plugin}/${widgetId}`,
    };
  }
  let result: Uint8Array | null;
  if (!ctx.admission.tryEnter()) {
    return {
      ok: false,
      status: 503,
      message: ctx.admission.overloadedBody().message,
    };
  }
  try {
    result = await ctx.manager.call(plugin, w.handler, encodeJson({}), {
      ...(language ? { language } : {}),
      ...(ctx.callTimeoutMs ? { timeoutMs: ctx.callTimeoutMs } : {}),
    });
  } catch (e) {
    ctx.logs.log(
      plugin,
      "warn",
      `widget "${widgetId}" failed: ${e instanceof Error ? e.message : e}`,
    );
    const overloaded = overloadRetryAfter(e) !== undefined;
    return {
      ok: false,
      status: overloaded ? 503 : 500,
      message: `Widget error: ${e instanceof Error ? e.message : e}`,
    };
  } finally {
    ctx.admission.leave();
  }
  let parsed: unknown;
  try {
    parsed = decodeJson(result);
  } catch {
    parsed = undefined;
  }
  const h = (parsed as { html?: unknown } | null)?.html;
  if (typeof h !== "string") {
    return { ok: false, status: 500, message: "Invalid widget response" };
  }
  return { ok: true, html: ctx.sanitize(h) };
}
