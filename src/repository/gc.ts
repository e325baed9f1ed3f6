/**
 * The steps of garbage collection that write (docs/FORMAT.md, "Garbage
 * collection"), each obeying the write order: repacking (live blobs read
 * from their packfile, authenticated, stored again in new packfiles and
 * their state deltas), marks and holdouts, deletion records, then the
 * deletion of packfile objects, then of the state deltas that only named
 * deleted packfiles. The plan (./gc-plan.ts) decides what; these do it.
 */
import { Resource } from "../connectors/flags.js";
import { CorruptError, throwIfAborted } from "../util/errors.js";
import { fromHex, toHex } from "../util/hex.js";
import { blobTypeName, BlobType } from "./codec.js";
import { readLocks } from "./locks.js";
import { writeConsolidated } from "./repair-index.js";
import type { Repository } from "./repository.js";
import { keyMac, keyType, type PackRecord } from "./state.js";

/** What repack() read and wrote. */
export interface RepackStats {
  blobs: number;
  /** Encoded bytes of the blobs stored again. */
  bytes: number;
}

/**
 * Copies the blobs `copy` names out of each packfile into new packfiles
 * (the repository's ordinary writes: packfile, then its state delta). The
 * packfiles must already be marked in memory (Index.addMark), so that
 * deduplication does not find the blobs where they are.
 */
export async function repack(repo: Repository, copy: ReadonlyMap<string, readonly string[]>, signal?: AbortSignal): Promise<RepackStats> {
  const stats: RepackStats = { blobs: 0, bytes: 0 };
  for (const [hex, keys] of copy) {
    if (keys.length === 0) continue;
    throwIfAborted(signal);
    const pack = repo.index.packs.get(hex)!;
    const bytes = await repo.store.get(Resource.PACKFILE, pack, undefined, { signal });
    for (const k of keys) {
      const loc = repo.index.locationsOfKey(k).find((l) => toHex(l.pack) === hex);
      if (!loc) continue; // no longer there (damage noted meanwhile): its other copies serve
      const type = keyType(k), mac = keyMac(k);
      const what = `${blobTypeName(type)} blob ${toHex(mac).slice(0, 12)} in packfile ${hex.slice(0, 12)}`;
      if (loc.offset + loc.length > bytes.byteLength) throw new CorruptError(what, "beyond the end of its packfile");
      const raw = await repo.codec.decode(type, mac, bytes.subarray(loc.offset, loc.offset + loc.length));
      if (type !== BlobType.SNAPSHOT && Buffer.compare(repo.mac.mac(raw), mac) !== 0) throw new CorruptError(what, "content does not match its MAC");
      const { added } = await repo.putBlob(type, raw, mac, signal);
      if (added) {
        stats.blobs++;
        stats.bytes += loc.length;
      }
    }
  }
  await repo.flush(signal);
  return stats;
}

/**
 * Stores the marks of `packs` at `markTimeMs` (one delta), then lists the
 * locks and stores the holdouts of those marks and of the earlier marks
 * `unconfirmed` names: every lock but this process's own.
 */
export async function storeMarks(repo: Repository, packs: readonly string[], markTimeMs: number, unconfirmed: readonly number[], nowMs: number, signal?: AbortSignal): Promise<number> {
  if (packs.length > 0) await repo.writeDelta({ unused: packs.map((hex) => ({ pack: repo.index.packs.get(hex) ?? fromHex(hex), markTimeMs })) }, signal);
  const times = [...(packs.length > 0 ? [markTimeMs] : []), ...unconfirmed];
  if (times.length === 0) return 0;
  const own = repo.lockName === undefined ? "" : toHex(repo.lockName);
  const locks = (await readLocks(repo.store, repo.codec)).map((l) => l.name).filter((n) => toHex(n) !== own);
  await repo.writeDelta({ holdouts: times.map((t) => ({ markTimeMs: t, locks, timeMs: nowMs })) }, signal);
  return locks.length;
}

/** Deletes the objects of every packfile recorded as deleted that `stored` (hex) still lists; returns how many. */
export async function deleteRecorded(repo: Repository, stored: ReadonlySet<string>, signal?: AbortSignal): Promise<number> {
  let n = 0;
  for (const [hex, r] of repo.index.deleted) {
    if (!stored.has(hex)) continue;
    throwIfAborted(signal);
    if (await repo.deleteObject(Resource.PACKFILE, r.pack, signal)) n++;
  }
  return n;
}

/**
 * Deletes the state deltas that hold nothing but packfile records of which
 * at least one names a deleted packfile, after storing the records of their
 * other packfiles in consolidated deltas. Killed at any point, the state is
 * the union of old and new: the same.
 */
export async function consolidateDeltas(repo: Repository, signal?: AbortSignal): Promise<number> {
  const stale = [...repo.deltas.values()].filter((d) => d.onlyPacks && d.packs.some((p) => repo.index.deleted.has(p)));
  const keep: PackRecord[] = [];
  for (const d of stale) {
    if (d.packs.every((p) => repo.index.deleted.has(p))) continue;
    const delta = await repo.readDelta(d.name, signal);
    keep.push(...delta.packs.filter((p) => !repo.index.deleted.has(toHex(p.mac))));
  }
  await writeConsolidated(repo, keep, signal);
  let n = 0;
  for (const d of stale) {
    throwIfAborted(signal);
    if (await repo.deleteObject(Resource.STATE, d.name, signal)) n++;
    repo.deltas.delete(toHex(d.name));
  }
  return n;
}
