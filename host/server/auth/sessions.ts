/**
 * Browser sessions: created at login from a valid API token, identified by an
 * HttpOnly SameSite=Strict cookie, each with its own CSRF token.
 *
 * Sessions live in memory (a restart logs everyone out); only the SHA-256 of
 * the session id is kept, so a heap dump does not reveal live cookies.
 *
 * @module
 */

import { Buffer } from "node:buffer";
import { createHash, randomBytes, timingSafeEqual } from "node:crypto";

/** Name of the session cookie. */
export const SESSION_COOKIE = "gk_session";

/** A live session. */
export interface Session {
  /** The id of the API token used to log in. */
  tokenId: string;
  /** The token's name (shown in the page header). */
  name: string;
  /** Whether the session has admin rights. */
  admin: boolean;
  /** The CSRF token every state-changing request of this session must carry. */
  csrf: string;
  /** Expiry, epoch milliseconds. */
  expires: number;
}

/** Options of {@linkcode SessionStore}. */
export interface SessionStoreOptions {
  /** Session lifetime in milliseconds. @default 8 hours */
  ttlMs?: number;
  /** At most this many live sessions (oldest dropped first). @default 10000 */
  maxSessions?: number;
}

function sha256(text: string): string {
  return createHash("sha256").update(text, "utf8").digest("hex");
}

/**
 * Compares two strings in constant time (for CSRF tokens).
 *
 * @example
 * ```ts
 * import { safeEqual } from "./sessions.ts";
 * safeEqual("abc", "abc"); // true
 * ```
 */
export function safeEqual(a: string, b: string): boolean {
  const x = Buffer.from(sha256(a), "hex");
  const y = Buffer.from(sha256(b), "hex");
  return timingSafeEqual(x, y) && a.length === b.length;
}

/**
 * In-memory session store.
 *
 * @example
 * ```ts
 * import { SessionStore } from "./sessions.ts";
 * const sessions = new SessionStore();
 * const { id, session } = sessions.create({ tokenId: "t1", name: "admin", admin: true });
 * console.log(sessions.get(id)?.csrf === session.csrf); // true
 * ```
 */
export class SessionStore {
  readonly #ttlMs: number;
  readonly #max: number;
  #sessions = new Map<string, Session>(); // sha256(id) → session

  /** Creates an empty store. */
  constructor(options: SessionStoreOptions = {}) {
    this.#ttlMs = options.ttlMs ?? 8 * 60 * 60 * 1000;
    this.#max = options.maxSessions ?? 10_000;
  }

  /** Starts a session; returns the cookie value and the session. */
  create(
    who: { tokenId: string; name: string; admin: boolean },
  ): { id: string; session: Session } {
    const id = randomBytes(32).toString("base64url");
    const session: Session = {
      ...who,
      csrf: randomBytes(24).toString("base64url"),
      expires: Date.now() + this.#ttlMs,
    };
    while (this.#sessions.size >= this.#max) {
      const oldest = this.#sessions.keys().next().value;
      if (oldest === undefined) break;
      this.#sessions.delete(oldest);
    }
    this.#sessions.set(sha256(id), session);
    return { id, session };
  }

  /** The live session of a cookie value, if any. */
  get(id: string | undefined): Session | undefined {
    if (!id || id.length > 200) return undefined;
    const key = sha256(id);
    const s = this.#sessions.get(key);
    if (!s) return undefined;
    if (s.expires <= Date.now()) {
      this.#sessions.delete(key);
      return undefined;
    }
    return s;
  }

  /** Ends a session. */
  delete(id: string | undefined): void {
    if (id) this.#sessions.delete(sha256(id));
  }

  /** Ends every session of a token (when it is revoked). */
  deleteByToken(tokenId: string): void {
    for (const [k, s] of this.#sessions) {
      if (s.tokenId === tokenId) this.#sessions.delete(k);
    }
  }
}
