// Packages shared through PostgreSQL (issue 15, second bullet): real host
// processes on one database and application schema. A package uploaded to
// host A serves on host B within a few seconds (NOTIFY), a host started
// after the upload has it at once (sync at start), bytes altered in the
// database are refused (B keeps what it had and says why), an uninstall on
// A removes it from the others. The package is a real WASM module (the
// wat-edge fixture built by wabt with its own manifest).

import assert from "node:assert/strict";
import pg from "pg";
import { zipSync } from "fflate";
import { buildWat } from "../fixtures/hostile/wat_build.ts";
import { sha256Hex } from "../host/model/sha256.ts";
import { generateSigningKeys, signPackage } from "../host/loading/packages.ts";
import { signerKeyId } from "../host/loading/signer_pins.ts";
import { type HostProcess, startHost } from "./helpers/host_process.ts";
import { PG_URL } from "./server_helpers.ts";

const WAT = new URL("../fixtures/plugins/wat-edge/plugin.wat", import.meta.url)
  .pathname;
const NAME = "pkg-cluster";
const ROUTE = `/api/plugins/${NAME}/echo`;

/** A package (zip) whose module registers exactly its manifest. */
async function pkg(
  version: string,
  description = "package shared by the hosts of a deployment",
): Promise<Uint8Array<ArrayBuffer>> {
  const manifest = {
    name: NAME,
    version,
    description,
    permissions: ["log"],
    routes: [{ method: "GET", path: ROUTE, handler: "echo" }],
  };
  const file = await Deno.makeTempFile({ suffix: ".json" });
  try {
    await Deno.writeTextFile(file, JSON.stringify(manifest));
    const wasm = await buildWat(WAT, file);
    return zipSync({
      "manifest.json": new TextEncoder().encode(JSON.stringify(manifest)),
      "plugin.wasm": wasm,
    }) as Uint8Array<ArrayBuffer>;
  } finally {
    await Deno.remove(file);
  }
}

async function api(
  h: HostProcess,
  method: string,
  path: string,
  body?: BodyInit,
): Promise<{ status: number; body: Record<string, unknown> }> {
  const res = await fetch(`${h.url}${path}`, {
    method,
    ...(body !== undefined ? { body } : {}),
    headers: { authorization: `Bearer ${h.token}`, connection: "close" },
  });
  const text = await res.text();
  let parsed: Record<string, unknown> = {};
  try {
    parsed = JSON.parse(text);
  } catch { /* not JSON */ }
  return { status: res.status, body: parsed };
}

/** The status of the plugin's route on `h`. */
async function routeStatus(h: HostProcess): Promise<number> {
  const res = await fetch(`${h.url}${ROUTE}`, {
    headers: { connection: "close" },
  });
  await res.body?.cancel();
  return res.status;
}

/** The version of the plugin `h` runs (undefined when it has none). */
async function version(h: HostProcess): Promise<string | undefined> {
  const r = await api(h, "GET", `/api/v1/plugins/${NAME}`);
  if (r.status !== 200) return undefined;
  const v = r.body.version ??
    (r.body.manifest as { version?: string } | undefined)?.version;
  return typeof v === "string" ? v : undefined;
}

/** Waits until `check` holds; returns the ms it took; fails after `ms`. */
async function within(
  ms: number,
  what: string,
  check: () => Promise<boolean>,
): Promise<number> {
  const t0 = performance.now();
  while (performance.now() - t0 < ms) {
    if (await check()) return performance.now() - t0;
    await new Promise((r) => setTimeout(r, 100));
  }
  throw new Error(`not within ${ms} ms: ${what}`);
}

/** Waits for `re` in `h`'s output; fails after `ms`. */
async function outputWithin(
  h: HostProcess,
  re: RegExp,
  ms: number,
): Promise<void> {
  let timer: ReturnType<typeof setTimeout> | undefined;
  await Promise.race([
    h.waitForOutput(re),
    new Promise((_, reject) => {
      timer = setTimeout(
        () => reject(new Error(`no ${re} in ${ms} ms`)),
        ms,
      );
    }),
  ]).finally(() => clearTimeout(timer));
}

/** Deletes the package rows of `scope` (the helper drops only its schema). */
async function dropRows(admin: pg.Client, scope: string): Promise<void> {
  for (
    const t of [
      "goatkit.packages",
      "goatkit.package_removals",
      "goatkit.package_signers",
    ]
  ) {
    const exists = await admin.query("SELECT to_regclass($1) AS t", [t]);
    if (exists.rows[0]?.t === null) continue;
    await admin.query(`DELETE FROM ${t} WHERE scope = $1`, [scope]);
  }
}

function schemaOf(url: string): string {
  const m = /search_path%3D(\w+)|search_path=(\w+)/.exec(
    decodeURIComponent(url),
  );
  const schema = m?.[1] ?? m?.[2];
  assert.ok(schema, url);
  return schema;
}

Deno.test({
  name:
    "packages in the database: installed on A serves on B within seconds, a late host catches up at start, altered bytes are refused, uninstall on A removes it everywhere",
  sanitizeResources: false,
  sanitizeOps: false,
}, async () => {
  const v1 = await pkg("1.0.0");
  const v2 = await pkg("2.0.0");
  const hosts: HostProcess[] = [];
  const a = await startHost({ plugins: [] });
  const scope = schemaOf(a.db.url);
  const admin = new pg.Client({ connectionString: PG_URL });
  await admin.connect();
  try {
    hosts.push(a);
    const b = await startHost({
      plugins: [],
      reuse: { db: a.db, token: a.token },
    });
    hosts.push(b);

    // Install on A: A serves at once, B within a few seconds.
    const installed = await api(
      a,
      "POST",
      "/api/v1/plugins/upload",
      new Blob([v1]),
    );
    assert.equal(installed.status, 200, JSON.stringify(installed.body));
    assert.equal(await routeStatus(a), 200);
    assert.equal(await routeStatus(b), 404);
    const onB = await within(
      5000,
      "B serves the route",
      async () => await routeStatus(b) === 200,
    );
    console.log(`B served the package ${onB.toFixed(0)} ms after A's install`);
    const row = await admin.query(
      `SELECT version, sha256, size, installed_by_host FROM goatkit.packages
        WHERE scope = $1 AND name = $2`,
      [scope, NAME],
    );
    assert.equal(row.rows.length, 1);
    assert.equal(row.rows[0].version, "1.0.0");
    assert.equal(row.rows[0].sha256, await sha256Hex(v1));
    assert.equal(Number(row.rows[0].size), v1.byteLength);

    // A host started after the install has it when it says Ready.
    const c = await startHost({
      plugins: [],
      reuse: { db: a.db, token: a.token },
    });
    hosts.push(c);
    assert.equal(await routeStatus(c), 200);
    assert.equal(await version(c), "1.0.0");

    // Bytes altered in the database: the row claims 2.0.0's SHA-256, the
    // bytes are another, valid 2.0.0 package (it would install and run if
    // the hash were not checked). B refuses, says why, keeps 1.0.0.
    const tampered = await pkg("2.0.0", "altered in the database");
    await admin.query(
      `UPDATE goatkit.packages SET version = '2.0.0', sha256 = $3,
              bytes = decode($4, 'base64'), size = $5
        WHERE scope = $1 AND name = $2`,
      [
        scope,
        NAME,
        await sha256Hex(v2),
        tampered.toBase64(),
        tampered.byteLength,
      ],
    );
    await admin.query(
      `SELECT pg_notify('goatkit_changes', json_build_object('scope', $1::text,
         'kind', 'package', 'name', $2::text, 'host', 'tamperer')::text)`,
      [scope, NAME],
    );
    await outputWithin(
      b,
      /pkg-cluster 2\.0\.0 from the package store refused.*SHA-256 of the stored bytes is [0-9a-f]{64}, the row says [0-9a-f]{64}/,
      10_000,
    );
    assert.equal(await version(b), "1.0.0");
    assert.equal(await routeStatus(b), 200);
    // A host starting now refuses it too and installs nothing.
    const d = await startHost({
      plugins: [],
      reuse: { db: a.db, token: a.token },
    });
    hosts.push(d);
    assert.match(
      d.stdout(),
      /pkg-cluster 2\.0\.0 from the package store refused/,
    );
    assert.equal(await routeStatus(d), 404);

    // The genuine 2.0.0 uploaded on A reaches B.
    const upgraded = await api(
      a,
      "POST",
      "/api/v1/plugins/upload",
      new Blob([v2]),
    );
    assert.equal(upgraded.status, 200, JSON.stringify(upgraded.body));
    await within(
      5000,
      "B runs 2.0.0",
      async () => await version(b) === "2.0.0",
    );

    // Uninstall on A: gone from B and C within a few seconds.
    const removed = await api(a, "DELETE", `/api/v1/plugins/${NAME}`);
    assert.equal(removed.status, 200, JSON.stringify(removed.body));
    assert.equal(await routeStatus(a), 404);
    await within(
      5000,
      "B and C stop serving the route",
      async () => await routeStatus(b) === 404 && await routeStatus(c) === 404,
    );
    const gone = await admin.query(
      "SELECT 1 FROM goatkit.packages WHERE scope = $1 AND name = $2",
      [scope, NAME],
    );
    assert.equal(gone.rows.length, 0);
  } catch (e) {
    for (const h of hosts) console.error(h.stdout(), h.stderr());
    throw e;
  } finally {
    for (const h of hosts.slice(1)) await h.cleanup();
    await a.cleanup();
    await dropRows(admin, scope);
    await admin.end();
  }
});

Deno.test({
  name:
    "signer pins in the database: a package signed on A pins its signer for B too; B verifies the signature itself and refuses another signer",
  sanitizeResources: false,
  sanitizeOps: false,
}, async () => {
  const k1 = await generateSigningKeys();
  const k2 = await generateSigningKeys();
  const env = {
    GOATKIT_TRUSTED_KEYS: `${k1.publicKey},${k2.publicKey}`,
    GOATKIT_REQUIRE_SIGNATURE: "true",
  };
  const v1 = await pkg("1.0.0");
  const v2 = await pkg("2.0.0");
  const hosts: HostProcess[] = [];
  const a = await startHost({ plugins: [], env });
  hosts.push(a);
  const scope = schemaOf(a.db.url);
  const admin = new pg.Client({ connectionString: PG_URL });
  await admin.connect();
  const upload = async (h: HostProcess, bytes: Uint8Array, key: string) => {
    const res = await fetch(`${h.url}/api/v1/plugins/upload`, {
      method: "POST",
      body: new Blob([bytes as Uint8Array<ArrayBuffer>]),
      headers: {
        authorization: `Bearer ${h.token}`,
        "x-goatkit-signature": await signPackage(bytes, key),
        connection: "close",
      },
    });
    return { status: res.status, body: await res.json() };
  };
  try {
    const b = await startHost({
      plugins: [],
      env,
      reuse: { db: a.db, token: a.token },
    });
    hosts.push(b);
    const first = await upload(a, v1, k1.privateKey);
    assert.equal(first.status, 200, JSON.stringify(first.body));
    await within(
      5000,
      "B serves the signed package",
      async () => await routeStatus(b) === 200,
    );
    const pin = await admin.query(
      `SELECT key_id FROM goatkit.package_signers WHERE scope = $1 AND name = $2`,
      [scope, NAME],
    );
    assert.equal(pin.rows[0]?.key_id, await signerKeyId(k1.publicKey));
    const row = await admin.query(
      `SELECT signer_fingerprint, signature IS NOT NULL AS signed
         FROM goatkit.packages WHERE scope = $1 AND name = $2`,
      [scope, NAME],
    );
    assert.equal(row.rows[0].signed, true);
    assert.equal(
      row.rows[0].signer_fingerprint,
      await signerKeyId(k1.publicKey),
    );
    // B has no pin file of its own: the pin A set refuses K2's package.
    const other = await upload(b, v2, k2.privateKey);
    assert.equal(other.status, 409, JSON.stringify(other.body));
    assert.equal(other.body.error.code, "signer_pinned");
    assert.equal(await version(b), "1.0.0");
    // The same signer's upgrade through B reaches A.
    const upgrade = await upload(b, v2, k1.privateKey);
    assert.equal(upgrade.status, 200, JSON.stringify(upgrade.body));
    await within(
      5000,
      "A runs 2.0.0",
      async () => await version(a) === "2.0.0",
    );
  } catch (e) {
    for (const h of hosts) console.error(h.stdout(), h.stderr());
    throw e;
  } finally {
    for (const h of hosts.slice(1)) await h.cleanup();
    await a.cleanup();
    await dropRows(admin, scope);
    await admin.end();
  }
});
