/**
 * The state: which packfile holds which blob. It is the union of
 * append-only state deltas (Resource.STATE), each an encoded blob of type
 * STATE named by the MAC of its raw content, written only after the
 * packfile it describes is stored (docs/FORMAT.md, "State").
 * Delta body (msgpack): { v: 1, packs: [[packMac, [index entries]]] }.
 */
import { decode, encode } from "@msgpack/msgpack";
import { CorruptError } from "../util/errors.js";
import { toHex } from "../util/hex.js";
import { BlobType } from "./codec.js";
import { MAC_SIZE } from "./crypto.js";
import { type BlobEntry, decodeIndex, encodeIndex } from "./packfile.js";

export const STATE_VERSION = 1;

export interface PackRecord {
  mac: Uint8Array;
  entries: BlobEntry[];
}

export function encodeDelta(packs: readonly PackRecord[]): Uint8Array {
  return encode({ v: STATE_VERSION, packs: packs.map((p) => [p.mac, encodeIndex(p.entries)]) });
}

export function decodeDelta(raw: Uint8Array, name: Uint8Array): PackRecord[] {
  const what = `state ${toHex(name)}`;
  let o: unknown;
  try {
    o = decode(raw);
  } catch (e) {
    throw new CorruptError(what, `undecodable (${(e as Error).message})`);
  }
  const d = o as { v?: unknown; packs?: unknown };
  if (typeof o !== "object" || o === null || d.v !== STATE_VERSION || !Array.isArray(d.packs)) throw new CorruptError(what, "bad structure");
  return d.packs.map((p: unknown) => {
    if (!Array.isArray(p) || p.length !== 2 || !(p[0] instanceof Uint8Array) || p[0].byteLength !== MAC_SIZE || !(p[1] instanceof Uint8Array)) {
      throw new CorruptError(what, "bad pack record");
    }
    return { mac: p[0], entries: decodeIndex(p[1], what) };
  });
}

export interface BlobLocation {
  pack: Uint8Array;
  offset: number;
  length: number;
  rawLength: number;
}

/** Compact key of a blob: its type byte and its MAC as a latin1 string. */
export function blobKey(type: BlobType, mac: Uint8Array): string {
  return String.fromCharCode(type) + Buffer.from(mac.buffer, mac.byteOffset, mac.byteLength).toString("latin1");
}

export function keyMac(key: string): Uint8Array {
  return new Uint8Array(Buffer.from(key.slice(1), "latin1"));
}

export function keyType(key: string): BlobType {
  return key.charCodeAt(0) as BlobType;
}

/** The in-memory index of blobs, built from every delta. */
export class Index {
  private readonly blobs = new Map<string, BlobLocation>();
  readonly packs = new Map<string, Uint8Array>();
  /** Snapshot IDs (hex) -> ID, from the SNAPSHOT blobs of the index. */
  readonly snapshots = new Map<string, Uint8Array>();

  addPack(p: PackRecord): void {
    const pk = toHex(p.mac);
    const pack = this.packs.get(pk) ?? p.mac;
    this.byPack = null;
    this.packs.set(pk, pack);
    for (const e of p.entries) {
      this.blobs.set(blobKey(e.type, e.mac), { pack, offset: e.offset, length: e.length, rawLength: e.rawLength });
      if (e.type === BlobType.SNAPSHOT) this.snapshots.set(toHex(e.mac), e.mac);
    }
  }

  get(type: BlobType, mac: Uint8Array): BlobLocation | undefined {
    return this.blobs.get(blobKey(type, mac));
  }

  has(type: BlobType, mac: Uint8Array): boolean {
    return this.blobs.has(blobKey(type, mac));
  }

  /** has() by blobKey(). */
  hasKey(key: string): boolean {
    return this.blobs.has(key);
  }

  private byPack: Map<Uint8Array, [string, BlobLocation][]> | null = null;

  /** Blobs the state places in `pack` (a reverse map built on first use). */
  blobsOfPack(pack: Uint8Array): [string, BlobLocation][] {
    if (this.byPack === null) {
      this.byPack = new Map();
      for (const [k, loc] of this.blobs) {
        let l = this.byPack.get(loc.pack);
        if (!l) this.byPack.set(loc.pack, (l = []));
        l.push([k, loc]);
      }
    }
    return this.byPack.get(this.packs.get(toHex(pack)) ?? pack) ?? [];
  }

  /** The locations of the blobs of `type`, by packfile, each packfile's in offset order. */
  locationsByPack(type: BlobType): Map<Uint8Array, BlobLocation[]> {
    const out = new Map<Uint8Array, BlobLocation[]>();
    for (const [k, loc] of this.blobs) {
      if (keyType(k) !== type) continue;
      let l = out.get(loc.pack);
      if (!l) out.set(loc.pack, (l = []));
      l.push(loc);
    }
    for (const l of out.values()) l.sort((a, b) => a.offset - b.offset);
    return out;
  }

  get size(): number {
    return this.blobs.size;
  }

  *ofType(type: BlobType): Iterable<[Uint8Array, BlobLocation]> {
    for (const [k, loc] of this.blobs) if (keyType(k) === type) yield [keyMac(k), loc];
  }
}
