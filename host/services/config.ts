/**
 * Host configuration: one JSON file (`goatkit.json`) plus environment
 * variables that override it; secrets only from the environment.
 *
 * File shape (every section optional):
 *
 * ```json
 * {
 *   "app": { "name": "Helpdesk", "timezone": "Europe/Berlin" },
 *   "plugins": { "hello": { "greeting": "Hi" } },
 *   "secrets": ["STRIPE_KEY"]
 * }
 * ```
 *
 * - Host values are the file's objects flattened with dots (`app.name`);
 *   numbers and booleans become strings, arrays JSON text. Defaults:
 *   `app.name` = `GoatKit`, `app.env` = `development`, `app.timezone` = `UTC`
 *   (GoatFlow's three keys).
 * - `GOATKIT_<SECTION>__<KEY>` overrides or adds host key `<section>.<key>`
 *   (lower-cased, each `__` read as `.`): `GOATKIT_APP__NAME=Desk` sets
 *   `app.name`. Variables without `__` (the server's own `GOATKIT_DATA_DIR`,
 *   `GOATKIT_CONFIG`, …) are not configuration values.
 * - `GOATKIT_PLUGIN__<PLUGIN>__<KEY>` sets a plugin value (`_` in the plugin
 *   part reads as `-`, the key is lower-cased): `GOATKIT_PLUGIN__HELLO__GREETING`.
 * - Secrets: `GOATKIT_SECRET_<NAME>` gives secret `<NAME>`, and each name in
 *   the file's `secrets` list gives the environment variable of that name.
 *   Secrets are never host values; the guarded HostAPI hands one out only
 *   for a `config:` grant naming its exact key.
 *
 * @module
 */

import { ConfigError } from "./errors.ts";

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
  #values: Map<string, string>;
  #secrets: Map<string, string>;
  #plugins: Map<string, Record<string, string>>;

  /** Creates a store from already-parsed values. */
  constructor(opts: ConfigStoreOptions) {
    this.#values = new Map(Object.entries(opts.values));
    this.#secrets = new Map(Object.entries(opts.secrets ?? {}));
    this.#plugins = new Map(
      Object.entries(opts.plugins ?? {}).map(([k, v]) => [k, { ...v }]),
    );
  }

  /**
   * Reads `path` (JSON, see the module doc; `undefined` or a missing file =
   * empty) and applies `env` on top. A file that is not valid JSON throws
   * {@linkcode ConfigError}.
   */
  static fromFileAndEnv(
    path: string | undefined,
    env: Record<string, string | undefined>,
  ): ConfigStore {
    let file: Record<string, unknown> = {};
    if (path !== undefined) {
      let text: string | undefined;
      try {
        text = Deno.readTextFileSync(path);
      } catch (e) {
        if (!(e instanceof Deno.errors.NotFound)) {
          throw new ConfigError(`Cannot read config file "${path}": ${e}`, {
            cause: e,
          });
        }
      }
      if (text !== undefined) {
        try {
          const parsed = JSON.parse(text);
          if (
            parsed === null || typeof parsed !== "object" ||
            Array.isArray(parsed)
          ) {
            throw new Error("top level is not an object");
          }
          file = parsed;
        } catch (e) {
          throw new ConfigError(
            `Cannot parse config file "${path}": ${(e as Error).message}`,
            { cause: e },
          );
        }
      }
    }
    const { plugins: filePlugins, secrets: secretNames, ...hostPart } = file;
    const values: Record<string, string> = { ...DEFAULTS };
    flatten(hostPart, "", values);
    const plugins: Record<string, Record<string, string>> = {};
    if (
      filePlugins && typeof filePlugins === "object" &&
      !Array.isArray(filePlugins)
    ) {
      for (const [name, section] of Object.entries(filePlugins)) {
        const flat: Record<string, string> = {};
        flatten(section, "", flat);
        plugins[name] = flat;
      }
    }
    const secrets: Record<string, string> = {};
    if (Array.isArray(secretNames)) {
      for (const name of secretNames) {
        if (typeof name !== "string") {
          throw new ConfigError(
            `Cannot use config "secrets" entry ${
              JSON.stringify(name)
            }: not a string`,
          );
        }
        const v = env[name];
        if (v !== undefined) secrets[name] = v;
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
        (plugins[plugin] ??= {})[k] = value;
      } else if (rest.includes("__")) {
        values[rest.toLowerCase().split("__").join(".")] = value;
      }
    }
    return new ConfigStore({ values, secrets, plugins });
  }

  /** A host value (never a secret); `undefined` when unset. */
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

  /** One value of `plugin`'s own section. */
  pluginValue(plugin: string, key: string): string | undefined {
    return this.#plugins.get(plugin)?.[key];
  }

  /** A copy of `plugin`'s section (`{}` when it has none). */
  pluginSection(plugin: string): Record<string, string> {
    return { ...this.#plugins.get(plugin) };
  }
}
