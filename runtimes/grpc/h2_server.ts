/**
 * A minimal gRPC server for unary methods, straight over HTTP/2 frames on a
 * `Deno.Listener` (unix socket): the serving side of the plugin SDK
 * (`sdk.ts`). It replaces grpc-js's server, whose import (with
 * `node:http2`) cost a TypeScript plugin most of its cold start.
 *
 * It speaks enough HTTP/2 to be a correct peer for grpc-js, grpc-go and the
 * host's own `h2_client.ts`: SETTINGS and PING are acknowledged, header
 * blocks are decoded in full (`hpack.ts`, CONTINUATION bounded), flow
 * control is kept both ways, RST_STREAM cancels a call, GOAWAY is honoured.
 * Requests and responses are uncompressed gRPC messages; a status other than
 * OK is sent as trailers only.
 *
 * @module
 */

import { GrpcStatusError } from "./h2_client.ts";
import { encodeHeaders, type HeaderField, HpackDecoder } from "./hpack.ts";

/** A call being served, as a handler sees it. */
export interface ServerCall {
  /** The request's header fields (pseudo-headers included). */
  readonly headers: readonly HeaderField[];
  /** Whether the client cancelled the call (or the connection was lost). */
  readonly cancelled: boolean;
  /** Runs `fn` once when the call is cancelled. */
  onCancel(fn: () => void): void;
}

/**
 * A unary method: gets the request message, returns the response message.
 * A thrown {@linkcode GrpcStatusError} becomes its status; anything else
 * `UNKNOWN` with the error's message.
 */
export type UnaryHandler = (
  request: Uint8Array,
  call: ServerCall,
) => Uint8Array | Promise<Uint8Array>;

/** Options of {@linkcode serveH2}. */
export interface ServeH2Options {
  /** Handlers by path, such as `/goatkit.plugin.v1.GKPlugin/Call`. */
  handlers: Readonly<Record<string, UnaryHandler>>;
  /** The largest request message accepted. @default 64 MiB */
  maxReceive?: number;
}

const PREFACE = new TextEncoder().encode("PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n");
const MAX_WINDOW = 2 ** 31 - 1;
const DEFAULT_WINDOW = 65535;
const OUR_MAX_FRAME = 16384;
const MAX_HEADER_BLOCK = 64 * 1024;

const T_DATA = 0, T_HEADERS = 1, T_RST = 3, T_SETTINGS = 4, T_PING = 6;
const T_GOAWAY = 7, T_WINDOW = 8, T_CONTINUATION = 9;
const F_END_STREAM = 1, F_ACK = 1, F_END_HEADERS = 4, F_PADDED = 8;
const F_PRIORITY = 0x20;

const RESPONSE_HEADERS = encodeHeaders([
  [":status", "200"],
  ["content-type", "application/grpc"],
]);
const OK_TRAILERS = encodeHeaders([["grpc-status", "0"]]);

function frame(
  type: number,
  flags: number,
  stream: number,
  payload: Uint8Array = new Uint8Array(),
): Uint8Array {
  const f = new Uint8Array(9 + payload.length);
  f[0] = payload.length >>> 16;
  f[1] = (payload.length >>> 8) & 0xff;
  f[2] = payload.length & 0xff;
  f[3] = type;
  f[4] = flags;
  f[5] = (stream >>> 24) & 0x7f;
  f[6] = (stream >>> 16) & 0xff;
  f[7] = (stream >>> 8) & 0xff;
  f[8] = stream & 0xff;
  f.set(payload, 9);
  return f;
}

function u32(b: Uint8Array, at: number): number {
  return ((b[at]! << 24) | (b[at + 1]! << 16) | (b[at + 2]! << 8) |
    b[at + 3]!) >>> 0;
}

function concat(parts: Uint8Array[]): Uint8Array {
  if (parts.length === 1) return parts[0]!;
  let n = 0;
  for (const p of parts) n += p.length;
  const out = new Uint8Array(n);
  let at = 0;
  for (const p of parts) {
    out.set(p, at);
    at += p.length;
  }
  return out;
}

/** grpc-message is percent-encoded (gRPC over HTTP/2 spec). */
function percentEncode(s: string): string {
  return s.replace(
    /[^\x20-\x24\x26-\x7e]/gu,
    (c) =>
      Array.from(
        new TextEncoder().encode(c),
        (b) => "%" + b.toString(16).toUpperCase().padStart(2, "0"),
      ).join(""),
  );
}

class Stream implements ServerCall {
  headers: HeaderField[] = [];
  path = "";
  chunks: Uint8Array[] = [];
  received = 0;
  cancelled = false;
  /** Set once the response is queued (or the stream was reset). */
  closed = false;
  /** Response bytes waiting for window: DATA payload, then trailers. */
  pending: Uint8Array | undefined;
  sent = 0;
  window: number;
  #onCancel: (() => void)[] = [];

  constructor(readonly id: number, window: number) {
    this.window = window;
  }

  onCancel(fn: () => void): void {
    if (this.cancelled) fn();
    else this.#onCancel.push(fn);
  }

  cancel(): void {
    if (this.cancelled) return;
    this.cancelled = true;
    this.closed = true;
    for (const fn of this.#onCancel.splice(0)) {
      try {
        fn();
      } catch { /* the handler's problem */ }
    }
  }
}

class Connection {
  readonly #conn: Deno.Conn;
  readonly #options: ServeH2Options;
  readonly #decoder = new HpackDecoder();
  readonly #streams = new Map<number, Stream>();
  #out: Uint8Array[] = [];
  #writing = false;
  #closed = false;
  #lastId = 0;
  #peerWindow = DEFAULT_WINDOW;
  #connWindow = DEFAULT_WINDOW;
  #peerMaxFrame = 16384;
  #recvUnacked = 0;
  #partial:
    | { stream: number; end: boolean; parts: Uint8Array[]; size: number }
    | undefined;

  constructor(conn: Deno.Conn, options: ServeH2Options) {
    this.#conn = conn;
    this.#options = options;
    const settings = new Uint8Array(12);
    const v = new DataView(settings.buffer);
    v.setUint16(0, 0x4); // INITIAL_WINDOW_SIZE
    v.setUint32(2, MAX_WINDOW);
    v.setUint16(6, 0x5); // MAX_FRAME_SIZE
    v.setUint32(8, OUR_MAX_FRAME);
    const window = new Uint8Array(4);
    new DataView(window.buffer).setUint32(0, MAX_WINDOW - DEFAULT_WINDOW);
    this.#out.push(frame(T_SETTINGS, 0, 0, settings));
    this.#out.push(frame(T_WINDOW, 0, 0, window));
    this.#flush();
  }

  async run(): Promise<void> {
    let buf = new Uint8Array(64 * 1024);
    let len = 0;
    let preface = false;
    try {
      for (;;) {
        if (len === buf.length) {
          const bigger = new Uint8Array(buf.length * 2);
          bigger.set(buf);
          buf = bigger;
        }
        const n = await this.#conn.read(buf.subarray(len));
        if (n === null) break;
        len += n;
        let p = 0;
        if (!preface) {
          if (len < PREFACE.length) continue;
          for (let i = 0; i < PREFACE.length; i++) {
            if (buf[i] !== PREFACE[i]) throw new Error("not an HTTP/2 client");
          }
          preface = true;
          p = PREFACE.length;
        }
        while (len - p >= 9) {
          const flen = (buf[p]! << 16) | (buf[p + 1]! << 8) | buf[p + 2]!;
          if (flen > OUR_MAX_FRAME) {
            throw new Error(`frame of ${flen} bytes exceeds ${OUR_MAX_FRAME}`);
          }
          if (len - p < 9 + flen) break;
          this.#frame(
            buf[p + 3]!,
            buf[p + 4]!,
            u32(buf, p + 5) & 0x7fffffff,
            buf.subarray(p + 9, p + 9 + flen),
          );
          p += 9 + flen;
        }
        if (p > 0) {
          buf.copyWithin(0, p, len);
          len -= p;
        }
      }
    } catch {
      // A protocol error: tell the peer, then hang up.
      const goaway = new Uint8Array(8);
      new DataView(goaway.buffer).setUint32(0, this.#lastId);
      goaway[7] = 1; // PROTOCOL_ERROR
      this.#out.push(frame(T_GOAWAY, 0, 0, goaway));
      await this.#flush();
    }
    this.close();
  }

  close(): void {
    if (this.#closed) return;
    this.#closed = true;
    try {
      this.#conn.close();
    } catch { /* closed */ }
    for (const s of this.#streams.values()) s.cancel();
    this.#streams.clear();
  }

  #send(bytes: Uint8Array): void {
    this.#out.push(bytes);
    this.#flush();
  }

  async #flush(): Promise<void> {
    if (this.#writing || this.#closed) return;
    this.#writing = true;
    try {
      while (this.#out.length && !this.#closed) {
        const chunk = concat(this.#out);
        this.#out = [];
        let off = 0;
        while (off < chunk.length) {
          off += await this.#conn.write(chunk.subarray(off));
        }
      }
    } catch {
      this.close();
    } finally {
      this.#writing = false;
    }
  }

  #frame(type: number, flags: number, id: number, payload: Uint8Array): void {
    if (this.#partial && type !== T_CONTINUATION) {
      throw new Error("header block interrupted");
    }
    switch (type) {
      case T_DATA:
        return this.#data(flags, id, payload);
      case T_HEADERS: {
        let p = 0;
        let end = payload.length;
        if (flags & F_PADDED) end -= payload[p++]!;
        if (flags & F_PRIORITY) p += 5;
        if (end < p) throw new Error("bad HEADERS padding");
        const block = payload.subarray(p, end);
        const endStream = (flags & F_END_STREAM) !== 0;
        if (flags & F_END_HEADERS) return this.#headers(id, endStream, block);
        this.#partial = {
          stream: id,
          end: endStream,
          parts: [block.slice()],
          size: block.length,
        };
        return;
      }
      case T_CONTINUATION: {
        const partial = this.#partial;
        if (!partial || partial.stream !== id) {
          throw new Error("unexpected CONTINUATION frame");
        }
        partial.parts.push(payload.slice());
        partial.size += payload.length;
        if (partial.size > MAX_HEADER_BLOCK) {
          throw new Error(`header block larger than ${MAX_HEADER_BLOCK} bytes`);
        }
        if (flags & F_END_HEADERS) {
          this.#partial = undefined;
          this.#headers(id, partial.end, concat(partial.parts));
        }
        return;
      }
      case T_RST: {
        const s = this.#streams.get(id);
        if (!s) return;
        this.#streams.delete(id);
        s.cancel();
        return;
      }
      case T_SETTINGS:
        if (flags & F_ACK) return;
        for (let p = 0; p + 6 <= payload.length; p += 6) {
          const key = (payload[p]! << 8) | payload[p + 1]!;
          const value = u32(payload, p + 2);
          if (key === 0x4) {
            const delta = value - this.#peerWindow;
            this.#peerWindow = value;
            for (const s of this.#streams.values()) s.window += delta;
          } else if (key === 0x5) this.#peerMaxFrame = value;
        }
        this.#out.push(frame(T_SETTINGS, F_ACK, 0));
        this.#pumpAll();
        this.#flush();
        return;
      case T_PING:
        if (!(flags & F_ACK)) this.#send(frame(T_PING, F_ACK, 0, payload));
        return;
      case T_GOAWAY:
        // No new streams will come; the open ones finish.
        return;
      case T_WINDOW: {
        const inc = u32(payload, 0) & 0x7fffffff;
        if (id === 0) {
          this.#connWindow += inc;
          this.#pumpAll();
        } else {
          const s = this.#streams.get(id);
          if (!s) return;
          s.window += inc;
          this.#pump(s);
        }
        this.#flush();
        return;
      }
      default:
        return; // PRIORITY, unknown: ignored
    }
  }

  #headers(id: number, endStream: boolean, block: Uint8Array): void {
    // Decoded whatever the stream: the table must stay in step.
    const fields = this.#decoder.decode(block);
    const existing = this.#streams.get(id);
    if (existing) {
      // Trailers from the client end its half; gRPC clients send none.
      if (endStream) this.#dispatch(existing);
      return;
    }
    if (id % 2 === 0 || id <= this.#lastId) {
      throw new Error(`stream ${id} cannot be opened`);
    }
    this.#lastId = id;
    const s = new Stream(id, this.#peerWindow);
    s.headers = fields;
    for (const [name, value] of fields) {
      if (name === ":path") s.path = value;
    }
    this.#streams.set(id, s);
    if (endStream) this.#dispatch(s);
  }

  #data(flags: number, id: number, payload: Uint8Array): void {
    this.#recvUnacked += payload.length;
    if (this.#recvUnacked > 2 ** 30) {
      const inc = new Uint8Array(4);
      new DataView(inc.buffer).setUint32(0, this.#recvUnacked);
      this.#recvUnacked = 0;
      this.#send(frame(T_WINDOW, 0, 0, inc));
    }
    const s = this.#streams.get(id);
    if (!s || s.closed) return;
    let p = 0;
    let end = payload.length;
    if (flags & F_PADDED) end -= payload[p++]!;
    if (end > p) {
      s.received += end - p;
      const max = this.#options.maxReceive ?? 64 * 1024 * 1024;
      if (s.received > max + 5) {
        this.#status(s, 8, `request larger than ${max} bytes`);
        return;
      }
      s.chunks.push(payload.slice(p, end));
    }
    if (flags & F_END_STREAM) this.#dispatch(s);
  }

  async #dispatch(s: Stream): Promise<void> {
    if (s.closed) return;
    const handler = this.#options.handlers[s.path];
    if (!handler) return this.#status(s, 12, `unknown method ${s.path}`);
    const data = concat(s.chunks);
    s.chunks = [];
    if (data.length < 5 || data[0] !== 0 || u32(data, 1) !== data.length - 5) {
      return this.#status(
        s,
        data.length >= 5 && data[0] !== 0 ? 12 : 13,
        data.length >= 5 && data[0] !== 0
          ? "compressed request (not negotiated)"
          : "malformed request message",
      );
    }
    let reply: Uint8Array;
    try {
      reply = await handler(data.subarray(5), s);
    } catch (e) {
      if (e instanceof GrpcStatusError) {
        return this.#status(s, e.code, e.details);
      }
      return this.#status(s, 2, e instanceof Error ? e.message : String(e));
    }
    if (s.closed || this.#closed) return;
    s.closed = true;
    const body = new Uint8Array(5 + reply.length);
    new DataView(body.buffer).setUint32(1, reply.length);
    body.set(reply, 5);
    s.pending = body;
    this.#out.push(
      frame(T_HEADERS, F_END_HEADERS, s.id, RESPONSE_HEADERS),
    );
    this.#pump(s);
    this.#flush();
  }

  /** Ends `s` with a non-OK status (trailers only). */
  #status(s: Stream, code: number, message: string): void {
    if (s.closed) return;
    s.closed = true;
    this.#streams.delete(s.id);
    if (this.#closed) return;
    const block = encodeHeaders([
      [":status", "200"],
      ["content-type", "application/grpc"],
      ["grpc-status", String(code)],
      ["grpc-message", percentEncode(message)],
    ]);
    this.#send(frame(T_HEADERS, F_END_HEADERS | F_END_STREAM, s.id, block));
  }

  #pumpAll(): void {
    for (const s of this.#streams.values()) if (s.pending) this.#pump(s);
  }

  /** Sends what the windows allow of `s`'s response, then its trailers. */
  #pump(s: Stream): void {
    const body = s.pending;
    if (!body) return;
    while (s.sent < body.length) {
      const n = Math.min(
        body.length - s.sent,
        s.window,
        this.#connWindow,
        this.#peerMaxFrame,
      );
      if (n <= 0) return;
      this.#out.push(frame(T_DATA, 0, s.id, body.subarray(s.sent, s.sent + n)));
      s.sent += n;
      s.window -= n;
      this.#connWindow -= n;
    }
    s.pending = undefined;
    this.#streams.delete(s.id);
    this.#out.push(
      frame(T_HEADERS, F_END_HEADERS | F_END_STREAM, s.id, OK_TRAILERS),
    );
  }
}

/** A running server, as {@linkcode serveH2} returns it. */
export interface H2Server {
  /** Resolves when the listener closed. */
  readonly finished: Promise<void>;
  /** Stops accepting connections and closes the open ones. */
  close(): void;
}

/**
 * Serves unary gRPC methods on `listener` until {@linkcode H2Server.close}.
 *
 * @example
 * ```ts ignore
 * const listener = Deno.listen({ transport: "unix", path: "/tmp/p.sock" });
 * serveH2(listener, {
 *   handlers: { "/pkg.Service/Echo": (request) => request },
 * });
 * ```
 */
export function serveH2(
  listener: Deno.Listener,
  options: ServeH2Options,
): H2Server {
  const open = new Set<Connection>();
  let closed = false;
  const finished = (async () => {
    try {
      for await (const conn of listener) {
        const c = new Connection(conn, options);
        open.add(c);
        c.run().finally(() => open.delete(c));
      }
    } catch {
      /* listener closed */
    }
  })();
  return {
    finished,
    close() {
      if (closed) return;
      closed = true;
      try {
        listener.close();
      } catch { /* closed */ }
      for (const c of open) c.close();
    },
  };
}
