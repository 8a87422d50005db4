/**
 * IP address parsing and classification for the network guard: which
 * addresses are public, and why the others are not (loopback, private,
 * link-local, metadata, …). IPv4-mapped, IPv4-compatible, NAT64 and 6to4
 * IPv6 forms are judged by the IPv4 address they embed.
 *
 * @module
 */

/** Why an address is not a public unicast address. */
export type AddressClass =
  | "unspecified"
  | "loopback"
  | "private"
  | "link-local"
  | "cgnat"
  | "multicast"
  | "broadcast"
  | "reserved"
  | "documentation"
  | "unique-local"
  | "metadata";

/** A parsed IP address: 4 or 16 bytes. */
export interface IpAddress {
  /** 4 for IPv4, 6 for IPv6. */
  family: 4 | 6;
  /** The address bytes, network order. */
  bytes: Uint8Array;
}

const DECIMAL_OCTET_REGEXP = /^(0|[1-9][0-9]{0,2})$/;

/**
 * Parses a canonical dotted-quad IPv4 address (`127.0.0.1`); returns
 * `undefined` for anything else, including odd spellings (`127.1`,
 * `0x7f.0.0.1`, `2130706433`) — normalise those with
 * {@linkcode canonicalHost} first.
 *
 * @example
 * ```ts
 * import { parseIpv4 } from "./ip.ts";
 * parseIpv4("10.0.0.1")?.bytes; // Uint8Array [10, 0, 0, 1]
 * parseIpv4("127.1"); // undefined
 * ```
 */
export function parseIpv4(text: string): IpAddress | undefined {
  const parts = text.split(".");
  if (parts.length !== 4) return undefined;
  const bytes = new Uint8Array(4);
  for (let i = 0; i < 4; i++) {
    const p = parts[i]!;
    if (!DECIMAL_OCTET_REGEXP.test(p)) return undefined;
    const n = Number(p);
    if (n > 255) return undefined;
    bytes[i] = n;
  }
  return { family: 4, bytes };
}

/**
 * Parses an IPv6 address, with or without brackets, including embedded IPv4
 * (`::ffff:127.0.0.1`); a zone (`%eth0`) is refused. Returns `undefined` when
 * the text is not an IPv6 address.
 *
 * @example
 * ```ts
 * import { parseIpv6 } from "./ip.ts";
 * parseIpv6("[::1]")?.bytes[15]; // 1
 * ```
 */
export function parseIpv6(text: string): IpAddress | undefined {
  let t = text;
  if (t.startsWith("[") && t.endsWith("]")) t = t.slice(1, -1);
  if (t.includes("%") || !t.includes(":")) return undefined;
  const lastColon = t.lastIndexOf(":");
  const last = t.slice(lastColon + 1);
  if (last.includes(".")) {
    const v4 = parseIpv4(last);
    if (!v4) return undefined;
    const hi = ((v4.bytes[0]! << 8) | v4.bytes[1]!).toString(16);
    const lo = ((v4.bytes[2]! << 8) | v4.bytes[3]!).toString(16);
    t = `${t.slice(0, lastColon + 1)}${hi}:${lo}`;
  }
  const halves = t.split("::");
  if (halves.length > 2) return undefined;
  const parseGroups = (s: string): number[] | undefined => {
    if (s === "") return [];
    const out: number[] = [];
    for (const g of s.split(":")) {
      if (!/^[0-9a-fA-F]{1,4}$/.test(g)) return undefined;
      out.push(parseInt(g, 16));
    }
    return out;
  };
  const head = parseGroups(halves[0]!);
  const rest = halves.length === 2 ? parseGroups(halves[1]!) : [];
  if (!head || !rest) return undefined;
  const given = head.length + rest.length;
  let groups: number[];
  if (halves.length === 2) {
    if (given > 7) return undefined;
    groups = [...head, ...new Array(8 - given).fill(0), ...rest];
  } else {
    if (given !== 8) return undefined;
    groups = head;
  }
  const bytes = new Uint8Array(16);
  groups.forEach((g, i) => {
    bytes[2 * i] = g >> 8;
    bytes[2 * i + 1] = g & 0xff;
  });
  return { family: 6, bytes };
}

/**
 * Parses an IPv4 (dotted quad) or IPv6 address.
 *
 * @example
 * ```ts
 * import { parseIp } from "./ip.ts";
 * parseIp("::1")?.family; // 6
 * ```
 */
export function parseIp(text: string): IpAddress | undefined {
  return parseIpv4(text) ?? parseIpv6(text);
}

/**
 * Formats an address canonically: dotted quad, or RFC 5952 IPv6 (lower
 * case, longest zero run compressed).
 *
 * @example
 * ```ts
 * import { formatIp, parseIp } from "./ip.ts";
 * formatIp(parseIp("0:0:0:0:0:0:0:1")!); // "::1"
 * ```
 */
export function formatIp(ip: IpAddress): string {
  if (ip.family === 4) return Array.from(ip.bytes).join(".");
  const groups: number[] = [];
  for (let i = 0; i < 16; i += 2) {
    groups.push((ip.bytes[i]! << 8) | ip.bytes[i + 1]!);
  }
  let bestStart = -1, bestLen = 0;
  for (let i = 0; i < 8;) {
    if (groups[i] !== 0) {
      i++;
      continue;
    }
    let j = i;
    while (j < 8 && groups[j] === 0) j++;
    if (j - i > bestLen && j - i > 1) [bestStart, bestLen] = [i, j - i];
    i = j;
  }
  const hex = groups.map((g) => g.toString(16));
  if (bestStart < 0) return hex.join(":");
  return hex.slice(0, bestStart).join(":") + "::" +
    hex.slice(bestStart + bestLen).join(":");
}

/** Whether two addresses are the same (an IPv4-mapped IPv6 equals its IPv4). */
export function sameIp(a: IpAddress, b: IpAddress): boolean {
  const x = embeddedIpv4(a) ?? a, y = embeddedIpv4(b) ?? b;
  if (x.family !== y.family) return false;
  return x.bytes.every((v, i) => v === y.bytes[i]);
}

function inV4(
  b: Uint8Array,
  net: [number, number, number, number],
  bits: number,
): boolean {
  const addr = ((b[0]! << 24) | (b[1]! << 16) | (b[2]! << 8) | b[3]!) >>> 0;
  const n = ((net[0] << 24) | (net[1] << 16) | (net[2] << 8) | net[3]) >>> 0;
  const mask = bits === 0 ? 0 : (~0 << (32 - bits)) >>> 0;
  return ((addr & mask) >>> 0) === ((n & mask) >>> 0);
}

function inV6(b: Uint8Array, prefix: number[], bits: number): boolean {
  for (let i = 0; i < bits; i++) {
    const byte = i >> 3, bit = 7 - (i & 7);
    const want = ((prefix[byte] ?? 0) >> bit) & 1;
    if (((b[byte]! >> bit) & 1) !== want) return false;
  }
  return true;
}

/**
 * The IPv4 address embedded in an IPv4-mapped (`::ffff:a.b.c.d`),
 * IPv4-compatible (`::a.b.c.d`), NAT64 (`64:ff9b::/96`) or 6to4
 * (`2002::/16`) IPv6 address, if any.
 */
export function embeddedIpv4(ip: IpAddress): IpAddress | undefined {
  if (ip.family === 4) return undefined;
  const b = ip.bytes;
  const zeros = (from: number, to: number) =>
    b.slice(from, to).every((x) => x === 0);
  if (zeros(0, 10) && b[10] === 0xff && b[11] === 0xff) {
    return { family: 4, bytes: b.slice(12, 16) };
  }
  // IPv4-compatible (deprecated), excluding :: and ::1 themselves.
  if (zeros(0, 12) && !(zeros(12, 15) && (b[15] === 0 || b[15] === 1))) {
    return { family: 4, bytes: b.slice(12, 16) };
  }
  if (inV6(b, [0x00, 0x64, 0xff, 0x9b], 96 - 64) && zeros(4, 12)) {
    return { family: 4, bytes: b.slice(12, 16) };
  }
  if (b[0] === 0x20 && b[1] === 0x02) {
    return { family: 4, bytes: b.slice(2, 6) };
  }
  return undefined;
}

/**
 * Classifies an address: `undefined` when it is a public unicast address,
 * otherwise why it is not. Cloud metadata addresses (`169.254.169.254`,
 * `fd00:ec2::254`) report `"metadata"`.
 *
 * @example
 * ```ts
 * import { classifyIp, parseIp } from "./ip.ts";
 * classifyIp(parseIp("169.254.169.254")!); // "metadata"
 * classifyIp(parseIp("::ffff:10.0.0.1")!); // "private"
 * classifyIp(parseIp("93.184.216.34")!); // undefined
 * ```
 */
export function classifyIp(ip: IpAddress): AddressClass | undefined {
  if (ip.family === 6) {
    const b = ip.bytes;
    if (b.every((x) => x === 0)) return "unspecified";
    if (b.slice(0, 15).every((x) => x === 0) && b[15] === 1) return "loopback";
    const v4 = embeddedIpv4(ip);
    if (v4) return classifyIp(v4);
    if (formatIp(ip) === "fd00:ec2::254") return "metadata";
    if (inV6(b, [0xfc], 7)) return "unique-local";
    if (inV6(b, [0xfe, 0x80], 10)) return "link-local";
    if (inV6(b, [0xfe, 0xc0], 10)) return "private"; // deprecated site-local
    if (b[0] === 0xff) return "multicast";
    if (inV6(b, [0x20, 0x01, 0x0d, 0xb8], 32)) return "documentation";
    if (inV6(b, [0x3f, 0xff], 20)) return "documentation";
    if (inV6(b, [0x00, 0x64, 0xff, 0x9b, 0x00, 0x01], 48)) return "reserved";
    if (inV6(b, [0x01, 0x00], 64)) return "reserved"; // discard-only
    if (inV6(b, [0x20, 0x01, 0x00, 0x00], 32)) return "reserved"; // Teredo
    if (inV6(b, [0x20, 0x01, 0x00], 23)) return "reserved"; // IETF protocol assignments
    if (!inV6(b, [0x20], 3)) return "reserved"; // outside global unicast 2000::/3
    return undefined;
  }
  const b = ip.bytes;
  if (inV4(b, [169, 254, 169, 254], 32)) return "metadata";
  if (inV4(b, [255, 255, 255, 255], 32)) return "broadcast";
  if (inV4(b, [0, 0, 0, 0], 8)) return "unspecified";
  if (inV4(b, [127, 0, 0, 0], 8)) return "loopback";
  if (inV4(b, [10, 0, 0, 0], 8)) return "private";
  if (inV4(b, [172, 16, 0, 0], 12)) return "private";
  if (inV4(b, [192, 168, 0, 0], 16)) return "private";
  if (inV4(b, [169, 254, 0, 0], 16)) return "link-local";
  if (inV4(b, [100, 64, 0, 0], 10)) return "cgnat";
  if (inV4(b, [224, 0, 0, 0], 4)) return "multicast";
  if (inV4(b, [240, 0, 0, 0], 4)) return "reserved";
  if (inV4(b, [192, 0, 0, 0], 24)) return "reserved";
  if (inV4(b, [198, 18, 0, 0], 15)) return "reserved";
  if (inV4(b, [192, 0, 2, 0], 24)) return "documentation";
  if (inV4(b, [198, 51, 100, 0], 24)) return "documentation";
  if (inV4(b, [203, 0, 113, 0], 24)) return "documentation";
  return undefined;
}
