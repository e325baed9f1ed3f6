/**
 * Helpers shared by the tar importer and exporter: entry name checks, pax
 * time values, device numbers, what the exporter needs to write its own pax
 * headers (records with raw byte values, GNU tar's escaping of xattr names,
 * ustar header blocks and name stand-ins), and TarScanner, a small
 * incremental reader of tar headers. The importer uses the scanner for the
 * quick first pass that finds hard-link targets (seeking over content in a
 * plain tar), and as a tap beside tar-stream to get what tar-stream does
 * not give: the raw bytes of pax values (binary xattrs), the raw typeflag
 * of entries it does not know, and whether the archive ended with its
 * end-of-archive marker. It follows tar-stream's reading of headers, so
 * that both see the same entries in the same order.
 */

/** Typeflags (the byte at offset 156). */
export const TypeFlag = {
  LINK: 0x31, // '1'
  DUMPDIR: 0x44, // 'D': GNU incremental directory listing
  MULTIVOL: 0x4d, // 'M'
  SPARSE: 0x53, // 'S': old GNU sparse file
  VOLHDR: 0x56, // 'V': GNU volume label
} as const;

const PAX = 0x78; // 'x'
const PAX_GLOBAL = 0x67; // 'g'
const GNU_LONG_NAME = 0x4c; // 'L'
const GNU_LONG_LINK = 0x4b; // 'K'
const GNU_LONG_NAME_OLD = 0x4e; // 'N' (tar-stream reads it as a long name too)
/** Largest meta entry (pax or long name) accepted, as tar-stream. */
const MAX_META = 4 << 20;

export interface ScannedEntry {
  /** The name as tar-stream reports it (long names and pax path applied). */
  name: string;
  linkname: string;
  /** The raw typeflag byte. */
  typeflag: number;
  /** Bytes of content that follow the header. */
  size: number;
  /** The entry's pax records, with raw values (global ones merged in, as tar-stream does). */
  pax: Map<string, Buffer> | null;
}

type State = "header" | "meta" | "skip";

/**
 * An incremental tar header reader: push() the archive's bytes in order;
 * onEntry is called for each entry (not for pax or long-name headers).
 * A driver that can seek may pass over `skippable` bytes of content with
 * skip() instead of pushing them. Throws on a header with a bad checksum.
 */
export class TarScanner {
  private state: State = "header";
  private readonly block = Buffer.alloc(512);
  private filled = 0;
  private toSkip = 0;
  private meta: Buffer = Buffer.alloc(0);
  private metaType = 0;
  private metaPad = 0;
  private paxGlobal: Map<string, Buffer> | null = null;
  private pax: Map<string, Buffer> | null = null;
  private longName: string | null = null;
  private longLink: string | null = null;
  /** An all-zero block (the end-of-archive marker) was seen. */
  sawEndMarker = false;

  constructor(private readonly onEntry: (e: ScannedEntry) => void) {}

  /** Content bytes (and padding) the scanner would pass over next. */
  get skippable(): number {
    return this.state === "skip" ? this.toSkip : 0;
  }

  skip(n: number): void {
    if (this.state !== "skip" || n > this.toSkip) throw new Error("TarScanner: nothing to skip");
    this.toSkip -= n;
    if (this.toSkip === 0) this.state = "header";
  }

  /** Whether the bytes so far end between two headers (not inside one, nor inside content). */
  get atBoundary(): boolean {
    return this.state === "header" && this.filled === 0;
  }

  push(chunk: Uint8Array): void {
    let i = 0;
    while (i < chunk.length) {
      if (this.state === "skip") {
        const n = Math.min(this.toSkip, chunk.length - i);
        this.toSkip -= n;
        i += n;
        if (this.toSkip === 0) this.state = "header";
      } else if (this.state === "header") {
        const n = Math.min(512 - this.filled, chunk.length - i);
        this.block.set(chunk.subarray(i, i + n), this.filled);
        this.filled += n;
        i += n;
        if (this.filled === 512) {
          this.filled = 0;
          this.header();
        }
      } else {
        const n = Math.min(this.meta.length - this.filled, chunk.length - i);
        this.meta.set(chunk.subarray(i, i + n), this.filled);
        this.filled += n;
        i += n;
        if (this.filled === this.meta.length) {
          this.filled = 0;
          this.applyMeta();
          this.skipBytes(this.metaPad);
        }
      }
    }
  }

  private skipBytes(n: number): void {
    this.toSkip = n;
    this.state = n > 0 ? "skip" : "header";
  }

  private header(): void {
    const b = this.block;
    const sum = checksum(b);
    if (sum === 8 * 32) {
      this.sawEndMarker = true;
      return; // tar-stream passes over zero blocks too
    }
    if (sum !== decodeOct(b, 148, 8)) throw new Error("invalid tar header checksum");
    const flag = b[156] as number;
    const size = decodeOct(b, 124, 12);
    if (!(size >= 0)) throw new Error("invalid tar header size");
    if (flag === PAX || flag === PAX_GLOBAL || flag === GNU_LONG_NAME || flag === GNU_LONG_LINK || flag === GNU_LONG_NAME_OLD) {
      if (size > MAX_META) throw new Error("tar meta header too large");
      this.metaType = flag;
      this.meta = Buffer.alloc(size);
      this.metaPad = pad(size);
      this.filled = 0;
      if (size === 0) {
        this.applyMeta();
        this.skipBytes(this.metaPad);
      } else this.state = "meta";
      return;
    }
    let name = cString(b, 0, 100);
    if (isUstar(b) && b[345] !== 0) name = `${cString(b, 345, 155)}/${name}`;
    let linkname = cString(b, 157, 100);
    const isDir = flag === 0x35 || ((flag === 0 || flag === 0x30) && name.endsWith("/"));
    let entrySize = size;
    if (this.longName !== null) name = this.longName;
    if (this.longLink !== null) linkname = this.longLink;
    this.longName = this.longLink = null;
    const pax = this.pax;
    this.pax = null;
    if (pax !== null) {
      const p = pax.get("path");
      if (p !== undefined) name = p.toString("utf8");
      const l = pax.get("linkpath");
      if (l !== undefined) linkname = l.toString("utf8");
      const s = pax.get("size");
      if (s !== undefined && s.length > 0) entrySize = parseInt(s.toString("utf8"), 10);
      if (!(entrySize >= 0)) throw new Error("invalid pax size");
    }
    this.onEntry({ name, linkname, typeflag: flag, size: entrySize, pax });
    // tar-stream reads no content for a directory, whatever its size field says.
    this.skipBytes(isDir ? 0 : entrySize + pad(entrySize));
  }

  private applyMeta(): void {
    const m = this.meta;
    switch (this.metaType) {
      case GNU_LONG_NAME:
      case GNU_LONG_NAME_OLD:
        this.longName = cString(m, 0, m.length);
        break;
      case GNU_LONG_LINK:
        this.longLink = cString(m, 0, m.length);
        break;
      case PAX_GLOBAL:
        this.paxGlobal = parsePax(m);
        break;
      default: {
        const local = parsePax(m);
        this.pax = this.paxGlobal === null ? local : new Map([...this.paxGlobal, ...local]);
      }
    }
    this.meta = Buffer.alloc(0);
  }
}

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

function isUstar(b: Buffer): boolean {
  return b.toString("latin1", 257, 263) === "ustar\0";
}

function cString(b: Buffer, offset: number, length: number): string {
  const end = Math.min(offset + length, b.length);
  let z = offset;
  while (z < end && b[z] !== 0) z++;
  return b.toString("utf8", offset, z);
}

/** A numeric header field: octal text, or GNU base-256 (as tar-stream reads them). */
function decodeOct(b: Buffer, offset: number, length: number): number {
  const v = b.subarray(offset, offset + length);
  if (((v[0] as number) & 0x80) !== 0) {
    if (v[0] !== 0x80 && v[0] !== 0xff) return NaN;
    const positive = v[0] === 0x80;
    let sum = 0;
    for (let i = 1; i < v.length; i++) sum = sum * 256 + (positive ? (v[i] as number) : 0xff - (v[i] as number));
    return positive ? sum : -sum;
  }
  let i = 0;
  while (i < v.length && v[i] === 0x20) i++;
  let end = v.indexOf(0x20, i);
  if (end === -1) end = v.length;
  while (i < end && v[i] === 0) i++;
  if (i === end) return 0;
  return parseInt(v.toString("latin1", i, end), 8);
}

/** Pax extended header records ("LEN key=value\n"), values kept as bytes. */
export function parsePax(buf: Buffer): Map<string, Buffer> {
  const out = new Map<string, Buffer>();
  let rest = buf;
  while (rest.length > 0) {
    const sp = rest.indexOf(0x20);
    if (sp <= 0) break;
    const len = parseInt(rest.toString("latin1", 0, sp), 10);
    if (!(len > sp + 1) || len > rest.length) break;
    const rec = rest.subarray(sp + 1, len - 1);
    const eq = rec.indexOf(0x3d);
    if (eq === -1) break;
    out.set(rec.toString("utf8", 0, eq), Buffer.from(rec.subarray(eq + 1)));
    rest = rest.subarray(len);
  }
  return out;
}

/**
 * One pax record, "LEN key=value\n": LEN (decimal) counts the whole record,
 * its own digits included; the value may be any bytes (a string is UTF-8).
 */
export function paxRecord(key: string, value: Uint8Array | string): Buffer {
  const k = Buffer.from(key, "utf8");
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
 * Whether tar-stream writes `name` in a ustar header as it is: ASCII, and
 * at most 100 bytes, or split at a "/" into a prefix of at most 155 and a
 * name of 1 to 100 bytes (tar-stream's split: the shortest prefix).
 */
export function fitsUstarName(name: string): boolean {
  if (!isAscii(name)) return false;
  let rest = name;
  let prefix = 0;
  while (rest.length > 100) {
    const i = rest.indexOf("/");
    if (i === -1) return false;
    prefix += (prefix > 0 ? 1 : 0) + i;
    rest = rest.slice(i + 1);
  }
  return prefix <= 155 && (prefix === 0 || rest.length > 0);
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
  /** ASCII, at most 100 bytes. */
  name: string;
  mode: number;
  uid: number;
  gid: number;
  size: number;
  /** Seconds, 0 to 8^11 - 1. */
  mtime: number;
  /** The typeflag byte ("x" for a pax extended header). */
  typeflag: number;
}

/** A 512-byte POSIX ustar header block (octal fields, "ustar\0" "00" magic, checksum). */
export function ustarBlock(f: UstarBlock): Buffer {
  const b = Buffer.alloc(512);
  const oct = (v: number, offset: number, width: number): void => {
    const s = Math.max(0, Math.trunc(v)).toString(8);
    if (s.length > width - 1) throw new RangeError(`tar header field at ${offset}: ${v} does not fit`);
    b.write(s.padStart(width - 1, "0"), offset, "latin1"); // then the NUL already there
  };
  if (!isAscii(f.name) || f.name.length > 100) throw new RangeError(`tar header name ${JSON.stringify(f.name)} does not fit`);
  b.write(f.name, 0, "latin1");
  oct(f.mode & 0o7777, 100, 8);
  oct(f.uid, 108, 8);
  oct(f.gid, 116, 8);
  oct(f.size, 124, 12);
  oct(f.mtime, 136, 12);
  b[156] = f.typeflag;
  b.write("ustar\u000000", 257, "latin1");
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
