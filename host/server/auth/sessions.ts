/**
 * Browser sessions: created at login from a valid API token, identified by an
 * HttpOnly SameSite=Strict cookie, each with its own CSRF token.
 *
 * Sessions live in memory by default (a restart logs everyone out), or in a
 * {@linkcode SessionBackend} such as the host's PostgreSQL table (the host
 * wires `PgSessionStore`): then they survive a restart and a cookie made on
 * one host is valid on every host using the same database. Either way only
 * the SHA-256 of the session id is kept, so a heap dump or a database dump
 * does not reveal live cookies.
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

/**
 * Where sessions are kept beyond one process, by the SHA-256 (hex) of
 * their id: the backend never sees a cookie value.
 */
export interface SessionBackend {
  /** Stores a new session. */
  put(idHash: string, session: Session): Promise<void>;
  /** The session of an id hash, unless it is missing or expired. */
  get(idHash: string): Promise<Session | undefined>;
  /** Removes one session. */
  delete(idHash: string): Promise<void>;
  /** Removes every session of a token. */
  deleteByToken(tokenId: string): Promise<void>;
}

/** Options of {@linkcode SessionStore}. */
export interface SessionStoreOptions {
  /** Session lifetime in milliseconds. @default 8 hours */
  ttlMs?: number;
  /**
   * At most this many live sessions in memory (oldest dropped first); a
   * backend keeps its own. @default 10000
   */
  maxSessions?: number;
  /** Keep sessions there instead of in memory. */
  backend?: SessionBackend;
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
 * The session store: in memory, or in `options.backend`.
 *
 * @example
 * ```ts
 * import { SessionStore } from "./sessions.ts";
 * const sessions = new SessionStore();
 * const { id, session } = await sessions.create({ tokenId: "t1", name: "admin", admin: true });
 * console.log((await sessions.get(id))?.csrf === session.csrf); // true
 * ```
 */
export class SessionStore {
  readonly #ttlMs: number;
  readonly #max: number;
  readonly #backend: SessionBackend | undefined;
  #sessions = new Map<string, Session>(); // sha256(id) → session

  /** Creates an empty store (or one over `options.backend`). */
  constructor(options: SessionStoreOptions = {}) {
    this.#ttlMs = options.ttlMs ?? 8 * 60 * 60 * 1000;
    this.#max = options.maxSessions ?? 10_000;
    this.#backend = options.backend;
  }

  /** Starts a session; returns the cookie value and the session. */
  async create(
    who: { tokenId: string; name: string; admin: boolean },
  ): Promise<{ id: string; session: Session }> {
    const id = randomBytes(32).toString("base64url");
    const session: Session = {
      tokenId: who.tokenId,
      name: who.name,
      admin: who.admin,
      csrf: randomBytes(24).toString("base64url"),
      expires: Date.now() + this.#ttlMs,
    };
    if (this.#backend) {
      await this.#backend.put(sha256(id), session);
      return { id, session };
    }
    while (this.#sessions.size >= this.#max) {
      const oldest = this.#sessions.keys().next().value;
      if (oldest === undefined) break;
      this.#sessions.delete(oldest);
    }
    this.#sessions.set(sha256(id), session);
    return { id, session };
  }

  /** The live session of a cookie value, if any. */
  async get(id: string | undefined): Promise<Session | undefined> {
    if (!id || id.length > 200) return undefined;
    const key = sha256(id);
    if (this.#backend) {
      const s = await this.#backend.get(key);
      return s && s.expires > Date.now() ? s : undefined;
    }
    const s = this.#sessions.get(key);
    if (!s) return undefined;
    if (s.expires <= Date.now()) {
      this.#sessions.delete(key);
      return undefined;
    }
    return s;
  }

  /** Ends a session. */
  async delete(id: string | undefined): Promise<void> {
    if (!id) return;
    if (this.#backend) await this.#backend.delete(sha256(id));
    else this.#sessions.delete(sha256(id));
  }

  /** Ends every session of a token (when it is revoked). */
  async deleteByToken(tokenId: string): Promise<void> {
    if (this.#backend) return await this.#backend.deleteByToken(tokenId);
    for (const [k, s] of this.#sessions) {
      if (s.tokenId === tokenId) this.#sessions.delete(k);
    }
  }
}
