/**
 * Shared pieces of the admin pages: the page renderer, small form widgets,
 * flash messages, and the per-app kit (auth middleware, CSRF-checked form
 * parsing, error pages).
 *
 * @module
 */

import type { Context, MiddlewareHandler } from "hono";
import { errorText } from "../../model/errors.ts";
import {
  checkCsrf,
  type Principal,
  requireAuth,
} from "../auth/authenticator.ts";
import type { PluginInfo, ServerContext } from "../context.ts";
import { layout, markup, PAGE_HEADERS, type SafeHtml } from "../html.ts";
import { hostErrorToHttp } from "../plugin_http.ts";

/** Options of {@linkcode render}. */
export interface PageOptions {
  /** Page title. */
  title: string;
  /** Current host nav entry. */
  current?: string;
  /** Flash message. */
  flash?: { kind: "ok" | "error"; text: string };
  /** HTTP status. @default 200 */
  status?: number;
}

/** Renders a page in the admin layout (nav with the viewer's menu items) with security headers. */
export function render(
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

/** The hidden `_csrf` field of a form. */
export function csrfField(p: Principal | undefined): SafeHtml {
  return markup`<input type="hidden" name="_csrf" value="${
    p?.session?.csrf ?? ""
  }">`;
}

/** A one-button POST form carrying the CSRF token (optionally confirmed, optionally returning to the list). */
export function postButton(
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

/** The Enable / Disable / Load & enable button of a plugin. */
export function toggleButton(
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

/** The status badge of a plugin. */
export function statusBadge(info: PluginInfo): SafeHtml {
  const cls = info.status === "running"
    ? "ok"
    : info.status === "quarantined" || info.status === "failed"
    ? "bad"
    : info.status === "pending-grants"
    ? "new"
    : "off";
  const label = info.status.replace("-", " ");
  return markup`<span class="badge ${cls}" data-status="${info.status}"${
    info.statusReason ? markup` title="${info.statusReason}"` : ""
  }>${label}</span>`;
}

/** Where a refused or missing `next` goes: the admin home. */
const DEFAULT_NEXT = "/admin/";

/** A placeholder origin `next` is resolved against; never sent anywhere. */
const NEXT_BASE = "http://host.invalid";

/**
 * A same-origin path to go to after login (anything else → `/admin/`).
 *
 * Accepted only if the raw string starts with exactly one `/` (not `//`,
 * `/\`, nor an encoded `/%2F` or `/%5C`), holds no backslash and no control
 * character, raw or percent-encoded (`%00`–`%1F`, `%7F`, `%5C` — browsers
 * strip tabs/newlines and read `\` as `/`, turning `/%09/evil` or `/\evil`
 * into `//evil`), and, parsed against a placeholder origin, still has that
 * origin. The result is rebuilt from the parsed URL (`pathname + search +
 * hash`), never echoed raw.
 */
export function safeNext(next: string | undefined): string {
  if (!next) return DEFAULT_NEXT;
  if (!/^\/(?![/\\]|%2f|%5c)/i.test(next)) return DEFAULT_NEXT;
  // Raw control characters (C0, DEL, C1) and backslashes.
  // deno-lint-ignore no-control-regex
  if (/[\u0000-\u001f\u007f-\u009f\\]/.test(next)) return DEFAULT_NEXT;
  // Their percent-encoded forms: %00–%1F, %7F, %5C.
  if (/%(?:[01][0-9a-f]|7f|5c)/i.test(next)) return DEFAULT_NEXT;
  let url: URL;
  try {
    url = new URL(next, NEXT_BASE);
  } catch {
    return DEFAULT_NEXT;
  }
  if (url.origin !== NEXT_BASE) return DEFAULT_NEXT;
  const out = url.pathname + url.search + url.hash;
  // Belt and braces: the rebuilt path must itself be a single-slash path.
  return /^\/(?![/\\])/.test(out) ? out : DEFAULT_NEXT;
}

/** Flash texts of `?done=` values (only these are shown). */
export const DONE_TEXT: Readonly<Record<string, string>> = {
  enabled: "Enabled",
  disabled: "Disabled",
  reloaded: "Reloaded",
  uninstalled: "Uninstalled",
  granted: "Permissions granted for",
  revoked: "Revoked",
  cleared: "Logs cleared",
  ran: "Job run finished —",
};

/** The flash message of a `?done=…&p=…` redirect, if any. */
export function flashFromQuery(
  c: Context,
): { kind: "ok"; text: string } | undefined {
  const done = c.req.query("done");
  if (!done || !(done in DONE_TEXT)) return undefined;
  const who = c.req.query("p");
  return {
    kind: "ok",
    text: `${DONE_TEXT[done]}${who ? ` ${who.slice(0, 100)}` : ""}.`,
  };
}

/** A simple table; cells are escaped unless they are {@linkcode SafeHtml}. */
export function table(head: string[], rows: unknown[][]): SafeHtml {
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

/** Auth middleware and request helpers shared by the page modules. */
export interface PageKit {
  /** Any logged-in user (redirects to the login page). */
  authPage: MiddlewareHandler;
  /** Admins only. */
  adminPage: MiddlewareHandler;
  /** Largest package upload, in bytes. */
  uploadLimit: number;
  /**
   * Whether cookies set on this request get the `Secure` flag: always with
   * `secureCookies`, else when the request came over HTTPS (TLS, or a
   * trusted proxy's `X-Forwarded-Proto: https`).
   */
  secure(c: Context): boolean;
  /** The principal of a request. */
  principal(c: Context): ReturnType<ServerContext["auth"]["principal"]>;
  /** Parses a form and checks its `_csrf` field; `undefined` when refused. */
  form(c: Context): Promise<Record<string, string | string[]> | undefined>;
  /** The answer to a missing or wrong CSRF token. */
  csrfRefused(c: Context): Response;
  /** An error page with a link back. */
  failure(
    c: Context,
    title: string,
    e: unknown,
    back: string,
  ): Promise<Response>;
}

/** Builds the {@linkcode PageKit} of an app. */
export function pageKit(ctx: ServerContext): PageKit {
  const authPage = requireAuth(ctx.auth, { style: "page", csrfHeader: false });
  const adminPage = requireAuth(ctx.auth, {
    admin: true,
    style: "page",
    csrfHeader: false,
  });
  const uploadLimit = ctx.options.maxUploadBytes ?? 50 * 1024 * 1024;
  const forceSecure = ctx.options.secureCookies ?? false;
  const secure = (c: Context) => forceSecure || ctx.https(c);
  const principal = (c: Context) => ctx.auth.principal(c);

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
    const mapped = hostErrorToHttp(
      e,
      c.req.param("name") ?? "",
      ctx.manager.errorCodes,
    );
    const status = mapped.status;
    return render(c, ctx, await principal(c), {
      title,
      status,
      flash: { kind: "error", text: errorText(e) },
    }, markup`<p><a class="button" href="${back}">Back</a></p>`);
  }

  return {
    authPage,
    adminPage,
    uploadLimit,
    secure,
    principal,
    form,
    csrfRefused,
    failure,
  };
}
