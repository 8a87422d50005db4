/**
 * A `/healthz` prober run as its own process (`deno run --allow-net
 * tests/helpers/healthz_probe.ts <base url>`), so that what it measures is
 * the host's answer time and not the event loop of a test process busy with
 * thousands of connections of its own. It sends one request at a time on
 * one keep-alive connection opened before the load, every 20 ms, and prints
 * one line per probe: `<ms> <status>` (or `error <message>`), until killed.
 *
 * @module
 */

import { Http1Connection } from "./http1_client.ts";

if (import.meta.main) {
  const url = Deno.args[0];
  if (!url) throw new TypeError("Cannot probe: no base URL given");
  const probe = await Http1Connection.open(url);
  const out = Deno.stdout;
  const enc = new TextEncoder();
  await out.write(enc.encode("ready\n"));
  for (;;) {
    const t0 = performance.now();
    try {
      const res = await probe.request("/healthz");
      await out.write(
        enc.encode(`${(performance.now() - t0).toFixed(2)} ${res.status}\n`),
      );
    } catch (e) {
      await out.write(enc.encode(`error ${String(e).replaceAll("\n", " ")}\n`));
      Deno.exit(1);
    }
    await new Promise((resolve) => setTimeout(resolve, 20));
  }
}
