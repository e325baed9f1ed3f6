/**
 * The repository configuration blob, written once by `create` (Store.create)
 * and read by every open. Layout (docs/FORMAT.md, "Configuration"):
 *   version 1: "COFFERCF" | 1 | msgpack body | SHA-256 of everything before
 *   version 2: "COFFERCF" | 2 | msgpack body | MAC (32) | SHA-256 of everything before
 * The checksum tells corruption apart from a wrong passphrase: if it holds
 * but the wrapped master key does not authenticate, the passphrase is wrong.
 * The version-2 MAC (HMAC-SHA256 of "COFFERCF" | 2 | body, keyed by a subkey
 * of the master key) is checked by unlock() once the key is unwrapped: a
 * field changed by someone without the passphrase (and the checksum fixed
 * up) is then CORRUPT ("altered or damaged"), not silently used. Nothing
 * authenticates a plaintext configuration: its key is public.
 */
import { argon2, createCipheriv, createDecipheriv, createHash, createHmac, randomBytes, timingSafeEqual } from "node:crypto";
import { promisify } from "node:util";
import { encode } from "@msgpack/msgpack";
import { CofferError, CorruptError } from "../util/errors.js";
import { decodeBounded } from "../util/msgpack.js";
import { configMacKey, type MacAlgorithm, plaintextMasterKey, randomKey } from "./crypto.js";
import { type ChunkingParams, validateChunkingParams } from "./chunker.js";
import type { Compression } from "./codec.js";

const argon2P = promisify(argon2);

export const CONFIG_MAGIC = "COFFERCF";
/** The version new repositories get. */
export const FORMAT_VERSION = 2;
/** The versions this coffer reads (and writes into). */
const READABLE_VERSIONS: readonly number[] = [1, 2];
const MAC_BYTES = 32;

/**
 * A passphrase is bytes: exactly what argon2id is given. A string stands for
 * its UTF-8 encoding (and must be well-formed: a lone surrogate has none).
 */
export type Passphrase = Uint8Array | string;

export function passphraseBytes(p: Passphrase): Uint8Array {
  if (typeof p !== "string") return p;
  if (!p.isWellFormed()) throw new CofferError("USAGE", "the passphrase is not a well-formed string (it holds a lone UTF-16 surrogate)");
  return new Uint8Array(Buffer.from(p, "utf8"));
}

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
  /** Version 2: HMAC-SHA256 of the encoded configuration under configMacKey(master key); null in version 1. */
  configMac: Uint8Array | null;
}

export const DEFAULT_KDF = { memory: 64 * 1024, passes: 3, parallelism: 4 };
const DEFAULT_PACK_SIZE = 32 * 1024 * 1024;
/** Largest argon2id memory a configuration may ask for (16 GiB, in KiB). */
export const MAX_KDF_MEMORY_KIB = 16 * 1024 * 1024;

/** The associated data of the wrapped master key: per version, so a key wrapped for one cannot pass as the other. */
const wrapAad = (version: number) => Buffer.from(`coffer/v${version}/master-key`, "ascii");

async function kek(passphrase: Uint8Array, kdf: KdfParams): Promise<Buffer> {
  return argon2P("argon2id", {
    message: passphrase,
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
  passphrase: Passphrase | null;
  kdf?: { memory: number; passes: number; parallelism: number };
  /** FORMAT_VERSION unless given: 1 only to test what older coffers wrote. */
  version?: 1 | 2;
}

/** Builds a new configuration and returns it with the master key. */
export async function newConfig(o: NewConfigOptions): Promise<{ config: RepositoryConfig; masterKey: Uint8Array }> {
  const id = randomKey(32);
  const version = o.version ?? FORMAT_VERSION;
  const base = {
    version,
    id,
    createdNs: BigInt(Date.now()) * 1_000_000n,
    chunking: o.chunking,
    mac: o.mac,
    compression: o.compression,
    packSize: o.packSize ?? DEFAULT_PACK_SIZE,
  };
  if (o.passphrase === null) {
    const masterKey = plaintextMasterKey(id);
    return { config: sealConfig({ ...base, encryption: null, configMac: null }, masterKey), masterKey };
  }
  const masterKey = randomKey(32);
  const kdf: KdfParams = { algorithm: "argon2id", ...(o.kdf ?? DEFAULT_KDF), salt: randomKey(16) };
  const iv = randomBytes(12);
  const c = createCipheriv("aes-256-gcm", await kek(passphraseBytes(o.passphrase), kdf), iv);
  c.setAAD(wrapAad(version));
  const wrappedKey = new Uint8Array(Buffer.concat([iv, c.update(masterKey), c.final(), c.getAuthTag()]));
  return { config: sealConfig({ ...base, encryption: { kdf, cipher: "aes-256-gcm", wrappedKey }, configMac: null }, masterKey), masterKey };
}

/** A configuration error of CORRUPT code; `data.configDetail` lets the CLI name the location. */
function configCorrupt(detail: string): CorruptError {
  return new CorruptError("repository configuration", detail, { configDetail: detail });
}

const ALTERED = "it was altered or damaged";

/** The master key unwrapped with the associated data of `version`, or null if it does not authenticate. */
function unwrap(kekBytes: Buffer, wrappedKey: Uint8Array, version: number): Uint8Array | null {
  const w = Buffer.from(wrappedKey);
  const d = createDecipheriv("aes-256-gcm", kekBytes, w.subarray(0, 12));
  d.setAAD(wrapAad(version));
  d.setAuthTag(w.subarray(w.byteLength - 16));
  const key = d.update(w.subarray(12, w.byteLength - 16));
  try {
    d.final();
  } catch {
    return null;
  }
  return new Uint8Array(key);
}

/**
 * Recovers the master key; throws WRONG_PASSPHRASE when the passphrase does
 * not unwrap it, and CORRUPT when it does but the configuration is not the
 * one the key was sealed with (version 2: its MAC does not match; either
 * version: the key was wrapped for the other version).
 */
export async function unlock(config: RepositoryConfig, passphrase: Passphrase | null): Promise<Uint8Array> {
  const enc = config.encryption;
  let master: Uint8Array;
  if (enc === null) master = plaintextMasterKey(config.id);
  else {
    if (passphrase === null) throw new CofferError("NO_PASSPHRASE", "the repository is encrypted: give a passphrase (--keyfile FILE, COFFER_PASSPHRASE, or a terminal prompt)");
    const k = await kek(passphraseBytes(passphrase), enc.kdf);
    const key = unwrap(k, enc.wrappedKey, config.version);
    if (key === null) {
      const other = config.version === 1 ? 2 : 1;
      if (unwrap(k, enc.wrappedKey, other) !== null) {
        throw configCorrupt(`${ALTERED} (it says format version ${config.version}, but its key was sealed for version ${other}; the passphrase is right)`);
      }
      throw new CofferError("WRONG_PASSPHRASE", "wrong passphrase");
    }
    master = key;
  }
  if (config.version >= 2) {
    const want = configMacOf(SIGNED.get(config) ?? encodeHead(config), master);
    const got = config.configMac;
    if (got === null || got.byteLength !== MAC_BYTES || !timingSafeEqual(want, got)) {
      throw configCorrupt(
        enc === null
          ? `${ALTERED} (its MAC does not match)`
          : `${ALTERED} (its MAC does not match: the passphrase is right, but a field was changed by someone without it)`,
      );
    }
  }
  return master;
}

function configMacOf(head: Uint8Array, master: Uint8Array): Buffer {
  return createHmac("sha256", configMacKey(master)).update(head).digest();
}

/** The configuration with its version-2 MAC computed under `master` (version 1 has none). */
export function sealConfig(c: RepositoryConfig, master: Uint8Array): RepositoryConfig {
  if (c.version < 2) return { ...c, configMac: null };
  return { ...c, configMac: new Uint8Array(configMacOf(encodeHead({ ...c, configMac: null }), master)) };
}

/** The exact bytes a decoded version-2 configuration's MAC covers (unknown keys included). */
const SIGNED = new WeakMap<RepositoryConfig, Uint8Array>();

/** "COFFERCF" | version | msgpack body. */
function encodeHead(c: RepositoryConfig): Buffer {
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
  return Buffer.concat([Buffer.from(CONFIG_MAGIC, "ascii"), Buffer.from([c.version]), body]);
}

export function encodeConfig(c: RepositoryConfig): Uint8Array {
  if (!READABLE_VERSIONS.includes(c.version)) throw new TypeError(`cannot encode configuration version ${c.version}`);
  const parts = [encodeHead(c)];
  if (c.version >= 2) {
    if (c.configMac === null || c.configMac.byteLength !== MAC_BYTES) throw new TypeError("a version-2 configuration needs its MAC (sealConfig)");
    parts.push(Buffer.from(c.configMac));
  }
  const head = Buffer.concat(parts);
  return new Uint8Array(Buffer.concat([head, createHash("sha256").update(head).digest()]));
}

export function decodeConfig(bytes: Uint8Array): RepositoryConfig {
  const b = Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const bad = configCorrupt;
  if (b.byteLength < 9 + 32 || b.toString("ascii", 0, 8) !== CONFIG_MAGIC) throw bad("not a coffer repository configuration");
  const head = b.subarray(0, b.byteLength - 32);
  if (!createHash("sha256").update(head).digest().equals(b.subarray(b.byteLength - 32))) throw bad("checksum mismatch (the file is damaged)");
  const version = b[8]!;
  if (!READABLE_VERSIONS.includes(version)) {
    throw new CofferError("UNSUPPORTED", `repository format version ${version} is not supported (this coffer reads versions ${READABLE_VERSIONS.join(" and ")})`);
  }
  const macBytes = version >= 2 ? MAC_BYTES : 0;
  if (head.byteLength < 9 + macBytes) throw bad("truncated");
  const bodyEnd = head.byteLength - macBytes;
  const o = decodeBounded(b.subarray(9, bodyEnd), (why) => bad(`undecodable body (${why})`), { useBigInt64: true }) as Record<string, unknown>;
  if (typeof o !== "object" || o === null || Array.isArray(o)) throw bad("body is not a map");
  const ch = o.chunking as ChunkingParams | undefined;
  const enc = o.encryption as (EncryptionConfig & { kdf: KdfParams }) | null | undefined;
  const okNum = (n: unknown) => typeof n === "number" && Number.isSafeInteger(n) && n > 0;
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
  const config: RepositoryConfig = {
    version,
    id: o.id,
    createdNs: o.created,
    chunking: { min: ch.min, avg: ch.avg, max: ch.max },
    mac: o.mac,
    compression: o.compression,
    packSize: o.packSize as number,
    encryption: enc,
    configMac: macBytes === 0 ? null : new Uint8Array(head.subarray(bodyEnd)),
  };
  if (macBytes !== 0) SIGNED.set(config, new Uint8Array(b.subarray(0, bodyEnd)));
  return config;
}
