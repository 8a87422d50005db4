// Shared by the `gk` tests: running the CLI as a real subprocess from a
// temp directory outside the repository, and plugin folders built from the
// hello-c example with a manifest of their own (so the module registers
// exactly what the manifest says, as the host requires).

import { join } from "node:path";

/** The repository root. */
export const ROOT = new URL("..", import.meta.url).pathname.replace(/\/$/, "");
/** The CLI entry. */
export const CLI = join(ROOT, "host/cli/main.ts");
/** The hello-c example (C source, build script, a built module). */
export const HELLO_C = join(ROOT, "fixtures/plugins/hello-c");

/**
 * The environment of a child process: this one's, without `INIT_CWD` (a
 * `deno task test` run sets it to the repository, and `deno task` keeps an
 * inherited value), plus `extra`.
 */
export function childEnv(extra: Record<string, string> = {}): Record<
  string,
  string
> {
  const env = Deno.env.toObject();
  delete env.INIT_CWD;
  return { ...env, NO_COLOR: "1", ...extra };
}

/** What a finished `gk` printed. */
export interface GkResult {
  /** Exit code. */
  code: number;
  /** Standard output. */
  out: string;
  /** Standard error. */
  err: string;
}

/** Runs `deno run -A host/cli/main.ts …args` in `cwd`. */
export async function gk(
  cwd: string,
  args: string[],
  env: Record<string, string> = {},
): Promise<GkResult> {
  return await run(Deno.execPath(), ["run", "-A", CLI, ...args], cwd, env);
}

/** Runs any command in `cwd` with {@linkcode childEnv}. */
export async function run(
  command: string,
  args: string[],
  cwd: string,
  env: Record<string, string> = {},
): Promise<GkResult> {
  const r = await new Deno.Command(command, {
    args,
    cwd,
    stdin: "null",
    stdout: "piped",
    stderr: "piped",
    clearEnv: true,
    env: childEnv(env),
  }).output();
  return {
    code: r.code,
    out: new TextDecoder().decode(r.stdout),
    err: new TextDecoder().decode(r.stderr),
  };
}

/** Options of {@linkcode makeCPlugin}. */
export interface CPluginOptions {
  /** Plugin name. */
  name: string;
  /** Version. @default "1.0.0" */
  version?: string;
  /** Requested permissions. @default ["log"] */
  permissions?: string[];
  /** Build it (clang, through the example's build.sh). @default true */
  build?: boolean;
}

/**
 * A plugin folder at `<parent>/<name>`: hello-c's C source and build
 * script with a minimal manifest of its own (one route, `GET
 * /api/plugins/<name>` → `hello`), built with clang unless told otherwise.
 */
export async function makeCPlugin(
  parent: string,
  options: CPluginOptions,
): Promise<string> {
  const dir = join(parent, options.name);
  await Deno.mkdir(dir, { recursive: true });
  for (const f of ["plugin.c", "build.sh"]) {
    await Deno.copyFile(join(HELLO_C, f), join(dir, f));
  }
  await writeManifest(dir, options);
  if (options.build ?? true) {
    const r = await run("sh", ["build.sh"], dir);
    if (r.code !== 0) {
      throw new Error(`Cannot build ${options.name}: ${r.err}${r.out}`);
    }
  }
  return dir;
}

/** Writes the minimal manifest of {@linkcode makeCPlugin}. */
export async function writeManifest(
  dir: string,
  options: CPluginOptions,
): Promise<void> {
  await Deno.writeTextFile(
    join(dir, "manifest.json"),
    JSON.stringify(
      {
        name: options.name,
        version: options.version ?? "1.0.0",
        description: "A test plugin built from hello-c",
        routes: [{
          method: "GET",
          path: `/api/plugins/${options.name}`,
          handler: "hello",
        }],
        permissions: options.permissions ?? ["log"],
      },
      null,
      2,
    ) + "\n",
  );
}

/** A child process whose output is read as it comes. */
export interface Streaming {
  /** The process. */
  child: Deno.ChildProcess;
  /** Everything on stdout so far. */
  out(): string;
  /** Everything on stderr so far. */
  err(): string;
  /** Resolves when stdout+stderr match `re` (fails after `ms`). */
  waitFor(re: RegExp, ms?: number): Promise<void>;
  /** Exit status, after the output was read. */
  status: Promise<Deno.CommandStatus>;
}

/** Starts `gk …args` in `cwd` with piped output. */
export function spawnGk(cwd: string, args: string[]): Streaming {
  const child = new Deno.Command(Deno.execPath(), {
    args: ["run", "-A", CLI, ...args],
    cwd,
    stdin: "null",
    stdout: "piped",
    stderr: "piped",
    clearEnv: true,
    env: childEnv(),
  }).spawn();
  let out = "";
  let err = "";
  const read = async (s: ReadableStream<Uint8Array>, to: "out" | "err") => {
    for await (const chunk of s.pipeThrough(new TextDecoderStream())) {
      if (to === "out") out += chunk;
      else err += chunk;
    }
  };
  const reading = Promise.all([
    read(child.stdout, "out"),
    read(child.stderr, "err"),
  ]);
  const status = reading.then(() => child.status);
  const waitFor = async (re: RegExp, ms = 60_000) => {
    const until = Date.now() + ms;
    while (!re.test(out + err)) {
      if (Date.now() > until) {
        throw new Error(`gave up waiting for ${re}:\n${out}\n${err}`);
      }
      await new Promise((r) => setTimeout(r, 50));
    }
  };
  return { child, out: () => out, err: () => err, waitFor, status };
}
