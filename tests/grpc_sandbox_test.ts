/**
 * The OS sandbox of subprocess plugins (issue 10: item 1, item 4 and the
 * new attacks on the sandbox). Each step runs a real hostile plugin process
 * through the real runtime and supervisor, asserts the refusal, that
 * nothing leaked or changed on the host, and that the host keeps serving.
 *
 * - `grpc-sandbox-read` imports host files through string-literal imports
 *   (which Deno's `--allow-read` does not check). It runs once without the
 *   sandbox, to show the test sees the hole, then in it.
 * - `grpc-sandbox-net` reaches a loopback HTTP server of the test with an
 *   approved `http:localhost` grant, then with `--allow-net` wide open.
 * - `grpc-sandbox-escape` runs with Deno's permissions wide open
 *   (`--allow-read --allow-write --allow-net`), as if the first wall had
 *   fallen: `/proc`, `/sys`, `/dev`, host sockets, the module cache, links
 *   in its data folder, a Worker bomb, disk and memory filling.
 * - Without bubblewrap (a missing or failing `bwrap`) plugins are refused
 *   with `SandboxUnavailableError`; `sandbox: "none"` runs them with a
 *   warning.
 *
 * Needs bubblewrap, and root for the per-plugin uid (CI runs as root).
 * Sanitizers: off as in `grpc_runtime_test.ts` (grpc-js timers); processes
 * and folders are checked explicitly.
 *
 * Run: `deno test --allow-all tests/grpc_sandbox_test.ts`
 *
 * @module
 */

import assert from "node:assert/strict";
import { join, relative } from "node:path";
import { Manager } from "../host/manager.ts";
import { MemoryHostAPI } from "../host/testing/memory_host_api.ts";
import { PluginCrashedError } from "../host/model/errors.ts";
import { decodeJson, encodeJson } from "../host/model/plugin.ts";
import { denoFlagsFor } from "../permissions/deno_flags.ts";
import {
  GrpcHandshakeError,
  type GrpcPlugin,
  loadGrpcPlugin as load,
  type LoadGrpcPluginOptions,
  SandboxUnavailableError,
} from "../runtimes/grpc/mod.ts";
import { hostDenoDir, translateDenoFlags } from "../runtimes/grpc/launch.ts";
import {
  allocateSandboxUid,
  bwrapCommand,
  PathMap,
  resolveSandbox,
  type SandboxTools,
} from "../runtimes/grpc/sandbox.ts";
import {
  buildHelloGo,
  goToolchainAvailable,
} from "../fixtures/plugins/hello-go/build_go.ts";

const fixture = (p: string) =>
  new URL(`../fixtures/${p}`, import.meta.url).pathname;
const REPO = new URL("..", import.meta.url).pathname.replace(/\/$/, "");
const opts = { sanitizeOps: false, sanitizeResources: false };
const PG_SOCKET = "/var/run/postgresql/.s.PGSQL.5432";
/** Deno's permissions wide open: only the sandbox is left. */
const WIDE_OPEN = ["--allow-read", "--allow-write", "--allow-net"];
const MIB = 1024 * 1024;

const isRoot = Deno.uid() === 0;

Deno.test("sandbox: command line, path translation, uid allocation", () => {
  const tools: SandboxTools = {
    ...resolveSandbox({ limits: { maxProcesses: 50 } }),
    bwrap: "/usr/bin/bwrap",
    prlimit: "/usr/bin/prlimit",
    setpriv: "/usr/bin/setpriv",
  };
  const mounts = [
    { host: "/srv/code/p", inside: "/plugin/code", access: "ro" as const },
    { host: "/srv/data/p", inside: "/plugin/data", access: "rw" as const },
    { host: "/run/gk/x/plugin", inside: "/plugin/sock", access: "rw" as const },
  ];
  const command = ["/deno/bin/deno", "run", "/plugin/code/plugin.ts"];
  const root = bwrapCommand({
    tools: { ...tools, root: true },
    mounts,
    libraries: [{ path: "/lib/x/libc.so.6", file: "/usr/lib/x/libc.so.6" }],
    uid: 212345,
    cwd: "/plugin/code",
    command,
  });
  const sep = root.indexOf("--");
  assert.deepEqual(root.slice(0, sep), [
    "/usr/bin/prlimit",
    "--nproc=50",
    "--fsize=1073741824",
    "--data=4294967296",
    "--nofile=1024",
    "--core=0",
  ]);
  for (
    const flag of [
      "--unshare-net",
      "--unshare-pid",
      "--unshare-ipc",
      "--unshare-uts",
      "--die-with-parent",
      "--new-session",
    ]
  ) assert.ok(root.includes(flag), flag);
  assert.ok(!root.includes("--unshare-user"), "root: no user namespace");
  assert.deepEqual(
    root.slice(root.indexOf("--cap-drop"), root.indexOf("--cap-drop") + 2),
    ["--cap-drop", "ALL"],
  );
  // bwrap … -- setpriv <drop> -- <command>
  const tail = root.slice(root.lastIndexOf("/sandbox/setpriv") - 1);
  assert.equal(tail[0], "--");
  assert.deepEqual(tail.slice(-command.length - 1), ["--", ...command]);
  assert.ok(root.includes("--reuid=212345") && root.includes("--no-new-privs"));
  assert.ok(root.includes("--bounding-set=-all"));
  // Only what was asked for is mounted, read-only unless said otherwise.
  const binds = root.flatMap((a, i) =>
    a === "--bind" || a === "--ro-bind" ? [[a, root[i + 1], root[i + 2]]] : []
  );
  assert.deepEqual(binds, [
    ["--ro-bind", "/usr/lib/x/libc.so.6", "/lib/x/libc.so.6"],
    ["--ro-bind", "/usr/bin/setpriv", "/sandbox/setpriv"],
    ["--ro-bind", "/srv/code/p", "/plugin/code"],
    ["--bind", "/srv/data/p", "/plugin/data"],
    ["--bind", "/run/gk/x/plugin", "/plugin/sock"],
  ]);
  // Without root: a user namespace, no uid drop, no process limit.
  const user = bwrapCommand({
    tools: { ...tools, root: false },
    mounts,
    libraries: [],
    cwd: "/",
    command,
  });
  assert.ok(
    user.includes("--unshare-user") && user.includes("--disable-userns"),
  );
  assert.ok(
    !user.some((a) => a.startsWith("--nproc") || a.includes("setpriv")),
  );
  assert.throws(
    () => resolveSandbox({ limits: { maxFileBytes: 0 } }),
    RangeError,
  );

  const paths = new PathMap(mounts);
  assert.equal(paths.toInside("/srv/data/p/cache"), "/plugin/data/cache");
  assert.equal(paths.toInside("/srv/data/pp"), undefined);
  assert.equal(paths.toInside("/srv/data/p/../q"), undefined);
  assert.equal(
    paths.toHost("/plugin/sock/plugin.sock"),
    "/run/gk/x/plugin/plugin.sock",
  );
  assert.deepEqual(
    translateDenoFlags([
      "--no-prompt",
      "--allow-read=/srv/data/p/a,/etc,/srv/code/p",
      "--allow-write=/etc",
      "--allow-net=unix:/run/gk/x/plugin/plugin.sock,unix:/var/run/x.sock,example.com",
      "--deny-write=/srv",
    ], paths),
    [
      "--no-prompt",
      "--allow-read=/plugin/data/a,/plugin/code",
      "--allow-net=unix:/plugin/sock/plugin.sock,example.com",
      "--deny-write=/plugin/code,/plugin/data",
    ],
  );

  // Stable per key, never shared between keys, the previous one kept.
  const a = allocateSandboxUid({ key: "/d/a", base: 300000, count: 2 });
  assert.equal(allocateSandboxUid({ key: "/d/a", base: 300000, count: 2 }), a);
  const b = allocateSandboxUid({ key: "/d/b", base: 300000, count: 2 });
  assert.notEqual(a, b);
  assert.throws(
    () => allocateSandboxUid({ key: "/d/c", base: 300000, count: 2 }),
    RangeError,
  );
  assert.equal(
    allocateSandboxUid({
      key: "/d/e",
      base: 310000,
      count: 100,
      previous: 310042,
    }),
    310042,
  );
});

function exists(path: string): boolean {
  try {
    Deno.lstatSync(path);
    return true;
  } catch {
    return false;
  }
}

/** Per process with real uid `uid`: its pid and thread count. */
function processesOf(uid: number): { pid: number; threads: number }[] {
  const out: { pid: number; threads: number }[] = [];
  for (const e of Deno.readDirSync("/proc")) {
    if (!/^\d+$/.test(e.name)) continue;
    try {
      const status = Deno.readTextFileSync(`/proc/${e.name}/status`);
      const real = /^Uid:\s+(\d+)/m.exec(status)?.[1];
      if (Number(real) !== uid) continue;
      if (/^State:\s+Z/m.test(status)) continue;
      const threads = Number(/^Threads:\s+(\d+)/m.exec(status)?.[1] ?? 1);
      out.push({ pid: Number(e.name), threads });
    } catch { /* gone */ }
  }
  return out;
}

/** Fields of `/proc/<pid>/status` as the host sees them. */
function statusOf(pid: number): Record<string, string> {
  const out: Record<string, string> = {};
  for (const line of Deno.readTextFileSync(`/proc/${pid}/status`).split("\n")) {
    const i = line.indexOf(":");
    if (i > 0) out[line.slice(0, i)] = line.slice(i + 1).trim();
  }
  return out;
}

const refused = (outcome: unknown) =>
  typeof outcome === "string" && !outcome.startsWith("ALLOWED") &&
  !outcome.startsWith("READ");
/** Refused by the sandbox, not by Deno's permissions. */
const walled = (outcome: unknown) =>
  refused(outcome) && !/^NotCapable/.test(outcome as string);

Deno.test(
  "the OS sandbox holds when Deno's flags do not",
  { ...opts, ignore: !isRoot },
  async (t) => {
    const tempDir = await Deno.makeTempDir({ prefix: "gk-sbx-" });
    const work = await Deno.makeTempDir({ prefix: "gk-sbx-work-" });
    // A host secret outside every plugin folder.
    const secrets = join(work, "secrets");
    await Deno.mkdir(secrets, { mode: 0o700 });
    const secretText = `sandbox-secret-${crypto.randomUUID()}`;
    const secretFile = join(secrets, "secret.txt");
    const tokensFile = join(secrets, "tokens.json");
    await Deno.writeTextFile(secretFile, secretText, { mode: 0o600 });
    await Deno.writeTextFile(
      tokensFile,
      JSON.stringify({ admin: secretText }),
      { mode: 0o600 },
    );
    const secretInfo = await Deno.stat(secretFile);
    const hostEnviron = Deno.readTextFileSync(`/proc/${Deno.pid}/environ`);
    const denoDir = hostDenoDir();

    const loadGrpcPlugin = (entry: string, o: LoadGrpcPluginOptions = {}) =>
      load(entry, { tempDir, startTimeoutMs: 30_000, ...o });
    const host = new MemoryHostAPI();
    const manager = new Manager({ host });
    const hello = await loadGrpcPlugin(
      fixture("plugins/hello-grpc-ts/plugin.ts"),
    );
    await manager.register(hello);
    const stillServing = async () =>
      assert.deepEqual(
        decodeJson(await manager.call("hello-grpc", "get_status", null)),
        { status: "running", type: "grpc", version: "1.0.0" },
      );
    const call = async <T>(name: string, fn: string, args: unknown = null) =>
      decodeJson<T>(
        await manager.call(name, fn, encodeJson(args), { timeoutMs: 30_000 }),
      )!;
    /**
     * Registers a plugin; enabled, whatever an earlier plugin of the same
     * name left in the Manager's state (a quarantine).
     */
    const register = async (plugin: GrpcPlugin) => {
      const name = (await manager.register(plugin)).name;
      await manager.enable(name);
    };
    /** Unregisters, and checks no process of the plugin's uid is left. */
    const stop = async (name: string, plugin: GrpcPlugin) => {
      const uid = plugin.status().uid;
      await manager.unregister(name);
      if (uid !== undefined) assert.deepEqual(processesOf(uid), []);
      await stillServing();
    };

    try {
      await t.step(
        "item 1: string-literal imports read host files without the sandbox, nothing in it",
        async () => {
          const code = join(work, "read");
          await Deno.mkdir(code);
          await Deno.copyFile(
            fixture("hostile/grpc-sandbox-read/plugin.ts"),
            join(code, "plugin.ts"),
          );
          // Specifiers must be string literals: write them in.
          const lit = JSON.stringify;
          await Deno.writeTextFile(
            join(code, "targets.ts"),
            `export const TARGETS: Record<string, () => Promise<{ default: unknown }>> = {
  host_environ: () => import(${
              lit(`/proc/${Deno.pid}/environ`)
            }, { with: { type: "text" } }),
  shadow: () => import("/etc/shadow", { with: { type: "text" } }),
  secret_text: () => import(${lit(secretFile)}, { with: { type: "text" } }),
  secret_json: () => import(${lit(tokensFile)}, { with: { type: "json" } }),
  relative: () => import(${
              lit(relative(code, secretFile))
            }, { with: { type: "text" } }),
  static_import: () => import("./static_import.ts"),
};
`,
          );
          await Deno.writeTextFile(
            join(code, "static_import.ts"),
            `import s from ${lit(secretFile)} with { type: "text" };
export default s;
`,
          );
          const entry = join(code, "plugin.ts");

          // Without the sandbox the attack works: this test would see it.
          const open = await loadGrpcPlugin(entry, { sandbox: "none" });
          await register(open);
          const leaked = await call<Record<string, string>>(
            "grpc-sandbox-read",
            "read",
          );
          await manager.unregister("grpc-sandbox-read");
          assert.equal(leaked.secret_text, `READ: ${secretText}`);
          assert.equal(leaked.relative, `READ: ${secretText}`);
          assert.equal(leaked.static_import, `READ: ${secretText}`);
          assert.equal(
            leaked.secret_json,
            `READ: ${JSON.stringify({ admin: secretText })}`,
          );
          assert.equal(leaked.host_environ, `READ: ${hostEnviron}`);
          assert.match(leaked.shadow!, /^READ: root:/);

          // In the sandbox: nothing.
          const boxed = await loadGrpcPlugin(entry);
          assert.equal(boxed.status().sandboxed, true);
          await register(boxed);
          const r = await call<Record<string, string>>(
            "grpc-sandbox-read",
            "read",
          );
          for (const [what, outcome] of Object.entries(r)) {
            assert.ok(refused(outcome), `${what}: ${outcome}`);
          }
          assert.deepEqual(Object.keys(r).sort(), Object.keys(leaked).sort());
          const all = JSON.stringify(r);
          assert.ok(!all.includes(secretText), all);
          assert.ok(!all.includes("root:"), all);
          assert.ok(!all.includes(hostEnviron.slice(0, 40)), all);
          await stop("grpc-sandbox-read", boxed);
        },
      );

      await t.step(
        "item 4: an approved http:localhost grant reaches no loopback service",
        async () => {
          let requests = 0;
          const server = Deno.serve(
            { hostname: "127.0.0.1", port: 0, onListen() {} },
            () => {
              requests++;
              return new Response("loopback service");
            },
          );
          const port = server.addr.port;
          try {
            const entry = fixture("hostile/grpc-sandbox-net/plugin.ts");
            const dataDir = join(work, "net-data");
            await Deno.mkdir(dataDir);
            const approved = denoFlagsFor({
              grants: [
                "http:localhost",
                `http:localhost:${port}`,
                `http:127.0.0.1:${port}`,
              ],
              dataDir,
              codeDir: fixture("hostile/grpc-sandbox-net"),
            });
            // The grants map to no --allow-net at all (first wall) …
            assert.ok(!approved.some((f) => f.startsWith("--allow-net")));
            for (const denoFlags of [approved, WIDE_OPEN]) {
              // … and with --allow-net wide open, the sandbox has no route.
              const p = await loadGrpcPlugin(entry, {
                denoFlags,
                dataDir,
                args: ["--port", String(port)],
              });
              await register(p);
              const r = await call<Record<string, string>>(
                "grpc-sandbox-net",
                "reach",
              );
              for (const [what, outcome] of Object.entries(r)) {
                if (denoFlags === approved) {
                  assert.match(outcome, /^NotCapable/, `${what}: ${outcome}`);
                } else {
                  assert.ok(walled(outcome), `${what}: ${outcome}`);
                }
              }
              await stop("grpc-sandbox-net", p);
            }
            assert.equal(requests, 0, "the loopback service saw a request");
            // The same plugin without the sandbox gets through: the server
            // and the probe work.
            const open = await loadGrpcPlugin(entry, {
              sandbox: "none",
              denoFlags: WIDE_OPEN,
              args: ["--port", String(port)],
            });
            await register(open);
            const r = await call<Record<string, string>>(
              "grpc-sandbox-net",
              "reach",
            );
            await manager.unregister("grpc-sandbox-net");
            assert.match(r.fetch_ip!, /^ALLOWED: 200/);
            assert.ok(requests > 0);
          } finally {
            await server.shutdown();
          }
        },
      );

      // One plugin, wide open in Deno's terms, for the next steps.
      const dataDir = join(work, "escape-data");
      await Deno.mkdir(dataDir);
      const entry = fixture("hostile/grpc-sandbox-escape/plugin.ts");
      let escape = await loadGrpcPlugin(entry, {
        denoFlags: WIDE_OPEN,
        dataDir,
      });
      await register(escape);
      const uid = escape.status().uid!;
      const escapeCall = <T>(fn: string, args: unknown = {}) =>
        call<T>("grpc-sandbox-escape", fn, args);

      await t.step(
        "it runs as its own unprivileged uid, without capabilities",
        async () => {
          const s = escape.status();
          assert.equal(s.sandboxed, true);
          assert.ok(uid >= 200_000 && uid < 300_000, `uid ${uid}`);
          const seen = statusOf(s.pid!);
          assert.deepEqual(seen.Uid!.split(/\s+/), Array(4).fill(String(uid)));
          assert.deepEqual(seen.Gid!.split(/\s+/), Array(4).fill(String(uid)));
          assert.equal(seen.CapEff, "0000000000000000");
          assert.equal(seen.CapBnd, "0000000000000000");
          assert.equal(seen.NoNewPrivs, "1");
          assert.ok(processesOf(uid).some((p) => p.pid === s.pid));
          // Its folders are its own; the host socket is for it alone.
          assert.equal((await Deno.stat(dataDir)).uid, uid);
          const sock = await Deno.stat(escape.hostSocket);
          assert.equal(sock.uid, uid);
          assert.equal(sock.mode! & 0o777, 0o600);
        },
      );

      await t.step(
        "it sees only its own mounts, under paths that name nothing of the host",
        async () => {
          const r = await escapeCall<{
            init_config: Record<string, string>;
            cwd: string;
            main: string;
            args: string[];
            root: string;
          }>("whereami");
          assert.equal(r.init_config.data_dir, "/plugin/data");
          assert.equal(r.cwd, "/plugin/code");
          assert.equal(r.main, "file:///plugin/code/plugin.ts");
          assert.deepEqual(r.args, ["--gk-socket", "/plugin/sock/plugin.sock"]);
          const root: string[] = JSON.parse(r.root.replace(/^ALLOWED: /, ""));
          assert.deepEqual(
            root.filter((d) => !/^lib/.test(d)),
            ["deno", "dev", "goatkit", "plugin", "proc", "sandbox", "tmp"],
          );
          const all = JSON.stringify(r);
          for (const hostPath of [REPO, work, tempDir, denoDir]) {
            assert.ok(!all.includes(hostPath), `${hostPath} in ${all}`);
          }
        },
      );

      await t.step(
        "/proc shows only its own PID namespace, mounts and network",
        async () => {
          const r = await escapeCall<Record<string, string>>("proc", {
            hostPid: Deno.pid,
          });
          // Every process it can see (pids 1-64) is its own: bwrap's init
          // (pid 1) and itself (pid 2; its threads have pids too).
          const seen = Object.entries(r).filter(([k, v]) =>
            /^\/proc\/\d+\/cmdline$/.test(k) && !refused(v)
          );
          assert.match(r["/proc/1/cmdline"]!, /^ALLOWED: \S*bwrap\0/);
          assert.ok(seen.some(([k]) => k === "/proc/2/cmdline"));
          for (const [k, v] of seen) {
            if (k === "/proc/1/cmdline") continue;
            assert.ok(v.startsWith("ALLOWED: /deno/bin/deno\0run\0"), k);
          }
          for (const k of [`/proc/${Deno.pid}/environ`, "/proc/1/environ"]) {
            assert.ok(!r[k]!.includes(hostEnviron.slice(0, 40)), r[k]);
          }
          assert.match(r["/proc/self/status"]!, new RegExp(`Uid:\t${uid}\t`));
          assert.match(r["/proc/self/status"]!, /NoNewPrivs:\t1/);
          // Its mounts: its own folders, nothing else of the host.
          const mounts = r["/proc/self/mountinfo"]!.replace(/^ALLOWED: /, "")
            .trim().split("\n").map((l) => l.split(" ")[4]!);
          for (const m of mounts) {
            assert.ok(
              m === "/" || /^\/(proc|dev|tmp)(\/|$)/.test(m) ||
                /^\/(deno|plugin|goatkit|lib|lib64|sandbox)\//.test(m),
              `mounted: ${m}`,
            );
          }
          for (const m of ["/plugin/code", "/plugin/data", "/deno/cache"]) {
            assert.ok(mounts.includes(m), m);
          }
          // Its network: its own loopback, nothing else.
          const ifaces = r["/proc/net/dev"]!.replace(/^ALLOWED: /, "")
            .trim().split("\n").slice(2).map((l) => l.split(":")[0]!.trim());
          assert.deepEqual(ifaces, ["lo"]);
        },
      );

      await t.step(
        "/sys, /etc, /home, /root and host files are not there",
        async () => {
          const r = await escapeCall<Record<string, string>>("files", {
            secret: secretFile,
          });
          for (const [what, outcome] of Object.entries(r)) {
            assert.ok(walled(outcome), `${what}: ${outcome}`);
            assert.match(outcome, /NotFound|Module not found/, what);
          }
          assert.equal(Object.keys(r).length, 11);
        },
      );

      await t.step(
        "no devices beyond null, zero, full, random, urandom and tty",
        async () => {
          const r = await escapeCall<Record<string, string>>("devices");
          assert.equal(r["/dev/null"], "ALLOWED: ");
          for (const [d, outcome] of Object.entries(r)) {
            if (d !== "/dev/null") {
              assert.ok(walled(outcome), `${d}: ${outcome}`);
            }
          }
          assert.equal(Object.keys(r).length, 13);
        },
      );

      await t.step(
        "host unix sockets (PostgreSQL's, another listener) are unreachable",
        async () => {
          const path = join(work, "host-listener.sock");
          const listener = Deno.listen({ transport: "unix", path });
          let accepted = 0;
          const accepting = (async () => {
            for await (const c of listener) {
              accepted++;
              c.close();
            }
          })().catch(() => {});
          try {
            const sockets = [path];
            if (exists(PG_SOCKET)) {
              // The host itself can connect: the refusal is the sandbox's.
              const c = await Deno.connect({
                transport: "unix",
                path: PG_SOCKET,
              });
              c.close();
              sockets.push(PG_SOCKET);
            }
            const r = await escapeCall<Record<string, string>>("sockets", {
              sockets,
            });
            for (const [what, outcome] of Object.entries(r)) {
              assert.ok(walled(outcome), `${what}: ${outcome}`);
            }
            assert.equal(Object.keys(r).length, sockets.length + 1);
            assert.equal(accepted, 0);
          } finally {
            listener.close();
            await accepting;
          }
        },
      );

      await t.step(
        "the module cache, the Deno binary, its code and / are read-only",
        async () => {
          const r = await escapeCall<Record<string, string>>("writes", {
            hostDenoDir: denoDir,
          });
          // Writable: its data folder, its /tmp and the private scratch
          // over the cache's gen/ (gone with the process).
          for (const ok of ["data", "tmp", "cache_gen"]) {
            assert.equal(r[ok], "ALLOWED: undefined", `${ok}: ${r[ok]}`);
          }
          for (const [what, outcome] of Object.entries(r)) {
            if (["data", "tmp", "cache_gen"].includes(what)) continue;
            assert.ok(walled(outcome), `${what}: ${outcome}`);
          }
          for (
            const planted of [
              join(denoDir, "planted.txt"),
              join(denoDir, "npm", "planted.txt"),
              join(denoDir, "gen", "planted.txt"),
              fixture("hostile/grpc-sandbox-escape/planted.txt"),
              join(REPO, "planted.txt"),
            ]
          ) {
            assert.ok(!exists(planted), planted);
          }
          assert.equal(
            await Deno.readTextFile(join(dataDir, "planted.txt")),
            "x",
          );
        },
      );

      await t.step(
        "a link planted in the data folder leads nowhere, and the host does not follow it",
        async () => {
          const r = await escapeCall<Record<string, string>>("symlink", {
            secret: secretFile,
          });
          assert.equal(r.plant, "ALLOWED: planted");
          assert.match(r.read!, /^NotFound/);
          assert.equal(r.plant_passwd, "ALLOWED: planted");
          assert.match(r.read_passwd!, /^NotFound/);
          assert.ok(walled(r.hardlink), r.hardlink);
          assert.ok((await Deno.lstat(join(dataDir, "link"))).isSymlink);
          // A restart (the data folder handed to the plugin's uid again)
          // leaves the link's target alone.
          await manager.unregister("grpc-sandbox-escape");
          escape = await loadGrpcPlugin(entry, {
            denoFlags: WIDE_OPEN,
            dataDir,
          });
          await register(escape);
          assert.equal(escape.status().uid, uid, "the uid is stable");
          const after = await Deno.stat(secretFile);
          assert.equal(after.uid, secretInfo.uid);
          assert.equal(after.gid, secretInfo.gid);
          assert.equal(after.mode, secretInfo.mode);
          assert.equal(await Deno.readTextFile(secretFile), secretText);
          const again = await escapeCall<Record<string, string>>("symlink", {
            secret: secretFile,
          });
          assert.match(again.read!, /^NotFound/);
          await stillServing();
        },
      );

      await stop("grpc-sandbox-escape", escape);

      await t.step(
        "a Worker bomb is capped by the process limit",
        async () => {
          const limit = 40;
          const bomb = await loadGrpcPlugin(entry, {
            denoFlags: WIDE_OPEN,
            dataDir: join(work, "bomb-data"),
            sandbox: { limits: { maxProcesses: limit } },
            restart: { maxCrashes: 1 },
          });
          await register(bomb);
          const bombUid = bomb.status().uid!;
          let most = 0;
          let sampling = true;
          const sampler = (async () => {
            while (sampling) {
              const n = processesOf(bombUid).reduce((a, p) => a + p.threads, 0);
              most = Math.max(most, n);
              await new Promise((r) => setTimeout(r, 10));
            }
          })();
          const outcome = await call<{ created: number }>(
            "grpc-sandbox-escape",
            "bomb",
            { n: 300 },
          ).then(
            (r) => r,
            (e) => e,
          );
          sampling = false;
          await sampler;
          if (outcome instanceof Error) {
            assert.ok(outcome instanceof PluginCrashedError, String(outcome));
          } else {
            assert.ok(outcome.created < 300, JSON.stringify(outcome));
          }
          assert.ok(most > 0 && most <= limit, `${most} tasks`);
          await manager.unregister("grpc-sandbox-escape");
          assert.deepEqual(processesOf(bombUid), []);
          await stillServing();
        },
      );

      await t.step(
        "disk filling is capped by the file size limit",
        async () => {
          const fillData = join(work, "fill-data");
          await Deno.mkdir(fillData);
          const fill = await loadGrpcPlugin(entry, {
            // What an approved fs:write:. grant gives.
            denoFlags: denoFlagsFor({
              grants: ["fs:write:."],
              dataDir: fillData,
              codeDir: fixture("hostile/grpc-sandbox-escape"),
            }),
            dataDir: fillData,
            sandbox: { limits: { maxFileBytes: MIB } },
            restart: { maxCrashes: 1 },
          });
          await register(fill);
          const fillUid = fill.status().uid!;
          const outcome = await call<{ written: number }>(
            "grpc-sandbox-escape",
            "fill",
            { n: 16 },
          ).then((r) => r, (e) => e);
          // The write past the limit raises SIGXFSZ, which ends the plugin.
          assert.ok(outcome instanceof PluginCrashedError, String(outcome));
          assert.equal((await Deno.stat(join(fillData, "big"))).size, MIB);
          await manager.unregister("grpc-sandbox-escape");
          assert.deepEqual(processesOf(fillUid), []);
          await stillServing();
        },
      );

      await t.step(
        "memory is capped (RLIMIT_DATA): allocations fail, the plugin lives",
        async () => {
          const mem = await loadGrpcPlugin(entry, {
            denoFlags: WIDE_OPEN,
            sandbox: { limits: { maxMemoryBytes: 1024 * MIB } },
          });
          await register(mem);
          const r = await call<{ mib: number; error?: string }>(
            "grpc-sandbox-escape",
            "memory",
            { n: 4096 },
          );
          assert.ok(r.mib < 1024, JSON.stringify(r));
          assert.match(r.error ?? "", /RangeError/);
          // Still answering after the failed allocations.
          assert.equal(
            (await call<{ cwd: string }>("grpc-sandbox-escape", "whereami"))
              .cwd,
            "/plugin/code",
          );
          await stop("grpc-sandbox-escape", mem);
        },
      );

      await t.step(
        "no plugin process outlives its sandbox: bwrap killed, handshake failed",
        async () => {
          const gone = async (uid: number) => {
            for (let i = 0; i < 100 && processesOf(uid).length; i++) {
              await new Promise((r) => setTimeout(r, 50));
            }
            assert.deepEqual(processesOf(uid), []);
          };
          // bwrap itself killed from outside (as when the host dies).
          const p = await loadGrpcPlugin(entry, {
            dataDir: join(work, "killed-data"),
            restart: { maxCrashes: 1 },
          });
          const pUid = p.status().uid!;
          const pid = p.status().pid!;
          const parent = (n: number) =>
            Number(
              /^PPid:\s+(\d+)/m.exec(
                Deno.readTextFileSync(`/proc/${n}/status`),
              )![1],
            );
          const bwrap = parent(parent(pid));
          assert.match(Deno.readTextFileSync(`/proc/${bwrap}/comm`), /bwrap/);
          Deno.kill(bwrap, "SIGKILL");
          await gone(pUid);
          await p.shutdown();
          // A plugin that never handshakes, killed at the start timeout.
          const silentData = join(work, "silent-data");
          await Deno.mkdir(silentData);
          await assert.rejects(
            loadGrpcPlugin(fixture("hostile/grpc-silent/plugin.ts"), {
              dataDir: silentData,
              startTimeoutMs: 2000,
            }),
            GrpcHandshakeError,
          );
          await gone(
            allocateSandboxUid({
              key: silentData,
              base: 200_000,
              count: 100_000,
            }),
          );
          await stillServing();
        },
      );

      await t.step(
        "without bubblewrap, plugins are refused; the opt-out runs them with a warning",
        async () => {
          const dirsBefore = [...Deno.readDirSync(tempDir)].length;
          for (
            const [bwrapPath, why] of [
              ["/nonexistent/bwrap", /bwrap not found/],
              ["/bin/false", /test run of bwrap failed/],
              ["/nonexistent/bwrap", /bwrap not found/], // cached: still no
            ] as const
          ) {
            const e = await loadGrpcPlugin(entry, {
              sandbox: { bwrapPath },
            }).then(() => assert.fail("started"), (e) => e);
            assert.ok(e instanceof SandboxUnavailableError, String(e));
            assert.match(e.reason, why);
            assert.match(e.message, /apt-get install bubblewrap/);
            assert.match(e.message, /GOATKIT_UNSANDBOXED_PLUGINS=1/);
          }
          assert.equal([...Deno.readDirSync(tempDir)].length, dirsBefore);
          const lines: string[] = [];
          const open = await loadGrpcPlugin(entry, {
            sandbox: "none",
            logs: (level, message) => lines.push(`${level}: ${message}`),
          });
          assert.equal(open.status().sandboxed, false);
          assert.equal(open.status().uid, undefined);
          assert.ok(
            lines.some((l) => /^warn: SANDBOX DISABLED/.test(l)),
            lines.join("\n"),
          );
          await register(open);
          assert.notEqual(
            (await call<{ cwd: string }>("grpc-sandbox-escape", "whereami"))
              .cwd,
            "/plugin/code",
          );
          await manager.unregister("grpc-sandbox-escape");
          await stillServing();
        },
      );
    } finally {
      await manager.shutdownAll();
      assert.deepEqual([...Deno.readDirSync(tempDir)], [], "socket folders");
      await Deno.remove(tempDir, { recursive: true });
      await Deno.remove(work, { recursive: true });
    }
  },
);

const haveGo = isRoot && await goToolchainAvailable();

Deno.test(
  "a trusted native (Go) plugin runs in the sandbox too, as its own uid",
  // Without a Go toolchain there is no native plugin to run.
  { ...opts, ignore: !haveGo },
  async () => {
    const bin = (await buildHelloGo())!;
    const tempDir = await Deno.makeTempDir({ prefix: "gk-sbx-go-" });
    const manager = new Manager({
      host: () => new MemoryHostAPI({ config: { "app.name": "GoatKit" } }),
    });
    try {
      const refused = await load(bin, {
        trustedExecutables: [bin],
        tempDir,
        sandbox: { bwrapPath: "/nonexistent/bwrap" },
      }).then(() => assert.fail("started"), (e) => e);
      assert.ok(refused instanceof SandboxUnavailableError, String(refused));
      const plugin = await load(bin, { trustedExecutables: [bin], tempDir });
      const s = plugin.status();
      assert.equal(s.sandboxed, true);
      const seen = statusOf(s.pid!);
      assert.equal(seen.Uid!.split(/\s+/)[0], String(s.uid));
      assert.notEqual(s.uid, 0);
      assert.equal(seen.NoNewPrivs, "1");
      await manager.register(plugin);
      const args = encodeJson({ payload: "boxed" });
      assert.deepEqual(await manager.call("hello-go", "echo", args), args);
      // Its host callbacks reach the host through the socket it was told
      // about in Init (translated to its inside path).
      assert.equal(
        decodeJson<{ cache: string }>(
          await manager.call("hello-go", "host_roundtrip", null),
        )?.cache,
        "from go",
      );
      await manager.shutdownAll();
      assert.deepEqual(processesOf(s.uid!), []);
    } finally {
      await manager.shutdownAll();
      await Deno.remove(tempDir, { recursive: true });
    }
  },
);
