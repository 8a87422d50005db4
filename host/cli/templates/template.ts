/**
 * The shape of a `gk init` template: the files of a new plugin as text, with
 * placeholders that {@linkcode renderTemplate} fills in. Templates live in
 * TypeScript modules (not in folders read at run time) so they travel with
 * the published package: a package fetched from a registry cannot list its
 * own directory.
 *
 * Placeholders: `{{name}}` (the plugin name, `^[a-z][a-z0-9-]{1,62}$`),
 * `{{ident}}` (the name with `-` turned into `_`, for identifiers such as a
 * Rust crate name), `{{title}}` (the name in words, for labels), `{{sdk}}`
 * (where `@goatkit/deno/sdk` resolves, for the TypeScript template) and
 * `{{goatkit_version}}`.
 *
 * @module
 */

/** One `gk init` template. */
export interface PluginTemplate {
  /** The `--runtime` value, such as `wasm-c`. */
  readonly runtime: string;
  /** The language, in words. */
  readonly language: string;
  /** One line: what the template builds and with what. */
  readonly summary: string;
  /** Relative path (with `/`) → content with placeholders. */
  readonly files: Readonly<Record<string, string>>;
  /** Paths among `files` that are made executable (`0o755`). */
  readonly executables: readonly string[];
}

/** The values of a template's placeholders. */
export interface TemplateValues {
  /** The plugin name. */
  name: string;
  /** Where `@goatkit/deno/sdk` resolves (an URL or `jsr:` specifier). */
  sdk: string;
  /** The GoatKit version the CLI belongs to. */
  goatkitVersion: string;
}

/**
 * A tag for template file contents: the text as written (like
 * `String.raw`, so `\n` stays a backslash and an `n`), where `$\{` stands
 * for a dollar sign and brace (shell `$\{x:-y}`, JavaScript template
 * strings) and a backslash before a backtick for a backtick. It takes no
 * substitutions.
 *
 * @example
 * ```ts
 * import { source } from "./template.ts";
 * console.log(source`out="$\{1:-a}"\n`); // out="${1:-a}"\n
 * ```
 */
export function source(strings: TemplateStringsArray): string {
  return strings.raw.join("").replaceAll("$\\{", "$" + "{").replaceAll(
    "\\`",
    "`",
  );
}

const PLACEHOLDER_REGEXP = /\{\{(name|ident|title|sdk|goatkit_version)\}\}/g;

/**
 * Fills in the placeholders of one template file.
 *
 * @example
 * ```ts
 * import { renderTemplate } from "./template.ts";
 * const text = renderTemplate("{{ident}}: {{title}}", {
 *   name: "my-plugin",
 *   sdk: "jsr:@goatkit/deno/sdk",
 *   goatkitVersion: "0.1.0",
 * });
 * console.log(text); // my_plugin: My Plugin
 * ```
 */
export function renderTemplate(text: string, values: TemplateValues): string {
  const ident = values.name.replaceAll("-", "_");
  const title = values.name.split("-").filter(Boolean).map((w) =>
    w[0]!.toUpperCase() + w.slice(1)
  ).join(" ");
  return text.replace(PLACEHOLDER_REGEXP, (_, key: string) => {
    switch (key) {
      case "name":
        return values.name;
      case "ident":
        return ident;
      case "title":
        return title;
      case "sdk":
        return values.sdk;
      default:
        return values.goatkitVersion;
    }
  });
}

/**
 * The `manifest.json` every template starts from: one public-facing route
 * under `/api/plugins/<name>/hello` (signed-in users), its i18n namespace
 * named after the plugin, and only the `log` permission.
 */
export function manifestJson(language: string): string {
  return JSON.stringify(
    {
      name: "{{name}}",
      version: "0.1.0",
      description: `{{title}}: a GoatKit plugin written in ${language}`,
      author: "",
      license: "MIT",
      homepage: "",
      routes: [{
        method: "GET",
        path: "/api/plugins/{{name}}/hello",
        handler: "hello",
        middleware: ["auth"],
        description: "Answers with a JSON greeting",
      }],
      i18n: {
        namespace: "{{name}}",
        languages: ["en"],
        translations: { en: { title: "{{title}}" } },
      },
      permissions: ["log"],
    },
    null,
    2,
  ) + "\n";
}

/** The README every template shares; `build` and `files` are per language. */
export function readme(
  options: { language: string; build: string; files: string; notes?: string },
): string {
  return `# {{title}}

A GoatKit plugin written in ${options.language}, made by \`gk init\`.

It serves one route, \`GET /api/plugins/{{name}}/hello\` (signed-in users),
whose function \`hello\` logs a line and answers
\`{"plugin":"{{name}}","message":"Hello from {{name}}!",…}\`. It asks for
one permission, \`log\`. \`manifest.json\` is the plugin's only manifest:
the host reads it at install and the code registers the same file.

## Files

${options.files}

## Build, pack, install

\`\`\`sh
${options.build}
gk pack .                      # writes {{name}}-0.1.0.zip
gk install {{name}}-0.1.0.zip  # into the host at $GOATKIT_URL (token: $GOATKIT_TOKEN)
curl -H "authorization: Bearer $GOATKIT_TOKEN" "$GOATKIT_URL/api/plugins/{{name}}/hello"
\`\`\`
${options.notes ? `\n${options.notes}\n` : ""}
To add a permission (\`db:read\`, \`http:api.example.com\`, …), list it in
\`manifest.json\`; the operator approves it after install
(\`gk grants {{name}} --approve …\`).
`;
}
