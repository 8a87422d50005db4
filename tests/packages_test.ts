import assert from "node:assert/strict";
import { join } from "node:path";
import { zipSync } from "fflate";
import { decodeJson, encodeJson, Manager, type Plugin } from "../mod.ts";
import { Loader, type PluginSource } from "../host/loading/loader.ts";
import {
  generateSigningKeys,
  PACKAGE_RECORD,
  PackageInstaller,
  signPackage,
} from "../host/loading/packages.ts";
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
