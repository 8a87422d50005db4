/**
 * The host's own HTTP/2 gRPC client (`runtimes/grpc/h2_client.ts`), its
 * HPACK decoder and the `CallRequest`/`CallResponse` codec, against a real
 * grpc-js server on a unix socket: answers, error statuses, deadlines,
 * cancellation, messages larger than the flow-control window, the server's
 * stream limit, and a server that goes away.
 */

import * as grpc from "@grpc/grpc-js";
import assert from "node:assert/strict";
import { HpackDecoder } from "../runtimes/grpc/hpack.ts";
import {
  decodeCallRequest,
  decodeCallResponse,
  encodeCallRequest,
} from "../runtimes/grpc/call_codec.ts";
import {
  GrpcCode,
  GrpcStatusError,
  H2Channel,
  REQUEST_PREFIX,
} from "../runtimes/grpc/h2_client.ts";
import {
  loadProto,
  LOCAL_SERVER_OPTIONS,
  type PbCallRequest,
  type PbCallResponse,
} from "../runtimes/grpc/proto.ts";

const CALL = "/goatkit.plugin.v1.GKPlugin/Call";
const enc = new TextEncoder();
const dec = new TextDecoder();

Deno.test("HPACK: RFC 7541 C.4 requests (Huffman, dynamic table) decode", () => {
  const hex = (s: string) =>
    new Uint8Array(
      s.replace(/\s/g, "").match(/../g)!.map((b) => parseInt(b, 16)),
    );
  const d = new HpackDecoder();
  assert.deepEqual(
    d.decode(hex("8286 8441 8cf1 e3c2 e5f2 3a6b a0ab 90f4 ff")),
    [
      [":method", "GET"],
      [":scheme", "http"],
      [":path", "/"],
      [":authority", "www.example.com"],
    ],
  );
  assert.deepEqual(d.decode(hex("8286 84be 5886 a8eb 1064 9cbf")), [
    [":method", "GET"],
    [":scheme", "http"],
    [":path", "/"],
    [":authority", "www.example.com"],
    ["cache-control", "no-cache"],
  ]);
  assert.deepEqual(
    d.decode(
      hex("8287 85bf 4088 25a8 49e9 5ba9 7d7f 8925 a849 e95b b8e8 b4bf"),
    ),
    [
      [":method", "GET"],
      [":scheme", "https"],
      [":path", "/index.html"],
      [":authority", "www.example.com"],
      ["custom-key", "custom-value"],
    ],
  );
  assert.throws(() => d.decode(hex("be be ff")), /not in the table|truncated/);
});

Deno.test("CallRequest/CallResponse codec round-trips, and protobufjs agrees", () => {
  const fields = {
    function: "echo",
    args: enc.encode('{"a":"ü"}'),
    callId: "c-1",
    caller: "other",
    language: "de",
    deadline: 1_700_000_000_123,
    chain: ["a", "b"],
  };
  const bytes = encodeCallRequest(fields, 3);
  assert.deepEqual([...bytes.subarray(0, 3)], [0, 0, 0]);
  const back = decodeCallRequest(bytes.subarray(3));
  assert.deepEqual({ ...back, args: dec.decode(back.args!) }, {
    ...fields,
    args: '{"a":"ü"}',
  });
  // grpc-js's own (protobufjs) deserializer reads the same bytes.
  const method = loadProto().GKPlugin.service.Call;
  const pb = method.requestDeserialize(
    bytes.subarray(3) as unknown as Buffer,
  ) as PbCallRequest;
  assert.equal(pb.call_id, "c-1");
  assert.equal(pb.deadline_unix_ms, fields.deadline);
  assert.deepEqual(pb.chain, ["a", "b"]);
  const res = method.responseSerialize({
    result_json: enc.encode("[1]"),
    error: "bad",
  }) as Uint8Array;
  const r = decodeCallResponse(res);
  assert.equal(dec.decode(r.result), "[1]");
  assert.equal(r.error, "bad");
});

interface TestServer {
  path: string;
  server: grpc.Server;
  dir: string;
}

async function serve(
  call: (
    req: PbCallRequest,
    cb: (e: Partial<grpc.ServiceError> | null, r?: PbCallResponse) => void,
    c: grpc.ServerUnaryCall<PbCallRequest, PbCallResponse>,
  ) => void,
  options: grpc.ServerOptions = {},
): Promise<TestServer> {
  const dir = await Deno.makeTempDir({ prefix: "gk-h2-" });
  const path = `${dir}/s.sock`;
  const server = new grpc.Server({ ...LOCAL_SERVER_OPTIONS, ...options });
  server.addService(loadProto().GKPlugin.service, {
    Call: (
      c: grpc.ServerUnaryCall<PbCallRequest, PbCallResponse>,
      cb: (e: Partial<grpc.ServiceError> | null, r?: PbCallResponse) => void,
    ) => call(c.request, cb, c),
  });
  await new Promise<void>((res, rej) =>
    server.bindAsync(
      `unix:${path}`,
      grpc.ServerCredentials.createInsecure(),
      (e) => e ? rej(e) : res(),
    )
  );
  return { path, server, dir };
}

function request(
  channel: H2Channel,
  fn: string,
  args: Uint8Array | null,
  deadline = Date.now() + 5000,
) {
  const body = encodeCallRequest({
    function: fn,
    args,
    callId: "id",
    caller: "",
    language: "",
    deadline,
    chain: [],
  }, REQUEST_PREFIX);
  let cancel = () => {};
  const done = new Promise<Uint8Array>((resolve, reject) => {
    const call = channel.call(CALL, body, deadline, (e, m) => {
      if (e) return reject(e);
      const r = decodeCallResponse(m!);
      if (r.error) reject(new Error(r.error));
      else resolve(r.result);
    });
    cancel = () => call.cancel();
  });
  return { done, cancel: () => cancel() };
}

async function stop(s: TestServer, channel: H2Channel) {
  channel.close();
  s.server.forceShutdown();
  await Deno.remove(s.dir, { recursive: true });
}

Deno.test("h2 client: answers, statuses, large messages, many concurrent calls", async () => {
  const s = await serve((req, cb) => {
    if (req.function === "fail") {
      return cb({ code: grpc.status.PERMISSION_DENIED, details: "nö 100%" });
    }
    if (req.function === "error") {
      return cb(null, { result_json: new Uint8Array(), error: "boom" });
    }
    cb(null, { result_json: req.args_json, error: "" });
  });
  const channel = new H2Channel({ transport: "unix", path: s.path });
  try {
    const small = await request(channel, "echo", enc.encode('"hi"')).done;
    assert.equal(dec.decode(small), '"hi"');
    // 3 MB both ways: far beyond the 64 KiB initial window.
    const big = enc.encode(JSON.stringify("x".repeat(3_000_000)));
    assert.deepEqual(await request(channel, "echo", big).done, big);
    const failed = await request(channel, "fail", null).done.catch((e) => e);
    assert.ok(failed instanceof GrpcStatusError);
    assert.equal(failed.code, grpc.status.PERMISSION_DENIED);
    assert.equal(failed.details, "nö 100%");
    await assert.rejects(request(channel, "error", null).done, /boom/);
    const many = await Promise.all(
      Array.from(
        { length: 500 },
        (_, i) => request(channel, "echo", enc.encode(String(i))).done,
      ),
    );
    assert.deepEqual(many.map((b) => Number(dec.decode(b))), [
      ...Array(500).keys(),
    ]);
  } finally {
    await stop(s, channel);
  }
});

Deno.test("h2 client: the server's stream limit queues calls instead of failing them", async () => {
  let active = 0;
  let peak = 0;
  const s = await serve((req, cb) => {
    peak = Math.max(peak, ++active);
    setTimeout(() => {
      active--;
      cb(null, { result_json: req.args_json, error: "" });
    }, 5);
  }, { "grpc.max_concurrent_streams": 3 });
  const channel = new H2Channel({ transport: "unix", path: s.path });
  try {
    const out = await Promise.all(
      Array.from(
        { length: 30 },
        () => request(channel, "echo", enc.encode("1")).done,
      ),
    );
    assert.equal(out.length, 30);
    assert.ok(peak <= 3, `peak ${peak} streams`);
  } finally {
    await stop(s, channel);
  }
});

Deno.test("h2 client: deadlines and cancellation end the call and reset its stream", async () => {
  let cancelledOnServer = 0;
  const s = await serve((_req, _cb, c) => {
    c.on("cancelled", () => cancelledOnServer++);
  });
  const channel = new H2Channel({ transport: "unix", path: s.path });
  try {
    const t0 = Date.now();
    const late = await request(channel, "hang", null, Date.now() + 150).done
      .catch((e) => e);
    assert.equal(late.code, GrpcCode.DEADLINE_EXCEEDED);
    assert.ok(Date.now() - t0 >= 140, "not before its deadline");
    const r = request(channel, "hang", null);
    setTimeout(r.cancel, 50);
    const cancelled = await r.done.catch((e) => e);
    assert.equal(cancelled.code, GrpcCode.CANCELLED);
    for (let i = 0; i < 100 && cancelledOnServer < 2; i++) {
      await new Promise((res) => setTimeout(res, 10));
    }
    assert.equal(cancelledOnServer, 2, "the server saw both streams end");
  } finally {
    await stop(s, channel);
  }
});

Deno.test("h2 client: a server that goes away fails its calls with UNAVAILABLE", async () => {
  // A bare socket server that takes the request and dies (closes).
  const dir = await Deno.makeTempDir({ prefix: "gk-h2-" });
  const path = `${dir}/s.sock`;
  const listener = Deno.listen({ transport: "unix", path });
  const served = (async () => {
    const conn = await listener.accept();
    await conn.read(new Uint8Array(65536));
    await new Promise((r) => setTimeout(r, 50));
    conn.close();
  })();
  const channel = new H2Channel({ transport: "unix", path });
  try {
    const e = await request(channel, "x", null, Date.now() + 10_000).done
      .catch((e) => e);
    assert.equal(e.code, GrpcCode.UNAVAILABLE);
    await served;
    listener.close();
    // Nobody listens any more: the next call cannot connect.
    const after = await request(channel, "x", null).done.catch((e) => e);
    assert.equal(after.code, GrpcCode.UNAVAILABLE);
  } finally {
    channel.close();
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("h2 client: a peer that floods CONTINUATION frames is cut off (64 KiB header block), not buffered without end", async () => {
  // A hostile plugin's server: answers the call with a HEADERS frame that
  // never ends its block, then CONTINUATION frames for ever (as long as
  // the host reads).
  const dir = await Deno.makeTempDir({ prefix: "gk-h2-" });
  const path = `${dir}/s.sock`;
  const listener = Deno.listen({ transport: "unix", path });
  let sent = 0;
  const served = (async () => {
    const conn = await listener.accept();
    const frame = (type: number, flags: number, len: number) => {
      const f = new Uint8Array(9 + len);
      f[0] = len >> 16;
      f[1] = (len >> 8) & 0xff;
      f[2] = len & 0xff;
      f[3] = type;
      f[4] = flags;
      new DataView(f.buffer).setUint32(5, 1); // stream 1
      f.fill(0x88, 9); // indexed ":status: 200", repeated
      return f;
    };
    try {
      await conn.read(new Uint8Array(65536));
      await conn.write(new Uint8Array([0, 0, 0, 4, 0, 0, 0, 0, 0])); // SETTINGS
      await conn.write(frame(1, 0, 16000)); // HEADERS without END_HEADERS
      for (let i = 0; i < 1000; i++) {
        await conn.write(frame(9, 0, 16000)); // CONTINUATION
        sent += 16000;
      }
    } catch { /* the client hung up: what this test wants */ }
    conn.close();
  })();
  const channel = new H2Channel({ transport: "unix", path });
  try {
    const e = await request(channel, "x", null, Date.now() + 10_000).done
      .catch((e) => e);
    assert.equal(e.code, GrpcCode.UNAVAILABLE, String(e));
    await served;
    assert.ok(sent < 1_000 * 16000, `the client read all ${sent} bytes`);
  } finally {
    channel.close();
    listener.close();
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("h2 client: under load, calls started on separate turns share socket writes; a lone call writes at once", async () => {
  const s = await serve((req, cb) =>
    cb(null, { result_json: req.args_json, error: "" })
  );
  // Count the client's socket writes (its connection comes from Deno.connect).
  let writes = 0;
  const connect = Deno.connect;
  // deno-lint-ignore no-explicit-any
  (Deno as any).connect = async (options: any) => {
    const conn = await connect(options);
    const write = conn.write.bind(conn);
    conn.write = (b: Uint8Array) => (writes++, write(b));
    return conn;
  };
  const channel = new H2Channel({ transport: "unix", path: s.path });
  try {
    await request(channel, "echo", enc.encode("0")).done; // connected
    // Each call started from its own macrotask, as HTTP requests arrive.
    writes = 0;
    const n = 200;
    const answers = await Promise.all(
      Array.from(
        { length: n },
        (_, i) =>
          new Promise<Uint8Array>((resolve, reject) =>
            setTimeout(
              () =>
                request(channel, "echo", enc.encode(String(i))).done.then(
                  resolve,
                  reject,
                ),
              0,
            )
          ),
      ),
    );
    assert.deepEqual(answers.map((b) => Number(dec.decode(b))), [
      ...Array(n).keys(),
    ]);
    // Without coalescing every call is a write of its own (plus acks).
    assert.ok(writes < n / 2, `${writes} writes for ${n} calls`);
    // Idle again: one call, one write of its own (no cork, no timer).
    writes = 0;
    const lone = request(channel, "echo", enc.encode('"x"'));
    assert.equal(writes, 1, "a lone call writes at once");
    assert.equal(dec.decode(await lone.done), '"x"');
  } finally {
    Deno.connect = connect;
    await stop(s, channel);
  }
});
