/**
 * HTML building blocks of the admin pages: an escaping template tag, the page
 * layout with navigation (host links and plugin menu items), and the static
 * stylesheet and script (served from `/static/`, nothing fetched from outside).
 *
 * @module
 */

import { escapeHtml } from "../registries/sanitize.ts";
import type { MenuItemSpec } from "../model/manifest.ts";

/** HTML that is already safe (escaped or sanitised); never escaped again. */
export class SafeHtml {
  /** The HTML text. */
  readonly value: string;
  /** Wraps text known to be safe HTML. */
  constructor(value: string) {
    this.value = value;
  }
  /** The HTML text. */
  toString(): string {
    return this.value;
  }
}

/** Marks a string as safe HTML (only for sanitiser output or host markup). */
export function raw(value: string): SafeHtml {
  return new SafeHtml(value);
}

function part(v: unknown): string {
  if (v instanceof SafeHtml) return v.value;
  if (Array.isArray(v)) return v.map(part).join("");
  if (v === undefined || v === null || v === false) return "";
  return escapeHtml(String(v));
}

/**
 * Template tag: interpolated values are escaped unless they are
 * {@linkcode SafeHtml}; arrays are joined.
 *
 * @example
 * ```ts
 * import { markup } from "./html.ts";
 * markup`<b>${"<x>"}</b>`.value; // "<b>&lt;x&gt;</b>"
 * ```
 */
export function markup(
  strings: TemplateStringsArray,
  ...values: unknown[]
): SafeHtml {
  let out = strings[0]!;
  for (let i = 0; i < values.length; i++) {
    out += part(values[i]) + strings[i + 1]!;
  }
  return new SafeHtml(out);
}

/** A link target for a plugin-provided path: same-origin absolute paths only. */
export function safeHref(path: string): string {
  return /^\/(?![/\\])[^\s]*$/.test(path) ? path : "#";
}

/** What the layout needs to know about the viewer. */
export interface LayoutViewer {
  /** Name of the token the viewer logged in with. */
  name: string;
  /** Whether the viewer is an admin. */
  admin: boolean;
  /** The session's CSRF token (logout form, meta tag); absent for Bearer requests. */
  csrf?: string;
}

/** Options of {@linkcode layout}. */
export interface LayoutOptions {
  /** Page title. */
  title: string;
  /** Site title. */
  site: string;
  /** The viewer, when logged in. */
  viewer?: LayoutViewer;
  /** Which host nav entry is current (`plugins`, `logs`, …). */
  current?: string;
  /** Plugin menu items for the navigation, already sorted. */
  menu?: readonly (MenuItemSpec & { plugin: string })[];
  /** Flash message shown on top. */
  flash?: { kind: "ok" | "error"; text: string };
}

const HOST_NAV: readonly {
  id: string;
  label: string;
  href: string;
  admin: boolean;
}[] = [
  {
    id: "dashboard",
    label: "Dashboard",
    href: "/admin/dashboard",
    admin: false,
  },
  { id: "plugins", label: "Plugins", href: "/admin/plugins", admin: true },
  { id: "logs", label: "Logs", href: "/admin/logs", admin: true },
  { id: "jobs", label: "Jobs", href: "/admin/jobs", admin: true },
  {
    id: "operations",
    label: "Operations",
    href: "/admin/operations",
    admin: true,
  },
  { id: "audit", label: "Audit", href: "/admin/audit", admin: true },
  { id: "tokens", label: "Tokens", href: "/admin/tokens", admin: true },
];

function menuTree(
  items: readonly (MenuItemSpec & { plugin: string })[],
): SafeHtml {
  const ids = new Set(items.map((i) => i.id));
  const top = items.filter((i) => !i.parent || !ids.has(i.parent));
  const byOrder = (a: MenuItemSpec, b: MenuItemSpec) =>
    (a.order ?? 0) - (b.order ?? 0) || (a.id < b.id ? -1 : a.id > b.id ? 1 : 0);
  const render = (i: MenuItemSpec, plugin: string, depth: number): SafeHtml => {
    const kids = [
      ...(i.children ?? []),
      ...items.filter((x) => x.parent === i.id),
    ].sort(byOrder);
    return markup`<li><a href="${
      safeHref(i.path)
    }" title="${plugin}">${i.label}</a>${
      kids.length > 0 && depth < 4
        ? markup`<ul>${kids.map((k) => render(k, plugin, depth + 1))}</ul>`
        : ""
    }</li>`;
  };
  return markup`${top.map((i) => render(i, i.plugin, 0))}`;
}

/** Renders a whole page around `body`. */
export function layout(options: LayoutOptions, body: SafeHtml): string {
  const v = options.viewer;
  const userBox = !v
    ? ""
    : v.csrf
    ? markup`<form method="post" action="/logout" class="logout"><input type="hidden" name="_csrf" value="${v.csrf}"><span>${v.name}${
      v.admin ? " (admin)" : ""
    }</span><button type="submit">Log out</button></form>`
    : markup`<div class="logout"><span>${v.name} (API token)</span></div>`;
  const hostLinks = (v ? HOST_NAV.filter((n) => v.admin || !n.admin) : []).map((
    n,
  ) =>
    markup`<li><a href="${n.href}"${
      raw(n.id === options.current ? ' aria-current="page"' : "")
    }>${n.label}</a></li>`
  );
  const pluginMenu = options.menu && options.menu.length > 0
    ? markup`<div class="navhead">Plugins</div><ul class="plugin-menu">${
      menuTree(options.menu)
    }</ul>`
    : "";
  const nav = v
    ? markup`<nav class="side"><div class="brand">${options.site}</div><ul>${hostLinks}</ul>${pluginMenu}${userBox}</nav>`
    : "";
  const flash = options.flash
    ? markup`<p class="flash ${options.flash.kind}" role="status">${options.flash.text}</p>`
    : "";
  return "<!doctype html>" + markup`
    <html lang="en">
      <head><meta charset="utf-8">
    <meta name="viewport" content="width=device-width, initial-scale=1">
    ${v?.csrf ? markup`<meta name="csrf-token" content="${v.csrf}">` : ""}
    <title>${options.title} · ${options.site}</title>
    <link rel="stylesheet" href="/static/admin.css">
    <script src="/static/admin.js" defer></script>
      </head>
      <body>${nav}<main><h1>${options.title}</h1>${flash}${body}</main></body>
    </html>
  `
    .value;
}

/** Security headers for host pages (the inline-script ban backs the sanitiser). */
export const PAGE_HEADERS: Readonly<Record<string, string>> = {
  "content-security-policy":
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data: https:; object-src 'none'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'",
  "x-content-type-options": "nosniff",
  "referrer-policy": "same-origin",
  "x-frame-options": "DENY",
  "cache-control": "no-store",
};

/** The admin stylesheet. */
export const ADMIN_CSS = `
:root { --bg:#f5f6f8; --fg:#1d2330; --muted:#6b7280; --line:#e3e6eb; --card:#fff; --accent:#2f6f4f; --danger:#b42318; --warn:#b54708; }
* { box-sizing: border-box; }
body { margin:0; font:14px/1.45 system-ui, -apple-system, "Segoe UI", Roboto, sans-serif; color:var(--fg); background:var(--bg); display:flex; min-height:100vh; }
nav.side { width:210px; background:#1f2a24; color:#dfe7e2; padding:16px 12px; flex-shrink:0; display:flex; flex-direction:column; }
nav.side .brand { font-weight:700; font-size:18px; margin:0 8px 16px; color:#fff; }
nav.side ul { list-style:none; margin:0; padding:0; }
nav.side ul ul { padding-left:12px; }
nav.side a { display:block; color:#dfe7e2; text-decoration:none; padding:6px 8px; border-radius:6px; }
nav.side a:hover, nav.side a[aria-current] { background:#2f3d35; color:#fff; }
nav.side .navhead { margin:16px 8px 4px; font-size:11px; text-transform:uppercase; letter-spacing:.06em; color:#9fb3a7; }
nav.side .logout { margin-top:auto; padding:8px; font-size:12px; color:#9fb3a7; display:flex; gap:8px; align-items:center; justify-content:space-between; }
main { flex:1; padding:24px 32px; min-width:0; }
main a { color:var(--accent); }
main a.button { color:var(--fg); }
h1 { margin:0 0 16px; font-size:22px; }
h2 { font-size:16px; margin:24px 0 8px; }
table { width:100%; border-collapse:collapse; background:var(--card); border:1px solid var(--line); border-radius:8px; overflow:hidden; }
th, td { text-align:left; padding:8px 10px; border-bottom:1px solid var(--line); vertical-align:top; }
th { background:#fafbfc; font-weight:600; font-size:12px; color:var(--muted); text-transform:uppercase; letter-spacing:.03em; }
tr:last-child td { border-bottom:none; }
code, .mono { font-family: ui-monospace, SFMono-Regular, Menlo, monospace; font-size:12px; }
.badge { display:inline-block; padding:1px 8px; border-radius:999px; font-size:12px; background:#eef0f3; color:#374151; white-space:nowrap; }
.badge.ok { background:#dcfae6; color:#067647; } .badge.off { background:#f2f4f7; color:#475467; }
.badge.bad { background:#fee4e2; color:var(--danger); } .badge.new { background:#fef0c7; color:var(--warn); }
.badge.level-error { background:#fee4e2; color:var(--danger); } .badge.level-warn { background:#fef0c7; color:var(--warn); }
.badge.level-debug { background:#f2f4f7; color:#667085; }
.cards { display:flex; gap:12px; margin-bottom:16px; flex-wrap:wrap; }
.stat { background:var(--card); border:1px solid var(--line); border-radius:8px; padding:12px 16px; min-width:120px; }
.stat b { display:block; font-size:22px; }
.muted { color:var(--muted); }
button, .button { font:inherit; padding:5px 12px; border-radius:6px; border:1px solid var(--line); background:#fff; cursor:pointer; color:var(--fg); text-decoration:none; display:inline-block; }
button.primary { background:var(--accent); color:#fff; border-color:var(--accent); }
button.danger { color:var(--danger); border-color:#f3c3bd; }
form.inline { display:inline; }
.flash { padding:10px 14px; border-radius:8px; background:#dcfae6; color:#067647; }
.flash.error { background:#fee4e2; color:var(--danger); }
.panel { background:var(--card); border:1px solid var(--line); border-radius:8px; padding:14px 16px; margin-bottom:16px; }
.filters { display:flex; gap:10px; align-items:end; flex-wrap:wrap; margin-bottom:12px; }
.filters label { display:flex; flex-direction:column; font-size:12px; color:var(--muted); gap:2px; }
.filters label.check { flex-direction:row; align-items:center; gap:6px; font-size:13px; color:var(--fg); }
input, select { font:inherit; padding:5px 8px; border:1px solid var(--line); border-radius:6px; background:#fff; }
.widgets { display:grid; grid-template-columns:repeat(4, 1fr); gap:16px; }
.widget { background:var(--card); border:1px solid var(--line); border-radius:8px; overflow:hidden; grid-column:span 1; }
.widget.size-medium { grid-column:span 2; } .widget.size-large { grid-column:span 3; } .widget.size-full { grid-column:1 / -1; }
.widget header { padding:8px 12px; border-bottom:1px solid var(--line); display:flex; justify-content:space-between; gap:8px; font-weight:600; }
.widget header span:first-child { overflow-wrap:anywhere; min-width:0; }
.widget .body { padding:12px; overflow:auto; }
.login { max-width:420px; margin:10vh auto; }
.login input { width:100%; margin:8px 0 12px; }
dl.meta { display:grid; grid-template-columns:140px 1fr; gap:4px 12px; margin:0; }
dl.meta dt { color:var(--muted); }
ul.perms { margin:0; padding-left:18px; }
@media (max-width: 900px) { body { flex-direction:column; } nav.side { width:auto; } .widgets { grid-template-columns:1fr; } .widget { grid-column:auto !important; } }
`;

/**
 * The paths the admin script refreshes from: a dashboard widget's host
 * endpoint or the log rows, same-origin, nothing else.
 */
export const REFRESH_PATH_REGEXP =
  /^\/admin\/(?:widgets\/[^/?#\\]+\/[^/?#\\]+|logs\/rows)(?:\?[^#\\]*)?$/;

/**
 * The admin script: widget and log auto-refresh, confirmations.
 *
 * It only acts on host markup: an element inside plugin HTML (below an
 * element marked `data-gk-plugin-html`) is ignored whatever it carries, the
 * refresh attributes are `data-gk-*` ones (the sanitiser lets no `data-*`
 * through), and a refresh URL must be a same-origin path matching
 * {@linkcode REFRESH_PATH_REGEXP} before and after URL parsing (fetched
 * without following redirects).
 */
export const ADMIN_JS = `"use strict";
(function () {
  var REFRESH_PATH = ${REFRESH_PATH_REGEXP.toString()};
  function csrf() { var m = document.querySelector('meta[name="csrf-token"]'); return m ? m.content : ""; }
  // Host markup only: nothing inside plugin HTML drives the script.
  function hostElement(el) {
    var up = el && el.parentElement;
    return !!el && !(up && up.closest("[data-gk-plugin-html]"));
  }
  function refreshUrl(el) {
    if (!hostElement(el)) return null;
    var url = el.getAttribute("data-gk-refresh-url");
    if (!url || !REFRESH_PATH.test(url)) return null;
    var parsed = new URL(url, window.location.href);
    var path = parsed.pathname + parsed.search;
    // Checked again after parsing (dot segments, encodings).
    if (parsed.origin !== window.location.origin || !REFRESH_PATH.test(path)) return null;
    return path;
  }
  function refresh(el) {
    var url = refreshUrl(el);
    if (!url) return;
    fetch(url, { credentials: "same-origin", redirect: "error", headers: { "X-CSRF-Token": csrf() } })
      .then(function (r) { if (!r.ok) throw new Error(String(r.status)); return r.text(); })
      .then(function (t) { el.innerHTML = t; el.removeAttribute("data-gk-refresh-error"); })
      .catch(function (e) { el.setAttribute("data-gk-refresh-error", String(e)); });
  }
  function setup() {
    document.querySelectorAll("[data-gk-refresh-url][data-gk-refresh-sec]").forEach(function (el) {
      if (!refreshUrl(el)) return;
      var sec = Number(el.getAttribute("data-gk-refresh-sec"));
      if (!(sec > 0)) return;
      var toggle = el.getAttribute("data-gk-refresh-toggle");
      setInterval(function () {
        if (toggle) { var t = document.getElementById(toggle); if (t && hostElement(t) && !t.checked) return; }
        refresh(el);
      }, Math.max(1, sec) * 1000);
    });
    document.querySelectorAll("[data-gk-refresh-now]").forEach(function (b) {
      if (!hostElement(b)) return;
      b.addEventListener("click", function (ev) {
        ev.preventDefault();
        var el = document.getElementById(b.getAttribute("data-gk-refresh-now"));
        if (el) refresh(el);
      });
    });
    document.querySelectorAll("form[data-confirm]").forEach(function (f) {
      if (!hostElement(f)) return;
      f.addEventListener("submit", function (ev) {
        if (!window.confirm(f.getAttribute("data-confirm"))) ev.preventDefault();
      });
    });
    document.querySelectorAll("select[data-autosubmit]").forEach(function (s) {
      if (!hostElement(s)) return;
      s.addEventListener("change", function () { s.form.submit(); });
    });
  }
  if (document.readyState === "loading") document.addEventListener("DOMContentLoaded", setup);
  else setup();
})();
`;
