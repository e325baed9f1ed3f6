/**
 * Helpers shared by the tar importer and exporter: entry name checks, pax
 * time values, device numbers, and what the exporter needs to write its own
 * pax headers (records with raw byte values, GNU tar's escaping of xattr
 * names, ustar header blocks and name stand-ins). The reader is reader.ts.
 */

import { nameToBytes } from "../../util/names.js";

function pad(size: number): number {
  const r = size % 512;
  return r === 0 ? 0 : 512 - r;
}

function checksum(b: Buffer): number {
  let sum = 8 * 32;
  for (let i = 0; i < 148; i++) sum += b[i] as number;
  for (let i = 156; i < 512; i++) sum += b[i] as number;
  return sum;
}

/**
 * One pax record, "LEN key=value\n": LEN (decimal) counts the whole record,
 * its own digits included; the value may be any bytes (a string is UTF-8).
 */
export function paxRecord(key: string, value: Uint8Array | string): Buffer {
  const k = nameToBytes(key); // an xattr name in a key is its bytes
  const v = typeof value === "string" ? Buffer.from(value, "utf8") : value;
  const rest = k.length + v.length + 3; // " ", "=" and "\n"
  let len = rest + 1;
  while (rest + String(len).length !== len) len = rest + String(len).length;
  return Buffer.concat([Buffer.from(`${len} `, "latin1"), k, Buffer.from("="), v, Buffer.from("\n")]);
}

/**
 * An extended attribute's name as GNU tar writes it after "SCHILY.xattr."
 * (xattr_encode_keyword): "%" as %25 and "=" as %3D, the rest as is.
 */
export function encodeXattrName(name: string): string {
  return name.replace(/[%=]/g, (c) => (c === "%" ? "%25" : "%3D"));
}

/** The inverse of encodeXattrName, as GNU tar reads it (xattr_decode_keyword): %3D and %25 only. */
export function decodeXattrName(keyword: string): string {
  return keyword.replace(/%(3D|25)/g, (_, h: string) => (h === "3D" ? "=" : "%"));
}

/** Whether a name is ASCII without NUL (what a ustar name or link name field may hold without a pax record). */
export function isAscii(s: string): boolean {
  return /^\p{ASCII}*$/u.test(s) && !s.includes("\0");
}

/**
 * The ustar fields of a name's bytes: the whole in `name` when it is at
 * most 100 bytes, else split at a "/" into a prefix of at most 155 bytes
 * and a name of 1 to 100 (the shortest prefix); null when it cannot be.
 */
function ustarSplit(b: Buffer): { prefix: Buffer; name: Buffer } | null {
  if (b.includes(0)) return null;
  if (b.length <= 100) return { prefix: Buffer.alloc(0), name: b };
  for (let i = b.indexOf(0x2f); i !== -1 && i <= 155; i = b.indexOf(0x2f, i + 1)) {
    const rest = b.length - i - 1;
    if (rest >= 1 && rest <= 100) return { prefix: b.subarray(0, i), name: b.subarray(i + 1) };
  }
  return null;
}

/**
 * Whether the exporter writes `name` in the ustar fields: it fits them, and
 * it is ASCII or not UTF-8 at all (its bytes raw, as GNU tar writes them).
 * A UTF-8 name with other characters goes in a pax path record (UTF-8).
 */
export function fitsUstarName(name: string): boolean {
  if (!isAscii(name) && name.isWellFormed()) return false;
  return ustarSplit(nameToBytes(name)) !== null;
}

/**
 * A stand-in for a name that a ustar field cannot hold (the pax record has
 * the real one): other than ASCII replaced by "_", the last `max` bytes,
 * and a trailing "/" kept for a directory.
 */
export function ustarStandIn(name: string, max = 100): string {
  const dir = name.endsWith("/");
  const room = dir ? max - 1 : max;
  let s = name.replace(/\/+$/, "").replace(/\P{ASCII}|\0/gu, "_");
  if (s.length > room) s = s.slice(s.length - room).replace(/^\/+/, "");
  if (s === "") s = "_";
  return dir ? `${s}/` : s;
}

export interface UstarBlock {
  /** A name that fitsUstarName() or ustarSplit() takes. */
  name: string;
  mode: number;
  uid: number;
  gid: number;
  size: number;
  /** Seconds, 0 to 8^11 - 1. */
  mtime: number;
  /** The typeflag byte ("x" for a pax extended header). */
  typeflag: number;
  /** At most 100 bytes. */
  linkname?: string | undefined;
  /** At most 32 bytes each. */
  uname?: string | undefined;
  gname?: string | undefined;
  devmajor?: number | undefined;
  devminor?: number | undefined;
}

/** A 512-byte POSIX ustar header block (octal fields, "ustar\0" "00" magic, checksum); names as their bytes. */
export function ustarBlock(f: UstarBlock): Buffer {
  const b = Buffer.alloc(512);
  const oct = (v: number, offset: number, width: number): void => {
    const s = Math.max(0, Math.trunc(v)).toString(8);
    if (s.length > width - 1) throw new RangeError(`tar header field at ${offset}: ${v} does not fit`);
    b.write(s.padStart(width - 1, "0"), offset, "latin1"); // then the NUL already there
  };
  const bytes = (s: string | undefined, offset: number, width: number, what: string): void => {
    if (s === undefined || s === "") return;
    const v = nameToBytes(s);
    if (v.length > width || v.includes(0)) throw new RangeError(`tar header ${what} ${JSON.stringify(s)} does not fit`);
    v.copy(b, offset);
  };
  const split = ustarSplit(nameToBytes(f.name));
  if (split === null) throw new RangeError(`tar header name ${JSON.stringify(f.name)} does not fit`);
  split.name.copy(b, 0);
  split.prefix.copy(b, 345);
  oct(f.mode & 0o7777, 100, 8);
  oct(f.uid, 108, 8);
  oct(f.gid, 116, 8);
  oct(f.size, 124, 12);
  oct(f.mtime, 136, 12);
  b[156] = f.typeflag;
  bytes(f.linkname, 157, 100, "link name");
  b.write("ustar\u000000", 257, "latin1");
  bytes(f.uname, 265, 32, "user name");
  bytes(f.gname, 297, 32, "group name");
  oct(f.devmajor ?? 0, 329, 8);
  oct(f.devminor ?? 0, 337, 8);
  b.fill(0x20, 148, 156);
  b.write(`${checksum(b).toString(8).padStart(6, "0")}\u0000 `, 148, "latin1");
  return b;
}

/** Zero bytes that pad `size` bytes to a whole number of 512-byte blocks. */
export function padding(size: number): Buffer {
  return Buffer.alloc(pad(size));
}

/** A pax time ("1700000000.123456789", "-1.5") in ns; undefined when malformed. */
export function parsePaxTime(s: string): bigint | undefined {
  const m = /^(-?)(\d+)(?:\.(\d*))?$/.exec(s.trim());
  if (m === null) return undefined;
  const frac = ((m[3] ?? "") + "000000000").slice(0, 9);
  const ns = BigInt(m[2] as string) * 1_000_000_000n + BigInt(frac);
  return m[1] === "-" ? -ns : ns;
}

/** ns as a pax time value: seconds, and a fraction without trailing zeros when there is one. */
export function formatPaxTime(ns: bigint): string {
  const neg = ns < 0n;
  const a = neg ? -ns : ns;
  const secs = a / 1_000_000_000n;
  const frac = a % 1_000_000_000n;
  const f = frac === 0n ? "" : `.${frac.toString().padStart(9, "0").replace(/0+$/, "")}`;
  return `${neg ? "-" : ""}${secs}${f}`;
}

/** Linux dev_t from major and minor (glibc's gnu_dev_makedev); the inverse of devNumbers. */
export function makedev(major: number, minor: number): bigint {
  const ma = BigInt(major);
  const mi = BigInt(minor);
  return ((ma & 0xfffn) << 8n) | ((ma & ~0xfffn) << 32n) | (mi & 0xffn) | ((mi & ~0xffn) << 12n);
}

export type NameCheck = { path: string; parts: string[] } | { error: string };

/**
 * An entry name as a record pathname: leading "./" and "/" dropped, "//"
 * and "." components collapsed, no trailing "/". Names with a ".."
 * component or a NUL are refused.
 */
export function normaliseName(raw: string): NameCheck {
  if (raw.includes("\0")) return { error: "the name contains a NUL byte" };
  const parts = raw.split("/").filter((p) => p !== "" && p !== ".");
  if (parts.includes("..")) return { error: 'the name has a ".." component' };
  return { path: `/${parts.join("/")}`, parts };
}

/**
 * Where an entry with an unusable name is reported: one component directly
 * under the root, the whole name escaped (never a path outside the root).
 */
export function quarantinePath(raw: string): string {
  let s: string;
  try {
    s = encodeURIComponent(raw);
  } catch {
    s = encodeURIComponent(raw.replace(/[\uD800-\uDFFF]/g, "\uFFFD"));
  }
  if (s === "" || s === "." || s === "..") s = s.replace(/\./g, "%2E") || "%00";
  return `/${s}`;
}
