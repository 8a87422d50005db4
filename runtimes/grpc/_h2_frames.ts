/**
 * HTTP/2 framing shared by the host's gRPC client (`h2_client.ts`) and the
 * plugin SDK's gRPC server (`h2_server.ts`): frame type, flag, setting and
 * error-code constants, the frame reader (preface and frame-size checked),
 * frame encoders, the CONTINUATION-capped header-block assembler and the
 * gRPC message (5-byte prefix) framing. Each side keeps its own connection
 * state machine.
 *
 * Private to `runtimes/grpc/`: the encoders that take a buffer write into
 * the caller's buffer, so the client's hot path allocates nothing here.
 *
 * @module
 */

/** The client connection preface (RFC 9113 §3.4). */
export const PREFACE: Uint8Array = new TextEncoder().encode(
  "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n",
);
/** The largest flow-control window. */
export const MAX_WINDOW = 2 ** 31 - 1;
/** The initial flow-control window of a connection and of a stream. */
export const DEFAULT_WINDOW = 65535;
/** The largest frame payload we accept (and the default SETTINGS_MAX_FRAME_SIZE). */
export const OUR_MAX_FRAME = 16384;
/** The largest header block (HEADERS + CONTINUATION frames) accepted. */
export const MAX_HEADER_BLOCK = 64 * 1024;
/** Bytes of a frame header. */
export const FRAME_HEADER = 9;
/** The largest SETTINGS_MAX_FRAME_SIZE a peer may announce (RFC 9113 §6.5.2). */
export const MAX_FRAME_LIMIT = 2 ** 24 - 1;
/**
 * PING and SETTINGS acknowledgements queued while a write is in flight
 * above which the peer is cut off: one that floods them and never reads
 * (RFC 9113 §10.5) would grow the queue without end.
 */
export const MAX_QUEUED_ACKS = 10_000;

/** Frame type DATA. */
export const T_DATA = 0;
/** Frame type HEADERS. */
export const T_HEADERS = 1;
/** Frame type RST_STREAM. */
export const T_RST = 3;
/** Frame type SETTINGS. */
export const T_SETTINGS = 4;
/** Frame type PING. */
export const T_PING = 6;
/** Frame type GOAWAY. */
export const T_GOAWAY = 7;
/** Frame type WINDOW_UPDATE. */
export const T_WINDOW = 8;
/** Frame type CONTINUATION. */
export const T_CONTINUATION = 9;

/** Flag END_STREAM (DATA, HEADERS). */
export const F_END_STREAM = 1;
/** Flag ACK (SETTINGS, PING). */
export const F_ACK = 1;
/** Flag END_HEADERS (HEADERS, CONTINUATION). */
export const F_END_HEADERS = 4;
/** Flag PADDED (DATA, HEADERS). */
export const F_PADDED = 8;
/** Flag PRIORITY (HEADERS). */
export const F_PRIORITY = 0x20;

/** Setting SETTINGS_ENABLE_PUSH. */
export const S_ENABLE_PUSH = 0x2;
/** Setting SETTINGS_MAX_CONCURRENT_STREAMS. */
export const S_MAX_CONCURRENT_STREAMS = 0x3;
/** Setting SETTINGS_INITIAL_WINDOW_SIZE. */
export const S_INITIAL_WINDOW_SIZE = 0x4;
/** Setting SETTINGS_MAX_FRAME_SIZE. */
export const S_MAX_FRAME_SIZE = 0x5;

/** Error code PROTOCOL_ERROR (RST_STREAM, GOAWAY). */
export const E_PROTOCOL_ERROR = 1;
/** Error code REFUSED_STREAM. */
export const E_REFUSED_STREAM = 7;
/** Error code CANCEL. */
export const E_CANCEL = 8;

/** The big-endian unsigned 32-bit integer at `b[at]`. */
export function u32(b: Uint8Array, at: number): number {
  return ((b[at]! << 24) | (b[at + 1]! << 16) | (b[at + 2]! << 8) |
    b[at + 3]!) >>> 0;
}

/** Writes `value` as a big-endian unsigned 32-bit integer at `b[at]`. */
export function setU32(b: Uint8Array, at: number, value: number): void {
  b[at] = value >>> 24;
  b[at + 1] = (value >>> 16) & 0xff;
  b[at + 2] = (value >>> 8) & 0xff;
  b[at + 3] = value & 0xff;
}

/** `parts` as one array (the part itself when there is one). */
export function concat(parts: readonly Uint8Array[]): Uint8Array {
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

/** Writes a 9-byte frame header into `buf` at `at`. */
export function frameHeader(
  buf: Uint8Array,
  at: number,
  length: number,
  type: number,
  flags: number,
  stream: number,
): void {
  buf[at] = length >>> 16;
  buf[at + 1] = (length >>> 8) & 0xff;
  buf[at + 2] = length & 0xff;
  buf[at + 3] = type;
  buf[at + 4] = flags;
  buf[at + 5] = (stream >>> 24) & 0x7f;
  buf[at + 6] = (stream >>> 16) & 0xff;
  buf[at + 7] = (stream >>> 8) & 0xff;
  buf[at + 8] = stream & 0xff;
}

/** A new frame of `type` with `payload` (copied). */
export function frame(
  type: number,
  flags: number,
  stream: number,
  payload: Uint8Array = new Uint8Array(),
): Uint8Array {
  const f = new Uint8Array(FRAME_HEADER + payload.length);
  frameHeader(f, 0, payload.length, type, flags, stream);
  f.set(payload, FRAME_HEADER);
  return f;
}

/** A SETTINGS frame with `settings` as `[identifier, value]` pairs, in order. */
export function settingsFrame(
  settings: readonly (readonly [id: number, value: number])[],
): Uint8Array {
  const f = new Uint8Array(FRAME_HEADER + 6 * settings.length);
  frameHeader(f, 0, 6 * settings.length, T_SETTINGS, 0, 0);
  let at = FRAME_HEADER;
  for (const [id, value] of settings) {
    f[at] = id >>> 8;
    f[at + 1] = id & 0xff;
    setU32(f, at + 2, value);
    at += 6;
  }
  return f;
}

/** A WINDOW_UPDATE frame for `stream` (0: the connection). */
export function windowUpdateFrame(
  stream: number,
  increment: number,
): Uint8Array {
  const f = new Uint8Array(FRAME_HEADER + 4);
  frameHeader(f, 0, 4, T_WINDOW, 0, stream);
  setU32(f, FRAME_HEADER, increment);
  return f;
}

/** An RST_STREAM frame ending `stream` with error `code`. */
export function rstStreamFrame(stream: number, code: number): Uint8Array {
  const f = new Uint8Array(FRAME_HEADER + 4);
  frameHeader(f, 0, 4, T_RST, 0, stream);
  setU32(f, FRAME_HEADER, code);
  return f;
}

/** A GOAWAY frame: `lastStream` the last stream processed, error `code`. */
export function goawayFrame(lastStream: number, code: number): Uint8Array {
  const f = new Uint8Array(FRAME_HEADER + 8);
  frameHeader(f, 0, 8, T_GOAWAY, 0, 0);
  setU32(f, FRAME_HEADER, lastStream);
  setU32(f, FRAME_HEADER + 4, code);
  return f;
}

/**
 * Gets one frame: `payload` is a view into the read buffer, valid only
 * during the call. A throw ends {@linkcode readFrames} with that error.
 */
export type FrameHandler = (
  type: number,
  flags: number,
  stream: number,
  payload: Uint8Array,
) => void;

/** Options of {@linkcode readFrames}. */
export interface ReadFramesOptions {
  /** Expect (and check) the client connection preface first: the server side. @default false */
  preface?: boolean;
}

/**
 * Reads frames from `conn` and hands each to `onFrame` until the peer
 * closes (resolves) or something fails (rejects): a read error, a bad
 * preface, a frame larger than {@linkcode OUR_MAX_FRAME}, or a throw of
 * `onFrame`.
 *
 * @example
 * ```ts ignore
 * await readFrames(conn, (type, flags, stream, payload) => {}, { preface: true });
 * ```
 */
export async function readFrames(
  conn: Deno.Conn,
  onFrame: FrameHandler,
  options?: ReadFramesOptions,
): Promise<void> {
  let buf = new Uint8Array(64 * 1024);
  let len = 0;
  let preface = !options?.preface;
  for (;;) {
    if (len === buf.length) {
      const bigger = new Uint8Array(buf.length * 2);
      bigger.set(buf);
      buf = bigger;
    }
    const n = await conn.read(buf.subarray(len));
    if (n === null) return;
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
      onFrame(
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
}

/**
 * Hands each setting of a SETTINGS frame's `payload` to `onSetting`, in
 * order, after checking it (RFC 9113 §6.5): throws (a connection error) on
 * a payload that is not whole settings, an INITIAL_WINDOW_SIZE above
 * {@linkcode MAX_WINDOW} or a MAX_FRAME_SIZE outside 16384 to
 * {@linkcode MAX_FRAME_LIMIT}, so a peer's windows and frame size stay
 * within what a frame header can carry.
 */
export function readSettings(
  payload: Uint8Array,
  onSetting: (id: number, value: number) => void,
): void {
  if (payload.length % 6) throw new Error("SETTINGS frame of partial settings");
  for (let p = 0; p < payload.length; p += 6) {
    const id = (payload[p]! << 8) | payload[p + 1]!;
    const value = u32(payload, p + 2);
    if (id === S_INITIAL_WINDOW_SIZE && value > MAX_WINDOW) {
      throw new Error(`initial window ${value} exceeds ${MAX_WINDOW}`);
    }
    if (
      id === S_MAX_FRAME_SIZE &&
      (value < OUR_MAX_FRAME || value > MAX_FRAME_LIMIT)
    ) {
      throw new Error(`max frame size ${value} out of range`);
    }
    onSetting(id, value);
  }
}

/**
 * The increment of a WINDOW_UPDATE frame's `payload`, checked (RFC 9113
 * §6.9): throws (a connection error) on a payload that is not 4 bytes or
 * an increment of 0. Both peers treat a stream's bad update as an error of
 * the whole connection too: their only peer is the other end of a plugin
 * process.
 */
export function readWindowIncrement(payload: Uint8Array): number {
  if (payload.length !== 4) {
    throw new Error(`WINDOW_UPDATE of ${payload.length} bytes`);
  }
  const inc = u32(payload, 0) & 0x7fffffff;
  if (inc === 0) throw new Error("WINDOW_UPDATE with an increment of 0");
  return inc;
}

/**
 * `window` grown by `inc`; throws (FLOW_CONTROL_ERROR, RFC 9113 §6.9.1)
 * when it would pass {@linkcode MAX_WINDOW}.
 */
export function growWindow(window: number, inc: number): number {
  const grown = window + inc;
  if (grown > MAX_WINDOW) {
    throw new Error(`window ${grown} exceeds ${MAX_WINDOW}`);
  }
  return grown;
}

/**
 * The data of a DATA frame's `payload` (padding removed), or `null` when
 * the padding is longer than the frame.
 */
export function dataPayload(
  flags: number,
  payload: Uint8Array,
): Uint8Array | null {
  if (!(flags & F_PADDED)) return payload;
  const end = payload.length - (payload[0] ?? Infinity);
  return end < 1 ? null : payload.subarray(1, end);
}

/**
 * The header block fragment of a HEADERS frame's `payload` (padding and
 * priority removed), or `null` when the padding is longer than the frame.
 */
export function headersFragment(
  flags: number,
  payload: Uint8Array,
): Uint8Array | null {
  let p = 0;
  let end = payload.length;
  if (flags & F_PADDED) end -= payload[p++]!;
  if (flags & F_PRIORITY) p += 5;
  if (end < p) return null;
  return payload.subarray(p, end);
}

/**
 * A header block split over HEADERS and CONTINUATION frames, collected
 * up to {@linkcode MAX_HEADER_BLOCK} bytes: a peer that never ends its
 * header block (a CONTINUATION flood) is a connection error, not memory
 * without end.
 */
export class HeaderBlockAssembler {
  #stream = 0;
  #endStream = false;
  #parts: Uint8Array[] | undefined;
  #size = 0;

  /** Whether a block is waiting for CONTINUATION frames. */
  get pending(): boolean {
    return this.#parts !== undefined;
  }

  /** Whether the HEADERS frame of the block last started had END_STREAM. */
  get endStream(): boolean {
    return this.#endStream;
  }

  /** Starts a block of `stream` from a HEADERS frame without END_HEADERS. */
  begin(stream: number, endStream: boolean, fragment: Uint8Array): void {
    this.#stream = stream;
    this.#endStream = endStream;
    this.#parts = [fragment.slice()];
    this.#size = fragment.length;
  }

  /**
   * Adds a CONTINUATION frame: returns the whole block once `flags` has
   * END_HEADERS, `undefined` before. Throws on a CONTINUATION frame no
   * block waits for and on a block larger than {@linkcode MAX_HEADER_BLOCK}.
   */
  continuation(
    flags: number,
    stream: number,
    payload: Uint8Array,
  ): Uint8Array | undefined {
    const parts = this.#parts;
    if (!parts || this.#stream !== stream) {
      throw new Error("unexpected CONTINUATION frame");
    }
    parts.push(payload.slice());
    this.#size += payload.length;
    if (this.#size > MAX_HEADER_BLOCK) {
      throw new Error(`header block larger than ${MAX_HEADER_BLOCK} bytes`);
    }
    if (!(flags & F_END_HEADERS)) return undefined;
    this.#parts = undefined;
    return concat(parts);
  }
}

/** Bytes before a gRPC message: compressed flag, then length. */
export const GRPC_PREFIX = 5;

/** Writes an uncompressed gRPC message prefix for `length` bytes at `buf[at]`. */
export function writeGrpcPrefix(
  buf: Uint8Array,
  at: number,
  length: number,
): void {
  buf[at] = 0;
  setU32(buf, at + 1, length);
}

/** `message` framed as an uncompressed gRPC message (a new array). */
export function grpcMessage(message: Uint8Array): Uint8Array {
  const out = new Uint8Array(GRPC_PREFIX + message.length);
  writeGrpcPrefix(out, 0, message.length);
  out.set(message, GRPC_PREFIX);
  return out;
}

/** What {@linkcode grpcMessageFault} found wrong with a gRPC message. */
export const GRPC_MESSAGE_FAULT = Object.freeze(
  {
    /** A well-formed uncompressed message. */
    NONE: 0,
    /** Fewer than 5 bytes: no message. */
    SHORT: 1,
    /** The compressed flag is set (compression is never negotiated). */
    COMPRESSED: 2,
    /** The prefix's length is not the bytes that follow. */
    LENGTH: 3,
  } as const,
);

/**
 * Checks that `data` is exactly one uncompressed gRPC message: one of
 * {@linkcode GRPC_MESSAGE_FAULT} (`NONE`, 0, when it is).
 */
export function grpcMessageFault(data: Uint8Array): number {
  if (data.length < GRPC_PREFIX) return GRPC_MESSAGE_FAULT.SHORT;
  if (data[0] !== 0) return GRPC_MESSAGE_FAULT.COMPRESSED;
  if (u32(data, 1) !== data.length - GRPC_PREFIX) {
    return GRPC_MESSAGE_FAULT.LENGTH;
  }
  return GRPC_MESSAGE_FAULT.NONE;
}
