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
 * | `server.extismMaxVarBytes` | `GOATKIT_EXTISM_MAX_VAR_BYTES` | `GOATKIT_SERVER__EXTISMMAXVARBYTES` | 1048576: largest total size of one Extism plugin's vars (its `extism.json` may ask for less; `0`: no vars) |
 * | `server.routeTimeoutMs` | `GOATKIT_ROUTE_TIMEOUT_MS` | `GOATKIT_SERVER__ROUTETIMEOUTMS` | 10000: deadline of a plugin route whose manifest names none |
 * | `server.logFormat` | `GOATKIT_LOG_FORMAT` | `GOATKIT_SERVER__LOGFORMAT` | `text`; `json` (or the flag `--log-format json`, which wins) writes one JSON object per line to stdout: `{time, level, source: "host"\|"plugin", plugin?, message, …fields}` |
 * | `server.metrics` | `GOATKIT_METRICS` | `GOATKIT_SERVER__METRICS` | true: count plugin calls, host calls, jobs and routes; `GET /metrics` and the Operations page (`false`: off, `/metrics` is 404) |
 * | `server.logRetentionDays` | `GOATKIT_LOG_RETENTION_DAYS` | `GOATKIT_SERVER__LOGRETENTIONDAYS` | 14: plugin and host log lines older than this are deleted from the database |
 * | `server.logMaxRows` | `GOATKIT_LOG_MAX_ROWS` | `GOATKIT_SERVER__LOGMAXROWS` | 100000: at most this many log lines are kept (the oldest go first) |
 * | `server.auditRetentionDays` | `GOATKIT_AUDIT_RETENTION_DAYS` | `GOATKIT_SERVER__AUDITRETENTIONDAYS` | 90: audit entries older than this are deleted |
 * | `server.auditMaxRows` | `GOATKIT_AUDIT_MAX_ROWS` | `GOATKIT_SERVER__AUDITMAXROWS` | 100000: at most this many audit entries are kept |
 * | `server.metricsToken` | `GOATKIT_METRICS_TOKEN` | `GOATKIT_SERVER__METRICSTOKEN` | none: a separate Bearer token (16+ characters) for scraping `GET /metrics`; admin tokens always work |
 *
 * Quotas per plugin (`quotas.default` and `quotas.plugins.<name>` in
 * `goatkit.json`, `GOATKIT_QUOTA_<KEY>` for the defaults, and per plugin
 * through `PUT /api/v1/plugins/<name>/quotas` or the plugin's admin page,
 * which win; `0` is no limit). Beyond one, the call or host call is refused
 * with `QuotaExceededError` (a route answers 429 with `Retry-After`),
 * audited, and never counted towards quarantine:
 *
 * | key | variable | default |
 * |---|---|---|
 * | `hostCallsPerSecond` / `hostCallBurst` | `GOATKIT_QUOTA_HOST_CALLS_PER_SECOND` / `GOATKIT_QUOTA_HOST_CALL_BURST` | 1000 / 2000 (token bucket) |
 * | `cpuMsPerMinute` | `GOATKIT_QUOTA_CPU_MS_PER_MINUTE` | 60000 ms of guest CPU in any minute |
 * | `concurrentCalls` | `GOATKIT_QUOTA_CONCURRENT_CALLS` | 256 calls in flight |
 * | `httpBytesPerMinute` | `GOATKIT_QUOTA_HTTP_BYTES_PER_MINUTE` | 100 MiB of outbound request + response bodies |
 * | `emailsPerHour` | `GOATKIT_QUOTA_EMAILS_PER_HOUR` | 1000 |
 * | `dbStatementMs` | `GOATKIT_QUOTA_DB_STATEMENT_MS` | 5000 ms per statement |
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
 * and prints another one. It is written straight to the terminal, never
 * through `console` (so `OTEL_DENO=true` never exports it as a log record);
 * with `--log-format json` it is not printed at all but written to
 * `<dataDir>/admin_token` (mode 0600), whose path is logged.
 *
 * Logs: stdout carries the progress lines, host events (start, plugins
 * loaded or failed, install, upgrade, uninstall, grant changes, quarantine,
 * job failures, permission denials) and the plugins' log lines at `info`
 * and above, as text or JSON (`--log-format`). Fields named like
 * credentials and anything shaped like a token are redacted.
 *
 * Traces: with `OTEL_DENO=true` (Deno's built-in OpenTelemetry; OTLP to
 * `OTEL_EXPORTER_OTLP_ENDPOINT`) each request is one trace: Deno's HTTP
 * span, a `plugin.call` span per plugin call, a `host.<method>` span per
 * host call, and `db.*`, `cache.*`, `http.request`, `email.send` spans
 * (see `host/telemetry/tracing.ts`).
 *
 * @module
 */

import { join } from "node:path";
import { boot } from "./boot.ts";
import { HOST_VERSION } from "./model/version.ts";
import { ConfigError, type HostConfig, loadConfig } from "./services/config.ts";
import {
  isLogFormat,
  type LogFormat,
  LogOutput,
} from "./telemetry/log_output.ts";
import { StdoutLines } from "./telemetry/stdout_lines.ts";
import { tracingEnabled } from "./telemetry/tracing.ts";
import { writeSecretFile, writeTerminal } from "./telemetry/secret_output.ts";

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

/**
 * The `--log-format` flag (`--log-format json` or `--log-format=json`), or
 * exit 1 when its value is not a format; `undefined` when absent.
 */
function logFormatFlag(args: readonly string[]): LogFormat | undefined {
  const i = args.findIndex((a) =>
    a === "--log-format" || a.startsWith("--log-format=")
  );
  if (i < 0) return undefined;
  const value = args[i]!.includes("=")
    ? args[i]!.slice("--log-format=".length)
    : args[i + 1];
  if (!isLogFormat(value)) {
    console.error(
      `error: Cannot use --log-format ${
        value ?? ""
      }: the format is text or json`,
    );
    Deno.exit(1);
  }
  return value;
}

async function main(): Promise<void> {
  const format = logFormatFlag(Deno.args);
  const config = configOrExit();
  const { dataDir, pluginsDir, hostname, trustProxy } = config.server;
  // Log lines go out once per event-loop turn, not a write per line;
  // with Deno's OpenTelemetry on, one `console.log` per line (each is
  // exported as a log record).
  const stdout = tracingEnabled(config.env) ? undefined : new StdoutLines();
  stdout?.flushAtExit();
  const out = new LogOutput({
    format: format ?? config.server.logFormat,
    ...(stdout ? { write: (line: string) => stdout.write(line) } : {}),
  });
  const json = out.format === "json";
  out.print(
    `GoatKit host ${HOST_VERSION} starting (data ${dataDir}, plugins ${pluginsDir})`,
    { event: "host.starting", version: HOST_VERSION },
  );
  if (!isLoopback(hostname) && !trustProxy) {
    const warning =
      `warning: listening on ${hostname} over plain HTTP: sessions and tokens cross the network in clear text. Put a TLS-terminating proxy in front and set GOATKIT_TRUST_PROXY (see host/serve.ts), or keep the default GOATKIT_HOSTNAME=127.0.0.1.`;
    if (json) out.print(warning);
    else console.warn(warning);
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
    logOutput: out,
    onListen: ({ url, adminToken }) => {
      out.print(`Listening on ${url}  (health: ${url}/healthz)`, {
        event: "host.listening",
        url,
      });
      if (adminToken) {
        // The token goes straight to the terminal: the lines before it first.
        stdout?.flush();
        showAdminToken(out, adminToken, url, dataDir);
      } else {
        out.print(
          `Log in at ${url}/login with the admin token printed at first start (lost it? restart with: deno task serve --new-admin-token)`,
        );
      }
    },
  });
  out.print(`Ready: ${host.manager.list().length} plugin(s) registered.`, {
    event: "host.ready",
    plugins: host.manager.list().length,
  });
  const sig = await signal.promise;
  out.print(
    `${
      json ? "" : "\n"
    }${sig}: shutting down: no new connections; requests in flight get up to ${config.server.drainTimeoutMs} ms (${sig} again to exit at once)…`,
    { event: "host.stopping", signal: sig },
  );
  await host.close();
  out.print("Stopped.", { event: "host.stopped" });
  Deno.exit(0);
}

/**
 * Shows a new admin token once, never through `console` (Deno exports
 * `console.*` as OpenTelemetry log records under `OTEL_DENO=true`): in text
 * written straight to the terminal; in JSON (whose stdout is meant for a
 * log collector) only into `<dataDir>/admin_token` (mode 0600), whose path
 * is logged.
 */
function showAdminToken(
  out: LogOutput,
  token: string,
  url: string,
  dataDir: string,
): void {
  const hashes = join(dataDir, "tokens.json");
  if (out.format === "text") {
    writeTerminal(
      `\nAdmin token (shown ONCE; only its hash is stored in ${hashes}):\n\n    ${token}\n\nLog in at ${url}/login with it, or use it as "Authorization: Bearer <token>" on ${url}/api/v1/…\n\n`,
    );
    return;
  }
  const file = join(dataDir, "admin_token");
  writeSecretFile(file, `${token}\n`);
  out.print(
    `Admin token written to ${file} (mode 0600; only its hash is stored in ${hashes}): read it, delete the file, and log in at ${url}/login with it`,
    { event: "admin_token.created", file },
  );
}

if (import.meta.main) await main();
