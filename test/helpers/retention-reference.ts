/**
 * restic's retention rules restated naively, as the oracle of the retention
 * tests: buckets from toISOString of times shifted by a fixed offset (no
 * Intl), ISO weeks counted from the Monday of week 1 (not by the Thursday
 * rule), durations by Date's own field arithmetic.
 */
import { UNLIMITED } from "../../src/snapshot/retention.js";

const MINUTE = 60_000;
const DAY = 24 * 60 * MINUTE;

export type Period = "hourly" | "daily" | "weekly" | "monthly" | "yearly";

/** What the oracle needs of a snapshot: its ID and time in ms. */
export interface RefSnapshot {
  id: string;
  ms: number;
}

const pad = (n: number) => String(n).padStart(2, "0");

function isoWeekByMonday(ms: number): string {
  const d = new Date(ms);
  const day = Date.UTC(d.getUTCFullYear(), d.getUTCMonth(), d.getUTCDate());
  const mondayOfWeek1 = (y: number) => {
    const jan4 = Date.UTC(y, 0, 4);
    return jan4 - ((new Date(jan4).getUTCDay() + 6) % 7) * DAY;
  };
  let y = d.getUTCFullYear() + 1;
  while (mondayOfWeek1(y) > day) y--;
  return `${y}W${pad(1 + Math.floor((day - mondayOfWeek1(y)) / (7 * DAY)))}`;
}

/** A zone's offset east of UTC in minutes: fixed, or a function of the instant (a zone with daylight saving time). */
export type RefOffset = number | ((ms: number) => number);

const offsetAt = (o: RefOffset, ms: number) => (typeof o === "number" ? o : o(ms));

/** The offset of Central European Time by the EU rule: +2 h from 01:00 UTC on the last Sunday of March to 01:00 UTC on the last Sunday of October, else +1 h. */
export function centralEuropeanOffset(ms: number): number {
  const year = new Date(ms).getUTCFullYear();
  const lastSundayAt1 = (month: number) => {
    const last = Date.UTC(year, month + 1, 0, 1);
    return last - new Date(last).getUTCDay() * DAY;
  };
  return ms >= lastSundayAt1(2) && ms < lastSundayAt1(9) ? 120 : 60;
}

/** The bucket of an instant in a zone `offset` minutes east of UTC. */
export function refBucket(period: Period, ms: number, offset: RefOffset = 0): string {
  const shifted = ms + offsetAt(offset, ms) * MINUTE;
  const iso = new Date(shifted).toISOString();
  if (period === "hourly") return iso.slice(0, 13);
  if (period === "daily") return iso.slice(0, 10);
  if (period === "monthly") return iso.slice(0, 7);
  if (period === "yearly") return iso.slice(0, 4);
  return isoWeekByMonday(shifted);
}

/** Newest first, equal times by ID. */
export function refSorted<T extends RefSnapshot>(list: readonly T[]): T[] {
  return [...list].sort((a, b) => b.ms - a.ms || (a.id < b.id ? -1 : 1));
}

/** A count rule: the newest of each of the first N buckets, and the oldest snapshot if fewer than N buckets came before it. */
export function refCount(list: readonly RefSnapshot[], rule: "last" | Period, n: number, offsetMin: RefOffset = 0): Set<string> {
  const sorted = refSorted(list);
  const keep = new Set<string>();
  const seen = new Set<string>();
  sorted.forEach((s, i) => {
    const b = rule === "last" ? String(i) : refBucket(rule, s.ms, offsetMin);
    const fresh = !seen.has(b);
    const countsLeft = n === UNLIMITED || seen.size < n;
    if (countsLeft && (fresh || i === sorted.length - 1)) keep.add(s.id);
    if (countsLeft && fresh) seen.add(b);
  });
  return keep;
}

export interface RefDuration {
  years?: number;
  months?: number;
  days?: number;
  hours?: number;
}

/** The instant `d` before `ms` in a zone `offsetMin` east of UTC: the date fields moved back (overflow normalised by Date), then the hours. */
function refBefore(ms: number, d: RefDuration, offsetMin = 0): number {
  const t = new Date(ms + offsetMin * MINUTE);
  t.setUTCFullYear(t.getUTCFullYear() - (d.years ?? 0), t.getUTCMonth() - (d.months ?? 0), t.getUTCDate() - (d.days ?? 0));
  return t.getTime() - offsetMin * MINUTE - (d.hours ?? 0) * 60 * MINUTE;
}

/** `--keep-within` (no period) or `--keep-within-PERIOD`: among snapshots after newest - d, every one, or the newest of each bucket and the oldest. */
export function refWithin(list: readonly RefSnapshot[], period: Period | undefined, d: RefDuration, offsetMin = 0): Set<string> {
  const sorted = refSorted(list);
  const start = refBefore(sorted[0]!.ms, d, offsetMin);
  const keep = new Set<string>();
  const seen = new Set<string>();
  sorted.forEach((s, i) => {
    if (s.ms <= start) return;
    const b = period === undefined ? s.id : refBucket(period, s.ms, offsetMin);
    if (!seen.has(b) || i === sorted.length - 1) keep.add(s.id);
    seen.add(b);
  });
  return keep;
}
