/**
 * Tests of packfiles (src/repository/packfile.ts): PackWriter + seal, then
 * readPack recovers the exact entries and every blob decodes from its slice;
 * the footer layout of docs/FORMAT.md; the pack name is the MAC of all its
 * bytes; any damage, a wrong name or a structurally bad pack (even one whose
 * name matches) is a CorruptError; encodeIndex/decodeIndex round trip and
 * reject malformed input with CorruptError only.
 */
import { encode } from "@msgpack/msgpack";
import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { BlobType, Codec, type Compression, MAX_ENCODED_BLOB, MAX_RAW_BLOB } from "../../src/repository/codec.js";
import { deriveSubkeys, Mac, type MacAlgorithm, randomKey } from "../../src/repository/crypto.js";
import { type BlobEntry, decodeIndex, encodeIndex, FOOTER_SIZE, PACK_MAGIC, PACK_VERSION, PackWriter, readPack } from "../../src/repository/packfile.js";
import { CofferError, CorruptError } from "../../src/util/errors.js";
import { toHex } from "../../src/util/hex.js";

interface Setup {
  codec: Codec;
  mac: Mac;
}

async function setup(alg: MacAlgorithm, encrypted: boolean, compression: Compression, master = randomKey()): Promise<Setup> {
  const keys = deriveSubkeys(master);
  return { codec: new Codec({ keys, encrypted, compression }), mac: await Mac.create(alg, keys.mac) };
}

const SETUPS = await Promise.all([
  setup("blake3", true, "zstd"),
  setup("hmac-sha256", false, "none"),
  setup("blake3", false, "zstd"),
  setup("hmac-sha256", true, "none"),
]);

function concat(parts: Uint8Array[]): Uint8Array {
  return new Uint8Array(Buffer.concat(parts));
}

function expectCorrupt(e: unknown): void {
  expect(e).toBeInstanceOf(CorruptError);
  expect((e as CofferError).code).toBe("CORRUPT");
}

async function rejectionOf(p: Promise<unknown>): Promise<unknown> {
  return p.then(
    () => undefined,
    (e: unknown) => e,
  );
}

function errorOf(f: () => unknown): unknown {
  try {
    f();
  } catch (e) {
    return e;
  }
  return undefined;
}

/** Entries as comparable plain data. */
function plainEntries(es: readonly BlobEntry[]): unknown[] {
  return es.map((e) => ({ type: e.type, mac: toHex(e.mac), offset: e.offset, length: e.length, rawLength: e.rawLength }));
}

interface Built {
  bytes: Uint8Array;
  name: Uint8Array;
  entries: BlobEntry[];
  blobs: { type: BlobType; mac: Uint8Array; data: Uint8Array }[];
}

/** Packs `blobs` (MAC-named unless a name is given) with a PackWriter. */
async function build(s: Setup, blobs: { type: BlobType; data: Uint8Array; name?: Uint8Array | undefined }[]): Promise<Built> {
  const w = new PackWriter();
  const out: Built["blobs"] = [];
  for (const b of blobs) {
    const m = b.name ?? s.mac.mac(b.data);
    const encoded = await s.codec.encode(b.type, m, b.data);
    const e = w.add(b.type, m, b.data.byteLength, encoded);
    expect(e.length).toBe(encoded.byteLength);
    out.push({ type: b.type, mac: m, data: b.data });
  }
  const entries = [...w.entries];
  const sealed = await w.seal(s.codec, s.mac);
  const bytes = concat(sealed.parts);
  expect(sealed.size).toBe(bytes.byteLength);
  expect(w.size).toBe(bytes.byteLength);
  return { bytes, name: sealed.mac, entries, blobs: out };
}

const arbBlob = fc.record({
  type: fc.constantFrom(...Object.values(BlobType)),
  data: fc.oneof(fc.uint8Array({ maxLength: 2000 }), fc.integer({ min: 0, max: 5000 }).map((n) => new Uint8Array(n).fill(n & 0xff))),
  name: fc.option(fc.uint8Array({ minLength: 32, maxLength: 32 }), { nil: undefined }),
});
const arbBlobs = fc.array(arbBlob, { maxLength: 12 });
const arbSetup = fc.constantFrom(...SETUPS);

describe("PackWriter + readPack", () => {
  it("readPack recovers the exact entries and every blob decodes from its slice (property)", async () => {
    await fc.assert(
      fc.asyncProperty(arbSetup, arbBlobs, async (s, blobs) => {
        const p = await build(s, blobs);
        const got = await readPack(p.bytes, p.name, s.codec, s.mac);
        expect(plainEntries(got)).toEqual(plainEntries(p.entries));
        let offset = 0;
        for (const [i, e] of got.entries()) {
          const b = p.blobs[i]!;
          expect(e.offset).toBe(offset); // back to back, in order
          offset += e.length;
          expect(e.rawLength).toBe(b.data.byteLength);
          const slice = p.bytes.subarray(e.offset, e.offset + e.length);
          expect(Buffer.from(await s.codec.decode(e.type, e.mac, slice)).equals(b.data)).toBe(true);
        }
      }),
      { numRuns: 60 },
    );
  });

  it("the pack's name is Mac.mac of the concatenated parts (property)", async () => {
    await fc.assert(
      fc.asyncProperty(arbSetup, arbBlobs, async (s, blobs) => {
        const p = await build(s, blobs);
        expect(toHex(p.name)).toBe(toHex(s.mac.mac(p.bytes)));
      }),
      { numRuns: 40 },
    );
  });

  it("an empty pack seals and reads back as no entries", async () => {
    for (const s of SETUPS) {
      const p = await build(s, []);
      expect(await readPack(p.bytes, p.name, s.codec, s.mac)).toEqual([]);
    }
  });

  it("the footer follows docs/FORMAT.md and the index blob decodes on its own", async () => {
    const s = SETUPS[0]!;
    const p = await build(s, [
      { type: BlobType.CHUNK, data: new Uint8Array(1000).fill(1) },
      { type: BlobType.TREE, data: Buffer.from("a tree") },
    ]);
    const b = Buffer.from(p.bytes);
    const f = b.subarray(b.byteLength - FOOTER_SIZE);
    expect(FOOTER_SIZE).toBe(52);
    expect(f.toString("ascii", 0, 4)).toBe(PACK_MAGIC);
    expect(f.readUInt32LE(4)).toBe(PACK_VERSION);
    const indexOffset = Number(f.readBigUInt64LE(8));
    const indexLength = f.readUInt32LE(16);
    const blobsEnd = p.entries.at(-1)!.offset + p.entries.at(-1)!.length;
    expect(indexOffset).toBe(blobsEnd);
    expect(indexOffset + indexLength).toBe(b.byteLength - FOOTER_SIZE);
    const indexName = f.subarray(20, 52);
    const raw = await s.codec.decode(BlobType.PACK_INDEX, indexName, b.subarray(indexOffset, indexOffset + indexLength));
    expect(toHex(s.mac.mac(raw))).toBe(toHex(indexName));
    expect(plainEntries(decodeIndex(raw, "index"))).toEqual(plainEntries(p.entries));
  });

  it("a flipped byte anywhere makes readPack throw CorruptError (property)", async () => {
    await fc.assert(
      fc.asyncProperty(arbSetup, fc.array(arbBlob, { maxLength: 4 }), fc.nat(), fc.integer({ min: 1, max: 255 }), async (s, blobs, where, mask) => {
        const p = await build(s, blobs);
        const bad = new Uint8Array(p.bytes);
        bad[where % bad.byteLength]! ^= mask;
        expectCorrupt(await rejectionOf(readPack(bad, p.name, s.codec, s.mac)));
      }),
      { numRuns: 150 },
    );
  });

  it("a flipped byte at every offset of a small pack is detected", async () => {
    const s = SETUPS[1]!;
    const p = await build(s, [{ type: BlobType.CHUNK, data: Buffer.from("x") }]);
    for (let i = 0; i < p.bytes.byteLength; i++) {
      const bad = new Uint8Array(p.bytes);
      bad[i]! ^= 0x40;
      expectCorrupt(await rejectionOf(readPack(bad, p.name, s.codec, s.mac)));
    }
  });

  it("a wrong name, truncation or appended bytes are CorruptError", async () => {
    for (const s of SETUPS) {
      const p = await build(s, [{ type: BlobType.CHUNK, data: new Uint8Array(300).fill(7) }]);
      const wrong = new Uint8Array(p.name);
      wrong[0]! ^= 1;
      expectCorrupt(await rejectionOf(readPack(p.bytes, wrong, s.codec, s.mac)));
      expectCorrupt(await rejectionOf(readPack(p.bytes, randomKey(), s.codec, s.mac)));
      expectCorrupt(await rejectionOf(readPack(p.bytes.subarray(0, p.bytes.byteLength - 1), p.name, s.codec, s.mac)));
      expectCorrupt(await rejectionOf(readPack(p.bytes.subarray(0, 10), p.name, s.codec, s.mac)));
      expectCorrupt(await rejectionOf(readPack(new Uint8Array(0), p.name, s.codec, s.mac)));
      expectCorrupt(await rejectionOf(readPack(concat([p.bytes, new Uint8Array([0])]), p.name, s.codec, s.mac)));
    }
  });

  it("a pack read with another repository's keys is CorruptError", async () => {
    const s = SETUPS[0]!;
    const other = await setup("blake3", true, "zstd");
    const p = await build(s, [{ type: BlobType.CHUNK, data: Buffer.from("data") }]);
    expectCorrupt(await rejectionOf(readPack(p.bytes, p.name, other.codec, other.mac)));
    // even when told the name its own MAC gives
    expectCorrupt(await rejectionOf(readPack(p.bytes, other.mac.mac(p.bytes), other.codec, other.mac)));
  });
});

describe("readPack on packs whose name matches but whose structure is bad", () => {
  const s = SETUPS[0]!;

  /** A pack of `body` + an index blob of `raw` + a footer, with optional overrides, correctly named. */
  async function forge(body: Uint8Array, raw: Uint8Array, f: { magic?: string; version?: number; offset?: bigint; length?: number } = {}) {
    const indexName = s.mac.mac(raw);
    const index = await s.codec.encode(BlobType.PACK_INDEX, indexName, raw);
    const footer = Buffer.alloc(FOOTER_SIZE);
    footer.write(f.magic ?? PACK_MAGIC, 0, "ascii");
    footer.writeUInt32LE(f.version ?? PACK_VERSION, 4);
    footer.writeBigUInt64LE(f.offset ?? BigInt(body.byteLength), 8);
    footer.writeUInt32LE(f.length ?? index.byteLength, 16);
    footer.set(indexName, 20);
    const bytes = concat([body, index, footer]);
    return { bytes, name: s.mac.mac(bytes) };
  }

  const body = new Uint8Array(100);
  const entry = (offset: number, length: number): BlobEntry => ({ type: BlobType.CHUNK, mac: new Uint8Array(32), offset, length, rawLength: length });

  it("the forger is sound: a consistent forged pack reads", async () => {
    const p = await forge(body, encodeIndex([entry(0, 100)]));
    expect(await readPack(p.bytes, p.name, s.codec, s.mac)).toHaveLength(1);
  });

  it("index entries past the blob area are CorruptError", async () => {
    for (const e of [entry(0, 101), entry(100, 1), entry(50, 51), entry(2 ** 40, 1)]) {
      const p = await forge(body, encodeIndex([e]));
      expectCorrupt(await rejectionOf(readPack(p.bytes, p.name, s.codec, s.mac)));
    }
  });

  it("bad magic, version or footer offsets are CorruptError", async () => {
    const raw = encodeIndex([entry(0, 10)]);
    for (const f of [{ magic: "CFPX" }, { version: 2 }, { version: 0 }, { offset: 99n }, { offset: 101n }, { offset: 2n ** 63n }, { length: 1 }, { length: 0xffffffff }]) {
      const p = await forge(body, raw, f);
      expectCorrupt(await rejectionOf(readPack(p.bytes, p.name, s.codec, s.mac)));
    }
  });

  it("an index that is not a list of entries is CorruptError", async () => {
    for (const raw of [encode({ a: 1 }), encode([[1, 2, 3]]), new Uint8Array([0xc1]), new Uint8Array(0)]) {
      const p = await forge(body, raw);
      expectCorrupt(await rejectionOf(readPack(p.bytes, p.name, s.codec, s.mac)));
    }
  });

  it("random bytes named by their own MAC are CorruptError, never another error (property)", async () => {
    await fc.assert(
      fc.asyncProperty(fc.uint8Array({ maxLength: 300 }), async (bytes) => {
        expectCorrupt(await rejectionOf(readPack(bytes, s.mac.mac(bytes), s.codec, s.mac)));
      }),
      { numRuns: 200 },
    );
  });
});

const arbEntry = fc.record({
  type: fc.constantFrom(...Object.values(BlobType)),
  mac: fc.uint8Array({ minLength: 32, maxLength: 32 }),
  offset: fc.oneof(fc.nat(), fc.maxSafeNat()),
  length: fc.oneof(fc.nat({ max: MAX_ENCODED_BLOB }), fc.constant(MAX_ENCODED_BLOB)),
  rawLength: fc.oneof(fc.nat({ max: MAX_RAW_BLOB }), fc.constant(MAX_RAW_BLOB)),
});

describe("encodeIndex / decodeIndex", () => {
  it("round trip (property)", () => {
    fc.assert(
      fc.property(fc.array(arbEntry, { maxLength: 30 }), (entries) => {
        expect(plainEntries(decodeIndex(encodeIndex(entries), "index"))).toEqual(plainEntries(entries));
      }),
      { numRuns: 200 },
    );
  });

  it("rejects malformed entries with CorruptError", () => {
    const mac = new Uint8Array(32);
    const good = [1, mac, 0, 10, 10];
    expect(decodeIndex(encode([good]), "index")).toHaveLength(1);
    const bad: unknown[] = [
      null,
      42,
      "entries",
      { 0: good },
      [good.slice(0, 4)],
      [[...good, 0]],
      [[0, mac, 0, 10, 10]],
      [[8, mac, 0, 10, 10]],
      [["1", mac, 0, 10, 10]],
      [[1.5, mac, 0, 10, 10]],
      [[1, new Uint8Array(31), 0, 10, 10]],
      [[1, new Uint8Array(33), 0, 10, 10]],
      [[1, "mac", 0, 10, 10]],
      [[1, mac, -1, 10, 10]],
      [[1, mac, 0, 1.5, 10]],
      [[1, mac, 0, 10, -10]],
      [[1, mac, 0, 10, 2 ** 53]],
      [[1, mac, 0, MAX_ENCODED_BLOB + 1, 10]],
      [[1, mac, 0, 2 ** 40, 10]],
      [[1, mac, 0, 10, MAX_RAW_BLOB + 1]],
      [[1, mac, 0, 10, "10"]],
      [[1, mac, 0, 10, null]],
      [good, null],
    ];
    for (const v of bad) expectCorrupt(errorOf(() => decodeIndex(encode(v), "index")));
    expectCorrupt(errorOf(() => decodeIndex(new Uint8Array(0), "index")));
    expectCorrupt(errorOf(() => decodeIndex(concat([encode([good]), new Uint8Array([0x90])]), "index")));
  });

  it("random bytes never throw anything but CorruptError (property)", () => {
    fc.assert(
      fc.property(fc.uint8Array({ maxLength: 300 }), (raw) => {
        const e = errorOf(() => decodeIndex(raw, "index"));
        if (e !== undefined) expectCorrupt(e);
      }),
      { numRuns: 1000 },
    );
  });

  it("any msgpack value either decodes to valid entries or is CorruptError (property)", () => {
    fc.assert(
      fc.property(fc.oneof(fc.anything(), fc.array(fc.tuple(fc.integer({ min: -1, max: 9 }), fc.uint8Array({ minLength: 30, maxLength: 33 }), fc.integer(), fc.integer(), fc.integer()))), (v) => {
        let got: BlobEntry[];
        try {
          got = decodeIndex(encode(v), "index");
        } catch (e) {
          expectCorrupt(e);
          return;
        }
        for (const e of got) {
          expect(Object.values(BlobType)).toContain(e.type);
          expect(e.mac.byteLength).toBe(32);
          for (const n of [e.offset, e.length, e.rawLength]) expect(Number.isSafeInteger(n) && n >= 0).toBe(true);
        }
      }),
      { numRuns: 500 },
    );
  });
});
