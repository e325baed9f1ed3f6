/**
 * TarReader: the one tar parser of the importer, pulled one member at a
 * time. It reads what GNU tar reads: v7, ustar, star, old GNU and pax
 * headers; pax local and global records (values as bytes), GNU long names
 * and long link names; numbers in octal or GNU base-256; sparse members in
 * the old GNU format ('S' headers and their extension blocks) and in the
 * pax formats 0.0, 0.1 and 1.0. Names come as bytes (nameFromBytes).
 * Damage (a bad checksum, size field or pax record, a cut in a header or in
 * data) is a TarDamage naming the byte offset and, when known, the member.
 */
import { nameFromBytes } from "../../util/names.js";
import { parsePaxTime } from "./format.js";

/** Damage in the archive: `offset` is where the bad bytes are, `member` the entry's name when it is known. */
export class TarDamage extends Error {
  constructor(
    readonly what: string,
    readonly offset: number,
    readonly member?: string | undefined,
    /** `member` names a pax or long-name header, not an entry. */
    readonly meta = false,
  ) {
    super(`${what} at byte offset ${offset}${member !== undefined ? ` (${meta ? "header" : "member"} ${JSON.stringify(member)})` : ""}`);
  }
}

/** Where the archive's bytes come from: a stream, or a file that can pass over bytes without reading them. */
export interface ChunkSource {
  /** The next bytes, or null at the end. */
  read(): Promise<Buffer | null>;
  /** Passes over up to n bytes, returning how many it passed (0 at the end). */
  skip?(n: number): Promise<number>;
}

export type MemberKind = "file" | "dir" | "symlink" | "link" | "fifo" | "chardev" | "blockdev";

export interface SparseMap {
  /** The file's size. */
  realSize: number;
  /** The data pieces in file order; the bytes between them are holes. */
  pieces: { offset: number; length: number }[];
}

export interface TarMember {
  /** Offset of the member's first header (its pax or long-name headers included). */
  offset: number;
  name: string;
  linkname: string;
  /** The raw typeflag byte (0 for v7's NUL). */
  typeflag: number;
  /** undefined: a typeflag the importer does not store (volume label, multi-volume part, unknown). */
  kind: MemberKind | undefined;
  mode: number;
  uid: number;
  gid: number;
  uname: string;
  gname: string;
  mtimeNs: bigint;
  ctimeNs?: bigint | undefined;
  devmajor: number;
  devminor: number;
  /** Bytes of data stored after the headers (a sparse member's data pieces; no sparse map). */
  size: number;
  /** The member's pax records (global ones merged in), last value of each key. */
  pax: Map<string, Buffer> | null;
  sparse: SparseMap | null;
  /** Why a size field was ignored, for a warning. */
  note?: string | undefined;
}

export const Typeflag = {
  FILE: 0x30,
  LINK: 0x31,
  SYMLINK: 0x32,
  CHR: 0x33,
  BLK: 0x34,
  DIR: 0x35,
  FIFO: 0x36,
  CONTIG: 0x37,
  PAX_GLOBAL: 0x67, // 'g'
  PAX: 0x78, // 'x'
  PAX_SOLARIS: 0x58, // 'X'
  DUMPDIR: 0x44, // 'D'
  LONG_LINK: 0x4b, // 'K'
  LONG_NAME: 0x4c, // 'L'
  MULTIVOL: 0x4d, // 'M'
  SPARSE: 0x53, // 'S'
  VOLHDR: 0x56, // 'V'
} as const;

/** Largest meta member (pax records or a long name) accepted. */
const MAX_META = 16 << 20;
/** Largest GNU sparse map (pieces). */
const MAX_SPARSE = 1 << 20;

export class TarReader {
  private buf: Buffer = Buffer.alloc(0);
  private pos = 0;
  private eof = false;
  /** Bytes of the archive consumed. */
  private at = 0;
  private globals: Map<string, Buffer> | null = null;
  /** Data bytes of the current member not yet read, and the padding after them. */
  private remaining = 0;
  private padLeft = 0;
  private current: TarMember | null = null;
  private done = false;
  private damage: TarDamage | null = null;
  /** Set when the archive ended without the end-of-archive marker. */
  noEndMarker = false;

  constructor(private readonly src: ChunkSource) {}

  /** The next member, or null at the end of the archive. Passes over what is left of the current member's data. */
  async next(): Promise<TarMember | null> {
    if (this.damage !== null) throw this.damage;
    if (this.done) return null;
    try {
      return await this.nextMember();
    } catch (e) {
      if (e instanceof TarDamage) this.damage = e; // nothing after damage can be trusted
      throw e;
    }
  }

  private async nextMember(): Promise<TarMember | null> {
    await this.skipRest();
    this.current = null;
    let start = this.at;
    let longName: Buffer | null = null;
    let longLink: Buffer | null = null;
    let pax: Map<string, Buffer> | null = null;
    let sparse00: { offsets: number[]; sizes: number[] } | null = null;
    for (;;) {
      const hdrAt = this.at;
      const b = await this.readBlock();
      if (b === null) {
        if (hdrAt !== start) throw new TarDamage("archive ends after a header, before its member", hdrAt);
        this.done = true;
        this.noEndMarker = hdrAt > 0;
        return null;
      }
      if (isZeroBlock(b)) {
        if (hdrAt !== start) throw new TarDamage("a zero block where a member's header was expected", hdrAt);
        this.done = true; // GNU tar stops at the first zero block too
        return null;
      }
      const name0 = fieldBytes(b, 0, 100);
      const guess = () => nameFromBytes(longName ?? name0);
      if (!checksumOk(b)) throw new TarDamage("bad header checksum", hdrAt, printable(guess()));
      const flag = b[156] as number;
      const size = numField(b, 124, 12);
      if (size === undefined || size < 0) throw new TarDamage("bad size field", hdrAt, printable(guess()));
      if (isMeta(flag)) {
        if (size > MAX_META) throw new TarDamage(`meta header of ${size} bytes (too large)`, hdrAt);
        const data = await this.readExact(size, hdrAt, guess());
        await this.skipBytes(pad(size), hdrAt);
        if (flag === Typeflag.LONG_NAME) longName = fieldBytes(data, 0, data.length);
        else if (flag === Typeflag.LONG_LINK) longLink = fieldBytes(data, 0, data.length);
        else {
          const parsed = parsePaxRecords(data, hdrAt, printable(nameFromBytes(name0)));
          if (flag === Typeflag.PAX_GLOBAL) {
            this.globals = new Map([...(this.globals ?? []), ...parsed.last]);
            if (longName === null && longLink === null && pax === null) start = this.at; // a global header alone is not part of the next member
          } else {
            pax = new Map([...(pax ?? []), ...parsed.last]);
            if (parsed.offsets.length > 0) sparse00 = { offsets: parsed.offsets, sizes: parsed.sizes };
          }
        }
        continue;
      }
      const all = this.globals === null ? pax : new Map([...this.globals, ...(pax ?? [])]);
      const m = this.member(b, start, hdrAt, size, flag, longName, longLink, all);
      await this.checkSizeOfDataless(m);
      this.current = m;
      if (flag === Typeflag.SPARSE) m.sparse = await this.oldGnuSparse(b, m);
      else if (all !== null) m.sparse = await this.paxSparse(all, sparse00, m);
      this.current = m;
      return m;
    }
  }

  /** The next piece of the current member's stored data, or null at its end. */
  async read(): Promise<Buffer | null> {
    const m = this.current;
    if (m === null || this.remaining === 0) return null;
    if (this.pos >= this.buf.length && !(await this.fill())) throw this.cut(m);
    const n = Math.min(this.remaining, this.buf.length - this.pos);
    const piece = this.buf.subarray(this.pos, this.pos + n);
    this.pos += n;
    this.at += n;
    this.remaining -= n;
    return piece;
  }

  private cut(m: TarMember): TarDamage {
    return new TarDamage(`archive cut inside the member's data (${this.remaining} more bytes expected)`, this.at, printable(m.name));
  }

  private member(b: Buffer, start: number, hdrAt: number, size: number, flag: number, longName: Buffer | null, longLink: Buffer | null, pax: Map<string, Buffer> | null): TarMember {
    const magic = b.toString("latin1", 257, 263);
    const posix = magic === "ustar\0" || magic === "ustar0"; // "ustar  \0" is old GNU: no prefix field
    const star = posix && b.toString("latin1", 508, 512) === "tar\0";
    let nameBytes = fieldBytes(b, 0, 100);
    if (posix && b[345] !== 0) nameBytes = Buffer.concat([fieldBytes(b, 345, star ? 131 : 155), Buffer.from("/"), nameBytes]);
    let name = nameFromBytes(longName ?? nameBytes);
    const linkname = nameFromBytes(longLink ?? fieldBytes(b, 157, 100));
    const num = (offset: number, len: number, field: string): number => {
      const v = numField(b, offset, len);
      if (v === undefined) throw new TarDamage(`bad ${field} field`, hdrAt, printable(name));
      return v;
    };
    const m: TarMember = {
      offset: start,
      name,
      linkname,
      typeflag: flag,
      kind: undefined,
      mode: num(100, 8, "mode") & 0o7777,
      uid: num(108, 8, "uid"),
      gid: num(116, 8, "gid"),
      uname: magic.startsWith("ustar") ? nameFromBytes(fieldBytes(b, 265, 32)) : "",
      gname: magic.startsWith("ustar") ? nameFromBytes(fieldBytes(b, 297, 32)) : "",
      mtimeNs: BigInt(num(136, 12, "mtime")) * 1_000_000_000n,
      devmajor: magic.startsWith("ustar") ? (numField(b, 329, 8) ?? 0) : 0,
      devminor: magic.startsWith("ustar") ? (numField(b, 337, 8) ?? 0) : 0,
      size,
      pax,
      sparse: null,
    };
    if (pax !== null) {
      const text = (k: string) => {
        const v = pax.get(k);
        return v === undefined || v.length === 0 ? undefined : v;
      };
      const int = (k: string): number | undefined => {
        const v = text(k)?.toString("latin1");
        if (v === undefined) return undefined;
        if (!/^\d+$/.test(v)) throw new TarDamage(`bad pax ${k} record ${JSON.stringify(v)}`, start, printable(name));
        return Number(v);
      };
      const time = (k: string): bigint | undefined => {
        const v = text(k)?.toString("latin1");
        if (v === undefined) return undefined;
        const t = parsePaxTime(v);
        if (t === undefined) throw new TarDamage(`bad pax ${k} record ${JSON.stringify(v)}`, start, printable(name));
        return t;
      };
      const p = text("path");
      if (p !== undefined) m.name = name = nameFromBytes(p);
      const l = text("linkpath");
      if (l !== undefined) m.linkname = nameFromBytes(l);
      m.size = int("size") ?? m.size;
      m.uid = int("uid") ?? m.uid;
      m.gid = int("gid") ?? m.gid;
      const un = text("uname");
      if (un !== undefined) m.uname = nameFromBytes(un);
      const gn = text("gname");
      if (gn !== undefined) m.gname = nameFromBytes(gn);
      m.mtimeNs = time("mtime") ?? m.mtimeNs;
      m.ctimeNs = time("ctime");
      m.devmajor = int("SCHILY.devmajor") ?? m.devmajor;
      m.devminor = int("SCHILY.devminor") ?? m.devminor;
      const sn = text("GNU.sparse.name");
      if (sn !== undefined) m.name = nameFromBytes(sn);
    }
    m.kind = kindOf(flag, m.name);
    this.remaining = m.size;
    this.padLeft = pad(m.size);
    return m;
  }

  /** Sets the member's size to 0 when its kind holds no data, a size was declared and no data follows. */
  private async checkSizeOfDataless(m: TarMember): Promise<void> {
    if (m.size === 0 || m.kind === "file" || m.kind === undefined || m.typeflag === Typeflag.DUMPDIR) return;
    // Data follows when the next block is not a header; else the size field is wrong.
    const peek = await this.peekBlock();
    if (peek !== null && !isZeroBlock(peek) && !checksumOk(peek)) return;
    m.note = `a ${m.kind === "dir" ? "directory" : m.kind === "link" ? "hard link" : m.kind} header declares ${m.size} bytes of data but none follows: size ignored`;
    m.size = this.remaining = this.padLeft = 0;
  }

  private async oldGnuSparse(b: Buffer, m: TarMember): Promise<SparseMap> {
    const pieces: { offset: number; length: number }[] = [];
    const take = (blk: Buffer, from: number, count: number, at: number) => {
      for (let i = 0; i < count; i++) {
        const o = from + i * 24;
        if (blk[o] === 0) break;
        const offset = numField(blk, o, 12);
        const length = numField(blk, o + 12, 12);
        if (offset === undefined || length === undefined) throw new TarDamage("bad old GNU sparse map", at, printable(m.name));
        pieces.push({ offset, length });
      }
    };
    take(b, 386, 4, m.offset);
    let extended = b[482] !== 0;
    while (extended) {
      const at = this.at;
      const ext = await this.readBlock();
      if (ext === null) throw new TarDamage("archive cut inside an old GNU sparse map", at, printable(m.name));
      take(ext, 0, 21, at);
      extended = ext[504] !== 0;
      if (pieces.length > MAX_SPARSE) throw new TarDamage("old GNU sparse map too large", at, printable(m.name));
    }
    const realSize = numField(b, 483, 12);
    if (realSize === undefined) throw new TarDamage("bad old GNU sparse size", m.offset, printable(m.name));
    return this.checkedMap({ realSize, pieces }, m);
  }

  private async paxSparse(pax: Map<string, Buffer>, sparse00: { offsets: number[]; sizes: number[] } | null, m: TarMember): Promise<SparseMap | null> {
    const major = pax.get("GNU.sparse.major")?.toString("latin1");
    const realText = (pax.get("GNU.sparse.realsize") ?? pax.get("GNU.sparse.size"))?.toString("latin1");
    const bad = (what: string) => new TarDamage(`bad GNU sparse ${what}`, m.offset, printable(m.name));
    if (major === undefined && realText === undefined) return null;
    if (realText === undefined || !/^\d+$/.test(realText)) throw bad("size");
    const realSize = Number(realText);
    const pieces: { offset: number; length: number }[] = [];
    if (major === "1") {
      // 1.0: the map is at the start of the data, decimal numbers each ending in "\n", padded to a block.
      const nums: number[] = [];
      let line = "";
      let count = -1;
      let used = 0;
      while (count < 0 || nums.length < count * 2) {
        const d = await this.read();
        if (d === null) throw bad("map (cut short)");
        let i = 0;
        for (; i < d.length && (count < 0 || nums.length < count * 2); i++) {
          const c = d[i] as number;
          if (c === 0x0a) {
            if (!/^\d+$/.test(line)) throw bad("map");
            if (count < 0) {
              count = Number(line);
              if (count > MAX_SPARSE) throw bad("map (too large)");
            } else nums.push(Number(line));
            line = "";
          } else if (line.length > 20) throw bad("map");
          else line += String.fromCharCode(c);
        }
        used += i;
        this.giveBack(d.length - i);
      }
      const skip = pad(used);
      if (skip > this.remaining) throw bad("map");
      for (let left = skip; left > 0; ) {
        const d = await this.read();
        if (d === null) throw bad("map");
        const n = Math.min(left, d.length);
        this.giveBack(d.length - n);
        left -= n;
      }
      for (let i = 0; i < nums.length; i += 2) pieces.push({ offset: nums[i] as number, length: nums[i + 1] as number });
      m.size = this.remaining;
    } else {
      const map = pax.get("GNU.sparse.map")?.toString("latin1");
      let nums: number[];
      if (map !== undefined) {
        if (!/^\d+(,\d+)*$/.test(map)) throw bad("map");
        nums = map.split(",").map(Number);
        if (nums.length % 2 !== 0) throw bad("map");
        for (let i = 0; i < nums.length; i += 2) pieces.push({ offset: nums[i] as number, length: nums[i + 1] as number });
      } else if (sparse00 !== null) {
        if (sparse00.offsets.length !== sparse00.sizes.length) throw bad("map");
        for (let i = 0; i < sparse00.offsets.length; i++) pieces.push({ offset: sparse00.offsets[i] as number, length: sparse00.sizes[i] as number });
      } else throw bad("map (none)");
    }
    return this.checkedMap({ realSize, pieces }, m);
  }

  private checkedMap(map: SparseMap, m: TarMember): SparseMap {
    let end = 0;
    let stored = 0;
    for (const p of map.pieces) {
      if (p.offset < end || p.offset + p.length > map.realSize) throw new TarDamage("bad GNU sparse map (pieces out of order or past the end)", m.offset, printable(m.name));
      end = p.offset + p.length;
      stored += p.length;
    }
    if (stored !== this.remaining) throw new TarDamage(`bad GNU sparse map (${stored} bytes of pieces, ${this.remaining} stored)`, m.offset, printable(m.name));
    return map;
  }

  /** Gives back the last n bytes read() returned (they come again at the next read()). */
  giveBack(n: number): void {
    this.pos -= n;
    this.at -= n;
    this.remaining += n;
  }

  private async skipRest(): Promise<void> {
    const m = this.current;
    if (m === null) return;
    const data = this.remaining;
    const n = data + this.padLeft;
    this.remaining = this.padLeft = 0;
    const passed = await this.skipUpTo(n);
    if (passed >= n) return;
    if (passed >= data) throw new TarDamage("archive cut inside the padding after the member's data", this.at, printable(m.name));
    this.remaining = data - passed;
    throw this.cut(m);
  }

  private async skipBytes(n: number, hdrAt: number): Promise<void> {
    if ((await this.skipUpTo(n)) < n) throw new TarDamage("archive cut inside a header's padding", hdrAt);
  }

  private async skipUpTo(n: number): Promise<number> {
    let left = n;
    while (left > 0) {
      const avail = this.buf.length - this.pos;
      if (avail > 0) {
        const k = Math.min(avail, left);
        this.pos += k;
        this.at += k;
        left -= k;
        continue;
      }
      if (this.src.skip !== undefined && !this.eof) {
        const k = await this.src.skip(left);
        this.at += k;
        left -= k;
        if (k > 0) continue;
        this.eof = true;
      }
      if (!(await this.fill())) break;
    }
    return n - left;
  }

  private async readExact(n: number, hdrAt: number, member: string): Promise<Buffer> {
    const out = Buffer.alloc(n);
    let got = 0;
    while (got < n) {
      if (this.pos >= this.buf.length && !(await this.fill())) throw new TarDamage("archive cut inside a meta header's data", hdrAt, printable(member));
      const k = Math.min(n - got, this.buf.length - this.pos);
      this.buf.copy(out, got, this.pos, this.pos + k);
      this.pos += k;
      this.at += k;
      got += k;
    }
    return out;
  }

  /** A whole 512-byte block, null at the end of the archive; a cut block is damage. */
  private async readBlock(): Promise<Buffer | null> {
    const b = await this.peekBlock();
    if (b === null) return null;
    this.pos += 512;
    this.at += 512;
    return b;
  }

  private async peekBlock(): Promise<Buffer | null> {
    while (this.buf.length - this.pos < 512) {
      const had = this.buf.length - this.pos;
      if (!(await this.fill(true))) {
        if (had === 0) return null;
        throw new TarDamage(`archive cut inside a header (${had} of 512 bytes)`, this.at);
      }
    }
    return this.buf.subarray(this.pos, this.pos + 512);
  }

  /** Reads more bytes into the buffer (keeping unread ones when `keep`); false at the end. */
  private async fill(keep = false): Promise<boolean> {
    if (this.eof) return false;
    for (;;) {
      let c: Buffer | null;
      try {
        c = await this.src.read();
      } catch (e) {
        // Damage the source found (a gzip error) inside a member's data is that member's.
        if (e instanceof TarDamage && e.member === undefined && this.current !== null && this.remaining > 0) throw new TarDamage(e.what, e.offset, printable(this.current.name));
        throw e;
      }
      if (c === null) {
        this.eof = true;
        return false;
      }
      if (c.length === 0) continue;
      const rest = this.buf.length - this.pos;
      this.buf = keep && rest > 0 ? Buffer.concat([this.buf.subarray(this.pos), c]) : c;
      this.pos = 0;
      return true;
    }
  }
}

function isMeta(flag: number): boolean {
  return flag === Typeflag.PAX || flag === Typeflag.PAX_GLOBAL || flag === Typeflag.PAX_SOLARIS || flag === Typeflag.LONG_NAME || flag === Typeflag.LONG_LINK;
}

function kindOf(flag: number, name: string): MemberKind | undefined {
  switch (flag) {
    case 0:
    case Typeflag.FILE:
    case Typeflag.CONTIG:
      return name.endsWith("/") ? "dir" : "file"; // v7 marks directories with a trailing "/"
    case Typeflag.SPARSE:
      return "file";
    case Typeflag.LINK:
      return "link";
    case Typeflag.SYMLINK:
      return "symlink";
    case Typeflag.CHR:
      return "chardev";
    case Typeflag.BLK:
      return "blockdev";
    case Typeflag.DIR:
    case Typeflag.DUMPDIR:
      return "dir";
    case Typeflag.FIFO:
      return "fifo";
  }
  return undefined;
}

function pad(size: number): number {
  const r = size % 512;
  return r === 0 ? 0 : 512 - r;
}

function isZeroBlock(b: Buffer): boolean {
  for (let i = 0; i < 512; i++) if (b[i] !== 0) return false;
  return true;
}

/** The header checksum, as GNU tar accepts it: the unsigned sum, or the signed one old tars wrote. */
function checksumOk(b: Buffer): boolean {
  const stored = numField(b, 148, 8);
  if (stored === undefined) return false;
  let unsigned = 8 * 32;
  let signed = 8 * 32;
  for (let i = 0; i < 512; i++) {
    if (i >= 148 && i < 156) continue;
    const c = b[i] as number;
    unsigned += c;
    signed += c > 127 ? c - 256 : c;
  }
  return stored === unsigned || stored === signed;
}

/** The bytes of a NUL-terminated field (a copy). */
function fieldBytes(b: Buffer, offset: number, length: number): Buffer {
  const end = Math.min(offset + length, b.length);
  let z = offset;
  while (z < end && b[z] !== 0) z++;
  return Buffer.from(b.subarray(offset, z));
}

/**
 * A numeric header field: octal digits (leading spaces, ending at a space or
 * NUL; empty is 0), or GNU base-256 (first byte 0x80 positive, 0xff
 * negative). undefined when malformed.
 */
function numField(b: Buffer, offset: number, length: number): number | undefined {
  const first = b[offset] as number;
  if ((first & 0x80) !== 0) {
    if (first !== 0x80 && first !== 0xff) return undefined;
    let v = 0n;
    for (let i = 1; i < length; i++) v = (v << 8n) | BigInt(first === 0xff ? 0xff - (b[offset + i] as number) : (b[offset + i] as number));
    if (first === 0xff) v = -(v + 1n);
    if (v > BigInt(Number.MAX_SAFE_INTEGER) || v < -BigInt(Number.MAX_SAFE_INTEGER)) return undefined;
    return Number(v);
  }
  let i = offset;
  const end = offset + length;
  while (i < end && b[i] === 0x20) i++;
  let v = 0;
  let digits = 0;
  for (; i < end; i++) {
    const c = b[i] as number;
    if (c === 0 || c === 0x20) break;
    if (c < 0x30 || c > 0x37) return undefined;
    v = v * 8 + (c - 0x30);
    digits++;
  }
  for (; i < end; i++) if (b[i] !== 0 && b[i] !== 0x20) return undefined; // only terminators after the digits
  return digits === 0 ? 0 : v;
}

interface PaxRecords {
  last: Map<string, Buffer>;
  /** GNU sparse 0.0's repeated GNU.sparse.offset / GNU.sparse.numbytes, in order. */
  offsets: number[];
  sizes: number[];
}

/** Pax extended header records ("LEN key=value\n"), values as bytes; a malformed record is damage. */
export function parsePaxRecords(buf: Buffer, hdrAt: number, header?: string): PaxRecords {
  const out: PaxRecords = { last: new Map(), offsets: [], sizes: [] };
  let i = 0;
  const bad = (why: string) => new TarDamage(`bad pax record (${why})`, hdrAt + 512 + i, header, true);
  while (i < buf.length) {
    if (buf[i] === 0) break; // NUL padding after the last record, as some writers leave
    const sp = buf.indexOf(0x20, i);
    if (sp === -1 || sp - i > 20 || sp === i) throw bad("no length");
    const lenText = buf.toString("latin1", i, sp);
    if (!/^\d+$/.test(lenText)) throw bad(`length ${JSON.stringify(lenText)}`);
    const len = Number(lenText);
    if (len <= sp - i + 1 || i + len > buf.length) throw bad(`length ${len} runs past the header`);
    if (buf[i + len - 1] !== 0x0a) throw bad("no newline at the end");
    const rec = buf.subarray(sp + 1, i + len - 1);
    const eq = rec.indexOf(0x3d);
    if (eq <= 0) throw bad("no key=value");
    const key = nameFromBytes(rec.subarray(0, eq)); // SCHILY.xattr.NAME: NAME is bytes
    const value = Buffer.from(rec.subarray(eq + 1));
    if (key === "GNU.sparse.offset" || key === "GNU.sparse.numbytes") {
      const v = value.toString("latin1");
      if (!/^\d+$/.test(v)) throw bad(`${key}=${v}`);
      (key === "GNU.sparse.offset" ? out.offsets : out.sizes).push(Number(v));
    } else out.last.set(key, value);
    i += len;
  }
  return out;
}

/** A name for messages: at most 200 characters. */
function printable(name: string): string {
  return name.length > 200 ? `${name.slice(0, 200)}…` : name;
}
