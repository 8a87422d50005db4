/**
 * The host's JSON API as `gk` uses it: Bearer token, one-line errors for
 * both error shapes the host answers with — `{"error":{"code","message",
 * "details"}}` and the older `{"error":"…"}` — and for plain-text bodies.
 *
 * @module
 */

import { CliError } from "./errors.ts";

/** Options of {@linkcode HostClient}. */
export interface HostClientOptions {
  /** Base URL of the host, such as `http://127.0.0.1:8080`. */
  url: string;
  /** An admin API token; requests fail with a clear error without one. */
  token: string | undefined;
  /** Aborts requests in flight. */
  signal?: AbortSignal;
}

/** One request of {@linkcode HostClient.request}. */
export interface HostRequestOptions {
  /** JSON text (sent as `application/json`) or a form. */
  body?: string | FormData;
  /** Answer `undefined` for a 404 instead of failing. */
  allowNotFound?: boolean;
}

/**
 * Renders an error body of the host in one line: `message [code] (k=v, …)`
 * for the structured shape (details the message already says are left out), the text for the older one, or the raw body.
 *
 * @example
 * ```ts
 * import { hostErrorText } from "./host_client.ts";
 * hostErrorText({ error: { code: "bad_zip", message: "Not a ZIP" } }, ""); // "Not a ZIP [bad_zip]"
 * hostErrorText({ error: "Plugin not found: x" }, ""); // "Plugin not found: x"
 * ```
 */
export function hostErrorText(data: unknown, text: string): string {
  const error = (data as { error?: unknown } | null)?.error;
  if (typeof error === "string") return oneLine(error);
  if (error && typeof error === "object") {
    const e = error as { code?: unknown; message?: unknown; details?: unknown };
    let line = typeof e.message === "string" ? e.message : JSON.stringify(e);
    if (typeof e.code === "string" && e.code) line += ` [${e.code}]`;
    const details = detailsText(e.details, line);
    if (details) line += ` (${details})`;
    return oneLine(line);
  }
  if (data && typeof data === "object" && "message" in data) {
    return oneLine(String((data as { message: unknown }).message));
  }
  return oneLine(text.trim() || "(empty answer)");
}

function detailsText(details: unknown, message: string): string {
  if (details === undefined || details === null || details === "") return "";
  if (typeof details === "string") {
    return message.includes(details) ? "" : details;
  }
  if (Array.isArray(details)) {
    return details.map((d) => detailsText(d, message)).filter(Boolean).join(
      "; ",
    );
  }
  if (typeof details === "object") {
    return Object.entries(details as Record<string, unknown>)
      .filter(([, v]) => v !== undefined && v !== null && v !== "")
      .map(([k, v]) => [k, typeof v === "string" ? v : JSON.stringify(v)])
      .filter(([, v]) => !message.includes(v!))
      .map(([k, v]) => `${k}=${v}`)
      .join(", ");
  }
  return String(details);
}

function oneLine(text: string): string {
  return text.replace(/\s*\n\s*/g, " ").trim();
}

/**
 * A client of the host's `/api/v1`.
 *
 * @example
 * ```ts ignore
 * const host = new HostClient({ url: "http://127.0.0.1:8080", token });
 * const { plugins } = await host.request("GET", "/api/v1/plugins");
 * ```
 */
export class HostClient {
  #url: string;
  #token: string | undefined;
  #signal: AbortSignal | undefined;

  /** Creates the client. */
  constructor(options: HostClientOptions) {
    this.#url = options.url.replace(/\/+$/, "");
    this.#token = options.token;
    this.#signal = options.signal;
  }

  /** The base URL. */
  get url(): string {
    return this.#url;
  }

  /**
   * Sends a request; answers the parsed JSON (or the text when the answer
   * is not JSON). Fails with a one-line {@linkcode CliError} on any non-2xx
   * answer or when the host cannot be reached.
   */
  async request(
    method: string,
    path: string,
    options: HostRequestOptions = {},
    // deno-lint-ignore no-explicit-any
  ): Promise<any> {
    if (!this.#token) {
      throw new CliError(
        "Cannot send request: no token (pass --token or set GOATKIT_TOKEN)",
      );
    }
    let res: Response;
    try {
      res = await fetch(this.#url + path, {
        method,
        headers: {
          authorization: `Bearer ${this.#token}`,
          ...(typeof options.body === "string"
            ? { "content-type": "application/json" }
            : {}),
        },
        ...(options.body === undefined ? {} : { body: options.body }),
        ...(this.#signal ? { signal: this.#signal } : {}),
      });
    } catch (e) {
      throw new CliError(
        `Cannot reach "${this.#url}": ${
          oneLine(e instanceof Error ? e.message : String(e))
        }`,
        { cause: e },
      );
    }
    const text = await res.text();
    let data: unknown = text;
    try {
      data = text ? JSON.parse(text) : null;
    } catch { /* not JSON: keep the text */ }
    if (res.status === 404 && options.allowNotFound) return undefined;
    if (!res.ok) {
      throw new CliError(
        `Cannot ${method} "${path}": ${res.status} ${
          hostErrorText(data, text)
        }`,
      );
    }
    return data;
  }
}

/** The path of a plugin's API resource: `/api/v1/plugins/<name><suffix>`. */
export function pluginPath(name: string, suffix = ""): string {
  return `/api/v1/plugins/${encodeURIComponent(name)}${suffix}`;
}
