/**
 * Server-rendered admin pages: login and logout, dashboard (widgets), plugin
 * list and details (enable, disable, reload, uninstall, permissions to
 * approve or revoke), package upload, logs, jobs, audit log and API tokens.
 *
 * Every value that comes from a plugin is escaped by the `markup` tag;
 * plugin HTML (widgets) goes through the sanitiser. Every form that changes
 * state carries the session's CSRF token.
 *
 * @module
 */

import type { Context, Hono } from "hono";
import { bodyLimit } from "hono/body-limit";
import type { ServerContext } from "../context.ts";
import { pageKit } from "./page_kit.ts";
import { mountLoginPages } from "./login.ts";
import { mountOpsPages } from "./ops.ts";
import { mountOperationsPage } from "./operations.ts";
import { mountPluginPages } from "./plugins.ts";

/** Mounts the login/logout handlers and the `/admin` pages on `app`. */
export function mountPages(app: Hono, ctx: ServerContext): void {
  const kit = pageKit(ctx);
  const { uploadLimit } = kit;
  const tooLarge = (c: Context) => c.text("Payload Too Large", 413);
  const formLimit = bodyLimit({ maxSize: 256 * 1024, onError: tooLarge });
  const uploadBodyLimit = bodyLimit({
    maxSize: uploadLimit + 1024 * 1024,
    onError: tooLarge,
  });
  app.use("/login", formLimit);
  app.use("/logout", formLimit);
  app.use("/admin/*", async (c, next) => {
    if (c.req.method === "GET" || c.req.method === "HEAD") return await next();
    return c.req.path === "/admin/plugins/upload"
      ? await uploadBodyLimit(c, next)
      : await formLimit(c, next);
  });
  mountLoginPages(app, ctx, kit);
  mountPluginPages(app, ctx, kit);
  mountOpsPages(app, ctx, kit);
  mountOperationsPage(app, ctx, kit);
}
