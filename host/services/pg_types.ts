/**
 * Turns PostgreSQL's text-format column values into JSON-safe values, the
 * same way for `npm:pg` and PGlite, so a plugin sees identical rows on both:
 *
 * | PostgreSQL type | JSON value |
 * |---|---|
 * | `int2`, `int4`, `oid`, `float4`, `float8` | number (`NaN`/`±Infinity` as the strings `"NaN"`, `"Infinity"`, `"-Infinity"`) |
 * | `int8`, `numeric`, `money` | string (no precision is lost; `count(*)` is `"3"`) |
 * | `bool` | boolean |
 * | `json`, `jsonb` | the parsed value |
 * | `bytea` | standard padded base64 string |
 * | `date` | `"YYYY-MM-DD"` |
 * | `timestamptz` | RFC 3339 with offset (`2024-05-01T10:00:00.123456+02:00`, `Z` for UTC) |
 * | `timestamp` | RFC 3339 date-time without offset (`2024-05-01T10:00:00`), since the type has none |
 * | arrays of the above | arrays |
 * | anything else (`text`, `uuid`, `time`, `interval`, …) | the text PostgreSQL prints |
 *
 * Values that do not parse as expected (`infinity` dates, BC dates) stay text.
 *
 * @module
 */

const INT_TYPES = new Set([21, 23, 26]);
const FLOAT_TYPES = new Set([700, 701]);
const STRING_NUMBER_TYPES = new Set([20, 1700, 790]);

/** Array type OID → element type OID, for the types converted above. */
const ARRAY_ELEMENTS: Record<number, number> = {
  1005: 21,
  1007: 23,
  1028: 26,
  1016: 20,
  1231: 1700,
  791: 790,
  1021: 700,
  1022: 701,
  1000: 16,
  199: 114,
  3807: 3802,
  1001: 17,
  1182: 1082,
  1115: 1114,
  1185: 1184,
  1009: 25,
  1015: 25,
  1014: 25,
  1002: 25,
  1003: 25,
  2951: 25,
  1183: 25,
  1187: 25,
};

/**
 * Converts one column value given as PostgreSQL text output into its JSON-safe
 * form (see the module table). `null` stays `null`.
 *
 * @example
 * ```ts
 * import { pgTextToJson } from "./pg_types.ts";
 * pgTextToJson(20, "9007199254740993"); // "9007199254740993"
 * pgTextToJson(17, "\\x00ff"); // "AP8="
 * ```
 */
export function pgTextToJson(typeOid: number, text: string | null): unknown {
  if (text === null) return null;
  if (INT_TYPES.has(typeOid)) return Number(text);
  if (FLOAT_TYPES.has(typeOid)) {
    const n = Number(text);
    return Number.isFinite(n) ? n : text;
  }
  if (STRING_NUMBER_TYPES.has(typeOid)) return text;
  switch (typeOid) {
    case 16:
      return text === "t" || text === "true";
    case 114:
    case 3802:
      return JSON.parse(text);
    case 17:
      return byteaToBase64(text);
    case 1082:
      return text;
    case 1114:
      return timestampToRfc3339(text, false);
    case 1184:
      return timestampToRfc3339(text, true);
  }
  const element = ARRAY_ELEMENTS[typeOid];
  if (element !== undefined) {
    return parseArray(text, (item) => pgTextToJson(element, item));
  }
  return text;
}

/** Decodes bytea hex output (`\x…`) to standard padded base64. */
function byteaToBase64(text: string): string {
  if (!text.startsWith("\\x")) {
    // Escape format (bytea_output = escape): decode octal escapes.
    const bytes: number[] = [];
    for (let i = 0; i < text.length; i++) {
      if (text[i] === "\\") {
        if (text[i + 1] === "\\") {
          bytes.push(92);
          i++;
        } else {
          bytes.push(parseInt(text.slice(i + 1, i + 4), 8));
          i += 3;
        }
      } else {
        bytes.push(text.charCodeAt(i));
      }
    }
    return Uint8Array.from(bytes).toBase64();
  }
  const hex = text.slice(2);
  const bytes = new Uint8Array(hex.length / 2);
  for (let i = 0; i < bytes.length; i++) {
    bytes[i] = parseInt(hex.slice(i * 2, i * 2 + 2), 16);
  }
  return bytes.toBase64();
}

/**
 * Standard padded base64 of `bytes` (the built-in
 * `Uint8Array.prototype.toBase64()`; kept as an export of the services).
 *
 * @example
 * ```ts
 * import { bytesToBase64 } from "./pg_types.ts";
 * bytesToBase64(new Uint8Array([0, 255])); // "AP8="
 * ```
 */
export function bytesToBase64(bytes: Uint8Array): string {
  return bytes.toBase64();
}

const TIMESTAMP_REGEXP =
  /^(\d{4,}-\d{2}-\d{2}) (\d{2}:\d{2}:\d{2}(?:\.\d+)?)(?:([+-])(\d{2})(?::?(\d{2}))?(?::?(\d{2}))?)?$/;

/** Rewrites ISO DateStyle output (`2024-05-01 10:00:00+02`) to RFC 3339. */
function timestampToRfc3339(text: string, withZone: boolean): string {
  const m = TIMESTAMP_REGEXP.exec(text);
  if (!m) return text; // infinity, BC dates, other DateStyles
  const [, date, time, sign, hh, mm = "00", ss] = m;
  if (!withZone || sign === undefined) return `${date}T${time}`;
  if (ss !== undefined && ss !== "00") return text; // sub-minute offsets (historic LMT) cannot be written in RFC 3339
  if (hh === "00" && mm === "00") return `${date}T${time}Z`;
  return `${date}T${time}${sign}${hh}:${mm}`;
}

/** Parses a one- or more-dimensional array literal (`{1,2,"a b",NULL}`). */
function parseArray(
  text: string,
  convert: (item: string | null) => unknown,
): unknown {
  let i = 0;
  // Optional dimension decoration: [1:2]={…}
  if (text[0] === "[") {
    const eq = text.indexOf("=");
    if (eq > 0) i = eq + 1;
  }
  function parseLevel(): unknown[] {
    const out: unknown[] = [];
    if (text[i] !== "{") throw new SyntaxError(`Cannot parse array "${text}"`);
    i++;
    if (text[i] === "}") {
      i++;
      return out;
    }
    while (i < text.length) {
      if (text[i] === "{") {
        out.push(parseLevel());
      } else if (text[i] === '"') {
        i++;
        let s = "";
        while (i < text.length && text[i] !== '"') {
          if (text[i] === "\\") i++;
          s += text[i];
          i++;
        }
        i++;
        out.push(convert(s));
      } else {
        let s = "";
        while (i < text.length && text[i] !== "," && text[i] !== "}") {
          s += text[i];
          i++;
        }
        out.push(s === "NULL" ? null : convert(s));
      }
      if (text[i] === ",") {
        i++;
        continue;
      }
      if (text[i] === "}") {
        i++;
        return out;
      }
    }
    throw new SyntaxError(`Cannot parse array "${text}"`);
  }
  try {
    return parseLevel();
  } catch {
    return text;
  }
}
