/**
 * Fuzzing the ptar archive (the single-file store, docs/FORMAT.md
 * "Single-file repositories (ptar)"): its header, trailer and index, read
 * through the store's public API only (made by the registry from a
 * `ptar:FILE` location, then open, list and get), so that the properties
 * hold whatever file the store lives in.
 *
 * Two layers: mutated archives, and forged ones whose checksum is fixed up
 * after the trailer or index was changed (the checksum is SHA-256, not
 * keyed: anyone who can write the file can make it match). Either way the
 * store gives the objects its index names, each of exactly its length, or
 * fails with CORRUPT (UNSUPPORTED for another version), and never
 * allocates what a forged offset, count or length claims.
 */
import { createHash } from "node:crypto";
import { promises as fsp } from "node:fs";
import { tmpdir } from "node:os";
import * as path from "node:path";
import fc from "fast-check";
import { afterAll, describe, expect, it } from "vitest";
import { builtinRegistry } from "../../src/connectors/builtins.js";
import { Resource } from "../../src/connectors/flags.js";
import type { ConnectorOptions } from "../../src/connectors/records.js";
import type { Store } from "../../src/connectors/store.js";
import { equalBytes } from "../../src/util/hex.js";
import { arbMutations, boundedAllocation, fieldAt, fuzzParams, type Mutation, mutate, mutateAll, outcome, valueOrFailure } from "../helpers/fuzz.js";

const HEADER_SIZE = 16;
const TRAILER_SIZE = 104;
const TRAILER_SUM_AT = 72;
const ENTRY_SIZE = 49;

const dir = await fsp.mkdtemp(path.join(tmpdir(), "coffer-fuzz-ptar-"));
afterAll(() => fsp.rm(dir, { recursive: true, force: true }));

const registry = builtinRegistry();
const OPTIONS: ConnectorOptions = { hostname: "fuzz", os: "linux", arch: "x64", cwd: dir, maxConcurrency: 1, excludes: [], noXattr: false, readOnly: true };

async function storeAt(file: string, readOnly = true): Promise<Store> {
  return registry.make("storage", `ptar:${file}`, {}, { ...OPTIONS, readOnly });
}

/** A valid archive with `n` objects of each resource (content derived from the MAC), read back as bytes. */
async function archive(n: number): Promise<Uint8Array> {
  const file = path.join(dir, `valid-${n}.ptar`);
  const s = await storeAt(file, false);
  await s.create(new Uint8Array(100).fill(0xcf));
  for (let i = 0; i < n; i++) {
    for (const r of [Resource.PACKFILE, Resource.STATE]) {
      const mac = new Uint8Array(32).fill(i * 2 + r);
      await s.put(r, mac, new Uint8Array(10 + i * 7).fill(i));
    }
  }
  await s.close?.();
  return new Uint8Array(await fsp.readFile(file));
}

const VALID = [await archive(0), await archive(1), await archive(3)];
const arbValid = fc.integer({ min: 0, max: VALID.length - 1 }).map((i) => VALID[i]!);

let cases = 0;
/** What a fresh store makes of `bytes` as its file: the config, then every object each listing names, whole and as a range. */
async function readAll(bytes: Uint8Array): Promise<{ config: Uint8Array; objects: number }> {
  const file = path.join(dir, `case-${cases++ % 8}.ptar`);
  await fsp.writeFile(file, bytes);
  const s = await storeAt(file);
  try {
    const config = await s.open();
    let objects = 0;
    for (const r of [Resource.PACKFILE, Resource.STATE]) {
      for await (const mac of s.list(r)) {
        const whole = await s.get(r, mac);
        expect(whole.byteLength).toBeLessThanOrEqual(bytes.byteLength);
        if (whole.byteLength > 0) expect(equalBytes(await s.get(r, mac, { offset: 1, length: whole.byteLength - 1 }), whole.subarray(1))).toBe(true);
        // A range past the end of the object is CORRUPT.
        const past = await outcome(() => s.get(r, mac, { offset: 1, length: whole.byteLength }));
        expect(past.ok).toBe(false);
        valueOrFailure(past);
        objects++;
      }
    }
    return { config, objects };
  } finally {
    await s.close?.();
  }
}

/** The archive's trailer fields, as the reader finds them at its end. */
function trailerOf(b: Uint8Array): { at: number; indexOffset: bigint; count: bigint } | undefined {
  if (b.byteLength < HEADER_SIZE + TRAILER_SIZE) return undefined;
  const t = Buffer.from(b.buffer, b.byteOffset + b.byteLength - TRAILER_SIZE, TRAILER_SIZE);
  return { at: b.byteLength - TRAILER_SIZE, indexOffset: t.readBigUInt64LE(40), count: t.readBigUInt64LE(48) };
}

/** The checksum made to match, as a forger would (when the trailer's index offset lies in the file). */
function fixChecksum(input: Uint8Array): Uint8Array {
  const b = Buffer.from(input);
  const t = trailerOf(b);
  if (!t || t.indexOffset > BigInt(t.at)) return new Uint8Array(b);
  const sum = createHash("sha256").update(b.subarray(0, HEADER_SIZE)).update(b.subarray(Number(t.indexOffset), t.at)).update(b.subarray(t.at, t.at + TRAILER_SUM_AT)).digest();
  sum.copy(b, t.at + TRAILER_SUM_AT);
  return new Uint8Array(b);
}

/** Changes to the tail a forger makes: a trailer field (generation, index offset, count, config offset or length), or an index entry's offset or length. */
type TailForgery = { trailerField: 16 | 40 | 48 | 56 | 64; m: Mutation } | { entry: number; field: 33 | 41; m: Mutation } | { tail: Mutation[] };
const arbForgery: fc.Arbitrary<TailForgery> = fc.oneof(
  fc.record({ trailerField: fc.constantFrom(16 as const, 40 as const, 48 as const, 56 as const, 64 as const), m: fieldAt(0, 64) }),
  fc.record({ entry: fc.nat({ max: 5 }), field: fc.constantFrom(33 as const, 41 as const), m: fieldAt(0, 64) }),
  fc.record({ tail: arbMutations }),
);

function forge(valid: Uint8Array, f: TailForgery): Uint8Array {
  const t = trailerOf(valid)!;
  const indexOffset = Number(t.indexOffset);
  let b = Buffer.from(valid);
  if ("trailerField" in f) b = Buffer.from(mutate(b, { ...f.m, at: t.at + f.trailerField } as Mutation));
  else if ("entry" in f) {
    if (f.entry < Number(t.count)) b = Buffer.from(mutate(b, { ...f.m, at: indexOffset + f.entry * ENTRY_SIZE + f.field } as Mutation));
  } else b = Buffer.concat([b.subarray(0, indexOffset), mutateAll(b.subarray(indexOffset), f.tail)]);
  return fixChecksum(b);
}

describe("a ptar archive read through the store", () => {
  it("the archives the properties start from read back whole", async () => {
    for (const [i, v] of VALID.entries()) expect((await readAll(v)).objects).toBe([0, 2, 6][i]);
  });

  it("a mutated archive gives its objects, or CORRUPT, or UNSUPPORTED", async () => {
    await fc.assert(
      fc.asyncProperty(arbValid, arbMutations, async (valid, ms) => {
        valueOrFailure(await boundedAllocation(() => readAll(mutateAll(valid, ms))), ["CORRUPT", "UNSUPPORTED"]);
      }),
      fuzzParams({ weight: 0.25 }),
    );
  });

  it("a forged trailer or index with its checksum fixed up gives objects inside the file, or CORRUPT", async () => {
    await fc.assert(
      fc.asyncProperty(arbValid, arbForgery, async (valid, f) => {
        valueOrFailure(await boundedAllocation(() => readAll(forge(valid, f))), ["CORRUPT", "UNSUPPORTED"]);
      }),
      fuzzParams<[Uint8Array, TailForgery]>({
        weight: 0.25,
        examples: [
          [VALID[2]!, { trailerField: 48, m: { kind: "u64", at: 0, value: 2n ** 40n, littleEndian: true } }],
          [VALID[2]!, { trailerField: 64, m: { kind: "u64", at: 0, value: 2n ** 31n, littleEndian: true } }],
          [VALID[2]!, { trailerField: 40, m: { kind: "u64", at: 0, value: 2n ** 63n, littleEndian: true } }],
          [VALID[2]!, { entry: 1, field: 41, m: { kind: "u64", at: 0, value: 2n ** 31n, littleEndian: true } }],
          [VALID[2]!, { entry: 0, field: 33, m: { kind: "u64", at: 0, value: 2n ** 64n - 1n, littleEndian: true } }],
        ],
      }),
    );
  });

  it("random bytes, with or without the header magic, are never an archive", async () => {
    await fc.assert(
      fc.asyncProperty(fc.boolean(), fc.uint8Array({ maxLength: 300 }), async (magic, rest) => {
        const bytes = magic ? new Uint8Array(Buffer.concat([Buffer.from("COFFPTAR\x01\0\0\0\0\0\0\0", "latin1"), rest])) : rest;
        const o = await boundedAllocation(() => readAll(bytes));
        expect(o.ok).toBe(false);
        valueOrFailure(o, ["CORRUPT", "UNSUPPORTED"]);
      }),
      fuzzParams({ weight: 0.1 }),
    );
  });
});
