/**
 * Tests of the state (src/repository/state.ts): encodeDelta/decodeDelta
 * round trips, rejection of malformed deltas with CorruptError, blob keys,
 * and the in-memory Index checked against a simple model over random
 * sequences of packs (get/has/size/snapshots/ofType/blobsOfPack).
 */
import { decode, encode } from "@msgpack/msgpack";
import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { BlobType, MAX_ENCODED_BLOB, MAX_RAW_BLOB } from "../../src/repository/codec.js";
import { type BlobEntry, encodeIndex } from "../../src/repository/packfile.js";
import { blobKey, decodeDelta, emptyDelta, encodeDelta, Index, keyMac, keyType, type PackRecord, STATE_VERSION, STATE_VERSION_KINDS } from "../../src/repository/state.js";
import { CofferError, CorruptError } from "../../src/util/errors.js";
import { toHex } from "../../src/util/hex.js";

const NAME = new Uint8Array(32).fill(0xab);
const TYPES = Object.values(BlobType);

function expectCorrupt(e: unknown): void {
  expect(e).toBeInstanceOf(CorruptError);
  expect((e as CofferError).code).toBe("CORRUPT");
}

function errorOf(f: () => unknown): unknown {
  try {
    f();
  } catch (e) {
    return e;
  }
  return undefined;
}

function plainPacks(ps: readonly PackRecord[]): unknown[] {
  return ps.map((p) => ({
    mac: toHex(p.mac),
    entries: p.entries.map((e) => ({ type: e.type, mac: toHex(e.mac), offset: e.offset, length: e.length, rawLength: e.rawLength })),
  }));
}

const arbMac = fc.uint8Array({ minLength: 32, maxLength: 32 });
const arbEntry: fc.Arbitrary<BlobEntry> = fc.record({
  type: fc.constantFrom(...TYPES),
  mac: arbMac,
  offset: fc.oneof(fc.nat(), fc.maxSafeNat()),
  length: fc.nat({ max: MAX_ENCODED_BLOB }),
  rawLength: fc.nat({ max: MAX_RAW_BLOB }),
});
const arbPack: fc.Arbitrary<PackRecord> = fc.record({ mac: arbMac, entries: fc.array(arbEntry, { maxLength: 10 }) });

describe("encodeDelta / decodeDelta", () => {
  it("round trip (property)", () => {
    fc.assert(
      fc.property(fc.array(arbPack, { maxLength: 6 }), (packs) => {
        expect(plainPacks(decodeDelta(encodeDelta({ packs }), NAME).packs)).toEqual(plainPacks(packs));
      }),
      { numRuns: 200 },
    );
  });

  it("the body is msgpack {v: 1, packs: [[packName, rawIndex]]} as docs/FORMAT.md says", () => {
    const entries: BlobEntry[] = [{ type: BlobType.TREE, mac: new Uint8Array(32).fill(1), offset: 0, length: 50, rawLength: 40 }];
    const pack = new Uint8Array(32).fill(2);
    const hand = encode({ v: 1, packs: [[pack, encodeIndex(entries)]] });
    expect(toHex(encodeDelta({ packs: [{ mac: pack, entries }] }))).toBe(toHex(hand));
    expect(STATE_VERSION).toBe(1);
  });

  it("verified records make a version-3 delta, {v: 3, packs, damaged, dropped, removed, verified: [[packName, time]]}; other records stay version 2", () => {
    const pack = new Uint8Array(32).fill(3);
    const v3 = encodeDelta({ verified: [{ pack, timeMs: 1234 }] });
    expect(decode(v3)).toEqual({ v: STATE_VERSION_KINDS, packs: [], damaged: [], dropped: [], removed: [], verified: [[pack, 1234]] });
    expect(decodeDelta(v3, NAME).verified).toEqual([{ pack, timeMs: 1234 }]);
    const v2 = encodeDelta({ removed: [{ snapshot: pack, why: "rm", timeMs: 1 }] });
    expect((decode(v2) as { v: number }).v).toBe(2);
    expect(decodeDelta(v2, NAME).verified).toEqual([]);
    // A version-3 delta without some record array has none of that kind; a version-2 one carries no verified records.
    expect(decodeDelta(encode({ v: 3, packs: [] }), NAME)).toMatchObject({ damaged: [], dropped: [], removed: [], verified: [] });
    expect(decodeDelta(encode({ v: 2, packs: [], verified: [[pack, 1]] }), NAME).verified).toEqual([]);
  });

  it("undeleted records make a version-3 delta: [snapshotID, removedUpTo, why, time]", () => {
    const snap = new Uint8Array(32).fill(6);
    const raw = encodeDelta({ undeleted: [{ snapshot: snap, removedUpTo: 10, why: "undelete", timeMs: 20 }] });
    expect(decode(raw)).toEqual({ v: STATE_VERSION_KINDS, packs: [], damaged: [], dropped: [], removed: [], undeleted: [[snap, 10, "undelete", 20]] });
    expect(decodeDelta(raw, NAME).undeleted).toEqual([{ snapshot: snap, removedUpTo: 10, why: "undelete", timeMs: 20 }]);
    expect(decodeDelta(encode({ v: 2, packs: [], undeleted: [[snap, 10, "x", 20]] }), NAME).undeleted).toEqual([]);
    for (const bad of [{}, [[snap, 10, "x"]], [[snap, "10", "x", 20]], [[snap, 10, 5, 20]], [[new Uint8Array(31), 10, "x", 20]], [[snap, 10, "x", 1.5]]]) {
      expect(() => decodeDelta(encode({ v: 3, packs: [], undeleted: bad }), NAME)).toThrow(CorruptError);
    }
  });

  it("an undelete cancels the removals up to its time, in any order; a later removal wins", () => {
    const snap = new Uint8Array(32).fill(9);
    const pack: PackRecord = { mac: new Uint8Array(32).fill(100), entries: [{ type: BlobType.SNAPSHOT, mac: snap, offset: 0, length: 10, rawLength: 10 }] };
    const deltas = [
      { ...emptyDelta(), packs: [pack] },
      { ...emptyDelta(), removed: [{ snapshot: snap, why: "rm", timeMs: 5 }] },
      { ...emptyDelta(), undeleted: [{ snapshot: snap, removedUpTo: 5, why: "undelete", timeMs: 6 }] },
    ];
    const later = { ...emptyDelta(), removed: [{ snapshot: snap, why: "rm again", timeMs: 7 }] };
    const orders = [[0, 1, 2], [2, 1, 0], [1, 2, 0], [2, 0, 1], [1, 0, 2], [0, 2, 1]];
    for (const order of orders) {
      const ix = new Index();
      for (const i of order) ix.apply(deltas[i]!);
      expect([...ix.snapshots.keys()], `order ${order.join()}`).toEqual([toHex(snap)]);
      expect(ix.removed.size).toBe(0);
      for (const withLater of [[later, ...order.map((i) => deltas[i]!)], [...order.map((i) => deltas[i]!), later]]) {
        const again = new Index();
        for (const d of withLater) again.apply(d);
        expect(again.snapshots.size).toBe(0);
        expect(again.removed.get(toHex(snap))?.why).toBe("rm again");
      }
    }
  });

  it("the index keeps each packfile's latest verification, and the bytes its blobs span", () => {
    const index = new Index();
    const pack = new Uint8Array(32).fill(4);
    index.apply({ ...emptyDelta(), verified: [{ pack, timeMs: 20 }, { pack, timeMs: 10 }] });
    index.apply({ ...emptyDelta(), verified: [{ pack, timeMs: 15 }] });
    expect(index.verified.get(toHex(pack))).toBe(20);
    const mac = new Uint8Array(32).fill(5);
    index.addPack({ mac: pack, entries: [{ type: BlobType.CHUNK, mac, offset: 100, length: 50, rawLength: 50 }, { type: BlobType.CHUNK, mac: pack, offset: 0, length: 100, rawLength: 100 }] });
    expect(index.packBytes.get(toHex(pack))).toBe(150);
  });

  it("garbage collection's records are version 3: {unused: [[pack, markTime]], revived: [[pack, markTime, time]], holdouts: [[markTime, [lock], time]], deleted: [[pack, time]]}", () => {
    const pack = new Uint8Array(32).fill(6), lock = new Uint8Array(32).fill(7);
    const d = { unused: [{ pack, markTimeMs: 5 }], revived: [{ pack, markTimeMs: 5, timeMs: 6 }], holdouts: [{ markTimeMs: 5, locks: [lock], timeMs: 5 }], deleted: [{ pack, timeMs: 9 }] };
    const raw = encodeDelta(d);
    expect(decode(raw)).toEqual({ v: STATE_VERSION_KINDS, packs: [], damaged: [], dropped: [], removed: [], unused: [[pack, 5]], revived: [[pack, 5, 6]], holdouts: [[5, [lock], 5]], deleted: [[pack, 9]] });
    expect(decodeDelta(raw, NAME)).toEqual({ ...emptyDelta(), ...d });
    expectCorrupt(errorOf(() => decodeDelta(encode({ v: 3, packs: [], holdouts: [[5, [new Uint8Array(3)], 5]] }), NAME)));
    expectCorrupt(errorOf(() => decodeDelta(encode({ v: 3, packs: [], unused: [[pack]] }), NAME)));
  });

  it("a mark stops deduplication on a packfile but not reads; a revival undoes it; a later mark makes it again", () => {
    const index = new Index();
    const p1 = new Uint8Array(32).fill(1), p2 = new Uint8Array(32).fill(2), a = new Uint8Array(32).fill(10), b = new Uint8Array(32).fill(11);
    const entry = (mac: Uint8Array) => ({ type: BlobType.CHUNK, mac, offset: 0, length: 10, rawLength: 10 });
    index.addPack({ mac: p1, entries: [entry(a), entry(b)] });
    index.addPack({ mac: p2, entries: [entry(b)] });
    index.apply({ ...emptyDelta(), unused: [{ pack: p1, markTimeMs: 5 }] });
    expect(index.markOf(toHex(p1))).toBe(5);
    expect(index.offersKey(blobKey(BlobType.CHUNK, a))).toBe(false);
    expect(index.offersKey(blobKey(BlobType.CHUNK, b))).toBe(true); // its copy in p2
    expect(index.has(BlobType.CHUNK, a)).toBe(true);
    index.apply({ ...emptyDelta(), revived: [{ pack: p1, markTimeMs: 5, timeMs: 6 }] });
    expect(index.markOf(toHex(p1))).toBeUndefined();
    expect(index.offersKey(blobKey(BlobType.CHUNK, a))).toBe(true);
    index.apply({ ...emptyDelta(), unused: [{ pack: p1, markTimeMs: 7 }] });
    expect(index.markOf(toHex(p1))).toBe(7);
  });

  it("a deleted packfile leaves the index whichever delta comes first; its blobs fall back on their other copies", () => {
    const p1 = new Uint8Array(32).fill(1), p2 = new Uint8Array(32).fill(2), a = new Uint8Array(32).fill(10), b = new Uint8Array(32).fill(11), snap = new Uint8Array(32).fill(12);
    const packs = [
      { mac: p1, entries: [{ type: BlobType.CHUNK, mac: a, offset: 0, length: 10, rawLength: 10 }, { type: BlobType.CHUNK, mac: b, offset: 10, length: 10, rawLength: 10 }, { type: BlobType.SNAPSHOT, mac: snap, offset: 20, length: 10, rawLength: 10 }] },
      { mac: p2, entries: [{ type: BlobType.CHUNK, mac: b, offset: 0, length: 10, rawLength: 10 }] },
    ];
    const deleted = { ...emptyDelta(), deleted: [{ pack: p1, timeMs: 1 }] };
    for (const order of [[deleted, ...packs.map((p) => ({ ...emptyDelta(), packs: [p] }))], [...packs.map((p) => ({ ...emptyDelta(), packs: [p] })), deleted]]) {
      const index = new Index();
      for (const d of order) index.apply(d);
      expect(index.packs.has(toHex(p1))).toBe(false);
      expect(index.has(BlobType.CHUNK, a)).toBe(false);
      expect(toHex(index.get(BlobType.CHUNK, b)!.pack)).toBe(toHex(p2));
      expect(index.snapshots.size).toBe(0);
      expect(index.blobsOfPack(p1)).toEqual([]);
    }
  });

  it("malformed deltas are CorruptError", () => {
    const mac = new Uint8Array(32);
    const index = encodeIndex([{ type: BlobType.CHUNK, mac, offset: 0, length: 1, rawLength: 1 }]);
    const good = { v: 1, packs: [[mac, index]] };
    expect(decodeDelta(encode(good), NAME).packs).toHaveLength(1);
    const bad: unknown[] = [
      null,
      7,
      "state",
      [],
      [1, []],
      {},
      { packs: [] },
      { v: 4, packs: [] },
      { v: 3, packs: [], verified: {} },
      { v: 3, packs: [], verified: [[mac]] },
      { v: 3, packs: [], verified: [[mac, 1, 2]] },
      { v: 3, packs: [], verified: [[new Uint8Array(31), 1]] },
      { v: 3, packs: [], verified: [[mac, 1.5]] },
      { v: 3, packs: [], verified: [[mac, "1"]] },
      { v: 2, packs: [], damaged: {} },
      { v: 2, packs: [], damaged: [[mac, null, "why"]] },
      { v: 2, packs: [], damaged: [[mac, [[9, mac]], "why", 1]] },
      { v: 2, packs: [], damaged: [[mac, [[1, new Uint8Array(3)]], "why", 1]] },
      { v: 2, packs: [], damaged: [[mac, "all", "why", 1]] },
      { v: 2, packs: [], removed: [[mac, "why"]] },
      { v: 2, packs: [], removed: [[mac, 5, 1]] },
      { v: 2, packs: [], dropped: [[new Uint8Array(31), "why", 1]] },
      { v: 2, packs: [], dropped: [[mac, "why", 1.5]] },
      { v: "1", packs: [] },
      { v: 1 },
      { v: 1, packs: {} },
      { v: 1, packs: [null] },
      { v: 1, packs: [[mac]] },
      { v: 1, packs: [[mac, index, 0]] },
      { v: 1, packs: [[new Uint8Array(31), index]] },
      { v: 1, packs: [["mac", index]] },
      { v: 1, packs: [[mac, [[1, mac, 0, 1, 1]]]] }, // index as a list, not bytes
      { v: 1, packs: [[mac, encode({ not: "an index" })]] },
      { v: 1, packs: [[mac, encode([[9, mac, 0, 1, 1]])]] },
      { v: 1, packs: [[mac, new Uint8Array([0xc1])]] },
    ];
    for (const v of bad) expectCorrupt(errorOf(() => decodeDelta(encode(v), NAME)));
    expectCorrupt(errorOf(() => decodeDelta(new Uint8Array(0), NAME)));
    expectCorrupt(errorOf(() => decodeDelta(Buffer.concat([encode(good), Buffer.from([0xc0])]), NAME)));
  });

  it("random bytes never throw anything but CorruptError (property)", () => {
    fc.assert(
      fc.property(fc.uint8Array({ maxLength: 300 }), (raw) => {
        const e = errorOf(() => decodeDelta(raw, NAME));
        if (e !== undefined) expectCorrupt(e);
      }),
      { numRuns: 1000 },
    );
  });

  it("any msgpack value either decodes or is CorruptError (property)", () => {
    fc.assert(
      fc.property(fc.oneof(fc.anything(), fc.record({ v: fc.constantFrom(1, 2), packs: fc.array(fc.tuple(fc.uint8Array({ minLength: 31, maxLength: 33 }), fc.uint8Array({ maxLength: 40 }))) })), (v) => {
        const e = errorOf(() => decodeDelta(encode(v), NAME));
        if (e !== undefined) expectCorrupt(e);
      }),
      { numRuns: 500 },
    );
  });

  it("a flipped byte in an encoded delta decodes to something else or is CorruptError (property)", () => {
    fc.assert(
      fc.property(fc.array(arbPack, { minLength: 1, maxLength: 3 }), fc.nat(), fc.integer({ min: 1, max: 255 }), (packs, where, mask) => {
        const raw = new Uint8Array(encodeDelta({ packs }));
        raw[where % raw.byteLength]! ^= mask;
        let got: PackRecord[];
        try {
          got = decodeDelta(raw, NAME).packs;
        } catch (e) {
          expectCorrupt(e);
          return;
        }
        // The codec's MAC is what catches damage; decodeDelta only has to stay structurally sound.
        for (const p of got) expect(p.mac.byteLength).toBe(32);
      }),
      { numRuns: 300 },
    );
  });
});

describe("blob keys", () => {
  it("blobKey/keyType/keyMac round trip and separate types (property)", () => {
    fc.assert(
      fc.property(fc.constantFrom(...TYPES), fc.constantFrom(...TYPES), arbMac, arbMac, (t1, t2, m1, m2) => {
        const k = blobKey(t1, m1);
        expect(keyType(k)).toBe(t1);
        expect(toHex(keyMac(k))).toBe(toHex(m1));
        expect(blobKey(t2, m2) === k).toBe(t1 === t2 && toHex(m1) === toHex(m2));
      }),
      { numRuns: 300 },
    );
  });

  it("blobKey reads only the view of a subarray", () => {
    const big = new Uint8Array(100).map((_, i) => i);
    const view = big.subarray(10, 42);
    expect(toHex(keyMac(blobKey(BlobType.CHUNK, view)))).toBe(toHex(big.slice(10, 42)));
  });
});

describe("Index", () => {
  const mac = (b: number) => new Uint8Array(32).fill(b);
  const e = (type: BlobType, m: number, offset = 0, length = 10): BlobEntry => ({ type, mac: mac(m), offset, length, rawLength: length * 2 });

  it("addPack then get/has/size/snapshots/ofType", () => {
    const ix = new Index();
    expect(ix.size).toBe(0);
    expect(ix.get(BlobType.CHUNK, mac(1))).toBeUndefined();
    ix.addPack({ mac: mac(100), entries: [e(BlobType.CHUNK, 1, 0, 10), e(BlobType.TREE, 1, 10, 5), e(BlobType.SNAPSHOT, 2, 15, 7)] });
    expect(ix.size).toBe(3);
    expect(ix.has(BlobType.CHUNK, mac(1))).toBe(true);
    expect(ix.has(BlobType.TREE, mac(1))).toBe(true);
    expect(ix.has(BlobType.ERRORS, mac(1))).toBe(false); // same MAC, other type
    expect(ix.has(BlobType.CHUNK, mac(2))).toBe(false);
    const loc = ix.get(BlobType.TREE, new Uint8Array(mac(1)))!;
    expect({ pack: toHex(loc.pack), offset: loc.offset, length: loc.length, rawLength: loc.rawLength }).toEqual({ pack: toHex(mac(100)), offset: 10, length: 5, rawLength: 10 });
    expect([...ix.snapshots.keys()]).toEqual([toHex(mac(2))]);
    expect([...ix.ofType(BlobType.CHUNK)].map(([m]) => toHex(m))).toEqual([toHex(mac(1))]);
    expect([...ix.ofType(BlobType.LOCK)]).toEqual([]);
    expect([...ix.packs.keys()]).toEqual([toHex(mac(100))]);
  });

  it("blobsOfPack lists the blobs of each pack, by value of the pack MAC, and sees packs added later", () => {
    const ix = new Index();
    ix.addPack({ mac: mac(100), entries: [e(BlobType.CHUNK, 1), e(BlobType.CHUNK, 2, 10)] });
    const keys = (p: number) => ix.blobsOfPack(mac(p)).map(([k]) => toHex(keyMac(k))).sort();
    expect(keys(100)).toEqual([toHex(mac(1)), toHex(mac(2))]);
    expect(keys(101)).toEqual([]);
    ix.addPack({ mac: mac(101), entries: [e(BlobType.TREE, 3)] });
    expect(keys(101)).toEqual([toHex(mac(3))]);
    expect(keys(100)).toHaveLength(2);
  });

  it("adding the same pack twice (a fresh MAC array) keeps one pack and one copy of each blob", () => {
    const ix = new Index();
    const entries = [e(BlobType.CHUNK, 1), e(BlobType.SNAPSHOT, 2, 10)];
    ix.addPack({ mac: mac(100), entries });
    ix.blobsOfPack(mac(100));
    ix.addPack({ mac: mac(100), entries: entries.map((x) => ({ ...x, mac: new Uint8Array(x.mac) })) });
    expect(ix.size).toBe(2);
    expect(ix.packs.size).toBe(1);
    expect(ix.snapshots.size).toBe(1);
    expect(ix.blobsOfPack(mac(100))).toHaveLength(2);
  });

  it("matches a model over random sequences of packs (property)", () => {
    const arbSmallMac = fc.integer({ min: 0, max: 6 }).map((b) => new Uint8Array(32).fill(b));
    const arbE = fc.record({ type: fc.constantFrom(...TYPES), mac: arbSmallMac, offset: fc.nat(1000), length: fc.nat(1000), rawLength: fc.nat(1000) });
    const arbP = fc.record({ mac: fc.integer({ min: 200, max: 204 }).map((b) => new Uint8Array(32).fill(b)), entries: fc.array(arbE, { maxLength: 6 }) });
    fc.assert(
      fc.property(fc.array(arbP, { maxLength: 8 }), fc.array(fc.nat(8), { maxLength: 8 }), (packs, probeAt) => {
        const ix = new Index();
        // The first pack to hold a blob keeps it (a later entry of that same pack replaces it); other packs' copies are spares.
        const model = new Map<string, { pack: string; offset: number; length: number; rawLength: number }>();
        /** Every (pack, blob) pair: what blobsOfPack lists. */
        const copies = new Set<string>();
        const probe = new Set(probeAt);
        packs.forEach((p, i) => {
          ix.addPack(p);
          for (const x of p.entries) {
            const k = `${x.type}:${toHex(x.mac)}`;
            copies.add(`${toHex(p.mac)}/${k}`);
            const cur = model.get(k);
            if (!cur || cur.pack === toHex(p.mac)) model.set(k, { pack: toHex(p.mac), offset: x.offset, length: x.length, rawLength: x.rawLength });
          }
          if (probe.has(i)) ix.blobsOfPack(p.mac); // builds the reverse map mid-way
        });
        expect(ix.size).toBe(model.size);
        for (const [k, want] of model) {
          const [t, h] = k.split(":") as [string, string];
          const m = new Uint8Array(Buffer.from(h, "hex"));
          const loc = ix.get(Number(t) as BlobType, m)!;
          expect({ pack: toHex(loc.pack), offset: loc.offset, length: loc.length, rawLength: loc.rawLength }).toEqual(want);
          expect(ix.has(Number(t) as BlobType, m)).toBe(true);
        }
        const snaps = [...model.keys()].filter((k) => k.startsWith(`${BlobType.SNAPSHOT}:`)).map((k) => k.split(":")[1]);
        expect([...ix.snapshots.keys()].sort()).toEqual([...new Set(snaps)].sort());
        // every copy of a blob is listed under its own pack, once
        const listed = new Set<string>();
        for (const packHex of new Set(packs.map((p) => toHex(p.mac)))) {
          for (const [k, loc] of ix.blobsOfPack(new Uint8Array(Buffer.from(packHex, "hex")))) {
            expect(toHex(loc.pack)).toBe(packHex);
            listed.add(`${packHex}/${keyType(k)}:${toHex(keyMac(k))}`);
          }
        }
        expect([...listed].sort()).toEqual([...copies].sort());
        for (const t of TYPES) {
          const want = [...model.keys()].filter((k) => k.startsWith(`${t}:`)).length;
          expect([...ix.ofType(t)]).toHaveLength(want);
        }
      }),
      { numRuns: 300 },
    );
  });
});

describe("Index: damage, drops and removals", () => {
  const mac = (b: number) => new Uint8Array(32).fill(b);
  const e = (type: BlobType, m: number, offset = 0, length = 10): BlobEntry => ({ type, mac: mac(m), offset, length, rawLength: length });
  const packA = { mac: mac(100), entries: [e(BlobType.CHUNK, 1), e(BlobType.CHUNK, 2, 10), e(BlobType.SNAPSHOT, 9, 20)] };
  const packB = { mac: mac(101), entries: [e(BlobType.CHUNK, 1, 0, 7)] };
  const damageOf = (pack: Uint8Array, blobs: { type: BlobType; mac: Uint8Array }[] | null) => ({ pack, blobs, why: "flipped", timeMs: 1 });

  it("a damaged location is never used; a copy elsewhere takes over, whatever the order deltas come in", () => {
    const orders = [
      (ix: Index) => (ix.addPack(packA), ix.addPack(packB), ix.markDamaged(damageOf(packA.mac, [{ type: BlobType.CHUNK, mac: mac(1) }]))),
      (ix: Index) => (ix.markDamaged(damageOf(packA.mac, [{ type: BlobType.CHUNK, mac: mac(1) }])), ix.addPack(packB), ix.addPack(packA)),
      (ix: Index) => (ix.addPack(packB), ix.markDamaged(damageOf(packA.mac, [{ type: BlobType.CHUNK, mac: mac(1) }])), ix.addPack(packA)),
    ];
    for (const apply of orders) {
      const ix = new Index();
      apply(ix);
      expect(toHex(ix.get(BlobType.CHUNK, mac(1))!.pack)).toBe(toHex(mac(101)));
      expect(ix.get(BlobType.CHUNK, mac(1))!.length).toBe(7);
      expect(toHex(ix.get(BlobType.CHUNK, mac(2))!.pack)).toBe(toHex(mac(100)));
      expect(ix.lostReason(BlobType.CHUNK, mac(1))).toBeUndefined();
    }
  });

  it("a blob with no other copy becomes absent, with the reason; its snapshot stays listed; a later copy brings it back", () => {
    for (const first of ["damage", "pack"] as const) {
      const ix = new Index();
      const damage = damageOf(packA.mac, null);
      if (first === "damage") ix.markDamaged(damage);
      ix.addPack(packA);
      if (first === "pack") ix.markDamaged(damage);
      expect(ix.has(BlobType.CHUNK, mac(2))).toBe(false);
      expect(ix.lostReason(BlobType.CHUNK, mac(2))).toBe("flipped");
      expect(ix.has(BlobType.SNAPSHOT, mac(9))).toBe(false);
      expect([...ix.snapshots.keys()]).toEqual([toHex(mac(9))]);
      expect(ix.isDamaged(toHex(mac(100)))).toBe(true);
      expect(ix.givenUpIn(toHex(mac(100))).length).toBe(3);
      ix.addPack({ mac: mac(102), entries: [e(BlobType.CHUNK, 2, 40)] });
      expect(toHex(ix.get(BlobType.CHUNK, mac(2))!.pack)).toBe(toHex(mac(102)));
      expect(ix.lostReason(BlobType.CHUNK, mac(2))).toBeUndefined();
    }
  });

  it("a removed snapshot is hidden whether its removal comes before or after its header", () => {
    for (const first of ["removal", "pack"] as const) {
      const ix = new Index();
      const removal = { snapshot: mac(9), why: "rm", timeMs: 2 };
      if (first === "removal") ix.apply({ ...emptyDelta(), removed: [removal] });
      ix.addPack(packA);
      if (first === "pack") ix.addRemoval(removal);
      expect(ix.snapshots.size).toBe(0);
      expect(ix.removed.get(toHex(mac(9)))?.why).toBe("rm");
      expect(ix.has(BlobType.SNAPSHOT, mac(9))).toBe(true); // the blob stays until pruned
    }
  });

  it("records survive an encode/decode round trip, and a delta of packfiles only stays version 1", () => {
    const d = {
      packs: [packA],
      damaged: [damageOf(mac(100), [{ type: BlobType.TREE, mac: mac(3) }]), damageOf(mac(101), null)],
      dropped: [{ pack: mac(101), why: "missing", timeMs: 3 }],
      removed: [{ snapshot: mac(9), why: "rm", timeMs: 4 }],
    };
    const back = decodeDelta(encodeDelta(d), NAME);
    expect(back.damaged.map((r) => [toHex(r.pack), r.blobs?.map((b) => [b.type, toHex(b.mac)]) ?? null, r.why, r.timeMs])).toEqual([
      [toHex(mac(100)), [[BlobType.TREE, toHex(mac(3))]], "flipped", 1],
      [toHex(mac(101)), null, "flipped", 1],
    ]);
    expect(back.dropped.map((r) => [toHex(r.pack), r.why, r.timeMs])).toEqual([[toHex(mac(101)), "missing", 3]]);
    expect(back.removed.map((r) => [toHex(r.snapshot), r.why, r.timeMs])).toEqual([[toHex(mac(9)), "rm", 4]]);
    expect((decode(encodeDelta(d)) as { v: number }).v).toBe(2);
    expect((decode(encodeDelta({ packs: [packA] })) as { v: number }).v).toBe(1);
  });
});
