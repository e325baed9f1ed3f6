/**
 * The retention engine (src/snapshot/retention.ts): restic's bucket rules,
 * checked against a naive reference on random timelines and by the
 * properties that define them, plus the three differences from restic.
 */
import fc from "fast-check";
import { describe, expect, it } from "vitest";
import {
  applyRetention,
  COUNT_RULES,
  type CountRule,
  type RetentionPolicy,
  type RetentionSnapshot,
  UNLIMITED,
  WITHIN_RULES,
  type WithinRule,
} from "../../src/snapshot/retention.js";
import type { CalendarDuration } from "../../src/util/calendar.js";
import { fuzzParams } from "../helpers/fuzz.js";
import { refBucket as refBucketOf, refCount as refCountOf, type RefSnapshot, refSorted as refSortedOf, refWithin as refWithinOf } from "../helpers/retention-reference.js";

const HOUR = 3_600_000;
const DAY = 24 * HOUR;
const T0 = Date.parse("2025-01-01T00:00:00Z");
const NOW = Date.parse("2030-01-01T00:00:00Z");

function snap(id: string, iso: string | number, o: Partial<RetentionSnapshot> = {}): RetentionSnapshot {
  const ms = typeof iso === "number" ? iso : Date.parse(iso);
  return { id, timeNs: BigInt(ms) * 1_000_000n, host: "h", source: "/data", tags: [], ...o };
}

function policy(p: Partial<RetentionPolicy>): RetentionPolicy {
  return { counts: {}, withinBuckets: {}, tags: [], keepMin: 0, ...p };
}

function kept(snapshots: RetentionSnapshot[], p: Partial<RetentionPolicy>, zone = "UTC", groupBy: ("host" | "source" | "tags")[] = []): string[] {
  return applyRetention({ snapshots, policy: policy(p), zone, groupBy, nowMs: NOW })
    .flatMap((g) => g.decisions)
    .filter((d) => d.action === "keep")
    .map((d) => d.id)
    .sort();
}

/** The oracle on the engine's records. */
const ref = (list: RetentionSnapshot[]): RefSnapshot[] => list.map((s) => ({ id: s.id, ms: msOf(s) }));
const msOf = (s: RetentionSnapshot) => Number(s.timeNs / 1_000_000n);
const refCount = (list: RetentionSnapshot[], rule: CountRule, n: number, offsetH: number) => refCountOf(ref(list), rule, n, offsetH * 60);
const refWithin = (list: RetentionSnapshot[], rule: WithinRule, h: number, offsetH: number) => refWithinOf(ref(list), rule, { hours: h }, offsetH * 60);
const refBucket = (rule: WithinRule, ms: number, offsetH: number) => refBucketOf(rule, ms, offsetH * 60);
const refSorted = (list: RetentionSnapshot[]) => {
  const byId = new Map(list.map((s) => [s.id, s]));
  return refSortedOf(ref(list)).map((r) => byId.get(r.id)!);
};

// ------------------------------------------------------------ arbitraries ---

/** Timelines of one group: times clustered (many share an hour or a day) over about two years, IDs unique. */
const timeline = fc
  .array(
    fc.oneof(
      fc.integer({ min: 0, max: 730 * DAY }),
      fc.integer({ min: 0, max: 730 }).map((d) => d * DAY + 3 * HOUR),
      fc.integer({ min: 0, max: 2000 }).map((h) => 300 * DAY + h * HOUR),
    ),
    { minLength: 1, maxLength: 40 },
  )
  .map((times) => times.map((t, i) => snap(`s${String(i).padStart(3, "0")}`, T0 + t)));

const count = fc.oneof(fc.integer({ min: 1, max: 12 }), fc.constant(UNLIMITED));
const hoursDuration = fc.integer({ min: 1, max: 24 * 400 });
const asDuration = (h: number): CalendarDuration => ({ years: 0, months: 0, days: 0, hours: h });

const params = () => fuzzParams({ weight: 0.25 });

describe("retention engine", () => {
  it("keeps, per count rule, exactly what the reference keeps", () => {
    fc.assert(
      fc.property(timeline, fc.constantFrom(...COUNT_RULES), count, (list, rule, n) => {
        expect(kept(list, { counts: { [rule]: n } })).toEqual([...refCount(list, rule, n, 0)].sort());
      }),
      params(),
    );
  });

  it("keeps, per within-bucket rule, exactly what the reference keeps, measured from the group's newest", () => {
    fc.assert(
      fc.property(timeline, fc.constantFrom(...WITHIN_RULES), hoursDuration, (list, rule, h) => {
        expect(kept(list, { withinBuckets: { [rule]: asDuration(h) } })).toEqual([...refWithin(list, rule, h, 0)].sort());
      }),
      params(),
    );
  });

  it("counts buckets in the declared zone (a fixed offset agrees with shifted UTC times)", () => {
    fc.assert(
      fc.property(timeline, fc.constantFrom(...COUNT_RULES), count, fc.integer({ min: -11, max: 12 }), (list, rule, n, off) => {
        // Etc/GMT-5 is five hours east of UTC (POSIX signs).
        const zone = off === 0 ? "UTC" : `Etc/GMT${off > 0 ? "-" : "+"}${Math.abs(off)}`;
        expect(kept(list, { counts: { [rule]: n } }, zone)).toEqual([...refCount(list, rule, n, off)].sort());
      }),
      params(),
    );
  });

  it("keeps in each bucket its newest snapshot only (besides the oldest overall)", () => {
    fc.assert(
      fc.property(timeline, fc.constantFrom(...WITHIN_RULES), (list, rule) => {
        const keep = new Set(kept(list, { counts: { [rule]: UNLIMITED } }));
        const sorted = refSorted(list);
        const newestOf = new Map<string, string>();
        for (const s of sorted) if (!newestOf.has(refBucket(rule, msOf(s), 0))) newestOf.set(refBucket(rule, msOf(s), 0), s.id);
        for (const s of sorted) {
          const isNewest = newestOf.get(refBucket(rule, msOf(s), 0)) === s.id;
          expect(keep.has(s.id)).toBe(isNewest || s === sorted.at(-1));
        }
      }),
      params(),
    );
  });

  it("measures within-durations from the group's newest snapshot: when now is makes no difference", () => {
    fc.assert(
      fc.property(timeline, hoursDuration, fc.integer({ min: 1, max: 3650 }), (list, h, laterDays) => {
        const newest = Math.max(...list.map(msOf));
        const at = (nowMs: number) =>
          applyRetention({ snapshots: list, policy: policy({ within: asDuration(h), withinBuckets: { daily: asDuration(h) } }), zone: "UTC", groupBy: [], nowMs }).flatMap((g) => g.decisions);
        expect(at(newest + laterDays * DAY)).toEqual(at(newest + 1));
      }),
      params(),
    );
  });

  it("keep-last N keeps the N newest", () => {
    fc.assert(
      fc.property(timeline, fc.integer({ min: 1, max: 50 }), (list, n) => {
        expect(kept(list, { counts: { last: n } })).toEqual(refSorted(list).slice(0, n).map((s) => s.id).sort());
      }),
      params(),
    );
  });

  it("keeps the union of what each rule keeps alone, whatever the order of the input", () => {
    const anyPolicy = fc.record({
      counts: fc.record(Object.fromEntries(COUNT_RULES.map((r) => [r, fc.integer({ min: 0, max: 6 })])) as Record<CountRule, fc.Arbitrary<number>>),
      within: fc.option(hoursDuration.map(asDuration), { nil: undefined }),
      withinBuckets: fc.record(Object.fromEntries(WITHIN_RULES.map((r) => [r, hoursDuration.map(asDuration)])) as Record<WithinRule, fc.Arbitrary<CalendarDuration>>, {
        requiredKeys: [],
      }),
    });
    fc.assert(
      fc.property(timeline, anyPolicy, fc.integer(), (list, p, seed) => {
        const rules: Partial<RetentionPolicy>[] = [
          ...COUNT_RULES.filter((r) => p.counts[r] > 0).map((r) => ({ counts: { [r]: p.counts[r] } })),
          ...(p.within ? [{ within: p.within }] : []),
          ...WITHIN_RULES.filter((r) => p.withinBuckets[r]).map((r) => ({ withinBuckets: { [r]: p.withinBuckets[r]! } })),
        ];
        fc.pre(rules.length > 0);
        const union = [...new Set(rules.flatMap((r) => kept(list, r)))].sort();
        const shuffled = [...list].sort((a, b) => (hash(a.id, seed) - hash(b.id, seed)));
        expect(kept(shuffled, p)).toEqual(union);
      }),
      params(),
    );
  });

  it("never removes the keep-min newest of a group, and explains them", () => {
    fc.assert(
      fc.property(timeline, fc.integer({ min: 1, max: 5 }), (list, min) => {
        const groups = applyRetention({ snapshots: list, policy: policy({ counts: { yearly: 1 }, keepMin: min }), zone: "UTC", groupBy: [], nowMs: NOW });
        const decisions = groups[0]!.decisions;
        expect(decisions.map((d) => d.id)).toEqual(refSorted(list).map((s) => s.id));
        for (const d of decisions.slice(0, min)) expect(d.action).toBe("keep");
        for (const d of decisions.slice(min)) if (d.action === "keep") expect(d.reasons.some((r) => r.startsWith("keep-min"))).toBe(false);
      }),
      params(),
    );
  });
});

function hash(s: string, seed: number): number {
  let h = seed | 0;
  for (let i = 0; i < s.length; i++) h = Math.imul(h ^ s.charCodeAt(i), 0x01000193);
  return h;
}

describe("retention rules, by example", () => {
  it("keeps the oldest snapshot while a rule has counts left, and says so", () => {
    const list = [snap("a", "2025-03-01T10:00:00Z"), snap("b", "2025-03-01T09:00:00Z"), snap("c", "2025-03-02T10:00:00Z")];
    const [g] = applyRetention({ snapshots: list, policy: policy({ counts: { daily: 5 } }), zone: "UTC", groupBy: [], nowMs: NOW });
    expect(g!.decisions).toEqual([
      { id: "c", action: "keep", reasons: ["daily snapshot"] },
      { id: "a", action: "keep", reasons: ["daily snapshot"] },
      { id: "b", action: "keep", reasons: ["oldest daily snapshot"] },
    ]);
  });

  it("counts within-durations from the group's newest snapshot, not from now, nor from a future one", () => {
    const list = [snap("new", "2025-06-10T00:00:00Z"), snap("mid", "2025-06-05T00:00:00Z"), snap("old", "2025-05-01T00:00:00Z"), snap("future", NOW + DAY)];
    expect(kept(list, { within: { years: 0, months: 0, days: 7, hours: 0 } })).toEqual(["future", "mid", "new"]);
  });

  it("takes restic's calendar months for within (AddDate in the zone)", () => {
    const list = [snap("a", "2025-03-31T12:00:00Z"), snap("b", "2025-03-01T12:00:01Z"), snap("c", "2025-02-28T12:00:00Z")];
    // 2025-03-31 minus one month is 2025-02-31, normalised to 2025-03-03.
    expect(kept(list, { within: { years: 0, months: 1, days: 0, hours: 0 } })).toEqual(["a"]);
  });

  it("keeps snapshots carrying every tag of a --keep-tag list", () => {
    const list = [snap("a", "2025-01-01T00:00:00Z", { tags: ["x", "y"] }), snap("b", "2025-01-02T00:00:00Z", { tags: ["x"] }), snap("c", "2025-01-03T00:00:00Z")];
    expect(kept(list, { tags: [["x", "y"]] })).toEqual(["a"]);
    expect(kept(list, { tags: [["y"], ["x"]] })).toEqual(["a", "b"]);
  });

  it("numbers weeks as ISO does: the last days of December may be week 1", () => {
    // 2024-12-30 (Monday) is in ISO week 2025-W01, with 2025-01-02.
    const list = [snap("jan2", "2025-01-02T12:00:00Z"), snap("dec30", "2024-12-30T12:00:00Z"), snap("dec29", "2024-12-29T12:00:00Z")];
    expect(kept(list, { counts: { weekly: 2 } })).toEqual(["dec29", "jan2"]);
  });

  it("buckets in the declared zone: the same instants fall on other days in another zone", () => {
    // 23:30 UTC on the 1st is already the 2nd in Paris, where it shares a day with the 2nd's snapshot.
    const list = [snap("a", "2025-03-02T08:00:00Z"), snap("b", "2025-03-01T23:30:00Z"), snap("c", "2025-03-01T08:00:00Z"), snap("d", "2025-02-20T08:00:00Z")];
    expect(kept(list, { counts: { daily: 2 } }, "UTC")).toEqual(["a", "b"]);
    expect(kept(list, { counts: { daily: 2 } }, "Europe/Paris")).toEqual(["a", "c"]);
  });

  it("takes the wall clock of the zone: the hour repeated when daylight saving time ends is one bucket", () => {
    // 00:30 and 01:30 UTC on 2025-10-26 are both 02:30 in Berlin.
    const list = [snap("a", "2025-10-26T03:00:00Z"), snap("b", "2025-10-26T01:30:00Z"), snap("c", "2025-10-26T00:30:00Z"), snap("d", "2025-10-25T12:00:00Z")];
    expect(kept(list, { counts: { hourly: UNLIMITED } }, "Europe/Berlin")).toEqual(["a", "b", "d"]);
    expect(kept(list, { counts: { hourly: UNLIMITED } }, "UTC")).toEqual(["a", "b", "c", "d"]);
  });

  it("decides per group and refuses a policy that keeps nothing", () => {
    const list = [snap("a", "2025-01-01T00:00:00Z", { host: "one" }), snap("b", "2025-01-02T00:00:00Z", { host: "two" }), snap("c", "2025-01-03T00:00:00Z", { host: "two" })];
    expect(kept(list, { counts: { last: 1 } }, "UTC", ["host"])).toEqual(["a", "c"]);
    expect(() => kept(list, {})).toThrow(expect.objectContaining({ code: "USAGE" }));
    expect(() => kept(list, { tags: [["absent"]] }, "UTC", ["host"])).toThrow(expect.objectContaining({ code: "USAGE", data: { group: { host: "two" } } }));
    expect(kept(list, { tags: [["absent"]], keepMin: 1 }, "UTC", ["host"])).toEqual(["a", "c"]);
  });
});
