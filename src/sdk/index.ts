/**
 * coffer's plugin SDK (`coffer/sdk`): write an importer, exporter or store
 * as a plugin executable that coffer and Plakar can both run (docs/WIRE.md), and
 * test it with the conformance kits.
 *
 * - entrypointImporter / entrypointExporter / entrypointStorage serve a
 *   connector over gRPC on stdin/stdout (see entrypoints.ts);
 * - the connector contracts and helpers a connector needs: records, Store,
 *   location flags, resources, params, errors, names as bytes;
 * - the conformance kits (kits/).
 */
export { entrypointExporter, entrypointImporter, entrypointStorage, protectStdout } from "./entrypoints.js";
export type { ConnectorDef, ExporterDef, ImporterDef, StorageDef } from "./entrypoints.js";
export { ERROR_CODE_METADATA } from "./server/rpc.js";

export { LocationFlag, Resource, resourceName, StoreMode } from "../connectors/flags.js";
export type {
  ConnectorOptions,
  ContentPiece,
  EntryKind,
  ExportRecord,
  ExportResult,
  Exporter,
  FileInfo,
  Importer,
  ImportOptions,
  ImportRecord,
  ImportResult,
  Xattr,
} from "../connectors/records.js";
export type { CallOptions, Mac, Range, Store } from "../connectors/store.js";
export type { ParamSpec, ParamType } from "../connectors/params.js";
export { numericValue, validateConfig } from "../connectors/params.js";
export { parseLocation, localPath } from "../connectors/location.js";
export type { Location } from "../connectors/location.js";
export { abortError, CofferError, isCofferError, NotFoundError, throwIfAborted } from "../util/errors.js";
export type { ErrorCode } from "../util/errors.js";
export { MAX_CHUNK } from "../connectors/plugin/wire.js";
// Names are bytes: a name that is not UTF-8 is a string with each such byte as U+DC80..U+DCFF.
export { compareNames, escapeName, fsPath, isRawName, nameFromBytes, nameToBytes, unescapeName } from "../util/names.js";

// coffer's own connectors, as building blocks for plugins (the plugfs examples wrap them).
export { FsExporter } from "../connectors/fs/exporter.js";
export { FsImporter } from "../connectors/fs/importer.js";
export { FsStore } from "../connectors/fs/store.js";
export { MemoryStore } from "../connectors/memory/store.js";

export * from "./kits/index.js";
