/**
 * Connector configuration parameters: each connector declares the keys it
 * accepts (`-o key=value` on the command line, the config map of a plugin's
 * Init), with a type, a default, a description and validations. The core
 * validates a configuration against the declaration before the connector
 * starts, and every error names the parameter and the connector.
 */
import { CofferError } from "../util/errors.js";

export type ParamType = "string" | "int" | "bool" | "bytes" | "duration";

export interface ParamSpec {
  name: string;
  type: ParamType;
  description: string;
  /** Applied when the key is absent (as the string form of the value). */
  default?: string | undefined;
  required?: boolean | undefined;
  /** The whole value must match. */
  regex?: string | undefined;
  /** The value must be one of these. */
  inclusion?: readonly string[] | undefined;
  /** The value must be none of these. */
  exclusion?: readonly string[] | undefined;
  /** Numeric types: bounds, exclusive. */
  greaterThan?: number | undefined;
  lessThan?: number | undefined;
}

/** Keys every connector accepts: the location itself. */
const IMPLICIT = new Set(["location"]);

const UNITS: Record<string, number> = { "": 1, k: 1024, kib: 1024, m: 1024 ** 2, mib: 1024 ** 2, g: 1024 ** 3, gib: 1024 ** 3, t: 1024 ** 4, tib: 1024 ** 4 };
const DURATIONS: Record<string, number> = { ms: 1, s: 1000, m: 60_000, h: 3_600_000 };

/** The number a value of a numeric type stands for (bytes, or milliseconds for durations); NaN when it is not one. */
export function numericValue(type: ParamType, v: string): number {
  if (type === "int") return /^-?\d+$/.test(v) ? Number(v) : NaN;
  if (type === "bytes") {
    const m = /^(\d+(?:\.\d+)?)\s*([a-z]*)$/i.exec(v);
    const unit = m ? UNITS[m[2]!.toLowerCase()] : undefined;
    return m && unit !== undefined ? Math.round(Number(m[1]) * unit) : NaN;
  }
  if (type === "duration") {
    const m = /^(\d+(?:\.\d+)?)(ms|s|m|h)$/.exec(v);
    return m ? Number(m[1]) * DURATIONS[m[2]!]! : NaN;
  }
  return NaN;
}

const TYPE_HINT: Record<ParamType, string> = {
  string: "a string",
  int: "an integer",
  bool: "true or false",
  bytes: "a size such as 64MiB",
  duration: "a duration such as 30s, 500ms or 5m",
};

/**
 * Checks `config` against `specs` and returns it with defaults filled in.
 * Unknown keys, missing required keys and invalid values are USAGE errors
 * that name the parameter and `who` (e.g. `importer "tar"`).
 */
export function validateConfig(who: string, specs: readonly ParamSpec[], config: Record<string, string>): Record<string, string> {
  const out: Record<string, string> = {};
  const byName = new Map(specs.map((s) => [s.name, s]));
  for (const [k, v] of Object.entries(config)) {
    if (!byName.has(k) && !IMPLICIT.has(k)) {
      const known = specs.map((s) => s.name).join(", ") || "none";
      throw new CofferError("USAGE", `${who}: unknown option "${k}" (accepted: ${known})`);
    }
    out[k] = v;
  }
  for (const s of specs) {
    let v = out[s.name];
    if (v === undefined) {
      if (s.required) throw new CofferError("USAGE", `${who}: option "${s.name}" is required (${s.description})`);
      if (s.default === undefined) continue;
      v = s.default;
      out[s.name] = v;
    }
    const bad = (why: string) => new CofferError("USAGE", `${who}: option "${s.name}"=${JSON.stringify(v)}: ${why}`);
    if (s.type === "bool" && v !== "true" && v !== "false") throw bad(`must be ${TYPE_HINT.bool}`);
    if (s.type === "int" || s.type === "bytes" || s.type === "duration") {
      const n = numericValue(s.type, v);
      if (!Number.isFinite(n)) throw bad(`must be ${TYPE_HINT[s.type]}`);
      if (s.greaterThan !== undefined && !(n > s.greaterThan)) throw bad(`must be greater than ${s.greaterThan}`);
      if (s.lessThan !== undefined && !(n < s.lessThan)) throw bad(`must be less than ${s.lessThan}`);
    }
    if (s.regex !== undefined && !new RegExp(`^(?:${s.regex})$`).test(v)) throw bad(`must match /${s.regex}/`);
    if (s.inclusion && !s.inclusion.includes(v)) throw bad(`must be one of ${s.inclusion.join(", ")}`);
    if (s.exclusion?.includes(v)) throw bad(`must not be ${s.exclusion.join(" or ")}`);
  }
  return out;
}

/** Parses `-o key=value` arguments into a map; a malformed one is a USAGE error. */
export function parseOptions(args: readonly string[] | undefined): Record<string, string> {
  const out: Record<string, string> = {};
  for (const a of args ?? []) {
    const i = a.indexOf("=");
    if (i <= 0) throw new CofferError("USAGE", `option "${a}" must be KEY=VALUE`);
    const k = a.slice(0, i);
    if (!/^[A-Za-z0-9_.-]+$/.test(k)) throw new CofferError("USAGE", `option key "${k}" may contain only letters, digits, "_", "." and "-"`);
    if (k in out) throw new CofferError("USAGE", `option "${k}" given twice`);
    out[k] = a.slice(i + 1);
  }
  return out;
}

/** One line per parameter, for `--help` texts and `coffer pkg show`. */
export function describeParams(specs: readonly ParamSpec[]): string[] {
  return specs.map((s) => {
    const extra = [s.type, s.required ? "required" : undefined, s.default !== undefined ? `default ${s.default}` : undefined, s.inclusion ? `one of ${s.inclusion.join("|")}` : undefined]
      .filter(Boolean)
      .join(", ");
    return `${s.name} (${extra}): ${s.description}`;
  });
}
