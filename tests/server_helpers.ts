// Shared set-up of the server tests: native TypeScript plugins on a real
// Manager, a real createApp, tokens, and a small request helper.

import nodeAssert from "node:assert/strict";
import { Manager } from "../host/manager.ts";
import type { GKRegistration } from "../host/model/manifest.ts";
import {
  type CallContext,
  decodeJson,
  encodeJson,
  type Plugin,
} from "../host/model/plugin.ts";
import {
  createApp,
  type GoatKitApp,
  routeCollisionCheck,
} from "../host/server/mod.ts";
import type { AppOptions } from "../host/server/mod.ts";
import { MemoryTokenStore } from "../host/server/auth/tokens.ts";
import { LogBuffer } from "../host/log_buffer.ts";

/** A handler of a native test plugin: gets decoded args, returns a JSON value (or raw bytes). */
export type Handler = (
  args: Record<string, unknown> | null,
  ctx: CallContext,
) => unknown | Promise<unknown>;

/** A native plugin serving `handlers`. */
export function nativePlugin(
  manifest: GKRegistration,
  handlers: Record<string, Handler>,
): Plugin & { calls: { fn: string; args: unknown; language?: string }[] } {
  const calls: { fn: string; args: unknown; language?: string }[] = [];
  return {
    calls,
    gkRegister: () => manifest,
    init: () => Promise.resolve(),
    async call(fn, args, ctx) {
      const decoded = decodeJson<Record<string, unknown>>(args);
      calls.push({
        fn,
        args: decoded,
        ...(ctx.language ? { language: ctx.language } : {}),
      });
      const h = handlers[fn];
      if (!h) throw new Error(`unknown function ${fn}`);
      const out = await h(decoded, ctx);
      if (out instanceof Uint8Array) return out;
      return out === undefined ? null : encodeJson(out);
    },
    shutdown: () => Promise.resolve(),
  };
}

/** A test server. */
export interface TestServer {
  manager: Manager;
  server: GoatKitApp;
  logs: LogBuffer;
  tokens: MemoryTokenStore;
  adminToken: string;
  userToken: string;
  /** Sends a request to the app (no network). */
  req(
    method: string,
    path: string,
    opts?: {
      token?: string;
      body?: BodyInit;
      headers?: Record<string, string>;
      cookie?: string;
    },
  ): Promise<Response>;
  close(): Promise<void>;
}

/** Builds a Manager (with the route collision check) and an app. */
export async function setup(
  options: Partial<AppOptions> & {
    collisionCheck?: boolean;
    managerTimeoutMs?: number;
  } = {},
): Promise<TestServer> {
  const logs = new LogBuffer();
  let manager: Manager | undefined = undefined;
  manager = new Manager({
    logs,
    ...(options.managerTimeoutMs
      ? { defaultTimeoutMs: options.managerTimeoutMs }
      : {}),
    manifestChecks: options.collisionCheck === false
      ? []
      : [routeCollisionCheck(() => manager)],
  });
  const m: Manager = manager;
  const tokens = new MemoryTokenStore();
  const adminToken =
    (await tokens.create({ name: "admin", admin: true })).token;
  const userToken = (await tokens.create({ name: "user" })).token;
  const server = createApp({ ...options, manager: m, tokens });
  return {
    manager: m,
    server,
    logs,
    tokens,
    adminToken,
    userToken,
    req(method, path, opts = {}) {
      const headers: Record<string, string> = { ...(opts.headers ?? {}) };
      if (opts.token) headers.authorization = `Bearer ${opts.token}`;
      if (opts.cookie) headers.cookie = opts.cookie;
      return server.fetch(
        new Request(`http://localhost${path}`, {
          method,
          headers,
          ...(opts.body !== undefined ? { body: opts.body } : {}),
          redirect: "manual",
        }),
      );
    },
    async close() {
      server.close();
      await m.shutdownAll();
    },
  };
}

/** Reads a response as JSON. */
export async function json<T = Record<string, unknown>>(
  res: Response,
): Promise<T> {
  return await res.json() as T;
}

/** Asserts `value` is truthy. */
export function assert(value: unknown, message?: string): asserts value {
  nodeAssert.ok(value, message ?? "assertion failed");
}
/** Deep strict equality. */
export function assertEquals(
  actual: unknown,
  expected: unknown,
  message?: string,
): void {
  nodeAssert.deepEqual(actual, expected, message ?? "values differ");
}
/** String matches a pattern. */
export function assertMatch(actual: string, re: RegExp): void {
  nodeAssert.match(actual, re);
}
/** `fn` rejects with an instance of `cls`; returns the error. */
export async function assertRejects<E extends Error>(
  fn: () => Promise<unknown>,
  cls: new (...a: never[]) => E,
): Promise<E> {
  try {
    await fn();
  } catch (e) {
    nodeAssert.ok(e instanceof cls, `expected ${cls.name}, got ${e}`);
    return e as E;
  }
  throw new Error(`expected a rejection with ${cls.name}`);
}
/** `fn` throws an instance of `cls`; returns the error. */
export function assertThrows<E extends Error>(
  fn: () => unknown,
  cls: new (...a: never[]) => E,
): E {
  try {
    fn();
  } catch (e) {
    nodeAssert.ok(e instanceof cls, `expected ${cls.name}, got ${e}`);
    return e as E;
  }
  throw new Error(`expected a throw of ${cls.name}`);
}
