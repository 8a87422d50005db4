// The SDK's own gRPC server (runtimes/grpc/h2_server.ts) against real
// clients: grpc-js (what the host uses for GKRegister, Init, health and
// shutdown), the host's h2_client.ts (its Call path), and a raw hostile peer.

import assert from "node:assert/strict";
import * as grpc from "@grpc/grpc-js";
import { Buffer } from "node:buffer";
import {
  GrpcStatusError,
  H2Channel,
  REQUEST_PREFIX,
} from "../runtimes/grpc/h2_client.ts";
import { serveH2, type ServerCall } from "../runtimes/grpc/h2_server.ts";
import { LOCAL_CHANNEL_OPTIONS } from "../runtimes/grpc/proto.ts";

const ECHO = "/test.Echo/Echo";
const FAIL = "/test.Echo/Fail";
const THROW = "/test.Echo/Throw";
const HANG = "/test.Echo/Hang";

async function withServer(
  fn: (path: string, cancelled: Promise<void>) => Promise<void>,
): Promise<void> {
  const dir = await Deno.makeTempDir({ prefix: "gk-h2s-" });
  const path = `${dir}/s.sock`;
  let onCancelled!: () => void;
  const cancelled = new Promise<void>((r) => onCancelled = r);
  const server = serveH2(Deno.listen({ transport: "unix", path }), {
    handlers: {
      [ECHO]: (request) => request.slice(),
      [FAIL]: () => {
        throw new GrpcStatusError(7, "refused: ✗ 100% {not yours}");
      },
      [THROW]: () => {
        throw new Error("plain failure");
      },
      [HANG]: (_request, call: ServerCall) =>
        new Promise((_, reject) =>
          call.onCancel(() => {
            onCancelled();
            reject(new Error("cancelled"));
          })
        ),
    },
  });
  try {
    await fn(path, cancelled);
  } finally {
    server.close();
    await server.finished;
    await Deno.remove(dir, { recursive: true });
  }
}

function grpcJsCall(
  client: grpc.Client,
  method: string,
  body: Uint8Array,
): Promise<Uint8Array> {
  return new Promise((resolve, reject) =>
    client.makeUnaryRequest(
      method,
      (b: Uint8Array) => Buffer.from(b),
      (b: Buffer) => new Uint8Array(b),
      body,
      (e, r) => e ? reject(e) : resolve(r!),
    )
  );
}

function h2Call(
  channel: H2Channel,
  method: string,
  message: Uint8Array,
): Promise<Uint8Array> {
  const body = new Uint8Array(REQUEST_PREFIX + message.length);
  body.set(message, REQUEST_PREFIX);
  return new Promise((resolve, reject) =>
    channel.call(
      method,
      body,
      Date.now() + 30_000,
      (e, m) => e ? reject(e) : resolve(m!.slice()),
    )
  );
}

/** The server at `path` still answers an echo (after a hostile peer). */
async function assertServes(path: string): Promise<void> {
  const channel = new H2Channel({ transport: "unix", path });
  try {
    assert.deepEqual(await h2Call(channel, ECHO, payload(4)), payload(4));
  } finally {
    channel.close();
  }
}

function payload(n: number): Uint8Array {
  const b = new Uint8Array(n);
  for (let i = 0; i < n; i++) b[i] = (i * 31 + 7) & 0xff;
  return b;
}

Deno.test("h2 server: grpc-js and h2_client get echoes (flow-controlled large ones too), statuses and UNIMPLEMENTED", async () => {
  await withServer(async (path) => {
    const client = new grpc.Client(
      `unix:${path}`,
      grpc.credentials.createInsecure(),
      LOCAL_CHANNEL_OPTIONS,
    );
    const channel = new H2Channel({ transport: "unix", path });
    try {
      for (const n of [0, 1, 100_000, 5 * 1024 * 1024]) {
        const p = payload(n);
        assert.deepEqual(await grpcJsCall(client, ECHO, p), p, `grpc-js ${n}`);
        assert.deepEqual(await h2Call(channel, ECHO, p), p, `h2_client ${n}`);
      }
      // Many at once, on one connection each.
      const many = await Promise.all(
        Array.from(
          { length: 50 },
          (
            _,
            i,
          ) => (i % 2 ? grpcJsCall(client, ECHO, payload(i * 1000)) : h2Call(
            channel,
            ECHO,
            payload(i * 1000),
          )),
        ),
      );
      many.forEach((r, i) => assert.deepEqual(r, payload(i * 1000)));
      // A status and its message (percent-encoded on the wire) arrive whole.
      const failed = await grpcJsCall(client, FAIL, payload(1)).catch((e) => e);
      assert.equal(failed.code, grpc.status.PERMISSION_DENIED);
      assert.equal(failed.details, "refused: ✗ 100% {not yours}");
      const failedH2 = await h2Call(channel, FAIL, payload(1)).catch((e) => e);
      assert.ok(failedH2 instanceof GrpcStatusError);
      assert.equal(failedH2.code, 7);
      assert.equal(failedH2.details, "refused: ✗ 100% {not yours}");
      const thrown = await grpcJsCall(client, THROW, payload(1)).catch((e) =>
        e
      );
      assert.equal(thrown.code, grpc.status.UNKNOWN);
      assert.equal(thrown.details, "plain failure");
      const unknown = await grpcJsCall(client, "/test.Echo/Nope", payload(1))
        .catch((e) => e);
      assert.equal(unknown.code, grpc.status.UNIMPLEMENTED);
      // The connection still serves after all that.
      assert.deepEqual(await grpcJsCall(client, ECHO, payload(3)), payload(3));
    } finally {
      client.close();
      channel.close();
    }
  });
});

Deno.test("h2 server: a client's cancellation reaches the handler", async () => {
  await withServer(async (path, cancelled) => {
    const channel = new H2Channel({ transport: "unix", path });
    try {
      const body = new Uint8Array(REQUEST_PREFIX + 1);
      let answer: GrpcStatusError | null = null;
      const call = channel.call(
        HANG,
        body,
        Date.now() + 30_000,
        (e) => answer = e,
      );
      await new Promise((r) => setTimeout(r, 50));
      call.cancel();
      await cancelled;
      assert.equal(answer!.code, 1);
      assert.deepEqual(await h2Call(channel, ECHO, payload(2)), payload(2));
    } finally {
      channel.close();
    }
  });
});

/** Reads until the server hangs up; returns the bytes written before then. */
async function floodUntilClosed(
  conn: Deno.Conn,
  chunks: Iterable<Uint8Array>,
): Promise<number> {
  let written = 0;
  const closed = (async () => {
    const buf = new Uint8Array(65536);
    try {
      while ((await conn.read(buf)) !== null) { /* settings, goaway */ }
    } catch { /* reset */ }
  })();
  try {
    for (const c of chunks) {
      written += await conn.write(c);
      if (written > 16 * 1024 * 1024) break;
    }
  } catch { /* the server hung up */ }
  await closed;
  conn.close();
  return written;
}

function rawFrame(
  type: number,
  flags: number,
  stream: number,
  payload: Uint8Array,
): Uint8Array {
  const f = new Uint8Array(9 + payload.length);
  f[0] = payload.length >>> 16;
  f[1] = (payload.length >>> 8) & 0xff;
  f[2] = payload.length & 0xff;
  f[3] = type;
  f[4] = flags;
  new DataView(f.buffer).setUint32(5, stream);
  f.set(payload, 9);
  return f;
}

Deno.test("h2 server: a CONTINUATION flood and a non-HTTP/2 peer are cut off, and it keeps serving", async () => {
  await withServer(async (path) => {
    const preface = new TextEncoder().encode(
      "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n",
    );
    const conn = await Deno.connect({ transport: "unix", path });
    const written = await floodUntilClosed(
      conn,
      (function* () {
        yield preface;
        yield rawFrame(4, 0, 0, new Uint8Array());
        // HEADERS without END_HEADERS, then endless CONTINUATION.
        yield rawFrame(1, 0, 1, new Uint8Array([0x82]));
        const junk = new Uint8Array(16384).fill(0x40);
        for (;;) yield rawFrame(9, 0, 1, junk);
      })(),
    );
    assert.ok(written < 2 * 1024 * 1024, `wrote ${written} bytes`);
    const http1 = await Deno.connect({ transport: "unix", path });
    await floodUntilClosed(
      http1,
      [new TextEncoder().encode("GET / HTTP/1.1\r\nHost: x\r\n\r\n")],
    );
    await assertServes(path);
  });
});

Deno.test("h2 server: a WINDOW_UPDATE of 0 or past 2^31-1 gets GOAWAY (PROTOCOL_ERROR), and it keeps serving", async () => {
  await withServer(async (path) => {
    const preface = new TextEncoder().encode(
      "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n",
    );
    const increment = (n: number) => {
      const b = new Uint8Array(4);
      new DataView(b.buffer).setUint32(0, n);
      return b;
    };
    for (const bad of [increment(0), increment(0x7fffffff)]) {
      const conn = await Deno.connect({ transport: "unix", path });
      await conn.write(preface);
      await conn.write(rawFrame(4, 0, 0, new Uint8Array()));
      await conn.write(rawFrame(8, 0, 0, bad));
      // Frames until the server hangs up: its last word is GOAWAY.
      let bytes = new Uint8Array(0);
      const chunk = new Uint8Array(4096);
      for (;;) {
        const n = await conn.read(chunk).catch(() => null);
        if (n === null) break;
        const next = new Uint8Array(bytes.length + n);
        next.set(bytes);
        next.set(chunk.subarray(0, n), bytes.length);
        bytes = next;
      }
      conn.close();
      const goaway: number[] = [];
      for (let at = 0; at + 9 <= bytes.length;) {
        const len = (bytes[at]! << 16) | (bytes[at + 1]! << 8) | bytes[at + 2]!;
        if (bytes[at + 3] === 7) {
          goaway.push(new DataView(bytes.buffer).getUint32(at + 9 + 4));
        }
        at += 9 + len;
      }
      assert.deepEqual(
        goaway,
        [1],
        `one GOAWAY with PROTOCOL_ERROR: got ${goaway} in ${bytes.length} bytes`,
      );
    }
    await assertServes(path);
  });
});

Deno.test("h2 server: a client flooding PINGs without reading is hung up on (its GOAWAY cannot be written), and it keeps serving", async () => {
  await withServer(async (path) => {
    const conn = await Deno.connect({ transport: "unix", path });
    const ping = rawFrame(6, 0, 0, new Uint8Array(8));
    const burst = new Uint8Array(ping.length * 1000);
    for (let i = 0; i < 1000; i++) burst.set(ping, i * ping.length);
    // Never reads: the acks, and then the GOAWAY, stay unwritten.
    const flood = (async () => {
      await conn.write(
        new TextEncoder().encode("PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"),
      );
      await conn.write(rawFrame(4, 0, 0, new Uint8Array()));
      for (let i = 0; i < 4000; i++) await conn.write(burst);
      return "still open after 4,000,000 PINGs";
    })().catch(() => "hung up");
    let timer: ReturnType<typeof setTimeout> | undefined;
    const outcome = await Promise.race([
      flood,
      new Promise<string>((resolve) => {
        timer = setTimeout(() => resolve("still open after 15 s"), 15_000);
      }),
    ]);
    clearTimeout(timer);
    conn.close();
    assert.equal(outcome, "hung up");
    await assertServes(path);
  });
});
