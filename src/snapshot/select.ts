/**
 * Selecting snapshots by filters (`rm`, and any command that takes them):
 * tags, hosts, sources, a time they are older than, and the N newest per
 * host and source. Filters compose: a snapshot is selected when it passes
 * every filter given, and `latest` then keeps the newest of each group.
 */
import type { SnapshotHeader } from "./header.js";

/**
 * A snapshot's source as `ls` shows it and `--source` matches it: the
 * root path for the file system importer (`/home/me`), else
 * `TYPE:ROOT` (`tar:/backups/a.tar`, `stdin:db.sql`).
 */
export function snapshotSource(h: Pick<SnapshotHeader, "importer">): string {
  return h.importer.type === "fs" ? h.importer.root : `${h.importer.type}:${h.importer.root}`;
}

export interface SnapshotFilter {
  /** Each a set of tags a snapshot must all have; it matches when any set does (restic's `--tag a,b --tag c`). */
  tags?: string[][] | undefined;
  /** Hosts, any of which matches. */
  hosts?: string[] | undefined;
  /** Sources as snapshotSource() spells them (`fs:ROOT` matches ROOT too), any of which matches. */
  sources?: string[] | undefined;
  /** Only snapshots taken before this time (ns since the epoch). */
  beforeNs?: bigint | undefined;
  /** Then only the N newest of each host and source. */
  latest?: number | undefined;
}

/** Whether any filter is given. */
export function hasFilters(f: SnapshotFilter): boolean {
  return (f.tags?.length ?? 0) + (f.hosts?.length ?? 0) + (f.sources?.length ?? 0) > 0 || f.beforeNs !== undefined || f.latest !== undefined;
}

/** Why a filter selects a snapshot, as plans print it (`--tag daily --host a`). */
export function describeFilter(f: SnapshotFilter): string {
  const parts: string[] = [];
  for (const t of f.tags ?? []) parts.push(`--tag ${t.join(",")}`);
  for (const h of f.hosts ?? []) parts.push(`--host ${h}`);
  for (const s of f.sources ?? []) parts.push(`--source ${s}`);
  if (f.beforeNs !== undefined) parts.push(`--before ${new Date(Number(f.beforeNs / 1_000_000n)).toISOString()}`);
  if (f.latest !== undefined) parts.push(`--latest ${f.latest}`);
  return parts.join(" ");
}

function sourceMatches(h: SnapshotHeader, s: string): boolean {
  const mine = snapshotSource(h);
  return s === mine || (h.importer.type === "fs" && s === `fs:${mine}`);
}

function passes(h: SnapshotHeader, f: SnapshotFilter): boolean {
  if (f.tags?.length && !f.tags.some((set) => set.every((t) => h.tags.includes(t)))) return false;
  if (f.hosts?.length && !f.hosts.includes(h.hostname)) return false;
  if (f.sources?.length && !f.sources.some((s) => sourceMatches(h, s))) return false;
  if (f.beforeNs !== undefined && !(h.timeNs < f.beforeNs)) return false;
  return true;
}

/** The snapshots of `headers` the filter selects, in the order given. */
export function selectSnapshots(headers: readonly SnapshotHeader[], f: SnapshotFilter): SnapshotHeader[] {
  const passed = headers.filter((h) => passes(h, f));
  if (f.latest === undefined) return passed;
  const groups = new Map<string, SnapshotHeader[]>();
  for (const h of passed) {
    const k = JSON.stringify([h.hostname, snapshotSource(h)]);
    let g = groups.get(k);
    if (!g) groups.set(k, (g = []));
    g.push(h);
  }
  const newest = new Set<SnapshotHeader>();
  for (const g of groups.values()) {
    const byTime = [...g].sort((a, b) => (a.timeNs > b.timeNs ? -1 : a.timeNs < b.timeNs ? 1 : 0));
    for (const h of byTime.slice(0, f.latest)) newest.add(h);
  }
  return passed.filter((h) => newest.has(h));
}
