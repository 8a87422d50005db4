/**
 * Template overrides: a plugin may replace a host template by declaring it
 * with `override: true`; the host then asks the plugin's
 * `template_<name>` handler for the HTML (sanitised) and falls back to its
 * own template on any failure.
 *
 * @module
 */

import type { TemplateSpec } from "../model/manifest.ts";

/** A registered override. */
export interface TemplateOverride {
  /** The plugin providing it. */
  plugin: string;
  /** The template name it replaces. */
  template: string;
  /** The plugin function that renders it. */
  handler: string;
}

/** Another plugin already overrides that template. */
export class TemplateOverrideConflictError extends Error {
  /** The template name. */
  readonly template: string;

  /** Creates the error. */
  constructor(template: string, owner: string, plugin: string) {
    super(
      `Cannot register override of template "${template}" for plugin "${plugin}": plugin "${owner}" overrides it already`,
    );
    this.name = "TemplateOverrideConflictError";
    this.template = template;
  }
}

/**
 * The handler name GoatFlow derives for a template: `template_` plus the
 * name with every character other than ASCII letters and digits as `_`.
 *
 * @example
 * ```ts
 * import { overrideHandlerName } from "./templates.ts";
 * overrideHandlerName("pages/admin/dashboard.pongo2"); // "template_pages_admin_dashboard_pongo2"
 * ```
 */
export function overrideHandlerName(template: string): string {
  return `template_${template.replace(/[^A-Za-z0-9]/g, "_")}`;
}

/**
 * Registry of template overrides. Unlike GoatFlow (last registrant wins), a
 * plugin cannot take over a template another plugin overrides.
 *
 * @example
 * ```ts
 * import { TemplateOverrideRegistry } from "./templates.ts";
 * const t = new TemplateOverrideRegistry();
 * t.addPlugin("theme", [{ name: "base/header.html", override: true }]);
 * t.get("base/header.html")?.handler; // "template_base_header_html"
 * ```
 */
export class TemplateOverrideRegistry {
  #overrides = new Map<string, TemplateOverride>();

  /** Throws {@linkcode TemplateOverrideConflictError} on a collision. */
  check(plugin: string, specs: readonly TemplateSpec[] | undefined): void {
    for (const s of specs ?? []) {
      if (!s.override) continue;
      const existing = this.#overrides.get(s.name);
      if (existing && existing.plugin !== plugin) {
        throw new TemplateOverrideConflictError(
          s.name,
          existing.plugin,
          plugin,
        );
      }
    }
  }

  /** Registers a plugin's overrides (specs without `override: true` are skipped). */
  addPlugin(plugin: string, specs: readonly TemplateSpec[] | undefined): void {
    this.check(plugin, specs);
    for (const s of specs ?? []) {
      if (!s.override) continue;
      this.#overrides.set(s.name, {
        plugin,
        template: s.name,
        handler: overrideHandlerName(s.name),
      });
    }
  }

  /** Removes a plugin's overrides. */
  removePlugin(plugin: string): void {
    for (const [k, v] of this.#overrides) {
      if (v.plugin === plugin) this.#overrides.delete(k);
    }
  }

  /** Whether `template` is overridden. */
  has(template: string): boolean {
    return this.#overrides.has(template);
  }

  /** The override of `template`, if any. */
  get(template: string): TemplateOverride | undefined {
    return this.#overrides.get(template);
  }

  /** All overrides, sorted by template name. */
  list(): TemplateOverride[] {
    return [...this.#overrides.values()].sort((a, b) =>
      a.template < b.template ? -1 : a.template > b.template ? 1 : 0
    );
  }
}
