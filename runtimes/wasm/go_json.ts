/**
 * JSON the way Go's `encoding/json` writes it, so host_call answers are
 * byte-identical to GoatFlow's: map keys sorted, `<`, `>`, `&`, U+2028 and
 * U+2029 escaped as `\u003c`, `\u003e`, `\u0026`, `\u2028`, `\u2029`,
 * byte slices as padded standard base64, times as RFC 3339.
 *
 * @module
 */

const ESCAPES: Record<string, string> = {
  "<": "\\u003c",
  ">": "\\u003e",
  "&": "\\u0026",
  "\u2028": "\\u2028",
  "\u2029": "\\u2029",
};

/** Go's string encoding (HTML-safe). */
function goString(s: string): string {
  return JSON.stringify(s).replace(/[<>&\u2028\u2029]/g, (c) => ESCAPES[c]!);
}

/** Raised for a string that is not standard padded base64 (Go's message). */
export class Base64Error extends Error {
  /** Creates the error for the first bad byte at `offset`. */
  constructor(offset: number) {
    super(`illegal base64 data at input byte ${offset}`);
    this.name = "Base64Error";
  }
}

const B64 = /^[A-Za-z0-9+/]*={0,2}$/;

/**
 * Decodes standard padded base64 strictly, as Go's `encoding/json` does for
 * `[]byte` fields: no whitespace, padding required, {@linkcode Base64Error}
 * with Go's offset otherwise. (`Uint8Array.fromBase64` alone is lenient, so
 * the check stays; encoding is the built-in `toBase64()`.)
 *
 * @example
 * ```ts
 * import { fromBase64 } from "./go_json.ts";
 * fromBase64("aGk="); // Uint8Array [104, 105]
 * ```
 */
export function fromBase64(s: string): Uint8Array {
  if (!B64.test(s) || s.length % 4 !== 0) {
    let i = 0;
    while (i < s.length && /[A-Za-z0-9+/]/.test(s[i]!)) i++;
    if (i < s.length && s[i] === "=" && s.length % 4 === 0) {
      // padding in the wrong place
      throw new Base64Error(i);
    }
    throw new Base64Error(
      i < s.length ? i : s.length - (s.length % 4 === 0 ? 0 : s.length % 4),
    );
  }
  // Checked above, so the built-in (loose about unused trailing bits, as
  // Go's StdEncoding is) cannot fail here.
  return Uint8Array.fromBase64(s);
}

/** Go's float64 formatting (`strconv.FormatFloat(f, 'g'-like, -1, 64)`). */
function goNumber(n: number): string {
  if (!Number.isFinite(n)) {
    throw new TypeError(`json: unsupported value: ${n}`);
  }
  const abs = Math.abs(n);
  if (abs !== 0 && (abs < 1e-6 || abs >= 1e21)) {
    // Go: 'e' format with at least two exponent digits.
    return n.toExponential().replace(/e([+-])(\d)$/, "e$10$2");
  }
  return String(n);
}

/**
 * Encodes `value` as Go's `json.Marshal` would encode the equivalent
 * `interface{}` value (maps with sorted keys).
 *
 * @example
 * ```ts
 * import { goJson } from "./go_json.ts";
 * goJson({ value: "<b>", found: true }); // '{"found":true,"value":"\u003cb\u003e"}'
 * ```
 */
export function goJson(value: unknown): string {
  if (value === null || value === undefined) return "null";
  switch (typeof value) {
    case "string":
      return goString(value);
    case "number":
      return goNumber(value);
    case "bigint":
      return value.toString();
    case "boolean":
      return value ? "true" : "false";
    case "object":
      break;
    default:
      return "null";
  }
  if (value instanceof Uint8Array) return goString(value.toBase64());
  if (value instanceof Date) return goString(value.toISOString());
  if (Array.isArray(value)) return `[${value.map(goJson).join(",")}]`;
  const obj = value as Record<string, unknown>;
  const keys = Object.keys(obj).filter((k) => obj[k] !== undefined).sort(
    (a, b) => {
      // Go sorts map keys by their UTF-8 bytes.
      const ea = new TextEncoder().encode(a);
      const eb = new TextEncoder().encode(b);
      for (let i = 0; i < Math.min(ea.length, eb.length); i++) {
        if (ea[i] !== eb[i]) return ea[i]! - eb[i]!;
      }
      return ea.length - eb.length;
    },
  );
  return `{${keys.map((k) => `${goString(k)}:${goJson(obj[k])}`).join(",")}}`;
}

/**
 * Returns the raw JSON text of member `key` of the top-level object in
 * `text` (Go's `json.RawMessage`), or `undefined` when absent.
 * `text` must be valid JSON (checked by the caller with `JSON.parse`).
 */
export function rawMember(text: string, key: string): string | undefined {
  let i = 0;
  const ws = () => {
    while (i < text.length && " \t\n\r".includes(text[i]!)) i++;
  };
  const skipString = () => {
    i++; // opening quote
    while (i < text.length && text[i] !== '"') i += text[i] === "\\" ? 2 : 1;
    i++;
  };
  const skipValue = () => {
    ws();
    const c = text[i];
    if (c === '"') return skipString();
    if (c === "{" || c === "[") {
      let depth = 0;
      while (i < text.length) {
        const d = text[i]!;
        if (d === '"') {
          skipString();
          continue;
        }
        if (d === "{" || d === "[") depth++;
        if (d === "}" || d === "]") depth--;
        i++;
        if (depth === 0) return;
      }
      return;
    }
    while (i < text.length && !",}] \t\n\r".includes(text[i]!)) i++;
  };
  ws();
  if (text[i] !== "{") return undefined;
  i++;
  let found: string | undefined;
  for (;;) {
    ws();
    if (text[i] !== '"') return found;
    const ks = i;
    skipString();
    const name = JSON.parse(text.slice(ks, i)) as string;
    ws();
    i++; // colon
    ws();
    const vs = i;
    skipValue();
    // Go matches keys case-insensitively; the last match wins.
    if (name === key || name.toLowerCase() === key.toLowerCase()) {
      found = text.slice(vs, i);
    }
    ws();
    if (text[i] === ",") i++;
    else return found;
  }
}
