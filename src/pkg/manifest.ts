/**
 * Plugin manifests (YAML, the fields Plakar reads; docs/WIRE.md, "Manifest"):
 * name, display_name, description, version, api_version, license,
 * homepage, tags, connectors[{type, protocols, location_flags, executable,
 * args, extra_files}], plus coffer's `parameters` per connector (the
 * ParamSpec declaration, so configuration is validated before the plugin
 * starts). Unknown keys are ignored, as Plakar does (`flags` included).
 * Every error names the field, as `connectors[1].protocols[0]`.
 */
import { parseDocument } from "yaml";
import { LocationFlag } from "../connectors/flags.js";
import type { ParamSpec, ParamType } from "../connectors/params.js";
import type { ConnectorKind } from "../connectors/registry.js";
import { CofferError } from "../util/errors.js";

export interface ManifestConnector {
  type: ConnectorKind;
  protocols: string[];
  /** LocationFlag bits from location_flags. */
  flags: number;
  locationFlags: string[];
  /** Relative to the package root. */
  executable: string;
  args: string[];
  extraFiles: string[];
  parameters: ParamSpec[];
}

export interface Manifest {
  name: string;
  displayName: string;
  description: string;
  version: string;
  apiVersion: string;
  license: string;
  homepage: string;
  tags: string[];
  connectors: ManifestConnector[];
}

const FLAG_NAMES: Record<string, number> = {
  localfs: LocationFlag.LOCALFS,
  file: LocationFlag.FILE,
  stream: LocationFlag.STREAM,
  needack: LocationFlag.NEEDACK,
  nomerge: LocationFlag.NOMERGE,
  exportxattr: LocationFlag.EXPORTXATTR,
};
const TYPES: ConnectorKind[] = ["importer", "exporter", "storage"];
const PARAM_TYPES: ParamType[] = ["string", "int", "bool", "bytes", "duration"];

const NAME_RE = /^[a-z0-9][a-z0-9._-]{0,63}$/;
const PROTO_RE = /^[a-z0-9+.-]{2,}$/;
const VERSION_RE = /^v?\d+\.\d+\.\d+(?:[-+][0-9A-Za-z.-]+)?$/;

/** A path inside a package: relative, '/'-separated, no '.', '..' or empty component. */
export function checkPackagePath(p: string): boolean {
  return p !== "" && !p.startsWith("/") && !p.includes("\\") && !p.includes("\0") && p.split("/").every((c) => c !== "" && c !== "." && c !== "..");
}

class Reader {
  constructor(
    readonly where: string,
    readonly file: string,
  ) {}

  fail(field: string, why: string): never {
    throw new CofferError("USAGE", `${this.file}: ${field}: ${why}`);
  }

  str(o: Record<string, unknown>, key: string, field: string, required: boolean, re?: RegExp, hint?: string): string {
    const v = o[key];
    if (v === undefined || v === null) {
      if (required) this.fail(field, "is required");
      return "";
    }
    if (typeof v !== "string" && typeof v !== "number") this.fail(field, "must be a string");
    const s = String(v);
    if (required && s.trim() === "") this.fail(field, "must not be empty");
    if (re && s !== "" && !re.test(s)) this.fail(field, `${JSON.stringify(s)} is not ${hint ?? `a match for ${re}`}`);
    return s;
  }

  strings(o: Record<string, unknown>, key: string, field: string, check?: (s: string, f: string) => void): string[] {
    const v = o[key];
    if (v === undefined || v === null) return [];
    if (!Array.isArray(v)) this.fail(field, "must be a list");
    return v.map((x, i) => {
      if (typeof x !== "string" && typeof x !== "number") this.fail(`${field}[${i}]`, "must be a string");
      const s = String(x);
      check?.(s, `${field}[${i}]`);
      return s;
    });
  }
}

function parameter(r: Reader, raw: unknown, field: string): ParamSpec {
  if (typeof raw !== "object" || raw === null || Array.isArray(raw)) r.fail(field, "must be a mapping");
  const o = raw as Record<string, unknown>;
  const name = r.str(o, "name", `${field}.name`, true, /^[A-Za-z0-9_.-]+$/, "a parameter name ([A-Za-z0-9_.-])");
  const type = r.str(o, "type", `${field}.type`, false) || "string";
  if (!PARAM_TYPES.includes(type as ParamType)) r.fail(`${field}.type`, `must be one of ${PARAM_TYPES.join(", ")}`);
  const p: ParamSpec = { name, type: type as ParamType, description: r.str(o, "description", `${field}.description`, false) };
  const def = r.str(o, "default", `${field}.default`, false);
  if (o.default !== undefined) p.default = def;
  if (o.required !== undefined) {
    if (typeof o.required !== "boolean") r.fail(`${field}.required`, "must be true or false");
    p.required = o.required;
  }
  const regex = r.str(o, "regex", `${field}.regex`, false);
  if (regex) {
    try {
      new RegExp(regex);
    } catch (e) {
      r.fail(`${field}.regex`, `invalid regular expression (${(e as Error).message})`);
    }
    p.regex = regex;
  }
  if (o.inclusion !== undefined) p.inclusion = r.strings(o, "inclusion", `${field}.inclusion`);
  if (o.exclusion !== undefined) p.exclusion = r.strings(o, "exclusion", `${field}.exclusion`);
  for (const [k, key] of [
    ["greater_than", "greaterThan"],
    ["less_than", "lessThan"],
  ] as const) {
    if (o[k] === undefined) continue;
    if (typeof o[k] !== "number" || !Number.isFinite(o[k])) r.fail(`${field}.${k}`, "must be a number");
    p[key] = o[k];
  }
  return p;
}

/** Parses and validates a manifest; `file` names it in errors. */
export function parseManifest(text: string, file = "manifest"): Manifest {
  const r = new Reader("", file);
  const doc = parseDocument(text, { uniqueKeys: true });
  if (doc.errors.length > 0) throw new CofferError("USAGE", `${file}: not valid YAML: ${doc.errors[0]!.message}`);
  const top = doc.toJS() as unknown;
  if (typeof top !== "object" || top === null || Array.isArray(top)) r.fail("(top)", "must be a mapping");
  const o = top as Record<string, unknown>;
  const m: Manifest = {
    name: r.str(o, "name", "name", true, NAME_RE, "a package name (lower-case letters, digits, '.', '_', '-')"),
    displayName: r.str(o, "display_name", "display_name", false),
    description: r.str(o, "description", "description", false),
    version: r.str(o, "version", "version", true, VERSION_RE, "a version like 1.2.3"),
    apiVersion: r.str(o, "api_version", "api_version", true, VERSION_RE, "a version like 1.0.0"),
    license: r.str(o, "license", "license", false),
    homepage: r.str(o, "homepage", "homepage", false),
    tags: r.strings(o, "tags", "tags"),
    connectors: [],
  };
  const cs = o.connectors;
  if (!Array.isArray(cs) || cs.length === 0) r.fail("connectors", "must be a non-empty list");
  (cs as unknown[]).forEach((raw: unknown, i: number) => {
    const f = `connectors[${i}]`;
    if (typeof raw !== "object" || raw === null || Array.isArray(raw)) r.fail(f, "must be a mapping");
    const c = raw as Record<string, unknown>;
    const type = r.str(c, "type", `${f}.type`, true);
    if (!TYPES.includes(type as ConnectorKind)) r.fail(`${f}.type`, `must be one of ${TYPES.join(", ")}, not ${JSON.stringify(type)}`);
    const protocols = r.strings(c, "protocols", `${f}.protocols`, (s, ff) => {
      if (!PROTO_RE.test(s)) r.fail(ff, `${JSON.stringify(s)} is not a protocol (2+ characters of a-z 0-9 + . -)`);
    });
    if (protocols.length === 0) r.fail(`${f}.protocols`, "must list at least one protocol");
    const locationFlags = r.strings(c, "location_flags", `${f}.location_flags`, (s, ff) => {
      if (!(s in FLAG_NAMES)) r.fail(ff, `unknown flag ${JSON.stringify(s)} (known: ${Object.keys(FLAG_NAMES).join(", ")})`);
    });
    const executable = r.str(c, "executable", `${f}.executable`, true);
    if (!checkPackagePath(executable)) r.fail(`${f}.executable`, `${JSON.stringify(executable)} must be a relative path inside the package`);
    const extraFiles = r.strings(c, "extra_files", `${f}.extra_files`, (s, ff) => {
      if (!checkPackagePath(s)) r.fail(ff, `${JSON.stringify(s)} must be a relative path inside the package`);
    });
    const params = c.parameters;
    if (params !== undefined && !Array.isArray(params)) r.fail(`${f}.parameters`, "must be a list");
    const parameters = ((params as unknown[] | undefined) ?? []).map((p, j) => parameter(r, p, `${f}.parameters[${j}]`));
    const seen = new Set<string>();
    for (const [j, p] of parameters.entries()) {
      if (seen.has(p.name)) r.fail(`${f}.parameters[${j}].name`, `${JSON.stringify(p.name)} is declared twice`);
      seen.add(p.name);
    }
    m.connectors.push({
      type: type as ConnectorKind,
      protocols,
      locationFlags,
      flags: locationFlags.reduce((acc, s) => acc | FLAG_NAMES[s]!, 0),
      executable,
      args: r.strings(c, "args", `${f}.args`),
      extraFiles,
      parameters,
    });
  });
  const taken = new Map<string, number>();
  m.connectors.forEach((c, i) => {
    for (const p of c.protocols) {
      const k = `${c.type}:${p}`;
      if (taken.has(k)) r.fail(`connectors[${i}].protocols`, `${c.type} protocol ${JSON.stringify(p)} is also declared by connectors[${taken.get(k)}]`);
      taken.set(k, i);
    }
  });
  return m;
}
