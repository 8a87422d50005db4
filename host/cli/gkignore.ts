/**
 * `.gkignore`: which files of a plugin folder `gk pack` leaves out, written
 * like `.gitignore` — one glob per line, `#` comments, `!` re-includes,
 * a trailing `/` matches folders only, a `/` at the start or in the middle
 * anchors the pattern to the folder, `*` and `?` stay within one path
 * segment, `**` spans any number of them. The last matching line wins; a
 * file inside an ignored folder stays ignored.
 *
 * @module
 */

import { join } from "node:path";

/** The name of the ignore file in a plugin folder. */
export const IGNORE_FILE = ".gkignore";

interface Rule {
  regexp: RegExp;
  negate: boolean;
  dirOnly: boolean;
}

function globToRegExp(glob: string): string {
  let out = "";
  for (let i = 0; i < glob.length; i++) {
    const c = glob[i]!;
    if (c === "*") {
      if (glob[i + 1] === "*") {
        const before = i === 0 || glob[i - 1] === "/";
        const after = glob[i + 2] === "/" || i + 2 === glob.length;
        if (before && after) {
          if (glob[i + 2] === "/") {
            out += "(?:.*/)?";
            i += 2;
          } else {
            out += ".*";
            i += 1;
          }
          continue;
        }
        out += "[^/]*";
        i += 1;
        continue;
      }
      out += "[^/]*";
    } else if (c === "?") out += "[^/]";
    else if (c === "[") {
      const end = glob.indexOf("]", i + 2);
      if (end < 0) out += "\\[";
      else {
        let cls = glob.slice(i + 1, end).replace(/\\/g, "\\\\");
        if (cls.startsWith("!")) cls = "^" + cls.slice(1);
        out += `[${cls}]`;
        i = end;
      }
    } else if (c === "\\" && i + 1 < glob.length) {
      out += glob[i + 1]!.replace(/[.*+?^${}()|[\]\\/]/g, "\\$&");
      i += 1;
    } else out += c.replace(/[.*+?^${}()|[\]\\/]/g, "\\$&");
  }
  return out;
}

/**
 * Ignore rules parsed from `.gkignore` text.
 *
 * @example
 * ```ts
 * import { IgnoreRules } from "./gkignore.ts";
 * const rules = IgnoreRules.parse("*.c\nbuild/\n!keep.c\n");
 * rules.ignores("src/plugin.c", false); // true
 * rules.ignores("keep.c", false); // false
 * rules.ignores("build", true); // true
 * ```
 */
export class IgnoreRules {
  #rules: Rule[];

  private constructor(rules: Rule[]) {
    this.#rules = rules;
  }

  /** Parses `.gkignore` text. */
  static parse(text: string): IgnoreRules {
    const rules: Rule[] = [];
    for (const raw of text.split(/\r?\n/)) {
      let line = raw.replace(/(?<!\\)\s+$/, "");
      if (!line || line.startsWith("#")) continue;
      let negate = false;
      if (line.startsWith("!")) {
        negate = true;
        line = line.slice(1);
      } else if (line.startsWith("\\!") || line.startsWith("\\#")) {
        line = line.slice(1);
      }
      let dirOnly = false;
      if (line.endsWith("/")) {
        dirOnly = true;
        line = line.replace(/\/+$/, "");
      }
      if (!line) continue;
      const anchored = line.includes("/");
      line = line.replace(/^\/+/, "");
      const body = globToRegExp(line);
      rules.push({
        regexp: new RegExp(`^${anchored ? "" : "(?:.*/)?"}${body}$`),
        negate,
        dirOnly,
      });
    }
    return new IgnoreRules(rules);
  }

  /** No rules: nothing is ignored. */
  static empty(): IgnoreRules {
    return new IgnoreRules([]);
  }

  /** Whether the file or folder at `path` (relative, `/`-separated) is ignored. */
  ignores(path: string, isDir: boolean): boolean {
    let ignored = false;
    for (const r of this.#rules) {
      if (r.dirOnly && !isDir) continue;
      if (r.regexp.test(path)) ignored = !r.negate;
    }
    return ignored;
  }
}

/** The rules of `<dir>/.gkignore`, or none when the folder has no such file. */
export async function loadIgnoreRules(dir: string): Promise<IgnoreRules> {
  try {
    return IgnoreRules.parse(await Deno.readTextFile(join(dir, IGNORE_FILE)));
  } catch (e) {
    if (e instanceof Deno.errors.NotFound) return IgnoreRules.empty();
    throw e;
  }
}
