// One "host" for the two-host scheduler test: runs a per-second job with a
// PostgreSQL tick claim on a fake clock that starts at the given epoch ms.
// Prints "ready", waits for a line on stdin, then advances its clock one
// second at a time for the given number of ticks, printing (in epoch
// seconds) each tick it ran.
import pg from "pg";
import { Manager } from "../../host/manager.ts";
import { encodeJson } from "../../host/model/plugin.ts";
import { PgJobClaim, Scheduler } from "../../host/scheduler.ts";
import { FakeClock } from "./fake_clock.ts";

const [url, name, start, ticks] = Deno.args;
const clock = new FakeClock(Number(start));
const pool = new pg.Pool({ connectionString: url, max: 2 });
const manager = new Manager();
await manager.register({
  gkRegister: () => ({
    name: name!,
    version: "1.0.0",
    jobs: [{
      id: "every-second",
      handler: "tick",
      schedule: "* * * * * *",
      enabled: true,
    }],
  }),
  init: () => Promise.resolve(),
  call: () => {
    console.log(clock.now() / 1000);
    return Promise.resolve(encodeJson({ ok: true }));
  },
  shutdown: () => Promise.resolve(),
});
const scheduler = new Scheduler(manager, {
  claim: new PgJobClaim(pool),
  clock,
});
scheduler.start();
await pool.query("SELECT 1"); // connected before the race
console.log("ready");
await Deno.stdin.read(new Uint8Array(16));
for (let i = 0; i < Number(ticks); i++) {
  await clock.advance(1000);
  await scheduler.idle();
}
scheduler.stop();
await manager.shutdownAll();
await pool.end();
