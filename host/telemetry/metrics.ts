/**
 * Host metrics: what the plugins are doing, for Prometheus (`GET /metrics`,
 * text format through npm `prom-client`) and the admin "Operations" page.
 *
 * {@linkcode HostMetrics} observes
 *
 * - every plugin call through {@linkcode HostMetrics.pluginInterceptor}
 *   (the `interceptors.plugin` seam of the Manager): calls, errors by kind,
 *   latency histogram, calls in flight, per plugin and declared function;
 * - every host call through {@linkcode HostMetrics.hostInterceptor}: by
 *   plugin, HostAPI method and outcome (allowed, denied, quota, error);
 * - the Manager's events ({@linkcode HostMetrics.watch}): quarantines;
 * - job runs ({@linkcode HostMetrics.jobRun}, the scheduler's `onRun`);
 * - plugin route requests by status ({@linkcode HostMetrics.routeMiddleware},
 *   one middleware in front of each route's handlers);
 * - at scrape time, each plugin's runtime usage (`Manager.usage`): guest
 *   CPU seconds, guest memory, subprocess RSS, restarts.
 *
 * Label values are bounded: plugin names are those of registered plugins,
 * functions those the manifest declares (route, widget and job handlers,
 * `timeouts` keys; any other function is `other`), routes their declared
 * patterns, jobs their declared ids, host methods the fixed HostAPI list.
 *
 * @example
 * ```ts ignore
 * import { HostMetrics } from "./metrics.ts";
 * const metrics = new HostMetrics();
 * interceptors.plugin.push(metrics.pluginInterceptor);
 * interceptors.host.push(metrics.hostInterceptor);
 * metrics.watch(manager);
 * console.log(await metrics.exposition());
 * ```
 *
 * @module
 */

import type { MiddlewareHandler } from "hono";
import { Counter, Gauge, Histogram, type Metric, Registry } from "prom-client";
import type {
  HostCallInterceptor,
  PluginCallInterceptor,
} from "../model/interceptors.ts";
import type { GKRegistration } from "../model/manifest.ts";
import type {
  CallContext,
  PluginRuntimeKind,
  PluginUsage,
} from "../model/plugin.ts";
import { type HourSummary, MinuteRing } from "./metrics_ring.ts";

/**
 * How a failed plugin call is counted (`kind` label of
 * `goatkit_plugin_call_errors_total`).
 */
export type CallErrorKind =
  | "timeout"
  | "crash"
  | "denied"
  | "quota"
  | "overload"
  | "other";

/** Outcome of a host call (`outcome` label of `goatkit_host_calls_total`). */
export type HostCallOutcome = "allowed" | "denied" | "quota" | "error";

/**
 * The kind of a plugin call's failure: `timeout` (deadline), `crash`
 * (a WASM trap, a dead process or worker), `denied` (a permission), `quota`
 * (a `QuotaExceededError`), `overload` (the plugin's queue refused it), or
 * `other`. A call that failed after its context was aborted for its
 * deadline counts as `timeout`.
 *
 * @example
 * ```ts
 * import { PluginTimeoutError } from "../model/errors.ts";
 * import { callErrorKind } from "./metrics.ts";
 * callErrorKind(new PluginTimeoutError("p", 100)); // "timeout"
 * callErrorKind(new Error("boom")); // "other"
 * ```
 */
export function callErrorKind(e: unknown, ctx?: CallContext): CallErrorKind {
  switch ((e as { name?: unknown } | null)?.name) {
    case "PluginTimeoutError":
      return "timeout";
    case "PluginCrashedError":
      return "crash";
    case "PermissionDeniedError":
      return "denied";
    case "QuotaExceededError":
      return "quota";
    case "PluginOverloadedError":
      return "overload";
  }
  const reason = ctx?.signal.aborted ? ctx.signal.reason : undefined;
  if (
    (reason as { name?: unknown } | undefined)?.name === "PluginTimeoutError"
  ) {
    return "timeout";
  }
  return "other";
}

/** The outcome label of a host call that threw `e`. */
function hostOutcome(e: unknown): HostCallOutcome {
  const name = (e as { name?: unknown } | null)?.name;
  return name === "PermissionDeniedError"
    ? "denied"
    : name === "QuotaExceededError"
    ? "quota"
    : "error";
}

/** Latency histogram bounds of plugin calls and routes, in seconds. */
export const LATENCY_BUCKETS_SECONDS: readonly number[] = [
  0.0001,
  0.00025,
  0.0005,
  0.001,
  0.0025,
  0.005,
  0.01,
  0.025,
  0.05,
  0.1,
  0.25,
  0.5,
  1,
  2.5,
  5,
  10,
  30,
];

/** The function label of calls of a function the manifest does not declare. */
export const OTHER_FUNCTION = "other";

/**
 * The functions a manifest declares (route, widget and job handlers and
 * `timeouts` keys): the only values the `function` label takes.
 *
 * @example
 * ```ts
 * import { declaredFunctions } from "./metrics.ts";
 * const fns = declaredFunctions({
 *   name: "hello",
 *   version: "1.0.0",
 *   routes: [{ method: "GET", path: "/hello", handler: "greet" }],
 * });
 * console.log([...fns]); // ["greet"]
 * ```
 */
export function declaredFunctions(manifest: GKRegistration): Set<string> {
  const out = new Set<string>();
  for (const r of manifest.routes ?? []) out.add(r.handler);
  for (const w of manifest.widgets ?? []) out.add(w.handler);
  for (const j of manifest.jobs ?? []) out.add(j.handler);
  for (const k of Object.keys(manifest.timeouts ?? {})) out.add(k);
  return out;
}

/** What {@linkcode HostMetrics} reads from the Manager. */
export interface MetricsManager {
  /** Registered manifests. */
  list(): GKRegistration[];
  /** A registered plugin's manifest. */
  manifest(name: string): GKRegistration | undefined;
  /** A registered plugin's status (its `reason` tells a quarantine). */
  status(
    name: string,
  ):
    | { enabled: boolean; reason?: string; runtime: PluginRuntimeKind }
    | undefined;
  /** A registered plugin's runtime usage. */
  usage(name: string): PluginUsage | undefined;
  /** Follows registrations, replacements and disables. */
  subscribe(
    listener: (event: { type: string; name: string }) => void,
  ): () => void;
}

/** A plugin route as {@linkcode HostMetrics.routeMiddleware} labels it. */
export interface MetricsRoute {
  /** The plugin that declared it. */
  plugin: string;
  /** Its declared method. */
  method: string;
  /** Its declared path pattern (not the request path). */
  path: string;
}

/** What one kind of refusal of one route counts. */
interface RefusalCounters {
  request: Counter.Internal;
  duration: Histogram.Internal<string>;
  error: Counter.Internal;
  rec: CallRecord;
}

/** One use of a quota, for the Operations page. */
export interface QuotaUse {
  /** The quota, such as `host calls/s`. */
  name: string;
  /** How much of it is used now. */
  used: number;
  /** Its limit. */
  limit: number;
}

/** One plugin's row on the Operations page. */
export interface OperationsRow {
  /** The plugin. */
  plugin: string;
  /** How it runs. */
  runtime: PluginRuntimeKind;
  /** Whether calls are accepted. */
  enabled: boolean;
  /** Why the host disabled it (quarantine), if it did. */
  reason?: string;
  /** Calls in flight now. */
  inFlight: number;
  /** The last hour. */
  hour: HourSummary;
  /** Cumulative guest CPU since load, in ms, when the runtime tells. */
  cpuMsTotal?: number;
  /** Guest memory now, in bytes, when the runtime tells. */
  memoryBytes?: number;
  /** Subprocess RSS now, in bytes, when the runtime tells. */
  rssBytes?: number;
  /** Quota use, when a quota provider is set. */
  quotas?: QuotaUse[];
}

/** Options of {@linkcode HostMetrics}. */
export interface HostMetricsOptions {
  /**
   * Current quota use per plugin, for the Operations page (set by the
   * quota layer; also settable later with {@linkcode HostMetrics.setQuotaUse}).
   */
  quotaUse?: (plugin: string) => QuotaUse[] | undefined;
}

/**
 * One (plugin, function) series set, resolved once. The hot path only
 * bumps these numbers; the registry reads them at scrape time.
 */
interface CallRecord {
  readonly plugin: string;
  readonly fn: string;
  readonly ring: MinuteRing;
  calls: number;
  inFlight: number;
  /** Call counts per latency bucket (not cumulative); the last is +Inf. */
  readonly buckets: Float64Array;
  /** Sum of the call durations, seconds. */
  sum: number;
}

const BOUNDS = LATENCY_BUCKETS_SECONDS;

/** Per plugin: its ring, its records by function label and raw name. */
interface PluginRecords {
  readonly ring: MinuteRing;
  readonly byLabel: Map<string, CallRecord>;
  /** Raw function name → record, for declared functions only. */
  byName: Map<string, CallRecord>;
  declared: Set<string> | undefined;
}

const MINUTE_MS = 60_000;

/** See the module doc. */
export class HostMetrics {
  readonly #registry: Registry;
  readonly #errors: Counter<string>;
  readonly #hostCalls: Counter<string>;
  readonly #quarantines: Counter<string>;
  readonly #jobRuns: Counter<string>;
  readonly #jobFailures: Counter<string>;
  readonly #routeRequests: Counter<string>;
  /** {@linkcode HostMetrics.routeRefused}'s counters, by route and outcome. */
  readonly #refusals = new WeakMap<object, Map<string, RefusalCounters>>();
  readonly #routeDuration: Histogram<string>;
  readonly #plugins = new Map<string, PluginRecords>();
  #manager: MetricsManager | undefined;
  #unsubscribe: (() => void) | undefined;
  #minute = Math.floor(Date.now() / MINUTE_MS);
  #quotaUse: ((plugin: string) => QuotaUse[] | undefined) | undefined;
  /** Usage read once per scrape, for every usage metric's collect. */
  #usage = new Map<string, PluginUsage>();

  /** Creates the metrics (a registry of their own; nothing global). */
  constructor(options: HostMetricsOptions = {}) {
    this.#quotaUse = options.quotaUse;
    const registry = new Registry();
    this.#registry = registry;
    const registers = [registry];
    // Read by the collect callbacks (whose `this` is their metric).
    const records = () => this.#records();
    const manager = () => this.#manager;
    const usageNow = () => this.#usage;
    new Counter({
      name: "goatkit_plugin_calls_total",
      help: "Plugin calls through the Manager, every outcome",
      labelNames: ["plugin", "function"],
      registers,
      collect() {
        this.reset();
        for (const r of records()) {
          this.inc({ plugin: r.plugin, function: r.fn }, r.calls);
        }
      },
    });
    this.#errors = new Counter({
      name: "goatkit_plugin_call_errors_total",
      help:
        "Failed plugin calls by kind: timeout, crash (trap, dead process or worker), denied, quota, overload, other",
      labelNames: ["plugin", "function", "kind"],
      registers,
    });
    registry.registerMetric(this.#callDurationMetric());
    new Gauge({
      name: "goatkit_plugin_calls_in_flight",
      help: "Plugin calls in progress",
      labelNames: ["plugin", "function"],
      registers,
      collect() {
        this.reset();
        for (const r of records()) {
          this.set({ plugin: r.plugin, function: r.fn }, r.inFlight);
        }
      },
    });
    this.#hostCalls = new Counter({
      name: "goatkit_host_calls_total",
      help:
        "Host calls (HostAPI methods but log) by plugin, method and outcome: allowed, denied, quota, error",
      labelNames: ["plugin", "method", "outcome"],
      registers,
    });
    this.#quarantines = new Counter({
      name: "goatkit_plugin_quarantines_total",
      help: "Times the host disabled a plugin with a reason (quarantine)",
      labelNames: ["plugin"],
      registers,
    });
    new Gauge({
      name: "goatkit_plugin_quarantined",
      help: "1 while a plugin is quarantined (disabled by the host)",
      labelNames: ["plugin"],
      registers,
      collect() {
        this.reset();
        const m = manager();
        for (const mf of m?.list() ?? []) {
          const s = m!.status(mf.name);
          this.set({ plugin: mf.name }, s?.reason !== undefined ? 1 : 0);
        }
      },
    });
    this.#jobRuns = new Counter({
      name: "goatkit_job_runs_total",
      help: "Job runs by outcome: ok, error, timeout, skipped",
      labelNames: ["plugin", "job", "outcome"],
      registers,
    });
    this.#jobFailures = new Counter({
      name: "goatkit_job_failures_total",
      help: "Job runs that failed (error or timeout)",
      labelNames: ["plugin", "job"],
      registers,
    });
    this.#routeRequests = new Counter({
      name: "goatkit_route_requests_total",
      help: "Plugin route requests by declared route and HTTP status",
      labelNames: ["plugin", "method", "route", "status"],
      registers,
    });
    this.#routeDuration = new Histogram({
      name: "goatkit_route_request_duration_seconds",
      help: "Plugin route request latency, seconds",
      labelNames: ["plugin", "method", "route"],
      buckets: [...LATENCY_BUCKETS_SECONDS],
      registers,
    });
    const usageCounter = (
      name: string,
      help: string,
      pick: (u: PluginUsage) => number | undefined,
    ) =>
      new Counter({
        name,
        help,
        labelNames: ["plugin"],
        registers,
        collect() {
          this.reset();
          for (const [plugin, u] of usageNow()) {
            const v = pick(u);
            if (v !== undefined && v >= 0) this.inc({ plugin }, v);
          }
        },
      });
    const usageGauge = (
      name: string,
      help: string,
      pick: (u: PluginUsage) => number | undefined,
    ) =>
      new Gauge({
        name,
        help,
        labelNames: ["plugin"],
        registers,
        collect() {
          this.reset();
          for (const [plugin, u] of usageNow()) {
            const v = pick(u);
            if (v !== undefined) this.set({ plugin }, v);
          }
        },
      });
    usageCounter(
      "goatkit_plugin_cpu_seconds_total",
      "Guest CPU time since the plugin was loaded (WASM: guest run time; subprocess: user + system), seconds",
      (u) => u.cpuMs / 1000,
    );
    usageCounter(
      "goatkit_plugin_guest_calls_total",
      "Calls that ran guest code since the plugin was loaded",
      (u) => u.calls,
    );
    usageGauge(
      "goatkit_plugin_memory_bytes",
      "Guest memory now (WASM linear memory of its instances), bytes",
      (u) => u.memoryBytes,
    );
    usageGauge(
      "goatkit_plugin_rss_bytes",
      "Resident memory of the plugin's process(es) now, bytes",
      (u) => u.rssBytes,
    );
    usageCounter(
      "goatkit_plugin_restarts_total",
      "Times the runtime replaced a crashed or stuck instance or process",
      (u) => u.restarts,
    );
  }

  /**
   * Every call record, of every plugin seen since start (an unregistered
   * plugin's counters stay: Prometheus counters never go back, and the
   * names are bounded by the plugins ever registered).
   */
  *#records(): Generator<CallRecord> {
    for (const p of this.#plugins.values()) yield* p.byLabel.values();
  }

  /**
   * `goatkit_plugin_call_duration_seconds` as a prom-client metric read
   * from the call records (a histogram the hot path fills without
   * prom-client's per-observation label hashing).
   */
  #callDurationMetric(): Metric {
    const name = "goatkit_plugin_call_duration_seconds";
    const records = () => this.#records();
    const metric = {
      name,
      help: "Plugin call latency (every outcome), seconds",
      type: "histogram",
      aggregator: "sum",
      get() {
        const values: {
          metricName: string;
          labels: Record<string, string | number>;
          value: number;
        }[] = [];
        for (const r of records()) {
          const labels = { plugin: r.plugin, function: r.fn };
          let cumulative = 0;
          for (let i = 0; i < r.buckets.length; i++) {
            cumulative += r.buckets[i]!;
            values.push({
              metricName: `${name}_bucket`,
              labels: {
                le: i < BOUNDS.length ? BOUNDS[i]! : "+Inf",
                ...labels,
              },
              value: cumulative,
            });
          }
          values.push({ metricName: `${name}_sum`, labels, value: r.sum });
          values.push({
            metricName: `${name}_count`,
            labels,
            value: cumulative,
          });
        }
        return Promise.resolve({
          name,
          help: metric.help,
          type: metric.type,
          aggregator: metric.aggregator,
          values,
        });
      },
      reset() {},
    };
    return metric as unknown as Metric;
  }

  /**
   * Follows `manager`: its manifests give the declared functions, its
   * events count quarantines, its usage is read at each scrape. Call once.
   */
  watch(manager: MetricsManager): void {
    this.#unsubscribe?.();
    this.#manager = manager;
    this.#unsubscribe = manager.subscribe((e) => {
      const p = this.#plugins.get(e.name);
      if (p) {
        // The manifest may have changed: resolve function labels again.
        p.byName = new Map();
        p.declared = undefined;
      }
      if (
        e.type === "disabled" && manager.status(e.name)?.reason !== undefined
      ) {
        this.#quarantines.inc({ plugin: e.name });
      }
    });
  }

  /** Stops following the Manager. */
  close(): void {
    this.#unsubscribe?.();
    this.#unsubscribe = undefined;
  }

  /** Sets where the Operations page reads quota use from. */
  setQuotaUse(fn: (plugin: string) => QuotaUse[] | undefined): void {
    this.#quotaUse = fn;
  }

  #pluginRecords(plugin: string): PluginRecords {
    let p = this.#plugins.get(plugin);
    if (!p) {
      p = {
        ring: new MinuteRing(),
        byLabel: new Map(),
        byName: new Map(),
        declared: undefined,
      };
      this.#plugins.set(plugin, p);
    }
    return p;
  }

  #record(plugin: string, fn: string): CallRecord {
    const p = this.#plugins.get(plugin) ?? this.#pluginRecords(plugin);
    const known = p.byName.get(fn);
    if (known) return known;
    if (!p.declared) {
      const mf = this.#manager?.manifest(plugin);
      p.declared = mf ? declaredFunctions(mf) : new Set();
    }
    const declared = p.declared.has(fn);
    const label = declared ? fn : OTHER_FUNCTION;
    let rec = p.byLabel.get(label);
    if (!rec) {
      rec = {
        plugin,
        fn: label,
        ring: p.ring,
        calls: 0,
        inFlight: 0,
        buckets: new Float64Array(BOUNDS.length + 1),
        sum: 0,
      };
      p.byLabel.set(label, rec);
    }
    // Only declared names are cached: any other name maps to `other`
    // without growing the map.
    if (declared) p.byName.set(fn, rec);
    return rec;
  }

  #finish(
    rec: CallRecord,
    t0: number,
    e: unknown,
    failed: boolean,
    ctx: CallContext,
  ): void {
    const now = performance.now();
    const ms = now - t0;
    rec.inFlight--;
    let quota = false;
    if (failed) {
      const kind = callErrorKind(e, ctx);
      quota = kind === "quota";
      this.#errors.labels(rec.plugin, rec.fn, kind).inc();
    }
    this.#count(rec, ms, failed, quota, now);
  }

  /**
   * Counts one finished call that took `ms` (its histogram, its minute),
   * ended at `now` (`performance.now()`).
   */
  #count(
    rec: CallRecord,
    ms: number,
    failed: boolean,
    quota: boolean,
    now = performance.now(),
  ): void {
    const seconds = ms / 1000;
    rec.calls++;
    rec.sum += seconds;
    let i = 0;
    while (i < BOUNDS.length && seconds > BOUNDS[i]!) i++;
    rec.buckets[i]!++;
    const minute = Math.floor((performance.timeOrigin + now) / MINUTE_MS);
    if (minute !== this.#minute) this.#rotate(minute);
    rec.ring.record(minute, ms, failed, quota);
  }

  /** A new minute began: credit the CPU used so far to the one that ended. */
  #rotate(minute: number): void {
    const ended = this.#minute;
    this.#minute = minute;
    this.#sampleCpu(ended);
  }

  #sampleCpu(minute: number): void {
    const m = this.#manager;
    if (!m) return;
    for (const [plugin, p] of this.#plugins) {
      const u = safeUsage(m, plugin);
      if (u) p.ring.sampleCpu(minute, u.cpuMs);
    }
  }

  /**
   * The plugin-call interceptor (push it onto `interceptors.plugin`, after
   * tracing and before quotas so quota refusals are counted).
   */
  readonly pluginInterceptor: PluginCallInterceptor = (call, next) => {
    const rec = this.#record(call.plugin, call.fn);
    rec.inFlight++;
    const t0 = performance.now();
    let p: Promise<Uint8Array | null>;
    try {
      p = next();
    } catch (e) {
      this.#finish(rec, t0, e, true, call.ctx);
      throw e;
    }
    return p.then((out) => {
      this.#finish(rec, t0, undefined, false, call.ctx);
      return out;
    }, (e) => {
      this.#finish(rec, t0, e, true, call.ctx);
      throw e;
    });
  };

  /** The host-call interceptor (push it onto `interceptors.host`). */
  readonly hostInterceptor: HostCallInterceptor = async (call, next) => {
    try {
      const out = await next();
      this.#hostCalls.labels(call.plugin, call.method, "allowed").inc();
      return out;
    } catch (e) {
      this.#hostCalls.labels(call.plugin, call.method, hostOutcome(e)).inc();
      throw e;
    }
  };

  /**
   * Counts one job run (the scheduler's `onRun`): `outcome` is the run's
   * (`ok`, `error`, `timeout`, `skipped`); `error` and `timeout` are also
   * failures.
   */
  jobRun(plugin: string, job: string, run: { outcome: string }): void {
    this.#jobRuns.labels(plugin, job, run.outcome).inc();
    if (run.outcome === "error" || run.outcome === "timeout") {
      this.#jobFailures.labels(plugin, job).inc();
    }
  }

  /**
   * A middleware for one plugin route (put it first in the route's chain):
   * counts each request by status and times it, labelled with the
   * declared route, never the request path.
   *
   * @ignore
   */
  routeMiddleware(route: MetricsRoute): MiddlewareHandler {
    const { plugin, method, path } = route;
    const duration = this.#routeDuration.labels(plugin, method, path);
    const byStatus = new Map<number, Counter.Internal>();
    const requests = this.#routeRequests;
    return async function routeMetrics(c, next) {
      const t0 = performance.now();
      try {
        await next();
      } finally {
        const status = c.res.status;
        let counter = byStatus.get(status);
        if (!counter) {
          counter = requests.labels(plugin, method, path, String(status));
          byStatus.set(status, counter);
        }
        counter.inc();
        duration.observe((performance.now() - t0) / 1000);
      }
    };
  }

  /**
   * Counts a route request refused before its call was built, because
   * the route's plugin refused the call at once (a failure of `kind`): the
   * request with its `status`, and the call as a failure of 0 s, as
   * {@linkcode HostMetrics.routeMiddleware} and the plugin-call
   * interceptor would have counted them.
   */
  routeRefused(
    route: MetricsRoute & { handler: string },
    status: number,
    kind: CallErrorKind,
  ): void {
    const key = `${status}\n${kind}`;
    let byKey = this.#refusals.get(route);
    if (!byKey) this.#refusals.set(route, byKey = new Map());
    let counted = byKey.get(key);
    if (!counted) {
      const { plugin, method, path } = route;
      const rec = this.#record(plugin, route.handler);
      counted = {
        request: this.#routeRequests.labels(
          plugin,
          method,
          path,
          String(status),
        ),
        duration: this.#routeDuration.labels(plugin, method, path),
        error: this.#errors.labels(plugin, rec.fn, kind),
        rec,
      };
      byKey.set(key, counted);
    }
    counted.request.inc();
    counted.duration.observe(0);
    counted.error.inc();
    this.#count(counted.rec, 0, true, kind === "quota");
  }

  /** The `Content-Type` of {@linkcode HostMetrics.exposition}. */
  get contentType(): string {
    return this.#registry.contentType;
  }

  /** Every metric in the Prometheus text format (reads usage now). */
  async exposition(): Promise<string> {
    const usage = new Map<string, PluginUsage>();
    const m = this.#manager;
    for (const mf of m?.list() ?? []) {
      const u = safeUsage(m!, mf.name);
      if (u) usage.set(mf.name, u);
    }
    this.#usage = usage;
    try {
      return await this.#registry.metrics();
    } finally {
      this.#usage = new Map();
    }
  }

  /**
   * The Operations page's rows: every registered plugin, its last hour
   * (calls, errors, p50/p99, CPU per minute) and its usage now.
   */
  operations(now: number = Date.now()): OperationsRow[] {
    const minute = Math.floor(now / MINUTE_MS);
    if (minute !== this.#minute) this.#rotate(minute);
    // Credit the CPU used so far this minute (and keep the baseline).
    this.#sampleCpu(minute);
    const m = this.#manager;
    const names = (m?.list() ?? []).map((mf) => mf.name);
    return names.sort().map((plugin): OperationsRow => {
      const p = this.#pluginRecords(plugin);
      const status = m?.status(plugin);
      const u = m ? safeUsage(m, plugin) : undefined;
      let inFlight = 0;
      for (const r of p.byLabel.values()) inFlight += r.inFlight;
      const quotas = this.#quotaUse?.(plugin);
      return {
        plugin,
        runtime: status?.runtime ?? "native",
        enabled: status?.enabled ?? false,
        ...(status?.reason !== undefined ? { reason: status.reason } : {}),
        inFlight,
        hour: p.ring.summary(minute),
        ...(u ? { cpuMsTotal: u.cpuMs } : {}),
        ...(u?.memoryBytes !== undefined ? { memoryBytes: u.memoryBytes } : {}),
        ...(u?.rssBytes !== undefined ? { rssBytes: u.rssBytes } : {}),
        ...(quotas ? { quotas } : {}),
      };
    });
  }
}

/** `manager.usage(name)`, `undefined` when it throws or tells nothing. */
function safeUsage(
  manager: MetricsManager,
  name: string,
): PluginUsage | undefined {
  try {
    const u = manager.usage(name);
    return u && Number.isFinite(u.cpuMs) ? u : undefined;
  } catch {
    return undefined;
  }
}
