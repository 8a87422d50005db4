/**
 * The JSON API under `/api/v1`. Every endpoint needs a principal (Bearer
 * token or session cookie + `X-CSRF-Token` for state changes); everything
 * beyond reading the plugin list, details and widgets needs admin rights —
 * unlike GoatFlow, calling an arbitrary plugin function is admin only.
 *
 * @module
 */

import { Hono } from "hono";
import { bodyLimit } from "hono/body-limit";
import type { Context, MiddlewareHandler } from "hono";
import { errorText, PluginNotFoundError } from "../model/errors.ts";
import { LOG_LEVELS, type LogLevel } from "../model/host_api.ts";
import { requireAuth } from "./auth/authenticator.ts";
import {
  allPluginInfos,
  pluginInfo,
  renderWidget,
  type ServerContext,
} from "./context.ts";
import { markup, raw } from "./html.ts";
import type { LogSearch } from "../log_buffer.ts";
import type { ServerAuditSearch, ServerInstallOverrides } from "./options.ts";
import { OVERLOAD_RETRY_AFTER_SEC } from "./unavailable.ts";
import { parseQuotaLimits, type QuotaLimits } from "../quotas/quota_limits.ts";
import {
  BadRequestError,
  BodyTooLargeError,
  hostErrorToHttp,
  PLUGIN_HTML_HEADERS,
  preferredLanguage,
  readBody,
} from "./plugin_http.ts";

/** Parses a `limit` query value: a positive integer, else `fallback`. */
export function parseLimit(
  value: string | undefined,
  fallback: number,
  max = 10_000,
): number {
  const n = Number(value);
  return Number.isInteger(n) && n > 0 ? Math.min(n, max) : fallback;
}

/** Parses a log level name; `undefined` for anything else. */
export function parseLevel(value: string | undefined): LogLevel | undefined {
  return LOG_LEVELS.includes(value as LogLevel) ? value as LogLevel : undefined;
}

/**
 * Parses a time filter: an RFC 3339 time, or a duration before now such as
 * `90s`, `15m`, `2h`, `7d`; `undefined` for nothing, `null` when unreadable.
 *
 * @example
 * ```ts
 * import { parseTimeFilter } from "./api.ts";
 * parseTimeFilter("2026-01-02T03:04:05Z", 0); // "2026-01-02T03:04:05.000Z"
 * parseTimeFilter("1h", Date.UTC(2026, 0, 1, 12)); // "2026-01-01T11:00:00.000Z"
 * ```
 */
export function parseTimeFilter(
  value: string | undefined,
  now = Date.now(),
): string | undefined | null {
  if (value === undefined || value.trim() === "") return undefined;
  const v = value.trim();
  const m = /^(\d+(?:\.\d+)?)(ms|s|m|h|d)$/.exec(v);
  if (m) {
    const unit = { ms: 1, s: 1e3, m: 60e3, h: 3600e3, d: 86400e3 }[
      m[2] as "ms"
    ];
    return new Date(now - Number(m[1]) * unit).toISOString();
  }
  const t = Date.parse(v);
  return Number.isNaN(t) ? null : new Date(t).toISOString();
}

/**
 * The log filters of a request's query: `plugin`, `level` (at least),
 * `since` / `until` (RFC 3339 or a duration ago), `q` (text), `after` (id
 * cursor), `order` (`asc`/`desc`), `limit`; an error text when one is
 * unreadable.
 */
export function logSearchFrom(
  c: Context,
  defaultLimit: number,
  maxLimit = 10_000,
): LogSearch | string {
  const plugin = c.req.query("plugin") || undefined;
  const minLevel = parseLevel(c.req.query("level"));
  const since = parseTimeFilter(c.req.query("since"));
  const until = parseTimeFilter(c.req.query("until"));
  if (since === null || until === null) {
    return 'Cannot read "since"/"until": give an RFC 3339 time or a duration such as 15m, 2h, 7d';
  }
  const text = c.req.query("q") || c.req.query("grep") || undefined;
  const afterRaw = c.req.query("after");
  const after = afterRaw === undefined || afterRaw === ""
    ? undefined
    : Number(afterRaw);
  if (after !== undefined && !(Number.isSafeInteger(after) && after >= 0)) {
    return 'Cannot read "after": give a log entry id';
  }
  return {
    ...(plugin !== undefined ? { plugin } : {}),
    ...(minLevel ? { minLevel } : {}),
    ...(since ? { since } : {}),
    ...(until ? { until } : {}),
    ...(text ? { text: text.slice(0, 200) } : {}),
    ...(after !== undefined ? { after } : {}),
    ...(c.req.query("order") === "asc" ? { order: "asc" as const } : {}),
    limit: parseLimit(c.req.query("limit"), defaultLimit, maxLimit),
  };
}

/**
 * The audit filters of a request's query: `plugin`, `since`, `until`,
 * `outcome`, `action`, `q` (text), `limit`; an error text when unreadable.
 */
export function auditSearchFrom(
  c: Context,
  defaultLimit: number,
): ServerAuditSearch | string {
  const since = parseTimeFilter(c.req.query("since"));
  const until = parseTimeFilter(c.req.query("until"));
  if (since === null || until === null) {
    return 'Cannot read "since"/"until": give an RFC 3339 time or a duration such as 15m, 2h, 7d';
  }
  const pick = (k: string) => c.req.query(k) || undefined;
  const text = pick("q");
  return {
    ...(pick("plugin") !== undefined ? { plugin: pick("plugin")! } : {}),
    ...(since ? { since } : {}),
    ...(until ? { until } : {}),
    ...(pick("outcome") ? { outcome: pick("outcome")! } : {}),
    ...(pick("action") ? { action: pick("action")! } : {}),
    ...(text ? { text: text.slice(0, 200) } : {}),
    limit: parseLimit(c.req.query("limit"), defaultLimit),
  };
}

/**
 * The message for a grant of permissions the plugin's manifest does not
 * request: `Cannot grant "a", "b" to plugin "p": manifest does not request them`.
 */
export function notRequestedText(
  plugin: string,
  permissions: readonly string[],
): string {
  return `Cannot grant ${
    permissions.map((p) => `"${p}"`).join(", ")
  } to plugin "${plugin}": manifest does not request ${
    permissions.length === 1 ? "it" : "them"
  }`;
}

function notImplemented(c: Context, what: string): Response {
  return c.json({ error: `${what} is not available on this host` }, 501);
}

async function jsonBody(
  c: Context,
  limit: number,
): Promise<Record<string, unknown>> {
  const bytes = await readBody(c.req.raw, limit);
  if (bytes.byteLength === 0) return {};
  let v: unknown;
  try {
    v = JSON.parse(new TextDecoder().decode(bytes));
  } catch (e) {
    throw new BadRequestError(
      `Cannot parse request body as JSON: ${(e as Error).message}`,
      { cause: e },
    );
  }
  return v && typeof v === "object" && !Array.isArray(v)
    ? v as Record<string, unknown>
    : {};
}

function permissionsFrom(body: Record<string, unknown>): string[] | undefined {
  const p = body.permissions;
  if (p === undefined) return undefined;
  if (!Array.isArray(p) || !p.every((x) => typeof x === "string")) {
    throw new BadRequestError(
      'Cannot read "permissions": it must be an array of strings',
    );
  }
  return p;
}

/** Reads an uploaded package: multipart field `plugin`/`file`/`package`, or the raw body. */
export async function readUpload(
  c: Context,
  limit: number,
): Promise<
  { bytes: Uint8Array; filename?: string; fields: Record<string, string> }
> {
  const type = c.req.header("content-type") ?? "";
  if (type.startsWith("multipart/form-data")) {
    const declared = Number(c.req.header("content-length") ?? "NaN");
    if (Number.isFinite(declared) && declared > limit + 64 * 1024) {
      throw new BodyTooLargeError(limit);
    }
    let form: FormData;
    try {
      form = await c.req.raw.formData();
    } catch (e) {
      throw new BadRequestError(
        `Cannot parse multipart body: ${(e as Error).message}`,
        {
          cause: e,
        },
      );
    }
    const fields: Record<string, string> = {};
    let file: File | undefined;
    for (const [k, v] of form) {
      if (typeof v === "string") fields[k] = v;
      else if (!file && ["plugin", "file", "package"].includes(k)) file = v;
    }
    if (!file) {
      throw new BadRequestError(
        'Cannot read upload: it has no file (field "plugin")',
      );
    }
    if (file.size > limit) throw new BodyTooLargeError(limit);
    return {
      bytes: new Uint8Array(await file.arrayBuffer()),
      filename: file.name,
      fields,
    };
  }
  const bytes = await readBody(c.req.raw, limit);
  const filename = c.req.query("filename");
  return { bytes, ...(filename ? { filename } : {}), fields: {} };
}

/** Whether a form field or query value switches an option on. */
export function isYes(value: string | undefined): boolean {
  return value !== undefined &&
    ["1", "true", "on", "yes"].includes(value.trim().toLowerCase());
}

/**
 * The operator overrides of an upload: fields (or, for a raw body, query
 * values) `allow_signer_change` and `allow_downgrade`.
 */
export function installOverrides(
  c: Context,
  fields: Record<string, string>,
): ServerInstallOverrides {
  const flag = (k: string) => isYes(fields[k] ?? c.req.query(k));
  return {
    ...(flag("allow_signer_change") ? { allowSignerChange: true } : {}),
    ...(flag("allow_downgrade") ? { allowDowngrade: true } : {}),
  };
}

/** The JSON body of a refused package install or uninstall. */
export interface PackageErrorBody {
  /** What went wrong. */
  error: {
    /** Machine-readable code, such as `signature_required`. */
    code: string;
    /** What went wrong and how to fix it (no server paths). */
    message: string;
    /** Structured details (such as the differing manifest fields). */
    details: Record<string, unknown>;
  };
}

/** Names of the package errors that carry their own `status` and `code`. */
const PACKAGE_ERRORS = new Set([
  "PackageRejectedError",
  "SignerMismatchError",
  "DowngradeRefusedError",
  "PackageUninstallError",
]);

/**
 * Replaces absolute paths of this server's file system in `text` by their
 * last part (`/srv/x/plugins/.install-1/plugin.wasm` → `plugin.wasm`): a
 * path is one when its first folder exists here, so route paths such as
 * `/api/plugins/x` stay.
 *
 * @example
 * ```ts
 * import { redactServerPaths } from "./api.ts";
 * const dir = Deno.makeTempDirSync();
 * redactServerPaths(`cannot read "${dir}/plugin.wasm"`); // 'cannot read "plugin.wasm"'
 * Deno.removeSync(dir);
 * ```
 */
export function redactServerPaths(text: string): string {
  return text.replace(
    /(?<![\w:/.~-])\/[A-Za-z0-9._@+-]+(?:\/[A-Za-z0-9._@+-]*)*/g,
    (path) => {
      const first = path.split("/")[1] ?? "";
      let local = false;
      try {
        local = first !== "" && Deno.statSync(`/${first}`) !== undefined;
      } catch { /* not a folder here: a route or URL path */ }
      if (!local) return path;
      const parts = path.split("/").filter(Boolean);
      return parts.at(-1) ?? path;
    },
  );
}

/**
 * The status and `{error: {code, message, details}}` body of an error of a
 * package upload, install or uninstall: the refusal's own status (400 bad
 * package, 403 signature or trust, 404 unknown plugin, 409 conflict, 413
 * too big, 422 invalid manifest); 500 only for a fault of the host itself.
 *
 * @example
 * ```ts
 * import { packageErrorHttp } from "./api.ts";
 * import { PackageRejectedError } from "../loading/zip_reader.ts";
 * const r = packageErrorHttp(new PackageRejectedError("not a ZIP archive"));
 * console.log(r.status, r.body.error.code); // 400 "package_invalid"
 * ```
 */
export function packageErrorHttp(
  e: unknown,
): { status: number; body: PackageErrorBody } {
  const x = (e ?? {}) as {
    name?: unknown;
    code?: unknown;
    status?: unknown;
    details?: unknown;
  };
  let status = 500;
  let code = "internal_error";
  let details: Record<string, unknown> = {};
  let message = redactServerPaths(errorText(e));
  if (e instanceof BodyTooLargeError) {
    status = 413;
    code = "upload_too_large";
    message = `${message}; upload a smaller package`;
  } else if (e instanceof BadRequestError) {
    status = 400;
    code = "upload_invalid";
    message =
      `${message}; send the package as multipart field "plugin" or as the raw request body`;
  } else if (
    typeof x.name === "string" && PACKAGE_ERRORS.has(x.name) &&
    typeof x.status === "number" && x.status >= 400 && x.status < 500 &&
    typeof x.code === "string"
  ) {
    status = x.status;
    code = x.code;
    details = x.details && typeof x.details === "object"
      ? x.details as Record<string, unknown>
      : {};
  } else if (x.name === "SignerPinFileError") {
    code = "signer_pins_unreadable";
    message =
      `${message}; an operator must repair or remove the signer pin file (package_signers.json in the data folder)`;
  }
  return { status, body: { error: { code, message, details } } };
}

/**
 * A plugin's info with `signature: {status, fingerprint?}` of its package
 * (`null` when it was not installed from a package), when the host has a
 * package seam that knows it.
 */
async function withSignature<T extends { name: string }>(
  ctx: ServerContext,
  info: T,
): Promise<
  T & { signature?: { status: string; fingerprint?: string } | null }
> {
  const lookup = ctx.options.packages?.signature;
  if (!lookup) return info;
  const signature = await lookup.call(ctx.options.packages, info.name)
    .catch(() => undefined);
  return { ...info, signature: signature ?? null };
}

/** Builds the `/api/v1` sub-app. */
export function createApi(ctx: ServerContext): Hono {
  const api = new Hono();
  const auth = requireAuth(ctx.auth);
  const admin = requireAuth(ctx.auth, { admin: true });
  const small = 1024 * 1024;
  const uploadLimit = ctx.options.maxUploadBytes ?? 50 * 1024 * 1024;
  // A call of a plugin function takes a place of the server-wide limit.
  const admitted: MiddlewareHandler = async (_c, next) => {
    if (!ctx.admission.tryEnter()) return ctx.admission.overloaded();
    try {
      await next();
    } finally {
      ctx.admission.leave();
    }
  };

  api.use(
    "/plugins/upload",
    bodyLimit({
      maxSize: uploadLimit + 1024 * 1024,
      onError: (c) =>
        c.json(
          {
            error: {
              code: "upload_too_large",
              message:
                `Cannot install package: the upload is larger than ${uploadLimit} bytes; upload a smaller package (or raise the host's upload limit)`,
              details: { limit: uploadLimit },
            },
          } satisfies PackageErrorBody,
          413,
        ),
    }),
  );

  api.onError((e, c) => {
    if (e.name === "JobNotFoundError") return c.json({ error: e.message }, 404);
    const plugin = c.req.param("name") ?? "";
    const mapped = hostErrorToHttp(e, plugin, ctx.manager.errorCodes);
    if (mapped.status === 500) {
      ctx.logs.log(plugin, "error", `API error: ${errorText(e)}`);
    }
    return c.json(mapped.body, mapped.status as 500, mapped.headers);
  });

  // -- plugins ---------------------------------------------------------------
  api.get(
    "/plugins",
    auth,
    async (c) => {
      const infos = await allPluginInfos(ctx);
      return c.json({
        plugins: await Promise.all(infos.map((i) => withSignature(ctx, i))),
      });
    },
  );

  api.get("/plugins/widgets", auth, async (c) => {
    const location = c.req.query("location") || "dashboard";
    const widgets = await ctx.manager.allWidgets(location);
    return c.json({
      widgets: widgets.map((w) => ({
        id: w.id,
        title: w.title,
        plugin_name: w.plugin,
        location: w.location,
        size: w.size ?? "small",
        order: w.order ?? 0,
        refreshable: w.refreshable ?? false,
        ...(w.refresh_sec !== undefined ? { refresh_sec: w.refresh_sec } : {}),
      })),
    });
  });

  api.get("/plugins/menu", auth, (c) => {
    const location = c.req.query("location") || "admin";
    return c.json({ menu_items: ctx.manager.menuItems(location) });
  });

  api.get("/plugins/logs", admin, async (c) => {
    const q = logSearchFrom(c, 100);
    if (typeof q === "string") return c.json({ error: q }, 400);
    const logs = await ctx.logs.search(q);
    return c.json({ logs, count: logs.length, total: await ctx.logs.total() });
  });

  api.delete("/plugins/logs", admin, async (c) => {
    await ctx.logs.clearAll();
    ctx.options.audit?.record?.({
      plugin: "",
      action: "logs.clear",
      permission: "",
      attempted: "cleared the plugin logs",
      outcome: "cleared",
    });
    return c.json({ message: "Plugin logs cleared" });
  });

  api.post("/plugins/upload", admin, async (c) => {
    const packages = ctx.options.packages;
    if (!packages) return notImplemented(c, "package install");
    try {
      const { bytes, filename, fields } = await readUpload(c, uploadLimit);
      const signature = fields.signature?.trim() ||
        c.req.header("x-goatkit-signature");
      const signer = fields.signer?.trim() || c.req.header("x-goatkit-signer");
      const result = await packages.install(bytes, {
        ...(filename ? { filename } : {}),
        ...(signature ? { signature } : {}),
        ...(signer ? { signer } : {}),
        ...installOverrides(c, fields),
      });
      return c.json({ status: "installed", ...result });
    } catch (e) {
      const r = packageErrorHttp(e);
      if (r.status === 500) {
        ctx.logs.log("", "error", `package install: ${errorText(e)}`);
      }
      return c.json(r.body, r.status as 400);
    }
  });

  api.get("/plugins/:name", auth, async (c) => {
    const info = await pluginInfo(ctx, c.req.param("name"));
    if (!info) {
      return c.json(
        { error: new PluginNotFoundError(c.req.param("name")).message },
        404,
      );
    }
    return c.json(await withSignature(ctx, info));
  });

  api.delete("/plugins/:name", admin, async (c) => {
    const packages = ctx.options.packages;
    if (!packages) return notImplemented(c, "package uninstall");
    const forgetSigner = isYes(c.req.query("forget_signer"));
    try {
      await packages.uninstall(
        c.req.param("name"),
        forgetSigner ? { forgetSigner } : undefined,
      );
    } catch (e) {
      const r = packageErrorHttp(e);
      if (r.status === 500) {
        ctx.logs.log(
          c.req.param("name"),
          "error",
          `package uninstall: ${errorText(e)}`,
        );
      }
      return c.json(r.body, r.status as 400);
    }
    return c.json({ status: "uninstalled" });
  });

  api.post("/plugins/:name/call/:fn", admin, admitted, async (c) => {
    const name = c.req.param("name");
    const body = await readBody(c.req.raw, ctx.options.maxBodyBytes ?? small);
    let args: Uint8Array | null = null;
    if (body.byteLength > 0) {
      try {
        JSON.parse(new TextDecoder().decode(body));
        args = body;
      } catch { /* invalid JSON → no args, as in GoatFlow */ }
    }
    const language = preferredLanguage(c.req.header("accept-language"));
    const result = await ctx.manager.call(name, c.req.param("fn"), args, {
      ...(language ? { language } : {}),
      ...(ctx.callTimeoutMs ? { timeoutMs: ctx.callTimeoutMs } : {}),
    });
    return new Response(
      (result && result.byteLength > 0
        ? result
        : new TextEncoder().encode("null")) as Uint8Array<
          ArrayBuffer
        >,
      { headers: { "content-type": "application/json; charset=utf-8" } },
    );
  });

  api.get("/plugins/:name/widgets/:id", auth, async (c) => {
    const name = c.req.param("name");
    const id = c.req.param("id");
    const language = preferredLanguage(c.req.header("accept-language"));
    const r = await renderWidget(ctx, name, id, language);
    if (!r.ok) {
      return c.text(r.message, r.status as 404, {
        "x-content-type-options": "nosniff",
        ...(r.status === 503
          ? { "retry-after": String(OVERLOAD_RETRY_AFTER_SEC) }
          : {}),
      });
    }
    let body = r.html;
    if (c.req.query("wrap") === "true") {
      const w = ctx.manager.manifest(name)?.widgets?.find((x) => x.id === id);
      body = markup`
        <div class="widget">
          <header>${w?.title ?? id}</header>
          <div class="body">${raw(r.html)}</div>
        </div>
      `.value;
    }
    return new Response(body, { headers: PLUGIN_HTML_HEADERS });
  });

  api.post("/plugins/:name/enable", admin, async (c) => {
    await ctx.manager.enable(c.req.param("name"));
    return c.json({ status: "enabled" });
  });

  api.post("/plugins/:name/disable", admin, async (c) => {
    await ctx.manager.disable(c.req.param("name"));
    return c.json({ status: "disabled" });
  });

  api.post("/plugins/:name/reload", admin, async (c) => {
    const loader = ctx.options.loader;
    if (!loader) return notImplemented(c, "plugin reload");
    const name = c.req.param("name");
    const known = ctx.manager.manifest(name) !== undefined;
    await loader.reload(name); // our Loader throws PluginNotFoundError (404)
    const info = await pluginInfo(ctx, name);
    if (!info && known) return c.json({ status: "removed" }); // gone from disk
    if (!info) throw new PluginNotFoundError(name);
    return c.json({
      status: "reloaded",
      plugin: {
        name,
        status: info.status,
        ...(info.statusReason ? { statusReason: info.statusReason } : {}),
      },
    });
  });

  // -- grants ----------------------------------------------------------------
  api.get("/plugins/:name/grants", admin, async (c) => {
    const info = await pluginInfo(ctx, c.req.param("name"));
    if (!info?.loaded) throw new PluginNotFoundError(c.req.param("name"));
    if (!ctx.options.grants) return notImplemented(c, "permission grants");
    return c.json({ plugin: info.name, ...info.permissions });
  });

  api.post("/plugins/:name/grants", admin, async (c) => {
    const grants = ctx.options.grants;
    if (!grants) return notImplemented(c, "permission grants");
    const name = c.req.param("name");
    const m = ctx.manager.manifest(name);
    if (!m) throw new PluginNotFoundError(name);
    const requested = m.permissions ?? [];
    const perms = permissionsFrom(await jsonBody(c, small)) ?? requested;
    const notRequested = perms.filter((p) => !requested.includes(p));
    if (notRequested.length > 0) {
      return c.json({
        error: notRequestedText(name, notRequested),
      }, 400);
    }
    await grants.approve(name, perms);
    ctx.logs.log(
      name,
      "info",
      `permissions granted: ${perms.join(", ") || "(none)"}`,
    );
    const info = await pluginInfo(ctx, name);
    return c.json({ plugin: name, ...info!.permissions });
  });

  api.delete("/plugins/:name/grants", admin, async (c) => {
    const grants = ctx.options.grants;
    if (!grants) return notImplemented(c, "permission grants");
    const name = c.req.param("name");
    const perms = permissionsFrom(await jsonBody(c, small));
    await grants.revoke(name, perms);
    ctx.logs.log(
      name,
      "info",
      `permissions revoked: ${perms?.join(", ") ?? "all"}`,
    );
    const info = await pluginInfo(ctx, name);
    return c.json({ plugin: name, ...(info?.permissions ?? {}) });
  });

  // -- quotas ----------------------------------------------------------------
  // The limits in force, each layer (defaults, config file, overrides) and
  // the use now; PUT replaces the operator's overrides (`null` or absent =
  // inherit, 0 = no limit), kept in the database and audited.
  api.get("/plugins/:name/quotas", admin, async (c) => {
    const quotas = ctx.options.quotas;
    if (!quotas) return notImplemented(c, "plugin quotas");
    const name = c.req.param("name");
    if (!(await pluginInfo(ctx, name))) throw new PluginNotFoundError(name);
    return c.json(await quotas.report(name));
  });

  api.put("/plugins/:name/quotas", admin, async (c) => {
    const quotas = ctx.options.quotas;
    if (!quotas) return notImplemented(c, "plugin quotas");
    const name = c.req.param("name");
    if (!(await pluginInfo(ctx, name))) throw new PluginNotFoundError(name);
    const body = await jsonBody(c, small);
    const raw = Object.hasOwn(body, "overrides") ? body.overrides : body;
    let limits: Partial<QuotaLimits>;
    try {
      limits = parseQuotaLimits(raw, "overrides");
    } catch (e) {
      throw new BadRequestError(errorText(e), { cause: e });
    }
    await quotas.setOverrides(name, limits);
    return c.json(await quotas.report(name));
  });

  // -- audit, jobs, routes, tokens --------------------------------------------
  api.get("/audit", admin, async (c) => {
    const audit = ctx.options.audit;
    if (!audit) return notImplemented(c, "the audit log");
    const f = auditSearchFrom(c, 100);
    if (typeof f === "string") return c.json({ error: f }, 400);
    const entries = audit.search ? await audit.search(f) : await audit.query({
      ...(f.plugin ? { plugin: f.plugin } : {}),
      ...(f.limit ? { limit: f.limit } : {}),
    });
    return c.json({ entries, count: entries.length });
  });

  api.get("/jobs", admin, async (c) => {
    const scheduler = ctx.options.scheduler;
    if (scheduler) {
      return c.json({ jobs: await scheduler.list(), scheduler: true });
    }
    return c.json({
      scheduler: false,
      jobs: ctx.manager.jobs().map((j) => ({
        plugin: j.plugin,
        id: j.id,
        schedule: j.schedule,
        description: j.description ?? "",
        enabled: false,
        lastRuns: [],
      })),
    });
  });

  api.post("/jobs/:plugin/:id/run", admin, async (c) => {
    const scheduler = ctx.options.scheduler;
    if (!scheduler) return notImplemented(c, "the scheduler");
    const run = await scheduler.runNow(
      c.req.param("plugin"),
      c.req.param("id"),
    );
    return c.json(run);
  });

  api.get("/routes", admin, (c) => {
    const t = ctx.table();
    return c.json({
      routes: t.routes,
      refused: t.refused.map((r) => ({
        plugin: r.plugin,
        error: r.error.message,
      })),
    });
  });

  api.get("/tokens", admin, async (c) => {
    const list = await ctx.tokens.list();
    return c.json({
      tokens: list.map(({ id, name, admin, created }) => ({
        id,
        name,
        admin,
        created,
      })),
    });
  });

  api.post("/tokens", admin, async (c) => {
    const body = await jsonBody(c, small);
    const name = typeof body.name === "string" && body.name.trim()
      ? body.name.trim()
      : "";
    if (!name || name.length > 100) {
      return c.json({ error: "name is required (≤ 100 chars)" }, 400);
    }
    const created = await ctx.tokens.create({
      name,
      admin: body.admin === true,
    });
    const { id, admin: isAdmin, created: at } = created.record;
    return c.json({
      token: created.token,
      id,
      name,
      admin: isAdmin,
      created: at,
    }, 201);
  });

  api.delete("/tokens/:id", admin, async (c) => {
    const id = c.req.param("id");
    if (!await ctx.tokens.revoke(id)) {
      return c.json({ error: "token not found" }, 404);
    }
    await ctx.sessions.deleteByToken(id);
    return c.json({ status: "revoked" });
  });

  api.all("*", (c) => c.json({ error: "not found" }, 404));
  return api;
}
