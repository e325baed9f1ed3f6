/**
 * The garbage collection planner (src/repository/gc-plan.ts): which
 * packfiles it marks, repacks, deletes and revives, given the packfiles
 * with their marks, the live blobs with their locations, and the policy;
 * and, over random inputs, that no live blob ever loses its last copy.
 */
import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { type GcPolicy, type LiveBlob, planGc, type PlanPack } from "../../src/repository/gc-plan.js";

const KiB = 1024;
const policy = (more: Partial<GcPolicy> = {}): GcPolicy => ({ maxUnused: { percent: 5 }, maxRepackBytes: Infinity, packSize: 100 * KiB, graceMs: 0, nowMs: 1_000_000, ...more });
const pack = (hex: string, bytes = 100 * KiB, more: Partial<PlanPack> = {}): PlanPack => ({ hex, bytes, damaged: false, ...more });
const blob = (key: string, length: number, ...packs: string[]): LiveBlob => ({ key, length, packs });
const ripe = { timeMs: 1000, confirmed: true, holdoutsRunning: 0 };

describe("planGc: new marks and repacks", () => {
  it("marks a packfile no live blob needs and leaves a full one alone", () => {
    const p = planGc([pack("aa"), pack("bb")], [blob("x", 100 * KiB, "aa")], policy());
    expect(p.mark).toEqual(["bb"]);
    expect(p.repack).toEqual([]);
    expect(p.delete).toEqual([]);
    expect(p.unusedAfter).toBe(0);
  });

  it("marks a packfile whose live blobs all live in a fuller packfile (duplicates)", () => {
    // bb holds x and y, aa only x: x's home is bb (the larger live share), so aa is needed by nothing.
    const p = planGc([pack("aa", 100 * KiB), pack("bb", 60 * KiB)], [blob("x", 30 * KiB, "aa", "bb"), blob("y", 30 * KiB, "bb")], policy());
    expect(p.mark).toEqual(["aa"]);
  });

  it("repacks the most unused packfiles first until unused data is within --max-unused", () => {
    // Live: aa 90%, bb 50%, cc 20%. Within 5%: all three; within 30%: only cc.
    const packs = [pack("aa"), pack("bb"), pack("cc")];
    const live = [blob("a", 90 * KiB, "aa"), blob("b", 50 * KiB, "bb"), blob("c", 20 * KiB, "cc")];
    const five = planGc(packs, live, policy());
    expect(five.repack).toEqual(["aa", "bb", "cc"]);
    expect([...five.copy]).toEqual([["aa", ["a"]], ["bb", ["b"]], ["cc", ["c"]]]);
    expect(five.unusedAfter).toBe(0);
    const thirty = planGc(packs, live, policy({ maxUnused: { percent: 30 } }));
    expect(thirty.repack).toEqual(["cc"]);
    expect(thirty.unusedAfter).toBe(60 * KiB);
    expect(planGc(packs, live, policy({ maxUnused: null })).repack).toEqual([]);
    expect(planGc(packs, live, policy({ maxUnused: { bytes: 100 * KiB } })).repack).toEqual(["cc"]);
  });

  it("reads no more than --max-repack-size", () => {
    const packs = [pack("aa"), pack("bb"), pack("cc")];
    const live = [blob("a", 10 * KiB, "aa"), blob("b", 20 * KiB, "bb"), blob("c", 30 * KiB, "cc")];
    expect(planGc(packs, live, policy({ maxRepackBytes: 250 * KiB })).repack).toEqual(["aa", "bb"]);
    expect(planGc(packs, live, policy({ maxRepackBytes: 99 * KiB })).repack).toEqual([]);
  });

  it("merges small packfiles when there are two or more, never one alone", () => {
    const live = [blob("a", 10 * KiB, "aa"), blob("b", 20 * KiB, "bb"), blob("c", 100 * KiB, "cc")];
    const two = planGc([pack("aa", 10 * KiB), pack("bb", 20 * KiB), pack("cc")], live, policy());
    expect(two.repack.sort()).toEqual(["aa", "bb"]);
    const one = planGc([pack("aa", 10 * KiB), pack("cc")], [live[0]!, live[2]!], policy());
    expect(one.repack).toEqual([]);
  });

  it("never marks or repacks a damaged packfile", () => {
    const p = planGc([pack("aa", 100 * KiB, { damaged: true }), pack("bb", 100 * KiB, { damaged: true })], [blob("b", 10 * KiB, "bb")], policy());
    expect(p).toMatchObject({ mark: [], repack: [], delete: [] });
  });
});

describe("planGc: marks made earlier", () => {
  it("deletes a ripe mark: confirmed, older than the grace period, its holdouts ended", () => {
    const p = planGc([pack("aa", 100 * KiB, { mark: ripe }), pack("bb")], [blob("x", 100 * KiB, "bb")], policy());
    expect(p.delete).toEqual(["aa"]);
    expect(p.revive).toEqual([]);
  });

  it("keeps a mark younger than the grace period, one a holdout still runs for, and an unconfirmed one (to be confirmed)", () => {
    const packs = [
      pack("aa", 100 * KiB, { mark: { timeMs: 999_000, confirmed: true, holdoutsRunning: 0 } }),
      pack("bb", 100 * KiB, { mark: { timeMs: 1000, confirmed: true, holdoutsRunning: 1 } }),
      pack("cc", 100 * KiB, { mark: { timeMs: 2000, confirmed: false, holdoutsRunning: 0 } }),
    ];
    const p = planGc(packs, [], policy({ graceMs: 10_000 }));
    expect(p).toMatchObject({ delete: [], keptForGrace: ["aa"], keptForLocks: ["bb", "cc"], unconfirmed: [2000], mark: [] });
  });

  it("a backup that started before the mark and committed after it, referencing the marked packfile, cancels the deletion", () => {
    // x was unused when aa was marked; a snapshot committed since references it, and aa holds its only copy.
    const p = planGc([pack("aa", 100 * KiB, { mark: ripe }), pack("bb")], [blob("x", 10 * KiB, "aa"), blob("y", 100 * KiB, "bb")], policy());
    expect(p.revive).toEqual([{ pack: "aa", markTimeMs: 1000 }]);
    expect(p.delete).toEqual([]);
    // Revived, it is an ordinary packfile again: mostly unused, it is repacked.
    expect(p.repack).toEqual(["aa"]);
    expect(p.copy.get("aa")).toEqual(["x"]);
  });

  it("deletes a marked packfile whose live blob has a copy elsewhere (a repack's old copy)", () => {
    const p = planGc([pack("aa", 100 * KiB, { mark: ripe }), pack("bb", 10 * KiB)], [blob("x", 10 * KiB, "aa", "bb")], policy());
    expect(p).toMatchObject({ delete: ["aa"], revive: [], repack: [] });
  });

  it("revives one of two marked packfiles holding a live blob, the better home", () => {
    const p = planGc([pack("aa", 100 * KiB, { mark: ripe }), pack("bb", 20 * KiB, { mark: ripe })], [blob("x", 10 * KiB, "aa", "bb")], policy());
    expect(p.revive.map((r) => r.pack)).toEqual(["bb"]);
    expect(p.delete).toEqual(["aa"]);
  });
});

describe("planGc over random repositories", () => {
  const hexes = ["a0", "a1", "a2", "a3", "a4", "a5"];
  const arbMark = fc.option(fc.record({ timeMs: fc.integer({ min: 0, max: 2000 }), confirmed: fc.boolean(), holdoutsRunning: fc.nat({ max: 1 }) }), { nil: undefined });
  const arbPacks = fc.tuple(...hexes.map((hex) => fc.record({ bytes: fc.integer({ min: 1, max: 200 }), damaged: fc.boolean(), mark: arbMark }).map((p) => ({ hex, ...p }))));
  const arbLive = fc.array(fc.record({ length: fc.integer({ min: 1, max: 50 }), packs: fc.subarray(hexes) }), { maxLength: 12 }).map((bs) => bs.map((b, i) => ({ key: `k${i}`, ...b })));

  it("leaves every live blob a copy in a packfile it does not delete, and copies what it repacks", () => {
    fc.assert(
      fc.property(arbPacks, arbLive, fc.integer({ min: 0, max: 1500 }), (packs, live, graceMs) => {
        const plan = planGc(packs.map(({ mark, ...p }): PlanPack => (mark === undefined ? p : { ...p, mark })), live, policy({ graceMs, nowMs: 2000, packSize: 100 }));
        const deleted = new Set(plan.delete);
        const marked = new Set(plan.mark);
        for (const b of live) {
          if (b.packs.length === 0) continue;
          expect(b.packs.some((h) => !deleted.has(h)), `${b.key} keeps a copy`).toBe(true);
          // Nothing marked now is the only holder of a live blob.
          expect(b.packs.every((h) => marked.has(h) || deleted.has(h)), `${b.key} not only in packfiles marked now`).toBe(false);
        }
        for (const h of plan.repack) expect(marked.has(h) || deleted.has(h)).toBe(false);
        for (const r of plan.revive) expect(deleted.has(r.pack)).toBe(false);
      }),
    );
  });
});
