/**
 * Verification coverage (src/snapshot/coverage.ts) and the option values it
 * takes (src/cli/quantities.ts, parseReadSubset): the parts N/M partition
 * the packfiles, shares and sizes take the longest unverified first, and
 * coverage counts what was verified within each window.
 */
import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { parseReadSubset } from "../../src/cli/commands/check.js";
import { parseDuration, parseSize } from "../../src/cli/quantities.js";
import { Index } from "../../src/repository/state.js";
import { choosePacks, coverage, type PackAge, packAges, partOf } from "../../src/snapshot/coverage.js";
import { isCofferError } from "../../src/util/errors.js";
import { toHex } from "../../src/util/hex.js";

const arbMac = fc.uint8Array({ minLength: 32, maxLength: 32 });
const DAY = 24 * 3600_000;

/** An index naming `packs`, each holding one blob of `bytes` bytes, and verified at the times given. */
function indexOf(packs: { mac: Uint8Array; bytes: number; verifiedMs?: number }[]): Index {
  const index = new Index();
  for (const p of packs) {
    index.addPack({ mac: p.mac, entries: [{ type: 1, mac: p.mac, offset: 0, length: p.bytes, rawLength: p.bytes }] });
    if (p.verifiedMs !== undefined) index.addVerified({ pack: p.mac, timeMs: p.verifiedMs });
  }
  return index;
}

function age(hex: string, verifiedMs: number | null, bytes = 10): PackAge {
  return { hex, mac: Buffer.from(hex, "hex"), bytes, verifiedMs };
}

describe("packAges", () => {
  it("never verified first (by name), then the oldest verification first; the later of the state's time and the client's wins", () => {
    const mac = (b: number) => new Uint8Array(32).fill(b);
    const index = indexOf([
      { mac: mac(1), bytes: 5, verifiedMs: 300 },
      { mac: mac(2), bytes: 6 },
      { mac: mac(3), bytes: 7, verifiedMs: 100 },
      { mac: mac(4), bytes: 8, verifiedMs: 200 },
      { mac: mac(0), bytes: 9 },
    ]);
    index.addVerified({ pack: mac(3), timeMs: 50 }); // an older record changes nothing
    const local = new Map([
      [toHex(mac(4)), 400],
      [toHex(mac(1)), 250],
    ]);
    expect(packAges(index, local).map((a) => [a.hex.slice(0, 2), a.verifiedMs, a.bytes])).toEqual([
      ["00", null, 9],
      ["02", null, 6],
      ["03", 100, 7],
      ["01", 300, 5],
      ["04", 400, 8],
    ]);
  });
});

describe("--read-data-subset N/M", () => {
  it("parts 1/M..M/M cover every packfile exactly once", () => {
    fc.assert(
      fc.property(fc.uniqueArray(arbMac, { maxLength: 60, selector: toHex }), fc.integer({ min: 1, max: 12 }), (macs, m) => {
        const ages = packAges(indexOf(macs.map((mac) => ({ mac, bytes: 1 }))));
        const seen = new Map<string, number>();
        for (let n = 1; n <= m; n++) for (const a of choosePacks(ages, { part: n, of: m })) seen.set(a.hex, (seen.get(a.hex) ?? 0) + 1);
        expect(seen.size).toBe(macs.length);
        for (const count of seen.values()) expect(count).toBe(1);
      }),
    );
  });

  it("a part depends on the name only, not on when packfiles were verified", () => {
    fc.assert(
      fc.property(arbMac, fc.integer({ min: 1, max: 1000 }), fc.option(fc.nat()), (mac, m, t) => {
        const [a] = packAges(indexOf([{ mac, bytes: 1, ...(t === null ? {} : { verifiedMs: t }) }]));
        expect(choosePacks([a!], { part: partOf(mac, m) + 1, of: m })).toHaveLength(1);
      }),
    );
  });
});

describe("--read-data-subset P% and SIZE", () => {
  const ages = [age("00", null, 40), age("01", null, 30), age("02", 5, 20), age("03", 9, 10)];

  it("a share takes ceil(P%) of the packfiles, the longest unverified first", () => {
    expect(choosePacks(ages, { percent: 50 }).map((a) => a.hex)).toEqual(["00", "01"]);
    expect(choosePacks(ages, { percent: 1 }).map((a) => a.hex)).toEqual(["00"]);
    expect(choosePacks(ages, { percent: 100 })).toHaveLength(4);
    expect(choosePacks([], { percent: 100 })).toEqual([]);
  });

  it("a size takes them while their bytes fit, and one at least", () => {
    expect(choosePacks(ages, { bytes: 70 }).map((a) => a.hex)).toEqual(["00", "01"]);
    expect(choosePacks(ages, { bytes: 89 }).map((a) => a.hex)).toEqual(["00", "01"]);
    expect(choosePacks(ages, { bytes: 100 }).map((a) => a.hex)).toEqual(["00", "01", "02", "03"]);
    expect(choosePacks(ages, { bytes: 1 }).map((a) => a.hex)).toEqual(["00"]);
  });

  it("successive shares rotate through the repository: each run reads what was verified longest ago", () => {
    fc.assert(
      fc.property(fc.uniqueArray(arbMac, { minLength: 1, maxLength: 40, selector: toHex }), fc.integer({ min: 1, max: 100 }), (macs, percent) => {
        const index = indexOf(macs.map((mac) => ({ mac, bytes: 1 })));
        const per = Math.ceil((macs.length * percent) / 100);
        const runs = Math.ceil(macs.length / per);
        const read = new Set<string>();
        for (let run = 1; run <= runs; run++) {
          const chosen = choosePacks(packAges(index), { percent });
          expect(chosen).toHaveLength(per);
          // Packfiles not yet read come first: a run reads again only once every packfile was read.
          expect(chosen.filter((a) => !read.has(a.hex))).toHaveLength(Math.min(per, macs.length - read.size));
          for (const a of chosen) {
            read.add(a.hex);
            index.addVerified({ pack: a.mac, timeMs: run });
          }
        }
        expect(read.size).toBe(macs.length);
        // From then on, each run reads those verified longest ago.
        const all = packAges(index);
        const chosen = new Set(choosePacks(all, { percent }).map((a) => a.hex));
        const newestChosen = Math.max(...all.filter((a) => chosen.has(a.hex)).map((a) => a.verifiedMs!));
        for (const a of all) if (!chosen.has(a.hex)) expect(a.verifiedMs!).toBeGreaterThanOrEqual(newestChosen);
      }),
    );
  });
});

describe("coverage", () => {
  it("counts packfiles and bytes verified within the day, week and month, those never verified, and the oldest verification", () => {
    const now = 100 * DAY;
    const c = coverage([age("00", null, 1), age("01", now - 2 * DAY, 10), age("02", now - 3600_000, 100), age("03", now - 40 * DAY, 1000)], now);
    expect(c).toEqual({
      packs: 4,
      bytes: 1111,
      windows: [
        { window: "day", ms: DAY, packs: 1, bytes: 100 },
        { window: "week", ms: 7 * DAY, packs: 2, bytes: 110 },
        { window: "month", ms: 30 * DAY, packs: 2, bytes: 110 },
      ],
      never: { packs: 1, bytes: 1 },
      oldestMs: now - 40 * DAY,
      oldestPack: "03",
    });
    expect(coverage([age("00", null)], now)).toMatchObject({ oldestMs: null, oldestPack: null, never: { packs: 1 } });
  });
});

describe("option values", () => {
  const usage = (f: () => unknown) => {
    try {
      f();
    } catch (e) {
      return isCofferError(e, "USAGE");
    }
    return false;
  };

  it("--read-data-subset: N/M, P% or SIZE", () => {
    expect(parseReadSubset("2/5")).toEqual({ part: 2, of: 5 });
    expect(parseReadSubset("1/1")).toEqual({ part: 1, of: 1 });
    expect(parseReadSubset("12.5%")).toEqual({ percent: 12.5 });
    expect(parseReadSubset("500M")).toEqual({ bytes: 500 * 2 ** 20 });
    expect(parseReadSubset("2G")).toEqual({ bytes: 2 * 2 ** 30 });
    for (const bad of ["0/3", "4/3", "1/0", "0%", "101%", "-5%", "abc", "0", "", "1/2/3"]) expect(usage(() => parseReadSubset(bad)), bad).toBe(true);
  });

  it("sizes and durations", () => {
    expect(parseSize("1234", "--x")).toBe(1234);
    expect(parseSize("1.5K", "--x")).toBe(1536);
    expect(parseSize("3MiB", "--x")).toBe(3 * 2 ** 20);
    expect(parseSize("1t", "--x")).toBe(2 ** 40);
    for (const bad of ["", "M", "1X", "-1", "1e3"]) expect(usage(() => parseSize(bad, "--x")), bad).toBe(true);
    expect(parseDuration("0", "--x")).toBe(0);
    expect(parseDuration("90s", "--x")).toBe(90_000);
    expect(parseDuration("1h30m", "--x")).toBe(5_400_000);
    expect(parseDuration("2.5h", "--x")).toBe(9_000_000);
    expect(parseDuration("250ms", "--x")).toBe(250);
    expect(parseDuration("1d", "--x")).toBe(DAY);
    for (const bad of ["", "5", "1y", "h", "-1s", "1h 30m"]) expect(usage(() => parseDuration(bad, "--x")), bad).toBe(true);
  });
});
