/**
 * Snapshot listing and resolution (src/snapshot/snapshots.ts) over headers
 * committed by hand into a memory repository: the order, the best of each
 * backup run, headers that cannot be read, snapshots a repair replaced, and
 * resolving the latest snapshot or an ID prefix.
 */
import { beforeAll, describe, expect, it } from "vitest";
import { MemoryStore } from "../../src/connectors/memory/store.js";
import { Repository } from "../../src/repository/repository.js";
import { encodeHeader, type SnapshotHeader } from "../../src/snapshot/header.js";
import { LATEST, listSnapshots, resolveSnapshot } from "../../src/snapshot/snapshots.js";
import type { Entry } from "../../src/snapshot/tree.js";
import { fromHex, toHex } from "../../src/util/hex.js";

const KDF = { memory: 8192, passes: 1, parallelism: 1 };
const root: Entry = { name: "", info: { name: "", kind: "dir", size: 0, mode: 0o755, mtimeNs: 1n, dev: 1n, ino: 1n, uid: 0, gid: 0, nlink: 1 } };
const summary = { files: 0, dirs: 1, symlinks: 0, others: 0, bytes: 0, errors: 0, readBytes: 0, newBlobs: 0, newBytes: 0 };

/** A 32-byte snapshot ID starting with `prefix` (hex). */
const id = (prefix: string) => fromHex(prefix.padEnd(64, "0"));
const hex = (h: SnapshotHeader) => toHex(h.id).slice(0, 4);

function header(idPrefix: string, time: number, more: Partial<SnapshotHeader> = {}): SnapshotHeader {
  return { id: id(idPrefix), timeNs: BigInt(time), durationNs: 1n, hostname: "h", username: "u", os: "linux", arch: "x64", importer: { type: "fs", origin: "h", root: "/src" }, tags: [], root, summary, ...more };
}

async function repoWith(headers: SnapshotHeader[], garbage: string[] = []): Promise<Repository> {
  const mem = new MemoryStore();
  await Repository.create(mem, { passphrase: null, kdf: KDF });
  const repo = await Repository.open(mem, { passphrase: async () => null });
  for (const h of headers) await repo.commitSnapshot(h.id, encodeHeader(h));
  for (const g of garbage) await repo.commitSnapshot(id(g), new TextEncoder().encode("not a header"));
  return repo;
}

const RUN = new Uint8Array(16).fill(7);
const UNFINISHED = new Uint8Array(16).fill(9);
let repo: Repository;

beforeAll(async () => {
  repo = await repoWith(
    [
      header("aa11", 10),
      header("aa22", 20),
      // a run with two checkpoints and its final snapshot: only the snapshot is listed
      header("cc01", 30, { run: RUN, checkpoint: 1 }),
      header("cc02", 31, { run: RUN, checkpoint: 2 }),
      header("cc03", 32, { run: RUN }),
      // `repair snapshots` replaced bb44 by dd44, and its removal record was never written
      header("bb44", 40),
      header("dd44", 41, { repairOf: { id: id("bb44"), timeNs: 41n } }),
      // a run that never completed: its latest checkpoint stays, the latest of all snapshots
      header("ee01", 50, { run: UNFINISHED, checkpoint: 1 }),
      header("ee02", 51, { run: UNFINISHED, checkpoint: 2 }),
    ],
    ["ff99"],
  );
});

describe("listSnapshots", () => {
  it("lists oldest first the complete snapshots and each unfinished run's latest checkpoint; sets apart the replaced and the unreadable", async () => {
    const { snapshots, unreadable, replaced } = await listSnapshots(repo);
    expect(snapshots.map(hex)).toEqual(["aa11", "aa22", "cc03", "dd44", "ee02"]);
    expect(replaced.map(hex)).toEqual(["bb44"]);
    expect(unreadable.map((u) => toHex(u.id).slice(0, 4))).toEqual(["ff99"]);
    expect(unreadable[0]!.message).toMatch(/undecodable header|bad header/);
  });

  it("with `superseded`, also lists the checkpoints a later one of their run hides", async () => {
    const { snapshots } = await listSnapshots(repo, undefined, { superseded: true });
    expect(snapshots.map(hex)).toEqual(["aa11", "aa22", "cc01", "cc02", "cc03", "dd44", "ee01", "ee02"]);
  });
});

describe("resolveSnapshot", () => {
  it("gives the latest complete snapshot for LATEST (and by default), passing over partial ones", async () => {
    expect(hex(await resolveSnapshot(repo, LATEST))).toBe("dd44");
    expect(hex(await resolveSnapshot(repo))).toBe("dd44");
  });

  it("gives the one snapshot an ID prefix names, in either case, partial or not", async () => {
    expect(hex(await resolveSnapshot(repo, { idPrefix: "AA1" }))).toBe("aa11");
    expect(hex(await resolveSnapshot(repo, { idPrefix: "ee01" }))).toBe("ee01");
  });

  it("fails with SNAPSHOT_AMBIGUOUS for a prefix of several, SNAPSHOT_NOT_FOUND for a prefix of none", async () => {
    await expect(resolveSnapshot(repo, { idPrefix: "aa" })).rejects.toMatchObject({ code: "SNAPSHOT_AMBIGUOUS" });
    await expect(resolveSnapshot(repo, { idPrefix: "1234" })).rejects.toMatchObject({ code: "SNAPSHOT_NOT_FOUND" });
  });

  it("fails with CORRUPT for a prefix naming an unreadable header", async () => {
    await expect(resolveSnapshot(repo, { idPrefix: "ff" })).rejects.toMatchObject({ code: "CORRUPT" });
  });

  it("fails with SNAPSHOT_NOT_FOUND for LATEST when every snapshot is partial, saying so", async () => {
    const partial = await repoWith([header("0a01", 1, { run: RUN, checkpoint: 1 })]);
    await expect(resolveSnapshot(partial, LATEST)).rejects.toMatchObject({ code: "SNAPSHOT_NOT_FOUND", message: expect.stringContaining("1 partial snapshots") });
    const empty = await repoWith([]);
    await expect(resolveSnapshot(empty, LATEST)).rejects.toMatchObject({ code: "SNAPSHOT_NOT_FOUND" });
  });
});
