// The package seam of the server (issue 10 items 14 and 15): the operator
// overrides reach the installer from the API (fields or query values) and
// from the admin upload form's checkboxes, never by default; refusals
// answer 409 with {error: {code, message, details}}; uninstall keeps the
// signer pin unless asked.

import {
  DowngradeRefusedError,
  SignerMismatchError,
} from "../host/loading/packages.ts";
import type {
  PackagesProvider,
  ServerInstallOverrides,
} from "../host/server/mod.ts";
import {
  assert,
  assertEquals,
  assertMatch,
  json,
  loginSession,
  nativePlugin,
  setup,
} from "./server_helpers.ts";

/** A package seam that refuses like the real installer unless overridden. */
function strictPackages() {
  const installs: ServerInstallOverrides[] = [];
  const uninstalls: (boolean | undefined)[] = [];
  const packages: PackagesProvider = {
    install: (_bytes, opts = {}) => {
      installs.push({
        ...(opts.allowSignerChange ? { allowSignerChange: true } : {}),
        ...(opts.allowDowngrade ? { allowDowngrade: true } : {}),
      });
      if (!opts.allowSignerChange) {
        return Promise.reject(
          new SignerMismatchError("dash", "aaaaaaaaaaaaaaaa", null),
        );
      }
      if (!opts.allowDowngrade) {
        return Promise.reject(
          new DowngradeRefusedError("dash", "2.0.0", "1.0.0"),
        );
      }
      return Promise.resolve({
        name: "dash",
        version: "1.0.0",
        previousVersion: "2.0.0",
        previousSigner: "KEY",
      });
    },
    uninstall: (_name, opts) => {
      uninstalls.push(opts?.forgetSigner);
      return Promise.resolve();
    },
  };
  return { packages, installs, uninstalls };
}

const zipFile = () => new File([new Uint8Array(10)], "dash.zip");

Deno.test("API upload: overrides only when asked; refusals answer 409 with the reason", async () => {
  const seam = strictPackages();
  const t = await setup({ packages: seam.packages });
  try {
    const upload = async (fields: Record<string, string>, query = "") => {
      const form = new FormData();
      form.set("plugin", zipFile());
      for (const [k, v] of Object.entries(fields)) form.set(k, v);
      return await t.req("POST", `/api/v1/plugins/upload${query}`, {
        token: t.adminToken,
        body: form,
      });
    };
    const refused = await upload({});
    assertEquals(refused.status, 409);
    const body = await json<{ error: { code: string; message: string } }>(
      refused,
    );
    assertEquals(body.error.code, "signer_pinned");
    assertMatch(
      body.error.message,
      /^Cannot install package: plugin "dash" is pinned to signer aaaaaaaaaaaaaaaa and this package is not signed.*; install a package signed by the pinned key/,
    );
    // "false"-ish values are no override.
    const no = await upload({ allow_signer_change: "false" });
    assertEquals(no.status, 409);
    await no.body?.cancel();
    const older = await upload({ allow_signer_change: "true" });
    assertEquals(older.status, 409);
    const olderBody = await json<{ error: { code: string; message: string } }>(
      older,
    );
    assertEquals(olderBody.error.code, "downgrade_refused");
    assertMatch(olderBody.error.message, /older than/);
    const ok = await upload({
      allow_signer_change: "1",
      allow_downgrade: "on",
    });
    assertEquals(ok.status, 200);
    assertEquals((await json(ok)).previousSigner, "KEY");
    // A raw body takes them from the query.
    const raw = await t.req(
      "POST",
      "/api/v1/plugins/upload?filename=dash.zip&allow_signer_change=true&allow_downgrade=true",
      { token: t.adminToken, body: new Uint8Array(10) },
    );
    assertEquals(raw.status, 200);
    await raw.body?.cancel();
    assertEquals(seam.installs, [
      {},
      {},
      { allowSignerChange: true },
      { allowSignerChange: true, allowDowngrade: true },
      { allowSignerChange: true, allowDowngrade: true },
    ]);

    // Uninstall keeps the pin unless forget_signer is set.
    for (const q of ["", "?forget_signer=true"]) {
      const del = await t.req("DELETE", `/api/v1/plugins/dash${q}`, {
        token: t.adminToken,
      });
      assertEquals(del.status, 200);
      await del.body?.cancel();
    }
    assertEquals(seam.uninstalls, [undefined, true]);
  } finally {
    await t.close();
  }
});

Deno.test("admin upload form: override checkboxes, the refusal shown with 409, the signer change announced", async () => {
  const seam = strictPackages();
  const t = await setup({ packages: seam.packages });
  try {
    await t.manager.register(
      nativePlugin({ name: "dash", version: "1.0.0" }, {}),
    );
    const s = await loginSession(t, t.adminToken);
    const list = await (await t.req("GET", "/admin/plugins", {
      cookie: s.cookie,
    })).text();
    assertMatch(
      list,
      /<input type="checkbox" name="allow_signer_change" value="1">/,
    );
    assertMatch(
      list,
      /<input type="checkbox" name="allow_downgrade" value="1">/,
    );
    const post = async (fields: Record<string, string>) => {
      const form = new FormData();
      form.set("_csrf", s.csrf);
      form.set("plugin", zipFile());
      for (const [k, v] of Object.entries(fields)) form.set(k, v);
      return await t.req("POST", "/admin/plugins/upload", {
        cookie: s.cookie,
        body: form,
      });
    };
    const refused = await post({});
    assertEquals(refused.status, 409);
    const page = await refused.text();
    assertMatch(page, /Upload failed/);
    assertMatch(page, /pinned to signer aaaaaaaaaaaaaaaa/);
    const ok = await post({ allow_signer_change: "1", allow_downgrade: "1" });
    assertEquals(ok.status, 303);
    const location = ok.headers.get("location")!;
    assertMatch(
      location,
      /^\/admin\/plugins\/dash\?done=installed&signer=changed&from=2\.0\.0$/,
    );
    const details = await (await t.req("GET", location, { cookie: s.cookie }))
      .text();
    assertMatch(details, /Its signer changed \(operator override, audited\)/);
    assertEquals(seam.installs, [{}, {
      allowSignerChange: true,
      allowDowngrade: true,
    }]);
    // Without the CSRF token nothing reaches the installer.
    const form = new FormData();
    form.set("plugin", zipFile());
    form.set("allow_signer_change", "1");
    const forged = await t.req("POST", "/admin/plugins/upload", {
      cookie: s.cookie,
      body: form,
    });
    assertEquals(forged.status, 403);
    await forged.body?.cancel();
    assert(seam.installs.length === 2);
  } finally {
    await t.close();
  }
});
