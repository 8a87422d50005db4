/**
 * Parses go-plugin's handshake line,
 * `CORE-VERSION|APP-VERSION|NETWORK|ADDRESS|PROTOCOL[|CERT[|MUX]]`.
 *
 * @module
 */

/** The parsed handshake line. */
export interface Handshake {
  /** The negotiated application protocol version. */
  appVersion: number;
  /** `unix` or `tcp`. */
  network: "unix" | "tcp";
  /** Socket path (unix) or `127.0.0.1:<port>` (tcp). */
  address: string;
  /** Always `grpc` here. */
  protocol: "grpc";
}

/** A handshake line could not be accepted; `reason` classifies why. */
export class HandshakeLineError extends Error {
  /** `malformed`, `version`, `protocol` or `network`. */
  readonly reason: "malformed" | "version" | "protocol" | "network";

  /** Creates the error. */
  constructor(
    reason: "malformed" | "version" | "protocol" | "network",
    message: string,
  ) {
    super(message);
    this.name = "HandshakeLineError";
    this.reason = reason;
  }
}

/**
 * Parses and checks a handshake line against the protocol versions the host
 * offered. Accepts 5 fields, or 6 with an empty certificate (go-plugin 1.0
 * prints `1|1|unix|/tmp/plugin123|grpc|`), or 7 with a mux flag other than
 * `true`.
 *
 * @example
 * ```ts
 * import { parseHandshake } from "./handshake.ts";
 * parseHandshake("1|1|unix|/tmp/plugin1|grpc|", [1]).address; // "/tmp/plugin1"
 * ```
 */
export function parseHandshake(
  line: string,
  versions: readonly number[],
): Handshake {
  const text = line.replace(/\r?\n$/, "");
  const parts = text.split("|");
  if (parts.length < 5 || parts.length > 7) {
    throw new HandshakeLineError(
      "malformed",
      `Cannot accept handshake line: expected "1|<version>|unix|<path>|grpc", got ${
        JSON.stringify(text.slice(0, 200))
      }`,
    );
  }
  const [core, app, network, address, protocol, cert = "", mux = ""] = parts;
  if (core !== "1") {
    throw new HandshakeLineError(
      "version",
      `Cannot accept handshake line: unsupported core protocol version ${
        JSON.stringify(core)
      } (want 1)`,
    );
  }
  const appVersion = Number(app);
  if (!/^\d+$/.test(app!) || !versions.includes(appVersion)) {
    throw new HandshakeLineError(
      "version",
      `Cannot accept handshake line: plugin chose protocol version ${
        JSON.stringify(app)
      }, host offered ${versions.join(",")}`,
    );
  }
  if (protocol !== "grpc") {
    throw new HandshakeLineError(
      "protocol",
      `Cannot accept handshake line: plugin speaks ${
        JSON.stringify(protocol || "netrpc")
      }, this host speaks only grpc`,
    );
  }
  if (cert !== "") {
    throw new HandshakeLineError(
      "protocol",
      "Cannot accept handshake line: plugin sent a TLS certificate (AutoMTLS), which this host does not use",
    );
  }
  if (mux === "true") {
    throw new HandshakeLineError(
      "protocol",
      "Cannot accept handshake line: plugin asked for gRPC broker multiplexing, which this host does not offer",
    );
  }
  if (network === "unix") {
    if (!address!.startsWith("/")) {
      throw new HandshakeLineError(
        "network",
        `Cannot accept handshake line: unix socket path must be absolute, got ${
          JSON.stringify(address)
        }`,
      );
    }
    return { appVersion, network, address: address!, protocol: "grpc" };
  }
  if (network === "tcp") {
    const m = /^127\.0\.0\.1:(\d{1,5})$/.exec(address!);
    if (!m || Number(m[1]) < 1 || Number(m[1]) > 65535) {
      throw new HandshakeLineError(
        "network",
        `Cannot accept handshake line: tcp address must be 127.0.0.1:<port>, got ${
          JSON.stringify(address)
        }`,
      );
    }
    return { appVersion, network, address: address!, protocol: "grpc" };
  }
  throw new HandshakeLineError(
    "network",
    `Cannot accept handshake line: unsupported network ${
      JSON.stringify(network)
    } (want unix or tcp)`,
  );
}
