/**
 * The plan of a garbage collection (docs/FORMAT.md, "Garbage collection"),
 * a pure function of the packfiles (sizes, damage, marks and whether each
 * mark is ripe), the live blobs with the packfiles holding them, and the
 * policy: which marks to cancel, which packfiles to delete, to mark, and to
 * repack (with the blobs to copy out of them). It never leaves a live blob
 * without a copy in a packfile that is neither deleted nor marked here
 * before (those repacked keep theirs until their copies are stored).
 */

/** A packfile as the planner sees it. */
export interface PlanPack {
  hex: string;
  /** Bytes its blobs span (Index.packBytes). */
  bytes: number;
  /** The state records damage to it: never marked or repacked here. */
  damaged: boolean;
  /** Its mark, if marked: its time, whether a `holdouts` record confirms it, and how many of those locks still run. */
  mark?: { timeMs: number; confirmed: boolean; holdoutsRunning: number };
}

/** A live blob: its key, its encoded length, and the packfiles (hex) holding a usable copy. */
export interface LiveBlob {
  key: string;
  length: number;
  packs: readonly string[];
}

export interface GcPolicy {
  /** Unused bytes tolerated: a share of the repository (percent, as restic's `--max-unused`), bytes, or no limit (null). */
  maxUnused: { percent: number } | { bytes: number } | null;
  /** Packfile bytes read for repacking at most. */
  maxRepackBytes: number;
  /** The repository's packfile size: packfiles under half of it are merged. */
  packSize: number;
  graceMs: number;
  nowMs: number;
}

export interface GcPlan {
  /** Marks to cancel: a live blob has no copy but in marked packfiles. */
  revive: { pack: string; markTimeMs: number }[];
  /** Marked packfiles to delete now. */
  delete: string[];
  /** Marked packfiles kept because their mark is younger than the grace period. */
  keptForGrace: string[];
  /** Marked packfiles kept because a backup (or other lock holder) that may use them still runs. */
  keptForLocks: string[];
  /** Mark times with no `holdouts` record yet: this run writes one. */
  unconfirmed: number[];
  /** Packfiles needed by no live blob: marked now. */
  mark: string[];
  /** Packfiles whose live blobs are copied to new packfiles, then marked. */
  repack: string[];
  /** The blobs to copy (keys), by repacked packfile. */
  copy: Map<string, string[]>;
  /** Bytes of packfiles (unmarked after the plan) and their unused bytes, before repacking. */
  keptBytes: number;
  unusedBytes: number;
  /** Unused bytes left in kept packfiles once the repacked ones are deleted. */
  unusedAfter: number;
}

/** Plans one run of garbage collection. */
export function planGc(packs: readonly PlanPack[], live: readonly LiveBlob[], policy: GcPolicy): GcPlan {
  const byHex = new Map(packs.map((p) => [p.hex, p]));
  const blobs = live.map((b) => ({ ...b, packs: b.packs.filter((h) => byHex.has(h)) })).sort((a, b) => (a.key < b.key ? -1 : a.key > b.key ? 1 : 0));
  // Live bytes each packfile holds, copies counted in each: what makes a packfile the better home.
  const liveRaw = new Map<string, number>();
  for (const b of blobs) for (const h of b.packs) liveRaw.set(h, (liveRaw.get(h) ?? 0) + b.length);
  const share = (h: string) => (liveRaw.get(h) ?? 0) / Math.max(1, byHex.get(h)!.bytes);
  const better = (a: string, b: string) => share(a) - share(b) || (liveRaw.get(a) ?? 0) - (liveRaw.get(b) ?? 0) || (a < b ? 1 : -1);
  const best = (hexes: readonly string[]) => hexes.reduce((x, y) => (better(x, y) >= 0 ? x : y));

  const plan: GcPlan = { revive: [], delete: [], keptForGrace: [], keptForLocks: [], unconfirmed: [], mark: [], repack: [], copy: new Map(), keptBytes: 0, unusedBytes: 0, unusedAfter: 0 };
  // A marked packfile holding the only copies of a live blob is revived.
  const revived = new Set<string>();
  const unmarked = (h: string) => byHex.get(h)!.mark === undefined || revived.has(h);
  for (const b of blobs) {
    if (b.packs.length === 0 || b.packs.some(unmarked)) continue;
    const h = best(b.packs);
    revived.add(h);
    plan.revive.push({ pack: h, markTimeMs: byHex.get(h)!.mark!.timeMs });
  }
  const unconfirmed = new Set<number>();
  for (const p of packs) {
    if (!p.mark || revived.has(p.hex)) continue;
    if (!p.mark.confirmed) unconfirmed.add(p.mark.timeMs);
    if (!p.mark.confirmed || p.mark.holdoutsRunning > 0) plan.keptForLocks.push(p.hex);
    else if (policy.nowMs - p.mark.timeMs < policy.graceMs) plan.keptForGrace.push(p.hex);
    else plan.delete.push(p.hex);
  }
  plan.unconfirmed = [...unconfirmed].sort((a, b) => a - b);

  // Each live blob's home: its best unmarked packfile.
  const needed = new Map<string, number>();
  const homed = new Map<string, string[]>();
  for (const b of blobs) {
    const homes = b.packs.filter(unmarked);
    if (homes.length === 0) continue; // its copies are in marked packfiles kept above
    const h = best(homes);
    needed.set(h, (needed.get(h) ?? 0) + b.length);
    let keys = homed.get(h);
    if (!keys) homed.set(h, (keys = []));
    keys.push(b.key);
  }
  const candidates: PlanPack[] = [];
  for (const p of packs) {
    if (!unmarked(p.hex)) continue;
    if (!p.damaged && !needed.has(p.hex)) {
      plan.mark.push(p.hex);
      continue;
    }
    plan.keptBytes += p.bytes;
    plan.unusedBytes += Math.max(0, p.bytes - (needed.get(p.hex) ?? 0));
    if (!p.damaged) candidates.push(p);
  }

  // Repack the most unused first until what is left is within --max-unused, then merge small packfiles.
  const unusedOf = (p: PlanPack) => Math.max(0, p.bytes - (needed.get(p.hex) ?? 0));
  const liveBytes = plan.keptBytes - plan.unusedBytes;
  const m = policy.maxUnused;
  const allowed = m === null ? Infinity : "bytes" in m ? m.bytes : m.percent >= 100 ? Infinity : (liveBytes * m.percent) / (100 - m.percent);
  let unused = plan.unusedBytes;
  let budget = policy.maxRepackBytes;
  const chosen = new Set<string>();
  const take = (p: PlanPack): boolean => {
    if (p.bytes > budget) return false;
    budget -= p.bytes;
    chosen.add(p.hex);
    unused -= unusedOf(p);
    return true;
  };
  const untake = (p: PlanPack) => {
    budget += p.bytes;
    chosen.delete(p.hex);
    unused += unusedOf(p);
  };
  const byUnused = candidates.filter((p) => unusedOf(p) > 0).sort((a, b) => unusedOf(b) - unusedOf(a) || (a.hex < b.hex ? -1 : 1));
  for (const p of byUnused) {
    if (unused <= allowed) break;
    take(p);
  }
  const small = candidates.filter((p) => !chosen.has(p.hex) && p.bytes < policy.packSize / 2).sort((a, b) => a.bytes - b.bytes || (a.hex < b.hex ? -1 : 1));
  const merged = small.filter((p) => budget >= p.bytes && take(p));
  // One small packfile alone is not merged with anything: leave it.
  if (merged.length === 1) untake(merged[0]!);
  plan.unusedAfter = unused;
  for (const p of candidates) {
    if (!chosen.has(p.hex)) continue;
    plan.repack.push(p.hex);
    plan.copy.set(p.hex, homed.get(p.hex) ?? []);
  }
  return plan;
}
