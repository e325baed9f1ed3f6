/**
 * The command line's SNAP and SNAP:PATH (src/cli/snapshot-target.ts):
 * split at the first colon, SNAP as the latest snapshot or a hex ID
 * prefix, PATH normalised; anything else in SNAP is a usage error.
 */
import { describe, expect, it } from "vitest";
import { normalisePath, parseSnapshotSelector, parseSnapshotTarget } from "../../src/cli/snapshot-target.js";

describe("parseSnapshotSelector", () => {
  it("names the latest snapshot for nothing, an empty string and `latest`", () => {
    for (const s of [undefined, "", "latest"]) expect(parseSnapshotSelector(s)).toEqual({ latest: true });
  });

  it("keeps a hex prefix as typed (either case)", () => {
    expect(parseSnapshotSelector("a1B2")).toEqual({ idPrefix: "a1B2" });
  });

  it("refuses anything that is not hex digits with USAGE", () => {
    for (const s of ["xyz", "ab cd", "12-34", "Latest", "ab:"]) expect(() => parseSnapshotSelector(s), s).toThrow(expect.objectContaining({ code: "USAGE" }));
  });
});

describe("parseSnapshotTarget", () => {
  it("splits SNAP:PATH at the first colon, either part optional", () => {
    expect(parseSnapshotTarget(undefined)).toEqual({ snapshot: { latest: true }, path: "/" });
    expect(parseSnapshotTarget("ab12")).toEqual({ snapshot: { idPrefix: "ab12" }, path: "/" });
    expect(parseSnapshotTarget("ab12:/etc/hosts")).toEqual({ snapshot: { idPrefix: "ab12" }, path: "/etc/hosts" });
    expect(parseSnapshotTarget(":etc")).toEqual({ snapshot: { latest: true }, path: "/etc" });
    expect(parseSnapshotTarget("latest:a:b")).toEqual({ snapshot: { latest: true }, path: "/a:b" });
  });

  it("fails on a SNAP that is not a prefix, whatever the path", () => {
    expect(() => parseSnapshotTarget("nothex:/a")).toThrow(expect.objectContaining({ code: "USAGE" }));
  });
});

describe("normalisePath", () => {
  it("makes the path absolute, drops empty and `.` components, and never climbs above /", () => {
    expect(normalisePath("")).toBe("/");
    expect(normalisePath("a//b/./c/")).toBe("/a/b/c");
    expect(normalisePath("/a/b/../c")).toBe("/a/c");
    expect(normalisePath("../../x")).toBe("/x");
    expect(normalisePath("a\\351/b")).toBe("/a\\351/b"); // backslashes are the display form of names (lookupTyped)
  });
});
