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

import {
  concat,
  dataPayload,
  DEFAULT_WINDOW,
  E_PROTOCOL_ERROR,
  F_ACK,
  F_END_HEADERS,
  F_END_STREAM,
  frame,
  goawayFrame,
  growWindow,
  GRPC_MESSAGE_FAULT,
  grpcMessage,
  grpcMessageFault,
  HeaderBlockAssembler,
  headersFragment,
  MAX_QUEUED_ACKS,
  MAX_WINDOW,
  OUR_MAX_FRAME,
  readFrames,
  readSettings,
  readWindowIncrement,
  S_INITIAL_WINDOW_SIZE,
  S_MAX_FRAME_SIZE,
  settingsFrame,
  T_CONTINUATION,
  T_DATA,
  T_GOAWAY,
  T_HEADERS,
  T_PING,
  T_RST,
  T_SETTINGS,
  T_WINDOW,
  windowUpdateFrame,
} from "./_h2_frames.ts";
import { GrpcCode, GrpcStatusError } from "./h2_client.ts";
import { encodeHeaders, type HeaderField, HpackDecoder } from "./hpack.ts";

/**
 * How long the server waits, after a protocol error, for its GOAWAY to be
 * written before it hangs up anyway (a peer that stopped reading).
 */
const GOAWAY_WAIT_MS = 1000;

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

const RESPONSE_HEADERS = encodeHeaders([
  [":status", "200"],
  ["content-type", "application/grpc"],
]);
const OK_TRAILERS = encodeHeaders([["grpc-status", "0"]]);

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
  /** The write under way (or the last one). */
  #flushing: Promise<void> = Promise.resolve();
  /** PING and SETTINGS acks queued since the last write began. */
  #acks = 0;
  #closed = false;
  #lastId = 0;
  #peerWindow = DEFAULT_WINDOW;
  #connWindow = DEFAULT_WINDOW;
  #peerMaxFrame = 16384;
  #recvUnacked = 0;
  readonly #block = new HeaderBlockAssembler();

  constructor(conn: Deno.Conn, options: ServeH2Options) {
    this.#conn = conn;
    this.#options = options;
    this.#out.push(settingsFrame([
      [S_INITIAL_WINDOW_SIZE, MAX_WINDOW],
      [S_MAX_FRAME_SIZE, OUR_MAX_FRAME],
    ]));
    this.#out.push(windowUpdateFrame(0, MAX_WINDOW - DEFAULT_WINDOW));
    this.#flush();
  }

  async run(): Promise<void> {
    try {
      await readFrames(
        this.#conn,
        (type, flags, id, payload) => this.#frame(type, flags, id, payload),
        { preface: true },
      );
    } catch {
      // A protocol error: tell the peer, then hang up once a write under
      // way has written it too, or after GOAWAY_WAIT_MS (a peer that
      // stopped reading, as in a PING flood, never lets it finish).
      this.#out.push(goawayFrame(this.#lastId, E_PROTOCOL_ERROR));
      let timer: ReturnType<typeof setTimeout> | undefined;
      await Promise.race([
        this.#flush(),
        new Promise((resolve) => {
          timer = setTimeout(resolve, GOAWAY_WAIT_MS);
        }),
      ]);
      clearTimeout(timer);
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

  /** Queues an acknowledgement; too many unwritten is a connection error. */
  #ack(bytes: Uint8Array): void {
    if (++this.#acks > MAX_QUEUED_ACKS) {
      throw new Error("PING/SETTINGS flood: acknowledgements not read");
    }
    this.#out.push(bytes);
  }

  /**
   * Writes what is queued; returns the write under way if there is one
   * (it also writes what was queued meanwhile), so an awaiting caller
   * knows its frames went out.
   */
  #flush(): Promise<void> {
    if (this.#writing || this.#closed) return this.#flushing;
    this.#writing = true;
    this.#flushing = this.#drain();
    return this.#flushing;
  }

  async #drain(): Promise<void> {
    try {
      while (this.#out.length && !this.#closed) {
        const chunk = concat(this.#out);
        this.#out = [];
        this.#acks = 0;
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
    if (this.#block.pending && type !== T_CONTINUATION) {
      throw new Error("header block interrupted");
    }
    switch (type) {
      case T_DATA:
        return this.#data(flags, id, payload);
      case T_HEADERS: {
        const block = headersFragment(flags, payload);
        if (!block) throw new Error("bad HEADERS padding");
        const endStream = (flags & F_END_STREAM) !== 0;
        if (flags & F_END_HEADERS) return this.#headers(id, endStream, block);
        this.#block.begin(id, endStream, block);
        return;
      }
      case T_CONTINUATION: {
        const block = this.#block.continuation(flags, id, payload);
        if (block) this.#headers(id, this.#block.endStream, block);
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
        readSettings(payload, (key, value) => {
          if (key === S_INITIAL_WINDOW_SIZE) {
            const delta = value - this.#peerWindow;
            this.#peerWindow = value;
            for (const s of this.#streams.values()) {
              s.window = growWindow(s.window, delta);
            }
          } else if (key === S_MAX_FRAME_SIZE) this.#peerMaxFrame = value;
        });
        this.#ack(frame(T_SETTINGS, F_ACK, 0));
        this.#pumpAll();
        this.#flush();
        return;
      case T_PING:
        if (flags & F_ACK) return;
        this.#ack(frame(T_PING, F_ACK, 0, payload));
        this.#flush();
        return;
      case T_GOAWAY:
        // No new streams will come; the open ones finish.
        return;
      case T_WINDOW: {
        const inc = readWindowIncrement(payload);
        if (id === 0) {
          this.#connWindow = growWindow(this.#connWindow, inc);
          this.#pumpAll();
        } else {
          const s = this.#streams.get(id);
          if (!s) return;
          s.window = growWindow(s.window, inc);
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
      const inc = this.#recvUnacked;
      this.#recvUnacked = 0;
      this.#send(windowUpdateFrame(0, inc));
    }
    const data = dataPayload(flags, payload);
    if (!data) throw new Error("bad DATA padding");
    const s = this.#streams.get(id);
    if (!s || s.closed) return;
    if (data.length) {
      s.received += data.length;
      const max = this.#options.maxReceive ?? 64 * 1024 * 1024;
      if (s.received > max + 5) {
        this.#status(
          s,
          GrpcCode.RESOURCE_EXHAUSTED,
          `request larger than ${max} bytes`,
        );
        return;
      }
      s.chunks.push(data.slice());
    }
    if (flags & F_END_STREAM) this.#dispatch(s);
  }

  async #dispatch(s: Stream): Promise<void> {
    if (s.closed) return;
    const handler = this.#options.handlers[s.path];
    if (!handler) {
      return this.#status(
        s,
        GrpcCode.UNIMPLEMENTED,
        `unknown method ${s.path}`,
      );
    }
    const data = concat(s.chunks);
    s.chunks = [];
    const fault = grpcMessageFault(data);
    if (fault !== GRPC_MESSAGE_FAULT.NONE) {
      const compressed = fault === GRPC_MESSAGE_FAULT.COMPRESSED;
      return this.#status(
        s,
        compressed ? GrpcCode.UNIMPLEMENTED : GrpcCode.INTERNAL,
        compressed
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
      return this.#status(
        s,
        GrpcCode.UNKNOWN,
        e instanceof Error ? e.message : String(e),
      );
    }
    if (s.closed || this.#closed) return;
    s.closed = true;
    s.pending = grpcMessage(reply);
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
