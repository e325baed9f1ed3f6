/**
 * Fuzzing state deltas (src/repository/state.ts): decodeDelta on the raw
 * msgpack a forger with the key (or a bug) could seal, and
 * Repository.readDelta on mutated and forged STATE objects in a store (the
 * blob must authenticate and its content match its name). A delta either
 * decodes to records the index can apply, or fails with a CorruptError;
 * deltas with `verified`, `undeleted` or the garbage collection's records
 * (`unused`, `revived`, `holdouts`, `deleted`) are version 3, the others 1
 * or 2.
 */
import { decode } from "@msgpack/msgpack";
import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { Resource } from "../../src/connectors/flags.js";
import { BlobType } from "../../src/repository/codec.js";
import type { BlobEntry } from "../../src/repository/packfile.js";
import { type DamageRecord, decodeDelta, encodeDelta, Index, type StateDelta } from "../../src/repository/state.js";
import { equalBytes } from "../../src/util/hex.js";
import {
  arbMsgpackValue,
  arbMutations,
  arbValueMutation,
  boundedAllocation,
  encodeValue,
  fuzzParams,
  MSGPACK_FORGERIES,
  mutateAll,
  mutateValue,
  valueOrFailure,
} from "../helpers/fuzz.js";
import { envelopeOf, fixedRepository, seal } from "../helpers/sealed.js";

const TYPES = Object.values(BlobType);
const NAME = new Uint8Array(32).fill(0xab);
const arbMac = fc.uint8Array({ minLength: 32, maxLength: 32 });
const arbWhy = fc.string({ maxLength: 20 });
const arbTime = fc.oneof(fc.nat(), fc.maxSafeInteger());

const arbEntry: fc.Arbitrary<BlobEntry> = fc.record({
  type: fc.constantFrom(...TYPES),
  mac: arbMac,
  offset: fc.nat({ max: 1 << 24 }),
  length: fc.nat({ max: 1 << 20 }),
  rawLength: fc.nat({ max: 1 << 20 }),
});
const arbDamage: fc.Arbitrary<DamageRecord> = fc.record({
  pack: arbMac,
  blobs: fc.option(fc.array(fc.record({ type: fc.constantFrom(...TYPES), mac: arbMac }), { maxLength: 3 })),
  why: arbWhy,
  timeMs: arbTime,
});
const arbDelta: fc.Arbitrary<StateDelta> = fc.record({
  packs: fc.array(fc.record({ mac: arbMac, entries: fc.array(arbEntry, { maxLength: 4 }) }), { maxLength: 3 }),
  damaged: fc.array(arbDamage, { maxLength: 2 }),
  dropped: fc.array(fc.record({ pack: arbMac, why: arbWhy, timeMs: arbTime }), { maxLength: 2 }),
  removed: fc.array(fc.record({ snapshot: arbMac, why: arbWhy, timeMs: arbTime }), { maxLength: 2 }),
  verified: fc.array(fc.record({ pack: arbMac, timeMs: arbTime }), { maxLength: 3 }),
  undeleted: fc.array(fc.record({ snapshot: arbMac, removedUpTo: arbTime, why: arbWhy, timeMs: arbTime }), { maxLength: 2 }),
  unused: fc.array(fc.record({ pack: arbMac, markTimeMs: arbTime }), { maxLength: 2 }),
  revived: fc.array(fc.record({ pack: arbMac, markTimeMs: arbTime, timeMs: arbTime }), { maxLength: 2 }),
  holdouts: fc.array(fc.record({ markTimeMs: arbTime, locks: fc.array(arbMac, { maxLength: 2 }), timeMs: arbTime }), { maxLength: 2 }),
  deleted: fc.array(fc.record({ pack: arbMac, timeMs: arbTime }), { maxLength: 2 }),
});

/** A delta's msgpack as a forger may write it: valid, its value tree mutated, any value, mutated bytes, or random bytes. */
const arbDeltaBytes = fc.oneof(
  arbDelta.map(encodeDelta),
  fc.tuple(arbDelta, fc.array(arbValueMutation, { minLength: 1, maxLength: 3 })).map(([d, ms]) => encodeValue(ms.reduce(mutateValue, decode(encodeDelta(d))))),
  arbMsgpackValue.map(encodeValue),
  fc.tuple(arbDelta, arbMutations).map(([d, ms]) => mutateAll(encodeDelta(d), ms)),
  fc.uint8Array({ maxLength: 200 }),
);

/** Every record is what the index relies on, and the index takes them. */
function expectApplicable(d: StateDelta): void {
  const mac32 = (m: unknown) => m instanceof Uint8Array && m.byteLength === 32;
  const time = (t: unknown) => typeof t === "number" && Number.isSafeInteger(t);
  for (const p of d.packs) {
    expect(mac32(p.mac)).toBe(true);
    for (const e of p.entries) expect(TYPES.includes(e.type) && mac32(e.mac)).toBe(true);
  }
  for (const r of d.damaged) {
    expect(mac32(r.pack) && typeof r.why === "string" && time(r.timeMs)).toBe(true);
    if (r.blobs !== null) for (const b of r.blobs) expect(TYPES.includes(b.type) && mac32(b.mac)).toBe(true);
  }
  for (const r of d.dropped) expect(mac32(r.pack) && typeof r.why === "string" && time(r.timeMs)).toBe(true);
  for (const r of d.removed) expect(mac32(r.snapshot) && typeof r.why === "string" && time(r.timeMs)).toBe(true);
  for (const r of d.verified) expect(mac32(r.pack) && time(r.timeMs)).toBe(true);
  for (const r of d.undeleted) expect(mac32(r.snapshot) && time(r.removedUpTo) && typeof r.why === "string" && time(r.timeMs)).toBe(true);
  for (const r of d.unused) expect(mac32(r.pack) && time(r.markTimeMs)).toBe(true);
  for (const r of d.revived) expect(mac32(r.pack) && time(r.markTimeMs) && time(r.timeMs)).toBe(true);
  for (const r of d.holdouts) expect(time(r.markTimeMs) && r.locks.every(mac32) && time(r.timeMs)).toBe(true);
  for (const r of d.deleted) expect(mac32(r.pack) && time(r.timeMs)).toBe(true);
  const index = new Index();
  index.apply(d);
  for (const r of d.deleted) expect(index.packs.has(Buffer.from(r.pack).toString("hex"))).toBe(false);
}

describe("a state delta after authentication (decodeDelta)", () => {
  it("gives records the index can apply, or a CorruptError", async () => {
    await fc.assert(
      fc.asyncProperty(arbDeltaBytes, async (raw) => {
        const d = valueOrFailure(await boundedAllocation(() => decodeDelta(raw, NAME)));
        if (d) {
          expectApplicable(d);
          // Round trip: what decodes encodes to a delta that decodes the same.
          expect(decodeDelta(encodeDelta(d), NAME)).toEqual(d);
        }
      }),
      fuzzParams({
        examples: [
          // Regression: { v: 1, packs: <2^25-1 records claimed in 5 bytes> } made msgpack allocate a 256 MiB array.
          [Uint8Array.of(0x82, 0xa1, 0x76, 0x01, 0xa5, 0x70, 0x61, 0x63, 0x6b, 0x73, 0xdd, 0x01, 0xff, 0xff, 0xff)],
          ...MSGPACK_FORGERIES.map((f) => [f] as [Uint8Array]),
        ],
      }),
    );
  });
});

const { store, repo } = await fixedRepository();

describe("a state delta in a store (Repository.readDelta)", () => {
  const arbNonce = fc.uint8Array({ minLength: 28, maxLength: 28 });

  it("a mutated delta fails authentication", async () => {
    await fc.assert(
      fc.asyncProperty(arbDelta, arbNonce, arbMutations, async (d, nonce, ms) => {
        const raw = encodeDelta(d);
        const name = repo.mac.mac(raw);
        const blob = seal(repo.keys, false, BlobType.STATE, name, envelopeOf(raw, "zstd", nonce));
        const bad = mutateAll(blob, ms);
        await store.put(Resource.STATE, name, bad);
        const got = valueOrFailure(await boundedAllocation(() => repo.readDelta(name)));
        if (got) expect(equalBytes(bad, blob)).toBe(true);
      }),
      fuzzParams({ weight: 0.5 }),
    );
  });

  it("a forged delta sealed with the key, under its own name or another, gives applicable records or a CorruptError", async () => {
    await fc.assert(
      fc.asyncProperty(arbDeltaBytes, fc.boolean(), arbNonce, async (raw, ownName, nonce) => {
        const name = ownName ? repo.mac.mac(raw) : NAME;
        await store.put(Resource.STATE, name, seal(repo.keys, false, BlobType.STATE, name, envelopeOf(raw, "zstd", nonce)));
        const d = valueOrFailure(await boundedAllocation(() => repo.readDelta(name)));
        if (d) {
          expect(ownName).toBe(true);
          expectApplicable(d);
        }
      }),
      fuzzParams({ weight: 0.5 }),
    );
  });
});
