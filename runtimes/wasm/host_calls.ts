/**
 * The host side of `gk.host_call`: decodes the guest's JSON request exactly as
 * GoatFlow's Go structs would, calls the plugin's HostAPI and encodes the
 * answer as Go's `encoding/json` does (see `go_json.ts`).
 *
 * | fn | request | answer |
 * |---|---|---|
 * | `db_query` | `{query, args}` | rows array (`[]` for zero rows; GoatFlow gives `null`) |
 * | `db_exec` | `{query, args}` | `{"affected":n}` |
 * | `cache_get` | `{key}` | `{"found":bool,"value":<base64 or null>}` |
 * | `cache_set` | `{key, value (base64), ttl}` | `{"ok":true}` |
 * | `cache_delete` | `{key}` | `{"ok":true}` (ours) |
 * | `http_request` | `{method, url, headers, body (base64 or null)}` | `{"body":<base64 or null>,"status":n}` (plus `"headers"` when the request sets `response_headers: true`, ours) |
 * | `send_email` | `{to, subject, body, html}` | `{"ok":true}` |
 * | `config_get` | `{key}` | `{"value":"…"}` |
 * | `translate` | `{key, args}` | `{"value":"…"}` |
 * | `plugin_call` | `{plugin, function, args (raw JSON)}` | the target's raw result |
 *
 * A failure answers the error as `{"error":{"message":…,"permission":…,"type":…}}`
 * (what `gk.last_error` hands the guest); the guest's `host_call` sees 0.
 *
 * @module
 */

import { errorText, PermissionDeniedError } from "../../host/model/errors.ts";
import type { HostAPI } from "../../host/model/host_api.ts";
import type { CallContext } from "../../host/model/plugin.ts";
import { fromBase64, goJson, rawMember } from "./go_json.ts";

/** The answer to one host call. */
export type HostCallResult = { ok: Uint8Array } | { error: Uint8Array };

/** A request that does not decode into GoatFlow's Go struct. */
export class HostCallRequestError extends Error {
  /** Creates the error with Go-like `message`. */
  constructor(message: string) {
    super(message);
    this.name = "HostCallRequestError";
  }
}

const encoder = new TextEncoder();
const decoder = new TextDecoder();

/** Encodes any thrown value as the guest-visible error JSON. */
export function errorJson(e: unknown): Uint8Array {
  const err = e instanceof Error ? e : new Error(String(e));
  const body: Record<string, unknown> = {
    type: err.name || "Error",
    message: err.message,
  };
  const perm = (err as { permission?: unknown }).permission;
  if (typeof perm === "string") body.permission = perm;
  return encoder.encode(goJson({ error: body }));
}

type Kind = "string" | "bool" | "int" | "array" | "map" | "bytes";

/** Reads a Go struct field (case-insensitive key match, zero value when absent). */
function field(obj: Record<string, unknown>, key: string, kind: Kind): unknown {
  let v: unknown = undefined;
  if (key in obj) v = obj[key];
  else {
    const lower = key.toLowerCase();
    for (const k of Object.keys(obj)) if (k.toLowerCase() === lower) v = obj[k];
  }
  if (v === undefined || v === null) {
    switch (kind) {
      case "string":
        return "";
      case "bool":
        return false;
      case "int":
        return 0;
      case "array":
        return [];
      case "map":
        return {};
      case "bytes":
        return null;
    }
  }
  const bad = () =>
    new HostCallRequestError(
      `json: cannot unmarshal ${
        jsonType(v)
      } into Go struct field .${key} of type ${
        {
          string: "string",
          bool: "bool",
          int: "int",
          array: "[]interface {}",
          map: "map[string]string",
          bytes: "[]uint8",
        }[kind]
      }`,
    );
  switch (kind) {
    case "string":
      if (typeof v !== "string") throw bad();
      return v;
    case "bool":
      if (typeof v !== "boolean") throw bad();
      return v;
    case "int":
      if (typeof v !== "number" || !Number.isInteger(v)) throw bad();
      return v;
    case "array":
      if (!Array.isArray(v)) throw bad();
      return v;
    case "map": {
      if (typeof v !== "object" || Array.isArray(v)) throw bad();
      const out: Record<string, string> = {};
      for (const [k, s] of Object.entries(v as Record<string, unknown>)) {
        if (typeof s !== "string") throw bad();
        out[k] = s;
      }
      return out;
    }
    case "bytes":
      if (typeof v !== "string") throw bad();
      return fromBase64(v);
  }
}

function jsonType(v: unknown): string {
  if (Array.isArray(v)) return "array";
  if (typeof v === "object") return "object";
  return typeof v;
}

function ok(value: unknown): HostCallResult {
  return { ok: encoder.encode(goJson(value)) };
}

/**
 * Serves one `gk.host_call(fn, args)` with the plugin's HostAPI.
 *
 * @example
 * ```ts ignore
 * const r = await serveHostCall(host, ctx, "config_get", encodeJson({ key: "x" }));
 * ```
 */
export async function serveHostCall(
  host: HostAPI,
  ctx: CallContext,
  fn: string,
  args: Uint8Array,
): Promise<HostCallResult> {
  try {
    const text = decoder.decode(args);
    let req: Record<string, unknown> = {};
    if (text.trim() !== "" || fn !== "") {
      const parsed = text.trim() === "" ? null : JSON.parse(text);
      if (
        parsed !== null && (typeof parsed !== "object" || Array.isArray(parsed))
      ) {
        throw new HostCallRequestError(
          `json: cannot unmarshal ${
            jsonType(parsed)
          } into Go value of type struct`,
        );
      }
      req = parsed ?? {};
    }
    switch (fn) {
      case "db_query": {
        const rows = await host.dbQuery(
          ctx,
          field(req, "query", "string") as string,
          field(req, "args", "array") as unknown[],
        );
        return ok(rows ?? []);
      }
      case "db_exec": {
        const n = await host.dbExec(
          ctx,
          field(req, "query", "string") as string,
          field(req, "args", "array") as unknown[],
        );
        return ok({ affected: n });
      }
      case "cache_get": {
        const v = await host.cacheGet(
          ctx,
          field(req, "key", "string") as string,
        );
        return ok({ found: v !== null, value: v });
      }
      case "cache_set": {
        const value = (field(req, "value", "bytes") as Uint8Array | null) ??
          new Uint8Array(0);
        await host.cacheSet(
          ctx,
          field(req, "key", "string") as string,
          value,
          field(req, "ttl", "int") as number,
        );
        return ok({ ok: true });
      }
      case "cache_delete": {
        await host.cacheDelete(ctx, field(req, "key", "string") as string);
        return ok({ ok: true });
      }
      case "http_request": {
        const resp = await host.httpRequest(ctx, {
          method: field(req, "method", "string") as string,
          url: field(req, "url", "string") as string,
          headers: field(req, "headers", "map") as Record<string, string>,
          body: field(req, "body", "bytes") as Uint8Array | null,
        });
        // Response headers only for a request that asks (`response_headers:
        // true`, the Extism runtime's), without the hop-by-hop ones our
        // egress connection adds; GoatFlow's answer stays byte for byte
        // `{body, status}`.
        if (field(req, "response_headers", "bool") === true && resp.headers) {
          return ok({
            body: resp.body ?? null,
            headers: endToEndHeaders(resp.headers),
            status: resp.status,
          });
        }
        return ok({ body: resp.body ?? null, status: resp.status });
      }
      case "send_email": {
        await host.sendEmail(ctx, {
          to: field(req, "to", "string") as string,
          subject: field(req, "subject", "string") as string,
          body: field(req, "body", "string") as string,
          html: field(req, "html", "bool") as boolean,
        });
        return ok({ ok: true });
      }
      case "config_get": {
        const v = await host.configGet(
          ctx,
          field(req, "key", "string") as string,
        );
        return ok({ value: v });
      }
      case "translate": {
        const v = await host.translate(
          ctx,
          field(req, "key", "string") as string,
          field(req, "args", "array") as unknown[],
        );
        return ok({ value: v });
      }
      case "plugin_call": {
        const plugin = field(req, "plugin", "string") as string;
        const func = field(req, "function", "string") as string;
        const raw = rawMember(text, "args");
        // Go's json.RawMessage keeps the bytes, even a literal `null`.
        const callArgs = raw === undefined ? null : encoder.encode(raw);
        const out = await host.callPlugin(ctx, plugin, func, callArgs);
        return { ok: out ?? new Uint8Array(0) };
      }
      default:
        throw new HostCallRequestError(
          `Cannot call host function "${fn}": unknown function`,
        );
    }
  } catch (e) {
    // As GoatFlow does, a failed host call is logged at error under the
    // plugin's name; denials are already in the audit log (and at warn).
    if (!(e instanceof PermissionDeniedError)) {
      try {
        host.log(ctx, "error", `host_call ${fn} failed: ${errorText(e)}`, {
          caller: ctx.caller ?? ctx.chain.at(-1) ?? "",
        });
      } catch { /* logging must not turn into a second failure */ }
    }
    return { error: errorJson(e) };
  }
}

/** Headers that describe one connection, not the response (RFC 9110 §7.6.1). */
const HOP_BY_HOP = new Set([
  "connection",
  "keep-alive",
  "proxy-connection",
  "te",
  "trailer",
  "transfer-encoding",
  "upgrade",
]);

/** `headers` without the hop-by-hop ones. */
function endToEndHeaders(
  headers: Record<string, string>,
): Record<string, string> {
  const out: Record<string, string> = {};
  for (const [k, v] of Object.entries(headers)) {
    if (!HOP_BY_HOP.has(k.toLowerCase())) out[k] = v;
  }
  return out;
}
