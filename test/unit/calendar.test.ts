/** Calendar arithmetic in a zone (src/util/calendar.ts): wall clock, AddDate, ISO weeks, RFC 3339, restic durations. */
import { describe, expect, it } from "vitest";
import { addDate, durationBefore, instantOf, isoWeek, isTimeZone, parseCalendarDuration, parseRfc3339, wallTime } from "../../src/util/calendar.js";

describe("calendar", () => {
  it("gives the wall clock of an instant in a zone, and back", () => {
    const ms = Date.parse("2026-03-29T01:30:00Z");
    expect(wallTime(ms, "Europe/Paris")).toMatchObject({ year: 2026, month: 3, day: 29, hour: 3, minute: 30 });
    expect(instantOf(wallTime(ms, "Europe/Paris"), "Europe/Paris")).toBe(ms);
    expect(isTimeZone("Nowhere/Else")).toBe(false);
  });
  it("adds dates as Go's AddDate, normalising overflow", () => {
    const jan31 = Date.parse("2026-01-31T12:00:00Z");
    expect(new Date(addDate(jan31, "UTC", 0, 1, 0)).toISOString()).toBe("2026-03-03T12:00:00.000Z");
    expect(new Date(durationBefore(jan31, { years: 0, months: 0, days: 1, hours: 2 }, "UTC")).toISOString()).toBe("2026-01-30T10:00:00.000Z");
  });
  it("numbers ISO weeks by their Thursday", () => {
    expect(isoWeek(2021, 1, 3)).toEqual({ year: 2020, week: 53 });
    expect(isoWeek(2024, 12, 30)).toEqual({ year: 2025, week: 1 });
  });
  it("parses RFC 3339 with an offset or Z only", () => {
    expect(parseRfc3339("2026-12-07T10:00:00+01:00")).toBe(BigInt(Date.parse("2026-12-07T09:00:00Z")) * 1_000_000n);
    expect(parseRfc3339("2026-12-07T10:00:00.5Z")).toBe(BigInt(Date.parse("2026-12-07T10:00:00Z")) * 1_000_000n + 500_000_000n);
    for (const bad of ["2026-12-07T10:00:00", "2026-02-30T00:00:00Z", "yesterday"]) expect(parseRfc3339(bad)).toBeUndefined();
  });
  it("parses restic's durations", () => {
    expect(parseCalendarDuration("1y2m3d4h")).toEqual({ years: 1, months: 2, days: 3, hours: 4 });
    expect(parseCalendarDuration("3x")).toBeUndefined();
  });
});
