/**
 * The permission audit log: every denial a guarded HostAPI makes, with the
 * plugin, the permission it lacked, what it attempted and when, plus the
 * operator's decisions recorded by the host (grants approved or revoked).
 * Read newest first by the admin page (`/admin/audit`) and the API
 * (`GET /api/v1/audit`). Denials are also written to the log sink (the
 * host's `LogBuffer`) at `warn`, so the plugin's log page shows them.
 *
 * One plugin cannot flush the others' entries:
 *
 * - **A share per plugin.** When the log is full, the oldest entry of the
 *   plugin holding the most is dropped: with `n` plugins in the log, one
 *   that holds no more than `capacity / n` entries loses none to the others. `perPluginCapacity` caps a plugin further
 *   (its own oldest go first).
 * - **A rate limit per plugin.** At most `rateLimit.max` denials of one
 *   plugin are recorded per window of `rateLimit.windowMs`; the rest of that
 *   window are counted into a single `outcome: "suppressed"` entry
 *   (`count` = how many, `attempted` names the last one), and one warn line
 *   says so, another one with the total once the window is over (noticed at
 *   the next record or read). Operator entries (any outcome but `denied`)
 *   are never rate-limited.
 *
 * Operator actions (login and logout, tokens, installs, enable and disable,
 * grants, settings) are entries too, with who did it (`actor`), from where
 * (`ip`, the client address as the server sees it) and what changed
 * (`before` / `after`). The server runs each request inside
 * {@linkcode AuditLog.within}, so an entry recorded while it is handled
 * gets the request's actor and address without passing them down.
 *
 * Memory is a fast front cache: with a durable store attached
 * ({@linkcode AuditLog.persistTo}; the host attaches `PgAuditStore`) every
 * entry is queued for the database, and {@linkcode AuditLog.search} reads
 * it, so the log survives a restart.
 *
 * @module
 */

import { AsyncLocalStorage } from "node:async_hooks";
import type { PluginLogSink } from "../host/model/host_api.ts";

/** One recorded entry. */
export interface AuditEntry {
  /** When it happened (RFC 3339 with milliseconds); for a summary, the first suppressed denial. */
  time: string;
  /** The plugin concerned (`""` for the host itself). */
  plugin: string;
  /** The permission that would have allowed the action (or that was granted/revoked). */
  permission: string;
  /** What the plugin attempted (or what the operator did), short and human-readable. */
  attempted: string;
  /** The HostAPI method, such as `dbExec`. */
  method?: string;
  /**
   * `denied` (a refusal), `suppressed` (the summary of the denials the rate
   * limit kept out), or what the host records for an operator's decision
   * (`granted`, `revoked`, …).
   */
  outcome: string;
  /** For a `suppressed` summary: how many denials it stands for. */
  count?: number;
  /**
   * What kind of action, machine-readable: `login`, `logout`,
   * `token.create`, `token.revoke`, `plugin.install`, `plugin.upgrade`,
   * `plugin.uninstall`, `plugin.enable`, `plugin.disable`, `grant.approve`,
   * `grant.revoke`, `settings.change`, … (absent on permission denials).
   */
  action?: string;
  /**
   * Who did it: `token "<name>" (<id>)` (with ` via session` for a browser
   * session), `plugin:<name>` for what a plugin attempted, `host` for the
   * host itself.
   */
  actor?: string;
  /** From where: the client's IP address as the server sees it (trusted proxies honoured). */
  ip?: string;
  /** The state before the action (JSON). */
  before?: unknown;
  /** The state after the action (JSON). */
  after?: unknown;
  /** A stable id of the entry (a summary keeps its id while its count grows). */
  id?: string;
}

/** What {@linkcode AuditLog.record} takes: an entry without its time (and `outcome` defaulting to `denied`). */
export type AuditRecord =
  & Omit<AuditEntry, "time" | "outcome" | "count" | "id">
  & {
    /** When it happened. @default now */
    time?: string;
    /** @default "denied" */
    outcome?: string;
  };

/** Filters for {@linkcode AuditLog.query}; given filters apply together. */
export interface AuditQuery {
  /** Only this plugin's entries. */
  plugin?: string;
  /** Only entries at or after this time. */
  since?: Date | string;
  /** At most this many (the newest). */
  limit?: number;
}

/** Filters for {@linkcode AuditLog.search}: an {@linkcode AuditQuery} plus more. */
export interface AuditSearch extends AuditQuery {
  /** Only entries at or before this time. */
  until?: Date | string;
  /** Only entries with this outcome (`denied`, `granted`, …). */
  outcome?: string;
  /** Only entries of this action (`login`, `plugin.install`, …). */
  action?: string;
  /** Only entries containing this text (any field), ignoring case. */
  text?: string;
}

/** Who and where of the request being handled (see {@linkcode AuditLog.within}). */
export interface AuditOrigin {
  /** Who (see {@linkcode AuditEntry.actor}). */
  readonly actor?: string;
  /** The client's address. */
  readonly ip?: string;
}

/** A durable home of audit entries (the host's `PgAuditStore`). */
export interface DurableAuditStore {
  /** Queues an entry, or a newer version of one (same `id`); never throws. */
  add(entry: AuditEntry): void;
  /** Entries matching every filter, newest first. */
  search(q: AuditSearch): Promise<AuditEntry[]>;
}

/** The per-plugin rate limit of {@linkcode AuditLogOptions}. */
export interface AuditRateLimit {
  /** Denials recorded per plugin and window. */
  max: number;
  /** The window, in ms. */
  windowMs: number;
}

/** Options of {@linkcode AuditLog}. */
export interface AuditLogOptions {
  /** Entries kept at most, all plugins together. @default 1000 */
  capacity?: number;
  /**
   * Entries one plugin keeps at most (its oldest dropped first); the fair
   * share on a full log applies anyway.
   * @default `capacity`
   */
  perPluginCapacity?: number;
  /**
   * Denials recorded per plugin and window; the rest are summarised.
   * `false` records every one (the shares still apply).
   * @default { max: 100, windowMs: 60_000 }
   */
  rateLimit?: AuditRateLimit | false;
  /** Where a warn line per recorded denial goes, attributed to the plugin. */
  logs?: PluginLogSink;
  /** The clock, in ms since the epoch. @default Date.now */
  now?: () => number;
}

/** A held entry: `seq` orders entries across plugins. */
interface Held {
  seq: number;
  entry: AuditEntry;
}

/** One plugin's rate-limit window. */
interface Window {
  start: number;
  recorded: number;
  suppressed: number;
  summary?: Held;
}

/**
 * A capped, in-memory audit log with a share and a rate limit per plugin
 * (see the module doc).
 *
 * @example
 * ```ts
 * import { AuditLog } from "./audit.ts";
 * const audit = new AuditLog({ capacity: 100, rateLimit: { max: 2, windowMs: 60_000 } });
 * for (let i = 0; i < 5; i++) {
 *   audit.record({ plugin: "noisy", permission: "db:write", attempted: `db_exec ${i}` });
 * }
 * audit.record({ plugin: "hello", permission: "cache:read", attempted: "cache_get k" });
 * audit.query({ plugin: "noisy" }).map((e) => e.outcome); // ["suppressed", "denied", "denied"]
 * audit.query({ plugin: "noisy" })[0]?.count; // 3
 * audit.query({ plugin: "hello" })[0]?.permission; // "cache:read"
 * ```
 */
export class AuditLog {
  #capacity: number;
  #share: number;
  #rate: AuditRateLimit | undefined;
  #logs: PluginLogSink | undefined;
  #now: () => number;
  #byPlugin = new Map<string, Held[]>();
  #windows = new Map<string, Window>();
  #count = 0;
  #seq = 0;
  #store: DurableAuditStore | undefined;
  #origin = new AsyncLocalStorage<AuditOrigin>();
  #idBase = crypto.randomUUID().slice(0, 13);

  /** Creates an empty log. */
  constructor(options: AuditLogOptions = {}) {
    this.#capacity = options.capacity && options.capacity > 0
      ? Math.floor(options.capacity)
      : 1000;
    const share = options.perPluginCapacity ?? this.#capacity;
    this.#share = Math.max(1, Math.min(Math.floor(share), this.#capacity));
    const rate = options.rateLimit ?? { max: 100, windowMs: 60_000 };
    this.#rate = rate === false ? undefined : {
      max: Math.max(1, Math.floor(rate.max)),
      windowMs: Math.max(1, rate.windowMs),
    };
    this.#logs = options.logs;
    this.#now = options.now ?? Date.now;
  }

  /**
   * Records an entry (stamped now unless `time` is given; `outcome`
   * defaults to `denied`) and returns it as stored. A denial beyond the
   * plugin's rate limit is counted into the window's `suppressed` summary
   * instead, which is returned.
   */
  record(entry: AuditRecord): AuditEntry {
    const now = this.#now();
    const outcome = entry.outcome ?? "denied";
    const origin = this.#origin.getStore();
    // A HostAPI call is the plugin's doing; anything else the requester's.
    const actor = entry.actor ??
      (entry.method ? `plugin:${entry.plugin}` : origin?.actor ??
        (outcome === "denied" && entry.plugin
          ? `plugin:${entry.plugin}`
          : "host"));
    const ip = entry.ip ?? origin?.ip;
    const e: AuditEntry = {
      time: entry.time ?? new Date(now).toISOString(),
      plugin: entry.plugin,
      permission: entry.permission,
      attempted: entry.attempted,
      ...(entry.method ? { method: entry.method } : {}),
      outcome,
      ...(entry.action ? { action: entry.action } : {}),
      actor,
      ...(ip ? { ip } : {}),
      ...(entry.before !== undefined ? { before: entry.before } : {}),
      ...(entry.after !== undefined ? { after: entry.after } : {}),
    };
    if (e.outcome !== "denied" || !this.#rate) return this.#add(e).entry;
    const w = this.#window(e.plugin, now);
    if (w.recorded < this.#rate.max) {
      w.recorded++;
      this.#logs?.log(
        e.plugin,
        "warn",
        `permission denied: "${e.permission}" needed for ${e.attempted}`,
        { permission: e.permission, attempted: e.attempted, audit: true },
      );
      return this.#add(e).entry;
    }
    w.suppressed++;
    const last = `last: "${e.permission}" for ${e.attempted}`;
    if (!w.summary || !this.#holds(w.summary)) {
      w.summary = this.#add({
        time: e.time,
        plugin: e.plugin,
        permission: "*",
        attempted: "",
        outcome: "suppressed",
        count: 0,
      });
      this.#logs?.log(
        e.plugin,
        "warn",
        `permission denials over the audit limit (${this.#rate.max} per ${
          seconds(this.#rate.windowMs)
        }): further ones in this window are counted, not recorded one by one`,
        { audit: true, suppressed: true },
      );
    }
    const s = w.summary.entry;
    s.count = w.suppressed;
    s.attempted =
      `${w.suppressed} more denial(s) suppressed (audit limit: ${this.#rate.max} per ${
        seconds(this.#rate.windowMs)
      }); ${last}`;
    this.#store?.add({ ...s });
    return { ...s };
  }

  /**
   * Runs `fn` with `origin` as the actor and address of every entry
   * recorded while it runs (its awaits included) that names none.
   */
  within<T>(origin: AuditOrigin, fn: () => T): T {
    return this.#origin.run(origin, fn);
  }

  /** The origin of the request being handled, if any. */
  origin(): AuditOrigin | undefined {
    return this.#origin.getStore();
  }

  /**
   * Makes `store` the record: every later entry is queued for it, and so
   * are the entries held now.
   */
  persistTo(store: DurableAuditStore): void {
    this.#store = store;
    const held = [...this.#byPlugin.values()].flat().sort((a, b) =>
      a.seq - b.seq
    );
    for (const h of held) store.add({ ...h.entry });
  }

  /**
   * Entries matching every filter, newest first: from the durable store
   * when one is attached, else from memory.
   */
  async search(q: AuditSearch = {}): Promise<AuditEntry[]> {
    if (this.#store) return await this.#store.search(q);
    const until = q.until === undefined ? Infinity : new Date(q.until)
      .getTime();
    const text = q.text?.toLowerCase();
    const all = this.query({ ...q, limit: -1 }).filter((e) =>
      Date.parse(e.time) <= until &&
      (q.outcome === undefined || e.outcome === q.outcome) &&
      (q.action === undefined || e.action === q.action) &&
      (!text || JSON.stringify(e).toLowerCase().includes(text))
    );
    return q.limit !== undefined && q.limit >= 0 ? all.slice(0, q.limit) : all;
  }

  /** Entries matching every given filter, newest first (copies). */
  query(q: AuditQuery = {}): AuditEntry[] {
    this.#closeWindows(this.#now());
    const since = q.since === undefined
      ? undefined
      : new Date(q.since).getTime();
    const limit = q.limit !== undefined && q.limit >= 0 ? q.limit : Infinity;
    const lists = q.plugin === undefined
      ? [...this.#byPlugin.values()]
      : [this.#byPlugin.get(q.plugin) ?? []];
    const all = lists.flat().sort((a, b) => b.seq - a.seq);
    const out: AuditEntry[] = [];
    for (const h of all) {
      if (out.length >= limit) break;
      if (since !== undefined && Date.parse(h.entry.time) < since) continue;
      out.push({ ...h.entry });
    }
    return out;
  }

  /** How many entries are held (a summary counts as one). */
  count(): number {
    return this.#count;
  }

  /** Removes every entry (and resets the rate-limit windows). */
  clear(): void {
    this.#byPlugin.clear();
    this.#windows.clear();
    this.#count = 0;
  }

  /** The plugin's current window, opening a new one when it is over. */
  #window(plugin: string, now: number): Window {
    let w = this.#windows.get(plugin);
    if (w && now - w.start >= this.#rate!.windowMs) {
      this.#close(plugin, w);
      w = undefined;
    }
    if (!w) {
      w = { start: now, recorded: 0, suppressed: 0 };
      this.#windows.set(plugin, w);
    }
    return w;
  }

  /** Closes every window that is over (so its total is logged). */
  #closeWindows(now: number): void {
    if (!this.#rate) return;
    for (const [plugin, w] of [...this.#windows]) {
      if (now - w.start >= this.#rate.windowMs) {
        this.#close(plugin, w);
        this.#windows.delete(plugin);
      }
    }
  }

  #close(plugin: string, w: Window): void {
    if (w.suppressed === 0) return;
    this.#logs?.log(
      plugin,
      "warn",
      `${w.suppressed} permission denial(s) suppressed by the audit limit since ${
        new Date(w.start).toISOString()
      }`,
      { audit: true, suppressed: w.suppressed },
    );
  }

  #holds(h: Held): boolean {
    return (this.#byPlugin.get(h.entry.plugin) ?? []).includes(h);
  }

  /** Stores `entry` within the plugin's share and the total capacity. */
  #add(entry: AuditEntry): Held {
    const h: Held = { seq: ++this.#seq, entry };
    entry.id = `${this.#idBase}-${h.seq}`;
    this.#store?.add({ ...entry });
    let list = this.#byPlugin.get(entry.plugin);
    if (!list) this.#byPlugin.set(entry.plugin, list = []);
    if (list.length >= this.#share) {
      list.shift();
      this.#count--;
    }
    list.push(h);
    this.#count++;
    while (this.#count > this.#capacity) this.#evictFromLargest();
    return h;
  }

  /** Drops the oldest entry of the plugin holding the most (ties: the older entry). */
  #evictFromLargest(): void {
    let victim: Held[] | undefined;
    for (const list of this.#byPlugin.values()) {
      if (
        list.length > 0 &&
        (!victim || list.length > victim.length ||
          (list.length === victim.length && list[0]!.seq < victim[0]!.seq))
      ) victim = list;
    }
    if (!victim) return;
    victim.shift();
    this.#count--;
  }
}

function seconds(ms: number): string {
  return ms % 1000 === 0 ? `${ms / 1000} s` : `${ms} ms`;
}
