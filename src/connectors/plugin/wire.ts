/**
 * The Kloset plugin wire (docs/WIRE.md; proto/*.proto): loading the service
 * definitions, and converting coffer's records to and from the wire's
 * messages. Shared by the host (src/connectors/plugin) and the SDK
 * (src/sdk), so that both ends agree by construction on the conversions,
 * while the tests check each end against the .proto files alone.
 */
import { existsSync } from "node:fs";
import { fileURLToPath } from "node:url";
import type { ServiceDefinition } from "@grpc/grpc-js";
import type { PackageDefinition } from "@grpc/proto-loader";
import type { EntryKind, FileInfo } from "../records.js";
import { loadWithNamesAsBytes } from "./name-codec.js";

/** proto/ at the package root (from src/ or dist/ alike). */
export function protoDir(): string {
  for (const rel of ["../../../proto/", "../../../../proto/"]) {
    const p = fileURLToPath(new URL(rel, import.meta.url));
    if (existsSync(`${p}connectors.proto`)) return p;
  }
  throw new Error("coffer: the proto/ directory is missing from the installation");
}

/** How messages look in JS: field names as in the .proto, 64-bit integers as strings, bytes as Buffers, enums as numbers. */
export const LOADER_OPTIONS = { keepCase: true, longs: String, enums: Number, bytes: Buffer, defaults: true, oneofs: true } as const;

let loaded: PackageDefinition | undefined;
/** The wire's services and messages; names (pathnames, targets, FileInfo.name, xattr names) travel as their bytes (name-codec.ts). */
function packageDefinition(): PackageDefinition {
  return (loaded ??= loadWithNamesAsBytes(["connectors.proto", "importer.proto", "exporter.proto", "storage.proto"], protoDir(), LOADER_OPTIONS));
}

/** The service definitions by their full names, as grpc-js wants them for servers and clients. */
export function services(): { importer: ServiceDefinition; exporter: ServiceDefinition; store: ServiceDefinition } {
  const def = packageDefinition();
  return {
    importer: def["importer.Importer"] as ServiceDefinition,
    exporter: def["plakar.exporter.Exporter"] as ServiceDefinition,
    store: def["store.Store"] as ServiceDefinition,
  };
}

/** Content travels in messages of at most this many bytes. */
export const MAX_CHUNK = 1 << 20;
/** Larger messages are refused (gRPC's default limit). */
export const MAX_MESSAGE = 4 << 20;

// Go's os.FileMode bits.
const GoMode = {
  Dir: 2 ** 31,
  Append: 2 ** 30,
  Exclusive: 2 ** 29,
  Temporary: 2 ** 28,
  Symlink: 2 ** 27,
  Device: 2 ** 26,
  NamedPipe: 2 ** 25,
  Socket: 2 ** 24,
  Setuid: 2 ** 23,
  Setgid: 2 ** 22,
  CharDevice: 2 ** 21,
  Sticky: 2 ** 20,
  Irregular: 2 ** 19,
} as const;

const TYPE_BITS: [EntryKind, number][] = [
  ["dir", GoMode.Dir],
  ["symlink", GoMode.Symlink],
  ["chardev", GoMode.Device + GoMode.CharDevice],
  ["blockdev", GoMode.Device],
  ["fifo", GoMode.NamedPipe],
  ["socket", GoMode.Socket],
  ["other", GoMode.Irregular],
];

/** A Go os.FileMode (uint32) from a kind and POSIX mode bits (0o7777). */
function toGoMode(kind: EntryKind, mode: number): number {
  let m = mode & 0o777;
  if (mode & 0o4000) m += GoMode.Setuid;
  if (mode & 0o2000) m += GoMode.Setgid;
  if (mode & 0o1000) m += GoMode.Sticky;
  const t = TYPE_BITS.find(([k]) => k === kind);
  return (m + (t ? t[1] : 0)) >>> 0;
}

/** The kind and POSIX mode bits of a Go os.FileMode. */
function fromGoMode(goMode: number): { kind: EntryKind; mode: number } {
  const g = goMode >>> 0;
  const has = (bit: number) => Math.floor(g / bit) % 2 === 1;
  let kind: EntryKind = "file";
  if (has(GoMode.Dir)) kind = "dir";
  else if (has(GoMode.Symlink)) kind = "symlink";
  else if (has(GoMode.Device)) kind = has(GoMode.CharDevice) ? "chardev" : "blockdev";
  else if (has(GoMode.NamedPipe)) kind = "fifo";
  else if (has(GoMode.Socket)) kind = "socket";
  else if (has(GoMode.Irregular)) kind = "other";
  let mode = g & 0o777;
  if (has(GoMode.Setuid)) mode |= 0o4000;
  if (has(GoMode.Setgid)) mode |= 0o2000;
  if (has(GoMode.Sticky)) mode |= 0o1000;
  return { kind, mode };
}

export interface WireTimestamp {
  seconds: string | number;
  nanos: number;
}

export interface WireFileInfo {
  name: string;
  size: string | number;
  mode: number;
  mod_time: WireTimestamp | null;
  dev: string | number;
  ino: string | number;
  uid: string | number;
  gid: string | number;
  nlink: number;
  username: string;
  groupname: string;
  flags: number;
}

export interface WireRecord {
  hasReader: boolean;
  pathname: string;
  error: string;
  isXattr: boolean;
  xattrName: string;
  xattrType: number;
  target: string;
  fileInfo: WireFileInfo | null;
  extendedAttributes: string[];
  fileAttributes: number;
}

export interface WireResult {
  header: WireRecord | null;
  error: string;
}

const big = (v: string | number | undefined): bigint => (v === undefined || v === "" ? 0n : BigInt(v));

function toWireTimestamp(ns: bigint): WireTimestamp {
  let s = ns / 1_000_000_000n;
  let n = ns % 1_000_000_000n;
  if (n < 0n) {
    n += 1_000_000_000n;
    s -= 1n;
  }
  return { seconds: s.toString(), nanos: Number(n) };
}

function fromWireTimestamp(t: WireTimestamp | null | undefined): bigint {
  if (!t) return 0n;
  return big(t.seconds) * 1_000_000_000n + BigInt(t.nanos ?? 0);
}

function toWireFileInfo(fi: FileInfo): WireFileInfo {
  return {
    name: fi.name,
    size: String(fi.size),
    mode: toGoMode(fi.kind, fi.mode),
    mod_time: toWireTimestamp(fi.mtimeNs),
    dev: fi.dev.toString(),
    ino: fi.ino.toString(),
    uid: String(fi.uid),
    gid: String(fi.gid),
    nlink: fi.nlink,
    username: fi.username ?? "",
    groupname: fi.groupname ?? "",
    flags: 0,
  };
}

/** A FileInfo from the wire; throws a plain Error naming the bad field (callers add who sent it). */
export function fromWireFileInfo(w: WireFileInfo | null | undefined): FileInfo {
  if (!w) throw new Error("record has no fileInfo");
  const { kind, mode } = fromGoMode(w.mode);
  const size = Number(big(w.size));
  if (!Number.isSafeInteger(size) || size < 0) throw new Error(`bad size ${String(w.size)}`);
  const uid = Number(big(w.uid));
  const gid = Number(big(w.gid));
  const fi: FileInfo = {
    name: w.name,
    kind,
    size,
    mode,
    mtimeNs: fromWireTimestamp(w.mod_time),
    dev: big(w.dev),
    ino: big(w.ino),
    uid: Number.isSafeInteger(uid) ? uid : 0,
    gid: Number.isSafeInteger(gid) ? gid : 0,
    nlink: w.nlink || 1,
  };
  if (w.username) fi.username = w.username;
  if (w.groupname) fi.groupname = w.groupname;
  return fi;
}

function emptyWireRecord(pathname: string): WireRecord {
  return {
    hasReader: false,
    pathname,
    error: "",
    isXattr: false,
    xattrName: "",
    xattrType: 0,
    target: "",
    fileInfo: null,
    extendedAttributes: [],
    fileAttributes: 0,
  };
}

/** A record for the wire: pathname, file info, symlink target, error, xattr names; hasReader for regular files with content. */
export function toWireRecord(r: { pathname: string; fileInfo: FileInfo; target?: string | undefined; error?: string | undefined; xattrs?: { name: string }[] | undefined }, hasReader: boolean): WireRecord {
  return {
    ...emptyWireRecord(r.pathname),
    hasReader,
    error: r.error ?? "",
    target: r.target ?? "",
    fileInfo: toWireFileInfo(r.fileInfo),
    extendedAttributes: (r.xattrs ?? []).map((x) => x.name),
  };
}

/** Checks a snapshot pathname from the wire: '/'-rooted, no empty, '.' or '..' component, no NUL. */
export function checkWirePathname(p: string): string | undefined {
  if (typeof p !== "string" || !p.startsWith("/")) return "pathname must start with /";
  if (p.includes("\0")) return "pathname contains NUL";
  if (p === "/") return undefined;
  for (const c of p.slice(1).split("/")) if (c === "" || c === "." || c === "..") return `pathname ${JSON.stringify(p)} is not normalised`;
  return undefined;
}

/** The ExtendedAttributeType of extended attributes (`EXTENDED_ATTRIBUTE_TYPE_EXTENDED`). */
export const XATTR_TYPE_EXTENDED = 1;
export const XATTR_TYPE_ADS = 2;

/**
 * The wire record of one extended attribute of `pathname` (Kloset sends each
 * attribute as its own record, isXattr set, its value as the content). It
 * carries a FileInfo too (name, size of the value), as Go peers expect one.
 */
export function toWireXattrRecord(pathname: string, name: string, size: number): WireRecord {
  return {
    ...emptyWireRecord(pathname),
    hasReader: true,
    isXattr: true,
    xattrName: name,
    xattrType: XATTR_TYPE_EXTENDED,
    fileInfo: {
      name,
      size: String(size),
      mode: 0,
      mod_time: { seconds: "0", nanos: 0 },
      dev: "0",
      ino: "0",
      uid: "0",
      gid: "0",
      nlink: 0,
      username: "",
      groupname: "",
      flags: 0,
    },
  };
}

/** The pathname, file info, symlink target and error of a wire record (not an xattr record); throws a plain Error like fromWireFileInfo. */
export function fromWireRecord(w: WireRecord): { pathname: string; fileInfo: FileInfo; target?: string; error?: string } {
  const bad = checkWirePathname(w.pathname);
  if (bad !== undefined) throw new Error(bad);
  const r: { pathname: string; fileInfo: FileInfo; target?: string; error?: string } = { pathname: w.pathname, fileInfo: fromWireFileInfo(w.fileInfo) };
  if (w.target) r.target = w.target;
  if (w.error) r.error = w.error;
  return r;
}
