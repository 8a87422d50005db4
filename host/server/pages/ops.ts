/**
 * Operational admin pages: logs (filters, auto-refresh, clear), jobs (last
 * runs, run now), the permission audit log, and API tokens.
 *
 * @module
 */

import type { Context, Hono } from "hono";
import { BadRequestError } from "../plugin_http.ts";
import { LOG_LEVELS } from "../../model/host_api.ts";
import type { LogEntry } from "../../log_buffer.ts";
import { auditSearchFrom, logSearchFrom } from "../api.ts";
import type { ServerContext } from "../context.ts";
import { markup, PAGE_HEADERS, raw } from "../html.ts";
import {
  csrfField,
  flashFromQuery,
  type PageKit,
  postButton,
  render,
  table,
} from "./page_kit.ts";

/** Mounts `/admin/logs`, `/admin/jobs`, `/admin/audit` and `/admin/tokens`. */
export function mountOpsPages(
  app: Hono,
  ctx: ServerContext,
  kit: PageKit,
): void {
  const { adminPage, principal, form, csrfRefused, failure } = kit;
  // -- logs ---------------------------------------------------------------------
  // Filters: plugin, level, since/until (RFC 3339 or "15m", "2h", …), text.
  const logFilter = (c: Context) => {
    const q = logSearchFrom(c, 100, 1000);
    const bad = typeof q === "string" ? q : undefined;
    const f = typeof q === "string" ? { limit: 100 } : q;
    return {
      plugin: f.plugin,
      level: f.minLevel,
      limit: f.limit ?? 100,
      since: c.req.query("since") ?? "",
      until: c.req.query("until") ?? "",
      text: f.text ?? "",
      search: f,
      bad,
    };
  };
  const logRows = (entries: LogEntry[]) =>
    entries.length === 0
      ? markup`
        <tr>
          <td colspan="4" class="muted">No log entries.</td>
        </tr>
      `
      : markup`${
        entries.map((e) =>
          markup`
            <tr>
              <td class="mono">${e.timestamp}</td>
              <td><span class="badge level-${e.level}">${e.level}</span></td>
              <td>${e.plugin || markup`<span class="muted">host</span>`}</td>
              <td>${e.message}${
            e.fields
              ? markup`<div class="mono muted">${
                JSON.stringify(e.fields)
              }</div>`
              : ""
          }</td>
            </tr>
          `
        )
      }`;
  const queryLogs = (f: ReturnType<typeof logFilter>) =>
    ctx.logs.search(f.search);

  app.get("/admin/logs", adminPage, async (c) => {
    const p = await principal(c);
    const f = logFilter(c);
    const names = [
      ...new Set([
        ...ctx.manager.list().map((m) => m.name),
        ...ctx.manager.discovered(),
        ...ctx.logs.getAll().map((e) => e.plugin).filter((x) => x),
      ]),
    ].sort();
    const q = new URLSearchParams();
    if (f.plugin) q.set("plugin", f.plugin);
    if (f.level) q.set("level", f.level);
    if (f.since) q.set("since", f.since);
    if (f.until) q.set("until", f.until);
    if (f.text) q.set("q", f.text);
    q.set("limit", String(f.limit));
    const body = markup`
      <form class="filters" method="get" action="/admin/logs">
        <label>Plugin<select name="plugin" data-autosubmit><option value="">All</option>${
      names
        .map((n) =>
          markup`
              <option value="${n}" ${
            raw(
              n === f.plugin ? " selected" : "",
            )
          }>${n}</option>
            `
        )
    }</select></label>
        <label>Level (at least)<select name="level" data-autosubmit><option value="">All</option>${
      LOG_LEVELS
        .map((l) =>
          markup`
              <option value="${l}" ${
            raw(
              l === f.level ? " selected" : "",
            )
          }>${l}</option>
            `
        )
    }</select></label>
        <label>Limit<select name="limit" data-autosubmit>${
      [50, 100, 250, 500]
        .map((n) =>
          markup`<option${raw(n === f.limit ? " selected" : "")}>${n}</option>`
        )
    }</select></label>
        <label>Since<input name="since" value="${f.since}" placeholder="15m, 2h or RFC 3339" size="14"></label>
        <label>Until<input name="until" value="${f.until}" placeholder="RFC 3339" size="14"></label>
        <label>Text<input name="q" value="${f.text}" placeholder="contains…" size="16"></label>
        <button type="submit">Apply</button>
        <label class="check"><input type="checkbox" id="auto" checked> Auto-refresh (5 s)</label>
        <button type="button" data-gk-refresh-now="log-rows">Refresh</button>
      </form>
      <form method="post" action="/admin/logs/clear"
        data-confirm="Clear all log entries?"
        class="inline">${
      csrfField(
        p,
      )
    }<button class="danger" type="submit">Clear logs</button></form>
      ${
      f.bad ? markup`<p class="flash error">${f.bad}</p>` : ""
    }<p class="muted">${await ctx.logs.total()} entries ${
      ctx.logs.durable
        ? "in the database"
        : `in the buffer (capacity ${ctx.logs.capacity})`
    }.</p>
      <table id="logs">
        <thead>
          <tr>
            <th>Time</th>
            <th>Level</th>
            <th>Plugin</th>
            <th>Message</th>
          </tr>
        </thead>
        <tbody id="log-rows" data-gk-refresh-url="/admin/logs/rows?${q.toString()}"
          data-gk-refresh-sec="5" data-gk-refresh-toggle="auto">${
      logRows(
        await queryLogs(f),
      )
    }</tbody>
      </table>
    `;
    return render(c, ctx, p, {
      title: "Logs",
      current: "logs",
      ...(flashFromQuery(c) ? { flash: flashFromQuery(c)! } : {}),
    }, body);
  });

  app.get(
    "/admin/logs/rows",
    adminPage,
    async (c) =>
      new Response(logRows(await queryLogs(logFilter(c))).value, {
        headers: {
          ...PAGE_HEADERS,
          "content-type": "text/html; charset=utf-8",
        },
      }),
  );

  app.post("/admin/logs/clear", adminPage, async (c) => {
    if (!await form(c)) return csrfRefused(c);
    await ctx.logs.clearAll();
    ctx.options.audit?.record?.({
      plugin: "",
      action: "logs.clear",
      permission: "",
      attempted: "cleared the plugin logs",
      outcome: "cleared",
    });
    return c.redirect("/admin/logs?done=cleared", 303);
  });

  // -- jobs -----------------------------------------------------------------------
  app.get("/admin/jobs", adminPage, async (c) => {
    const p = await principal(c);
    const sched = ctx.options.scheduler;
    const jobs = sched ? await sched.list() : ctx.manager.jobs().map((j) => ({
      plugin: j.plugin,
      id: j.id,
      schedule: j.schedule,
      description: j.description ?? "",
      enabled: false,
      lastRuns: [],
    }));
    const rows = jobs.map((j) => [
      j.plugin,
      j.id,
      markup`<code>${j.schedule}</code>`,
      j.description ?? "",
      j.enabled !== false
        ? markup`<span class="badge ok">scheduled</span>`
        : markup`<span class="badge off">off</span>`,
      ("nextRun" in j && j.nextRun) ? String(j.nextRun) : "—",
      markup`${
        j.lastRuns.slice(0, 3).map((r) =>
          markup`<div><span class="badge ${
            r.outcome === "ok" ? "ok" : r.outcome === "running" ? "" : "bad"
          }">${r.outcome}</span> <span class="mono">${r.start}</span>${
            r.durationMs !== undefined ? ` ${r.durationMs} ms` : ""
          }${
            r.error
              ? markup`
                <span class="muted">${r.error}</span>
              `
              : ""
          }</div>`
        )
      }`,
      sched
        ? postButton(
          p,
          `/admin/jobs/${encodeURIComponent(j.plugin)}/${
            encodeURIComponent(j.id)
          }/run`,
          "Run now",
        )
        : "",
    ]);
    return render(
      c,
      ctx,
      p,
      {
        title: "Jobs",
        current: "jobs",
        ...(flashFromQuery(c) ? { flash: flashFromQuery(c)! } : {}),
      },
      markup`${
        sched ? "" : markup`
          <p
            class="muted">The scheduler is not running on this host; jobs are listed from the manifests.</p>
        `
      }${
        table([
          "Plugin",
          "Job",
          "Schedule",
          "Description",
          "State",
          "Next run",
          "Last runs",
          "",
        ], rows)
      }`,
    );
  });

  app.post("/admin/jobs/:plugin/:id/run", adminPage, async (c) => {
    if (!await form(c)) return csrfRefused(c);
    const sched = ctx.options.scheduler;
    try {
      if (!sched) {
        throw new Error(
          `Cannot run job "${c.req.param("id")}" of plugin "${
            c.req.param("plugin")
          }": the scheduler is not available on this host`,
        );
      }
      const run = await sched.runNow(c.req.param("plugin"), c.req.param("id"));
      return c.redirect(
        `/admin/jobs?done=ran&p=${
          encodeURIComponent(`${c.req.param("id")}: ${run.outcome}`)
        }`,
        303,
      );
    } catch (e) {
      return await failure(c, "Job not run", e, "/admin/jobs");
    }
  });

  // -- audit ------------------------------------------------------------------------
  app.get("/admin/audit", adminPage, async (c) => {
    const p = await principal(c);
    const audit = ctx.options.audit;
    const parsed = auditSearchFrom(c, 200);
    const f = typeof parsed === "string" ? { limit: 200 } : parsed;
    const entries = audit
      ? audit.search ? await audit.search(f) : await audit.query({
        ...(f.plugin ? { plugin: f.plugin } : {}),
        limit: 200,
      })
      : [];
    const value = (k: string) => c.req.query(k) ?? "";
    const json = (v: unknown) =>
      v === undefined ? "" : markup`<code>${JSON.stringify(v)}</code>`;
    return render(
      c,
      ctx,
      p,
      { title: "Audit log", current: "audit" },
      markup`${
        audit
          ? ""
          : markup`<p class="muted">No audit log is configured on this host.</p>`
      }<form class="filters" method="get" action="/admin/audit">
        <label>Plugin<input name="plugin" value="${
        value("plugin")
      }" size="12"></label>
        <label>Action<input name="action" value="${
        value("action")
      }" placeholder="login, plugin.install…" size="14"></label>
        <label>Outcome<input name="outcome" value="${
        value("outcome")
      }" placeholder="denied…" size="10"></label>
        <label>Since<input name="since" value="${
        value("since")
      }" placeholder="15m, 2h or RFC 3339" size="14"></label>
        <label>Until<input name="until" value="${
        value("until")
      }" placeholder="RFC 3339" size="14"></label>
        <label>Text<input name="q" value="${value("q")}" size="14"></label>
        <button type="submit">Apply</button>
      </form>${
        typeof parsed === "string"
          ? markup`<p class="flash error">${parsed}</p>`
          : ""
      }${
        table(
          [
            "Time",
            "Who",
            "From",
            "Plugin",
            "Action",
            "Outcome",
            "Permission",
            "What",
            "Before",
            "After",
          ],
          entries.map((e) => [
            markup`<span class="mono">${e.time ?? e.timestamp ?? ""}</span>`,
            e.actor ?? "",
            markup`<span class="mono">${e.ip ?? ""}</span>`,
            e.plugin,
            e.action ?? "",
            e.outcome ?? "denied",
            e.permission ?? "",
            e.attempted ?? "",
            json(e.before),
            json(e.after),
          ]),
        )
      }`,
    );
  });

  // -- tokens -----------------------------------------------------------------------
  const tokensPage = async (
    c: Context,
    created?: { token: string; name: string },
  ) => {
    const p = await principal(c);
    const list = await ctx.tokens.list();
    return render(
      c,
      ctx,
      p,
      {
        title: "API tokens",
        current: "tokens",
        ...(created
          ? {
            flash: {
              kind: "ok" as const,
              text:
                `Token "${created.name}" created. Copy it now: it is not shown again.`,
            },
          }
          : flashFromQuery(c)
          ? { flash: flashFromQuery(c)! }
          : {}),
      },
      markup`
        ${
        created
          ? markup`<div class="panel"><code id="new-token">${created.token}</code></div>`
          : ""
      }${
        table(
          ["Id", "Name", "Role", "Created", ""],
          list.map((t) => [
            markup`<code>${t.id}</code>`,
            t.name,
            t.admin ? "admin" : "user",
            t.created,
            p?.tokenId === t.id
              ? markup`<span class="muted">current</span>`
              : postButton(
                p,
                `/admin/tokens/${encodeURIComponent(t.id)}/revoke`,
                "Revoke",
                {
                  cls: "danger",
                  confirm: `Revoke token ${t.name}?`,
                },
              ),
          ]),
        )
      }<h2>Create a token</h2><form class="panel filters"
          method="post" action="/admin/tokens">${csrfField(p)}
        <label>Name<input name="name" required maxlength="100"></label>
        <label class="check"><input type="checkbox" name="admin" value="1"> Admin</label>
        <button class="primary" type="submit">Create</button></form>
      `,
    );
  };

  app.get("/admin/tokens", adminPage, (c) => tokensPage(c));
  app.post("/admin/tokens", adminPage, async (c) => {
    const fields = await form(c);
    if (!fields) return csrfRefused(c);
    const name = typeof fields.name === "string" ? fields.name.trim() : "";
    if (!name || name.length > 100) {
      return await failure(
        c,
        "Token not created",
        new BadRequestError("a name (≤ 100 characters) is required"),
        "/admin/tokens",
      );
    }
    const created = await ctx.tokens.create({
      name,
      admin: fields.admin === "1",
    });
    ctx.logs.log("", "info", `token "${name}" (${created.record.id}) created`);
    return await tokensPage(c, { token: created.token, name });
  });
  app.post("/admin/tokens/:id/revoke", adminPage, async (c) => {
    if (!await form(c)) return csrfRefused(c);
    const id = c.req.param("id");
    await ctx.tokens.revoke(id);
    await ctx.sessions.deleteByToken(id);
    return c.redirect(
      "/admin/tokens?done=revoked&p=" + encodeURIComponent(id),
      303,
    );
  });
}
