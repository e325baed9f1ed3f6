/**
 * `maintenance`: one run of garbage collection (docs/FORMAT.md, "Garbage
 * collection"). The caller holds a `maintenance` lock. The run lists the
 * locks, reads the state again (so it holds every commit of a lock holder
 * that has ended), adopts packfiles no delta names, computes the live blobs (./live.ts) and plans
 * (repository/gc-plan.ts); then it cancels the marks live blobs need,
 * records and deletes the ripe packfiles and drops the state deltas that
 * only named them, and last repacks and marks (repository/gc.ts).
 */
import { Resource } from "../connectors/flags.js";
import { type GcPolicy, type LiveBlob, planGc, type PlanPack } from "../repository/gc-plan.js";
import { consolidateDeltas, deleteRecorded, repack, storeMarks } from "../repository/gc.js";
import { holdoutEnded, readLocks } from "../repository/locks.js";
import type { Repository } from "../repository/repository.js";
import { throwIfAborted } from "../util/errors.js";
import { toHex } from "../util/hex.js";
import { liveBlobs } from "./live.js";

export interface MaintenanceOptions {
  graceMs: number;
  maxUnused: GcPolicy["maxUnused"];
  maxRepackBytes: number;
  dryRun?: boolean;
  /** Milliseconds since the epoch (default Date.now). */
  clock?: () => number;
  signal?: AbortSignal | undefined;
}

/** A number of packfiles and their bytes (Index.packBytes). */
export interface PackCount {
  packs: number;
  bytes: number;
}

export interface MaintenanceReport {
  dryRun: boolean;
  graceMs: number;
  /** Live snapshots, of which `removedInGrace` are removed but still inside the grace period. */
  snapshots: number;
  removedInGrace: number;
  /** Packfiles no state delta named, now named (they are then collected as any other). */
  adopted: number;
  /** The packfiles the state named when the run started. */
  before: PackCount;
  /** Packfiles deleted (or, with --dry-run, that would be). */
  freed: PackCount;
  /** Marks cancelled because a live blob needs the packfile. */
  revived: PackCount;
  /** Packfiles marked by this run (needed by nothing, or repacked): a later run deletes them. */
  marked: PackCount;
  /** Packfiles repacked, and the live blobs copied out of them. */
  repacked: PackCount & { blobs: number; blobBytes: number };
  /** Marked packfiles kept because their mark is younger than the grace period. */
  keptForGrace: PackCount;
  /** Marked packfiles kept because a lock holder that may use them (a backup) still runs, or the mark is not confirmed yet. */
  keptForLocks: PackCount;
  /** Unused bytes left in packfiles that stay, after the run. */
  unusedAfter: number;
  /** State deltas deleted because they only named deleted packfiles. */
  deltasRemoved: number;
}

/** Runs garbage collection once. */
export async function maintenance(repo: Repository, o: MaintenanceOptions): Promise<MaintenanceReport> {
  const signal = o.signal;
  const clock = o.clock ?? Date.now;
  const dryRun = o.dryRun ?? false;
  // Locks first, then the state: a holder seen gone has stored its commit before.
  const locks = await readLocks(repo.store, repo.codec);
  await repo.refreshState(signal);
  // Packfiles no delta names (a run or a backup killed before their delta) are adopted, then planned as any other.
  const adopted = dryRun ? 0 : (await repo.reconcilePacks(signal)).adopted;
  const now = clock();
  const stored = new Set<string>();
  for await (const m of repo.store.list(Resource.PACKFILE, { signal })) stored.add(toHex(m));
  const live = await liveBlobs(repo, { graceMs: o.graceMs, nowMs: now, signal });
  const index = repo.index;
  const packs: PlanPack[] = [];
  for (const [hex] of index.packs) {
    const t = index.markOf(hex);
    const holdouts = t === undefined ? undefined : index.holdouts.get(t);
    const p: PlanPack = { hex, bytes: index.packBytes.get(hex) ?? 0, damaged: index.isDamaged(hex) };
    if (t !== undefined) p.mark = { timeMs: t, confirmed: holdouts !== undefined, holdoutsRunning: [...(holdouts ?? [])].filter((l) => !holdoutEnded(l, locks, o.graceMs, now)).length };
    packs.push(p);
  }
  const blobs: LiveBlob[] = [];
  for (const key of live.keys) {
    const locs = index.locationsOfKey(key);
    if (locs.length > 0) blobs.push({ key, length: locs[0]!.length, packs: locs.map((l) => toHex(l.pack)) });
  }
  const plan = planGc(packs, blobs, { maxUnused: o.maxUnused, maxRepackBytes: o.maxRepackBytes, packSize: repo.config.packSize, graceMs: o.graceMs, nowMs: now });
  const count = (hexes: readonly string[]): PackCount => ({ packs: hexes.length, bytes: hexes.reduce((n, h) => n + (index.packBytes.get(h) ?? 0), 0) });
  const report: MaintenanceReport = {
    dryRun,
    graceMs: o.graceMs,
    snapshots: live.snapshots,
    removedInGrace: live.removedInGrace,
    adopted,
    before: count([...index.packs.keys()]),
    freed: count(plan.delete),
    revived: count(plan.revive.map((r) => r.pack)),
    marked: count([...plan.mark, ...plan.repack]),
    repacked: { ...count(plan.repack), blobs: 0, blobBytes: 0 },
    keptForGrace: count(plan.keptForGrace),
    keptForLocks: count(plan.keptForLocks),
    unusedAfter: plan.unusedAfter,
    deltasRemoved: 0,
  };
  if (dryRun) return report;

  // Cancelled marks and deletion records, then the objects, then the deltas that only named them.
  if (plan.revive.length + plan.delete.length > 0) {
    await repo.writeDelta(
      {
        revived: plan.revive.map((r) => ({ pack: index.packs.get(r.pack)!, markTimeMs: r.markTimeMs, timeMs: now })),
        deleted: plan.delete.map((hex) => ({ pack: index.packs.get(hex)!, timeMs: now })),
      },
      signal,
    );
  }
  await deleteRecorded(repo, stored, signal);
  report.deltasRemoved = await consolidateDeltas(repo, signal);
  throwIfAborted(signal);

  // Repacked copies (packfiles, then their deltas), then the marks, then their holdouts.
  const toMark = [...plan.mark, ...plan.repack];
  let markTime = now;
  for (const times of index.marks.values()) for (const t of times) markTime = Math.max(markTime, t + 1);
  for (const hex of toMark) index.addMark(index.packs.get(hex)!, markTime);
  const copied = await repack(repo, plan.copy, signal);
  report.repacked.blobs = copied.blobs;
  report.repacked.blobBytes = copied.bytes;
  await storeMarks(repo, toMark, markTime, plan.unconfirmed, now, signal);
  await repo.store.sync?.({ signal });
  return report;
}

