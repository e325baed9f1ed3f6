/**
 * The ptar archive format (docs/FORMAT.md, "Single-file repositories
 * (ptar)"): encoding an archive's header and tail (index, config,
 * trailer), and decoding an archive from its bytes, checking every offset
 * before trusting it. No file I/O: the bytes come through an ArchiveBytes.
 *
 *   header (16) | object bytes ... | index | config blob | trailer (104)
 */
import { createHash } from "node:crypto";
import { CofferError, CorruptError } from "../../util/errors.js";
import { Resource } from "../flags.js";
import { MAC_BYTES } from "../store-checks.js";

export const HEADER_MAGIC = Buffer.from("COFFPTAR", "latin1");
const TRAILER_MAGIC = Buffer.from("COFFPEND", "latin1");
const VERSION = 1;
export const HEADER_SIZE = 16;
export const TRAILER_SIZE = 104;
/** Offset of the checksum inside the trailer: it covers every trailer byte before it. */
const TRAILER_SUM_AT = 72;
export const ENTRY_SIZE = 49;
export const LINEAGE_BYTES = 16;
const MAX_OFFSET = BigInt(Number.MAX_SAFE_INTEGER);
/** Largest piece of the index and config read at once to check their sum. */
const SUM_CHUNK = 4 * 1024 * 1024;

export interface Entry {
  offset: number;
  length: number;
}

/** Object key: the resource digit, then the MAC in lower-case hex (so keys sort as (resource, mac)). */
export type Index = Map<string, Entry>;

/** A parsed, validated archive. */
export interface Archive {
  size: number;
  generation: bigint;
  lineage: Buffer;
  /** End of the data region = where the index starts. */
  dataEnd: number;
  index: Index;
  config: Uint8Array;
}

/** Where a decoder reads an archive's bytes from: a file, or bytes in memory. */
export interface ArchiveBytes {
  readonly size: number;
  /** Fills `buf` with the bytes at `position`; CORRUPT when they end first. */
  readInto(buf: Buffer, position: number): Promise<void>;
}

export function headerBytes(): Buffer {
  const h = Buffer.alloc(HEADER_SIZE);
  HEADER_MAGIC.copy(h, 0);
  h.writeUInt32LE(VERSION, 8);
  h.writeUInt32LE(0, 12);
  return h;
}

/** The index, config and trailer of an archive whose object bytes end at `dataEnd`. */
export function encodeTail(dataEnd: number, index: Index, config: Uint8Array, generation: bigint, lineage: Buffer): Buffer {
  const keys = [...index.keys()].sort();
  const idx = Buffer.alloc(keys.length * ENTRY_SIZE);
  let at = 0;
  for (const key of keys) {
    const e = index.get(key)!;
    idx.writeUInt8(Number(key[0]), at);
    idx.write(key.slice(1), at + 1, MAC_BYTES, "hex");
    idx.writeBigUInt64LE(BigInt(e.offset), at + 33);
    idx.writeBigUInt64LE(BigInt(e.length), at + 41);
    at += ENTRY_SIZE;
  }
  const configOffset = dataEnd + idx.byteLength;
  const t = Buffer.alloc(TRAILER_SIZE);
  TRAILER_MAGIC.copy(t, 0);
  t.writeUInt32LE(VERSION, 8);
  t.writeUInt32LE(0, 12);
  t.writeBigUInt64LE(generation, 16);
  lineage.copy(t, 24, 0, LINEAGE_BYTES);
  t.writeBigUInt64LE(BigInt(dataEnd), 40);
  t.writeBigUInt64LE(BigInt(keys.length), 48);
  t.writeBigUInt64LE(BigInt(configOffset), 56);
  t.writeBigUInt64LE(BigInt(config.byteLength), 64);
  const sum = createHash("sha256")
    .update(headerBytes())
    .update(idx)
    .update(config)
    .update(t.subarray(0, TRAILER_SUM_AT))
    .digest();
  sum.copy(t, TRAILER_SUM_AT);
  return Buffer.concat([idx, config, t]);
}

/** Reads and checks an archive's header, trailer, index and config (`file` names it in errors); never trusts an offset before checking it. */
export async function decodeArchive(src: ArchiveBytes, file: string): Promise<Archive> {
  const { size } = src;
  const corrupt = (detail: string) => new CorruptError(file, detail, { path: file });
  const read = async (position: number, length: number) => {
    const out = Buffer.alloc(length);
    await src.readInto(out, position);
    return out;
  };
  if (size < HEADER_SIZE) throw corrupt(`not a ptar archive (${size} bytes)`);
  const header = await read(0, HEADER_SIZE);
  if (!header.subarray(0, 8).equals(HEADER_MAGIC)) throw corrupt("not a ptar archive (bad magic)");
  const version = header.readUInt32LE(8);
  if (version !== VERSION) {
    throw new CofferError("UNSUPPORTED", `${file}: ptar version ${version} is not supported (this coffer reads ${VERSION})`, {
      path: file,
      version,
    });
  }
  if (size < HEADER_SIZE + TRAILER_SIZE) throw corrupt(`truncated ptar archive (${size} bytes, no room for a trailer)`);
  const t = await read(size - TRAILER_SIZE, TRAILER_SIZE);
  if (!t.subarray(0, 8).equals(TRAILER_MAGIC)) throw corrupt("no ptar trailer at the end: truncated or damaged");
  const indexOffsetB = t.readBigUInt64LE(40);
  const countB = t.readBigUInt64LE(48);
  const configOffsetB = t.readBigUInt64LE(56);
  const configLengthB = t.readBigUInt64LE(64);
  const end = BigInt(size - TRAILER_SIZE);
  if (
    indexOffsetB < BigInt(HEADER_SIZE) ||
    indexOffsetB > end ||
    countB > end ||
    indexOffsetB + countB * BigInt(ENTRY_SIZE) !== configOffsetB ||
    configLengthB > end ||
    configOffsetB + configLengthB !== end ||
    end > MAX_OFFSET
  ) {
    throw corrupt("trailer offsets do not fit the file: truncated or damaged");
  }
  const indexOffset = Number(indexOffsetB);
  const count = Number(countB);
  const configOffset = Number(configOffsetB);
  // Check the sum before trusting the lengths enough to allocate them.
  const hash = createHash("sha256").update(header);
  const buf = Buffer.allocUnsafe(Math.min(SUM_CHUNK, size - TRAILER_SIZE - indexOffset));
  for (let at = indexOffset; at < size - TRAILER_SIZE; ) {
    const n = Math.min(buf.byteLength, size - TRAILER_SIZE - at);
    await src.readInto(buf.subarray(0, n), at);
    hash.update(buf.subarray(0, n));
    at += n;
  }
  const sum = hash.update(t.subarray(0, TRAILER_SUM_AT)).digest();
  if (!sum.equals(t.subarray(TRAILER_SUM_AT))) throw corrupt("checksum mismatch: index, config or trailer damaged");
  if (t.readUInt32LE(8) !== VERSION || t.readUInt32LE(12) !== 0 || header.readUInt32LE(12) !== 0) {
    throw corrupt("header and trailer disagree on version or flags");
  }
  const region = await read(indexOffset, configOffset - indexOffset);
  const config = new Uint8Array(await read(configOffset, Number(configLengthB)));
  return {
    size,
    generation: t.readBigUInt64LE(16),
    lineage: Buffer.from(t.subarray(24, 24 + LINEAGE_BYTES)),
    dataEnd: indexOffset,
    index: decodeIndex(region, count, indexOffset, corrupt),
    config,
  };
}

/** The `count` entries of `region`, each checked to lie in the data region before `indexOffset`, in order. */
function decodeIndex(region: Buffer, count: number, indexOffset: number, corrupt: (detail: string) => CorruptError): Index {
  const index: Index = new Map();
  let previous = "";
  for (let i = 0; i < count; i++) {
    const at = i * ENTRY_SIZE;
    const resource = region.readUInt8(at);
    if (resource !== Resource.PACKFILE && resource !== Resource.STATE) {
      throw corrupt(`index entry ${i}: unknown resource ${resource}`);
    }
    const key = String(resource) + region.toString("hex", at + 1, at + 33);
    if (key <= previous) throw corrupt(`index entry ${i}: out of order or duplicate`);
    previous = key;
    const offset = region.readBigUInt64LE(at + 33);
    const length = region.readBigUInt64LE(at + 41);
    if (offset < BigInt(HEADER_SIZE) || offset + length > BigInt(indexOffset)) {
      throw corrupt(`index entry ${i}: object ${offset}+${length} outside the data region (${HEADER_SIZE}..${indexOffset})`);
    }
    index.set(key, { offset: Number(offset), length: Number(length) });
  }
  return index;
}
