/**
 * The repository configuration blob, written once by `create` (Store.create)
 * and read by every open. Layout (docs/FORMAT.md, "Configuration"):
 *   "COFFERCF" | version u8 | msgpack body | SHA-256 of everything before
 * The checksum tells corruption apart from a wrong passphrase: if it holds
 * but the wrapped master key does not authenticate, the passphrase is wrong.
 */
import { argon2, createCipheriv, createDecipheriv, createHash, randomBytes } from "node:crypto";
import { promisify } from "node:util";
import { decode, encode } from "@msgpack/msgpack";
import { CofferError, CorruptError } from "../util/errors.js";
import { type MacAlgorithm, plaintextMasterKey, randomKey } from "./crypto.js";
import { type ChunkingParams, validateChunkingParams } from "./chunker.js";
import type { Compression } from "./codec.js";

const argon2P = promisify(argon2);

export const CONFIG_MAGIC = "COFFERCF";
export const FORMAT_VERSION = 1;

export type { ChunkingParams };

export interface KdfParams {
  algorithm: "argon2id";
  /** Memory in KiB. */
  memory: number;
  passes: number;
  parallelism: number;
  salt: Uint8Array;
}

export interface EncryptionConfig {
  kdf: KdfParams;
  cipher: "aes-256-gcm";
  /** iv(12) | AES-256-GCM(master key, 32) | tag(16), keyed by the KDF output. */
  wrappedKey: Uint8Array;
}

export interface RepositoryConfig {
  version: number;
  id: Uint8Array;
  createdNs: bigint;
  chunking: ChunkingParams;
  mac: MacAlgorithm;
  compression: Compression;
  packSize: number;
  encryption: EncryptionConfig | null;
}

export const DEFAULT_KDF = { memory: 64 * 1024, passes: 3, parallelism: 4 };
export const DEFAULT_PACK_SIZE = 32 * 1024 * 1024;
/** Largest argon2id memory a configuration may ask for (16 GiB, in KiB). */
export const MAX_KDF_MEMORY_KIB = 16 * 1024 * 1024;

const WRAP_AAD = Buffer.from("coffer/v1/master-key");

async function kek(passphrase: string, kdf: KdfParams): Promise<Buffer> {
  return argon2P("argon2id", {
    message: Buffer.from(passphrase, "utf8"),
    nonce: kdf.salt,
    parallelism: kdf.parallelism,
    tagLength: 32,
    memory: kdf.memory,
    passes: kdf.passes,
  });
}

export interface NewConfigOptions {
  chunking: ChunkingParams;
  mac: MacAlgorithm;
  compression: Compression;
  packSize?: number;
  /** null for a plaintext repository. */
  passphrase: string | null;
  kdf?: { memory: number; passes: number; parallelism: number };
}

/** Builds a new configuration and returns it with the master key. */
export async function newConfig(o: NewConfigOptions): Promise<{ config: RepositoryConfig; masterKey: Uint8Array }> {
  const id = randomKey(32);
  const base = {
    version: FORMAT_VERSION,
    id,
    createdNs: BigInt(Date.now()) * 1_000_000n,
    chunking: o.chunking,
    mac: o.mac,
    compression: o.compression,
    packSize: o.packSize ?? DEFAULT_PACK_SIZE,
  };
  if (o.passphrase === null) return { config: { ...base, encryption: null }, masterKey: plaintextMasterKey(id) };
  const masterKey = randomKey(32);
  const kdf: KdfParams = { algorithm: "argon2id", ...(o.kdf ?? DEFAULT_KDF), salt: randomKey(16) };
  const iv = randomBytes(12);
  const c = createCipheriv("aes-256-gcm", await kek(o.passphrase, kdf), iv);
  c.setAAD(WRAP_AAD);
  const wrappedKey = new Uint8Array(Buffer.concat([iv, c.update(masterKey), c.final(), c.getAuthTag()]));
  return { config: { ...base, encryption: { kdf, cipher: "aes-256-gcm", wrappedKey } }, masterKey };
}

/** Recovers the master key; throws WRONG_PASSPHRASE when the passphrase does not unwrap it. */
export async function unlock(config: RepositoryConfig, passphrase: string | null): Promise<Uint8Array> {
  const enc = config.encryption;
  if (enc === null) return plaintextMasterKey(config.id);
  if (passphrase === null) throw new CofferError("NO_PASSPHRASE", "the repository is encrypted: give a passphrase (--keyfile FILE, COFFER_PASSPHRASE, or a terminal prompt)");
  const w = Buffer.from(enc.wrappedKey);
  const d = createDecipheriv("aes-256-gcm", await kek(passphrase, enc.kdf), w.subarray(0, 12));
  d.setAAD(WRAP_AAD);
  d.setAuthTag(w.subarray(w.byteLength - 16));
  const key = d.update(w.subarray(12, w.byteLength - 16));
  try {
    d.final();
  } catch {
    throw new CofferError("WRONG_PASSPHRASE", "wrong passphrase");
  }
  return new Uint8Array(key);
}

export function encodeConfig(c: RepositoryConfig): Uint8Array {
  const body = encode(
    {
      version: c.version,
      id: c.id,
      created: c.createdNs,
      chunking: c.chunking,
      mac: c.mac,
      compression: c.compression,
      packSize: c.packSize,
      encryption: c.encryption && {
        kdf: c.encryption.kdf,
        cipher: c.encryption.cipher,
        wrappedKey: c.encryption.wrappedKey,
      },
    },
    { useBigInt64: true },
  );
  const head = Buffer.concat([Buffer.from(CONFIG_MAGIC, "ascii"), Buffer.from([FORMAT_VERSION]), body]);
  return new Uint8Array(Buffer.concat([head, createHash("sha256").update(head).digest()]));
}

export function decodeConfig(bytes: Uint8Array): RepositoryConfig {
  const b = Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const bad = (detail: string) => new CorruptError("repository configuration", detail);
  if (b.byteLength < 9 + 32 || b.toString("ascii", 0, 8) !== CONFIG_MAGIC) throw bad("not a coffer repository configuration");
  const head = b.subarray(0, b.byteLength - 32);
  if (!createHash("sha256").update(head).digest().equals(b.subarray(b.byteLength - 32))) throw bad("checksum mismatch (the file is damaged)");
  const version = b[8]!;
  if (version !== FORMAT_VERSION) throw new CofferError("UNSUPPORTED", `repository format version ${version} is not supported (this coffer reads version ${FORMAT_VERSION})`);
  let o: Record<string, unknown>;
  try {
    o = decode(b.subarray(9, b.byteLength - 32), { useBigInt64: true }) as Record<string, unknown>;
  } catch (e) {
    throw bad(`undecodable body (${(e as Error).message})`);
  }
  if (typeof o !== "object" || o === null || Array.isArray(o)) throw bad("body is not a map");
  const ch = o.chunking as ChunkingParams | undefined;
  const enc = o.encryption as (EncryptionConfig & { kdf: KdfParams }) | null | undefined;
  const okNum = (n: unknown) => typeof n === "number" && Number.isInteger(n) && n > 0;
  if (
    !(o.id instanceof Uint8Array) || o.id.byteLength !== 32 ||
    !ch || !okNum(ch.min) || !okNum(ch.avg) || !okNum(ch.max) ||
    (o.mac !== "blake3" && o.mac !== "hmac-sha256") ||
    (o.compression !== "zstd" && o.compression !== "none") ||
    !okNum(o.packSize) ||
    typeof o.created !== "bigint" ||
    enc === undefined
  ) {
    throw bad("missing or invalid fields");
  }
  try {
    validateChunkingParams(ch);
  } catch (e) {
    throw bad((e as Error).message);
  }
  if (enc !== null) {
    if (typeof enc !== "object" || !(enc.wrappedKey instanceof Uint8Array) || enc.wrappedKey.byteLength !== 60 || enc.cipher !== "aes-256-gcm") {
      throw bad("invalid encryption parameters");
    }
    const k = enc.kdf as Partial<KdfParams> | undefined;
    const within = (n: unknown, lo: number, hi: number) => typeof n === "number" && Number.isInteger(n) && n >= lo && n <= hi;
    if (
      typeof k !== "object" || k === null || k.algorithm !== "argon2id" ||
      !(k.salt instanceof Uint8Array) || k.salt.byteLength < 8 || k.salt.byteLength > 64 ||
      !within(k.parallelism, 1, 255) || !within(k.passes, 1, 1000) ||
      !within(k.memory, 8 * (k.parallelism as number), MAX_KDF_MEMORY_KIB)
    ) {
      throw bad("invalid key derivation parameters");
    }
  }
  return {
    version,
    id: o.id,
    createdNs: o.created,
    chunking: { min: ch.min, avg: ch.avg, max: ch.max },
    mac: o.mac,
    compression: o.compression,
    packSize: o.packSize as number,
    encryption: enc,
  };
}
