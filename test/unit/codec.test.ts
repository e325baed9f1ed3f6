/**
 * Tests of the blob codec (src/repository/codec.ts) and of keys and MACs
 * (src/repository/crypto.ts): round trips for every blob type in every
 * mode, compression, tamper detection (any bit flip, truncation, appended
 * bytes, wrong type/name/key), the byte layout of docs/FORMAT.md checked
 * with node:crypto directly, and the MAC functions against node:crypto,
 * hash-wasm and the official BLAKE3 keyed test vectors.
 */
import { createDecipheriv, createHmac, hkdfSync, randomBytes } from "node:crypto";
import { constants as zc, zstdCompressSync, zstdDecompressSync } from "node:zlib";
import fc from "fast-check";
import { blake3 } from "hash-wasm";
import { describe, expect, it } from "vitest";
import { BlobType, Codec, MAX_RAW_BLOB, reusesZstdContexts, type Compression } from "../../src/repository/codec.js";
import { SyncCompressor, SyncDecompressor, zstdFrameEnd } from "../../src/repository/zstd-sync.js";
import { deriveSubkeys, Mac, MAC_SIZE, nativeBlake3, plaintextMasterKey, randomKey, type MacAlgorithm } from "../../src/repository/crypto.js";
import { CofferError, CorruptError } from "../../src/util/errors.js";
import { toHex } from "../../src/util/hex.js";
import { prng } from "../helpers/prng.js";

const TYPES = Object.values(BlobType);
const COMPRESSIONS: Compression[] = ["zstd", "none"];
const HEADER = 6;


/** Highly compressible bytes: a short random motif repeated. */
function repetitive(seed: number, n: number): Uint8Array {
  const motif = prng(seed, 16);
  const out = new Uint8Array(n);
  for (let i = 0; i < n; i++) out[i] = motif[i % 16]!;
  return out;
}

function codecOf(master: Uint8Array, encrypted: boolean, compression: Compression): Codec {
  return new Codec({ keys: deriveSubkeys(master), encrypted, compression });
}

/** Asserts that `p` rejects with a CorruptError (class and code). */
async function expectCorrupt(p: Promise<unknown>): Promise<void> {
  const e = await p.then(
    () => undefined,
    (err: unknown) => err,
  );
  expect(e).toBeInstanceOf(CorruptError);
  expect((e as CofferError).code).toBe("CORRUPT");
}

const arbKey = fc.uint8Array({ minLength: 32, maxLength: 32 });
const arbMac = fc.uint8Array({ minLength: MAC_SIZE, maxLength: MAC_SIZE });
const arbType = fc.constantFrom(...TYPES);
const arbMode = fc.record({ encrypted: fc.boolean(), compression: fc.constantFrom(...COMPRESSIONS) });
/** Data of 0..200 KiB, small sizes favoured, random or repetitive. */
const arbData = fc
  .record({
    len: fc.oneof(fc.integer({ min: 0, max: 300 }), fc.integer({ min: 0, max: 200 * 1024 })),
    seed: fc.integer(),
    compressible: fc.boolean(),
  })
  .map(({ len, seed, compressible }) => (compressible ? repetitive(seed, len) : prng(seed, len)));
const arbSmallData = fc.uint8Array({ minLength: 0, maxLength: 512 });

describe("Codec round trip", () => {
  it("decode(encode(x)) === x for every type, both modes, both compressions (property)", async () => {
    await fc.assert(
      fc.asyncProperty(arbKey, arbType, arbMode, arbMac, arbData, async (master, type, mode, mac, data) => {
        const codec = codecOf(master, mode.encrypted, mode.compression);
        const blob = await codec.encode(type, mac, data);
        const back = await codec.decode(type, mac, blob);
        expect(Buffer.from(back).equals(data)).toBe(true);
        // A second codec with the same keys (a fresh process) reads it too.
        const again = await codecOf(new Uint8Array(master), mode.encrypted, mode.compression).decode(type, mac, blob);
        expect(Buffer.from(again).equals(data)).toBe(true);
      }),
      { numRuns: 80 },
    );
  });

  it("round trips the edge sizes 0, 63, 64, 65 and exactly 200 KiB in every mode", async () => {
    const master = randomKey();
    for (const encrypted of [true, false]) {
      for (const compression of COMPRESSIONS) {
        const codec = codecOf(master, encrypted, compression);
        for (const n of [0, 1, 63, 64, 65, 200 * 1024]) {
          for (const data of [prng(n + 1, n), new Uint8Array(n)]) {
            const mac = randomKey();
            const back = await codec.decode(BlobType.CHUNK, mac, await codec.encode(BlobType.CHUNK, mac, data));
            expect(Buffer.from(back).equals(data)).toBe(true);
          }
        }
      }
    }
  });

  it("encodeSync into a caller's buffer and decodeSync into reused scratch buffers give the same bytes, blob after blob (property)", async () => {
    const master = randomKey();
    const scratchOf = () => {
      let buf = Buffer.allocUnsafe(16).fill(0xcc);
      const get = (n: number) => {
        if (buf.byteLength < n) buf = Buffer.allocUnsafe(n).fill(0xcc);
        return buf.subarray(0, n);
      };
      return { get, holds: (b: Uint8Array) => b.buffer === buf.buffer };
    };
    const payload = scratchOf();
    const raw = scratchOf();
    const sealed = scratchOf();
    await fc.assert(
      fc.asyncProperty(arbMode, arbMac, arbData, async (mode, mac, data) => {
        const codec = codecOf(master, mode.encrypted, mode.compression);
        const into = codec.encodeSync(BlobType.CHUNK, mac, data, sealed.get);
        expect(sealed.holds(into)).toBe(true);
        const blob = new Uint8Array(into); // a copy: the next encode reuses `sealed`
        const back = codec.decodeSync(BlobType.CHUNK, mac, blob, { payload: payload.get, raw: raw.get });
        expect(Buffer.from(back).equals(data)).toBe(true);
        expect(Buffer.from(await codec.decode(BlobType.CHUNK, mac, blob)).equals(data)).toBe(true);
        // compressed: decompressed into the raw scratch; stored and encrypted: the decrypted payload is the data
        if (blob[1] === 1) expect(raw.holds(back)).toBe(true);
        else if (mode.encrypted) expect(payload.holds(back)).toBe(true);
      }),
      { numRuns: 120 },
    );
  });

  it("overhead is 6+16+12+16 encrypted and 6+32 plaintext", () => {
    const keys = deriveSubkeys(randomKey());
    expect(new Codec({ keys, encrypted: true, compression: "none" }).overhead).toBe(50);
    expect(new Codec({ keys, encrypted: false, compression: "zstd" }).overhead).toBe(38);
  });
});

describe("Codec compression", () => {
  it("compressible data gets smaller with zstd and sets flag bit 0", async () => {
    for (const encrypted of [true, false]) {
      const codec = codecOf(randomKey(), encrypted, "zstd");
      for (const data of [new Uint8Array(64 * 1024), repetitive(7, 100_000), Buffer.from("hello world ".repeat(1000))]) {
        const blob = await codec.encode(BlobType.CHUNK, randomKey(), data);
        expect(blob.byteLength).toBeLessThan(data.byteLength / 4);
        expect(blob[1]).toBe(1);
        expect(Buffer.from(blob).readUInt32LE(2)).toBe(data.byteLength);
      }
    }
  });

  it("compression 'none' never compresses: size is raw + overhead, flags 0", async () => {
    for (const encrypted of [true, false]) {
      const codec = codecOf(randomKey(), encrypted, "none");
      const data = new Uint8Array(64 * 1024);
      const blob = await codec.encode(BlobType.TREE, randomKey(), data);
      expect(blob.byteLength).toBe(data.byteLength + codec.overhead);
      expect(blob[1]).toBe(0);
    }
  });

  it("incompressible data and data under 64 bytes are stored uncompressed even with zstd", async () => {
    const codec = codecOf(randomKey(), true, "zstd");
    for (const data of [prng(3, 50_000), new Uint8Array(63)]) {
      const blob = await codec.encode(BlobType.CHUNK, randomKey(), data);
      expect(blob[1]).toBe(0);
      expect(blob.byteLength).toBe(data.byteLength + codec.overhead);
    }
  });
});

describe("Codec compression of large blobs after an incompressible one (a probe first)", () => {
  const MiB = 1 << 20;
  const mixed = Buffer.concat([prng(40, 768 << 10), repetitive(41, 256 << 10)]); // the probe's last slice is in the compressible part
  // [name, data, probe made?, skipped on the probe's word?, stored compressed?]
  const steps: [string, Uint8Array, boolean, boolean, boolean][] = [
    ["random, nothing before", prng(31, MiB), false, false, false],
    ["random after random", prng(32, MiB), true, true, false],
    ["random again", prng(33, 300 << 10), true, true, false],
    ["small random (under 256 KiB)", prng(34, 200 << 10), false, false, false],
    ["compressible after random", repetitive(35, MiB), true, false, true],
    ["compressible after compressible", repetitive(36, MiB), false, false, true],
    ["random after compressible", prng(37, MiB), false, false, false],
    ["random with a compressible end", mixed, true, false, true],
    ["random after that", prng(38, MiB), false, false, false],
    ["random after random, once more", prng(39, MiB), true, true, false],
  ];

  for (const sync of [true, false]) {
    it(`${sync ? "encodeSync" : "encode"}: probes only after an incompressible large blob, skips compressing what the probe finds incompressible, and every blob decodes`, async () => {
      for (const encrypted of [true, false]) {
        const codec = codecOf(randomKey(), encrypted, "zstd");
        const mac = new Uint8Array(MAC_SIZE).fill(9);
        for (const [name, data, probed, skipped, compressed] of steps) {
          const before = { ...codec.probes };
          const blob = sync ? codec.encodeSync(BlobType.CHUNK, mac, data) : await codec.encode(BlobType.CHUNK, mac, data);
          expect({ name, made: codec.probes.made - before.made, skipped: codec.probes.skipped - before.skipped, flags: blob[1] }).toEqual({
            name,
            made: probed ? 1 : 0,
            skipped: skipped ? 1 : 0,
            flags: compressed ? 1 : 0,
          });
          expect(Buffer.from(await codec.decode(BlobType.CHUNK, mac, blob)).equals(data), name).toBe(true);
        }
      }
    });
  }

  it("a repository without compression makes no probes", () => {
    const codec = codecOf(randomKey(), true, "none");
    const mac = new Uint8Array(MAC_SIZE);
    for (const [, data] of steps) expect(codec.encodeSync(BlobType.CHUNK, mac, data)[1]).toBe(0);
    expect(codec.probes).toEqual({ made: 0, skipped: 0 });
  });
});

describe("Codec layout (docs/FORMAT.md, Blob encoding), checked with node:crypto", () => {
  it("plaintext: header | payload | HMAC-SHA256(tag key, header|type|name|payload)", async () => {
    const master = randomKey();
    const keys = deriveSubkeys(master);
    const codec = new Codec({ keys, encrypted: false, compression: "zstd" });
    const mac = randomKey();
    const data = repetitive(1, 5000);
    const blob = Buffer.from(await codec.encode(BlobType.TREE, mac, data));
    expect(blob[0]).toBe(1);
    expect(blob[1]).toBe(1);
    expect(blob.readUInt32LE(2)).toBe(5000);
    const payload = blob.subarray(HEADER, blob.byteLength - 32);
    const ad = Buffer.concat([blob.subarray(0, HEADER), Buffer.from([BlobType.TREE]), mac]);
    const tag = createHmac("sha256", keys.tag).update(ad).update(payload).digest();
    expect(blob.subarray(blob.byteLength - 32).equals(tag)).toBe(true);
    expect(zstdDecompressSync(payload).equals(data)).toBe(true);
  });

  it("encrypted: header | salt | iv | AES-256-GCM(key = HMAC(enc, salt), AD) | tag (payloads encrypted in one piece or several)", async () => {
    const keys = deriveSubkeys(randomKey());
    const codec = new Codec({ keys, encrypted: true, compression: "none" });
    for (const size of [1000, 64 << 10, (64 << 10) + 1, 200_001]) {
      const mac = randomKey();
      const data = prng(9 + size, size);
      const blob = Buffer.from(size % 2 ? codec.encodeSync(BlobType.CHUNK, mac, data) : await codec.encode(BlobType.CHUNK, mac, data));
      expect(blob[0]).toBe(1);
      expect(blob[1]).toBe(0);
      expect(blob.readUInt32LE(2)).toBe(size);
      expect(blob.byteLength).toBe(34 + size + 16);
      const salt = blob.subarray(6, 22);
      const iv = blob.subarray(22, 34);
      const key = createHmac("sha256", keys.enc).update(salt).digest();
      const d = createDecipheriv("aes-256-gcm", key, iv);
      d.setAAD(Buffer.concat([blob.subarray(0, HEADER), Buffer.from([BlobType.CHUNK]), mac]));
      d.setAuthTag(blob.subarray(blob.byteLength - 16));
      const plain = Buffer.concat([d.update(blob.subarray(34, blob.byteLength - 16)), d.final()]);
      expect(plain.equals(data)).toBe(true);
    }
  });

  it("subkeys are HKDF-SHA256(master, empty salt, 'coffer/v1/NAME') and differ from each other", () => {
    const master = randomKey();
    const k = deriveSubkeys(master);
    for (const name of ["mac", "enc", "tag", "gear"] as const) {
      const want = Buffer.from(hkdfSync("sha256", master, new Uint8Array(0), `coffer/v1/${name}`, 32));
      expect(want.equals(k[name])).toBe(true);
    }
    expect(new Set([k.mac, k.enc, k.tag, k.gear].map(toHex)).size).toBe(4);
    const id = randomKey();
    const pm = plaintextMasterKey(id);
    expect(Buffer.from(hkdfSync("sha256", id, new Uint8Array(0), "coffer/v1/plaintext-master", 32)).equals(pm)).toBe(true);
    expect(toHex(plaintextMasterKey(new Uint8Array(id)))).toBe(toHex(pm));
  });
});

describe("Codec tamper detection", () => {
  it("any single-bit flip anywhere is detected with CorruptError (property)", async () => {
    await fc.assert(
      fc.asyncProperty(
        arbKey,
        arbType,
        arbMode,
        arbMac,
        arbSmallData,
        fc.nat(),
        fc.integer({ min: 0, max: 7 }),
        async (master, type, mode, mac, data, where, bit) => {
          const codec = codecOf(master, mode.encrypted, mode.compression);
          const blob = await codec.encode(type, mac, data);
          const bad = new Uint8Array(blob);
          const at = where % bad.byteLength;
          bad[at]! ^= 1 << bit;
          await expectCorrupt(codec.decode(type, mac, bad));
        },
      ),
      { numRuns: 300 },
    );
  });

  it("every bit of a small blob is covered, in every mode", async () => {
    for (const encrypted of [true, false]) {
      for (const compression of COMPRESSIONS) {
        const codec = codecOf(randomKey(), encrypted, compression);
        const mac = randomKey();
        const data = repetitive(5, 100); // compressible: exercises the zstd path too
        const blob = await codec.encode(BlobType.STATE, mac, data);
        for (let i = 0; i < blob.byteLength; i++) {
          for (let bit = 0; bit < 8; bit++) {
            const bad = new Uint8Array(blob);
            bad[i]! ^= 1 << bit;
            await expectCorrupt(codec.decode(BlobType.STATE, mac, bad));
          }
        }
      }
    }
  });

  it("truncation to any shorter length and appending any bytes are detected (property)", async () => {
    await fc.assert(
      fc.asyncProperty(
        arbKey,
        arbType,
        arbMode,
        arbMac,
        arbSmallData,
        fc.nat(),
        fc.uint8Array({ minLength: 1, maxLength: 64 }),
        async (master, type, mode, mac, data, cut, extra) => {
          const codec = codecOf(master, mode.encrypted, mode.compression);
          const blob = await codec.encode(type, mac, data);
          await expectCorrupt(codec.decode(type, mac, blob.subarray(0, cut % blob.byteLength)));
          await expectCorrupt(codec.decode(type, mac, Buffer.concat([blob, extra])));
        },
      ),
      { numRuns: 150 },
    );
  });

  it("the wrong type, the wrong name or a different key is detected (property)", async () => {
    await fc.assert(
      fc.asyncProperty(
        arbKey,
        arbKey,
        fc.uniqueArray(arbType, { minLength: 2, maxLength: 2 }),
        arbMode,
        arbMac,
        arbMac,
        arbSmallData,
        async (master, other, [type, wrongType], mode, mac, wrongMac, data) => {
          fc.pre(toHex(master) !== toHex(other) && toHex(mac) !== toHex(wrongMac));
          const codec = codecOf(master, mode.encrypted, mode.compression);
          const blob = await codec.encode(type!, mac, data);
          await expectCorrupt(codec.decode(wrongType!, mac, blob));
          await expectCorrupt(codec.decode(type!, wrongMac, blob));
          await expectCorrupt(codecOf(other, mode.encrypted, mode.compression).decode(type!, mac, blob));
        },
      ),
      { numRuns: 100 },
    );
  });

  it("a blob read in the other mode (plaintext vs encrypted) is rejected", async () => {
    const master = randomKey();
    const mac = randomKey();
    const data = prng(11, 300);
    const enc = codecOf(master, true, "zstd");
    const plain = codecOf(master, false, "zstd");
    await expectCorrupt(plain.decode(BlobType.CHUNK, mac, await enc.encode(BlobType.CHUNK, mac, data)));
    await expectCorrupt(enc.decode(BlobType.CHUNK, mac, await plain.encode(BlobType.CHUNK, mac, data)));
  });

  it("empty input and a lone header are CORRUPT", async () => {
    for (const encrypted of [true, false]) {
      const codec = codecOf(randomKey(), encrypted, "zstd");
      await expectCorrupt(codec.decode(BlobType.CHUNK, randomKey(), new Uint8Array(0)));
      await expectCorrupt(codec.decode(BlobType.CHUNK, randomKey(), new Uint8Array([1, 0, 0, 0, 0, 0])));
    }
  });

  it("random bytes never decode and never throw anything but CorruptError (property)", async () => {
    await fc.assert(
      fc.asyncProperty(arbKey, arbType, arbMode, arbMac, fc.uint8Array({ maxLength: 200 }), async (master, type, mode, mac, junk) => {
        await expectCorrupt(codecOf(master, mode.encrypted, mode.compression).decode(type, mac, junk));
      }),
      { numRuns: 200 },
    );
  });

  it("authentic blobs whose header lies about lengths or flags are CORRUPT, not a crash", async () => {
    const master = randomKey();
    for (const encrypted of [true, false]) {
      const { codec, mac, data, payload } = await honestBlob(master, encrypted, false);
      // zstd payload, raw length too small (decompression would overflow) and too large
      await expectCorrupt(codec.decode(BlobType.CHUNK, mac, codec.seal(BlobType.CHUNK, mac, 1, 100, payload)));
      await expectCorrupt(codec.decode(BlobType.CHUNK, mac, codec.seal(BlobType.CHUNK, mac, 1, 10_001, payload)));
      await expectCorrupt(codec.decode(BlobType.CHUNK, mac, codec.seal(BlobType.CHUNK, mac, 1, 0, payload)));
      // not zstd at all, but flagged as zstd
      await expectCorrupt(codec.decode(BlobType.CHUNK, mac, codec.seal(BlobType.CHUNK, mac, 1, 50, prng(4, 50))));
      // stored, but the raw length disagrees with the payload
      await expectCorrupt(codec.decode(BlobType.CHUNK, mac, codec.seal(BlobType.CHUNK, mac, 0, 49, prng(4, 50))));
      // unknown flag bits
      await expectCorrupt(codec.decode(BlobType.CHUNK, mac, codec.seal(BlobType.CHUNK, mac, 2, 50, prng(4, 50))));
      // raw length over the 256 MiB bound
      await expectCorrupt(codec.decode(BlobType.CHUNK, mac, codec.seal(BlobType.CHUNK, mac, 1, MAX_RAW_BLOB + 1, payload)));
      // and the honest seal still decodes
      const ok = codec.seal(BlobType.CHUNK, mac, 1, data.byteLength, payload);
      expect(Buffer.from(await codec.decode(BlobType.CHUNK, mac, ok)).equals(data)).toBe(true);
    }
  });
});

/** A zstd codec, a MAC, 10,000 compressible bytes, their blob (encode or encodeSync) and its opened payload: material for lying headers. */
async function honestBlob(master: Uint8Array, encrypted: boolean, sync: boolean) {
  const codec = codecOf(master, encrypted, "zstd");
  const mac = randomKey();
  const data = repetitive(2, 10_000);
  const z = sync ? codec.encodeSync(BlobType.CHUNK, mac, data) : await codec.encode(BlobType.CHUNK, mac, data);
  return { codec, mac, data, z, payload: codec.open(BlobType.CHUNK, mac, z).payload };
}

function expectCorruptSync(f: () => unknown): void {
  let e: unknown;
  try {
    f();
  } catch (err) {
    e = err;
  }
  expect(e).toBeInstanceOf(CorruptError);
  expect((e as CofferError).code).toBe("CORRUPT");
}

describe("zstd contexts kept across calls (zstd-sync.ts)", () => {
  const level3 = { params: { [zc.ZSTD_c_compressionLevel]: 3 } };
  const inputs = (): Uint8Array[] => [
    new Uint8Array(0),
    prng(1, 1),
    repetitive(2, 100),
    prng(3, 5000), // incompressible
    repetitive(4, 70_000),
    repetitive(5, 200 << 10), // more than one 128 KiB block
    Buffer.concat([repetitive(6, 300_000), prng(7, 300_000)]),
  ];

  it("are used on this Node, by encodeSync and decodeSync", () => {
    expect(reusesZstdContexts()).toBe(true);
  });

  it("one compressor gives, call after call, one whole frame per input, as small as the one-shot zstdCompressSync's", () => {
    const c = SyncCompressor.create(3)!;
    for (let round = 0; round < 2; round++) {
      for (const x of inputs()) {
        const z = Buffer.from(c.compress(x)!);
        const oneShot = zstdCompressSync(x, level3);
        // identical up to 256 KiB; above, streaming cuts blocks a little differently
        if (x.byteLength <= 256 << 10) expect(z.equals(oneShot)).toBe(true);
        else expect(z.byteLength).toBeLessThanOrEqual(oneShot.byteLength * 1.001 + 16);
        expect(zstdFrameEnd(z)).toBe(z.byteLength);
        expect(Buffer.from(zstdDecompressSync(z)).equals(x)).toBe(true);
      }
    }
  });

  it("one decompressor gives back every frame, and a frame that is not exactly one complete frame or not of the stated length is refused without harming the next call", () => {
    const d = SyncDecompressor.create()!;
    for (const x of inputs()) {
      const z = zstdCompressSync(x, level3);
      expect(Buffer.from(d.decompress(z, x.byteLength)!).equals(x)).toBe(true);
      if (x.byteLength > 0) {
        expect(d.decompress(z, x.byteLength - 1)).toBeNull(); // decodes to more than stated
        expect(d.decompress(z, x.byteLength + 1)).toBeNull(); // to less
      }
      expect(d.decompress(z.subarray(0, z.byteLength - 1), x.byteLength)).toBeNull(); // truncated
      expect(d.decompress(Buffer.concat([z, Buffer.from([0x28, 0xb5])]), x.byteLength)).toBeNull(); // trailing bytes
      expect(d.decompress(Buffer.concat([z, z]), 2 * x.byteLength)).toBeNull(); // two frames
      expect(Buffer.from(d.decompress(z, x.byteLength)!).equals(x)).toBe(true);
    }
    // A corrupted block inside a well-formed frame: an error from zstd, and the next call still works.
    const x = repetitive(8, 50_000);
    const z = Buffer.from(zstdCompressSync(x, level3));
    let refused = 0;
    for (let i = 12; i < z.byteLength; i++) {
      const bad = Buffer.from(z);
      bad[i]! ^= 0x5a;
      const out = d.decompress(bad, x.byteLength);
      if (out === null) refused++;
      else expect(Buffer.from(out).equals(x)).toBe(false);
      expect(Buffer.from(d.decompress(z, x.byteLength)!).equals(x)).toBe(true);
    }
    expect(refused).toBeGreaterThan(0);
  });

  it("zstdFrameEnd follows the frame header and block headers (RFC 8878) and finds no end in non-frames", () => {
    const x = repetitive(9, 300_000);
    const z = zstdCompressSync(x, { params: { ...level3.params, [zc.ZSTD_c_checksumFlag]: 1 } });
    expect(zstdFrameEnd(z)).toBe(z.byteLength);
    expect(zstdFrameEnd(Buffer.concat([z, Buffer.alloc(7)]))).toBe(z.byteLength);
    for (const cut of [0, 3, 5, 6, 10, z.byteLength - 4, z.byteLength - 1]) expect(zstdFrameEnd(z.subarray(0, cut))).toBe(-1);
    expect(zstdFrameEnd(prng(10, 100))).toBe(-1);
    const reserved = Buffer.from(z);
    reserved[4]! |= 0x08;
    expect(zstdFrameEnd(reserved)).toBe(-1);
    // the checksummed frame also goes through the kept context
    expect(Buffer.from(SyncDecompressor.create()!.decompress(z, x.byteLength)!).equals(x)).toBe(true);
  });

  it("decodeSync turns the same lying blobs as decode into CorruptError, and still decodes the honest one", async () => {
    const master = randomKey();
    for (const encrypted of [true, false]) {
      const { codec, mac, data, z, payload } = await honestBlob(master, encrypted, true);
      for (const rawLength of [100, 10_001, 0, 9_999]) expectCorruptSync(() => codec.decodeSync(BlobType.CHUNK, mac, codec.seal(BlobType.CHUNK, mac, 1, rawLength, payload)));
      expectCorruptSync(() => codec.decodeSync(BlobType.CHUNK, mac, codec.seal(BlobType.CHUNK, mac, 1, 50, prng(4, 50))));
      expectCorruptSync(() => codec.decodeSync(BlobType.CHUNK, mac, codec.seal(BlobType.CHUNK, mac, 1, data.byteLength, payload.subarray(0, payload.byteLength - 2))));
      expect(Buffer.from(codec.decodeSync(BlobType.CHUNK, mac, z)).equals(data)).toBe(true);
      expect(Buffer.from(await codec.decode(BlobType.CHUNK, mac, z)).equals(data)).toBe(true);
    }
  });
});

describe("Codec randomness", () => {
  it("two encrypted encodings of the same data differ (random salt and iv) and both decode", async () => {
    await fc.assert(
      fc.asyncProperty(arbKey, arbType, fc.constantFrom(...COMPRESSIONS), arbMac, arbSmallData, async (master, type, compression, mac, data) => {
        const codec = codecOf(master, true, compression);
        const a = await codec.encode(type, mac, data);
        const b = await codec.encode(type, mac, data);
        expect(Buffer.from(a).equals(b)).toBe(false);
        expect(Buffer.from(a.subarray(6, 34)).equals(b.subarray(6, 34))).toBe(false);
        expect(Buffer.from(await codec.decode(type, mac, a)).equals(data)).toBe(true);
        expect(Buffer.from(await codec.decode(type, mac, b)).equals(data)).toBe(true);
      }),
      { numRuns: 50 },
    );
  });
});

// ---- MACs ----

/** The official BLAKE3 test vector input: byte i is i % 251. */
function vectorInput(n: number): Uint8Array {
  const out = new Uint8Array(n);
  for (let i = 0; i < n; i++) out[i] = i % 251;
  return out;
}

/** First 32 bytes of `keyed_hash` from BLAKE3-team/BLAKE3 test_vectors/test_vectors.json. */
const BLAKE3_KEYED: [number, string][] = [
  [0, "92b2b75604ed3c761f9d6f62392c8a9227ad0ea3f09573e783f1498a4ed60d26"],
  [1, "6d7878dfff2f485635d39013278ae14f1454b8c0a3a2d34bc1ab38228a80c95b"],
  [1023, "c951ecdf03288d0fcc96ee3413563d8a6d3589547f2c2fb36d9786470f1b9d6e"],
  [1024, "75c46f6f3d9eb4f55ecaaee480db732e6c2105546f1e675003687c31719c7ba4"],
  [1025, "357dc55de0c7e382c900fd6e320acc04146be01db6a8ce7210b7189bd664ea69"],
  [2049, "9f29700902f7c86e514ddc4df1e3049f258b2472b6dd5267f61bf13983b78dd5"],
  [4097, "00df940cd36bb9fa7cbbc3556744e0dbc8191401afe70520ba292ee3ca80abbc"],
];
const VECTOR_KEY = new Uint8Array(Buffer.from("whats the Elvish word for friend", "ascii"));

/** Cuts `data` at the given (sorted, deduplicated) offsets. */
function split(data: Uint8Array, cuts: number[]): Uint8Array[] {
  const at = [...new Set(cuts.map((c) => c % (data.byteLength + 1)))].sort((a, b) => a - b);
  const out: Uint8Array[] = [];
  let s = 0;
  for (const c of [...at, data.byteLength]) {
    out.push(data.subarray(s, c));
    s = c;
  }
  return out;
}

const ALGS: MacAlgorithm[] = ["blake3", "hmac-sha256"];
/** An algorithm, a key, data and cut points to split the data at (split()). */
const arbSplitInput = [fc.constantFrom(...ALGS), arbKey, fc.uint8Array({ maxLength: 20_000 }), fc.array(fc.nat(), { maxLength: 12 })] as const;

describe("Mac", () => {
  it("keyed BLAKE3 matches the official test vectors, one-shot and streamed", async () => {
    const m = await Mac.create("blake3", VECTOR_KEY);
    for (const [n, want] of BLAKE3_KEYED) {
      expect(toHex(m.mac(vectorInput(n)))).toBe(want);
      expect(toHex(m.macParts(split(vectorInput(n), [1, 500, 1024])))).toBe(want);
    }
  });

  it("uses the native BLAKE3 where it loads; the hash-wasm fallback gives the same vectors, one-shot and streamed with other MACs between", async () => {
    expect(nativeBlake3()).not.toBeNull();
    expect((await Mac.create("blake3", VECTOR_KEY)).implementation).toBe("native");
    const w = await Mac.create("blake3", VECTOR_KEY, { wasm: true });
    expect(w.implementation).toBe("wasm");
    for (const [n, want] of BLAKE3_KEYED) {
      expect(toHex(w.mac(vectorInput(n)))).toBe(want);
      expect(toHex(w.macParts(split(vectorInput(n), [1, 500, 1024])))).toBe(want);
      const st = w.stream();
      for (const p of split(vectorInput(n), [3, 1025])) {
        st.update([p]);
        w.mac(p);
      }
      expect(toHex(st.digest())).toBe(want);
    }
  });

  it("native and hash-wasm keyed BLAKE3 agree on views at any offset, one-shot and streamed (property)", async () => {
    await fc.assert(
      fc.asyncProperty(arbKey, fc.uint8Array({ maxLength: 9000 }), fc.array(fc.nat(), { maxLength: 8 }), async (key, data, cuts) => {
        const n = await Mac.create("blake3", key);
        const w = await Mac.create("blake3", key, { wasm: true });
        const parts = split(data, cuts);
        expect(toHex(n.macParts(parts))).toBe(toHex(w.macParts(parts)));
        for (const p of parts) expect(toHex(n.mac(p))).toBe(toHex(w.mac(p)));
        const sn = n.stream();
        for (const p of parts) {
          sn.update([p]);
          n.mac(p); // the kept hasher is reset between; the stream's is its own
        }
        expect(toHex(sn.digest())).toBe(toHex(w.mac(data)));
      }),
      { numRuns: 80 },
    );
  });

  it("keyed BLAKE3 equals hash-wasm's blake3(data, 256, key) (property)", async () => {
    await fc.assert(
      fc.asyncProperty(arbKey, fc.uint8Array({ maxLength: 5000 }), async (key, data) => {
        const m = await Mac.create("blake3", key);
        expect(toHex(m.mac(data))).toBe(await blake3(data, 256, key));
      }),
      { numRuns: 60 },
    );
  });

  it("HMAC-SHA256 equals node:crypto createHmac (property)", async () => {
    await fc.assert(
      fc.asyncProperty(arbKey, fc.uint8Array({ maxLength: 5000 }), async (key, data) => {
        const m = await Mac.create("hmac-sha256", key);
        expect(toHex(m.mac(data))).toBe(createHmac("sha256", key).update(data).digest("hex"));
      }),
      { numRuns: 60 },
    );
  });

  it("one-shot mac() equals macParts() over random splits, for both algorithms (property)", async () => {
    await fc.assert(
      fc.asyncProperty(
        ...arbSplitInput,
        async (alg, key, data, cuts) => {
          const m = await Mac.create(alg, key);
          const streamed = m.macParts(split(data, cuts));
          expect(streamed.byteLength).toBe(MAC_SIZE);
          expect(toHex(streamed)).toBe(toHex(m.mac(data)));
        },
      ),
      { numRuns: 100 },
    );
  });

  it("stream() fed in pieces equals mac(), with other MACs and a second stream interleaved, native and hash-wasm (property)", async () => {
    await fc.assert(
      fc.asyncProperty(
        ...arbSplitInput,
        fc.uint8Array({ maxLength: 3000 }),
        fc.boolean(),
        async (alg, key, data, cuts, other, wasm) => {
          const m = await Mac.create(alg, key, { wasm });
          const a = m.stream();
          const b = m.stream();
          const pieces = split(data, cuts);
          for (const [i, p] of pieces.entries()) {
            a.update(i % 2 === 0 ? [p] : [p.subarray(0, 1), p.subarray(1)]);
            b.update([other]);
            // a one-shot MAC between updates uses the same hasher
            expect(toHex(m.mac(other))).toBe(toHex(m.macParts([other])));
          }
          expect(toHex(a.digest())).toBe(toHex(m.mac(data)));
          expect(toHex(b.digest())).toBe(toHex(m.macParts(pieces.map(() => other))));
        },
      ),
      { numRuns: 60 },
    );
  });

  it("successive MACs from one Mac do not leak state into each other", async () => {
    for (const alg of ALGS) {
      const m = await Mac.create(alg, randomKey());
      const first = toHex(m.macParts([Buffer.from("hello "), Buffer.from("world")]));
      m.mac(Buffer.from("something else in between"));
      expect(toHex(m.mac(Buffer.from("hello world")))).toBe(first);
    }
  });

  it("different keys give different MACs; the two algorithms differ (property)", async () => {
    await fc.assert(
      fc.asyncProperty(fc.constantFrom(...ALGS), arbKey, arbKey, fc.uint8Array({ maxLength: 1000 }), async (alg, k1, k2, data) => {
        fc.pre(toHex(k1) !== toHex(k2));
        const a = await Mac.create(alg, k1);
        const b = await Mac.create(alg, k2);
        expect(toHex(a.mac(data))).not.toBe(toHex(b.mac(data)));
        const other = await Mac.create(alg === "blake3" ? "hmac-sha256" : "blake3", k1);
        expect(toHex(other.mac(data))).not.toBe(toHex(a.mac(data)));
      }),
      { numRuns: 60 },
    );
  });

  it("different data gives different MACs and mac() is deterministic", async () => {
    for (const alg of ALGS) {
      const m = await Mac.create(alg, randomKey());
      const data = new Uint8Array(randomBytes(1000));
      const first = toHex(m.mac(data));
      expect(toHex(m.mac(new Uint8Array(data)))).toBe(first);
      data[999]! ^= 1;
      expect(toHex(m.mac(data))).not.toBe(first);
    }
  });

  it("an unknown algorithm is refused", async () => {
    await expect(Mac.create("md5" as MacAlgorithm, randomKey())).rejects.toBeInstanceOf(TypeError);
  });
});
