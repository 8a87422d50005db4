/**
 * Converts a manifest (`GKRegistration` JSON shape) to and from its protobuf
 * form. Optional scalar fields are only written when present, so a manifest
 * survives the round trip unchanged.
 *
 * @module
 */

import type { GKRegistration } from "../../host/model/manifest.ts";
import type {
  PbErrorCodeSpec,
  PbI18nSpec,
  PbMenuItemSpec,
  PbRegistration,
  PbRouteSpec,
  PbWidgetSpec,
} from "./proto.ts";

type Json = Record<string, unknown>;

/** Drops keys whose value is `undefined`, `""` or an empty array. */
function compact(o: Json): Json {
  const out: Json = {};
  for (const [k, v] of Object.entries(o)) {
    if (v === undefined || v === null || v === "") continue;
    if (Array.isArray(v) && v.length === 0) continue;
    out[k] = v;
  }
  return out;
}

function menuFromPb(m: PbMenuItemSpec): Json {
  return compact({
    ...m,
    children: (m.children ?? []).map(menuFromPb),
  });
}

/**
 * Turns a wire registration into manifest JSON (to be validated by the
 * Manager). `manifest_json`, when set, wins.
 *
 * @example
 * ```ts ignore
 * const manifest = registrationFromPb(await unary(client, "GKRegister", {}));
 * ```
 */
export function registrationFromPb(pb: PbRegistration): GKRegistration {
  if (pb.manifest_json && pb.manifest_json.length > 0) {
    return JSON.parse(new TextDecoder().decode(pb.manifest_json));
  }
  const i18n = pb.i18n;
  const out = compact({
    name: pb.name,
    version: pb.version,
    description: pb.description,
    author: pb.author,
    license: pb.license,
    homepage: pb.homepage,
    routes: (pb.routes ?? []).map((r: PbRouteSpec) => compact({ ...r })),
    menu_items: (pb.menu_items ?? []).map(menuFromPb),
    widgets: (pb.widgets ?? []).map((w: PbWidgetSpec) => compact({ ...w })),
    jobs: (pb.jobs ?? []).map((j) => compact({ ...j })),
    templates: (pb.templates ?? []).map((t) => compact({ ...t })),
    min_host_version: pb.min_host_version,
    permissions: pb.permissions,
    error_codes: (pb.error_codes ?? []).map((e: PbErrorCodeSpec) => ({ ...e })),
  });
  if (i18n && (i18n.namespace || Object.keys(i18n.translations ?? {}).length)) {
    const translations: Record<string, Record<string, string>> = {};
    for (const [lang, t] of Object.entries(i18n.translations ?? {})) {
      translations[lang] = { ...(t.entries ?? {}) };
    }
    out.i18n = compact({
      namespace: i18n.namespace,
      languages: i18n.languages,
      translations,
    });
  }
  return out as unknown as GKRegistration;
}

/**
 * Turns a manifest into its wire form (used by the SDK). The manifest also
 * travels whole in `manifest_json`, so keys this proto does not model survive.
 *
 * @example
 * ```ts
 * import { registrationToPb } from "./registration.ts";
 * registrationToPb({ name: "hello", version: "1.0.0" }).name; // "hello"
 * ```
 */
export function registrationToPb(m: GKRegistration): Partial<PbRegistration> {
  const i18n: PbI18nSpec | undefined = m.i18n
    ? {
      namespace: m.i18n.namespace ?? "",
      languages: m.i18n.languages ?? [],
      translations: Object.fromEntries(
        Object.entries(m.i18n.translations ?? {}).map((
          [lang, entries],
        ) => [lang, { entries }]),
      ),
    }
    : undefined;
  return {
    name: m.name,
    version: m.version,
    description: m.description ?? "",
    author: m.author ?? "",
    license: m.license ?? "",
    homepage: m.homepage ?? "",
    // deno-lint-ignore no-explicit-any
    routes: (m.routes ?? []) as any,
    // deno-lint-ignore no-explicit-any
    menu_items: (m.menu_items ?? []) as any,
    // deno-lint-ignore no-explicit-any
    widgets: (m.widgets ?? []) as any,
    // deno-lint-ignore no-explicit-any
    jobs: (m.jobs ?? []) as any,
    // deno-lint-ignore no-explicit-any
    templates: (m.templates ?? []) as any,
    min_host_version: m.min_host_version ?? "",
    permissions: m.permissions ?? [],
    ...(i18n ? { i18n } : {}),
    error_codes: m.error_codes ?? [],
    manifest_json: new TextEncoder().encode(JSON.stringify(m)),
  };
}
