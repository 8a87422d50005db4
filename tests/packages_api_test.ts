// The package API of a real host (boot, real HTTP on loopback, real
// PostgreSQL in a private schema, real WASM modules): every rejection is a
// 4xx with {error: {code, message, details}} and no server path, nothing
// of a refused install stays on disk or in the list after a restart,
// uninstall refuses source plugins (409) and unknown names (404), bare
// .wasm uploads install by their registered name (API and admin page), and
// the signature status is in the plugin list and details.

import assert from "node:assert/strict";
import { join } from "node:path";
import { zipSync } from "fflate";
import { boot, type RunningHost } from "../host/boot.ts";
import { generateSigningKeys, signPackage } from "../host/loading/packages.ts";
import { buildWat } from "../fixtures/hostile/wat_build.ts";
import { hostConfig, privateSchema } from "./server_helpers.ts";

const te = new TextEncoder();
const TRAP_WAT = new URL("../fixtures/hostile/trap/plugin.wat", import.meta.url)
  .pathname;
const FIXTURES = new URL("../fixtures/plugins/", import.meta.url).pathname;

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
): Uint8Array<ArrayBuffer> {
  const entries: Record<string, Uint8Array> = {};
  for (const [k, v] of Object.entries(files)) {
    entries[k] = typeof v === "string" ? te.encode(v) : v;
  }
  return zipSync(entries) as Uint8Array<ArrayBuffer>;
}

const manifestJson = (m: Record<string, unknown>) => JSON.stringify(m);

/** A host on temp folders; `restart()` boots it again on the same ones. */
async function realHost(env: Record<string, string> = {}) {
  const root = await Deno.makeTempDir({ prefix: "gk-pkg-api-" });
  const data = join(root, "data");
  const plugins = join(root, "plugins");
  await Deno.mkdir(plugins, { recursive: true });
  const db = await privateSchema();
  const config = () => hostConfig(data, plugins, db.url, env);
  let host: RunningHost = await boot({ config: config(), print: () => {} });
  let token = host.adminToken!;
  const listing = (): string[] => {
    const out: string[] = [];
    const walk = (d: string, rel: string) => {
      for (const e of Deno.readDirSync(d)) {
        out.push(`${rel}${e.name}`);
        if (e.isDirectory) walk(join(d, e.name), `${rel}${e.name}/`);
      }
    };
    walk(plugins, "");
    return out.sort();
  };
  return {
    root,
    plugins,
    listing,
    get url() {
      return host.url;
    },
    fetch(path: string, init: RequestInit = {}): Promise<Response> {
      return fetch(`${host.url}${path}`, {
        ...init,
        headers: {
          authorization: `Bearer ${token}`,
          ...(init.headers ?? {}),
        },
        redirect: "manual",
      });
    },
    async restart() {
      await host.close();
      host = await boot({
        config: config(),
        print: () => {},
        newAdminToken: true,
      });
      token = host.adminToken!;
    },
    async close() {
      await host.close();
      await Deno.remove(root, { recursive: true });
      await db.drop();
    },
  };
}

interface ErrorBody {
  error: { code: string; message: string; details: Record<string, unknown> };
}

Deno.test(
  "API: every package rejection is a 4xx JSON error naming the fix, without server paths; nothing stays on disk or in the list after a restart",
  {
    sanitizeOps: false,
    sanitizeResources: false,
  },
  async () => {
    const h = await realHost();
    try {
      const base = {
        name: "pkg-a",
        version: "1.0.0",
        permissions: ["log"],
        i18n: {
          namespace: "shared_ns",
          languages: ["en"],
          translations: { en: { hi: "Hi" } },
        },
      };
      const good = await moduleRegistering(base);
      const up = await h.fetch("/api/v1/plugins/upload?filename=a.zip", {
        method: "POST",
        body: zip({ "manifest.json": manifestJson(base), "plugin.wasm": good }),
      });
      assert.equal(up.status, 200, await up.clone().text());
      await up.body?.cancel();
      const before = h.listing();

      const conflicting = { ...base, name: "pkg-b" };
      const mismatched = { ...base, name: "pkg-c", permissions: ["log"] };
      const native = te.encode("#!/bin/sh\nexit 1\n");
      const bomb: Record<string, string> = { "plugin.wasm": "x" };
      for (let i = 0; i < 1001; i++) bomb[`assets/f${i}`] = "";
      const cases: [string, Uint8Array, number, string, RegExp][] = [
        [
          "not a zip",
          te.encode("plain text, not a package"),
          400,
          "package_invalid",
          /not a ZIP archive; upload a .zip made with gk pack/,
        ],
        [
          "no manifest",
          zip({ "plugin.wasm": good }),
          400,
          "package_invalid",
          /no manifest.json.*; put manifest.json next to the module/,
        ],
        [
          "an invalid manifest",
          zip({
            "manifest.json": manifestJson({ name: "Bad Name", version: "x" }),
            "plugin.wasm": good,
          }),
          422,
          "manifest_invalid",
          /manifest.json: .*; correct manifest.json as listed/,
        ],
        [
          "too many entries",
          zip({ "manifest.json": manifestJson(base), ...bomb }),
          413,
          "package_too_large",
          /more than the limit of 1000/,
        ],
        [
          "an untrusted native executable",
          zipSync({
            "manifest.json": te.encode(
              manifestJson({ ...base, name: "pkg-n" }),
            ),
            "plugin": [native, { os: 3, attrs: (0o100755 << 16) >>> 0 }],
          }),
          403,
          "executable_untrusted",
          /add [0-9a-f]{64} to GOATKIT_TRUSTED_EXECUTABLES/,
        ],
        [
          "a module that fails at load time after extraction",
          zip({
            "manifest.json": manifestJson({ ...base, name: "pkg-d" }),
            "plugin.wasm": new Uint8Array([0, 0x61, 0x73, 0x6d, 1, 0, 0, 0, 5]),
          }),
          400,
          "plugin_start_failed",
          /plugin "pkg-d" does not start/,
        ],
        [
          "a module registering another manifest",
          zip({
            "manifest.json": manifestJson({ ...mismatched, version: "2.0.0" }),
            "plugin.wasm": await moduleRegistering(mismatched),
          }),
          422,
          "manifest_mismatch",
          /differs from its manifest.json in version/,
        ],
        [
          "a module refused when it registers (namespace of another plugin)",
          zip({
            "manifest.json": manifestJson(conflicting),
            "plugin.wasm": await moduleRegistering(conflicting),
          }),
          409,
          "plugin_conflict",
          /shared_ns/,
        ],
      ];
      for (const [title, body, status, code, pattern] of cases) {
        const res = await h.fetch("/api/v1/plugins/upload", {
          method: "POST",
          body: body as Uint8Array<ArrayBuffer>,
        });
        const text = await res.text();
        assert.equal(res.status, status, `${title}: ${text}`);
        assert.match(
          res.headers.get("content-type") ?? "",
          /application\/json/,
        );
        const json = JSON.parse(text) as ErrorBody;
        assert.equal(json.error.code, code, title);
        assert.match(json.error.message, pattern, title);
        assert.equal(typeof json.error.details, "object", title);
        assert.ok(
          !text.includes(h.root),
          `${title} shows a server path: ${text}`,
        );
        assert.ok(!/\/tmp\//.test(text), `${title} shows a temp path: ${text}`);
        assert.deepEqual(h.listing(), before, title);
      }

      // After a restart only the good install is listed.
      await h.restart();
      const list = await (await h.fetch("/api/v1/plugins")).json() as {
        plugins: { name: string }[];
      };
      assert.deepEqual(list.plugins.map((p) => p.name), ["pkg-a"]);
    } finally {
      await h.close();
    }
  },
);

Deno.test(
  "API: a source plugin is not uninstalled (409, files kept), an unknown name is 404; .wasm uploads install by registered name; signature status is listed",
  {
    sanitizeOps: false,
    sanitizeResources: false,
  },
  async () => {
    const h = await realHost();
    try {
      // A source plugin, as a git checkout has it, then a restart to load it.
      const src = join(FIXTURES, "wat-edge");
      const folder = join(h.plugins, "wat-edge");
      await Deno.mkdir(folder);
      for (const f of ["manifest.json", "plugin.wasm", "plugin.wat"]) {
        await Deno.copyFile(join(src, f), join(folder, f));
      }
      await h.restart();
      const del = await h.fetch("/api/v1/plugins/wat-edge", {
        method: "DELETE",
      });
      const delBody = await del.json() as ErrorBody;
      assert.equal(del.status, 409);
      assert.equal(delBody.error.code, "plugin_not_from_package");
      assert.match(delBody.error.message, /was not installed from a package/);
      assert.deepEqual(
        [...Deno.readDirSync(folder)].map((e) => e.name).sort(),
        ["manifest.json", "plugin.wasm", "plugin.wat"],
      );
      const unknown = await h.fetch("/api/v1/plugins/no-such-plugin", {
        method: "DELETE",
      });
      assert.equal(unknown.status, 404);
      assert.equal(
        ((await unknown.json()) as ErrorBody).error.code,
        "plugin_not_found",
      );

      // A bare .wasm, signed by a key this host does not trust.
      const wasm = await Deno.readFile(
        join(FIXTURES, "hello-c", "plugin.wasm"),
      );
      const keys = await generateSigningKeys();
      const up = await h.fetch("/api/v1/plugins/upload?filename=hello.wasm", {
        method: "POST",
        headers: {
          "x-goatkit-signature": await signPackage(wasm, keys.privateKey),
        },
        body: wasm,
      });
      const result = await up.json();
      assert.equal(up.status, 200, JSON.stringify(result));
      assert.equal(result.name, "hello-c");
      assert.deepEqual(result.signature, { status: "unverified" });

      const list = await (await h.fetch("/api/v1/plugins")).json() as {
        plugins: { name: string; signature: unknown }[];
      };
      assert.deepEqual(
        list.plugins.map((p) => [p.name, p.signature]),
        [["hello-c", { status: "unverified" }], ["wat-edge", null]],
      );
      const detail = await (await h.fetch("/api/v1/plugins/hello-c")).json();
      assert.deepEqual(detail.signature, { status: "unverified" });

      // The admin page's upload form takes a .wasm too.
      const login = await fetch(`${h.url}/login`);
      const loginCookie = login.headers.get("set-cookie")!.split(";")[0]!;
      const loginCsrf = /name="_csrf" value="([^"]+)"/.exec(
        await login.text(),
      )![1]!;
      const token = await h.fetch("/api/v1/tokens", {
        method: "POST",
        headers: { "content-type": "application/json" },
        body: JSON.stringify({ name: "page", admin: true }),
      });
      const pageToken = (await token.json()).token as string;
      const session = await fetch(`${h.url}/login`, {
        method: "POST",
        headers: { cookie: loginCookie },
        body: new URLSearchParams({
          _csrf: loginCsrf,
          token: pageToken,
          next: "/admin/plugins",
        }),
        redirect: "manual",
      });
      await session.body?.cancel();
      const cookie = session.headers.getSetCookie().find((c) =>
        c.startsWith("gk_session=")
      )!.split(";")[0]!;
      const page = await (await fetch(`${h.url}/admin/plugins`, {
        headers: { cookie },
      })).text();
      assert.match(page, /accept=".zip,.wasm"/);
      const csrf = /<meta name="csrf-token" content="([^"]+)">/.exec(page)![1]!;
      const form = new FormData();
      form.set("_csrf", csrf);
      form.set(
        "plugin",
        new File(
          [
            await moduleRegistering({
              name: "page-probe",
              version: "1.0.0",
            }) as Uint8Array<ArrayBuffer>,
          ],
          "page-probe.wasm",
        ),
      );
      const posted = await fetch(`${h.url}/admin/plugins/upload`, {
        method: "POST",
        headers: { cookie },
        body: form,
        redirect: "manual",
      });
      await posted.body?.cancel();
      assert.equal(posted.status, 303);
      assert.match(
        posted.headers.get("location")!,
        /^\/admin\/plugins\/page-probe\?done=installed/,
      );
      // A refused .wasm on the page: its status and the fix.
      const bad = new FormData();
      bad.set("_csrf", csrf);
      bad.set(
        "plugin",
        new File([new Uint8Array([0, 0x61, 0x73, 0x6d, 1, 0, 0, 0])], "x.wasm"),
      );
      const refused = await fetch(`${h.url}/admin/plugins/upload`, {
        method: "POST",
        headers: { cookie },
        body: bad,
      });
      assert.equal(refused.status, 400);
      assert.match(await refused.text(), /gk_register/);
    } finally {
      await h.close();
    }
  },
);
