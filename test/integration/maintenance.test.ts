/**
 * Garbage collection (src/snapshot/maintenance.ts) on a memory repository
 * with snapshots committed by hand, and the interleavings with backups that
 * matter (docs/FORMAT.md, "Garbage collection"): two runs to free what no
 * snapshot needs; a backup that started before the mark and commits after
 * it, referencing a marked packfile, cancels its deletion; a backup that
 * starts after the mark does not deduplicate against it; repacking; the
 * grace period; a dry run writes nothing. After each, `check` finds
 * nothing and every kept snapshot reads back what it stored.
 */
import { describe, expect, it } from "vitest";
import { Resource } from "../../src/connectors/flags.js";
import { type MemoryBacking, MemoryStore } from "../../src/connectors/memory/store.js";
import { BlobType } from "../../src/repository/codec.js";
import { Repository } from "../../src/repository/repository.js";
import { blobKey } from "../../src/repository/state.js";
import { check } from "../../src/snapshot/check.js";
import { decodeHeader, encodeHeader, type SnapshotHeader } from "../../src/snapshot/header.js";
import { maintenance, type MaintenanceOptions, type MaintenanceReport } from "../../src/snapshot/maintenance.js";
import { decodeTree, type Entry, encodeTree } from "../../src/snapshot/tree.js";
import { toHex } from "../../src/util/hex.js";
import { seededBytes } from "../helpers/tree.js";
import { removeSnapshots } from "../helpers/remove-snapshots.js";
import { undeleteSnapshot } from "../../src/snapshot/removal.js";
import { isCofferError } from "../../src/util/errors.js";

const KiB = 1024;
const info = (kind: "dir" | "file", size: number) => ({ name: "", kind, size, mode: 0o755, mtimeNs: 1n, dev: 1n, ino: 1n, uid: 0, gid: 0, nlink: 1 }) as const;
const summary = { files: 1, dirs: 1, symlinks: 0, others: 0, bytes: 0, errors: 0, readBytes: 0, newBlobs: 0, newBytes: 0 };
let ids = 0;

/** A memory repository whose packfiles hold `packSize` bytes (one 6 KiB chunk each by default). */
async function created(packSize = 4 * KiB): Promise<MemoryBacking> {
  const mem = new MemoryStore();
  await Repository.create(mem, { passphrase: null, packSize, chunking: { min: 1 * KiB, avg: 2 * KiB, max: 8 * KiB } });
  return mem.backing;
}

const open = (b: MemoryBacking) => Repository.open(new MemoryStore({ backing: b }), { passphrase: async () => null });

async function withRepo<T>(b: MemoryBacking, fn: (repo: Repository) => Promise<T>): Promise<T> {
  const repo = await open(b);
  try {
    return await fn(repo);
  } finally {
    await repo.close();
  }
}

/** Commits a snapshot of one file made of `chunks` (seeds of 6 KiB chunks); returns its ID (hex). */
async function commit(repo: Repository, chunks: readonly string[]): Promise<string> {
  const refs = [];
  for (const seed of chunks) {
    const data = seededBytes(seed, 6 * KiB);
    refs.push({ mac: (await repo.putBlob(BlobType.CHUNK, data)).mac, length: data.byteLength });
  }
  const file: Entry = { name: "f", info: { ...info("file", refs.length * 6 * KiB), name: "f" }, chunks: refs };
  const tree = await repo.putBlob(BlobType.TREE, encodeTree([file]));
  const id = new Uint8Array(32);
  id.set([++ids, 0xcc]);
  const h: SnapshotHeader = {
    id, timeNs: BigInt(ids), durationNs: 1n, hostname: "h", username: "u", os: "linux", arch: "x64",
    importer: { type: "fs", origin: "h", root: "/src" }, tags: [], root: { name: "", info: info("dir", 0), tree: tree.mac }, summary,
  };
  await repo.commitSnapshot(id, encodeHeader(h));
  return toHex(id);
}

async function commitIn(b: MemoryBacking, chunks: readonly string[]): Promise<string> {
  return withRepo(b, async (repo) => {
    await repo.acquire("shared", "backup (test)");
    return commit(repo, chunks);
  });
}

/** The chunk seeds' bytes a snapshot's file holds, read back whole. */
async function readBack(b: MemoryBacking, id: string): Promise<Buffer> {
  return withRepo(b, async (repo) => {
    const mac = Buffer.from(id, "hex");
    const h = decodeHeader(await repo.getBlob(BlobType.SNAPSHOT, mac), mac);
    const [file] = decodeTree(await repo.getBlob(BlobType.TREE, h.root.tree!), "tree");
    const parts = [];
    for (const c of file!.chunks!) parts.push(await repo.getBlob(BlobType.CHUNK, c.mac));
    return Buffer.concat(parts);
  });
}

const expected = (chunks: readonly string[]) => Buffer.concat(chunks.map((s) => seededBytes(s, 6 * KiB)));

async function gc(b: MemoryBacking, o: Partial<MaintenanceOptions> = {}): Promise<MaintenanceReport> {
  return withRepo(b, async (repo) => {
    if (!o.dryRun) await repo.acquire("maintenance", "maintenance");
    return maintenance(repo, { graceMs: 0, maxUnused: { percent: 5 }, maxRepackBytes: Infinity, ...o });
  });
}

/** check --read-data finds nothing, and each kept snapshot reads back its data. */
async function expectIntact(b: MemoryBacking, kept: Record<string, readonly string[]>): Promise<void> {
  const r = await withRepo(b, (repo) => check(repo));
  expect(r.problems).toEqual([]);
  expect(r.snapshots).toBe(Object.keys(kept).length);
  for (const [id, chunks] of Object.entries(kept)) expect((await readBack(b, id)).equals(expected(chunks)), id).toBe(true);
}

const packNames = (b: MemoryBacking) => new Set(b.objects.get(Resource.PACKFILE)?.keys() ?? []);
const chunkPack = (b: MemoryBacking, seed: string) =>
  withRepo(b, async (repo) => toHex(repo.index.get(BlobType.CHUNK, repo.mac.mac(seededBytes(seed, 6 * KiB)))!.pack));
const removeIn = (b: MemoryBacking, ...snaps: string[]) => removeSnapshots(new MemoryStore({ backing: b }), null, snaps);

describe("maintenance", () => {
  it("marks what no live snapshot needs, deletes it on the next run, and drops the deltas that only named it", async () => {
    const b = await created();
    const s1 = await commitIn(b, ["a1", "a2"]);
    const s2 = await commitIn(b, ["b1", "a2"]);
    const a1 = await chunkPack(b, "a1");
    await removeIn(b, s1);
    const deltas = b.objects.get(Resource.STATE)!.size;
    const first = await gc(b);
    expect(first.freed.packs).toBe(0);
    expect(first.marked.packs).toBeGreaterThanOrEqual(2); // a1's packfile, and the one of s1's tree and header
    expect(packNames(b).has(a1)).toBe(true);
    await expectIntact(b, { [s2]: ["b1", "a2"] });
    const second = await gc(b);
    expect(second.freed).toEqual(first.marked);
    expect(packNames(b).has(a1)).toBe(false);
    expect(second.deltasRemoved).toBeGreaterThanOrEqual(first.marked.packs);
    expect(b.objects.get(Resource.STATE)!.size).toBeLessThan(deltas + 3);
    await expectIntact(b, { [s2]: ["b1", "a2"] });
    // Nothing left to do.
    const third = await gc(b);
    expect([third.freed.packs, third.marked.packs, third.keptForLocks.packs]).toEqual([0, 0, 0]);
  });

  it("a backup that started before the mark and commits after it, referencing the marked packfile, cancels its deletion", async () => {
    const b = await created();
    const s1 = await commitIn(b, ["x"]);
    const keep = await commitIn(b, ["k"]);
    const x = await chunkPack(b, "x");
    await removeIn(b, s1);
    const backup = await open(b);
    await backup.acquire("shared", "backup (test)");
    try {
      const first = await gc(b);
      expect(first.marked.packs).toBeGreaterThanOrEqual(1);
      // The backup still runs, not committed yet: the mark waits for it.
      const waiting = await gc(b);
      expect(waiting.freed.packs).toBe(0);
      expect(waiting.keptForLocks.packs).toBe(first.marked.packs);
      // It read the state before the mark: it deduplicates against x's packfile, and commits.
      expect(backup.has(BlobType.CHUNK, backup.mac.mac(seededBytes("x", 6 * KiB)))).toBe(true);
      const s3 = await commit(backup, ["x", "y"]);
      const revived = await gc(b);
      expect(revived.revived.packs).toBe(1);
      expect(packNames(b).has(x)).toBe(true);
      await backup.close();
      await gc(b);
      await gc(b);
      expect(packNames(b).has(x)).toBe(true);
      await expectIntact(b, { [keep]: ["k"], [s3]: ["x", "y"] });
    } finally {
      await backup.close();
    }
  });

  it("a backup that starts after the mark does not deduplicate against it; the next run deletes the packfile", async () => {
    const b = await created();
    const s1 = await commitIn(b, ["x"]);
    const x = await chunkPack(b, "x");
    await removeIn(b, s1);
    await gc(b);
    const s2 = await withRepo(b, async (repo) => {
      await repo.acquire("shared", "backup (test)");
      expect(repo.has(BlobType.CHUNK, repo.mac.mac(seededBytes("x", 6 * KiB)))).toBe(false);
      // A marked packfile still serves reads.
      expect((await repo.getBlob(BlobType.CHUNK, repo.mac.mac(seededBytes("x", 6 * KiB)))).byteLength).toBe(6 * KiB);
      const before = repo.written.blobs;
      const id = await commit(repo, ["x"]);
      expect(repo.written.blobs - before).toBe(3); // x again, the tree, the header
      return id;
    });
    const second = await gc(b);
    expect(second.freed.packs).toBeGreaterThanOrEqual(1);
    expect(packNames(b).has(x)).toBe(false);
    await expectIntact(b, { [s2]: ["x"] });
  });

  it("repacks a packfile whose live share fell below the threshold, then frees the old copy", async () => {
    const b = await created(64 * KiB);
    const s1 = await commitIn(b, ["p1", "p2", "p3", "p4", "p5"]);
    const s2 = await commitIn(b, ["p3", "q1"]);
    const old = await chunkPack(b, "p3");
    await removeIn(b, s1);
    const dry = await gc(b, { dryRun: true });
    const objects = JSON.stringify([...b.objects].map(([r, m]) => [r, [...m.keys()].sort()]));
    const first = await gc(b);
    expect(JSON.stringify([...b.objects].map(([r, m]) => [r, [...m.keys()].sort()]))).not.toBe(objects);
    expect({ ...dry, dryRun: false }).toMatchObject({ ...first, repacked: { ...first.repacked, blobs: 0, blobBytes: 0 } });
    expect(first.repacked.packs).toBeGreaterThanOrEqual(1);
    expect(first.repacked.blobs).toBeGreaterThanOrEqual(1);
    await withRepo(b, async (repo) => expect(repo.index.locationsOfKey(blobKey(BlobType.CHUNK, repo.mac.mac(seededBytes("p3", 6 * KiB)))).map((l) => toHex(l.pack))).toContain(old));
    await expectIntact(b, { [s2]: ["p3", "q1"] });
    const second = await gc(b);
    expect(second.freed.packs).toBe(first.marked.packs);
    expect(packNames(b).has(old)).toBe(false);
    await expectIntact(b, { [s2]: ["p3", "q1"] });
  });

  it("a dry run writes nothing", async () => {
    const b = await created();
    const s1 = await commitIn(b, ["d1"]);
    await commitIn(b, ["d2"]);
    await removeIn(b, s1);
    const before = JSON.stringify([...b.objects].map(([r, m]) => [r, [...m.keys()].sort()]));
    const r = await gc(b, { dryRun: true });
    expect(r.marked.packs).toBeGreaterThanOrEqual(1);
    expect(JSON.stringify([...b.objects].map(([r, m]) => [r, [...m.keys()].sort()]))).toBe(before);
  });

  it("keeps a removed snapshot's data, and what is marked, for the grace period", async () => {
    const b = await created();
    const s1 = await commitIn(b, ["g1"]);
    const s2 = await commitIn(b, ["g2"]);
    const g1 = await chunkPack(b, "g1");
    await removeIn(b, s1);
    const hour = 3600_000;
    const inGrace = await gc(b, { graceMs: hour });
    // Only the small packfiles of trees and headers are merged: nothing of s1 is unused yet.
    expect(inGrace).toMatchObject({ removedInGrace: 1, snapshots: 2 });
    expect(inGrace.marked).toEqual({ packs: inGrace.repacked.packs, bytes: inGrace.repacked.bytes });
    // Past the grace period (by the run's clock), its data is marked; the mark then waits out the grace period too.
    const later = Date.now() + 2 * hour;
    const marked = await gc(b, { graceMs: hour, clock: () => later });
    expect(marked.removedInGrace).toBe(0);
    expect(marked.marked.packs).toBeGreaterThanOrEqual(1);
    const waits = await gc(b, { graceMs: hour, clock: () => later + 1000 });
    expect(waits.keptForGrace).toEqual(marked.marked);
    expect(packNames(b).has(g1)).toBe(true);
    const freed = await gc(b, { graceMs: hour, clock: () => later + 2 * hour });
    expect(freed.freed).toEqual(marked.marked);
    expect(packNames(b).has(g1)).toBe(false);
    await expectIntact(b, { [s2]: ["g2"] });
  });

  it("undelete refuses a snapshot whose data is marked; one whose lock was there before the mark keeps its data", async () => {
    const b = await created();
    const s1 = await commitIn(b, ["u1"]);
    const s2 = await commitIn(b, ["u2"]);
    const u1 = await chunkPack(b, "u1");
    await removeIn(b, s1);
    const undelete = (repo: Repository) => undeleteSnapshot(repo, s1.slice(0, 8), { command: "undelete" });
    // Its lock stored (and the state read) before the marks: a holdout of them.
    const early = await open(b);
    await early.acquire("shared", "undelete (test)");
    const marked = await gc(b);
    expect(marked.marked.packs).toBeGreaterThanOrEqual(1);
    // Marked now: a later undelete sees the marks and refuses, writing nothing.
    const refused = await withRepo(b, (repo) => undelete(repo).then(() => "undeleted", (e: unknown) => e));
    expect(isCofferError(refused, "RECLAIMED"), String(refused)).toBe(true);
    expect(String(refused)).toMatch(/marked for reclaiming/);
    // The holdout's undelete goes through on the state it read; its data is not freed.
    await undelete(early);
    const waiting = await gc(b);
    expect(waiting.freed.packs).toBe(0);
    expect(packNames(b).has(u1)).toBe(true);
    await early.close();
    // The snapshot is live again: u1's mark is revived (by that run or the next), its packfile kept
    // (what the next run frees are the old copies of the small packfiles the first run merged).
    const after = await gc(b);
    expect(waiting.revived.packs + after.revived.packs).toBeGreaterThanOrEqual(1);
    expect(packNames(b).has(u1)).toBe(true);
    await expectIntact(b, { [s1]: ["u1"], [s2]: ["u2"] });
  });
});
