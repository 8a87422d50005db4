/**
 * Per-plugin quotas, enforced through the host's interceptors
 * (`host/model/interceptors.ts`), so they apply to every runtime alike:
 *
 * - around each plugin call (`Quotas.pluginInterceptor`): `concurrentCalls`
 *   (calls in flight) and `cpuMsPerMinute` (guest CPU over the last minute,
 *   from the deltas of the runtime's cumulative `usage().cpuMs`: a plugin
 *   that spent its budget gets no new call until enough of that minute has
 *   passed). A runtime that does not report CPU time is not limited on it,
 *   and the report says so;
 * - around each host call (`Quotas.hostInterceptor`): `hostCallsPerSecond`
 *   (a token bucket holding `hostCallBurst`), `httpBytesPerMinute` (request
 *   and response body bytes of `httpRequest`), `emailsPerHour`, and
 *   `dbStatementMs`: the guarded HostAPI caps each statement at
 *   {@linkcode Quotas.statementTimeoutMs}, and a statement cancelled by
 *   that cap is reported as the quota.
 *
 * A refusal throws {@linkcode QuotaExceededError} (HTTP 429 with
 * `Retry-After` on routes; a host-call error in the guest), never a fault
 * that counts toward quarantine. Refusals are audited (outcome
 * `quota-exceeded`, permission `quota:<kind>`) and logged at warn, at most
 * once per plugin, kind and {@linkcode QuotasOptions.auditEveryMs}; the next
 * entry counts the refusals in between.
 *
 * Limits, lowest precedence first: the built-in defaults, the host's
 * defaults (`quotas.default` in `goatkit.json`, then `GOATKIT_QUOTA_<KEY>`),
 * the plugin's section of the file (`quotas.plugins.<name>`), then the
 * operator's overrides from the admin API or page, kept in a
 * {@linkcode QuotaStore} and re-read by {@linkcode Quotas.refresh} (the host
 * calls it on the cluster change feed) or every
 * {@linkcode QuotasOptions.refreshMs} when set.
 *
 * @example
 * ```ts
 * import { Manager } from "../manager.ts";
 * import { createInterceptors } from "../model/interceptors.ts";
 * import { Quotas } from "./quotas.ts";
 * const interceptors = createInterceptors();
 * const manager = new Manager({ interceptors: interceptors.plugin });
 * const quotas = new Quotas({
 *   plugins: { hello: { concurrentCalls: 1 } },
 *   usage: (name) => manager.usage(name),
 * });
 * interceptors.plugin.push(quotas.pluginInterceptor);
 * interceptors.host.push(quotas.hostInterceptor);
 * quotas.limits("hello").concurrentCalls; // 1
 * ```
 *
 * @module
 */

import { errorText, QuotaExceededError } from "../model/errors.ts";
import type {
  HostCallInfo,
  HostCallInterceptor,
  PluginCallInfo,
  PluginCallInterceptor,
} from "../model/interceptors.ts";
import type {
  HttpRequest,
  HttpResponse,
  PluginLogSink,
} from "../model/host_api.ts";
import type { PluginUsage } from "../model/plugin.ts";
import { SlidingWindow, TokenBucket } from "./limiters.ts";
import {
  DEFAULT_QUOTA_LIMITS,
  QUOTA_KEYS,
  QUOTA_UNITS,
  type QuotaKind,
  type QuotaLimits,
} from "./quota_limits.ts";
import type { QuotaStore } from "./quota_store.ts";

/** What the quotas record in the audit log (the `AuditLog.record` shape). */
export interface QuotaAuditSink {
  /** Records one entry. */
  record(entry: {
    plugin: string;
    permission: string;
    attempted: string;
    method?: string;
    outcome?: string;
  }): unknown;
}

/** Options of {@linkcode Quotas}. */
export interface QuotasOptions {
  /** The host's defaults over the built-in ones (config file, environment). */
  defaults?: Partial<QuotaLimits>;
  /** Per-plugin limits from the config file (`quotas.plugins`). */
  plugins?: Readonly<Record<string, Partial<QuotaLimits>>>;
  /** The operator's overrides. @default none (config only) */
  store?: QuotaStore;
  /** A plugin's resource use (bind it to `Manager.usage`). */
  usage?: (plugin: string) => PluginUsage | undefined;
  /** Where refusals and override changes are recorded. */
  audit?: QuotaAuditSink;
  /** Where refusals are logged at warn, under the plugin's name. */
  logs?: PluginLogSink;
  /** The clock, in ms. @default Date.now */
  now?: () => number;
  /** How often the overrides are re-read from the store, in ms. @default 5000 */
  refreshMs?: number;
  /** At most one audit entry per plugin and kind in this time, in ms. @default 10000 */
  auditEveryMs?: number;
}

/** A plugin's quota use now, as {@linkcode Quotas.report} shows it. */
export interface QuotaUsage {
  /** Calls in flight. */
  inFlight: number;
  /** Guest CPU ms over the last minute; `null` when the runtime does not report CPU. */
  cpuMsLastMinute: number | null;
  /** Outbound HTTP body bytes over the last minute. */
  httpBytesLastMinute: number;
  /** E-mails over the last hour. */
  emailsLastHour: number;
  /** Host calls the bucket would admit at once now. */
  hostCallTokens: number;
}

/** One plugin's quotas: every layer, the effective limits and the use. */
export interface QuotaReport {
  /** The plugin. */
  plugin: string;
  /** The limits in force (0 = no limit). */
  limits: QuotaLimits;
  /** The host's defaults (built-in, `quotas.default`, `GOATKIT_QUOTA_*`). */
  defaults: QuotaLimits;
  /** The plugin's section of the config file (`quotas.plugins.<name>`). */
  configured: Partial<QuotaLimits>;
  /** The operator's overrides (admin API and page), kept in the database. */
  overrides: Partial<QuotaLimits>;
  /** Use now. */
  usage: QuotaUsage;
  /** Refusals per kind since the host started. */
  refused: Partial<Record<QuotaKind, number>>;
  /** Whether `cpuMsPerMinute` is enforced (the runtime reports CPU time). */
  cpuEnforced: boolean;
  /** Why a quota is not enforced, when one is not. */
  notes: string[];
}

/** What the HTTP server needs of the quotas (the admin API and page). */
export interface QuotasProvider {
  /** One plugin's quotas. */
  report(plugin: string): Promise<QuotaReport>;
  /** Replaces one plugin's overrides (`{}` removes them). */
  setOverrides(plugin: string, limits: Partial<QuotaLimits>): Promise<void>;
}

/** A plugin's counters. */
interface PluginQuotaState {
  inFlight: number;
  bucket?: TokenBucket;
  cpu: SlidingWindow;
  lastCpuMs?: number;
  cpuSeen: boolean;
  http: SlidingWindow;
  email: SlidingWindow;
  refused: Partial<Record<QuotaKind, number>>;
  /** Per kind: when it was last audited, and refusals since. */
  noted: Map<QuotaKind, { at: number; since: number }>;
}

const MINUTE = 60_000;
const HOUR = 3_600_000;

/** The per-plugin quotas of one host (see the module doc). */
export class Quotas implements QuotasProvider {
  readonly #defaults: QuotaLimits;
  readonly #configured: Readonly<Record<string, Partial<QuotaLimits>>>;
  readonly #store: QuotaStore | undefined;
  readonly #usage: ((plugin: string) => PluginUsage | undefined) | undefined;
  readonly #audit: QuotaAuditSink | undefined;
  readonly #logs: PluginLogSink | undefined;
  readonly #now: () => number;
  readonly #refreshMs: number;
  readonly #auditEveryMs: number;
  #overrides = new Map<string, Partial<QuotaLimits>>();
  #effective = new Map<string, QuotaLimits>();
  #states = new Map<string, PluginQuotaState>();
  #refreshedAt = -Infinity;
  #refreshing: Promise<void> | undefined;
  #refreshFailed = false;

  /** Creates the quotas; nothing is read from the store until {@linkcode Quotas.refresh} or a call. */
  constructor(options: QuotasOptions = {}) {
    this.#defaults = { ...DEFAULT_QUOTA_LIMITS, ...options.defaults };
    this.#configured = options.plugins ?? {};
    this.#store = options.store;
    this.#usage = options.usage;
    this.#audit = options.audit;
    this.#logs = options.logs;
    this.#now = options.now ?? Date.now;
    this.#refreshMs = options.refreshMs ?? 5000;
    this.#auditEveryMs = options.auditEveryMs ?? 10_000;
  }

  /** The limits in force for `plugin` (0 = no limit). */
  limits(plugin: string): QuotaLimits {
    let l = this.#effective.get(plugin);
    if (!l) {
      l = {
        ...this.#defaults,
        ...(Object.hasOwn(this.#configured, plugin)
          ? this.#configured[plugin]
          : {}),
        ...this.#overrides.get(plugin),
      };
      this.#effective.set(plugin, l);
    }
    return l;
  }

  /**
   * The statement cap of `plugin`'s database calls, in ms (`Infinity` for
   * none: the call's deadline still caps it). Read by the guarded HostAPI
   * at each statement.
   */
  statementTimeoutMs(plugin: string): number {
    const ms = this.limits(plugin).dbStatementMs;
    return ms > 0 ? ms : Infinity;
  }

  /** Re-reads the overrides from the store now (no-op without one). */
  refresh(): Promise<void> {
    if (!this.#store) return Promise.resolve();
    this.#refreshing ??= this.#store.all().then((all) => {
      this.#overrides = all;
      this.#effective.clear();
      this.#refreshedAt = this.#now();
      this.#refreshFailed = false;
    }).catch((e) => {
      this.#refreshedAt = this.#now();
      if (!this.#refreshFailed) {
        this.#refreshFailed = true;
        this.#logs?.log(
          "",
          "warn",
          `quota overrides could not be read (config limits apply): ${
            errorText(e)
          }`,
        );
      }
    }).finally(() => {
      this.#refreshing = undefined;
    });
    return this.#refreshing;
  }

  #maybeRefresh(now: number): void {
    if (this.#store && now - this.#refreshedAt >= this.#refreshMs) {
      void this.refresh();
    }
  }

  /** The operator's overrides of `plugin`, read from the store. */
  async overrides(plugin: string): Promise<Partial<QuotaLimits>> {
    if (!this.#store) return { ...this.#overrides.get(plugin) };
    return await this.#store.get(plugin);
  }

  /**
   * Replaces the operator's overrides of `plugin` (`{}` removes them);
   * applies at once on this host, is stored, and is audited.
   */
  async setOverrides(
    plugin: string,
    limits: Partial<QuotaLimits>,
  ): Promise<void> {
    const before = await this.overrides(plugin);
    const clean: Partial<QuotaLimits> = {};
    for (const k of QUOTA_KEYS) {
      if (limits[k] !== undefined) clean[k] = limits[k];
    }
    await this.#store?.set(plugin, clean);
    if (Object.keys(clean).length === 0) this.#overrides.delete(plugin);
    else this.#overrides.set(plugin, clean);
    this.#effective.delete(plugin);
    this.#audit?.record({
      plugin,
      permission: "quotas",
      attempted: `quota overrides set to ${JSON.stringify(clean)} (were ${
        JSON.stringify(before)
      })`,
      outcome: "quotas-changed",
    });
    this.#logs?.log(
      plugin,
      "info",
      `quota overrides set to ${JSON.stringify(clean)}`,
    );
  }

  /** One plugin's quotas: layers, limits in force, use and refusals. */
  async report(plugin: string): Promise<QuotaReport> {
    const overrides = await this.overrides(plugin);
    const now = this.#now();
    const s = this.#state(plugin);
    const limits = this.limits(plugin);
    this.#observeCpu(plugin, s, now);
    const cpuEnforced = this.#usage?.(plugin) !== undefined;
    const notes: string[] = [];
    if (!cpuEnforced) {
      notes.push(
        "cpuMsPerMinute is not enforced: the plugin's runtime does not report guest CPU time (or the plugin is not loaded)",
      );
    }
    return {
      plugin,
      limits: { ...limits },
      defaults: { ...this.#defaults },
      configured: Object.hasOwn(this.#configured, plugin)
        ? { ...this.#configured[plugin] }
        : {},
      overrides,
      usage: {
        inFlight: s.inFlight,
        cpuMsLastMinute: cpuEnforced
          ? Math.round(s.cpu.sum(now) * 1000) / 1000
          : null,
        httpBytesLastMinute: s.http.sum(now),
        emailsLastHour: s.email.sum(now),
        hostCallTokens: Math.floor(
          this.#bucket(s, limits, now)?.tokens(now) ?? limits.hostCallBurst,
        ),
      },
      refused: { ...s.refused },
      cpuEnforced,
      notes,
    };
  }

  /** Limits plugin calls: concurrency and CPU per minute. */
  // No async wrapper or per-call closure; a refusal is still a
  // rejected promise, never a synchronous throw.
  readonly pluginInterceptor: PluginCallInterceptor = (call, next) => {
    const plugin = call.plugin;
    const now = this.#now();
    this.#maybeRefresh(now);
    const l = this.limits(plugin);
    const s = this.#state(plugin);
    if (l.concurrentCalls > 0 && s.inFlight >= l.concurrentCalls) {
      return Promise.reject(
        this.#refuseCall(call, s, now, "concurrentCalls", l.concurrentCalls, 1),
      );
    }
    this.#observeCpu(plugin, s, now);
    if (
      l.cpuMsPerMinute > 0 && s.cpuSeen && s.cpu.sum(now) >= l.cpuMsPerMinute
    ) {
      return Promise.reject(
        this.#refuseCall(
          call,
          s,
          now,
          "cpuMsPerMinute",
          l.cpuMsPerMinute,
          s.cpu.retryAfterSeconds(now, l.cpuMsPerMinute),
        ),
      );
    }
    s.inFlight++;
    let out: Promise<Uint8Array | null>;
    try {
      out = next();
    } catch (e) {
      this.#callEnded(plugin, s);
      return Promise.reject(e);
    }
    return out.then((result) => {
      this.#callEnded(plugin, s);
      return result;
    }, (e) => {
      this.#callEnded(plugin, s);
      throw e;
    });
  };

  /** A plugin call ended: one fewer in flight, the CPU it used counted. */
  #callEnded(plugin: string, s: PluginQuotaState): void {
    s.inFlight--;
    this.#observeCpu(plugin, s, this.#now());
  }

  /** Counts a refused plugin call and returns its error. */
  #refuseCall(
    call: PluginCallInfo,
    s: PluginQuotaState,
    now: number,
    quota: QuotaKind,
    limit: number,
    after: number,
  ): QuotaExceededError {
    this.#refused(call.plugin, s, quota, now, `call of "${call.fn}"`);
    return new QuotaExceededError(call.plugin, {
      quota,
      limit,
      retryAfterSeconds: after,
      function: call.fn,
      ...(call.caller ? { caller: call.caller } : {}),
    });
  }

  /** Limits host calls: rate, HTTP bytes, e-mails; reports statement caps. */
  readonly hostInterceptor: HostCallInterceptor = async (call, next) => {
    const now = this.#now();
    this.#maybeRefresh(now);
    const l = this.limits(call.plugin);
    const s = this.#state(call.plugin);
    const refuse = (
      quota: QuotaKind,
      limit: number,
      after: number,
      cause?: unknown,
    ): never => {
      const attempted = describe(call);
      this.#refused(call.plugin, s, quota, now, attempted, call.method);
      throw new QuotaExceededError(call.plugin, {
        quota,
        limit,
        retryAfterSeconds: after,
        attempted,
        ...(cause === undefined ? {} : { cause }),
      });
    };
    const bucket = this.#bucket(s, l, now);
    if (bucket && !bucket.take(now)) {
      refuse(
        "hostCallsPerSecond",
        l.hostCallsPerSecond,
        bucket.retryAfterSeconds(now),
      );
    }
    switch (call.method) {
      case "httpRequest": {
        const req = call.args[0] as HttpRequest | undefined;
        const out = req?.body?.byteLength ?? 0;
        const limit = l.httpBytesPerMinute;
        if (limit > 0 && s.http.sum(now) + out > limit) {
          refuse(
            "httpBytesPerMinute",
            limit,
            s.http.retryAfterSeconds(now, limit, out),
          );
        }
        s.http.add(now, out);
        const res = await next() as HttpResponse | undefined;
        s.http.add(this.#now(), res?.body?.byteLength ?? 0);
        return res;
      }
      case "sendEmail": {
        const limit = l.emailsPerHour;
        if (limit > 0 && s.email.sum(now) >= limit) {
          refuse("emailsPerHour", limit, s.email.retryAfterSeconds(now, limit));
        }
        s.email.add(now, 1);
        try {
          return await next();
        } catch (e) {
          // Refused before sending (no permission): not an e-mail sent.
          if ((e as Error | null)?.name === "PermissionDeniedError") {
            s.email.add(now, -1);
          }
          throw e;
        }
      }
      case "dbQuery":
      case "dbExec": {
        const cap = l.dbStatementMs;
        const left = call.ctx.deadline - now;
        try {
          return await next();
        } catch (e) {
          // Cancelled by the quota's cap (not by the call's own deadline).
          if (cap > 0 && cap < left && isStatementTimeout(e)) {
            refuse("dbStatementMs", cap, 1, e);
          }
          throw e;
        }
      }
      default:
        return await next();
    }
  };

  #state(plugin: string): PluginQuotaState {
    let s = this.#states.get(plugin);
    if (!s) {
      s = {
        inFlight: 0,
        cpu: new SlidingWindow(MINUTE),
        cpuSeen: false,
        http: new SlidingWindow(MINUTE),
        email: new SlidingWindow(HOUR),
        refused: {},
        noted: new Map(),
      };
      this.#states.set(plugin, s);
    }
    return s;
  }

  /** The plugin's bucket for its current rate (none for no limit). */
  #bucket(
    s: PluginQuotaState,
    l: QuotaLimits,
    now: number,
  ): TokenBucket | undefined {
    if (l.hostCallsPerSecond <= 0) return undefined;
    const burst = Math.max(l.hostCallBurst, l.hostCallsPerSecond);
    if (
      !s.bucket || s.bucket.rate !== l.hostCallsPerSecond ||
      s.bucket.burst !== burst
    ) {
      s.bucket = new TokenBucket(l.hostCallsPerSecond, burst, now);
    }
    return s.bucket;
  }

  /** Adds the CPU time the runtime reported since the last look. */
  #observeCpu(plugin: string, s: PluginQuotaState, now: number): void {
    const cpu = this.#usage?.(plugin)?.cpuMs;
    if (cpu === undefined || !Number.isFinite(cpu)) return;
    s.cpuSeen = true;
    if (s.lastCpuMs === undefined) {
      s.lastCpuMs = cpu;
      return;
    }
    // A lower value means a new instance of the plugin (a reload).
    const delta = cpu >= s.lastCpuMs ? cpu - s.lastCpuMs : cpu;
    s.lastCpuMs = cpu;
    if (delta > 0) s.cpu.add(now, delta);
  }

  /** Counts a refusal; audits and logs it at most once per window. */
  #refused(
    plugin: string,
    s: PluginQuotaState,
    quota: QuotaKind,
    now: number,
    attempted: string,
    method?: string,
  ): void {
    s.refused[quota] = (s.refused[quota] ?? 0) + 1;
    const noted = s.noted.get(quota);
    if (noted && now - noted.at < this.#auditEveryMs) {
      noted.since++;
      return;
    }
    const more = noted && noted.since > 0
      ? ` (and ${noted.since} more refusal(s) since the last entry)`
      : "";
    s.noted.set(quota, { at: now, since: 0 });
    const limit = `${this.limits(plugin)[quota]} ${QUOTA_UNITS[quota]}`;
    this.#audit?.record({
      plugin,
      permission: `quota:${quota}`,
      attempted: `${attempted}: over ${limit}${more}`,
      ...(method ? { method } : {}),
      outcome: "quota-exceeded",
    });
    this.#logs?.log(
      plugin,
      "warn",
      `quota exceeded: ${quota} (${limit}) refused ${attempted}${more}`,
      { quota, audit: true },
    );
  }
}

/** A short description of a host call for messages and the audit log. */
function describe(call: HostCallInfo): string {
  const a = call.args;
  switch (call.method) {
    case "httpRequest": {
      const r = a[0] as HttpRequest | undefined;
      let where = "";
      try {
        const u = new URL(r?.url ?? "");
        where = `${u.protocol}//${u.host}${u.pathname}`;
      } catch {
        where = "(bad URL)";
      }
      return `http_request ${(r?.method || "GET").toUpperCase()} ${where}`;
    }
    case "sendEmail":
      return `send_email to ${
        String((a[0] as { to?: unknown } | undefined)?.to ?? "").slice(0, 120)
      }`;
    case "dbQuery":
    case "dbExec":
      return `${call.method === "dbQuery" ? "db_query" : "db_exec"} ${
        String(a[0] ?? "").replace(/\s+/g, " ").trim().slice(0, 120)
      }`;
    case "callPlugin":
      return `plugin_call ${String(a[0] ?? "")}.${String(a[1] ?? "")}`;
    default:
      return `host call ${call.method}`;
  }
}

/** Whether `e` is PostgreSQL's "canceling statement due to statement timeout". */
function isStatementTimeout(e: unknown): boolean {
  for (let x = e, i = 0; x && i < 4; i++) {
    const code = (x as { code?: unknown }).code;
    if (code === "57014" && /statement timeout/i.test(errorText(x))) {
      return true;
    }
    x = (x as { cause?: unknown }).cause;
  }
  return false;
}
