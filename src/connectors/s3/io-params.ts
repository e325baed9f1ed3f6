/**
 * The parameters of the S3 importer and exporter: the store's (settings.ts)
 * that apply to them, so that one `-o` means the same everywhere. Pure, for
 * builtins.ts, like settings.ts.
 */
import type { ParamSpec } from "../params.js";
import { S3_PARAMS } from "./settings.js";

/** How to reach the server: what every S3 connector takes. */
const CONNECTION = new Set(["endpoint", "region", "path_style", "tls", "tls_insecure_skip_verify", "ca_file", "connections", "list_v1"]);
/** How objects are written: what the exporter takes besides. */
const WRITING = new Set(["sse", "object_lock_days", "object_lock_mode"]);

export const S3_IMPORTER_PARAMS: readonly ParamSpec[] = S3_PARAMS.filter((p) => CONNECTION.has(p.name));

export const S3_EXPORTER_PARAMS: readonly ParamSpec[] = [
  ...S3_PARAMS.filter((p) => CONNECTION.has(p.name) && p.name !== "list_v1"),
  { name: "storage_class", type: "string", regex: "[A-Z_]+", description: "the storage class of every object written (default: the bucket's, STANDARD)" },
  ...S3_PARAMS.filter((p) => WRITING.has(p.name)),
];
