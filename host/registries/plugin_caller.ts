/**
 * Helpers host templates use to reach plugins: {@linkcode PluginCaller}
 * (GoatFlow's `{% use %}` object: `call`, `widget`, `translate`) and
 * {@linkcode renderOverride}. All HTML coming back passes the sanitiser.
 *
 * @module
 */

import { errorText } from "../model/errors.ts";
import type { Manager } from "../manager.ts";
import { decodeJson, encodeJson } from "../model/plugin.ts";
import { sanitizeHtml } from "./sanitize.ts";

/** Options of {@linkcode PluginCaller}. */
export interface PluginCallerOptions {
  /** The request language passed to calls and translations. */
  language?: string;
  /** Call deadline in ms. */
  timeoutMs?: number;
}

/**
 * Calls into one plugin on behalf of a host template. Errors never throw:
 * they come back as `{"error": …}` or as HTML comments, as in GoatFlow.
 *
 * @example
 * ```ts
 * import { Manager } from "../manager.ts";
 * import { PluginCaller } from "./plugin_caller.ts";
 * const caller = new PluginCaller(new Manager(), "hello");
 * await caller.widget("w"); // '<!-- plugin "hello" not found -->'
 * ```
 */
export class PluginCaller {
  #manager: Manager | undefined;
  #plugin: string;
  #options: PluginCallerOptions;

  /** Creates a caller for `plugin`. */
  constructor(
    manager: Manager | undefined,
    plugin: string,
    options: PluginCallerOptions = {},
  ) {
    this.#manager = manager;
    this.#plugin = plugin;
    this.#options = options;
  }

  /**
   * Calls `fn` with `args` (JSON-encoded); returns the parsed JSON result,
   * the raw text when it is not JSON, or `{"error": msg}`.
   */
  async call(fn: string, args?: unknown): Promise<unknown> {
    if (!this.#manager) return { error: "plugin manager not available" };
    try {
      const out = await this.#manager.call(
        this.#plugin,
        fn,
        args === undefined ? null : encodeJson(args),
        this.#callOptions(),
      );
      if (!out) return null;
      try {
        return decodeJson(out);
      } catch {
        return new TextDecoder().decode(out);
      }
    } catch (e) {
      return { error: errorText(e) };
    }
  }

  /**
   * Renders widget `id` of the plugin: its sanitised `html`, or an HTML
   * comment saying what went wrong.
   */
  async widget(id: string): Promise<string> {
    const m = this.#manager;
    if (!m) return "<!-- plugin manager not available -->";
    const manifest = m.manifest(this.#plugin);
    if (!manifest || !m.isEnabled(this.#plugin)) {
      return `<!-- plugin "${safeComment(this.#plugin)}" not found -->`;
    }
    const spec = manifest.widgets?.find((w) => w.id === id);
    if (!spec) {
      return `<!-- widget "${safeComment(id)}" not found in plugin "${
        safeComment(this.#plugin)
      }" -->`;
    }
    let out: Uint8Array | null;
    try {
      out = await m.call(
        this.#plugin,
        spec.handler,
        encodeJson({}),
        this.#callOptions(),
      );
    } catch (e) {
      return `<!-- widget error: ${safeComment(errorText(e))} -->`;
    }
    let parsed: unknown;
    try {
      parsed = decodeJson(out);
    } catch (e) {
      return `<!-- widget parse error: ${safeComment(errorText(e))} -->`;
    }
    const html = (parsed as { html?: unknown } | null)?.html;
    if (typeof html !== "string") {
      return `<!-- widget "${safeComment(id)}" did not return html -->`;
    }
    return sanitizeHtml(html);
  }

  /** Translates `key` in the caller's language (GoatFlow's was a stub). */
  translate(key: string, ...args: unknown[]): string {
    return this.#manager?.i18n.translate(key, this.#options.language, args) ??
      key;
  }

  #callOptions() {
    return {
      ...(this.#options.language ? { language: this.#options.language } : {}),
      ...(this.#options.timeoutMs
        ? { timeoutMs: this.#options.timeoutMs }
        : {}),
    };
  }
}

/**
 * Renders the plugin override of `template`, if one is registered: calls
 * its handler with `{"template": name, "data": data}` and returns the
 * sanitised `html`; `null` when there is no override or it failed (the
 * failure is logged under the plugin's name).
 *
 * @example
 * ```ts
 * import { Manager } from "../manager.ts";
 * import { renderOverride } from "./plugin_caller.ts";
 * await renderOverride(new Manager(), "base/header.html", {}); // null
 * ```
 */
export async function renderOverride(
  manager: Manager,
  template: string,
  data: unknown,
  options: PluginCallerOptions = {},
): Promise<string | null> {
  const o = manager.templates.get(template);
  if (!o) return null;
  try {
    const out = await manager.call(
      o.plugin,
      o.handler,
      encodeJson({ template, data }),
      options.language ? { language: options.language } : {},
    );
    const html = (decodeJson(out) as { html?: unknown } | null)?.html;
    if (typeof html !== "string") throw new Error("result has no html");
    return sanitizeHtml(html);
  } catch (e) {
    manager.logs.log(
      o.plugin,
      "error",
      `template override failed: ${errorText(e)}`,
      {
        template,
      },
    );
    return null;
  }
}

function safeComment(text: string): string {
  return text.replace(/--/g, "- -").replace(/[<>]/g, "");
}
