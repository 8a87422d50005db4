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
      hostname: "0.0.0.0", // default
      dataDir: "/srv/env",
      pluginsDir: "./fixtures/plugins", // default
      title: "From env",
      secureCookies: false,
      lazyLoad: true, // file
      hotReload: false,
      trustedKeys: ["key-a", "key-b"],
      requireSignature: false,
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
