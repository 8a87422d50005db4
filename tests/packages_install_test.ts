// Package installs as issue 13 asks (the installer itself, real WASM
// modules built by wabt, real files): atomic installs that leave nothing
// behind when the plugin does not start, one manifest per plugin, uninstall
// of package plugins only, signature status, native executables trusted by
// SHA-256 and kept executable, bare .wasm packages.

import assert from "node:assert/strict";
import { join } from "node:path";
import { zipSync } from "fflate";
import { decodeJson, Manager } from "../mod.ts";
import { Loader } from "../host/loading/loader.ts";
import {
  generateSigningKeys,
  PACKAGE_RECORD,
  PackageInstaller,
  type PackageInstallerOptions,
  PackageUninstallError,
  packFolder,
  signPackage,
  zipAttributes,
} from "../host/loading/packages.ts";
import { PluginManifestMismatchError } from "../host/loading/manifest_match.ts";
import {
  createRuntimeFactory,
  ExecutableNotTrustedError,
} from "../host/loading/runtimes.ts";
import { sha256Hex } from "../host/model/sha256.ts";
import { signerKeyId } from "../host/loading/signer_pins.ts";
import { PackageRejectedError, SafeZip } from "../host/loading/zip_reader.ts";
import { LogBuffer } from "../host/log_buffer.ts";
import { MemoryGrantStore } from "../permissions/grants.ts";
import { buildWat } from "../fixtures/hostile/wat_build.ts";

const te = new TextEncoder();
const TRAP_WAT = new URL("../fixtures/hostile/trap/plugin.wat", import.meta.url)
  .pathname;

/** A real WASM module (the trap fixture) whose gk_register returns `manifest`. */
async function moduleRegistering(
  manifest: Record<string, unknown>,
): Promise<Uint8Array> {
  const file = await Deno.makeTempFile({ suffix: ".json" });
  try {
    await Deno.writeTextFile(file, JSON.stringify(manifest));
    return await buildWat(TRAP_WAT, file);
  } finally {
    await Deno.remove(file);
  }
}

function zip(
  files: Record<string, string | Uint8Array>,
  manifest: Record<string, unknown> | null,
): Uint8Array {
  const entries: Record<string, Uint8Array> = {};
  if (manifest) entries["manifest.json"] = te.encode(JSON.stringify(manifest));
  for (const [k, v] of Object.entries(files)) {
    entries[k] = typeof v === "string" ? te.encode(v) : v;
  }
  return zipSync(entries);
}

/** An installer on temp folders with the real runtime factory. */
async function host(options: Partial<PackageInstallerOptions> = {}) {
  const root = await Deno.makeTempDir({ prefix: "gk-pkg-" });
  const dir = join(root, "plugins");
  await Deno.mkdir(dir);
  const logs = new LogBuffer();
  const manager = new Manager({ logs });
  const grants = new MemoryGrantStore();
  const loader = new Loader(manager, {
    dir,
    load: createRuntimeFactory({ grants, dataDir: join(root, "data"), logs }),
  });
  manager.setLazyLoader(loader);
  const installer = new PackageInstaller({
    dir,
    manager,
    loader,
    logs,
    ...options,
  });
  const listing = async (): Promise<string[]> => {
    const out: string[] = [];
    const walk = async (d: string, rel: string) => {
      for await (const e of Deno.readDir(d)) {
        out.push(`${rel}${e.name}`);
        if (e.isDirectory) await walk(join(d, e.name), `${rel}${e.name}/`);
      }
    };
    await walk(dir, "");
    return out.sort();
  };
  return {
    root,
    dir,
    logs,
    manager,
    loader,
    installer,
    listing,
    async cleanup() {
      await manager.shutdownAll().catch(() => {});
      await Deno.remove(root, { recursive: true });
    },
  };
}

const MANIFEST = {
  name: "pkg-probe",
  version: "1.0.0",
  permissions: ["log"],
  routes: [{ method: "GET", path: "/api/plugins/pkg-probe/ok", handler: "ok" }],
};

Deno.test("install is atomic: a package whose module does not start leaves the plugins folder as it was", async () => {
  const t = await host();
  try {
    const before = await t.listing();
    // Real WASM magic, then garbage: extracted, then refused at start.
    const broken = new Uint8Array([0, 0x61, 0x73, 0x6d, 1, 0, 0, 0, 9, 9, 9]);
    await assert.rejects(
      () => t.installer.install(zip({ "plugin.wasm": broken }, MANIFEST)),
      (e: unknown) => {
        assert.ok(e instanceof PackageRejectedError, String(e));
        assert.equal(e.status, 400);
        assert.equal(e.code, "plugin_start_failed");
        assert.match(e.message, /plugin "pkg-probe" does not start: .*; build/);
        assert.ok(!e.message.includes(t.root), e.message);
        return true;
      },
    );
    assert.deepEqual(await t.listing(), before);
    await t.loader.scan();
    assert.deepEqual(t.loader.discovered(), []);
  } finally {
    await t.cleanup();
  }
});

Deno.test("one manifest per plugin: a WASM module registering another version, permissions and routes is refused with the fields listed", async () => {
  const t = await host();
  try {
    const wasm = await moduleRegistering({
      ...MANIFEST,
      version: "1.0.1",
      permissions: ["log", "db:write"],
      routes: [{
        method: "POST",
        path: "/api/plugins/pkg-probe/x",
        handler: "ok",
      }],
    });
    const before = await t.listing();
    await assert.rejects(
      () => t.installer.install(zip({ "plugin.wasm": wasm }, MANIFEST)),
      (e: unknown) => {
        assert.ok(e instanceof PackageRejectedError, String(e));
        assert.equal(e.status, 422);
        assert.equal(e.code, "manifest_mismatch");
        assert.deepEqual(e.details.fields, [
          "version",
          "permissions",
          "routes",
        ]);
        assert.match(
          e.message,
          /differs from its manifest.json in version, permissions, routes: version: manifest.json has "1.0.0", the code registers "1.0.1"; permissions: manifest.json has \["log"\], the code registers \["db:write","log"\]/,
        );
        return true;
      },
    );
    assert.deepEqual(await t.listing(), before);

    // The same check on a plugin folder that no package installed.
    const folder = join(t.dir, "pkg-probe");
    await Deno.mkdir(folder);
    await Deno.writeTextFile(
      join(folder, "manifest.json"),
      JSON.stringify(MANIFEST),
    );
    await Deno.writeFile(join(folder, "plugin.wasm"), wasm);
    await t.loader.scan();
    await assert.rejects(
      () => t.loader.ensureLoaded("pkg-probe"),
      (e: unknown) =>
        e instanceof PluginManifestMismatchError &&
        e.fields.join() === "version,permissions,routes",
    );
    assert.equal(t.manager.manifest("pkg-probe"), undefined);

    // Agreeing manifests install and serve.
    await Deno.remove(folder, { recursive: true });
    const good = await moduleRegistering(MANIFEST);
    await t.installer.install(zip({ "plugin.wasm": good }, MANIFEST));
    assert.deepEqual(
      decodeJson(await t.manager.call("pkg-probe", "ok", null)),
      { ok: true },
    );
  } finally {
    await t.cleanup();
  }
});

Deno.test(
  "one manifest per plugin: a gRPC TypeScript plugin whose register() drifts from manifest.json is refused",
  {
    sanitizeOps: false,
    sanitizeResources: false,
  },
  async () => {
    const t = await host();
    try {
      const src = new URL("../fixtures/plugins/hello-grpc-ts/", import.meta.url)
        .pathname;
      const manifest = JSON.parse(
        await Deno.readTextFile(join(src, "manifest.json")),
      );
      const folder = join(t.dir, "hello-grpc");
      await Deno.mkdir(folder);
      await Deno.copyFile(join(src, "plugin.ts"), join(folder, "plugin.ts"));
      await Deno.writeTextFile(
        join(folder, "manifest.json"),
        JSON.stringify({ ...manifest, permissions: ["cache:read"] }),
      );
      await t.loader.scan();
      await assert.rejects(
        () => t.loader.ensureLoaded("hello-grpc"),
        (e: unknown) =>
          e instanceof PluginManifestMismatchError &&
          e.fields.join() === "permissions" &&
          /manifest.json has \["cache:read"\], the code registers \[\]/.test(
            e.message,
          ),
      );
      assert.equal(t.manager.manifest("hello-grpc"), undefined);
    } finally {
      await t.cleanup();
    }
  },
);

Deno.test("uninstall removes only what a package installed: a source folder is refused (409) and stays, an unknown name is 404", async () => {
  const t = await host();
  try {
    // A source plugin: copied from the fixtures, as a git checkout has it.
    const src = new URL("../fixtures/plugins/wat-edge/", import.meta.url)
      .pathname;
    const folder = join(t.dir, "wat-edge");
    await Deno.mkdir(folder);
    for (const f of ["manifest.json", "plugin.wasm", "plugin.wat"]) {
      await Deno.copyFile(join(src, f), join(folder, f));
    }
    await t.loader.scan();
    await t.loader.ensureLoaded("wat-edge");
    const before = await t.listing();
    await assert.rejects(
      () => t.installer.uninstall("wat-edge"),
      (e: unknown) => {
        assert.ok(e instanceof PackageUninstallError, String(e));
        assert.equal(e.status, 409);
        assert.equal(e.code, "plugin_not_from_package");
        assert.match(
          e.message,
          /Cannot uninstall plugin "wat-edge": it was not installed from a package \(its folder "wat-edge" .*delete or move that folder yourself/,
        );
        return true;
      },
    );
    assert.deepEqual(await t.listing(), before);
    assert.ok(t.manager.manifest("wat-edge"), "still registered");
    // Nor may a package take the source folder's place.
    const wasm = await Deno.readFile(join(src, "plugin.wasm"));
    const manifest = JSON.parse(
      await Deno.readTextFile(join(src, "manifest.json")),
    );
    await assert.rejects(
      () => t.installer.install(zip({ "plugin.wasm": wasm }, manifest)),
      (e: unknown) =>
        e instanceof PackageRejectedError && e.status === 409 &&
        e.code === "plugin_not_from_package",
    );
    assert.deepEqual(await t.listing(), before);

    await assert.rejects(
      () => t.installer.uninstall("no-such-plugin"),
      (e: unknown) =>
        e instanceof PackageUninstallError && e.status === 404 &&
        e.code === "plugin_not_found",
    );

    // A package plugin is removed, record and all.
    const good = await moduleRegistering(MANIFEST);
    await t.installer.install(zip({ "plugin.wasm": good }, MANIFEST));
    assert.ok((await t.listing()).includes(`pkg-probe/${PACKAGE_RECORD}`));
    await t.installer.uninstall("pkg-probe");
    assert.deepEqual(await t.listing(), before);
  } finally {
    await t.cleanup();
  }
});

Deno.test("signatures: unverified on a host that trusts no key, verified by a trusted key, unsigned; required signatures refuse both others (403)", async () => {
  const vendor = await generateSigningKeys();
  const wasm = await moduleRegistering(MANIFEST);
  const bytes = zip({ "plugin.wasm": wasm }, MANIFEST);
  const signature = await signPackage(bytes, vendor.privateKey);
  const fingerprint = await signerKeyId(vendor.publicKey);

  const open = await host();
  try {
    const r = await open.installer.install(bytes, { signature });
    assert.deepEqual(r.signature, { status: "unverified" });
    assert.equal(r.signedBy, null);
    assert.deepEqual(await open.installer.signature("pkg-probe"), {
      status: "unverified",
    });
    // The uploader names the key: shown as the (untrusted) signer.
    await open.installer.install(bytes, {
      signature,
      signer: vendor.publicKey,
    });
    assert.deepEqual(await open.installer.signature("pkg-probe"), {
      status: "unverified",
      fingerprint,
    });
    // A named key that does not verify the signature is a broken upload.
    const other = await generateSigningKeys();
    await assert.rejects(
      () =>
        open.installer.install(bytes, { signature, signer: other.publicKey }),
      (e: unknown) =>
        e instanceof PackageRejectedError && e.status === 403 &&
        e.code === "signature_invalid",
    );
    await open.installer.install(bytes);
    assert.deepEqual(await open.installer.signature("pkg-probe"), {
      status: "unsigned",
    });
    assert.equal(await open.installer.signature("nope"), undefined);
  } finally {
    await open.cleanup();
  }

  const trusting = await host({ trustedKeys: [vendor.publicKey] });
  try {
    await trusting.installer.install(bytes, { signature });
    assert.deepEqual(await trusting.installer.signature("pkg-probe"), {
      status: "verified",
      fingerprint,
    });
  } finally {
    await trusting.cleanup();
  }

  const strict = await host({ requireSignature: true });
  try {
    const before = await strict.listing();
    await assert.rejects(
      () => strict.installer.install(bytes),
      (e: unknown) =>
        e instanceof PackageRejectedError && e.status === 403 &&
        e.code === "signature_required" && /gk sign/.test(e.message),
    );
    await assert.rejects(
      () => strict.installer.install(bytes, { signature }),
      (e: unknown) =>
        e instanceof PackageRejectedError && e.status === 403 &&
        e.code === "signature_untrusted" &&
        /GOATKIT_TRUSTED_KEYS/.test(e.message),
    );
    assert.deepEqual(await strict.listing(), before);
  } finally {
    await strict.cleanup();
  }
});

Deno.test("native executables: packFolder keeps the exec bit, an untrusted binary is refused (403, logged) and a trusted SHA-256 installs it executable", async () => {
  const src = await Deno.makeTempDir();
  const binary = te.encode("#!/bin/sh\necho not a real plugin\n");
  const sha256 = await sha256Hex(binary);
  const manifest = { name: "native-probe", version: "1.0.0" };
  try {
    await Deno.writeTextFile(
      join(src, "manifest.json"),
      JSON.stringify(manifest),
    );
    await Deno.writeFile(join(src, "plugin"), binary, { mode: 0o755 });
    await Deno.chmod(join(src, "plugin"), 0o755);
    await Deno.writeTextFile(join(src, "README"), "data");
    const bytes = await packFolder(src);
    const modes = Object.fromEntries(
      SafeZip.open(bytes).entries.map((e) => [e.name, e.mode]),
    );
    assert.deepEqual(modes, {
      "manifest.json": 0o644,
      "plugin": 0o755,
      "README": 0o644,
    });

    const refusing = await host();
    try {
      const before = await refusing.listing();
      await assert.rejects(
        () => refusing.installer.install(bytes),
        (e: unknown) => {
          assert.ok(e instanceof PackageRejectedError, String(e));
          assert.equal(e.status, 403);
          assert.equal(e.code, "executable_untrusted");
          assert.equal(e.details.sha256, sha256);
          assert.match(
            e.message,
            new RegExp(`add ${sha256} to GOATKIT_TRUSTED_EXECUTABLES`),
          );
          return true;
        },
      );
      assert.deepEqual(await refusing.listing(), before);
      assert.ok(
        refusing.logs.query({ plugin: "native-probe" }).some((l) =>
          /not in trustedExecutables/.test(l.message)
        ),
      );
    } finally {
      await refusing.cleanup();
    }

    // Trusted by digest: installed with its mode (the stand-in runtime
    // only checks the files: the real launch is tested below).
    const root = await Deno.makeTempDir();
    const dir = join(root, "plugins");
    const manager = new Manager();
    const loader = new Loader(manager, {
      dir,
      load: (s) =>
        Promise.resolve({
          gkRegister: () => s.manifest,
          init: () => Promise.resolve(),
          call: () => Promise.resolve(null),
          shutdown: () => Promise.resolve(),
        }),
    });
    const installer = new PackageInstaller({
      dir,
      manager,
      loader,
      trustedExecutables: [sha256.toUpperCase()],
    });
    try {
      // A ZIP made elsewhere without Unix modes: the entry is still made
      // executable; other files keep theirs.
      const plain = zipSync({
        "manifest.json": te.encode(JSON.stringify(manifest)),
        "plugin": binary,
        "tool.sh": [binary, zipAttributes(0o700)],
      });
      await installer.install(plain);
      const mode = async (f: string) =>
        (await Deno.stat(join(dir, "native-probe", f))).mode! & 0o777;
      assert.equal(await mode("plugin"), 0o755);
      assert.equal(await mode("tool.sh"), 0o755);
      assert.equal(await mode("manifest.json"), 0o644);
      assert.equal(loader.source("native-probe")?.kind, "grpc-native");
    } finally {
      await manager.shutdownAll();
      await Deno.remove(root, { recursive: true });
    }
  } finally {
    await Deno.remove(src, { recursive: true });
  }
});

Deno.test("runtime factory: a native executable whose SHA-256 is not trusted is not run; the reason is logged", async () => {
  const root = await Deno.makeTempDir();
  try {
    const folder = join(root, "plugins", "native-probe");
    await Deno.mkdir(folder, { recursive: true });
    const marker = join(root, "ran");
    await Deno.writeTextFile(
      join(folder, "plugin"),
      `#!/bin/sh\ntouch ${marker}\n`,
      { mode: 0o755 },
    );
    await Deno.chmod(join(folder, "plugin"), 0o755);
    await Deno.writeTextFile(
      join(folder, "manifest.json"),
      JSON.stringify({ name: "native-probe", version: "1.0.0" }),
    );
    const sha256 = await sha256Hex(await Deno.readFile(join(folder, "plugin")));
    const logs = new LogBuffer();
    const manager = new Manager({ logs });
    const loader = new Loader(manager, {
      dir: join(root, "plugins"),
      load: createRuntimeFactory({
        grants: new MemoryGrantStore(),
        dataDir: join(root, "data"),
        logs,
        // Trusted by another digest, and by a path elsewhere.
        trustedExecutables: ["ab".repeat(32), "/usr/bin/true"],
      }),
    });
    await loader.scan();
    const { failed } = await loader.loadAll();
    assert.equal(failed.length, 1);
    assert.match(
      failed[0]!.error,
      new RegExp(
        `Cannot run native plugin "native-probe": its executable \\(SHA-256 ${sha256}\\) is not trusted; to trust it, add ${sha256} to GOATKIT_TRUSTED_EXECUTABLES`,
      ),
    );
    assert.ok(
      logs.query({ plugin: "native-probe" }).some((l) =>
        l.level === "warn" && l.message.includes(sha256)
      ),
    );
    await assert.rejects(() => Deno.stat(marker), Deno.errors.NotFound);
    assert.ok(new ExecutableNotTrustedError("x", sha256).message);
  } finally {
    await Deno.remove(root, { recursive: true });
  }
});

Deno.test("a bare .wasm package installs under the name it registers, with that registration as manifest.json", async () => {
  const t = await host();
  try {
    const wasm = await Deno.readFile(
      new URL("../fixtures/plugins/hello-c/plugin.wasm", import.meta.url),
    );
    const r = await t.installer.install(wasm);
    assert.equal(r.name, "hello-c");
    assert.equal(r.sha256, await sha256Hex(wasm));
    assert.deepEqual(
      (await t.listing()).filter((p) => p.startsWith("hello-c/")),
      [
        "hello-c/.goatkit-package.json",
        "hello-c/manifest.json",
        "hello-c/plugin.wasm",
      ],
    );
    const manifest = JSON.parse(
      await Deno.readTextFile(join(t.dir, "hello-c", "manifest.json")),
    );
    assert.equal(manifest.name, "hello-c");
    await t.loader.ensureLoaded("hello-c");
    assert.equal(t.manager.manifest("hello-c")?.version, manifest.version);
    // Bytes with the WASM magic that are no module: refused, nothing written.
    const before = await t.listing();
    await assert.rejects(
      () =>
        t.installer.install(
          new Uint8Array([0, 0x61, 0x73, 0x6d, 1, 0, 0, 0, 7]),
        ),
      (e: unknown) =>
        e instanceof PackageRejectedError && e.status === 400 &&
        e.code === "module_invalid" && /gk_register/.test(e.message),
    );
    assert.deepEqual(await t.listing(), before);
  } finally {
    await t.cleanup();
  }
});

Deno.test("uninstall with forgetSigner clears the pin of a plugin uninstalled earlier; without a pin an unknown name stays 404", async () => {
  const vendor = await generateSigningKeys();
  const t = await host({ trustedKeys: [vendor.publicKey] });
  try {
    const bytes = zip(
      { "plugin.wasm": await moduleRegistering(MANIFEST) },
      MANIFEST,
    );
    await t.installer.install(bytes, {
      signature: await signPackage(bytes, vendor.privateKey),
    });
    await t.installer.uninstall("pkg-probe");
    assert.ok(await t.installer.signerPin("pkg-probe"));
    await t.installer.uninstall("pkg-probe", { forgetSigner: true });
    assert.equal(await t.installer.signerPin("pkg-probe"), undefined);
    await assert.rejects(
      () => t.installer.uninstall("pkg-probe", { forgetSigner: true }),
      (e: unknown) => e instanceof PackageUninstallError && e.status === 404,
    );
  } finally {
    await t.cleanup();
  }
});
