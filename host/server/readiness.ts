/**
 * `GET /readyz`: whether this host should get traffic. `/healthz` stays a
 * liveness probe (the process answers); `/readyz` answers `200` only when
 * every discovered plugin has loaded (or waits for lazy loading) and the
 * checks the host adds (`AppOptions.readiness`: database ping, cache ping,
 * plugin folders that are not usable, start-up still loading) pass, else
 * `503` with every failure listed:
 *
 * ```json
 * { "status": "not-ready",
 *   "failures": [{ "check": "plugin", "name": "hello", "error": "…" },
 *                { "check": "database", "error": "no answer within 3000 ms" }],
 *   "host": { "id": "web1-4242-a1b2c3", "roles": ["http", "scheduler"] },
 *   "cluster": { "hosts": 2 } }
 * ```
 *
 * `host` and `cluster` come from `AppOptions.identity` (the host's id and
 * roles, and the live hosts of its cluster: 1 without one).
 *
 * Texts never show the server's absolute paths.
 *
 * @module
 */

import type { Context } from "hono";
import { errorText } from "../model/errors.ts";
import type { ServerContext } from "./context.ts";
import type { ReadinessFailure } from "./options.ts";
import { withoutServerPaths } from "./plugin_status.ts";

/** The body of `GET /readyz`. */
export interface ReadinessReport {
  /** `ready` (HTTP 200) or `not-ready` (HTTP 503). */
  status: "ready" | "not-ready";
  /** Why it is not ready; empty when ready. */
  failures: ReadinessFailure[];
  /** This host: its id and roles (`http`, `scheduler`), when the host says. */
  host?: { id: string; roles: string[] };
  /** Its cluster: live hosts on the same database and schema, this one included. */
  cluster?: { hosts: number };
}

/**
 * Runs `check` with a deadline: resolves to `undefined` when it succeeds in
 * time, else to the reason.
 *
 * @example
 * ```ts
 * import { probe } from "./readiness.ts";
 * await probe(() => Promise.resolve(), 100); // undefined
 * await probe(() => new Promise(() => {}), 10); // "no answer within 10 ms"
 * ```
 */
export async function probe(
  check: () => Promise<unknown>,
  timeoutMs: number,
): Promise<string | undefined> {
  let timer: ReturnType<typeof setTimeout> | undefined;
  const late = new Promise<string>((resolve) => {
    timer = setTimeout(
      () => resolve(`no answer within ${timeoutMs} ms`),
      timeoutMs,
    );
  });
  try {
    return await Promise.race([
      check().then(() => undefined, (e) => errorText(e)),
      late,
    ]);
  } finally {
    clearTimeout(timer);
  }
}

/** The readiness of the host behind `ctx`; see the module doc. */
export async function readinessReport(
  ctx: ServerContext,
): Promise<ReadinessReport> {
  const loader = ctx.options.loader;
  const roots = [
    ...(loader?.dir ? [loader.dir] : []),
    ...(loader?.exampleDirs ?? []),
  ];
  const failures: ReadinessFailure[] = [];
  const registered = new Set(ctx.manager.list().map((m) => m.name));
  for (const name of ctx.manager.discovered()) {
    const error = loader?.failure?.(name);
    if (!registered.has(name) && error !== undefined) {
      failures.push({
        check: "plugin",
        name,
        error: withoutServerPaths(error, roots),
      });
    }
  }
  try {
    for (const f of (await ctx.options.readiness?.()) ?? []) {
      failures.push({
        ...f,
        ...(f.name !== undefined
          ? { name: withoutServerPaths(f.name, roots) }
          : {}),
        error: withoutServerPaths(f.error, roots),
      });
    }
  } catch (e) {
    failures.push({ check: "readiness", error: errorText(e) });
  }
  const identity = ctx.options.identity?.();
  return {
    status: failures.length === 0 ? "ready" : "not-ready",
    failures,
    ...(identity ? { host: identity.host, cluster: identity.cluster } : {}),
  };
}

/** The `GET /readyz` handler. */
export function readinessHandler(
  ctx: ServerContext,
): (c: Context) => Promise<Response> {
  return async (c) => {
    const report = await readinessReport(ctx);
    c.header("cache-control", "no-store");
    return c.json(report, report.status === "ready" ? 200 : 503);
  };
}
