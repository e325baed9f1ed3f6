/**
 * Fuzzing trees (src/snapshot/tree.ts): decodeTree on the raw msgpack a
 * forger with the key (or a bug) could seal (valid trees, their value
 * trees mutated, any value, mutated and random bytes), and the
 * authenticated envelope: a mutated TREE blob fails in the codec. A tree
 * either decodes to entries restore and ls can use, which encode back to
 * the same bytes (`repair snapshots` rewrites decoded trees), or fails
 * with a CorruptError.
 */
import { decode } from "@msgpack/msgpack";
import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { BlobType } from "../../src/repository/codec.js";
import { decodeTree, encodeTree } from "../../src/snapshot/tree.js";
import { equalBytes } from "../../src/util/hex.js";
import { arbEntry, expectUsableEntry } from "../helpers/entries.js";
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
import { envelopeOf, fixedKeys, seal } from "../helpers/sealed.js";

const arbTree = fc.array(arbEntry, { maxLength: 4 });
const arbTreeBytes: fc.Arbitrary<Uint8Array> = fc.oneof(
  arbTree.map(encodeTree),
  fc.tuple(arbTree, fc.array(arbValueMutation, { minLength: 1, maxLength: 3 })).map(([t, ms]) =>
    encodeValue(ms.reduce(mutateValue, decode(encodeTree(t), { useBigInt64: true }))),
  ),
  arbMsgpackValue.map((v) => encodeValue({ v: 1, e: [v] })),
  arbMsgpackValue.map(encodeValue),
  fc.tuple(arbTree, arbMutations).map(([t, ms]) => mutateAll(encodeTree(t), ms)),
  fc.uint8Array({ maxLength: 200 }),
);

/** A tree's entry with the size field set to `s` (a uint64 or int64 as msgpack holds it). */
const withSize = (s: bigint) => encodeValue({ v: 1, e: [{ n: "f", k: 0, s, m: 0o644, t: 0n, d: 1n, i: 1n, u: 0, g: 0, l: 1 }] });

describe("a tree after authentication (decodeTree)", () => {
  it("gives usable entries that encode back to the same bytes, or a CorruptError", async () => {
    await fc.assert(
      fc.asyncProperty(arbTreeBytes, async (raw) => {
        const entries = valueOrFailure(await boundedAllocation(() => decodeTree(raw, "tree fuzz")));
        if (!entries) return;
        entries.forEach(expectUsableEntry);
        const again = encodeTree(entries);
        expect(equalBytes(encodeTree(decodeTree(again, "tree fuzz")), again)).toBe(true);
      }),
      fuzzParams<[Uint8Array]>({
        examples: [
          // Regression: { v: 1, e: <2^25-1 entries claimed in 5 bytes> } made msgpack allocate a 256 MiB array.
          [Uint8Array.of(0x82, 0xa1, 0x76, 0x01, 0xa1, 0x65, 0xdd, 0x01, 0xff, 0xff, 0xff)],
          ...MSGPACK_FORGERIES.map((f) => [f] as [Uint8Array]),
          // Regression: a size (or chunk length) beyond 2^53 or below 0 decoded to a number that is not a length.
          [withSize(2n ** 60n)],
          [withSize(-1n)],
          [encodeValue({ v: 1, e: [{ n: "f", k: 0, s: 1, m: 0, t: 0n, d: 1n, i: 1n, u: 0, g: 0, l: 1, ch: [[new Uint8Array(32), -5]] }] })],
          [encodeValue({ v: 1, e: [{ n: "f", k: 0, s: 1, m: 0, t: 0n, d: 1n, i: 1n, u: 0, g: 0, l: 1, ch: [[new Uint8Array(32), 2 ** 40]] }] })],
          // Regression (found by `npm run fuzz`): an mtime as a float64 of -1e30 decoded to a bigint beyond int64, which encodeTree() cannot write back.
          [encodeValue({ v: 1, e: [{ n: "f", k: 0, s: 1, m: 0, t: -1e30, d: 1n, i: 1n, u: 0, g: 0, l: 1 }] })],
        ],
      }),
    );
  });
});

describe("a tree in its authenticated envelope", () => {
  const { keys, codec } = fixedKeys(13);
  it("a mutated TREE blob fails in the codec, never reaching the tree decoder", async () => {
    await fc.assert(
      fc.asyncProperty(arbTree, fc.uint8Array({ minLength: 32, maxLength: 32 }), arbMutations, async (t, mac, ms) => {
        const blob = seal(keys, false, BlobType.TREE, mac, envelopeOf(encodeTree(t), "zstd"));
        const bad = mutateAll(blob, ms);
        const o = await boundedAllocation(async () => decodeTree(await codec.decode(BlobType.TREE, mac, bad), "tree fuzz"));
        if (valueOrFailure(o)) expect(equalBytes(bad, blob)).toBe(true);
      }),
      fuzzParams({ weight: 0.5 }),
    );
  });
});
