/**
 * Fuzzing the repository configuration and the key envelope
 * (src/repository/config.ts). Three layers:
 * - the checksum: a mutated or random configuration is CorruptError;
 * - after the checksum (a forger fixes it up, as anyone who can write the
 *   store can): decodeConfig gives a configuration whose every field is
 *   checked, CorruptError, or UNSUPPORTED for a version byte it does not
 *   read; unlock() of what decodes gives the master key only for the bytes
 *   that were sealed (versions 2 and 3), else CORRUPT, or WRONG_PASSPHRASE when
 *   the KDF parameters or wrapped key were changed (docs/FORMAT.md,
 *   "Configuration": those are used before the MAC can be checked);
 * - the key envelope itself: a wrapped key altered in place never unwraps;
 *   a version-3 configuration's list of keys changed by a forger never opens.
 * The configurations are built here from fixed keys and a tiny KDF (8 KiB,
 * 1 pass), so that every case's bytes follow from its seed and unlocking
 * stays cheap; a forged KDF costlier than 1 MiB x 4 passes is decoded but
 * not run.
 */
import { argon2Sync, createCipheriv, createHash } from "node:crypto";
import { decode } from "@msgpack/msgpack";
import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { CONFIG_MAGIC, decodeConfig, encodeConfig, type KdfParams, type KeyEnvelope, legacyKeyId, MAX_KEYS, openKey, type RepositoryConfig, sealConfig, unlock } from "../../src/repository/config.js";
import { plaintextMasterKey } from "../../src/repository/crypto.js";
import { equalBytes } from "../../src/util/hex.js";
import {
  arbMsgpackValue,
  arbMutations,
  arbValueMutation,
  boundedAllocation,
  encodeValue,
  expectFailure,
  fuzzParams,
  MSGPACK_FORGERIES,
  mutateAll,
  mutateValue,
  outcome,
  valueOrFailure,
} from "../helpers/fuzz.js";
import { fixedConfig } from "../helpers/sealed.js";

const PASSPHRASE = "correct horse";
const MASTER = new Uint8Array(32).fill(9);
const KDF: KdfParams = { algorithm: "argon2id", memory: 8, passes: 1, parallelism: 1, salt: new Uint8Array(16).fill(4) };

/** `MASTER` wrapped under `passphrase` for `version` as docs/FORMAT.md says, with a fixed IV. */
function wrapped(passphrase: string, kdf: KdfParams, version: number): Uint8Array {
  const kek = argon2Sync("argon2id", { message: Buffer.from(passphrase), nonce: kdf.salt, parallelism: 1, tagLength: 32, memory: kdf.memory, passes: kdf.passes });
  const iv = new Uint8Array(12).fill(6);
  const c = createCipheriv("aes-256-gcm", kek, iv);
  c.setAAD(Buffer.from(`coffer/v${version}/master-key`, "ascii"));
  return new Uint8Array(Buffer.concat([iv, c.update(MASTER), c.final(), c.getAuthTag()]));
}

/**
 * An encrypted configuration of `version`: versions 1 and 2 with the key of
 * PASSPHRASE, version 3 with a key of another passphrase before it (so
 * that opening tries one envelope in vain first).
 */
function encryptedConfig(version: 1 | 2 | 3): RepositoryConfig {
  const wrappedKey = wrapped(PASSPHRASE, KDF, version);
  const id = new Uint8Array(32).fill(8);
  const base = { version, id, createdNs: 1n, chunking: { min: 512, avg: 1024, max: 4096 }, mac: "blake3" as const, compression: "zstd" as const, packSize: 1 << 20 };
  const ours: KeyEnvelope = { id: version === 3 ? new Uint8Array(8).fill(1) : legacyKeyId(wrappedKey), host: version === 3 ? "host" : "", user: version === 3 ? "user" : "", createdMs: 0, kdf: KDF, wrappedKey };
  const otherKdf: KdfParams = { ...KDF, salt: new Uint8Array(16).fill(5) };
  const other: KeyEnvelope = { id: new Uint8Array(8).fill(2), host: "elsewhere", user: "someone", createdMs: 1_800_000_000_000, kdf: otherKdf, wrappedKey: wrapped("another one", otherKdf, 3) };
  return sealConfig({ ...base, encryption: { cipher: "aes-256-gcm", keys: version === 3 ? [other, ours] : [ours] }, configMac: null }, MASTER);
}

function plaintextV1(): RepositoryConfig {
  return { ...fixedConfig(5).config, version: 1, configMac: null };
}

/** The configurations the properties start from, by name (fast-check shows the name). */
const VALID: Record<string, Uint8Array> = {
  "plaintext v2": encodeConfig(fixedConfig(5).config),
  "plaintext v1": encodeConfig(plaintextV1()),
  "encrypted v2": encodeConfig(encryptedConfig(2)),
  "encrypted v1": encodeConfig(encryptedConfig(1)),
  "encrypted v3": encodeConfig(encryptedConfig(3)),
};
const arbValid = fc.constantFrom(...Object.keys(VALID));

/** "COFFERCF" | version | body | (versions 2 and 3: MAC) of a valid configuration, without its checksum. */
function parts(bytes: Uint8Array): { version: number; body: Uint8Array; mac: Uint8Array } {
  const version = bytes[8]!;
  const end = bytes.byteLength - 32 - (version >= 2 ? 32 : 0);
  return { version, body: bytes.subarray(9, end), mac: bytes.subarray(end, bytes.byteLength - 32) };
}

/** What anyone who can write the store can do: put any head before a checksum that matches it. */
function checksummed(head: Uint8Array): Uint8Array {
  return new Uint8Array(Buffer.concat([head, createHash("sha256").update(head).digest()]));
}

function head(version: number, body: Uint8Array, mac: Uint8Array): Uint8Array {
  return new Uint8Array(Buffer.concat([Buffer.from(CONFIG_MAGIC, "ascii"), Uint8Array.of(version), body, mac]));
}

/** Every field of a decoded configuration is one the repository can use. */
function expectUsable(c: RepositoryConfig): void {
  expect([1, 2, 3]).toContain(c.version);
  expect(c.id.byteLength).toBe(32);
  expect(typeof c.createdNs).toBe("bigint");
  expect(["blake3", "hmac-sha256"]).toContain(c.mac);
  expect(["zstd", "none"]).toContain(c.compression);
  expect(Number.isSafeInteger(c.packSize) && c.packSize > 0).toBe(true);
  const { min, avg, max } = c.chunking;
  expect(Number.isSafeInteger(min) && min > 0 && min <= avg && avg <= max).toBe(true);
  expect(c.configMac === null ? c.version === 1 : c.configMac.byteLength === 32).toBe(true);
  if (c.encryption !== null) {
    const keys = c.encryption.keys;
    expect(c.version === 3 ? keys.length <= MAX_KEYS : keys.length === 1).toBe(true);
    expect(new Set(keys.map((k) => Buffer.from(k.id).toString("hex"))).size).toBe(keys.length);
    for (const key of keys) {
      expect(key.wrappedKey.byteLength).toBe(60);
      expect(key.id.byteLength).toBe(8);
      expect(typeof key.host === "string" && typeof key.user === "string" && Number.isSafeInteger(key.createdMs)).toBe(true);
      const k = key.kdf;
      expect(k.algorithm === "argon2id" && k.salt instanceof Uint8Array && Number.isSafeInteger(k.memory) && Number.isSafeInteger(k.passes)).toBe(true);
    }
  } else expect(c.version).not.toBe(3);
}

/** The plaintext version-1 body with another packSize. */
function packSize(n: number): Uint8Array {
  const body = decode(parts(VALID["plaintext v1"]!).body, { useBigInt64: true }) as Record<string, unknown>;
  return encodeValue({ ...body, packSize: n });
}

const cheapKdf = (k: KdfParams) => k.memory <= 1024 && k.passes <= 4 && k.parallelism <= 4;

describe("the checksum", () => {
  it("a mutated configuration is CorruptError", async () => {
    await fc.assert(
      fc.asyncProperty(arbValid, arbMutations, async (which, ms) => {
        const bytes = VALID[which]!;
        const bad = mutateAll(bytes, ms);
        const c = valueOrFailure(await boundedAllocation(() => decodeConfig(bad)));
        if (c) expect(equalBytes(bad, bytes)).toBe(true);
      }),
      fuzzParams(),
    );
  });

  it("random bytes, with or without the magic, are CorruptError", async () => {
    await fc.assert(
      fc.asyncProperty(fc.boolean(), fc.uint8Array({ maxLength: 200 }), async (magic, rest) => {
        const bytes = magic ? new Uint8Array(Buffer.concat([Buffer.from(CONFIG_MAGIC, "ascii"), rest])) : rest;
        expectFailure(await boundedAllocation(() => decodeConfig(bytes)));
      }),
      fuzzParams({ weight: 0.5 }),
    );
  });
});

describe("after the checksum: a forged configuration", () => {
  /** A body as a forger writes it: the valid one with its value tree mutated, any value, or mutated bytes. */
  const arbBody = (body: Uint8Array): fc.Arbitrary<Uint8Array> =>
    fc.oneof(
      fc.constant(body),
      {
        arbitrary: fc.array(arbValueMutation, { minLength: 1, maxLength: 2 }).map((ms) => encodeValue(ms.reduce(mutateValue, decode(body, { useBigInt64: true })))),
        weight: 4,
      },
      arbMsgpackValue.map(encodeValue),
      arbMutations.map((ms) => mutateAll(body, ms)),
      fc.constantFrom(...MSGPACK_FORGERIES),
    );
  interface Forged {
    which: string;
    version: number;
    body: Uint8Array;
    mac: Uint8Array;
  }
  const arbForged: fc.Arbitrary<Forged> = arbValid.chain((which) => {
    const p = parts(VALID[which]!);
    return fc.record({
      which: fc.constant(which),
      version: fc.oneof({ arbitrary: fc.constant(p.version), weight: 4 }, fc.constantFrom(0, 1, 2, 3, 255)),
      body: arbBody(p.body),
      mac: fc.oneof({ arbitrary: fc.constant(p.mac), weight: 4 }, fc.uint8Array({ minLength: 0, maxLength: 40 })),
    });
  });

  it("decodes to a usable configuration or fails (CORRUPT, UNSUPPORTED); unlocking it gives the master key only for the bytes sealed", async () => {
    await fc.assert(
      fc.asyncProperty(arbForged, async ({ which, version, body, mac }) => {
        const original = VALID[which]!;
        const bytes = checksummed(head(version, body, mac));
        const c = valueOrFailure(await boundedAllocation(() => decodeConfig(bytes)), ["CORRUPT", "UNSUPPORTED"]);
        if (!c) return;
        expectUsable(c);
        if (c.encryption !== null && !c.encryption.keys.every((k) => cheapKdf(k.kdf))) return;
        const u = await outcome(() => unlock(c, c.encryption === null ? null : PASSPHRASE));
        const unchanged = equalBytes(bytes, original);
        if (c.encryption === null && c.version === 1) {
          // Nothing authenticates a plaintext version-1 configuration (docs/FORMAT.md): it opens with its own ID's key.
          expect(u.ok && equalBytes(u.value, plaintextMasterKey(c.id))).toBe(true);
        } else if (u.ok) {
          // A configuration opens only as it was sealed (or, version 1, with its wrapped key intact).
          if (c.version >= 2) expect(unchanged).toBe(true);
          expect(equalBytes(u.value, c.encryption === null ? plaintextMasterKey(c.id) : MASTER)).toBe(true);
        } else valueOrFailure(u, ["CORRUPT", "WRONG_PASSPHRASE"]);
      }),
      fuzzParams<[Forged]>({
        examples: [
          // Regression (found by `npm run fuzz`): a packSize of 2^53 as a float64 passed as an integer.
          [{ which: "plaintext v1", version: 1, body: packSize(2 ** 53), mac: new Uint8Array(0) }],
        ],
      }),
    );
  });
});

describe("the key envelope", () => {
  it("a wrapped key altered in place never unwraps: WRONG_PASSPHRASE, or CORRUPT when its version was changed too", async () => {
    await fc.assert(
      fc.asyncProperty(fc.constantFrom(1, 2, 3) as fc.Arbitrary<1 | 2 | 3>, fc.constantFrom(1, 2, 3), arbMutations, async (sealedFor, claimed, ms) => {
        const c = encryptedConfig(sealedFor);
        // PASSPHRASE's key is the last one (version 3 has another before it); a version-1 or -2 body holds it alone.
        const keys = c.encryption!.keys;
        const ours = keys.at(-1)!;
        const wrappedKey = mutateAll(ours.wrappedKey, ms);
        const forgedKeys = claimed === 3 ? [...keys.slice(0, -1), { ...ours, wrappedKey }] : [{ ...ours, wrappedKey }];
        const forged: RepositoryConfig = { ...c, version: claimed, encryption: { ...c.encryption!, keys: forgedKeys } };
        // Through the bytes, as a reader gets them: the checksum fixed up, the MAC left as it was.
        const p = parts(encodeConfig(claimed >= 2 ? sealConfig(forged, MASTER) : { ...forged, configMac: null }));
        const bytes = checksummed(head(claimed, p.body, claimed >= 2 ? (c.configMac ?? new Uint8Array(32)) : new Uint8Array(0)));
        const decoded = valueOrFailure(await boundedAllocation(() => decodeConfig(bytes)));
        if (!decoded) {
          expect(wrappedKey.byteLength).not.toBe(60);
          return;
        }
        const u = await outcome(() => unlock(decoded, PASSPHRASE));
        if (u.ok) {
          expect(equalBytes(wrappedKey, ours.wrappedKey) && claimed === sealedFor).toBe(true);
          expect(equalBytes(u.value, MASTER)).toBe(true);
        } else valueOrFailure(u, equalBytes(wrappedKey, ours.wrappedKey) ? ["CORRUPT"] : ["CORRUPT", "WRONG_PASSPHRASE"]);
      }),
      fuzzParams({ weight: 0.25 }),
    );
  });

  it("a version-3 configuration opens with each of its keys, and a key moved, dropped or added by a forger fails", async () => {
    const c = encryptedConfig(3);
    const bytes = encodeConfig(c);
    const decoded = decodeConfig(bytes);
    for (const p of [PASSPHRASE, "another one"]) expect(equalBytes((await openKey(decoded, p)).master, MASTER)).toBe(true);
    expect((await openKey(decoded, PASSPHRASE)).key?.host).toBe("host");
    const [other, ours] = c.encryption!.keys as [KeyEnvelope, KeyEnvelope];
    const forgeries: KeyEnvelope[][] = [[ours, other], [ours], [other], [ours, other, { ...other, id: new Uint8Array(8).fill(3) }], [{ ...ours, host: "forged" }, other]];
    for (const keys of forgeries) {
      const p = parts(encodeConfig(sealConfig({ ...c, encryption: { ...c.encryption!, keys } }, new Uint8Array(32))));
      const forged = decodeConfig(checksummed(head(3, p.body, c.configMac!)));
      for (const pass of [PASSPHRASE, "another one"]) {
        const u = await outcome(() => unlock(forged, pass));
        expect(u.ok).toBe(false);
        valueOrFailure(u, ["CORRUPT", "WRONG_PASSPHRASE"]);
      }
    }
  });
});
