// Mail service: a real SMTP exchange with an SMTP server (npm:smtp-server)
// listening on 127.0.0.1, messages parsed with npm:mailparser; the outbox
// default writes .eml files into a temp dir.

import assert from "node:assert/strict";
import { SMTPServer } from "smtp-server";
import { simpleParser } from "mailparser";
import {
  EmailRateLimiter,
  EmailRateLimitError,
  EmailRejectedError,
  isPlainAddress,
  type Mailer,
  OutboxMailer,
  SmtpMailer,
} from "../host/services/mod.ts";

interface Received {
  from: string;
  to: string[];
  raw: string;
}

async function startSmtp(): Promise<
  { port: number; received: Received[]; close(): Promise<void> }
> {
  const received: Received[] = [];
  const server = new SMTPServer({
    authOptional: true,
    disabledCommands: ["STARTTLS", "AUTH"],
    logger: false,
    // deno-lint-ignore no-explicit-any
    onData(stream: any, session: any, callback: (err?: Error) => void) {
      const chunks: Uint8Array[] = [];
      stream.on("data", (c: Uint8Array) => chunks.push(c));
      stream.on("end", () => {
        received.push({
          from: session.envelope.mailFrom.address,
          // deno-lint-ignore no-explicit-any
          to: session.envelope.rcptTo.map((r: any) => r.address),
          raw: new TextDecoder().decode(concat(chunks)),
        });
        callback();
      });
    },
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  const port = (server.server.address() as { port: number }).port;
  return {
    port,
    received,
    close: () => new Promise<void>((resolve) => server.close(() => resolve())),
  };
}

function concat(parts: Uint8Array[]): Uint8Array {
  const out = new Uint8Array(parts.reduce((n, p) => n + p.length, 0));
  let off = 0;
  for (const p of parts) {
    out.set(p, off);
    off += p.length;
  }
  return out;
}

async function refusals(mailer: Mailer) {
  for (
    const message of [
      { to: "a@example.com\r\nBcc: evil@example.com", subject: "x", body: "b" },
      {
        to: "a@example.com",
        subject: "hi\r\nBcc: evil@example.com",
        body: "b",
      },
      { to: "a@example.com", subject: "hi\nX-Evil: 1", body: "b" },
      { to: "a@example.com, b@example.com", subject: "x", body: "b" },
      { to: "Someone <a@example.com>", subject: "x", body: "b" },
      { to: "not-an-address", subject: "x", body: "b" },
      { to: "", subject: "x", body: "b" },
    ]
  ) {
    await assert.rejects(
      mailer.send("hello", message),
      EmailRejectedError,
      message.to,
    );
  }
}

Deno.test("email: real SMTP exchange", async (t) => {
  const smtp = await startSmtp();
  const mailer = new SmtpMailer({
    url: `smtp://127.0.0.1:${smtp.port}`,
    from: "host@example.com",
    rateLimit: { limit: 3, windowMs: 60_000 },
  });
  try {
    await t.step("plain text message arrives as sent", async () => {
      await mailer.send("hello", {
        to: "alice@example.com",
        subject: "Grüße from the plugin",
        body: "Line one\nLine two with ümlaut",
      });
      assert.equal(smtp.received.length, 1);
      const got = smtp.received[0];
      assert.equal(got.from, "host@example.com");
      assert.deepEqual(got.to, ["alice@example.com"]);
      const parsed = await simpleParser(got.raw);
      assert.equal(parsed.subject, "Grüße from the plugin");
      assert.equal(parsed.text?.trim(), "Line one\nLine two with ümlaut");
      assert.equal(parsed.headers.get("x-goatkit-plugin"), "hello");
      assert.equal(parsed.html, false);
    });

    await t.step("HTML message arrives as HTML", async () => {
      await mailer.send("hello", {
        to: "bob@example.com",
        subject: "html",
        body: "<p>Hi <b>Bob</b></p>",
        html: true,
      });
      const parsed = await simpleParser(smtp.received[1].raw);
      assert.equal(String(parsed.html).trim(), "<p>Hi <b>Bob</b></p>");
    });

    await t.step("header injection and bad addresses are refused", async () => {
      await refusals(mailer);
      assert.equal(smtp.received.length, 2, "nothing more was sent");
    });

    await t.step("per-plugin rate limit", async () => {
      await mailer.send("hello", {
        to: "c@example.com",
        subject: "3rd",
        body: "b",
      });
      const e = await mailer.send("hello", {
        to: "c@example.com",
        subject: "4th",
        body: "b",
      })
        .then(() => null, (e) => e);
      assert.ok(e instanceof EmailRateLimitError, String(e));
      assert.ok(e.retryAfterMs > 0 && e.retryAfterMs <= 60_000);
      // Another plugin has its own budget.
      await mailer.send("other", {
        to: "c@example.com",
        subject: "x",
        body: "b",
      });
      assert.equal(smtp.received.length, 4);
    });
  } finally {
    await mailer.close();
    await smtp.close();
  }
});

Deno.test("email: outbox writes parseable .eml files", async (t) => {
  const dir = await Deno.makeTempDir();
  const mailer = new OutboxMailer({
    dir: `${dir}/outbox`,
    from: "host@example.com",
  });
  try {
    await t.step("one RFC 5322 file per message", async () => {
      await mailer.send("hello", {
        to: "alice@example.com",
        subject: "Outbox ✓",
        body: "<p>Hello</p>",
        html: true,
      });
      const files = [...Deno.readDirSync(`${dir}/outbox`)].map((e) => e.name);
      assert.equal(files.length, 1);
      assert.match(files[0], /^\d+-hello-[0-9a-f]{8}\.eml$/);
      const raw = await Deno.readFile(`${dir}/outbox/${files[0]}`);
      const text = new TextDecoder().decode(raw);
      assert.ok(text.includes("\r\n"), "CRLF line ends");
      assert.ok(!/[^\r]\n/.test(text), "no bare LF");
      const parsed = await simpleParser(text);
      assert.equal(parsed.subject, "Outbox ✓");
      assert.equal(String(parsed.html).trim(), "<p>Hello</p>");
      // deno-lint-ignore no-explicit-any
      assert.equal((parsed.to as any).value[0].address, "alice@example.com");
      // deno-lint-ignore no-explicit-any
      assert.equal((parsed.from as any).value[0].address, "host@example.com");
      assert.ok(parsed.messageId);
      assert.ok(parsed.date instanceof Date);
    });
    await t.step("refusals write nothing", async () => {
      await refusals(mailer);
      assert.equal([...Deno.readDirSync(`${dir}/outbox`)].length, 1);
    });
  } finally {
    await mailer.close();
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("email: address check and rate limiter units", () => {
  assert.ok(isPlainAddress("a.b+tag@sub.example.com"));
  assert.ok(!isPlainAddress("a@b@example.com"));
  assert.ok(!isPlainAddress(".a@example.com"));
  assert.ok(!isPlainAddress("a@-example.com"));
  const limiter = new EmailRateLimiter({ limit: 2, windowMs: 1000 });
  limiter.take("p", 0);
  limiter.take("p", 10);
  assert.throws(() => limiter.take("p", 20), EmailRateLimitError);
  limiter.take("p", 1001); // the first one left the window
  assert.throws(
    () => new OutboxMailer({ dir: "/tmp/x", from: "bad" }),
    TypeError,
  );
});
