/**
 * The e-mail service: SMTP through `npm:nodemailer` (`SMTP_URL`), or by
 * default `.eml` files (RFC 5322, built by nodemailer) in `./data/outbox`.
 *
 * Both refuse a recipient that is not one plain address and CR/LF (or other
 * control characters) in the recipient or subject with
 * {@linkcode EmailRejectedError}, and limit each plugin to a number of
 * messages per window (default 30 per minute) with
 * {@linkcode EmailRateLimitError}. Which recipients a plugin may write to is
 * the guarded HostAPI's business (`email:` grants).
 *
 * @module
 */

import nodemailer from "nodemailer";
import { join } from "node:path";
import type { EmailMessage } from "../model/host_api.ts";
import { EmailRateLimitError, EmailRejectedError } from "./errors.ts";

/**
 * Sends plugin e-mail.
 *
 * @example
 * ```ts ignore
 * import { OutboxMailer } from "./mailer.ts";
 * const mailer = new OutboxMailer({ dir: "./data/outbox", from: "host@example.com" });
 * await mailer.send("hello", { to: "a@example.com", subject: "Hi", body: "Hello" });
 * await mailer.close();
 * ```
 */
export interface Mailer {
  /** Sends `message` on behalf of `plugin`. */
  send(plugin: string, message: EmailMessage): Promise<void>;
  /** Releases connections. */
  close(): Promise<void>;
}

/** Per-plugin rate limit. */
export interface EmailRateLimit {
  /** Messages allowed per window and plugin. @default {30} */
  limit?: number;
  /** Window length in ms. @default {60000} */
  windowMs?: number;
}

const ADDRESS_REGEXP =
  /^[A-Za-z0-9.!#$%&'*+/=?^_`{|}~-]+@[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?)*$/;

/**
 * Whether `address` is one plain e-mail address (`local@domain`, no display
 * name, no list, no control characters).
 *
 * @example
 * ```ts
 * import { isPlainAddress } from "./mailer.ts";
 * isPlainAddress("a@example.com"); // true
 * isPlainAddress("a@example.com\r\nBcc: b@example.com"); // false
 * ```
 */
export function isPlainAddress(address: string): boolean {
  return address.length <= 254 && ADDRESS_REGEXP.test(address) &&
    !address.startsWith(".") && !address.includes("..");
}

// deno-lint-ignore no-control-regex
const CONTROL_REGEXP = /[\u0000-\u0008\u000a-\u001f\u007f]/;

/**
 * Throws {@linkcode EmailRejectedError} unless `message` may be sent:
 * one plain recipient, no control characters in recipient or subject.
 */
export function checkEmailMessage(plugin: string, message: EmailMessage): void {
  if (typeof message.to !== "string" || CONTROL_REGEXP.test(message.to)) {
    throw new EmailRejectedError(
      plugin,
      "recipient contains CR, LF or control characters",
    );
  }
  if (
    typeof message.subject !== "string" || CONTROL_REGEXP.test(message.subject)
  ) {
    throw new EmailRejectedError(
      plugin,
      "subject contains CR, LF or control characters",
    );
  }
  if (!isPlainAddress(message.to)) {
    throw new EmailRejectedError(
      plugin,
      `"${message.to}" is not one valid e-mail address`,
    );
  }
  if (typeof message.body !== "string") {
    throw new EmailRejectedError(plugin, "body must be a string");
  }
}

/**
 * A sliding-window counter per plugin.
 *
 * @example
 * ```ts
 * import { EmailRateLimiter } from "./mailer.ts";
 * const limiter = new EmailRateLimiter({ limit: 1, windowMs: 60_000 });
 * limiter.take("hello"); // fine
 * // limiter.take("hello") would now throw EmailRateLimitError
 * ```
 */
export class EmailRateLimiter {
  #limit: number;
  #windowMs: number;
  #sent = new Map<string, number[]>();

  /** Creates a limiter of `limit` messages per `windowMs`. */
  constructor(opts: EmailRateLimit = {}) {
    this.#limit = opts.limit ?? 30;
    this.#windowMs = opts.windowMs ?? 60_000;
  }

  /** Counts one message for `plugin`, or throws {@linkcode EmailRateLimitError}. */
  take(plugin: string, now: number = Date.now()): void {
    const times = (this.#sent.get(plugin) ?? []).filter((t) =>
      now - t < this.#windowMs
    );
    if (times.length >= this.#limit) {
      this.#sent.set(plugin, times);
      throw new EmailRateLimitError(
        plugin,
        this.#limit,
        this.#windowMs,
        times[0] + this.#windowMs - now,
      );
    }
    times.push(now);
    this.#sent.set(plugin, times);
  }
}

/** Builds the nodemailer message for `message`. */
function mailOptions(from: string, plugin: string, message: EmailMessage) {
  return {
    from,
    to: message.to,
    subject: message.subject,
    ...(message.html ? { html: message.body } : { text: message.body }),
    headers: { "X-GoatKit-Plugin": plugin },
  };
}

/** Options of the mailers. */
export interface MailerOptions {
  /** The sender address of every message. */
  from: string;
  /** Per-plugin rate limit. */
  rateLimit?: EmailRateLimit;
}

/**
 * Sends through an SMTP server given as a URL (`smtp://user:pass@host:587`,
 * `smtps://…:465`), as nodemailer understands it.
 *
 * @example
 * ```ts ignore
 * import { SmtpMailer } from "./mailer.ts";
 * const mailer = new SmtpMailer({ url: "smtp://127.0.0.1:2525", from: "host@example.com" });
 * await mailer.send("hello", { to: "a@example.com", subject: "Hi", body: "Hello" });
 * await mailer.close();
 * ```
 */
export class SmtpMailer implements Mailer {
  // deno-lint-ignore no-explicit-any
  #transport: any;
  #from: string;
  #limiter: EmailRateLimiter;

  /** Creates an SMTP transport for `url` (one connection per message). */
  constructor(opts: { url: string } & MailerOptions) {
    if (!isPlainAddress(opts.from)) {
      throw new TypeError(
        `Cannot send e-mail from "${opts.from}": not a valid address`,
      );
    }
    this.#transport = nodemailer.createTransport({
      url: opts.url,
      // Bounded waits: a dead server must not hold a plugin call for minutes.
      connectionTimeout: 10_000,
      greetingTimeout: 10_000,
      socketTimeout: 30_000,
    });
    this.#from = opts.from;
    this.#limiter = new EmailRateLimiter(opts.rateLimit);
  }

  /** Sends `message` for `plugin`. */
  async send(plugin: string, message: EmailMessage): Promise<void> {
    checkEmailMessage(plugin, message);
    this.#limiter.take(plugin);
    await this.#transport.sendMail(mailOptions(this.#from, plugin, message));
  }

  /** Closes the transport. */
  close(): Promise<void> {
    this.#transport.close();
    return Promise.resolve();
  }
}

/**
 * Writes each message as an RFC 5322 `.eml` file into `dir` (created on
 * demand): `<epoch ms>-<plugin>-<random>.eml`, written to a temporary name
 * and renamed, so a reader never sees half a file.
 *
 * @example
 * ```ts ignore
 * import { OutboxMailer } from "./mailer.ts";
 * const mailer = new OutboxMailer({ dir: "./data/outbox", from: "host@example.com" });
 * await mailer.send("hello", { to: "a@example.com", subject: "Hi", body: "<b>Hi</b>", html: true });
 * ```
 */
export class OutboxMailer implements Mailer {
  // deno-lint-ignore no-explicit-any
  #transport: any;
  #dir: string;
  #from: string;
  #limiter: EmailRateLimiter;

  /** Creates an outbox in `dir`. */
  constructor(opts: { dir: string } & MailerOptions) {
    if (!isPlainAddress(opts.from)) {
      throw new TypeError(
        `Cannot send e-mail from "${opts.from}": not a valid address`,
      );
    }
    this.#transport = nodemailer.createTransport({
      streamTransport: true,
      buffer: true,
      newline: "windows",
    });
    this.#dir = opts.dir;
    this.#from = opts.from;
    this.#limiter = new EmailRateLimiter(opts.rateLimit);
  }

  /** The outbox directory. */
  get dir(): string {
    return this.#dir;
  }

  /** Writes `message` for `plugin` as an `.eml` file; returns nothing. */
  async send(plugin: string, message: EmailMessage): Promise<void> {
    checkEmailMessage(plugin, message);
    this.#limiter.take(plugin);
    const info = await this.#transport.sendMail(
      mailOptions(this.#from, plugin, message),
    );
    const bytes = new Uint8Array(info.message);
    await Deno.mkdir(this.#dir, { recursive: true });
    const name = `${Date.now()}-${plugin}-${
      crypto.randomUUID().slice(0, 8)
    }.eml`;
    const tmp = join(this.#dir, `.${name}.tmp`);
    await Deno.writeFile(tmp, bytes);
    await Deno.rename(tmp, join(this.#dir, name));
  }

  /** Nothing to release. */
  close(): Promise<void> {
    return Promise.resolve();
  }
}
