// Faults, issue 11 items 6 and 7: job ticks missed during a real PostgreSQL
// outage (a TCP proxy on loopback that the test cuts, never the server
// itself) are recorded and caught up per policy; gRPC plugins' socket
// folders live under the data dir and what a kill -9'd host left there is
// removed at the next start, never following links.

import assert from "node:assert/strict";
import { join } from "node:path";
import { tmpdir } from "node:os";
import pg from "pg";
import { Manager, type Plugin } from "../mod.ts";
import { PgJobClaim, Scheduler } from "../host/scheduler.ts";
import {
  makeRunDir,
  preparePluginRunRoot,
  RUN_DIR_MARKER,
} from "../runtimes/grpc/run_dir.ts";
import { FakeClock } from "./helpers/fake_clock.ts";
import { privateSchema } from "./server_helpers.ts";

const ROOT = new URL("..", import.meta.url).pathname;
const PG_URL = "postgres://postgres@127.0.0.1:5432/test";
/** 2030-01-01T00:00:00Z. */
const T0 = Date.UTC(2030, 0, 1);
const MIN = 60_000;
const iso = (ms: number) => new Date(ms).toISOString();
const suffix = () => crypto.randomUUID().replaceAll("-", "").slice(0, 10);

function closeQuietly(c: Deno.Conn): void {
  try {
    c.close();
  } catch { /* closed already */ }
}

/** Copies bytes from `from` to `to` until either side ends. */
async function pipe(from: Deno.Conn, to: Deno.Conn): Promise<void> {
  const buf = new Uint8Array(64 * 1024);
  try {
    for (;;) {
      const n = await from.read(buf);
      if (n === null) break;
      for (let off = 0; off < n;) off += await to.write(buf.subarray(off, n));
    }
  } catch {
    /* cut */
  } finally {
    closeQuietly(from);
    closeQuietly(to);
  }
}

/**
 * A TCP proxy on loopback in front of the test PostgreSQL. `cut()` is the
 * outage: the port refuses connections and the open ones are closed;
 * `restore()` listens on the same port again.
 */
class PgProxy {
  readonly port: number;
  #listener: Deno.TcpListener | undefined;
  #conns = new Set<Deno.Conn>();
  #tasks = new Set<Promise<void>>();

  constructor() {
    const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
    this.port = listener.addr.port;
    this.#serve(listener);
  }

  get url(): string {
    return `postgres://postgres@127.0.0.1:${this.port}/test`;
  }

  #track(p: Promise<void>): void {
    this.#tasks.add(p);
    p.finally(() => this.#tasks.delete(p));
  }

  #serve(listener: Deno.TcpListener): void {
    this.#listener = listener;
    this.#track((async () => {
      try {
        for await (const client of listener) this.#track(this.#forward(client));
      } catch { /* closed */ }
    })());
  }

  async #forward(client: Deno.Conn): Promise<void> {
    this.#conns.add(client);
    let server: Deno.Conn;
    try {
      server = await Deno.connect({ hostname: "127.0.0.1", port: 5432 });
    } catch {
      this.#conns.delete(client);
      return closeQuietly(client);
    }
    if (!this.#conns.has(client)) return closeQuietly(server); // cut meanwhile
    this.#conns.add(server);
    await Promise.all([pipe(client, server), pipe(server, client)]);
    this.#conns.delete(client);
    this.#conns.delete(server);
  }

  /** The outage. */
  async cut(): Promise<void> {
    this.#listener?.close();
    this.#listener = undefined;
    for (const c of this.#conns) closeQuietly(c);
    this.#conns.clear();
    while (this.#tasks.size > 0) await Promise.allSettled([...this.#tasks]);
  }

  /** The end of the outage. */
  restore(): void {
    this.#serve(Deno.listen({ hostname: "127.0.0.1", port: this.port }));
  }
}

/** Waits (bounded) until `cond` holds. */
async function until(cond: () => boolean, what: string): Promise<void> {
  for (let i = 0; i < 250 && !cond(); i++) {
    await new Promise((r) => setTimeout(r, 20));
  }
  assert.ok(cond(), `timed out waiting until ${what}`);
}

function minutelyJob(name: string, onRun: () => void): Plugin {
  return {
    gkRegister: () => ({
      name,
      version: "1.0.0",
      jobs: [{
        id: "minutely",
        handler: "work",
        schedule: "* * * * *",
        enabled: true,
      }],
    }),
    init: () => Promise.resolve(),
    call: () => {
      onRun();
      return Promise.resolve(null);
    },
    shutdown: () => Promise.resolve(),
  };
}

for (const policy of ["skip", "once"] as const) {
  Deno.test(`a PostgreSQL outage: missed ticks are one skipped record; catch-up "${policy}"`, async () => {
    const proxy = new PgProxy();
    const pool = new pg.Pool({
      connectionString: proxy.url,
      max: 2,
      connectionTimeoutMillis: 5000,
    });
    pool.on("error", () => {}); // idle connections cut by the outage
    const direct = new pg.Pool({ connectionString: PG_URL, max: 1 });
    const name = `outage-${policy}-${suffix()}`;
    const key = `${name}.minutely`;
    const clock = new FakeClock(T0);
    const ran: number[] = [];
    const m = new Manager();
    await m.register(minutelyJob(name, () => ran.push(clock.now() - T0)));
    const s = new Scheduler(m, {
      clock,
      claim: new PgJobClaim(pool),
      catchUp: policy,
    });
    /** One second at a time, each tick's claim (real I/O) settled. */
    const stepTo = async (at: number) => {
      while (clock.now() < T0 + at) {
        await clock.advance(1000);
        await s.idle();
      }
    };
    s.start();
    try {
      await stepTo(MIN);
      assert.deepEqual(ran, [MIN], "tick 1 runs while the database is up");

      await proxy.cut();
      await until(() => pool.totalCount === 0, "the pool saw the cut");
      // Ticks at 2, 3 and 4 minutes cannot be claimed; the retries (1 s
      // after the first failure, doubling up to 30 s: 121 … 241 s) fail too.
      await stepTo(4 * MIN + 5000);
      assert.deepEqual(ran, [MIN], "nothing runs during the outage");
      assert.equal(s.list()[0]!.lastRuns.length, 1, "no record yet");
      assert.equal(
        m.logs.getByPlugin(name).filter((l) => /cannot claim/.test(l.message))
          .length,
        1,
        "one warning for the outage, not one per tick",
      );

      proxy.restore();
      await stepTo(4 * MIN + 31_000); // the retry at 271 s gets through
      const back = 4 * MIN + 31_000;
      const [, ...older] = s.list()[0]!.lastRuns;
      const latest = s.list()[0]!.lastRuns;
      const skipped = latest.find((r) => r.outcome === "skipped");
      assert.ok(skipped, JSON.stringify(latest));
      assert.equal(skipped.reason, "database unavailable");
      assert.equal(skipped.missedTicks, 3);
      assert.equal(skipped.start, iso(T0 + 2 * MIN));
      assert.equal(skipped.lastTick, iso(T0 + 4 * MIN));
      assert.match(
        skipped.error ?? "",
        /^Cannot run 3 ticks from 2030-01-01T00:02:00.000Z to 2030-01-01T00:04:00.000Z: database unavailable \(.*ECONNREFUSED/,
      );
      assert.ok(older.length > 0);
      assert.deepEqual(
        ran,
        policy === "once" ? [MIN, back] : [MIN],
        policy === "once"
          ? "one catch-up run for three missed ticks"
          : "no catch-up run",
      );

      await stepTo(5 * MIN); // tick 5 as usual
      assert.deepEqual(
        s.list()[0]!.lastRuns.map((r) => [r.start, r.outcome, r.trigger]),
        [
          [iso(T0 + 5 * MIN), "ok", "schedule"],
          ...(policy === "once" ? [[iso(T0 + back), "ok", "catch-up"]] : []),
          [iso(T0 + 2 * MIN), "skipped", "schedule"],
          [iso(T0 + MIN), "ok", "schedule"],
        ],
      );
      assert.deepEqual(ran.length, policy === "once" ? 3 : 2);
      // In the database: ticks 1 and 5, and the outage's last tick (claimed
      // by the host that recorded it, so no other host does it again).
      const rows = await direct.query(
        "SELECT tick::int AS tick FROM goatkit.job_ticks WHERE job = $1 ORDER BY tick",
        [key],
      );
      assert.deepEqual(
        rows.rows.map((r: { tick: number }) => r.tick - T0 / 1000),
        [60, 240, 300],
      );
    } finally {
      s.stop();
      await s.idle();
      await m.shutdownAll();
      await direct.query("DELETE FROM goatkit.job_ticks WHERE job = $1", [key])
        .catch(() => {});
      await direct.end();
      await pool.end();
      await proxy.cut();
    }
  });
}

// -- plugin socket folders under the data dir ----------------------------------

/** `host/serve.ts` as a process, up to its "Ready:" line. */
async function startHost(env: Record<string, string>): Promise<{
  child: Deno.ChildProcess;
  out: string;
  url: string;
  rest: Promise<void>;
}> {
  const child = new Deno.Command(Deno.execPath(), {
    args: ["run", "--allow-all", join(ROOT, "host/serve.ts")],
    cwd: ROOT,
    env: { ...env, NO_COLOR: "1" },
    stdin: "null",
    stdout: "piped",
    stderr: "inherit",
  }).spawn();
  const reader = child.stdout.pipeThrough(new TextDecoderStream()).getReader();
  let out = "";
  while (!/Ready: /.test(out)) {
    const { value, done } = await reader.read();
    if (done) break;
    out += value;
  }
  const url = /Listening on (http:\/\/\S+)/.exec(out)?.[1];
  assert.ok(url && /Ready: 1 plugin/.test(out), `host output: ${out}`);
  // Keep reading so the host never blocks on a full pipe.
  const rest = (async () => {
    while (!(await reader.read()).done) { /* drain */ }
  })().catch(() => {});
  return { child, out, url, rest };
}

/** The run folders (`gk-…`) under `root`. */
function runDirs(root: string): string[] {
  try {
    return [...Deno.readDirSync(root)].map((e) => e.name).filter((n) =>
      n.startsWith("gk-")
    ).sort();
  } catch (e) {
    if (e instanceof Deno.errors.NotFound) return [];
    throw e;
  }
}

Deno.test("kill -9 of the host leaves its gRPC plugin's socket folder; the next start removes it and the plugin works", async () => {
  const tmp = await Deno.makeTempDir({ prefix: "gk-faults-" });
  const plugins = join(tmp, "plugins");
  // hello-grpc under a name of its own: its enabled state and grants live
  // in the shared goatkit schema, which other test files also use.
  const name = `hg-${suffix().slice(0, 8)}`;
  await Deno.mkdir(join(plugins, name), { recursive: true });
  for (const f of ["manifest.json", "plugin.ts"]) {
    const text = await Deno.readTextFile(
      join(ROOT, "fixtures/plugins/hello-grpc-ts", f),
    );
    await Deno.writeTextFile(
      join(plugins, name, f),
      text.replaceAll("hello-grpc", name),
    );
  }
  const data = join(tmp, "data");
  const runRoot = join(data, "run");
  const db = await privateSchema();
  const env = {
    PORT: "0",
    GOATKIT_HOSTNAME: "127.0.0.1",
    GOATKIT_DATA_DIR: data,
    GOATKIT_PLUGINS_DIR: plugins,
    GOATKIT_HOT_RELOAD: "false",
    DATABASE_URL: db.url,
  };
  const children: Deno.ChildProcess[] = [];
  // A hung start must fail the test, not hang the suite.
  const watchdog = setTimeout(() => {
    for (const c of children) {
      try {
        c.kill("SIGKILL");
      } catch { /* gone */ }
    }
  }, 120_000);
  try {
    const first = await startHost(env);
    children.push(first.child);
    const token = /^\s+(gk_\S+)$/m.exec(first.out)?.[1];
    assert.ok(token, first.out);
    const status = async (url: string) => {
      const res = await fetch(`${url}/api/plugins/${name}/status`, {
        headers: { authorization: `Bearer ${token}` },
      });
      return [res.status, await res.text()] as const;
    };
    assert.equal((await status(first.url))[0], 200);
    const [old] = runDirs(runRoot);
    assert.match(old ?? "", new RegExp(`^gk-${name}-[a-z0-9]{8}$`), runRoot);
    const oldDir = join(runRoot, old!);
    for (const f of [RUN_DIR_MARKER, "host.sock", "import_map.json"]) {
      assert.ok(Deno.lstatSync(join(oldDir, f)), f);
    }
    if (Deno.uid() === 0) {
      // The sandboxed plugin's socket folder belongs to its own uid.
      assert.notEqual(Deno.lstatSync(join(oldDir, "plugin")).uid, 0);
    }

    first.child.kill("SIGKILL");
    await first.child.status;
    await first.rest;
    assert.deepEqual(runDirs(runRoot), [old], "kill -9 left the folder");
    assert.ok(Deno.lstatSync(join(oldDir, "host.sock")).isSocket);

    const second = await startHost(env);
    children.push(second.child);
    const now = runDirs(runRoot);
    assert.ok(!now.includes(old!), `the old folder is gone: ${now}`);
    assert.equal(now.length, 1, `one folder for the running plugin: ${now}`);
    const [code, body] = await status(second.url);
    assert.equal(code, 200, body);
    assert.match(body, /running/);

    second.child.kill("SIGTERM");
    assert.equal((await second.child.status).code, 0);
    await second.rest;
    assert.deepEqual(runDirs(runRoot), [], "a clean stop removes its folder");
  } finally {
    clearTimeout(watchdog);
    for (const c of children) {
      try {
        c.kill("SIGKILL");
      } catch { /* gone */ }
      await c.status;
    }
    await Deno.remove(tmp, { recursive: true });
    await db.drop();
  }
});

/** Runs `code` in another Deno process (with the run_dir module as `rd`). */
function otherProcess(code: string): Deno.ChildProcess {
  const mod = new URL("../runtimes/grpc/run_dir.ts", import.meta.url).href;
  return new Deno.Command(Deno.execPath(), {
    args: [
      "eval",
      `import * as rd from ${JSON.stringify(mod)};\n${code}`,
    ],
    stdin: "piped",
    stdout: "piped",
    stderr: "inherit",
  }).spawn();
}

async function firstLine(child: Deno.ChildProcess): Promise<string> {
  const reader = child.stdout.pipeThrough(new TextDecoderStream()).getReader();
  let text = "";
  while (!text.includes("\n")) {
    const { value, done } = await reader.read();
    if (done) break;
    text += value;
  }
  reader.releaseLock();
  return text.trim();
}

Deno.test("start-up cleanup removes only the host's own stale folders and never follows links", async () => {
  const tmp = await Deno.makeTempDir({ prefix: "gk-runclean-" });
  const data = join(tmp, "data");
  const outside = join(tmp, "outside");
  await Deno.mkdir(outside);
  await Deno.writeTextFile(join(outside, "precious"), "keep me");
  let live: Deno.ChildProcess | undefined;
  try {
    const { dir: root } = await preparePluginRunRoot(data);
    assert.equal(root, join(data, "run"));
    assert.equal(Deno.statSync(root).mode! & 0o777, 0o700);

    // A folder a host process made and then died without removing.
    const dead = otherProcess(
      `console.log(await rd.makeRunDir(${JSON.stringify(root)}, "dead"));`,
    );
    const stale = await firstLine(dead);
    assert.equal((await dead.status).code, 0);
    // What a hostile plugin could have left in it: a link out, a folder it
    // made inaccessible, files of another uid.
    await Deno.symlink(outside, join(stale, "plugin-link"));
    await Deno.mkdir(join(stale, "plugin", "locked"), { recursive: true });
    await Deno.writeTextFile(join(stale, "plugin", "locked", "f"), "x");
    await Deno.chmod(join(stale, "plugin", "locked"), 0o000);
    if (Deno.uid() === 0) {
      await Deno.chown(join(stale, "plugin"), 200_123, 200_123);
    }
    // A live host's folder (another process that keeps running).
    live = otherProcess(
      `console.log(await rd.makeRunDir(${
        JSON.stringify(root)
      }, "live")); await Deno.stdin.read(new Uint8Array(1));`,
    );
    const liveDir = await firstLine(live);
    // This process's own folder (live, too).
    const mine = await makeRunDir(root, "mine");
    // Planted: a link named like a run folder, leading out, with a marker
    // there; a marked folder without marker; one owned by someone else; a
    // folder the host never names so.
    const link = join(root, "gk-evil-aaaaaaaa");
    await Deno.copyFile(
      join(stale, RUN_DIR_MARKER),
      join(outside, RUN_DIR_MARKER),
    );
    await Deno.symlink(outside, link);
    const unmarked = join(root, "gk-nomark-bbbbbbbb");
    await Deno.mkdir(unmarked);
    await Deno.writeTextFile(join(unmarked, "f"), "x");
    const foreign = join(root, "gk-foreign-cccccccc");
    if (Deno.uid() === 0) {
      await Deno.mkdir(foreign);
      await Deno.copyFile(
        join(stale, RUN_DIR_MARKER),
        join(foreign, RUN_DIR_MARKER),
      );
      await Deno.chown(foreign, 200_124, 200_124);
    }
    const unrelated = join(root, "notes");
    await Deno.mkdir(unrelated);

    const again = await preparePluginRunRoot(data);
    assert.deepEqual(again.removed, [stale]);
    assert.deepEqual(
      again.kept.map((k) => k.dir).sort(),
      [
        link,
        unmarked,
        liveDir,
        mine,
        ...(Deno.uid() === 0 ? [foreign] : []),
      ].sort(),
    );
    assert.ok(
      !Deno.lstatSync(link).isDirectory && Deno.lstatSync(link).isSymlink,
    );
    assert.equal(Deno.readTextFileSync(join(outside, "precious")), "keep me");
    assert.ok(Deno.lstatSync(join(outside, RUN_DIR_MARKER)).isFile);
    for (const d of [unmarked, liveDir, mine, unrelated]) {
      assert.ok(Deno.lstatSync(d).isDirectory, d);
    }

    // The other host stops (without cleaning up): its folder goes next time.
    live.kill("SIGKILL");
    await live.status;
    live = undefined;
    const third = await preparePluginRunRoot(data);
    assert.deepEqual(third.removed, [liveDir]);
    assert.ok(Deno.lstatSync(mine).isDirectory, "this process's own stays");
  } finally {
    if (live) {
      live.kill("SIGKILL");
      await live.status;
    }
    await Deno.remove(tmp, { recursive: true });
  }
});

Deno.test("a data dir too long for unix sockets: the short folder in the temp dir is found and cleaned again", async () => {
  const tmp = await Deno.makeTempDir({ prefix: "gk-runlong-" });
  const data = join(tmp, "a-rather-long-folder-name-for-the-data".repeat(2));
  let short: string | undefined;
  try {
    const first = await preparePluginRunRoot(data);
    short = first.dir;
    assert.ok(short.startsWith(join(tmpdir(), "goatkit-run-")), short);
    assert.match(first.fallback ?? "", /104-byte unix socket limit/);
    const dead = otherProcess(
      `console.log(await rd.makeRunDir(${JSON.stringify(short)}, "x"));`,
    );
    const stale = await firstLine(dead);
    assert.equal((await dead.status).code, 0);
    const again = await preparePluginRunRoot(data);
    assert.equal(again.dir, short, "the same folder for the same data dir");
    assert.deepEqual(again.removed, [stale]);
  } finally {
    if (short) await Deno.remove(short, { recursive: true });
    await Deno.remove(tmp, { recursive: true });
  }
});
