/**
 * The retention policy engine of `prune`: which snapshots of each group a
 * policy keeps, and the rules that decided it. Pure: small records in,
 * decisions out. The bucket rules are restic's (ApplyPolicy of its
 * snapshot_policy.go), with three differences (docs/CLI.md, "prune"):
 * buckets are counted in one declared zone, the `keepMin` newest snapshots
 * of every group are never removed, and a policy that keeps nothing is an
 * error.
 */
import { type CalendarDuration, durationBefore, formatCalendarDuration, isoWeek, isZeroDuration, wallTime, type WallTime } from "../util/calendar.js";
import { CofferError } from "../util/errors.js";

/** What the engine needs of a snapshot. `source` is the spelling `--source` takes. */
export interface RetentionSnapshot {
  id: string;
  timeNs: bigint;
  host: string;
  source: string;
  tags: readonly string[];
}

/** A count of buckets to keep: N > 0, or UNLIMITED (restic's `unlimited`, every bucket). */
export const UNLIMITED = -1;

export const COUNT_RULES = ["last", "hourly", "daily", "weekly", "monthly", "yearly"] as const;
export type CountRule = (typeof COUNT_RULES)[number];
export const WITHIN_RULES = ["hourly", "daily", "weekly", "monthly", "yearly"] as const;
export type WithinRule = (typeof WITHIN_RULES)[number];

export interface RetentionPolicy {
  /** `--keep-last`, `--keep-hourly`, ...: 0 (or absent) is off. */
  counts: Partial<Record<CountRule, number>>;
  /** `--keep-within`: every snapshot less than this before the group's newest. */
  within?: CalendarDuration | undefined;
  /** `--keep-within-hourly`, ...: the newest of each bucket within the duration. */
  withinBuckets: Partial<Record<WithinRule, CalendarDuration>>;
  /** `--keep-tag`: each a list of tags a snapshot must all have to be kept. */
  tags: readonly (readonly string[])[];
  /** `--keep-min`: the newest this many of every group are kept whatever the rules say. */
  keepMin: number;
}

export const GROUP_KEYS = ["host", "source", "tags"] as const;
export type GroupKey = (typeof GROUP_KEYS)[number];

export interface RetentionDecision {
  id: string;
  action: "keep" | "remove";
  /** The rules that kept it (restic's wording: "daily snapshot", "oldest monthly snapshot", "within 1m", ...); empty when removed. */
  reasons: string[];
}

export interface RetentionGroup {
  /** The values of the group-by keys this group shares (tags sorted). */
  key: { host?: string; source?: string; tags?: string[] };
  /** The instant within-durations are measured from: the group's newest snapshot not after `now` (ns), absent when every one is later. */
  newestNs?: bigint;
  /** Newest first. */
  decisions: RetentionDecision[];
}

export interface RetentionInput {
  snapshots: readonly RetentionSnapshot[];
  policy: RetentionPolicy;
  /** The IANA zone the buckets are counted in. */
  zone: string;
  groupBy: readonly GroupKey[];
  /** ms since the epoch: a snapshot later than this does not move a group's within-window (as restic). */
  nowMs: number;
}

/** Whether a policy has no keep rule at all (keepMin aside). */
function isEmptyPolicy(p: RetentionPolicy): boolean {
  return (
    COUNT_RULES.every((r) => !p.counts[r]) && isZeroDuration(p.within) && WITHIN_RULES.every((r) => isZeroDuration(p.withinBuckets[r])) && p.tags.length === 0
  );
}

/**
 * Applies the policy to every group: groups in the order of their newest
 * snapshot (newest first), each group's decisions newest first. Throws
 * USAGE when the policy has no rule, or when it would keep no snapshot of
 * a group (possible only with keepMin 0).
 */
export function applyRetention(input: RetentionInput): RetentionGroup[] {
  const { policy } = input;
  if (isEmptyPolicy(policy)) throw new CofferError("USAGE", "the policy keeps nothing: give at least one --keep-* option");
  if (!Number.isSafeInteger(policy.keepMin) || policy.keepMin < 0) throw new CofferError("USAGE", "--keep-min must be a whole number of 0 or more");
  const groups = groupSnapshots(input.snapshots, input.groupBy);
  const result = groups.map((g) => applyToGroup(g, input));
  for (const g of result) {
    if (g.decisions.length > 0 && g.decisions.every((d) => d.action === "remove")) {
      throw new CofferError("USAGE", `the policy keeps no snapshot of group ${describeGroupKey(g.key)}: refusing to remove all of them (use rm to do that)`, { group: g.key });
    }
  }
  return result;
}

/** A group's key as the plan prints it: `host=a source=b tags=x,y`, or `(all)` when not grouped. */
export function describeGroupKey(key: RetentionGroup["key"]): string {
  const parts: string[] = [];
  if (key.host !== undefined) parts.push(`host=${key.host}`);
  if (key.source !== undefined) parts.push(`source=${key.source}`);
  if (key.tags !== undefined) parts.push(`tags=${key.tags.join(",")}`);
  return parts.length ? parts.join(" ") : "(all)";
}

/** The group of a snapshot's key, as a string that two snapshots share exactly when they share a group. */
export function groupKeyOf(s: Pick<RetentionSnapshot, "host" | "source" | "tags">, groupBy: readonly GroupKey[]): RetentionGroup["key"] {
  const key: RetentionGroup["key"] = {};
  if (groupBy.includes("host")) key.host = s.host;
  if (groupBy.includes("source")) key.source = s.source;
  if (groupBy.includes("tags")) key.tags = [...new Set(s.tags)].sort();
  return key;
}

/** Newest first; equal times by ID, so the result never depends on the input's order. */
function newestFirst(a: RetentionSnapshot, b: RetentionSnapshot): number {
  if (a.timeNs !== b.timeNs) return a.timeNs > b.timeNs ? -1 : 1;
  return a.id < b.id ? -1 : a.id > b.id ? 1 : 0;
}

function groupSnapshots(snapshots: readonly RetentionSnapshot[], groupBy: readonly GroupKey[]): { key: RetentionGroup["key"]; list: RetentionSnapshot[] }[] {
  const groups = new Map<string, { key: RetentionGroup["key"]; list: RetentionSnapshot[] }>();
  for (const s of [...snapshots].sort(newestFirst)) {
    const key = groupKeyOf(s, groupBy);
    const k = JSON.stringify(key);
    let g = groups.get(k);
    if (!g) groups.set(k, (g = { key, list: [] }));
    g.list.push(s);
  }
  return [...groups.values()];
}

/** The bucket a wall-clock time falls in, for each period (restic's ymdh, ymd, yw, ym, y). */
const BUCKET: Record<WithinRule, (w: WallTime) => number> = {
  hourly: (w) => w.year * 1_000_000 + w.month * 10_000 + w.day * 100 + w.hour,
  daily: (w) => w.year * 10_000 + w.month * 100 + w.day,
  weekly: (w) => {
    const iw = isoWeek(w.year, w.month, w.day);
    return iw.year * 100 + iw.week;
  },
  monthly: (w) => w.year * 100 + w.month,
  yearly: (w) => w.year,
};

const NS_PER_MS = 1_000_000n;

/** The instant `d` before `ns` in the zone, in ns (the sub-millisecond part carried over). */
function nsBefore(ns: bigint, d: CalendarDuration, zone: string): bigint {
  const ms = ns / NS_PER_MS - (ns % NS_PER_MS < 0n ? 1n : 0n);
  return BigInt(durationBefore(Number(ms), d, zone)) * NS_PER_MS + (ns - ms * NS_PER_MS);
}

function msFloor(ns: bigint): number {
  return Number(ns / NS_PER_MS - (ns % NS_PER_MS < 0n ? 1n : 0n));
}

/** restic's ApplyPolicy on one group (newest first), then keepMin. */
function applyToGroup(group: { key: RetentionGroup["key"]; list: RetentionSnapshot[] }, input: RetentionInput): RetentionGroup {
  const { policy, zone } = input;
  const list = group.list;
  const nowNs = BigInt(input.nowMs) * NS_PER_MS;
  // The newest snapshot not in the future; a future one must not push older ones out of a window.
  const newestNs = list.find((s) => s.timeNs < nowNs)?.timeNs;
  const withinStart = (d: CalendarDuration) => (newestNs === undefined ? undefined : nsBefore(newestNs, d, zone));
  const isWithin = (s: RetentionSnapshot, start: bigint | undefined) => start === undefined || s.timeNs > start;

  const counters = COUNT_RULES.filter((r) => policy.counts[r]).map((rule) => ({
    rule,
    left: policy.counts[rule]!,
    last: undefined as number | undefined,
    reason: rule === "last" ? "last snapshot" : `${rule} snapshot`,
  }));
  const withins = WITHIN_RULES.filter((r) => !isZeroDuration(policy.withinBuckets[r])).map((rule) => {
    const d = policy.withinBuckets[rule]!;
    return { rule, start: withinStart(d), last: undefined as number | undefined, reason: `${rule} within ${formatCalendarDuration(d)}` };
  });
  const keepWithin = isZeroDuration(policy.within) ? undefined : { start: withinStart(policy.within!), reason: `within ${formatCalendarDuration(policy.within!)}` };

  const decisions = list.map((cur, nr): RetentionDecision => {
    const reasons: string[] = [];
    const oldest = nr === list.length - 1;
    for (const tags of policy.tags) if (tags.every((t) => cur.tags.includes(t))) reasons.push(`has tags ${tags.join(",")}`);
    if (keepWithin && isWithin(cur, keepWithin.start)) reasons.push(keepWithin.reason);
    const w = wallTime(msFloor(cur.timeNs), zone);
    for (const c of counters) {
      if (c.left === 0) continue;
      const val = c.rule === "last" ? nr : BUCKET[c.rule](w);
      // The oldest snapshot is also kept while a rule has counts left: that keeps the longest history.
      if (val !== c.last || oldest) {
        reasons.push(val === c.last ? `oldest ${c.reason}` : c.reason);
        c.last = val;
        if (c.left > 0) c.left--;
      }
    }
    for (const b of withins) {
      if (!isWithin(cur, b.start)) continue;
      const val = BUCKET[b.rule](w);
      if (val !== b.last || oldest) {
        reasons.push(val === b.last ? `oldest ${b.reason}` : b.reason);
        b.last = val;
      }
    }
    return { id: cur.id, action: reasons.length > 0 ? "keep" : "remove", reasons };
  });
  for (const d of decisions.slice(0, policy.keepMin)) {
    if (d.action === "remove") {
      d.action = "keep";
      d.reasons.push(`keep-min ${policy.keepMin}`);
    }
  }
  return { key: group.key, ...(newestNs !== undefined ? { newestNs } : {}), decisions };
}
