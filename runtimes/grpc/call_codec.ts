/**
 * Protobuf wire encoding of the hot messages, by hand: `CallRequest` and
 * `CallResponse` of `plugin.proto` (package `goatkit.plugin.v1`). The host's
 * call path (`plugin.ts` over `h2_client.ts`) uses them instead of
 * protobufjs, in one pass and one allocation per message.
 *
 * @module
 */

/** The fields of a `CallRequest`. */
export interface CallRequestFields {
  /** Field 1. */
  function: string;
  /** Field 2 (JSON bytes). */
  args: Uint8Array | null;
  /** Field 10. */
  callId: string;
  /** Field 11. */
  caller: string;
  /** Field 12. */
  language: string;
  /** Field 13 (epoch ms). */
  deadline: number;
  /** Field 14. */
  chain: readonly string[];
}

/** A `CallResponse`: `result_json` (field 1) and `error` (field 2). */
export interface CallResponseFields {
  /** The result bytes (a view into the received message). */
  result: Uint8Array;
  /** The plugin's error text; empty when none. */
  error: string;
}

/** A message could not be decoded. */
export class ProtobufDecodeError extends Error {
  /** Creates the error; `why` says what was wrong. */
  constructor(message: string, why: string) {
    super(`Cannot decode ${message}: ${why}`);
    this.name = "ProtobufDecodeError";
  }
}

const encoder = new TextEncoder();
const decoder = new TextDecoder();

function varintSize(v: number): number {
  let n = 1;
  while (v >= 128) {
    v = Math.floor(v / 128);
    n++;
  }
  return n;
}

function writeVarint(buf: Uint8Array, p: number, v: number): number {
  while (v >= 128) {
    buf[p++] = (v & 0x7f) | 0x80;
    v = Math.floor(v / 128);
  }
  buf[p++] = v;
  return p;
}

/** Bytes of a string field, or `undefined` when it is empty (not sent). */
function utf8(s: string): Uint8Array | undefined {
  return s ? encoder.encode(s) : undefined;
}

/**
 * Encodes a `CallRequest` behind `prefix` free bytes (the caller's framing,
 * such as gRPC's 5-byte message header), returning the whole buffer.
 *
 * @example
 * ```ts
 * import { decodeCallRequest, encodeCallRequest } from "./call_codec.ts";
 * const bytes = encodeCallRequest({
 *   function: "echo", args: null, callId: "c1", caller: "", language: "",
 *   deadline: 0, chain: ["p"],
 * });
 * decodeCallRequest(bytes).callId; // "c1"
 * ```
 */
export function encodeCallRequest(
  r: CallRequestFields,
  prefix = 0,
): Uint8Array {
  const fn = utf8(r.function);
  const callId = utf8(r.callId);
  const caller = utf8(r.caller);
  const language = utf8(r.language);
  const chain = r.chain.map((c) => encoder.encode(c));
  const args = r.args?.length ? r.args : undefined;
  const deadline = r.deadline > 0 ? Math.floor(r.deadline) : 0;
  let size = 0;
  const field = (b: Uint8Array | undefined, tagSize: number) =>
    b ? tagSize + varintSize(b.length) + b.length : 0;
  size += field(fn, 1) + field(args, 1) + field(callId, 1) +
    field(caller, 1) + field(language, 1);
  if (deadline) size += 1 + varintSize(deadline);
  for (const c of chain) size += 1 + varintSize(c.length) + c.length;
  const buf = new Uint8Array(prefix + size);
  let p = prefix;
  const put = (tag: number, b: Uint8Array | undefined) => {
    if (!b) return;
    buf[p++] = tag;
    p = writeVarint(buf, p, b.length);
    buf.set(b, p);
    p += b.length;
  };
  put(0x0a, fn);
  put(0x12, args);
  put(0x52, callId);
  put(0x5a, caller);
  put(0x62, language);
  if (deadline) {
    buf[p++] = 0x68;
    p = writeVarint(buf, p, deadline);
  }
  for (const c of chain) {
    buf[p++] = 0x72;
    p = writeVarint(buf, p, c.length);
    buf.set(c, p);
    p += c.length;
  }
  return buf;
}

/** Reads protobuf fields, calling `onField` for each length-delimited or varint one. */
function readFields(
  name: string,
  buf: Uint8Array,
  onBytes: (field: number, start: number, end: number) => void,
  onVarint: (field: number, value: number) => void = () => {},
): void {
  let p = 0;
  const varint = (): number => {
    let v = 0;
    let mul = 1;
    for (;;) {
      if (p >= buf.length) throw new ProtobufDecodeError(name, "truncated");
      const b = buf[p++]!;
      v += (b & 0x7f) * mul;
      if ((b & 0x80) === 0) return v;
      mul *= 128;
      if (mul > 2 ** 63) throw new ProtobufDecodeError(name, "varint too long");
    }
  };
  while (p < buf.length) {
    const key = varint();
    const field = Math.floor(key / 8);
    switch (key & 7) {
      case 0:
        onVarint(field, varint());
        break;
      case 1:
        p += 8;
        break;
      case 2: {
        const len = varint();
        if (p + len > buf.length) {
          throw new ProtobufDecodeError(name, "truncated field");
        }
        onBytes(field, p, p + len);
        p += len;
        break;
      }
      case 5:
        p += 4;
        break;
      default:
        throw new ProtobufDecodeError(name, `wire type ${key & 7}`);
    }
  }
  if (p !== buf.length) throw new ProtobufDecodeError(name, "truncated");
}

/** Decodes a `CallRequest` (tests and the SDK's fast path use it). */
export function decodeCallRequest(buf: Uint8Array): CallRequestFields {
  const r: CallRequestFields & { chain: string[] } = {
    function: "",
    args: null,
    callId: "",
    caller: "",
    language: "",
    deadline: 0,
    chain: [],
  };
  readFields("CallRequest", buf, (f, s, e) => {
    const text = () => decoder.decode(buf.subarray(s, e));
    if (f === 1) r.function = text();
    else if (f === 2) r.args = buf.subarray(s, e);
    else if (f === 10) r.callId = text();
    else if (f === 11) r.caller = text();
    else if (f === 12) r.language = text();
    else if (f === 14) r.chain.push(text());
  }, (f, v) => {
    if (f === 13) r.deadline = v;
  });
  return r;
}

/**
 * Decodes a `CallResponse`; `result` is a view into `buf`.
 *
 * @example
 * ```ts
 * import { decodeCallResponse } from "./call_codec.ts";
 * decodeCallResponse(new Uint8Array([0x0a, 1, 0x31])).result; // Uint8Array [ 49 ]
 * ```
 */
export function decodeCallResponse(buf: Uint8Array): CallResponseFields {
  let result: Uint8Array | undefined;
  let error = "";
  readFields("CallResponse", buf, (f, s, e) => {
    if (f === 1) result = buf.subarray(s, e);
    else if (f === 2) error = decoder.decode(buf.subarray(s, e));
  });
  return { result: result ?? new Uint8Array(), error };
}
