/**
 * One plugin process: one connector instance, made by Init, closed by Close
 * or when the connection ends; and the gRPC server on stdin/stdout.
 */
import { Server, ServerCredentials, status } from "@grpc/grpc-js";
import type { ServiceDefinition, UntypedServiceImplementation } from "@grpc/grpc-js";
import { availableParallelism, hostname } from "node:os";
import type { ParamSpec } from "../../connectors/params.js";
import { validateConfig } from "../../connectors/params.js";
import type { ConnectorOptions } from "../../connectors/records.js";
import { CofferError } from "../../util/errors.js";
import { CallScopes, RpcError } from "./rpc.js";
import { exitAfterStderr, pluginStdio, wireConnection } from "./stdio.js";

export type ConnectorKind = "importer" | "exporter" | "storage";

export interface Closable {
  close(): Promise<void>;
}

/** What the entry points take (see entrypoints.ts). */
export interface SessionDef<C> {
  params?: readonly ParamSpec[] | undefined;
  make(proto: string, config: Record<string, string>, opts: ConnectorOptions): Promise<C> | C;
}

/** The importer and exporter InitRequest.options, as proto-loader gives them. */
export interface WireOptions {
  hostname: string;
  os: string;
  arch: string;
  cwd: string;
  maxconcurrency: string | number;
  excludes: string[];
  noxattr: boolean;
}

const GOOS: Partial<Record<NodeJS.Platform, string>> = { win32: "windows", sunos: "solaris" };
const GOARCH: Record<string, string> = { x64: "amd64", ia32: "386", arm64: "arm64", arm: "arm" };

/** ConnectorOptions from an InitRequest's options (the store's Init has none: defaults from this process). */
export function connectorOptions(o: WireOptions | null | undefined): ConnectorOptions {
  const conc = Number(o?.maxconcurrency ?? 0);
  return {
    hostname: o?.hostname || hostname(),
    os: o?.os || GOOS[process.platform] || process.platform,
    arch: o?.arch || GOARCH[process.arch] || process.arch,
    cwd: o?.cwd || process.cwd(),
    maxConcurrency: Number.isSafeInteger(conc) && conc > 0 ? conc : availableParallelism(),
    excludes: o?.excludes ?? [],
    noXattr: o?.noxattr ?? false,
    onWarning: (msg) => process.stderr.write(`warning: ${msg}\n`),
    ...pluginStdio(),
  };
}

export class Session<C extends Closable> {
  private connector: C | undefined;
  private initialising = false;
  private closing: Promise<void> | undefined;
  /** The running calls' signals, all aborted when the connection ends. */
  readonly calls = new CallScopes();

  constructor(
    readonly kind: ConnectorKind,
    private readonly def: SessionDef<C>,
  ) {}

  /** Init: validates the configuration against the declared params (INVALID_ARGUMENT naming the parameter), then makes the connector. */
  async init(proto: string, config: Record<string, string>, opts: ConnectorOptions): Promise<C> {
    if (this.connector !== undefined || this.initialising) throw new RpcError(status.FAILED_PRECONDITION, `${this.kind} plugin: Init was already called`);
    if (this.closing !== undefined) throw new RpcError(status.FAILED_PRECONDITION, `${this.kind} plugin: closed`);
    this.initialising = true;
    try {
      const who = `${this.kind} "${proto}"`;
      let checked: Record<string, string>;
      try {
        checked = validateConfig(who, this.def.params ?? [], { ...config });
      } catch (e) {
        throw new RpcError(status.INVALID_ARGUMENT, e instanceof Error ? e.message : String(e));
      }
      const c = await this.def.make(proto, checked, opts);
      if (c === undefined || c === null) throw new CofferError("USAGE", `${who}: make() returned no connector`);
      this.connector = c;
      return c;
    } finally {
      this.initialising = false;
    }
  }

  /** The connector, for every call but Init: FAILED_PRECONDITION before Init or after Close. */
  get(): C {
    if (this.closing !== undefined) throw new RpcError(status.FAILED_PRECONDITION, `${this.kind} plugin: closed`);
    if (this.connector === undefined) throw new RpcError(status.FAILED_PRECONDITION, `${this.kind} plugin: Init must come first`);
    return this.connector;
  }

  /** Closes the connector once (Close, or the connection's end); before Init there is nothing to close. */
  close(): Promise<void> {
    return (this.closing ??= this.connector === undefined ? Promise.resolve() : this.connector.close());
  }
}

/**
 * Serves the service on stdin/stdout until the connection ends, then closes
 * the connector and exits the process (0, or 1 when closing failed).
 * Never resolves.
 */
export function serveOnWire(session: Session<Closable>, definition: ServiceDefinition, handlers: UntypedServiceImplementation): Promise<void> {
  // No message size limit on what the plugin sends: content is chunked, and
  // a List answer holds every MAC of a resource in one message.
  const server = new Server({ "grpc.max_send_message_length": -1 });
  server.addService(definition, handlers);
  const injector = server.createConnectionInjector(ServerCredentials.createInsecure());
  let ending = false;
  const onEnd = (why: string) => {
    if (ending) return;
    ending = true;
    if (process.env.COFFER_PLUGIN_DEBUG) process.stderr.write(`${session.kind} plugin: ${why}, exiting\n`);
    session.calls.endAll(new CofferError("INTERRUPTED", `the plugin connection ended (${why})`));
    let code = 0;
    session
      .close()
      .catch((e: unknown) => {
        process.stderr.write(`${session.kind} plugin: close failed: ${e instanceof Error ? e.message : String(e)}\n`);
        code = 1;
      })
      .finally(() => {
        injector.destroy();
        server.forceShutdown();
        exitAfterStderr(code);
      });
  };
  injector.injectConnection(wireConnection(onEnd));
  return new Promise<void>(() => {});
}
