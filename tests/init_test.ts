// initPlugin and the `gk init` templates: folder creation and refusals, and
// what every template renders to (generic, named after the new plugin,
// `log` only, nothing left of the example plugins). The templates' builds
// are exercised by templates_journey_test.ts.

import { join } from "node:path";
import {
  InitError,
  initPlugin,
  sdkSpecifier,
  TEMPLATE_RUNTIMES,
} from "../host/cli/init.ts";
import { PLUGIN_PROTO, TEMPLATES } from "../host/cli/templates/mod.ts";
import { checkManifest } from "../host/model/manifest.ts";
import { HOST_VERSION } from "../host/model/version.ts";
import { SDK_NPM_IMPORTS } from "../runtimes/grpc/launch.ts";
import {
  assert,
  assertEquals,
  assertMatch,
  assertRejects,
} from "./server_helpers.ts";

async function withTempDir(fn: (dir: string) => Promise<void>): Promise<void> {
  const dir = await Deno.makeTempDir({ prefix: "gk_init_test_" });
  try {
    await fn(dir);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
}

async function listFiles(dir: string, rel = ""): Promise<string[]> {
  const out: string[] = [];
  for await (const e of Deno.readDir(join(dir, rel))) {
    const path = rel ? `${rel}/${e.name}` : e.name;
    if (e.isDirectory) out.push(...await listFiles(dir, path));
    else out.push(path);
  }
  return out.sort();
}

Deno.test("TEMPLATE_RUNTIMES lists one template per supported language", () => {
  assertEquals([...TEMPLATE_RUNTIMES].sort(), [
    "grpc-go",
    "grpc-ts",
    "wasm-as",
    "wasm-c",
    "wasm-go",
    "wasm-rust",
    "wasm-wat",
  ]);
  for (const runtime of TEMPLATE_RUNTIMES) {
    const t = TEMPLATES[runtime]!;
    assertEquals(t.runtime, runtime);
    for (const f of ["manifest.json", "build.sh", "README.md"]) {
      assert(t.files[f], `${runtime} has ${f}`);
    }
    assertEquals(t.executables, ["build.sh"]);
  }
});

for (const runtime of TEMPLATE_RUNTIMES) {
  Deno.test(`initPlugin() renders the ${runtime} template generic, named after the plugin, with log only`, async () => {
    await withTempDir(async (parent) => {
      const name = "acme-widget2";
      const lines: string[] = [];
      const dir = await initPlugin({
        name,
        runtime,
        parent,
        out: (l) => lines.push(l),
      });
      assertEquals(dir, join(parent, name));
      assert(lines[0]?.includes(dir), "the first line names the new folder");
      const files = await listFiles(dir);
      assertEquals(files, Object.keys(TEMPLATES[runtime]!.files).sort());

      const { manifest } = checkManifest(
        await Deno.readFile(join(dir, "manifest.json")),
      );
      assertEquals(manifest.name, name);
      assertEquals(manifest.permissions, ["log"]);
      assertEquals(manifest.i18n?.namespace, name);
      assertEquals(manifest.routes?.map((r) => r.path), [
        `/api/plugins/${name}/hello`,
      ]);
      assertMatch(manifest.description ?? "", /^Acme Widget2: /);

      const build = await Deno.stat(join(dir, "build.sh"));
      assertEquals((build.mode ?? 0) & 0o777, 0o755);

      for (const file of files) {
        const text = await Deno.readTextFile(join(dir, file));
        assert(
          !/\{\{(name|ident|title|sdk|goatkit_version)\}\}/.test(text),
          `${file} has no placeholder left`,
        );
        // Nothing of the example plugins the old scaffolds were copied from.
        assert(
          !/hello[-_](c|as|rust|grpc|go)\b|hello_c|plugins:call/.test(text),
          `${file} names no example plugin`,
        );
        assert(!text.includes("../../"), `${file} points into no repository`);
      }
      const code = files.filter((f) =>
        /\.(c|rs|go|wat)$|^assembly\/index\.ts$|^main\.ts$/.test(f)
      );
      assertEquals(code.length, 1, `one source file in ${files}`);
      const source = await Deno.readTextFile(join(dir, code[0]!));
      assert(
        runtime === "grpc-ts" || source.includes(`Hello from ${name}!`),
        `${code[0]} answers with the plugin's name`,
      );
    });
  });
}

Deno.test("initPlugin() resolves a relative parent against the working directory and returns an absolute path", async () => {
  await withTempDir(async (parent) => {
    const cwd = Deno.cwd();
    Deno.chdir(parent);
    try {
      const dir = await initPlugin({
        name: "rel-plugin",
        runtime: "wasm-wat",
        parent: "sub",
        out: () => {},
      });
      assertEquals(dir, join(await Deno.realPath(parent), "sub", "rel-plugin"));
      await Deno.stat(join(dir, "plugin.wat"));
    } finally {
      Deno.chdir(cwd);
    }
  });
});

Deno.test("initPlugin() refuses a name the host would refuse", async () => {
  await withTempDir(async (parent) => {
    for (const name of ["Hello", "a", "1abc", "my_plugin", "-x", ""]) {
      const e = await assertRejects(
        () => initPlugin({ name, runtime: "wasm-c", parent, out: () => {} }),
        InitError,
      );
      assertEquals(e.reason, "invalid-name");
      assertMatch(e.message, /^Cannot create plugin ".*": the name must match/);
    }
    assertEquals(await listFiles(parent), []);
  });
});

Deno.test("initPlugin() refuses an unknown runtime and lists the known ones", async () => {
  await withTempDir(async (parent) => {
    const e = await assertRejects(
      () =>
        initPlugin({
          name: "x-plugin",
          runtime: "wasm-cobol",
          parent,
          out: () => {},
        }),
      InitError,
    );
    assertEquals(e.reason, "unknown-runtime");
    assertMatch(e.message, /unknown runtime "wasm-cobol".*wasm-c, wasm-rust/);
    assertEquals(await listFiles(parent), []);
  });
});

Deno.test("initPlugin() refuses a folder that exists and is not empty, leaving it untouched", async () => {
  await withTempDir(async (parent) => {
    const dir = join(parent, "taken");
    await Deno.mkdir(dir);
    await Deno.writeTextFile(join(dir, "notes.txt"), "mine");
    const e = await assertRejects(
      () =>
        initPlugin({ name: "taken", runtime: "wasm-c", parent, out: () => {} }),
      InitError,
    );
    assertEquals(e.reason, "target-not-empty");
    assertMatch(e.message, /exists and is not empty/);
    assertEquals(await listFiles(dir), ["notes.txt"]);
    assertEquals(await Deno.readTextFile(join(dir, "notes.txt")), "mine");

    await Deno.writeTextFile(join(parent, "afile"), "x");
    const f = await assertRejects(
      () =>
        initPlugin({ name: "afile", runtime: "wasm-c", parent, out: () => {} }),
      InitError,
    );
    assertEquals(f.reason, "target-not-empty");
    assertMatch(f.message, /is not a folder/);
  });
});

Deno.test("initPlugin() fills a folder that exists and is empty", async () => {
  await withTempDir(async (parent) => {
    await Deno.mkdir(join(parent, "empty-one"));
    const dir = await initPlugin({
      name: "empty-one",
      runtime: "grpc-go",
      parent,
      out: () => {},
    });
    assert((await listFiles(dir)).includes("main.go"));
  });
});

Deno.test("grpc-ts template: deno.json maps the SDK of this GoatKit copy and pins the SDK's npm packages", async () => {
  await withTempDir(async (parent) => {
    const dir = await initPlugin({
      name: "ts-plugin",
      runtime: "grpc-ts",
      parent,
      out: () => {},
    });
    const config = JSON.parse(
      await Deno.readTextFile(join(dir, "deno.json")),
    );
    assertEquals(config.imports, {
      "@goatkit/deno/sdk":
        new URL("../runtimes/grpc/sdk.ts", import.meta.url).href,
      ...SDK_NPM_IMPORTS,
    });
    const lock = JSON.parse(await Deno.readTextFile(join(dir, "deno.lock")));
    for (const spec of Object.values(SDK_NPM_IMPORTS)) {
      assert(lock.specifiers[spec], `deno.lock pins ${spec}`);
    }
  });
});

Deno.test("sdkSpecifier() is the ./sdk export of the copy on disk, else the published package", async () => {
  assertEquals(
    await sdkSpecifier("https://jsr.io/@goatkit/deno/0.1.0/host/cli/init.ts"),
    `jsr:@goatkit/deno@${HOST_VERSION}/sdk`,
  );
  await withTempDir(async (root) => {
    const base = new URL(`file://${root}/host/cli/init.ts`).href;
    assertEquals(
      await sdkSpecifier(base),
      `jsr:@goatkit/deno@${HOST_VERSION}/sdk`,
      "no deno.json: the published package",
    );
    await Deno.writeTextFile(
      join(root, "deno.json"),
      JSON.stringify({ exports: { "./sdk": "./lib/sdk.ts" } }),
    );
    assertEquals(
      await sdkSpecifier(base),
      new URL(`file://${root}/lib/sdk.ts`).href,
    );
  });
});

Deno.test("grpc-go template: its plugin.proto is the runtime's protocol, byte for byte", async () => {
  const proto = await Deno.readTextFile(
    new URL("../runtimes/grpc/plugin.proto", import.meta.url),
  );
  assertEquals(PLUGIN_PROTO, proto);
  assertEquals(TEMPLATES["grpc-go"]!.files["plugin.proto"], proto);
});

Deno.test("wasm-as and wasm-wat templates: deno.lock pins what deno.json imports", () => {
  for (const runtime of ["wasm-as", "wasm-wat"]) {
    const t = TEMPLATES[runtime]!;
    const imports = JSON.parse(t.files["deno.json"]!).imports;
    const lock = JSON.parse(t.files["deno.lock"]!);
    assertEquals(
      [...lock.workspace.dependencies].sort(),
      Object.values(imports).sort(),
      `${runtime}: the lock's workspace dependencies match deno.json`,
    );
  }
});
