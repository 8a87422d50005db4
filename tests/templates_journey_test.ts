// The plugin author's journey, once per `gk init` template: create the
// plugin in a temporary folder outside the repository, run its build.sh
// there (real compilers: clang, rustc, asc, Go 1.24, wabt, deno check, Go
// with go-plugin), pack it, install it into one running host over the admin
// API, approve its grants, and call its route over HTTP. Nothing is skipped:
// .ci/setup installs the toolchains (the wasm-go template's build.sh fetches
// Debian's Go 1.24 once into ~/.cache/goatkit when no Go 1.24 is found).

import { createHash } from "node:crypto";
import { join, relative } from "node:path";
import { initPlugin, TEMPLATE_RUNTIMES } from "../host/cli/init.ts";
import { packFolder } from "../host/loading/packages.ts";
import { startHost } from "./helpers/host_process.ts";
import { assert, assertEquals } from "./server_helpers.ts";

const ROOT = new URL("..", import.meta.url).pathname.replace(/\/$/, "");
/** A build that takes longer than this is killed and fails the test. */
const BUILD_TIMEOUT_MS = 240_000;

interface Built {
  runtime: string;
  name: string;
  dir: string;
  ms: number;
}

/** Runs `./build.sh` in the plugin's folder as its author would. */
async function build(runtime: string, dir: string): Promise<number> {
  const started = performance.now();
  const child = new Deno.Command("sh", {
    args: ["./build.sh"],
    cwd: dir,
    stdin: "null",
    stdout: "piped",
    stderr: "piped",
  }).spawn();
  const timer = setTimeout(() => {
    try {
      child.kill("SIGKILL");
    } catch { /* gone */ }
  }, BUILD_TIMEOUT_MS);
  const out = await child.output().finally(() => clearTimeout(timer));
  if (!out.success) {
    const text = new TextDecoder().decode(out.stdout) +
      new TextDecoder().decode(out.stderr);
    throw new Error(
      `build.sh of the ${runtime} template failed (exit ${out.code}):\n${text}`,
    );
  }
  return performance.now() - started;
}

function sha256(bytes: Uint8Array): string {
  return createHash("sha256").update(bytes).digest("hex");
}

/** Every file of a folder (relative paths), skipping node_modules. */
async function listFiles(dir: string, rel = ""): Promise<string[]> {
  const out: string[] = [];
  for await (const e of Deno.readDir(join(dir, rel))) {
    if (e.name === "node_modules") continue;
    const path = rel ? `${rel}/${e.name}` : e.name;
    if (e.isDirectory) out.push(...await listFiles(dir, path));
    else if (e.isFile) out.push(path);
  }
  return out;
}

Deno.test({
  name:
    "gk init templates: every runtime builds outside the repo, packs, installs into a running host and answers its route",
  async fn(t) {
    const parent = await Deno.makeTempDir({ prefix: "gk_templates_" });
    assert(
      relative(ROOT, parent).startsWith(".."),
      `temporary folder ${parent} is outside the repository`,
    );
    let host: Awaited<ReturnType<typeof startHost>> | undefined;
    try {
      const made: { runtime: string; name: string; dir: string }[] = [];
      for (const runtime of TEMPLATE_RUNTIMES) {
        const name = `tpl-${runtime}`;
        const dir = await initPlugin({
          name,
          runtime,
          parent,
          out: () => {},
        });
        assertEquals(dir, join(parent, name));
        made.push({ runtime, name, dir });
      }

      await t.step(
        "the rendered files name no path inside the repo",
        async () => {
          for (const { runtime, dir } of made) {
            for (const file of await listFiles(dir)) {
              const text = await Deno.readTextFile(join(dir, file));
              if (!text.includes(ROOT)) continue;
              // Only the TypeScript template's SDK mapping may point at the
              // GoatKit copy the CLI runs from (here: this checkout).
              assertEquals(`${runtime}:${file}`, "grpc-ts:deno.json");
              const imports = JSON.parse(text).imports;
              assertEquals(
                imports["@goatkit/deno/sdk"],
                new URL("runtimes/grpc/sdk.ts", `file://${ROOT}/`).href,
              );
            }
          }
        },
      );

      // All builds at once: they are mostly single-threaded toolchains.
      const built: Built[] = await Promise.all(
        made.map(async (m) => ({ ...m, ms: await build(m.runtime, m.dir) })),
      );
      for (const b of built) {
        console.log(`built ${b.runtime} in ${(b.ms / 1000).toFixed(1)} s`);
      }

      // The operator trusts the native go-plugin executable by its SHA-256.
      const goPlugin = built.find((b) => b.runtime === "grpc-go");
      const trusted = goPlugin
        ? sha256(await Deno.readFile(join(goPlugin.dir, "plugin")))
        : "";
      host = await startHost({
        plugins: [],
        env: { GOATKIT_TRUSTED_EXECUTABLES: trusted },
      });
      const { url, token } = host;
      const admin = (path: string, init: RequestInit = {}) =>
        fetch(`${url}${path}`, {
          ...init,
          headers: {
            authorization: `Bearer ${token}`,
            connection: "close",
            ...(init.headers ?? {}),
          },
        });

      for (const b of built) {
        await t.step(`${b.runtime}: pack, install, approve, call`, async () => {
          const zip = await packFolder(b.dir);
          const form = new FormData();
          form.append(
            "plugin",
            new Blob([zip as Uint8Array<ArrayBuffer>]),
            `${b.name}-0.1.0.zip`,
          );
          const installed = await admin("/api/v1/plugins/upload", {
            method: "POST",
            body: form,
          });
          const installText = await installed.text();
          assertEquals(
            installed.status,
            200,
            `install of ${b.name}: ${installText}`,
          );
          assertEquals(JSON.parse(installText).name, b.name);

          const granted = await admin(`/api/v1/plugins/${b.name}/grants`, {
            method: "POST",
            headers: { "content-type": "application/json" },
            body: JSON.stringify({ permissions: ["log"] }),
          });
          const grants = await granted.json();
          assertEquals(granted.status, 200, JSON.stringify(grants));
          assertEquals(grants.requested, ["log"]);
          assert(grants.granted.includes("log"), JSON.stringify(grants));
          assertEquals(grants.pending, []);

          const res = await admin(`/api/plugins/${b.name}/hello`);
          const text = await res.text();
          assertEquals(
            res.status,
            200,
            `GET /api/plugins/${b.name}/hello: ${text}\n${host!.stderr()}`,
          );
          assert(
            (res.headers.get("content-type") ?? "").includes("json"),
            `content-type of ${b.name}'s answer`,
          );
          const body = JSON.parse(text);
          assertEquals(body.plugin, b.name);
          assertEquals(body.message, `Hello from ${b.name}!`);

          // The one permission it holds, `log`, works: its line is filed
          // under its name.
          const logs = await (await admin(
            `/api/v1/plugins/logs?plugin=${b.name}&limit=200`,
          )).json();
          assert(
            (logs.logs as { message: string }[]).some((l) =>
              l.message.includes("hello called")
            ),
            `"hello called" in ${b.name}'s logs: ${JSON.stringify(logs.logs)}`,
          );
        });
      }
    } finally {
      await host?.cleanup();
      await Deno.remove(parent, { recursive: true }).catch(() => {});
    }
  },
});
