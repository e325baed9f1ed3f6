/**
 * Plugin entry points, the counterparts of go-kloset-sdk's
 * EntrypointImporter/Exporter/Storage: a plugin executable's top-level code
 * calls one with its arguments and a definition, and the process then serves
 * the connector over gRPC on stdin/stdout (docs/WIRE.md) until the host closes
 * the connection:
 *
 *   import { entrypointImporter } from "coffer/sdk";
 *   await entrypointImporter(process.argv.slice(2), {
 *     params: [{ name: "depth", type: "int", default: "1", description: "..." }],
 *     make: async (proto, config, opts) => new MyImporter(config.location, opts),
 *   });
 *
 * - stdout is the wire: the first thing an entry point does is send
 *   everything the process prints (console.*, process.stdout.write) to
 *   stderr (protectStdout).
 * - Arguments are refused (usage on stderr, exit 1), as the Go SDK does,
 *   unless `allowArgs` accepts them. A plugin started on a terminal says
 *   what it is and exits 1.
 * - Init validates the config map against `params` (INVALID_ARGUMENT naming
 *   the parameter; the key `location` is always accepted), then calls
 *   make(proto, config with defaults, options from the host) and answers
 *   the connector's origin, type, root and flags. Every other call before
 *   Init fails with FAILED_PRECONDITION; Close before Init is a no-op.
 * - Close closes the connector; the process exits once the connection ends
 *   (stdin's EOF), after closing the connector if Close did not.
 * The promise never resolves: the process exits.
 */
import type { UntypedServiceImplementation } from "@grpc/grpc-js";
import type { ParamSpec } from "../connectors/params.js";
import { services } from "../connectors/plugin/wire.js";
import type { ConnectorOptions, Exporter, Importer } from "../connectors/records.js";
import type { Store } from "../connectors/store.js";
import { exporterService } from "./server/exporter.js";
import { importerService } from "./server/importer.js";
import type { Closable, ConnectorKind } from "./server/session.js";
import { serveOnWire, Session } from "./server/session.js";
import { storeService } from "./server/store.js";
import { exitAfterStderr, protectStdout } from "./server/stdio.js";

export interface ConnectorDef<C> {
  /** The configuration keys the connector accepts (besides `location`), validated at Init. */
  params?: readonly ParamSpec[] | undefined;
  /** Command-line arguments to accept (the manifest's `args`): true for any, or a test. Default: none, as the Go SDK. */
  allowArgs?: boolean | ((argv: readonly string[]) => boolean) | undefined;
  /**
   * Makes the connector from the Init request: the protocol the host chose,
   * the validated config (defaults filled in; `location` as the user wrote
   * it), and the host's options (the store's Init carries none: defaults of
   * this process). Throw a CofferError with code USAGE for a bad
   * configuration (it becomes INVALID_ARGUMENT).
   */
  make(proto: string, config: Record<string, string>, opts: ConnectorOptions): Promise<C>;
}

export type ImporterDef = ConnectorDef<Importer>;
export type ExporterDef = ConnectorDef<Exporter>;
export type StorageDef = ConnectorDef<Store>;

function start<C extends Closable>(kind: ConnectorKind, argv: readonly string[], def: ConnectorDef<C>, handlers: (s: Session<C>) => UntypedServiceImplementation): Promise<void> {
  protectStdout();
  const allowed = def.allowArgs === true || (typeof def.allowArgs === "function" && def.allowArgs(argv));
  const refuse = (msg: string) => {
    process.stderr.write(`${msg}\n`);
    exitAfterStderr(1);
    return new Promise<void>(() => {});
  };
  if (argv.length > 0 && !allowed) return refuse(`usage: this ${kind} plugin takes no arguments (got ${argv.map((a) => JSON.stringify(a)).join(" ")})`);
  if (process.stdin.isTTY) return refuse(`this is a coffer/Kloset ${kind} plugin: it speaks gRPC on its standard input and output, and is started by the backup tool`);
  const session = new Session<C>(kind, def);
  const svc = services();
  const definition = kind === "importer" ? svc.importer : kind === "exporter" ? svc.exporter : svc.store;
  return serveOnWire(session, definition, handlers(session));
}

/** Serves an importer plugin on stdin/stdout (go-kloset-sdk's EntrypointImporter). */
export function entrypointImporter(argv: readonly string[], def: ImporterDef): Promise<void> {
  return start<Importer>("importer", argv, def, importerService);
}

/** Serves an exporter plugin on stdin/stdout (go-kloset-sdk's EntrypointExporter). */
export function entrypointExporter(argv: readonly string[], def: ExporterDef): Promise<void> {
  return start<Exporter>("exporter", argv, def, exporterService);
}

/** Serves a storage plugin on stdin/stdout (go-kloset-sdk's EntrypointStorage). */
export function entrypointStorage(argv: readonly string[], def: StorageDef): Promise<void> {
  return start<Store>("storage", argv, def, storeService);
}

export { protectStdout };
