/**
 * `prune`'s plan: the retention engine (retention.ts) applied to the
 * repository's snapshots, as a removal plan (plan.ts) that removal.ts
 * commits; and the check that a plan made earlier (`prune --plan`) still
 * holds before `prune --apply` commits exactly it.
 */
import { toHex } from "../util/hex.js";
import type { SnapshotHeader } from "./header.js";
import { isPartial } from "./header.js";
import { type Plan, type PlanEntry, planEntry } from "./plan.js";
import { applyRetention, describeGroupKey, type GroupKey, groupKeyOf, type RetentionPolicy } from "./retention.js";
import { snapshotSource } from "./select.js";

export interface PruneSettings {
  policy: RetentionPolicy;
  /** The zone buckets are counted in. */
  zone: string;
  groupBy: readonly GroupKey[];
  nowMs: number;
}

/** What the plan says of a partial snapshot: the policy leaves it alone. */
const PARTIAL_REASON = "partial snapshot of an interrupted backup: not subject to the policy";
/** What the plan (and the removal record) says of a snapshot the policy removes. */
const REMOVED_REASON = "kept by no rule of the policy";

/**
 * The plan of a prune over `headers` (listSnapshots's): every complete
 * snapshot decided by the policy within its group, each partial one kept;
 * groups ordered by their oldest snapshot, entries oldest first. Throws
 * USAGE when the policy keeps nothing (applyRetention).
 */
export function prunePlan(headers: readonly SnapshotHeader[], s: PruneSettings): Plan {
  const byId = new Map(headers.map((h) => [toHex(h.id), h]));
  const complete = headers.filter((h) => !isPartial(h));
  const groups = applyRetention({
    snapshots: complete.map((h) => ({ id: toHex(h.id), timeNs: h.timeNs, host: h.hostname, source: snapshotSource(h), tags: h.tags })),
    policy: s.policy,
    zone: s.zone,
    groupBy: s.groupBy,
    nowMs: s.nowMs,
  });
  const sections = groups.map((g) => {
    const group = s.groupBy.length > 0 ? describeGroupKey(g.key) : undefined;
    return { key: JSON.stringify(g.key), entries: g.decisions.map((d) => planEntry(byId.get(d.id)!, d.action, d.action === "keep" ? d.reasons : [REMOVED_REASON], group)).reverse() };
  });
  const partials = headers.filter(isPartial);
  for (const h of partials) {
    const groupKey = groupKeyOf({ host: h.hostname, source: snapshotSource(h), tags: h.tags }, s.groupBy);
    const key = JSON.stringify(groupKey);
    let section = sections.find((x) => x.key === key);
    if (!section) sections.push((section = { key, entries: [] }));
    section.entries.push(planEntry(h, "keep", [PARTIAL_REASON], s.groupBy.length > 0 ? describeGroupKey(groupKey) : undefined));
  }
  for (const x of sections) x.entries.sort(oldestFirst);
  sections.sort((a, b) => oldestFirst(a.entries[0]!, b.entries[0]!));
  return { command: "prune", zone: s.zone, entries: sections.flatMap((x) => x.entries) };
}

function oldestFirst(a: PlanEntry, b: PlanEntry): number {
  if (a.timeNs !== b.timeNs) return a.timeNs < b.timeNs ? -1 : 1;
  return a.id < b.id ? -1 : a.id > b.id ? 1 : 0;
}

/**
 * How the repository changed since `plan` was made, in ways that alter it:
 * a snapshot it names that is gone (or removed), and a snapshot that is
 * new in a group it covers (grouped by `groupBy`, as it was made). Empty
 * when the plan still holds; snapshots of groups it does not cover are not
 * its business.
 */
export function planChanges(plan: Plan, groupBy: readonly GroupKey[], headers: readonly SnapshotHeader[]): string[] {
  const live = new Map(headers.map((h) => [toHex(h.id), h]));
  const planned = new Set(plan.entries.map((e) => e.id));
  const changes: string[] = [];
  for (const e of plan.entries) if (!live.has(e.id)) changes.push(`snapshot ${e.id.slice(0, 8)} (planned to be ${e.action === "keep" ? "kept" : "removed"}) is gone or already removed`);
  const covered = new Set(plan.entries.map((e) => JSON.stringify(groupKeyOf(e, groupBy))));
  for (const h of headers) {
    const id = toHex(h.id);
    if (planned.has(id)) continue;
    const key = groupKeyOf({ host: h.hostname, source: snapshotSource(h), tags: h.tags }, groupBy);
    if (covered.has(JSON.stringify(key))) changes.push(`snapshot ${id.slice(0, 8)} is new in group ${describeGroupKey(key)}`);
  }
  return changes;
}
