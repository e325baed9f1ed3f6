/**
 * Removing snapshots and taking a removal back, the one place that writes
 * `removed` and `undeleted` records (docs/FORMAT.md, "State"). Removal is a
 * record: the snapshot is hidden, its data stays until maintenance reclaims
 * it. Both hold a shared lock, as a backup does (they never block one), and
 * commit all their records in one state delta: all or nothing.
 */
import { BlobType, blobTypeName } from "../repository/codec.js";
import type { Repository } from "../repository/repository.js";
import type { RemovalRecord, UndeletedRecord } from "../repository/state.js";
import { mapLimit } from "../util/concurrency.js";
import { CofferError, isCofferError, throwIfAborted } from "../util/errors.js";
import { toHex } from "../util/hex.js";
import { decodeHeader, type SnapshotHeader } from "./header.js";
import type { Plan } from "./plan.js";
import { decodeTree, type Entry } from "./tree.js";

/** A snapshot to remove and why (the reason goes into its removal record). */
export interface RemovalRequest {
  id: Uint8Array;
  why: string;
}

export interface RemovalOptions {
  /** The command named in the lock (`rm`, `prune`). */
  command: string;
  signal?: AbortSignal | undefined;
  onWarning?: (m: string) => void;
  /** The time recorded (ms since the epoch; default now). */
  nowMs?: number;
}

/**
 * Removes the snapshots of `requests` in one state delta under a shared
 * lock. Snapshots already removed are left as they are; the IDs of those
 * removed now come back.
 */
export async function removeSnapshots(repo: Repository, requests: readonly RemovalRequest[], o: RemovalOptions): Promise<Uint8Array[]> {
  const pending = new Map<string, RemovalRequest>();
  for (const r of requests) if (!repo.index.removed.has(toHex(r.id))) pending.set(toHex(r.id), r);
  if (pending.size === 0) return [];
  throwIfAborted(o.signal);
  await repo.acquire("shared", o.command, o.onWarning);
  const timeMs = o.nowMs ?? Date.now();
  const records: RemovalRecord[] = [...pending.values()].map((r) => ({ snapshot: r.id, why: r.why, timeMs }));
  await repo.removeSnapshots(records, o.signal);
  return records.map((r) => r.snapshot);
}

/** The removal a plan decides: each entry marked `remove`, with the plan's command and the entry's reasons as why. */
export function planRemovals(plan: Plan): RemovalRequest[] {
  return plan.entries
    .filter((e) => e.action === "remove")
    .map((e) => ({ id: Uint8Array.from(Buffer.from(e.id, "hex")), why: `${plan.command}: ${e.reasons.join("; ")}` }));
}

/** A removed snapshot: its ID and its removal record. */
export interface RemovedSnapshot {
  id: Uint8Array;
  record: RemovalRecord;
}

/**
 * The removed snapshot whose ID starts with `idPrefix` (hex digits):
 * SNAPSHOT_NOT_FOUND when none does (saying so when a snapshot that is not
 * removed does), SNAPSHOT_AMBIGUOUS naming the candidates.
 */
export function resolveRemoved(repo: Repository, idPrefix: string): RemovedSnapshot {
  const p = idPrefix.toLowerCase();
  const matches = [...repo.index.removed].filter(([hex]) => hex.startsWith(p));
  if (matches.length === 0) {
    const live = repo.snapshotIds().some((id) => toHex(id).startsWith(p));
    throw new CofferError("SNAPSHOT_NOT_FOUND", live ? `snapshot ${JSON.stringify(idPrefix)} is not removed` : `no removed snapshot matches ${JSON.stringify(idPrefix)}`);
  }
  if (matches.length > 1) {
    throw new CofferError("SNAPSHOT_AMBIGUOUS", `snapshot prefix ${JSON.stringify(idPrefix)} is ambiguous: it matches removed snapshots ${matches.map(([hex]) => hex.slice(0, 12)).join(", ")}`);
  }
  const [, record] = matches[0]!;
  return { id: record.snapshot, record };
}

/** A removed snapshot as `ls --removed` lists it: its header when it can still be read, else why not (reclaimed or damaged). */
export interface ListedRemoval extends RemovedSnapshot {
  header?: SnapshotHeader;
  unreadable?: string;
}

/** Every snapshot whose removal is in force, in the order of the removals (oldest first), each with its header if it can still be read. */
export async function listRemoved(repo: Repository, signal?: AbortSignal): Promise<ListedRemoval[]> {
  const removals = [...repo.index.removed.values()].sort((a, b) => a.timeMs - b.timeMs || (toHex(a.snapshot) < toHex(b.snapshot) ? -1 : 1));
  return mapLimit(removals, 8, async (record): Promise<ListedRemoval> => {
    const id = record.snapshot;
    if (!repo.index.has(BlobType.SNAPSHOT, id)) return { id, record, unreadable: "its header is reclaimed" };
    try {
      return { id, record, header: decodeHeader(await repo.getBlob(BlobType.SNAPSHOT, id, signal), id) };
    } catch (e) {
      throwIfAborted(signal);
      if (!isCofferError(e, "CORRUPT") && !isCofferError(e, "NOT_FOUND")) throw e;
      return { id, record, unreadable: e.message };
    }
  });
}

/** How many missing blobs a RECLAIMED error names. */
const MISSING_NAMED = 5;

/**
 * The blobs a snapshot references (header, errors, trees, chunks) that the
 * repository no longer offers, by name: those maintenance has reclaimed,
 * and those left only in packfiles it has marked for deletion (a later run
 * may delete them at any moment: docs/FORMAT.md, "Garbage collection"). A
 * tree that is missing is named and not descended into.
 */
export async function missingBlobs(repo: Repository, id: Uint8Array, signal?: AbortSignal): Promise<string[]> {
  const missing: string[] = [];
  const name = (type: BlobType, mac: Uint8Array) => `${blobTypeName(type)} blob ${toHex(mac).slice(0, 16)}`;
  if (!repo.has(BlobType.SNAPSHOT, id)) return [name(BlobType.SNAPSHOT, id)];
  const header: SnapshotHeader = decodeHeader(await repo.getBlob(BlobType.SNAPSHOT, id, signal), id);
  if (header.errors && !repo.has(BlobType.ERRORS, header.errors)) missing.push(name(BlobType.ERRORS, header.errors));
  const seenTrees = new Set<string>();
  const seenChunks = new Set<string>();
  const visit = async (e: Entry): Promise<void> => {
    for (const c of e.chunks ?? []) {
      const k = toHex(c.mac);
      if (seenChunks.has(k)) continue;
      seenChunks.add(k);
      if (!repo.has(BlobType.CHUNK, c.mac)) missing.push(name(BlobType.CHUNK, c.mac));
    }
    if (!e.tree) return;
    const k = toHex(e.tree);
    if (seenTrees.has(k)) return;
    seenTrees.add(k);
    throwIfAborted(signal);
    if (!repo.has(BlobType.TREE, e.tree)) {
      missing.push(name(BlobType.TREE, e.tree));
      return;
    }
    for (const c of decodeTree(await repo.getBlob(BlobType.TREE, e.tree, signal), `tree ${k.slice(0, 16)}`)) await visit(c);
  };
  await visit(header.root);
  return missing;
}

export interface UndeleteResult {
  id: Uint8Array;
  /** The removal taken back. */
  removal: RemovalRecord;
}

/**
 * Takes back the removal of the snapshot `idPrefix` names: under a shared
 * lock, checks that every blob it references is still offered (RECLAIMED
 * naming what is gone or marked otherwise), then records an `undeleted`
 * record cancelling its removals up to the latest one. A later removal of
 * it wins.
 */
export async function undeleteSnapshot(repo: Repository, idPrefix: string, o: RemovalOptions): Promise<UndeleteResult> {
  resolveRemoved(repo, idPrefix);
  // The lock first: acquiring it reloads the state, so the check below sees
  // every mark made before it, and a mark made after it lists this lock as a
  // holdout, whose end the deleting run waits for.
  await repo.acquire("shared", o.command, o.onWarning, o.signal);
  const { id, record } = resolveRemoved(repo, idPrefix);
  let missing: string[];
  try {
    missing = await missingBlobs(repo, id, o.signal);
  } catch (e) {
    if (!isCofferError(e, "NOT_FOUND")) throw e;
    missing = [e.message];
  }
  if (missing.length > 0) {
    const named = missing.slice(0, MISSING_NAMED).join(", ") + (missing.length > MISSING_NAMED ? `, and ${missing.length - MISSING_NAMED} more` : "");
    throw new CofferError("RECLAIMED", `snapshot ${toHex(id).slice(0, 8)} cannot be taken back: ${missing.length} blobs it references are reclaimed or marked for reclaiming by maintenance (${named})`, {
      snapshot: toHex(id),
      missing: missing.length,
    });
  }
  throwIfAborted(o.signal);
  const undeleted: UndeletedRecord = { snapshot: id, removedUpTo: record.timeMs, why: "undelete", timeMs: o.nowMs ?? Date.now() };
  await repo.writeDelta({ undeleted: [undeleted] }, o.signal);
  return { id, removal: record };
}
