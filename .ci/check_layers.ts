/**
 * The layering check of `deno task check`: reads the import graph of the
 * library (`host/`, `runtimes/`, `permissions/`) and of the public entries
 * (`deno.json` `exports`) and fails when a rule of DESIGN.md §2 is broken:
 *
 * 1. only `host/loading/` imports `runtimes/` (within `host/` and
 *    `permissions/`; the public entries and tests may);
 * 2. `runtimes/` imports from `host/` only `host/model/`;
 * 3. `permissions/` imports from `host/` only `host/model/`;
 * 4. `runtimes/wasi/` never imports `runtimes/wasm/`;
 * 5. no public entry re-exports a `_` module, directly or through the
 *    modules it re-exports.
 *
 * Specifiers are read from the source with comments removed: static
 * `import`/`export … from`, `import("…")` with a literal, and
 * `new URL("…", import.meta.url)` (workers, data files).
 *
 * ```sh
 * deno run --allow-read .ci/check_layers.ts
 * ```
 *
 * @module
 */

import { dirname, join, relative, resolve, sep } from "node:path";

/** One broken rule: which file, which import, which rule. */
export interface LayerViolation {
  /** The importing file, relative to the root. */
  from: string;
  /** The imported (or re-exported) file, relative to the root. */
  to: string;
  /** The rule, in words. */
  rule: string;
}

/** One module reference found in a source file. */
export interface ModuleReference {
  /** The specifier as written. */
  specifier: string;
  /** Whether it is a re-export (`export … from`). */
  reexport: boolean;
}

const LIBRARY_ROOTS = ["host", "runtimes", "permissions"];
const SKIPPED_DIRS = new Set(["node_modules", "build", "data", ".git"]);

/**
 * Removes comments from TypeScript source, keeping string and template
 * literals (and so the specifiers) intact.
 */
export function stripComments(source: string): string {
  let out = "";
  let i = 0;
  const n = source.length;
  while (i < n) {
    const c = source[i];
    const next = source[i + 1];
    if (c === "/" && next === "/") {
      while (i < n && source[i] !== "\n") i++;
    } else if (c === "/" && next === "*") {
      const end = source.indexOf("*/", i + 2);
      i = end < 0 ? n : end + 2;
      out += " ";
    } else if (c === '"' || c === "'" || c === "`") {
      let j = i + 1;
      while (j < n && source[j] !== c) j += source[j] === "\\" ? 2 : 1;
      out += source.slice(i, j + 1);
      i = j + 1;
    } else {
      out += c;
      i++;
    }
  }
  return out;
}

const REFERENCE_REGEXP =
  /(\bexport\s[^;"'`]*?\bfrom\s*|\bimport\s[^;"'`]*?\bfrom\s*|\bimport\s*\(\s*|\bimport\s+|\bnew\s+URL\(\s*)(["'])([^"'`]+)\2/g;

/**
 * The module references in `source` (comments ignored).
 *
 * @example
 * ```ts
 * import { moduleReferences } from "./check_layers.ts";
 * const refs = moduleReferences('export { a } from "./_a.ts";\nimport "./b.ts";');
 * console.log(refs.map((r) => [r.specifier, r.reexport]));
 * ```
 */
export function moduleReferences(source: string): ModuleReference[] {
  const refs: ModuleReference[] = [];
  for (const m of stripComments(source).matchAll(REFERENCE_REGEXP)) {
    refs.push({ specifier: m[3], reexport: m[1].startsWith("export") });
  }
  return refs;
}

function walk(dir: string, out: string[]): string[] {
  let entries: Deno.DirEntry[];
  try {
    entries = [...Deno.readDirSync(dir)];
  } catch (e) {
    if (e instanceof Deno.errors.NotFound) return out;
    throw e;
  }
  for (const e of entries) {
    const path = join(dir, e.name);
    if (e.isDirectory && !SKIPPED_DIRS.has(e.name)) walk(path, out);
    else if (e.isFile && /\.tsx?$/.test(e.name)) out.push(path);
  }
  return out;
}

function under(path: string, folder: string): boolean {
  return path === folder || path.startsWith(folder + "/");
}

function isPrivate(path: string): boolean {
  return path.split("/").some((part) => part.startsWith("_"));
}

function relativeTargets(root: string, file: string): {
  to: string;
  reexport: boolean;
}[] {
  const source = Deno.readTextFileSync(file);
  return moduleReferences(source)
    .filter((r) =>
      r.specifier.startsWith("./") || r.specifier.startsWith("../")
    )
    .map((r) => ({
      to: relative(root, resolve(dirname(file), r.specifier)).split(sep).join(
        "/",
      ),
      reexport: r.reexport,
    }));
}

/** Options of {@linkcode checkLayers}. */
export interface CheckLayersOptions {
  /** The repository root (holding `deno.json`). */
  root: string;
}

/**
 * Checks the tree under `root` and returns every broken rule (empty when
 * the layering holds).
 *
 * @example
 * ```ts ignore
 * import { checkLayers } from "./check_layers.ts";
 * console.log(checkLayers({ root: "." }).length); // 0
 * ```
 */
export function checkLayers(options: CheckLayersOptions): LayerViolation[] {
  const root = resolve(options.root);
  const violations: LayerViolation[] = [];
  const rel = (p: string) => relative(root, p).split(sep).join("/");
  for (const top of LIBRARY_ROOTS) {
    for (const file of walk(join(root, top), [])) {
      const from = rel(file);
      for (const { to } of relativeTargets(root, file)) {
        const add = (rule: string) => violations.push({ from, to, rule });
        if (
          under(to, "runtimes") && !under(from, "runtimes") &&
          !under(from, "host/loading")
        ) {
          add("only host/loading/ imports runtimes/");
        }
        if (
          under(from, "runtimes") && under(to, "host") &&
          !under(to, "host/model")
        ) {
          add("runtimes/ imports from host/ only host/model/");
        }
        if (
          under(from, "permissions") && under(to, "host") &&
          !under(to, "host/model")
        ) {
          add("permissions/ imports from host/ only host/model/");
        }
        if (under(from, "runtimes/wasi") && under(to, "runtimes/wasm")) {
          add("runtimes/wasi/ never imports runtimes/wasm/");
        }
      }
    }
  }
  const config = JSON.parse(Deno.readTextFileSync(join(root, "deno.json")));
  const exports: Record<string, string> = typeof config.exports === "string"
    ? { ".": config.exports }
    : config.exports ?? {};
  for (const entry of Object.values(exports)) {
    const start = rel(resolve(root, entry));
    const seen = new Set<string>();
    const queue = [start];
    while (queue.length > 0) {
      const from = queue.shift()!;
      if (seen.has(from)) continue;
      seen.add(from);
      let targets: { to: string; reexport: boolean }[];
      try {
        targets = relativeTargets(root, join(root, from));
      } catch (e) {
        if (e instanceof Deno.errors.NotFound) continue;
        throw e;
      }
      for (const { to, reexport } of targets) {
        if (!reexport) continue;
        if (isPrivate(to)) {
          violations.push({
            from,
            to,
            rule: `public entry "${entry}" re-exports a _ module`,
          });
        } else queue.push(to);
      }
    }
  }
  return violations;
}

if (import.meta.main) {
  const root = resolve(dirname(new URL(import.meta.url).pathname), "..");
  const violations = checkLayers({ root });
  for (const v of violations) {
    console.error(`${v.from} → ${v.to}: ${v.rule}`);
  }
  if (violations.length > 0) {
    console.error(`layers: ${violations.length} violation(s)`);
    Deno.exit(1);
  }
  console.log("layers: ok");
}
