/**
 * Host configuration: one JSON file (`goatkit.json`) plus environment
 * variables that override it; secrets only from the environment.
 * {@linkcode loadConfig} is the one reader: it parses the file once and
 * returns both the server settings ({@linkcode ServerSettings}) and the host,
 * secret and plugin values ({@linkcode ConfigStore}).
 *
 * File shape (every section optional):
 *
 * ```json
 * {
 *   "server": { "port": 8080, "dataDir": "./data" },
 *   "app": { "name": "Helpdesk", "timezone": "Europe/Berlin" },
 *   "plugins": { "hello": { "greeting": "Hi" } },
 *   "secrets": ["STRIPE_KEY"]
 * }
 * ```
 *
 * - The file is `GOATKIT_CONFIG` (which must then exist), else
 *   `./goatkit.json` (optional: absent = defaults).
 * - Server settings are the `server` section, `config.server.<key>` (for
 *   example `server.dataDir`). Each key can also be set by
 *   `GOATKIT_SERVER__<KEY>` (key upper-cased: `GOATKIT_SERVER__DATADIR`)
 *   and by its flat alias ({@linkcode SERVER_SETTING_ALIASES}: `PORT`,
 *   `GOATKIT_HOSTNAME`, `GOATKIT_DATA_DIR`, …). Precedence: alias, then
 *   `GOATKIT_SERVER__<KEY>`, then the file, then the default. A value of the
 *   wrong type throws {@linkcode ConfigValueError} naming the variable or
 *   the JSON key. The `host/serve.ts` module doc has the table.
 * - Host values are the file's objects flattened with dots (`app.name`);
 *   numbers and booleans become strings, arrays JSON text. Defaults:
 *   `app.name` = `GoatKit`, `app.env` = `development`, `app.timezone` = `UTC`
 *   (GoatFlow's three keys). The `server` section is flattened too
 *   (`server.port`); the flat aliases are not host values.
 * - `GOATKIT_<SECTION>__<KEY>` overrides or adds host key `<section>.<key>`
 *   (lower-cased, each `__` read as `.`): `GOATKIT_APP__NAME=Desk` sets
 *   `app.name`. Variables without `__` (the server's own `GOATKIT_DATA_DIR`,
 *   `GOATKIT_CONFIG`, …) are not configuration values.
 * - `GOATKIT_PLUGIN__<PLUGIN>__<KEY>` sets a plugin value (`_` in the plugin
 *   part reads as `-`, the key is lower-cased): `GOATKIT_PLUGIN__HELLO__GREETING`.
 * - Secrets: `GOATKIT_SECRET_<NAME>` gives secret `<NAME>`, and each name in
 *   the file's `secrets` list gives the environment variable of that name.
 *   Secrets are never host values; the guarded HostAPI hands one out only
 *   for an approved `config:` grant naming its exact key (no wildcard covers
 *   a secret), and the grant policy never grants such a key without the
 *   operator, whatever `server.requireApproval` says.
 * - Keys are data: every section is read by own property (maps and
 *   prototype-less objects), so `__proto__`, `constructor` or `toString`
 *   is an unset key like any other unless someone set it.
 * - Services read their own variables (`DATABASE_URL`, `REDIS_URL`,
 *   `SMTP_URL`, … see `services.ts`) from {@linkcode HostConfig.env}.
 *
 * @module
 */

import { ConfigError } from "./errors.ts";
import {
  APPROVAL_KINDS,
  type ApprovalKind,
  parseApprovalSetting,
} from "../../permissions/grants.ts";
import {
  parseQuotaLimits,
  type QuotaLimits,
  quotaLimitsFromEnv,
} from "../quotas/quota_limits.ts";

export { ConfigError };

/** Options of {@linkcode ConfigStore}. */
export interface ConfigStoreOptions {
  /** Host values by dotted key. */
  values: Record<string, string>;
  /** Secret values by key (from the environment). */
  secrets?: Record<string, string>;
  /** Per-plugin sections: plugin → key → value. */
  plugins?: Record<string, Record<string, string>>;
}

const DEFAULTS: Record<string, string> = {
  "app.name": "GoatKit",
  "app.env": "development",
  "app.timezone": "UTC",
};

/** An object without a prototype: no inherited `constructor`, `__proto__`, …. */
function bare<T>(): Record<string, T> {
  return Object.create(null) as Record<string, T>;
}

/**
 * `obj[key]` when it is an own property (never an inherited one such as
 * `constructor` or `toString`).
 */
function own<T>(obj: Record<string, T>, key: string): T | undefined {
  return Object.hasOwn(obj, key) ? obj[key] : undefined;
}

/** The own string entries of `obj` as a map (anything else is dropped). */
function stringMap(
  obj: Record<string, unknown> | undefined,
): Map<string, string> {
  const out = new Map<string, string>();
  for (const [k, v] of Object.entries(obj ?? {})) {
    if (typeof v === "string") out.set(k, v);
  }
  return out;
}

/** Flattens `value` into `out` (a prototype-less object) by dotted keys. */
function flatten(
  value: unknown,
  prefix: string,
  out: Record<string, string>,
): void {
  if (value === null || value === undefined) return;
  if (typeof value === "object" && !Array.isArray(value)) {
    for (const [k, v] of Object.entries(value)) {
      flatten(v, prefix ? `${prefix}.${k}` : k, out);
    }
    return;
  }
  out[prefix] = typeof value === "string"
    ? value
    : Array.isArray(value)
    ? JSON.stringify(value)
    : String(value);
}

/**
 * Read-only configuration: host values, secrets and plugin sections, kept
 * apart.
 *
 * @example
 * ```ts
 * import { ConfigStore } from "./config.ts";
 * const config = ConfigStore.fromFileAndEnv(undefined, {
 *   GOATKIT_APP__NAME: "Desk",
 *   GOATKIT_SECRET_API_KEY: "s3cret",
 * });
 * config.hostValue("app.name"); // "Desk"
 * config.hostValue("API_KEY"); // undefined: secrets are not host values
 * config.secret("API_KEY"); // "s3cret"
 * ```
 */
export class ConfigStore {
  // Maps, never objects: a key such as `__proto__`, `constructor` or
  // `toString` is a key like any other, so an unset one is `undefined`.
  #values: Map<string, string>;
  #secrets: Map<string, string>;
  #plugins: Map<string, Map<string, string>>;

  /** Creates a store from already-parsed values (own string values only). */
  constructor(opts: ConfigStoreOptions) {
    this.#values = stringMap(opts.values);
    this.#secrets = stringMap(opts.secrets);
    this.#plugins = new Map(
      Object.entries(opts.plugins ?? {}).map(([k, v]) => [k, stringMap(v)]),
    );
  }

  /**
   * Reads `path` (JSON, see the module doc; `undefined` or a missing file =
   * empty) and applies `env` on top. A file that is not valid JSON throws
   * {@linkcode ConfigError}. (A host uses {@linkcode loadConfig}, which
   * also gives the server settings from the same parse.)
   */
  static fromFileAndEnv(
    path: string | undefined,
    env: Record<string, string | undefined>,
  ): ConfigStore {
    const file = path === undefined ? undefined : readConfigFile(path);
    return storeFrom(file?.json ?? {}, env);
  }

  /**
   * A host value (never a secret); `undefined` when unset (also for names
   * such as `__proto__` or `constructor` that no one set).
   */
  hostValue(key: string): string | undefined {
    return this.#values.get(key);
  }

  /** All host value keys (for `config:` pattern listings). */
  hostKeys(): string[] {
    return [...this.#values.keys()];
  }

  /** A secret; `undefined` when unset. */
  secret(key: string): string | undefined {
    return this.#secrets.get(key);
  }

  /** One value of `plugin`'s own section; `undefined` when unset. */
  pluginValue(plugin: string, key: string): string | undefined {
    return this.#plugins.get(plugin)?.get(key);
  }

  /** A copy of `plugin`'s section (`{}` when it has none). */
  pluginSection(plugin: string): Record<string, string> {
    return Object.fromEntries(this.#plugins.get(plugin) ?? []);
  }
}

/** A parsed config file; `found` is false when it does not exist. */
interface ConfigFile {
  json: Record<string, unknown>;
  found: boolean;
}

function readConfigFile(path: string): ConfigFile {
  let text: string;
  try {
    text = Deno.readTextFileSync(path);
  } catch (e) {
    if (e instanceof Deno.errors.NotFound) return { json: {}, found: false };
    throw new ConfigError(`Cannot read config file "${path}": ${e}`, {
      cause: e,
    });
  }
  try {
    const parsed = JSON.parse(text);
    if (
      parsed === null || typeof parsed !== "object" || Array.isArray(parsed)
    ) {
      throw new Error("top level is not an object");
    }
    return { json: parsed, found: true };
  } catch (e) {
    throw new ConfigError(
      `Cannot parse config file "${path}": ${(e as Error).message}`,
      { cause: e },
    );
  }
}

/** Host values, secrets and plugin sections from the parsed file + `env`. */
function storeFrom(
  file: Record<string, unknown>,
  env: Record<string, string | undefined>,
): ConfigStore {
  const { plugins: filePlugins, secrets: secretNames, ...hostPart } = file;
  // Prototype-less objects and own-property reads throughout: a key named
  // `__proto__`, `constructor` or `toString` (in the file or a variable) is
  // data, never an inherited member.
  const values = Object.assign(bare<string>(), DEFAULTS);
  flatten(hostPart, "", values);
  const plugins = bare<Record<string, string>>();
  if (
    filePlugins && typeof filePlugins === "object" &&
    !Array.isArray(filePlugins)
  ) {
    for (const [name, section] of Object.entries(filePlugins)) {
      const flat = bare<string>();
      flatten(section, "", flat);
      plugins[name] = flat;
    }
  }
  const secrets = bare<string>();
  if (Array.isArray(secretNames)) {
    for (const name of secretNames) {
      if (typeof name !== "string") {
        throw new ConfigError(
          `Cannot use config "secrets" entry ${
            JSON.stringify(name)
          }: not a string`,
        );
      }
      const v = own(env, name);
      if (typeof v === "string") secrets[name] = v;
    }
  }
  for (const [key, value] of Object.entries(env)) {
    if (value === undefined || !key.startsWith("GOATKIT_")) continue;
    const rest = key.slice("GOATKIT_".length);
    if (rest.startsWith("SECRET_")) {
      const name = rest.slice("SECRET_".length);
      if (name) secrets[name] = value;
    } else if (rest.startsWith("PLUGIN__")) {
      const parts = rest.slice("PLUGIN__".length).split("__");
      if (parts.length < 2 || !parts[0]) continue;
      const plugin = parts[0].toLowerCase().replaceAll("_", "-");
      const k = parts.slice(1).join(".").toLowerCase();
      (own(plugins, plugin) ?? (plugins[plugin] = bare<string>()))[k] = value;
    } else if (rest.includes("__")) {
      values[rest.toLowerCase().split("__").join(".")] = value;
    }
  }
  return new ConfigStore({ values, secrets, plugins });
}

/**
 * A configuration value has the wrong type or is out of range. `setting`
 * names where it came from: an environment variable (`PORT`) or a
 * `goatkit.json` key (`server.port`).
 *
 * @example
 * ```ts
 * import { ConfigValueError, loadConfig } from "./config.ts";
 * try {
 *   loadConfig({ env: { PORT: "http" }, defaultPath: "absent.json" });
 * } catch (e) {
 *   if (e instanceof ConfigValueError) console.log(e.setting); // "PORT"
 * }
 * ```
 */
export class ConfigValueError extends ConfigError {
  /** The environment variable or the dotted `goatkit.json` key. */
  readonly setting: string;
  /** Whether `setting` is an environment variable or a file key. */
  readonly origin: "environment" | "file";

  /**
   * Creates an error for `setting` (from `origin`, in file `path`) that is
   * wrong because of `reason`.
   */
  constructor(
    setting: string,
    origin: "environment" | "file",
    reason: string,
    options: { path?: string; cause?: unknown } = {},
  ) {
    super(
      origin === "environment"
        ? `Cannot use environment variable ${setting}: ${reason}`
        : `Cannot use "${setting}" of config file "${
          options.path ?? "goatkit.json"
        }": ${reason}`,
      options.cause === undefined ? {} : { cause: options.cause },
    );
    this.name = "ConfigValueError";
    this.setting = setting;
    this.origin = origin;
  }
}

/**
 * The host process's own settings: the `server` section of `goatkit.json`
 * (`config.server.<key>`) with environment overrides.
 */
export interface ServerSettings {
  /** TCP port (0 picks a free one). @default 8080 */
  port: number;
  /**
   * Interface to listen on. The default is loopback only; to serve other
   * machines set `"0.0.0.0"` (or an address), ideally behind a
   * TLS-terminating proxy (see {@linkcode ServerSettings.trustProxy}).
   * @default "127.0.0.1"
   */
  hostname: string;
  /** Where the host keeps its data (tokens, database, cache, outbox). @default "./data" */
  dataDir: string;
  /**
   * Where plugins are discovered (and packages installed); created at start.
   * @default "./data/plugins"
   */
  pluginsDir: string;
  /**
   * Also load the repository's example plugins (`fixtures/plugins` of this
   * package, read only; `GOATKIT_EXAMPLE_PLUGINS`). `deno task serve` in a
   * clone of the repository sets it. A plugin of the same name in
   * `pluginsDir` wins.
   * @default false
   */
  examplePlugins: boolean;
  /** Title of the admin pages. @default "GoatKit" */
  title: string;
  /**
   * Always give cookies the `Secure` flag, even on a request that arrived
   * over plain HTTP. Without it they get the flag when the request came
   * over HTTPS (directly or, with {@linkcode ServerSettings.trustProxy},
   * through the proxy).
   * @default false
   */
  secureCookies: boolean;
  /** Load plugins on first use instead of at start. @default false */
  lazyLoad: boolean;
  /** Reload plugins when their files change. @default true */
  hotReload: boolean;
  /** Ed25519 public keys (base64) whose package signatures are trusted. @default [] */
  trustedKeys: string[];
  /** Refuse unsigned packages. @default false */
  requireSignature: boolean;
  /**
   * SHA-256 digests (64 hex digits) of the native plugin executables the
   * operator trusts (`GOATKIT_TRUSTED_EXECUTABLES`, comma-separated). A
   * native plugin (an executable named `plugin`) runs, and a package
   * carrying one installs, only when the digest of its binary is listed.
   * @default []
   */
  trustedExecutables: string[];
  /**
   * Which peers are reverse proxies whose `X-Forwarded-Proto` header is
   * believed: `false` (none: the header is ignored), `true` (every peer —
   * only when nothing but the proxy can reach the port), or a list of the
   * proxies' IP addresses (`GOATKIT_TRUST_PROXY=10.0.0.2,10.0.0.3`). A
   * request the trusted proxy says came over `https` gets `Secure`
   * cookies and `Strict-Transport-Security`.
   * @default false
   */
  trustProxy: boolean | string[];
  /**
   * The permission kinds that wait for an operator's approval when a plugin
   * is installed or an upgrade asks for more (`GOATKIT_REQUIRE_APPROVAL`):
   * `all` (the default: every kind but `log`), a list of kinds
   * (`db,http,email`, or an array in `goatkit.json`), or `none` —
   * **development only**: every request is granted at install (the host
   * logs a warning at start). Read into the sorted kinds (`none` = `[]`).
   * Under every setting a `config:<KEY>` request that may name a secret
   * waits for the operator.
   * @default every kind but `log`
   */
  requireApproval: ApprovalKind[];
  /**
   * What the scheduler does about job ticks it could not claim because the
   * database was down (`GOATKIT_JOB_CATCH_UP`): `once` runs each such job
   * one time when the database is back, `skip` does not. Either way the
   * missed ticks show in the job's runs as one `skipped` record
   * (`database unavailable`); a job's manifest `catch_up` wins.
   * @default "once"
   */
  jobCatchUp: "skip" | "once";
  /**
   * Most plugin requests served at once, server-wide (plugin routes, widget
   * renders and admin calls of plugin functions). One more is answered at
   * once with `503 Service Unavailable` and `Retry-After`, without reaching
   * the plugin. `/healthz`, the admin pages and the API are not counted.
   * @default 1024
   */
  maxInFlight: number;
  /**
   * On SIGTERM/SIGINT (or `close()`): how long requests in flight may take
   * to finish, in milliseconds, after the server stopped accepting new
   * connections; then plugins and services are shut down regardless.
   * @default 10000
   */
  drainTimeoutMs: number;
  /**
   * Calls one WASM plugin may have waiting for a free instance; one more is
   * refused at once with `503` + `Retry-After`.
   * @default 256
   */
  pluginQueueLength: number;
  /**
   * Longest wait for a free instance, in milliseconds (never more than half
   * the call's remaining deadline); past it the call is refused as overload.
   * @default 1000
   */
  pluginQueueWaitMs: number;
  /**
   * A WASM instance's worker that served no call for this long is closed
   * (the compiled module is kept; the next call starts a new worker). `0`
   * keeps workers for good.
   * @default 60000
   */
  pluginIdleTimeoutMs: number;
  /**
   * The largest total size of one Extism plugin's vars, in bytes
   * (`GOATKIT_EXTISM_MAX_VAR_BYTES`); a plugin's `extism.json` may ask for
   * less, never more. 0 turns vars off.
   * @default 1048576
   */
  extismMaxVarBytes: number;
  /**
   * Log lines older than this many days are pruned from the database
   * (`GOATKIT_LOG_RETENTION_DAYS`; 0 keeps them by age).
   * @default 14
   */
  logRetentionDays: number;
  /**
   * At most this many log lines are kept in the database, the oldest pruned
   * first (`GOATKIT_LOG_MAX_ROWS`; 0: no cap).
   * @default 100000
   */
  logMaxRows: number;
  /**
   * Audit entries older than this many days are pruned
   * (`GOATKIT_AUDIT_RETENTION_DAYS`; 0 keeps them by age).
   * @default 90
   */
  auditRetentionDays: number;
  /**
   * At most this many audit entries are kept, the oldest pruned first
   * (`GOATKIT_AUDIT_MAX_ROWS`; 0: no cap).
   * @default 100000
   */
  auditMaxRows: number;
  /**
   * Deadline of a plugin route whose manifest names none
   * (`routes[].timeout`, `timeouts`).
   * @default 10000
   */
  routeTimeoutMs: number;
  /**
   * How the host writes its stdout (`GOATKIT_LOG_FORMAT`, or the
   * `--log-format` flag of `host/serve.ts`, which wins): `text`, or `json`
   * (one JSON object per line for host and plugin lines).
   * @default "text"
   */
  logFormat: "text" | "json";
  /**
   * Count what plugins do and serve it at `GET /metrics` (Prometheus text
   * format) and on the admin "Operations" page (`GOATKIT_METRICS`). `false`
   * switches collection off: no per-call cost, `/metrics` answers 404.
   * @default true
   */
  metrics: boolean;
  /**
   * A separate token a Prometheus scraper sends as `Authorization: Bearer
   * <token>` to read `GET /metrics` (`GOATKIT_METRICS_TOKEN`; at least 16
   * characters). Admin tokens are always accepted; empty: admins only.
   * @default ""
   */
  metricsToken: string;
}

/**
 * The flat environment variable that sets each server setting, besides
 * `GOATKIT_SERVER__<KEY>`; it wins over both that and the file.
 *
 * @example
 * ```ts
 * import { SERVER_SETTING_ALIASES } from "./config.ts";
 * SERVER_SETTING_ALIASES.dataDir; // "GOATKIT_DATA_DIR"
 * ```
 */
export const SERVER_SETTING_ALIASES: Readonly<
  Record<keyof ServerSettings, string>
> = Object.freeze({
  port: "PORT",
  hostname: "GOATKIT_HOSTNAME",
  dataDir: "GOATKIT_DATA_DIR",
  pluginsDir: "GOATKIT_PLUGINS_DIR",
  examplePlugins: "GOATKIT_EXAMPLE_PLUGINS",
  title: "GOATKIT_TITLE",
  secureCookies: "GOATKIT_SECURE_COOKIES",
  lazyLoad: "GOATKIT_LAZY_LOAD",
  hotReload: "GOATKIT_HOT_RELOAD",
  trustedKeys: "GOATKIT_TRUSTED_KEYS",
  requireSignature: "GOATKIT_REQUIRE_SIGNATURE",
  trustedExecutables: "GOATKIT_TRUSTED_EXECUTABLES",
  trustProxy: "GOATKIT_TRUST_PROXY",
  requireApproval: "GOATKIT_REQUIRE_APPROVAL",
  jobCatchUp: "GOATKIT_JOB_CATCH_UP",
  maxInFlight: "GOATKIT_MAX_IN_FLIGHT",
  drainTimeoutMs: "GOATKIT_DRAIN_TIMEOUT_MS",
  pluginQueueLength: "GOATKIT_PLUGIN_QUEUE_LENGTH",
  pluginQueueWaitMs: "GOATKIT_PLUGIN_QUEUE_WAIT_MS",
  pluginIdleTimeoutMs: "GOATKIT_PLUGIN_IDLE_TIMEOUT_MS",
  extismMaxVarBytes: "GOATKIT_EXTISM_MAX_VAR_BYTES",
  logRetentionDays: "GOATKIT_LOG_RETENTION_DAYS",
  logMaxRows: "GOATKIT_LOG_MAX_ROWS",
  auditRetentionDays: "GOATKIT_AUDIT_RETENTION_DAYS",
  auditMaxRows: "GOATKIT_AUDIT_MAX_ROWS",
  routeTimeoutMs: "GOATKIT_ROUTE_TIMEOUT_MS",
  logFormat: "GOATKIT_LOG_FORMAT",
  metrics: "GOATKIT_METRICS",
  metricsToken: "GOATKIT_METRICS_TOKEN",
});

const SERVER_DEFAULTS: Readonly<ServerSettings> = Object.freeze({
  port: 8080,
  hostname: "127.0.0.1",
  dataDir: "./data",
  pluginsDir: "./data/plugins",
  examplePlugins: false,
  title: "GoatKit",
  secureCookies: false,
  lazyLoad: false,
  hotReload: true,
  trustedKeys: [],
  requireSignature: false,
  trustedExecutables: [],
  trustProxy: false,
  requireApproval: [...APPROVAL_KINDS],
  jobCatchUp: "once",
  maxInFlight: 1024,
  drainTimeoutMs: 10_000,
  pluginQueueLength: 256,
  pluginQueueWaitMs: 1_000,
  pluginIdleTimeoutMs: 60_000,
  extismMaxVarBytes: 1024 * 1024,
  logRetentionDays: 14,
  logMaxRows: 100_000,
  auditRetentionDays: 90,
  auditMaxRows: 100_000,
  routeTimeoutMs: 10_000,
  logFormat: "text",
  metrics: true,
  metricsToken: "",
});

/** Why a raw value is refused (wrapped into a {@linkcode ConfigValueError}). */
class BadValue extends Error {}

const show = (raw: unknown) => JSON.stringify(raw) ?? String(raw);

function parsePort(raw: unknown): number {
  const n = typeof raw === "number"
    ? raw
    : typeof raw === "string" && /^\d+$/.test(raw)
    ? Number(raw)
    : NaN;
  if (!Number.isInteger(n) || n < 0 || n > 65535) {
    throw new BadValue(`${show(raw)} is not a port (an integer 0-65535)`);
  }
  return n;
}

/** An integer of at least `min` (a JSON number or decimal digits). */
const parseCount = (min: number) => (raw: unknown): number => {
  const n = typeof raw === "number"
    ? raw
    : typeof raw === "string" && /^\d+$/.test(raw.trim())
    ? Number(raw.trim())
    : NaN;
  if (!Number.isSafeInteger(n) || n < min) {
    throw new BadValue(`${show(raw)} is not an integer of at least ${min}`);
  }
  return n;
};

function parseFlag(raw: unknown): boolean {
  if (raw === true || raw === "true" || raw === "1" || raw === 1) return true;
  if (raw === false || raw === "false" || raw === "0" || raw === 0) {
    return false;
  }
  throw new BadValue(`${show(raw)} is not true, false, 1 or 0`);
}

const parseText = (required: boolean) => (raw: unknown): string => {
  if (typeof raw !== "string") {
    throw new BadValue(`${show(raw)} is not a string`);
  }
  if (required && raw === "") throw new BadValue("it is empty");
  return raw;
};

function parseKeys(raw: unknown): string[] {
  const list = typeof raw === "string" ? raw.split(",") : raw;
  if (!Array.isArray(list) || list.some((k) => typeof k !== "string")) {
    const want = "comma-separated or an array of strings";
    throw new BadValue(`${show(raw)} is not a list of keys (${want})`);
  }
  return list.map((k: string) => k.trim()).filter(Boolean);
}

/** SHA-256 digests: 64 hex digits each, lower-cased. */
function parseDigests(raw: unknown): string[] {
  const digests = parseKeys(raw).map((d) => d.toLowerCase());
  const bad = digests.find((d) => !/^[0-9a-f]{64}$/.test(d));
  if (bad !== undefined) {
    throw new BadValue(
      `${
        show(bad)
      } is not a SHA-256 digest (64 hex digits; sha256sum <executable> prints it)`,
    );
  }
  return digests;
}

/** IPv4 dotted quad, or an IPv6 address (hex groups and colons). */
const IP_ADDRESS_REGEXP =
  /^(?:(?:25[0-5]|2[0-4]\d|1?\d?\d)(?:\.(?:25[0-5]|2[0-4]\d|1?\d?\d)){3}|[0-9a-f:.]*:[0-9a-f:.]*)$/i;

function parseTrustProxy(raw: unknown): boolean | string[] {
  if (raw === true || raw === false) return raw;
  if (typeof raw === "string" && /^(?:true|1|false|0)$/.test(raw.trim())) {
    return parseFlag(raw.trim());
  }
  const list = typeof raw === "string" ? raw.split(",") : raw;
  if (!Array.isArray(list) || list.some((k) => typeof k !== "string")) {
    const want = "true, false, or IP addresses (comma-separated or an array)";
    throw new BadValue(`${show(raw)} is not ${want}`);
  }
  const addresses = list.map((k: string) => k.trim()).filter(Boolean);
  const bad = addresses.find((a) => !IP_ADDRESS_REGEXP.test(a));
  if (bad !== undefined) {
    throw new BadValue(`${show(bad)} is not an IP address`);
  }
  return addresses.length > 0 ? addresses : false;
}

function parseApproval(raw: unknown): ApprovalKind[] {
  const want = `none, all or a list of permission kinds (${
    APPROVAL_KINDS.join(", ")
  }; comma-separated or an array)`;
  if (
    typeof raw !== "string" &&
    !(Array.isArray(raw) && raw.every((k) => typeof k === "string"))
  ) {
    throw new BadValue(`${show(raw)} is not ${want}`);
  }
  try {
    return parseApprovalSetting(raw);
  } catch {
    throw new BadValue(`${show(raw)} is not ${want}`);
  }
}

/** A scrape token: empty (none) or at least 16 characters, no spaces. */
function parseMetricsToken(raw: unknown): string {
  if (typeof raw !== "string") {
    throw new BadValue(`${show(raw)} is not a string`);
  }
  const token = raw.trim();
  if (token !== "" && (token.length < 16 || /\s/.test(token))) {
    throw new BadValue(
      "it is not a token of at least 16 characters without spaces",
    );
  }
  return token;
}

function parseLogFormat(raw: unknown): "text" | "json" {
  const v = typeof raw === "string" ? raw.trim().toLowerCase() : raw;
  if (v === "text" || v === "json") return v;
  throw new BadValue(`${show(raw)} is not text or json`);
}

function parseCatchUp(raw: unknown): "skip" | "once" {
  const v = typeof raw === "string" ? raw.trim().toLowerCase() : raw;
  if (v === "skip" || v === "once") return v;
  throw new BadValue(`${show(raw)} is not skip or once`);
}

const PARSERS: {
  readonly [K in keyof ServerSettings]: (raw: unknown) => ServerSettings[K];
} = {
  port: parsePort,
  hostname: parseText(true),
  dataDir: parseText(true),
  pluginsDir: parseText(true),
  examplePlugins: parseFlag,
  title: parseText(false),
  secureCookies: parseFlag,
  lazyLoad: parseFlag,
  hotReload: parseFlag,
  trustedKeys: parseKeys,
  requireSignature: parseFlag,
  trustedExecutables: parseDigests,
  trustProxy: parseTrustProxy,
  requireApproval: parseApproval,
  jobCatchUp: parseCatchUp,
  maxInFlight: parseCount(1),
  drainTimeoutMs: parseCount(0),
  pluginQueueLength: parseCount(0),
  pluginQueueWaitMs: parseCount(0),
  pluginIdleTimeoutMs: parseCount(0),
  extismMaxVarBytes: parseCount(0),
  logRetentionDays: parseCount(0),
  logMaxRows: parseCount(0),
  auditRetentionDays: parseCount(0),
  auditMaxRows: parseCount(0),
  routeTimeoutMs: parseCount(1),
  logFormat: parseLogFormat,
  metrics: parseFlag,
  metricsToken: parseMetricsToken,
};

/** Server settings from the file's `server` section and `env`. */
function serverFrom(
  file: Record<string, unknown>,
  env: Record<string, string | undefined>,
  path: string,
): ServerSettings {
  const raw = own(file, "server") ?? {};
  if (typeof raw !== "object" || Array.isArray(raw)) {
    const reason = `${show(raw)} is not an object`;
    throw new ConfigValueError("server", "file", reason, { path });
  }
  const section = raw as Record<string, unknown>;
  // GOATKIT_SERVER__<KEY>, by lower-cased key (like every sectioned variable).
  const sectioned = new Map<string, [name: string, value: string]>();
  for (const [name, value] of Object.entries(env)) {
    if (value !== undefined && name.startsWith("GOATKIT_SERVER__")) {
      const key = name.slice("GOATKIT_SERVER__".length).toLowerCase();
      sectioned.set(key, [name, value]);
    }
  }
  const setting = <K extends keyof ServerSettings>(
    key: K,
  ): ServerSettings[K] => {
    const alias = SERVER_SETTING_ALIASES[key];
    const aliased = own(env, alias);
    const fromEnv = aliased !== undefined
      ? [alias, aliased] as const
      : sectioned.get(key.toLowerCase());
    const fromFile = own(section, key) ?? undefined; // null = unset
    if (!fromEnv && fromFile === undefined) {
      const d = SERVER_DEFAULTS[key];
      return (Array.isArray(d) ? [...d] : d) as ServerSettings[K];
    }
    try {
      return PARSERS[key](fromEnv ? fromEnv[1] : fromFile);
    } catch (e) {
      if (!(e instanceof BadValue)) throw e;
      throw fromEnv
        ? new ConfigValueError(fromEnv[0], "environment", e.message)
        : new ConfigValueError(`server.${key}`, "file", e.message, { path });
    }
  };
  return {
    port: setting("port"),
    hostname: setting("hostname"),
    dataDir: setting("dataDir"),
    pluginsDir: setting("pluginsDir"),
    examplePlugins: setting("examplePlugins"),
    title: setting("title"),
    secureCookies: setting("secureCookies"),
    lazyLoad: setting("lazyLoad"),
    hotReload: setting("hotReload"),
    trustedKeys: setting("trustedKeys"),
    requireSignature: setting("requireSignature"),
    trustedExecutables: setting("trustedExecutables"),
    trustProxy: setting("trustProxy"),
    requireApproval: setting("requireApproval"),
    jobCatchUp: setting("jobCatchUp"),
    maxInFlight: setting("maxInFlight"),
    drainTimeoutMs: setting("drainTimeoutMs"),
    pluginQueueLength: setting("pluginQueueLength"),
    pluginQueueWaitMs: setting("pluginQueueWaitMs"),
    pluginIdleTimeoutMs: setting("pluginIdleTimeoutMs"),
    extismMaxVarBytes: setting("extismMaxVarBytes"),
    logRetentionDays: setting("logRetentionDays"),
    logMaxRows: setting("logMaxRows"),
    auditRetentionDays: setting("auditRetentionDays"),
    auditMaxRows: setting("auditMaxRows"),
    routeTimeoutMs: setting("routeTimeoutMs"),
    logFormat: setting("logFormat"),
    metrics: setting("metrics"),
    metricsToken: setting("metricsToken"),
  };
}

/** Options of {@linkcode loadConfig}. */
export interface LoadConfigOptions {
  /** The environment. @default Deno.env.toObject() */
  env?: Record<string, string | undefined>;
  /**
   * The file read when `GOATKIT_CONFIG` is not set; it may be absent.
   * @default "goatkit.json"
   */
  defaultPath?: string;
}

/** Everything `goatkit.json` and the environment configure. */
export interface HostConfig {
  /** The config file read (`GOATKIT_CONFIG`, else the default path). */
  readonly path: string;
  /** Whether that file exists (an absent default file means defaults). */
  readonly fileFound: boolean;
  /** The server settings (`server` section, `GOATKIT_SERVER__*`, aliases). */
  readonly server: Readonly<ServerSettings>;
  /** Host values, secrets and plugin sections (what plugins may read). */
  readonly store: ConfigStore;
  /** Per-plugin quota limits (`quotas` section, `GOATKIT_QUOTA_<KEY>`). */
  readonly quotas: QuotaSettings;
  /** The environment it was read from (services read their URLs from it). */
  readonly env: Record<string, string | undefined>;
}

/**
 * The one configuration reader: parses the config file once and applies the
 * environment, giving the server settings and the {@linkcode ConfigStore}.
 * Throws {@linkcode ConfigError} for an unreadable or invalid file (or a
 * missing `GOATKIT_CONFIG` file) and {@linkcode ConfigValueError} for a bad
 * value.
 *
 * @example
 * ```ts
 * import { loadConfig } from "./config.ts";
 * const config = loadConfig({
 *   env: { PORT: "9000", GOATKIT_PLUGIN__HELLO__GREETING: "Hi" },
 *   defaultPath: "absent.json",
 * });
 * config.server.port; // 9000
 * config.store.pluginValue("hello", "greeting"); // "Hi"
 * ```
 */
export function loadConfig(options: LoadConfigOptions = {}): HostConfig {
  const env = options.env ?? Deno.env.toObject();
  const explicit = env.GOATKIT_CONFIG;
  const path = explicit ?? options.defaultPath ?? "goatkit.json";
  const file = readConfigFile(path);
  if (!file.found && explicit !== undefined) {
    throw new ConfigError(
      `Cannot read config file "${path}" (GOATKIT_CONFIG): it does not exist`,
    );
  }
  return {
    path,
    fileFound: file.found,
    server: serverFrom(file.json, env, path),
    store: storeFrom(file.json, env),
    quotas: quotasFrom(file.json, env, path),
    env,
  };
}

/**
 * The operator's quota limits: the `quotas` section of `goatkit.json`
 * (`{"default": {…}, "plugins": {"<name>": {…}}}`, keys as in
 * `host/quotas/quota_limits.ts`, whole numbers, 0 = no limit) and
 * `GOATKIT_QUOTA_<KEY>` variables for the defaults (they win over the file).
 */
export interface QuotaSettings {
  /** The host's defaults over the built-in ones. */
  readonly default: Partial<QuotaLimits>;
  /** Per-plugin limits over the defaults. */
  readonly plugins: Readonly<Record<string, Partial<QuotaLimits>>>;
}

/** Quota settings from the file's `quotas` section and `env`. */
function quotasFrom(
  file: Record<string, unknown>,
  env: Record<string, string | undefined>,
  path: string,
): QuotaSettings {
  const raw = own(file, "quotas") ?? {};
  const fail = (e: unknown, setting: string): never => {
    throw new ConfigValueError(setting, "file", (e as Error).message, {
      path,
    });
  };
  if (typeof raw !== "object" || Array.isArray(raw)) {
    fail(new Error(`${show(raw)} is not an object`), "quotas");
  }
  const section = raw as Record<string, unknown>;
  let defaults: Partial<QuotaLimits> = {};
  try {
    defaults = parseQuotaLimits(own(section, "default"), "quotas.default");
  } catch (e) {
    fail(e, "quotas.default");
  }
  try {
    defaults = { ...defaults, ...quotaLimitsFromEnv(env) };
  } catch (e) {
    const name = /GOATKIT_QUOTA_[A-Z_]+/.exec((e as Error).message)?.[0];
    throw new ConfigValueError(
      name ?? "GOATKIT_QUOTA_*",
      "environment",
      (e as Error).message,
    );
  }
  const plugins = bare<Partial<QuotaLimits>>();
  const rawPlugins = own(section, "plugins") ?? {};
  if (typeof rawPlugins !== "object" || Array.isArray(rawPlugins)) {
    fail(new Error(`${show(rawPlugins)} is not an object`), "quotas.plugins");
  }
  for (const [name, limits] of Object.entries(rawPlugins as object)) {
    const where = `quotas.plugins.${name}`;
    try {
      plugins[name] = parseQuotaLimits(limits, where);
    } catch (e) {
      fail(e, where);
    }
  }
  return { default: defaults, plugins };
}
