/**
 * Tests of the FastCDC chunker (src/repository/chunker.ts): findCut against a
 * byte-at-a-time reference written from the format text, streaming against
 * whole-buffer cutting over arbitrary piece splits, chunk size bounds,
 * boundary stability under insertions, the keyed gear table and parameter
 * validation. Property tests use small parameters so they stay fast.
 */
import { createHash } from "node:crypto";
import fc from "fast-check";
import { describe, expect, it } from "vitest";
import {
  DEFAULT_CHUNKING,
  chunkStream,
  chunkerConfig,
  findCut,
  gearTable,
  makeChunker,
  validateChunkingParams,
  type ChunkerConfig,
  type ChunkingParams,
} from "../../src/repository/chunker.js";
import { prng } from "../helpers/prng.js";

const SEED_A = new Uint8Array(32).fill(0xa5);
const SEED_B = new Uint8Array(32).fill(0x5a);
const SMALL: ChunkingParams = { min: 64, avg: 256, max: 1024 };
const small = makeChunker(SMALL, SEED_A);
/** Chunk lengths of prng(2024, 16384) with min 256 / avg 1024 / max 4096 and an all-zero seed. */
const PINNED = [471, 1109, 1220, 1340, 455, 1175, 1386, 1360, 1189, 1124, 1426, 864, 912, 718, 1053, 582];


/** Cut offsets (exclusive ends) of the whole buffer, via findCut. */
function cuts(data: Uint8Array, cfg: ChunkerConfig): number[] {
  const out: number[] = [];
  for (let s = 0; s < data.length; ) {
    s = findCut(data, s, data.length, cfg);
    out.push(s);
  }
  return out;
}

function lengths(ends: number[]): number[] {
  return ends.map((e, i) => e - (i === 0 ? 0 : ends[i - 1]!));
}

async function* piecesOf(data: Uint8Array, splits: number[]): AsyncGenerator<Uint8Array> {
  let s = 0;
  for (const e of [...splits].sort((a, b) => a - b)) {
    yield data.subarray(s, e);
    s = e;
  }
  yield data.subarray(s);
}

async function collect(it: AsyncIterable<Uint8Array>): Promise<Uint8Array[]> {
  const out: Uint8Array[] = [];
  for await (const c of it) out.push(c);
  return out;
}

/** Byte equality; vitest's toEqual is far too slow on MiB-sized arrays. */
function expectSameBytes(actual: Uint8Array, expected: Uint8Array): void {
  expect(actual.length).toBe(expected.length);
  expect(Buffer.compare(actual, expected)).toBe(0);
}

function concat(parts: Uint8Array[]): Uint8Array {
  const out = new Uint8Array(parts.reduce((n, p) => n + p.length, 0));
  let o = 0;
  for (const p of parts) {
    out.set(p, o);
    o += p.length;
  }
  return out;
}

/** The format's definition, one byte at a time, on uint32 values; independent of the implementation's tricks. */
function referenceCut(data: Uint8Array, s: number, e: number, p: ChunkingParams, gear: Uint32Array): number {
  const n = e - s;
  if (n <= p.min) return e;
  const limit = Math.min(n, p.max);
  const normal = Math.min(p.avg, limit);
  const b = Math.round(Math.log2(p.avg));
  const top = (k: number) => 2 ** 31 - 2 ** (31 - k); // bits 31-k .. 30
  const maskS = top(b + 2);
  const maskL = top(b - 2);
  let h = 0;
  for (let i = p.min; i < limit; i++) {
    h = (h * 2 + gear[data[s + i]!]!) % 2 ** 32;
    if ((h & (i < normal ? maskS : maskL)) === 0) return s + i + 1;
  }
  return s + limit;
}

/** Small valid parameters: avg a power of two in [16, 1024], min in [1, avg], max in [avg, 4 avg]. */
const paramsArb: fc.Arbitrary<ChunkingParams> = fc
  .tuple(fc.integer({ min: 4, max: 10 }), fc.double({ min: 0, max: 1, noNaN: true }), fc.double({ min: 0, max: 1, noNaN: true }))
  .map(([bits, a, c]) => {
    const avg = 2 ** bits;
    return { min: Math.max(1, Math.floor(avg * a)), avg, max: avg + Math.floor(3 * avg * c) };
  });

/** Random bytes, low-entropy bytes (0/1) or all zeros (every cut at max). */
const dataArb: fc.Arbitrary<Uint8Array> = fc.oneof(
  fc.uint8Array({ maxLength: 12_000 }),
  fc.uint8Array({ maxLength: 12_000, max: 1 }),
  fc.integer({ min: 0, max: 12_000 }).map((n) => new Uint8Array(n)),
);

describe("findCut", () => {
  it("matches the byte-at-a-time reference of the format text", () => {
    fc.assert(
      fc.property(dataArb, paramsArb, fc.nat(), (data, params, seedByte) => {
        const seed = new Uint8Array(32).fill(seedByte & 0xff);
        const cfg = makeChunker(params, seed);
        for (let s = 0; s < data.length; ) {
          const c = findCut(data, s, data.length, cfg);
          expect(c).toBe(referenceCut(data, s, data.length, params, cfg.gear));
          s = c;
        }
      }),
      { numRuns: 300 },
    );
  });

  it("returns end when at most min bytes remain, and never goes past start + max", () => {
    const data = new Uint8Array(5000); // zeros: no content cut before max
    expect(findCut(data, 100, 100, small)).toBe(100);
    expect(findCut(data, 100, 164, small)).toBe(164);
    const c = findCut(data, 100, 5000, small);
    expect(c).toBeGreaterThan(164);
    expect(c).toBeLessThanOrEqual(100 + 1024);
    expect(() => findCut(data, 10, 5001, small)).toThrow(RangeError);
    expect(() => findCut(data, 11, 10, small)).toThrow(RangeError);
  });

  it("looks only at data[start, end)", () => {
    fc.assert(
      fc.property(fc.uint8Array({ minLength: 2000, maxLength: 4000 }), fc.nat(), fc.nat(), (data, a, b) => {
        const start = a % 500;
        const end = start + 65 + (b % (data.length - start - 65));
        const c = findCut(data, start, end, small);
        // Scrambling every byte outside the range leaves the cut unchanged.
        const other = data.slice();
        for (let i = 0; i < other.length; i++) if (i < start || i >= end) other[i] = (other[i]! + 1 + i) & 0xff;
        expect(findCut(other, start, end, small)).toBe(c);
        // Same answer on a copy holding only the range.
        expect(findCut(data.slice(start, end), 0, end - start, small) + start).toBe(c);
      }),
      { numRuns: 100 },
    );
  });
});

describe("chunk sizes and content", () => {
  it("chunks concatenate to the input, and all but the last are within [min, max]", () => {
    fc.assert(
      fc.property(dataArb, paramsArb, (data, params) => {
        const cfg = makeChunker(params, SEED_A);
        const ends = cuts(data, cfg);
        const chunks = ends.map((e, i) => data.subarray(i === 0 ? 0 : ends[i - 1]!, e));
        expectSameBytes(concat(chunks), data);
        const lens = lengths(ends);
        for (const n of lens.slice(0, -1)) {
          expect(n).toBeGreaterThanOrEqual(params.min);
          expect(n).toBeLessThanOrEqual(params.max);
        }
        for (const n of lens) expect(n).toBeGreaterThan(0);
      }),
      { numRuns: 300 },
    );
  });

  it("cuts by content around avg with the default parameters", () => {
    const data = prng(1, 48 * 1024 * 1024);
    const cfg = makeChunker(DEFAULT_CHUNKING, SEED_A);
    const lens = lengths(cuts(data, cfg));
    const body = lens.slice(0, -1);
    for (const n of body) {
      expect(n).toBeGreaterThanOrEqual(DEFAULT_CHUNKING.min);
      expect(n).toBeLessThanOrEqual(DEFAULT_CHUNKING.max);
    }
    // Normalized chunking: sizes cluster near avg, none at max on random data.
    const mean = data.length / lens.length;
    expect(mean).toBeGreaterThan(0.9 * DEFAULT_CHUNKING.avg);
    expect(mean).toBeLessThan(1.6 * DEFAULT_CHUNKING.avg);
    expect(body.filter((n) => n === DEFAULT_CHUNKING.max)).toHaveLength(0);
    expect(new Set(body).size).toBe(body.length); // content-defined, not fixed-size
  });

  it("cuts all-zero input into max-sized pieces or a repeating content cut", () => {
    const lens = lengths(cuts(new Uint8Array(100_000), small));
    const body = lens.slice(0, -1);
    expect(body.length).toBeGreaterThan(90);
    expect(new Set(body).size).toBe(1);
  });

  it("keeps most chunks when bytes are inserted near the start or in the middle", () => {
    const params = { min: 2048, avg: 8192, max: 65536 };
    const cfg = makeChunker(params, SEED_A);
    const data = prng(7, 4 * 1024 * 1024);
    const before = cuts(data, cfg);
    expect(before.length).toBeGreaterThan(200);
    const ids = (d: Uint8Array, ends: number[]) =>
      ends.map((e, i) => createHash("sha256").update(d.subarray(i === 0 ? 0 : ends[i - 1]!, e)).digest("hex"));
    const oldIds = new Set(ids(data, before));
    for (const [at, insert] of [
      [100, Uint8Array.of(1, 2, 3, 4, 5)],
      [2_000_000, Uint8Array.of(9, 9, 9)],
    ] as const) {
      const edited = concat([data.subarray(0, at), insert, data.subarray(at)]);
      const after = cuts(edited, cfg);
      const newIds = ids(edited, after);
      const shared = newIds.filter((x) => oldIds.has(x)).length;
      const changed = newIds.length - shared;
      expect(changed).toBeGreaterThanOrEqual(1); // the edited chunk is new
      expect(changed).toBeLessThanOrEqual(3);
      expect(shared / before.length).toBeGreaterThan(0.98);
      // Cut points after the edit reappear, shifted by the insertion.
      const shifted = new Set(before.filter((e) => e > at).map((e) => e + insert.length));
      const tail = after.filter((e) => e > at + params.max);
      expect(tail.every((e) => shifted.has(e))).toBe(true);
    }
  });
});

describe("chunkStream", () => {
  it("yields the chunks of findCut over the whole input, for any split into pieces", async () => {
    await fc.assert(
      fc.asyncProperty(dataArb, paramsArb, fc.array(fc.nat(), { maxLength: 40 }), async (data, params, rawSplits) => {
        const cfg = makeChunker(params, SEED_A);
        const splits = rawSplits.map((x) => x % (data.length + 1)); // duplicates give empty pieces
        const chunks = await collect(chunkStream(piecesOf(data, splits), cfg));
        // Compared only after the stream ended: no chunk may have been overwritten since it was yielded.
        expect(chunks.map((c) => c.length)).toEqual(lengths(cuts(data, cfg)));
        expectSameBytes(concat(chunks), data);
      }),
      { numRuns: 400 },
    );
  });

  it("matches findCut with pieces of one byte, and with pieces larger than max", async () => {
    const data = prng(3, 30_000);
    const expected = lengths(cuts(data, small));
    const ones = async function* () {
      for (let i = 0; i < data.length; i++) yield data.subarray(i, i + 1);
    };
    const a = await collect(chunkStream(ones(), small));
    expect(a.map((c) => c.length)).toEqual(expected);
    expectSameBytes(concat(a), data);
    const b = await collect(chunkStream(piecesOf(data, [5000, 5001, 17_000]), small));
    expect(b.map((c) => c.length)).toEqual(expected);
    expectSameBytes(concat(b), data);
  });

  it("matches findCut with pieces kept by reference (64 KiB .. max) and staged small pieces", async () => {
    const params = { min: 16 * 1024, avg: 64 * 1024, max: 256 * 1024 };
    const cfg = makeChunker(params, SEED_B);
    const data = concat([prng(11, 3 * 1024 * 1024), new Uint8Array(1024 * 1024), prng(12, 1024 * 1024)]);
    const expected = lengths(cuts(data, cfg));
    await fc.assert(
      fc.asyncProperty(fc.array(fc.oneof(fc.integer({ min: 1, max: 3000 }), fc.integer({ min: 60_000, max: 300_000 })), { minLength: 1, maxLength: 20 }), async (sizes) => {
        const splits: number[] = [];
        for (let o = 0, k = 0; ; k++) {
          o += sizes[k % sizes.length]!;
          if (o >= data.length) break;
          splits.push(o);
        }
        const chunks = await collect(chunkStream(piecesOf(data, splits), cfg));
        expect(chunks.map((c) => c.length)).toEqual(expected);
        expectSameBytes(concat(chunks), data);
      }),
      { numRuns: 30 },
    );
  });

  it("yields a subarray for a chunk inside one piece and a fresh copy for one spanning pieces", async () => {
    const data = prng(5, 20_000);
    const ends = cuts(data, small);
    expect(ends.length).toBeGreaterThan(4);
    // Split in the middle of the third chunk: it spans two pieces, the others do not.
    const mid = Math.floor((ends[1]! + ends[2]!) / 2);
    const pieces = [data.slice(0, mid), data.slice(mid)];
    const chunks = await collect(
      chunkStream(
        (async function* () {
          yield* pieces;
        })(),
        small,
      ),
    );
    expect(chunks.map((c) => c.length)).toEqual(lengths(ends));
    expect(chunks[0]!.buffer).toBe(pieces[0]!.buffer);
    expect(chunks[1]!.buffer).toBe(pieces[0]!.buffer);
    expect(chunks[2]!.buffer).not.toBe(pieces[0]!.buffer);
    expect(chunks[2]!.buffer).not.toBe(pieces[1]!.buffer);
    expect(chunks[3]!.buffer).toBe(pieces[1]!.buffer);
    // The pieces were not written to.
    expectSameBytes(concat(pieces), data);
  });

  it("assembles a last chunk held as several pieces", async () => {
    const cfg = makeChunker({ min: 128 * 1024, avg: 128 * 1024, max: 256 * 1024 }, SEED_A);
    const data = prng(13, 128 * 1024); // exactly min: one chunk, whatever the content
    for (const splits of [[65_536], [70_000], [100, 65_636], [30_000, 60_000, 90_000]]) {
      const chunks = await collect(chunkStream(piecesOf(data, splits), cfg));
      expect(chunks).toHaveLength(1);
      expectSameBytes(chunks[0]!, data);
    }
  });

  it("yields nothing for an empty stream or empty pieces, and a short last chunk", async () => {
    expect(await collect(chunkStream(piecesOf(new Uint8Array(0), []), small))).toEqual([]);
    expect(await collect(chunkStream(piecesOf(new Uint8Array(0), [0, 0, 0]), small))).toEqual([]);
    const short = await collect(chunkStream(piecesOf(Uint8Array.of(1, 2, 3), [1]), small));
    expect(short).toEqual([Uint8Array.of(1, 2, 3)]);
  });
});

describe("gear table", () => {
  it("follows the documented derivation", () => {
    const seed = prng(42, 32);
    const t = gearTable(seed);
    expect(t).toBeInstanceOf(Uint32Array);
    expect(t).toHaveLength(256);
    for (let j = 0; j < 32; j++) {
      const ctr = Buffer.alloc(4);
      ctr.writeUInt32BE(j);
      const d = createHash("sha256").update("coffer/v1/gear-table").update(seed).update(ctr).digest();
      for (let k = 0; k < 8; k++) expect(t[8 * j + k]).toBe(d.readUInt32BE(4 * k));
    }
  });

  it("is the same for the same seed and gives different cut points for another seed", () => {
    expect(gearTable(SEED_A)).toEqual(gearTable(new Uint8Array(32).fill(0xa5)));
    expect(gearTable(SEED_A)).not.toEqual(gearTable(SEED_B));
    const data = prng(9, 200_000);
    const a = cuts(data, makeChunker(SMALL, SEED_A));
    expect(a).toEqual(cuts(data, makeChunker(SMALL, new Uint8Array(32).fill(0xa5))));
    const b = cuts(data, makeChunker(SMALL, SEED_B));
    expect(b).not.toEqual(a);
    // Not merely shifted: most cut points differ.
    const common = b.filter((e) => new Set(a).has(e)).length;
    expect(common / b.length).toBeLessThan(0.2);
  });

  it("pins the cut points of a fixed input (changing them breaks deduplication with old snapshots)", () => {
    const cfg = makeChunker({ min: 256, avg: 1024, max: 4096 }, new Uint8Array(32));
    expect(lengths(cuts(prng(2024, 16_384), cfg))).toEqual(PINNED);
  });

  it("rejects a seed that is not 32 bytes", () => {
    expect(() => gearTable(new Uint8Array(31))).toThrow(TypeError);
    expect(() => gearTable(new Uint8Array(33))).toThrow(/seed/);
  });
});

describe("parameter validation", () => {
  it("accepts the defaults and the edges of the allowed ranges", () => {
    expect(DEFAULT_CHUNKING).toEqual({ min: 512 * 1024, avg: 1024 * 1024, max: 8 * 1024 * 1024 });
    for (const p of [DEFAULT_CHUNKING, { min: 1, avg: 16, max: 16 }, { min: 16, avg: 16, max: 32 }, { min: 1, avg: 2 ** 28, max: 2 ** 30 }]) {
      expect(() => validateChunkingParams(p)).not.toThrow();
    }
  });

  it.each([
    ["avg", { min: 512, avg: 1000, max: 4096 }],
    ["avg", { min: 4, avg: 8, max: 64 }],
    ["avg", { min: 4, avg: 2 ** 29, max: 2 ** 30 }],
    ["avg", { min: 4, avg: Number.NaN, max: 64 }],
    ["min", { min: 0, avg: 1024, max: 4096 }],
    ["min", { min: 2048, avg: 1024, max: 4096 }],
    ["min", { min: 1.5, avg: 1024, max: 4096 }],
    ["max", { min: 512, avg: 1024, max: 1000 }],
    ["max", { min: 512, avg: 1024, max: 2 ** 30 + 1 }],
    ["max", { min: 512, avg: 1024, max: Number.POSITIVE_INFINITY }],
  ] as const)("rejects a bad %s: %o", (name, p) => {
    expect(() => validateChunkingParams(p)).toThrow(TypeError);
    expect(() => validateChunkingParams(p)).toThrow(new RegExp(`invalid ${name} `));
    expect(() => makeChunker(p, SEED_A)).toThrow(TypeError);
  });

  it("rejects a gear table of the wrong size", () => {
    expect(() => chunkerConfig(SMALL, new Uint32Array(255))).toThrow(/gear/);
    expect(() => chunkerConfig(SMALL, new Uint32Array(256))).not.toThrow();
  });
});
