// Configuration: file + environment overrides, secrets kept apart, plugin
// sections; and createServices picking the embedded defaults or the
// configured services.

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
