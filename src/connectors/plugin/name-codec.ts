/**
 * Names are bytes on the plugin wire too. The .proto files declare
 * pathnames, symlink targets, FileInfo.name and xattr names as proto3
 * `string`, and protobufjs would write a lone surrogate (an escaped byte,
 * src/util/names.ts) as U+FFFD (or, in a string under 40 characters, as
 * three bytes that are not UTF-8 either) and read a byte that is not UTF-8
 * as U+FFFD.
 * A `string` and a `bytes` field have the same wire encoding (length-
 * delimited), so coffer loads the protos with exactly those fields retyped
 * as `bytes` and converts at (de)serialization: nameToBytes() out,
 * nameFromBytes() in. Messages in JS keep the names as strings, and a
 * valid UTF-8 name travels as the same bytes as before.
 */
import { isAbsolute, join } from "node:path";
import { fromJSON, type MethodDefinition, type Options, type PackageDefinition, type ServiceDefinition } from "@grpc/proto-loader";
import protobuf from "protobufjs";
import { nameFromBytes, nameToBytes } from "../../util/names.js";

/** The `string` fields that hold names, by message: the only fields retyped. */
const NAME_FIELDS: Readonly<Record<string, readonly string[]>> = {
  "plakar.connectors.Record": ["pathname", "xattrName", "target", "extendedAttributes"],
  "plakar.connectors.FileInfo": ["name"],
};

/**
 * The `string` fields that hold messages, which may quote a name: written
 * valid UTF-8 (messageText), as a Go peer requires and protobufjs would
 * not ensure (it writes a short string's lone surrogate as 3 invalid bytes).
 */
const MESSAGE_FIELDS: Readonly<Record<string, readonly string[]>> = {
  "plakar.connectors.Record": ["error"],
  "plakar.connectors.Result": ["error"],
};

/** A message as valid Unicode: each escaped byte as `\ooo` (as escapeName shows it), any other lone surrogate as U+FFFD. */
export function messageText(s: string): string {
  if (s.isWellFormed()) return s;
  return s.replace(/[\udc80-\udcff]/gu, (c) => `\\${(c.charCodeAt(0) - 0xdc00).toString(8).padStart(3, "0")}`).toWellFormed();
}

/** Where the names are in a message type: its name fields, and the message fields that hold names further down. */
interface Plan {
  names: { field: string; repeated: boolean }[];
  messages: string[];
  nested: { field: string; repeated: boolean; plan: Plan }[];
}

type Msg = Record<string, unknown>;

/**
 * The package definition of `files` (under `dir`) for proto-loader's
 * `options`, with the name fields as bytes on the wire and strings in JS.
 */
export function loadWithNamesAsBytes(files: string[], dir: string, options: Options): PackageDefinition {
  const root = new protobuf.Root();
  root.resolvePath = (_origin, target) => (isAbsolute(target) ? target : join(dir, target));
  root.loadSync(files, { keepCase: true });
  for (const [type, fields] of Object.entries(NAME_FIELDS)) {
    const t = root.lookupType(type);
    for (const f of fields) {
      const field = t.fields[f];
      if (field?.type !== "string") throw new Error(`coffer: proto/ has no string field ${type}.${f} (the wire's name fields)`);
      field.type = "bytes";
    }
  }
  root.resolveAll();
  const def = fromJSON(root.toJSON(), options);
  const plans = new Map<string, Plan | null>();
  for (const [name, entry] of Object.entries(def)) {
    if (!("format" in entry)) def[name] = wrapService(entry as ServiceDefinition, root, plans);
  }
  return def;
}

function wrapService(svc: ServiceDefinition, root: protobuf.Root, plans: Map<string, Plan | null>): ServiceDefinition {
  const out: Record<string, MethodDefinition<object, object>> = {};
  for (const [name, m] of Object.entries(svc) as [string, MethodDefinition<object, object>][]) {
    const method = root.lookup(m.path.slice(1).replace("/", ".")) as protobuf.Method;
    const req = planOf(method.resolvedRequestType as protobuf.Type, plans);
    const res = planOf(method.resolvedResponseType as protobuf.Type, plans);
    out[name] = {
      ...m,
      requestSerialize: req ? (v) => m.requestSerialize(convert(v as Msg, req, toBytes) as object) : m.requestSerialize,
      requestDeserialize: req ? (b) => convert(m.requestDeserialize(b) as Msg, req, fromBytes) as object : m.requestDeserialize,
      responseSerialize: res ? (v) => m.responseSerialize(convert(v as Msg, res, toBytes) as object) : m.responseSerialize,
      responseDeserialize: res ? (b) => convert(m.responseDeserialize(b) as Msg, res, fromBytes) as object : m.responseDeserialize,
    };
  }
  return out as ServiceDefinition;
}

/** The plan of a message type, or null when it holds no names (its messages pass untouched). */
function planOf(type: protobuf.Type, plans: Map<string, Plan | null>): Plan | null {
  const key = type.fullName;
  if (plans.has(key)) return plans.get(key) as Plan | null;
  plans.set(key, null); // guards a recursive type (the wire has none)
  const own = NAME_FIELDS[key.slice(1)] ?? [];
  const plan: Plan = { names: own.map((f) => ({ field: f, repeated: (type.fields[f] as protobuf.Field).repeated })), messages: [...(MESSAGE_FIELDS[key.slice(1)] ?? [])], nested: [] };
  for (const f of type.fieldsArray) {
    if (!(f.resolvedType instanceof protobuf.Type) || f.map) continue;
    const sub = planOf(f.resolvedType, plans);
    if (sub) plan.nested.push({ field: f.name, repeated: f.repeated, plan: sub });
  }
  const result = plan.names.length > 0 || plan.messages.length > 0 || plan.nested.length > 0 ? plan : null;
  plans.set(key, result);
  return result;
}

interface Direction {
  name(v: unknown): unknown;
  message?(v: unknown): unknown;
  /** Convert in place: the message was just decoded and is ours; else a copy, leaving the caller's object as it was. */
  inPlace: boolean;
}
const toBytes: Direction = {
  name: (v) => (typeof v === "string" ? nameToBytes(v) : v),
  message: (v) => (typeof v === "string" ? messageText(v) : v),
  inPlace: false,
};
const fromBytes: Direction = { name: (v) => (v instanceof Uint8Array ? (v.length === 0 ? "" : nameFromBytes(v)) : v), inPlace: true };

/** `msg` with its names (and, going out, its messages) converted. */
function convert(msg: Msg | null | undefined, plan: Plan, d: Direction): Msg | null | undefined {
  if (msg === null || typeof msg !== "object") return msg;
  const out: Msg = d.inPlace ? msg : { ...msg };
  for (const { field, repeated } of plan.names) {
    const v = out[field];
    if (v === undefined || v === null) continue;
    out[field] = repeated && Array.isArray(v) ? v.map(d.name) : d.name(v);
  }
  if (d.message) for (const field of plan.messages) if (typeof out[field] === "string") out[field] = d.message(out[field]);
  for (const { field, repeated, plan: sub } of plan.nested) {
    const v = out[field];
    if (v === undefined || v === null) continue;
    out[field] = repeated && Array.isArray(v) ? v.map((x: Msg) => convert(x, sub, d)) : convert(v as Msg, sub, d);
  }
  return out;
}
