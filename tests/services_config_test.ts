// Configuration: file + environment overrides, secrets kept apart, plugin
// sections; loadConfig giving the server settings and those values from one
// goatkit.json + environment; and createServices picking the embedded
// defaults or the configured services.

import assert from "node:assert/strict";
import {
  ConfigError,
  ConfigStore,
  createServices,
  KvCacheStore,
  OutboxMailer,
  PgDatabase,
  PgliteDatabase,
  RedisCacheStore,
  SmtpMailer,
} from "../host/services/mod.ts";
import {
  ConfigValueError,
  loadConfig,
  SERVER_SETTING_ALIASES,
} from "../host/services/config.ts";
import { BasicHostAPI } from "../host/services/basic_host_api.ts";
import { LogBuffer } from "../host/log_buffer.ts";
import { I18nRegistry } from "../host/registries/i18n.ts";
import { createCallContext } from "../host/model/plugin.ts";
import { APPROVAL_KINDS } from "../permissions/grants.ts";

Deno.test("config: file plus environment", async (t) => {
  const dir = await Deno.makeTempDir();
  const path = `${dir}/goatkit.json`;
  try {
    await Deno.writeTextFile(
      path,
      JSON.stringify({
        app: {
          name: "Helpdesk",
          timezone: "Europe/Berlin",
          port: 8080,
          debug: false,
        },
        mail: { from: "desk@example.com" },
        plugins: { hello: { greeting: "Hi", nested: { level: 2 } } },
        secrets: ["STRIPE_KEY", "MISSING_ONE"],
      }),
    );
    const env = {
      GOATKIT_APP__NAME: "Desk (env)",
      GOATKIT_FEATURE__BETA: "on",
      GOATKIT_SECRET_API_TOKEN: "t0ken",
      GOATKIT_PLUGIN__HELLO_WORLD__COLOR: "blue",
      GOATKIT_PLUGIN__HELLO__GREETING: "Hello (env)",
      STRIPE_KEY: "sk_live",
      DATABASE_URL: "postgres://secret@db/x",
      GOATKIT_DATA_DIR: "/srv/data",
    };
    const config = ConfigStore.fromFileAndEnv(path, env);

    await t.step("file values, flattened, with env overrides", () => {
      assert.equal(config.hostValue("app.name"), "Desk (env)");
      assert.equal(config.hostValue("app.timezone"), "Europe/Berlin");
      assert.equal(config.hostValue("app.port"), "8080");
      assert.equal(config.hostValue("app.debug"), "false");
      assert.equal(config.hostValue("app.env"), "development"); // default
      assert.equal(config.hostValue("feature.beta"), "on");
      assert.equal(config.hostValue("mail.from"), "desk@example.com");
    });

    await t.step("secrets are never host values", () => {
      assert.equal(config.secret("API_TOKEN"), "t0ken");
      assert.equal(config.secret("STRIPE_KEY"), "sk_live");
      assert.equal(config.secret("MISSING_ONE"), undefined);
      for (
        const key of [
          "API_TOKEN",
          "STRIPE_KEY",
          "secret_api_token",
          "api_token",
          "stripe_key",
        ]
      ) {
        assert.equal(config.hostValue(key), undefined, key);
      }
      assert.ok(
        !config.hostKeys().some((k) =>
          k.includes("secret") || k.includes("stripe")
        ),
      );
      // Other environment variables are neither.
      assert.equal(config.hostValue("DATABASE_URL"), undefined);
      assert.equal(config.secret("DATABASE_URL"), undefined);
      assert.ok(!config.hostKeys().some((k) => k.includes("database")));
      // The server's own variables are not configuration values.
      assert.ok(
        !config.hostKeys().some((k) => k.includes("data")),
        config.hostKeys().join(),
      );
    });

    await t.step("plugin sections", () => {
      assert.equal(config.pluginValue("hello", "greeting"), "Hello (env)");
      assert.equal(config.pluginValue("hello", "nested.level"), "2");
      assert.deepEqual(config.pluginSection("hello-world"), { color: "blue" });
      assert.deepEqual(config.pluginSection("nobody"), {});
      assert.equal(config.pluginValue("nobody", "greeting"), undefined);
      // A copy: changing it changes nothing.
      config.pluginSection("hello").greeting = "changed";
      assert.equal(config.pluginValue("hello", "greeting"), "Hello (env)");
    });

    await t.step(
      "missing file = defaults; broken file = ConfigError",
      async () => {
        const none = ConfigStore.fromFileAndEnv(`${dir}/absent.json`, {});
        assert.equal(none.hostValue("app.name"), "GoatKit");
        assert.equal(
          ConfigStore.fromFileAndEnv(undefined, {}).hostValue("app.timezone"),
          "UTC",
        );
        await Deno.writeTextFile(`${dir}/bad.json`, "{ not json");
        assert.throws(
          () => ConfigStore.fromFileAndEnv(`${dir}/bad.json`, {}),
          ConfigError,
        );
        await Deno.writeTextFile(`${dir}/arr.json`, "[1]");
        assert.throws(
          () => ConfigStore.fromFileAndEnv(`${dir}/arr.json`, {}),
          ConfigError,
        );
      },
    );
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("loadConfig: one goatkit.json + environment gives server and plugin settings", async () => {
  const dir = await Deno.makeTempDir();
  const path = `${dir}/goatkit.json`;
  try {
    await Deno.writeTextFile(
      path,
      JSON.stringify({
        server: {
          port: 9000,
          dataDir: "/srv/file",
          title: "From file",
          trustedKeys: ["key-a", " key-b "],
          lazyLoad: true,
        },
        app: { name: "Helpdesk" },
        plugins: { hello: { greeting: "Hi" } },
        secrets: ["STRIPE_KEY"],
      }),
    );
    const config = loadConfig({
      env: {
        GOATKIT_CONFIG: path,
        GOATKIT_SERVER__PORT: "9100", // sectioned form
        PORT: "9200", // alias: wins over the sectioned form
        GOATKIT_SERVER__TITLE: "From env",
        GOATKIT_DATA_DIR: "/srv/env",
        GOATKIT_HOT_RELOAD: "0",
        GOATKIT_APP__NAME: "Desk",
        GOATKIT_PLUGIN__HELLO__COLOR: "blue",
        GOATKIT_SECRET_API_TOKEN: "t0ken",
        STRIPE_KEY: "sk_live",
      },
    });
    assert.equal(config.path, path);
    assert.ok(config.fileFound);
    assert.deepEqual(config.server, {
      port: 9200,
      hostname: "127.0.0.1", // default
      dataDir: "/srv/env",
      pluginsDir: "./data/plugins", // default
      examplePlugins: false, // default
      title: "From env",
      secureCookies: false,
      lazyLoad: true, // file
      hotReload: false,
      trustedKeys: ["key-a", "key-b"],
      requireSignature: false,
      trustedExecutables: [], // default
      trustProxy: false,
      requireApproval: [...APPROVAL_KINDS], // default: all
      jobCatchUp: "once", // default
      maxInFlight: 1024, // default
      drainTimeoutMs: 10_000, // default
      pluginQueueLength: 256, // default
      pluginQueueWaitMs: 1_000, // default
      pluginIdleTimeoutMs: 60_000, // default
      extismMaxVarBytes: 1_048_576, // default
      routeTimeoutMs: 10_000, // default
      metrics: true, // default
      metricsToken: "", // default
      logFormat: "text", // default
      logRetentionDays: 14, // defaults
      logMaxRows: 100_000,
      auditRetentionDays: 90,
      auditMaxRows: 100_000,
    });
    // The same read gives the host values, plugin sections and secrets.
    assert.equal(config.store.hostValue("app.name"), "Desk");
    assert.equal(config.store.hostValue("server.title"), "From env");
    assert.deepEqual(config.store.pluginSection("hello"), {
      greeting: "Hi",
      color: "blue",
    });
    assert.equal(config.store.secret("API_TOKEN"), "t0ken");
    assert.equal(config.store.secret("STRIPE_KEY"), "sk_live");
    // The flat aliases stay out of the host values, as before.
    const { store } = config;
    assert.ok(
      !store.hostKeys().some((k) => store.hostValue(k) === "/srv/env"),
      store.hostKeys().join(),
    );

    // No file (default path absent): defaults, and env still applies.
    const bare = loadConfig({
      env: { GOATKIT_PLUGIN__HELLO__GREETING: "Yo" },
      defaultPath: `${dir}/absent.json`,
    });
    assert.equal(bare.fileFound, false);
    assert.equal(bare.server.port, 8080);
    assert.equal(bare.store.pluginValue("hello", "greeting"), "Yo");
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("loadConfig: a bad value is a ConfigValueError naming the variable or key", async (t) => {
  const dir = await Deno.makeTempDir();
  const absent = `${dir}/absent.json`;
  const fileWith = async (server: unknown) => {
    await Deno.writeTextFile(`${dir}/g.json`, JSON.stringify({ server }));
    return `${dir}/g.json`;
  };
  const refused = (
    env: Record<string, string>,
    setting: string,
    origin: "environment" | "file",
  ) =>
    assert.throws(
      () => loadConfig({ env, defaultPath: absent }),
      (e: unknown) =>
        e instanceof ConfigValueError && e instanceof ConfigError &&
        e.setting === setting && e.origin === origin &&
        e.message.startsWith("Cannot use ") && e.message.includes(setting),
    );
  try {
    await t.step("environment", () => {
      refused({ PORT: "http" }, "PORT", "environment");
      refused({ PORT: "70000" }, "PORT", "environment");
      refused({ PORT: "" }, "PORT", "environment");
      refused(
        { GOATKIT_SERVER__HOTRELOAD: "yes" },
        "GOATKIT_SERVER__HOTRELOAD",
        "environment",
      );
      refused(
        { GOATKIT_LAZY_LOAD: "TRUE" },
        "GOATKIT_LAZY_LOAD",
        "environment",
      );
      refused({ GOATKIT_HOSTNAME: "" }, "GOATKIT_HOSTNAME", "environment");
    });
    await t.step("goatkit.json", async () => {
      const cases: [unknown, string][] = [
        [{ port: 1.5 }, "server.port"],
        [{ port: "80x" }, "server.port"],
        [{ dataDir: 5 }, "server.dataDir"],
        [{ hotReload: "maybe" }, "server.hotReload"],
        [{ trustedKeys: [1] }, "server.trustedKeys"],
        ["not an object", "server"],
      ];
      for (const [server, setting] of cases) {
        const path = await fileWith(server);
        refused({ GOATKIT_CONFIG: path }, setting, "file");
      }
      // The environment wins, so a bad file value it overrides is not read.
      const path = await fileWith({ port: "bad" });
      assert.equal(
        loadConfig({ env: { GOATKIT_CONFIG: path, PORT: "1" } }).server.port,
        1,
      );
    });
    await t.step("a GOATKIT_CONFIG that does not exist", () => {
      assert.throws(
        () => loadConfig({ env: { GOATKIT_CONFIG: absent } }),
        (e: unknown) =>
          e instanceof ConfigError && !(e instanceof ConfigValueError) &&
          /GOATKIT_CONFIG/.test(e.message),
      );
    });
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("loadConfig: requireApproval (GOATKIT_REQUIRE_APPROVAL) — all by default, none, or kinds", async () => {
  const dir = await Deno.makeTempDir();
  const absent = `${dir}/absent.json`;
  const approval = (env: Record<string, string>) =>
    loadConfig({ env, defaultPath: absent }).server.requireApproval;
  try {
    assert.deepEqual(approval({}), [...APPROVAL_KINDS]);
    assert.ok(!approval({}).includes("log" as never));
    assert.deepEqual(approval({ GOATKIT_REQUIRE_APPROVAL: "all" }), [
      ...APPROVAL_KINDS,
    ]);
    assert.deepEqual(approval({ GOATKIT_REQUIRE_APPROVAL: "none" }), []);
    assert.deepEqual(
      approval({ GOATKIT_REQUIRE_APPROVAL: "http, Email,db" }),
      ["db", "email", "http"],
    );
    // The sectioned form, and the alias winning over it.
    assert.deepEqual(
      approval({ GOATKIT_SERVER__REQUIREAPPROVAL: "none" }),
      [],
    );
    assert.deepEqual(
      approval({
        GOATKIT_SERVER__REQUIREAPPROVAL: "none",
        GOATKIT_REQUIRE_APPROVAL: "http",
      }),
      ["http"],
    );
    // goatkit.json: a string or an array.
    const file = `${dir}/g.json`;
    await Deno.writeTextFile(
      file,
      JSON.stringify({ server: { requireApproval: ["email", "http"] } }),
    );
    assert.deepEqual(approval({ GOATKIT_CONFIG: file }), ["email", "http"]);
    await Deno.writeTextFile(
      file,
      JSON.stringify({ server: { requireApproval: "none" } }),
    );
    assert.deepEqual(approval({ GOATKIT_CONFIG: file }), []);
    // Bad values name the variable or key.
    for (const bad of ["kv", "log", "none,db", "yes"]) {
      assert.throws(
        () => approval({ GOATKIT_REQUIRE_APPROVAL: bad }),
        (e: unknown) =>
          e instanceof ConfigValueError &&
          e.setting === "GOATKIT_REQUIRE_APPROVAL" &&
          /is not none, all or a list of permission kinds/.test(e.message),
        bad,
      );
    }
    await Deno.writeTextFile(
      file,
      JSON.stringify({ server: { requireApproval: [1] } }),
    );
    assert.throws(
      () => approval({ GOATKIT_CONFIG: file }),
      (e: unknown) =>
        e instanceof ConfigValueError &&
        e.setting === "server.requireApproval" && e.origin === "file",
    );
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("config: inherited names (__proto__, constructor, toString, hasOwnProperty) are unset keys, never members", async (t) => {
  const NAMES = ["__proto__", "constructor", "toString", "hasOwnProperty"];
  const dir = await Deno.makeTempDir();
  try {
    const path = `${dir}/goatkit.json`;
    // Written as text: JSON.parse makes "__proto__" an own key (a literal
    // in JS would set the prototype instead).
    await Deno.writeTextFile(
      path,
      `{
        "app": { "name": "Desk" },
        "__proto__": { "polluted": "yes" },
        "plugins": {
          "hello": { "greeting": "Hi", "__proto__": { "polluted": "yes" } },
          "__proto__": { "greeting": "from __proto__" }
        },
        "secrets": ["constructor", "toString", "STRIPE_KEY"],
        "server": { "__proto__": { "port": 1 } }
      }`,
    );
    const env = {
      GOATKIT_CONFIG: path,
      STRIPE_KEY: "sk_live",
      GOATKIT_PLUGIN__CONSTRUCTOR__POLLUTED: "yes",
      GOATKIT_PLUGIN__HELLO__CONSTRUCTOR: "set-by-env",
    };
    const config = loadConfig({ env });
    const store = config.store;

    await t.step("host values and secrets", () => {
      for (const key of NAMES) {
        assert.equal(store.hostValue(key), undefined, `hostValue(${key})`);
        assert.equal(store.secret(key), undefined, `secret(${key})`);
      }
      // A nested "__proto__" object is data under its own dotted key.
      assert.equal(store.hostValue("__proto__.polluted"), "yes");
      assert.equal(store.secret("STRIPE_KEY"), "sk_live");
      assert.equal(config.server.port, 8080, "server.__proto__ is not read");
    });

    await t.step("plugin sections", () => {
      for (const key of NAMES) {
        assert.equal(
          store.pluginValue("hello", key),
          key === "constructor" ? "set-by-env" : undefined,
          `pluginValue(hello, ${key})`,
        );
        assert.equal(store.pluginValue("nobody", key), undefined);
      }
      assert.equal(store.pluginValue("hello", "__proto__.polluted"), "yes");
      assert.equal(
        store.pluginValue("__proto__", "greeting"),
        "from __proto__",
        "a plugin named __proto__ is just a name",
      );
      assert.equal(store.pluginValue("constructor", "polluted"), "yes");
      for (const key of NAMES) {
        assert.equal(store.pluginValue("toString", key), undefined);
      }
      const section = store.pluginSection("hello");
      assert.equal(Object.getPrototypeOf(section), Object.prototype);
      assert.equal(section.greeting, "Hi");
    });

    await t.step("nothing global was changed", () => {
      const probe = {} as Record<string, unknown>;
      assert.equal(probe.polluted, undefined);
      assert.equal(
        (Object as unknown as Record<string, unknown>).polluted,
        undefined,
      );
      assert.equal(typeof ({}).toString, "function");
    });

    await t.step('BasicHostAPI answers the missing-key ""', async () => {
      const host = new BasicHostAPI({
        logs: new LogBuffer(),
        i18n: new I18nRegistry(),
        config: { "app.name": "GoatKit" },
      });
      const ctx = createCallContext({ chain: ["demo"] });
      for (const key of NAMES) {
        const v = await host.configGet(ctx, key);
        assert.equal(v, "", key);
        assert.equal(typeof v, "string");
      }
      assert.equal(await host.configGet(ctx, "app.name"), "GoatKit");
    });
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("host/serve.ts documents every server setting and its names", async () => {
  const doc = await Deno.readTextFile(
    new URL("../host/serve.ts", import.meta.url),
  );
  for (const [key, alias] of Object.entries(SERVER_SETTING_ALIASES)) {
    for (
      const name of [
        `\`server.${key}\``,
        `\`${alias}\``,
        `\`GOATKIT_SERVER__${key.toUpperCase()}\``,
      ]
    ) {
      assert.ok(doc.includes(name), `host/serve.ts does not mention ${name}`);
    }
  }
});

Deno.test("createServices: embedded defaults and configured services", async () => {
  const dir = await Deno.makeTempDir();
  try {
    const embedded = createServices({ env: {}, dataDir: dir });
    assert.ok(embedded.db.default instanceof PgliteDatabase);
    assert.equal(
      embedded.db.default.sqlClient.started,
      false,
      "PGlite starts lazily",
    );
    assert.ok(embedded.cache instanceof KvCacheStore);
    assert.ok(embedded.mailer instanceof OutboxMailer);
    assert.equal(embedded.mailer.dir, `${dir}/outbox`);
    await embedded.cache.set("p", "k", new Uint8Array([1]), 0);
    assert.ok((await Deno.stat(`${dir}/cache.kv`)).isFile);
    await embedded.close();

    const configured = createServices({
      env: {
        DATABASE_URL: "postgres://postgres@127.0.0.1:5432/test",
        DATABASE_URL_REPORTS: "postgres://postgres@127.0.0.1:5432/test",
        REDIS_URL: "redis://127.0.0.1:6379",
        SMTP_URL: "smtp://127.0.0.1:2525",
        SMTP_FROM: "host@example.com",
      },
      dataDir: dir,
    });
    assert.ok(configured.db.default instanceof PgDatabase);
    assert.deepEqual(configured.db.names, ["reports"]);
    assert.ok(configured.cache instanceof RedisCacheStore);
    assert.ok(configured.mailer instanceof SmtpMailer);
    await configured.close(); // nothing connected yet: closes cleanly
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});
