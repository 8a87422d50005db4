// `deno run host/serve.ts` as a real subprocess for fault and load tests and
// the HTTP load benchmark: temp data and plugins folders (fixture plugins
// copied in), a private schema on the test PostgreSQL, the URL and admin
// token read from its output. Everything is removed by `cleanup()`.
//
// With `GOATKIT_TEST_HOST_CPU_PROFILE=<dir>` set, each host runs under V8's
// profiler and writes its profile (main thread and workers) into `<dir>`
// when `cleanup()` stops it: how the traces in the notes were taken.

import { join } from "node:path";
import { privateSchema } from "../server_helpers.ts";

const ROOT = new URL("../..", import.meta.url).pathname;
const CPU_PROFILE_DIR = Deno.env.get("GOATKIT_TEST_HOST_CPU_PROFILE");

/** Copies a folder's files (recursively, no symlinks) into `to`. */
async function copy(from: string, to: string): Promise<void> {
  await Deno.mkdir(to, { recursive: true });
  for await (const e of Deno.readDir(from)) {
    if (e.isDirectory) await copy(join(from, e.name), join(to, e.name));
    else if (e.isFile) {
      await Deno.copyFile(join(from, e.name), join(to, e.name));
    }
  }
}

/** Options of {@linkcode startHost}. */
export interface StartHostOptions {
  /** Fixture folders (relative to `fixtures/`) copied into the plugins folder. */
  plugins: string[];
  /** Extra environment (settings such as `GOATKIT_MAX_IN_FLIGHT`). */
  env?: Record<string, string>;
  /** Arguments after `host/serve.ts` (such as `--log-format json`). */
  args?: string[];
  /**
   * Plugins to enable through the API once the host is ready. (The host's
   * rows in `goatkit.*` are scoped by the application schema, so each test
   * host, on its own private schema, starts from nothing.)
   */
  enable?: string[];
  /** Longest wait for "Ready", in ms. @default 120000 */
  startTimeoutMs?: number;
  /**
   * A hard cap on the process's life, in ms: it is killed (SIGKILL) after
   * it, so a hung host fails its test instead of hanging the suite.
   * @default 300000
   */
  lifetimeMs?: number;
  /**
   * Start on an earlier host's data folder and/or database (a restart, or a
   * second host sharing the database): what is reused is left for that
   * host's `cleanup()`. Give `token` when reusing `data` (no new admin
   * token is printed then).
   */
  reuse?: { data?: string; db?: HostDatabase; token?: string };
}

/** The private schema a test host uses. */
export interface HostDatabase {
  /** The connection URL (search_path set to the schema). */
  url: string;
  /** Drops the schema. */
  drop(): Promise<void>;
}

/** A running host process. */
export interface HostProcess {
  /** Base URL, such as `http://127.0.0.1:40123`. */
  url: string;
  /** The admin token printed at first start. */
  token: string;
  /** The child process. */
  child: Deno.ChildProcess;
  /** Its temp folder (the data folder is `<data>/d`). */
  data: string;
  /** Its database. */
  db: HostDatabase;
  /** Everything it printed on stdout so far. */
  stdout(): string;
  /** Everything it printed on stderr so far. */
  stderr(): string;
  /** Resolves when stdout contains a match of `re` (rejects at exit). */
  waitForOutput(re: RegExp): Promise<void>;
  /** Sends a signal (ignored when the process is gone). */
  signal(sig: Deno.Signal): void;
  /** The exit status (waits for it). */
  status: Promise<Deno.CommandStatus>;
  /** Kills the process if still running, removes its folders and schema. */
  cleanup(): Promise<void>;
}

/** Starts `host/serve.ts` with `options.plugins` and waits until it is ready. */
export async function startHost(
  options: StartHostOptions,
): Promise<HostProcess> {
  const data = options.reuse?.data ??
    await Deno.makeTempDir({ prefix: "gk_host_" });
  const plugins = join(data, "plugins");
  await Deno.mkdir(plugins, { recursive: true });
  for (const p of options.plugins) {
    await copy(join(ROOT, "fixtures", p), join(plugins, p.split("/").at(-1)!));
  }
  const db = options.reuse?.db ?? await privateSchema();
  const child = new Deno.Command(Deno.execPath(), {
    args: [
      "run",
      "--allow-all",
      ...(CPU_PROFILE_DIR
        ? ["--cpu-prof", `--cpu-prof-dir=${CPU_PROFILE_DIR}`]
        : []),
      join(ROOT, "host/serve.ts"),
      ...(options.args ?? []),
    ],
    cwd: data,
    env: {
      PORT: "0",
      GOATKIT_HOSTNAME: "127.0.0.1",
      GOATKIT_DATA_DIR: join(data, "d"),
      GOATKIT_PLUGINS_DIR: plugins,
      GOATKIT_HOT_RELOAD: "false",
      DATABASE_URL: db.url,
      NO_COLOR: "1",
      ...(options.env ?? {}),
    },
    stdin: "null",
    stdout: "piped",
    stderr: "piped",
  }).spawn();
  const killer = setTimeout(() => {
    try {
      child.kill("SIGKILL");
    } catch { /* gone */ }
  }, options.lifetimeMs ?? 300_000);
  const status = child.status.finally(() => clearTimeout(killer));
  let out = "";
  let err = "";
  const waiters: {
    re: RegExp;
    resolve: () => void;
    reject: (e: Error) => void;
  }[] = [];
  const check = () => {
    for (const w of waiters.splice(0)) {
      if (w.re.test(out)) w.resolve();
      else waiters.push(w);
    }
  };
  const reading = (async () => {
    for await (
      const chunk of child.stdout.pipeThrough(new TextDecoderStream())
    ) {
      out += chunk;
      check();
    }
  })();
  const readingErr = (async () => {
    for await (
      const chunk of child.stderr.pipeThrough(new TextDecoderStream())
    ) {
      err += chunk;
    }
  })();
  const ended = Promise.all([reading, readingErr]).then(() => {
    for (const w of waiters.splice(0)) {
      w.reject(
        new Error(`host exited before printing ${w.re}: ${out}\n${err}`),
      );
    }
  });
  const waitForOutput = (re: RegExp) =>
    new Promise<void>((resolve, reject) => {
      waiters.push({ re, resolve, reject });
      check();
    });
  const signal = (sig: Deno.Signal) => {
    try {
      child.kill(sig);
    } catch { /* gone */ }
  };
  const cleanup = async () => {
    if (CPU_PROFILE_DIR) {
      // The profile is written when the host exits: let it drain and stop.
      signal("SIGTERM");
      await Promise.race([
        status,
        new Promise((resolve) => setTimeout(resolve, 15_000)),
      ]);
    }
    signal("SIGKILL");
    await status;
    await ended;
    if (!options.reuse?.data) {
      await Deno.remove(data, { recursive: true }).catch(() => {});
    }
    if (!options.reuse?.db) await db.drop();
  };
  try {
    let startTimer: ReturnType<typeof setTimeout> | undefined;
    await Promise.race([
      waitForOutput(/Ready: \d+ plugin/),
      new Promise((_, reject) => {
        startTimer = setTimeout(
          () => reject(new Error(`host not ready in time: ${out}\n${err}`)),
          options.startTimeoutMs ?? 120_000,
        );
      }),
    ]).finally(() => clearTimeout(startTimer));
  } catch (e) {
    await cleanup();
    throw e;
  }
  const url = /Listening on (http:\/\/\S+)/.exec(out)?.[1];
  // Text output shows the token; JSON output (`--log-format json`) only
  // writes it to <dataDir>/admin_token.
  const token = /^\s+(gk_\S+)$/m.exec(out)?.[1] ?? options.reuse?.token ??
    (await Deno.readTextFile(join(data, "d", "admin_token")).catch(() => ""))
      .trim();
  if (!url || !token) {
    await cleanup();
    throw new Error(`no URL or token in the host's output: ${out}`);
  }
  for (const name of options.enable ?? []) {
    const res = await fetch(`${url}/api/v1/plugins/${name}/enable`, {
      method: "POST",
      headers: { authorization: `Bearer ${token}`, connection: "close" },
    });
    await res.body?.cancel();
    if (res.status !== 200) {
      await cleanup();
      throw new Error(`Cannot enable plugin "${name}": ${res.status}`);
    }
  }
  return {
    url,
    token,
    data,
    db,
    child,
    stdout: () => out,
    stderr: () => err,
    waitForOutput,
    signal,
    status,
    cleanup,
  };
}

/** The cookies a response sets, by name. */
export function cookiesOf(res: Response): Record<string, string> {
  const out: Record<string, string> = {};
  for (const c of res.headers.getSetCookie()) {
    const [pair] = c.split(";");
    const eq = pair!.indexOf("=");
    out[pair!.slice(0, eq)] = pair!.slice(eq + 1);
  }
  return out;
}

/**
 * Logs in on `h` with its admin token through the login form (CSRF cookie
 * and field); returns the session cookie's value.
 */
export async function login(h: HostProcess): Promise<string> {
  const page = await fetch(`${h.url}/login`);
  const csrf = cookiesOf(page).gk_login_csrf!;
  await page.body?.cancel();
  const res = await fetch(`${h.url}/login`, {
    method: "POST",
    body: new URLSearchParams({ _csrf: csrf, token: h.token }),
    headers: {
      cookie: `gk_login_csrf=${csrf}`,
      "content-type": "application/x-www-form-urlencoded",
    },
    redirect: "manual",
  });
  await res.body?.cancel();
  if (res.status !== 303) throw new Error(`login answered ${res.status}`);
  const session = cookiesOf(res).gk_session;
  if (!session) throw new Error("login set no session cookie");
  return session;
}
