/**
 * The plan every removal command (`rm`, `prune`) makes before it writes:
 * every snapshot considered, whether it is kept or removed, and the rules
 * that decided it. The CLI prints it (src/cli/plan-output.ts); removal.ts
 * commits its removals (planRemovals).
 */
import { toHex } from "../util/hex.js";
import type { SnapshotHeader } from "./header.js";
import { snapshotSource } from "./select.js";

export type PlanAction = "keep" | "remove";

export interface PlanEntry {
  /** The snapshot ID, hex. */
  id: string;
  timeNs: bigint;
  host: string;
  /** As snapshotSource() spells it (what `--source` matches). */
  source: string;
  tags: string[];
  action: PlanAction;
  /** Why it is kept or removed, each a short phrase (`named on the command line`, `daily 2026-03-01`). */
  reasons: string[];
  /** The group it was decided in (prune's `--group-by`), as a key printed above the group; absent when there are no groups. */
  group?: string | undefined;
  /** Set on a checkpoint of an interrupted backup. */
  partial?: boolean | undefined;
}

export interface Plan {
  /** The command that made it: the removal records name it. */
  command: string;
  /** Oldest first (by group first when there are groups). */
  entries: PlanEntry[];
  /** The time zone buckets were counted in (prune), printed with the plan. */
  zone?: string | undefined;
}

/** A plan entry for a snapshot. */
export function planEntry(h: SnapshotHeader, action: PlanAction, reasons: string[], group?: string): PlanEntry {
  return {
    id: toHex(h.id),
    timeNs: h.timeNs,
    host: h.hostname,
    source: snapshotSource(h),
    tags: [...h.tags],
    action,
    reasons,
    ...(group !== undefined ? { group } : {}),
    ...(h.checkpoint !== undefined ? { partial: true } : {}),
  };
}

/** How many entries a plan keeps and removes. */
export function planCounts(plan: Plan): { keep: number; remove: number } {
  const remove = plan.entries.filter((e) => e.action === "remove").length;
  return { keep: plan.entries.length - remove, remove };
}
