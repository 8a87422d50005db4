/**
 * Translations: the host's own and each plugin's, looked up as
 * `<namespace>.<key>` with a language fallback chain.
 *
 * @module
 */

import type { I18nSpec } from "../model/manifest.ts";

/** A namespace is already taken by the host or another plugin. */
export class TranslationConflictError extends Error {
  /** The namespace that is taken. */
  readonly namespace: string;
  /** Who owns it (`host` or a plugin name). */
  readonly owner: string;

  /** Creates the error. */
  constructor(namespace: string, owner: string, plugin: string) {
    super(
      `Cannot register translations of plugin "${plugin}": namespace "${namespace}" belongs to ${
        owner === HOST_OWNER ? "the host" : `plugin "${owner}"`
      }`,
    );
    this.name = "TranslationConflictError";
    this.namespace = namespace;
    this.owner = owner;
  }
}

const HOST_OWNER = "\0host";

/** Options of {@linkcode I18nRegistry}. */
export interface I18nRegistryOptions {
  /** The language used when nothing else matches. @default "en" */
  defaultLanguage?: string;
  /** Namespaces reserved for the host. @default ["core", "host", "admin", "goatkit"] */
  reservedNamespaces?: readonly string[];
}

/**
 * Translation tables. Lookup order: the requested language (`de-CH`), its
 * base language (`de`), the default language (`en`), then the key itself.
 * Arguments fill `{0}`, `{1}`, … and printf-style `%s`, `%d`, `%v`.
 *
 * @example
 * ```ts
 * import { I18nRegistry } from "./i18n.ts";
 * const i18n = new I18nRegistry();
 * i18n.addPlugin("hello", { translations: { en: { greet: "Hello, {0}!" }, de: { greet: "Hallo, %s!" } } });
 * i18n.translate("hello.greet", "de-CH", ["Ana"]); // "Hallo, Ana!"
 * i18n.translate("hello.greet", "fr", ["Ana"]); // "Hello, Ana!"
 * i18n.translate("hello.missing", "fr"); // "hello.missing"
 * ```
 */
export class I18nRegistry {
  #tables = new Map<string, Map<string, string>>(); // lang → key → text
  #owners = new Map<string, string>(); // namespace → owner
  #defaultLanguage: string;

  /** Creates an empty registry. */
  constructor(options: I18nRegistryOptions = {}) {
    this.#defaultLanguage = options.defaultLanguage ?? "en";
    for (
      const ns of options.reservedNamespaces ??
        ["core", "host", "admin", "goatkit"]
    ) {
      this.#owners.set(ns, HOST_OWNER);
    }
  }

  /** Adds host translations for `language` (keys are used as given). */
  addHost(language: string, entries: Record<string, string>): void {
    const table = this.#table(language);
    for (const [k, v] of Object.entries(entries)) {
      table.set(k, v);
      const ns = k.split(".")[0]!;
      if (!this.#owners.has(ns)) this.#owners.set(ns, HOST_OWNER);
    }
  }

  /**
   * Throws {@linkcode TranslationConflictError} if `plugin` may not use the
   * namespace of `spec` (taken by the host or another plugin).
   */
  check(plugin: string, spec: I18nSpec | undefined): void {
    const ns = spec?.namespace || plugin;
    const owner = this.#owners.get(ns);
    if (owner !== undefined && owner !== plugin) {
      throw new TranslationConflictError(ns, owner, plugin);
    }
  }

  /** Adds a plugin's translations under `<namespace>.<key>`. */
  addPlugin(plugin: string, spec: I18nSpec | undefined): void {
    this.check(plugin, spec);
    const ns = spec?.namespace || plugin;
    this.#owners.set(ns, plugin);
    for (const [lang, entries] of Object.entries(spec?.translations ?? {})) {
      const table = this.#table(lang);
      for (const [k, v] of Object.entries(entries)) table.set(`${ns}.${k}`, v);
    }
  }

  /** Removes every translation a plugin added. */
  removePlugin(plugin: string): void {
    for (const [ns, owner] of this.#owners) {
      if (owner !== plugin) continue;
      this.#owners.delete(ns);
      for (const table of this.#tables.values()) {
        for (const k of table.keys()) {
          if (k.startsWith(`${ns}.`)) table.delete(k);
        }
      }
    }
  }

  /** Translates `key` into `language` (see the class doc for the fallback). */
  translate(
    key: string,
    language?: string,
    args: readonly unknown[] = [],
  ): string {
    for (const lang of this.#chain(language)) {
      const text = this.#tables.get(lang)?.get(key);
      if (text !== undefined) return formatMessage(text, args);
    }
    return key;
  }

  /** The languages that have at least one entry. */
  languages(): string[] {
    return [...this.#tables.keys()].sort();
  }

  #chain(language: string | undefined): string[] {
    const out: string[] = [];
    if (language) {
      const lang = language.trim().replace(/_/g, "-").toLowerCase();
      out.push(lang);
      const base = lang.split("-")[0]!;
      if (base !== lang) out.push(base);
    }
    out.push(this.#defaultLanguage);
    return out;
  }

  #table(language: string): Map<string, string> {
    const lang = language.replace(/_/g, "-").toLowerCase();
    let t = this.#tables.get(lang);
    if (!t) this.#tables.set(lang, t = new Map());
    return t;
  }
}

/**
 * Fills `{0}`-style and printf-style (`%s`, `%d`, `%v`, `%%`) placeholders.
 *
 * @example
 * ```ts
 * import { formatMessage } from "./i18n.ts";
 * formatMessage("{1} of %d", [3, "two"]); // "two of 3"
 * ```
 */
export function formatMessage(text: string, args: readonly unknown[]): string {
  if (args.length === 0) return text;
  let next = 0;
  return text.replace(/\{(\d+)\}|%([sdvf%])/g, (m, index, verb) => {
    if (index !== undefined) {
      const i = Number(index);
      return i < args.length ? stringify(args[i]) : m;
    }
    if (verb === "%") return "%";
    if (next >= args.length) return m;
    const v = args[next++];
    if (verb === "d") return String(Math.trunc(Number(v)));
    return stringify(v);
  });
}

function stringify(v: unknown): string {
  return typeof v === "string"
    ? v
    : typeof v === "object" && v !== null
    ? JSON.stringify(v)
    : String(v);
}
