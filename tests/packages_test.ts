import assert from "node:assert/strict";
import { join } from "node:path";
import { zipSync } from "fflate";
import { decodeJson, encodeJson, Manager, type Plugin } from "../mod.ts";
import { Loader, type PluginSource } from "../host/loading/loader.ts";
import {
  DowngradeRefusedError,
  generateSigningKeys,
  PACKAGE_RECORD,
  PackageInstaller,
  SignerMismatchError,
  signPackage,
} from "../host/loading/packages.ts";
import {
  signerKeyId,
  SignerPinFileError,
} from "../host/loading/signer_pins.ts";
import { LogBuffer } from "../host/log_buffer.ts";
import { AuditLog } from "../permissions/audit.ts";
import { PackageRejectedError, SafeZip } from "../host/loading/zip_reader.ts";
import { createRuntimeFactory } from "../host/loading/runtimes.ts";
import { MemoryGrantStore } from "../permissions/grants.ts";

const te = new TextEncoder();

// Stand-in runtime: the "module" text is the answer; "FAIL" fails to load.
async function textPlugin(source: PluginSource): Promise<Plugin> {
  const answer = (await Deno.readTextFile(source.entry)).trim();
  if (answer === "FAIL") throw new Error("module does not compile");
  return {
    gkRegister: () => source.manifest,
    init: () => Promise.resolve(),
    call: () => Promise.resolve(encodeJson(answer)),
    shutdown: () => Promise.resolve(),
  };
}

function pkg(
  files: Record<string, string | Uint8Array>,
  manifest: Record<string, unknown> | null = {
    name: "packed",
    version: "1.0.0",
  },
): Uint8Array {
  const entries: Record<string, Uint8Array> = {};
  if (manifest) entries["manifest.json"] = te.encode(JSON.stringify(manifest));
  for (const [k, v] of Object.entries(files)) {
    entries[k] = typeof v === "string" ? te.encode(v) : v;
  }
  return zipSync(entries);
}

async function setup(
  options: Partial<ConstructorParameters<typeof PackageInstaller>[0]> = {},
) {
  const root = await Deno.makeTempDir();
  const dir = join(root, "plugins");
  await Deno.mkdir(dir);
  const manager = new Manager();
  const loader = new Loader(manager, { dir, load: textPlugin });
  manager.setLazyLoader(loader);
  const installer = new PackageInstaller({ dir, manager, loader, ...options });
  const listing = async () => {
    const out: string[] = [];
    const walk = async (d: string, rel: string) => {
      for await (const e of Deno.readDir(d)) {
        out.push(`${rel}${e.name}`);
        if (e.isDirectory) await walk(join(d, e.name), `${rel}${e.name}/`);
      }
    };
    await walk(root, "");
    return out.sort();
  };
  const cleanup = async () => {
    await manager.shutdownAll().catch(() => {});
    await Deno.remove(root, { recursive: true });
  };
  return { root, dir, manager, loader, installer, listing, cleanup };
}

Deno.test("a valid package installs atomically, records its SHA-256 and serves", async () => {
  const t = await setup();
  try {
    const bytes = pkg({
      "plugin.wasm": "v1",
      "assets/style.css": "a{}",
      "i18n/de.json": "{}",
    });
    const r = await t.installer.install(bytes);
    assert.equal(r.name, "packed");
    assert.equal(r.upgraded, false);
    assert.match(r.sha256, /^[0-9a-f]{64}$/);
    const expected = [
      ...new Uint8Array(
        await crypto.subtle.digest("SHA-256", bytes as BufferSource),
      ),
    ]
      .map((b) => b.toString(16).padStart(2, "0")).join("");
    assert.equal(r.sha256, expected);
    assert.equal((await t.installer.record("packed"))?.sha256, expected);
    assert.equal(decodeJson(await t.manager.call("packed", "x", null)), "v1");
    assert.deepEqual(
      (await t.listing()).filter((p) => p.startsWith("plugins/packed/")).sort(),
      [
        "plugins/packed/.goatkit-package.json",
        "plugins/packed/assets",
        "plugins/packed/assets/style.css",
        "plugins/packed/i18n",
        "plugins/packed/i18n/de.json",
        "plugins/packed/manifest.json",
        "plugins/packed/plugin.wasm",
      ],
    );
    assert.ok((await t.listing()).includes(`plugins/packed/${PACKAGE_RECORD}`));
  } finally {
    await t.cleanup();
  }
});

// Patches a byte pattern in every header of a zip (for hostile archives).
function patchName(bytes: Uint8Array, from: string, to: string): Uint8Array {
  assert.equal(from.length, to.length);
  const out = bytes.slice();
  const f = te.encode(from);
  for (let i = 0; i + f.length <= out.length; i++) {
    if (f.every((b, j) => out[i + j] === b)) out.set(te.encode(to), i);
  }
  return out;
}

const HOSTILE: [string, () => Promise<Uint8Array> | Uint8Array, RegExp][] = [
  [
    "zip slip (../)",
    () =>
      patchName(
        pkg({ "plugin.wasm": "x", "aa/evil.txt": "pwned" }),
        "aa/evil.txt",
        "../evil.txt",
      ),
    /leaves the package/,
  ],
  [
    "a nested zip slip",
    () =>
      patchName(
        pkg({ "plugin.wasm": "x", "assets/xx/yy/z": "p" }),
        "assets/xx/yy/z",
        "assets/../../z",
      ),
    /leaves the package/,
  ],
  [
    "an absolute path",
    () =>
      patchName(
        pkg({ "plugin.wasm": "x", "xtmp/evil": "p" }),
        "xtmp/evil",
        "/tmp/evil",
      ),
    /absolute path/,
  ],
  ["a symlink entry", () =>
    zipSync({
      "manifest.json": te.encode(
        JSON.stringify({ name: "packed", version: "1.0.0" }),
      ),
      "plugin.wasm": te.encode("x"),
      "link": [te.encode("/etc/passwd"), {
        os: 3,
        attrs: (0o120777 << 16) >>> 0,
      }],
    }), /symbolic link/],
  [
    "a zip bomb (ratio)",
    () =>
      pkg({
        "plugin.wasm": "x",
        "assets/zeros.bin": new Uint8Array(20 * 1024 * 1024),
      }),
    /zip bomb/,
  ],
  ["a zip bomb with a lying size header", () => {
    const real = pkg({
      "plugin.wasm": "x",
      "assets/zeros.bin": new Uint8Array(500_003),
    });
    // Declare 1000 bytes instead of 500003 in the local and central headers.
    const out = real.slice();
    const dv = new DataView(out.buffer);
    for (let i = 0; i + 4 <= out.length; i++) {
      if (dv.getUint32(i, true) === 500_003) dv.setUint32(i, 1000, true);
    }
    return out;
  }, /inflates beyond its declared 1000 bytes/],
  ["too many entries", () => {
    const files: Record<string, string> = { "plugin.wasm": "x" };
    for (let i = 0; i < 1001; i++) files[`assets/f${i}`] = "";
    return pkg(files);
  }, /more than the limit of 1000/],
  ["an oversized manifest", () =>
    pkg({ "plugin.wasm": "x" }, {
      name: "packed",
      version: "1.0.0",
      description: "x".repeat(300 * 1024),
    }), /more than the limit/],
  [
    "a manifest named ../x",
    () => pkg({ "plugin.wasm": "x" }, { name: "../x", version: "1.0.0" }),
    /manifest.json: Cannot accept manifest: name/,
  ],
  ["no manifest", () => pkg({ "plugin.wasm": "x" }, null), /no manifest.json/],
  ["no module", () => pkg({ "assets/a": "x" }), /no module or entry/],
  [
    "not a zip",
    () => te.encode("this is not a zip file at all, not even close"),
    /not a ZIP/,
  ],
  ["a corrupt entry (CRC)", () => {
    const b = zipSync({
      "manifest.json": te.encode(
        JSON.stringify({ name: "packed", version: "1.0.0" }),
      ),
      "plugin.wasm": [te.encode("hello plugin bytes"), { level: 0 }],
    });
    return patchName(b, "hello plugin bytes", "HELLO plugin bytes");
  }, /CRC-32|not valid deflate|inflates/],
];

for (const [title, make, pattern] of HOSTILE) {
  Deno.test(`a package with ${title} is refused and nothing is written`, async () => {
    const t = await setup();
    try {
      const before = await t.listing();
      await assert.rejects(
        async () => await t.installer.install(await make()),
        (e: unknown) => {
          assert.ok(e instanceof PackageRejectedError, String(e));
          assert.match(e.message, pattern);
          return true;
        },
      );
      assert.deepEqual(await t.listing(), before);
      assert.equal(t.manager.list().length, 0);
    } finally {
      await t.cleanup();
    }
  });
}

Deno.test("signatures: trusted key accepted, bad or missing signature refused when required", async () => {
  const keys = await generateSigningKeys();
  const other = await generateSigningKeys();
  const t = await setup({
    trustedKeys: [keys.publicKey],
    requireSignature: true,
  });
  try {
    const bytes = pkg({ "plugin.wasm": "signed" });
    const before = await t.listing();
    await assert.rejects(() => t.installer.install(bytes), /not signed/);
    await assert.rejects(
      async () =>
        t.installer.install(bytes, {
          signature: await signPackage(bytes, other.privateKey),
        }),
      /bad signature/,
    );
    const tampered = bytes.slice();
    tampered[tampered.length - 30] ^= 1;
    await assert.rejects(
      async () =>
        t.installer.install(tampered, {
          signature: await signPackage(bytes, keys.privateKey),
        }),
      /bad signature/,
    );
    await assert.rejects(
      () => t.installer.install(bytes, { signature: "%%%" }),
      /not base64|bad signature/,
    );
    assert.deepEqual(await t.listing(), before);
    const r = await t.installer.install(bytes, {
      signature: await signPackage(bytes, keys.privateKey),
    });
    assert.equal(r.signedBy, keys.publicKey);
  } finally {
    await t.cleanup();
  }
});

Deno.test("an upgrade swaps versions; a failing upgrade keeps the old version running", async () => {
  const t = await setup();
  try {
    await t.installer.install(
      pkg({ "plugin.wasm": "v1" }, {
        name: "packed",
        version: "1.0.0",
        permissions: ["log"],
      }),
    );
    assert.equal(decodeJson(await t.manager.call("packed", "x", null)), "v1");
    const up = await t.installer.install(pkg({ "plugin.wasm": "v2" }, {
      name: "packed",
      version: "2.0.0",
      permissions: ["log", "db:read"],
    }));
    assert.equal(up.upgraded, true);
    assert.equal(up.previousVersion, "1.0.0");
    assert.deepEqual(up.newPermissions, ["db:read"]);
    assert.equal(decodeJson(await t.manager.call("packed", "x", null)), "v2");
    await assert.rejects(
      () =>
        t.installer.install(
          pkg({ "plugin.wasm": "FAIL" }, { name: "packed", version: "3.0.0" }),
        ),
      /old one keeps running/,
    );
    assert.equal(decodeJson(await t.manager.call("packed", "x", null)), "v2");
    assert.equal(t.manager.manifest("packed")?.version, "2.0.0");
    assert.equal(
      await Deno.readTextFile(join(t.dir, "packed", "plugin.wasm")),
      "v2",
    );
    assert.deepEqual(
      (await t.listing()).filter((p) => p.startsWith("plugins/.")),
      [],
    );
  } finally {
    await t.cleanup();
  }
});

Deno.test("uninstall removes files, registration and calls onUninstall", async () => {
  const dropped: string[] = [];
  const t = await setup({
    onUninstall: (n) => Promise.resolve(void dropped.push(n)),
  });
  try {
    await t.installer.install(pkg({ "plugin.wasm": "v1" }));
    await t.manager.call("packed", "x", null);
    await t.installer.uninstall("packed");
    assert.equal(t.manager.manifest("packed"), undefined);
    assert.deepEqual(await t.listing(), ["plugins"]);
    assert.deepEqual(dropped, ["packed"]);
  } finally {
    await t.cleanup();
  }
});

Deno.test("SafeZip refuses a ratio bomb without inflating it", () => {
  const bomb = zipSync({ "a.bin": new Uint8Array(8 * 1024 * 1024) }, {
    level: 9,
  });
  assert.ok(bomb.length < 64 * 1024);
  assert.throws(() => SafeZip.open(bomb), /zip bomb/);
});

// Hostile (issue 10 item 3): a package whose manifest names "aa-attacker"
// but whose module (fixtures/plugins/hello-c, real WASM) registers as
// "hello-c" is refused at install, with nothing left in the plugins folder.
Deno.test("hostile: a package registering under another name than its manifest is refused", async () => {
  const root = await Deno.makeTempDir();
  const dir = join(root, "plugins");
  await Deno.mkdir(dir);
  const manager = new Manager();
  const grants = new MemoryGrantStore();
  await grants.set("hello-c", ["db:read"]); // the victim's grants
  const loader = new Loader(manager, {
    dir,
    load: createRuntimeFactory({ grants, dataDir: join(root, "data") }),
  });
  manager.setLazyLoader(loader);
  const installer = new PackageInstaller({ dir, manager, loader });
  try {
    const wasm = await Deno.readFile(
      new URL("../fixtures/plugins/hello-c/plugin.wasm", import.meta.url),
    );
    await assert.rejects(
      () =>
        installer.install(
          pkg({ "plugin.wasm": wasm }, {
            name: "aa-attacker",
            version: "1.0.0",
            permissions: ["db:read"],
          }),
        ),
      (e) =>
        e instanceof PackageRejectedError &&
        /Cannot load plugin "aa-attacker": it registers as "hello-c"/.test(
          e.message,
        ),
    );
    const left: string[] = [];
    for await (const e of Deno.readDir(dir)) left.push(e.name);
    assert.deepEqual(left, []);
    await loader.scan();
    assert.deepEqual(loader.discovered(), []);
    assert.equal(manager.manifest("aa-attacker"), undefined);
    assert.equal(manager.manifest("hello-c"), undefined);
  } finally {
    await manager.shutdownAll().catch(() => {});
    await Deno.remove(root, { recursive: true });
  }
});

Deno.test("hostile: an upgrade registering under another name is refused, the old version keeps running", async () => {
  const root = await Deno.makeTempDir();
  const dir = join(root, "plugins");
  await Deno.mkdir(dir);
  const manager = new Manager();
  // Stand-in runtime: a module text "as:<name>" registers as <name>.
  const load = async (source: PluginSource): Promise<Plugin> => {
    const p = await textPlugin(source);
    const text = (await Deno.readTextFile(source.entry)).trim();
    const name = text.startsWith("as:") ? text.slice(3) : source.name;
    return { ...p, gkRegister: () => ({ ...source.manifest, name }) };
  };
  const loader = new Loader(manager, { dir, load });
  manager.setLazyLoader(loader);
  const installer = new PackageInstaller({ dir, manager, loader });
  try {
    await installer.install(
      pkg({ "plugin.wasm": "v1" }, { name: "packed", version: "1.0.0" }),
    );
    // Not registered yet: checked before it is put in place.
    await assert.rejects(
      () =>
        installer.install(
          pkg({ "plugin.wasm": "as:victim" }, {
            name: "packed",
            version: "2.0.0",
          }),
        ),
      /Cannot load plugin "packed": it registers as "victim"/,
    );
    assert.equal(decodeJson(await manager.call("packed", "x", null)), "v1");
    // Registered: the reload refuses it and the old version is put back.
    await assert.rejects(
      () =>
        installer.install(
          pkg({ "plugin.wasm": "as:victim" }, {
            name: "packed",
            version: "3.0.0",
          }),
        ),
      /old one keeps running: Cannot load plugin "packed": it registers as "victim"/,
    );
    assert.equal(decodeJson(await manager.call("packed", "x", null)), "v1");
    assert.equal(manager.manifest("victim"), undefined);
    const left: string[] = [];
    for await (const e of Deno.readDir(dir)) left.push(e.name);
    assert.deepEqual(left, ["packed"]);
    assert.equal(
      await Deno.readTextFile(join(dir, "packed", "plugin.wasm")),
      "v1",
    );
  } finally {
    await manager.shutdownAll().catch(() => {});
    await Deno.remove(root, { recursive: true });
  }
});

// ---------------------------------------------------------------------------
// Issue 10 items 14 and 15: signer pinning and downgrades.

/**
 * Two vendors' trusted keys, an installer with a pin file outside the
 * plugins folder, a real AuditLog and LogBuffer, grants revoked on an
 * allowed signer change (as boot wires it), and `restart()` to build the
 * installer again on the same folders (a host restart).
 */
async function pinned() {
  const vendorA = await generateSigningKeys();
  const vendorB = await generateSigningKeys();
  const root = await Deno.makeTempDir();
  const dir = join(root, "plugins");
  const pinsFile = join(root, "data", "package_signers.json");
  await Deno.mkdir(dir);
  const grants = new MemoryGrantStore();
  const logs = new LogBuffer();
  const audit = new AuditLog({ logs });
  const build = () => {
    const manager = new Manager();
    const loader = new Loader(manager, { dir, load: textPlugin });
    manager.setLazyLoader(loader);
    const installer = new PackageInstaller({
      dir,
      manager,
      loader,
      trustedKeys: [vendorA.publicKey, vendorB.publicKey],
      pinsFile,
      logs,
      audit,
      onSignerChange: (name) => grants.revoke(name),
      onUninstall: (name) => grants.revoke(name),
    });
    return { manager, loader, installer };
  };
  let host = build();
  /** A package of "packed" whose module answers `answer`, signed by `key` (or unsigned). */
  const signed = async (
    answer: string,
    version: string,
    key: { privateKey: string } | null,
  ) => {
    const bytes = pkg({ "plugin.wasm": answer }, {
      name: "packed",
      version,
      permissions: ["db:read", "log"],
    });
    return {
      bytes,
      signature: key ? await signPackage(bytes, key.privateKey) : null,
    };
  };
  const call = async () =>
    decodeJson(await host.manager.call("packed", "x", null));
  const onDisk = () => Deno.readTextFile(join(dir, "packed", "plugin.wasm"));
  return {
    vendorA,
    vendorB,
    root,
    dir,
    pinsFile,
    grants,
    logs,
    audit,
    signed,
    call,
    onDisk,
    get installer() {
      return host.installer;
    },
    get manager() {
      return host.manager;
    },
    async restart() {
      await host.manager.shutdownAll();
      host = build();
      await host.loader.scan();
      await host.loader.loadAll();
    },
    async cleanup() {
      await host.manager.shutdownAll().catch(() => {});
      await Deno.remove(root, { recursive: true });
    },
  };
}

Deno.test("hostile: vendor B's signed package cannot replace vendor A's plugin; A's grants stay A's", async () => {
  const t = await pinned();
  try {
    const a1 = await t.signed("A v1", "1.0.0", t.vendorA);
    const installed = await t.installer.install(a1.bytes, {
      signature: a1.signature,
    });
    assert.equal(installed.signedBy, t.vendorA.publicKey);
    const keyA = await signerKeyId(t.vendorA.publicKey);
    const keyB = await signerKeyId(t.vendorB.publicKey);
    assert.equal((await t.installer.signerPin("packed"))?.keyId, keyA);
    // The operator approves A's request.
    await t.grants.set("packed", ["db:read"]);
    assert.equal(await t.call(), "A v1");

    // B, also a trusted vendor, ships "packed" 1.1.0: refused.
    const b = await t.signed("B takes over", "1.1.0", t.vendorB);
    const err = await t.installer.install(b.bytes, { signature: b.signature })
      .then(() => undefined, (e) => e);
    assert.ok(err instanceof SignerMismatchError, `got ${err}`);
    assert.ok(err instanceof PackageRejectedError);
    assert.equal(err.plugin, "packed");
    assert.equal(err.pinnedKeyId, keyA);
    assert.equal(err.presentedKeyId, keyB);
    assert.match(
      err.message,
      /^Cannot install package: plugin "packed" is pinned to signer [0-9a-f]{16} and this package is signed by [0-9a-f]{16}/,
    );
    // Nothing changed: A's code runs, A's files, A's record, A's grants.
    assert.equal(await t.call(), "A v1");
    assert.equal(await t.onDisk(), "A v1");
    assert.equal(
      (await t.installer.record("packed"))?.signedBy,
      t.vendorA.publicKey,
    );
    assert.deepEqual(await t.grants.get("packed"), ["db:read"]);
    assert.equal(t.manager.manifest("packed")?.version, "1.0.0");
    // Refused and said so: audited and logged.
    const denied = t.audit.query({ plugin: "packed" })[0];
    assert.equal(denied?.permission, "package:signer");
    assert.equal(denied?.outcome, "denied");
    assert.match(denied?.attempted ?? "", /signed by [0-9a-f]{16} over/);
    assert.ok(
      t.logs.query({ plugin: "packed" }).some((l) =>
        /package refused: install packed 1\.1\.0 signed by/.test(l.message)
      ),
    );

    // An unsigned package replacing the signed one is refused the same way.
    const u = await t.signed("unsigned", "1.2.0", null);
    const unsigned = await t.installer.install(u.bytes).then(
      () => undefined,
      (e) => e,
    );
    assert.ok(unsigned instanceof SignerMismatchError);
    assert.equal(unsigned.presentedKeyId, null);
    assert.match(unsigned.message, /this package is not signed/);
    assert.equal(await t.call(), "A v1");

    // The pin survives a restart…
    await t.restart();
    assert.equal(await t.call(), "A v1");
    await assert.rejects(
      () => t.installer.install(b.bytes, { signature: b.signature }),
      SignerMismatchError,
    );
    // …and an uninstall: B cannot slip in after A is removed.
    await t.installer.uninstall("packed");
    await assert.rejects(
      () => t.installer.install(b.bytes, { signature: b.signature }),
      SignerMismatchError,
    );
    assert.deepEqual([...Deno.readDirSync(t.dir)].map((e) => e.name), []);
    // A itself reinstalls without any override.
    await t.installer.install(a1.bytes, { signature: a1.signature });
    assert.equal(await t.call(), "A v1");
  } finally {
    await t.cleanup();
  }
});

Deno.test("an operator override lets another signer in: audited, pin moved, grants wait again", async () => {
  const t = await pinned();
  try {
    const a1 = await t.signed("A v1", "1.0.0", t.vendorA);
    await t.installer.install(a1.bytes, { signature: a1.signature });
    await t.grants.set("packed", ["db:read"]);
    const b = await t.signed("B v1.1", "1.1.0", t.vendorB);
    const r = await t.installer.install(b.bytes, {
      signature: b.signature,
      allowSignerChange: true,
    });
    assert.equal(r.previousSigner, t.vendorA.publicKey);
    assert.equal(r.signedBy, t.vendorB.publicKey);
    assert.equal(await t.call(), "B v1.1");
    // B does not inherit what the operator approved for A.
    assert.deepEqual(await t.grants.get("packed"), []);
    const keyB = await signerKeyId(t.vendorB.publicKey);
    assert.equal((await t.installer.signerPin("packed"))?.keyId, keyB);
    const entry = t.audit.query({ plugin: "packed" })[0];
    assert.equal(entry?.outcome, "overridden");
    assert.equal(entry?.permission, "package:signer");
    assert.match(entry?.attempted ?? "", /\(operator override\)$/);
    assert.ok(
      t.logs.query({ plugin: "packed", minLevel: "warn" }).some((l) =>
        /installed by operator override/.test(l.message)
      ),
    );
    // Now A is the stranger.
    const a2 = await t.signed("A v2", "2.0.0", t.vendorA);
    await assert.rejects(
      () => t.installer.install(a2.bytes, { signature: a2.signature }),
      SignerMismatchError,
    );
    // An allowed unsigned install does not clear the pin.
    const u = await t.signed("dev build", "1.2.0", null);
    await t.installer.install(u.bytes, { allowSignerChange: true });
    assert.equal(await t.call(), "dev build");
    assert.equal((await t.installer.signerPin("packed"))?.keyId, keyB);
    // Clearing the pin is explicit (and audited); then A pins again.
    await t.installer.uninstall("packed", { forgetSigner: true });
    assert.equal(await t.installer.signerPin("packed"), undefined);
    assert.equal(t.audit.query({ plugin: "packed" })[0]?.outcome, "cleared");
    await t.installer.install(a2.bytes, { signature: a2.signature });
    assert.equal(
      (await t.installer.signerPin("packed"))?.keyId,
      await signerKeyId(t.vendorA.publicKey),
    );
  } finally {
    await t.cleanup();
  }
});

Deno.test("hostile: 1.0.0 over 2.0.0 is refused unless forced; the same version reinstalls", async () => {
  const t = await pinned();
  try {
    const v2 = await t.signed("v2", "2.0.0", t.vendorA);
    await t.installer.install(v2.bytes, { signature: v2.signature });
    await t.grants.set("packed", ["db:read"]);
    const v1 = await t.signed("v1", "1.0.0", t.vendorA);
    const err = await t.installer.install(v1.bytes, {
      signature: v1.signature,
    }).then(() => undefined, (e) => e);
    assert.ok(err instanceof DowngradeRefusedError, `got ${err}`);
    assert.equal(err.installed, "2.0.0");
    assert.equal(err.offered, "1.0.0");
    assert.match(
      err.message,
      /^Cannot install package: plugin "packed" 1\.0\.0 is older than the installed 2\.0\.0/,
    );
    assert.equal(await t.call(), "v2");
    assert.equal(await t.onDisk(), "v2");
    assert.equal((await t.installer.record("packed"))?.version, "2.0.0");
    assert.equal(t.audit.query({ plugin: "packed" })[0]?.outcome, "denied");
    assert.equal(
      t.audit.query({ plugin: "packed" })[0]?.permission,
      "package:downgrade",
    );
    // A pre-release of the installed version is older too.
    const rc = await t.signed("rc", "2.0.0-rc.1", t.vendorA);
    await assert.rejects(
      () => t.installer.install(rc.bytes, { signature: rc.signature }),
      DowngradeRefusedError,
    );
    // Forced: installed, logged and audited; grants are not touched.
    const r = await t.installer.install(v1.bytes, {
      signature: v1.signature,
      allowDowngrade: true,
    });
    assert.equal(r.previousVersion, "2.0.0");
    assert.equal(r.version, "1.0.0");
    assert.equal(await t.call(), "v1");
    const forced = t.audit.query({ plugin: "packed" })[0];
    assert.equal(forced?.outcome, "overridden");
    assert.equal(
      forced?.attempted,
      "install packed 1.0.0 over 2.0.0 (operator override)",
    );
    assert.deepEqual(await t.grants.get("packed"), ["db:read"]);
    // The same version again needs no force.
    await t.installer.install(v1.bytes, { signature: v1.signature });
    // Forcing a downgrade does not allow a signer change.
    const b0 = await t.signed("B old", "0.9.0", t.vendorB);
    await assert.rejects(
      () =>
        t.installer.install(b0.bytes, {
          signature: b0.signature,
          allowDowngrade: true,
        }),
      SignerMismatchError,
    );
    assert.equal(await t.call(), "v1");
  } finally {
    await t.cleanup();
  }
});

Deno.test("signer pins: a plugin signed before pins existed is pinned by its record; a broken pin file stops installs", async () => {
  const t = await pinned();
  try {
    const a1 = await t.signed("A v1", "1.0.0", t.vendorA);
    await t.installer.install(a1.bytes, { signature: a1.signature });
    // As if installed by a version without pins: only the record knows.
    await Deno.remove(t.pinsFile);
    const b = await t.signed("B", "1.1.0", t.vendorB);
    await assert.rejects(
      () => t.installer.install(b.bytes, { signature: b.signature }),
      SignerMismatchError,
    );
    // A's next release writes the pin down.
    const a2 = await t.signed("A v2", "1.2.0", t.vendorA);
    await t.installer.install(a2.bytes, { signature: a2.signature });
    assert.ok(await Deno.stat(t.pinsFile));
    // Fail closed: a pin file that cannot be read is not "no pins".
    await Deno.writeTextFile(t.pinsFile, "{ not json");
    await assert.rejects(
      () =>
        t.installer.install(b.bytes, {
          signature: b.signature,
          allowSignerChange: false,
        }),
      SignerPinFileError,
    );
    assert.equal(await t.call(), "A v2");
    assert.equal(await t.onDisk(), "A v2");
  } finally {
    await t.cleanup();
  }
});
