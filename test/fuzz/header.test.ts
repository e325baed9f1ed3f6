/**
 * Fuzzing snapshot headers (src/snapshot/header.ts): decodeHeader on the
 * raw msgpack a forger with the key (or a bug) could seal, and the
 * authenticated envelope (a mutated SNAPSHOT blob fails in the codec). A
 * header either decodes to what ls, info, check and `repair snapshots`
 * use (MACs of 32 bytes, counts that are counts), which encodes back to
 * the same bytes, or fails with a CorruptError.
 */
import { decode } from "@msgpack/msgpack";
import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { BlobType } from "../../src/repository/codec.js";
import { decodeHeader, encodeHeader, type SnapshotHeader } from "../../src/snapshot/header.js";
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

const ID = new Uint8Array(32).fill(0x5e);
const arbMac = fc.uint8Array({ minLength: 32, maxLength: 32 });
const count = fc.oneof(fc.nat(), fc.maxSafeNat());

const arbHeader: fc.Arbitrary<SnapshotHeader> = fc
  .record(
    {
      timeNs: fc.bigInt({ min: 0n, max: 2n ** 63n - 1n }),
      durationNs: fc.bigInt({ min: 0n, max: 2n ** 40n }),
      hostname: fc.string({ maxLength: 8 }),
      username: fc.string({ maxLength: 8 }),
      os: fc.constantFrom("linux", "darwin"),
      arch: fc.constantFrom("x64", "arm64"),
      importer: fc.record({ type: fc.constantFrom("fs", "tar"), origin: fc.string({ maxLength: 8 }), root: fc.string({ maxLength: 8 }) }),
      tags: fc.array(fc.string({ maxLength: 6 }), { maxLength: 3 }),
      root: arbEntry,
      summary: fc.record({ files: count, dirs: count, symlinks: count, others: count, bytes: count, errors: count, readBytes: count, newBlobs: count, newBytes: count }),
      parent: arbMac,
      errors: arbMac,
      run: fc.uint8Array({ minLength: 16, maxLength: 16 }),
      checkpoint: fc.integer({ min: 1, max: 1000 }),
      prior: fc.array(arbMac, { minLength: 1, maxLength: 3 }),
      repairOf: fc.record({ id: arbMac, timeNs: fc.bigInt({ min: 0n, max: 2n ** 63n - 1n }) }),
      syncOf: fc.record({ repo: arbMac, id: arbMac }),
    },
    { requiredKeys: ["timeNs", "durationNs", "hostname", "username", "os", "arch", "importer", "tags", "root", "summary"] },
  )
  .map((h) => {
    const { checkpoint, run, ...rest } = h;
    const out: SnapshotHeader = { id: ID, ...rest };
    if (run !== undefined) out.run = run;
    if (run !== undefined && checkpoint !== undefined) out.checkpoint = checkpoint;
    return out;
  });

const arbHeaderBytes: fc.Arbitrary<Uint8Array> = fc.oneof(
  arbHeader.map(encodeHeader),
  fc.tuple(arbHeader, fc.array(arbValueMutation, { minLength: 1, maxLength: 3 })).map(([h, ms]) =>
    encodeValue(ms.reduce(mutateValue, decode(encodeHeader(h), { useBigInt64: true }))),
  ),
  arbMsgpackValue.map(encodeValue),
  fc.tuple(arbHeader, arbMutations).map(([h, ms]) => mutateAll(encodeHeader(h), ms)),
  fc.uint8Array({ maxLength: 200 }),
);

const SUMMARY_KEYS = ["files", "dirs", "symlinks", "others", "bytes", "errors", "readBytes", "newBlobs", "newBytes"] as const;
const safeNat = (n: unknown) => typeof n === "number" && Number.isSafeInteger(n) && n >= 0;
const isMac = (v: unknown) => v instanceof Uint8Array && v.byteLength === 32;

function expectUsableHeader(h: SnapshotHeader): void {
  expect(equalBytes(h.id, ID)).toBe(true);
  expect(typeof h.timeNs === "bigint" && typeof h.durationNs === "bigint").toBe(true);
  for (const s of [h.hostname, h.username, h.os, h.arch, h.importer.type, h.importer.origin, h.importer.root, ...h.tags]) expect(typeof s).toBe("string");
  for (const k of SUMMARY_KEYS) expect(safeNat(h.summary[k])).toBe(true);
  expectUsableEntry(h.root);
  for (const m of [h.parent, h.errors, h.repairOf?.id, h.syncOf?.repo, h.syncOf?.id, ...(h.prior ?? [])]) if (m !== undefined) expect(isMac(m)).toBe(true);
  if (h.run !== undefined) expect(h.run.byteLength).toBe(16);
  if (h.checkpoint !== undefined) expect(Number.isSafeInteger(h.checkpoint) && h.checkpoint >= 1 && h.run !== undefined).toBe(true);
  if (h.repairOf !== undefined) expect(typeof h.repairOf.timeNs).toBe("bigint");
}

describe("a snapshot header after authentication (decodeHeader)", () => {
  it("gives a usable header that encodes back to the same bytes, or a CorruptError", async () => {
    const good = decode(encodeHeader(fc.sample(arbHeader, { numRuns: 1, seed: 1 })[0]!), { useBigInt64: true }) as Record<string, unknown>;
    await fc.assert(
      fc.asyncProperty(arbHeaderBytes, async (raw) => {
        const h = valueOrFailure(await boundedAllocation(() => decodeHeader(raw, ID)));
        if (!h) return;
        expectUsableHeader(h);
        const again = encodeHeader(h);
        expect(equalBytes(encodeHeader(decodeHeader(again, ID)), again)).toBe(true);
      }),
      fuzzParams<[Uint8Array]>({
        examples: [
          ...MSGPACK_FORGERIES.map((f) => [f] as [Uint8Array]),
          // Regression: counts that are no counts, and MACs of the wrong size, decoded.
          [encodeValue({ ...good, summary: { ...(good.summary as object), files: -1 } })],
          [encodeValue({ ...good, summary: { ...(good.summary as object), bytes: NaN } })],
          [encodeValue({ ...good, parent: new Uint8Array(5) })],
          [encodeValue({ ...good, errors: new Uint8Array(0) })],
        ],
      }),
    );
  });
});

describe("a snapshot header in its authenticated envelope", () => {
  const { keys, codec } = fixedKeys(17, { encrypted: true });
  it("a mutated SNAPSHOT blob fails in the codec", async () => {
    await fc.assert(
      fc.asyncProperty(arbHeader, fc.uint8Array({ minLength: 28, maxLength: 28 }), arbMutations, async (h, nonce, ms) => {
        const blob = seal(keys, true, BlobType.SNAPSHOT, ID, envelopeOf(encodeHeader(h), "zstd", nonce));
        const bad = mutateAll(blob, ms);
        const o = await boundedAllocation(async () => decodeHeader(await codec.decode(BlobType.SNAPSHOT, ID, bad), ID));
        if (valueOrFailure(o)) expect(equalBytes(bad, blob)).toBe(true);
      }),
      fuzzParams({ weight: 0.5 }),
    );
  });
});
