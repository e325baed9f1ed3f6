/**
 * What the three adapters share: starting the plugin, its Init call,
 * checking what Init answered (flags must be known LocationFlag bits), and
 * holding the process with the location Init described.
 */
import type * as grpc from "@grpc/grpc-js";
import { CofferError } from "../../util/errors.js";
import { LocationFlag } from "../flags.js";
import type { ConnectorOptions } from "../records.js";
import { type PluginProcess, startPlugin } from "./process.js";
import { pluginError, unary } from "./rpc.js";

/** How to run a plugin connector (from its manifest). */
export interface PluginConnectorSpec {
  name: string;
  executable: string;
  args?: readonly string[] | undefined;
  /** Added to the run's environment (ConnectorOptions.env). */
  env?: Readonly<Record<string, string>> | undefined;
  /** Deadline of unary calls, ms (default 60 s). */
  timeoutMs?: number | undefined;
  /** Where the plugin's stderr lines go (default: process.stderr, prefixed). */
  onStderr?: ((line: string) => void) | undefined;
  /** Ends the plugin process (and so every call in flight) when aborted: Ctrl-C. */
  signal?: AbortSignal | undefined;
}

export interface InitAnswer {
  origin: string;
  type: string;
  root: string;
  flags: number;
}

/** The base of the importer, exporter and store adapters: the plugin's process and the location its Init described. */
export abstract class PluginConnector {
  readonly origin: string;
  readonly type: string;
  readonly root: string;
  readonly flags: number;
  readonly proc: PluginProcess;

  protected constructor(proc: PluginProcess, init: InitAnswer) {
    this.proc = proc;
    this.origin = init.origin;
    this.type = init.type;
    this.root = init.root;
    this.flags = init.flags;
  }

  /** The plugin's process id (for diagnostics and tests). */
  get pid(): number | undefined {
    return this.proc.pid;
  }
}

const KNOWN_FLAGS = Object.values(LocationFlag).reduce((a, b) => a | b, 0);

/** The method `name` of a service definition. */
export function method(service: grpc.ServiceDefinition, name: string): grpc.MethodDefinition<unknown, unknown> {
  const m = service[name];
  if (!m) throw new Error(`coffer: the plugin service has no method ${name}`);
  return m as grpc.MethodDefinition<unknown, unknown>;
}

/** Importer and exporter InitRequest.options, from the connector options. */
export function wireOptions(o: ConnectorOptions): Record<string, unknown> {
  return {
    hostname: o.hostname,
    os: o.os,
    arch: o.arch,
    cwd: o.cwd,
    maxconcurrency: String(o.maxConcurrency),
    excludes: [...o.excludes],
    noxattr: o.noXattr,
  };
}

/** Describes unknown flag bits, e.g. "0x40 (bit 6)". */
function describeBits(bits: number): string {
  const set: number[] = [];
  for (let i = 0; i < 32; i++) if (Math.floor(bits / 2 ** i) % 2 === 1) set.push(i);
  return `0x${bits.toString(16)} (bit${set.length > 1 ? "s" : ""} ${set.join(", ")})`;
}

/**
 * Starts the plugin, in the run's environment and scratch directory of
 * `opts`, and calls Init; on any failure the process is ended before the
 * error is thrown.
 */
export async function startConnector(spec: PluginConnectorSpec, opts: ConnectorOptions, service: grpc.ServiceDefinition, request: unknown): Promise<{ proc: PluginProcess; init: InitAnswer }> {
  const proc = await startPlugin(spec, opts);
  try {
    const res = await unary<{ origin: string; type: string; root: string; flags: number }>({ proc, method: method(service, "Init") }, request);
    const flags = res.flags >>> 0;
    const unknown = (flags & ~KNOWN_FLAGS) >>> 0;
    if (unknown !== 0) {
      const known = Object.entries(LocationFlag)
        .map(([k, v]) => `${k}=${v}`)
        .join(", ");
      throw pluginError(proc, "UNSUPPORTED", `reports location flags ${describeBits(unknown)} that this coffer does not know (known: ${known}); it may need a newer coffer`);
    }
    return { proc, init: { origin: res.origin, type: res.type, root: res.root, flags } };
  } catch (e) {
    await proc.close();
    if (e instanceof CofferError) throw e;
    throw pluginError(proc, "IO", `Init failed: ${(e as Error).message}`, e);
  }
}

/** Close (best effort) then the process's end. */
export function closeConnector(proc: PluginProcess, service: grpc.ServiceDefinition): Promise<void> {
  const m = method(service, "Close");
  return proc.close((deadline) => unary({ proc, method: m }, {}, { deadline }));
}
