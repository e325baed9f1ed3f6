/**
 * The state: which packfile holds which blob, and what is known to be lost.
 * It is the union of append-only state deltas (Resource.STATE), each an
 * encoded blob of type STATE named by the MAC of its raw content, written
 * only after the packfiles it names are stored (docs/FORMAT.md, "State").
 * A delta adds packfiles and may record damage (blobs found damaged or
 * missing), dropped packfiles (left out by `repair index`), removed
 * snapshots, removals taken back (`undelete`), verified packfiles (read
 * whole by `check`) and the records of garbage collection (marks,
 * revivals, holdouts, deletions: docs/FORMAT.md, "Garbage collection").
 * Deltas form a set: none depends on the order they are read in.
 */
import { encode } from "@msgpack/msgpack";
import { CorruptError } from "../util/errors.js";
import { toHex } from "../util/hex.js";
import { decodeBounded } from "../util/msgpack.js";
import { BlobType } from "./codec.js";
import { MAC_SIZE } from "./crypto.js";
import { type BlobEntry, decodeIndex, encodeIndex } from "./packfile.js";

/** Deltas that only add packfiles are written as version 1 (older readers read them); any other record needs version 2. */
export const STATE_VERSION = 1;
const STATE_VERSION_RECORDS = 2;
/** Deltas carrying a record kind that version 2 lacks (`verified`, `undeleted`, the garbage collection's) are version 3; a version-3 decoder takes a missing record array as empty. */
export const STATE_VERSION_KINDS = 3;

export interface PackRecord {
  mac: Uint8Array;
  entries: BlobEntry[];
}

/** Blobs of a packfile that a read found damaged or missing; `blobs` null means every blob the state places in it. */
export interface DamageRecord {
  pack: Uint8Array;
  blobs: { type: BlobType; mac: Uint8Array }[] | null;
  why: string;
  timeMs: number;
}

/** A packfile `repair index` left out of the state: never adopted again. */
export interface DroppedRecord {
  pack: Uint8Array;
  why: string;
  timeMs: number;
}

/** A snapshot removed on purpose (rm, or replaced by `repair snapshots`): hidden, and its absence is expected. */
export interface RemovalRecord {
  snapshot: Uint8Array;
  why: string;
  timeMs: number;
}

/** A packfile `check` read whole and found intact at `timeMs`. */
export interface VerifiedRecord {
  pack: Uint8Array;
  timeMs: number;
}

/** A removal taken back (`undelete`): cancels the removal records of `snapshot` whose time is at most `removedUpTo`; a later removal wins. */
export interface UndeletedRecord {
  snapshot: Uint8Array;
  removedUpTo: number;
  why: string;
  timeMs: number;
}

/** A packfile marked for deletion by `maintenance` at `markTimeMs`: it serves reads but offers nothing to deduplication. */
export interface UnusedRecord {
  pack: Uint8Array;
  markTimeMs: number;
}

/** Cancels the mark of `pack` made at `markTimeMs`: a snapshot committed since needs it. */
export interface RevivedRecord {
  pack: Uint8Array;
  markTimeMs: number;
  timeMs: number;
}

/** The locks that existed once the marks of `markTimeMs` were stored: deletion waits for them to end. */
export interface HoldoutsRecord {
  markTimeMs: number;
  locks: Uint8Array[];
  timeMs: number;
}

/** A packfile deleted by `maintenance`: no longer part of the state, whatever delta names it. */
export interface DeletedRecord {
  pack: Uint8Array;
  timeMs: number;
}

export interface StateDelta {
  packs: PackRecord[];
  damaged: DamageRecord[];
  dropped: DroppedRecord[];
  removed: RemovalRecord[];
  verified: VerifiedRecord[];
  undeleted: UndeletedRecord[];
  unused: UnusedRecord[];
  revived: RevivedRecord[];
  holdouts: HoldoutsRecord[];
  deleted: DeletedRecord[];
}

export function emptyDelta(): StateDelta {
  return { packs: [], damaged: [], dropped: [], removed: [], verified: [], undeleted: [], unused: [], revived: [], holdouts: [], deleted: [] };
}

/** The record kinds of version 3, each encoded as an array of arrays. */
const V3_KINDS = {
  verified: (r: VerifiedRecord) => [r.pack, r.timeMs],
  undeleted: (r: UndeletedRecord) => [r.snapshot, r.removedUpTo, r.why, r.timeMs],
  unused: (r: UnusedRecord) => [r.pack, r.markTimeMs],
  revived: (r: RevivedRecord) => [r.pack, r.markTimeMs, r.timeMs],
  holdouts: (r: HoldoutsRecord) => [r.markTimeMs, r.locks, r.timeMs],
  deleted: (r: DeletedRecord) => [r.pack, r.timeMs],
} as const;
type V3Kind = keyof typeof V3_KINDS;

export function encodeDelta(d: Partial<StateDelta>): Uint8Array {
  const packs = (d.packs ?? []).map((p) => [p.mac, encodeIndex(p.entries)]);
  const damaged = d.damaged ?? [], dropped = d.dropped ?? [], removed = d.removed ?? [];
  // Only the version-3 kinds a delta carries are written.
  const v3: Record<string, unknown[]> = {};
  for (const kind of Object.keys(V3_KINDS) as V3Kind[]) {
    const records = (d[kind] ?? []) as never[];
    if (records.length > 0) v3[kind] = records.map((r) => (V3_KINDS[kind] as (r: never) => unknown)(r));
  }
  const kinds = Object.keys(v3).length > 0;
  if (damaged.length + dropped.length + removed.length === 0 && !kinds) return encode({ v: STATE_VERSION, packs });
  return encode({
    v: kinds ? STATE_VERSION_KINDS : STATE_VERSION_RECORDS,
    packs,
    damaged: damaged.map((r) => [r.pack, r.blobs === null ? null : r.blobs.map((b) => [b.type, b.mac]), r.why, r.timeMs]),
    dropped: dropped.map((r) => [r.pack, r.why, r.timeMs]),
    removed: removed.map((r) => [r.snapshot, r.why, r.timeMs]),
    ...v3,
  });
}

const isMac = (v: unknown): v is Uint8Array => v instanceof Uint8Array && v.byteLength === MAC_SIZE;
const isTime = (v: unknown): v is number => typeof v === "number" && Number.isSafeInteger(v);
const isType = (v: unknown): v is BlobType => typeof v === "number" && Object.values(BlobType).includes(v as BlobType);

export function decodeDelta(raw: Uint8Array, name: Uint8Array): StateDelta {
  const what = `state ${toHex(name)}`;
  const o = decodeBounded(raw, (why) => new CorruptError(what, `undecodable (${why})`));
  const d = o as { v?: unknown; packs?: unknown; damaged?: unknown; dropped?: unknown; removed?: unknown } & Partial<Record<V3Kind, unknown>>;
  if (typeof o !== "object" || o === null || Array.isArray(o)) throw new CorruptError(what, "bad structure");
  if (d.v !== STATE_VERSION && d.v !== STATE_VERSION_RECORDS && d.v !== STATE_VERSION_KINDS) throw new CorruptError(what, `unknown state version ${String(d.v)}`);
  if (!Array.isArray(d.packs)) throw new CorruptError(what, "bad structure");
  const list = (v: unknown, field: string): unknown[] => {
    if (d.v === STATE_VERSION || v === undefined) return [];
    if (!Array.isArray(v)) throw new CorruptError(what, `bad ${field} records`);
    return v;
  };
  const bad = (field: string) => new CorruptError(what, `bad ${field} record`);
  const packs = d.packs.map((p: unknown) => {
    if (!Array.isArray(p) || p.length !== 2 || !isMac(p[0]) || !(p[1] instanceof Uint8Array)) throw bad("pack");
    return { mac: p[0], entries: decodeIndex(p[1], what) };
  });
  const damaged = list(d.damaged, "damaged").map((r): DamageRecord => {
    if (!Array.isArray(r) || r.length !== 4 || !isMac(r[0]) || typeof r[2] !== "string" || !isTime(r[3])) throw bad("damaged");
    if (r[1] !== null && !Array.isArray(r[1])) throw bad("damaged");
    const blobs = r[1] === null ? null : (r[1] as unknown[]).map((b) => {
      if (!Array.isArray(b) || b.length !== 2 || !isType(b[0]) || !isMac(b[1])) throw bad("damaged");
      return { type: b[0], mac: b[1] };
    });
    return { pack: r[0], blobs, why: r[2], timeMs: r[3] };
  });
  const triple = (field: string) => (r: unknown): [Uint8Array, string, number] => {
    if (!Array.isArray(r) || r.length !== 3 || !isMac(r[0]) || typeof r[1] !== "string" || !isTime(r[2])) throw bad(field);
    return [r[0], r[1], r[2]];
  };
  const dropped = list(d.dropped, "dropped").map(triple("dropped")).map(([pack, why, timeMs]) => ({ pack, why, timeMs }));
  const removed = list(d.removed, "removed").map(triple("removed")).map(([snapshot, why, timeMs]) => ({ snapshot, why, timeMs }));
  // Kinds of version 3 are read from version-3 deltas only.
  const v3 = (kind: V3Kind, length: number): unknown[][] =>
    (d.v === STATE_VERSION_KINDS ? list(d[kind], kind) : []).map((r) => {
      if (!Array.isArray(r) || r.length !== length) throw bad(kind);
      return r;
    });
  const verified = v3("verified", 2).map((r): VerifiedRecord => {
    if (!isMac(r[0]) || !isTime(r[1])) throw bad("verified");
    return { pack: r[0], timeMs: r[1] };
  });
  const undeleted = v3("undeleted", 4).map((r): UndeletedRecord => {
    if (!isMac(r[0]) || !isTime(r[1]) || typeof r[2] !== "string" || !isTime(r[3])) throw bad("undeleted");
    return { snapshot: r[0], removedUpTo: r[1], why: r[2], timeMs: r[3] };
  });
  const unused = v3("unused", 2).map((r): UnusedRecord => {
    if (!isMac(r[0]) || !isTime(r[1])) throw bad("unused");
    return { pack: r[0], markTimeMs: r[1] };
  });
  const revived = v3("revived", 3).map((r): RevivedRecord => {
    if (!isMac(r[0]) || !isTime(r[1]) || !isTime(r[2])) throw bad("revived");
    return { pack: r[0], markTimeMs: r[1], timeMs: r[2] };
  });
  const holdouts = v3("holdouts", 3).map((r): HoldoutsRecord => {
    if (!isTime(r[0]) || !Array.isArray(r[1]) || !r[1].every(isMac) || !isTime(r[2])) throw bad("holdouts");
    return { markTimeMs: r[0], locks: r[1] as Uint8Array[], timeMs: r[2] };
  });
  const deleted = v3("deleted", 2).map((r): DeletedRecord => {
    if (!isMac(r[0]) || !isTime(r[1])) throw bad("deleted");
    return { pack: r[0], timeMs: r[1] };
  });
  return { packs, damaged, dropped, removed, verified, undeleted, unused, revived, holdouts, deleted };
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

/**
 * The in-memory index of blobs, built from every delta in any order. A blob
 * stored in several packfiles keeps its other locations, so that damage to
 * one of them falls back on the next; a location recorded as damaged is
 * never used, so the blob counts as absent and a backup stores it again.
 */
export class Index {
  private readonly blobs = new Map<string, BlobLocation>();
  /** Further locations of blobs stored more than once (rare: stored again after damage, or by concurrent backups). */
  private readonly extra = new Map<string, BlobLocation[]>();
  /** Packfiles named in the state (hex -> name). */
  readonly packs = new Map<string, Uint8Array>();
  /** Snapshot IDs (hex) -> ID, from the SNAPSHOT blobs of the index, less removed ones (a damaged header stays listed). */
  readonly snapshots = new Map<string, Uint8Array>();
  /** Every snapshot ID (hex) a SNAPSHOT blob of the index names, removed or not: what an undelete makes listed again. */
  private readonly headers = new Map<string, Uint8Array>();
  /** Damage known for a packfile (hex): the blob keys, or null for all of it. */
  readonly damaged = new Map<string, { keys: Set<string> | null; why: string; timeMs: number }>();
  /** Why a blob has no usable location left, by key. */
  private readonly lost = new Map<string, string>();
  /** Locations given up because of damage, by packfile (hex): where `repair index` looks for intact blobs to salvage. */
  private readonly givenUp = new Map<string, [string, BlobLocation][]>();
  readonly dropped = new Map<string, DroppedRecord>();
  /** Snapshots (hex) removed now: the latest removal record of each, unless an undelete cancels it. */
  readonly removed = new Map<string, RemovalRecord>();
  /** The latest removal record of each snapshot (hex), cancelled or not. */
  private readonly latestRemoval = new Map<string, RemovalRecord>();
  /** The undelete record with the highest `removedUpTo` of each snapshot (hex). */
  readonly undeleted = new Map<string, UndeletedRecord>();
  /** When each packfile (hex) was last found intact by a read of it whole (`verified` records; the latest wins). */
  readonly verified = new Map<string, number>();
  /** Bytes of each packfile (hex) that its blobs span, from its index: what coverage and `--read-data-subset SIZE` count. */
  readonly packBytes = new Map<string, number>();
  /** Marks of each packfile (hex): their mark times (`unused` records), and those cancelled (`revived`). */
  readonly marks = new Map<string, Set<number>>();
  readonly revived = new Map<string, Set<number>>();
  /** Holdout locks (hex) of each mark time; a mark time without an entry is unconfirmed. */
  readonly holdouts = new Map<number, Set<string>>();
  /** Packfiles (hex) deleted by `maintenance`: never part of the index. */
  readonly deleted = new Map<string, DeletedRecord>();

  /** Applies every record of a delta. */
  apply(d: StateDelta): void {
    for (const r of d.deleted) this.addDeleted(r);
    for (const r of d.unused) this.addMark(r.pack, r.markTimeMs);
    for (const r of d.revived) this.addRevived(r);
    for (const r of d.holdouts) this.addHoldouts(r);
    for (const r of d.removed) this.addRemoval(r);
    for (const r of d.undeleted) this.addUndeleted(r);
    for (const r of d.verified) this.addVerified(r);
    for (const r of d.damaged) this.markDamaged(r);
    for (const r of d.dropped) this.dropped.set(toHex(r.pack), r);
    for (const p of d.packs) this.addPack(p);
  }

  addPack(p: PackRecord): void {
    const pk = toHex(p.mac);
    if (this.deleted.has(pk)) return;
    const pack = this.packs.get(pk) ?? p.mac;
    this.byPack = null;
    this.markedPacks = null;
    this.packs.set(pk, pack);
    let end = this.packBytes.get(pk) ?? 0;
    for (const e of p.entries) end = Math.max(end, e.offset + e.length);
    this.packBytes.set(pk, end);
    const damage = this.damaged.get(pk);
    for (const e of p.entries) {
      const k = blobKey(e.type, e.mac);
      const loc = { pack, offset: e.offset, length: e.length, rawLength: e.rawLength };
      if (e.type === BlobType.SNAPSHOT && !this.headers.has(toHex(e.mac))) this.headers.set(toHex(e.mac), e.mac);
      const snapshot = e.type === BlobType.SNAPSHOT && !this.removed.has(toHex(e.mac));
      if (damage && (damage.keys === null || damage.keys.has(k))) {
        this.giveUp(pk, k, loc);
        if (!this.blobs.has(k)) this.lost.set(k, damage.why);
        if (snapshot) this.snapshots.set(toHex(e.mac), e.mac); // listed, and reported as unreadable
        continue;
      }
      const cur = this.blobs.get(k);
      if (!cur || cur.pack === pack) {
        this.blobs.set(k, loc);
        if (this.lost.size > 0) this.lost.delete(k);
      } else {
        const more = this.extra.get(k) ?? [];
        if (!more.some((l) => l.pack === pack)) more.push(loc);
        this.extra.set(k, more);
      }
      if (snapshot) this.snapshots.set(toHex(e.mac), e.mac);
    }
  }

  /** Stops using the damaged locations `r` names; a blob stored elsewhere too falls back on that copy. */
  markDamaged(r: DamageRecord): void {
    const pk = toHex(r.pack);
    const keys = r.blobs === null ? null : new Set(r.blobs.map((b) => blobKey(b.type, b.mac)));
    const d = this.damaged.get(pk);
    if (!d) this.damaged.set(pk, { keys, why: r.why, timeMs: r.timeMs });
    else if (d.keys !== null) {
      if (keys === null) Object.assign(d, { keys: null, why: r.why, timeMs: r.timeMs });
      else for (const k of keys) d.keys.add(k);
    }
    const inPack = (l: BlobLocation) => toHex(l.pack) === pk;
    const affected = keys ?? new Set(this.blobsOfPack(r.pack).map(([k]) => k));
    if (keys === null) for (const [k, more] of this.extra) if (more.some(inPack)) affected.add(k);
    for (const k of affected) {
      for (const l of this.extra.get(k) ?? []) if (inPack(l)) this.giveUp(pk, k, l);
      const more = (this.extra.get(k) ?? []).filter((l) => !inPack(l));
      const cur = this.blobs.get(k);
      if (cur && inPack(cur)) {
        this.giveUp(pk, k, cur);
        const next = more.shift();
        if (next) this.blobs.set(k, next);
        else {
          this.blobs.delete(k);
          this.lost.set(k, r.why);
        }
      }
      if (more.length > 0) this.extra.set(k, more);
      else this.extra.delete(k);
    }
    this.byPack = null;
  }

  private giveUp(packHex: string, key: string, loc: BlobLocation): void {
    const l = this.givenUp.get(packHex) ?? [];
    l.push([key, loc]);
    this.givenUp.set(packHex, l);
  }

  /** The locations in `pack` (hex) that damage made the index give up. */
  givenUpIn(packHex: string): readonly [string, BlobLocation][] {
    return this.givenUp.get(packHex) ?? [];
  }

  /** Marks `pack` at `markTimeMs` (also in memory only, before the record is stored: dedup then stops offering it). */
  addMark(pack: Uint8Array, markTimeMs: number): void {
    const hex = toHex(pack);
    let times = this.marks.get(hex);
    if (!times) this.marks.set(hex, (times = new Set()));
    times.add(markTimeMs);
    this.markedPacks = null;
  }

  addRevived(r: RevivedRecord): void {
    const hex = toHex(r.pack);
    let times = this.revived.get(hex);
    if (!times) this.revived.set(hex, (times = new Set()));
    times.add(r.markTimeMs);
    this.markedPacks = null;
  }

  addHoldouts(r: HoldoutsRecord): void {
    let locks = this.holdouts.get(r.markTimeMs);
    if (!locks) this.holdouts.set(r.markTimeMs, (locks = new Set()));
    for (const l of r.locks) locks.add(toHex(l));
  }

  /** The time of the latest mark of `packHex` that no `revived` record cancels, if any. */
  markOf(packHex: string): number | undefined {
    const times = this.marks.get(packHex);
    if (!times) return undefined;
    const cancelled = this.revived.get(packHex);
    let latest: number | undefined;
    for (const t of times) if (!cancelled?.has(t) && (latest === undefined || t > latest)) latest = t;
    return latest;
  }

  /** The indexed packfiles marked and not revived (their names as the locations hold them); null when it needs building again. */
  private markedPacks: Set<Uint8Array> | null = null;

  private marked(): Set<Uint8Array> {
    if (this.markedPacks === null) {
      this.markedPacks = new Set();
      for (const hex of this.marks.keys()) {
        const pack = this.packs.get(hex);
        if (pack && this.markOf(hex) !== undefined) this.markedPacks.add(pack);
      }
    }
    return this.markedPacks;
  }

  /** Stops naming a deleted packfile: its blobs lose their locations there (a blob with no other one is absent). */
  addDeleted(r: DeletedRecord): void {
    const pk = toHex(r.pack);
    this.deleted.set(pk, r);
    const mac = this.packs.get(pk);
    if (!mac) return;
    for (const [k] of this.blobsOfPack(mac)) {
      const left = this.locationsOfKey(k).filter((l) => toHex(l.pack) !== pk);
      const first = left.shift();
      if (first) this.blobs.set(k, first);
      else {
        this.blobs.delete(k);
        if (keyType(k) === BlobType.SNAPSHOT) {
          // Its header is gone: no undelete lists it again.
          this.snapshots.delete(toHex(keyMac(k)));
          this.headers.delete(toHex(keyMac(k)));
        }
      }
      if (left.length > 0) this.extra.set(k, left);
      else this.extra.delete(k);
    }
    this.packs.delete(pk);
    this.packBytes.delete(pk);
    this.givenUp.delete(pk);
    this.byPack = null;
    this.markedPacks = null;
  }

  /** Every usable location of a blob, by blobKey(): the first one reads use, then the others. */
  locationsOfKey(key: string): BlobLocation[] {
    const first = this.blobs.get(key);
    return first ? [first, ...(this.extra.get(key) ?? [])] : [];
  }

  /**
   * Whether deduplication may reuse the blob: it has a location in a
   * packfile that is not marked for deletion (docs/FORMAT.md, "Garbage
   * collection"). Reads still use marked packfiles.
   */
  offersKey(key: string): boolean {
    const first = this.blobs.get(key);
    if (!first) return false;
    const marked = this.marked();
    if (marked.size === 0 || !marked.has(first.pack)) return true;
    return (this.extra.get(key) ?? []).some((l) => !marked.has(l.pack));
  }

  addVerified(r: VerifiedRecord): void {
    const hex = toHex(r.pack);
    const cur = this.verified.get(hex);
    if (cur === undefined || r.timeMs > cur) this.verified.set(hex, r.timeMs);
  }

  /** A removal record: the latest of a snapshot's wins (ties by reason, so that the order records are read in does not matter). */
  addRemoval(r: RemovalRecord): void {
    const hex = toHex(r.snapshot);
    const cur = this.latestRemoval.get(hex);
    if (!cur || r.timeMs > cur.timeMs || (r.timeMs === cur.timeMs && r.why > cur.why)) this.latestRemoval.set(hex, r);
    this.settleRemoval(hex);
  }

  addUndeleted(r: UndeletedRecord): void {
    const hex = toHex(r.snapshot);
    const cur = this.undeleted.get(hex);
    if (!cur || r.removedUpTo > cur.removedUpTo || (r.removedUpTo === cur.removedUpTo && r.timeMs > cur.timeMs)) this.undeleted.set(hex, r);
    this.settleRemoval(hex);
  }

  /** Whether a snapshot is removed: its latest removal is later than every undelete's `removedUpTo`. */
  private settleRemoval(hex: string): void {
    const r = this.latestRemoval.get(hex);
    const upTo = this.undeleted.get(hex)?.removedUpTo;
    if (r && (upTo === undefined || r.timeMs > upTo)) {
      this.removed.set(hex, r);
      this.snapshots.delete(hex);
      return;
    }
    this.removed.delete(hex);
    const id = this.headers.get(hex);
    if (id) this.snapshots.set(hex, id);
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

  /** Why a blob the state knew has no usable location (it was found damaged or missing), if so. */
  lostReason(type: BlobType, mac: Uint8Array): string | undefined {
    return this.lost.get(blobKey(type, mac));
  }

  /** Whether the state records damage to any blob of `pack` (hex). */
  isDamaged(packHex: string): boolean {
    return this.damaged.has(packHex);
  }

  private byPack: Map<Uint8Array, [string, BlobLocation][]> | null = null;

  /** Blobs the index places in `pack` (a reverse map built on first use). */
  blobsOfPack(pack: Uint8Array): [string, BlobLocation][] {
    if (this.byPack === null) {
      this.byPack = new Map();
      const add = (k: string, loc: BlobLocation) => {
        let l = this.byPack!.get(loc.pack);
        if (!l) this.byPack!.set(loc.pack, (l = []));
        l.push([k, loc]);
      };
      for (const [k, loc] of this.blobs) add(k, loc);
      for (const [k, more] of this.extra) for (const loc of more) add(k, loc);
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
