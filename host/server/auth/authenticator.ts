/**
 * Authentication for the server: who a request comes from (a Bearer API
 * token or a session cookie), the `auth` and `admin` middleware, and the CSRF
 * check for cookie-authenticated state-changing requests.
 *
 * @module
 */

import type { Context, MiddlewareHandler } from "hono";
import { getCookie } from "hono/cookie";
import {
  safeEqual,
  type Session,
  SESSION_COOKIE,
  type SessionStore,
} from "./sessions.ts";
import type { TokenStore } from "./tokens.ts";

/** Who made a request. */
export interface Principal {
  /** How the request authenticated. */
  via: "token" | "session";
  /** The API token id (also for sessions: the token used at login). */
  tokenId: string;
  /** The token's name. */
  name: string;
  /** Whether the principal has admin rights. */
  admin: boolean;
  /** The session, for cookie-authenticated requests. */
  session?: Session;
}

/** Header carrying the CSRF token on cookie-authenticated requests. */
export const CSRF_HEADER = "x-csrf-token";

/** Methods that change nothing and need no CSRF token. */
const SAFE_METHODS = new Set(["GET", "HEAD", "OPTIONS"]);

/** Whether `method` may change state (and so needs a CSRF token with cookies). */
export function isStateChanging(method: string): boolean {
  return !SAFE_METHODS.has(method.toUpperCase());
}

/** Resolves the principal of requests; shared by host and plugin routes. */
export class Authenticator {
  readonly #tokens: TokenStore;
  readonly #sessions: SessionStore;

  /** Creates an authenticator over a token and a session store. */
  constructor(tokens: TokenStore, sessions: SessionStore) {
    this.#tokens = tokens;
    this.#sessions = sessions;
  }

  /**
   * The principal of a request, or `undefined`. A present but invalid
   * Bearer token yields `undefined` (no fallback to the cookie).
   */
  async principal(c: Context): Promise<Principal | undefined> {
    const cached = c.get("principal" as never) as Principal | null | undefined;
    if (cached !== undefined) return cached ?? undefined;
    let p: Principal | undefined;
    const authz = c.req.header("authorization");
    if (authz !== undefined) {
      const m = /^Bearer\s+(\S+)\s*$/i.exec(authz);
      const rec = m ? await this.#tokens.verify(m[1]!) : undefined;
      if (rec) {
        p = { via: "token", tokenId: rec.id, name: rec.name, admin: rec.admin };
      }
    } else {
      const session = await this.#sessions.get(getCookie(c, SESSION_COOKIE));
      if (session) {
        p = {
          via: "session",
          tokenId: session.tokenId,
          name: session.name,
          admin: session.admin,
          session,
        };
      }
    }
    c.set("principal" as never, (p ?? null) as never);
    return p;
  }
}

/** How a middleware answers a refused request. */
export type RefusalStyle = "json" | "page";

function refuse(
  c: Context,
  status: 401 | 403,
  message: string,
  style: RefusalStyle,
): Response {
  if (style === "page" && status === 401 && c.req.method === "GET") {
    const next = c.req.path + (new URL(c.req.url).search || "");
    return c.redirect(`/login?next=${encodeURIComponent(next)}`, 303);
  }
  if (style === "page") {
    return c.html(
      `<!doctype html><meta charset="utf-8"><title>${status}</title><p>${
        status === 401 ? "Please log in." : "Forbidden: admin access required."
      } <a href="/login">Log in</a></p>`,
      status,
    );
  }
  return c.json({ error: message }, status);
}

/** Options of {@linkcode requireAuth}. */
export interface RequireAuthOptions {
  /** Whether admin rights are needed. @default false */
  admin?: boolean;
  /** JSON errors (API, plugin routes) or redirect/HTML (pages). @default "json" */
  style?: RefusalStyle;
  /**
   * Check the CSRF header on cookie-authenticated state-changing requests.
   * Pages that read `_csrf` from their form turn this off and call
   * {@linkcode checkCsrf} themselves. @default true
   */
  csrfHeader?: boolean;
}

/**
 * Middleware refusing requests without a principal (401) or, with
 * `admin: true`, without admin rights (403); cookie-authenticated
 * state-changing requests also need the session's CSRF token in the
 * `X-CSRF-Token` header (403 otherwise). Bearer requests need none.
 */
export function requireAuth(
  auth: Authenticator,
  options: RequireAuthOptions = {},
): MiddlewareHandler {
  const style = options.style ?? "json";
  const admin = options.admin ?? false;
  const csrfHeader = options.csrfHeader ?? true;
  return async function goatkitAuth(c, next) {
    const p = await auth.principal(c);
    if (!p) return refuse(c, 401, "authentication required", style);
    if (admin && !p.admin) {
      return refuse(c, 403, "admin access required", style);
    }
    if (csrfHeader && !checkCsrf(p, c.req.method, c.req.header(CSRF_HEADER))) {
      return c.json({ error: "missing or invalid CSRF token" }, 403);
    }
    await next();
  };
}

/**
 * Whether a request passes the CSRF check: safe methods and Bearer requests
 * always do; cookie-authenticated state-changing requests need `presented`
 * to equal the session's CSRF token.
 */
export function checkCsrf(
  p: Principal,
  method: string,
  presented: string | undefined | null,
): boolean {
  if (!isStateChanging(method) || p.via === "token") return true;
  return !!p.session && typeof presented === "string" && presented.length > 0 &&
    safeEqual(presented, p.session.csrf);
}
