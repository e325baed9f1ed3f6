/**
 * The connector registry: which importer, exporter or store serves a
 * protocol, with its flags and parameter declaration. Built-ins register at
 * startup (builtins.ts); installed plugins register the same way. Making a
 * connector validates its configuration first, so a bad `-o` option fails
 * before anything starts.
 */
import { CofferError } from "../util/errors.js";
import { type Location, parseLocation } from "./location.js";
import { type ParamSpec, validateConfig } from "./params.js";
import type { ConnectorOptions, Exporter, Importer } from "./records.js";
import type { Store } from "./store.js";

export type ConnectorKind = "importer" | "exporter" | "storage";

interface Kinds {
  importer: Importer;
  exporter: Exporter;
  storage: Store;
}

export interface ConnectorDef<K extends ConnectorKind = ConnectorKind> {
  kind: K;
  protocols: readonly string[];
  /** The LocationFlag bits instances of this connector have (an instance may add STREAM, e.g. when reading stdin). */
  flags: number;
  description: string;
  params: readonly ParamSpec[];
  /** Who provides it: "builtin", or the name of the installed package. */
  provider: string;
  /** Makes an instance from a parsed location and a validated config (which holds `location`). */
  make(loc: Location, config: Record<string, string>, opts: ConnectorOptions): Kinds[K] | Promise<Kinds[K]>;
}

export class Registry {
  private readonly defs: { [K in ConnectorKind]: Map<string, ConnectorDef<K>> } = {
    importer: new Map(),
    exporter: new Map(),
    storage: new Map(),
  };

  /** Registers a connector; a protocol already taken is refused unless `replace`. */
  register<K extends ConnectorKind>(def: ConnectorDef<K>, o: { replace?: boolean } = {}): void {
    const map = this.defs[def.kind] as Map<string, ConnectorDef<K>>;
    for (const p of def.protocols) {
      if (!/^[a-z0-9+.-]{2,}$/.test(p)) throw new CofferError("USAGE", `${def.provider}: invalid protocol name "${p}"`);
      const old = map.get(p);
      if (old && !o.replace) throw new CofferError("USAGE", `${def.kind} protocol "${p}" is already provided by ${old.provider}`);
    }
    for (const p of def.protocols) map.set(p, def);
  }

  lookup<K extends ConnectorKind>(kind: K, proto: string): ConnectorDef<K> | undefined {
    return (this.defs[kind] as Map<string, ConnectorDef<K>>).get(proto.toLowerCase());
  }

  list<K extends ConnectorKind>(kind: K): ConnectorDef<K>[] {
    return [...new Set((this.defs[kind] as Map<string, ConnectorDef<K>>).values())];
  }

  protocols(kind: ConnectorKind): string[] {
    return [...this.defs[kind].keys()].sort();
  }

  /** Resolves `location` to its connector definition, or a USAGE error naming the protocols there are. */
  resolve<K extends ConnectorKind>(kind: K, location: string): { def: ConnectorDef<K>; loc: Location } {
    const loc = parseLocation(location, { forStore: kind === "storage" });
    const def = this.lookup(kind, loc.proto);
    if (!def) {
      const what = kind === "storage" ? "repository" : kind;
      throw new CofferError("USAGE", `no ${what} for protocol "${loc.proto}:" in "${location}" (known: ${this.protocols(kind).map((p) => `${p}:`).join(" ")})`);
    }
    return { def, loc };
  }

  /** Validates `config` against the connector's parameters and makes an instance. */
  async make<K extends ConnectorKind>(kind: K, location: string, config: Record<string, string>, opts: ConnectorOptions): Promise<Kinds[K]> {
    const { def, loc } = this.resolve(kind, location);
    const cfg = validateConfig(`${kind === "storage" ? "store" : kind} "${loc.proto}"`, def.params, { ...config, location: loc.raw });
    return def.make(loc, cfg, opts);
  }
}
