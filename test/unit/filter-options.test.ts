/** The command line's snapshot filters (src/cli/filter-options.ts): what each option parses into, and what is refused. */
import { describe, expect, it } from "vitest";
import { parseBefore, parseFilterOptions } from "../../src/cli/filter-options.js";
import { isCofferError } from "../../src/util/errors.js";

const usage = (f: () => unknown) => {
  try {
    f();
  } catch (e) {
    return isCofferError(e, "USAGE");
  }
  return false;
};

describe("filter options", () => {
  it("parse tags as comma-separated sets, and the other filters as given", () => {
    expect(parseFilterOptions({ tag: ["a,b", "c"], host: ["h"], source: ["/x"], latest: "2" })).toEqual({ tags: [["a", "b"], ["c"]], hosts: ["h"], sources: ["/x"], latest: 2 });
    expect(parseFilterOptions({})).toEqual({});
  });

  it("take --before as RFC 3339, or as a date at midnight in the zone", () => {
    expect(parseBefore("2026-03-01T10:00:00+01:00")).toBe(BigInt(Date.UTC(2026, 2, 1, 9)) * 1_000_000n);
    expect(parseBefore("2026-03-01", "UTC")).toBe(BigInt(Date.UTC(2026, 2, 1)) * 1_000_000n);
    expect(parseBefore("2026-07-01", "Europe/Paris")).toBe(BigInt(Date.UTC(2026, 5, 30, 22)) * 1_000_000n);
  });

  it("refuse what is not a filter", () => {
    for (const bad of [{ before: "2026-02-30" }, { before: "soon" }, { latest: "0" }, { latest: "1.5" }, { latest: "x" }, { tag: [","] }]) expect(usage(() => parseFilterOptions(bad)), JSON.stringify(bad)).toBe(true);
  });
});
