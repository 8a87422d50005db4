import assert from "node:assert/strict";
import { join } from "node:path";
import { decodeJson, encodeJson, Manager, type Plugin } from "../mod.ts";
import {
  Loader,
  PluginNameMismatchError,
  type PluginSource,
} from "../host/loading/loader.ts";
import { createRuntimeFactory } from "../host/loading/runtimes.ts";
import { MemoryGrantStore } from "../permissions/grants.ts";

// A stand-in for the WASM runtime: the "module" is a text file whose content
// is the answer. The real runtimes are tested in their own suites, and the
// hot-reload test with real WASM is in tests/hot_reload_test.ts.
async function textPlugin(source: PluginSource): Promise<Plugin> {
  const answer = await Deno.readTextFile(source.entry);
  return {
    gkRegister: () => source.manifest,
    init: () => Promise.resolve(),
    call: async (_fn, _args, ctx) => {
      await new Promise((r) => setTimeout(r, 5));
      if (ctx.signal.aborted) throw new Error("aborted");
      return encodeJson(answer.trim());
    },
    shutdown: () => Promise.resolve(),
  };
}

async function writePlugin(
  root: string,
  folder: string,
  name: string,
  answer: string,
  entry = "plugin.wasm",
): Promise<void> {
  await Deno.mkdir(join(root, folder), { recursive: true });
  await Deno.writeTextFile(
    join(root, folder, "manifest.json"),
    JSON.stringify({ name, version: "1.0.0" }),
  );
  await Deno.writeTextFile(join(root, folder, entry), answer);
}

Deno.test("Loader discovers plugins by manifest name, not by folder or file name", async () => {
  const root = await Deno.makeTempDir();
  try {
    await writePlugin(root, "folder-a", "alpha", "A", "anything.wasm");
    await writePlugin(root, "b", "beta", "B", "main.ts");
    await Deno.mkdir(join(root, "empty"));
    await Deno.mkdir(join(root, "broken"));
    await Deno.writeTextFile(join(root, "broken", "manifest.json"), "{");
    await writePlugin(root, "zz-dup", "alpha", "again");
    await Deno.mkdir(join(root, "noentry"));
    await Deno.writeTextFile(
      join(root, "noentry", "manifest.json"),
      JSON.stringify({ name: "noentry", version: "1.0.0" }),
    );
    const m = new Manager();
    const loader = new Loader(m, { dir: root, load: textPlugin });
    const sources = await loader.scan();
    assert.deepEqual(loader.discovered(), ["alpha", "beta"]);
    assert.equal(sources.find((s) => s.name === "beta")?.kind, "grpc-deno");
    assert.equal(loader.source("alpha")?.kind, "wasm");
    const problems = loader.problems().map((p) => p.dir.split("/").pop());
    assert.deepEqual(problems.sort(), ["broken", "noentry", "zz-dup"]);
    assert.match(
      loader.problems().find((p) => p.dir.endsWith("zz-dup"))!.error,
      /already provided/,
    );
  } finally {
    await Deno.remove(root, { recursive: true });
  }
});

Deno.test("Loader is the Manager's lazy loader: first call loads by manifest name", async () => {
  const root = await Deno.makeTempDir();
  const m = new Manager();
  try {
    await writePlugin(root, "x", "lazy-one", "loaded lazily");
    const loader = new Loader(m, { dir: root, load: textPlugin });
    await loader.scan();
    m.setLazyLoader(loader);
    assert.equal(m.manifest("lazy-one"), undefined);
    assert.deepEqual(m.discovered(), ["lazy-one"]);
    assert.equal(
      decodeJson(await m.call("lazy-one", "x", null)),
      "loaded lazily",
    );
    assert.ok(m.manifest("lazy-one"));
    await assert.rejects(
      () => m.call("missing", "x", null),
      /Cannot find plugin "missing"/,
    );
  } finally {
    await m.shutdownAll();
    await Deno.remove(root, { recursive: true });
  }
});

Deno.test("Loader.loadAll() loads every plugin and reports failures", async () => {
  const root = await Deno.makeTempDir();
  const m = new Manager();
  try {
    await writePlugin(root, "good", "good", "ok");
    await writePlugin(root, "bad", "bad-one", "FAIL");
    const loader = new Loader(m, {
      dir: root,
      load: async (s) => {
        const p = await textPlugin(s);
        if (s.name === "bad-one") throw new Error("cannot compile");
        return p;
      },
    });
    await loader.scan();
    const result = await loader.loadAll();
    assert.deepEqual(result.loaded, ["good"]);
    assert.deepEqual(result.failed, [{
      name: "bad-one",
      error: "cannot compile",
    }]);
  } finally {
    await m.shutdownAll();
    await Deno.remove(root, { recursive: true });
  }
});

Deno.test("Loader.watch() hot-reloads a changed plugin without failing calls", async () => {
  const root = await Deno.makeTempDir();
  const m = new Manager();
  const loader = new Loader(m, { dir: root, load: textPlugin, debounceMs: 50 });
  try {
    await writePlugin(root, "hot", "hot", "v1");
    await loader.scan();
    await loader.loadAll();
    loader.watch();
    let failures = 0;
    let stop = false;
    const seen = new Set<unknown>();
    const caller = (async () => {
      while (!stop) {
        try {
          seen.add(decodeJson(await m.call("hot", "x", null)));
        } catch {
          failures++;
        }
      }
    })();
    await new Promise((r) => setTimeout(r, 100));
    await Deno.writeTextFile(join(root, "hot", "plugin.wasm"), "v2");
    const end = Date.now() + 10_000;
    while (!seen.has("v2") && Date.now() < end) {
      await new Promise((r) => setTimeout(r, 20));
    }
    stop = true;
    await caller;
    assert.ok(seen.has("v2"), "the new version answers");
    assert.equal(failures, 0, "no call failed during the reload");
    // A new folder appears: discovered, not loaded; a removed one: unregistered.
    await writePlugin(root, "later", "later", "hi");
    await Deno.remove(join(root, "hot"), { recursive: true });
    const end2 = Date.now() + 10_000;
    while (
      (m.manifest("hot") || !loader.discovered().includes("later")) &&
      Date.now() < end2
    ) await new Promise((r) => setTimeout(r, 20));
    assert.equal(m.manifest("hot"), undefined);
    assert.ok(loader.discovered().includes("later"));
  } finally {
    await loader.close();
    await m.shutdownAll();
    await Deno.remove(root, { recursive: true });
  }
});

// Hostile (issue 10 item 3): a package whose manifest says one name and
// whose module registers as another plugin must not take that plugin's
// place or grants. Real WASM: fixtures/plugins/hello-c (gk_register answers
// "hello-c") under a manifest naming "aa-attacker".
Deno.test("hostile: a plugin registering under another name than its manifest is refused", async () => {
  const root = await Deno.makeTempDir();
  const plugins = join(root, "plugins");
  const m = new Manager();
  try {
    const fixtures = new URL("../fixtures/plugins/", import.meta.url);
    const copy = async (fixture: string, folder: string, name?: string) => {
      await Deno.mkdir(join(plugins, folder), { recursive: true });
      await Deno.copyFile(
        new URL(`${fixture}/plugin.wasm`, fixtures),
        join(plugins, folder, "plugin.wasm"),
      );
      const manifest = JSON.parse(
        await Deno.readTextFile(new URL(`${fixture}/manifest.json`, fixtures)),
      );
      if (name) manifest.name = name;
      await Deno.writeTextFile(
        join(plugins, folder, "manifest.json"),
        JSON.stringify(manifest),
      );
    };
    await copy("hello-c", "attacker", "aa-attacker");
    await copy("hello-rust", "legit"); // a legitimate plugin next to it
    const legit = JSON.parse(
      await Deno.readTextFile(join(plugins, "legit", "manifest.json")),
    ).name as string;
    const grants = new MemoryGrantStore();
    await grants.set("hello-c", ["db:read", "db:write"]); // the victim's
    const lookups: string[] = [];
    const store = Object.assign(Object.create(grants), {
      get: (name: string) => {
        lookups.push(name);
        return grants.get(name);
      },
    }) as MemoryGrantStore;
    const loader = new Loader(m, {
      dir: plugins,
      load: createRuntimeFactory({
        grants: store,
        dataDir: join(root, "data"),
      }),
    });
    await loader.scan();
    assert.deepEqual(loader.discovered(), ["aa-attacker", legit].sort());

    const result = await loader.loadAll();
    assert.deepEqual(result.loaded, [legit]);
    assert.deepEqual(result.failed, [{
      name: "aa-attacker",
      error: 'Cannot load plugin "aa-attacker": it registers as "hello-c"',
    }]);
    assert.equal(m.manifest("aa-attacker"), undefined);
    assert.equal(m.manifest("hello-c"), undefined);
    assert.equal(m.manifest(legit)?.name, legit);
    // The grants were looked up by the manifest name, never the victim's.
    assert.ok(lookups.includes("aa-attacker"));
    assert.ok(!lookups.includes("hello-c"));

    // Lazy loading refuses it the same way, with the typed error.
    m.setLazyLoader(loader);
    await assert.rejects(
      () => loader.ensureLoaded("aa-attacker"),
      (e) =>
        e instanceof PluginNameMismatchError &&
        e.manifestName === "aa-attacker" && e.registeredName === "hello-c",
    );
    // (the Manager reports a plugin its lazy loader could not load as not found)
    await assert.rejects(
      () => m.call("aa-attacker", "hello", null),
      /aa-attacker/,
    );
    assert.equal(m.manifest("aa-attacker"), undefined);
    assert.equal(m.manifest("hello-c"), undefined);
    assert.ok(m.manifest(legit));
  } finally {
    await m.shutdownAll();
    await Deno.remove(root, { recursive: true });
  }
});

Deno.test("hostile: a hot reload whose new module registers under another name is refused", async () => {
  const root = await Deno.makeTempDir();
  const m = new Manager();
  // Stand-in runtime: a module text "as:<name>" registers as <name>.
  const load = async (source: PluginSource): Promise<Plugin> => {
    const p = await textPlugin(source);
    const text = (await Deno.readTextFile(source.entry)).trim();
    const name = text.startsWith("as:") ? text.slice(3) : source.name;
    return { ...p, gkRegister: () => ({ ...source.manifest, name }) };
  };
  const loader = new Loader(m, { dir: root, load, debounceMs: 50 });
  try {
    await writePlugin(root, "a", "aa-attacker", "v1");
    await writePlugin(root, "v", "zz-victim", "victim");
    await loader.scan();
    assert.deepEqual((await loader.loadAll()).loaded, [
      "aa-attacker",
      "zz-victim",
    ]);
    await Deno.writeTextFile(join(root, "a", "plugin.wasm"), "as:zz-victim");
    await assert.rejects(
      () => loader.reload("aa-attacker"),
      new PluginNameMismatchError("aa-attacker", "zz-victim"),
    );
    // The old instance keeps running; the victim is untouched.
    assert.equal(decodeJson(await m.call("aa-attacker", "x", null)), "v1");
    assert.equal(decodeJson(await m.call("zz-victim", "x", null)), "victim");
  } finally {
    await loader.close();
    await m.shutdownAll();
    await Deno.remove(root, { recursive: true });
  }
});
