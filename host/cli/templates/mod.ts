/**
 * The `gk init` templates, one per supported language, keyed by the
 * `--runtime` value. Each is a TypeScript module exporting its files as text
 * (see {@linkcode PluginTemplate}), so the templates travel with the
 * published package.
 *
 * @module
 */

import type { PluginTemplate } from "./template.ts";
import { WASM_C } from "./wasm_c.ts";
import { WASM_RUST } from "./wasm_rust.ts";
import { WASM_AS } from "./wasm_as.ts";
import { WASM_GO } from "./wasm_go.ts";
import { WASM_WAT } from "./wasm_wat.ts";
import { GRPC_TS } from "./grpc_ts.ts";
import { GRPC_GO } from "./grpc_go.ts";

export {
  type PluginTemplate,
  renderTemplate,
  type TemplateValues,
} from "./template.ts";
export { PLUGIN_PROTO } from "./grpc_go.ts";

/** Every template by its runtime name, in the order `gk init` lists them. */
export const TEMPLATES: Readonly<Record<string, PluginTemplate>> = {
  [WASM_C.runtime]: WASM_C,
  [WASM_RUST.runtime]: WASM_RUST,
  [WASM_AS.runtime]: WASM_AS,
  [WASM_GO.runtime]: WASM_GO,
  [WASM_WAT.runtime]: WASM_WAT,
  [GRPC_TS.runtime]: GRPC_TS,
  [GRPC_GO.runtime]: GRPC_GO,
};
