/**
 * Which snapshots a repository holds: listing their headers (with those
 * that cannot be read and those a repair replaced set apart) and resolving
 * a selector, an ID prefix or the latest complete snapshot, to one header.
 * The command line's spelling of a selector is parsed in src/cli.
 */
import { BlobType } from "../repository/codec.js";
import type { Repository } from "../repository/repository.js";
import { mapLimit } from "../util/concurrency.js";
import { CofferError, isCofferError, throwIfAborted } from "../util/errors.js";
import { toHex } from "../util/hex.js";
import { decodeHeader, isPartial, type SnapshotHeader } from "./header.js";

/** A snapshot whose header could not be read (damaged or missing), and why. */
export interface UnreadableSnapshot {
  id: Uint8Array;
  message: string;
}

export interface SnapshotList {
  snapshots: SnapshotHeader[];
  /** Snapshots whose header failed: every command works around them and names them. */
  unreadable: UnreadableSnapshot[];
  /**
   * Snapshots that a snapshot written by `repair snapshots` replaces (its
   * `repairOf`) but whose removal record is missing (that repair was killed
   * before its commit): hidden as if removed.
   */
  replaced: SnapshotHeader[];
}

/** Which snapshot a command works on: the latest complete one, or the one whose ID starts with `idPrefix` (hex digits). */
export type SnapshotSelector = { latest: true } | { idPrefix: string };

export const LATEST: SnapshotSelector = { latest: true };

/**
 * Snapshot headers, oldest first: every complete snapshot and, per backup
 * run that never completed, its latest checkpoint (docs/FORMAT.md,
 * "Checkpoints"). `superseded` adds the checkpoints that are hidden. A
 * header that cannot be read is listed in `unreadable`, not thrown.
 */
export async function listSnapshots(repo: Repository, signal?: AbortSignal, o: { superseded?: boolean } = {}): Promise<SnapshotList> {
  const ids = repo.snapshotIds();
  const unreadable: UnreadableSnapshot[] = [];
  const read = await mapLimit(ids, 8, async (id) => {
    try {
      return decodeHeader(await repo.getBlob(BlobType.SNAPSHOT, id, signal), id);
    } catch (e) {
      throwIfAborted(signal);
      if (!isCofferError(e, "CORRUPT") && !isCofferError(e, "NOT_FOUND")) throw e;
      unreadable.push({ id, message: e.message });
      return undefined;
    }
  });
  const readable = read.filter((h): h is SnapshotHeader => h !== undefined);
  const replacedIds = new Set(readable.flatMap((h) => (h.repairOf ? [toHex(h.repairOf.id)] : [])));
  const replaced = readable.filter((h) => replacedIds.has(toHex(h.id)));
  const headers = readable.filter((h) => !replacedIds.has(toHex(h.id)));
  const cmp = (a: SnapshotHeader, b: SnapshotHeader) => (a.timeNs < b.timeNs ? -1 : a.timeNs > b.timeNs ? 1 : (a.checkpoint ?? Infinity) - (b.checkpoint ?? Infinity));
  headers.sort(cmp);
  if (o.superseded) return { snapshots: headers, unreadable, replaced };
  // The best of each run: a complete snapshot, else the highest checkpoint.
  const best = new Map<string, SnapshotHeader>();
  for (const h of headers) {
    if (!h.run) continue;
    const k = toHex(h.run);
    const b = best.get(k);
    if (!b || (b.checkpoint !== undefined && (h.checkpoint === undefined || h.checkpoint > b.checkpoint))) best.set(k, h);
  }
  // A checkpoint of an unfinished run stays: for a source that deletes what is
  // acknowledged, it may hold the only copy of the records it covers.
  return { snapshots: headers.filter((h) => !h.run || best.get(toHex(h.run)) === h), unreadable, replaced };
}

/**
 * The header of the snapshot `selector` names: the latest complete one
 * (SNAPSHOT_NOT_FOUND when there is none), or the one snapshot whose ID
 * starts with the prefix, in either case (SNAPSHOT_NOT_FOUND, or
 * SNAPSHOT_AMBIGUOUS naming the candidates).
 */
export async function resolveSnapshot(repo: Repository, selector: SnapshotSelector = LATEST, signal?: AbortSignal): Promise<SnapshotHeader> {
  if ("latest" in selector) {
    const all = (await listSnapshots(repo, signal)).snapshots;
    const last = all.filter((h) => !isPartial(h)).at(-1);
    if (!last) {
      const partial = all.length > 0 ? ` (there are ${all.length} partial snapshots from interrupted backups: name one by its ID)` : "";
      throw new CofferError("SNAPSHOT_NOT_FOUND", `the repository has no complete snapshot${partial}`);
    }
    return last;
  }
  const prefix = selector.idPrefix;
  const p = prefix.toLowerCase();
  const matches = repo.snapshotIds().filter((id) => toHex(id).startsWith(p));
  if (matches.length === 0) throw new CofferError("SNAPSHOT_NOT_FOUND", `no snapshot matches ${JSON.stringify(prefix)}`);
  if (matches.length > 1) {
    throw new CofferError("SNAPSHOT_AMBIGUOUS", `snapshot prefix ${JSON.stringify(prefix)} is ambiguous: it matches ${matches.map((m) => toHex(m).slice(0, 12)).join(", ")}`);
  }
  const id = matches[0]!;
  return decodeHeader(await repo.getBlob(BlobType.SNAPSHOT, id, signal), id);
}
