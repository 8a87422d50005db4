import assert from "node:assert/strict";
import {
  type CallContext,
  decodeJson,
  encodeJson,
  InvalidManifestError,
  type LazyLoader,
  Manager,
  MemoryStateStore,
  type Plugin,
  PluginAlreadyRegisteredError,
  PluginCallCycleError,
  PluginDisabledError,
  PluginInitError,
  PluginNotFoundError,
  PluginTimeoutError,
} from "../mod.ts";
import { createHelloPlugin } from "../fixtures/native/hello.ts";

function plugin(
  name: string,
  call: Plugin["call"] = () => Promise.resolve(encodeJson({ ok: true })),
  extra: Partial<Plugin> & { manifest?: Record<string, unknown> } = {},
): Plugin {
  return {
    gkRegister: () =>
      ({ name, version: "1.0.0", ...(extra.manifest ?? {}) }) as never,
    init: extra.init ?? (() => Promise.resolve()),
    call,
    shutdown: extra.shutdown ?? (() => Promise.resolve()),
  };
}

async function withManager(
  fn: (m: Manager) => Promise<void>,
  options: ConstructorParameters<typeof Manager>[0] = {},
): Promise<void> {
  const m = new Manager(options);
  try {
    await fn(m);
  } finally {
    await m.shutdownAll().catch(() => {});
  }
}

const json = (v: unknown) => encodeJson(v);

Deno.test("Manager registers hello and exposes its contributions", async () => {
  await withManager(async (m) => {
    const hello = createHelloPlugin();
    const manifest = await m.register(hello);
    assert.equal(manifest.name, "hello");
    assert.deepEqual(m.list().map((x) => x.name), ["hello"]);
    assert.equal(m.get("hello"), hello);
    assert.equal(m.manifest("hello")?.version, "1.0.0");
    assert.equal(m.routes().length, 2);
    assert.ok(
      m.routes().some((r) =>
        r.path === "/api/plugins/hello" && r.plugin === "hello"
      ),
    );
    assert.deepEqual(m.menuItems("admin").map((i) => i.id), ["hello-menu"]);
    assert.deepEqual(m.widgets("dashboard").map((w) => w.id), ["hello-widget"]);
    assert.deepEqual(m.jobs().map((j) => j.schedule), ["0 * * * *"]);
    assert.equal(m.widgets("nonexistent-location").length, 0);
    assert.equal(m.menuItems("nonexistent-location").length, 0);
    assert.ok(m.logs.getByPlugin("hello").length >= 1);
  });
});

Deno.test("Manager.call() reaches the plugin with args and language", async () => {
  await withManager(async (m) => {
    await m.register(createHelloPlugin());
    const out = decodeJson<{ message: string }>(
      await m.call("hello", "hello", json({ name: "GoatKit" })),
    );
    assert.equal(out?.message, "Hello, GoatKit!");
    const de = decodeJson<{ message: string }>(
      await m.call("hello", "hello", json({ name: "Ana" }), {
        language: "de-CH",
      }),
    );
    assert.equal(de?.message, "Hallo, Ana!");
    const noArgs = await m.call("hello", "stats", null);
    assert.ok(noArgs);
    assert.equal(decodeJson<{ call_count: number }>(noArgs)?.call_count, 3);
  });
});

Deno.test("Manager.register() refuses duplicates by name and by instance", async () => {
  await withManager(async (m) => {
    const hello = createHelloPlugin();
    await m.register(hello);
    await assert.rejects(
      () => m.register(createHelloPlugin()),
      PluginAlreadyRegisteredError,
    );
    await assert.rejects(
      () => m.register(hello),
      /Cannot register plugin "hello": it is already registered/,
    );
  });
});

Deno.test("Manager.register() refuses concurrent registration of one name", async () => {
  await withManager(async (m) => {
    const slow = plugin("slow", undefined, {
      init: () => new Promise((r) => setTimeout(r, 20)),
    });
    const results = await Promise.allSettled([
      m.register(slow),
      m.register(plugin("slow")),
    ]);
    assert.equal(results.filter((r) => r.status === "fulfilled").length, 1);
    assert.equal(m.list().length, 1);
  });
});

Deno.test("Manager.register() refuses an invalid manifest before init", async () => {
  await withManager(async (m) => {
    let inited = false;
    const bad = plugin("Bad Name", undefined, {
      init: () => {
        inited = true;
        return Promise.resolve();
      },
    });
    await assert.rejects(() => m.register(bad), InvalidManifestError);
    assert.equal(inited, false);
    assert.equal(m.list().length, 0);
  });
});

Deno.test("Manager.register() leaves nothing behind when init throws", async () => {
  await withManager(async (m) => {
    let shutdown = false;
    const failing = plugin("failing", undefined, {
      manifest: { i18n: { translations: { en: { a: "A" } } } },
      init: () => Promise.reject(new Error("no database")),
      shutdown: () => {
        shutdown = true;
        return Promise.resolve();
      },
    });
    const err = await assert.rejects(
      () => m.register(failing),
      (e: unknown) => {
        assert.ok(e instanceof PluginInitError);
        assert.equal(
          e.message,
          'Cannot initialize plugin "failing": no database',
        );
        return true;
      },
    );
    void err;
    assert.equal(m.list().length, 0);
    assert.equal(m.i18n.translate("failing.a", "en"), "failing.a");
    assert.ok(shutdown, "shutdown is called to release what init took");
  });
});

Deno.test("Manager.call() errors for unknown and disabled plugins, with and without caller", async () => {
  await withManager(async (m) => {
    await m.register(createHelloPlugin());
    await assert.rejects(() => m.call("nope", "x", null), (e: unknown) => {
      assert.ok(e instanceof PluginNotFoundError);
      assert.equal(e.message, 'Cannot find plugin "nope"');
      return true;
    });
    await assert.rejects(
      () => m.callFrom("caller", "nope", "fn", null),
      (e: unknown) => {
        assert.ok(e instanceof PluginNotFoundError);
        assert.equal(
          e.message,
          'Cannot find plugin "nope" (required by "caller" to call "fn")',
        );
        assert.equal(e.caller, "caller");
        return true;
      },
    );
    await m.disable("hello");
    await assert.rejects(() => m.call("hello", "hello", null), (e: unknown) => {
      assert.ok(e instanceof PluginDisabledError);
      assert.equal(e.message, 'Cannot call plugin "hello": it is disabled');
      return true;
    });
    await assert.rejects(
      () => m.callFrom("other", "hello", "hello", null),
      /\(required by "other"\): it is disabled/,
    );
  });
});

Deno.test("Manager.disable() hides routes, menus, widgets and jobs; enable() restores them", async () => {
  await withManager(async (m) => {
    await m.register(createHelloPlugin());
    const events: string[] = [];
    m.subscribe((e) => events.push(`${e.type}:${e.name}`));
    await m.disable("hello");
    assert.equal(m.get("hello"), undefined);
    assert.equal(m.isEnabled("hello"), false);
    assert.equal(m.routes().length, 0);
    assert.equal(m.menuItems("admin").length, 0);
    assert.equal(m.widgets("dashboard").length, 0);
    assert.equal(m.jobs().length, 0);
    assert.equal(m.list().length, 1, "list includes disabled plugins");
    await m.enable("hello");
    await m.enable("hello"); // idempotent, no second event
    assert.ok(m.get("hello"));
    assert.equal(m.routes().length, 2);
    assert.deepEqual(events, ["disabled:hello", "enabled:hello"]);
  });
});

Deno.test("Manager enable/disable/unregister of unknown names fail", async () => {
  await withManager(async (m) => {
    await assert.rejects(() => m.enable("ghost"), PluginNotFoundError);
    await assert.rejects(() => m.disable("ghost"), PluginNotFoundError);
    await assert.rejects(
      () => m.unregister("ghost"),
      /Cannot find plugin "ghost"/,
    );
    assert.equal(m.isEnabled("ghost"), false);
    assert.equal(m.status("ghost"), undefined);
  });
});

Deno.test("Manager enabled state persists across Managers through the StateStore", async () => {
  const store = new MemoryStateStore();
  await withManager(async (m) => {
    await m.register(createHelloPlugin());
    await m.disable("hello");
  }, { stateStore: store });
  await withManager(async (m) => {
    await m.register(createHelloPlugin());
    assert.equal(m.isEnabled("hello"), false);
  }, { stateStore: store });
});

Deno.test("Manager.quarantine() disables with a reason admins and callers see", async () => {
  await withManager(async (m) => {
    await m.register(createHelloPlugin());
    await m.quarantine("hello", "5 timeouts in 60 s");
    assert.deepEqual(m.status("hello"), {
      enabled: false,
      reason: "5 timeouts in 60 s",
      runtime: "native",
      inFlight: 0,
    });
    await assert.rejects(
      () => m.call("hello", "hello", null),
      (e: unknown) =>
        e instanceof PluginDisabledError && e.quarantined &&
        e.reason === "5 timeouts in 60 s" &&
        /is disabled: 5 timeouts in 60 s/.test(e.message),
    );
    assert.ok(m.logs.getByLevel("error").some((e) => e.plugin === "hello"));
    await m.enable("hello");
    assert.equal(m.status("hello")?.reason, undefined);
    // An admin's disable is not a quarantine: no reason.
    await m.disable("hello");
    await assert.rejects(
      () => m.call("hello", "hello", null),
      (e: unknown) =>
        e instanceof PluginDisabledError && !e.quarantined &&
        e.reason === undefined,
    );
  });
});

Deno.test("deadlines from the manifest: per function for calls, per route for routes, capped; explicit ones win", async () => {
  const manifest = {
    routes: [
      { method: "GET", path: "/quick", handler: "report", timeout: "2s" },
      { method: "GET", path: "/report", handler: "report" },
      { method: "GET", path: "/plain", handler: "plain" },
      { method: "GET", path: "/huge", handler: "plain", timeout: "2h" },
    ],
    timeouts: { report: "20s" },
  };
  const deadlines: Record<string, number> = {};
  const p = plugin("timed", (fn, _args, ctx) => {
    deadlines[fn] = ctx.deadline;
    return Promise.resolve(null);
  }, { manifest });
  /** The deadline a call got, as ms from its start (within the call's own span). */
  const deadlineOf = async (
    m: Manager,
    fn: string,
    timeoutMs?: number,
  ): Promise<[number, number]> => {
    const before = Date.now();
    await m.call("timed", fn, null, timeoutMs ? { timeoutMs } : {});
    const after = Date.now();
    return [deadlines[fn]! - after, deadlines[fn]! - before];
  };
  const within = ([lo, hi]: [number, number], ms: number) =>
    assert.ok(lo <= ms && ms <= hi, `${ms} not in [${lo}, ${hi}]`);
  await withManager(async (m) => {
    await m.register(p);
    within(await deadlineOf(m, "report"), 20_000);
    within(await deadlineOf(m, "plain"), 30_000);
    within(await deadlineOf(m, "report", 700), 700);
    assert.equal(m.functionTimeoutMs("timed", "report"), 20_000);
    assert.equal(m.functionTimeoutMs("timed", "plain"), 30_000);
    assert.equal(m.functionTimeoutMs("nobody", "x"), 30_000);
    const routes = m.routes();
    assert.deepEqual(routes.map((r) => m.routeTimeoutMs(r)), [
      2_000,
      20_000,
      10_000,
      300_000,
    ]);
    // A new version with other deadlines: asked again about the same
    // route objects, the Manager answers from the new manifest.
    await m.replace(plugin("timed", () => Promise.resolve(null), {
      manifest: { ...manifest, timeouts: { report: "9s" } },
    }));
    assert.deepEqual(routes.map((r) => m.routeTimeoutMs(r)), [
      2_000,
      9_000,
      10_000,
      300_000,
    ]);
  });
  await withManager(async (m) => {
    await m.register(p);
    assert.deepEqual(m.routes().map((r) => m.routeTimeoutMs(r)), [
      2_000,
      15_000,
      5_000,
      15_000,
    ]);
    within(await deadlineOf(m, "report"), 15_000);
  }, {
    defaultRouteTimeoutMs: 5_000,
    maxManifestTimeoutMs: 15_000,
  });
});

Deno.test("Manager.unregister() removes translations, error codes, overrides and jobs", async () => {
  await withManager(async (m) => {
    await m.register(createHelloPlugin({
      templates: [{ name: "base/header.html", override: true }],
    }));
    assert.equal(m.i18n.translate("hello.greeting", "en", ["x"]), "Hello, x!");
    assert.ok(m.errorCodes.lookup("hello:name_required"));
    assert.ok(m.templates.has("base/header.html"));
    await m.unregister("hello");
    assert.equal(m.get("hello"), undefined);
    assert.equal(m.jobs().length, 0);
    assert.equal(m.i18n.translate("hello.greeting", "en"), "hello.greeting");
    assert.equal(m.errorCodes.lookup("hello:name_required"), undefined);
    assert.equal(m.templates.has("base/header.html"), false);
    // the name is free again
    await m.register(createHelloPlugin());
  });
});

Deno.test("Manager.unregister() keeps a plugin whose shutdown fails", async () => {
  await withManager(async (m) => {
    await m.register(plugin("sticky", undefined, {
      shutdown: () => Promise.reject(new Error("busy")),
    }));
    await assert.rejects(
      () => m.unregister("sticky"),
      /Cannot shut down plugin "sticky": busy/,
    );
    assert.ok(m.get("sticky"));
  });
});

Deno.test("Manager refuses a second plugin's i18n namespace, error codes or override", async () => {
  await withManager(async (m) => {
    await m.register(createHelloPlugin({
      templates: [{ name: "base/header.html", override: true }],
    }));
    await assert.rejects(
      () =>
        m.register(plugin("intruder", undefined, {
          manifest: { i18n: { namespace: "hello" } },
        })),
      /namespace "hello" belongs to plugin "hello"/,
    );
    await assert.rejects(
      () =>
        m.register(plugin("core", undefined, {
          manifest: { i18n: { translations: { en: { x: "y" } } } },
        })),
      /belongs to the host/,
    );
    await assert.rejects(
      () =>
        m.register(plugin("theme", undefined, {
          manifest: {
            templates: [{ name: "base/header.html", override: true }],
          },
        })),
      /plugin "hello" overrides it already/,
    );
    assert.deepEqual(m.list().map((x) => x.name), ["hello"]);
  });
});

Deno.test("Manager sorts menu items and widgets by order, then id", async () => {
  await withManager(async (m) => {
    const w = (id: string, order?: number) => ({
      id,
      title: id,
      handler: "h",
      location: "dashboard",
      ...(order === undefined ? {} : { order }),
    });
    await m.register(plugin("zeta", undefined, {
      manifest: { widgets: [w("b", 5), w("a", 5), w("c")] },
    }));
    await m.register(plugin("alpha", undefined, {
      manifest: {
        widgets: [w("first", -1)],
        menu_items: [
          { id: "y", label: "Y", path: "/y", location: "admin", order: 2 },
          { id: "x", label: "X", path: "/x", location: "admin", order: 2 },
          { id: "w", label: "W", path: "/w", location: "admin", order: 1 },
        ],
      },
    }));
    assert.deepEqual(m.widgets("dashboard").map((x) => x.id), [
      "first",
      "c",
      "a",
      "b",
    ]);
    assert.deepEqual(m.menuItems("admin").map((x) => x.id), ["w", "x", "y"]);
  });
});

Deno.test("Manager.call() fails with PluginTimeoutError at the deadline and aborts the plugin's signal", async () => {
  await withManager(async (m) => {
    let seen: CallContext | undefined;
    await m.register(plugin("slow", (_fn, _args, ctx) => {
      seen = ctx;
      return new Promise(() => {});
    }));
    await assert.rejects(
      () => m.call("slow", "wait", null, { timeoutMs: 30 }),
      (e: unknown) => {
        assert.ok(e instanceof PluginTimeoutError);
        assert.equal(e.timeoutMs, 30);
        return true;
      },
    );
    assert.ok(seen?.signal.aborted);
    assert.ok(seen.signal.reason instanceof PluginTimeoutError);
    assert.equal(m.status("slow")?.inFlight, 0);
  });
});

Deno.test("Manager.call() stops when the caller's signal aborts", async () => {
  await withManager(async (m) => {
    await m.register(plugin("slow", () => new Promise(() => {})));
    const ac = new AbortController();
    const p = m.call("slow", "wait", null, { signal: ac.signal });
    ac.abort(new Error("client went away"));
    await assert.rejects(p, /client went away/);
  });
});

Deno.test("a self call fails fast with PluginCallCycleError", async () => {
  await withManager(async (m) => {
    await m.register(plugin("selfish", async (fn, _args, ctx) => {
      if (fn === "outer") {
        return await m.callFrom("selfish", "selfish", "inner", null, {
          parent: ctx,
        });
      }
      return encodeJson("inner");
    }));
    const started = performance.now();
    await assert.rejects(
      () => m.call("selfish", "outer", null),
      (e: unknown) => {
        assert.ok(e instanceof PluginCallCycleError);
        assert.deepEqual(e.chain, ["selfish"]);
        return true;
      },
    );
    assert.ok(performance.now() - started < 5000);
  });
});

Deno.test("a two-plugin cycle through the HostAPI fails fast", async () => {
  await withManager(async (m) => {
    const pingPong = (name: string, other: string): Plugin => {
      let host: import("../mod.ts").HostAPI | undefined;
      return {
        gkRegister: () => ({ name, version: "1.0.0" }),
        init: (h) => {
          host = h;
          return Promise.resolve();
        },
        call: (_fn, args, ctx) => host!.callPlugin(ctx, other, "go", args),
        shutdown: () => Promise.resolve(),
      };
    };
    await m.register(pingPong("ping", "pong"));
    await m.register(pingPong("pong", "ping"));
    await assert.rejects(() => m.call("ping", "go", null), (e: unknown) => {
      assert.ok(e instanceof PluginCallCycleError);
      assert.deepEqual(e.chain, ["ping", "pong"]);
      assert.match(e.message, /"ping" -> "pong" -> "ping"/);
      return true;
    });
  });
});

Deno.test("nested calls inherit the caller's deadline and language", async () => {
  await withManager(async (m) => {
    let inner: CallContext | undefined;
    await m.register(plugin("inner", (_f, _a, ctx) => {
      inner = ctx;
      return Promise.resolve(null);
    }));
    let outerCtx: CallContext | undefined;
    await m.register(plugin("outer", async (_f, _a, ctx) => {
      outerCtx = ctx;
      return await m.callFrom("outer", "inner", "x", null, {
        parent: ctx,
        timeoutMs: 60_000,
      });
    }));
    const result = await m.call("outer", "x", null, {
      timeoutMs: 1000,
      language: "fr",
    });
    assert.equal(result, null);
    assert.equal(inner?.caller, "outer");
    assert.equal(inner?.language, "fr");
    assert.deepEqual(inner?.chain, ["outer", "inner"]);
    assert.ok(inner!.deadline <= outerCtx!.deadline);
  });
});

Deno.test("Manager lazy loading goes through the loader by manifest name", async () => {
  await withManager(async (m) => {
    const asked: string[] = [];
    const loader: LazyLoader = {
      discovered: () => ["hello", "ghost", "broken"],
      ensureLoaded: async (name) => {
        asked.push(name);
        if (name === "hello") await m.register(createHelloPlugin());
        if (name === "broken") throw new Error("bad wasm");
      },
    };
    m.setLazyLoader(loader);
    assert.deepEqual(m.discovered(), ["hello", "ghost", "broken"]);
    const out = await m.call("hello", "stats", null);
    assert.ok(out);
    await assert.rejects(() => m.call("ghost", "x", null), PluginNotFoundError);
    await assert.rejects(() => m.call("broken", "x", null), (e: unknown) => {
      assert.ok(e instanceof PluginNotFoundError);
      assert.match(String((e.cause as Error).message), /bad wasm/);
      return true;
    });
    await assert.rejects(
      () => m.callFrom("hello", "ghost", "x", null),
      /required by "hello"/,
    );
    assert.deepEqual(asked, ["hello", "ghost", "broken", "ghost"]);
    m.setLazyLoader(null);
    assert.deepEqual(m.discovered(), []);
  });
});

Deno.test("Manager.enable() loads a discovered plugin; allWidgets() loads all", async () => {
  await withManager(async (m) => {
    m.setLazyLoader({
      discovered: () => ["hello", "broken"],
      ensureLoaded: async (name) => {
        if (name === "hello") await m.register(createHelloPlugin());
        else throw new Error("cannot load");
      },
    });
    assert.deepEqual((await m.allWidgets("dashboard")).map((w) => w.id), [
      "hello-widget",
    ]);
    assert.ok(m.logs.getByPlugin("broken").length >= 1);
    await m.unregister("hello");
    await m.enable("hello");
    assert.ok(m.isEnabled("hello"));
    await assert.rejects(() => m.enable("broken"), PluginNotFoundError);
  });
});

Deno.test("concurrent lazy loads of one plugin load it once", async () => {
  await withManager(async (m) => {
    let loads = 0;
    m.setLazyLoader({
      discovered: () => ["hello"],
      ensureLoaded: async () => {
        loads++;
        await new Promise((r) => setTimeout(r, 10));
        if (!m.manifest("hello")) await m.register(createHelloPlugin());
      },
    });
    await Promise.all(
      Array.from({ length: 5 }, () => m.call("hello", "stats", null)),
    );
    assert.equal(loads, 1);
  });
});

Deno.test("Manager.shutdownAll() aggregates errors and clears every plugin", async () => {
  const m = new Manager();
  await m.register(plugin("aa", undefined, {
    shutdown: () => Promise.reject(new Error("a broke")),
  }));
  await m.register(plugin("bb"));
  await m.register(plugin("cc", undefined, {
    shutdown: () => Promise.reject(new Error("c broke")),
  }));
  await assert.rejects(() => m.shutdownAll(), (e: unknown) => {
    assert.match(String(e), /Cannot shut down all plugins: \[/);
    assert.match(String(e), /Cannot shut down plugin "aa": a broke/);
    assert.match(String(e), /Cannot shut down plugin "cc": c broke/);
    return true;
  });
  assert.equal(m.list().length, 0);
});

Deno.test("Manager.shutdownAll() waits for in-flight calls up to the grace period", async () => {
  const m = new Manager();
  const order: string[] = [];
  await m.register(plugin("busy", async () => {
    await new Promise((r) => setTimeout(r, 50));
    order.push("call done");
    return null;
  }, {
    shutdown: () => {
      order.push("shutdown");
      return Promise.resolve();
    },
  }));
  const call = m.call("busy", "x", null);
  await m.shutdownAll({ graceMs: 5000 });
  await call;
  assert.deepEqual(order, ["call done", "shutdown"]);
});

Deno.test("Manager.replace() swaps a plugin only after the new one initialised", async () => {
  await withManager(async (m) => {
    const v1 = plugin("swap", () => Promise.resolve(encodeJson("v1")));
    await m.register(v1);
    await m.disable("swap");
    await assert.rejects(
      () =>
        m.replace(plugin("swap", undefined, {
          init: () => Promise.reject(new Error("boom")),
        })),
      PluginInitError,
    );
    await m.enable("swap");
    assert.equal(decodeJson(await m.call("swap", "x", null)), "v1");
    await m.replace({
      ...plugin("swap", () => Promise.resolve(encodeJson("v2"))),
      gkRegister: () => ({ name: "swap", version: "2.0.0" }),
    });
    assert.equal(decodeJson(await m.call("swap", "x", null)), "v2");
    assert.equal(m.manifest("swap")?.version, "2.0.0");
  });
});

Deno.test("Manager calls run concurrently", async () => {
  await withManager(async (m) => {
    await m.register(createHelloPlugin());
    const results = await Promise.all(
      Array.from(
        { length: 50 },
        (_, i) => m.call("hello", "hello", json({ name: `n${i}` })),
      ),
    );
    assert.equal(results.length, 50);
    assert.equal(
      decodeJson<{ message: string }>(results[49]!)?.message,
      "Hello, n49!",
    );
  });
});

Deno.test("Manager closes a per-plugin HostAPI when its plugin goes, never a shared one", async () => {
  const closed: string[] = [];
  const { MemoryHostAPI } = await import("../host/testing/mod.ts");
  const made = (name: string) => {
    const h = new MemoryHostAPI();
    return Object.assign(h, { close: () => void closed.push(name) });
  };
  const m = new Manager({ host: (name) => made(name) });
  await m.register(plugin("one"));
  await m.register(plugin("two"));
  await m.replace({
    ...plugin("two"),
    gkRegister: () => ({ name: "two", version: "2.0.0" }),
  });
  assert.deepEqual(closed, ["two"], "the replaced instance's host");
  await m.unregister("one");
  assert.deepEqual(closed, ["two", "one"]);
  await assert.rejects(() =>
    m.register(plugin("bad", undefined, {
      init: () => Promise.reject(new Error("x")),
    }))
  );
  assert.deepEqual(closed, ["two", "one", "bad"]);
  await m.shutdownAll();
  assert.deepEqual(closed, ["two", "one", "bad", "two"]);

  const shared = made("shared");
  const m2 = new Manager({ host: shared });
  await m2.register(plugin("three"));
  await m2.unregister("three");
  await m2.shutdownAll();
  assert.equal(closed.includes("shared"), false);
});
