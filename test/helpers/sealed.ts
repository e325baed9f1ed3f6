/**
 * Blobs sealed the way docs/FORMAT.md ("Blob encoding") describes, written
 * with node:crypto alone and with the salt and IV given, so that a fuzz
 * case's bytes are a function of its seed (the codec draws its nonces at
 * random). What a forger holding the keys, or a bug, can produce: any
 * header (flags, raw length) over any payload, correctly authenticated.
 */
import { createCipheriv, createHmac } from "node:crypto";
import { zstdCompressSync } from "node:zlib";
import { MemoryStore } from "../../src/connectors/memory/store.js";
import { Codec, type Compression } from "../../src/repository/codec.js";
import { encodeConfig, type RepositoryConfig, sealConfig } from "../../src/repository/config.js";
import { deriveSubkeys, plaintextMasterKey, type Subkeys } from "../../src/repository/crypto.js";
import { Repository } from "../../src/repository/repository.js";

export interface Envelope {
  /** The byte after the version (bit 0: zstd). */
  flags: number;
  /** The header's raw length (u32). */
  rawLength: number;
  payload: Uint8Array;
  /** Encrypted blobs: 16 bytes of salt, 12 of IV (the first 28 bytes of `nonce`). */
  nonce?: Uint8Array | undefined;
}

export function header(flags: number, rawLength: number, version = 1): Buffer {
  const h = Buffer.alloc(6);
  h[0] = version;
  h[1] = flags;
  h.writeUInt32LE(rawLength >>> 0, 2);
  return h;
}

function associated(h: Buffer, type: number, mac: Uint8Array): Buffer {
  return Buffer.concat([h, Uint8Array.of(type), mac]);
}

/** The blob of `type` named `mac` holding `e`, authenticated under `keys` (encrypted or plaintext). */
export function seal(keys: Subkeys, encrypted: boolean, type: number, mac: Uint8Array, e: Envelope): Uint8Array {
  const h = header(e.flags, e.rawLength);
  const ad = associated(h, type, mac);
  if (!encrypted) {
    const tag = createHmac("sha256", keys.tag).update(ad).update(e.payload).digest();
    return new Uint8Array(Buffer.concat([h, e.payload, tag]));
  }
  const nonce = Buffer.alloc(28);
  if (e.nonce) nonce.set(e.nonce.subarray(0, 28));
  const salt = nonce.subarray(0, 16);
  const iv = nonce.subarray(16, 28);
  const c = createCipheriv("aes-256-gcm", createHmac("sha256", keys.enc).update(salt).digest(), iv);
  c.setAAD(ad);
  return new Uint8Array(Buffer.concat([h, salt, iv, c.update(e.payload), c.final(), c.getAuthTag()]));
}

/** `raw` as a writer stores it: compressed (level 3) when `compression` is zstd and that saves 1/64, else as is. */
export function envelopeOf(raw: Uint8Array, compression: Compression, nonce?: Uint8Array): Envelope {
  if (compression === "zstd" && raw.byteLength >= 64) {
    const z = zstdCompressSync(raw);
    if (z.byteLength < raw.byteLength - raw.byteLength / 64) return { flags: 1, rawLength: raw.byteLength, payload: z, nonce };
  }
  return { flags: 0, rawLength: raw.byteLength, payload: raw, nonce };
}

/** Keys and a codec from a fixed master key: the same bytes on every run. */
export function fixedKeys(seed = 7, o: { encrypted?: boolean; compression?: Compression } = {}): { keys: Subkeys; codec: Codec } {
  const keys = deriveSubkeys(new Uint8Array(32).fill(seed));
  return { keys, codec: new Codec({ keys, encrypted: o.encrypted ?? false, compression: o.compression ?? "zstd" }) };
}

/** A plaintext version-2 configuration with a fixed ID (so fixed keys), and its master key. */
export function fixedConfig(idByte = 3): { config: RepositoryConfig; master: Uint8Array } {
  const id = new Uint8Array(32).fill(idByte);
  const master = plaintextMasterKey(id);
  const config = sealConfig(
    { version: 2, id, createdNs: 0n, chunking: { min: 512, avg: 1024, max: 4096 }, mac: "blake3", compression: "zstd", packSize: 1 << 20, encryption: null, configMac: null },
    master,
  );
  return { config, master };
}

/** An empty repository on a MemoryStore, with fixedConfig()'s keys: what readDelta() and readLocks() read from. */
export async function fixedRepository(): Promise<{ store: MemoryStore; repo: Repository }> {
  const store = new MemoryStore();
  await store.create(encodeConfig(fixedConfig().config));
  return { store, repo: await Repository.open(store, { passphrase: async () => null }) };
}
