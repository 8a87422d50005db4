/**
 * `gk` from the plugin author's own directory, without a host: paths
 * resolve against the caller's directory (plain, `deno task` with
 * `INIT_CWD`, and installed with `deno install -g`), `pack` honours
 * `.gkignore`, lists what it packs and refuses modules that are not real
 * GoatKit WASM, `keygen` never overwrites and keeps keys outside the repo,
 * `sign`/`verify` agree on the signer, `run` calls a WASM plugin locally,
 * and every failure is one line with exit code 1 (2 for usage). The last
 * test is the signer/downgrade journey against an in-process host.
 *
 * Run: `deno test -A tests/cli_test.ts`
 *
 * @module
 */

import assert from "node:assert/strict";
import { join } from "node:path";
import { parseManifest } from "../mod.ts";
import { SafeZip } from "../host/loading/zip_reader.ts";
import { hostErrorText } from "../host/cli/host_client.ts";
import { runCli } from "../host/cli/main.ts";
import { CLI, gk, HELLO_C, ROOT, run } from "./cli_helpers.ts";

/** A temp dir outside the repository, removed after `fn`. */
async function inTemp(fn: (dir: string) => Promise<void>): Promise<void> {
  const dir = await Deno.realPath(
    await Deno.makeTempDir({ prefix: "gk_cli_" }),
  );
  assert.ok(!dir.startsWith(ROOT + "/"), "temp dir inside the repo");
  try {
    await fn(dir);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
}

/** Files directly in the repository root (to see nothing was written there). */
async function repoTopLevel(): Promise<string[]> {
  const names: string[] = [];
  for await (const e of Deno.readDir(ROOT)) names.push(e.name);
  return names.sort();
}

/** A copy of the hello-c example (built module included) at `<dir>/hello-c`. */
async function copyHelloC(dir: string): Promise<string> {
  const to = join(dir, "hello-c");
  await Deno.mkdir(to);
  for await (const e of Deno.readDir(HELLO_C)) {
    if (e.isFile) await Deno.copyFile(join(HELLO_C, e.name), join(to, e.name));
  }
  return to;
}

Deno.test("gk resolves paths against the caller's directory: plain, under deno task, and installed with deno install -g", async () => {
  await inTemp(async (dir) => {
    const before = await repoTopLevel();
    const plugin = await copyHelloC(dir);

    // Plain: `gk pack` in the plugin's folder writes next to it.
    const plain = await gk(plugin, ["pack"]);
    assert.equal(plain.code, 0, plain.err);
    assert.ok((await Deno.stat(join(plugin, "hello-c-1.0.0.zip"))).isFile);
    assert.match(plain.out, /^hello-c-1\.0\.0\.zip: hello-c 1\.0\.0, 4 files/m);

    // `deno task gk` runs in the repo; INIT_CWD is the caller's directory.
    const task = await run(
      Deno.execPath(),
      [
        "task",
        "--config",
        join(ROOT, "deno.json"),
        "gk",
        "pack",
        ".",
        "-o",
        "t.zip",
      ],
      plugin,
    );
    assert.equal(task.code, 0, task.err);
    assert.ok((await Deno.stat(join(plugin, "t.zip"))).isFile);

    // Installed as `gk` (the published entry, from this checkout).
    const root = join(dir, "tools");
    const inst = await run(Deno.execPath(), [
      "install",
      "-g",
      "-A",
      "--root",
      root,
      "-n",
      "gk",
      "--config",
      join(ROOT, "deno.json"),
      CLI,
    ], dir);
    assert.equal(inst.code, 0, inst.err);
    const installed = await run(join(root, "bin", "gk"), [
      "pack",
      "hello-c",
      "-o",
      "i.zip",
    ], dir);
    assert.equal(installed.code, 0, installed.err);
    assert.match(installed.out, /^i\.zip: hello-c 1\.0\.0/m);
    assert.ok(
      SafeZip.open(await Deno.readFile(join(dir, "i.zip"))).has("plugin.wasm"),
    );
    const help = await run(join(root, "bin", "gk"), ["--help"], dir);
    assert.equal(help.code, 0);
    assert.match(help.out, /gk run <plugin\.wasm> <fn>/);

    // A relative path that does not exist is reported as the caller's.
    const missing = await gk(dir, ["pack", "nope"]);
    assert.equal(missing.code, 1);
    assert.equal(missing.err.trim().split("\n").length, 1);
    assert.ok(
      missing.err.includes(`Cannot pack "${join(dir, "nope")}"`),
      missing.err,
    );

    assert.deepEqual(
      await repoTopLevel(),
      before,
      "gk wrote into the repository",
    );
  });
});

Deno.test("gk pack honours .gkignore, lists what it packs, and keeps the executable bit", async () => {
  await inTemp(async (dir) => {
    const plugin = await copyHelloC(dir);
    await Deno.mkdir(join(plugin, "docs/drafts"), { recursive: true });
    await Deno.writeTextFile(join(plugin, "docs/README.md"), "# hello\n");
    await Deno.writeTextFile(join(plugin, "docs/drafts/wip.md"), "wip\n");
    await Deno.writeTextFile(join(plugin, "notes.tmp"), "scratch\n");
    await Deno.writeTextFile(join(plugin, ".env"), "SECRET=1\n");
    await Deno.writeTextFile(
      join(plugin, ".gkignore"),
      "# sources stay home\n*.c\n/build.sh\n*.tmp\ndrafts/\n",
    );
    const r = await gk(dir, ["pack", "hello-c", "-o", "out.zip"]);
    assert.equal(r.code, 0, r.err);
    const zip = SafeZip.open(await Deno.readFile(join(dir, "out.zip")));
    assert.deepEqual(
      zip.entries.map((e) => e.name).sort(),
      ["docs/README.md", "manifest.json", "plugin.wasm"],
    );
    // The listing names each packed file with its size, and only those.
    const wasmSize = (await Deno.stat(join(plugin, "plugin.wasm"))).size;
    assert.match(
      r.out,
      new RegExp(
        `${(wasmSize / 1024).toFixed(1)} KB  plugin\\.wasm  \\(entry, wasm\\)`,
      ),
    );
    assert.match(r.out, /8 B {2}docs\/README\.md/);
    assert.doesNotMatch(r.out, /plugin\.c|build\.sh|notes\.tmp|wip\.md|\.env/);
    assert.match(r.out, /out\.zip: hello-c 1\.0\.0, 3 files/);

    // A native gRPC plugin's executable keeps its mode in the package.
    const native = join(dir, "native");
    await Deno.mkdir(native);
    await Deno.writeTextFile(
      join(native, "manifest.json"),
      JSON.stringify({ name: "native-demo", version: "0.1.0" }),
    );
    await Deno.writeTextFile(join(native, "plugin"), "#!/bin/sh\nexit 0\n");
    await Deno.chmod(join(native, "plugin"), 0o644);
    const notExec = await gk(dir, ["pack", "native"]);
    assert.equal(notExec.code, 1);
    assert.match(notExec.err, /the native entry "plugin" is not executable/);
    await Deno.chmod(join(native, "plugin"), 0o755);
    const packed = await gk(dir, ["pack", "native", "-o", "n.zip"]);
    assert.equal(packed.code, 0, packed.err);
    assert.match(packed.out, /plugin {2}\(entry, grpc-native\)/);
    const entry = SafeZip.open(await Deno.readFile(join(dir, "n.zip"))).entries
      .find((e) => e.name === "plugin") as { mode?: number } | undefined;
    assert.equal((entry?.mode ?? 0) & 0o777, 0o755);
  });
});

Deno.test("gk pack refuses what is not a real GoatKit plugin, in one line each", async () => {
  await inTemp(async (dir) => {
    const plugin = await copyHelloC(dir);
    const pack = async () => {
      const r = await gk(dir, ["pack", "hello-c", "-o", "x.zip"]);
      assert.equal(r.code, 1, r.out);
      assert.equal(r.err.trim().split("\n").length, 1, r.err);
      return r.err.trim();
    };
    const wasm = join(plugin, "plugin.wasm");
    await Deno.writeTextFile(wasm, "not wasm at all");
    assert.match(
      await pack(),
      /^gk pack: Cannot use ".*plugin\.wasm": not a WebAssembly module \(no \\0asm magic\)$/,
    );
    // Valid WebAssembly, but an empty module: no ABI.
    await Deno.writeFile(
      wasm,
      new Uint8Array([0, 0x61, 0x73, 0x6d, 1, 0, 0, 0]),
    );
    assert.match(
      await pack(),
      /it does not export the GoatKit ABI: missing gk_register, gk_call, gk_malloc, memory$/,
    );
    // Right magic, broken body.
    await Deno.writeFile(
      wasm,
      new Uint8Array([0, 0x61, 0x73, 0x6d, 1, 0, 0, 0, 1, 9, 9]),
    );
    assert.match(await pack(), /the module does not compile: /);
    // The entry left out by .gkignore.
    await Deno.copyFile(join(HELLO_C, "plugin.wasm"), wasm);
    await Deno.writeTextFile(join(plugin, ".gkignore"), "*.wasm\n");
    assert.match(await pack(), /no entry \(plugin\.wasm, \*\.wasm, main\.ts/);
    await Deno.remove(join(plugin, ".gkignore"));
    // A broken manifest names the field.
    await Deno.writeTextFile(
      join(plugin, "manifest.json"),
      '{"name":"Bad Name","version":"1"}',
    );
    assert.match(await pack(), /manifest\.json is invalid: .*name/);
    // A gRPC-TS plugin without its entry file.
    const ts = join(dir, "ts-demo");
    await Deno.mkdir(ts);
    await Deno.writeTextFile(
      join(ts, "manifest.json"),
      JSON.stringify({ name: "ts-demo", version: "0.1.0" }),
    );
    const noEntry = await gk(dir, ["pack", "ts-demo"]);
    assert.equal(noEntry.code, 1);
    assert.match(noEntry.err, /Cannot pack ".*ts-demo": no entry/);
    await Deno.writeTextFile(join(ts, "plugin.ts"), "export {};\n");
    const ok = await gk(dir, ["pack", "ts-demo"]);
    assert.equal(ok.code, 0, ok.err);
    assert.match(ok.out, /plugin\.ts {2}\(entry, grpc-deno\)/);
    assert.ok((await Deno.stat(join(dir, "ts-demo-0.1.0.zip"))).isFile);
  });
});

Deno.test("gk keygen keeps keys outside the repo, never overwrites them; sign and verify agree on the signer", async () => {
  await inTemp(async (dir) => {
    const env = { XDG_CONFIG_HOME: join(dir, "config") };
    const keys = join(dir, "config", "goatkit", "keys");
    const made = await gk(dir, ["keygen"], env);
    assert.equal(made.code, 0, made.err);
    const fingerprint = /^fingerprint: ([0-9a-f]{16})$/m.exec(made.out)?.[1];
    assert.ok(fingerprint, made.out);
    const key = await Deno.readTextFile(join(keys, "signing.key"));
    assert.equal(
      (await Deno.stat(join(keys, "signing.key"))).mode! & 0o777,
      0o600,
    );
    assert.ok((await Deno.stat(join(keys, "signing.pub"))).isFile);
    assert.deepEqual([...Deno.readDirSync(dir)].map((e) => e.name).sort(), [
      "config",
    ]);

    const again = await gk(dir, ["keygen"], env);
    assert.equal(again.code, 1);
    assert.equal(
      again.err.trim(),
      `gk keygen: Cannot write key pair: "${
        join(keys, "signing.key")
      }" exists already; keys are never overwritten (pass -o <prefix> for another pair)`,
    );
    assert.equal(await Deno.readTextFile(join(keys, "signing.key")), key);

    // HOME is the fallback when XDG_CONFIG_HOME is not set.
    const home = await gk(dir, ["keygen"], {
      HOME: join(dir, "home"),
      XDG_CONFIG_HOME: "",
    });
    assert.equal(home.code, 0, home.err);
    assert.ok(
      (await Deno.stat(join(dir, "home/.config/goatkit/keys/signing.pub")))
        .isFile,
    );

    await copyHelloC(dir);
    assert.equal((await gk(dir, ["pack", "hello-c", "-o", "p.zip"])).code, 0);
    const signed = await gk(dir, ["sign", "p.zip"], env);
    assert.equal(signed.code, 0, signed.err);
    assert.equal(signed.out.trim(), `p.zip.sig (signed by ${fingerprint})`);
    const ok = await gk(dir, ["verify", "p.zip"], env);
    assert.equal(ok.code, 0, ok.err);
    assert.equal(
      ok.out.trim(),
      `good signature: p.zip signed by ${fingerprint}`,
    );
    const pub = (await Deno.readTextFile(join(keys, "signing.pub"))).trim();
    const byValue = await gk(dir, ["verify", "p.zip", "--pub", pub]);
    assert.equal(byValue.code, 0, byValue.err);

    // Another key, or changed bytes: refused with the key's fingerprint.
    assert.equal((await gk(dir, ["keygen", "-o", "other"])).code, 0);
    const wrongKey = await gk(dir, ["verify", "p.zip", "--pub", "other.pub"]);
    assert.equal(wrongKey.code, 1);
    assert.match(
      wrongKey.err,
      /^gk verify: Cannot verify "p\.zip": the signature in "p\.zip\.sig" was not made by key [0-9a-f]{16} for these bytes$/m,
    );
    const bytes = await Deno.readFile(join(dir, "p.zip"));
    bytes[bytes.length - 30] ^= 1;
    await Deno.writeFile(join(dir, "p.zip"), bytes);
    const tampered = await gk(dir, ["verify", "p.zip"], env);
    assert.equal(tampered.code, 1);
    assert.match(tampered.err, new RegExp(`not made by key ${fingerprint}`));
  });
});

Deno.test("gk run calls a WASM plugin locally: output, input, config, log lines, and failures", async () => {
  await inTemp(async (dir) => {
    const wasm = join(dir, "hello.wasm");
    await Deno.copyFile(join(HELLO_C, "plugin.wasm"), wasm);
    const hello = await gk(dir, [
      "run",
      "hello.wasm",
      "hello",
      "--input",
      '{"name":"Ana"}',
    ]);
    assert.equal(hello.code, 0, hello.err);
    assert.deepEqual(JSON.parse(hello.out), {
      message: "Hello from C, Ana!",
      runtime: "c-wasm",
    });
    // printf reaches the log, shown on stderr.
    assert.match(hello.err, /\[info\] hello-c: hello called for Ana/);

    await Deno.writeTextFile(join(dir, "in.json"), '"echo me"');
    const echo = await gk(dir, [
      "run",
      "hello.wasm",
      "echo",
      "--input-file",
      "in.json",
    ]);
    assert.equal(echo.out.trim(), '"echo me"');

    const env = await gk(dir, [
      "run",
      "hello.wasm",
      "env",
      "--config",
      "GK_GREETING=Grüezi",
    ]);
    assert.deepEqual(JSON.parse(env.out), { GK_GREETING: "Grüezi" });

    const logs = await gk(dir, ["run", "hello.wasm", "log_all"]);
    assert.equal(logs.code, 0);
    assert.match(
      logs.err,
      /\[warn\] Warn from hello-c\n\[error\] Error from hello-c/,
    );

    const unknown = await gk(dir, ["run", "hello.wasm", "nope"]);
    assert.equal(unknown.code, 1);
    assert.equal(unknown.out, "");
    assert.equal(
      unknown.err.trim(),
      'gk run: Cannot run function "nope" of "hello.wasm": the plugin answered an error: unknown function: nope',
    );
    const badJson = await gk(dir, [
      "run",
      "hello.wasm",
      "echo",
      "--input",
      "{",
    ]);
    assert.equal(badJson.code, 1);
    assert.match(badJson.err, /^gk run: Cannot parse the input as JSON/);
    await Deno.writeTextFile(join(dir, "fake.wasm"), "text");
    const fake = await gk(dir, ["run", "fake.wasm", "hello"]);
    assert.equal(fake.code, 1);
    assert.match(fake.err, /not a WebAssembly module/);
    const usage = await gk(dir, ["run", "hello.wasm"]);
    assert.equal(usage.code, 2);
    assert.match(
      usage.err,
      /^gk run: Missing argument: gk run <plugin\.wasm> <fn>/,
    );
  });
});

Deno.test("gk init creates the plugin in the caller's directory and refuses bad names", async () => {
  await inTemp(async (dir) => {
    const r = await gk(dir, ["init", "my-widget", "--runtime", "wasm-c"]);
    assert.equal(r.code, 0, r.err);
    const manifest = parseManifest(
      await Deno.readTextFile(join(dir, "my-widget", "manifest.json")),
    );
    assert.equal(manifest.name, "my-widget");
    const bad = await gk(dir, ["init", "Bad_Name", "--runtime", "wasm-c"]);
    assert.equal(bad.code, 1);
    assert.match(
      bad.err,
      /^gk init: Cannot create plugin "Bad_Name": the name must match/m,
    );
    const noRuntime = await gk(dir, ["init", "okname"]);
    assert.equal(noRuntime.code, 2);
    assert.match(noRuntime.err, /--runtime <runtime> \(one of .*wasm-c/);
  });
});

Deno.test("gk host commands fail in one line; usage errors exit 2", async () => {
  await inTemp(async (dir) => {
    const noToken = await gk(dir, ["list"], { GOATKIT_TOKEN: "" });
    assert.equal(noToken.code, 1);
    assert.equal(
      noToken.err.trim(),
      "gk list: Cannot send request: no token (pass --token or set GOATKIT_TOKEN)",
    );
    const down = await gk(dir, [
      "list",
      "--token",
      "x",
      "--url",
      "http://127.0.0.1:9",
    ]);
    assert.equal(down.code, 1);
    assert.match(
      down.err.trim(),
      /^gk list: Cannot reach "http:\/\/127\.0\.0\.1:9": /,
    );
    assert.equal(down.err.trim().split("\n").length, 1);
    assert.equal((await gk(dir, ["frobnicate"])).code, 2);
    const badOption = await gk(dir, ["pack", "--ouput", "x.zip"]);
    assert.equal(badOption.code, 2);
    assert.match(
      badOption.err,
      /^gk: Cannot read the command line: Unknown option '--ouput'/,
    );
    assert.equal((await gk(dir, ["grants"])).code, 2);
  });
});

Deno.test("hostErrorText() prints both error shapes of the host in one line", () => {
  assert.equal(
    hostErrorText({
      error: {
        code: "signature_required",
        message:
          "Cannot install package: it is not signed; sign it with gk sign",
        details: { plugin: "hello-c", requireSignatures: true },
      },
    }, ""),
    "Cannot install package: it is not signed; sign it with gk sign [signature_required] (plugin=hello-c, requireSignatures=true)",
  );
  assert.equal(
    hostErrorText({ error: "Plugin not found: x" }, ""),
    "Plugin not found: x",
  );
  assert.equal(
    hostErrorText(null, "Internal\nServer Error"),
    "Internal Server Error",
  );
  assert.equal(
    hostErrorText({ error: { message: "m", details: "more" } }, ""),
    "m (more)",
  );
});

Deno.test("runCli() runs in-process with its own IO and the caller's directory", async () => {
  await inTemp(async (dir) => {
    await copyHelloC(dir);
    const out: string[] = [];
    const err: string[] = [];
    const code = await runCli(["pack", "hello-c"], {
      out: (l) => out.push(l),
      err: (l) => err.push(l),
      env: (n) => n === "INIT_CWD" ? dir : undefined,
      // Under `deno task`: started in the folder of deno.json.
      cwd: () => ROOT,
    });
    assert.equal(code, 0, err.join("\n"));
    assert.ok((await Deno.stat(join(dir, "hello-c-1.0.0.zip"))).isFile);
    assert.match(out.at(-1)!, /^hello-c-1\.0\.0\.zip: /);
  });
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
    for (const f of ["plugin.c", "build.sh", "manifest.json"]) {
      await Deno.copyFile(join(source, f), join(folder, f));
    }
    const manifest = JSON.parse(
      await Deno.readTextFile(join(folder, "manifest.json")),
    );
    await Deno.writeTextFile(
      join(folder, "manifest.json"),
      JSON.stringify({ ...manifest, version }),
    );
    // The module embeds its manifest: build it, so it registers `version`.
    const built = await run("sh", ["build.sh"], folder);
    assert.equal(built.code, 0, built.err);
    await Deno.remove(join(folder, "plugin.c"));
    await Deno.remove(join(folder, "build.sh"));
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
    gk(dir, [...args, "--url", host.url, "--token", host.adminToken!]);
  const api = async (path: string) => {
    const res = await fetch(`${host.url}${path}`, {
      headers: { authorization: `Bearer ${host.adminToken}` },
    });
    assert.equal(res.status, 200, path);
    return await res.json();
  };
  // What is installed: the package record in the plugin's folder.
  const installed = async () => {
    const r = JSON.parse(
      await Deno.readTextFile(
        join(plugins, "hello-c", ".goatkit-package.json"),
      ),
    );
    return [r.version, r.signedBy];
  };
  // The installer's newest entry (operator actions are audited too).
  const lastAudit = async () =>
    (await api("/api/v1/audit?plugin=hello-c")).entries.find((
      e: { permission: string },
    ) => e.permission.startsWith("package:"));
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
    const changed = await cli(
      "install",
      "a-1.0.0.zip",
      "--allow-signer-change",
    );
    assert.equal(changed.code, 0, changed.err);
    assert.deepEqual(await installed(), ["1.0.0", vendorA.publicKey]);
    const forget = await cli("uninstall", "hello-c", "--forget-signer");
    assert.equal(forget.code, 0, forget.err);
    assert.match(forget.out, /signer pin cleared/);
    const fresh = await cli("install", "b-1.0.0.zip");
    assert.equal(fresh.code, 0, fresh.err);
    assert.deepEqual(await installed(), ["1.0.0", vendorB.publicKey]);
    // Uninstalling what is not installed names the plugin, in one line.
    assert.equal((await cli("uninstall", "hello-c")).code, 0);
    const gone = await cli("uninstall", "hello-c");
    assert.equal(gone.code, 1);
    assert.match(
      gone.err,
      /^gk uninstall: Cannot DELETE "\/api\/v1\/plugins\/hello-c": 404 .*hello-c/,
    );
    assert.equal(gone.err.trim().split("\n").length, 1);
    assert.equal((await api("/healthz")).status, "ok");
  } finally {
    await host.close();
    await db.drop();
    await Deno.remove(dir, { recursive: true });
  }
});
