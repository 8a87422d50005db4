// A minimal HTTP/1.1 client over one raw TCP connection (Deno.connect), for
// load and fault tests that must control connections exactly: one request
// at a time on a keep-alive connection, or one connection per request. It
// reads `Content-Length` and chunked bodies; loopback only.

/** One response as read off the wire. */
export interface Http1Response {
  /** Status code. */
  status: number;
  /** Headers (lower-cased names). */
  headers: Headers;
  /** The body, decoded as UTF-8. */
  body: string;
  /** Whether the server said `Connection: close` or closed after it. */
  closed: boolean;
}

/** The server closed the connection before a whole response came. */
export class ConnectionClosedError extends Error {
  /** Creates the error. */
  constructor(what: string) {
    super(`Cannot read the response: the connection closed ${what}`);
    this.name = "ConnectionClosedError";
  }
}

const encoder = new TextEncoder();
const decoder = new TextDecoder();

function indexOf(hay: Uint8Array, needle: Uint8Array, from = 0): number {
  outer: for (let i = from; i <= hay.length - needle.length; i++) {
    for (let j = 0; j < needle.length; j++) {
      if (hay[i + j] !== needle[j]) continue outer;
    }
    return i;
  }
  return -1;
}

const CRLF = encoder.encode("\r\n");
const HEAD_END = encoder.encode("\r\n\r\n");

/** One keep-alive HTTP/1.1 connection. */
export class Http1Connection {
  readonly #conn: Deno.TcpConn;
  #buf: Uint8Array = new Uint8Array(0);
  #eof = false;
  readonly #host: string;

  private constructor(conn: Deno.TcpConn, host: string) {
    this.#conn = conn;
    this.#host = host;
  }

  /** Opens a connection to `baseUrl`'s host and port. */
  static async open(baseUrl: string): Promise<Http1Connection> {
    const u = new URL(baseUrl);
    const hostname = u.hostname.replace(/^\[|\]$/g, "");
    const conn = await Deno.connect({ hostname, port: Number(u.port) });
    return new Http1Connection(conn, u.host);
  }

  async #fill(): Promise<boolean> {
    if (this.#eof) return false;
    const chunk = new Uint8Array(64 * 1024);
    let n: number | null;
    try {
      n = await this.#conn.read(chunk);
    } catch (e) {
      if (e instanceof Deno.errors.ConnectionReset) n = null;
      else throw e;
    }
    if (n === null) {
      this.#eof = true;
      return false;
    }
    const next = new Uint8Array(this.#buf.length + n);
    next.set(this.#buf);
    next.set(chunk.subarray(0, n), this.#buf.length);
    this.#buf = next;
    return true;
  }

  #take(n: number): Uint8Array {
    const out = this.#buf.subarray(0, n);
    this.#buf = this.#buf.subarray(n);
    return out;
  }

  /**
   * Sends one request and reads its response. Rejects with
   * {@linkcode ConnectionClosedError} when the server closes first.
   */
  async request(
    path: string,
    options: { method?: string; headers?: Record<string, string> } = {},
  ): Promise<Http1Response> {
    const lines = [`${options.method ?? "GET"} ${path} HTTP/1.1`];
    lines.push(`host: ${this.#host}`);
    for (const [k, v] of Object.entries(options.headers ?? {})) {
      lines.push(`${k}: ${v}`);
    }
    try {
      await this.#conn.write(encoder.encode(lines.join("\r\n") + "\r\n\r\n"));
    } catch (e) {
      if (
        e instanceof Deno.errors.BrokenPipe ||
        e instanceof Deno.errors.ConnectionReset
      ) throw new ConnectionClosedError("before the request was sent");
      throw e;
    }
    let end: number;
    while ((end = indexOf(this.#buf, HEAD_END)) < 0) {
      if (!await this.#fill()) {
        throw new ConnectionClosedError("before the response headers");
      }
    }
    const head = decoder.decode(this.#take(end + 4)).split("\r\n");
    const status = Number(/^HTTP\/1\.[01] (\d{3})/.exec(head[0] ?? "")?.[1]);
    const headers = new Headers();
    for (const line of head.slice(1)) {
      const i = line.indexOf(":");
      if (i > 0) {
        headers.append(line.slice(0, i).trim(), line.slice(i + 1).trim());
      }
    }
    let body: Uint8Array;
    if (/chunked/i.test(headers.get("transfer-encoding") ?? "")) {
      const parts: Uint8Array[] = [];
      while (true) {
        let eol: number;
        while ((eol = indexOf(this.#buf, CRLF)) < 0) {
          if (!await this.#fill()) throw new ConnectionClosedError("mid-body");
        }
        const size = parseInt(decoder.decode(this.#take(eol + 2)), 16);
        while (this.#buf.length < size + 2) {
          if (!await this.#fill()) throw new ConnectionClosedError("mid-body");
        }
        parts.push(this.#take(size).slice());
        this.#take(2);
        if (size === 0) break;
      }
      body = new Uint8Array(parts.reduce((n, p) => n + p.length, 0));
      let at = 0;
      for (const p of parts) {
        body.set(p, at);
        at += p.length;
      }
    } else {
      const length = Number(headers.get("content-length") ?? "0");
      while (this.#buf.length < length) {
        if (!await this.#fill()) throw new ConnectionClosedError("mid-body");
      }
      body = this.#take(length).slice();
    }
    const close = /close/i.test(headers.get("connection") ?? "");
    return { status, headers, body: decoder.decode(body), closed: close };
  }

  /** Whether the server has closed the connection (reads until EOF or `ms`). */
  async closedWithin(ms: number): Promise<boolean> {
    let timer: ReturnType<typeof setTimeout> | undefined;
    const timeout = new Promise<"timeout">((resolve) => {
      timer = setTimeout(() => resolve("timeout"), ms);
    });
    try {
      while (true) {
        const r = await Promise.race([this.#fill(), timeout]);
        if (r === "timeout") return false;
        if (r === false) return true;
      }
    } finally {
      clearTimeout(timer);
    }
  }

  /** Closes the connection (idempotent). */
  close(): void {
    try {
      this.#conn.close();
    } catch { /* closed already */ }
  }
}

/**
 * One request on its own connection (`Connection: close`), bounded by
 * `timeoutMs`: the response, or the error (refused, closed, timed out).
 */
export async function requestOnce(
  baseUrl: string,
  path: string,
  options: { headers?: Record<string, string>; timeoutMs?: number } = {},
): Promise<Http1Response> {
  const conn = await Http1Connection.open(baseUrl);
  let timer: ReturnType<typeof setTimeout> | undefined;
  try {
    const timeout = new Promise<never>((_, reject) => {
      timer = setTimeout(() => {
        conn.close();
        reject(
          new Error(
            `Cannot get ${path}: no answer within ${options.timeoutMs} ms`,
          ),
        );
      }, options.timeoutMs ?? 30_000);
    });
    return await Promise.race([
      conn.request(path, {
        headers: { connection: "close", ...(options.headers ?? {}) },
      }),
      timeout,
    ]);
  } finally {
    clearTimeout(timer);
    conn.close();
  }
}
