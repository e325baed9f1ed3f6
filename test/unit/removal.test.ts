/**
 * Removing snapshots and taking removals back (src/snapshot/removal.ts) on
 * a memory repository: one state delta per call, a shared lock, undelete
 * refused once a referenced blob is gone, a later removal winning over an
 * undelete, and the state read again by a new process agreeing.
 */
import { describe, expect, it } from "vitest";
import { Resource } from "../../src/connectors/flags.js";
import { MemoryStore } from "../../src/connectors/memory/store.js";
import { BlobType } from "../../src/repository/codec.js";
import { Repository } from "../../src/repository/repository.js";
import { encodeHeader, type SnapshotHeader } from "../../src/snapshot/header.js";
import { type Plan, planEntry } from "../../src/snapshot/plan.js";
import { missingBlobs, planRemovals, removeSnapshots, resolveRemoved, undeleteSnapshot } from "../../src/snapshot/removal.js";
import { encodeTree, type Entry } from "../../src/snapshot/tree.js";
import { isCofferError } from "../../src/util/errors.js";
import { fromHex, toHex } from "../../src/util/hex.js";

const KDF = { memory: 8192, passes: 1, parallelism: 1 };
const info = (kind: "dir" | "file") => ({ name: "", kind, size: 0, mode: 0o755, mtimeNs: 1n, dev: 1n, ino: 1n, uid: 0, gid: 0, nlink: 1 });
const summary = { files: 1, dirs: 1, symlinks: 0, others: 0, bytes: 3, errors: 0, readBytes: 0, newBlobs: 0, newBytes: 0 };
const id = (prefix: string) => fromHex(prefix.padEnd(64, "0"));

async function setup(): Promise<{ mem: MemoryStore; repo: Repository; headers: SnapshotHeader[] }> {
  const mem = new MemoryStore();
  await Repository.create(mem, { passphrase: null, kdf: KDF });
  const repo = await Repository.open(mem, { passphrase: async () => null });
  const chunk = (await repo.putBlob(BlobType.CHUNK, new TextEncoder().encode("abc"))).mac;
  const file: Entry = { name: "f", info: { ...info("file"), size: 3 }, chunks: [{ mac: chunk, length: 3 }] };
  const tree = (await repo.putBlob(BlobType.TREE, encodeTree([file]))).mac;
  const headers = ["aa", "bb", "cc"].map((p, i): SnapshotHeader => ({
    id: id(p),
    timeNs: BigInt(i + 1) * 1_000_000_000n,
    durationNs: 1n,
    hostname: "h",
    username: "u",
    os: "linux",
    arch: "x64",
    importer: { type: "fs", origin: "h", root: "/src" },
    tags: [],
    root: { name: "", info: info("dir"), tree },
    summary,
  }));
  for (const h of headers) await repo.commitSnapshot(h.id, encodeHeader(h));
  return { mem, repo, headers };
}

async function count(it: AsyncIterable<unknown>): Promise<number> {
  let n = 0;
  for await (const _ of it) n++;
  return n;
}

const reopen = (mem: MemoryStore) => Repository.open(mem, { passphrase: async () => null });
const listed = (repo: Repository) => repo.snapshotIds().map((i) => toHex(i).slice(0, 2)).sort();

describe("removeSnapshots", () => {
  it("removes in one state delta under a shared lock, and leaves removed ones alone", async () => {
    const { mem, repo } = await setup();
    const deltas = () => count(mem.list(Resource.STATE));
    const before = await deltas();
    const removed = await removeSnapshots(repo, [{ id: id("aa"), why: "rm: test" }, { id: id("bb"), why: "rm: test" }], { command: "rm" });
    expect(removed.map((r) => toHex(r).slice(0, 2))).toEqual(["aa", "bb"]);
    expect(await deltas()).toBe(before + 1);
    expect(await count(mem.list(Resource.LOCK))).toBe(1);
    expect(listed(repo)).toEqual(["cc"]);
    expect(await removeSnapshots(repo, [{ id: id("aa"), why: "again" }], { command: "rm" })).toEqual([]);
    expect(await deltas()).toBe(before + 1);
    const again = await reopen(mem);
    expect(listed(again)).toEqual(["cc"]);
    expect(again.index.removed.get(toHex(id("aa")))?.why).toBe("rm: test");
    await repo.close();
  });

  it("runs beside a backup's shared lock, and waits for no one but an exclusive holder (LOCKED)", async () => {
    const { mem, repo } = await setup();
    const backup = await reopen(mem);
    await backup.acquire("shared", "backup");
    expect(await removeSnapshots(repo, [{ id: id("aa"), why: "rm" }], { command: "rm" })).toHaveLength(1);
    expect(listed(await reopen(mem))).toEqual(["bb", "cc"]);
    await backup.close();
    await repo.close();
    const holder = await reopen(mem);
    await holder.acquire("exclusive", "repair index");
    const other = await reopen(mem);
    const e = await removeSnapshots(other, [{ id: id("bb"), why: "rm" }], { command: "rm" }).catch((x: unknown) => x);
    expect(isCofferError(e, "LOCKED")).toBe(true);
    const u = await undeleteSnapshot(other, "aa", { command: "undelete" }).catch((x: unknown) => x);
    expect(isCofferError(u, "LOCKED")).toBe(true);
    expect(listed(await reopen(mem))).toEqual(["bb", "cc"]);
    await holder.close();
    await other.close();
  });

  it("takes a plan's removals with the plan's command and reasons", async () => {
    const { headers } = await setup();
    const plan: Plan = { command: "prune", entries: [planEntry(headers[0]!, "remove", ["not kept by any rule"]), planEntry(headers[1]!, "keep", ["last 1"])] };
    const r = planRemovals(plan);
    expect(r.map((x) => [toHex(x.id).slice(0, 2), x.why])).toEqual([["aa", "prune: not kept by any rule"]]);
  });
});

describe("undeleteSnapshot", () => {
  it("lists the snapshot again, in this process and the next; a later removal wins", async () => {
    const { mem, repo } = await setup();
    await removeSnapshots(repo, [{ id: id("bb"), why: "rm" }], { command: "rm", nowMs: 1000 });
    expect(() => resolveRemoved(repo, "cc")).toThrow(/is not removed/);
    expect(() => resolveRemoved(repo, "dd")).toThrow(/no removed snapshot/);
    const r = await undeleteSnapshot(repo, "bb", { command: "undelete", nowMs: 2000 });
    expect(r.removal.timeMs).toBe(1000);
    expect(listed(repo)).toEqual(["aa", "bb", "cc"]);
    expect(listed(await reopen(mem))).toEqual(["aa", "bb", "cc"]);
    await removeSnapshots(repo, [{ id: id("bb"), why: "rm again" }], { command: "rm", nowMs: 3000 });
    expect(listed(await reopen(mem))).toEqual(["aa", "cc"]);
    await repo.close();
  });

  it("is refused with RECLAIMED, naming the blobs gone, once a referenced blob has no location", async () => {
    const { repo } = await setup();
    await removeSnapshots(repo, [{ id: id("aa"), why: "rm" }], { command: "rm" });
    expect(await missingBlobs(repo, id("aa"))).toEqual([]);
    // As maintenance would: the packfile holding the chunk is dropped from the index.
    const [chunk, loc] = [...repo.index.ofType(BlobType.CHUNK)][0]!;
    repo.index.markDamaged({ pack: loc.pack, blobs: [{ type: BlobType.CHUNK, mac: chunk }], why: "reclaimed", timeMs: 1 });
    const gone = await missingBlobs(repo, id("aa"));
    expect(gone).toEqual([expect.stringMatching(/^chunk blob [0-9a-f]{16}$/)]);
    const e = await undeleteSnapshot(repo, "aa", { command: "undelete" }).catch((x: unknown) => x);
    expect(isCofferError(e, "RECLAIMED")).toBe(true);
    expect((e as Error).message).toContain(gone[0]);
    expect(listed(repo)).toEqual(["bb", "cc"]);
    await repo.close();
  });
});
