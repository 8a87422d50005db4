/**
 * The admin "Operations" page (`/admin/operations`): per plugin, the last
 * hour of calls, errors, p50/p99 latency, guest CPU and quota use, with
 * small per-minute charts drawn on the server as inline SVG (presentation
 * attributes only: no script, no style, nothing fetched, so the page's CSP
 * holds). The numbers come from the host's metrics
 * (`host/telemetry/metrics.ts`); with metrics switched off the page says so.
 *
 * @module
 */

import type { Hono } from "hono";
import type { ServerContext } from "../context.ts";
import { markup, raw, type SafeHtml } from "../html.ts";
import type { OperationsRow } from "../../telemetry/metrics.ts";
import { type PageKit, render } from "./page_kit.ts";

/** Size of a sparkline, in CSS pixels (one 2 px bar per minute). */
const SPARK_WIDTH = 120;
const SPARK_HEIGHT = 28;

/** Options of {@linkcode sparkline}. */
export interface SparklineOptions {
  /** What the chart shows, for screen readers and the tooltip. */
  label: string;
  /** Bar colour. @default "#2f7d4f" */
  color?: string;
  /** A second series drawn over the first from the baseline (errors). */
  overlay?: readonly number[];
  /** Colour of the overlay. @default "#b42318" */
  overlayColor?: string;
}

/** A number as SVG coordinates want it (at most 2 decimals). */
function coord(n: number): string {
  return String(Math.round(n * 100) / 100);
}

/**
 * A bar sparkline of `values` (oldest first) as inline SVG: one bar per
 * value, scaled to the largest; an empty series draws only the baseline.
 *
 * @example
 * ```ts
 * import { sparkline } from "./operations.ts";
 * const svg = sparkline([0, 2, 5, 1], { label: "calls per minute" }).value;
 * console.log(svg.startsWith("<svg")); // true
 * ```
 */
export function sparkline(
  values: readonly number[],
  options: SparklineOptions,
): SafeHtml {
  const n = Math.max(values.length, 1);
  const step = SPARK_WIDTH / n;
  const barWidth = coord(Math.max(step - 0.4, 0.6));
  const max = Math.max(0, ...values, ...(options.overlay ?? []));
  const usable = SPARK_HEIGHT - 2;
  const bars = (series: readonly number[], color: string) =>
    series.map((v, i) => {
      if (!(v > 0) || max === 0) return "";
      const h = Math.max(1, (v / max) * usable);
      return `<rect x="${coord(i * step)}" y="${
        coord(SPARK_HEIGHT - 1 - h)
      }" width="${barWidth}" height="${coord(h)}" fill="${color}"/>`;
    }).join("");
  const color = safeColor(options.color, "#2f7d4f");
  const overlayColor = safeColor(options.overlayColor, "#b42318");
  const title = `${options.label} (max ${formatNumber(max)})`;
  return markup`<svg xmlns="http://www.w3.org/2000/svg" class="spark" width="${SPARK_WIDTH}" height="${SPARK_HEIGHT}" viewBox="0 0 ${SPARK_WIDTH} ${SPARK_HEIGHT}" role="img" aria-label="${title}"><title>${title}</title><line x1="0" y1="${
    SPARK_HEIGHT - 0.5
  }" x2="${SPARK_WIDTH}" y2="${
    SPARK_HEIGHT - 0.5
  }" stroke="#d0d5dd" stroke-width="1"/>${raw(bars(values, color))}${
    raw(options.overlay ? bars(options.overlay, overlayColor) : "")
  }</svg>`;
}

/** `color` when it is a plain hex colour, else `fallback`. */
function safeColor(color: string | undefined, fallback: string): string {
  return color && /^#[0-9a-f]{3,8}$/i.test(color) ? color : fallback;
}

/** A count, with thousands separators. */
function formatNumber(n: number): string {
  return Math.round(n).toLocaleString("en-US");
}

/** A duration in ms: `0.42 ms`, `12 ms`, `1.2 s`; `—` when unknown. */
export function formatMs(ms: number | undefined): string {
  if (ms === undefined || !Number.isFinite(ms)) return "—";
  if (ms < 1) return `${ms.toFixed(2)} ms`;
  if (ms < 1000) return `${ms.toFixed(ms < 10 ? 1 : 0)} ms`;
  return `${(ms / 1000).toFixed(1)} s`;
}

/** Bytes as `512 KiB`, `3.0 MiB`; `—` when unknown. */
function formatBytes(bytes: number | undefined): string {
  if (bytes === undefined || !Number.isFinite(bytes)) return "—";
  if (bytes < 1024 * 1024) return `${Math.round(bytes / 1024)} KiB`;
  return `${(bytes / (1024 * 1024)).toFixed(1)} MiB`;
}

function statusCell(r: OperationsRow): SafeHtml {
  const [cls, label] = r.reason !== undefined
    ? ["bad", "quarantined"]
    : r.enabled
    ? ["ok", "running"]
    : ["off", "disabled"];
  return markup`<span class="badge ${cls}"${
    r.reason ? markup` title="${r.reason}"` : ""
  }>${label}</span>`;
}

function quotaCell(r: OperationsRow): SafeHtml {
  const refused = r.hour.quotaRefusals > 0
    ? markup`<div class="muted">${
      formatNumber(r.hour.quotaRefusals)
    } refused</div>`
    : "";
  if (!r.quotas || r.quotas.length === 0) {
    return markup`<span class="muted">—</span>${refused}`;
  }
  return markup`${
    r.quotas.map((q) =>
      markup`<div>${q.name}: ${formatNumber(q.used)} / ${
        formatNumber(q.limit)
      }</div>`
    )
  }${refused}`;
}

function row(r: OperationsRow): SafeHtml {
  const h = r.hour;
  const errorRate = h.calls > 0
    ? ` (${((h.errors / h.calls) * 100).toFixed(1)} %)`
    : "";
  const memory = r.rssBytes !== undefined
    ? `RSS ${formatBytes(r.rssBytes)}`
    : r.memoryBytes !== undefined
    ? formatBytes(r.memoryBytes)
    : "—";
  return markup`
    <tr data-plugin="${r.plugin}">
      <td><a href="/admin/plugins/${
    encodeURIComponent(r.plugin)
  }">${r.plugin}</a> ${statusCell(r)}<div class="muted">${r.runtime}</div></td>
      <td data-calls="${h.calls}">${formatNumber(h.calls)}<div>${
    sparkline(h.series.calls, {
      label: `${r.plugin}: calls per minute (errors in red), last hour`,
      overlay: h.series.errors,
    })
  }</div></td>
      <td data-errors="${h.errors}">${formatNumber(h.errors)}${errorRate}</td>
      <td>${formatMs(h.p50Ms)} / ${formatMs(h.p99Ms)}<div>${
    sparkline(h.series.p99Ms, {
      label: `${r.plugin}: p99 latency per minute in ms, last hour`,
      color: "#6941c6",
    })
  }</div></td>
      <td>${r.cpuMsTotal === undefined ? "—" : formatMs(h.cpuMs)}<div>${
    sparkline(h.series.cpuMs, {
      label: `${r.plugin}: guest CPU ms per minute, last hour`,
      color: "#175cd3",
    })
  }</div></td>
      <td>${memory}</td>
      <td>${r.inFlight}</td>
      <td>${quotaCell(r)}</td>
    </tr>
  `;
}

/** Mounts `GET /admin/operations` (admins only). */
export function mountOperationsPage(
  app: Hono,
  ctx: ServerContext,
  kit: PageKit,
): void {
  const { adminPage, principal } = kit;
  app.get("/admin/operations", adminPage, async (c) => {
    const p = await principal(c);
    const metrics = ctx.options.metrics;
    const body = !metrics
      ? markup`<p class="muted" id="metrics-off">Metrics are switched off (<code>GOATKIT_METRICS=false</code>): nothing is counted.</p>`
      : (() => {
        const rows = metrics.operations();
        return markup`
          <p class="muted">The last hour per plugin, minute by minute (the charts: one bar per minute, the current minute on the right). Counters since the host started: <code>GET /metrics</code>.</p>
          ${
          rows.length === 0
            ? markup`<p class="muted">No plugins registered.</p>`
            : markup`
          <table id="operations">
            <thead>
              <tr>
                <th>Plugin</th>
                <th>Calls (1 h)</th>
                <th>Errors</th>
                <th>Latency p50 / p99</th>
                <th>Guest CPU (1 h)</th>
                <th>Memory now</th>
                <th>In flight</th>
                <th>Quota</th>
              </tr>
            </thead>
            <tbody>${rows.map(row)}</tbody>
          </table>`
        }`;
      })();
    return render(
      c,
      ctx,
      p,
      { title: "Operations", current: "operations" },
      body,
    );
  });
}
