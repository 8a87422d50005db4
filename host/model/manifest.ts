/**
 * The plugin manifest (`GKRegistration`): zod schemas with GoatFlow's JSON
 * keys (snake_case on the wire), the TypeScript types inferred from them, and
 * {@linkcode parseManifest}, which refuses a bad manifest with every problem
 * listed by JSON path.
 *
 * @module
 */

import { z } from "zod";
import { Cron } from "croner";
import { InvalidManifestError, type ManifestIssue } from "./errors.ts";
import { parseDuration } from "./_duration.ts";
import { compareSemver, SEMVER_REGEXP } from "./_semver.ts";
import { HOST_VERSION } from "./version.ts";

/** Plugin names: lower-case letter first, then letters, digits and `-`, 2–63 characters. */
export const PLUGIN_NAME_REGEXP = /^[a-z][a-z0-9-]{1,62}$/;

/** The largest manifest accepted, in bytes of JSON (256 KiB). */
export const MAX_MANIFEST_BYTES = 256 * 1024;

/** HTTP methods a plugin route may declare. */
export const ROUTE_METHODS = ["GET", "POST", "PUT", "PATCH", "DELETE"] as const;

/** Route middleware names the host knows; any other refuses the manifest. */
export const ROUTE_MIDDLEWARE = ["auth", "admin"] as const;

/** Widget sizes. */
export const WIDGET_SIZES = ["small", "medium", "large", "full"] as const;

const id = z.string().min(1, "must not be empty");
const httpPath = z.string().startsWith("/", "must start with /");
/** A positive Go duration such as `500ms`, `10s` or `5m`. */
const duration = z.string().refine(
  (t) => (parseDuration(t) ?? 0) > 0,
  "is not a duration such as 30s or 5m",
);

/** A route the plugin serves: `method path` → `handler`. */
const RouteSpecSchema = z.object({
  method: z.enum(ROUTE_METHODS, "must be one of GET, POST, PUT, PATCH, DELETE"),
  path: httpPath,
  handler: id,
  middleware: z.array(
    z.enum(ROUTE_MIDDLEWARE, "unknown middleware (known: auth, admin)"),
  ).optional(),
  description: z.string().optional(),
  timeout: duration.optional(),
});

/** A navigation menu item (with optional children). */
const MenuItemSpecSchema = z.object({
  id,
  label: id,
  icon: z.string().optional(),
  path: httpPath,
  location: id,
  parent: z.string().optional(),
  order: z.number().int().optional(),
  get children() {
    return z.array(MenuItemSpecSchema).optional();
  },
});

/** A dashboard widget rendered by `handler`, which returns `{"html": …}`. */
const WidgetSpecSchema = z.object({
  id,
  title: id,
  description: z.string().optional(),
  handler: id,
  location: id,
  size: z.enum(WIDGET_SIZES, "must be one of small, medium, large, full")
    .optional(),
  order: z.number().int().optional(),
  refreshable: z.boolean().optional(),
  refresh_sec: z.number().int().nonnegative().optional(),
});

/** A scheduled job (cron `schedule`, Go-duration `timeout`). */
const JobSpecSchema = z.object({
  id,
  handler: id,
  schedule: z.string().refine(
    isCronExpression,
    "is not a valid cron expression",
  ),
  description: z.string().optional(),
  enabled: z.boolean().optional(),
  timeout: duration.optional(),
  catch_up: z.enum(["skip", "once"], "must be skip or once").optional(),
});

/** A template the plugin provides or overrides. */
const TemplateSpecSchema = z.object({
  name: id,
  path: z.string().optional(),
  override: z.boolean().optional(),
});

/** Translations: `translations[lang][key] = text`. */
const I18nSpecSchema = z.object({
  namespace: z.string().regex(/^[a-zA-Z0-9_-]+$/, "must be a simple identifier")
    .optional(),
  languages: z.array(z.string()).optional(),
  translations: z.record(z.string(), z.record(z.string(), z.string()))
    .optional(),
});

/** An API error code, published as `<plugin>:<code>`. */
const ErrorCodeSpecSchema = z.object({
  code: z.string().regex(/^[a-zA-Z0-9_.-]+$/, "must be letters, digits, _ . -"),
  message: z.string(),
  http_status: z.number().int().min(100).max(599),
});

/** The whole manifest. */
const GKRegistrationSchema = z.object({
  name: z.string().regex(
    PLUGIN_NAME_REGEXP,
    "must match ^[a-z][a-z0-9-]{1,62}$",
  ),
  version: z.string().regex(SEMVER_REGEXP, "must be a semantic version"),
  description: z.string().optional(),
  author: z.string().optional(),
  license: z.string().optional(),
  homepage: z.string().optional(),
  routes: z.array(RouteSpecSchema).optional(),
  menu_items: z.array(MenuItemSpecSchema).optional(),
  widgets: z.array(WidgetSpecSchema).optional(),
  jobs: z.array(JobSpecSchema).optional(),
  templates: z.array(TemplateSpecSchema).optional(),
  i18n: I18nSpecSchema.optional(),
  error_codes: z.array(ErrorCodeSpecSchema).optional(),
  min_host_version: z.string().regex(
    SEMVER_REGEXP,
    "must be a semantic version",
  )
    .optional(),
  permissions: z.array(z.string().min(1, "must not be empty")).optional(),
  timeouts: z.record(id, duration).optional(),
});

/** A route declared by a plugin. */
export interface RouteSpec {
  /** HTTP method. */
  method: (typeof ROUTE_METHODS)[number];
  /** Path, starting with `/` (Hono syntax: `/items/:id`). */
  path: string;
  /** The plugin function that answers. */
  handler: string;
  /** `auth` and/or `admin`. */
  middleware?: (typeof ROUTE_MIDDLEWARE)[number][] | undefined;
  /** Shown to admins. */
  description?: string | undefined;
  /**
   * Deadline of the handler's call for this route, a Go duration such as
   * `5s` (our addition; GoatFlow ignores it). Absent: the plugin's
   * `timeouts[handler]`, else the host's route default (10 s); see
   * {@linkcode routeTimeoutMs}.
   */
  timeout?: string | undefined;
}

/** A menu item declared by a plugin. */
export interface MenuItemSpec {
  /** Unique within the plugin. */
  id: string;
  /** Shown text. */
  label: string;
  /** Icon name. */
  icon?: string | undefined;
  /** Link target. */
  path: string;
  /** Where it shows, such as `admin`. */
  location: string;
  /** Parent item id. */
  parent?: string | undefined;
  /** Sort key (then id). */
  order?: number | undefined;
  /** Sub-items. */
  children?: MenuItemSpec[] | undefined;
}

/** A widget declared by a plugin. */
export interface WidgetSpec {
  /** Unique within the plugin. */
  id: string;
  /** Card title. */
  title: string;
  /** Shown to admins. */
  description?: string | undefined;
  /** The plugin function returning `{"html": …}`. */
  handler: string;
  /** Where it shows, such as `dashboard`. */
  location: string;
  /** Card size. */
  size?: (typeof WIDGET_SIZES)[number] | undefined;
  /** Sort key (then id). */
  order?: number | undefined;
  /** Whether the dashboard refreshes it. */
  refreshable?: boolean | undefined;
  /** Refresh period in seconds. */
  refresh_sec?: number | undefined;
}

/** A job declared by a plugin. */
export interface JobSpec {
  /** Unique within the plugin. */
  id: string;
  /** The plugin function to run. */
  handler: string;
  /** Cron expression (5 or 6 fields, or a nickname such as `@hourly`). */
  schedule: string;
  /** Shown to admins. */
  description?: string | undefined;
  /** Whether the job runs; absent means false (as in GoatFlow). */
  enabled?: boolean | undefined;
  /** Go duration such as `30s`; default 5 minutes. */
  timeout?: string | undefined;
  /**
   * After ticks were missed because the database was down: `once` runs
   * the job one time when it is back, `skip` does not (our addition;
   * GoatFlow ignores it). Absent: the host's `server.jobCatchUp`.
   */
  catch_up?: "skip" | "once" | undefined;
}

/** A template declared by a plugin. */
export interface TemplateSpec {
  /** Host template name. */
  name: string;
  /** The plugin's template file (informational). */
  path?: string | undefined;
  /** Whether it replaces the host template. */
  override?: boolean | undefined;
}

/** A plugin's translations. */
export interface I18nSpec {
  /** Key prefix; defaults to the plugin name. */
  namespace?: string | undefined;
  /** Languages offered (informational). */
  languages?: string[] | undefined;
  /** `translations[lang][key] = text`. */
  translations?: Record<string, Record<string, string>> | undefined;
}

/** An error code declared by a plugin. */
export interface ErrorCodeSpec {
  /** Code, published as `<plugin>:<code>`. */
  code: string;
  /** Human-readable message. */
  message: string;
  /** HTTP status it maps to. */
  http_status: number;
}

/** The plugin manifest, GoatFlow's `GKRegistration`. */
export interface GKRegistration {
  /** Registry key: `^[a-z][a-z0-9-]{1,62}$`. */
  name: string;
  /** Semantic version. */
  version: string;
  /** One-line description. */
  description?: string | undefined;
  /** Author. */
  author?: string | undefined;
  /** License. */
  license?: string | undefined;
  /** Homepage URL. */
  homepage?: string | undefined;
  /** HTTP routes. */
  routes?: RouteSpec[] | undefined;
  /** Navigation items. */
  menu_items?: MenuItemSpec[] | undefined;
  /** Dashboard widgets. */
  widgets?: WidgetSpec[] | undefined;
  /** Scheduled jobs. */
  jobs?: JobSpec[] | undefined;
  /** Templates and overrides. */
  templates?: TemplateSpec[] | undefined;
  /** Translations. */
  i18n?: I18nSpec | undefined;
  /** API error codes. */
  error_codes?: ErrorCodeSpec[] | undefined;
  /** Lowest host version the plugin runs on. */
  min_host_version?: string | undefined;
  /** Requested permissions (see `permissions/`). */
  permissions?: string[] | undefined;
  /**
   * Deadlines per function, Go durations such as `{"report": "20s"}` (our
   * addition; GoatFlow ignores it). Used for every call of that function
   * that names no deadline of its own, and for routes without a `timeout`.
   */
  timeouts?: Record<string, string> | undefined;
}

// The interfaces above are what the schemas infer: these lines fail to type
// check if the two ever drift apart.
type Same<A, B> = [A] extends [B] ? ([B] extends [A] ? true : false) : false;
const _sameTypes: [
  Same<z.infer<typeof RouteSpecSchema>, RouteSpec>,
  Same<z.infer<typeof MenuItemSpecSchema>, MenuItemSpec>,
  Same<z.infer<typeof WidgetSpecSchema>, WidgetSpec>,
  Same<z.infer<typeof JobSpecSchema>, JobSpec>,
  Same<z.infer<typeof TemplateSpecSchema>, TemplateSpec>,
  Same<z.infer<typeof I18nSpecSchema>, I18nSpec>,
  Same<z.infer<typeof ErrorCodeSpecSchema>, ErrorCodeSpec>,
  Same<z.infer<typeof GKRegistrationSchema>, GKRegistration>,
] = [true, true, true, true, true, true, true, true];

/** Options of {@linkcode parseManifest}. */
export interface ParseManifestOptions {
  /** The host version `min_host_version` is compared with. @default HOST_VERSION */
  hostVersion?: string;
  /** Extra checks (such as the permission grammar); each returns its issues. */
  extraChecks?: readonly ((m: GKRegistration) => ManifestIssue[])[];
}

/** A parsed manifest and the warnings found while parsing it. */
export interface ParsedManifest {
  /** The validated manifest (unknown keys kept). */
  manifest: GKRegistration;
  /** Non-fatal findings: unknown keys, jobs that will never run, … */
  warnings: ManifestIssue[];
}

/**
 * Validates a manifest and returns it with its warnings, or throws
 * {@linkcode InvalidManifestError} listing every problem with its JSON path.
 *
 * `json` may be a parsed value, JSON text or JSON bytes.
 *
 * @example
 * ```ts
 * import { checkManifest } from "./manifest.ts";
 * const { manifest, warnings } = checkManifest({ name: "hello", version: "1.0.0", colour: "red" });
 * console.log(manifest.name, warnings[0]?.path); // hello colour
 * ```
 */
export function checkManifest(
  json: unknown,
  options: ParseManifestOptions = {},
): ParsedManifest {
  const value = decodeInput(json);
  const result = GKRegistrationSchema.safeParse(value);
  const issues: ManifestIssue[] = [];
  if (!result.success) {
    for (const issue of result.error.issues) {
      issues.push({ path: formatPath(issue.path), message: issue.message });
    }
    throw new InvalidManifestError(issues);
  }
  const manifest = result.data;
  issues.push(...checkUnique(manifest));
  const hostVersion = options.hostVersion ?? HOST_VERSION;
  if (
    manifest.min_host_version &&
    compareSemver(manifest.min_host_version, hostVersion) > 0
  ) {
    issues.push({
      path: "min_host_version",
      message:
        `requires host ${manifest.min_host_version}, this host is ${hostVersion}`,
    });
  }
  for (const check of options.extraChecks ?? []) {
    issues.push(...check(manifest));
  }
  if (issues.length > 0) throw new InvalidManifestError(issues);

  const warnings = unknownKeys(value, GKRegistrationSchema, "");
  (manifest.jobs ?? []).forEach((job, i) => {
    if (job.enabled === undefined) {
      warnings.push({
        path: `jobs[${i}].enabled`,
        message: "absent, so the job is disabled (set it to true to run it)",
      });
    }
  });
  // Keep unknown keys (GoatFlow ignores them; we keep and report them).
  return { manifest: { ...(value as object), ...manifest }, warnings };
}

/**
 * Validates a manifest, returning the typed value or throwing
 * {@linkcode InvalidManifestError}. Warnings go to `onWarning`, if given.
 *
 * @example
 * ```ts
 * import { parseManifest } from "./manifest.ts";
 * const m = parseManifest('{"name":"hello","version":"1.0.0"}');
 * console.log(m.name); // hello
 * ```
 */
export function parseManifest(
  json: unknown,
  options: ParseManifestOptions & {
    onWarning?: (warning: ManifestIssue) => void;
  } = {},
): GKRegistration {
  const { manifest, warnings } = checkManifest(json, options);
  for (const w of warnings) options.onWarning?.(w);
  return manifest;
}

/**
 * Default deadline of a plugin route's call, in ms, when neither the route's
 * `timeout` nor the plugin's `timeouts[handler]` names one: 10 s. An
 * interactive request that has not answered in 10 s has usually been given
 * up on, and a runaway guest burns a third of what it would at 30 s before
 * each overrun counts against it.
 */
export const DEFAULT_ROUTE_TIMEOUT_MS = 10_000;

/**
 * The deadline `manifest` declares for function `fn` (`timeouts[fn]`), in
 * ms (at least 1); `undefined` when it declares none.
 *
 * @example
 * ```ts
 * import { functionTimeoutMs } from "./manifest.ts";
 * const m = { name: "p", version: "1.0.0", timeouts: { report: "20s" } };
 * functionTimeoutMs(m, "report"); // 20000
 * functionTimeoutMs(m, "other"); // undefined
 * ```
 */
export function functionTimeoutMs(
  manifest: GKRegistration,
  fn: string,
): number | undefined {
  const t = manifest.timeouts;
  if (!t || !Object.hasOwn(t, fn)) return undefined;
  return durationMs(t[fn]);
}

/**
 * The deadline `manifest` declares for `route`, in ms (at least 1): the
 * route's `timeout`, else `timeouts[route.handler]`; `undefined` when it
 * declares neither (the host then uses its route default,
 * {@linkcode DEFAULT_ROUTE_TIMEOUT_MS} unless configured otherwise).
 *
 * @example
 * ```ts
 * import { routeTimeoutMs } from "./manifest.ts";
 * const route = { method: "GET" as const, path: "/r", handler: "report", timeout: "2s" };
 * routeTimeoutMs({ name: "p", version: "1.0.0", routes: [route] }, route); // 2000
 * ```
 */
export function routeTimeoutMs(
  manifest: GKRegistration,
  route: Pick<RouteSpec, "handler" | "timeout">,
): number | undefined {
  return durationMs(route.timeout) ??
    functionTimeoutMs(manifest, route.handler);
}

function durationMs(text: unknown): number | undefined {
  if (typeof text !== "string") return undefined;
  const ms = parseDuration(text);
  return ms === undefined || ms <= 0 ? undefined : Math.max(1, Math.ceil(ms));
}

function decodeInput(json: unknown): unknown {
  let text: string | undefined;
  if (json instanceof Uint8Array) {
    if (json.byteLength > MAX_MANIFEST_BYTES) throw tooLarge(json.byteLength);
    text = new TextDecoder().decode(json);
  } else if (typeof json === "string") {
    text = json;
  }
  if (text !== undefined) {
    const size = new TextEncoder().encode(text).byteLength;
    if (size > MAX_MANIFEST_BYTES) throw tooLarge(size);
    try {
      return JSON.parse(text);
    } catch (e) {
      throw new InvalidManifestError([{
        path: "",
        message: `not valid JSON: ${e instanceof Error ? e.message : e}`,
      }], { cause: e });
    }
  }
  if (json === null || typeof json !== "object" || Array.isArray(json)) {
    throw new InvalidManifestError([{
      path: "",
      message: "must be a JSON object",
    }]);
  }
  const size = new TextEncoder().encode(JSON.stringify(json)).byteLength;
  if (size > MAX_MANIFEST_BYTES) throw tooLarge(size);
  return json;
}

function tooLarge(size: number): InvalidManifestError {
  return new InvalidManifestError([{
    path: "",
    message: `is ${size} bytes, more than the limit of ${MAX_MANIFEST_BYTES}`,
  }]);
}

function formatPath(path: readonly PropertyKey[]): string {
  let out = "";
  for (const p of path) {
    if (typeof p === "number") out += `[${p}]`;
    else out += out ? `.${String(p)}` : String(p);
  }
  return out;
}

function isCronExpression(expr: string): boolean {
  try {
    new Cron(expr, { paused: true }).stop();
    return true;
  } catch {
    return false;
  }
}

function checkUnique(m: GKRegistration): ManifestIssue[] {
  const issues: ManifestIssue[] = [];
  const dup = <T>(
    list: readonly T[] | undefined,
    key: (t: T) => string,
    name: string,
    field: string,
  ) => {
    const seen = new Set<string>();
    (list ?? []).forEach((item, i) => {
      const k = key(item);
      if (seen.has(k)) {
        issues.push({
          path: `${name}[${i}].${field}`,
          message: `duplicate "${k}"`,
        });
      }
      seen.add(k);
    });
  };
  dup(m.routes, (r) => `${r.method} ${r.path}`, "routes", "path");
  dup(m.menu_items, (x) => x.id, "menu_items", "id");
  dup(m.widgets, (x) => x.id, "widgets", "id");
  dup(m.jobs, (x) => x.id, "jobs", "id");
  dup(m.templates, (x) => x.name, "templates", "name");
  dup(m.error_codes, (x) => x.code, "error_codes", "code");
  dup(m.permissions, (x) => x, "permissions", "");
  for (const i of issues) i.path = i.path.replace(/\.$/, "");
  return issues;
}

function unknownKeys(
  value: unknown,
  schema: z.ZodType,
  path: string,
): ManifestIssue[] {
  const out: ManifestIssue[] = [];
  const inner = unwrap(schema);
  if (inner instanceof z.ZodObject && value && typeof value === "object") {
    const shape = inner.shape as Record<string, z.ZodType>;
    for (const [k, v] of Object.entries(value)) {
      const sub = path ? `${path}.${k}` : k;
      const s = shape[k];
      if (!s) out.push({ path: sub, message: "unknown key (kept, not used)" });
      else out.push(...unknownKeys(v, s, sub));
    }
  } else if (inner instanceof z.ZodArray && Array.isArray(value)) {
    value.forEach((v, i) =>
      out.push(...unknownKeys(v, inner.element as z.ZodType, `${path}[${i}]`))
    );
  }
  return out;
}

function unwrap(schema: z.ZodType): z.ZodType {
  let s: z.ZodType = schema;
  while (s instanceof z.ZodOptional) s = s.unwrap() as z.ZodType;
  return s;
}
