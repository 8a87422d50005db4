/**
 * What plugins contribute to the host besides routes: translations
 * ({@linkcode I18nRegistry}), API error codes ({@linkcode ErrorCodeRegistry})
 * and template overrides ({@linkcode TemplateOverrideRegistry}), each
 * collision-checked, plus what a host application's templates use to call
 * plugins and render their HTML safely ({@linkcode PluginCaller},
 * {@linkcode renderOverride}, {@linkcode sanitizeHtml}).
 *
 * ```ts
 * import { I18nRegistry } from "./mod.ts";
 * const i18n = new I18nRegistry();
 * i18n.addPlugin("hello", {
 *   translations: { en: { greeting: "Hello, {0}!" } },
 * });
 * console.log(i18n.translate("hello.greeting", "en", ["Ana"])); // Hello, Ana!
 * ```
 *
 * @module
 */

export {
  ErrorCodeConflictError,
  type ErrorCodeEntry,
  ErrorCodeRegistry,
} from "./error_codes.ts";
export {
  formatMessage,
  I18nRegistry,
  type I18nRegistryOptions,
  TranslationConflictError,
} from "./i18n.ts";
export {
  overrideHandlerName,
  type TemplateOverride,
  TemplateOverrideConflictError,
  TemplateOverrideRegistry,
} from "./templates.ts";
export {
  PluginCaller,
  type PluginCallerOptions,
  renderOverride,
} from "./plugin_caller.ts";
export { escapeHtml, sanitizeHtml } from "./sanitize.ts";
