/**
 * Protobuf encoding of the messages the plugin-side SDK (`sdk.ts`) sends and
 * receives, written by hand from `plugin.proto`, `health.proto` and
 * `go_plugin.proto` so a TypeScript plugin starts without grpc-js,
 * proto-loader or protobufjs (their import and the `.proto` parsing cost
 * most of a plugin's cold start).
 *
 * Messages are described by small schemas ({@linkcode MessageSchema}) and
 * decoded into the shape `@grpc/proto-loader` gives with the options of
 * `proto.ts` (snake_case keys, defaults filled in, `bytes` as `Uint8Array`,
 * `int64` as `number`, enums as their names, proto3 `optional` fields only
 * when present), so code written against those shapes keeps working.
 * `tests/grpc_sdk_codec_test.ts` checks every schema against protobufjs.
 *
 * @module
 */

import { ProtobufDecodeError } from "./call_codec.ts";

export { ProtobufDecodeError };

/** A field's scalar type, a map (`map<string, string>`), or a message schema. */
export type FieldType =
  | "string"
  | "bytes"
  | "int32"
  | "int64"
  | "bool"
  | "enum"
  | "map"
  | MessageSchema;

/** One field: its number, its type, and whether it repeats or is proto3 `optional`. */
export interface FieldSpec {
  /** The field number. */
  no: number;
  /** Its type. */
  type: FieldType | (() => MessageSchema);
  /** `repeated`. */
  repeated?: boolean;
  /** proto3 `optional` (written and decoded only when present). */
  optional?: boolean;
  /** Enum value names by number (type `enum`). */
  values?: readonly string[];
  /** For `map` fields whose values are messages. */
  mapValue?: MessageSchema;
}

/** A message: its name (for errors) and fields by their proto name. */
export interface MessageSchema {
  /** The message name. */
  name: string;
  /** Fields by proto name. */
  fields: Record<string, FieldSpec>;
}

const encoder = new TextEncoder();
const decoder = new TextDecoder();

/** Grows as bytes are written. */
class Out {
  buf = new Uint8Array(256);
  len = 0;
  #room(n: number): void {
    if (this.len + n <= this.buf.length) return;
    let size = this.buf.length * 2;
    while (size < this.len + n) size *= 2;
    const bigger = new Uint8Array(size);
    bigger.set(this.buf.subarray(0, this.len));
    this.buf = bigger;
  }
  varint(v: number): void {
    this.#room(10);
    if (v < 0) {
      // Negative int32/int64: 64-bit two's complement, ten bytes.
      let big = BigInt.asUintN(64, BigInt(Math.trunc(v)));
      for (let i = 0; i < 9; i++) {
        this.buf[this.len++] = Number(big & 0x7fn) | 0x80;
        big >>= 7n;
      }
      this.buf[this.len++] = Number(big);
      return;
    }
    while (v >= 128) {
      this.buf[this.len++] = (v & 0x7f) | 0x80;
      v = Math.floor(v / 128);
    }
    this.buf[this.len++] = v;
  }
  bytes(b: Uint8Array): void {
    this.varint(b.length);
    this.#room(b.length);
    this.buf.set(b, this.len);
    this.len += b.length;
  }
}

function schemaOf(spec: FieldSpec): FieldType {
  return typeof spec.type === "function" ? spec.type() : spec.type;
}

function toBytes(v: unknown): Uint8Array {
  if (v instanceof Uint8Array) return v;
  if (typeof v === "string") return encoder.encode(v);
  return new Uint8Array();
}

function writeValue(out: Out, no: number, type: FieldType, v: unknown): void {
  switch (type) {
    case "string":
      out.varint(no * 8 + 2);
      out.bytes(encoder.encode(String(v)));
      return;
    case "bytes":
      out.varint(no * 8 + 2);
      out.bytes(toBytes(v));
      return;
    case "int32":
      out.varint(no * 8);
      out.varint(Number(v) | 0);
      return;
    case "int64":
    case "enum":
      out.varint(no * 8);
      out.varint(Math.trunc(Number(v)) || 0);
      return;
    case "bool":
      out.varint(no * 8);
      out.varint(v ? 1 : 0);
      return;
    case "map":
      throw new TypeError("map fields are written by writeMessage");
    default:
      out.varint(no * 8 + 2);
      out.bytes(encodeMessage(type, v as Record<string, unknown>));
  }
}

/** Whether a non-optional scalar holds its default (and is not written). */
function isDefault(type: FieldType, v: unknown): boolean {
  if (v === undefined || v === null) return true;
  if (type === "string") return v === "";
  if (type === "bytes") return toBytes(v).length === 0;
  if (type === "bool") return !v;
  if (type === "int32" || type === "int64" || type === "enum") {
    return !Number(v);
  }
  return false;
}

/**
 * Encodes `message` (keys as in the `.proto`, proto-loader style) with
 * `schema`. Unknown keys are ignored; `undefined`/`null` fields are not
 * written.
 *
 * @example
 * ```ts
 * import { decodeMessage, encodeMessage, LOG_REQUEST } from "./sdk_codec.ts";
 * const bytes = encodeMessage(LOG_REQUEST, { level: "info", message: "hi" });
 * decodeMessage(LOG_REQUEST, bytes).message; // "hi"
 * ```
 */
export function encodeMessage(
  schema: MessageSchema,
  message: Record<string, unknown> | null | undefined,
): Uint8Array {
  const out = new Out();
  if (message) writeMessage(out, schema, message);
  return out.buf.subarray(0, out.len);
}

function writeMessage(
  out: Out,
  schema: MessageSchema,
  message: Record<string, unknown>,
): void {
  for (const [name, spec] of Object.entries(schema.fields)) {
    const v = message[name];
    if (v === undefined || v === null) continue;
    const type = schemaOf(spec);
    if (type === "map") {
      for (const [key, value] of Object.entries(v as Record<string, unknown>)) {
        const entry = new Out();
        entry.varint(0x0a);
        entry.bytes(encoder.encode(key));
        if (spec.mapValue) {
          writeValue(entry, 2, spec.mapValue, value ?? {});
        } else {
          entry.varint(0x12);
          entry.bytes(encoder.encode(String(value ?? "")));
        }
        out.varint(spec.no * 8 + 2);
        out.bytes(entry.buf.subarray(0, entry.len));
      }
    } else if (spec.repeated) {
      for (const item of v as unknown[]) {
        writeValue(out, spec.no, type, item ?? defaultOf(type));
      }
    } else if (spec.optional || !isDefault(type, v)) {
      writeValue(out, spec.no, type, v);
    }
  }
}

function defaultOf(type: FieldType): unknown {
  switch (type) {
    case "string":
      return "";
    case "bytes":
      return new Uint8Array();
    case "bool":
      return false;
    case "int32":
    case "int64":
    case "enum":
      return 0;
    default:
      return {};
  }
}

/** A cursor over one message's bytes. */
class In {
  p: number;
  constructor(readonly buf: Uint8Array, readonly name: string, start = 0) {
    this.p = start;
  }
  varint(): number {
    let v = 0;
    let mul = 1;
    for (let i = 0;; i++) {
      if (this.p >= this.buf.length) this.#fail("truncated");
      const b = this.buf[this.p++]!;
      v += (b & 0x7f) * mul;
      if ((b & 0x80) === 0) return v;
      mul *= 128;
      if (i >= 9) this.#fail("varint too long");
    }
  }
  /** A varint as a signed 64-bit value (int32 and int64 fields). */
  signedVarint(): number {
    const start = this.p;
    const v = this.varint();
    if (this.p - start < 8) return v;
    // Beyond 2^49: redo exactly, as two's complement.
    let big = 0n;
    for (let i = this.p - 1; i >= start; i--) {
      big = (big << 7n) | BigInt(this.buf[i]! & 0x7f);
    }
    return Number(BigInt.asIntN(64, big));
  }
  /** Steps over an unknown field's value of wire type `wire` (protobuf). */
  skipUnknownField(wire: number): void {
    if (wire === 0) this.varint();
    else if (wire === 1) this.p += 8;
    else if (wire === 5) this.p += 4;
    else if (wire === 2) this.p += this.varint();
    else this.#fail(`wire type ${wire}`);
    if (this.p > this.buf.length) this.#fail("truncated field");
  }
  chunk(): Uint8Array {
    const len = this.varint();
    if (this.p + len > this.buf.length) this.#fail("truncated field");
    const b = this.buf.subarray(this.p, this.p + len);
    this.p += len;
    return b;
  }
  #fail(why: string): never {
    throw new ProtobufDecodeError(this.name, why);
  }
}

function readScalar(
  input: In,
  wire: number,
  type: FieldType,
  spec: FieldSpec,
): unknown {
  const want = type === "string" || type === "bytes" || typeof type === "object"
    ? 2
    : 0;
  if (wire !== want) {
    throw new ProtobufDecodeError(
      input.name,
      `wire type ${wire} for a ${typeof type === "object" ? type.name : type}`,
    );
  }
  switch (type) {
    case "string":
      return decoder.decode(input.chunk());
    case "bytes":
      return input.chunk().slice();
    case "int32":
      return input.signedVarint() | 0;
    case "int64":
      return input.signedVarint();
    case "bool":
      return input.varint() !== 0;
    case "enum": {
      const n = input.varint();
      return spec.values?.[n] ?? n;
    }
    default:
      return decodeMessage(type as MessageSchema, input.chunk());
  }
}

/**
 * Decodes a message with `schema`, filling in defaults as proto-loader does
 * (`defaults: true`); unknown fields are skipped. Throws
 * {@linkcode ProtobufDecodeError} on malformed bytes.
 */
export function decodeMessage(
  schema: MessageSchema,
  buf: Uint8Array,
): Record<string, unknown> {
  const out: Record<string, unknown> = {};
  const byNo = new Map<number, [string, FieldSpec]>();
  for (const [name, spec] of Object.entries(schema.fields)) {
    byNo.set(spec.no, [name, spec]);
    if (spec.optional) continue;
    const type = schemaOf(spec);
    out[name] = type === "map"
      ? {}
      : spec.repeated
      ? []
      : typeof type === "object"
      ? null
      : type === "enum"
      ? spec.values?.[0] ?? 0
      : defaultOf(type);
  }
  const input = new In(buf, schema.name);
  while (input.p < buf.length) {
    const key = input.varint();
    const no = Math.floor(key / 8);
    const wire = key & 7;
    const known = byNo.get(no);
    if (!known) {
      input.skipUnknownField(wire);
      continue;
    }
    const [name, spec] = known;
    const type = schemaOf(spec);
    if (type === "map") {
      if (wire !== 2) {
        throw new ProtobufDecodeError(
          schema.name,
          `wire type ${wire} for a map`,
        );
      }
      const entry = new In(input.chunk(), schema.name);
      let k = "";
      let v: unknown = spec.mapValue
        ? decodeMessage(spec.mapValue, new Uint8Array())
        : "";
      while (entry.p < entry.buf.length) {
        const ek = entry.varint();
        if (ek === 0x0a) k = decoder.decode(entry.chunk());
        else if (ek === 0x12) {
          const b = entry.chunk();
          v = spec.mapValue
            ? decodeMessage(spec.mapValue, b)
            : decoder.decode(b);
        } else entry.skipUnknownField(ek & 7);
      }
      (out[name] as Record<string, unknown>)[k] = v;
    } else if (spec.repeated) {
      (out[name] as unknown[]).push(readScalar(input, wire, type, spec));
    } else {
      out[name] = readScalar(input, wire, type, spec);
    }
  }
  return out;
}

// ---------------------------------------------------------------------------
// The schemas (plugin.proto, health.proto, go_plugin.proto)

const S = "string", B = "bytes";

/** `Empty` (both packages). */
export const EMPTY: MessageSchema = { name: "Empty", fields: {} };

/** `RouteSpec`. */
export const ROUTE_SPEC: MessageSchema = {
  name: "RouteSpec",
  fields: {
    method: { no: 1, type: S },
    path: { no: 2, type: S },
    handler: { no: 3, type: S },
    middleware: { no: 4, type: S, repeated: true },
    description: { no: 5, type: S },
  },
};

/** `MenuItemSpec` (recursive: `children`). */
export const MENU_ITEM_SPEC: MessageSchema = {
  name: "MenuItemSpec",
  fields: {
    id: { no: 1, type: S },
    label: { no: 2, type: S },
    icon: { no: 3, type: S },
    path: { no: 4, type: S },
    location: { no: 5, type: S },
    parent: { no: 6, type: S },
    order: { no: 7, type: "int32", optional: true },
    children: { no: 8, type: () => MENU_ITEM_SPEC, repeated: true },
  },
};

/** `WidgetSpec`. */
export const WIDGET_SPEC: MessageSchema = {
  name: "WidgetSpec",
  fields: {
    id: { no: 1, type: S },
    title: { no: 2, type: S },
    description: { no: 3, type: S },
    handler: { no: 4, type: S },
    location: { no: 5, type: S },
    size: { no: 6, type: S },
    order: { no: 7, type: "int32", optional: true },
    refreshable: { no: 8, type: "bool", optional: true },
    refresh_sec: { no: 9, type: "int32", optional: true },
  },
};

/** `JobSpec`. */
export const JOB_SPEC: MessageSchema = {
  name: "JobSpec",
  fields: {
    id: { no: 1, type: S },
    handler: { no: 2, type: S },
    schedule: { no: 3, type: S },
    description: { no: 4, type: S },
    enabled: { no: 5, type: "bool", optional: true },
    timeout: { no: 6, type: S },
  },
};

/** `TemplateSpec`. */
export const TEMPLATE_SPEC: MessageSchema = {
  name: "TemplateSpec",
  fields: {
    name: { no: 1, type: S },
    path: { no: 2, type: S },
    override: { no: 3, type: "bool", optional: true },
  },
};

/** `Translations`. */
export const TRANSLATIONS: MessageSchema = {
  name: "Translations",
  fields: { entries: { no: 1, type: "map" } },
};

/** `I18nSpec`. */
export const I18N_SPEC: MessageSchema = {
  name: "I18nSpec",
  fields: {
    namespace: { no: 1, type: S },
    languages: { no: 2, type: S, repeated: true },
    translations: { no: 3, type: "map", mapValue: TRANSLATIONS },
  },
};

/** `ErrorCodeSpec`. */
export const ERROR_CODE_SPEC: MessageSchema = {
  name: "ErrorCodeSpec",
  fields: {
    code: { no: 1, type: S },
    message: { no: 2, type: S },
    http_status: { no: 3, type: "int32" },
  },
};

/** `GKRegistration`. */
export const GK_REGISTRATION: MessageSchema = {
  name: "GKRegistration",
  fields: {
    name: { no: 1, type: S },
    version: { no: 2, type: S },
    description: { no: 3, type: S },
    author: { no: 4, type: S },
    license: { no: 5, type: S },
    homepage: { no: 6, type: S },
    routes: { no: 10, type: ROUTE_SPEC, repeated: true },
    menu_items: { no: 11, type: MENU_ITEM_SPEC, repeated: true },
    widgets: { no: 12, type: WIDGET_SPEC, repeated: true },
    jobs: { no: 13, type: JOB_SPEC, repeated: true },
    templates: { no: 14, type: TEMPLATE_SPEC, repeated: true },
    min_host_version: { no: 20, type: S },
    permissions: { no: 21, type: S, repeated: true },
    i18n: { no: 22, type: I18N_SPEC },
    error_codes: { no: 23, type: ERROR_CODE_SPEC, repeated: true },
    manifest_json: { no: 30, type: B },
  },
};

/** `InitRequest`. */
export const INIT_REQUEST: MessageSchema = {
  name: "InitRequest",
  fields: { config: { no: 1, type: "map" } },
};

/** `CallRequest` (the SDK's own decoder is `call_codec.ts`). */
export const CALL_REQUEST: MessageSchema = {
  name: "CallRequest",
  fields: {
    function: { no: 1, type: S },
    args_json: { no: 2, type: B },
    call_id: { no: 10, type: S },
    caller: { no: 11, type: S },
    language: { no: 12, type: S },
    deadline_unix_ms: { no: 13, type: "int64" },
    chain: { no: 14, type: S, repeated: true },
  },
};

/** `CallResponse`. */
export const CALL_RESPONSE: MessageSchema = {
  name: "CallResponse",
  fields: { result_json: { no: 1, type: B }, error: { no: 2, type: S } },
};

/** `grpc.health.v1.HealthCheckRequest`. */
export const HEALTH_CHECK_REQUEST: MessageSchema = {
  name: "HealthCheckRequest",
  fields: { service: { no: 1, type: S } },
};

/** `grpc.health.v1.HealthCheckResponse`. */
export const HEALTH_CHECK_RESPONSE: MessageSchema = {
  name: "HealthCheckResponse",
  fields: {
    status: {
      no: 1,
      type: "enum",
      values: ["UNKNOWN", "SERVING", "NOT_SERVING", "SERVICE_UNKNOWN"],
    },
  },
};

/** `DBQueryRequest` (also `DBExecRequest`, same fields). */
export const DB_QUERY_REQUEST: MessageSchema = {
  name: "DBQueryRequest",
  fields: {
    query: { no: 1, type: S },
    args: { no: 2, type: B, repeated: true },
  },
};

/** `DBQueryResponse`. */
export const DB_QUERY_RESPONSE: MessageSchema = {
  name: "DBQueryResponse",
  fields: {
    rows_json: { no: 1, type: B, repeated: true },
    error: { no: 2, type: S },
  },
};

/** `DBExecResponse`. */
export const DB_EXEC_RESPONSE: MessageSchema = {
  name: "DBExecResponse",
  fields: {
    affected_rows: { no: 1, type: "int64" },
    error: { no: 2, type: S },
  },
};

/** `CacheGetRequest` (also `CacheDeleteRequest`, `ConfigGetRequest`). */
export const KEY_REQUEST: MessageSchema = {
  name: "CacheGetRequest",
  fields: { key: { no: 1, type: S } },
};

/** `CacheGetResponse`. */
export const CACHE_GET_RESPONSE: MessageSchema = {
  name: "CacheGetResponse",
  fields: {
    value: { no: 1, type: B },
    found: { no: 2, type: "bool" },
    error: { no: 3, type: S },
  },
};

/** `CacheSetRequest`. */
export const CACHE_SET_REQUEST: MessageSchema = {
  name: "CacheSetRequest",
  fields: {
    key: { no: 1, type: S },
    value: { no: 2, type: B },
    ttl_seconds: { no: 3, type: "int32" },
  },
};

/** `HTTPRequestMsg`. */
export const HTTP_REQUEST_MSG: MessageSchema = {
  name: "HTTPRequestMsg",
  fields: {
    method: { no: 1, type: S },
    url: { no: 2, type: S },
    headers: { no: 3, type: "map" },
    body: { no: 4, type: B },
  },
};

/** `HTTPResponseMsg`. */
export const HTTP_RESPONSE_MSG: MessageSchema = {
  name: "HTTPResponseMsg",
  fields: {
    status_code: { no: 1, type: "int32" },
    body: { no: 2, type: B },
    error: { no: 3, type: S },
    headers: { no: 10, type: "map" },
  },
};

/** `SendEmailRequest`. */
export const SEND_EMAIL_REQUEST: MessageSchema = {
  name: "SendEmailRequest",
  fields: {
    to: { no: 1, type: S },
    subject: { no: 2, type: S },
    body: { no: 3, type: S },
    html: { no: 4, type: "bool" },
  },
};

/** `LogRequest`. */
export const LOG_REQUEST: MessageSchema = {
  name: "LogRequest",
  fields: {
    level: { no: 1, type: S },
    message: { no: 2, type: S },
    fields: { no: 3, type: "map" },
    fields_json: { no: 10, type: B },
  },
};

/** `ConfigGetResponse`. */
export const CONFIG_GET_RESPONSE: MessageSchema = {
  name: "ConfigGetResponse",
  fields: { value: { no: 1, type: S }, error: { no: 2, type: S } },
};

/** `TranslateRequest`. */
export const TRANSLATE_REQUEST: MessageSchema = {
  name: "TranslateRequest",
  fields: {
    key: { no: 1, type: S },
    args: { no: 2, type: S, repeated: true },
  },
};

/** `TranslateResponse`. */
export const TRANSLATE_RESPONSE: MessageSchema = {
  name: "TranslateResponse",
  fields: { text: { no: 1, type: S }, error: { no: 10, type: S } },
};

/** `CallPluginRequest`. */
export const CALL_PLUGIN_REQUEST: MessageSchema = {
  name: "CallPluginRequest",
  fields: {
    plugin: { no: 1, type: S },
    function: { no: 2, type: S },
    args_json: { no: 3, type: B },
  },
};

/** `CallPluginResponse`. */
export const CALL_PLUGIN_RESPONSE: MessageSchema = {
  name: "CallPluginResponse",
  fields: { result_json: { no: 1, type: B }, error: { no: 2, type: S } },
};

/** The GKHost methods: request and response schemas. */
export const GK_HOST_METHODS: Readonly<
  Record<string, readonly [request: MessageSchema, response: MessageSchema]>
> = {
  DBQuery: [DB_QUERY_REQUEST, DB_QUERY_RESPONSE],
  DBExec: [DB_QUERY_REQUEST, DB_EXEC_RESPONSE],
  CacheGet: [KEY_REQUEST, CACHE_GET_RESPONSE],
  CacheSet: [CACHE_SET_REQUEST, EMPTY],
  CacheDelete: [KEY_REQUEST, EMPTY],
  HTTPRequest: [HTTP_REQUEST_MSG, HTTP_RESPONSE_MSG],
  SendEmail: [SEND_EMAIL_REQUEST, EMPTY],
  Log: [LOG_REQUEST, EMPTY],
  ConfigGet: [KEY_REQUEST, CONFIG_GET_RESPONSE],
  Translate: [TRANSLATE_REQUEST, TRANSLATE_RESPONSE],
  CallPlugin: [CALL_PLUGIN_REQUEST, CALL_PLUGIN_RESPONSE],
};
