/**
 * The one sanitiser all plugin-provided HTML passes through (widgets, route
 * `html` results, template overrides): no scripts, no event handlers, no
 * `javascript:` URLs, no frames, forms or styles that escape the card.
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
    "*": ["class", "id", "title", "lang", "dir", "aria-*", "role", "data-*"],
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
