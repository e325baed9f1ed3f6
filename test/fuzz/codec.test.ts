/**
 * Fuzzing the blob codec (src/repository/codec.ts), the envelope every
 * stored blob travels in: mutated and random blobs must fail
 * authentication (CorruptError), and blobs authenticated under the key
 * with any header over any payload (what a forger with the key, or a bug,
 * writes) must decode to exactly their raw length or fail with a
 * CorruptError, never allocating what the header claims and the payload
 * cannot hold. decode() and decodeSync() take different paths (the libuv
 * pool, the kept zstd context): both are checked.
 */
import { zstdCompressSync, zstdDecompressSync } from "node:zlib";
import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { BlobType, MAX_RAW_BLOB } from "../../src/repository/codec.js";
import { equalBytes } from "../../src/util/hex.js";
import { arbMutations, boundedAllocation, expectFailure, fuzzParams, HUGE_U32, mutateAll, valueOrFailure } from "../helpers/fuzz.js";
import { envelopeOf, type Envelope, fixedKeys, header, seal } from "../helpers/sealed.js";

const plain = fixedKeys(7, { encrypted: false });
const encrypted = fixedKeys(7, { encrypted: true });
const codecOf = (enc: boolean) => (enc ? encrypted : plain);

const arbType = fc.constantFrom(...Object.values(BlobType));
const arbMac = fc.uint8Array({ minLength: 32, maxLength: 32 });
const arbNonce = fc.uint8Array({ minLength: 28, maxLength: 28 });
/** Raw content: random, or a short motif repeated (compressible), up to 4 KiB. */
const arbRaw = fc.oneof(
  fc.uint8Array({ maxLength: 600 }),
  fc.record({ motif: fc.uint8Array({ minLength: 1, maxLength: 8 }), n: fc.integer({ min: 0, max: 4096 }) }).map(({ motif, n }) => {
    const out = new Uint8Array(n);
    for (let i = 0; i < n; i++) out[i] = motif[i % motif.byteLength]!;
    return out;
  }),
);

/** Decodes with both paths; each must give the same bytes, or a CorruptError. */
async function decodeBoth(enc: boolean, type: number, mac: Uint8Array, blob: Uint8Array): Promise<Uint8Array | undefined> {
  const { codec } = codecOf(enc);
  const a = valueOrFailure(await boundedAllocation(() => codec.decode(type as BlobType, mac, blob)));
  const b = valueOrFailure(await boundedAllocation(() => codec.decodeSync(type as BlobType, mac, blob)));
  expect(a === undefined, "decode and decodeSync disagree on whether the blob is valid").toBe(b === undefined);
  if (a !== undefined) expect(equalBytes(a, b!)).toBe(true);
  return a;
}

describe("the authenticated envelope", () => {
  it("a blob sealed as docs/FORMAT.md says decodes to its content (so the mutations below start from valid blobs)", async () => {
    await fc.assert(
      fc.asyncProperty(fc.boolean(), fc.constantFrom("zstd" as const, "none" as const), arbType, arbMac, arbRaw, arbNonce, async (enc, compression, type, mac, raw, nonce) => {
        const blob = seal(codecOf(enc).keys, enc, type, mac, envelopeOf(raw, compression, nonce));
        const back = await decodeBoth(enc, type, mac, blob);
        expect(back && equalBytes(back, raw)).toBe(true);
      }),
      fuzzParams({ weight: 0.25 }),
    );
  });

  it("a mutated blob fails authentication", async () => {
    await fc.assert(
      fc.asyncProperty(fc.boolean(), fc.constantFrom("zstd" as const, "none" as const), arbType, arbMac, arbRaw, arbNonce, arbMutations, async (enc, compression, type, mac, raw, nonce, ms) => {
        const blob = seal(codecOf(enc).keys, enc, type, mac, envelopeOf(raw, compression, nonce));
        const bad = mutateAll(blob, ms);
        const back = await decodeBoth(enc, type, mac, bad);
        if (back !== undefined) {
          // Only a mutation that changed nothing (a byte overwritten by itself) may decode.
          expect(equalBytes(bad, blob)).toBe(true);
          expect(equalBytes(back, raw)).toBe(true);
        }
      }),
      fuzzParams(),
    );
  });

  it("random bytes, and random bytes behind a readable header, are never a blob", async () => {
    const arbHeader = fc.record({ flags: fc.constantFrom(0, 1, 2, 255), rawLength: fc.oneof(fc.constantFrom(...HUGE_U32, MAX_RAW_BLOB), fc.nat({ max: 4096 })) });
    await fc.assert(
      fc.asyncProperty(fc.boolean(), arbType, arbMac, fc.option(arbHeader), fc.uint8Array({ maxLength: 400 }), async (enc, type, mac, h, rest) => {
        const blob = h === null ? rest : new Uint8Array(Buffer.concat([header(h.flags, h.rawLength), rest]));
        expectFailure(await boundedAllocation(() => codecOf(enc).codec.decode(type, mac, blob)));
        expectFailure(await boundedAllocation(() => codecOf(enc).codec.decodeSync(type, mac, blob)));
      }),
      fuzzParams(),
    );
  });
});

describe("after authentication: any header over any payload", () => {
  /** zstd frames: of random or zero bytes, whole or cut short, or not a frame at all. */
  const arbPayload = fc.oneof(
    fc.uint8Array({ maxLength: 300 }),
    fc.record({ n: fc.integer({ min: 0, max: 256 << 10 }), cut: fc.nat() }).map(({ n, cut }) => {
      const z = zstdCompressSync(new Uint8Array(n));
      return cut % 3 === 0 ? z.subarray(0, cut % z.byteLength) : z;
    }),
    fc.uint8Array({ maxLength: 2000 }).map((b) => new Uint8Array(zstdCompressSync(b))),
  );
  const arbEnvelope: fc.Arbitrary<Envelope> = fc.record({
    flags: fc.oneof(fc.constantFrom(0, 1), fc.integer({ min: 0, max: 255 })),
    rawLength: fc.oneof(fc.constantFrom(...HUGE_U32, MAX_RAW_BLOB, MAX_RAW_BLOB + 1), fc.nat({ max: 512 << 10 })),
    payload: arbPayload,
    nonce: arbNonce,
  });

  /** What the payload decompresses to (or is), if it is that. */
  function content(e: Envelope): Uint8Array | undefined {
    if ((e.flags & 1) === 0) return e.payload;
    try {
      return zstdDecompressSync(e.payload);
    } catch {
      return undefined;
    }
  }

  it("decodes to exactly the raw length it claims, or fails with a CorruptError, allocating no more than the payload can hold", async () => {
    const zeros = zstdCompressSync(new Uint8Array(64));
    const forged = (enc: boolean, type: BlobType, e: Envelope): [boolean, BlobType, Uint8Array, Envelope] => [enc, type, new Uint8Array(32), e];
    await fc.assert(
      fc.asyncProperty(fc.boolean(), arbType, arbMac, arbEnvelope, async (enc, type, mac, e) => {
        const back = await decodeBoth(enc, type, mac, seal(codecOf(enc).keys, enc, type, mac, e));
        if (back === undefined) return;
        expect(e.flags & ~1).toBe(0);
        expect(back.byteLength).toBe(e.rawLength);
        const want = content(e);
        expect(want && equalBytes(back, want)).toBe(true);
      }),
      fuzzParams({
        examples: [
          // Regression: a header claiming 256 MiB over a 20-byte frame made both paths allocate 256 MiB before decompressing.
          forged(false, BlobType.CHUNK, { flags: 1, rawLength: MAX_RAW_BLOB, payload: zeros }),
          forged(true, BlobType.TREE, { flags: 1, rawLength: MAX_RAW_BLOB, payload: zeros }),
          forged(false, BlobType.CHUNK, { flags: 1, rawLength: 0x7fffffff, payload: zeros }),
          forged(false, BlobType.CHUNK, { flags: 0, rawLength: 0xffffffff, payload: new Uint8Array(3) }),
        ],
      }),
    );
  });
});
