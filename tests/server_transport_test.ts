// Server defaults (issue 10, "server binds 0.0.0.0 over plain HTTP with
// non-Secure cookies"): the host listens on loopback unless configured;
// cookies are Secure and HSTS is sent only when the request came over HTTPS
// — served with TLS by the host itself, or said so by a configured trusted
// proxy. A client that sends X-Forwarded-Proto itself changes nothing.

import { join } from "node:path";
import { boot } from "../host/boot.ts";
import { ConfigValueError, loadConfig } from "../host/services/config.ts";
import { createApp, type GoatKitApp } from "../host/server/mod.ts";
import { MemoryTokenStore } from "../host/server/auth/tokens.ts";
import { Manager } from "../host/manager.ts";
import {
  assert,
  assertEquals,
  assertMatch,
  hostConfig,
  privateSchema,
} from "./server_helpers.ts";

const ROOT = new URL("..", import.meta.url).pathname;

Deno.test("loadConfig: hostname defaults to loopback; trustProxy parses flags and addresses", async () => {
  const dir = await Deno.makeTempDir();
  const absent = join(dir, "absent.json");
  try {
    const d = loadConfig({ env: {}, defaultPath: absent }).server;
    assertEquals([d.hostname, d.trustProxy, d.secureCookies], [
      "127.0.0.1",
      false,
      false,
    ]);
    const env = (v: string) =>
      loadConfig({ env: { GOATKIT_TRUST_PROXY: v }, defaultPath: absent })
        .server.trustProxy;
    assertEquals(env("true"), true);
    assertEquals(env("0"), false);
    assertEquals(env(" 10.0.0.2, ::1 "), ["10.0.0.2", "::1"]);
    const file = join(dir, "goatkit.json");
    await Deno.writeTextFile(
      file,
      JSON.stringify({ server: { trustProxy: ["192.0.2.7"] } }),
    );
    assertEquals(
      loadConfig({ env: { GOATKIT_CONFIG: file } }).server.trustProxy,
      ["192.0.2.7"],
    );
    for (const bad of ["proxy.example", "10.0.0.256", "yes"]) {
      let failed: unknown;
      try {
        env(bad);
      } catch (e) {
        failed = e;
      }
      assert(
        failed instanceof ConfigValueError &&
          failed.setting === "GOATKIT_TRUST_PROXY",
        `${bad}: ${failed}`,
      );
    }
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

/** This machine's IPv4/IPv6 addresses that are not loopback. */
function externalAddresses(): string[] {
  return Deno.networkInterfaces()
    .filter((i) =>
      !i.address.startsWith("127.") && i.address !== "::1" &&
      !i.address.startsWith("fe80:") // link-local needs a scope id
    )
    .map((i) => i.address);
}

Deno.test("boot with no hostname configured listens on 127.0.0.1 only", async () => {
  const data = await Deno.makeTempDir();
  const plugins = await Deno.makeTempDir();
  const db = await privateSchema();
  // No GOATKIT_HOSTNAME: the default applies.
  const config = hostConfig(data, plugins, db.url);
  assertEquals(config.server.hostname, "127.0.0.1");
  const host = await boot({ config, print: () => {}, loadPlugins: false });
  try {
    // The URL is built from the address actually bound.
    const m = /^http:\/\/127\.0\.0\.1:(\d+)$/.exec(host.url);
    assert(m, `url ${host.url}`);
    const port = Number(m[1]);
    const health = await fetch(`${host.url}/healthz`);
    assertEquals(health.status, 200);
    await health.body?.cancel();

    const external = externalAddresses();
    if (external.length === 0) {
      // Nothing to try: this machine has no address but loopback.
      console.warn(
        "skipped the non-loopback part: this machine has no non-loopback address",
      );
    }
    for (const hostname of external) {
      let refused: unknown;
      try {
        const conn = await Deno.connect({ hostname, port });
        conn.close();
      } catch (e) {
        refused = e;
      }
      assert(
        refused instanceof Deno.errors.ConnectionRefused,
        `${hostname}:${port} must be refused, got ${refused ?? "a connection"}`,
      );
    }
  } finally {
    await host.close();
    await Deno.remove(data, { recursive: true });
    await Deno.remove(plugins, { recursive: true });
    await db.drop();
  }
});

Deno.test("host/serve.ts warns when told to listen beyond loopback without a trusted proxy", async () => {
  const data = await Deno.makeTempDir();
  const plugins = await Deno.makeTempDir();
  const db = await privateSchema();
  const child = new Deno.Command(Deno.execPath(), {
    args: ["run", "--allow-all", join(ROOT, "host/serve.ts")],
    cwd: data,
    env: {
      PORT: "0",
      GOATKIT_HOSTNAME: "0.0.0.0",
      GOATKIT_DATA_DIR: join(data, "d"),
      GOATKIT_PLUGINS_DIR: plugins,
      GOATKIT_HOT_RELOAD: "false",
      DATABASE_URL: db.url,
      NO_COLOR: "1",
    },
    stdin: "null",
    stdout: "piped",
    stderr: "piped",
  }).spawn();
  const stdout = child.stdout.text();
  const watchdog = setTimeout(() => {
    try {
      child.kill("SIGKILL");
    } catch { /* gone */ }
  }, 120_000);
  try {
    const reader = child.stderr.pipeThrough(new TextDecoderStream())
      .getReader();
    let err = "";
    while (!/warning: listening on 0\.0\.0\.0/.test(err)) {
      const { value, done } = await reader.read();
      if (done) break;
      err += value;
    }
    assertMatch(err, /plain HTTP.*GOATKIT_TRUST_PROXY/);
    await reader.cancel();
  } finally {
    clearTimeout(watchdog);
    try {
      child.kill("SIGTERM");
    } catch { /* gone */ }
    await child.status;
    await stdout.catch(() => "");
    await Deno.remove(data, { recursive: true });
    await Deno.remove(plugins, { recursive: true });
    await db.drop();
  }
});

/** A real app on a real loopback server (plain HTTP, or TLS with `tls`). */
async function serveApp(
  options: {
    trustProxy?: boolean | string[];
    secureCookies?: boolean;
    tls?: { cert: string; key: string };
  } = {},
): Promise<{
  base: string;
  token: string;
  server: GoatKitApp;
  close(): Promise<void>;
}> {
  const tokens = new MemoryTokenStore();
  const { token } = await tokens.create({ name: "admin", admin: true });
  const manager = new Manager();
  const server = createApp({
    manager,
    tokens,
    ...(options.trustProxy !== undefined
      ? { trustProxy: options.trustProxy }
      : {}),
    ...(options.secureCookies ? { secureCookies: true } : {}),
  });
  const ac = new AbortController();
  const listening = Promise.withResolvers<Deno.NetAddr>();
  const http = Deno.serve({
    port: 0,
    hostname: "127.0.0.1",
    signal: ac.signal,
    onListen: (a) => listening.resolve(a as Deno.NetAddr),
    ...(options.tls ?? {}),
  }, server.fetch);
  const { port } = await listening.promise;
  return {
    base: `${options.tls ? "https" : "http"}://${
      options.tls ? "localhost" : "127.0.0.1"
    }:${port}`,
    token,
    server,
    async close() {
      ac.abort();
      await http.finished;
      server.close();
      await manager.shutdownAll();
    },
  };
}

/** What a browser would get: the login form's cookie, then the session cookie, and HSTS. */
async function loginJourney(
  base: string,
  token: string,
  init: { headers?: Record<string, string>; client?: Deno.HttpClient } = {},
): Promise<{ csrfCookie: string; sessionCookie: string; hsts: string[] }> {
  const headers = init.headers ?? {};
  const opts = init.client ? { client: init.client } : {};
  const hsts: string[] = [];
  const form = await fetch(`${base}/login`, { headers, ...opts });
  assertEquals(form.status, 200);
  hsts.push(form.headers.get("strict-transport-security") ?? "");
  const csrfCookie = form.headers.getSetCookie().find((c) =>
    c.startsWith("gk_login_csrf=")
  );
  assert(csrfCookie, "login form sets its CSRF cookie");
  const csrf = /^gk_login_csrf=([^;]+)/.exec(csrfCookie)![1]!;
  await form.body?.cancel();
  const post = await fetch(`${base}/login`, {
    method: "POST",
    redirect: "manual",
    headers: {
      ...headers,
      cookie: `gk_login_csrf=${csrf}`,
      "content-type": "application/x-www-form-urlencoded",
    },
    body: new URLSearchParams({ _csrf: csrf, token, next: "/admin/" }),
    ...opts,
  });
  assertEquals(post.status, 303);
  hsts.push(post.headers.get("strict-transport-security") ?? "");
  const sessionCookie = post.headers.getSetCookie().find((c) =>
    c.startsWith("gk_session=")
  );
  assert(sessionCookie, "login sets the session cookie");
  await post.body?.cancel();
  const health = await fetch(`${base}/healthz`, { headers, ...opts });
  hsts.push(health.headers.get("strict-transport-security") ?? "");
  await health.body?.cancel();
  return { csrfCookie, sessionCookie, hsts };
}

const secure = (cookie: string) => /;\s*Secure(;|$)/i.test(cookie);

Deno.test("plain HTTP: no Secure cookie, no HSTS", async () => {
  const t = await serveApp();
  try {
    const r = await loginJourney(t.base, t.token);
    assertEquals([secure(r.csrfCookie), secure(r.sessionCookie)], [
      false,
      false,
    ]);
    assertMatch(r.sessionCookie, /HttpOnly/i);
    assertEquals(r.hsts, ["", "", ""]);
  } finally {
    await t.close();
  }
});

Deno.test("hostile: X-Forwarded-Proto from a client without a trusted proxy changes nothing", async () => {
  const spoof = { "x-forwarded-proto": "https" };
  // No trusted proxy at all.
  const none = await serveApp();
  try {
    const r = await loginJourney(none.base, none.token, { headers: spoof });
    assertEquals([secure(r.csrfCookie), secure(r.sessionCookie)], [
      false,
      false,
    ]);
    assertEquals(r.hsts, ["", "", ""]);
  } finally {
    await none.close();
  }
  // A trusted proxy is configured, but this peer (127.0.0.1) is not it.
  const other = await serveApp({ trustProxy: ["192.0.2.99"] });
  try {
    const r = await loginJourney(other.base, other.token, { headers: spoof });
    assertEquals([secure(r.csrfCookie), secure(r.sessionCookie)], [
      false,
      false,
    ]);
    assertEquals(r.hsts, ["", "", ""]);
  } finally {
    await other.close();
  }
});

Deno.test("behind a trusted proxy saying https: Secure cookies and HSTS; saying http: neither", async () => {
  for (const trustProxy of [["127.0.0.1"], true] as const) {
    const t = await serveApp({ trustProxy: trustProxy as string[] | true });
    try {
      const r = await loginJourney(t.base, t.token, {
        headers: { "x-forwarded-proto": "https" },
      });
      assertEquals([secure(r.csrfCookie), secure(r.sessionCookie)], [
        true,
        true,
      ], `trustProxy ${trustProxy}`);
      assertEquals(r.hsts, [
        "max-age=31536000",
        "max-age=31536000",
        "max-age=31536000",
      ]);
      // The proxy appends: the last value is the one it added.
      const plain = await loginJourney(t.base, t.token, {
        headers: { "x-forwarded-proto": "https, http" },
      });
      assertEquals(
        [secure(plain.csrfCookie), secure(plain.sessionCookie), plain.hsts],
        [false, false, ["", "", ""]],
      );
    } finally {
      await t.close();
    }
  }
});

Deno.test("secureCookies forces Secure on plain HTTP, but never HSTS", async () => {
  const t = await serveApp({ secureCookies: true });
  try {
    const r = await loginJourney(t.base, t.token);
    assertEquals([secure(r.csrfCookie), secure(r.sessionCookie)], [
      true,
      true,
    ]);
    assertEquals(r.hsts, ["", "", ""]);
  } finally {
    await t.close();
  }
});

/**
 * A throw-away CA and a certificate for localhost/127.0.0.1 it signed, made
 * with openssl (rustls refuses a CA certificate used as the server's own).
 */
async function testCertificate(
  dir: string,
): Promise<{ ca: string; cert: string; key: string }> {
  const p = (f: string) => join(dir, f);
  const run = async (args: string[]) => {
    const out = await new Deno.Command("openssl", {
      args,
      stdout: "null",
      stderr: "piped",
    }).output();
    assert(out.success, new TextDecoder().decode(out.stderr));
  };
  const ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1"];
  await run([
    "req",
    "-x509",
    ...ec,
    "-nodes",
    "-days",
    "1",
    "-subj",
    "/CN=GoatKit test CA",
    "-keyout",
    p("ca.key"),
    "-out",
    p("ca.pem"),
  ]);
  await run([
    "req",
    ...ec,
    "-nodes",
    "-subj",
    "/CN=localhost",
    "-keyout",
    p("key.pem"),
    "-out",
    p("req.pem"),
  ]);
  await Deno.writeTextFile(
    p("ext.cnf"),
    "basicConstraints=critical,CA:FALSE\nsubjectAltName=DNS:localhost,IP:127.0.0.1\nextendedKeyUsage=serverAuth\n",
  );
  await run([
    "x509",
    "-req",
    "-in",
    p("req.pem"),
    "-CA",
    p("ca.pem"),
    "-CAkey",
    p("ca.key"),
    "-CAcreateserial",
    "-days",
    "1",
    "-extfile",
    p("ext.cnf"),
    "-out",
    p("cert.pem"),
  ]);
  return {
    ca: await Deno.readTextFile(p("ca.pem")),
    cert: await Deno.readTextFile(p("cert.pem")),
    key: await Deno.readTextFile(p("key.pem")),
  };
}

const hasOpenssl = (() => {
  try {
    return new Deno.Command("openssl", { args: ["version"], stdout: "null" })
      .outputSync().success;
  } catch {
    return false;
  }
})();

Deno.test({
  name:
    "real HTTPS (Deno.serve with an openssl-made certificate): Secure cookies and HSTS",
  // openssl makes the certificate (.ci/setup installs it); without it there
  // is no certificate to serve, so the test cannot run.
  ignore: !hasOpenssl,
  async fn() {
    const dir = await Deno.makeTempDir();
    try {
      const { ca, cert, key } = await testCertificate(dir);
      const t = await serveApp({ tls: { cert, key } });
      const client = Deno.createHttpClient({ caCerts: [ca] });
      try {
        // A client claiming plain HTTP through the header does not turn TLS off.
        const r = await loginJourney(t.base, t.token, {
          client,
          headers: { "x-forwarded-proto": "http" },
        });
        assertEquals([secure(r.csrfCookie), secure(r.sessionCookie)], [
          true,
          true,
        ]);
        assertEquals(r.hsts, [
          "max-age=31536000",
          "max-age=31536000",
          "max-age=31536000",
        ]);
      } finally {
        client.close();
        await t.close();
      }
    } finally {
      await Deno.remove(dir, { recursive: true });
    }
  },
});
