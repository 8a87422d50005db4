/**
 * The one sanitiser all plugin-provided HTML passes through (widgets, route
 * `html` results, template overrides): no scripts, no event handlers, no
 * `javascript:` URLs, no frames, forms or styles that escape the card, and
 * no `data-*` attributes (the admin pages' script is driven by `data-gk-*`
 * attributes the host writes; plugin HTML must never be able to carry one).
 *
 * @module
 */

import sanitize from "sanitize-html";

const OPTIONS: sanitize.IOptions = {
  allowedTags: [
    ...sanitize.defaults.allowedTags,
    "img",
    "span",
    "section",
    "header",
    "footer",
    "small",
    "progress",
    "meter",
  ],
  allowedAttributes: {
    // No data-*: host markup uses them to drive the admin script.
    "*": ["class", "id", "title", "lang", "dir", "aria-*", "role"],
    a: ["href", "name", "target", "rel"],
    img: ["src", "alt", "width", "height"],
    td: ["colspan", "rowspan"],
    th: ["colspan", "rowspan", "scope"],
    progress: ["value", "max"],
    meter: ["value", "min", "max", "low", "high", "optimum"],
  },
  allowedSchemes: ["http", "https", "mailto"],
  allowedSchemesByTag: { img: ["http", "https", "data"] },
  allowProtocolRelative: false,
  disallowedTagsMode: "discard",
  transformTags: {
    a: sanitize.simpleTransform("a", { rel: "noopener noreferrer" }),
  },
};

/**
 * Sanitises plugin-provided HTML for inclusion in a host page.
 *
 * @example
 * ```ts
 * import { sanitizeHtml } from "./sanitize.ts";
 * sanitizeHtml('<div onclick="x()">hi<script>alert(1)</script></div>');
 * // '<div>hi</div>'
 * sanitizeHtml('<p data-gk-refresh-url="/admin/logout">x</p>'); // '<p>x</p>'
 * ```
 */
export function sanitizeHtml(html: string): string {
  return sanitize(html, OPTIONS);
}

/**
 * Escapes text for use in HTML content or a quoted attribute.
 *
 * @example
 * ```ts
 * import { escapeHtml } from "./sanitize.ts";
 * escapeHtml('<b title="x">'); // '&lt;b title=&quot;x&quot;&gt;'
 * ```
 */
export function escapeHtml(text: string): string {
  return text.replace(
    /[&<>"']/g,
    (c) =>
      ({ "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;" })[
        c
      ]!,
  );
}
