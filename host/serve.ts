/**
 * `deno task serve`: starts the host ({@linkcode boot}) with `goatkit.json` +
 * environment configuration ({@linkcode loadConfig}), prints its URL and how
 * to log in, and shuts down gracefully on SIGINT/SIGTERM.
 *
 * Shutdown: the first SIGTERM or SIGINT closes the listener (new
 * connections are refused), lets requests in flight finish for up to
 * `server.drainTimeoutMs` (a request that still arrives on an open
 * connection gets 503 and `Connection: close`), then stops the scheduler,
 * the plugins and the services and exits 0. A second SIGTERM or SIGINT
 * exits at once (status 143 or 130), cutting what is in flight.
 *
 * Server settings: the `server` section of `goatkit.json`, overridden by
 * `GOATKIT_SERVER__<KEY>` (the key upper-cased), overridden by the flat
 * alias. A bad value stops the start with an error naming the variable or
 * key.
 *
 * | goatkit.json | alias | also | default |
 * |---|---|---|---|
 * | `server.port` | `PORT` | `GOATKIT_SERVER__PORT` | 8080 (0 = any free port) |
 * | `server.hostname` | `GOATKIT_HOSTNAME` | `GOATKIT_SERVER__HOSTNAME` | `127.0.0.1` (this machine only; see "Exposing the host") |
 * | `server.dataDir` | `GOATKIT_DATA_DIR` | `GOATKIT_SERVER__DATADIR` | `./data` |
 * | `server.pluginsDir` | `GOATKIT_PLUGINS_DIR` | `GOATKIT_SERVER__PLUGINSDIR` | `./data/plugins` (created at start): plugin folders, bare `*.wasm` files (GoatFlow's layout, named by their manifest) and installed packages; each plugin's private data is in `<dataDir>/plugin-data/<name>` |
 * | `server.examplePlugins` | `GOATKIT_EXAMPLE_PLUGINS` | `GOATKIT_SERVER__EXAMPLEPLUGINS` | false; true also loads the repository's examples (`fixtures/plugins`, read only, a clone only); `deno task serve` sets it; a plugin of the same name in `pluginsDir` wins |
 * | `server.title` | `GOATKIT_TITLE` | `GOATKIT_SERVER__TITLE` | `GoatKit` |
 * | `server.secureCookies` | `GOATKIT_SECURE_COOKIES` | `GOATKIT_SERVER__SECURECOOKIES` | false (cookies are `Secure` on HTTPS requests anyway; true forces it on plain HTTP too) |
 * | `server.trustProxy` (`true` or an array of IPs) | `GOATKIT_TRUST_PROXY` (`true`, `false` or IPs, comma-separated) | `GOATKIT_SERVER__TRUSTPROXY` | false (`X-Forwarded-Proto` is ignored) |
 * | `server.lazyLoad` | `GOATKIT_LAZY_LOAD` | `GOATKIT_SERVER__LAZYLOAD` | false (load every plugin at start) |
 * | `server.hotReload` | `GOATKIT_HOT_RELOAD` | `GOATKIT_SERVER__HOTRELOAD` | true |
 * | `server.trustedKeys` (array) | `GOATKIT_TRUSTED_KEYS` (comma-separated) | `GOATKIT_SERVER__TRUSTEDKEYS` | none |
 * | `server.requireSignature` | `GOATKIT_REQUIRE_SIGNATURE` | `GOATKIT_SERVER__REQUIRESIGNATURE` | false (true: unsigned packages, and signed ones no trusted key verifies, are refused) |
 * | `server.trustedExecutables` (array) | `GOATKIT_TRUSTED_EXECUTABLES` (SHA-256 hex digests, comma-separated) | `GOATKIT_SERVER__TRUSTEDEXECUTABLES` | none: a native plugin executable runs (and a package carrying one installs) only when the SHA-256 of its binary is listed (`sha256sum plugin`) |
 * | `server.requireApproval` (array) | `GOATKIT_REQUIRE_APPROVAL` (`all`, `none` or kinds, comma-separated) | `GOATKIT_SERVER__REQUIREAPPROVAL` | `all`: every permission but `log` waits for the operator; `none` is for development only (warned at start); secrets always wait |
 * | `server.jobCatchUp` | `GOATKIT_JOB_CATCH_UP` (`once` or `skip`) | `GOATKIT_SERVER__JOBCATCHUP` | `once`: a job whose ticks could not be claimed while the database was down runs once when it is back (`skip`: it does not); the missed ticks show as one `skipped` run either way; a job's manifest `catch_up` wins |
 * | `server.maxInFlight` | `GOATKIT_MAX_IN_FLIGHT` | `GOATKIT_SERVER__MAXINFLIGHT` | 1024 plugin requests in flight server-wide (plugin routes, widgets, admin calls); one more gets 503 + `Retry-After` at once; `/healthz` and `/readyz` are never limited |
 * | `server.drainTimeoutMs` | `GOATKIT_DRAIN_TIMEOUT_MS` | `GOATKIT_SERVER__DRAINTIMEOUTMS` | 10000: how long requests in flight may finish after SIGTERM/SIGINT |
 * | `server.pluginQueueLength` | `GOATKIT_PLUGIN_QUEUE_LENGTH` | `GOATKIT_SERVER__PLUGINQUEUELENGTH` | 256 calls a WASM plugin may have waiting for an instance; one more gets 503 + `Retry-After` |
 * | `server.pluginQueueWaitMs` | `GOATKIT_PLUGIN_QUEUE_WAIT_MS` | `GOATKIT_SERVER__PLUGINQUEUEWAITMS` | 1000: longest wait for an instance (at most half the call's deadline), then 503 |
 * | `server.pluginIdleTimeoutMs` | `GOATKIT_PLUGIN_IDLE_TIMEOUT_MS` | `GOATKIT_SERVER__PLUGINIDLETIMEOUTMS` | 60000: an idle WASM worker is closed (module kept); `0` keeps them |
 * | `server.routeTimeoutMs` | `GOATKIT_ROUTE_TIMEOUT_MS` | `GOATKIT_SERVER__ROUTETIMEOUTMS` | 10000: deadline of a plugin route whose manifest names none |
 *
 * Flags are `true`/`false` (or `1`/`0`). Everything else:
 *
 * | variable | meaning |
 * |---|---|
 * | `GOATKIT_CONFIG` | the config file (must exist); default `./goatkit.json` (optional) |
 * | `GOATKIT_<SECTION>__<KEY>` | host value `<section>.<key>` (e.g. `GOATKIT_APP__NAME`) |
 * | `GOATKIT_PLUGIN__<PLUGIN>__<KEY>` | plugin value (file: `plugins.<plugin>.<key>`) |
 * | `GOATKIT_SECRET_<NAME>`, names in the file's `secrets` | secrets (never host values) |
 * | `DATABASE_URL`, `DATABASE_URL_<NAME>` | PostgreSQL (else PGlite in `<dataDir>/pg`) |
 * | `REDIS_URL`, `REDIS_PREFIX` | Redis cache (else Deno KV `<dataDir>/cache.kv`) |
 * | `SMTP_URL`, `SMTP_FROM` | SMTP mail (else `.eml` files in `<dataDir>/outbox`); sender else `mail.from` |
 *
 * Probes: `GET /healthz` is liveness (the process answers); `GET /readyz`
 * is readiness: 200 once the plugins have loaded and the database and the
 * cache answer, else 503 with every failure listed as JSON (plugins that
 * failed to load, plugin folders that are not usable, an unreachable
 * service, start-up still loading).
 *
 * Start-up prints progress for the long waits: the embedded database
 * (first start 10-20 s), plugin loading and each package install, each
 * with the time it took.
 *
 * Exposing the host: it listens on loopback only unless `GOATKIT_HOSTNAME`
 * says otherwise, and it speaks plain HTTP. To serve other machines, put a
 * TLS-terminating reverse proxy (Caddy, nginx, …) in front of it on the same
 * machine, keep the default hostname, and set `GOATKIT_TRUST_PROXY` to the
 * proxy's address (`127.0.0.1`) so that its `X-Forwarded-Proto: https` is
 * believed: session cookies then get `Secure` and responses
 * `Strict-Transport-Security` (HSTS is only ever sent on HTTPS). Binding
 * `GOATKIT_HOSTNAME=0.0.0.0` without a proxy serves sessions and tokens in
 * clear text; the start prints a warning. `X-Forwarded-Proto` from a peer
 * that is not a trusted proxy is ignored.
 *
 * Packages: the first signed install of a plugin name pins its signer in
 * `<dataDir>/package_signers.json` (kept across restarts and uninstalls);
 * another signer, or an unsigned package, then needs `gk install
 * --allow-signer-change` (or the upload form's checkbox), and a lower
 * version `gk install --allow-downgrade`; both are audited.
 *
 * An admin token is created on first start and printed once; only its
 * SHA-256 is stored (`<dataDir>/tokens.json`). `--new-admin-token` creates
 * and prints another one.
 *
 * @module
 */

import { join } from "node:path";
import { boot } from "./boot.ts";
import { HOST_VERSION } from "./model/version.ts";
import { ConfigError, type HostConfig, loadConfig } from "./services/config.ts";

// Kept here for the modules and tests that import it from this entry point.
export { grantsProvider } from "./boot.ts";

/** Whether `hostname` is a loopback address or name (this machine only). */
function isLoopback(hostname: string): boolean {
  const h = hostname.toLowerCase().replace(/^\[|\]$/g, "");
  return h === "localhost" || h === "::1" || /^127\.\d+\.\d+\.\d+$/.test(h);
}

/** The configuration, or exit 1 with the reason when it is not valid. */
function configOrExit(): HostConfig {
  try {
    return loadConfig();
  } catch (e) {
    if (!(e instanceof ConfigError)) throw e;
    console.error(`error: ${e.message}`);
    Deno.exit(1);
  }
}

async function main(): Promise<void> {
  const config = configOrExit();
  const { dataDir, pluginsDir, hostname, trustProxy } = config.server;
  console.log(
    `GoatKit host ${HOST_VERSION} starting (data ${dataDir}, plugins ${pluginsDir})`,
  );
  if (!isLoopback(hostname) && !trustProxy) {
    console.warn(
      `warning: listening on ${hostname} over plain HTTP: sessions and tokens cross the network in clear text. Put a TLS-terminating proxy in front and set GOATKIT_TRUST_PROXY (see host/serve.ts), or keep the default GOATKIT_HOSTNAME=127.0.0.1.`,
    );
  }
  // The first signal starts a graceful shutdown (one during start-up is
  // honoured once the host is up, so plugins, workers and the database are
  // shut down properly); a second one exits at once.
  const signal = Promise.withResolvers<Deno.Signal>();
  let signals = 0;
  for (const sig of ["SIGINT", "SIGTERM"] as const) {
    Deno.addSignalListener(sig, () => {
      if (++signals === 1) return signal.resolve(sig);
      console.error(`${sig} again: exiting now, without draining`);
      Deno.exit(sig === "SIGINT" ? 130 : 143);
    });
  }
  const host = await boot({
    config,
    newAdminToken: Deno.args.includes("--new-admin-token"),
    onListen: ({ url, adminToken }) => {
      console.log(`Listening on ${url}  (health: ${url}/healthz)`);
      if (adminToken) {
        console.log(
          `\nAdmin token (shown ONCE; only its hash is stored in ${
            join(dataDir, "tokens.json")
          }):\n\n    ${adminToken}\n\nLog in at ${url}/login with it, or use it as "Authorization: Bearer <token>" on ${url}/api/v1/…\n`,
        );
      } else {
        console.log(
          `Log in at ${url}/login with the admin token printed at first start (lost it? restart with: deno task serve --new-admin-token)`,
        );
      }
    },
  });
  console.log(`Ready: ${host.manager.list().length} plugin(s) registered.`);
  const sig = await signal.promise;
  console.log(
    `\n${sig}: shutting down: no new connections; requests in flight get up to ${config.server.drainTimeoutMs} ms (${sig} again to exit at once)…`,
  );
  await host.close();
  console.log("Stopped.");
  Deno.exit(0);
}

if (import.meta.main) await main();
