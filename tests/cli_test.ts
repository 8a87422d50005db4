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

// Issue 10 items 14 and 15 through the command line against a real host
// (boot, real HTTP, PostgreSQL grants, the real hello-c WASM plugin): a
// plugin name keeps its first signer, another trusted vendor's package is
// refused (the operator's approvals stay), an override is audited and resets
// the approvals, a downgrade needs --force, and the pin outlives uninstall.
Deno.test("gk install journey: signer pinned, override audited, downgrade refused then forced", async () => {
  const { boot } = await import("../host/boot.ts");
  const { hostConfig, privateSchema } = await import("./server_helpers.ts");
  const { generateSigningKeys, packFolder, signPackage } = await import(
    "../host/loading/packages.ts"
  );
  const dir = await Deno.makeTempDir();
  const data = join(dir, "data");
  const plugins = join(dir, "plugins");
  await Deno.mkdir(plugins);
  const db = await privateSchema();
  const vendorA = await generateSigningKeys();
  const vendorB = await generateSigningKeys();
  const source = new URL("../fixtures/plugins/hello-c/", import.meta.url)
    .pathname;
  /** hello-c at `version`, packed and signed by `key` into `<file>` + `.sig`. */
  const build = async (
    file: string,
    version: string,
    key: { privateKey: string },
  ) => {
    const folder = join(dir, `src-${file}`);
    await Deno.mkdir(folder);
    for (const f of ["plugin.wasm", "manifest.json"]) {
      await Deno.copyFile(join(source, f), join(folder, f));
    }
    const manifest = JSON.parse(
      await Deno.readTextFile(join(folder, "manifest.json")),
    );
    await Deno.writeTextFile(
      join(folder, "manifest.json"),
      JSON.stringify({ ...manifest, version }),
    );
    const bytes = await packFolder(folder);
    await Deno.writeFile(join(dir, file), bytes);
    await Deno.writeTextFile(
      join(dir, `${file}.sig`),
      await signPackage(bytes, key.privateKey),
    );
  };
  await build("a-1.0.0.zip", "1.0.0", vendorA);
  await build("b-1.1.0.zip", "1.1.0", vendorB);
  await build("b-2.0.0.zip", "2.0.0", vendorB);
  await build("b-1.0.0.zip", "1.0.0", vendorB);

  const host = await boot({
    config: hostConfig(data, plugins, db.url, {
      GOATKIT_TRUSTED_KEYS: `${vendorA.publicKey},${vendorB.publicKey}`,
    }),
    print: () => {},
  });
  const cli = (...args: string[]) =>
    gk(dir, ...args, "--url", host.url, "--token", host.adminToken!);
  const api = async (path: string) => {
    const res = await fetch(`${host.url}${path}`, {
      headers: { authorization: `Bearer ${host.adminToken}` },
    });
    assert.equal(res.status, 200, path);
    return await res.json();
  };
  // What is installed: the package record in the plugin's folder (the API
  // shows the version the WASM module registers, which is always 1.0.0).
  const installed = async () => {
    const r = JSON.parse(
      await Deno.readTextFile(
        join(plugins, "hello-c", ".goatkit-package.json"),
      ),
    );
    return [r.version, r.signedBy];
  };
  const lastAudit = async () =>
    (await api("/api/v1/audit?plugin=hello-c")).entries[0];
  try {
    // Vendor A's package; the operator approves its database access.
    const a = await cli("install", "a-1.0.0.zip");
    assert.equal(a.code, 0, a.err);
    assert.match(a.out, /^installed hello-c 1\.0\.0$/m);
    const approve = await cli("grants", "hello-c", "--approve", "db:read");
    assert.equal(approve.code, 0, approve.err);
    const approved = await api("/api/v1/plugins/hello-c/grants");
    assert.ok(approved.granted.includes("db:read"), approve.out);

    // Vendor B ships "hello-c" 1.1.0, signed with its own trusted key: refused.
    const b = await cli("install", "b-1.1.0.zip");
    assert.equal(b.code, 1);
    assert.match(
      b.err.trim(),
      /^gk install: Cannot POST "\/api\/v1\/plugins\/upload": 409 Cannot install package: plugin "hello-c" is pinned to signer [0-9a-f]{16} and this package is signed by [0-9a-f]{16}/m,
    );
    // Nothing changed: A's package runs with exactly A's approvals.
    assert.deepEqual(await installed(), ["1.0.0", vendorA.publicKey]);
    assert.deepEqual(
      await api("/api/v1/plugins/hello-c/grants"),
      approved,
    );
    const hello = await fetch(`${host.url}/api/plugins/hello-c?name=Ana`);
    assert.equal(hello.status, 200);
    await hello.body?.cancel();
    const denied = await lastAudit();
    assert.equal(denied.permission, "package:signer");
    assert.equal(denied.outcome, "denied");

    // The operator overrides: installed, audited, approvals wait again.
    const over = await cli("install", "b-1.1.0.zip", "--allow-signer-change");
    assert.equal(over.code, 0, over.err);
    assert.match(
      over.out,
      /installed hello-c 1\.1\.0 \(upgraded from 1\.0\.0\)/,
    );
    assert.match(over.out, /signer changed by override/);
    assert.deepEqual(await installed(), ["1.1.0", vendorB.publicKey]);
    const overridden = await lastAudit();
    assert.equal(overridden.outcome, "overridden");
    assert.equal(overridden.permission, "package:signer");
    const after = await api("/api/v1/plugins/hello-c/grants");
    assert.ok(!after.granted.includes("db:read"), JSON.stringify(after));
    assert.ok(after.pending.includes("db:read"), JSON.stringify(after));

    // Downgrade: 1.0.0 over 2.0.0 refused, then forced.
    assert.equal((await cli("install", "b-2.0.0.zip")).code, 0);
    const down = await cli("install", "b-1.0.0.zip");
    assert.equal(down.code, 1);
    assert.match(
      down.err,
      /409 Cannot install package: plugin "hello-c" 1\.0\.0 is older than the installed 2\.0\.0/,
    );
    assert.deepEqual(await installed(), ["2.0.0", vendorB.publicKey]);
    assert.equal((await lastAudit()).permission, "package:downgrade");
    const forced = await cli("install", "b-1.0.0.zip", "--force");
    assert.equal(forced.code, 0, forced.err);
    assert.match(
      forced.out,
      /installed hello-c 1\.0\.0 \(downgraded from 2\.0\.0\)/,
    );
    assert.deepEqual(await installed(), ["1.0.0", vendorB.publicKey]);
    assert.deepEqual(
      [(await lastAudit()).permission, (await lastAudit()).outcome],
      ["package:downgrade", "overridden"],
    );

    // The pin outlives an uninstall; clearing it is explicit.
    assert.equal((await cli("uninstall", "hello-c")).code, 0);
    const again = await cli("install", "a-1.0.0.zip");
    assert.equal(again.code, 1);
    assert.match(again.err, /409 .*pinned to signer/);
    const forget = await cli("uninstall", "hello-c", "--forget-signer");
    assert.equal(forget.code, 0, forget.err);
    assert.match(forget.out, /signer pin cleared/);
    const fresh = await cli("install", "a-1.0.0.zip");
    assert.equal(fresh.code, 0, fresh.err);
    assert.deepEqual(await installed(), ["1.0.0", vendorA.publicKey]);
    assert.equal((await api("/healthz")).status, "ok");
  } finally {
    await host.close();
    await db.drop();
    await Deno.remove(dir, { recursive: true });
  }
});
