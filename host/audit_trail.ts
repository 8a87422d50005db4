/**
 * The audit trail of operator actions, wired by `boot.ts` at the host's
 * seams so that every way in (the API, the admin pages, the CLI through
 * the API) is covered by one place each:
 *
 * - {@linkcode auditOrigins}: runs each request inside
 *   `AuditLog.within`, with the client's address (trusted proxies
 *   honoured) and, for requests that may change something, who sent it;
 * - {@linkcode auditedTokens}: token create and revoke;
 * - {@linkcode auditedPackages}: install, upgrade and uninstall (refusals
 *   too), with the version before and after;
 * - {@linkcode auditPluginToggles}: enable, disable and quarantine, from the
 *   Manager's events.
 *
 * Grants are audited by `grantsProvider` (boot), logins and logouts by the
 * login page.
 *
 * @module
 */

import { errorText } from "./model/errors.ts";
import type { Manager } from "./manager.ts";
import type { AuditLog, AuditRecord } from "../permissions/audit.ts";
import type { PackagesProvider } from "./server/options.ts";
import type { SessionStore } from "./server/auth/sessions.ts";
import type { TokenStore } from "./server/auth/tokens.ts";
import { clientAddress, requestActor } from "./server/request_origin.ts";
import type { ConnectionInfo, TrustProxy } from "./server/transport.ts";
import { isHostPath } from "./server/host_paths.ts";

/** What {@linkcode auditOrigins} needs. */
export interface AuditOriginsOptions {
  /** The audit log whose entries get the origin. */
  audit: Pick<AuditLog, "within">;
  /** API tokens (to name the requester). */
  tokens: TokenStore;
  /** Sessions (to name the requester). */
  sessions: SessionStore;
  /** The `server.trustProxy` setting. */
  trustProxy: TrustProxy;
}

const SAFE = new Set(["GET", "HEAD", "OPTIONS"]);

/**
 * Wraps a fetch handler so that every audit entry recorded while a request
 * is handled carries the client's address, and, for a state-changing
 * request to a host path (API, admin pages), the requester. Reading
 * requests and plugin routes pay only for the context (the address is
 * worked out when an entry asks for it).
 */
export function auditOrigins(
  fetch: (request: Request, info: ConnectionInfo) => Promise<Response>,
  o: AuditOriginsOptions,
): (request: Request, info: ConnectionInfo) => Promise<Response> {
  return async (request, info) => {
    let ip: string | undefined | null = null;
    let actor: string | undefined;
    if (
      !SAFE.has(request.method) && isHostPath(new URL(request.url).pathname)
    ) {
      actor = await requestActor(request, o.tokens, o.sessions).catch(() =>
        undefined
      );
    }
    const origin = {
      get ip() {
        if (ip === null) ip = clientAddress(request, info, o.trustProxy);
        return ip;
      },
      ...(actor ? { actor } : {}),
    };
    return await o.audit.within(origin, () => fetch(request, info));
  };
}

/** A token store whose create and revoke are audited. */
export function auditedTokens(
  tokens: TokenStore,
  audit: Pick<AuditLog, "record">,
): TokenStore {
  return {
    verify: (t) => tokens.verify(t),
    list: () => tokens.list(),
    async create(options) {
      const created = await tokens.create(options);
      const { id, name, admin } = created.record;
      audit.record({
        plugin: "",
        action: "token.create",
        permission: admin ? "admin" : "user",
        attempted: `created API token "${name}" (${id})`,
        outcome: "created",
        before: null,
        after: { id, name, admin },
      });
      return created;
    },
    async revoke(id) {
      const before = (await tokens.list()).find((t) => t.id === id);
      const done = await tokens.revoke(id);
      audit.record({
        plugin: "",
        action: "token.revoke",
        permission: before?.admin ? "admin" : "user",
        attempted: `revoked API token ${
          before ? `"${before.name}" ` : ""
        }(${id})`,
        outcome: done ? "revoked" : "failed",
        before: before
          ? { id: before.id, name: before.name, admin: before.admin }
          : null,
        after: null,
      });
      return done;
    },
  };
}

/** What {@linkcode auditedPackages} needs. */
export interface AuditedPackagesOptions {
  /** Where entries go. */
  audit: Pick<AuditLog, "record" | "query">;
  /** For the version installed before an action. */
  manager: Pick<Manager, "manifest">;
}

/** A package seam whose install, upgrade and uninstall are audited (refusals too). */
export function auditedPackages(
  packages: PackagesProvider,
  o: AuditedPackagesOptions,
): PackagesProvider {
  const note = (r: Omit<AuditRecord, "permission"> & { permission?: string }) =>
    o.audit.record({ permission: "package", ...r });
  return {
    ...packages,
    async install(bytes, options) {
      const start = Date.now();
      try {
        const r = await packages.install(bytes, options);
        const upgraded = r.previousVersion !== undefined;
        note({
          plugin: r.name,
          action: upgraded ? "plugin.upgrade" : "plugin.install",
          attempted: `${upgraded ? "upgraded" : "installed"} ${r.name} ${
            upgraded ? `${r.previousVersion} → ` : ""
          }${r.version}${
            options?.allowSignerChange ? " (signer change allowed)" : ""
          }${options?.allowDowngrade ? " (downgrade allowed)" : ""}`,
          outcome: upgraded ? "upgraded" : "installed",
          before: upgraded ? { version: r.previousVersion } : null,
          after: {
            version: r.version,
            ...(r.newPermissions?.length
              ? { newPermissions: r.newPermissions }
              : {}),
          },
        });
        return r;
      } catch (e) {
        // The installer audits its own refusals (signer, downgrade, trust):
        // one entry per refusal.
        const last = o.audit.query({ limit: 1 })[0];
        if (
          last?.permission.startsWith("package:") &&
          Date.parse(last.time) >= start
        ) throw e;
        note({
          plugin: (e as { plugin?: unknown }).plugin as string ?? "",
          action: "plugin.install",
          attempted: `install refused: ${errorText(e)}`.slice(0, 1000),
          outcome: "failed",
        });
        throw e;
      }
    },
    async uninstall(name, options) {
      const version = o.manager.manifest(name)?.version;
      try {
        await packages.uninstall(name, options);
      } catch (e) {
        note({
          plugin: name,
          action: "plugin.uninstall",
          attempted: `uninstall failed: ${errorText(e)}`.slice(0, 1000),
          outcome: "failed",
        });
        throw e;
      }
      note({
        plugin: name,
        action: "plugin.uninstall",
        attempted: `uninstalled ${name}${version ? ` ${version}` : ""}${
          options?.forgetSigner ? " (signer pin forgotten)" : ""
        }`,
        outcome: "uninstalled",
        before: { installed: true, ...(version ? { version } : {}) },
        after: { installed: false },
      });
    },
  };
}

/**
 * Audits the Manager's enable and disable events (a quarantine is the
 * host's doing, with its reason); returns the function that stops it.
 */
export function auditPluginToggles(
  manager: Pick<Manager, "subscribe" | "status">,
  audit: Pick<AuditLog, "record">,
): () => void {
  return manager.subscribe((e) => {
    if (e.type !== "enabled" && e.type !== "disabled") return;
    const enabled = e.type === "enabled";
    const reason = enabled ? undefined : manager.status(e.name)?.reason;
    audit.record({
      plugin: e.name,
      action: reason
        ? "plugin.quarantine"
        : enabled
        ? "plugin.enable"
        : "plugin.disable",
      permission: "",
      attempted: reason
        ? `quarantined: ${reason}`
        : `${enabled ? "enabled" : "disabled"} ${e.name}`,
      outcome: reason ? "quarantined" : e.type,
      ...(reason ? { actor: "host" } : {}),
      before: { enabled: !enabled },
      after: { enabled, ...(reason ? { reason } : {}) },
    });
  });
}
