/**
 * Tests of the Repository API (src/repository/repository.ts) on a
 * MemoryStore, and of locks (src/repository/locks.ts): create/open, blob
 * dedup, flush, reads in a freshly opened repository, the write order of
 * docs/FORMAT.md (packfile before the state delta naming it; the snapshot's
 * pack last) checked with the fault kit's recording store
 * (test/helpers/faults.ts), snapshot visibility,
 * damage detection, and shared/exclusive/stale/unreadable locks.
 */
import { spawnSync } from "node:child_process";
import { mkdtempSync, readdirSync, rmSync, statSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { hostname } from "node:os";
import { encode } from "@msgpack/msgpack";
import fc from "fast-check";
import { afterAll, describe, expect, it, vi } from "vitest";
import { Resource } from "../../src/connectors/flags.js";
import { MemoryStore } from "../../src/connectors/memory/store.js";
import type { Store } from "../../src/connectors/store.js";
import { FsStore } from "../../src/connectors/fs/store.js";
import { BlobType } from "../../src/repository/codec.js";
import { randomKey } from "../../src/repository/crypto.js";
import { acquireLock, isStale, readLocks, REFRESH_MS, STALE_MS } from "../../src/repository/locks.js";
import { PackWriter, readPack } from "../../src/repository/packfile.js";
import { Repository, type CreateOptions } from "../../src/repository/repository.js";
import { decodeDelta } from "../../src/repository/state.js";
import { CofferError } from "../../src/util/errors.js";
import { toHex } from "../../src/util/hex.js";
import { lend } from "../../src/util/ring.js";
import { delayed, type DelayedStore, failing, type FailingStore, gate, recording, type RecordingStore } from "../helpers/faults.js";
import { prng } from "../helpers/prng.js";

const KDF = { memory: 8192, passes: 1, parallelism: 1 };
const PACK = 64 * 1024;
const PASS = "hunter2";


async function rejectionOf(p: Promise<unknown>): Promise<unknown> {
  return p.then(
    () => undefined,
    (e: unknown) => e,
  );
}

/** Puts `n` distinct 20 KB chunks and flushes; the error that stopped it, if any. */
async function putAndFlush(repo: Repository, n: number): Promise<unknown> {
  try {
    for (let i = 0; i < n; i++) await repo.putBlob(BlobType.CHUNK, prng(100 + i, 20_000));
    await repo.flush();
  } catch (e) {
    return e;
  }
  return undefined;
}

function expectCode(e: unknown, code: string): void {
  expect(e).toBeInstanceOf(CofferError);
  expect((e as CofferError).code).toBe(code);
}

/**
 * The store of these tests: a MemoryStore under the fault kit
 * (test/helpers/faults.ts), outermost first: every call logged, puts held
 * while `hold.wait` says so, calls failed by `fail.rule`.
 */
type TestStore = RecordingStore & { mem: MemoryStore; hold: DelayedStore; fail: FailingStore };

function testStore(): TestStore {
  const mem = new MemoryStore();
  const fail = failing(mem, { times: 0 });
  const hold = delayed(fail, undefined, { op: "put" });
  return Object.assign(recording(hold), { mem, hold, fail });
}

type PutEntry = { op: "start" | "done"; resource: Resource; mac: string };

/** The puts logged, started and done, in order. */
function putLog(store: TestStore): PutEntry[] {
  return store.log.flatMap((l) => (l.op === "put" && l.phase !== "failed" ? [{ op: l.phase, resource: l.resource!, mac: l.mac! }] : []));
}

/**
 * `bytes` copied into a view that is lent (util/ring.ts): when given back,
 * `onBack` runs and the bytes are overwritten, as a ring reusing them would.
 */
function lentCopy(bytes: Uint8Array, onBack: () => void): Uint8Array {
  const view = new Uint8Array(new SharedArrayBuffer(bytes.byteLength));
  view.set(bytes);
  lend(view, () => {
    onBack();
    view.fill(0xee);
  });
  return view;
}

function createOpts(encrypted: boolean, over: Partial<CreateOptions> = {}): CreateOptions {
  return { passphrase: encrypted ? PASS : null, packSize: PACK, kdf: KDF, ...over };
}

async function fresh(encrypted = true, over: Partial<CreateOptions> = {}): Promise<{ store: TestStore; repo: Repository }> {
  const store = testStore();
  await Repository.create(store, createOpts(encrypted, over));
  return { store, repo: await open(store) };
}

function open(store: Store, passphrase: string | null = PASS): Promise<Repository> {
  return Repository.open(store, { passphrase: async () => passphrase });
}

/** A second, independent Repository on the same stored bytes. */
function reopen(store: TestStore): Promise<Repository> {
  return open(new MemoryStore({ backing: store.mem.backing }));
}

function objects(store: TestStore, r: Resource): Map<string, Uint8Array> {
  return store.mem.backing.objects.get(r) ?? new Map();
}

function puts(store: TestStore, r: Resource, op: "start" | "done" = "done"): string[] {
  return putLog(store).filter((l) => l.op === op && l.resource === r).map((l) => l.mac);
}

/** Checks FORMAT.md's rule on the log: each state delta's put starts after every packfile it names is stored. */
async function checkWriteOrder(store: TestStore, repo: Repository): Promise<void> {
  const log = putLog(store);
  for (const [i, l] of log.entries()) {
    if (l.op !== "start" || l.resource !== Resource.STATE) continue;
    const stored = objects(store, Resource.STATE).get(l.mac);
    if (!stored) continue; // failed put
    const raw = await repo.codec.decode(BlobType.STATE, new Uint8Array(Buffer.from(l.mac, "hex")), stored);
    for (const p of decodeDelta(raw, new Uint8Array(32)).packs) {
      const packDone = log.findIndex((x) => x.op === "done" && x.resource === Resource.PACKFILE && x.mac === toHex(p.mac));
      expect(packDone).toBeGreaterThanOrEqual(0);
      expect(packDone).toBeLessThan(i);
    }
  }
}

describe("Repository.create / open", () => {
  it("opens with the right passphrase; wrong or missing passphrase fails with its code", async () => {
    const { store, repo } = await fresh(true);
    expect(repo.config.packSize).toBe(PACK);
    expect(repo.config.encryption).not.toBeNull();
    expectCode(await rejectionOf(open(store, "wrong")), "WRONG_PASSPHRASE");
    expectCode(await rejectionOf(open(store, null)), "NO_PASSPHRASE");
  });

  it("a plaintext repository opens without asking for a passphrase", async () => {
    const store = new MemoryStore();
    await Repository.create(store, createOpts(false));
    let asked = 0;
    const repo = await Repository.open(store, {
      passphrase: async () => {
        asked++;
        return null;
      },
    });
    expect(asked).toBe(0);
    expect(repo.config.encryption).toBeNull();
  });

  it("create twice is REPOSITORY_EXISTS, open of nothing is NO_REPOSITORY, a read-only store refuses create", async () => {
    const store = new MemoryStore();
    await Repository.create(store, createOpts(false));
    expectCode(await rejectionOf(Repository.create(store, createOpts(false))), "REPOSITORY_EXISTS");
    expectCode(await rejectionOf(open(new MemoryStore())), "NO_REPOSITORY");
    expectCode(await rejectionOf(Repository.create(new MemoryStore({ readOnly: true }), createOpts(false))), "READ_ONLY");
  });
});

describe("putBlob / flush / getBlob", () => {
  it("dedups: the second put of the same data returns added=false and writes nothing", async () => {
    const { store, repo } = await fresh(true);
    const data = prng(1, 5000);
    const a = await repo.putBlob(BlobType.CHUNK, data);
    const b = await repo.putBlob(BlobType.CHUNK, new Uint8Array(data));
    expect(a.added).toBe(true);
    expect(b.added).toBe(false);
    expect(toHex(b.mac)).toBe(toHex(a.mac));
    expect(toHex(a.mac)).toBe(toHex(repo.mac.mac(data)));
    expect(repo.written.blobs).toBe(1);
    expect(repo.has(BlobType.CHUNK, a.mac)).toBe(true);
    expect(repo.has(BlobType.TREE, a.mac)).toBe(false); // same bytes as another type are another blob
    await repo.flush();
    expect(puts(store, Resource.PACKFILE)).toHaveLength(1);
    expect(puts(store, Resource.STATE)).toHaveLength(1);
    // the one packfile holds one blob
    const [[name, bytes]] = [...objects(store, Resource.PACKFILE)] as [[string, Uint8Array]];
    expect(await readPack(bytes, new Uint8Array(Buffer.from(name, "hex")), repo.codec, repo.mac)).toHaveLength(1);
    // after flush (now in the index): still deduplicated, and a flush writes nothing more
    const before = putLog(store).length;
    expect((await repo.putBlob(BlobType.CHUNK, data)).added).toBe(false);
    await repo.flush();
    expect(putLog(store).length).toBe(before);
    // and across a fresh open
    const r2 = await reopen(store);
    expect((await r2.putBlob(BlobType.CHUNK, data)).added).toBe(false);
    await r2.flush();
    expect(objects(store, Resource.PACKFILE).size).toBe(1);
  });

  it("a store without stage() gets copies of lent encoded blobs: given back at once, their reuse changes nothing stored", async () => {
    const { store, repo } = await fresh();
    const raws = Array.from({ length: 12 }, (_, i) => prng(500 + i, 30_000));
    const backs: number[] = [];
    for (const [i, raw] of raws.entries()) {
      const mac = repo.mac.mac(raw);
      const view = lentCopy(repo.codec.encodeSync(BlobType.CHUNK, mac, raw), () => backs.push(i));
      expect(await repo.addEncoded(BlobType.CHUNK, mac, raw.byteLength, view)).toBe(true);
      expect(backs).toEqual([...raws.keys()].slice(0, i + 1)); // copied into the packfile being filled
    }
    await repo.flush();
    const r2 = await reopen(store);
    for (const raw of raws) expect(Buffer.from(await r2.getBlob(BlobType.CHUNK, repo.mac.mac(raw))).equals(raw)).toBe(true);
  });

  it("concurrent puts of the same data store it once", async () => {
    const { store, repo } = await fresh(false);
    const data = prng(2, 3000);
    const results = await Promise.all([1, 2, 3, 4].map(() => repo.putBlob(BlobType.CHUNK, data)));
    expect(results.filter((r) => r.added)).toHaveLength(1);
    await repo.flush();
    const r2 = await reopen(store);
    expect(r2.index.size).toBe(1);
  });

  it("many concurrent puts of distinct data, across pack rotations, are all stored", async () => {
    const { store, repo } = await fresh(true);
    // Compressible and incompressible blobs finish encoding in varied order.
    const blobs = Array.from({ length: 60 }, (_, i) => (i % 2 ? prng(100 + i, 20_000 + i) : new Uint8Array(30_000 + i).fill(i)));
    const macs = (await Promise.all(blobs.map((b) => repo.putBlob(BlobType.CHUNK, b)))).map((r) => r.mac);
    await repo.flush();
    const r2 = await reopen(store);
    for (const [i, m] of macs.entries()) expect(Buffer.from(await r2.getBlob(BlobType.CHUNK, m)).equals(blobs[i]!)).toBe(true);
    expect(r2.index.packs.size).toBeGreaterThan(1);
  });

  it("nothing reaches the store before flush (or a full pack); flush writes the packfile, then its state", async () => {
    const { store, repo } = await fresh(true);
    await repo.putBlob(BlobType.CHUNK, prng(3, 1000));
    await repo.putBlob(BlobType.TREE, prng(4, 1000));
    expect(putLog(store)).toEqual([]);
    expect((await reopen(store)).index.size).toBe(0);
    await repo.flush();
    expect(putLog(store).map((l) => `${l.op}:${l.resource}`)).toEqual([
      `start:${Resource.PACKFILE}`,
      `done:${Resource.PACKFILE}`,
      `start:${Resource.STATE}`,
      `done:${Resource.STATE}`,
    ]);
    await checkWriteOrder(store, repo);
    expect(repo.written.packs).toBe(1);
  });

  it("a fresh open sees every blob and getBlob returns its data; state follows packfiles (property)", async () => {
    await fc.assert(
      fc.asyncProperty(
        fc.boolean(),
        fc.constantFrom("blake3" as const, "hmac-sha256" as const),
        fc.constantFrom("zstd" as const, "none" as const),
        fc.array(fc.record({ type: fc.constantFrom(BlobType.CHUNK, BlobType.TREE, BlobType.ERRORS), len: fc.integer({ min: 0, max: 20_000 }), seed: fc.integer(), zeros: fc.boolean() }), {
          maxLength: 25,
        }),
        async (encrypted, mac, compression, specs) => {
          const { store, repo } = await fresh(encrypted, { mac, compression });
          store.hold.wait = () => new Promise((r) => setTimeout(r, Math.random() * 3)); // shuffle completion order
          const want = new Map<string, { type: BlobType; mac: Uint8Array; data: Uint8Array }>();
          for (const s of specs) {
            const data = s.zeros ? new Uint8Array(s.len) : prng(s.seed, s.len);
            const r = await repo.putBlob(s.type, data);
            const k = `${s.type}:${toHex(r.mac)}`;
            expect(r.added).toBe(!want.has(k));
            want.set(k, { type: s.type, mac: r.mac, data });
          }
          await repo.flush();
          await checkWriteOrder(store, repo);
          expect(objects(store, Resource.STATE).size).toBe(objects(store, Resource.PACKFILE).size);
          // packs are sealed once they reach packSize, so none is far over it
          for (const bytes of objects(store, Resource.PACKFILE).values()) expect(bytes.byteLength).toBeLessThan(PACK + 20_000 + 4096);
          const r2 = await reopen(store);
          expect(r2.index.size).toBe(want.size);
          for (const w of want.values()) {
            expect(r2.has(w.type, w.mac)).toBe(true);
            expect(Buffer.from(await r2.getBlob(w.type, w.mac)).equals(w.data)).toBe(true);
          }
          // every stored packfile reads and matches its name
          for (const [name, bytes] of objects(store, Resource.PACKFILE)) {
            await readPack(bytes, new Uint8Array(Buffer.from(name, "hex")), r2.codec, r2.mac);
          }
        },
      ),
      { numRuns: 12 },
    );
  });

  it("getBlob of an unknown blob is NOT_FOUND; of a blob whose packfile is gone is NOT_FOUND", async () => {
    const { store, repo } = await fresh(false);
    expectCode(await rejectionOf(repo.getBlob(BlobType.CHUNK, randomKey())), "NOT_FOUND");
    const { mac } = await repo.putBlob(BlobType.CHUNK, prng(5, 100));
    await repo.flush();
    const r2 = await reopen(store);
    for (const name of [...objects(store, Resource.PACKFILE).keys()]) await store.mem.delete(Resource.PACKFILE, new Uint8Array(Buffer.from(name, "hex")));
    expectCode(await rejectionOf(r2.getBlob(BlobType.CHUNK, mac)), "NOT_FOUND");
  });

  it("a flipped byte inside a stored blob makes getBlob throw CORRUPT, and the process stops using that blob", async () => {
    for (const encrypted of [true, false]) {
      const { store, repo } = await fresh(encrypted);
      const blobs = [prng(6, 3000), prng(7, 10), new Uint8Array(4000)];
      const macs: Uint8Array[] = [];
      for (const b of blobs) macs.push((await repo.putBlob(BlobType.CHUNK, b)).mac);
      await repo.flush();
      for (const [i, mac] of macs.entries()) {
        const loc = repo.locate(BlobType.CHUNK, mac);
        const pack = objects(store, Resource.PACKFILE).get(toHex(loc.pack))!;
        for (const at of [loc.offset, loc.offset + 1, loc.offset + (loc.length >> 1), loc.offset + loc.length - 1]) {
          const r2 = await reopen(store);
          pack[at]! ^= 0x10;
          const e = await rejectionOf(r2.getBlob(BlobType.CHUNK, mac));
          expectCode(e, "CORRUPT");
          expect((e as Error).message).toContain(toHex(loc.pack));
          pack[at]! ^= 0x10;
          // Found damaged: absent for dedup (a backup stores it again) and noted for the state.
          expect(r2.has(BlobType.CHUNK, mac)).toBe(false);
          expect(r2.unrecordedDamage).toBe(1);
          expectCode(await rejectionOf(r2.getBlob(BlobType.CHUNK, mac)), "CORRUPT");
        }
        expect(Buffer.from(await (await reopen(store)).getBlob(BlobType.CHUNK, mac)).equals(blobs[i]!)).toBe(true);
      }
    }
  });

  it("trees stored together are fetched several to a read, and each is still authenticated on its own", async () => {
    const { store, repo } = await fresh(true, { packSize: 100 << 10 });
    const trees: { mac: Uint8Array; raw: Uint8Array }[] = [];
    for (let i = 0; i < 240; i++) {
      const raw = prng(1000 + i, 200 + ((i * 397) % 3000));
      trees.push({ mac: (await repo.putBlob(BlobType.TREE, raw)).mac, raw });
      if (i % 60 === 59) await repo.putBlob(BlobType.CHUNK, prng(i, 20_000)); // not a tree: runs stop there
    }
    await repo.flush();
    const reads = () => {
      const r = new MemoryStore({ backing: store.mem.backing });
      const get = vi.spyOn(r, "get");
      return { r, count: () => get.mock.calls.filter(([res]) => res === Resource.PACKFILE).length };
    };
    const a = reads();
    const r2 = await open(a.r);
    // Last to first (a walk meets a directory before the trees stored before it), then scattered.
    for (const i of [...trees.keys()].reverse()) expect(Buffer.from(await r2.getBlob(BlobType.TREE, trees[i]!.mac)).equals(trees[i]!.raw)).toBe(true);
    expect(a.count()).toBeGreaterThan(0);
    expect(a.count()).toBeLessThan(trees.length / 10);
    const scattered = [...trees.keys()].sort((x, y) => ((x * 7919) % 241) - ((y * 7919) % 241));
    for (const i of scattered) expect(Buffer.from(await r2.getBlob(BlobType.TREE, trees[i]!.mac)).equals(trees[i]!.raw)).toBe(true);

    // A flipped byte in one tree fails that tree only, however its neighbours were read.
    const loc = repo.locate(BlobType.TREE, trees[100]!.mac);
    const pack = objects(store, Resource.PACKFILE).get(toHex(loc.pack))!;
    pack[loc.offset + (loc.length >> 1)]! ^= 0x01;
    const r3 = await open(reads().r);
    expect(Buffer.from(await r3.getBlob(BlobType.TREE, trees[101]!.mac)).equals(trees[101]!.raw)).toBe(true);
    expectCode(await rejectionOf(r3.getBlob(BlobType.TREE, trees[100]!.mac)), "CORRUPT");
    expect(Buffer.from(await r3.getBlob(BlobType.TREE, trees[99]!.mac)).equals(trees[99]!.raw)).toBe(true);
    pack[loc.offset + (loc.length >> 1)]! ^= 0x01;

    // A failed read is not kept: once the store answers again, the trees read.
    const flaky = reads();
    const r4 = await open(flaky.r);
    vi.spyOn(flaky.r, "get").mockRejectedValueOnce(new CofferError("IO", "injected read failure"));
    expectCode(await rejectionOf(r4.getBlob(BlobType.TREE, trees[100]!.mac)), "IO");
    expect(Buffer.from(await r4.getBlob(BlobType.TREE, trees[100]!.mac)).equals(trees[100]!.raw)).toBe(true);
  });

  it("a damaged or misnamed state delta is set aside and its packfile indexed from its own index", async () => {
    const { store, repo } = await fresh(true);
    const data = prng(8, 100);
    const { mac } = await repo.putBlob(BlobType.CHUNK, data);
    await repo.flush();
    const states = objects(store, Resource.STATE);
    const [name, bytes] = [...states][0]!;
    bytes[bytes.byteLength >> 1]! ^= 1;
    const warnings: string[] = [];
    const r2 = await Repository.open(store, { passphrase: async () => PASS, onWarning: (m) => warnings.push(m) });
    expect(r2.stateDamage.map((d) => toHex(d.name))).toEqual([name]);
    expect(warnings.join("\n")).toContain(name);
    expect(Buffer.from(await r2.getBlob(BlobType.CHUNK, mac)).equals(data)).toBe(true);
    bytes[bytes.byteLength >> 1]! ^= 1;
    expect((await reopen(store)).stateDamage).toEqual([]);
    // the same (authentic) bytes under another name
    states.delete(name);
    states.set(toHex(randomKey()), bytes);
    const r3 = await reopen(store);
    expect(r3.stateDamage).toHaveLength(1);
    expect(r3.has(BlobType.CHUNK, mac)).toBe(true);
  });

  it("a failed packfile upload never leaves a state delta naming it, and flush rejects", async () => {
    const { store, repo } = await fresh(false);
    store.fail.rule = { op: "put", resource: Resource.PACKFILE, nth: 2 };
    expectCode(await putAndFlush(repo, 12), "REPOSITORY_WRITE");
    await checkWriteOrder(store, repo);
    // whatever a fresh open sees is fully readable
    const r2 = await reopen(store);
    for (const [mac] of r2.index.ofType(BlobType.CHUNK)) await r2.getBlob(BlobType.CHUNK, mac);
  });

  // Regression (fixed): src/repository/repository.ts putBlob (lines 157-166): the blob's key is added to `pending`
  // before `throwIfAborted(signal)`; when that throws, the key stays in `pending` although the blob was
  // never added to a pack. The next putBlob of the same data then returns added=false and the blob is
  // never written: has() says yes, a new open does not have it (getBlob -> NOT_FOUND).
  it("a putBlob interrupted by its signal does not make later puts of the same data skip it", async () => {
    const { store, repo } = await fresh(false);
    const data = prng(9, 1000);
    const ac = new AbortController();
    ac.abort();
    expectCode(await rejectionOf(repo.putBlob(BlobType.CHUNK, data, undefined, ac.signal)), "INTERRUPTED");
    const again = await repo.putBlob(BlobType.CHUNK, data);
    await repo.flush();
    const r2 = await reopen(store);
    expect(r2.has(BlobType.CHUNK, again.mac)).toBe(true);
    expect(again.added).toBe(true);
  });
});

describe("packfiles staged as they fill (a store with stage(): FsStore)", () => {
  /** An FsStore under the fault kit: every call logged, staged writes failed by `fail.rule`. */
  type StagedStore = RecordingStore & { fail: FailingStore };
  const stagedStore = (root: string): StagedStore => {
    const fail = failing(new FsStore(root), { times: 0 });
    return Object.assign(recording(fail), { fail });
  };
  /** Staged writes made (failed ones too). */
  const writes = (s: StagedStore) => s.entries({ op: "write" }).length;
  /** Bytes of the staged writes that completed. */
  const written = (s: StagedStore) => s.entries({ op: "write" }, "done").reduce((n, l) => n + l.bytes!, 0);
  /** The direct hint of each staged object, in order. */
  const hints = (s: StagedStore) => s.entries({ op: "stage" }).map((l) => l.direct);
  /** The staged write (counted over all packfiles from now on) that fails; 0: none. */
  const failWrite = (s: StagedStore, nth: number) => (s.fail.rule = nth > 0 ? { op: "write", nth } : { times: 0 });
  const roots: string[] = [];
  afterAll(() => {
    for (const r of roots) rmSync(r, { recursive: true, force: true });
  });
  async function fsRepo(packSize = PACK): Promise<{ root: string; store: StagedStore; repo: Repository }> {
    const root = mkdtempSync(join(tmpdir(), "coffer-staged-"));
    roots.push(root);
    const store = stagedStore(root);
    await Repository.create(store, createOpts(true, { packSize }));
    return { root, store, repo: await open(store) };
  }
  const tmpFiles = (root: string) => readdirSync(join(root, "tmp"));
  const root = (store: Store) => store.root;
  const packNames = (root: string) => readdirSync(join(root, "packfiles"), { recursive: true, withFileTypes: true }).filter((e) => e.isFile()).map((e) => e.name);

  it("a packfile that starts with a blob lent from a ring (a large file's) is staged with the direct hint, others without", async () => {
    const { store, repo } = await fsRepo(8 << 20);
    const plain = prng(61, 100_000);
    await repo.putBlob(BlobType.CHUNK, plain);
    await repo.flush();
    const raw = prng(62, 100_000);
    const m = repo.mac.mac(raw);
    let back = 0;
    expect(await repo.addEncoded(BlobType.CHUNK, m, raw.byteLength, lentCopy(repo.codec.encodeSync(BlobType.CHUNK, m, raw), () => back++))).toBe(true);
    await repo.putBlob(BlobType.CHUNK, prng(63, 50_000)); // in the same packfile
    await repo.flush();
    expect(hints(store)).toEqual([false, true]);
    expect(back).toBe(1);
    const r2 = await open(store);
    expect(Buffer.from(await r2.getBlob(BlobType.CHUNK, m)).equals(raw)).toBe(true);
    expect(Buffer.from(await r2.getBlob(BlobType.CHUNK, repo.mac.mac(plain))).equals(plain)).toBe(true);
  });

  it("bytes reach the store before the packfile is sealed, in writes of 256 KiB or more; each packfile is named by the MAC of its bytes and readable", async () => {
    const { root, store, repo } = await fsRepo(8 << 20);
    // 3 MiB of incompressible blobs: in a packfile of 8 MiB, not sealed yet
    const blobs = Array.from({ length: 75 }, (_, i) => prng(10 + i, 40_000 + i));
    const macs = [];
    for (const b of blobs) macs.push((await repo.putBlob(BlobType.CHUNK, b)).mac);
    // written in the background, not visible yet
    const tmpSize = () => statSync(join(root, "tmp", tmpFiles(root)[0]!)).size;
    const total = blobs.reduce((n, b) => n + b.byteLength, 0);
    // less than 256 KiB waits to be written
    while (written(store) <= total - (256 << 10)) await new Promise((r) => setTimeout(r, 10)); // until it happens (the test's timeout bounds it)
    expect(written(store)).toBeGreaterThan(total - (256 << 10));
    expect(tmpFiles(root)).toHaveLength(1);
    expect(tmpSize()).toBeGreaterThanOrEqual(written(store));
    expect(writes(store)).toBeLessThanOrEqual(12); // not a write per blob (75)
    expect(packNames(root)).toEqual([]);
    // 6 MiB more: past the packfile size, a second packfile
    const more = Array.from({ length: 150 }, (_, i) => prng(100 + i, 40_000 + i));
    for (const b of more) macs.push((await repo.putBlob(BlobType.CHUNK, b)).mac);
    blobs.push(...more);
    await repo.flush();
    expect(tmpFiles(root)).toEqual([]);
    const names = packNames(root);
    expect(names.length).toBeGreaterThan(1);
    for (const n of names) {
      const mac = new Uint8Array(Buffer.from(n, "hex"));
      // readPack checks the name against the keyed MAC of the bytes
      expect((await readPack(await store.get(Resource.PACKFILE, mac), mac, repo.codec, repo.mac)).length).toBeGreaterThan(0);
    }
    const r2 = await open(new FsStore(root));
    for (const [i, m] of macs.entries()) expect(Buffer.from(await r2.getBlob(BlobType.CHUNK, m)).equals(blobs[i]!)).toBe(true);
    await r2.close();
    await repo.close();
  });

  it("a failed staged write fails the writes after it, stores nothing naming that packfile, and leaves no temp file", async () => {
    const { root, store, repo } = await fsRepo();
    failWrite(store, 3);
    expectCode(await putAndFlush(repo, 30), "REPOSITORY_WRITE");
    await repo.close();
    expect(tmpFiles(root)).toEqual([]);
    // what a fresh open sees is whole and readable
    const r2 = await open(new FsStore(root));
    for (const [mac] of r2.index.ofType(BlobType.CHUNK)) await r2.getBlob(BlobType.CHUNK, mac);
    expect(packNames(root).sort()).toEqual([...r2.index.packs.keys()].sort());
    await r2.close();
  });

  it("lent encoded blobs are given back only once written (their bytes may then be reused), at once when not needed, and when a write fails", async () => {
    for (const failAt of [0, 2]) {
      const { store, repo } = await fsRepo(2 << 20);
      failWrite(store, failAt);
      const raws = Array.from({ length: 40 }, (_, i) => prng(300 + i, 90_000 + i));
      const backs: number[] = [];
      const macs: Uint8Array[] = [];
      let lent = 0;
      let err: unknown;
      try {
        for (const [i, raw] of raws.entries()) {
          const mac = repo.mac.mac(raw);
          macs.push(mac);
          const view = lentCopy(repo.codec.encodeSync(BlobType.CHUNK, mac, raw), () => backs.push(i));
          lent++;
          expect(await repo.addEncoded(BlobType.CHUNK, mac, raw.byteLength, view)).toBe(true);
          // the same blob again, lent: not needed, given back at once
          const again = lentCopy(repo.codec.encodeSync(BlobType.CHUNK, mac, raw), () => backs.push(-1 - i));
          expect(await repo.addEncoded(BlobType.CHUNK, mac, raw.byteLength, again)).toBe(false);
          expect(backs).toContain(-1 - i);
        }
        await repo.flush();
      } catch (e) {
        err = e;
      }
      await repo.close();
      const given = backs.filter((b) => b >= 0);
      expect(given.length).toBe(lent); // every one lent, once
      expect(new Set(given).size).toBe(lent);
      if (failAt) {
        expectCode(err, "REPOSITORY_WRITE");
        continue;
      }
      expect(err).toBeUndefined();
      // given back bytes were overwritten (lentCopy): what was stored is intact
      const r2 = await open(new FsStore(root(store)));
      for (const [i, m] of macs.entries()) expect(Buffer.from(await r2.getBlob(BlobType.CHUNK, m)).equals(raws[i]!)).toBe(true);
      await r2.close();
    }
  });

  it("close() drops a packfile still being filled (its temp file goes)", async () => {
    const { root, repo } = await fsRepo();
    await repo.putBlob(BlobType.CHUNK, prng(7, 20_000));
    await repo.close();
    expect(tmpFiles(root)).toEqual([]);
    expect(packNames(root)).toEqual([]);
  });
});

describe("reconcilePacks", () => {
  it("indexes a verified packfile that no state names, and leaves a damaged one alone", async () => {
    const { store, repo } = await fresh(true);
    // A packfile stored by a backup killed before its state delta.
    const data = prng(7, 50_000);
    const mac = repo.mac.mac(data);
    const w = new PackWriter();
    w.add(BlobType.CHUNK, mac, data.byteLength, await repo.codec.encode(BlobType.CHUNK, mac, data));
    const sealed = await w.seal(repo.codec, repo.mac);
    await store.put(Resource.PACKFILE, sealed.mac, new Uint8Array(Buffer.concat(sealed.parts)));
    // And a damaged one.
    const junk = prng(8, 1000);
    await store.put(Resource.PACKFILE, randomKey(32), junk);
    const r = await reopen(store);
    expect(r.has(BlobType.CHUNK, mac)).toBe(false);
    expect(await r.reconcilePacks()).toEqual({ adopted: 1, missing: [] });
    expect(r.has(BlobType.CHUNK, mac)).toBe(true);
    // The adoption is durable: a new open sees the blob, and a second pass adopts nothing.
    const r2 = await reopen(store);
    expect(Buffer.from(await r2.getBlob(BlobType.CHUNK, mac)).equals(data)).toBe(true);
    expect(await r2.reconcilePacks()).toEqual({ adopted: 0, missing: [] });
    expect((await r2.putBlob(BlobType.CHUNK, data)).added).toBe(false);
  });
});

describe("commitSnapshot", () => {
  it("makes the snapshot visible to a new open only once it resolves", async () => {
    const { store, repo } = await fresh(true);
    await repo.putBlob(BlobType.CHUNK, prng(10, 5000));
    await repo.putBlob(BlobType.TREE, prng(11, 500));
    const id = randomKey();
    const header = prng(12, 700);

    // hold back every state put until released
    const states = gate();
    store.hold.wait = states;
    store.hold.options = { op: "put", resource: Resource.STATE };
    let resolved = false;
    const p = repo.commitSnapshot(id, header).then(() => (resolved = true));
    await states.reached;
    for (let i = 0; i < 10; i++) await new Promise((r) => setImmediate(r)); // turns for a wrong commit to resolve in (no delay)
    expect(resolved).toBe(false);
    let r2 = await reopen(store);
    expect(r2.snapshotIds().map(toHex)).not.toContain(toHex(id));
    expect(r2.has(BlobType.SNAPSHOT, id)).toBe(false);
    states.open();
    await p;
    expect(resolved).toBe(true);
    r2 = await reopen(store);
    expect(r2.snapshotIds().map(toHex)).toEqual([toHex(id)]);
    expect(Buffer.from(await r2.getBlob(BlobType.SNAPSHOT, id)).equals(header)).toBe(true);
    await checkWriteOrder(store, repo);
  });

  it("the snapshot's packfile is written after every earlier packfile and state delta; its state is the last write", async () => {
    const { store, repo } = await fresh(false);
    store.hold.wait = () => new Promise((r) => setTimeout(r, Math.random() * 5));
    for (let i = 0; i < 10; i++) await repo.putBlob(BlobType.CHUNK, prng(200 + i, 25_000)); // several packs, some in flight
    const id = randomKey();
    await repo.commitSnapshot(id, prng(13, 100));
    const r2 = await reopen(store);
    const snapPack = toHex(r2.locate(BlobType.SNAPSHOT, id).pack);
    const log = putLog(store);
    const start = log.findIndex((l) => l.op === "start" && l.resource === Resource.PACKFILE && l.mac === snapPack);
    const otherStatesDone = log.flatMap((l, i) => (l.op === "done" && l.resource === Resource.STATE ? [i] : []));
    expect(otherStatesDone.length).toBeGreaterThan(1);
    for (const i of otherStatesDone.slice(0, -1)) expect(i).toBeLessThan(start);
    const last = log.at(-1)!;
    expect(last.op === "done" && last.resource === Resource.STATE).toBe(true);
    await checkWriteOrder(store, repo);
    for (const [mac] of r2.index.ofType(BlobType.CHUNK)) await r2.getBlob(BlobType.CHUNK, mac);
  });

  it("a snapshot is not stored when a packfile started alongside its commit fails", async () => {
    // The tree goes into a packfile that another caller fills and rotates
    // while the header is being encoded; that upload fails later.
    const { store, repo } = await fresh(true);
    const tree = prng(16, 100);
    const treeMac = (await repo.putBlob(BlobType.TREE, tree)).mac;
    // The first packfile upload is held until the test has named it as the one to fail (a gate, not a delay).
    let first = true;
    const named = gate();
    store.hold.wait = (c) => (c.resource === Resource.PACKFILE && first ? ((first = false), named.wait(c)) : undefined);
    store.fail.rule = { op: "put", resource: Resource.PACKFILE, when: (c) => c.mac === failingMac, times: Infinity };
    let failingMac = "";
    const id = randomKey();
    const commit = rejectionOf(repo.commitSnapshot(id, prng(17, 100)));
    // Synchronously, before the header's encoding resolves: a full pack with the tree in it.
    const filler = repo.addEncoded(BlobType.CHUNK, randomKey(), PACK, prng(18, PACK));
    await filler;
    failingMac = puts(store, Resource.PACKFILE, "start")[0] ?? "";
    named.open();
    expect(failingMac).not.toBe("");
    expectCode(await commit, "REPOSITORY_WRITE");
    const r2 = await reopen(store);
    expect(r2.snapshotIds()).toEqual([]);
    expect(r2.has(BlobType.TREE, treeMac)).toBe(false);
    await checkWriteOrder(store, repo);
  });

  it("a snapshot whose packfile upload fails is not visible", async () => {
    const { store, repo } = await fresh(true);
    await repo.putBlob(BlobType.TREE, prng(14, 100));
    await repo.flush();
    store.fail.rule = { op: "put", resource: Resource.PACKFILE, times: Infinity };
    const id = randomKey();
    expectCode(await rejectionOf(repo.commitSnapshot(id, prng(15, 100))), "REPOSITORY_WRITE");
    const r2 = await reopen(store);
    expect(r2.snapshotIds()).toEqual([]);
    expect(r2.index.size).toBe(1);
  });
});

// ---- locks ----

/** Writes a lock blob by hand, as another coffer process would. */
async function plantLock(store: Store, repo: Repository, o: Record<string, unknown>): Promise<Uint8Array> {
  const name = randomKey();
  const raw = encode({ v: 1, kind: "exclusive", host: "some-other-host", pid: 4242, time: Date.now(), command: "prune", ...o });
  await store.put(Resource.LOCK, name, await repo.codec.encode(BlobType.LOCK, name, raw));
  return name;
}

async function lockNames(store: Store): Promise<string[]> {
  const out: string[] = [];
  for await (const n of store.list(Resource.LOCK)) out.push(toHex(n));
  return out.sort();
}

describe("locks", () => {
  it("shared + shared is fine; shared then exclusive is LOCKED; release removes the lock", async () => {
    const { store, repo } = await fresh(false);
    const a = await acquireLock(store, repo.codec, "shared", "backup");
    const b = await acquireLock(store, repo.codec, "shared", "backup");
    expect(await lockNames(store)).toEqual([toHex(a.name), toHex(b.name)].sort());
    expectCode(await rejectionOf(acquireLock(store, repo.codec, "exclusive", "prune")), "LOCKED");
    // a refused exclusive lock leaves nothing behind
    expect(await lockNames(store)).toHaveLength(2);
    await a.release();
    await a.release(); // idempotent
    expect(await lockNames(store)).toEqual([toHex(b.name)]);
    expectCode(await rejectionOf(acquireLock(store, repo.codec, "exclusive", "prune")), "LOCKED");
    await b.release();
    expect(await lockNames(store)).toEqual([]);
    const x = await acquireLock(store, repo.codec, "exclusive", "prune");
    await x.release();
  });

  it("a lock that cannot be deleted is left as a stale marker, which the next maintenance or exclusive locker sweeps", async () => {
    for (const sweeper of ["maintenance", "exclusive"] as const) {
      const { store, repo } = await fresh(false);
      const warnings: string[] = [];
      const a = await acquireLock(store, repo.codec, "shared", "backup", (m) => warnings.push(m));
      const refused = vi.spyOn(store, "delete").mockRejectedValue(new CofferError("IO", "access denied: the credentials may not delete"));
      await a.release();
      refused.mockRestore();
      expect(warnings).toEqual([expect.stringContaining("left as a stale marker")]);
      const [left] = await readLocks(store, repo.codec);
      expect(left).toMatchObject({ info: { kind: "shared", timeMs: 0 } });
      expect(toHex(left!.name)).toBe(toHex(a.name));
      // Another shared locker ignores the marker but leaves it; a locker that deletes sweeps it.
      const b = await acquireLock(store, repo.codec, "shared", "backup");
      await b.release();
      expect(await lockNames(store)).toEqual([toHex(a.name)]);
      const x = await acquireLock(store, repo.codec, sweeper, sweeper);
      expect(await lockNames(store)).toEqual([toHex(x.name)]);
      await x.release();
    }
  });

  it("exclusive then shared is LOCKED; exclusive then exclusive is LOCKED", async () => {
    const { store, repo } = await fresh(true);
    const x = await acquireLock(store, repo.codec, "exclusive", "prune");
    expectCode(await rejectionOf(acquireLock(store, repo.codec, "shared", "backup")), "LOCKED");
    expectCode(await rejectionOf(acquireLock(store, repo.codec, "exclusive", "rm")), "LOCKED");
    expect(await lockNames(store)).toEqual([toHex(x.name)]);
    await x.release();
    const s = await acquireLock(store, repo.codec, "shared", "backup");
    await s.release();
  });

  it("the lock blob records kind, host, pid, time and command", async () => {
    const { store, repo } = await fresh(false);
    const t0 = Date.now();
    const l = await acquireLock(store, repo.codec, "shared", "backup /home");
    const locks = await readLocks(store, repo.codec);
    expect(locks).toHaveLength(1);
    expect(locks[0]!.info).toMatchObject({ kind: "shared", host: hostname(), pid: process.pid, command: "backup /home" });
    expect(locks[0]!.info!.timeMs).toBeGreaterThanOrEqual(t0);
    await l.release();
  });

  it("a stale lock (older than STALE_MS) is ignored, and removed by the next exclusive locker", async () => {
    const { store, repo } = await fresh(true);
    const stale = await plantLock(store, repo, { time: Date.now() - STALE_MS - 60_000 });
    expect(isStale({ kind: "exclusive", host: "some-other-host", pid: 4242, timeMs: Date.now() - STALE_MS - 60_000, command: "" })).toBe(true);
    const s = await acquireLock(store, repo.codec, "shared", "backup");
    expect(await lockNames(store)).toContain(toHex(stale));
    await s.release();
    const x = await acquireLock(store, repo.codec, "exclusive", "prune");
    expect(await lockNames(store)).toEqual([toHex(x.name)]);
    await x.release();
  });

  it("a fresh lock from another host is honoured", async () => {
    const { store, repo } = await fresh(false);
    await plantLock(store, repo, { kind: "exclusive", time: Date.now() - STALE_MS + 60_000 });
    expectCode(await rejectionOf(acquireLock(store, repo.codec, "shared", "backup")), "LOCKED");
    const { store: s2, repo: r2 } = await fresh(false);
    await plantLock(s2, r2, { kind: "shared" });
    const ok = await acquireLock(s2, r2.codec, "shared", "backup");
    await ok.release();
    expectCode(await rejectionOf(acquireLock(s2, r2.codec, "exclusive", "prune")), "LOCKED");
  });

  it("a lock held by a dead process on this host is stale", async () => {
    const { store, repo } = await fresh(false);
    const child = spawnSync(process.execPath, ["-e", ""]);
    expect(child.pid).toBeGreaterThan(0);
    await plantLock(store, repo, { host: hostname(), pid: child.pid });
    const x = await acquireLock(store, repo.codec, "exclusive", "prune");
    expect(await lockNames(store)).toEqual([toHex(x.name)]);
    await x.release();
  });

  it("an unreadable lock counts as exclusive", async () => {
    const { store, repo } = await fresh(true);
    await store.put(Resource.LOCK, randomKey(), prng(16, 80));
    expectCode(await rejectionOf(acquireLock(store, repo.codec, "shared", "backup")), "LOCKED");
    expectCode(await rejectionOf(acquireLock(store, repo.codec, "exclusive", "prune")), "LOCKED");
  });

  it("a refresh rewrites the lock with a newer time", async () => {
    const { store, repo } = await fresh(false);
    vi.useFakeTimers({ toFake: ["setInterval", "clearInterval", "Date"] });
    try {
      const l = await acquireLock(store, repo.codec, "shared", "backup");
      const t0 = (await readLocks(store, repo.codec))[0]!.info!.timeMs;
      vi.advanceTimersByTime(REFRESH_MS);
      await new Promise((r) => setImmediate(r));
      await vi.waitFor(async () => expect((await readLocks(store, repo.codec))[0]!.info!.timeMs).toBeGreaterThanOrEqual(t0 + REFRESH_MS));
      await l.release();
      expect(await lockNames(store)).toEqual([]);
    } finally {
      vi.useRealTimers();
    }
  });

  // Regression (fixed): src/repository/locks.ts Lock.startRefresh/release (lines 41-54): the refresh timer calls
  // writeLock() without tracking it, and release() neither waits for an in-flight refresh nor stops it
  // from landing. A release() that happens while a refresh is between codec.encode and store.put deletes
  // the lock, then the refresh's put re-creates it: a released lock stays in the store (blocking
  // exclusive lockers on other hosts until STALE_MS passes).
  it("release() during an in-flight refresh leaves no lock behind", async () => {
    const { store, repo } = await fresh(false);
    vi.useFakeTimers({ toFake: ["setInterval", "clearInterval"] });
    try {
      const l = await acquireLock(store, repo.codec, "shared", "backup");
      vi.advanceTimersByTime(REFRESH_MS); // the refresh starts encoding its blob...
      await l.release(); // ...and the holder releases meanwhile
      await new Promise((r) => setTimeout(r, 50));
      expect(await lockNames(store)).toEqual([]);
    } finally {
      vi.useRealTimers();
    }
  });

  it("Repository.acquire / releaseLock / close manage one lock", async () => {
    const { store, repo } = await fresh(false);
    await repo.acquire("shared", "backup");
    await repo.acquire("shared", "backup"); // already held: no second lock
    expect(await lockNames(store)).toHaveLength(1);
    const other = await reopen(store);
    expectCode(await rejectionOf(other.acquire("exclusive", "prune")), "LOCKED");
    await repo.releaseLock();
    expect(await lockNames(store)).toEqual([]);
    await other.acquire("exclusive", "prune");
    expectCode(await rejectionOf(repo.acquire("shared", "backup")), "LOCKED");
    await other.close();
    expect(await lockNames(store)).toEqual([]);
    await repo.acquire("shared", "backup");
    await repo.close();
    expect(await lockNames(store)).toEqual([]);
  });
});
