/**
 * What the browser tests share: Debian's `/usr/bin/chromium` driven by
 * npm:playwright-core, headless and offline, and where screenshots go
 * (only when `GOATKIT_SCREENSHOT_DIR` asks for them, so a run leaves
 * nothing behind).
 *
 * @module
 */

import { type Browser, chromium } from "playwright-core";

/** Debian's Chromium (the `chromium` apt package; `.ci/setup` installs it). */
export const CHROMIUM = "/usr/bin/chromium";

/** Whether Chromium is installed: without it a browser test cannot run. */
export const hasChromium: boolean = (() => {
  try {
    return Deno.statSync(CHROMIUM).isFile;
  } catch {
    return false;
  }
})();

/** Where screenshots go, when asked for. */
export const SCREENSHOT_DIR: string | undefined = Deno.env.get(
  "GOATKIT_SCREENSHOT_DIR",
);

/** Launches headless Chromium with nothing reaching out of the machine. */
export function launchChromium(): Promise<Browser> {
  return chromium.launch({
    executablePath: CHROMIUM,
    args: [
      "--headless",
      "--no-sandbox",
      "--disable-gpu",
      "--disable-background-networking",
      "--disable-quic",
      "--no-first-run",
      "--disable-component-update",
      "--disable-sync",
    ],
  });
}
