/**
 * The SDK for GoatKit plugins written in TypeScript and run out of process
 * by the gRPC runtime. {@linkcode servePlugin} does the plugin side of the
 * go-plugin handshake, serves `GKPlugin`, the health check and
 * `plugin.GRPCController`, and gives the implementation a typed
 * {@linkcode HostClient} for the host's services.
 *
 * The SDK loads no npm package: it serves gRPC with its own HTTP/2 server
 * (`h2_server.ts`), calls the host with the host's own HTTP/2 client
 * (`h2_client.ts`) and encodes the protocol's messages by hand
 * (`sdk_codec.ts`), so a plugin starts about as fast as Deno does.
 *
 * The host starts the plugin as `deno run --no-prompt` with only the
 * permissions its grants map to: no environment, no subprocesses, no FFI,
 * read/write only on its socket and data directories. Import the SDK as
 * `@goatkit/deno/sdk` (the host maps it).
 *
 * **Host calls belong to a call.** The host binds every host call a plugin
 * makes to a call the host made to the plugin that is still open (the SDK
 * sends its id as `gk-call-id` metadata) and runs it with that call's
 * deadline and call chain as the host recorded them. `ctx.host`, and the
 * `host` given to `init` while `init` runs, do this by themselves (also in
 * everything they await). Outside any call — a timer started earlier, work
 * still running after the call returned — the host accepts only `log`; any
 * other host call fails with a {@linkcode HostCallError}
 * (`FAILED_PRECONDITION`), as does one whose call has ended or passed its
 * deadline.
 *
 * **Outbound HTTP goes through the host.** A plugin has no network access of
 * its own. {@linkcode hostFetch} (also `host.fetch`) is a `fetch`-shaped
 * function that sends the request through the host's guarded egress (the
 * plugin's `http:` grants, every resolved address checked, size and time
 * limits) and returns a standard `Response`. A refusal rejects with a
 * {@linkcode HostCallError} (`PERMISSION_DENIED` for a host outside the
 * grants). Bodies are buffered, not streamed; the host follows redirects,
 * checking each hop.
 *
 * @example A plugin
 * ```ts ignore
 * import { hostFetch, servePlugin } from "@goatkit/deno/sdk";
 *
 * servePlugin({
 *   register: () => ({
 *     name: "hello-ts",
 *     version: "1.0.0",
 *     permissions: ["http:api.example.com"],
 *   }),
 *   async call(fn, args, ctx) {
 *     if (fn === "hello") {
 *       await ctx.host.log("info", "hello called");
 *       return { message: `Hello, ${(args as { name?: string })?.name ?? "World"}!` };
 *     }
 *     if (fn === "weather") {
 *       const res = await hostFetch("https://api.example.com/v1/weather", {
 *         headers: { accept: "application/json" },
 *       });
 *       if (!res.ok) throw new Error(`weather service answered ${res.status}`);
 *       return await res.json();
 *     }
 *     throw new Error(`unknown function: ${fn}`);
 *   },
 * });
 * ```
 *
 * @module
 */

import { AsyncLocalStorage } from "node:async_hooks";
import type {
  ErrorCodeSpec,
  GKRegistration,
  I18nSpec,
  JobSpec,
  MenuItemSpec,
  RouteSpec,
  TemplateSpec,
  WidgetSpec,
} from "../../host/model/manifest.ts";
import type { LogLevel, Row } from "../../host/model/host_api.ts";
import { decodeCallRequest } from "./call_codec.ts";
import {
  GrpcCode,
  grpcCodeName,
  GrpcStatusError,
  H2Channel,
  REQUEST_PREFIX,
} from "./h2_client.ts";
import { serveH2, type ServerCall } from "./h2_server.ts";
import { encodeHeaders } from "./hpack.ts";
import { registrationToPb } from "./registration.ts";
import {
  CALL_RESPONSE,
  decodeMessage,
  encodeMessage,
  GK_HOST_METHODS,
  GK_REGISTRATION,
  HEALTH_CHECK_REQUEST,
  HEALTH_CHECK_RESPONSE,
  INIT_REQUEST,
} from "./sdk_codec.ts";

export type {
  ErrorCodeSpec,
  GKRegistration,
  I18nSpec,
  JobSpec,
  LogLevel,
  MenuItemSpec,
  RouteSpec,
  Row,
  TemplateSpec,
  WidgetSpec,
};

/** The magic cookie go-plugin style hosts set: `GOATKIT_PLUGIN=goatkit-v1`. */
export const MAGIC_COOKIE_KEY = "GOATKIT_PLUGIN";
/** The value of {@linkcode MAGIC_COOKIE_KEY}. */
export const MAGIC_COOKIE_VALUE = "goatkit-v1";
/** The application protocol version this SDK speaks. */
export const APP_PROTOCOL_VERSION = 1;

/** A host service failed (denied, not found, timed out, …). */
export class HostCallError extends Error {
  /** The gRPC status name, such as `PERMISSION_DENIED`. */
  readonly code: string;
  /** The host method, such as `DBQuery`. */
  readonly method: string;

  /** Creates the error for `method` with gRPC status `code`. */
  constructor(method: string, code: string, message: string) {
    super(`Cannot call host method "${method}" (${code}): ${message}`);
    this.name = "HostCallError";
    this.code = code;
    this.method = method;
  }
}

/** An outbound HTTP request through the host. */
export interface HostHttpRequest {
  /** HTTP method. @default "GET" */
  method?: string;
  /** Absolute URL. */
  url: string;
  /** Request headers. */
  headers?: Record<string, string>;
  /** Body, as bytes or text. */
  body?: Uint8Array | string | null;
  /** Gives up on the request (the host stops it too). */
  signal?: AbortSignal;
}

/** The host's answer to a {@linkcode HostHttpRequest}. */
export interface HostHttpResponse {
  /** HTTP status (non-2xx statuses are answers too). */
  status: number;
  /** Response headers. */
  headers: Record<string, string>;
  /** Response body. */
  body: Uint8Array;
}

/**
 * The host's services as the plugin sees them. Each call runs in the context
 * of the plugin call in progress (its deadline, language and call chain).
 */
export interface HostClient {
  /** Runs a query; returns its rows. */
  dbQuery(query: string, args?: unknown[]): Promise<Row[]>;
  /** Runs a statement; returns the affected row count. */
  dbExec(query: string, args?: unknown[]): Promise<number>;
  /** Reads a cache entry (`null` when absent). */
  cacheGet(key: string): Promise<Uint8Array | null>;
  /** Writes a cache entry; `ttlSeconds` 0 means no expiry. */
  cacheSet(
    key: string,
    value: Uint8Array | string,
    ttlSeconds?: number,
  ): Promise<void>;
  /** Removes a cache entry. */
  cacheDelete(key: string): Promise<void>;
  /** Makes an outbound HTTP request through the host's guarded egress. */
  httpRequest(request: HostHttpRequest): Promise<HostHttpResponse>;
  /**
   * `fetch`, through the host's guarded egress (see {@linkcode hostFetch}).
   */
  fetch(input: RequestInfo | URL, init?: RequestInit): Promise<Response>;
  /** Sends an e-mail. */
  sendEmail(message: {
    to: string;
    subject: string;
    body: string;
    html?: boolean;
  }): Promise<void>;
  /** Writes a log line attributed to this plugin. */
  log(
    level: LogLevel,
    message: string,
    fields?: Record<string, unknown>,
  ): Promise<void>;
  /** Reads a configuration value. */
  configGet(key: string): Promise<string>;
  /** Translates `key` into the call's language. */
  translate(key: string, args?: unknown[]): Promise<string>;
  /** Calls another plugin's function with JSON `args`; returns its decoded JSON result. */
  callPlugin(plugin: string, fn: string, args?: unknown): Promise<unknown>;
}

/** What a plugin function receives besides its arguments. */
export interface PluginCallContext {
  /** The host's id of this call. */
  readonly callId: string;
  /** The calling plugin, when a plugin called. */
  readonly caller: string;
  /** The request language. */
  readonly language: string;
  /** The plugins on the call chain, outermost first. */
  readonly chain: readonly string[];
  /** Absolute deadline in epoch milliseconds (0 when none). */
  readonly deadline: number;
  /** Aborted when the host gives up on the call. */
  readonly signal: AbortSignal;
  /** The host's services, bound to this call. */
  readonly host: HostClient;
}

/** What a plugin implements. */
export interface PluginImpl {
  /** Returns the manifest. */
  register(): GKRegistration | Promise<GKRegistration>;
  /** Prepares the plugin; `config` holds `host_version`, `plugin_name`, `data_dir`. */
  init?(host: HostClient, config: Record<string, string>): void | Promise<void>;
  /**
   * Runs function `fn` with decoded JSON `args` (`null` when none). The
   * result is JSON-encoded (a `Uint8Array` is sent as is; `undefined` means
   * none). A thrown error reaches the host as the call's error text.
   */
  call(fn: string, args: unknown, ctx: PluginCallContext): unknown;
  /** Releases what the plugin holds; called before the process stops. */
  shutdown?(): void | Promise<void>;
}

/** Options of {@linkcode servePlugin}. */
export interface ServePluginOptions {
  /**
   * Path of the plugin's unix socket. The host passes it as
   * `--gk-socket <path>` (and grants exactly that path); without it a
   * temporary directory is made.
   */
  socket?: string;
  /**
   * Exit when stdin closes (the host died). @default true when launched by
   * the GoatKit host (which passes `--gk-socket` and keeps stdin open as a
   * pipe), false otherwise
   */
  exitOnStdinClose?: boolean;
}

const encoder = new TextEncoder();
const decoder = new TextDecoder();

/**
 * Writes one hclog-style JSON log line to stderr, which the host parses into
 * level, message and fields.
 *
 * @example
 * ```ts
 * import { hclog } from "./sdk.ts";
 * hclog("info", "ready", { port: 1 });
 * ```
 */
export function hclog(
  level: LogLevel,
  message: string,
  fields: Record<string, unknown> = {},
): void {
  const line = JSON.stringify({
    "@level": level,
    "@message": message,
    "@timestamp": new Date().toISOString(),
    ...fields,
  });
  Deno.stderr.writeSync(encoder.encode(line + "\n"));
}

/** A host→plugin call in progress (`Call` or `Init`), as the host named it. */
interface CallScope {
  callId: string;
  deadline: number;
  /** Set when the call returned: its id is no longer valid at the host. */
  done: boolean;
}

const scope = new AsyncLocalStorage<CallScope>();

/** Calls one GKHost method over `channel` (grpc-js's unary, by hand). */
function hostUnary(
  channel: H2Channel,
  method: string,
  request: Record<string, unknown>,
  current: CallScope | undefined,
  signal: AbortSignal | undefined,
): Promise<Record<string, unknown>> {
  const [requestSchema, responseSchema] = GK_HOST_METHODS[method]!;
  const message = encodeMessage(requestSchema, request);
  const body = new Uint8Array(REQUEST_PREFIX + message.length);
  body.set(message, REQUEST_PREFIX);
  // A finished call's id would be refused; without one the host accepts
  // only Log and says why for everything else.
  const live = current && !current.done && current.callId ? current : undefined;
  const deadline = live && live.deadline > 0 ? live.deadline : 0;
  const metadata = live
    ? encodeHeaders([["gk-call-id", live.callId]])
    : undefined;
  return new Promise((resolve, reject) => {
    let onAbort: (() => void) | undefined;
    const call = channel.call(
      `/goatkit.plugin.v1.GKHost/${method}`,
      body,
      deadline,
      (err, reply) => {
        if (onAbort) signal!.removeEventListener("abort", onAbort);
        if (err) reject(err);
        else {
          try {
            resolve(decodeMessage(responseSchema, reply!));
          } catch (e) {
            reject(
              new GrpcStatusError(GrpcCode.INTERNAL, (e as Error).message),
            );
          }
        }
      },
      metadata,
    );
    if (signal && !call.done) {
      onAbort = () => call.cancel();
      signal.addEventListener("abort", onAbort, { once: true });
    }
  });
}

function createHostClient(
  channel: H2Channel,
  bound?: CallScope,
): HostClient {
  async function invoke<T>(
    method: string,
    request: Record<string, unknown>,
    signal?: AbortSignal,
  ): Promise<T> {
    const current = bound ?? scope.getStore();
    signal?.throwIfAborted();
    let reply: Record<string, unknown>;
    try {
      reply = await hostUnary(channel, method, request, current, signal);
    } catch (e) {
      if (signal?.aborted) throw signal.reason;
      const err = e as Partial<GrpcStatusError>;
      throw new HostCallError(
        method,
        err.code === undefined ? "UNKNOWN" : grpcCodeName(err.code),
        err.details ?? (e as Error).message,
      );
    }
    const error = reply.error as string | undefined;
    if (error) throw new HostCallError(method, "UNKNOWN", error);
    return reply as T;
  }
  const jsonArgs = (args: unknown[] = []) =>
    args.map((a) => encoder.encode(JSON.stringify(a ?? null)));
  const hostClient: HostClient = {
    async dbQuery(query, args) {
      const r = await invoke<{ rows_json: Uint8Array[] }>("DBQuery", {
        query,
        args: jsonArgs(args),
      });
      return r.rows_json.map((b) => JSON.parse(decoder.decode(b)));
    },
    async dbExec(query, args) {
      const r = await invoke<{ affected_rows: number }>("DBExec", {
        query,
        args: jsonArgs(args),
      });
      return Number(r.affected_rows);
    },
    async cacheGet(key) {
      const r = await invoke<{ found: boolean; value: Uint8Array }>(
        "CacheGet",
        { key },
      );
      return r.found ? new Uint8Array(r.value) : null;
    },
    async cacheSet(key, value, ttlSeconds = 0) {
      await invoke("CacheSet", {
        key,
        value: typeof value === "string" ? encoder.encode(value) : value,
        ttl_seconds: ttlSeconds,
      });
    },
    async cacheDelete(key) {
      await invoke("CacheDelete", { key });
    },
    async httpRequest(req) {
      const r = await invoke<
        {
          status_code: number;
          body: Uint8Array;
          headers: Record<string, string>;
        }
      >("HTTPRequest", {
        method: req.method ?? "GET",
        url: req.url,
        headers: req.headers ?? {},
        body: typeof req.body === "string"
          ? encoder.encode(req.body)
          : req.body ?? new Uint8Array(),
      }, req.signal);
      return {
        status: r.status_code,
        headers: r.headers ?? {},
        body: new Uint8Array(r.body),
      };
    },
    async sendEmail(m) {
      await invoke("SendEmail", { ...m, html: m.html ?? false });
    },
    async log(level, message, fields) {
      await invoke("Log", {
        level,
        message,
        fields_json: fields
          ? encoder.encode(JSON.stringify(fields))
          : undefined,
      });
    },
    async configGet(key) {
      return (await invoke<{ value: string }>("ConfigGet", { key })).value;
    },
    async translate(key, args = []) {
      return (await invoke<{ text: string }>("Translate", {
        key,
        args: args.map((a) => String(a)),
      })).text;
    },
    async callPlugin(plugin, fn, args) {
      const r = await invoke<{ result_json: Uint8Array }>("CallPlugin", {
        plugin,
        function: fn,
        args_json: args === undefined
          ? new Uint8Array()
          : encoder.encode(JSON.stringify(args)),
      });
      return r.result_json.length
        ? JSON.parse(decoder.decode(r.result_json))
        : null;
    },
    fetch: (input, init) => fetchThrough(hostClient, input, init),
  };
  return hostClient;
}

/** Statuses whose responses have no body. */
const NULL_BODY_STATUSES = new Set([101, 103, 204, 205, 304]);

/** `fetch` on top of `host.httpRequest`. */
async function fetchThrough(
  host: HostClient,
  input: RequestInfo | URL,
  init?: RequestInit,
): Promise<Response> {
  const request = new Request(input, init);
  request.signal.throwIfAborted();
  const headers: Record<string, string> = {};
  request.headers.forEach((value, name) => {
    headers[name] = value;
  });
  const body = request.body === null
    ? null
    : new Uint8Array(await request.arrayBuffer());
  const answer = await host.httpRequest({
    method: request.method,
    url: request.url,
    headers,
    body,
    signal: request.signal,
  });
  if (answer.status < 200 || answer.status > 599) {
    throw new TypeError(
      `Cannot make a Response of the host's answer: status ${answer.status} is outside 200–599`,
    );
  }
  const responseHeaders = new Headers();
  for (const [name, value] of Object.entries(answer.headers)) {
    try {
      responseHeaders.append(name, value);
    } catch { /* a header no Response may carry */ }
  }
  const response = new Response(
    NULL_BODY_STATUSES.has(answer.status) || request.method === "HEAD"
      ? null
      : answer.body as Uint8Array<ArrayBuffer>,
    { status: answer.status, headers: responseHeaders },
  );
  Object.defineProperty(response, "url", { value: request.url });
  return response;
}

/** The host client of the running plugin, once `Init` connected it. */
let connectedHost: HostClient | undefined;

/**
 * `fetch`, through the host: sends the request with the host's
 * `HTTPRequest` callback, so the host's guarded egress decides (the
 * plugin's `http:` grants, every resolved address checked, size and time
 * limits), and returns a standard `Response`. Call it while serving a call
 * (or in `init`): the request runs under that call's deadline. The request
 * body is sent whole and the response body arrives whole (no streaming);
 * `init.signal` cancels the request at the host too. A refusal or a failure
 * at the host rejects with a {@linkcode HostCallError}: `PERMISSION_DENIED`
 * when no grant allows the host or one of its addresses,
 * `FAILED_PRECONDITION` outside a call.
 *
 * It can stand in for the global `fetch` of libraries a plugin uses:
 * `globalThis.fetch = hostFetch;`.
 *
 * @example
 * ```ts ignore
 * import { hostFetch } from "@goatkit/deno/sdk";
 * // In a plugin function; needs the grant "http:api.example.com".
 * const res = await hostFetch("https://api.example.com/v1/items", {
 *   method: "POST",
 *   headers: { "content-type": "application/json" },
 *   body: JSON.stringify({ name: "x" }),
 * });
 * console.log(res.status, await res.json());
 * ```
 */
export function hostFetch(
  input: RequestInfo | URL,
  init?: RequestInit,
): Promise<Response> {
  return (connectedHost ?? unconnectedHost()).fetch(input, init);
}

function canReadEnv(name: string): boolean {
  try {
    return Deno.permissions.querySync({ name: "env", variable: name })
      .state === "granted";
  } catch {
    return false;
  }
}

function socketFromArgs(): string | undefined {
  const i = Deno.args.indexOf("--gk-socket");
  return i >= 0 ? Deno.args[i + 1] : undefined;
}

/** A {@linkcode HostClient} that fails until `Init` connected it. */
function unconnectedHost(): HostClient {
  const fail = () =>
    Promise.reject(
      new HostCallError("*", "UNAVAILABLE", "host not connected before Init"),
    );
  return {
    dbQuery: fail,
    dbExec: fail,
    cacheGet: fail,
    cacheSet: fail,
    cacheDelete: fail,
    httpRequest: fail,
    sendEmail: fail,
    log: fail,
    configGet: fail,
    translate: fail,
    callPlugin: fail,
    fetch: fail,
  };
}

/** A running plugin server, as {@linkcode servePlugin} returns it. */
export interface ServedPlugin {
  /** The unix socket path the plugin listens on. */
  readonly address: string;
  /** Resolves when the server stopped. */
  readonly finished: Promise<void>;
}

/**
 * Serves a plugin: checks the handshake environment when readable, listens on
 * a unix socket, prints the go-plugin handshake line
 * `1|1|unix|<path>|grpc|` on stdout and serves until the host shuts it
 * down (or, by default, until stdin closes).
 *
 * @example
 * ```ts ignore
 * import { servePlugin } from "@goatkit/deno/sdk";
 * await servePlugin({
 *   register: () => ({ name: "echo-ts", version: "1.0.0" }),
 *   call: (_fn, args) => args,
 * });
 * ```
 */
export async function servePlugin(
  impl: PluginImpl,
  options: ServePluginOptions = {},
): Promise<ServedPlugin> {
  if (
    canReadEnv(MAGIC_COOKIE_KEY) &&
    Deno.env.get(MAGIC_COOKIE_KEY) !== MAGIC_COOKIE_VALUE
  ) {
    console.error(
      "This binary is a plugin. These are not meant to be executed directly.\n" +
        "Please execute the program that consumes these plugins, which will\n" +
        "load any plugins automatically",
    );
    Deno.exit(1);
  }
  if (canReadEnv("PLUGIN_PROTOCOL_VERSIONS")) {
    const offered = (Deno.env.get("PLUGIN_PROTOCOL_VERSIONS") ?? "").split(",");
    if (offered[0] !== "" && !offered.includes(String(APP_PROTOCOL_VERSION))) {
      console.error(
        `plugin speaks protocol version ${APP_PROTOCOL_VERSION}, host offers ${offered}`,
      );
      Deno.exit(1);
    }
  }

  const address = options.socket ?? socketFromArgs() ??
    `${await Deno.makeTempDir({ prefix: "plugin" })}/plugin.sock`;

  let host: HostClient = unconnectedHost();
  let hostChannel: H2Channel | undefined;
  let resolveFinished!: () => void;
  const finished = new Promise<void>((r) => resolveFinished = r);
  let stopping = false;

  const stop = (code: number) => {
    if (stopping) return;
    stopping = true;
    // Let the last reply flush, then exit: the kernel closes the sockets.
    setTimeout(() => {
      try {
        Deno.removeSync(address);
      } catch { /* already gone */ }
      resolveFinished();
      Deno.exit(code);
    }, 20);
  };

  const internal = (e: unknown) =>
    new GrpcStatusError(
      GrpcCode.INTERNAL,
      e instanceof Error ? e.message : String(e),
    );
  const EMPTY_REPLY = new Uint8Array();

  const listener = Deno.listen({ transport: "unix", path: address });
  serveH2(listener, {
    handlers: {
      "/goatkit.plugin.v1.GKPlugin/GKRegister": async () => {
        try {
          return encodeMessage(
            GK_REGISTRATION,
            registrationToPb(await impl.register()),
          );
        } catch (e) {
          throw internal(e);
        }
      },
      "/goatkit.plugin.v1.GKPlugin/Init": async (request) => {
        let initScope: CallScope | undefined;
        try {
          const config = {
            ...decodeMessage(INIT_REQUEST, request).config as Record<
              string,
              string
            >,
          };
          const hostSocket = config.host_socket;
          if (hostSocket) {
            hostChannel?.close();
            hostChannel = new H2Channel({
              transport: "unix",
              path: hostSocket,
            });
            host = connectedHost = createHostClient(hostChannel);
          }
          // Init is a call too: host calls made while it runs carry its id.
          initScope = {
            callId: config.call_id ?? "",
            deadline: Number(config.deadline_unix_ms) || 0,
            done: false,
          };
          delete config.host_socket;
          delete config.call_id;
          delete config.deadline_unix_ms;
          await scope.run(
            initScope,
            async () => await impl.init?.(host, config),
          );
          return EMPTY_REPLY;
        } catch (e) {
          throw internal(e);
        } finally {
          if (initScope) initScope.done = true;
        }
      },
      "/goatkit.plugin.v1.GKPlugin/Call": async (
        request: Uint8Array,
        call: ServerCall,
      ) => {
        const req = decodeCallRequest(request);
        // The signal (a listener and a deadline timer) is only set up when
        // the implementation looks at it, which keeps plain calls cheap.
        let controller: AbortController | undefined;
        let timer: ReturnType<typeof setTimeout> | undefined;
        let done = false;
        const signal = () => {
          if (controller) return controller.signal;
          const c = controller = new AbortController();
          if (done) return c.signal;
          call.onCancel(() => c.abort(new Error("call cancelled")));
          if (req.deadline > 0) {
            timer = setTimeout(
              () => c.abort(new Error("deadline exceeded")),
              Math.max(0, req.deadline - Date.now()),
            );
          }
          return c.signal;
        };
        const callScope: CallScope = {
          callId: req.callId,
          deadline: req.deadline,
          done: false,
        };
        let boundHost: HostClient | undefined;
        const ctx: PluginCallContext = {
          callId: req.callId,
          caller: req.caller,
          language: req.language,
          chain: req.chain,
          deadline: req.deadline,
          get signal() {
            return signal();
          },
          get host() {
            return boundHost ??= hostChannel
              ? createHostClient(hostChannel, callScope)
              : host;
          },
        };
        let result: Uint8Array;
        let error = "";
        try {
          const args = req.args?.length
            ? JSON.parse(decoder.decode(req.args))
            : null;
          const value = await scope.run(
            callScope,
            () => impl.call(req.function, args, ctx),
          );
          result = value instanceof Uint8Array
            ? value
            : value === undefined
            ? EMPTY_REPLY
            : encoder.encode(JSON.stringify(value));
        } catch (e) {
          result = EMPTY_REPLY;
          error = e instanceof Error ? e.message : String(e);
        } finally {
          done = true;
          callScope.done = true;
          clearTimeout(timer);
        }
        return encodeMessage(CALL_RESPONSE, { result_json: result, error });
      },
      "/goatkit.plugin.v1.GKPlugin/Shutdown": async () => {
        try {
          await impl.shutdown?.();
          return EMPTY_REPLY;
        } catch (e) {
          throw internal(e);
        }
      },
      "/grpc.health.v1.Health/Check": (request) => {
        const s = decodeMessage(HEALTH_CHECK_REQUEST, request).service;
        if (s === "" || s === "plugin") {
          return encodeMessage(HEALTH_CHECK_RESPONSE, { status: 1 });
        }
        throw new GrpcStatusError(GrpcCode.NOT_FOUND, "unknown service");
      },
      "/plugin.GRPCController/Shutdown": () => {
        stop(0);
        return EMPTY_REPLY;
      },
    },
  });
  await Deno.stdout.write(
    encoder.encode(`1|${APP_PROTOCOL_VERSION}|unix|${address}|grpc|\n`),
  );

  if (options.exitOnStdinClose ?? Deno.args.includes("--gk-socket")) {
    (async () => {
      const buf = new Uint8Array(256);
      try {
        while ((await Deno.stdin.read(buf)) !== null) { /* discard */ }
      } catch { /* closed */ }
      stop(0);
    })();
  }
  return { address, finished };
}
