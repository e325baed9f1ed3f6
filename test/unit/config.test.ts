/**
 * Tests of the repository configuration (src/repository/config.ts): encode /
 * decode round trips, unlocking (right, wrong and missing passphrases,
 * plaintext repositories), the checksum that tells damage apart from a wrong
 * passphrase, format versions, the wrapped-key layout and the version-2 MAC
 * of docs/FORMAT.md re-derived with node:crypto, alterations of a version-2
 * configuration, and passphrases as bytes. The KDF is kept tiny so tests
 * stay fast.
 */
import { argon2Sync, createDecipheriv, createHash, createHmac, hkdfSync } from "node:crypto";
import { decode, encode } from "@msgpack/msgpack";
import fc from "fast-check";
import { describe, expect, it } from "vitest";
import {
  CONFIG_MAGIC,
  DEFAULT_KDF,
  decodeConfig,
  encodeConfig,
  legacyKeyId,
  FORMAT_VERSION,
  newConfig,
  passphraseBytes,
  sealConfig,
  unlock,
  type NewConfigOptions,
  type RepositoryConfig,
} from "../../src/repository/config.js";
import { plaintextMasterKey } from "../../src/repository/crypto.js";
import { CofferError, CorruptError } from "../../src/util/errors.js";
import { toHex } from "../../src/util/hex.js";

const KDF = { memory: 8192, passes: 1, parallelism: 1 };
const CHUNKING = { min: 512, avg: 1024, max: 4096 };

function opts(passphrase: string | Uint8Array | null, over: Partial<NewConfigOptions> = {}): NewConfigOptions {
  return { chunking: CHUNKING, mac: "blake3", compression: "zstd", passphrase, kdf: KDF, ...over };
}

function errorOf(f: () => unknown): unknown {
  try {
    f();
  } catch (e) {
    return e;
  }
  return undefined;
}

async function rejectionOf(p: Promise<unknown>): Promise<unknown> {
  return p.then(
    () => undefined,
    (e: unknown) => e,
  );
}

function expectCode(e: unknown, code: string): void {
  expect(e).toBeInstanceOf(CofferError);
  expect((e as CofferError).code).toBe(code);
}

function expectCorrupt(e: unknown): void {
  expect(e).toBeInstanceOf(CorruptError);
  expect((e as CofferError).code).toBe("CORRUPT");
}

/** A config file with the given version byte and body, and a valid checksum. */
/** Deep copy with every byte array as a plain Uint8Array (decode may hand back Buffers). */
function plain(v: unknown): unknown {
  if (v instanceof Uint8Array) return new Uint8Array(v);
  if (Array.isArray(v)) return v.map(plain);
  if (typeof v === "object" && v !== null) return Object.fromEntries(Object.entries(v).map(([k, x]) => [k, plain(x)]));
  return v;
}

/** A config file: magic | version | body | (version 2: `mac`, zeros unless given) | valid checksum. */
function craft(body: Uint8Array, version = 1, mac: Uint8Array = new Uint8Array(32)): Uint8Array {
  const head = Buffer.concat([Buffer.from(CONFIG_MAGIC, "ascii"), Buffer.from([version]), body, version >= 2 ? mac : new Uint8Array(0)]);
  return new Uint8Array(Buffer.concat([head, createHash("sha256").update(head).digest()]));
}

/** The msgpack body of an encoded config (between the version byte and the MAC or checksum). */
function bodyOf(bytes: Uint8Array): Uint8Array {
  return bytes.subarray(9, bytes.byteLength - 32 - (bytes[8]! >= 2 ? 32 : 0));
}

/** The version-2 MAC of an encoded config. */
function macOf(bytes: Uint8Array): Uint8Array {
  return bytes.subarray(bytes.byteLength - 64, bytes.byteLength - 32);
}

/**
 * What someone without the passphrase can do: decode the body, change it,
 * and write it back under the same version byte and MAC with the checksum
 * recomputed.
 */
function forge(bytes: Uint8Array, change: (body: Record<string, unknown>) => void, o: { version?: number } = {}): Uint8Array {
  const body = decode(bodyOf(bytes), { useBigInt64: true }) as Record<string, unknown>;
  change(body);
  const version = o.version ?? bytes[8]!;
  return craft(encode(body, { useBigInt64: true }), version, bytes[8]! >= 2 ? macOf(bytes) : new Uint8Array(32));
}

// Built once: argon2 even at 8 MiB costs a few ms per call.
const encrypted = await newConfig(opts("correct horse battery staple"));
const plaintext = await newConfig(opts(null, { mac: "hmac-sha256", compression: "none", packSize: 65536 }));
// What coffer wrote before version 2 (the fixture test/fixtures/v1-repo is one).
const encryptedV1 = await newConfig(opts("correct horse battery staple", { version: 1 }));
const plaintextV1 = await newConfig(opts(null, { version: 1 }));

describe("newConfig", () => {
  it("fills every field from the options", () => {
    const c = encrypted.config;
    expect(c.version).toBe(FORMAT_VERSION);
    expect(c.id.byteLength).toBe(32);
    expect(c.chunking).toEqual(CHUNKING);
    expect(c.mac).toBe("blake3");
    expect(c.compression).toBe("zstd");
    expect(c.encryption?.keys[0]?.kdf).toMatchObject({ algorithm: "argon2id", ...KDF });
    expect(c.encryption?.keys[0]?.kdf.salt.byteLength).toBe(16);
    expect(c.encryption?.keys[0]?.wrappedKey.byteLength).toBe(60);
    expect(encrypted.masterKey.byteLength).toBe(32);
    const now = BigInt(Date.now()) * 1_000_000n;
    expect(c.createdNs <= now && c.createdNs > now - 60_000_000_000n).toBe(true);
    expect(plaintext.config.encryption).toBeNull();
    expect(plaintext.config.packSize).toBe(65536);
    expect(FORMAT_VERSION).toBe(2);
    expect(c.configMac?.byteLength).toBe(32);
    expect(plaintext.config.configMac?.byteLength).toBe(32);
    expect(encryptedV1.config.version).toBe(1);
    expect(encryptedV1.config.configMac).toBeNull();
  });

  it("gives each repository a fresh id, salt and master key", async () => {
    const again = await newConfig(opts("correct horse battery staple"));
    expect(toHex(again.config.id)).not.toBe(toHex(encrypted.config.id));
    expect(toHex(again.masterKey)).not.toBe(toHex(encrypted.masterKey));
    expect(toHex(again.config.encryption!.keys[0]!.kdf.salt)).not.toBe(toHex(encrypted.config.encryption!.keys[0]!.kdf.salt));
  });

  it("wraps the master key as FORMAT.md says: iv | AES-256-GCM(argon2id(passphrase)) | tag, AD 'coffer/vN/master-key'", () => {
    for (const [made, aad] of [
      [encrypted, "coffer/v2/master-key"],
      [encryptedV1, "coffer/v1/master-key"],
    ] as const) {
      const enc = made.config.encryption!.keys[0]!;
      const kek = argon2Sync("argon2id", {
        message: Buffer.from("correct horse battery staple", "utf8"),
        nonce: enc.kdf.salt,
        parallelism: enc.kdf.parallelism,
        tagLength: 32,
        memory: enc.kdf.memory,
        passes: enc.kdf.passes,
      });
      const w = Buffer.from(enc.wrappedKey);
      const d = createDecipheriv("aes-256-gcm", kek, w.subarray(0, 12));
      d.setAAD(Buffer.from(aad, "ascii"));
      d.setAuthTag(w.subarray(44));
      const key = Buffer.concat([d.update(w.subarray(12, 44)), d.final()]);
      expect(toHex(key)).toBe(toHex(made.masterKey));
    }
  });

  it("seals version 2 as FORMAT.md says: HMAC-SHA256(HKDF(master, 'coffer/v2/config'), magic | 2 | body) before the checksum", () => {
    for (const made of [encrypted, plaintext]) {
      const bytes = encodeConfig(made.config);
      const key = Buffer.from(hkdfSync("sha256", made.masterKey, new Uint8Array(0), "coffer/v2/config", 32));
      const mac = createHmac("sha256", key).update(bytes.subarray(0, bytes.byteLength - 64)).digest();
      expect(toHex(macOf(bytes))).toBe(toHex(mac));
      expect(toHex(made.config.configMac!)).toBe(toHex(mac));
      expect(toHex(bytes.subarray(bytes.byteLength - 32))).toBe(createHash("sha256").update(bytes.subarray(0, bytes.byteLength - 32)).digest("hex"));
    }
  });
});

describe("encodeConfig / decodeConfig", () => {
  it("round trips encrypted and plaintext configurations", () => {
    for (const { config } of [encrypted, plaintext, encryptedV1, plaintextV1]) {
      const bytes = encodeConfig(config);
      expect(Buffer.from(bytes.subarray(0, 8)).toString("ascii")).toBe(CONFIG_MAGIC);
      expect(bytes[8]).toBe(config.version);
      const back = decodeConfig(bytes);
      expect(plain(back)).toEqual(plain(config));
      // and encodes to the same bytes again
      expect(toHex(encodeConfig(back))).toBe(toHex(bytes));
    }
  });

  it("round trips arbitrary valid field values (property)", () => {
    fc.assert(
      fc.property(
        fc.uint8Array({ minLength: 32, maxLength: 32 }),
        fc.bigInt({ min: 0n, max: (1n << 63n) - 1n }),
        // valid chunking per FORMAT.md: avg a power of two in [2^4, 2^28], 1 <= min <= avg <= max <= 2^30
        fc
          .integer({ min: 4, max: 28 })
          .chain((b) => fc.record({ min: fc.integer({ min: 1, max: 2 ** b }), avg: fc.constant(2 ** b), max: fc.integer({ min: 2 ** b, max: 2 ** 30 }) })),
        fc.constantFrom("blake3" as const, "hmac-sha256" as const),
        fc.constantFrom("zstd" as const, "none" as const),
        fc.integer({ min: 1, max: 2 ** 31 }),
        fc.option(fc.uint8Array({ minLength: 32, maxLength: 32 }), { nil: null }),
        fc.option(
          // argon2id needs memory >= 8 KiB per lane
          fc.integer({ min: 1, max: 16 }).chain((parallelism) =>
            fc.record({
              memory: fc.integer({ min: 8 * parallelism, max: 2 ** 22 }),
              passes: fc.integer({ min: 1, max: 10 }),
              parallelism: fc.constant(parallelism),
              salt: fc.uint8Array({ minLength: 16, maxLength: 16 }),
              wrappedKey: fc.uint8Array({ minLength: 60, maxLength: 60 }),
            }),
          ),
          { nil: null },
        ),
        (id, createdNs, chunking, mac, compression, packSize, configMac, e) => {
          const config: RepositoryConfig = {
            // version 1 has no MAC, version 2 always one
            version: configMac === null ? 1 : 2,
            configMac,
            id,
            createdNs,
            chunking,
            mac,
            compression,
            packSize,
            encryption:
              e === null
                ? null
                : {
                    cipher: "aes-256-gcm",
                    keys: [
                      {
                        // what a version-1 or -2 configuration's one key is named with (it stores no name)
                        id: legacyKeyId(e.wrappedKey),
                        host: "",
                        user: "",
                        createdMs: Number(createdNs / 1_000_000n),
                        kdf: { algorithm: "argon2id", memory: e.memory, passes: e.passes, parallelism: e.parallelism, salt: e.salt },
                        wrappedKey: e.wrappedKey,
                      },
                    ],
                  },
          };
          expect(plain(decodeConfig(encodeConfig(config)))).toEqual(plain(config));
        },
      ),
      { numRuns: 200 },
    );
  });

  it("a flipped byte anywhere is CORRUPT, never WRONG_PASSPHRASE (every offset, several masks)", async () => {
    for (const { config } of [encrypted, plaintext, encryptedV1]) {
      const bytes = encodeConfig(config);
      for (let i = 0; i < bytes.byteLength; i++) {
        for (const mask of [0x01, 0x80, 0xff]) {
          const bad = new Uint8Array(bytes);
          bad[i]! ^= mask;
          expectCorrupt(errorOf(() => decodeConfig(bad)));
        }
      }
    }
  });

  it("a flipped bit then unlock with the right passphrase is never WRONG_PASSPHRASE (property)", async () => {
    const bytes = encodeConfig(encrypted.config);
    await fc.assert(
      fc.asyncProperty(fc.nat(), fc.integer({ min: 0, max: 7 }), async (where, bit) => {
        const bad = new Uint8Array(bytes);
        bad[where % bad.byteLength]! ^= 1 << bit;
        const e = await rejectionOf((async () => unlock(decodeConfig(bad), "correct horse battery staple"))());
        expectCorrupt(e);
      }),
      { numRuns: 100 },
    );
  });

  it("truncated, extended, empty and foreign inputs are CORRUPT", () => {
    const bytes = encodeConfig(plaintext.config);
    for (let n = 0; n < bytes.byteLength; n += 7) expectCorrupt(errorOf(() => decodeConfig(bytes.subarray(0, n))));
    expectCorrupt(errorOf(() => decodeConfig(bytes.subarray(0, bytes.byteLength - 1))));
    expectCorrupt(errorOf(() => decodeConfig(Buffer.concat([bytes, Buffer.from([0])]))));
    expectCorrupt(errorOf(() => decodeConfig(new Uint8Array(0))));
    expectCorrupt(errorOf(() => decodeConfig(Buffer.from("PK\x03\x04 this is a zip file, not a coffer config at all......"))));
  });

  it("an unknown version with a valid checksum is UNSUPPORTED", () => {
    const body = bodyOf(encodeConfig(encrypted.config));
    for (const v of [0, 4, 255]) expectCode(errorOf(() => decodeConfig(craft(body, v))), "UNSUPPORTED");
    // the same body under version 1 and 2 decodes
    expect(decodeConfig(craft(body)).packSize).toBe(encrypted.config.packSize);
    expect(decodeConfig(craft(body, 2)).packSize).toBe(encrypted.config.packSize);
  });

  it("a version-2 configuration too short to hold its MAC is CORRUPT", () => {
    const head = Buffer.concat([Buffer.from(CONFIG_MAGIC, "ascii"), Buffer.from([2]), Buffer.alloc(10)]);
    expectCorrupt(errorOf(() => decodeConfig(Buffer.concat([head, createHash("sha256").update(head).digest()]))));
  });

  it("a version-2 configuration without its MAC cannot be encoded", () => {
    expect(errorOf(() => encodeConfig({ ...encrypted.config, configMac: null }))).toBeInstanceOf(TypeError);
    expect(errorOf(() => encodeConfig({ ...encrypted.config, version: 4 }))).toBeInstanceOf(TypeError);
  });

  it("a well-formed checksum over a bad body is CORRUPT", () => {
    const good = {
      version: 1,
      id: new Uint8Array(32),
      created: 1n,
      chunking: CHUNKING,
      mac: "blake3",
      compression: "zstd",
      packSize: 1024,
      encryption: null,
    };
    const bodies: Record<string, unknown>[] = [
      { ...good, id: "not bytes" },
      { ...good, chunking: { min: 0, avg: 1, max: 1 } },
      { ...good, chunking: { min: 512, avg: 1000, max: 4096 } }, // avg not a power of two
      { ...good, chunking: { min: 2048, avg: 1024, max: 4096 } }, // min > avg
      { ...good, chunking: { min: 512, avg: 1024, max: 512 } }, // max < avg
      { ...good, chunking: { min: 1, avg: 8, max: 8 } }, // avg < 2^4
      { ...good, chunking: { min: 1, avg: 1024, max: 2 ** 30 + 1 } }, // max > 2^30
      { ...good, chunking: undefined },
      { ...good, mac: "md5" },
      { ...good, compression: "gzip" },
      { ...good, packSize: -1 },
      { ...good, packSize: 1.5 },
      { ...good, created: "yesterday" },
      { ...good, encryption: undefined },
      { ...good, encryption: { kdf: { algorithm: "scrypt", salt: new Uint8Array(16) }, cipher: "aes-256-gcm", wrappedKey: new Uint8Array(60) } },
      { ...good, encryption: { kdf: { algorithm: "argon2id", salt: new Uint8Array(16) }, cipher: "aes-256-gcm", wrappedKey: new Uint8Array(59) } },
      { ...good, encryption: { kdf: { algorithm: "argon2id", salt: new Uint8Array(16) }, cipher: "chacha", wrappedKey: new Uint8Array(60) } },
      { ...good, encryption: { kdf: { algorithm: "argon2id", salt: "salt" }, cipher: "aes-256-gcm", wrappedKey: new Uint8Array(60) } },
    ];
    for (const version of [1, 2]) {
      // the reference body is accepted, so each rejection below is due to its one bad field
      expect(decodeConfig(craft(encode(good, { useBigInt64: true }), version)).packSize).toBe(1024);
      // (undefined fields are left out of the map: the key is missing, not nil)
      for (const b of bodies) expectCorrupt(errorOf(() => decodeConfig(craft(encode(b, { useBigInt64: true, ignoreUndefined: true }), version))));
    }
    // not msgpack at all, and trailing garbage after the map
    expectCorrupt(errorOf(() => decodeConfig(craft(new Uint8Array([0xc1])))));
    expectCorrupt(errorOf(() => decodeConfig(craft(Buffer.concat([encode(good, { useBigInt64: true }), Buffer.from([0])])))));
  });

  it("a valid msgpack body that is not a map (number, string, array) is CORRUPT", () => {
    for (const v of [42, "config", [1, 2, 3], true]) expectCorrupt(errorOf(() => decodeConfig(craft(encode(v)))));
  });

  // Regression (fixed): src/repository/config.ts decodeConfig reads `o.chunking` (line 152) without checking that the
  // decoded body is an object: a checksummed body that is msgpack nil (0xc0) throws a TypeError
  // ("Cannot read properties of null") instead of CorruptError.
  it("a valid msgpack nil body is CORRUPT (not a TypeError)", () => {
    expectCorrupt(errorOf(() => decodeConfig(craft(new Uint8Array([0xc0])))));
  });

  // Regression (fixed): src/repository/config.ts decodeConfig (line 171) checks kdf.algorithm and kdf.salt but not
  // kdf.memory / passes / parallelism nor the salt length: such a config decodes, and unlock() then
  // fails inside node:crypto argon2 with a TypeError/RangeError instead of CORRUPT at decode time.
  it("encryption parameters with missing or invalid KDF numbers are CORRUPT at decode", async () => {
    const { config } = encrypted;
    const enc = config.encryption!.keys[0]!;
    const body = (kdf: Record<string, unknown>) =>
      encode(
        {
          version: 1,
          id: config.id,
          created: config.createdNs,
          chunking: config.chunking,
          mac: config.mac,
          compression: config.compression,
          packSize: config.packSize,
          encryption: { kdf, cipher: "aes-256-gcm", wrappedKey: enc.wrappedKey },
        },
        { useBigInt64: true },
      );
    const kdfs: Record<string, unknown>[] = [
      { algorithm: "argon2id", salt: enc.kdf.salt },
      { ...enc.kdf, memory: "lots" },
      { ...enc.kdf, passes: 0 },
      { ...enc.kdf, parallelism: -1 },
      { ...enc.kdf, salt: new Uint8Array(0) },
    ];
    for (const kdf of kdfs) {
      let e: unknown = errorOf(() => decodeConfig(craft(body(kdf))));
      if (e === undefined) e = await rejectionOf(unlock(decodeConfig(craft(body(kdf))), "correct horse battery staple"));
      expectCorrupt(e);
    }
  });

  it("random bodies under a valid checksum never throw anything but CORRUPT (property)", () => {
    fc.assert(
      fc.property(fc.uint8Array({ maxLength: 200 }), (body) => {
        fc.pre(!(body.byteLength === 1 && body[0] === 0xc0)); // the nil body: the BUG test above
        expectCorrupt(errorOf(() => decodeConfig(craft(body))));
      }),
      { numRuns: 300 },
    );
  });
});

describe("unlock", () => {
  it("returns the master key for the right passphrase, also after a round trip", async () => {
    expect(toHex(await unlock(encrypted.config, "correct horse battery staple"))).toBe(toHex(encrypted.masterKey));
    const decoded = decodeConfig(encodeConfig(encrypted.config));
    expect(toHex(await unlock(decoded, "correct horse battery staple"))).toBe(toHex(encrypted.masterKey));
  });

  it("a wrong passphrase is WRONG_PASSPHRASE", async () => {
    const decoded = decodeConfig(encodeConfig(encrypted.config));
    for (const p of ["", "correct horse battery stapl", "Correct horse battery staple", "correct horse battery staple "]) {
      expectCode(await rejectionOf(unlock(decoded, p)), "WRONG_PASSPHRASE");
    }
  });

  it("a configuration with parameters other than the default unlocks with its own parameters", async () => {
    // As a repository created before the default changed (or with --kdf-memory/--kdf-passes):
    // every KDF number differs from DEFAULT_KDF, and the key is wrapped by hand under exactly them.
    const own = { memory: 16384, passes: 2, parallelism: 1 };
    for (const k of ["memory", "passes", "parallelism"] as const) expect(own[k]).not.toBe(DEFAULT_KDF[k]);
    const made = await newConfig(opts("old repo", { kdf: own }));
    const decoded = decodeConfig(encodeConfig(made.config));
    expect(decoded.encryption?.keys[0]?.kdf).toMatchObject({ algorithm: "argon2id", ...own });
    expect(toHex(await unlock(decoded, "old repo"))).toBe(toHex(made.masterKey));
    // The recorded parameters are what unwraps it: the same salt under DEFAULT_KDF does not.
    const key = decoded.encryption!.keys[0]!;
    const asDefault: RepositoryConfig = { ...decoded, encryption: { ...decoded.encryption!, keys: [{ ...key, kdf: { ...key.kdf, ...DEFAULT_KDF } }] } };
    expectCode(await rejectionOf(unlock(asDefault, "old repo")), "WRONG_PASSPHRASE");
  });

  it("a new configuration without KDF options gets RFC 9106's second recommended option", async () => {
    expect(DEFAULT_KDF).toEqual({ memory: 64 * 1024, passes: 3, parallelism: 4 });
    const { kdf: _omit, ...noKdf } = opts("default");
    const made = await newConfig(noKdf);
    expect(made.config.encryption?.keys[0]?.kdf).toMatchObject({ algorithm: "argon2id", memory: 65536, passes: 3, parallelism: 4 });
    expect(made.config.encryption?.keys[0]?.kdf.salt.byteLength).toBe(16);
    expect(toHex(await unlock(decodeConfig(encodeConfig(made.config)), "default"))).toBe(toHex(made.masterKey));
  });

  it("a null passphrase for an encrypted repository is NO_PASSPHRASE", async () => {
    expectCode(await rejectionOf(unlock(encrypted.config, null)), "NO_PASSPHRASE");
  });

  it("non-ASCII and empty passphrases work as UTF-8", async () => {
    for (const p of ["pässwörd ✓ 密码 🔐", ""]) {
      const { config, masterKey } = await newConfig(opts(p));
      const back = decodeConfig(encodeConfig(config));
      expect(toHex(await unlock(back, p))).toBe(toHex(masterKey));
      expectCode(await rejectionOf(unlock(back, p + "x")), "WRONG_PASSPHRASE");
    }
    // NFC vs NFD spellings are different byte strings, hence different passphrases
    const { config } = await newConfig(opts("caf\u00e9"));
    expectCode(await rejectionOf(unlock(config, "cafe\u0301")), "WRONG_PASSPHRASE");
  });

  it("a plaintext configuration unlocks without passphrase, with a key stable for its id", async () => {
    const { config, masterKey } = plaintext;
    const k1 = await unlock(config, null);
    const k2 = await unlock(decodeConfig(encodeConfig(config)), null);
    const k3 = await unlock(config, "ignored");
    expect(toHex(k1)).toBe(toHex(masterKey));
    expect(toHex(k2)).toBe(toHex(masterKey));
    expect(toHex(k3)).toBe(toHex(masterKey));
    expect(toHex(k1)).toBe(toHex(plaintextMasterKey(config.id)));
    // another plaintext repository (another id) has another key
    const other = await newConfig(opts(null));
    expect(toHex(await unlock(other.config, null))).not.toBe(toHex(k1));
  });

  it("the wrong passphrase on a tampered-but-rechecksummed wrapped key is WRONG_PASSPHRASE, not a crash", async () => {
    // The checksum is not a MAC: a rewritten file with a fixed-up checksum gets past it.
    const c: RepositoryConfig = structuredClone(encrypted.config);
    c.encryption!.keys[0]!.wrappedKey[20]! ^= 1;
    const back = decodeConfig(encodeConfig(c));
    expectCode(await rejectionOf(unlock(back, "correct horse battery staple")), "WRONG_PASSPHRASE");
  });
});

describe("a version-2 configuration altered by someone without the passphrase", () => {
  const PASS = "correct horse battery staple";
  const bytes = encodeConfig(encrypted.config);

  /** The detail CORRUPT errors of the configuration carry for the CLI (which names the location). */
  function expectAltered(e: unknown): void {
    expectCorrupt(e);
    expect((e as CofferError).message).toMatch(/^repository configuration: it was altered or damaged/);
    expect((e as CofferError).data.configDetail).toMatch(/^it was altered or damaged/);
  }

  const changes: [string, (b: Record<string, unknown>) => void][] = [
    ["compression", (b) => (b.compression = "none")],
    ["chunking", (b) => (b.chunking = { min: 512, avg: 2048, max: 4096 })],
    ["packSize", (b) => (b.packSize = 4096)],
    ["mac", (b) => (b.mac = "hmac-sha256")],
    ["id", (b) => (b.id = new Uint8Array(32))],
    ["created", (b) => (b.created = 1n)],
    ["an added key", (b) => (b.extra = "x")],
  ];

  it("decodes (the checksum is fixed up) but unlock with the right passphrase is CORRUPT, naming it altered", async () => {
    for (const [what, change] of changes) {
      const forged = decodeConfig(forge(bytes, change));
      expectAltered(await rejectionOf(unlock(forged, PASS)).then((e) => (e === undefined ? new Error(`${what}: unlocked`) : e)));
      // and with a wrong passphrase it is what it always was
      expectCode(await rejectionOf(unlock(forged, "not it")), "WRONG_PASSPHRASE");
    }
  });

  it("a field changed in memory and encoded again with the old MAC is CORRUPT too", async () => {
    const c: RepositoryConfig = { ...structuredClone(encrypted.config), packSize: 4096 };
    expectAltered(await rejectionOf(unlock(decodeConfig(encodeConfig(c)), PASS)));
    expectAltered(await rejectionOf(unlock(c, PASS)));
  });

  it("the MAC covers the exact bytes read: keys this coffer does not know are authenticated, and ignored", async () => {
    // as a later coffer might write: an extra key, sealed with the key
    const body = decode(bodyOf(bytes), { useBigInt64: true }) as Record<string, unknown>;
    const head = Buffer.concat([Buffer.from(CONFIG_MAGIC, "ascii"), Buffer.from([2]), encode({ ...body, future: [1, 2, 3] }, { useBigInt64: true })]);
    const key = Buffer.from(hkdfSync("sha256", encrypted.masterKey, new Uint8Array(0), "coffer/v2/config", 32));
    const later = decodeConfig(craft(head.subarray(9), 2, createHmac("sha256", key).update(head).digest()));
    expect(toHex(await unlock(later, PASS))).toBe(toHex(encrypted.masterKey));
    // the same bytes with that key removed (and the MAC kept) are altered
    const stripped = decodeConfig(forge(craft(head.subarray(9), 2, createHmac("sha256", key).update(head).digest()), (b) => delete b.future));
    expectAltered(await rejectionOf(unlock(stripped, PASS)));
  });

  it("a flipped MAC byte is CORRUPT at unlock, never WRONG_PASSPHRASE", async () => {
    const bad = new Uint8Array(bytes);
    bad[bad.byteLength - 40]! ^= 1;
    expectAltered(await rejectionOf(unlock(decodeConfig(craft(bodyOf(bad), 2, macOf(bad))), PASS)));
  });

  it("rewritten as version 1 (no MAC to check) it does not unlock: CORRUPT, its key was sealed for version 2", async () => {
    for (const change of [(b: Record<string, unknown>) => (b.version = 1), (b: Record<string, unknown>) => ((b.version = 1), (b.compression = "none"))]) {
      const down = decodeConfig(forge(bytes, change, { version: 1 }));
      expect(down.version).toBe(1);
      const e = await rejectionOf(unlock(down, PASS));
      expectAltered(e);
      expect((e as Error).message).toContain("sealed for version 2");
      expectCode(await rejectionOf(unlock(down, "not it")), "WRONG_PASSPHRASE");
    }
    // and a version-1 configuration relabelled version 2 (with any MAC) neither
    const up = decodeConfig(forge(encodeConfig(encryptedV1.config), () => {}, { version: 2 }));
    expectAltered(await rejectionOf(unlock(up, PASS)));
  });

  it("a plaintext version-2 configuration is checked too, but its MAC key is public (accidents only)", async () => {
    const pbytes = encodeConfig(plaintext.config);
    expectAltered(await rejectionOf(unlock(decodeConfig(forge(pbytes, (b) => (b.packSize = 4096))), null)));
    // anyone can re-seal it: the key derives from the repository ID
    const resealed = sealConfig({ ...plaintext.config, packSize: 4096 }, plaintextMasterKey(plaintext.config.id));
    expect(toHex(await unlock(decodeConfig(encodeConfig(resealed)), null))).toBe(toHex(plaintext.masterKey));
    // and so can anyone turn an encrypted configuration into a plaintext one: what the CLI refuses (docs/CLI.md)
    const downgraded = sealConfig({ ...encrypted.config, encryption: null }, plaintextMasterKey(encrypted.config.id));
    expect(decodeConfig(encodeConfig(downgraded)).encryption).toBeNull();
  });

  it("version 1 authenticates none of its fields: a changed one unlocks (documented in FORMAT.md)", async () => {
    const v1 = encodeConfig(encryptedV1.config);
    const forged = decodeConfig(forge(v1, (b) => (b.compression = "none")));
    expect(forged.compression).toBe("none");
    expect(toHex(await unlock(forged, PASS))).toBe(toHex(encryptedV1.masterKey));
  });
});

describe("passphrases are bytes", () => {
  const a = Buffer.from("caf\xe9-secret-\xe0\xe8\xec", "latin1");
  const b = Buffer.from("caf\xf1-secret-\xff\xfe\xfd", "latin1");

  it("two byte strings that UTF-8 decoding would both turn into the same U+FFFD string are two passphrases", async () => {
    expect(a.toString("utf8")).toBe(b.toString("utf8"));
    for (const version of [1, 2] as const) {
      const { config, masterKey } = await newConfig(opts(new Uint8Array(a), { version }));
      const back = decodeConfig(encodeConfig(config));
      expect(toHex(await unlock(back, new Uint8Array(a)))).toBe(toHex(masterKey));
      expectCode(await rejectionOf(unlock(back, new Uint8Array(b))), "WRONG_PASSPHRASE");
      expectCode(await rejectionOf(unlock(back, a.toString("utf8"))), "WRONG_PASSPHRASE");
    }
  });

  it("a string is its UTF-8: a repository made with a string opens with its bytes and the other way round", async () => {
    const { config, masterKey } = await newConfig(opts("pässwörd ✓"));
    expect(toHex(await unlock(config, new Uint8Array(Buffer.from("pässwörd ✓", "utf8"))))).toBe(toHex(masterKey));
    const v1 = await newConfig(opts(new Uint8Array(Buffer.from("fixture-v1")), { version: 1 }));
    expect(toHex(await unlock(v1.config, "fixture-v1"))).toBe(toHex(v1.masterKey));
  });

  it("a string with a lone surrogate has no UTF-8: USAGE, not U+FFFD", async () => {
    expectCode(errorOf(() => passphraseBytes("ab\ud800")), "USAGE");
    expectCode(await rejectionOf(unlock(encrypted.config, "ab\udc00cd")), "USAGE");
    expect(toHex(passphraseBytes("\u{1f510}"))).toBe("f09f9490");
  });
});
