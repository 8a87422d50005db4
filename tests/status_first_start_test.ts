/**
 * The first start as a new user sees it: `deno task serve`'s command line
 * (taken from deno.json, with its `GOATKIT_EXAMPLE_PLUGINS=1`) run in an
 * empty folder with no settings at all, so with the embedded database
 * (PGlite). It says what it waits for and how long it took, keeps its data
 * and plugins folders in `./data` of that folder, and serves the example
 * plugins of the repository.
 */

import assert from "node:assert/strict";
import { join } from "node:path";

const ROOT = new URL("..", import.meta.url).pathname;

Deno.test("first start: progress lines for the embedded database and plugin loading; examples served; ./data/plugins created", async () => {
  const config = JSON.parse(await Deno.readTextFile(join(ROOT, "deno.json")));
  const task: string = config.tasks.serve;
  assert.match(task, /^GOATKIT_EXAMPLE_PLUGINS=1 deno run /, task);
  assert.equal(config.license, "MIT");

  const cwd = await Deno.makeTempDir({ prefix: "gk_first_start_" });
  const env: Record<string, string> = {};
  for (const [k, v] of Object.entries(Deno.env.toObject())) {
    // A clean environment as on a new machine: no host settings.
    if (!k.startsWith("GOATKIT_") && k !== "DATABASE_URL" && k !== "PORT") {
      env[k] = v;
    }
  }
  const child = new Deno.Command(Deno.execPath(), {
    args: ["run", "--allow-all", join(ROOT, "host/serve.ts")],
    cwd,
    env: { ...env, GOATKIT_EXAMPLE_PLUGINS: "1", PORT: "0", NO_COLOR: "1" },
    clearEnv: true,
    stdin: "null",
    stdout: "piped",
    stderr: "piped",
  }).spawn();
  const killer = setTimeout(() => child.kill("SIGKILL"), 180_000);
  const out: string[] = [];
  const stderr = new Response(child.stderr).text();
  try {
    // Read lines until the host says it is ready.
    const reader = child.stdout.pipeThrough(new TextDecoderStream())
      .getReader();
    let buffered = "";
    while (!out.some((l) => l.startsWith("Ready:"))) {
      const { value, done } = await reader.read();
      if (done) break;
      buffered += value;
      const parts = buffered.split("\n");
      buffered = parts.pop()!;
      out.push(...parts);
    }
    reader.releaseLock();
    const text = out.join("\n");
    assert.match(
      text,
      /starting embedded database \(first start can take 10-20 s\)…/,
      text,
    );
    assert.match(text, /… embedded database ready in \d+\.\d s/, text);
    assert.match(
      text,
      /loading plugins from \.\/data\/plugins and the examples in /,
    );
    assert.match(text, /… \d+ plugin\(s\) loaded(, \d+ failed)? in \d+\.\d s/);
    assert.ok((await Deno.stat(join(cwd, "data", "plugins"))).isDirectory);

    // The example C plugin answers its route.
    const url = text.match(/Listening on (http:\/\/\S+)/)![1]!;
    const hello = await fetch(`${url}/api/plugins/hello-c?name=Ana`);
    assert.equal(hello.status, 200, await hello.clone().text());
    assert.match(JSON.stringify(await hello.json()), /Ana/);
  } finally {
    clearTimeout(killer);
    try {
      child.kill("SIGTERM");
    } catch { /* gone */ }
    await child.status;
    await stderr;
    await Deno.remove(cwd, { recursive: true });
  }
});
