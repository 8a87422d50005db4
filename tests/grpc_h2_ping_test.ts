/**
 * The host's HTTP/2 client answers a server's PING (grpc-go sends one with
 * each request's data, for its bandwidth estimate, and keepalive pings that
 * close the connection when unanswered): the ack is held back so that it
 * goes out with the next request (issue 12: one write per call), but it
 * must still go out when no request follows.
 */

import assert from "node:assert/strict";
import {
  GrpcCode,
  H2Channel,
  REQUEST_PREFIX,
} from "../runtimes/grpc/h2_client.ts";

const CALL = "/goatkit.plugin.v1.GKPlugin/Call";

function frame(
  type: number,
  flags: number,
  stream: number,
  payload: Uint8Array,
) {
  const f = new Uint8Array(9 + payload.length);
  f[0] = payload.length >> 16;
  f[1] = (payload.length >> 8) & 0xff;
  f[2] = payload.length & 0xff;
  f[3] = type;
  f[4] = flags;
  new DataView(f.buffer).setUint32(5, stream);
  f.set(payload, 9);
  return f;
}

/**
 * Reads frames from `conn` (skipping `skip` bytes first: the client
 * preface) until `want` tells (true or false; null: read on).
 */
async function readUntil(
  conn: Deno.Conn,
  skip: number,
  want: (type: number, flags: number, payload: Uint8Array) => boolean | null,
): Promise<boolean> {
  let buf = new Uint8Array(0);
  let prefaceLeft = skip;
  const chunk = new Uint8Array(65536);
  for (;;) {
    const n = await conn.read(chunk);
    if (n === null) return false;
    const next = new Uint8Array(buf.length + n);
    next.set(buf);
    next.set(chunk.subarray(0, n), buf.length);
    buf = next;
    if (prefaceLeft > 0) {
      const skip = Math.min(prefaceLeft, buf.length);
      buf = buf.slice(skip);
      prefaceLeft -= skip;
    }
    while (buf.length >= 9) {
      const len = (buf[0]! << 16) | (buf[1]! << 8) | buf[2]!;
      if (buf.length < 9 + len) break;
      const seen = want(buf[3]!, buf[4]!, buf.subarray(9, 9 + len));
      if (seen !== null) return seen;
      buf = buf.slice(9 + len);
    }
  }
}

Deno.test("h2 client: answers a server's PING while a call is open and no other call follows", async () => {
  const dir = await Deno.makeTempDir({ prefix: "gk-h2-ping-" });
  const path = `${dir}/s.sock`;
  const listener = Deno.listen({ transport: "unix", path });
  const token = new Uint8Array([1, 2, 3, 4, 5, 6, 7, 8]);
  const served = (async () => {
    const conn = await listener.accept();
    try {
      // The request's HEADERS come first; then ping, as grpc-go does.
      const gotRequest = await readUntil(
        conn,
        24,
        (type) => type === 1 ? true : null,
      );
      assert.ok(gotRequest, "no request arrived");
      await conn.write(frame(4, 0, 0, new Uint8Array(0))); // SETTINGS
      // Its ack first, so the PING arrives with nothing else to write.
      const settled = await readUntil(
        conn,
        0,
        (type, flags) => type === 4 && (flags & 1) ? true : null,
      );
      assert.ok(settled, "SETTINGS was not acknowledged");
      await conn.write(frame(6, 0, 0, token)); // PING
      return await readUntil(
        conn,
        0,
        (type, flags, payload) => {
          if (type === 3) return false; // RST_STREAM at the deadline: too late
          if (type !== 6 || !(flags & 1)) return null;
          return payload.every((b, i) => b === token[i]);
        },
      );
    } finally {
      conn.close();
    }
  })();
  const channel = new H2Channel({ transport: "unix", path });
  try {
    const body = new Uint8Array(REQUEST_PREFIX + 1);
    const outcome = new Promise<number | undefined>((resolve) =>
      channel.call(
        CALL,
        body,
        Date.now() + 2_000,
        (err) => resolve(err?.code),
      )
    );
    assert.equal(await served, true, "the PING was never acknowledged");
    // The server hung up without answering: the call fails, it does not hang.
    assert.equal(await outcome, GrpcCode.UNAVAILABLE);
  } finally {
    channel.close();
    listener.close();
    await Deno.remove(dir, { recursive: true });
  }
});

/**
 * A hostile server (a plugin process) on a unix socket: `act` gets the
 * accepted connection after the client's preface and request arrived; the
 * client's call must fail with UNAVAILABLE and a message matching `reason`.
 */
async function hostileServer(
  act: (conn: Deno.Conn) => Promise<void>,
  reason: RegExp,
): Promise<void> {
  const dir = await Deno.makeTempDir({ prefix: "gk-h2-hostile-" });
  const path = `${dir}/s.sock`;
  const listener = Deno.listen({ transport: "unix", path });
  const served = (async () => {
    const conn = await listener.accept();
    try {
      await readUntil(conn, 24, (type) => type === 1 ? true : null);
      await act(conn);
    } catch {
      /* the client hung up */
    } finally {
      try {
        conn.close();
      } catch { /* closed */ }
    }
  })();
  const channel = new H2Channel({ transport: "unix", path });
  try {
    const outcome = await new Promise<{ code?: number; message?: string }>(
      (resolve) =>
        channel.call(
          CALL,
          new Uint8Array(REQUEST_PREFIX + 1),
          Date.now() + 10_000,
          (err) => resolve({ code: err?.code, message: err?.message }),
        ),
    );
    assert.equal(outcome.code, GrpcCode.UNAVAILABLE, String(outcome.message));
    assert.match(outcome.message ?? "", reason);
  } finally {
    channel.close();
    listener.close();
    await served;
    await Deno.remove(dir, { recursive: true });
  }
}

Deno.test("h2 client: a server announcing a frame size out of range is a connection error, not a corrupt frame", async () => {
  const setting = new Uint8Array(6);
  new DataView(setting.buffer).setUint16(0, 0x5); // SETTINGS_MAX_FRAME_SIZE
  new DataView(setting.buffer).setUint32(2, 0x7fffffff);
  await hostileServer(async (conn) => {
    await conn.write(frame(4, 0, 0, setting));
    await readUntil(conn, 0, () => null); // until the client hangs up
  }, /max frame size 2147483647 out of range/);
});

Deno.test("h2 client: a WINDOW_UPDATE of 0, of the wrong size, or past 2^31-1 is a connection error, not a window gone wrong", async () => {
  const update = (stream: number, inc: number, size = 4) => {
    const payload = new Uint8Array(size);
    if (size >= 4) new DataView(payload.buffer).setUint32(0, inc);
    return frame(8, 0, stream, payload);
  };
  for (
    const [bad, reason] of [
      [update(0, 0), /WINDOW_UPDATE with an increment of 0/],
      [update(1, 0), /WINDOW_UPDATE with an increment of 0/],
      [update(0, 1, 5), /WINDOW_UPDATE of 5 bytes/],
      // The windows are 65,535 less what the call sent: past 2^31-1.
      [update(0, 0x7fffffff), /window 21475\d+ exceeds 2147483647/],
      [update(1, 0x7fffffff), /window 21475\d+ exceeds 2147483647/],
      // A stream's window raised to the limit, then a larger initial
      // window: the SETTINGS change would take it past the limit.
      [
        new Uint8Array([
          ...update(1, 0x7fffffff - (65535 - 6)),
          ...frame(4, 0, 0, new Uint8Array([0, 4, 0, 1, 0, 0])),
        ]),
        /window 2147483648 exceeds 2147483647/,
      ],
    ] as const
  ) {
    await hostileServer(async (conn) => {
      await conn.write(frame(4, 0, 0, new Uint8Array(0)));
      await conn.write(bad);
      await readUntil(conn, 0, () => null); // until the client hangs up
    }, reason);
  }
});

Deno.test("h2 client: a PING flood from a server that never reads ends the connection; acks do not pile up", async () => {
  const ping = frame(6, 0, 0, new Uint8Array(8));
  const burst = new Uint8Array(ping.length * 1000);
  for (let i = 0; i < 1000; i++) burst.set(ping, i * ping.length);
  await hostileServer(async (conn) => {
    await conn.write(frame(4, 0, 0, new Uint8Array(0)));
    // 200,000 PINGs, and nothing read back.
    for (let i = 0; i < 200; i++) await conn.write(burst);
  }, /flood/);
});
