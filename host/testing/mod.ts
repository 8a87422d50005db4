/**
 * Test doubles for code that embeds the host or writes plugins:
 * {@linkcode MemoryHostAPI} answers every HostAPI call from memory and
 * records it, so a plugin's logic can be tested without services, and
 * {@linkcode MemoryTokenStore} keeps API tokens in memory for server tests.
 *
 * ```ts
 * import { MemoryHostAPI } from "./mod.ts";
 * import { createCallContext } from "../model/plugin.ts";
 *
 * const host = new MemoryHostAPI({ config: { greeting: "Hi" } });
 * console.log(await host.configGet(createCallContext(), "greeting")); // "Hi"
 * console.log(host.calls.length); // 1
 * ```
 *
 * @module
 */

export {
  MemoryHostAPI,
  type MemoryHostAPIOptions,
  type RecordedHostCall,
} from "./memory_host_api.ts";
export { MemoryTokenStore } from "../server/auth/tokens.ts";
