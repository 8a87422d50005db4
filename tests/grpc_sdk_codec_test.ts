// The SDK's hand-written protobuf codec (runtimes/grpc/sdk_codec.ts) against
// protobufjs, as @grpc/proto-loader loads plugin.proto, health.proto and
// go_plugin.proto with the runtime's options: every message the SDK encodes
// is decoded by protobufjs, every message it decodes was encoded by
// protobufjs, and both must give the same object.

import assert from "node:assert/strict";
import type * as grpc from "@grpc/grpc-js";
import { Buffer } from "node:buffer";
import { loadProto } from "../runtimes/grpc/proto.ts";
import { registrationToPb } from "../runtimes/grpc/registration.ts";
import {
  CALL_REQUEST,
  CALL_RESPONSE,
  decodeMessage,
  encodeMessage,
  GK_HOST_METHODS,
  GK_REGISTRATION,
  HEALTH_CHECK_REQUEST,
  HEALTH_CHECK_RESPONSE,
  INIT_REQUEST,
  type MessageSchema,
  ProtobufDecodeError,
} from "../runtimes/grpc/sdk_codec.ts";

const proto = loadProto();

type Def = grpc.MethodDefinition<unknown, unknown>;
function method(service: grpc.ServiceClientConstructor, name: string): Def {
  return (service.service as unknown as Record<string, Def>)[name]!;
}

/** Buffers (protobufjs) and Uint8Arrays (ours) compare as plain bytes. */
function plain(v: unknown): unknown {
  if (v instanceof Uint8Array) return [...v];
  if (Array.isArray(v)) return v.map(plain);
  if (v && typeof v === "object") {
    return Object.fromEntries(
      Object.entries(v).map(([k, x]) => [k, plain(x)]),
    );
  }
  return v;
}

/** Ours encodes → protobufjs decodes, and protobufjs encodes → ours decodes. */
function roundTrips(
  schema: MessageSchema,
  def: Def,
  side: "request" | "response",
  value: Record<string, unknown>,
): void {
  const serialize = side === "request"
    ? def.requestSerialize
    : def.responseSerialize;
  const deserialize = side === "request"
    ? def.requestDeserialize
    : def.responseDeserialize;
  const theirs = plain(deserialize(Buffer.from(serialize(value))));
  const ours = encodeMessage(schema, value);
  assert.deepStrictEqual(
    plain(deserialize(Buffer.from(ours))),
    theirs,
    `${schema.name}: protobufjs reads ours`,
  );
  assert.deepStrictEqual(
    plain(decodeMessage(schema, new Uint8Array(serialize(value)))),
    theirs,
    `${schema.name}: ours reads protobufjs's`,
  );
  assert.deepStrictEqual(
    plain(decodeMessage(schema, ours)),
    theirs,
    `${schema.name}: ours reads ours`,
  );
}

const bytes = (s: string) => new TextEncoder().encode(s);

Deno.test("GKRegistration: a full manifest (menus nested, i18n, optional zeros) matches protobufjs both ways", () => {
  const full = registrationToPb({
    name: "full",
    version: "2.1.0",
    description: "every field — ünïcødé ✓",
    author: "A",
    license: "MIT",
    homepage: "https://example.com",
    routes: [{
      method: "GET",
      path: "/api/x",
      handler: "h",
      middleware: ["auth", "admin"],
      description: "d",
    }],
    menu_items: [{
      id: "m",
      label: "M",
      icon: "i",
      path: "/m",
      location: "sidebar",
      order: 0,
      children: [{ id: "c", label: "C", path: "/c", order: -3 }],
    }],
    widgets: [{
      id: "w",
      title: "W",
      handler: "render",
      location: "dashboard",
      size: "small",
      order: 2,
      refreshable: false,
      refresh_sec: 30,
    }],
    jobs: [{ id: "j", handler: "run", schedule: "* * * * *", enabled: true }],
    templates: [{ name: "t", path: "t.html", override: false }],
    min_host_version: "0.1.0",
    permissions: ["db:read", "http:api.example.com"],
    i18n: {
      namespace: "full",
      languages: ["en", "de"],
      translations: { en: { hi: "Hello" }, de: { hi: "Hallo", bye: "" } },
    },
    error_codes: [{ code: "E1", message: "bad", http_status: 400 }],
  } as never) as Record<string, unknown>;
  const def = method(proto.GKPlugin, "GKRegister");
  roundTrips(GK_REGISTRATION, def, "response", full);
  roundTrips(GK_REGISTRATION, def, "response", { name: "min" });
  roundTrips(GK_REGISTRATION, def, "response", {});
});

Deno.test("InitRequest, CallRequest, CallResponse, Empty and the health check match protobufjs both ways", () => {
  roundTrips(INIT_REQUEST, method(proto.GKPlugin, "Init"), "request", {
    config: {
      host_socket: "/run/h.sock",
      call_id: "c-1",
      deadline_unix_ms: "1767225600000",
      empty: "",
      "ключ": "значение",
    },
  });
  roundTrips(INIT_REQUEST, method(proto.GKPlugin, "Init"), "request", {});
  const call = method(proto.GKPlugin, "Call");
  roundTrips(CALL_REQUEST, call, "request", {
    function: "echo",
    args_json: bytes('{"a":1}'),
    call_id: "c-2",
    caller: "other",
    language: "de",
    deadline_unix_ms: 1767225600123,
    chain: ["a", "b"],
  });
  roundTrips(CALL_RESPONSE, call, "response", {
    result_json: bytes("[1,2]"),
    error: "",
  });
  roundTrips(CALL_RESPONSE, call, "response", {
    result_json: new Uint8Array(),
    error: "boom ✗",
  });
  const shutdown = method(proto.GRPCController, "Shutdown");
  assert.deepStrictEqual(
    encodeMessage(GK_HOST_METHODS.CacheSet![1], {}).length,
    0,
  );
  assert.deepStrictEqual(shutdown.requestSerialize({}).length, 0);
  const check = method(proto.Health, "Check");
  roundTrips(HEALTH_CHECK_REQUEST, check, "request", { service: "plugin" });
  roundTrips(HEALTH_CHECK_REQUEST, check, "request", { service: "" });
  for (const status of [0, 1, 2, 3]) {
    roundTrips(HEALTH_CHECK_RESPONSE, check, "response", { status });
  }
});

Deno.test("every GKHost request and response matches protobufjs both ways", () => {
  const samples: Record<
    string,
    [Record<string, unknown>[], Record<string, unknown>[]]
  > = {
    DBQuery: [
      [{ query: "SELECT $1", args: [bytes("1"), bytes('"x"'), bytes("")] }, {
        query: "",
      }],
      [{ rows_json: [bytes('{"a":1}'), bytes("{}")], error: "" }, {
        rows_json: [],
        error: "denied",
      }],
    ],
    DBExec: [
      [{ query: "DELETE FROM t", args: [] }],
      [{ affected_rows: 0 }, { affected_rows: 2 ** 40 + 7, error: "" }],
    ],
    CacheGet: [
      [{ key: "k" }],
      [{ value: bytes("v"), found: true }, { found: false, error: "e" }],
    ],
    CacheSet: [
      [{ key: "k", value: bytes("v"), ttl_seconds: 60 }, {
        key: "k",
        value: new Uint8Array(),
        ttl_seconds: -1,
      }],
      [{}],
    ],
    CacheDelete: [[{ key: "k" }], [{}]],
    HTTPRequest: [
      [{
        method: "POST",
        url: "https://api.example.com/x?y=1",
        headers: { "content-type": "application/json", "x-e": "" },
        body: bytes("{}"),
      }, { url: "https://a" }],
      [{
        status_code: 404,
        body: bytes("nope"),
        error: "",
        headers: { a: "1", b: "2" },
      }, { status_code: 200 }],
    ],
    SendEmail: [
      [{ to: "a@b.c", subject: "s", body: "b", html: true }, { to: "x" }],
      [{}],
    ],
    Log: [
      [{
        level: "warn",
        message: "m",
        fields: { a: "1" },
        fields_json: bytes('{"n":1}'),
      }, { level: "info", message: "" }],
      [{}],
    ],
    ConfigGet: [[{ key: "k" }], [{ value: "v" }, { error: "nf" }]],
    Translate: [
      [{ key: "hi", args: ["a", "", "ç"] }],
      [{ text: "Hallo" }, { error: "x" }],
    ],
    CallPlugin: [
      [{ plugin: "p", function: "f", args_json: bytes("null") }],
      [{ result_json: bytes("1"), error: "" }, { error: "e" }],
    ],
  };
  assert.deepStrictEqual(
    Object.keys(samples).sort(),
    Object.keys(proto.GKHost.service).sort(),
  );
  for (const [name, [requests, responses]] of Object.entries(samples)) {
    const def = method(proto.GKHost, name);
    const [req, res] = GK_HOST_METHODS[name]!;
    for (const r of requests) roundTrips(req, def, "request", r);
    for (const r of responses) roundTrips(res, def, "response", r);
  }
});

Deno.test("unknown fields are skipped and malformed messages are refused", () => {
  // A field 99 (varint), then call_id: decoding ignores the unknown one.
  const withUnknown = new Uint8Array([
    0x98,
    0x06,
    0x05,
    ...encodeMessage(CALL_REQUEST, { call_id: "c" }),
  ]);
  assert.deepStrictEqual(decodeMessage(CALL_REQUEST, withUnknown).call_id, "c");
  // Truncated length-delimited field.
  assert.throws(
    () => decodeMessage(CALL_REQUEST, new Uint8Array([0x0a, 5, 0x61])),
    ProtobufDecodeError,
  );
  // A string field sent as a varint.
  assert.throws(
    () => decodeMessage(CALL_REQUEST, new Uint8Array([0x08, 1])),
    ProtobufDecodeError,
  );
  // A varint that never ends.
  assert.throws(
    () => decodeMessage(CALL_REQUEST, new Uint8Array(12).fill(0xff)),
    ProtobufDecodeError,
  );
});
