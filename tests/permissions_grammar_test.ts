import assert from "node:assert/strict";
import {
  canonicalPermissions,
  checkPermissions,
  classifyIp,
  covers,
  diffRequested,
  effectivePermissions,
  formatIp,
  parseIp,
  parsePermission,
  parsePermissions,
  PermissionSyntaxError,
} from "../permissions/mod.ts";
import { InvalidManifestError } from "../host/model/errors.ts";
import { parseManifest } from "../host/model/manifest.ts";

Deno.test("grammar: GoatFlow flat strings parse as they are", () => {
  for (
    const s of [
      "db:read",
      "db:write",
      "cache:read",
      "cache:write",
      "http:external",
      "plugins:call",
      "log",
    ]
  ) {
    assert.deepEqual(parsePermission(s).text, s);
  }
});

Deno.test("grammar: scoped forms are canonicalised", () => {
  const cases: [string, string][] = [
    ["db:read:ticket,queue", "db:read:queue,ticket"],
    ["db:read:Queue,ticket,queue", "db:read:queue,ticket"],
    ["db:write:t1", "db:write:t1"],
    ["db:read:public.ticket", "db:read:public.ticket"],
    ["http:api.example.com", "http:api.example.com"],
    ["http:API.Example.COM.", "http:api.example.com"],
    ["http:*.example.com", "http:*.example.com"],
    ["http:https://host:8443", "http:https://host:8443"],
    ["http:https://host:443", "http:https://host"],
    ["http:HTTP://host:80/", "http:http://host"],
    ["http:api.example.com:8443", "http:api.example.com:8443"],
    ["http:10.0.0.5", "http:10.0.0.5"],
    ["http:2130706433", "http:127.0.0.1"],
    ["http:0177.0.0.1", "http:127.0.0.1"],
    ["http:0x7f.1", "http:127.0.0.1"],
    ["http:[0:0:0:0:0:0:0:1]:8080", "http:[::1]:8080"],
    ["http:bücher.example", "http:xn--bcher-kva.example"],
    ["email:*@Example.com", "email:*@example.com"],
    ["email:ops@example.com", "email:ops@example.com"],
    ["email:*@*.example.com", "email:*@*.example.com"],
    ["email:*", "email:*"],
    ["config:app.*", "config:app.*"],
    ["config:app.name", "config:app.name"],
    ["plugins:call:stats", "plugins:call:stats"],
    ["fs:read:assets", "fs:read:assets"],
    ["fs:write:./cache/tmp/", "fs:write:cache/tmp"],
    ["fs:write:.", "fs:write:."],
  ];
  for (const [input, want] of cases) {
    assert.deepEqual(parsePermission(input).text, want, input);
  }
  const h = parsePermission("http:10.0.0.5");
  assert.ok(h.kind === "http" && h.ip && !h.wildcard);
});

Deno.test("grammar: malformed strings are refused with a reason", () => {
  const bad = [
    "",
    "db",
    "db:admin",
    "db:read:a;b",
    "db:read:",
    "db:read:a:b",
    "cache:read:other",
    "cache",
    "http:",
    "http:ftp://x",
    "http:a/b",
    "http:*",
    "http:a.*.com",
    "http:*.com",
    "http:x:99999",
    "http:x:0",
    "http:::1",
    "http:user@host",
    "http:*.10.0.0.1",
    "http:exa mple.com",
    "email:x",
    "email:a@b@c",
    "email:a@*x.com",
    "config:",
    "config:a..b",
    "plugins",
    "plugins:call:Bad",
    "plugins:invoke",
    "fs:read:/etc",
    "fs:read:../x",
    "fs:write:a/../../b",
    "fs:read:",
    "fs:exec:x",
    "kv:read",
    "events:emit",
    "log:x",
    "DB:read",
    "db:read\n",
  ];
  assert.ok(bad.length >= 15);
  for (const s of bad) {
    assert.throws(
      () => parsePermission(s),
      PermissionSyntaxError,
      JSON.stringify(s),
    );
  }
});

Deno.test("grammar: a manifest list names each bad entry by index", () => {
  const err = assertThrowsInvalid(() =>
    parsePermissions(["db:read", "dbx", "log", "http:a/b"])
  );
  assert.deepEqual(err.issues.map((i) => i.path), [
    "permissions[1]",
    "permissions[3]",
  ]);
  assert.ok(err.issues[0]!.message.includes('"dbx"'));
  assert.ok(err.message.includes("permissions[3]"));
});

Deno.test("grammar: checkPermissions plugs into parseManifest", () => {
  const ok = parseManifest({
    name: "hello",
    version: "1.0.0",
    permissions: ["db:read", "log"],
  }, {
    extraChecks: [checkPermissions],
  });
  assert.deepEqual(ok.permissions, ["db:read", "log"]);
  const err = assertThrowsInvalid(() =>
    parseManifest(
      {
        name: "hello",
        version: "1.0.0",
        permissions: ["db:read", "log", "cache", "http:*"],
      },
      { extraChecks: [checkPermissions] },
    )
  );
  assert.deepEqual(err.issues.map((i) => i.path), [
    "permissions[2]",
    "permissions[3]",
  ]);
});

Deno.test("grammar: covers", () => {
  const p = parsePermission;
  assert.ok(covers(p("db:read"), p("db:read:ticket")));
  assert.ok(!covers(p("db:read:ticket"), p("db:read")));
  assert.ok(!covers(p("db:read"), p("db:write")));
  assert.ok(covers(p("db:read:a,b"), p("db:read:b")));
  assert.ok(covers(p("http:*.example.com"), p("http:api.example.com")));
  assert.ok(covers(p("http:*.example.com"), p("http:*.a.example.com")));
  assert.ok(!covers(p("http:*.example.com"), p("http:example.com")));
  assert.ok(!covers(p("http:api.example.com"), p("http:api.example.com:8443")));
  assert.ok(
    covers(p("http:api.example.com"), p("http:https://api.example.com")),
  );
  assert.ok(
    !covers(p("http:https://api.example.com"), p("http:api.example.com")),
  );
  assert.ok(covers(p("http:external"), p("http:api.example.com")));
  assert.ok(covers(p("http:external"), p("http:93.184.216.34")));
  assert.ok(!covers(p("http:external"), p("http:10.0.0.5")));
  assert.ok(!covers(p("http:external"), p("http:localhost")));
  assert.ok(covers(p("email:*@example.com"), p("email:ops@example.com")));
  assert.ok(!covers(p("email:*@example.com"), p("email:*@a.example.com")));
  assert.ok(covers(p("email:*"), p("email:*@a.example.com")));
  assert.ok(covers(p("config:app.*"), p("config:app.name")));
  assert.ok(!covers(p("config:app.*"), p("config:apple")));
  assert.ok(covers(p("plugins:call"), p("plugins:call:stats")));
  assert.ok(!covers(p("plugins:call:stats"), p("plugins:call")));
  assert.ok(covers(p("fs:write:cache"), p("fs:read:cache/x")));
  assert.ok(!covers(p("fs:read:cache"), p("fs:write:cache")));
  assert.ok(!covers(p("fs:read:cache"), p("fs:read:cache2")));
  assert.ok(covers(p("fs:read:."), p("fs:read:a/b")));
});

Deno.test("grammar: effective permissions are requested ∩ granted", () => {
  const eff = (r: string[], g: string[]) =>
    effectivePermissions(r, g).map((p) => p.text);
  assert.deepEqual(eff(["db:read:ticket", "http:external"], ["db:read"]), [
    "db:read:ticket",
    "log",
  ]);
  assert.deepEqual(eff(["db:read"], ["db:read:ticket"]), [
    "db:read:ticket",
    "log",
  ]);
  assert.deepEqual(eff(["http:*.example.com"], ["http:api.example.com"]), [
    "http:api.example.com",
    "log",
  ]);
  // Granted but not requested: not effective.
  assert.deepEqual(
    eff(["cache:read"], ["cache:read", "cache:write", "db:write"]),
    [
      "cache:read",
      "log",
    ],
  );
  // External never reaches localhost, even when requested by name.
  assert.deepEqual(eff(["http:localhost"], ["http:external"]), ["log"]);
  assert.deepEqual(eff([], []), ["log"]);
});

Deno.test("grammar: diffRequested lists what an upgrade newly asks for", () => {
  assert.deepEqual(
    diffRequested(["db:read"], ["db:read:ticket", "http:external"]),
    [
      "http:external",
    ],
  );
  assert.deepEqual(diffRequested(["db:read:a"], ["db:read:a,b", "log"]), [
    "db:read:a,b",
  ]);
  assert.deepEqual(diffRequested(["email:*"], ["email:*@x.com"]), []);
  assert.deepEqual(canonicalPermissions(["log", "db:read:b,a", "log"]), [
    "db:read:a,b",
    "log",
  ]);
});

Deno.test("ip: classification covers every blocked range and odd form", () => {
  const cls = (s: string) => classifyIp(parseIp(s)!);
  const cases: [string, string | undefined][] = [
    ["127.0.0.1", "loopback"],
    ["127.255.0.9", "loopback"],
    ["10.0.0.1", "private"],
    ["172.16.0.1", "private"],
    ["172.31.255.255", "private"],
    ["172.32.0.1", undefined],
    ["192.168.1.1", "private"],
    ["169.254.1.1", "link-local"],
    ["169.254.169.254", "metadata"],
    ["100.64.0.1", "cgnat"],
    ["100.128.0.1", undefined],
    ["224.0.0.1", "multicast"],
    ["0.0.0.0", "unspecified"],
    ["255.255.255.255", "broadcast"],
    ["240.0.0.1", "reserved"],
    ["192.0.2.1", "documentation"],
    ["8.8.8.8", undefined],
    ["::1", "loopback"],
    ["::", "unspecified"],
    ["fe80::1", "link-local"],
    ["fc00::1", "unique-local"],
    ["fd12:3456::1", "unique-local"],
    ["fd00:ec2::254", "metadata"],
    ["ff02::1", "multicast"],
    ["::ffff:127.0.0.1", "loopback"],
    ["::ffff:7f00:1", "loopback"],
    ["::ffff:169.254.169.254", "metadata"],
    ["::127.0.0.1", "loopback"],
    ["::a00:1", "private"],
    ["64:ff9b::10.0.0.1", "private"],
    ["2002:c0a8:101::1", "private"],
    ["2001:db8::1", "documentation"],
    ["2606:4700:4700::1111", undefined],
    ["::ffff:8.8.8.8", undefined],
  ];
  for (const [a, want] of cases) assert.deepEqual(cls(a), want, a);
  assert.deepEqual(parseIp("127.1"), undefined);
  assert.deepEqual(parseIp("0x7f.0.0.1"), undefined);
  assert.deepEqual(parseIp("2130706433"), undefined);
  assert.deepEqual(parseIp("fe80::1%eth0"), undefined);
  assert.deepEqual(
    formatIp(parseIp("0:0:0:0:0:ffff:7f00:1")!),
    "::ffff:7f00:1",
  );
  assert.deepEqual(
    formatIp(parseIp("2001:db8:0:0:1:0:0:1")!),
    "2001:db8::1:0:0:1",
  );
});

function assertThrowsInvalid(fn: () => unknown): InvalidManifestError {
  try {
    fn();
  } catch (e) {
    assert.ok(
      e instanceof InvalidManifestError,
      `expected InvalidManifestError, got ${e}`,
    );
    return e as InvalidManifestError;
  }
  throw new Error("expected InvalidManifestError");
}
