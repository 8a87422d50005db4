/**
 * The permission grammar: GoatFlow's flat strings (`db:read`, `http:external`,
 * `plugins:call`, …) plus scoped forms (`db:read:ticket,queue`,
 * `http:*.example.com`, `email:*@example.com`, `config:app.*`,
 * `plugins:call:stats`, `fs:write:cache`). {@linkcode parsePermission} turns a
 * string into a {@linkcode Permission} with its canonical spelling;
 * {@linkcode covers} says whether one permission includes another.
 *
 * | string | meaning |
 * |---|---|
 * | `db:read`, `db:write` | SQL on every host table (reads run `READ ONLY`) |
 * | `db:read:t1,t2`, `db:write:t1` | only these tables (`schema.table` allowed) |
 * | `cache:read`, `cache:write` | the plugin's own cache namespace |
 * | `http:external` | any public host, http or https, any port |
 * | `http:api.example.com` | that host, http on 80 or https on 443 |
 * | `http:*.example.com` | any subdomain (not the apex) |
 * | `http:api.example.com:8443` | that host and port, either scheme |
 * | `http:https://host`, `http:https://host:8443` | that scheme (and port) |
 * | `http:10.0.0.5`, `http:[fd00::1]:8080` | an address, even a private one |
 * | `email:*@example.com`, `email:ops@example.com`, `email:*` | recipients |
 * | `config:app.*`, `config:smtp.password` | host config keys; secrets only by exact key |
 * | `plugins:call`, `plugins:call:stats` | calling other plugins |
 * | `fs:read:<path>`, `fs:write:<path>` | inside the plugin's data directory |
 * | `log` | logging (always allowed) |
 *
 * @module
 */

import {
  InvalidManifestError,
  type ManifestIssue,
} from "../host/model/errors.ts";
import { PLUGIN_NAME_REGEXP } from "../host/model/manifest.ts";
import { classifyIp, formatIp, parseIp } from "./ip.ts";

/** A database permission: read or write, on every table (`tables: null`) or on some. */
export interface DbPermission {
  /** The kind. */
  kind: "db";
  /** `read` or `write`. */
  access: "read" | "write";
  /** Sorted lower-case table names (`schema.table` allowed); `null` = all host tables. */
  tables: readonly string[] | null;
  /** Canonical spelling. */
  text: string;
}

/** A cache permission (always the plugin's own namespace). */
export interface CachePermission {
  /** The kind. */
  kind: "cache";
  /** `read` or `write`. */
  access: "read" | "write";
  /** Canonical spelling. */
  text: string;
}

/**
 * An outbound HTTP permission. `external` means any public host; otherwise
 * `host` is a lower-case name, a `*.suffix` wildcard or a canonical IP
 * (IPv6 in brackets).
 */
export interface HttpPermission {
  /** The kind. */
  kind: "http";
  /** `http:external`: any public host, any port, http or https. */
  external: boolean;
  /** Host name, `*.suffix` or IP literal (IPv6 bracketed); empty when `external`. */
  host: string;
  /** Whether `host` is `*.suffix` (matches subdomains, not the apex). */
  wildcard: boolean;
  /** Whether `host` is an IP literal. */
  ip: boolean;
  /** Required scheme, when one was named. */
  scheme: "http" | "https" | undefined;
  /** Required port; `undefined` = the scheme's default port (80 / 443). */
  port: number | undefined;
  /** Canonical spelling. */
  text: string;
}

/** An e-mail permission: a recipient pattern (`*@example.com`, `a@b.c`, `*@*.b.c`, `*`). */
export interface EmailPermission {
  /** The kind. */
  kind: "email";
  /** Local part, or `*` for any. */
  local: string;
  /** Domain, `*.suffix`, or `*` for any. */
  domain: string;
  /** Canonical spelling. */
  text: string;
}

/** A config permission: a host key (`app.name`) or prefix (`app.*`, `*`). */
export interface ConfigPermission {
  /** The kind. */
  kind: "config";
  /** The key, or a prefix ending in `.*`, or `*`. */
  pattern: string;
  /** Whether `pattern` ends in `*`. */
  wildcard: boolean;
  /** Canonical spelling. */
  text: string;
}

/** A plugin-call permission: any plugin (`target: null`) or one. */
export interface PluginsPermission {
  /** The kind. */
  kind: "plugins";
  /** The plugin that may be called, or `null` for any. */
  target: string | null;
  /** Canonical spelling. */
  text: string;
}

/** A file permission inside the plugin's data directory. */
export interface FsPermission {
  /** The kind. */
  kind: "fs";
  /** `read` or `write` (write includes read). */
  access: "read" | "write";
  /** Normalised relative path (`.` = the whole data directory). */
  path: string;
  /** Canonical spelling. */
  text: string;
}

/** Logging (always granted). */
export interface LogPermission {
  /** The kind. */
  kind: "log";
  /** Canonical spelling. */
  text: "log";
}

/** A parsed permission. */
export type Permission =
  | DbPermission
  | CachePermission
  | HttpPermission
  | EmailPermission
  | ConfigPermission
  | PluginsPermission
  | FsPermission
  | LogPermission;

/** The permission kinds (the part before the first `:`). */
export type PermissionKind = Permission["kind"];

/**
 * A permission string could not be parsed. `input` is the string, `reason`
 * what is wrong with it.
 */
export class PermissionSyntaxError extends SyntaxError {
  /** The string that was refused. */
  readonly input: string;
  /** What is wrong with it. */
  readonly reason: string;

  /** Creates the error for `input`. */
  constructor(input: string, reason: string) {
    super(`Cannot parse permission "${input}": ${reason}`);
    this.name = "PermissionSyntaxError";
    this.input = input;
    this.reason = reason;
  }
}

const TABLE_REGEXP = /^[a-z_][a-z0-9_$]{0,62}(\.[a-z_][a-z0-9_$]{0,62})?$/;
const CONFIG_KEY_REGEXP = /^[a-z0-9_-]+(\.[a-z0-9_-]+)*$/i;
const LABEL_REGEXP = /^(?!-)[a-z0-9-]{1,63}(?<!-)$/;
const EMAIL_LOCAL_REGEXP = /^[a-z0-9.!#$%&'+/=?^_`{|}~-]{1,64}$/i;
const FS_SEGMENT_REGEXP = /^[A-Za-z0-9._-]+$/;

/**
 * Parses one permission string into its canonical form, or throws
 * {@linkcode PermissionSyntaxError}.
 *
 * @example
 * ```ts
 * import { parsePermission } from "./grammar.ts";
 * parsePermission("db:read:Queue,ticket").text; // "db:read:queue,ticket"
 * parsePermission("http:API.example.com:443").text; // "http:api.example.com:443"
 * ```
 */
export function parsePermission(input: string): Permission {
  if (typeof input !== "string") {
    throw new PermissionSyntaxError(String(input), "is not a string");
  }
  if (input.length === 0) throw new PermissionSyntaxError(input, "is empty");
  if (input.length > 512) {
    throw new PermissionSyntaxError(input, "is longer than 512 characters");
  }
  // deno-lint-ignore no-control-regex
  if (/[\s\u0000-\u001f\u007f]/.test(input)) {
    throw new PermissionSyntaxError(
      input,
      "contains white space or control characters",
    );
  }
  const colon = input.indexOf(":");
  const kind = colon < 0 ? input : input.slice(0, colon);
  const rest = colon < 0 ? undefined : input.slice(colon + 1);
  const fail = (reason: string): never => {
    throw new PermissionSyntaxError(input, reason);
  };
  switch (kind) {
    case "log":
      if (rest !== undefined) fail("log takes no scope");
      return { kind: "log", text: "log" };
    case "db":
      return parseDb(rest, fail);
    case "cache": {
      if (rest !== "read" && rest !== "write") {
        fail(
          'expected "cache:read" or "cache:write" (the cache is always the plugin\'s own namespace)',
        );
      }
      const access = rest as "read" | "write";
      return { kind: "cache", access, text: `cache:${access}` };
    }
    case "http":
      if (rest === undefined || rest === "") {
        fail('expected "http:external" or "http:<host pattern>"');
      }
      return parseHttp(rest!, fail);
    case "email":
      if (rest === undefined || rest === "") {
        fail('expected "email:<recipient pattern>"');
      }
      return parseEmail(rest!, fail);
    case "config": {
      if (rest === undefined || rest === "") {
        fail('expected "config:<key pattern>"');
      }
      const r = rest!;
      if (r === "*") {
        return {
          kind: "config",
          pattern: "*",
          wildcard: true,
          text: "config:*",
        };
      }
      const wildcard = r.endsWith(".*");
      const key = wildcard ? r.slice(0, -2) : r;
      if (!CONFIG_KEY_REGEXP.test(key)) {
        fail(
          'key pattern must be dotted names such as "app.name", "app.*" or "*"',
        );
      }
      return { kind: "config", pattern: r, wildcard, text: `config:${r}` };
    }
    case "plugins": {
      if (rest === "call") {
        return { kind: "plugins", target: null, text: "plugins:call" };
      }
      if (rest?.startsWith("call:")) {
        const target = rest.slice(5);
        if (!PLUGIN_NAME_REGEXP.test(target)) {
          fail(`"${target}" is not a plugin name`);
        }
        return { kind: "plugins", target, text: `plugins:call:${target}` };
      }
      return fail('expected "plugins:call" or "plugins:call:<plugin>"');
    }
    case "fs":
      return parseFs(rest, fail);
    default:
      return fail(
        `unknown permission kind "${kind}" (known: db, cache, http, email, config, plugins, fs, log)`,
      );
  }
}

function parseDb(
  rest: string | undefined,
  fail: (r: string) => never,
): DbPermission {
  if (rest === undefined) return fail('expected "db:read" or "db:write"');
  const [access, scope, ...extra] = rest.split(":");
  if (access !== "read" && access !== "write") {
    return fail('expected "db:read" or "db:write"');
  }
  if (extra.length > 0) return fail("too many ':' parts");
  if (scope === undefined) {
    return { kind: "db", access, tables: null, text: `db:${access}` };
  }
  const tables = [...new Set(scope.split(",").map((t) => t.toLowerCase()))]
    .sort();
  for (const t of tables) {
    if (!TABLE_REGEXP.test(t)) return fail(`"${t}" is not a table name`);
  }
  return {
    kind: "db",
    access,
    tables,
    text: `db:${access}:${tables.join(",")}`,
  };
}

function parseHttp(rest: string, fail: (r: string) => never): HttpPermission {
  if (rest === "external") {
    return {
      kind: "http",
      external: true,
      host: "",
      wildcard: false,
      ip: false,
      scheme: undefined,
      port: undefined,
      text: "http:external",
    };
  }
  let scheme: "http" | "https" | undefined;
  let hostPort = rest;
  const schemeMatch = /^([a-zA-Z][a-zA-Z0-9+.-]*):\/\//.exec(rest);
  if (schemeMatch) {
    const s = schemeMatch[1]!.toLowerCase();
    if (s !== "http" && s !== "https") {
      fail(`scheme "${s}" is not http or https`);
    }
    scheme = s as "http" | "https";
    hostPort = rest.slice(schemeMatch[0].length);
    if (hostPort.endsWith("/")) hostPort = hostPort.slice(0, -1);
  }
  if (hostPort === "") fail("host is empty");
  if (/[/?#@\\]/.test(hostPort)) {
    fail("must be a host pattern (no path, query, user or fragment)");
  }
  // Split off a port: "[v6]:port", "name:port"; a bare IPv6 without brackets is refused.
  let host = hostPort;
  let portText: string | undefined;
  if (host.startsWith("[")) {
    const end = host.indexOf("]");
    if (end < 0) fail("unclosed '[' in IPv6 address");
    if (end + 1 < host.length) {
      if (host[end + 1] !== ":") fail("unexpected text after IPv6 address");
      portText = host.slice(end + 2);
    }
    host = host.slice(0, end + 1);
  } else {
    const parts = host.split(":");
    if (parts.length > 2) {
      fail("IPv6 addresses must be written in brackets, such as [::1]");
    }
    if (parts.length === 2) [host, portText] = parts as [string, string];
  }
  let port: number | undefined;
  if (portText !== undefined) {
    if (!/^[0-9]{1,5}$/.test(portText)) {
      fail(`port "${portText}" is not a number`);
    }
    port = Number(portText);
    if (port < 1 || port > 65535) fail(`port ${port} is out of range`);
  }
  let wildcard = false;
  let name = host;
  if (name.startsWith("*.")) {
    wildcard = true;
    name = name.slice(2);
  }
  if (name.includes("*")) {
    fail('"*" is only allowed as the whole first label, as in "*.example.com"');
  }
  // Canonicalise with the WHATWG URL host parser: lower case, IDNA, odd IPv4 spellings.
  let canonical: string;
  try {
    canonical = new URL(`http://${name}/`).hostname;
  } catch {
    return fail(`"${host}" is not a valid host`);
  }
  if (canonical.endsWith(".")) canonical = canonical.slice(0, -1);
  const ipText = canonical.startsWith("[") ? canonical.slice(1, -1) : canonical;
  const ip = parseIp(ipText);
  if (ip) {
    if (wildcard) fail("a wildcard cannot apply to an IP address");
    canonical = ip.family === 6 ? `[${formatIp(ip)}]` : formatIp(ip);
  } else {
    const labels = canonical.split(".");
    if (!labels.every((l) => LABEL_REGEXP.test(l))) {
      fail(`"${host}" is not a valid host name`);
    }
    if (wildcard && labels.length < 2) {
      fail(
        'a wildcard needs at least two labels after "*.", as in "*.example.com"',
      );
    }
    if (canonical === "external") {
      fail('"external" is a keyword; write "http:external"');
    }
  }
  const hostText = wildcard ? `*.${canonical}` : canonical;
  if (scheme && port === (scheme === "https" ? 443 : 80)) port = undefined;
  const text = `http:${scheme ? `${scheme}://` : ""}${hostText}${
    port === undefined ? "" : `:${port}`
  }`;
  return {
    kind: "http",
    external: false,
    host: hostText,
    wildcard,
    ip: ip !== undefined,
    scheme,
    port,
    text,
  };
}

function parseEmail(rest: string, fail: (r: string) => never): EmailPermission {
  if (rest === "*") {
    return { kind: "email", local: "*", domain: "*", text: "email:*" };
  }
  const at = rest.lastIndexOf("@");
  if (at < 0 || rest.indexOf("@") !== at) {
    fail('expected "<local>@<domain>", "*@<domain>" or "*"');
  }
  const local = rest.slice(0, at);
  let domain = rest.slice(at + 1).toLowerCase();
  if (local !== "*" && !EMAIL_LOCAL_REGEXP.test(local)) {
    fail(`"${local}" is not a mailbox name or "*"`);
  }
  if (domain !== "*") {
    const wildcard = domain.startsWith("*.");
    const d = wildcard ? domain.slice(2) : domain;
    if (d.includes("*")) {
      fail('"*" is only allowed as the whole first label of the domain');
    }
    const labels = d.split(".");
    if (labels.length < 1 || !labels.every((l) => LABEL_REGEXP.test(l))) {
      fail(`"${domain}" is not a domain`);
    }
    domain = wildcard ? `*.${d}` : d;
  }
  return { kind: "email", local, domain, text: `email:${local}@${domain}` };
}

function parseFs(
  rest: string | undefined,
  fail: (r: string) => never,
): FsPermission {
  const m = rest === undefined ? null : /^(read|write):(.+)$/.exec(rest);
  if (!m) return fail('expected "fs:read:<path>" or "fs:write:<path>"');
  const access = m[1] as "read" | "write";
  const path = normaliseRelativePath(m[2]!, fail);
  return { kind: "fs", access, path, text: `fs:${access}:${path}` };
}

/** Normalises a path relative to the data directory; refuses absolute paths and `..`. */
function normaliseRelativePath(p: string, fail: (r: string) => never): string {
  if (
    p.startsWith("/") || p.startsWith("\\") || /^[a-zA-Z]:/.test(p) ||
    p.startsWith("~")
  ) {
    fail("path must be relative to the plugin's data directory");
  }
  const segments: string[] = [];
  for (const s of p.split("/")) {
    if (s === "" || s === ".") continue;
    if (s === "..") fail('path must not contain ".."');
    if (!FS_SEGMENT_REGEXP.test(s)) {
      fail(
        `path segment "${s}" may only use letters, digits, ".", "_" and "-"`,
      );
    }
    segments.push(s);
  }
  return segments.length === 0 ? "." : segments.join("/");
}

/**
 * Parses a list of permission strings. Every problem is collected and thrown
 * together as {@linkcode InvalidManifestError} with paths such as
 * `permissions[3]`.
 *
 * @example
 * ```ts
 * import { parsePermissions } from "./grammar.ts";
 * parsePermissions(["db:read", "log"]).map((p) => p.text); // ["db:read", "log"]
 * ```
 */
export function parsePermissions(
  list: readonly string[],
  path = "permissions",
): Permission[] {
  const issues: ManifestIssue[] = [];
  const out: Permission[] = [];
  list.forEach((s, i) => {
    try {
      out.push(parsePermission(s));
    } catch (e) {
      if (!(e instanceof PermissionSyntaxError)) throw e;
      issues.push({
        path: `${path}[${i}]`,
        message: `"${e.input}": ${e.reason}`,
      });
    }
  });
  if (issues.length > 0) throw new InvalidManifestError(issues);
  return out;
}

/**
 * A manifest check for `parseManifest(json, { extraChecks: [checkPermissions] })`:
 * one issue per unparsable entry of `permissions`, with its index.
 *
 * @example
 * ```ts
 * import { checkPermissions } from "./grammar.ts";
 * checkPermissions({ permissions: ["db:read", "dbx"] });
 * // [{ path: "permissions[1]", message: '"dbx": unknown permission kind …' }]
 * ```
 */
export function checkPermissions(
  manifest: { permissions?: readonly string[] | undefined },
): ManifestIssue[] {
  try {
    parsePermissions(manifest.permissions ?? []);
    return [];
  } catch (e) {
    if (e instanceof InvalidManifestError) return [...e.issues];
    throw e;
  }
}

/**
 * Canonicalises a list of permission strings: parsed, deduplicated, sorted.
 * Throws {@linkcode InvalidManifestError} on a bad entry.
 *
 * @example
 * ```ts
 * import { canonicalPermissions } from "./grammar.ts";
 * canonicalPermissions(["log", "db:read:b,a", "log"]); // ["db:read:a,b", "log"]
 * ```
 */
export function canonicalPermissions(list: readonly string[]): string[] {
  return [...new Set(parsePermissions(list).map((p) => p.text))].sort();
}

function hostCovers(
  g: string,
  gWild: boolean,
  h: string,
  hWild: boolean,
): boolean {
  if (!gWild) return !hWild && g === h;
  const suffix = g.slice(1); // ".example.com"
  const hostName = hWild ? h.slice(1) : h; // ".a.example.com" or "a.example.com"
  return hWild
    ? hostName === suffix || hostName.endsWith(suffix)
    : hostName.endsWith(suffix);
}

function domainCovers(g: string, d: string): boolean {
  if (g === "*") return true;
  if (d === "*") return false;
  return hostCovers(g, g.startsWith("*."), d, d.startsWith("*."));
}

/** The port a host pattern allows for `scheme` (undefined port = that scheme's default). */
function effectivePorts(p: HttpPermission): Set<string> {
  const schemes = p.scheme ? [p.scheme] : ["http", "https"];
  return new Set(
    schemes.map((s) => `${s}:${p.port ?? (s === "https" ? 443 : 80)}`),
  );
}

/**
 * Whether `grant` covers `request`: equal, or broader per the grammar
 * (`db:read` covers `db:read:ticket`; `http:*.example.com` covers
 * `http:api.example.com`; `http:external` covers any name pattern and public
 * IP literals, never `localhost` or a private address; `fs:write:x` covers `fs:read:x/y`; `config:app.*` covers
 * `config:app.name`; `plugins:call` covers `plugins:call:stats`).
 *
 * @example
 * ```ts
 * import { covers, parsePermission as p } from "./grammar.ts";
 * covers(p("db:read"), p("db:read:ticket")); // true
 * covers(p("db:read:ticket"), p("db:read")); // false
 * ```
 */
export function covers(grant: Permission, request: Permission): boolean {
  if (grant.text === request.text) return true;
  switch (grant.kind) {
    case "log":
      return request.kind === "log";
    case "cache":
      return request.kind === "cache" && request.access === grant.access;
    case "db":
      if (request.kind !== "db" || request.access !== grant.access) {
        return false;
      }
      if (grant.tables === null) return true;
      return request.tables !== null &&
        request.tables.every((t) => grant.tables!.includes(t));
    case "plugins":
      return request.kind === "plugins" &&
        (grant.target === null || grant.target === request.target);
    case "config":
      if (request.kind !== "config") return false;
      if (grant.pattern === "*") return true;
      if (!grant.wildcard) return false;
      return request.pattern.startsWith(grant.pattern.slice(0, -1));
    case "email":
      if (request.kind !== "email") return false;
      return (grant.local === "*" || grant.local === request.local) &&
        domainCovers(grant.domain, request.domain);
    case "fs":
      if (request.kind !== "fs") return false;
      if (grant.access === "read" && request.access === "write") return false;
      return grant.path === "." || request.path === grant.path ||
        request.path.startsWith(grant.path + "/");
    case "http": {
      if (request.kind !== "http") return false;
      if (grant.external) {
        if (request.ip) {
          const ip = parseIp(request.host.replace(/^\[|\]$/g, ""));
          return ip !== undefined && classifyIp(ip) === undefined;
        }
        return !isLocalhostName(request.host);
      }
      if (request.external) return false;
      if (
        !hostCovers(grant.host, grant.wildcard, request.host, request.wildcard)
      ) return false;
      const gp = effectivePorts(grant);
      return [...effectivePorts(request)].every((x) => gp.has(x));
    }
  }
}

/**
 * The intersection of what a plugin requested and what was granted: each
 * requested permission that some grant covers, plus each grant narrower than
 * a request (a request for `http:*.example.com` with a grant of
 * `http:api.example.com` yields `http:api.example.com`). `log` is always in.
 *
 * @example
 * ```ts
 * import { effectivePermissions } from "./grammar.ts";
 * effectivePermissions(["db:read:ticket", "http:external"], ["db:read"]).map((p) => p.text);
 * // ["db:read:ticket", "log"]
 * ```
 */
export function effectivePermissions(
  requested: readonly (string | Permission)[],
  granted: readonly (string | Permission)[],
): Permission[] {
  const req = requested.map(asPermission);
  const gr = granted.map(asPermission);
  const out = new Map<string, Permission>([["log", {
    kind: "log",
    text: "log",
  }]]);
  for (const r of req) {
    for (const g of gr) {
      if (covers(g, r)) out.set(r.text, r);
      else if (covers(r, g)) out.set(g.text, g);
    }
  }
  return [...out.values()].sort((a, b) =>
    a.text < b.text ? -1 : a.text > b.text ? 1 : 0
  );
}

/**
 * Which requested permissions of a new version are not covered by the old
 * version's requests (so need a fresh decision at upgrade).
 *
 * @example
 * ```ts
 * import { diffRequested } from "./grammar.ts";
 * diffRequested(["db:read"], ["db:read:ticket", "http:external"]); // ["http:external"]
 * ```
 */
export function diffRequested(
  oldRequested: readonly string[],
  newRequested: readonly string[],
): string[] {
  const old = oldRequested.map(asPermission);
  return canonicalPermissions(newRequested).filter((n) => {
    const p = parsePermission(n);
    return p.kind !== "log" && !old.some((o) => covers(o, p));
  });
}

/** Whether `host` is `localhost`, a `*.localhost` name or a wildcard over them (RFC 6761). */
export function isLocalhostName(host: string): boolean {
  const h = host.toLowerCase().replace(/\.$/, "");
  return h === "localhost" || h.endsWith(".localhost");
}

function asPermission(p: string | Permission): Permission {
  return typeof p === "string" ? parsePermission(p) : p;
}
