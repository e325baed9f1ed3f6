/** Selecting snapshots by filters (src/snapshot/select.ts) and the source spelling `--source` matches. */
import { describe, expect, it } from "vitest";
import type { SnapshotHeader } from "../../src/snapshot/header.js";
import { describeFilter, hasFilters, selectSnapshots, snapshotSource } from "../../src/snapshot/select.js";

function header(n: number, host: string, importer: { type: string; root: string }, tags: string[] = []): SnapshotHeader {
  return {
    id: new Uint8Array(32).fill(n),
    timeNs: BigInt(n) * 1_000_000_000n,
    durationNs: 0n,
    hostname: host,
    username: "u",
    os: "linux",
    arch: "x64",
    importer: { ...importer, origin: host },
    tags,
    root: { name: "/", info: { name: "/", kind: "dir", size: 0, mode: 0o755, mtimeNs: 0n, dev: 0n, ino: 0n, uid: 0, gid: 0, nlink: 1 } } as SnapshotHeader["root"],
    summary: { files: 0, dirs: 0, symlinks: 0, others: 0, bytes: 0, errors: 0, readBytes: 0, newBlobs: 0, newBytes: 0 },
  };
}

const fsA = { type: "fs", root: "/a" };
const tarB = { type: "tar", root: "/b.tar" };
const all = [
  header(1, "h1", fsA, ["daily"]),
  header(2, "h2", fsA, ["daily", "db"]),
  header(3, "h1", tarB, ["db"]),
  header(4, "h1", fsA),
  header(5, "h2", tarB, ["daily"]),
  header(6, "h1", fsA, ["daily"]),
];
const ids = (l: SnapshotHeader[]) => l.map((h) => h.id[0]);

describe("selectSnapshots", () => {
  it("spells sources as ls shows them: the root for fs, TYPE:ROOT otherwise", () => {
    expect(snapshotSource(all[0]!)).toBe("/a");
    expect(snapshotSource(all[2]!)).toBe("tar:/b.tar");
  });

  it("a tag set matches snapshots with all its tags; sets given twice match either", () => {
    expect(ids(selectSnapshots(all, { tags: [["daily"]] }))).toEqual([1, 2, 5, 6]);
    expect(ids(selectSnapshots(all, { tags: [["daily", "db"]] }))).toEqual([2]);
    expect(ids(selectSnapshots(all, { tags: [["db"], ["daily"]] }))).toEqual([1, 2, 3, 5, 6]);
  });

  it("hosts, sources (fs:ROOT too) and --before compose with AND", () => {
    expect(ids(selectSnapshots(all, { hosts: ["h2"] }))).toEqual([2, 5]);
    expect(ids(selectSnapshots(all, { sources: ["tar:/b.tar"] }))).toEqual([3, 5]);
    expect(ids(selectSnapshots(all, { sources: ["fs:/a"], hosts: ["h1"] }))).toEqual([1, 4, 6]);
    expect(ids(selectSnapshots(all, { beforeNs: 4_000_000_000n, tags: [["daily"]] }))).toEqual([1, 2]);
    expect(ids(selectSnapshots(all, { sources: ["/b.tar"] }))).toEqual([]);
  });

  it("--latest N keeps the N newest of each host and source after the other filters", () => {
    expect(ids(selectSnapshots(all, { latest: 1 }))).toEqual([2, 3, 5, 6]);
    expect(ids(selectSnapshots(all, { latest: 2, hosts: ["h1"] }))).toEqual([3, 4, 6]);
    expect(ids(selectSnapshots(all, { latest: 1, tags: [["daily"]], hosts: ["h1"] }))).toEqual([6]);
    expect(ids(selectSnapshots([...all].reverse(), { latest: 1 }))).toEqual([6, 5, 3, 2]);
  });

  it("says which filters are given, as plans print them", () => {
    expect(hasFilters({})).toBe(false);
    expect(hasFilters({ tags: [] })).toBe(false);
    expect(hasFilters({ latest: 0 })).toBe(true);
    expect(describeFilter({ tags: [["a", "b"]], hosts: ["h"], sources: ["/x"], beforeNs: 0n, latest: 2 })).toBe("--tag a,b --host h --source /x --before 1970-01-01T00:00:00.000Z --latest 2");
  });
});
