/**
 * Installed plugin packages: each under DATA/coffer/plugins/NAME/ (DATA is
 * $XDG_DATA_HOME, else ~/.local/share) with its manifest.yaml and files.
 * Installing extracts into a staging directory beside it and renames it
 * into place, so a package is either wholly installed or not at all.
 * At every start the installed manifests are read and their connectors
 * registered like built-ins.
 */
import { randomBytes } from "node:crypto";
import { chmod, mkdir, readdir, readFile, rename, rm, writeFile } from "node:fs/promises";
import { homedir } from "node:os";
import { dirname, join } from "node:path";
import type { ConnectorOptions, Exporter, Importer } from "../connectors/records.js";
import type { ConnectorDef, ConnectorKind, Registry } from "../connectors/registry.js";
import type { Store } from "../connectors/store.js";
import { CofferError } from "../util/errors.js";
import type { Manifest, ManifestConnector } from "./manifest.js";

export function pluginsDir(env: NodeJS.ProcessEnv = process.env): string {
  const data = env.XDG_DATA_HOME && env.XDG_DATA_HOME !== "" ? env.XDG_DATA_HOME : join(env.HOME ?? homedir(), ".local", "share");
  return join(data, "coffer", "plugins");
}

export interface Installed {
  dir: string;
  manifest: Manifest;
}

/** Every installed package; a damaged one is reported through `onWarning` and skipped. */
export async function listInstalled(dir: string, onWarning?: (m: string) => void): Promise<Installed[]> {
  const names = (await readdir(dir).catch(() => [] as string[])).filter((n) => !n.startsWith("."));
  const out: Installed[] = [];
  if (names.length === 0) return out;
  // YAML is loaded only when there is something installed.
  const { parseManifest } = await import("./manifest.js");
  for (const name of names.sort()) {
    const pdir = join(dir, name);
    try {
      const manifest = parseManifest(await readFile(join(pdir, "manifest.yaml"), "utf8"), join(pdir, "manifest.yaml"));
      if (manifest.name !== name) throw new CofferError("CORRUPT", `${pdir}: holds package ${manifest.name}`);
      out.push({ dir: pdir, manifest });
    } catch (e) {
      onWarning?.(`ignoring installed plugin ${name}: ${(e as Error).message}`);
    }
  }
  return out;
}

export interface PluginSpec {
  /** The package name, for messages and stderr prefixes. */
  name: string;
  executable: string;
  args: string[];
}

/** How to start a plugin connector (the host adapters, src/connectors/plugin). */
export interface PluginStarters {
  importer(spec: PluginSpec, proto: string, config: Record<string, string>, opts: ConnectorOptions): Promise<Importer>;
  exporter(spec: PluginSpec, proto: string, config: Record<string, string>, opts: ConnectorOptions): Promise<Exporter>;
  storage(spec: PluginSpec, proto: string, config: Record<string, string>, opts: ConnectorOptions): Promise<Store>;
}

function connectorDef(p: Installed, c: ManifestConnector, starters: PluginStarters): ConnectorDef {
  const spec: PluginSpec = { name: p.manifest.name, executable: join(p.dir, c.executable), args: c.args };
  return {
    kind: c.type,
    protocols: c.protocols,
    flags: c.flags,
    description: p.manifest.description || p.manifest.displayName || p.manifest.name,
    params: c.parameters,
    provider: `${p.manifest.name} ${p.manifest.version}`,
    make: (loc, cfg, o) => (starters[c.type] as PluginStarters["importer"])(spec, loc.proto, cfg, o),
  } as ConnectorDef;
}

/** Registers every installed package's connectors; a clash is reported and that connector skipped. */
export async function registerInstalled(registry: Registry, dir: string, starters: PluginStarters, onWarning?: (m: string) => void): Promise<Installed[]> {
  const all = await listInstalled(dir, onWarning);
  for (const p of all) {
    for (const c of p.manifest.connectors) {
      try {
        registry.register(connectorDef(p, c, starters), { replace: true });
      } catch (e) {
        onWarning?.(`plugin ${p.manifest.name}: ${(e as Error).message}`);
      }
    }
  }
  return all;
}

export interface AddResult {
  manifest: Manifest;
  dir: string;
  /** Packages removed because --force gave their protocols to this one. */
  replaced: string[];
}

/**
 * Verifies a package file and installs it. A protocol already provided (by
 * a built-in or another package) is refused unless `force`, which removes
 * the other package (a built-in is shadowed). Reinstalling the same name
 * needs `force` too.
 */
export async function addPackage(file: string, dir: string, registry: Registry, o: { force?: boolean } = {}): Promise<AddResult> {
  const { readPackage } = await import("./package.js");
  const index = await readPackage(file);
  const m = index.manifest;
  const installed = await listInstalled(dir);
  const replaced = new Set<string>();
  if (installed.some((p) => p.manifest.name === m.name)) {
    if (!o.force) throw new CofferError("USAGE", `package ${m.name} is already installed (use --force to replace it)`);
    replaced.add(m.name);
  }
  for (const c of m.connectors) {
    for (const proto of c.protocols) {
      const owner = installed.find((p) => p.manifest.name !== m.name && p.manifest.connectors.some((x) => x.type === c.type && x.protocols.includes(proto)));
      const builtin = registry.lookup(c.type as ConnectorKind, proto)?.provider === "builtin";
      if (!owner && !builtin) continue;
      const by = owner ? `package ${owner.manifest.name}` : "a built-in connector";
      if (!o.force) throw new CofferError("USAGE", `${c.type} protocol "${proto}" is already provided by ${by} (use --force to replace it)`);
      if (owner) replaced.add(owner.manifest.name);
    }
  }
  await mkdir(dir, { recursive: true });
  const staging = join(dir, `.staging-${m.name}-${randomBytes(6).toString("hex")}`);
  try {
    await mkdir(staging);
    await readPackage(file, async (f, data) => {
      const target = join(staging, ...f.path.split("/"));
      await mkdir(dirname(target), { recursive: true });
      await writeFile(target, data, { mode: f.mode, flag: "wx" });
      await chmod(target, f.mode);
    });
    await writeFile(join(staging, "manifest.yaml"), index.manifestText, { flag: "wx" });
    for (const name of replaced) await removeDir(dir, name);
    await rename(staging, join(dir, m.name));
  } catch (e) {
    await rm(staging, { recursive: true, force: true });
    throw e;
  }
  return { manifest: m, dir: join(dir, m.name), replaced: [...replaced].filter((n) => n !== m.name) };
}

async function removeDir(dir: string, name: string): Promise<void> {
  const trash = join(dir, `.removing-${name}-${randomBytes(6).toString("hex")}`);
  await rename(join(dir, name), trash);
  await rm(trash, { recursive: true, force: true });
}

export async function removePackage(dir: string, name: string): Promise<void> {
  const installed = await listInstalled(dir);
  if (!installed.some((p) => p.manifest.name === name)) throw new CofferError("USAGE", `no installed package named ${name}`);
  await removeDir(dir, name);
}
