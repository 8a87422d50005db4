// Shared set-up of the server tests: native TypeScript plugins on a real
// Manager, a real createApp, tokens, and a small request helper.

import nodeAssert from "node:assert/strict";
import { join } from "node:path";
import pg from "pg";
import { Manager } from "../host/manager.ts";
import type { GKRegistration } from "../host/model/manifest.ts";
import type { PluginCallInterceptor } from "../host/model/interceptors.ts";
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
import { type HostConfig, loadConfig } from "../host/services/config.ts";

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
    /** The Manager's plugin-call interceptors. */
    interceptors?: PluginCallInterceptor[];
  } = {},
): Promise<TestServer> {
  const logs = new LogBuffer();
  let manager: Manager | undefined = undefined;
  manager = new Manager({
    logs,
    ...(options.managerTimeoutMs
      ? { defaultTimeoutMs: options.managerTimeoutMs }
      : {}),
    ...(options.interceptors ? { interceptors: options.interceptors } : {}),
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

/** The test PostgreSQL (trust auth). */
export const PG_URL = "postgres://postgres@127.0.0.1:5432/test";

/** The host tables whose rows are scoped by the application schema. */
const SCOPED_HOST_TABLES = [
  "goatkit.plugin_grants",
  "goatkit.plugin_state",
  "goatkit.plugin_quotas",
  "goatkit.job_ticks",
  "goatkit.job_runs",
  "goatkit.hosts",
  "goatkit.api_tokens",
  "goatkit.packages",
  "goatkit.package_removals",
  "goatkit.package_signers",
  "goatkit.extism_vars",
];

/**
 * A private schema on the real test PostgreSQL (PGlite's first start takes
 * many seconds on a loaded box): a DATABASE_URL whose search_path is that
 * schema, and a function that drops it with the host's rows scoped to it.
 */
export async function privateSchema(): Promise<
  { url: string; drop(): Promise<void> }
> {
  const schema = `gk_server_test_${
    crypto.randomUUID().replaceAll("-", "").slice(0, 12)
  }`;
  const admin = new pg.Client({ connectionString: PG_URL });
  await admin.connect();
  try {
    await admin.query(`CREATE SCHEMA ${schema}`);
  } finally {
    await admin.end();
  }
  return {
    url: `${PG_URL}?options=${encodeURIComponent(`-c search_path=${schema}`)}`,
    async drop() {
      const c = new pg.Client({ connectionString: PG_URL });
      await c.connect();
      try {
        await c.query(`DROP SCHEMA IF EXISTS ${schema} CASCADE`);
        // The host's rows of this deployment (scoped by its schema).
        for (const table of SCOPED_HOST_TABLES) {
          const exists = await c.query("SELECT to_regclass($1) AS t", [table]);
          if (exists.rows[0]?.t === null) continue;
          await c.query(`DELETE FROM ${table} WHERE scope = $1`, [schema]);
        }
      } finally {
        await c.end();
      }
    },
  };
}

/**
 * The configuration of an in-process test host: any free port, data and
 * plugins in the given folders, no hot reload, the given database, plus
 * `env` (which may leave out the hostname to get the default).
 */
export function hostConfig(
  data: string,
  plugins: string,
  databaseUrl: string,
  env: Record<string, string> = {},
): HostConfig {
  return loadConfig({
    env: {
      PORT: "0",
      GOATKIT_DATA_DIR: data,
      GOATKIT_PLUGINS_DIR: plugins,
      GOATKIT_HOT_RELOAD: "false",
      DATABASE_URL: databaseUrl,
      ...env,
    },
    defaultPath: join(data, "absent.json"),
  });
}

/** Logs in through the login form; returns the session cookie and its CSRF token. */
export async function loginSession(
  t: TestServer,
  token: string,
): Promise<{ cookie: string; csrf: string }> {
  const page = await t.req("GET", "/login");
  const loginCookie = page.headers.get("set-cookie")!.split(";")[0]!;
  const csrf = /name="_csrf" value="([^"]+)"/.exec(await page.text())![1]!;
  const res = await t.req("POST", "/login", {
    cookie: loginCookie,
    body: new URLSearchParams({ _csrf: csrf, token, next: "/admin/plugins" }),
  });
  await res.body?.cancel();
  const cookie = res.headers.getSetCookie().find((c) =>
    c.startsWith("gk_session=")
  )!.split(";")[0]!;
  const admin = await t.req("GET", "/admin/plugins", { cookie });
  const sessionCsrf = /<meta name="csrf-token" content="([^"]+)">/.exec(
    await admin.text(),
  )?.[1];
  assert(sessionCsrf, "csrf meta tag");
  return { cookie, csrf: sessionCsrf };
}
