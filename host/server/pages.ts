/**
 * Server-rendered admin pages: login and logout, dashboard (widgets), plugin
 * list and details (enable, disable, reload, uninstall, permissions to
 * approve or revoke), package upload, logs, jobs, audit log and API tokens.
 *
 * Every value that comes from a plugin is escaped by the {@linkcode html}
 * tag; plugin HTML (widgets) goes through the sanitiser. Every form that
 * changes state carries the session's CSRF token.
 *
 * @module
 */

import type { Context, Hono } from "hono";
import { bodyLimit } from "hono/body-limit";
import { deleteCookie, getCookie, setCookie } from "hono/cookie";
import { randomBytes } from "node:crypto";
import { errorText } from "../errors.ts";
import { LOG_LEVELS } from "../host_api.ts";
import type { LogEntry } from "../log_buffer.ts";
import { checkCsrf, type Principal, requireAuth } from "./auth.ts";
import { parseLevel, parseLimit, readUpload } from "./api.ts";
import {
  allPluginInfos,
  type PluginInfo,
  pluginInfo,
  renderWidget,
  type ServerContext,
} from "./context.ts";
import { layout, markup, PAGE_HEADERS, raw, type SafeHtml } from "./html.ts";
import { errorToHttp, preferredLanguage } from "./plugin_http.ts";
import { safeEqual, SESSION_COOKIE } from "./sessions.ts";

const LOGIN_CSRF_COOKIE = "gk_login_csrf";

interface PageOptions {
  title: string;
  current?: string;
  flash?: { kind: "ok" | "error"; text: string };
  status?: number;
}

function render(
  c: Context,
  ctx: ServerContext,
  p: Principal | undefined,
  opts: PageOptions,
  body: SafeHtml,
): Response {
  const page = layout({
    title: opts.title,
    site: ctx.options.title ?? "GoatKit",
    ...(p
      ? {
        viewer: {
          name: p.name,
          admin: p.admin,
          ...(p.session ? { csrf: p.session.csrf } : {}),
        },
      }
      : {}),
    ...(opts.current ? { current: opts.current } : {}),
    // Admins see "admin" menu items; other users see "agent" ones (GoatFlow's locations).
    ...(p ? { menu: ctx.manager.menuItems(p.admin ? "admin" : "agent") } : {}),
    ...(opts.flash ? { flash: opts.flash } : {}),
  }, body);
  return c.html(page, (opts.status ?? 200) as 200, PAGE_HEADERS);
}

function csrfField(p: Principal | undefined): SafeHtml {
  return markup`<input type="hidden" name="_csrf" value="${
    p?.session?.csrf ?? ""
  }">`;
}

function postButton(
  p: Principal | undefined,
  action: string,
  label: string,
  opts: { cls?: string; confirm?: string; back?: "list" } = {},
): SafeHtml {
  const confirm = opts.confirm ? markup` data-confirm="${opts.confirm}"` : "";
  const back = opts.back
    ? markup`<input type="hidden" name="back" value="${opts.back}">`
    : "";
  return markup`<form class="inline" method="post" action="${action}"${confirm}>${
    csrfField(p)
  }${back}<button type="submit" class="${
    opts.cls ?? ""
  }">${label}</button></form>`;
}

function toggleButton(
  p: Principal | undefined,
  i: PluginInfo,
  back?: "list",
): SafeHtml {
  const base = `/admin/plugins/${encodeURIComponent(i.name)}`;
  const b = back ? { back } : {};
  if (!i.loaded) {
    return postButton(p, `${base}/enable`, "Load & enable", {
      cls: "primary",
      ...b,
    });
  }
  return i.enabled
    ? postButton(p, `${base}/disable`, "Disable", { cls: "danger", ...b })
    : postButton(p, `${base}/enable`, "Enable", { cls: "primary", ...b });
}

function statusBadge(info: PluginInfo): SafeHtml {
  const cls = info.status === "enabled"
    ? "ok"
    : info.status === "quarantined"
    ? "bad"
    : "off";
  const label = info.status === "not-loaded" ? "not loaded" : info.status;
  return markup`<span class="badge ${cls}" data-status="${info.status}">${label}</span>`;
}

function safeNext(next: string | undefined): string {
  return next && /^\/(?![/\\])/.test(next) && !/[\r\n]/.test(next)
    ? next
    : "/admin/";
}

/** Mounts the login/logout handlers and the `/admin` pages on `app`. */
export function mountPages(app: Hono, ctx: ServerContext): void {
  const authPage = requireAuth(ctx.auth, { style: "page", csrfHeader: false });
  const adminPage = requireAuth(ctx.auth, {
    admin: true,
    style: "page",
    csrfHeader: false,
  });
  const uploadLimit = ctx.options.maxUploadBytes ?? 50 * 1024 * 1024;
  const secure = ctx.options.secureCookies ?? false;
  const principal = (c: Context) => ctx.auth.principal(c);

  /** Parses a form and checks its `_csrf` field; `undefined` when refused. */
  async function form(
    c: Context,
  ): Promise<Record<string, string | string[]> | undefined> {
    const p = await principal(c);
    const body = await c.req.parseBody({ all: true });
    const fields: Record<string, string | string[]> = {};
    for (const [k, v] of Object.entries(body)) {
      if (typeof v === "string") fields[k] = v;
      else if (Array.isArray(v)) {
        fields[k] = v.filter((x) => typeof x === "string") as string[];
      }
    }
    const token = typeof fields._csrf === "string" ? fields._csrf : undefined;
    if (!p || !checkCsrf(p, c.req.method, token)) return undefined;
    return fields;
  }

  function csrfRefused(c: Context): Response {
    return c.html(
      "<!doctype html><meta charset=utf-8><title>403</title><p>Missing or invalid CSRF token. Reload the page and try again.</p>",
      403,
      PAGE_HEADERS,
    );
  }

  async function failure(
    c: Context,
    title: string,
    e: unknown,
    back: string,
  ): Promise<Response> {
    const mapped = errorToHttp(
      e,
      c.req.param("name") ?? "",
      ctx.manager.errorCodes,
    );
    const status = e instanceof TypeError || e instanceof SyntaxError
      ? 400
      : mapped.status;
    return render(c, ctx, await principal(c), {
      title,
      status,
      flash: { kind: "error", text: errorText(e) },
    }, markup`<p><a class="button" href="${back}">Back</a></p>`);
  }

  // Form bodies are small; uploads get their own limit.
  const tooLarge = (c: Context) => c.text("Payload Too Large", 413);
  const formLimit = bodyLimit({ maxSize: 256 * 1024, onError: tooLarge });
  const uploadBodyLimit = bodyLimit({
    maxSize: uploadLimit + 1024 * 1024,
    onError: tooLarge,
  });
  app.use("/login", formLimit);
  app.use("/logout", formLimit);
  app.use("/admin/*", async (c, next) => {
    if (c.req.method === "GET" || c.req.method === "HEAD") return await next();
    return c.req.path === "/admin/plugins/upload"
      ? await uploadBodyLimit(c, next)
      : await formLimit(c, next);
  });

  // -- login / logout -----------------------------------------------------------
  app.get("/login", async (c) => {
    const p = await principal(c);
    if (p?.via === "session") {
      return c.redirect(safeNext(c.req.query("next")), 303);
    }
    const csrf = randomBytes(24).toString("base64url");
    setCookie(c, LOGIN_CSRF_COOKIE, csrf, {
      httpOnly: true,
      sameSite: "Strict",
      path: "/login",
      secure,
      maxAge: 3600,
    });
    const failed = c.req.query("failed") === "1";
    const body = markup`
      <div class="login panel">
        <form method="post" action="/login">
          <input type="hidden" name="_csrf" value="${csrf}">
          <input type="hidden" name="next" value="${
      safeNext(
        c.req.query("next"),
      )
    }">
          <label for="token">API token</label>
          <input id="token" name="token" type="password"
            autocomplete="current-password" required autofocus placeholder="gk_…">
          <button class="primary" type="submit">Log in</button>
          <p
            class="muted">Use the admin token printed when the host first started, or a token an admin created for you.</p>
        </form>
      </div>
    `;
    return render(c, ctx, undefined, {
      title: "Log in",
      ...(failed
        ? { flash: { kind: "error", text: "Invalid token." }, status: 401 }
        : {}),
    }, body);
  });

  app.post("/login", async (c) => {
    const body = await c.req.parseBody();
    const cookie = getCookie(c, LOGIN_CSRF_COOKIE);
    const presented = typeof body._csrf === "string" ? body._csrf : "";
    if (!cookie || !presented || !safeEqual(cookie, presented)) {
      return csrfRefused(c);
    }
    const next = safeNext(
      typeof body.next === "string" ? body.next : undefined,
    );
    const token = typeof body.token === "string" ? body.token.trim() : "";
    const rec = token ? await ctx.tokens.verify(token) : undefined;
    if (!rec) {
      ctx.logs.log("", "warn", "login failed: unknown token");
      return c.redirect(
        `/login?failed=1&next=${encodeURIComponent(next)}`,
        303,
      );
    }
    const { id } = ctx.sessions.create({
      tokenId: rec.id,
      name: rec.name,
      admin: rec.admin,
    });
    deleteCookie(c, LOGIN_CSRF_COOKIE, { path: "/login" });
    setCookie(c, SESSION_COOKIE, id, {
      httpOnly: true,
      sameSite: "Strict",
      path: "/",
      secure,
    });
    ctx.logs.log("", "info", `login: token "${rec.name}" (${rec.id})`);
    return c.redirect(next, 303);
  });

  app.post("/logout", async (c) => {
    const fields = await form(c);
    if (!fields) return csrfRefused(c);
    ctx.sessions.delete(getCookie(c, SESSION_COOKIE));
    deleteCookie(c, SESSION_COOKIE, { path: "/" });
    return c.redirect("/login", 303);
  });

  // -- home / dashboard ---------------------------------------------------------
  const home = async (c: Context) => {
    const p = await principal(c);
    return c.redirect(p?.admin ? "/admin/plugins" : "/admin/dashboard", 302);
  };
  app.get("/admin", authPage, home);
  app.get("/admin/", authPage, home);

  app.get("/admin/dashboard", authPage, async (c) => {
    const p = await principal(c);
    const language = preferredLanguage(c.req.header("accept-language"));
    const widgets = await ctx.manager.allWidgets("dashboard");
    const rendered = await Promise.all(
      widgets.map((w) => renderWidget(ctx, w.plugin, w.id, language)),
    );
    const cards = widgets.map((w, i) => {
      const r = rendered[i]!;
      const url = `/api/v1/plugins/${encodeURIComponent(w.plugin)}/widgets/${
        encodeURIComponent(w.id)
      }`;
      const refresh = w.refreshable && (w.refresh_sec ?? 0) > 0
        ? w.refresh_sec
        : undefined;
      const refreshAttr = refresh ? raw(` data-refresh-sec="${refresh}"`) : "";
      const content = r.ok
        ? raw(r.html)
        : markup`<p class="muted">${r.message}</p>`;
      const id = `widget-${w.plugin}-${w.id}`;
      return markup`<section class="widget size-${
        w.size ?? "small"
      }" data-widget="${w.plugin}:${w.id}">
<header><span>${w.title}</span><span class="badge">${w.plugin}</span></header>
<div class="body" id="${id}" data-refresh-url="${url}"${refreshAttr}>${content}</div>
</section>`;
    });
    return render(
      c,
      ctx,
      p,
      { title: "Dashboard", current: "dashboard" },
      cards.length > 0 ? markup`<div class="widgets">${cards}</div>` : markup`
        <p
          class="muted">No widgets. Enabled plugins that declare widgets at location "dashboard" show them here.</p>
      `,
    );
  });

  // -- plugins --------------------------------------------------------------------
  app.get("/admin/plugins", adminPage, async (c) => {
    const p = await principal(c);
    const infos = await allPluginInfos(ctx);
    const count = (s: PluginInfo["status"]) =>
      infos.filter((i) => i.status === s).length;
    const rows = infos.map((i) =>
      markup`
        <tr data-plugin="${i.name}">
          <td><a href="/admin/plugins/${
        encodeURIComponent(i.name)
      }"><b>${i.name}</b></a><div class="muted">${
        i.description.length > 80
          ? i.description.slice(0, 80) + "…"
          : i.description
      }</div></td>
          <td>${i.version || "—"}</td>
          <td>${i.runtime ?? "—"}</td>
          <td>${statusBadge(i)}${
        i.reason ? markup`<div class="muted">${i.reason}</div>` : ""
      }${
        i.routeConflict
          ? markup`<div class="badge bad">route conflict</div>`
          : ""
      }</td>
          <td>${permSummary(i)}</td>
          <td>${i.routes.length}</td>
          <td>${i.widgets.length}</td>
          <td>${i.jobs.length}</td>
          <td>${toggleButton(p, i, "list")}</td>
        </tr>
      `
    );
    const body = markup`
      <div class="cards">
        <div class="stat"><b>${infos.length}</b>Total</div>
        <div class="stat"><b>${count("enabled")}</b>Enabled</div>
        <div class="stat"><b>${
      count("disabled") +
      count("quarantined")
    }</b>Disabled</div>
        <div class="stat"><b>${count("not-loaded")}</b>Not loaded</div>
      </div>
      <table id="plugins">
        <thead>
          <tr>
            <th>Plugin</th>
            <th>Version</th>
            <th>Runtime</th>
            <th>Status</th>
            <th>Permissions</th>
            <th>Routes</th>
            <th>Widgets</th>
            <th>Jobs</th>
            <th></th>
          </tr>
        </thead>
        <tbody>${
      rows.length > 0 ? rows : markup`
          <tr>
            <td colspan="9" class="muted">No plugins.</td>
          </tr>
        `
    }</tbody>
      </table>
      <h2>Install or upgrade a package</h2>
      <div class="panel">${
      ctx.options.packages
        ? markup`
          <form method="post" action="/admin/plugins/upload"
            enctype="multipart/form-data">${
          csrfField(
            p,
          )
        }<input type="file" name="plugin" accept=".zip" required> <input name="signature" placeholder="Ed25519 signature (base64, optional)" size="40"> <button class="primary" type="submit">Upload</button>
          <p class="muted">A .zip with manifest.json and the module or entry. Its permissions are shown for approval after install.</p></form>
        `
        : markup`<p class="muted">Package install is not available on this host.</p>`
    }</div>
      <p><a class="button" href="/admin/logs">View logs</a></p>
    `;
    return render(c, ctx, p, {
      title: "Plugins",
      current: "plugins",
      ...(flashFromQuery(c) ? { flash: flashFromQuery(c)! } : {}),
    }, body);
  });

  app.post("/admin/plugins/upload", adminPage, async (c) => {
    const p = await principal(c);
    if (!ctx.options.packages) {
      return render(c, ctx, p, {
        title: "Upload",
        status: 501,
        flash: {
          kind: "error",
          text: "Package install is not available on this host.",
        },
      }, markup`<p><a class="button" href="/admin/plugins">Back</a></p>`);
    }
    try {
      const { bytes, filename, fields } = await readUpload(c, uploadLimit);
      if (!checkCsrf(p!, "POST", fields._csrf)) return csrfRefused(c);
      const signature = fields.signature?.trim();
      const result = await ctx.options.packages.install(bytes, {
        ...(filename ? { filename } : {}),
        ...(signature ? { signature } : {}),
      });
      const q = new URLSearchParams({ done: "installed" });
      if (result.previousVersion) q.set("from", String(result.previousVersion));
      if (result.newPermissions?.length) {
        q.set("new", result.newPermissions.join(" "));
      }
      return c.redirect(
        `/admin/plugins/${encodeURIComponent(result.name)}?${q}`,
        303,
      );
    } catch (e) {
      return await failure(c, "Upload failed", e, "/admin/plugins");
    }
  });

  app.get("/admin/plugins/:name", adminPage, async (c) => {
    const p = await principal(c);
    const name = c.req.param("name");
    const info = await pluginInfo(ctx, name);
    if (!info) {
      return render(c, ctx, p, {
        title: "Not found",
        status: 404,
        flash: { kind: "error", text: `Plugin "${name}" not found.` },
      }, markup`<p><a class="button" href="/admin/plugins">Back</a></p>`);
    }
    const m = ctx.manager.manifest(name);
    const enc = encodeURIComponent(name);
    let flash = flashFromQuery(c);
    if (c.req.query("done") === "installed") {
      // Query values are only echoed when they match what the host knows.
      const fromQ = c.req.query("from") ?? "";
      const from = /^[0-9A-Za-z.+-]{1,64}$/.test(fromQ) ? fromQ : "";
      const fresh = (c.req.query("new") ?? "").split(" ").filter((x) =>
        info.permissions.requested.includes(x)
      );
      flash = {
        kind: "ok",
        text: `Installed ${info.name} ${info.version}${
          from ? ` (upgraded from ${from})` : ""
        }.${
          fresh.length > 0 ? ` New in this version: ${fresh.join(", ")}.` : ""
        }${
          info.permissions.pending.length > 0
            ? ` ${info.permissions.pending.length} requested permission(s) are not granted yet: review them below.`
            : ""
        }`,
      };
    }
    const actions = markup`<p>${
      !info.loaded
        ? postButton(p, `/admin/plugins/${enc}/enable`, "Load & enable", {
          cls: "primary",
        })
        : info.enabled
        ? postButton(p, `/admin/plugins/${enc}/disable`, "Disable", {
          cls: "danger",
        })
        : postButton(p, `/admin/plugins/${enc}/enable`, "Enable", {
          cls: "primary",
        })
    } ${
      ctx.options.loader && info.loaded
        ? postButton(p, `/admin/plugins/${enc}/reload`, "Reload")
        : ""
    } ${
      ctx.options.packages
        ? postButton(p, `/admin/plugins/${enc}/uninstall`, "Uninstall", {
          cls: "danger",
          confirm:
            `Uninstall ${name}? Its files, grants, state, routes and jobs are removed.`,
        })
        : ""
    } <a class="button" href="/admin/logs?plugin=${enc}">Logs</a></p>`;
    const meta = markup`
      <div class="panel">
        <dl class="meta">
      <dt>Status</dt><dd>${statusBadge(info)}${
      info.reason
        ? markup`
          <span class="muted">${info.reason}</span>
        `
        : ""
    }</dd>
      <dt>Version</dt><dd>${
      info.version ||
      "—"
    }</dd><dt>Runtime</dt><dd>${info.runtime ?? "—"}</dd>
      <dt>Author</dt><dd>${
      info.author ||
      "Unknown"
    }</dd><dt>License</dt><dd>${info.license || "—"}</dd>
      <dt>Homepage</dt><dd>${
      info.homepage ||
      "—"
    }</dd><dt>Description</dt><dd>${info.description}</dd>
      ${
      m?.min_host_version
        ? markup`
          <dt>Needs host</dt>
          <dd>≥ ${m.min_host_version}</dd>
        `
        : ""
    }
      ${
      info.inFlight !== undefined
        ? markup`
          <dt>Calls in flight</dt>
          <dd>${info.inFlight}</dd>
        `
        : ""
    }
      ${
      info.routeConflict
        ? markup`
          <dt>Routes</dt>
          <dd class="badge bad">${info.routeConflict}</dd>
        `
        : ""
    }
        </dl>
      </div>
    `;
    const perms = permissionsSection(p, info, !!ctx.options.grants);
    const routes = table(
      ["Method", "Path", "Middleware", "Handler", "Description"],
      info.routes.map((r) => [
        r.method,
        markup`<code>${r.path}</code>`,
        (r.middleware ?? []).join(", ") || "public",
        markup`<code>${r.handler}</code>`,
        r.description ?? "",
      ]),
    );
    const widgets = table(
      ["Id", "Title", "Location", "Size", "Order", "Refresh"],
      info.widgets.map((w) => [
        w.id,
        w.title,
        w.location,
        w.size ?? "small",
        String(w.order ?? 0),
        w.refreshable ? `${w.refresh_sec ?? 0} s` : "no",
      ]),
    );
    const jobs = table(
      ["Id", "Schedule", "Enabled", "Timeout", "Description"],
      info.jobs.map((j) => [
        j.id,
        markup`<code>${j.schedule}</code>`,
        j.enabled ? "yes" : "no",
        j.timeout ?? "5m",
        j.description ?? "",
      ]),
    );
    const menu = table(
      ["Id", "Label", "Path", "Location", "Order"],
      info.menuItems.map((
        i,
      ) => [
        i.id,
        i.label,
        markup`<code>${i.path}</code>`,
        i.location,
        String(i.order ?? 0),
      ]),
    );
    const codes = table(
      ["Code", "HTTP", "Message"],
      (m?.error_codes ?? []).map((
        e,
      ) => [
        markup`<code>${name}:${e.code}</code>`,
        String(e.http_status),
        e.message,
      ]),
    );
    return render(
      c,
      ctx,
      p,
      {
        title: `Plugin ${name}`,
        current: "plugins",
        ...(flash ? { flash } : {}),
      },
      markup`${actions}${meta}${perms}<h2>Routes</h2>${routes}<h2>Widgets</h2>${widgets}<h2>Jobs</h2>${jobs}<h2>Menu items</h2>${menu}<h2>Error codes</h2>${codes}`,
    );
  });

  const pluginAction = (
    path: string,
    act: (name: string) => Promise<unknown>,
    done: string,
    redirect: (name: string) => string = (n) =>
      `/admin/plugins/${encodeURIComponent(n)}`,
  ) =>
    app.post(`/admin/plugins/:name/${path}`, adminPage, async (c) => {
      const fields = await form(c);
      if (!fields) return csrfRefused(c);
      const name = c.req.param("name");
      try {
        await act(name);
      } catch (e) {
        return await failure(
          c,
          `Could not ${path} ${name}`,
          e,
          "/admin/plugins",
        );
      }
      const back = typeof fields.back === "string" && fields.back === "list"
        ? "/admin/plugins"
        : redirect(name);
      return c.redirect(
        `${back}${back.includes("?") ? "&" : "?"}done=${done}&p=${
          encodeURIComponent(name)
        }`,
        303,
      );
    });

  pluginAction("enable", (n) => ctx.manager.enable(n), "enabled");
  pluginAction("disable", (n) => ctx.manager.disable(n), "disabled");
  pluginAction("reload", async (n) => {
    if (!ctx.options.loader) {
      throw new Error("plugin reload is not available on this host");
    }
    await ctx.options.loader.reload(n);
  }, "reloaded");
  pluginAction(
    "uninstall",
    async (n) => {
      if (!ctx.options.packages) {
        throw new Error(
          "package uninstall is not available on this host",
        );
      }
      await ctx.options.packages.uninstall(n);
    },
    "uninstalled",
    () => "/admin/plugins",
  );

  app.post("/admin/plugins/:name/grants", adminPage, async (c) => {
    const fields = await form(c);
    if (!fields) return csrfRefused(c);
    const name = c.req.param("name");
    const grants = ctx.options.grants;
    try {
      if (!grants) {
        throw new Error("permission grants are not available on this host");
      }
      const m = ctx.manager.manifest(name);
      if (!m) throw new Error(`plugin "${name}" is not loaded`);
      const list = fields.perm === undefined
        ? []
        : Array.isArray(fields.perm)
        ? fields.perm
        : [fields.perm];
      const requested = m.permissions ?? [];
      if (fields.action === "revoke") {
        await grants.revoke(name, list.length > 0 ? list : undefined);
        ctx.logs.log(
          name,
          "info",
          `permissions revoked: ${list.join(", ") || "all"}`,
        );
      } else {
        const bad = list.filter((x) => !requested.includes(x));
        if (bad.length > 0) {
          throw new TypeError(
            `not requested by the manifest: ${bad.join(", ")}`,
          );
        }
        await grants.approve(name, list);
        ctx.logs.log(
          name,
          "info",
          `permissions granted: ${list.join(", ") || "(none)"}`,
        );
      }
    } catch (e) {
      return await failure(
        c,
        "Permissions not changed",
        e,
        `/admin/plugins/${encodeURIComponent(name)}`,
      );
    }
    return c.redirect(
      `/admin/plugins/${encodeURIComponent(name)}?done=${
        fields.action === "revoke" ? "revoked" : "granted"
      }&p=${encodeURIComponent(name)}`,
      303,
    );
  });

  // -- logs ---------------------------------------------------------------------
  const logFilter = (c: Context) => {
    const plugin = c.req.query("plugin") || undefined;
    const level = parseLevel(c.req.query("level"));
    const limit = parseLimit(c.req.query("limit"), 100, 1000);
    return { plugin, level, limit };
  };
  const logRows = (entries: LogEntry[]) =>
    entries.length === 0
      ? markup`
        <tr>
          <td colspan="4" class="muted">No log entries.</td>
        </tr>
      `
      : markup`${
        entries.map((e) =>
          markup`
            <tr>
              <td class="mono">${e.timestamp}</td>
              <td><span class="badge level-${e.level}">${e.level}</span></td>
              <td>${e.plugin || markup`<span class="muted">host</span>`}</td>
              <td>${e.message}${
            e.fields
              ? markup`<div class="mono muted">${
                JSON.stringify(e.fields)
              }</div>`
              : ""
          }</td>
            </tr>
          `
        )
      }`;
  const queryLogs = (f: ReturnType<typeof logFilter>) =>
    ctx.logs.query({
      ...(f.plugin ? { plugin: f.plugin } : {}),
      ...(f.level ? { minLevel: f.level } : {}),
      limit: f.limit,
    });

  app.get("/admin/logs", adminPage, async (c) => {
    const p = await principal(c);
    const f = logFilter(c);
    const names = [
      ...new Set([
        ...ctx.manager.list().map((m) => m.name),
        ...ctx.manager.discovered(),
        ...ctx.logs.getAll().map((e) => e.plugin).filter((x) => x),
      ]),
    ].sort();
    const q = new URLSearchParams();
    if (f.plugin) q.set("plugin", f.plugin);
    if (f.level) q.set("level", f.level);
    q.set("limit", String(f.limit));
    const body = markup`
      <form class="filters" method="get" action="/admin/logs">
        <label>Plugin<select name="plugin" data-autosubmit><option value="">All</option>${
      names
        .map((n) =>
          markup`
              <option value="${n}" ${
            raw(
              n === f.plugin ? " selected" : "",
            )
          }>${n}</option>
            `
        )
    }</select></label>
        <label>Level (at least)<select name="level" data-autosubmit><option value="">All</option>${
      LOG_LEVELS
        .map((l) =>
          markup`
              <option value="${l}" ${
            raw(
              l === f.level ? " selected" : "",
            )
          }>${l}</option>
            `
        )
    }</select></label>
        <label>Limit<select name="limit" data-autosubmit>${
      [50, 100, 250, 500]
        .map((n) =>
          markup`<option${raw(n === f.limit ? " selected" : "")}>${n}</option>`
        )
    }</select></label>
        <button type="submit">Apply</button>
        <label
          style="flex-direction:row;align-items:center;gap:6px"><input type="checkbox" id="auto" checked> Auto-refresh (5 s)</label>
        <button type="button" data-refresh-now="log-rows">Refresh</button>
      </form>
      <form method="post" action="/admin/logs/clear"
        data-confirm="Clear all log entries?"
        class="inline">${
      csrfField(
        p,
      )
    }<button class="danger" type="submit">Clear logs</button></form>
      <p class="muted">${ctx.logs.count()} entries in the buffer (capacity ${ctx.logs.capacity}).</p>
      <table id="logs">
        <thead>
          <tr>
            <th>Time</th>
            <th>Level</th>
            <th>Plugin</th>
            <th>Message</th>
          </tr>
        </thead>
        <tbody id="log-rows" data-refresh-url="/admin/logs/rows?${q.toString()}"
          data-refresh-sec="5" data-refresh-toggle="auto">${
      logRows(
        queryLogs(f),
      )
    }</tbody>
      </table>
    `;
    return render(c, ctx, p, {
      title: "Logs",
      current: "logs",
      ...(flashFromQuery(c) ? { flash: flashFromQuery(c)! } : {}),
    }, body);
  });

  app.get(
    "/admin/logs/rows",
    adminPage,
    (c) =>
      new Response(logRows(queryLogs(logFilter(c))).value, {
        headers: {
          ...PAGE_HEADERS,
          "content-type": "text/html; charset=utf-8",
        },
      }),
  );

  app.post("/admin/logs/clear", adminPage, async (c) => {
    if (!await form(c)) return csrfRefused(c);
    ctx.logs.clear();
    return c.redirect("/admin/logs?done=cleared", 303);
  });

  // -- jobs -----------------------------------------------------------------------
  app.get("/admin/jobs", adminPage, async (c) => {
    const p = await principal(c);
    const sched = ctx.options.scheduler;
    const jobs = sched ? await sched.list() : ctx.manager.jobs().map((j) => ({
      plugin: j.plugin,
      id: j.id,
      schedule: j.schedule,
      description: j.description ?? "",
      enabled: false,
      lastRuns: [],
    }));
    const rows = jobs.map((j) => [
      j.plugin,
      j.id,
      markup`<code>${j.schedule}</code>`,
      j.description ?? "",
      j.enabled !== false
        ? markup`<span class="badge ok">scheduled</span>`
        : markup`<span class="badge off">off</span>`,
      ("nextRun" in j && j.nextRun) ? String(j.nextRun) : "—",
      markup`${
        j.lastRuns.slice(0, 3).map((r) =>
          markup`<div><span class="badge ${
            r.outcome === "ok" ? "ok" : r.outcome === "running" ? "" : "bad"
          }">${r.outcome}</span> <span class="mono">${r.start}</span>${
            r.durationMs !== undefined ? ` ${r.durationMs} ms` : ""
          }${
            r.error
              ? markup`
                <span class="muted">${r.error}</span>
              `
              : ""
          }</div>`
        )
      }`,
      sched
        ? postButton(
          p,
          `/admin/jobs/${encodeURIComponent(j.plugin)}/${
            encodeURIComponent(j.id)
          }/run`,
          "Run now",
        )
        : "",
    ]);
    return render(
      c,
      ctx,
      p,
      {
        title: "Jobs",
        current: "jobs",
        ...(flashFromQuery(c) ? { flash: flashFromQuery(c)! } : {}),
      },
      markup`${
        sched ? "" : markup`
          <p
            class="muted">The scheduler is not running on this host; jobs are listed from the manifests.</p>
        `
      }${
        table([
          "Plugin",
          "Job",
          "Schedule",
          "Description",
          "State",
          "Next run",
          "Last runs",
          "",
        ], rows)
      }`,
    );
  });

  app.post("/admin/jobs/:plugin/:id/run", adminPage, async (c) => {
    if (!await form(c)) return csrfRefused(c);
    const sched = ctx.options.scheduler;
    try {
      if (!sched) {
        throw new Error("the scheduler is not available on this host");
      }
      const run = await sched.runNow(c.req.param("plugin"), c.req.param("id"));
      return c.redirect(
        `/admin/jobs?done=ran&p=${
          encodeURIComponent(`${c.req.param("id")}: ${run.outcome}`)
        }`,
        303,
      );
    } catch (e) {
      return await failure(c, "Job not run", e, "/admin/jobs");
    }
  });

  // -- audit ------------------------------------------------------------------------
  app.get("/admin/audit", adminPage, async (c) => {
    const p = await principal(c);
    const audit = ctx.options.audit;
    const plugin = c.req.query("plugin") || undefined;
    const entries = audit
      ? await audit.query({ ...(plugin ? { plugin } : {}), limit: 200 })
      : [];
    return render(
      c,
      ctx,
      p,
      { title: "Audit log", current: "audit" },
      markup`${
        audit
          ? ""
          : markup`<p class="muted">No audit log is configured on this host.</p>`
      }${
        table(
          ["Time", "Plugin", "Outcome", "Permission", "Attempted"],
          entries.map((e) => [
            markup`<span class="mono">${e.time ?? e.timestamp ?? ""}</span>`,
            e.plugin,
            e.outcome ?? "denied",
            e.permission ?? "",
            e.attempted ?? "",
          ]),
        )
      }`,
    );
  });

  // -- tokens -----------------------------------------------------------------------
  const tokensPage = async (
    c: Context,
    created?: { token: string; name: string },
  ) => {
    const p = await principal(c);
    const list = await ctx.tokens.list();
    return render(
      c,
      ctx,
      p,
      {
        title: "API tokens",
        current: "tokens",
        ...(created
          ? {
            flash: {
              kind: "ok" as const,
              text:
                `Token "${created.name}" created. Copy it now: it is not shown again.`,
            },
          }
          : flashFromQuery(c)
          ? { flash: flashFromQuery(c)! }
          : {}),
      },
      markup`
        ${
        created
          ? markup`<div class="panel"><code id="new-token">${created.token}</code></div>`
          : ""
      }${
        table(
          ["Id", "Name", "Role", "Created", ""],
          list.map((t) => [
            markup`<code>${t.id}</code>`,
            t.name,
            t.admin ? "admin" : "user",
            t.created,
            p?.tokenId === t.id
              ? markup`<span class="muted">current</span>`
              : postButton(
                p,
                `/admin/tokens/${encodeURIComponent(t.id)}/revoke`,
                "Revoke",
                {
                  cls: "danger",
                  confirm: `Revoke token ${t.name}?`,
                },
              ),
          ]),
        )
      }<h2>Create a token</h2><form class="panel filters"
          method="post" action="/admin/tokens">${csrfField(p)}
        <label>Name<input name="name" required maxlength="100"></label>
        <label style="flex-direction:row;align-items:center;gap:6px"><input type="checkbox" name="admin" value="1"> Admin</label>
        <button class="primary" type="submit">Create</button></form>
      `,
    );
  };

  app.get("/admin/tokens", adminPage, (c) => tokensPage(c));
  app.post("/admin/tokens", adminPage, async (c) => {
    const fields = await form(c);
    if (!fields) return csrfRefused(c);
    const name = typeof fields.name === "string" ? fields.name.trim() : "";
    if (!name || name.length > 100) {
      return await failure(
        c,
        "Token not created",
        new TypeError("a name (≤ 100 characters) is required"),
        "/admin/tokens",
      );
    }
    const created = await ctx.tokens.create({
      name,
      admin: fields.admin === "1",
    });
    ctx.logs.log("", "info", `token "${name}" (${created.record.id}) created`);
    return await tokensPage(c, { token: created.token, name });
  });
  app.post("/admin/tokens/:id/revoke", adminPage, async (c) => {
    if (!await form(c)) return csrfRefused(c);
    const id = c.req.param("id");
    await ctx.tokens.revoke(id);
    ctx.sessions.deleteByToken(id);
    return c.redirect(
      "/admin/tokens?done=revoked&p=" + encodeURIComponent(id),
      303,
    );
  });
}

const DONE_TEXT: Readonly<Record<string, string>> = {
  enabled: "Enabled",
  disabled: "Disabled",
  reloaded: "Reloaded",
  uninstalled: "Uninstalled",
  granted: "Permissions granted for",
  revoked: "Revoked",
  cleared: "Logs cleared",
  ran: "Job run finished —",
};

function flashFromQuery(c: Context): { kind: "ok"; text: string } | undefined {
  const done = c.req.query("done");
  if (!done || !(done in DONE_TEXT)) return undefined;
  const who = c.req.query("p");
  return {
    kind: "ok",
    text: `${DONE_TEXT[done]}${who ? ` ${who.slice(0, 100)}` : ""}.`,
  };
}

function table(head: string[], rows: unknown[][]): SafeHtml {
  if (rows.length === 0) return markup`<p class="muted">None.</p>`;
  return markup`
    <table>
      <thead>
        <tr>${head.map((h) => markup`<th>${h}</th>`)}</tr>
      </thead>
      <tbody>${
    rows.map((r) =>
      markup`<tr>${r.map((cell) => markup`<td>${cell}</td>`)}</tr>`
    )
  }</tbody>
    </table>
  `;
}

function permSummary(i: PluginInfo): SafeHtml {
  const req = i.permissions.requested.length;
  if (i.permissions.granted === null) return markup`${req} requested`;
  return markup`${i.permissions.granted.length}/${req} granted${
    i.permissions.pending.length > 0
      ? markup`
        <span class="badge new">${i.permissions.pending.length} to review</span>
      `
      : ""
  }`;
}

function permissionsSection(
  p: Principal | undefined,
  info: PluginInfo,
  grantsOn: boolean,
): SafeHtml {
  const perms = info.permissions;
  if (!info.loaded) return markup``;
  if (!grantsOn) {
    return markup`
      <h2>Permissions</h2>
      <div class="panel">
        <p class="muted">Grants are not managed on this host. Requested:</p>
        <ul class="perms">${
      perms.requested.map((x) => markup`<li><code>${x}</code></li>`)
    }</ul>
      </div>
    `;
  }
  const granted = perms.granted ?? [];
  const rows = perms.requested.map((x) =>
    markup`
      <tr>
        <td><input type="checkbox" name="perm" value="${x}"${
      raw(
        perms.pending.includes(x) ? " checked" : "",
      )
    }></td>
        <td><code>${x}</code></td>
        <td>${
      granted.includes(x)
        ? markup`<span class="badge ok">granted</span>`
        : markup`<span class="badge new">new — not granted</span>`
    }</td>
      </tr>
    `
  );
  const unused = perms.unused.map((x) =>
    markup`
      <tr>
        <td><input type="checkbox" name="perm" value="${x}"></td>
        <td><code>${x}</code></td>
        <td><span class="badge off">granted, no longer requested</span></td>
      </tr>
    `
  );
  return markup`
    <h2>Permissions</h2>
    <div class="panel"
      id="permissions">${
    perms.pending.length > 0
      ? markup`<p><span class="badge new">${perms.pending.length}</span> requested permission(s) are not granted (new in this version or never approved): <b>${
        perms.pending.join(", ")
      }</b>.</p>`
      : markup`<p class="muted">Everything requested is granted.</p>`
  }<form method="post" action="/admin/plugins/${
    encodeURIComponent(
      info.name,
    )
  }/grants">${csrfField(p)}
    <table><thead><tr><th></th><th>Permission</th><th>State</th></tr></thead><tbody>${rows}${unused}</tbody></table>
    <p><button class="primary" type="submit" name="action" value="approve">Approve selected</button> <button class="danger" type="submit" name="action" value="revoke">Revoke selected</button></p>
    </form></div>
  `;
}
