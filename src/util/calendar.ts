/**
 * Calendar arithmetic in a named time zone, without a date library: the
 * wall-clock fields of an instant (Intl.DateTimeFormat with `timeZone`),
 * the instant of a wall-clock time, Go's AddDate (fields normalised, as
 * Date.UTC does), ISO weeks (the Thursday rule), RFC 3339 timestamps and
 * restic's calendar durations (`1y2m3d4h`).
 */

/** The wall-clock fields of an instant in a zone; month 1-12. */
export interface WallTime {
  year: number;
  month: number;
  day: number;
  hour: number;
  minute: number;
  second: number;
  ms: number;
}

const formatters = new Map<string, Intl.DateTimeFormat>();

function formatter(zone: string): Intl.DateTimeFormat {
  let f = formatters.get(zone);
  if (!f) {
    f = new Intl.DateTimeFormat("en-US", { timeZone: zone, hourCycle: "h23", year: "numeric", month: "numeric", day: "numeric", hour: "numeric", minute: "numeric", second: "numeric", era: "short" });
    formatters.set(zone, f);
  }
  return f;
}

/** Whether `zone` is an IANA zone name (or "UTC") this runtime knows. */
export function isTimeZone(zone: string): boolean {
  try {
    formatter(zone);
    return true;
  } catch {
    return false;
  }
}

/** The zone of this machine, as Intl resolves it. */
export function machineTimeZone(): string {
  return new Intl.DateTimeFormat().resolvedOptions().timeZone;
}

export function wallTime(ms: number, zone: string): WallTime {
  const parts = formatter(zone).formatToParts(new Date(ms));
  const get = (t: Intl.DateTimeFormatPartTypes) => Number(parts.find((p) => p.type === t)?.value ?? NaN);
  const bc = parts.find((p) => p.type === "era")?.value === "BC";
  return { year: bc ? 1 - get("year") : get("year"), month: get("month"), day: get("day"), hour: get("hour"), minute: get("minute"), second: get("second"), ms: ((ms % 1000) + 1000) % 1000 };
}

/** The wall-clock fields as if they were UTC, in ms (fields out of range are carried over, as Date.UTC does). */
function wallAsUtc(w: WallTime): number {
  const d = new Date(0);
  d.setUTCFullYear(w.year, w.month - 1, w.day);
  d.setUTCHours(w.hour, w.minute, w.second, w.ms);
  return d.getTime();
}

/** The zone's offset from UTC at an instant, in ms. */
function offsetAt(ms: number, zone: string): number {
  return wallAsUtc(wallTime(ms, zone)) - ms;
}

/** The instant a wall-clock time names in a zone (in a gap or an overlap: one of the candidates, as Go's time.Date). */
export function instantOf(w: WallTime, zone: string): number {
  const asUtc = wallAsUtc(w);
  const guess = asUtc - offsetAt(asUtc, zone);
  return asUtc - offsetAt(guess, zone);
}

/** Go's t.AddDate(years, months, days) in a zone: the wall-clock date moved, overflowing fields normalised (Jan 31 + 1 month = Mar 3 or 2). */
export function addDate(ms: number, zone: string, years: number, months: number, days: number): number {
  const w = wallTime(ms, zone);
  return instantOf({ ...w, year: w.year + years, month: w.month + months, day: w.day + days }, zone);
}

/** The ISO 8601 week-year and week (1-53) of a calendar date: the week belongs to the year of its Thursday. */
export function isoWeek(year: number, month: number, day: number): { year: number; week: number } {
  const d = new Date(0);
  d.setUTCFullYear(year, month - 1, day);
  const dow = (d.getUTCDay() + 6) % 7; // Monday 0
  const thursday = new Date(d.getTime() + (3 - dow) * 86_400_000);
  const y = thursday.getUTCFullYear();
  const jan1 = new Date(0);
  jan1.setUTCFullYear(y, 0, 1);
  return { year: y, week: 1 + Math.floor((thursday.getTime() - jan1.getTime()) / (7 * 86_400_000)) };
}

const RFC3339 = /^(\d{4})-(\d{2})-(\d{2})[Tt ](\d{2}):(\d{2}):(\d{2})(?:\.(\d{1,9}))?([Zz]|[+-]\d{2}:\d{2})$/;

/** An RFC 3339 timestamp with its offset or Z, as ns since the epoch; undefined when `s` is not one (or names no real time). */
export function parseRfc3339(s: string): bigint | undefined {
  const m = RFC3339.exec(s);
  if (!m) return undefined;
  const [year, month, day, hour, minute, second] = m.slice(1, 7).map(Number) as [number, number, number, number, number, number];
  const daysIn = new Date(Date.UTC(2000, month, 0)).getUTCDate() - (month === 2 && !isLeap(year) ? 1 : 0);
  if (month < 1 || month > 12 || day < 1 || day > daysIn || hour > 23 || minute > 59 || second > 59) return undefined;
  const z = m[8]!;
  let offsetMin = 0;
  if (z !== "Z" && z !== "z") {
    const oh = Number(z.slice(1, 3)), om = Number(z.slice(4, 6));
    if (oh > 23 || om > 59) return undefined;
    offsetMin = (z[0] === "-" ? -1 : 1) * (oh * 60 + om);
  }
  const utcMs = wallAsUtc({ year, month, day, hour, minute, second, ms: 0 }) - offsetMin * 60_000;
  const frac = BigInt((m[7] ?? "").padEnd(9, "0") || "0");
  return BigInt(utcMs) * 1_000_000n + frac;
}

function isLeap(y: number): boolean {
  return (y % 4 === 0 && y % 100 !== 0) || y % 400 === 0;
}

/** A calendar duration as restic spells it (`1y2m3d4h`: years, months, days, hours); all zero is none. */
export interface CalendarDuration {
  years: number;
  months: number;
  days: number;
  hours: number;
}

/** Parses `6y5m234d37h` (any subset, any order; a unit given twice takes the last), as restic does; negative numbers are refused. */
export function parseCalendarDuration(s: string): CalendarDuration | undefined {
  const d: CalendarDuration = { years: 0, months: 0, days: 0, hours: 0 };
  const t = s.trim();
  if (t === "") return undefined;
  const re = /(\d+)([ymdh])/y;
  let at = 0;
  while (at < t.length) {
    re.lastIndex = at;
    const m = re.exec(t);
    if (!m) return undefined;
    const n = Number(m[1]);
    if (!Number.isSafeInteger(n)) return undefined;
    d[({ y: "years", m: "months", d: "days", h: "hours" } as const)[m[2] as "y" | "m" | "d" | "h"]] = n;
    at = re.lastIndex;
  }
  return d;
}

export function isZeroDuration(d: CalendarDuration | undefined): boolean {
  return d === undefined || (d.years === 0 && d.months === 0 && d.days === 0 && d.hours === 0);
}

/** restic's spelling of a duration: `1y2m`, units with 0 left out. */
export function formatCalendarDuration(d: CalendarDuration): string {
  const s = `${d.years ? `${d.years}y` : ""}${d.months ? `${d.months}m` : ""}${d.days ? `${d.days}d` : ""}${d.hours ? `${d.hours}h` : ""}`;
  return s === "" ? "0h" : s;
}

/** The instant `d` before `ms`, as restic measures it: AddDate(-y, -m, -d) in the zone, then `hours` of elapsed time back. */
export function durationBefore(ms: number, d: CalendarDuration, zone: string): number {
  return addDate(ms, zone, -d.years, -d.months, -d.days) - d.hours * 3_600_000;
}
