/**
 * Fuzzing packfiles (src/repository/packfile.ts): the footer and the pack
 * index. Three layers: the index's msgpack after authentication
 * (decodeIndex: what a forger with the key writes into an index blob, or a
 * state delta carries), a whole packfile under its authenticated index
 * (readPackIndex: a footer whose offsets, length and MAC are forged, over
 * an index blob sealed with the key), and a packfile checked against its
 * name (readPack). Every outcome is entries that fit before the index, or
 * a CorruptError; nothing allocates what a forged length claims.
 */
import fc from "fast-check";
import { encode } from "@msgpack/msgpack";
import { describe, expect, it } from "vitest";
import { BlobType, MAX_ENCODED_BLOB, MAX_RAW_BLOB } from "../../src/repository/codec.js";
import { Mac } from "../../src/repository/crypto.js";
import { type BlobEntry, decodeIndex, encodeIndex, FOOTER_SIZE, PACK_MAGIC, PACK_VERSION, readPack, readPackIndex } from "../../src/repository/packfile.js";
import {
  arbMsgpackValue,
  arbMutations,
  arbValueMutation,
  boundedAllocation,
  encodeValue,
  fuzzParams,
  HUGE_U32,
  HUGE_U64,
  MSGPACK_FORGERIES,
  mutateAll,
  mutateValue,
  outcome,
  valueOrFailure,
} from "../helpers/fuzz.js";
import { envelopeOf, fixedKeys, seal } from "../helpers/sealed.js";

const { keys, codec } = fixedKeys(11);
const mac = await Mac.create("blake3", keys.mac);
const TYPES = Object.values(BlobType);

/** Every entry is one the reader can use: a known type, a 32-byte MAC, lengths a blob can have. */
function expectUsable(entries: BlobEntry[]): void {
  for (const e of entries) {
    expect(TYPES).toContain(e.type);
    expect(e.mac).toBeInstanceOf(Uint8Array);
    expect(e.mac.byteLength).toBe(32);
    for (const n of [e.offset, e.length, e.rawLength]) expect(Number.isSafeInteger(n) && n >= 0).toBe(true);
    expect(e.length).toBeLessThanOrEqual(MAX_ENCODED_BLOB);
    expect(e.rawLength).toBeLessThanOrEqual(MAX_RAW_BLOB);
  }
}

const arbEntry: fc.Arbitrary<BlobEntry> = fc.record({
  type: fc.constantFrom(...TYPES),
  mac: fc.uint8Array({ minLength: 32, maxLength: 32 }),
  offset: fc.nat({ max: 1 << 20 }),
  length: fc.nat({ max: 1 << 16 }),
  rawLength: fc.nat({ max: 1 << 16 }),
});
const arbEntries = fc.array(arbEntry, { maxLength: 8 });
/** An index's msgpack as a forger may write it: valid, its value tree mutated, any value, or bytes. */
const arbIndexBytes = fc.oneof(
  arbEntries.map(encodeIndex),
  fc.tuple(arbEntries, fc.array(arbValueMutation, { minLength: 1, maxLength: 3 })).map(([es, ms]) =>
    encodeValue(ms.reduce(mutateValue, es.map((e) => [e.type, e.mac, e.offset, e.length, e.rawLength])) as unknown),
  ),
  arbMsgpackValue.map(encodeValue),
  fc.tuple(arbEntries, arbMutations).map(([es, ms]) => mutateAll(encodeIndex(es), ms)),
  fc.uint8Array({ maxLength: 200 }),
);

describe("the pack index after authentication (decodeIndex)", () => {
  it("gives usable entries or a CorruptError", async () => {
    await fc.assert(
      fc.asyncProperty(arbIndexBytes, async (raw) => {
        const entries = valueOrFailure(await boundedAllocation(() => decodeIndex(raw, "packfile fuzz")));
        if (entries) expectUsable(entries);
      }),
      fuzzParams({
        examples: [
          // Regression: an array header claiming 2^25-1 entries made msgpack allocate a 256 MiB array for 5 bytes.
          [Uint8Array.of(0xdd, 0x01, 0xff, 0xff, 0xff)],
          ...MSGPACK_FORGERIES.map((f) => [f] as [Uint8Array]),
          // Regression: lengths no blob can have were accepted (and read with a buffer of that size).
          [encode([[1, new Uint8Array(32), 0, 2 ** 40, 10]])],
          [encode([[1, new Uint8Array(32), 0, 10, 2 ** 31]])],
        ],
      }),
    );
  });
});

interface Pack {
  bytes: Uint8Array;
  indexOffset: number;
}

/** A packfile of `blobs` (sealed chunks) and an index blob holding `indexRaw`, with its footer. */
function packfile(blobs: Uint8Array[], indexRaw: Uint8Array, nonce: Uint8Array, footer?: { offset?: bigint; length?: number; mac?: Uint8Array; version?: number }): Pack {
  const indexMac = footer?.mac ?? mac.mac(indexRaw);
  const index = seal(keys, false, BlobType.PACK_INDEX, indexMac, envelopeOf(indexRaw, "zstd", nonce));
  const data = Buffer.concat(blobs);
  const f = Buffer.alloc(FOOTER_SIZE);
  f.write(PACK_MAGIC, 0, "ascii");
  f.writeUInt32LE(footer?.version ?? PACK_VERSION, 4);
  f.writeBigUInt64LE(footer?.offset ?? BigInt(data.byteLength), 8);
  f.writeUInt32LE(footer?.length ?? index.byteLength, 16);
  f.set(indexMac, 20);
  return { bytes: new Uint8Array(Buffer.concat([data, index, f])), indexOffset: data.byteLength };
}

const arbBlobs = fc.array(fc.uint8Array({ maxLength: 300 }), { maxLength: 4 }).map((raws) =>
  raws.map((raw) => seal(keys, false, BlobType.CHUNK, mac.mac(raw), envelopeOf(raw, "zstd"))),
);
const arbNonce = fc.uint8Array({ minLength: 28, maxLength: 28 });

/** A valid packfile: its blobs, and an index naming them. */
const arbValidPack = fc.tuple(arbBlobs, arbNonce).map(([blobs, nonce]) => {
  let at = 0;
  const entries = blobs.map((b): BlobEntry => {
    const e = { type: BlobType.CHUNK, mac: new Uint8Array(32).fill(at & 0xff), offset: at, length: b.byteLength, rawLength: b.byteLength };
    at += b.byteLength;
    return e;
  });
  return packfile(blobs, encodeIndex(entries), nonce);
});

describe("a packfile's footer and authenticated index (readPackIndex)", () => {
  it("a forged footer or index gives entries inside the packfile's data, or a CorruptError", async () => {
    const arbFooter = fc.record(
      {
        offset: fc.oneof(fc.constantFrom(...HUGE_U64), fc.bigInt({ min: 0n, max: 4096n })),
        length: fc.oneof(fc.constantFrom(...HUGE_U32), fc.nat({ max: 4096 })),
        version: fc.constantFrom(0, 1, 2, 0xffffffff),
        mac: fc.uint8Array({ minLength: 32, maxLength: 32 }),
      },
      { requiredKeys: [] },
    );
    await fc.assert(
      fc.asyncProperty(arbBlobs, arbIndexBytes, arbNonce, arbFooter, async (blobs, indexRaw, nonce, footer) => {
        const p = packfile(blobs, indexRaw, nonce, footer);
        const entries = valueOrFailure(await boundedAllocation(() => readPackIndex(p.bytes, "packfile fuzz", codec)));
        if (!entries) return;
        expectUsable(entries);
        for (const e of entries) expect(e.offset + e.length).toBeLessThanOrEqual(p.indexOffset);
      }),
      fuzzParams({
        examples: [
          [[], encodeIndex([]), new Uint8Array(28), { offset: 2n ** 63n }],
          [[], encodeIndex([]), new Uint8Array(28), { length: 0x80000000 }],
          [[], Uint8Array.of(0xdd, 0x01, 0xff, 0xff, 0xff), new Uint8Array(28), {}],
        ],
      }),
    );
  });

  it("a mutated packfile fails its name, and its index fails or stays inside the data", async () => {
    await fc.assert(
      fc.asyncProperty(arbValidPack, arbMutations, async (p, ms) => {
        const name = mac.mac(p.bytes);
        const bad = mutateAll(p.bytes, ms);
        const named = await boundedAllocation(() => readPack(bad, name, codec, mac));
        if (named.ok) expect(Buffer.compare(bad, p.bytes)).toBe(0);
        else valueOrFailure(named);
        const entries = valueOrFailure(await boundedAllocation(() => readPackIndex(bad, "packfile fuzz", codec)));
        if (entries) expectUsable(entries);
      }),
      fuzzParams(),
    );
  });

  it("random bytes are never a packfile", async () => {
    await fc.assert(
      fc.asyncProperty(fc.uint8Array({ maxLength: 300 }), async (bytes) => {
        const o = await outcome(() => readPackIndex(bytes, "packfile fuzz", codec));
        expect(o.ok).toBe(false);
        valueOrFailure(o);
      }),
      fuzzParams({ weight: 0.5 }),
    );
  });
});
