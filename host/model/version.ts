/**
 * The host's own version, compared with a manifest's `min_host_version` and
 * sent to gRPC plugins at `Init`. Kept equal to `deno.json`'s `version`.
 *
 * @module
 */

/** This host's semantic version. */
export const HOST_VERSION = "0.1.0";
