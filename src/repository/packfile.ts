/**
 * Packfiles: encoded blobs back to back, then the pack index (itself an
 * encoded blob listing type, MAC, offset, length and raw length of every
 * blob), then a fixed 52-byte footer (docs/FORMAT.md, "Packfiles"):
 *   "CFPK" | version u32 LE | index offset u64 LE | index length u32 LE | index MAC(32)
 * A packfile is named by the keyed MAC of all its bytes.
 */
import { encode } from "@msgpack/msgpack";
import { CorruptError } from "../util/errors.js";
import { toHex } from "../util/hex.js";
import { decodeBounded } from "../util/msgpack.js";
import { type BlobType, BlobType as BT, type Codec, MAX_ENCODED_BLOB, MAX_RAW_BLOB } from "./codec.js";
import { MAC_SIZE, type Mac } from "./crypto.js";

export const PACK_MAGIC = "CFPK";
export const PACK_VERSION = 1;
export const FOOTER_SIZE = 52;

export interface BlobEntry {
  type: BlobType;
  mac: Uint8Array;
  offset: number;
  length: number;
  rawLength: number;
}

/**
 * Collects encoded blobs of one packfile in memory until it is sealed.
 * Creating and filling one is synchronous, so concurrent writers of the
 * repository can never see two current packfiles.
 */
export class PackWriter<S extends PackSink = PackSink> {
  private readonly parts: Uint8Array[] = [];
  readonly entries: BlobEntry[] = [];
  size = 0;

  /** With `sink`, the parts go to it as they come (and seal() gives none) instead of being held. */
  constructor(readonly sink?: S) {}

  add(type: BlobType, mac: Uint8Array, rawLength: number, encoded: Uint8Array): BlobEntry {
    const e: BlobEntry = { type, mac, offset: this.size, length: encoded.byteLength, rawLength };
    if (this.sink) this.sink.push(encoded);
    else this.parts.push(encoded);
    this.entries.push(e);
    this.size += encoded.byteLength;
    return e;
  }

  /**
   * Appends `padding`, the index and the footer; returns the pack's name and its parts (to
   * hand to Store.put), or no parts once the sink has them all.
   */
  async seal(codec: Codec, mac: Mac, padding?: Uint8Array): Promise<{ mac: Uint8Array; parts: Uint8Array[]; size: number }> {
    // Bytes no entry covers, between the last blob and the index (see Repository.rotate).
    if (padding && padding.byteLength > 0) {
      if (this.sink) this.sink.push(padding);
      else this.parts.push(padding);
      this.size += padding.byteLength;
    }
    const raw = encodeIndex(this.entries);
    const indexMac = mac.mac(raw);
    const index = await codec.encode(BT.PACK_INDEX, indexMac, raw);
    const footer = Buffer.alloc(FOOTER_SIZE);
    footer.write(PACK_MAGIC, 0, "ascii");
    footer.writeUInt32LE(PACK_VERSION, 4);
    footer.writeBigUInt64LE(BigInt(this.size), 8);
    footer.writeUInt32LE(index.byteLength, 16);
    footer.set(indexMac, 20);
    this.size += index.byteLength + FOOTER_SIZE;
    if (this.sink) {
      this.sink.push(index);
      this.sink.push(footer);
      return { mac: await this.sink.finish(), parts: [], size: this.size };
    }
    this.parts.push(index, footer);
    return { mac: mac.macParts(this.parts), parts: this.parts, size: this.size };
  }
}

/** Where a PackWriter's bytes go as they come: push() in order, then finish() gives their MAC once all are written. */
export interface PackSink {
  push(part: Uint8Array): void;
  finish(): Promise<Uint8Array>;
}

export function encodeIndex(entries: readonly BlobEntry[]): Uint8Array {
  return encode(entries.map((e) => [e.type, e.mac, e.offset, e.length, e.rawLength]));
}

/** Decodes a list of blob entries, checking every field (no blob longer than the codec reads). */
export function decodeIndex(raw: Uint8Array, what: string): BlobEntry[] {
  const v = decodeBounded(raw, (why) => new CorruptError(what, `undecodable index (${why})`));
  if (!Array.isArray(v)) throw new CorruptError(what, "index is not a list");
  return v.map((x: unknown) => {
    if (!Array.isArray(x) || x.length !== 5) throw new CorruptError(what, "bad index entry");
    const [type, mac, offset, length, rawLength] = x as unknown[];
    if (
      typeof type !== "number" || !Object.values(BT).includes(type as BlobType) ||
      !(mac instanceof Uint8Array) || mac.byteLength !== MAC_SIZE ||
      !isUint(offset) || !isUint(length) || !isUint(rawLength) ||
      length > MAX_ENCODED_BLOB || rawLength > MAX_RAW_BLOB
    ) {
      throw new CorruptError(what, "bad index entry");
    }
    return { type: type as BlobType, mac, offset, length, rawLength };
  });
}

function isUint(n: unknown): n is number {
  return typeof n === "number" && Number.isSafeInteger(n) && n >= 0;
}

/** Reads the index of a whole packfile, verifying its name and every structural field. */
export async function readPack(bytes: Uint8Array, name: Uint8Array, codec: Codec, mac: Mac): Promise<BlobEntry[]> {
  const what = `packfile ${toHex(name)}`;
  if (bytes.byteLength < FOOTER_SIZE) throw new CorruptError(what, "truncated");
  const computed = mac.mac(bytes);
  if (Buffer.compare(computed, name) !== 0) throw new CorruptError(what, "content does not match its name");
  return readPackIndex(bytes, what, codec);
}

/**
 * The index of a packfile from its footer, the index blob authenticated by
 * the codec but the packfile's name not checked: for salvaging the intact
 * blobs of a damaged packfile (`repair index`), whose each blob is then
 * authenticated on its own.
 */
export async function readPackIndex(bytes: Uint8Array, what: string, codec: Codec): Promise<BlobEntry[]> {
  if (bytes.byteLength < FOOTER_SIZE) throw new CorruptError(what, "truncated");
  const b = Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const f = b.subarray(b.byteLength - FOOTER_SIZE);
  if (f.toString("ascii", 0, 4) !== PACK_MAGIC) throw new CorruptError(what, "bad footer magic");
  if (f.readUInt32LE(4) !== PACK_VERSION) throw new CorruptError(what, `unknown packfile version ${f.readUInt32LE(4)}`);
  const indexOffset = Number(f.readBigUInt64LE(8));
  const indexLength = f.readUInt32LE(16);
  if (indexOffset + indexLength !== b.byteLength - FOOTER_SIZE) throw new CorruptError(what, "bad footer offsets");
  const indexMac = new Uint8Array(f.subarray(20, 52));
  const raw = await codec.decode(BT.PACK_INDEX, indexMac, b.subarray(indexOffset, indexOffset + indexLength));
  const entries = decodeIndex(raw, what);
  for (const e of entries) {
    if (e.offset + e.length > indexOffset) throw new CorruptError(what, "index entry out of bounds");
  }
  return entries;
}
