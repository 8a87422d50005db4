// One "host" for the two-host scheduler test: runs a per-second job with a
// PostgreSQL tick claim for the given time, printing each tick it ran.
import pg from "pg";
import { encodeJson, Manager, PgJobClaim, Scheduler } from "../../mod.ts";

const [url, name, ms] = Deno.args;
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
    console.log(Math.round(Date.now() / 1000));
    return Promise.resolve(encodeJson({ ok: true }));
  },
  shutdown: () => Promise.resolve(),
});
const scheduler = new Scheduler(manager, { claim: new PgJobClaim(pool) });
scheduler.start();
await new Promise((r) => setTimeout(r, Number(ms)));
scheduler.stop();
await scheduler.idle();
await manager.shutdownAll();
await pool.end();
