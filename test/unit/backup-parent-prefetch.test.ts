/**
 * A no-change backup loads the parent's listings ahead of its walk, several
 * at once (src/snapshot/backup/parent-prefetch.ts): counted by a wrapper of
 * the memory store, with every tree in a packfile of its own so that each
 * listing is a read of its own.
 */
import { describe, expect, it } from "vitest";
import { MemoryStore } from "../../src/connectors/memory/store.js";
import type { ImportRecord } from "../../src/connectors/records.js";
import { Repository } from "../../src/repository/repository.js";
import { backup } from "../../src/snapshot/backup/backup.js";
import { ParentIndex } from "../../src/snapshot/backup/parent.js";
import { CountingStore } from "../helpers/counting-store.js";
import { dirRecord, fileRecord, listImporter } from "../helpers/backup-parts.js";
import { prng } from "../helpers/prng.js";

const KDF = { memory: 8192, passes: 1, parallelism: 1 };
const DIRS = 12;
const FILES = 100; // more than the backup's consumers: a directory's records alone keep them all busy

/** /dNN/fMMM (and /dNN/sub/x, a level deeper), the same each time. */
function records(): ImportRecord[] {
  const out: ImportRecord[] = [dirRecord("/")];
  for (let d = 0; d < DIRS; d++) {
    const dir = `/d${String(d).padStart(2, "0")}`;
    out.push(dirRecord(dir));
    for (let f = 0; f < FILES; f++) out.push(fileRecord(`${dir}/f${String(f).padStart(3, "0")}`, prng(d * 1000 + f + 1, 64), { ino: BigInt(d * 1000 + f + 1) }));
    out.push(dirRecord(`${dir}/sub`), fileRecord(`${dir}/sub/x`, prng(d + 7, 64), { ino: BigInt(d + 100_000) }));
  }
  return out;
}

describe("parent listings loaded ahead", () => {
  it("a no-change backup has several of the parent's listings loading at once, and reads no file", async () => {
    const mem = new MemoryStore();
    // Tiny packfiles: each tree is stored in one of its own.
    await Repository.create(mem, { passphrase: null, packSize: 512, kdf: KDF });
    const run = async (store: MemoryStore | CountingStore, recs: ImportRecord[]) => {
      const repo = await Repository.open(store, { passphrase: async () => null });
      try {
        return await backup(repo, { importer: listImporter(recs), hostname: "h", username: "u", os: "linux", arch: "x64", workers: 0 });
      } finally {
        await repo.close();
      }
    };
    await run(mem, records());
    const counting = new CountingStore(mem);
    const again = records();
    const r = await run(counting, again);
    expect(r.header.root.tree).toBeDefined();
    expect(again.filter((x) => (x as { opened?: number }).opened).length).toBe(0);
    // Every directory's listing was read (small ones share reads), several at once.
    expect(counting.reads.length).toBeGreaterThan(DIRS);
    expect(counting.reads.length).toBeLessThanOrEqual(1 + 2 * DIRS); // none read twice
    expect(counting.maxInFlight).toBeGreaterThan(1);
    expect(counting.maxInFlight).toBeLessThanOrEqual(8 + 1);
  });
});

describe("ListingPrefetch bounds", () => {
  it("loads at most a bounded number of listings ahead of a walk that stops", async () => {
    const mem = new MemoryStore();
    await Repository.create(mem, { passphrase: null, packSize: 512, kdf: KDF });
    const recs: ImportRecord[] = [dirRecord("/")];
    for (let d = 0; d < 200; d++) recs.push(dirRecord(`/d${String(d).padStart(3, "0")}`), fileRecord(`/d${String(d).padStart(3, "0")}/f`, prng(d + 1, 32), { ino: BigInt(d + 1) }));
    const writer = await Repository.open(mem, { passphrase: async () => null });
    const header = (await backup(writer, { importer: listImporter(recs), hostname: "h", username: "u", os: "linux", arch: "x64", workers: 0 })).header;
    await writer.close();
    const counting = new CountingStore(mem);
    const repo = await Repository.open(counting, { passphrase: async () => null });
    const p = new ParentIndex(repo, header, new AbortController().signal, () => {});
    expect(await p.entry("/d000/f")).toMatchObject({ name: "f" });
    // Let every load it started finish, and those they start.
    for (let idle = 0; idle < 20; idle++) {
      await new Promise((r) => setImmediate(r));
      if (counting.inFlight > 0) idle = 0;
    }
    expect(counting.maxInFlight).toBeGreaterThan(1);
    expect(counting.maxInFlight).toBeLessThanOrEqual(8 + 1);
    // Ahead of the walk, 64 listings at most (and the root's and /d000's, and those in flight when the bound was met).
    expect(counting.reads.length).toBeGreaterThan(8);
    expect(counting.reads.length).toBeLessThanOrEqual(64 + 8 + 2);
    await repo.close();
  });
});
