/**
 * Deno flags and WASI preopens from grants. The flags are also tried on a
 * real `deno run` subprocess, which reports what it may and may not do.
 */
import assert from "node:assert/strict";
import { join } from "node:path";
import {
  assertFsContained,
  DenoFlagsError,
  denoFlagsFor,
  findFsEscapes,
  FsEscapeError,
  wasiPreopensFor,
} from "../permissions/mod.ts";

Deno.test("flags: mapping of grants to deno run flags", () => {
  const flags = denoFlagsFor({
    grants: [
      "http:api.example.com",
      "http:https://secure.example.com",
      "http:127.0.0.1:8080",
      "http:[::1]:9000",
      "http:localhost:3000",
      "http:*.wild.example.com",
      "http:external",
      "fs:read:assets",
      "fs:write:cache",
      "db:read",
      "cache:write",
      "email:*",
      "config:*",
      "log",
    ],
    dataDir: "/srv/p/data",
    socketDir: "/run/gk/p",
    socketPaths: ["/run/gk/p/plugin.sock", "/run/gk/p/host.sock"],
  });
  // http: grants map to nothing (egress goes through the HostAPI): the
  // only --allow-net entries are the plugin's own unix sockets.
  assert.deepEqual(flags, [
    "--no-prompt",
    "--no-config",
    "--allow-net=unix:/run/gk/p/host.sock,unix:/run/gk/p/plugin.sock",
    "--allow-read=/run/gk/p,/srv/p/data/assets,/srv/p/data/cache",
    "--allow-write=/run/gk/p,/srv/p/data/cache",
    "--deny-write=" + ["/run/gk/p", "/srv/p/data/cache"].flatMap((d) =>
      [
        "deno.json",
        "deno.jsonc",
        "deno.lock",
        "package.json",
        "node_modules",
        "import_map.json",
      ].map((n) => `${d}/${n}`)
    ).join(","),
  ]);
  for (const f of flags) {
    assert.doesNotMatch(f, /^--allow-(run|ffi|env|sys|import|all)|^-A$/);
  }
  // Issue 10 item 4: an approved http:localhost (or a name resolving to
  // 127.0.0.1) never becomes --allow-net.
  for (
    const grant of [
      "http:localhost",
      "http:127.0.0.1:8080",
      "http:api.example.com",
      "http:external",
    ]
  ) {
    assert.deepEqual(denoFlagsFor({ grants: [grant], dataDir: "/d" }), [
      "--no-prompt",
      "--no-config",
    ]);
  }
  // Nothing granted: no access at all.
  assert.deepEqual(denoFlagsFor({ grants: ["log"], dataDir: "/d" }), [
    "--no-prompt",
    "--no-config",
  ]);
  assert.throws(
    () => denoFlagsFor({ grants: [], dataDir: "relative" }),
    DenoFlagsError,
  );
  assert.throws(
    () =>
      denoFlagsFor({
        grants: [],
        dataDir: "/d",
        socketDir: "/s",
        socketPaths: ["/etc/x.sock"],
      }),
    DenoFlagsError,
  );
  assert.throws(
    () =>
      denoFlagsFor({
        grants: ["fs:write:."],
        dataDir: "/d",
        configFile: "/d/deno.json",
      }),
    DenoFlagsError,
  );
  assert.deepEqual(
    denoFlagsFor({ grants: [], dataDir: "/d", configFile: "/app/plugin.json" }),
    ["--no-prompt", "--config=/app/plugin.json"],
  );
});

Deno.test("flags: a real deno subprocess gets exactly what the flags say", async () => {
  const dir = await Deno.makeTempDir({ prefix: "gk_flags_" });
  try {
    const dataDir = join(dir, "data");
    const code = join(dir, "code");
    await Deno.mkdir(join(dataDir, "assets"), { recursive: true });
    await Deno.mkdir(join(dataDir, "cache"), { recursive: true });
    await Deno.mkdir(code);
    await Deno.writeTextFile(join(dataDir, "assets", "a.txt"), "asset");
    await Deno.writeTextFile(join(dataDir, "secret.txt"), "secret");
    await Deno.writeTextFile(
      join(code, "probe.ts"),
      `
const out: Record<string, string> = {};
async function probe(name: string, fn: () => unknown) {
  try { await fn(); out[name] = "ok"; } catch (e) { out[name] = (e as Error).name; }
}
const d = ${JSON.stringify(dataDir)};
await probe("readAsset", () => Deno.readTextFile(d + "/assets/a.txt"));
await probe("readSecret", () => Deno.readTextFile(d + "/secret.txt"));
await probe("writeAsset", () => Deno.writeTextFile(d + "/assets/b.txt", "x"));
await probe("writeCache", () => Deno.writeTextFile(d + "/cache/c.txt", "x"));
await probe("writeDenoJson", () => Deno.writeTextFile(d + "/cache/deno.json", "{}"));
await probe("readEtc", () => Deno.readTextFile("/etc/hostname"));
await probe("env", () => Deno.env.get("HOME"));
await probe("run", () => new Deno.Command("/bin/sh", { args: ["-c", "true"] }).output());
for (const host of ["api.example.com:443", "127.0.0.1:443", "localhost:3000", "127.0.0.1:3000", "a.wild.example.com:443"]) {
  out["net " + host] = Deno.permissions.querySync({ name: "net", host }).state;
}
console.log(JSON.stringify(out));
`,
    );
    const flags = denoFlagsFor({
      grants: [
        "fs:read:assets",
        "fs:write:cache",
        "http:api.example.com",
        "http:localhost:3000",
        "http:*.wild.example.com",
      ],
      dataDir,
      codeDir: code,
    });
    const { code: exit, stdout, stderr } = await new Deno.Command(
      Deno.execPath(),
      {
        args: ["run", ...flags, join(code, "probe.ts")],
        cwd: dataDir,
        clearEnv: true,
        env: {
          NO_COLOR: "1",
          DENO_DIR: Deno.env.get("DENO_DIR") ??
            join(Deno.env.get("HOME") ?? "/root", ".cache/deno"),
        },
        stdin: "null",
      },
    ).output();
    const text = new TextDecoder().decode(stdout);
    assert.equal(exit, 0, new TextDecoder().decode(stderr));
    assert.deepEqual(JSON.parse(text), {
      readAsset: "ok",
      readSecret: "NotCapable",
      writeAsset: "NotCapable",
      writeCache: "ok",
      writeDenoJson: "NotCapable",
      readEtc: "NotCapable",
      env: "NotCapable",
      run: "NotCapable",
      // http: grants give no direct network access (HostAPI only).
      "net api.example.com:443": "prompt",
      "net 127.0.0.1:443": "prompt",
      "net localhost:3000": "prompt",
      "net 127.0.0.1:3000": "prompt",
      "net a.wild.example.com:443": "prompt",
    });
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("wasi: preopens from fs grants only", () => {
  assert.deepEqual(
    wasiPreopensFor({
      grants: [
        "fs:read:assets",
        "fs:write:cache",
        "fs:read:cache/sub",
        "db:read",
        "http:external",
      ],
      dataDir: "/srv/p/data",
    }),
    [
      {
        guestPath: "/data/assets",
        hostPath: "/srv/p/data/assets",
        readOnly: true,
      },
      {
        guestPath: "/data/cache",
        hostPath: "/srv/p/data/cache",
        readOnly: false,
      },
    ],
  );
  assert.deepEqual(
    wasiPreopensFor({
      grants: ["fs:read:.", "fs:write:."],
      dataDir: "/d",
      guestRoot: "/",
    }),
    [{ guestPath: "/", hostPath: "/d", readOnly: false }],
  );
  assert.deepEqual(
    wasiPreopensFor({ grants: ["log", "db:write"], dataDir: "/d" }),
    [],
  );
});

Deno.test("fs check: symlinks leading out of the data directory are found", async () => {
  const dir = await Deno.makeTempDir({ prefix: "gk_fscheck_" });
  try {
    const data = join(dir, "data");
    await Deno.mkdir(join(data, "cache", "deep"), { recursive: true });
    await Deno.mkdir(join(data, "assets"), { recursive: true });
    await Deno.writeTextFile(join(dir, "outside.txt"), "x");
    await Deno.writeTextFile(join(data, "assets", "a.txt"), "a");
    await Deno.symlink(
      join(data, "assets", "a.txt"),
      join(data, "cache", "inside-link"),
    );
    const grants = ["fs:write:cache", "fs:read:assets", "fs:read:missing"];
    assert.deepEqual(await findFsEscapes({ grants, dataDir: data }), []);
    await assertFsContained({ grants, dataDir: data });

    await Deno.symlink("/etc/passwd", join(data, "cache", "deep", "passwd"));
    await Deno.symlink("../../outside.txt", join(data, "assets", "up"));
    await Deno.symlink("/nonexistent/x", join(data, "cache", "dangling"));
    const found = await findFsEscapes({ grants, dataDir: data });
    assert.deepEqual(found.map((e) => e.path).sort(), [
      join(data, "assets", "up"),
      join(data, "cache", "dangling"),
      join(data, "cache", "deep", "passwd"),
    ]);
    await assert.rejects(
      assertFsContained({ grants, dataDir: data }),
      FsEscapeError,
    );

    // A granted directory that is itself a symlink out of the data directory.
    const data2 = join(dir, "data2");
    await Deno.mkdir(data2);
    await Deno.symlink(dir, join(data2, "x"));
    const escapes = await findFsEscapes({
      grants: ["fs:read:x"],
      dataDir: data2,
    });
    assert.equal(escapes.length, 1);
    assert.equal(escapes[0]!.target, await Deno.realPath(dir));
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});
