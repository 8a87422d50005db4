/**
 * The GoatKit gRPC protocol, loaded at run time from `plugin.proto`,
 * `go_plugin.proto` and `health.proto` with `@grpc/proto-loader`, plus the
 * TypeScript shapes of its messages (as proto-loader decodes them:
 * snake_case keys, `bytes` as `Uint8Array`, `int64` as `number`).
 *
 * Used by the host side (`supervisor.ts`, `plugin.ts`, `host_service.ts`).
 * The plugin-side SDK (`sdk.ts`) does not load it: it speaks the same
 * protocol with `h2_server.ts`, `h2_client.ts` and the hand codecs of
 * `sdk_codec.ts`, which `tests/grpc_sdk_codec_test.ts` checks against it.
 *
 * @module
 */

import * as grpc from "@grpc/grpc-js";
import * as protoLoader from "@grpc/proto-loader";
import { fileURLToPath } from "node:url";

/** The `.proto` files this runtime loads, as absolute paths. */
export const PROTO_FILES: readonly string[] = [
  "plugin.proto",
  "go_plugin.proto",
  "health.proto",
].map((f) => fileURLToPath(new URL(f, import.meta.url)));

/** proto-loader options used on both sides. */
const LOADER_OPTIONS: protoLoader.Options = {
  keepCase: true,
  longs: Number,
  enums: String,
  defaults: true,
  oneofs: false,
  arrays: true,
  objects: true,
};

/** Empty message. */
export type Empty = Record<string, never>;

/** A route in a {@linkcode PbRegistration}. */
export interface PbRouteSpec {
  method: string;
  path: string;
  handler: string;
  middleware: string[];
  description: string;
}

/** A menu item in a {@linkcode PbRegistration}. */
export interface PbMenuItemSpec {
  id: string;
  label: string;
  icon: string;
  path: string;
  location: string;
  parent: string;
  order?: number;
  children: PbMenuItemSpec[];
}

/** A widget in a {@linkcode PbRegistration}. */
export interface PbWidgetSpec {
  id: string;
  title: string;
  description: string;
  handler: string;
  location: string;
  size: string;
  order?: number;
  refreshable?: boolean;
  refresh_sec?: number;
}

/** A job in a {@linkcode PbRegistration}. */
export interface PbJobSpec {
  id: string;
  handler: string;
  schedule: string;
  description: string;
  enabled?: boolean;
  timeout: string;
}

/** A template in a {@linkcode PbRegistration}. */
export interface PbTemplateSpec {
  name: string;
  path: string;
  override?: boolean;
}

/** Translations in a {@linkcode PbRegistration}. */
export interface PbI18nSpec {
  namespace: string;
  languages: string[];
  translations: Record<string, { entries: Record<string, string> }>;
}

/** An error code in a {@linkcode PbRegistration}. */
export interface PbErrorCodeSpec {
  code: string;
  message: string;
  http_status: number;
}

/** `GKRegistration` as it travels on the wire. */
export interface PbRegistration {
  name: string;
  version: string;
  description: string;
  author: string;
  license: string;
  homepage: string;
  routes: PbRouteSpec[];
  menu_items: PbMenuItemSpec[];
  widgets: PbWidgetSpec[];
  jobs: PbJobSpec[];
  templates: PbTemplateSpec[];
  min_host_version: string;
  permissions: string[];
  i18n?: PbI18nSpec | null;
  error_codes: PbErrorCodeSpec[];
  manifest_json: Uint8Array;
}

/** `InitRequest`. */
export interface PbInitRequest {
  config: Record<string, string>;
}

/** `CallRequest`. */
export interface PbCallRequest {
  function: string;
  args_json: Uint8Array;
  call_id: string;
  caller: string;
  language: string;
  deadline_unix_ms: number;
  chain: string[];
}

/** `CallResponse`. */
export interface PbCallResponse {
  result_json: Uint8Array;
  error: string;
}

/** The loaded protocol: service definitions and client constructors. */
export interface GoatKitProto {
  /** `goatkit.plugin.v1.GKPlugin`. */
  GKPlugin: grpc.ServiceClientConstructor;
  /** `goatkit.plugin.v1.GKHost`. */
  GKHost: grpc.ServiceClientConstructor;
  /** `plugin.GRPCController`. */
  GRPCController: grpc.ServiceClientConstructor;
  /** `grpc.health.v1.Health`. */
  Health: grpc.ServiceClientConstructor;
}

let loaded: GoatKitProto | undefined;

/**
 * Loads (once) and returns the protocol's services.
 *
 * @example
 * ```ts
 * import { loadProto } from "./proto.ts";
 * const { GKPlugin } = loadProto();
 * console.log(Object.keys(GKPlugin.service)); // [ "GKRegister", "Init", "Call", "Shutdown" ]
 * ```
 */
export function loadProto(): GoatKitProto {
  if (loaded) return loaded;
  const definition = protoLoader.loadSync([...PROTO_FILES], LOADER_OPTIONS);
  // deno-lint-ignore no-explicit-any
  const root = grpc.loadPackageDefinition(definition) as any;
  loaded = {
    GKPlugin: root.goatkit.plugin.v1.GKPlugin,
    GKHost: root.goatkit.plugin.v1.GKHost,
    GRPCController: root.plugin.GRPCController,
    Health: root.grpc.health.v1.Health,
  };
  return loaded;
}

/**
 * Channel options that keep a local unix-socket channel lean: no proxy
 * lookup, no retries buffer, no channelz bookkeeping, no keepalive pings.
 */
export const LOCAL_CHANNEL_OPTIONS: grpc.ChannelOptions = {
  "grpc.enable_http_proxy": 0,
  "grpc.enable_retries": 0,
  "grpc.enable_channelz": 0,
  "grpc.service_config_disable_resolution": 1,
  "grpc.max_receive_message_length": 64 * 1024 * 1024,
  "grpc.max_send_message_length": 64 * 1024 * 1024,
};

/** Server options matching {@linkcode LOCAL_CHANNEL_OPTIONS}. */
export const LOCAL_SERVER_OPTIONS: grpc.ServerOptions = {
  "grpc.enable_channelz": 0,
  "grpc.max_receive_message_length": 64 * 1024 * 1024,
  "grpc.max_send_message_length": 64 * 1024 * 1024,
};

/**
 * Calls a unary method and resolves with its response.
 *
 * @example
 * ```ts ignore
 * const reply = await unary<PbCallResponse>(client, "Call", request, { deadline });
 * ```
 */
export function unary<T>(
  client: grpc.Client,
  method: string,
  request: unknown,
  options: grpc.CallOptions = {},
  metadata: grpc.Metadata = new grpc.Metadata(),
  onCall?: (call: grpc.ClientUnaryCall) => void,
): Promise<T> {
  return new Promise<T>((resolve, reject) => {
    // deno-lint-ignore no-explicit-any
    const fn = (client as any)[method] as (
      req: unknown,
      md: grpc.Metadata,
      opts: grpc.CallOptions,
      cb: (err: grpc.ServiceError | null, res?: T) => void,
    ) => grpc.ClientUnaryCall;
    const call = fn.call(client, request, metadata, options, (err, res) => {
      if (err) reject(err);
      else resolve(res as T);
    });
    onCall?.(call);
  });
}
