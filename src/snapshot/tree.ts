/**
 * Tree encoding (docs/FORMAT.md, "Trees"). A directory is a TREE blob:
 * msgpack { v: 1, e: [entry...] } with entries sorted by name (byte order).
 * An entry is a map with short keys; a file entry carries its chunk list,
 * a directory entry the MAC of its own TREE blob.
 */
import { Encoder, encode } from "@msgpack/msgpack";
import type { EntryKind, FileInfo, Xattr } from "../connectors/records.js";
import { MAX_RAW_BLOB } from "../repository/codec.js";
import { CorruptError } from "../util/errors.js";
import { decodeBounded } from "../util/msgpack.js";
import { nameFromBytes, nameToBytes } from "../util/names.js";

export const TREE_VERSION = 1;

export interface ChunkRef {
  mac: Uint8Array;
  length: number;
}

export interface Entry {
  name: string;
  info: FileInfo;
  target?: string | undefined;
  xattrs?: Xattr[] | undefined;
  /** Regular files: content in order. */
  chunks?: ChunkRef[] | undefined;
  /** Directories: MAC of the TREE blob listing the children. */
  tree?: Uint8Array | undefined;
  /** Set when the entry could not be (fully) backed up. */
  error?: string | undefined;
}

const KINDS: EntryKind[] = ["file", "dir", "symlink", "fifo", "socket", "chardev", "blockdev", "other"];

/** A name as the tree stores it: msgpack str when it is valid UTF-8, else bin of its bytes (docs/FORMAT.md, "Names"). */
const nameField = (s: string): string | Uint8Array => (s.isWellFormed() ? s : nameToBytes(s));

export function encodeEntry(e: Entry): Record<string, unknown> {
  const i = e.info;
  const o: Record<string, unknown> = {
    n: nameField(e.name),
    k: KINDS.indexOf(i.kind),
    s: i.size,
    m: i.mode,
    t: i.mtimeNs,
    d: i.dev,
    i: i.ino,
    u: i.uid,
    g: i.gid,
    l: i.nlink,
  };
  if (i.ctimeNs !== undefined) o.c = i.ctimeNs;
  if (i.contentTag !== undefined) o.ct = i.contentTag;
  if (i.rdev !== undefined && i.rdev !== 0n) o.r = i.rdev;
  if (i.username !== undefined) o.un = i.username;
  if (i.groupname !== undefined) o.gn = i.groupname;
  if (e.target !== undefined) o.L = nameField(e.target);
  if (e.xattrs && e.xattrs.length > 0) o.x = e.xattrs.map((x) => [nameField(x.name), x.value]);
  if (e.chunks) o.ch = e.chunks.map((c) => [c.mac, c.length]);
  if (e.tree) o.T = e.tree;
  if (e.error !== undefined) o.e = e.error;
  return o;
}

/** A 64-bit field: int64 or uint64 (bigint), or a smaller integer; a float beyond 2^53 is none (nor could it be written back). */
const big = (v: unknown): bigint | undefined => (typeof v === "bigint" ? v : typeof v === "number" && Number.isSafeInteger(v) ? BigInt(v) : undefined);
const MIN_SAFE = BigInt(Number.MIN_SAFE_INTEGER);
const MAX_SAFE = BigInt(Number.MAX_SAFE_INTEGER);
/** An integer field: msgpack gives those of 2^32 and more as bigint (decoded with useBigInt64); beyond 2^53 it is no number. */
const num = (v: unknown): number | undefined =>
  typeof v === "number" ? (Number.isSafeInteger(v) ? v : undefined) : typeof v === "bigint" && v >= MIN_SAFE && v <= MAX_SAFE ? Number(v) : undefined;
/** A length: a file's size, or a chunk's (at most what a blob can hold). */
const len = (v: unknown, max = Number.MAX_SAFE_INTEGER): number | undefined => {
  const n = num(v);
  return n !== undefined && n >= 0 && n <= max ? n : undefined;
};
const str = (v: unknown): string | undefined => (typeof v === "string" ? v : undefined);
/** A name field: str, or bin holding bytes that are not valid UTF-8. */
const name = (v: unknown): string | undefined => (typeof v === "string" ? v : v instanceof Uint8Array ? nameFromBytes(v) : undefined);

export function decodeEntry(o: unknown, what: string): Entry {
  const bad = (f: string) => new CorruptError(what, `bad entry field ${f}`);
  if (typeof o !== "object" || o === null || Array.isArray(o)) throw bad("(not a map)");
  const m = o as Record<string, unknown>;
  const entryName = name(m.n);
  if (entryName === undefined) throw bad("name");
  const kind = KINDS[num(m.k) ?? -1];
  if (!kind) throw bad("kind");
  const size = len(m.s), mode = num(m.m), mtimeNs = big(m.t), dev = big(m.d), ino = big(m.i), uid = num(m.u), gid = num(m.g), nlink = num(m.l);
  if (size === undefined || mode === undefined || mtimeNs === undefined || dev === undefined || ino === undefined || uid === undefined || gid === undefined || nlink === undefined) {
    throw bad("stat");
  }
  const info: FileInfo = { name: entryName, kind, size, mode, mtimeNs, dev, ino, uid, gid, nlink };
  if (m.c !== undefined) info.ctimeNs = big(m.c);
  if (m.ct !== undefined) info.contentTag = str(m.ct);
  if (m.r !== undefined) info.rdev = big(m.r);
  if (m.un !== undefined) info.username = str(m.un);
  if (m.gn !== undefined) info.groupname = str(m.gn);
  const e: Entry = { name: entryName, info };
  if (m.L !== undefined) e.target = name(m.L) ?? (() => { throw bad("target"); })();
  if (m.x !== undefined) {
    if (!Array.isArray(m.x)) throw bad("xattrs");
    e.xattrs = m.x.map((x: unknown) => {
      if (!Array.isArray(x)) throw bad("xattrs");
      const xattrName = name(x[0]);
      const value: unknown = x[1];
      if (xattrName === undefined || !(value instanceof Uint8Array)) throw bad("xattrs");
      return { name: xattrName, value };
    });
  }
  if (m.ch !== undefined) {
    if (!Array.isArray(m.ch)) throw bad("chunks");
    e.chunks = m.ch.map((c: unknown) => {
      const length = Array.isArray(c) ? len(c[1], MAX_RAW_BLOB) : undefined;
      if (!Array.isArray(c) || !(c[0] instanceof Uint8Array) || c[0].byteLength !== 32 || length === undefined) throw bad("chunks");
      return { mac: c[0], length };
    });
  }
  if (m.T !== undefined) {
    if (!(m.T instanceof Uint8Array) || m.T.byteLength !== 32) throw bad("tree");
    e.tree = m.T;
  }
  if (m.e !== undefined) e.error = str(m.e);
  return e;
}

export function encodeTree(entries: readonly Entry[]): Uint8Array {
  return encode({ v: TREE_VERSION, e: entries.map(encodeEntry) }, { useBigInt64: true });
}

/** Whether `e` is a directory that is stored with a tree of its own (one that could not be read is not). */
export function isTreeDir(e: Entry): boolean {
  return e.info.kind === "dir" && e.error === undefined;
}

/** decodeEntry() of packEntry() bytes. */
export function unpackEntry(packed: Uint8Array, what: string): Entry {
  return decodeEntry(decodeBounded(packed, (why) => new CorruptError(what, `undecodable entry (${why})`), { useBigInt64: true }), what);
}

/**
 * One encoder for packEntry(): its encode() gives an exact-size copy. (The
 * module's encode() makes an encoder per call and gives a view into its
 * 2 KiB buffer: 53,000 entries held that way took 100 MiB.)
 */
const entryEncoder = new Encoder({ useBigInt64: true });

/** An entry's own msgpack bytes, as a tree holds it (see encodeTreeOf): a buffer of their exact size. */
export function packEntry(e: Entry): Uint8Array {
  return entryEncoder.encode(encodeEntry(e));
}

/** packEntry()'s bytes as a view that the next call overwrites: for a caller that copies them at once. */
export function packEntryView(e: Entry): Uint8Array {
  return entryEncoder.encodeSharedRef(encodeEntry(e));
}

/**
 * encodeTree() of entries given as their packEntry() bytes, in order: the
 * same bytes (a map {v, e} whose e is an array of the entries), built
 * without decoding and encoding each entry again.
 */
export function encodeTreeOf(packed: readonly Uint8Array[]): Uint8Array {
  const n = packed.length;
  const head = n < 16 ? 1 : n < 0x10000 ? 3 : 5;
  let size = TREE_PREFIX.byteLength + head;
  for (const p of packed) size += p.byteLength;
  const out = new Uint8Array(size);
  out.set(TREE_PREFIX, 0);
  let at = TREE_PREFIX.byteLength;
  const dv = new DataView(out.buffer);
  if (n < 16) out[at] = 0x90 | n;
  else if (n < 0x10000) {
    out[at] = 0xdc;
    dv.setUint16(at + 1, n);
  } else {
    out[at] = 0xdd;
    dv.setUint32(at + 1, n);
  }
  at += head;
  for (const p of packed) {
    out.set(p, at);
    at += p.byteLength;
  }
  return out;
}
/** msgpack of { v: TREE_VERSION, e: } up to the array: fixmap(2), "v", version, "e". */
const TREE_PREFIX = Uint8Array.of(0x82, 0xa1, 0x76, TREE_VERSION, 0xa1, 0x65);

export function decodeTree(raw: Uint8Array, what: string): Entry[] {
  const o = decodeBounded(raw, (why) => new CorruptError(what, `undecodable tree (${why})`), { useBigInt64: true });
  const t = o as { v?: unknown; e?: unknown };
  if (typeof o !== "object" || o === null || t.v !== TREE_VERSION || !Array.isArray(t.e)) throw new CorruptError(what, "bad tree structure");
  return t.e.map((x) => decodeEntry(x, what));
}

/** Byte order of names, the order of entries in a tree (the one mechanism is util/names.ts). */
export { compareNames } from "../util/names.js";
