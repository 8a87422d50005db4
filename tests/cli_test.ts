import assert from "node:assert/strict";
import { join } from "node:path";
import { Manager, parseManifest } from "../mod.ts";
import { Loader } from "../host/loading/loader.ts";
import { PackageInstaller } from "../host/loading/packages.ts";
import { SafeZip } from "../host/loading/zip_reader.ts";

const CLI = new URL("../host/cli/main.ts", import.meta.url).pathname;

async function gk(cwd: string, ...args: string[]) {
  const r = await new Deno.Command(Deno.execPath(), {
    args: ["run", "-A", CLI, ...args],
    cwd,
    stdout: "piped",
    stderr: "piped",
    env: { NO_COLOR: "1" },
  }).output();
  return {
    code: r.code,
    out: new TextDecoder().decode(r.stdout),
    err: new TextDecoder().decode(r.stderr),
  };
}

async function hasClang(): Promise<boolean> {
  try {
    return (await new Deno.Command("clang", {
      args: ["--version"],
      stdout: "null",
      stderr: "null",
    }).output()).success;
  } catch {
    return false;
  }
}

Deno.test("gk init, build, pack, keygen and sign make an installable signed package", async () => {
  const dir = await Deno.makeTempDir();
  try {
    const init = await gk(dir, "init", "my-widget", "--runtime", "wasm-c");
    assert.equal(init.code, 0, init.err);
    const manifest = parseManifest(
      await Deno.readTextFile(join(dir, "my-widget", "manifest.json")),
    );
    assert.equal(manifest.name, "my-widget");
    assert.match(
      await Deno.readTextFile(join(dir, "my-widget", "plugin.c")),
      /gk_register/,
    );

    if (await hasClang()) {
      const built = await gk(dir, "build", "my-widget");
      assert.equal(built.code, 0, built.err);
      assert.ok(
        (await Deno.stat(join(dir, "my-widget", "plugin.wasm"))).size > 1000,
      );
    } else {
      // The compiler is installed by .ci/setup; without it, use a module
      // from the examples so packing can still be exercised.
      await Deno.copyFile(
        new URL("../fixtures/plugins/hello-c/plugin.wasm", import.meta.url)
          .pathname,
        join(dir, "my-widget", "plugin.wasm"),
      );
    }
    const packed = await gk(dir, "pack", "my-widget", "-o", "w.zip");
    assert.equal(packed.code, 0, packed.err);
    const zip = await Deno.readFile(join(dir, "w.zip"));
    assert.ok(SafeZip.open(zip).has("plugin.wasm"));

    assert.equal((await gk(dir, "keygen", "-o", "k")).code, 0);
    const signed = await gk(dir, "sign", "w.zip", "--key", "k.key");
    assert.equal(signed.code, 0, signed.err);
    const pub = (await Deno.readTextFile(join(dir, "k.pub"))).trim();
    const sig = (await Deno.readTextFile(join(dir, "w.zip.sig"))).trim();

    const manager = new Manager();
    const plugins = join(dir, "plugins");
    const loader = new Loader(manager, {
      dir: plugins,
      load: () => Promise.reject(new Error("not loaded in this test")),
    });
    const installer = new PackageInstaller({
      dir: plugins,
      manager,
      loader,
      trustedKeys: [pub],
      requireSignature: true,
    });
    const inspected = await installer.inspect(zip, { signature: sig });
    assert.equal(inspected.manifest.name, "my-widget");
    assert.equal(inspected.signedBy, pub);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("gk init scaffolds every runtime and refuses bad names and runtimes", async () => {
  const dir = await Deno.makeTempDir();
  try {
    for (const runtime of ["wasm-as", "grpc-ts"]) {
      const r = await gk(dir, "init", `demo-${runtime}`, "--runtime", runtime);
      assert.equal(r.code, 0, r.err);
    }
    assert.match(
      await Deno.readTextFile(join(dir, "demo-grpc-ts", "plugin.ts")),
      /"demo-grpc-ts"/,
    );
    const bad = await gk(dir, "init", "Bad_Name", "--runtime", "wasm-c");
    assert.equal(bad.code, 1);
    assert.match(
      bad.err,
      /^gk init: Cannot create plugin "Bad_Name": the name must match/m,
    );
    const badRuntime = await gk(dir, "init", "okname", "--runtime", "cobol");
    assert.match(
      badRuntime.err,
      /Cannot create plugin "okname": --runtime must be one of wasm-c, wasm-as, grpc-ts/,
    );
    const again = await gk(dir, "init", "demo-wasm-as", "--runtime", "wasm-as");
    assert.match(
      again.err,
      /Cannot create plugin "demo-wasm-as": ".*demo-wasm-as" exists already/,
    );
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("gk host commands fail in one line when the host is unreachable or no token is set", async () => {
  const dir = await Deno.makeTempDir();
  try {
    const noToken = await gk(dir, "list");
    assert.equal(noToken.code, 1);
    assert.equal(
      noToken.err.trim(),
      "gk list: Cannot send request: no token (pass --token or set GOATKIT_TOKEN)",
    );
    const down = await gk(
      dir,
      "list",
      "--token",
      "x",
      "--url",
      "http://127.0.0.1:9",
    );
    assert.equal(down.code, 1);
    assert.match(
      down.err.trim(),
      /^gk list: Cannot reach "http:\/\/127\.0\.0\.1:9": /,
    );
    assert.equal(down.err.trim().split("\n").length, 1);
    const unknown = await gk(dir, "frobnicate");
    assert.equal(unknown.code, 2);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});
