/**
 * The login page (an API token becomes an HttpOnly SameSite=Strict session
 * cookie; the form carries a double-submit CSRF token) and logout. Each
 * login, failed login and logout is an audit entry with the client's
 * address.
 *
 * @module
 */

import type { Context, Hono } from "hono";
import { deleteCookie, getCookie, setCookie } from "hono/cookie";
import { randomBytes } from "node:crypto";
import type { ServerContext } from "../context.ts";
import { markup } from "../html.ts";
import { safeEqual, SESSION_COOKIE } from "../auth/sessions.ts";
import { type PageKit, render, safeNext } from "./page_kit.ts";
import { actorName, clientAddress } from "../request_origin.ts";
import type { ConnectionInfo } from "../transport.ts";

const LOGIN_CSRF_COOKIE = "gk_login_csrf";

/** Mounts `GET/POST /login` and `POST /logout`. */
export function mountLoginPages(
  app: Hono,
  ctx: ServerContext,
  kit: PageKit,
): void {
  const { secure, principal, form, csrfRefused } = kit;
  const ip = (c: Context) =>
    clientAddress(
      c.req.raw,
      c.env as ConnectionInfo | undefined,
      ctx.options.trustProxy,
    );
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
      secure: secure(c),
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
      const from = ip(c);
      ctx.options.audit?.record?.({
        plugin: "",
        action: "login",
        permission: "",
        attempted: "log in with an unknown token",
        outcome: "denied",
        actor: "anonymous",
        ...(from ? { ip: from } : {}),
      });
      return c.redirect(
        `/login?failed=1&next=${encodeURIComponent(next)}`,
        303,
      );
    }
    const { id, session } = await ctx.sessions.create({
      tokenId: rec.id,
      name: rec.name,
      admin: rec.admin,
    });
    deleteCookie(c, LOGIN_CSRF_COOKIE, { path: "/login", secure: secure(c) });
    setCookie(c, SESSION_COOKIE, id, {
      httpOnly: true,
      sameSite: "Strict",
      path: "/",
      secure: secure(c),
    });
    ctx.logs.log("", "info", `login: token "${rec.name}" (${rec.id})`);
    const from = ip(c);
    ctx.options.audit?.record?.({
      plugin: "",
      action: "login",
      permission: "",
      attempted: "logged in (new browser session)",
      outcome: "ok",
      actor: actorName({ name: rec.name, tokenId: rec.id }),
      ...(from ? { ip: from } : {}),
      after: {
        admin: rec.admin,
        expires: new Date(session.expires).toISOString(),
      },
    });
    return c.redirect(next, 303);
  });

  app.post("/logout", async (c) => {
    const fields = await form(c);
    if (!fields) return csrfRefused(c);
    const p = await principal(c);
    await ctx.sessions.delete(getCookie(c, SESSION_COOKIE));
    if (p) {
      const from = ip(c);
      ctx.options.audit?.record?.({
        plugin: "",
        action: "logout",
        permission: "",
        attempted: "logged out (session ended)",
        outcome: "ok",
        actor: actorName(p, p.via === "session" ? "session" : undefined),
        ...(from ? { ip: from } : {}),
      });
    }
    deleteCookie(c, SESSION_COOKIE, { path: "/", secure: secure(c) });
    return c.redirect("/login", 303);
  });
}
