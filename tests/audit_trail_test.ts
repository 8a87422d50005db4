// The audit trail of operator actions on a real host process: login (and
// a failed one), token create and revoke, install, upgrade, disable,
// enable, grant approve and revoke, uninstall, logout — each with who,
// what, when, from where (the client address a trusted proxy names) and
// before/after; and the admin audit page shows them.

import assert from "node:assert/strict";
import { zipSync } from "fflate";
import { type HostProcess, startHost } from "./helpers/host_process.ts";
import { buildWat } from "../fixtures/hostile/wat_build.ts";

const CLIENT = "203.0.113.9";

interface Entry {
  time: string;
  plugin: string;
  action?: string;
  outcome: string;
  actor?: string;
  ip?: string;
  before?: unknown;
  after?: unknown;
  attempted: string;
  permission: string;
}

const TRAP_WAT = new URL("../fixtures/hostile/trap/plugin.wat", import.meta.url)
  .pathname;

/** A package of plugin "audit-probe" at `version` (WAT built for real). */
async function probePackage(
  version: string,
): Promise<Uint8Array<ArrayBuffer>> {
  const manifest = {
    name: "audit-probe",
    version,
    description: "audit probe",
    permissions: ["db:read"],
  };
  const file = await Deno.makeTempFile({ suffix: ".json" });
  try {
    await Deno.writeTextFile(file, JSON.stringify(manifest));
    const wasm = await buildWat(TRAP_WAT, file);
    return zipSync({
      "manifest.json": new TextEncoder().encode(JSON.stringify(manifest)),
      "plugin.wasm": wasm,
    }) as Uint8Array<ArrayBuffer>;
  } finally {
    await Deno.remove(file);
  }
}

function cookiesOf(res: Response): Record<string, string> {
  const out: Record<string, string> = {};
  for (const c of res.headers.getSetCookie()) {
    const [pair] = c.split(";");
    const eq = pair!.indexOf("=");
    out[pair!.slice(0, eq)] = pair!.slice(eq + 1);
  }
  return out;
}

Deno.test({
  name:
    "every operator action is audited with who, what, when, from where and before/after",
  sanitizeResources: false,
  sanitizeOps: false,
  async fn() {
    const h: HostProcess = await startHost({
      plugins: [],
      env: { GOATKIT_TRUST_PROXY: "127.0.0.1" },
    });
    try {
      const t0 = Date.now();
      const call = async (
        method: string,
        path: string,
        body?: BodyInit,
        headers: Record<string, string> = {},
      ) => {
        const res = await fetch(`${h.url}${path}`, {
          method,
          ...(body !== undefined ? { body } : {}),
          headers: {
            authorization: `Bearer ${h.token}`,
            "x-forwarded-for": `${CLIENT}, 127.0.0.1`,
            connection: "close",
            ...headers,
          },
          redirect: "manual",
        });
        const text = await res.text();
        assert.ok(res.status < 400, `${method} ${path}: ${res.status} ${text}`);
        return text ? JSON.parse(text) : null;
      };

      // Browser login (with a failed attempt first) and logout.
      const form = async (
        path: string,
        fields: Record<string, string>,
        cookie: string,
      ) =>
        await fetch(`${h.url}${path}`, {
          method: "POST",
          body: new URLSearchParams(fields),
          headers: {
            cookie,
            "x-forwarded-for": CLIENT,
            "content-type": "application/x-www-form-urlencoded",
          },
          redirect: "manual",
        });
      const page = await fetch(`${h.url}/login`);
      const loginCsrf = cookiesOf(page).gk_login_csrf!;
      await page.body?.cancel();
      const failed = await form("/login", {
        _csrf: loginCsrf,
        token: "gk_wrong",
      }, `gk_login_csrf=${loginCsrf}`);
      await failed.body?.cancel();
      const ok = await form(
        "/login",
        { _csrf: loginCsrf, token: h.token },
        `gk_login_csrf=${loginCsrf}`,
      );
      await ok.body?.cancel();
      assert.equal(ok.status, 303);
      const session = cookiesOf(ok).gk_session!;
      assert.ok(session);

      const created = await call(
        "POST",
        "/api/v1/tokens",
        JSON.stringify({ name: "ci-bot" }),
        {
          "content-type": "application/json",
        },
      );
      await call("DELETE", `/api/v1/tokens/${created.id}`);
      const refused = await fetch(`${h.url}/api/v1/plugins/upload`, {
        method: "POST",
        body: "not a zip",
        headers: { authorization: `Bearer ${h.token}` },
      });
      await refused.body?.cancel();
      assert.equal(refused.status, 400);
      await call("POST", "/api/v1/plugins/upload", await probePackage("1.0.0"));
      await call("POST", "/api/v1/plugins/upload", await probePackage("1.1.0"));
      await call("POST", "/api/v1/plugins/audit-probe/disable");
      await call("POST", "/api/v1/plugins/audit-probe/enable");
      await call(
        "POST",
        "/api/v1/plugins/audit-probe/grants",
        JSON.stringify({ permissions: ["db:read"] }),
        {
          "content-type": "application/json",
        },
      );
      await call(
        "DELETE",
        "/api/v1/plugins/audit-probe/grants",
        JSON.stringify({ permissions: ["db:read"] }),
        {
          "content-type": "application/json",
        },
      );
      await call("DELETE", "/api/v1/plugins/audit-probe");

      // Logout needs the session's CSRF token (from an admin page form).
      const admin = await fetch(`${h.url}/admin/tokens`, {
        headers: { cookie: `gk_session=${session}` },
      });
      const csrf = /name="_csrf" value="([^"]+)"/.exec(await admin.text())?.[1];
      assert.ok(csrf, "CSRF field on the admin page");
      const out = await form(
        "/logout",
        { _csrf: csrf },
        `gk_session=${session}`,
      );
      await out.body?.cancel();
      assert.equal(out.status, 303);

      const { entries } = await call("GET", "/api/v1/audit?limit=200") as {
        entries: Entry[];
      };
      const find = (action: string, outcome?: string) => {
        const e = entries.find((x) =>
          x.action === action &&
          (outcome === undefined || x.outcome === outcome)
        );
        assert.ok(
          e,
          `no ${action} ${outcome ?? ""} entry: ${
            JSON.stringify(entries, null, 1)
          }`,
        );
        assert.ok(Date.parse(e.time) >= t0 - 1000, `${action}: when`);
        return e;
      };
      const admin1 = /^token "admin" \(/;

      const badLogin = find("login", "denied");
      assert.equal(badLogin.actor, "anonymous");
      assert.equal(badLogin.ip, CLIENT);
      const login = find("login", "ok");
      assert.match(login.actor!, admin1);
      assert.equal(login.ip, CLIENT);
      const logout = find("logout");
      assert.match(logout.actor!, /via session$/);
      assert.equal(logout.ip, CLIENT);

      const tc = find("token.create");
      assert.match(tc.actor!, admin1);
      assert.equal(tc.ip, CLIENT, "X-Forwarded-For of the trusted proxy");
      assert.equal(tc.before ?? null, null, "nothing before a create");
      assert.deepEqual(tc.after, {
        id: created.id,
        name: "ci-bot",
        admin: false,
      });
      const tr = find("token.revoke");
      assert.deepEqual(tr.before, {
        id: created.id,
        name: "ci-bot",
        admin: false,
      });

      const inst = find("plugin.install", "installed");
      assert.equal(inst.plugin, "audit-probe");
      assert.deepEqual(inst.after, {
        version: "1.0.0",
        newPermissions: ["db:read"],
      });
      const bad = find("plugin.install", "failed");
      assert.match(bad.attempted, /install refused/);
      assert.match(bad.actor!, admin1);
      const up = find("plugin.upgrade");
      assert.deepEqual(up.before, { version: "1.0.0" });
      assert.equal((up.after as { version: string }).version, "1.1.0");

      const dis = find("plugin.disable");
      assert.deepEqual([dis.before, dis.after], [{ enabled: true }, {
        enabled: false,
      }]);
      assert.match(dis.actor!, admin1);
      const en = find("plugin.enable");
      assert.deepEqual([en.before, en.after], [{ enabled: false }, {
        enabled: true,
      }]);

      const ga = find("grant.approve");
      assert.equal(ga.permission, "db:read");
      assert.deepEqual([ga.before, ga.after], [[], ["db:read"]]);
      const gr = find("grant.revoke");
      assert.deepEqual([gr.before, gr.after], [["db:read"], []]);
      assert.equal(gr.ip, CLIENT);

      const un = find("plugin.uninstall", "uninstalled");
      assert.deepEqual(un.before, { installed: true, version: "1.1.0" });

      // The page shows who and from where.
      const pageRes = await fetch(
        `${h.url}/admin/audit?action=plugin.uninstall`,
        {
          headers: { authorization: `Bearer ${h.token}` },
        },
      );
      const html = await pageRes.text();
      assert.equal(pageRes.status, 200);
      assert.ok(html.includes(CLIENT), "client address on the audit page");
      assert.ok(html.includes("plugin.uninstall"));
      assert.ok(!html.includes("plugin.install<"), "action filter");
    } finally {
      await h.cleanup();
    }
  },
});
