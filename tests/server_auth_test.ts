// Auth: Bearer tokens (hashed at rest), the auth/admin middleware on plugin
// routes and the API, the login page and session cookie, CSRF on every
// cookie-authenticated state change.

import { FileTokenStore, hashToken } from "../host/server/mod.ts";
import {
  assert,
  assertEquals,
  assertMatch,
  json,
  nativePlugin,
  setup,
  type TestServer,
} from "./server_helpers.ts";

const guarded = () =>
  nativePlugin({
    name: "guarded",
    version: "1.0.0",
    routes: [
      { method: "GET", path: "/g/public", handler: "ok" },
      { method: "GET", path: "/g/user", handler: "ok", middleware: ["auth"] },
      {
        method: "GET",
        path: "/g/admin",
        handler: "ok",
        middleware: ["auth", "admin"],
      },
      { method: "POST", path: "/g/user", handler: "ok", middleware: ["auth"] },
    ],
  }, { ok: () => ({ ok: true }) });

async function status(
  t: TestServer,
  method: string,
  path: string,
  token?: string,
) {
  const res = await t.req(method, path, token ? { token } : {});
  await res.body?.cancel();
  return res.status;
}

/** Logs in through the form; returns the session cookie and CSRF token. */
async function login(
  t: TestServer,
  token: string,
): Promise<{ cookie: string; csrf: string }> {
  const page = await t.req("GET", "/login");
  assertEquals(page.status, 200);
  const loginCookie = page.headers.get("set-cookie")!.split(";")[0]!;
  const csrf = /name="_csrf" value="([^"]+)"/.exec(await page.text())![1]!;
  const res = await t.req("POST", "/login", {
    cookie: loginCookie,
    body: new URLSearchParams({ _csrf: csrf, token, next: "/admin/plugins" }),
  });
  assertEquals(res.status, 303);
  assertEquals(res.headers.get("location"), "/admin/plugins");
  const setCookie = res.headers.getSetCookie().find((c) =>
    c.startsWith("gk_session=")
  )!;
  assertMatch(setCookie, /HttpOnly/);
  assertMatch(setCookie, /SameSite=Strict/);
  assertMatch(setCookie, /Path=\//);
  const cookie = setCookie.split(";")[0]!;
  const admin = await t.req("GET", "/admin/plugins", { cookie });
  const html = await admin.text();
  const sessionCsrf = /<meta name="csrf-token" content="([^"]+)">/.exec(html)
    ?.[1];
  assert(sessionCsrf, "csrf meta tag");
  return { cookie, csrf: sessionCsrf };
}

Deno.test("plugin route middleware: public, auth (any token), admin (admin token only)", async () => {
  const t = await setup();
  try {
    await t.manager.register(guarded());
    assertEquals(await status(t, "GET", "/g/public"), 200);
    assertEquals(await status(t, "GET", "/g/user"), 401);
    assertEquals(await status(t, "GET", "/g/user", "gk_wrong"), 401);
    assertEquals(await status(t, "GET", "/g/user", t.userToken), 200);
    assertEquals(await status(t, "GET", "/g/admin", t.userToken), 403);
    assertEquals(await status(t, "GET", "/g/admin", t.adminToken), 200);
    assertEquals(await status(t, "POST", "/g/user", t.userToken), 200); // Bearer: no CSRF needed
  } finally {
    await t.close();
  }
});

Deno.test("API: users may read, only admins may call functions, toggle plugins or read logs", async () => {
  const t = await setup();
  try {
    await t.manager.register(guarded());
    assertEquals(await status(t, "GET", "/api/v1/plugins"), 401);
    assertEquals(await status(t, "GET", "/api/v1/plugins", t.userToken), 200);
    assertEquals(
      await status(t, "GET", "/api/v1/plugins/guarded", t.userToken),
      200,
    );
    for (
      const [m, p] of [
        ["POST", "/api/v1/plugins/guarded/call/ok"],
        ["POST", "/api/v1/plugins/guarded/disable"],
        ["POST", "/api/v1/plugins/guarded/enable"],
        ["GET", "/api/v1/plugins/logs"],
        ["DELETE", "/api/v1/plugins/logs"],
        ["GET", "/api/v1/tokens"],
        ["GET", "/api/v1/jobs"],
      ]
    ) {
      assertEquals(await status(t, m!, p!, t.userToken), 403, `${m} ${p}`);
    }
    const call = await t.req("POST", "/api/v1/plugins/guarded/call/ok", {
      token: t.adminToken,
    });
    assertEquals(await json(call), { ok: true });
    assertEquals(
      await status(t, "POST", "/api/v1/plugins/guarded/disable", t.adminToken),
      200,
    );
    assertEquals(await status(t, "GET", "/g/public"), 503);
    // A disabled plugin's protected routes keep their auth: nothing more
    // is told to a caller the route itself would refuse.
    assertEquals(await status(t, "GET", "/g/user"), 401);
    assertEquals(await status(t, "GET", "/g/admin", t.userToken), 403);
    assertEquals(await status(t, "GET", "/g/user", t.userToken), 503);
    assertEquals(await status(t, "GET", "/g/admin", t.adminToken), 503);
    // Calling a disabled plugin's function: 403 (GoatFlow's mapping); unknown plugin: 404.
    assertEquals(
      await status(t, "POST", "/api/v1/plugins/guarded/call/ok", t.adminToken),
      403,
    );
    assertEquals(
      await status(t, "POST", "/api/v1/plugins/nope/call/ok", t.adminToken),
      404,
    );
  } finally {
    await t.close();
  }
});

Deno.test("login sets an HttpOnly SameSite=Strict session; CSRF is required for cookie state changes", async () => {
  const t = await setup();
  try {
    await t.manager.register(guarded());
    // Pages redirect to the login page.
    const anon = await t.req("GET", "/admin/plugins");
    assertEquals(anon.status, 303);
    assertEquals(
      anon.headers.get("location"),
      "/login?next=%2Fadmin%2Fplugins",
    );

    // A login POST without the login form's CSRF cookie is refused.
    const forged = await t.req("POST", "/login", {
      body: new URLSearchParams({ _csrf: "x", token: t.adminToken }),
    });
    assertEquals(forged.status, 403);
    await forged.body?.cancel();

    // Oversized form bodies are refused.
    const huge = await t.req("POST", "/login", {
      body: new URLSearchParams({ token: "x".repeat(300 * 1024) }),
    });
    assertEquals(huge.status, 413);
    await huge.body?.cancel();

    // A wrong token goes back to the form.
    const page = await t.req("GET", "/login");
    const loginCookie = page.headers.get("set-cookie")!.split(";")[0]!;
    const csrf = /name="_csrf" value="([^"]+)"/.exec(await page.text())![1]!;
    const bad = await t.req("POST", "/login", {
      cookie: loginCookie,
      body: new URLSearchParams({ _csrf: csrf, token: "gk_nope" }),
    });
    assertEquals(bad.status, 303);
    assertMatch(bad.headers.get("location")!, /failed=1/);

    const s = await login(t, t.adminToken);
    assertEquals(await status(t, "GET", "/g/admin"), 401);
    const withCookie = await t.req("GET", "/g/admin", { cookie: s.cookie });
    assertEquals(withCookie.status, 200);
    await withCookie.body?.cancel();

    // JSON API with the cookie: state changes need X-CSRF-Token.
    let res = await t.req("POST", "/api/v1/plugins/guarded/disable", {
      cookie: s.cookie,
    });
    assertEquals(res.status, 403);
    assertMatch(String((await json(res)).error), /CSRF/);
    res = await t.req("POST", "/api/v1/plugins/guarded/disable", {
      cookie: s.cookie,
      headers: { "x-csrf-token": "wrong" },
    });
    assertEquals(res.status, 403);
    await res.body?.cancel();
    res = await t.req("POST", "/api/v1/plugins/guarded/disable", {
      cookie: s.cookie,
      headers: { "x-csrf-token": s.csrf },
    });
    assertEquals(res.status, 200);
    await res.body?.cancel();
    assertEquals(t.manager.isEnabled("guarded"), false);

    // Admin form posts: `_csrf` field required.
    res = await t.req("POST", "/admin/plugins/guarded/enable", {
      cookie: s.cookie,
      body: new URLSearchParams({}),
    });
    assertEquals(res.status, 403);
    await res.body?.cancel();
    assertEquals(t.manager.isEnabled("guarded"), false);
    res = await t.req("POST", "/admin/plugins/guarded/enable", {
      cookie: s.cookie,
      body: new URLSearchParams({ _csrf: s.csrf }),
    });
    assertEquals(res.status, 303);
    assertEquals(t.manager.isEnabled("guarded"), true);

    // Plugin routes with auth: cookie POST needs the header too.
    assertEquals(
      (await t.req("POST", "/g/user", { cookie: s.cookie })).status,
      403,
    );
    const okPost = await t.req("POST", "/g/user", {
      cookie: s.cookie,
      headers: { "x-csrf-token": s.csrf },
    });
    assertEquals(okPost.status, 200);
    await okPost.body?.cancel();

    // Logout needs CSRF and ends the session.
    res = await t.req("POST", "/logout", {
      cookie: s.cookie,
      body: new URLSearchParams({}),
    });
    assertEquals(res.status, 403);
    await res.body?.cancel();
    res = await t.req("POST", "/logout", {
      cookie: s.cookie,
      body: new URLSearchParams({ _csrf: s.csrf }),
    });
    assertEquals(res.status, 303);
    const after = await t.req("GET", "/g/user", { cookie: s.cookie });
    assertEquals(after.status, 401);
    await after.body?.cancel();
  } finally {
    await t.close();
  }
});

Deno.test("a user session sees the dashboard but not the admin pages", async () => {
  const t = await setup();
  try {
    const s = await login(t, t.userToken).catch(() => undefined);
    // login() follows to /admin/plugins, which a user may not see: do it by hand.
    assertEquals(s, undefined);
    const page = await t.req("GET", "/login");
    const loginCookie = page.headers.get("set-cookie")!.split(";")[0]!;
    const csrf = /name="_csrf" value="([^"]+)"/.exec(await page.text())![1]!;
    const res = await t.req("POST", "/login", {
      cookie: loginCookie,
      body: new URLSearchParams({ _csrf: csrf, token: t.userToken }),
    });
    const cookie = res.headers.getSetCookie().find((c) =>
      c.startsWith("gk_session=")
    )!
      .split(";")[0]!;
    const dash = await t.req("GET", "/admin/dashboard", { cookie });
    assertEquals(dash.status, 200);
    const html = await dash.text();
    assert(!html.includes('href="/admin/plugins"'), "no admin links for users");
    const plugins = await t.req("GET", "/admin/plugins", { cookie });
    assertEquals(plugins.status, 403);
    await plugins.body?.cancel();
  } finally {
    await t.close();
  }
});

Deno.test("revoking a token ends its sessions and its API access", async () => {
  const t = await setup();
  try {
    const created = await json<{ token: string; id: string }>(
      await t.req("POST", "/api/v1/tokens", {
        token: t.adminToken,
        body: JSON.stringify({ name: "second", admin: true }),
      }),
    );
    assertMatch(created.token, /^gk_/);
    const s = await login(t, created.token);
    assertEquals(await status(t, "GET", "/api/v1/plugins", created.token), 200);
    assertEquals(
      await status(t, "DELETE", `/api/v1/tokens/${created.id}`, t.adminToken),
      200,
    );
    assertEquals(await status(t, "GET", "/api/v1/plugins", created.token), 401);
    const res = await t.req("GET", "/api/v1/plugins", { cookie: s.cookie });
    assertEquals(res.status, 401);
    await res.body?.cancel();
  } finally {
    await t.close();
  }
});

Deno.test("FileTokenStore keeps only SHA-256 hashes, mode 0600, and survives a reload", async () => {
  const dir = await Deno.makeTempDir();
  try {
    const path = `${dir}/sub/tokens.json`;
    const store = new FileTokenStore(path);
    const { token, record } = await store.create({
      name: "admin",
      admin: true,
    });
    const text = await Deno.readTextFile(path);
    assert(!text.includes(token), "secret must not be stored");
    assert(
      !text.includes(token.slice(3, 20)),
      "no part of the secret is stored",
    );
    assert(text.includes(hashToken(token)));
    assertEquals(record.hash, hashToken(token));
    assertEquals((await Deno.stat(path)).mode! & 0o777, 0o600);

    const again = new FileTokenStore(path);
    assertEquals((await again.verify(token))?.id, record.id);
    assertEquals(await again.verify(token + "x"), undefined);
    assertEquals(await again.verify(""), undefined);
    assert(await again.revoke(record.id));
    assertEquals(await new FileTokenStore(path).verify(token), undefined);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("login: `next` is same-origin only; sessions expire", async () => {
  const t = await setup();
  try {
    // Each `next` must end at the default page, never an off-site Location —
    // including forms browsers rewrite to `//host` (tabs/newlines stripped,
    // `\` read as `/`), raw or percent-encoded (issue 10 item 9).
    const refused = [
      "//evil.example/x",
      "//evil.example",
      "https://evil.example/",
      "/\\evil.example",
      "\\/evil.example",
      "/%09/evil.example",
      "/%0a/evil.example",
      "/%0D/evil.example",
      "/%5Cevil.example",
      "/%2F%2Fevil.example",
      "/%2f/evil.example",
      "/\t/evil.example",
      "/\n/evil.example",
      "/.//evil.example",
      "javascript:alert(1)",
      " /x",
      "",
    ];
    // Followed by where it must land; the legitimate path keeps its query and hash.
    const cases: [string, string][] = [
      ...refused.map((n): [string, string] => [n, "/admin/"]),
      ["/admin/plugins?x=1#y", "/admin/plugins?x=1#y"],
    ];
    let session = "";
    for (const [next, want] of cases) {
      const page = await t.req(
        "GET",
        `/login?next=${encodeURIComponent(next)}`,
      );
      const loginCookie = page.headers.get("set-cookie")!.split(";")[0]!;
      const html = await page.text();
      const csrf = /name="_csrf" value="([^"]+)"/.exec(html)![1]!;
      // The form carries only the vetted `next` forward.
      assertEquals(
        /name="next" value="([^"]*)"/.exec(html)?.[1],
        want,
        `form: ${JSON.stringify(next)}`,
      );
      const res = await t.req("POST", "/login", {
        cookie: loginCookie,
        body: new URLSearchParams({ _csrf: csrf, token: t.adminToken, next }),
      });
      assertEquals(res.status, 303);
      assertEquals(
        res.headers.get("location"),
        want,
        `POST: ${JSON.stringify(next)}`,
      );
      await res.body?.cancel();
      session ||= res.headers.getSetCookie().find((c) =>
        c.startsWith("gk_session=")
      )!.split(";")[0]!;
    }
    // Already logged in: `GET /login?next=…` redirects through the same check.
    for (const [next, want] of cases) {
      const res = await t.req(
        "GET",
        `/login?next=${encodeURIComponent(next)}`,
        { cookie: session },
      );
      assertEquals(res.status, 303);
      assertEquals(
        res.headers.get("location"),
        want,
        `GET: ${JSON.stringify(next)}`,
      );
      await res.body?.cancel();
    }
  } finally {
    await t.close();
  }

  const { SessionStore } = await import("../host/server/mod.ts");
  const sessions = new SessionStore({ ttlMs: 1, maxSessions: 2 });
  const a = await sessions.create({ tokenId: "t", name: "n", admin: false });
  await new Promise((r) => setTimeout(r, 20));
  assertEquals(await sessions.get(a.id), undefined);
  // The oldest session is dropped beyond maxSessions.
  const long = new SessionStore({ maxSessions: 2 });
  const s1 = await long.create({ tokenId: "t", name: "n", admin: false });
  await long.create({ tokenId: "t", name: "n", admin: false });
  await long.create({ tokenId: "t", name: "n", admin: false });
  assertEquals(await long.get(s1.id), undefined);
});
