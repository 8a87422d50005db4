/**
 * A minimal gRPC client for unary calls, straight over HTTP/2 frames on a
 * `Deno.Conn` (unix socket or loopback TCP): the host's hot path to a
 * plugin's `Call`. It exists because the general stack costs most of a
 * call's time: on this machine grpc-js took ~430–700 µs per call and
 * `node:http2` alone ~340 µs, against ~50 µs for a bare socket round trip.
 *
 * One connection per plugin carries every call as its own stream. A call is
 * one write (HEADERS and DATA frames together; calls made while a write is
 * in flight join the next one), its header block is encoded once per
 * method, deadlines share one timer, and the response is decoded in place.
 * It speaks enough HTTP/2 to be a correct peer: SETTINGS and PING are
 * acknowledged, HPACK is decoded in full (`hpack.ts`), flow control is kept
 * both ways (large messages wait for window), the peer's stream limit is
 * respected, GOAWAY and RST_STREAM end the calls they concern.
 *
 * @module
 */

import {
  concat,
  dataPayload,
  DEFAULT_WINDOW,
  E_CANCEL,
  E_REFUSED_STREAM,
  F_ACK,
  F_END_HEADERS,
  F_END_STREAM,
  frame,
  frameHeader,
  growWindow,
  GRPC_MESSAGE_FAULT,
  grpcMessageFault,
  HeaderBlockAssembler,
  headersFragment,
  MAX_QUEUED_ACKS,
  MAX_WINDOW,
  OUR_MAX_FRAME,
  PREFACE,
  readFrames,
  readSettings,
  readWindowIncrement,
  rstStreamFrame,
  S_ENABLE_PUSH,
  S_INITIAL_WINDOW_SIZE,
  S_MAX_CONCURRENT_STREAMS,
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
  u32,
  windowUpdateFrame,
  writeGrpcPrefix,
} from "./_h2_frames.ts";
import { encodeHeaders, type HeaderField, HpackDecoder } from "./hpack.ts";

/** gRPC status codes the client and server produce or read (the values of grpc.status). */
export const GrpcCode = Object.freeze({
  OK: 0,
  CANCELLED: 1,
  UNKNOWN: 2,
  DEADLINE_EXCEEDED: 4,
  NOT_FOUND: 5,
  RESOURCE_EXHAUSTED: 8,
  UNIMPLEMENTED: 12,
  INTERNAL: 13,
  UNAVAILABLE: 14,
});

/** Status names by code, for messages. */
const CODE_NAMES = [
  "OK",
  "CANCELLED",
  "UNKNOWN",
  "INVALID_ARGUMENT",
  "DEADLINE_EXCEEDED",
  "NOT_FOUND",
  "ALREADY_EXISTS",
  "PERMISSION_DENIED",
  "RESOURCE_EXHAUSTED",
  "FAILED_PRECONDITION",
  "ABORTED",
  "OUT_OF_RANGE",
  "UNIMPLEMENTED",
  "INTERNAL",
  "UNAVAILABLE",
  "DATA_LOSS",
  "UNAUTHENTICATED",
];

/** The name of gRPC status `code`, such as `PERMISSION_DENIED`. */
export function grpcCodeName(code: number): string {
  return CODE_NAMES[code] ?? "UNKNOWN";
}

/** A call ended with a gRPC status other than OK (same shape as grpc-js's `ServiceError`). */
export class GrpcStatusError extends Error {
  /** The gRPC status code. */
  readonly code: number;
  /** The status message. */
  readonly details: string;

  /** Creates the error for status `code` with `details`. */
  constructor(code: number, details: string) {
    super(`${code} ${CODE_NAMES[code] ?? "UNKNOWN"}: ${details}`);
    this.name = "GrpcStatusError";
    this.code = code;
    this.details = details;
  }
}

/** Free bytes a request body must start with (DATA frame and gRPC message headers). */
export const REQUEST_PREFIX = 14;

/** The answer to a call: the response message, or the status it failed with. */
export type UnaryCallback = (
  error: GrpcStatusError | null,
  message: Uint8Array | null,
) => void;

/** The largest response message accepted (as the host's grpc-js channels). */
const MAX_RECEIVE = 64 * 1024 * 1024;

/**
 * Open streams above which a new call's frames wait for one zero-delay
 * timer (shared by every call started meanwhile) instead of a write each.
 */
const CORK_STREAMS = 8;

/** `grpc-timeout` as a literal header name without indexing (the value follows). */
const TIMEOUT_NAME = new Uint8Array([
  0x00,
  12,
  ...new TextEncoder().encode("grpc-timeout"),
]);

function percentDecode(s: string): string {
  if (!s.includes("%")) return s;
  try {
    return decodeURIComponent(s);
  } catch {
    return s;
  }
}

/**
 * One unary call: created by {@linkcode H2Channel.call}, cancelled with
 * {@linkcode UnaryCall.cancel}.
 */
export class UnaryCall {
  /** Stream id once started (0 while waiting). */
  id = 0;
  /** Epoch ms after which the call fails with DEADLINE_EXCEEDED (0: none). */
  readonly deadline: number;
  /** The framed request (see {@linkcode REQUEST_PREFIX}). */
  body: Uint8Array;
  /** Bytes of `body` sent so far. */
  sent = 0;
  /** The stream's send window. */
  window = 0;
  /** Response bytes so far. */
  chunks: Uint8Array[] = [];
  received = 0;
  status = -1;
  message = "";
  httpStatus = "";
  done = false;
  session: H2Session | undefined;
  readonly path: string;
  /** Extra request headers, HPACK-encoded (custom metadata). */
  readonly metadata: Uint8Array | undefined;
  readonly #cb: UnaryCallback;

  /** Use {@linkcode H2Channel.call}. */
  constructor(
    path: string,
    body: Uint8Array,
    deadline: number,
    cb: UnaryCallback,
    metadata?: Uint8Array,
  ) {
    this.path = path;
    this.body = body;
    this.deadline = deadline;
    this.#cb = cb;
    this.metadata = metadata?.length ? metadata : undefined;
  }

  /** Ends the call with `error` or `message` (once). */
  settle(error: GrpcStatusError | null, message: Uint8Array | null): void {
    if (this.done) return;
    this.done = true;
    this.chunks = [];
    this.#cb(error, message);
  }

  /** Cancels the call: the stream is reset, the callback gets CANCELLED. */
  cancel(): void {
    if (this.done) return;
    if (this.session) this.session.reset(this, GrpcCode.CANCELLED, "cancelled");
    else {this.settle(
        new GrpcStatusError(GrpcCode.CANCELLED, "cancelled"),
        null,
      );}
  }
}

/** Where to connect. */
export type H2Target =
  | { transport: "unix"; path: string }
  | { transport: "tcp"; hostname: string; port: number };

/** One HTTP/2 connection to a gRPC server. */
export class H2Session {
  readonly #conn: Deno.Conn;
  readonly #decoder = new HpackDecoder();
  readonly #streams = new Map<number, UnaryCall>();
  readonly #waiting: UnaryCall[] = [];
  readonly #blocks = new Map<string, Uint8Array>();
  #nextId = 1;
  #maxConcurrent = Infinity;
  #peerWindow = DEFAULT_WINDOW;
  #connWindow = DEFAULT_WINDOW;
  #peerMaxFrame = 16384;
  #recvUnacked = 0;
  #out: Uint8Array[] = [];
  #writing = false;
  /** PING and SETTINGS acks queued since the last write began. */
  #acks = 0;
  #flushSoon = false;
  #closed = false;
  #goaway = false;
  #refed = true;
  #timer: ReturnType<typeof setTimeout> | undefined;
  #timerAt = Infinity;
  /** A header block split over CONTINUATION frames. */
  readonly #block = new HeaderBlockAssembler();
  readonly #onClose: () => void;

  private constructor(conn: Deno.Conn, onClose: () => void) {
    this.#conn = conn;
    this.#onClose = onClose;
    this.#send(PREFACE);
    this.#send(settingsFrame([
      [S_ENABLE_PUSH, 0],
      [S_INITIAL_WINDOW_SIZE, MAX_WINDOW],
      [S_MAX_FRAME_SIZE, OUR_MAX_FRAME],
    ]));
    this.#send(windowUpdateFrame(0, MAX_WINDOW - DEFAULT_WINDOW));
    this.#setRef(false);
    this.#readLoop();
  }

  /** Connects to `target` and starts the HTTP/2 connection. */
  static async connect(
    target: H2Target,
    onClose: () => void = () => {},
  ): Promise<H2Session> {
    const conn = target.transport === "unix"
      ? await Deno.connect({ transport: "unix", path: target.path })
      : await Deno.connect({ hostname: target.hostname, port: target.port });
    if (target.transport === "tcp") (conn as Deno.TcpConn).setNoDelay(true);
    return new H2Session(conn, onClose);
  }

  /** Whether new calls may start here (not closed, no GOAWAY, ids left). */
  get usable(): boolean {
    return !this.#closed && !this.#goaway && this.#nextId < 2 ** 31 - 2;
  }

  /** Starts `call` (or queues it behind the peer's stream limit). */
  start(call: UnaryCall): void {
    call.session = this;
    if (!this.usable) {
      call.settle(
        new GrpcStatusError(GrpcCode.UNAVAILABLE, "connection closed"),
        null,
      );
      return;
    }
    if (call.deadline) this.#armTimer(call.deadline);
    if (this.#streams.size >= this.#maxConcurrent) {
      this.#waiting.push(call);
      return;
    }
    this.#open(call);
  }

  /** Closes the connection; open calls fail with UNAVAILABLE. */
  close(): void {
    if (this.#closed) return;
    this.#closed = true;
    try {
      this.#conn.close();
    } catch { /* closed */ }
    this.#failAll("connection closed");
  }

  #setRef(ref: boolean): void {
    if (ref === this.#refed || this.#closed) return;
    this.#refed = ref;
    try {
      if (ref) this.#conn.ref();
      else this.#conn.unref();
    } catch { /* closed */ }
  }

  #headerBlock(path: string): Uint8Array {
    let block = this.#blocks.get(path);
    if (!block) {
      block = encodeHeaders([
        [":method", "POST"],
        [":scheme", "http"],
        [":path", path],
        [":authority", "localhost"],
        ["content-type", "application/grpc"],
        ["te", "trailers"],
      ]);
      this.#blocks.set(path, block);
    }
    return block;
  }

  #open(call: UnaryCall): void {
    const id = call.id = this.#nextId;
    this.#nextId += 2;
    this.#streams.set(id, call);
    call.window = this.#peerWindow;
    if (this.#streams.size === 1) this.#setRef(true);
    const block = this.#headerBlock(call.path);
    // grpc-timeout, as a literal without indexing: name, then "<ms>m".
    const timeout = call.deadline
      ? String(
        Math.min(
          99_999_999,
          Math.max(1, Math.ceil(call.deadline - Date.now())),
        ),
      )
      : "";
    const meta = call.metadata;
    const extra = (timeout ? TIMEOUT_NAME.length + 2 + timeout.length : 0) +
      (meta?.length ?? 0);
    const headers = new Uint8Array(9 + block.length + extra);
    frameHeader(headers, 0, block.length + extra, T_HEADERS, F_END_HEADERS, id);
    headers.set(block, 9);
    if (meta) headers.set(meta, headers.length - meta.length);
    if (timeout) {
      let at = 9 + block.length;
      headers.set(TIMEOUT_NAME, at);
      at += TIMEOUT_NAME.length;
      headers[at++] = timeout.length + 1;
      for (let i = 0; i < timeout.length; i++) {
        headers[at++] = timeout.charCodeAt(i);
      }
      headers[at] = 0x6d; // "m"
    }
    this.#out.push(headers);
    const body = call.body;
    const length = body.length - REQUEST_PREFIX;
    writeGrpcPrefix(body, 9, length);
    call.sent = 9;
    this.#pump(call);
    // Under load (many streams open) calls started in the next few turns
    // share one write, made from one zero-delay timer; idle, it goes now.
    if (this.#streams.size > CORK_STREAMS) this.#flushLater();
    else this.#flush();
  }

  /** Sends what the windows allow of `call`'s body. */
  #pump(call: UnaryCall): void {
    const body = call.body;
    while (call.sent < body.length) {
      const left = body.length - call.sent;
      const n = Math.min(
        left,
        call.window,
        this.#connWindow,
        this.#peerMaxFrame,
      );
      if (n <= 0) return;
      const last = n === left;
      if (call.sent === 9 && last) {
        // All of it in one frame: the reserved prefix takes its header.
        frameHeader(body, 0, n, T_DATA, F_END_STREAM, call.id);
        this.#out.push(body);
      } else {
        const f = new Uint8Array(9 + n);
        frameHeader(f, 0, n, T_DATA, last ? F_END_STREAM : 0, call.id);
        f.set(body.subarray(call.sent, call.sent + n), 9);
        this.#out.push(f);
      }
      call.sent += n;
      call.window -= n;
      this.#connWindow -= n;
    }
  }

  #send(bytes: Uint8Array): void {
    this.#out.push(bytes);
    this.#flush();
  }

  /** Writes what is queued from one zero-delay timer (once per turn). */
  #flushLater(): void {
    if (this.#flushSoon) return;
    this.#flushSoon = true;
    const timer = setTimeout(() => {
      this.#flushSoon = false;
      this.#flush();
    }, 0);
    Deno.unrefTimer(timer);
  }

  /** Queues an acknowledgement; too many unwritten is a connection error. */
  #ack(bytes: Uint8Array): void {
    if (++this.#acks > MAX_QUEUED_ACKS) {
      throw new Error("PING/SETTINGS flood: acknowledgements not read");
    }
    this.#out.push(bytes);
  }

  async #flush(): Promise<void> {
    if (this.#writing || this.#closed) return;
    this.#writing = true;
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
    } catch (e) {
      this.#lost(`write failed: ${(e as Error).message}`);
    } finally {
      this.#writing = false;
    }
  }

  async #readLoop(): Promise<void> {
    let why = "connection closed by the server";
    try {
      await readFrames(
        this.#conn,
        (type, flags, id, payload) => this.#frame(type, flags, id, payload),
      );
    } catch (e) {
      why = `connection failed: ${(e as Error).message}`;
    }
    this.#lost(why);
  }

  #lost(why: string): void {
    if (!this.#closed) {
      this.#closed = true;
      try {
        this.#conn.close();
      } catch { /* closed */ }
    }
    this.#failAll(why);
  }

  #failAll(why: string): void {
    clearTimeout(this.#timer);
    const calls = [...this.#streams.values(), ...this.#waiting];
    this.#streams.clear();
    this.#waiting.length = 0;
    for (const c of calls) {
      c.settle(new GrpcStatusError(GrpcCode.UNAVAILABLE, why), null);
    }
    try {
      this.#onClose();
    } catch { /* the owner's problem */ }
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
        if (flags & F_END_HEADERS) {
          return this.#headers(id, (flags & F_END_STREAM) !== 0, block);
        }
        this.#block.begin(id, (flags & F_END_STREAM) !== 0, block);
        return;
      }
      case T_CONTINUATION: {
        // Capped (a CONTINUATION flood is a connection error).
        const block = this.#block.continuation(flags, id, payload);
        if (block) this.#headers(id, this.#block.endStream, block);
        return;
      }
      case T_RST: {
        const call = this.#streams.get(id);
        if (!call) return;
        const code = u32(payload, 0);
        if (code === E_REFUSED_STREAM && !call.done) {
          // REFUSED_STREAM: the server did not process it (its stream
          // limit, before its SETTINGS reached us): queue it again.
          this.#streams.delete(id);
          this.#maxConcurrent = Math.min(
            this.#maxConcurrent,
            Math.max(1, this.#streams.size),
          );
          call.sent = 0;
          call.received = 0;
          call.chunks = [];
          this.#waiting.unshift(call);
          this.#startWaiting();
          return;
        }
        this.#end(
          call,
          new GrpcStatusError(
            code === E_CANCEL
              ? GrpcCode.CANCELLED
              : code === E_REFUSED_STREAM
              ? GrpcCode.UNAVAILABLE
              : GrpcCode.INTERNAL,
            `stream reset by the server (HTTP/2 error ${code})`,
          ),
          null,
        );
        return;
      }
      case T_SETTINGS:
        if (flags & F_ACK) return;
        readSettings(payload, (key, value) => {
          if (key === S_MAX_CONCURRENT_STREAMS) this.#maxConcurrent = value;
          else if (key === S_INITIAL_WINDOW_SIZE) {
            const delta = value - this.#peerWindow;
            this.#peerWindow = value;
            for (const c of this.#streams.values()) {
              c.window = growWindow(c.window, delta);
            }
          } else if (key === S_MAX_FRAME_SIZE) this.#peerMaxFrame = value;
        });
        this.#ack(frame(T_SETTINGS, F_ACK, 0));
        this.#pumpAll();
        this.#startWaiting();
        this.#flush();
        return;
      case T_PING:
        // Grpc-go pings (BDP) with each request's data; the ack
        // goes with the next request when one follows in this turn, else
        // on its own one turn later: one write per call, not two.
        if (!(flags & F_ACK)) {
          this.#ack(frame(T_PING, F_ACK, 0, payload));
          this.#flushLater();
        }
        return;
      case T_GOAWAY: {
        this.#goaway = true;
        const last = u32(payload, 0) & 0x7fffffff;
        for (const c of [...this.#streams.values()]) {
          if (c.id > last) {
            this.#end(
              c,
              new GrpcStatusError(GrpcCode.UNAVAILABLE, "server sent GOAWAY"),
              null,
            );
          }
        }
        for (const c of this.#waiting.splice(0)) {
          c.settle(
            new GrpcStatusError(GrpcCode.UNAVAILABLE, "server sent GOAWAY"),
            null,
          );
        }
        if (this.#streams.size === 0) this.close();
        return;
      }
      case T_WINDOW: {
        const inc = readWindowIncrement(payload);
        if (id === 0) {
          this.#connWindow = growWindow(this.#connWindow, inc);
          this.#pumpAll();
        } else {
          const call = this.#streams.get(id);
          if (!call) return;
          call.window = growWindow(call.window, inc);
          this.#pump(call);
        }
        this.#flush();
        return;
      }
      default:
        return; // PRIORITY, PUSH_PROMISE (disabled), unknown: ignored
    }
  }

  #pumpAll(): void {
    for (const c of this.#streams.values()) {
      if (c.sent < c.body.length) this.#pump(c);
    }
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
    const call = this.#streams.get(id);
    if (!call) return;
    if (data.length) {
      call.received += data.length;
      if (call.received > MAX_RECEIVE + 5) {
        this.reset(
          call,
          GrpcCode.RESOURCE_EXHAUSTED,
          `response larger than ${MAX_RECEIVE} bytes`,
        );
        return;
      }
      call.chunks.push(data.slice());
    }
    if (flags & F_END_STREAM) this.#finish(call);
  }

  #headers(id: number, endStream: boolean, block: Uint8Array): void {
    // Decoded whatever the stream: the table must stay in step.
    const fields: HeaderField[] = this.#decoder.decode(block);
    const call = this.#streams.get(id);
    if (!call) return;
    for (const [name, value] of fields) {
      if (name === "grpc-status") call.status = Number(value);
      else if (name === "grpc-message") call.message = percentDecode(value);
      else if (name === ":status") call.httpStatus = value;
    }
    if (endStream) this.#finish(call);
  }

  #finish(call: UnaryCall): void {
    if (call.status === GrpcCode.OK) {
      const data = concat(call.chunks);
      const fault = grpcMessageFault(data);
      if (fault !== GRPC_MESSAGE_FAULT.NONE) {
        return this.#end(
          call,
          new GrpcStatusError(
            GrpcCode.INTERNAL,
            fault === GRPC_MESSAGE_FAULT.SHORT
              ? "response without a message"
              : fault === GRPC_MESSAGE_FAULT.COMPRESSED
              ? "compressed response (not negotiated)"
              : "malformed response message",
          ),
          null,
        );
      }
      return this.#end(call, null, data.subarray(5));
    }
    if (call.status < 0) {
      return this.#end(
        call,
        new GrpcStatusError(
          call.httpStatus && call.httpStatus !== "200"
            ? GrpcCode.UNAVAILABLE
            : GrpcCode.INTERNAL,
          `response without grpc-status (HTTP ${call.httpStatus || "?"})`,
        ),
        null,
      );
    }
    this.#end(call, new GrpcStatusError(call.status, call.message), null);
  }

  #end(
    call: UnaryCall,
    error: GrpcStatusError | null,
    message: Uint8Array | null,
  ): void {
    this.#streams.delete(call.id);
    if (this.#streams.size === 0) {
      this.#setRef(false);
      if (this.#goaway) this.close();
    }
    call.settle(error, message);
    this.#startWaiting();
  }

  #startWaiting(): void {
    while (
      this.#waiting.length && this.#streams.size < this.#maxConcurrent &&
      !this.#closed
    ) {
      const next = this.#waiting.shift()!;
      if (!next.done) this.#open(next);
    }
  }

  /** Resets `call`'s stream and ends it with status `code`. */
  reset(call: UnaryCall, code: number, why: string): void {
    if (call.done) return;
    const error = new GrpcStatusError(code, why);
    if (this.#streams.get(call.id) === call) {
      this.#send(rstStreamFrame(call.id, E_CANCEL));
      this.#end(call, error, null);
      return;
    }
    const i = this.#waiting.indexOf(call);
    if (i >= 0) this.#waiting.splice(i, 1);
    call.settle(error, null);
  }

  #armTimer(at: number): void {
    if (at >= this.#timerAt) return;
    clearTimeout(this.#timer);
    this.#timerAt = at;
    const timer = setTimeout(
      () => this.#expire(),
      Math.max(0, at - Date.now()),
    );
    Deno.unrefTimer(timer);
    this.#timer = timer;
  }

  #expire(): void {
    this.#timer = undefined;
    this.#timerAt = Infinity;
    const now = Date.now();
    let next = Infinity;
    for (const c of [...this.#streams.values(), ...this.#waiting]) {
      if (!c.deadline) continue;
      if (c.deadline <= now) {
        this.reset(c, GrpcCode.DEADLINE_EXCEEDED, "deadline exceeded");
      } else if (c.deadline < next) next = c.deadline;
    }
    if (next < Infinity) this.#armTimer(next);
  }
}

/**
 * One unary call of `path` with request `message`, as a promise of the
 * response message (rejects with a {@linkcode GrpcStatusError}).
 *
 * @example
 * ```ts ignore
 * const reply = await unaryCall(channel, "/grpc.health.v1.Health/Check", request, Date.now() + 1000);
 * ```
 */
export function unaryCall(
  channel: H2Channel,
  path: string,
  message: Uint8Array,
  deadline: number,
): Promise<Uint8Array> {
  const body = new Uint8Array(REQUEST_PREFIX + message.length);
  body.set(message, REQUEST_PREFIX);
  return new Promise((resolve, reject) =>
    channel.call(path, body, deadline, (e, m) => e ? reject(e) : resolve(m!))
  );
}

/**
 * Unary calls to one gRPC server over one HTTP/2 connection at a time: a
 * connection that closed or got GOAWAY is replaced on the next call.
 *
 * @example
 * ```ts ignore
 * const channel = new H2Channel({ transport: "unix", path: "/run/p.sock" });
 * const body = new Uint8Array(REQUEST_PREFIX + message.length);
 * body.set(message, REQUEST_PREFIX);
 * channel.call("/pkg.Service/Method", body, Date.now() + 1000, (err, reply) => {});
 * ```
 */
export class H2Channel {
  readonly #target: H2Target;
  #session: H2Session | undefined;
  #connecting: Promise<H2Session> | undefined;
  #closed = false;

  /** A channel to `target`; it connects on first use (or {@linkcode connect}). */
  constructor(target: H2Target) {
    this.#target = target;
  }

  /** Connects now (the first call does otherwise). */
  connect(): Promise<H2Session> {
    if (this.#session?.usable) return Promise.resolve(this.#session);
    if (this.#closed) {
      return Promise.reject(
        new GrpcStatusError(GrpcCode.UNAVAILABLE, "channel closed"),
      );
    }
    this.#connecting ??= H2Session.connect(this.#target).then((s) => {
      this.#connecting = undefined;
      if (this.#closed) s.close();
      else this.#session = s;
      return s;
    }, (e) => {
      this.#connecting = undefined;
      throw new GrpcStatusError(
        GrpcCode.UNAVAILABLE,
        `cannot connect: ${(e as Error).message}`,
      );
    });
    return this.#connecting;
  }

  /**
   * Starts a unary call of `path` (`/package.Service/Method`) with `body`:
   * the request message after {@linkcode REQUEST_PREFIX} free bytes (the
   * buffer is used for the frames and must not be reused). `cb` gets the
   * response message or a {@linkcode GrpcStatusError}, once. `metadata`:
   * extra request headers as an HPACK block (`encodeHeaders` of
   * `hpack.ts`), such as the SDK's `gk-call-id`.
   */
  call(
    path: string,
    body: Uint8Array,
    deadline: number,
    cb: UnaryCallback,
    metadata?: Uint8Array,
  ): UnaryCall {
    const call = new UnaryCall(path, body, deadline, cb, metadata);
    const s = this.#session;
    if (s?.usable) s.start(call);
    else {
      this.connect().then(
        (session) => {
          if (!call.done) session.start(call);
        },
        (e) => call.settle(e as GrpcStatusError, null),
      );
    }
    return call;
  }

  /** Closes the connection; open calls fail with UNAVAILABLE. */
  close(): void {
    this.#closed = true;
    this.#session?.close();
    this.#session = undefined;
  }
}
