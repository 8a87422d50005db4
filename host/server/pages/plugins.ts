/**
 * Admin pages about plugins: dashboard (widgets in order, auto-refresh),
 * plugin list and details, enable/disable/reload/uninstall, package upload,
 * permission approval showing what a version newly asks for.
 *
 * @module
 */

import type { Context, Hono } from "hono";
import { checkCsrf, type Principal } from "../auth/authenticator.ts";
import {
  installOverrides,
  notRequestedText,
  packageErrorHttp,
  readUpload,
} from "../api.ts";
import {
  allPluginInfos,
  type PluginInfo,
  pluginInfo,
  renderWidget,
  type ServerContext,
} from "../context.ts";
import { markup, PAGE_HEADERS, raw, type SafeHtml } from "../html.ts";
import { BadRequestError, preferredLanguage } from "../plugin_http.ts";
import {
  parseQuotaLimits,
  QUOTA_KEYS,
  QUOTA_UNITS,
  type QuotaKey,
} from "../../quotas/quota_limits.ts";
import type { QuotaReport } from "../../quotas/quotas.ts";
import {
  csrfField,
  flashFromQuery,
  type PageKit,
  postButton,
  render,
  statusBadge,
  table,
  toggleButton,
} from "./page_kit.ts";

/**
 * The host endpoint a dashboard widget refreshes from:
 * `/admin/widgets/<plugin>/<widget>`, each part URL-encoded.
 *
 * @example
 * ```ts
 * import { widgetRefreshUrl } from "./plugins.ts";
 * widgetRefreshUrl("hello", "clock"); // "/admin/widgets/hello/clock"
 * ```
 */
export function widgetRefreshUrl(plugin: string, widget: string): string {
  return `/admin/widgets/${encodeURIComponent(plugin)}/${
    encodeURIComponent(widget)
  }`;
}

/** Mounts `/admin`, `/admin/dashboard`, `/admin/widgets…` and `/admin/plugins…`. */
export function mountPluginPages(
  app: Hono,
  ctx: ServerContext,
  kit: PageKit,
): void {
  const {
    authPage,
    adminPage,
    uploadLimit,
    principal,
    form,
    csrfRefused,
    failure,
  } = kit;
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
      // The refresh URL is the host's own widget endpoint, built here from
      // the registered widget; nothing in the widget's HTML can name one
      // (the sanitiser drops every data-* attribute, and the script only
      // follows data-gk-refresh-url outside plugin HTML, to /admin/ paths).
      const url = widgetRefreshUrl(w.plugin, w.id);
      const refresh = w.refreshable && (w.refresh_sec ?? 0) > 0
        ? Math.max(1, Math.floor(w.refresh_sec!))
        : undefined;
      const refreshAttr = refresh
        ? markup` data-gk-refresh-url="${url}" data-gk-refresh-sec="${refresh}"`
        : "";
      const content = r.ok
        ? raw(r.html)
        : markup`<p class="muted">${r.message}</p>`;
      const id = `widget-${w.plugin}-${w.id}`;
      return markup`<section class="widget size-${
        w.size ?? "small"
      }" data-widget="${w.plugin}:${w.id}">
<header><span>${w.title}</span><span class="badge">${w.plugin}</span></header>
<div class="body" id="${id}" data-gk-plugin-html${refreshAttr}>${content}</div>
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

  // The one URL the dashboard refreshes a widget from: the widget rendered
  // by the host and sanitised (again, on every refresh) before it is sent.
  app.get("/admin/widgets/:plugin/:widget", authPage, async (c) => {
    const language = preferredLanguage(c.req.header("accept-language"));
    const r = await renderWidget(
      ctx,
      c.req.param("plugin"),
      c.req.param("widget"),
      language,
    );
    const headers = {
      ...PAGE_HEADERS,
      "content-type": "text/html; charset=utf-8",
      "cache-control": "no-store",
    };
    return r.ok
      ? new Response(ctx.sanitize(r.html), { headers })
      : new Response(markup`<p class="muted">${r.message}</p>`.value, {
        status: r.status,
        headers,
      });
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
        i.statusReason
          ? markup`<div class="muted status-reason">${i.statusReason}</div>`
          : ""
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
        <div class="stat"><b>${count("running")}</b>Running</div>
        <div class="stat"><b>${count("pending-grants")}</b>Pending grants</div>
        <div class="stat"><b>${count("disabled")}</b>Disabled</div>
        <div class="stat"><b>${count("quarantined")}</b>Quarantined</div>
        <div class="stat"><b>${count("failed")}</b>Failed</div>
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
        }<input type="file" name="plugin" accept=".zip,.wasm" required> <input name="signature" placeholder="Ed25519 signature (base64, optional)" size="40"> <button class="primary" type="submit">Upload</button>
          <p class="muted">A .zip with manifest.json and the module or entry, or a bare .wasm module (named by what it registers). Its permissions are shown for approval after install.</p>
          <p><label class="check"><input type="checkbox" name="allow_signer_change" value="1"> Allow a different signer (or an unsigned package) for an already signed plugin</label><br>
          <label class="check"><input type="checkbox" name="allow_downgrade" value="1"> Allow installing an older version</label></p>
          <p class="muted">Both overrides are recorded in the audit log.</p></form>
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
      const signer = fields.signer?.trim();
      const result = await ctx.options.packages.install(bytes, {
        ...(filename ? { filename } : {}),
        ...(signature ? { signature } : {}),
        ...(signer ? { signer } : {}),
        ...installOverrides(c, fields),
      });
      const q = new URLSearchParams({ done: "installed" });
      if (result.previousSigner !== undefined) q.set("signer", "changed");
      if (result.previousVersion) q.set("from", String(result.previousVersion));
      if (result.newPermissions?.length) {
        q.set("new", result.newPermissions.join(" "));
      }
      return c.redirect(
        `/admin/plugins/${encodeURIComponent(result.name)}?${q}`,
        303,
      );
    } catch (e) {
      // The API's status and message (which names the fix, without server
      // paths); a fault of the host itself goes the usual way.
      const r = packageErrorHttp(e);
      if (r.status === 500) {
        return await failure(c, "Upload failed", e, "/admin/plugins");
      }
      return render(c, ctx, p, {
        title: "Upload failed",
        status: r.status,
        flash: { kind: "error", text: r.body.error.message },
      }, markup`<p><a class="button" href="/admin/plugins">Back</a></p>`);
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
          c.req.query("signer") === "changed"
            ? " Its signer changed (operator override, audited)."
            : ""
        }${
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
      info.statusReason
        ? markup`
          <span class="muted status-reason">${info.statusReason}</span>
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
    if (c.req.query("done") === "quotas") {
      flash = { kind: "ok", text: `Quotas saved for ${name}.` };
    }
    const quotaPanel = ctx.options.quotas
      ? await ctx.options.quotas.report(name).then(
        (r) => quotasSection(p, name, r),
        (e) =>
          markup`<h2>Quotas</h2><p class="muted">Quotas unavailable: ${
            (e as Error).message
          }</p>`,
      )
      : markup``;
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
      markup`${actions}${meta}${perms}${quotaPanel}<h2>Routes</h2>${routes}<h2>Widgets</h2>${widgets}<h2>Jobs</h2>${jobs}<h2>Menu items</h2>${menu}<h2>Error codes</h2>${codes}`,
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
      throw new Error(
        `Cannot reload plugin "${n}": reloading is not available on this host`,
      );
    }
    await ctx.options.loader.reload(n);
  }, "reloaded");
  pluginAction(
    "uninstall",
    async (n) => {
      if (!ctx.options.packages) {
        throw new Error(
          `Cannot uninstall plugin "${n}": package uninstall is not available on this host`,
        );
      }
      await ctx.options.packages.uninstall(n);
    },
    "uninstalled",
    () => "/admin/plugins",
  );

  app.post("/admin/plugins/:name/quotas", adminPage, async (c) => {
    const fields = await form(c);
    if (!fields) return csrfRefused(c);
    const name = c.req.param("name");
    const back = `/admin/plugins/${encodeURIComponent(name)}`;
    try {
      const quotas = ctx.options.quotas;
      if (!quotas) {
        throw new Error(
          `Cannot change quotas of plugin "${name}": quotas are not available on this host`,
        );
      }
      const raw: Record<string, string> = {};
      for (const k of QUOTA_KEYS) {
        const v = fields[k];
        const text = (Array.isArray(v) ? v[0] : v)?.trim() ?? "";
        if (text !== "") raw[k] = text;
      }
      let limits;
      try {
        limits = parseQuotaLimits(raw, "override");
      } catch (e) {
        throw new BadRequestError((e as Error).message, { cause: e });
      }
      await quotas.setOverrides(name, limits);
    } catch (e) {
      return await failure(c, "Quotas not changed", e, back);
    }
    return c.redirect(
      `${back}?done=quotas&p=${encodeURIComponent(name)}`,
      303,
    );
  });

  app.post("/admin/plugins/:name/grants", adminPage, async (c) => {
    const fields = await form(c);
    if (!fields) return csrfRefused(c);
    const name = c.req.param("name");
    const grants = ctx.options.grants;
    try {
      if (!grants) {
        throw new Error(
          `Cannot change grants of plugin "${name}": permission grants are not available on this host`,
        );
      }
      const m = ctx.manager.manifest(name);
      if (!m) {
        throw new Error(
          `Cannot change grants of plugin "${name}": it is not loaded`,
        );
      }
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
          throw new BadRequestError(notRequestedText(name, bad));
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
}

/**
 * The quotas panel: each limit in force, where it comes from, the use now,
 * and a form of overrides (empty = inherit, 0 = no limit).
 */
function quotasSection(
  p: Principal | undefined,
  name: string,
  r: QuotaReport,
): SafeHtml {
  const used: Partial<Record<QuotaKey, string>> = {
    hostCallsPerSecond: `${r.usage.hostCallTokens} tokens left`,
    cpuMsPerMinute: r.usage.cpuMsLastMinute === null
      ? "not reported"
      : `${r.usage.cpuMsLastMinute} ms last minute`,
    concurrentCalls: `${r.usage.inFlight} in flight`,
    httpBytesPerMinute: `${r.usage.httpBytesLastMinute} bytes last minute`,
    emailsPerHour: `${r.usage.emailsLastHour} last hour`,
  };
  const rows = QUOTA_KEYS.map((k) => {
    const from = r.overrides[k] !== undefined
      ? "override"
      : r.configured[k] !== undefined
      ? "config file"
      : "default";
    const inherited = r.configured[k] ?? r.defaults[k];
    const refused = k === "hostCallBurst" ? undefined : r.refused[k];
    return markup`
      <tr>
        <td><label for="quota-${k}"><code>${k}</code></label></td>
        <td>${
      r.limits[k] === 0 ? "no limit" : String(r.limits[k])
    } <span class="muted">${QUOTA_UNITS[k]} (${from})</span></td>
        <td>${used[k] ?? ""}${
      refused ? markup` <span class="badge bad">${refused} refused</span>` : ""
    }</td>
        <td><input id="quota-${k}" type="number" min="0" step="1" name="${k}" value="${
      r.overrides[k] ?? ""
    }" placeholder="${String(inherited)}"></td>
      </tr>
    `;
  });
  return markup`
    <h2>Quotas</h2>
    <div class="panel" id="quotas">${
    r.notes.map((n) => markup`<p class="muted">${n}</p>`)
  }<form method="post" action="/admin/plugins/${
    encodeURIComponent(name)
  }/quotas">${csrfField(p)}
    <table><thead><tr><th>Quota</th><th>In force</th><th>Use</th><th>Override</th></tr></thead><tbody>${rows}</tbody></table>
    <p class="muted">Empty: the config file's value or the host default; 0: no limit. Overrides are kept in the database and audited.</p>
    <p><button class="primary" type="submit">Save quotas</button></p>
    </form></div>
  `;
}

/** "granted/requested" and how many wait for review. */
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

/** The permissions panel: requested vs granted, what is new, approve/revoke form. */
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
