// The host's stdout log lines written once per event-loop turn
// (host/telemetry/stdout_lines.ts): in order, nothing lost at a normal exit
// or an uncaught error (real subprocesses), partial writes completed, a
// gone stdout never thrown at the logging caller.

import assert from "node:assert/strict";
import { StdoutLines } from "../host/telemetry/stdout_lines.ts";

const dec = new TextDecoder();

/** A writer that records each write and takes at most `chunk` bytes. */
function recorder(chunk = Infinity) {
  const writes: string[] = [];
  return {
    writes,
    out: {
      writeSync(p: Uint8Array): number {
        const n = Math.min(p.length, chunk);
        writes.push(dec.decode(p.subarray(0, n)));
        return n;
      },
    },
  };
}

Deno.test("lines queued in one turn go out in one write, in order, after the turn", async () => {
  const r = recorder();
  const lines = new StdoutLines({ out: r.out });
  for (let i = 0; i < 100; i++) lines.write(`line ${i}`);
  assert.equal(r.writes.length, 0, "nothing is written during the turn");
  await new Promise((resolve) => setTimeout(resolve, 5));
  assert.equal(r.writes.length, 1);
  assert.equal(
    r.writes[0],
    Array.from({ length: 100 }, (_, i) => `line ${i}\n`).join(""),
  );
  lines.write("later");
  await new Promise((resolve) => setTimeout(resolve, 5));
  assert.deepEqual(r.writes.slice(1), ["later\n"]);
});

Deno.test("a full queue is written at once; partial writes are completed", () => {
  const r = recorder(7);
  const lines = new StdoutLines({ out: r.out, maxBytes: 32 });
  lines.write("0123456789");
  lines.write("abcdefghij");
  assert.equal(r.writes.length, 0);
  lines.write("ABCDEFGHIJ"); // 33 bytes queued: written now, 7 at a time
  assert.equal(r.writes.join(""), "0123456789\nabcdefghij\nABCDEFGHIJ\n");
  assert.equal(r.writes.length, 5);
  lines.flush(); // nothing left
  assert.equal(r.writes.length, 5);
});

Deno.test("a stdout that is gone drops the lines without throwing at the caller", () => {
  let calls = 0;
  const lines = new StdoutLines({
    out: {
      writeSync(): number {
        calls++;
        throw new Deno.errors.BrokenPipe("Broken pipe (os error 32)");
      },
    },
    maxBytes: 1,
  });
  lines.write("lost");
  lines.write("lost too");
  assert.equal(calls, 2);
});

async function runChild(ending: string): Promise<Deno.CommandOutput> {
  const module = new URL("../host/telemetry/stdout_lines.ts", import.meta.url)
    .href;
  const source = `
    import { StdoutLines } from ${JSON.stringify(module)};
    const lines = new StdoutLines();
    lines.flushAtExit();
    for (let i = 0; i < 1000; i++) lines.write("line " + i);
    ${ending}
  `;
  return await new Deno.Command(Deno.execPath(), {
    args: ["eval", "--no-config", source],
    stdout: "piped",
    stderr: "piped",
  }).output();
}

Deno.test("every queued line reaches a real stdout pipe at Deno.exit, at the end of the script, at an uncaught rejection and error", async () => {
  const want = Array.from({ length: 1000 }, (_, i) => `line ${i}\n`).join("");
  const cases: [string, number][] = [
    ["Deno.exit(3);", 3],
    ["", 0],
    ['throw new Error("boom");', 1],
    ['setTimeout(() => { throw new Error("late"); }, 0);', 1],
  ];
  for (const [ending, code] of cases) {
    const out = await runChild(ending);
    assert.equal(out.code, code, dec.decode(out.stderr));
    assert.equal(dec.decode(out.stdout), want, `ending: ${ending || "none"}`);
  }
});
