/**
 * Interceptors: the one seam through which the host observes and limits
 * plugin calls and host calls (metrics, traces, quotas), without each of
 * them editing the Manager or the guarded HostAPI.
 *
 * An interceptor gets what is being called and a `next` that runs the rest
 * of the chain; it may measure around `next`, refuse by throwing before it,
 * or run it inside a context (a trace span). Interceptors run in the order
 * given, the first outermost.
 *
 * @example
 * ```ts
 * import { type PluginCallInterceptor, runIntercepted } from "./interceptors.ts";
 * const seen: string[] = [];
 * const log: PluginCallInterceptor = async (call, next) => {
 *   seen.push(`${call.plugin}.${call.fn}`);
 *   return await next();
 * };
 * await runIntercepted([log], {
 *   plugin: "hello",
 *   fn: "greet",
 *   args: null,
 *   ctx: { chain: ["hello"], deadline: Date.now() + 1000, signal: new AbortController().signal },
 * }, () => Promise.resolve(null));
 * console.log(seen); // ["hello.greet"]
 * ```
 *
 * @module
 */

import type { HostAPI } from "./host_api.ts";
import type { CallContext } from "./plugin.ts";

/** A plugin call as interceptors see it (made through `Manager.call`). */
export interface PluginCallInfo {
  /** The plugin called. */
  readonly plugin: string;
  /** Its function. */
  readonly fn: string;
  /** The calling plugin, for a call made from a plugin. */
  readonly caller?: string;
  /** The raw arguments. */
  readonly args: Uint8Array | null;
  /** The call's context (deadline, signal, chain, language). */
  readonly ctx: CallContext;
}

/**
 * Wraps a plugin call: runs `next()` (the rest of the chain, then the
 * call with its deadline) and returns or rethrows its outcome, or throws
 * before it to refuse the call.
 */
export type PluginCallInterceptor = (
  call: PluginCallInfo,
  next: () => Promise<Uint8Array | null>,
) => Promise<Uint8Array | null>;

/** The HostAPI methods a plugin calls (every one but `log` is a host call). */
export type HostMethod = Exclude<keyof HostAPI, "log">;

/** The HostAPI method names interceptors see, in a fixed order. */
export const HOST_METHODS: readonly HostMethod[] = [
  "dbQuery",
  "dbExec",
  "cacheGet",
  "cacheSet",
  "cacheDelete",
  "httpRequest",
  "sendEmail",
  "configGet",
  "translate",
  "callPlugin",
];

/** A host call as interceptors see it (a plugin calling its HostAPI). */
export interface HostCallInfo {
  /** The plugin making the call. */
  readonly plugin: string;
  /** The HostAPI method. */
  readonly method: HostMethod;
  /** The call context the plugin passed. */
  readonly ctx: CallContext;
  /** The arguments after the context, as passed. */
  readonly args: readonly unknown[];
}

/**
 * Wraps a host call: runs `next()` (the rest of the chain, then the guarded
 * HostAPI, which may refuse with `PermissionDeniedError`) or throws before
 * it to refuse the call.
 */
export type HostCallInterceptor = (
  call: HostCallInfo,
  next: () => Promise<unknown>,
) => Promise<unknown>;

/**
 * Runs `last` inside `interceptors` (the first outermost). With none, it
 * is `last()` itself.
 */
export function runIntercepted<I, T>(
  interceptors: readonly ((info: I, next: () => Promise<T>) => Promise<T>)[],
  info: I,
  last: () => Promise<T>,
): Promise<T> {
  if (interceptors.length === 0) return last();
  const step = (i: number): Promise<T> =>
    i === interceptors.length
      ? last()
      : interceptors[i]!(info, () => step(i + 1));
  return step(0);
}

/**
 * The interceptors of one host, filled in at start by whoever observes or
 * limits calls (metrics, tracing, quotas) and read at each call: arrays may
 * grow after the Manager and the HostAPIs were built.
 */
export interface Interceptors {
  /** Around every `Manager.call` (routes, widgets, jobs, plugin→plugin). */
  readonly plugin: PluginCallInterceptor[];
  /** Around every HostAPI method but `log`. */
  readonly host: HostCallInterceptor[];
}

/** A new, empty {@linkcode Interceptors}. */
export function createInterceptors(): Interceptors {
  return { plugin: [], host: [] };
}

/**
 * `api` with every host call (each of {@linkcode HOST_METHODS}) run
 * through `interceptors.host` for `plugin`; every other property (`log`,
 * `close`, …) is `api`'s own. The chain is read at each call.
 *
 * @example
 * ```ts ignore
 * const host = interceptHostAPI(guarded, "hello", interceptors);
 * ```
 */
export function interceptHostAPI<A extends HostAPI>(
  api: A,
  plugin: string,
  interceptors: Pick<Interceptors, "host">,
): A {
  const wrapped = new Map<PropertyKey, unknown>();
  for (const method of HOST_METHODS) {
    const original = api[method] as (...a: unknown[]) => Promise<unknown>;
    if (typeof original !== "function") continue;
    wrapped.set(method, (ctx: CallContext, ...args: unknown[]) => {
      const chain = interceptors.host;
      if (chain.length === 0) return original.call(api, ctx, ...args);
      return runIntercepted(
        chain,
        { plugin, method, ctx, args },
        () => original.call(api, ctx, ...args),
      );
    });
  }
  const bound = new Map<PropertyKey, { of: unknown; fn: unknown }>();
  return new Proxy(api, {
    get(target, key) {
      if (wrapped.has(key)) return wrapped.get(key);
      const value = Reflect.get(target, key, target);
      if (typeof value !== "function") return value;
      // Methods run on the API itself (private fields), bound once.
      const known = bound.get(key);
      if (known?.of === value) return known.fn;
      const fn = value.bind(target);
      bound.set(key, { of: value, fn });
      return fn;
    },
  });
}
