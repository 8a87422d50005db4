/**
 * `GET /metrics`: the host's metrics in the Prometheus text format, for an
 * admin (Bearer admin token or admin session) or a scraper holding the
 * separate metrics token (`GOATKIT_METRICS_TOKEN`). Anyone else gets 401
 * (no credentials, or a wrong token) or 403 (a non-admin API token).
 *
 * @example
 * ```ts ignore
 * app.get("/metrics", metricsHandler({
 *   metrics,
 *   token: "a-long-random-scrape-token",
 *   principal: (c) => auth.principal(c),
 * }));
 * ```
 *
 * @module
 */

import { createHash, timingSafeEqual } from "node:crypto";
import type { Context, Handler } from "hono";

/** Options of {@linkcode metricsHandler}. */
export interface MetricsHandlerOptions {
  /** Where the text comes from. */
  metrics: {
    /** The Prometheus text. */
    exposition(): Promise<string>;
    /** Its content type. */
    readonly contentType: string;
  };
  /** The separate scrape token; empty or absent: admins only. */
  token?: string;
  /** Who the request comes from (admin token or session). */
  principal(c: Context): Promise<{ admin: boolean } | undefined>;
}

const BEARER_REGEXP = /^Bearer\s+(\S+)\s*$/i;

function digest(text: string): Uint8Array {
  return createHash("sha256").update(text).digest();
}

/** Whether `given` is `expected`, in time independent of where they differ. */
function sameToken(given: string, expected: string): boolean {
  return timingSafeEqual(digest(given), digest(expected));
}

/** The `GET /metrics` handler (see the module doc). */
export function metricsHandler(options: MetricsHandlerOptions): Handler {
  const token = options.token ?? "";
  return async function metricsEndpoint(c) {
    const bearer = BEARER_REGEXP.exec(c.req.header("authorization") ?? "")
      ?.[1];
    const scraper = token !== "" && bearer !== undefined &&
      sameToken(bearer, token);
    if (!scraper) {
      const p = await options.principal(c);
      if (!p) {
        return c.json({ error: "unauthorized" }, 401, {
          "www-authenticate": 'Bearer realm="metrics"',
        });
      }
      if (!p.admin) return c.json({ error: "forbidden" }, 403);
    }
    const body = await options.metrics.exposition();
    return c.body(body, 200, {
      "content-type": options.metrics.contentType,
      "cache-control": "no-store",
    });
  };
}
