/**
 * Calling fixtures/plugins/perm-probe-wat's `call` function: it makes one
 * host call and answers `ok:<JSON>` or `err:<the gk.last_error JSON>`.
 *
 * @module
 */

import assert from "node:assert/strict";
import type { CallOptions, Manager } from "../../host/manager.ts";

/** What the probe's host call gave. */
export type ProbeAnswer =
  | { ok: true; value: unknown }
  | {
    ok: false;
    /** The error's type (`PermissionDenied`, `QuotaExceeded`, …). */
    type: string;
    message: string;
    /** The permission a denial names. */
    permission?: string;
  };

const encoder = new TextEncoder();
const decoder = new TextDecoder();

/**
 * Calls probe plugin `name`'s host function `method` with JSON `req`
 * through `manager` and decodes its answer.
 */
export async function callProbe(
  manager: Pick<Manager, "call">,
  name: string,
  method: string,
  req: unknown,
  options: CallOptions = { timeoutMs: 20_000 },
): Promise<ProbeAnswer> {
  const out = await manager.call(
    name,
    "call",
    encoder.encode(`${method}\n${JSON.stringify(req)}`),
    options,
  );
  const text = decoder.decode(out ?? new Uint8Array());
  if (text.startsWith("ok:")) {
    return { ok: true, value: JSON.parse(text.slice(3) || "null") };
  }
  assert.ok(text.startsWith("err:"), `probe answered ${text}`);
  const err = JSON.parse(text.slice(4)).error as {
    type: string;
    message: string;
    permission?: string;
  };
  return {
    ok: false,
    type: err.type,
    message: err.message,
    ...(err.permission ? { permission: err.permission } : {}),
  };
}
