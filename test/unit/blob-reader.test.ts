/**
 * BlobReader (src/repository/blob-reader.ts) over a memory store: few merged
 * reads for many blobs, the bytes it holds within its budget (counted from
 * the reads asked of the store and the blobs taken, not from the reader's own
 * figures), the store's parallelism, takers that take one after the other,
 * and merged reads that fail or return garbage.
 */
import { beforeAll, describe, expect, it } from "vitest";
import { Resource } from "../../src/connectors/flags.js";
import { MemoryStore } from "../../src/connectors/memory/store.js";
import type { Store } from "../../src/connectors/store.js";
import { BlobReader } from "../../src/repository/blob-reader.js";
import { BlobType } from "../../src/repository/codec.js";
import { Repository } from "../../src/repository/repository.js";
import { CorruptError } from "../../src/util/errors.js";
import { CountingStore } from "../helpers/counting-store.js";
import { type Call, DecoratedStore, delayed, failing, faults, gate } from "../helpers/faults.js";
import { prng } from "../helpers/prng.js";

const KDF = { memory: 8192, passes: 1, parallelism: 1 };
const KiB = 1024;
let mem: MemoryStore;
/** The blobs stored, in the order they were put (so, by packfile and offset). */
const blobs: { mac: Uint8Array; raw: Uint8Array }[] = [];
const SIZE = 64 * KiB;
const COUNT = 128; // 8 MiB

beforeAll(async () => {
  mem = new MemoryStore();
  await Repository.create(mem, { passphrase: null, compression: "none", packSize: 2 << 20, kdf: KDF });
  const repo = await open(mem);
  for (let i = 0; i < COUNT; i++) {
    const raw = prng(i + 1, SIZE);
    blobs.push({ mac: (await repo.putBlob(BlobType.CHUNK, raw)).mac, raw });
  }
  await repo.flush();
  await repo.close();
});

function open(store: Store): Promise<Repository> {
  return Repository.open(store, { passphrase: async () => null });
}

const turn = () => new Promise((r) => setImmediate(r));

describe("BlobReader", () => {
  it("reads many blobs with few merged reads, each blob as it was stored", async () => {
    const store = new CountingStore(mem);
    const repo = await open(store);
    const reader = new BlobReader(repo);
    const wanted = reader.want(
      BlobType.CHUNK,
      blobs.map((b) => b.mac),
    );
    reader.end();
    for (const b of blobs) expect(Buffer.compare(await wanted.next(), b.raw)).toBe(0);
    wanted.release();
    // 8 MiB in 2 MiB packfiles: a read or two per packfile, not one per blob.
    expect(store.reads.length).toBeLessThanOrEqual(10);
    expect(store.reads.length).toBe(reader.stats.reads);
    await repo.close();
  });

  it("holds at most its budget while a slow taker takes more than that", async () => {
    const store = new CountingStore(mem);
    const repo = await open(store);
    const budget = 1 << 20;
    const reader = new BlobReader(repo, { budget });
    // Two takers, one after the other: reads near the end of the first's blobs hold the second's too.
    const first = blobs.slice(0, COUNT / 2);
    const second = blobs.slice(COUNT / 2);
    const a = reader.want(
      BlobType.CHUNK,
      first.map((b) => b.mac),
    );
    const b = reader.want(
      BlobType.CHUNK,
      second.map((x) => x.mac),
    );
    reader.end();
    let taken = 0;
    let peak = 0;
    for (const [w, list] of [[a, first], [b, second]] as const) {
      for (const x of list) {
        await turn();
        // Held: bytes the store was asked for, less the blobs taken (the blobs lie end to end, so nothing else is read).
        peak = Math.max(peak, store.bytesAsked - taken);
        expect(Buffer.compare(await w.next(), x.raw)).toBe(0);
        taken += repo.locate(BlobType.CHUNK, x.mac).length;
      }
      w.release();
    }
    expect(COUNT * SIZE).toBeGreaterThanOrEqual(8 * budget);
    expect(peak).toBeGreaterThan(budget / 2); // it does read ahead, as far as the budget goes
    expect(peak).toBeLessThanOrEqual(budget);
    expect(reader.stats.peakHeld).toBeLessThanOrEqual(budget);
    expect(store.bytesAsked).toBe(taken);
    expect(reader.heldBytes).toBe(0);
    await repo.close();
  });

  it("takers taking one after the other never wait on blobs held for later ones", async () => {
    const store = new CountingStore(mem);
    const repo = await open(store);
    const budget = 512 * KiB;
    const reader = new BlobReader(repo, { budget });
    // Their blobs alternate in the packfiles: merged reads of the first's blobs span the second's.
    const first = blobs.filter((_, i) => i % 2 === 0);
    const second = blobs.filter((_, i) => i % 2 === 1);
    const a = reader.want(
      BlobType.CHUNK,
      first.map((b) => b.mac),
    );
    const b = reader.want(
      BlobType.CHUNK,
      second.map((x) => x.mac),
    );
    reader.end();
    for (const [w, list] of [[a, first], [b, second]] as const) {
      for (const x of list) expect(Buffer.compare(await w.next(), x.raw)).toBe(0);
      w.release();
    }
    expect(reader.stats.peakHeld).toBeLessThanOrEqual(budget + SIZE);
    expect(store.reads.length).toBeLessThan(COUNT / 2);
    expect(reader.heldBytes).toBe(0);
    await repo.close();
  });

  it("keeps the store's connections of reads in flight, no more", async () => {
    const store = new CountingStore(mem, { connections: 3 });
    const repo = await open(store);
    const reader = new BlobReader(repo, { maxRead: SIZE });
    const wanted = reader.want(
      BlobType.CHUNK,
      blobs.slice(0, 24).map((b) => b.mac),
    );
    reader.end();
    for (const b of blobs.slice(0, 24)) expect(Buffer.compare(await wanted.next(), b.raw)).toBe(0);
    expect(store.reads.length).toBe(24);
    expect(store.maxInFlight).toBe(3);
    await repo.close();
  });

  it("shares one read between takers of the same blob", async () => {
    const store = new CountingStore(mem);
    const repo = await open(store);
    const reader = new BlobReader(repo);
    const one = blobs[5]!;
    const a = reader.want(BlobType.CHUNK, [one.mac, one.mac]);
    const b = reader.want(BlobType.CHUNK, [one.mac]);
    reader.end();
    for (const w of [a, a, b]) expect(Buffer.compare(await w.next(), one.raw)).toBe(0);
    expect(store.reads).toHaveLength(1);
    expect(reader.heldBytes).toBe(0);
    await repo.close();
  });

  it("a taker that gives up leaves nothing held and does not hold the others back", async () => {
    const store = new CountingStore(mem);
    const repo = await open(store);
    const reader = new BlobReader(repo, { budget: 256 * KiB });
    const dropped = reader.want(
      BlobType.CHUNK,
      blobs.slice(0, 16).map((b) => b.mac),
    );
    const kept = reader.want(
      BlobType.CHUNK,
      blobs.slice(16, 32).map((b) => b.mac),
    );
    reader.end();
    await dropped.next();
    dropped.release();
    for (const b of blobs.slice(16, 32)) expect(Buffer.compare(await kept.next(), b.raw)).toBe(0);
    kept.release();
    expect(reader.heldBytes).toBe(0);
    await repo.close();
  });

  it("an interrupt ends a taker waiting for a read to start, with INTERRUPTED", async () => {
    const g = gate();
    const repo = await open(delayed(mem, g, { op: "get", resource: Resource.PACKFILE }));
    const ac = new AbortController();
    const reader = new BlobReader(repo, { parallelism: 1, maxRead: SIZE, signal: ac.signal });
    const wanted = reader.want(BlobType.CHUNK, [blobs[0]!.mac, blobs[9]!.mac]);
    reader.end();
    const first = wanted.next();
    first.catch(() => {});
    await g.reached; // the one read allowed is held: the second blob waits for it
    const second = wanted.next();
    await turn();
    ac.abort();
    await expect(second).rejects.toMatchObject({ code: "INTERRUPTED" });
    g.open();
    await first.catch(() => {});
    await repo.close();
  });

  it("a merged read that fails is retried blob by blob: the blobs that read alone are given", async () => {
    // Reads longer than one blob fail; the same blobs read one at a time do not.
    const store = failing(mem, { op: "get", when: (c) => (c.range?.length ?? 0) > SIZE + 64, times: Infinity, error: faults.io });
    const repo = await open(store);
    const reader = new BlobReader(repo);
    const wanted = reader.want(
      BlobType.CHUNK,
      blobs.slice(0, 8).map((b) => b.mac),
    );
    reader.end();
    for (const b of blobs.slice(0, 8)) expect(Buffer.compare(await wanted.next(), b.raw)).toBe(0);
    expect(store.failed.length).toBeGreaterThan(0);
    await repo.close();
  });

  it("a merged read that returns garbage fails each blob in it with a CorruptError naming the blob and its packfile", async () => {
    const store = new Garbling(mem);
    const repo = await open(store);
    const reader = new BlobReader(repo);
    const some = blobs.slice(0, 6);
    const wanted = reader.want(
      BlobType.CHUNK,
      some.map((b) => b.mac),
    );
    reader.end();
    for (const b of some) {
      const loc = repo.locate(BlobType.CHUNK, b.mac);
      const err = await wanted.next().then(
        () => undefined,
        (e: unknown) => e,
      );
      expect(err).toBeInstanceOf(CorruptError);
      expect(err).toMatchObject({ code: "CORRUPT", data: { type: BlobType.CHUNK, mac: Buffer.from(b.mac).toString("hex"), pack: Buffer.from(loc.pack).toString("hex") } });
      expect((err as Error).message).toContain(Buffer.from(loc.pack).toString("hex"));
    }
    expect(store.garbled).toBeGreaterThan(0);
    await repo.close();
  });
});

/** Every read of more than one blob comes back with its bytes flipped. */
class Garbling extends DecoratedStore {
  garbled = 0;
  protected override async run<T>(c: Call, next: () => Promise<T>): Promise<T> {
    const r = await next();
    if (c.op === "get" && c.resource === Resource.PACKFILE && (c.range?.length ?? 0) > SIZE + 64) {
      this.garbled++;
      const b = r as unknown as Uint8Array;
      for (let i = 0; i < b.byteLength; i += 997) b[i]! ^= 0xff;
    }
    return r;
  }
}
