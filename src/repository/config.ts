/**
 * The repository configuration blob, written by `create` (Store.create),
 * replaced only by `key` (Store.replaceConfig) and read by every open.
 * Layout (docs/FORMAT.md, "Configuration"):
 *   version 1: "COFFERCF" | 1 | msgpack body | SHA-256 of everything before
 *   version 2: "COFFERCF" | 2 | msgpack body | MAC (32) | SHA-256 of everything before
 *   version 3: as version 2, the body holding a list of key envelopes
 * The checksum tells corruption apart from a wrong passphrase: if it holds
 * but no wrapped master key authenticates, the passphrase is wrong.
 * The MAC (versions 2 and 3: HMAC-SHA256 of "COFFERCF" | version | body,
 * keyed by a subkey of the master key) is checked by unlock() once the key
 * is unwrapped: a field changed by someone without a passphrase (and the
 * checksum fixed up) is then CORRUPT ("altered or damaged"), not silently
 * used. Nothing authenticates a plaintext configuration: its key is public.
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
/** The version new repositories get (the first `key add` makes it KEYS_VERSION). */
export const FORMAT_VERSION = 2;
/** The version whose body holds several key envelopes. */
export const KEYS_VERSION = 3;
/** The versions this coffer reads (and writes into). */
const READABLE_VERSIONS: readonly number[] = [1, 2, 3];
const MAC_BYTES = 32;
/** Bytes of a key envelope's ID. */
const KEY_ID_BYTES = 8;
/** Most key envelopes a version-3 configuration may hold (each costs a wrong passphrase one argon2id run). */
export const MAX_KEYS = 32;
/** Longest host or user name a key envelope records, in UTF-16 code units. */
const MAX_KEY_NAME = 255;

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

/** argon2id's cost parameters, without the salt (what `create` and `key add` take). */
export type KdfCost = Pick<KdfParams, "memory" | "passes" | "parallelism">;

/**
 * One passphrase's way to the master key. Versions 1 and 2 hold one, whose
 * ID derives from its wrapped key and whose host and user are unknown ("");
 * version 3 records them.
 */
export interface KeyEnvelope {
  id: Uint8Array;
  host: string;
  user: string;
  /** ms since the epoch (versions 1 and 2: the repository's creation). */
  createdMs: number;
  kdf: KdfParams;
  /** iv(12) | AES-256-GCM(master key, 32) | tag(16), keyed by the KDF output. */
  wrappedKey: Uint8Array;
}

export interface EncryptionConfig {
  cipher: "aes-256-gcm";
  /** Newest first: exactly one in versions 1 and 2, at most MAX_KEYS (none once the last was removed) in version 3. */
  keys: KeyEnvelope[];
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
  /** Versions 2 and 3: HMAC-SHA256 of the encoded configuration under configMacKey(master key); null in version 1. */
  configMac: Uint8Array | null;
}

export const DEFAULT_KDF: KdfCost = { memory: 64 * 1024, passes: 3, parallelism: 4 };
const DEFAULT_PACK_SIZE = 32 * 1024 * 1024;
/** Largest argon2id memory a configuration may ask for (16 GiB, in KiB). */
export const MAX_KDF_MEMORY_KIB = 16 * 1024 * 1024;

/** The associated data of a wrapped master key: per version, so a key wrapped for one cannot pass as another. */
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

/** The master key wrapped under `kekBytes` for `version`, with a fresh IV. */
function wrap(master: Uint8Array, kekBytes: Uint8Array, version: number): Uint8Array {
  const iv = randomBytes(12);
  const c = createCipheriv("aes-256-gcm", kekBytes, iv);
  c.setAAD(wrapAad(version));
  return new Uint8Array(Buffer.concat([iv, c.update(master), c.final(), c.getAuthTag()]));
}

/** The ID of the one key of a version-1 or -2 configuration (which stores none): from its wrapped key, so it stays the same across reads and the upgrade. */
export function legacyKeyId(wrappedKey: Uint8Array): Uint8Array {
  return new Uint8Array(createHash("sha256").update("coffer/v3/legacy-key-id").update(wrappedKey).digest().subarray(0, KEY_ID_BYTES));
}

export interface NewKeyOptions {
  passphrase: Passphrase;
  host: string;
  user: string;
  kdf?: KdfCost | undefined;
  /** Date.now() unless given. */
  createdMs?: number | undefined;
}

/** A new version-3 key envelope wrapping `master` under `o.passphrase` (fresh ID and salt). */
export async function newKeyEnvelope(master: Uint8Array, o: NewKeyOptions): Promise<KeyEnvelope> {
  const kdf: KdfParams = { algorithm: "argon2id", ...(o.kdf ?? DEFAULT_KDF), salt: randomKey(16) };
  const wrappedKey = wrap(master, await kek(passphraseBytes(o.passphrase), kdf), KEYS_VERSION);
  return { id: randomKey(KEY_ID_BYTES), host: o.host, user: o.user, createdMs: o.createdMs ?? Date.now(), kdf, wrappedKey };
}

export interface NewConfigOptions {
  chunking: ChunkingParams;
  mac: MacAlgorithm;
  compression: Compression;
  packSize?: number;
  /** null for a plaintext repository. */
  passphrase: Passphrase | null;
  kdf?: KdfCost;
  /** FORMAT_VERSION unless given: 1 only to test what older coffers wrote, 3 to test keys. */
  version?: 1 | 2 | 3;
  /** Version 3: the host and user its key is named with ("" unless given). */
  keyName?: { host: string; user: string };
}

/** Builds a new configuration and returns it with the master key. */
export async function newConfig(o: NewConfigOptions): Promise<{ config: RepositoryConfig; masterKey: Uint8Array }> {
  const id = randomKey(32);
  const version = o.version ?? FORMAT_VERSION;
  const createdMs = Date.now();
  const base = {
    version,
    id,
    createdNs: BigInt(createdMs) * 1_000_000n,
    chunking: o.chunking,
    mac: o.mac,
    compression: o.compression,
    packSize: o.packSize ?? DEFAULT_PACK_SIZE,
  };
  if (o.passphrase === null) {
    if (version === KEYS_VERSION) throw new TypeError("a version-3 configuration is encrypted");
    const masterKey = plaintextMasterKey(id);
    return { config: sealConfig({ ...base, encryption: null, configMac: null }, masterKey), masterKey };
  }
  const masterKey = randomKey(32);
  let key: KeyEnvelope;
  if (version === KEYS_VERSION) key = await newKeyEnvelope(masterKey, { passphrase: o.passphrase, kdf: o.kdf, createdMs, host: o.keyName?.host ?? "", user: o.keyName?.user ?? "" });
  else {
    const kdf: KdfParams = { algorithm: "argon2id", ...(o.kdf ?? DEFAULT_KDF), salt: randomKey(16) };
    const wrappedKey = wrap(masterKey, await kek(passphraseBytes(o.passphrase), kdf), version);
    key = { id: legacyKeyId(wrappedKey), host: "", user: "", createdMs, kdf, wrappedKey };
  }
  return { config: sealConfig({ ...base, encryption: { cipher: "aes-256-gcm", keys: [key] }, configMac: null }, masterKey), masterKey };
}

/** A configuration error of CORRUPT code; `data.configDetail` lets the CLI name the location. */
function configCorrupt(detail: string): CorruptError {
  return new CorruptError("repository configuration", detail, { configDetail: detail });
}

const ALTERED = "it was altered or damaged";

/** The master key unwrapped with the associated data of `version`, or null if it does not authenticate. */
function unwrap(kekBytes: Uint8Array, wrappedKey: Uint8Array, version: number): Uint8Array | null {
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

/** What a passphrase opened: the master key, and (encrypted) which key and the key-encryption key it gave. */
export interface Unlocked {
  master: Uint8Array;
  /** The key envelope the passphrase unwrapped; null for a plaintext repository. */
  key: KeyEnvelope | null;
  /** The argon2id output of the passphrase for that key (to wrap the master key again for version 3); null for plaintext. */
  kek: Uint8Array | null;
}

/**
 * Recovers the master key, trying the passphrase on each key envelope in
 * order (newest first); throws WRONG_PASSPHRASE when it unwraps none, and
 * CORRUPT when one unwraps but the configuration is not the one the key was
 * sealed with (its MAC does not match; or the key was wrapped for another
 * version).
 */
export async function openKey(config: RepositoryConfig, passphrase: Passphrase | null): Promise<Unlocked> {
  const enc = config.encryption;
  let unlocked: Unlocked;
  if (enc === null) unlocked = { master: plaintextMasterKey(config.id), key: null, kek: null };
  else {
    if (passphrase === null) throw new CofferError("NO_PASSPHRASE", "the repository is encrypted: give a passphrase (--keyfile FILE, COFFER_PASSPHRASE, or a terminal prompt)");
    const bytes = passphraseBytes(passphrase);
    const tried: { key: KeyEnvelope; kek: Buffer }[] = [];
    let found: Unlocked | null = null;
    for (const key of enc.keys) {
      const k = await kek(bytes, key.kdf);
      const master = unwrap(k, key.wrappedKey, config.version);
      if (master !== null) {
        found = { master, key, kek: new Uint8Array(k) };
        break;
      }
      tried.push({ key, kek: k });
    }
    if (found === null) {
      for (const t of tried) {
        const other = READABLE_VERSIONS.find((v) => v !== config.version && unwrap(t.kek, t.key.wrappedKey, v) !== null);
        if (other !== undefined) {
          throw configCorrupt(`${ALTERED} (it says format version ${config.version}, but its key was sealed for version ${other}; the passphrase is right)`);
        }
      }
      if (enc.keys.length === 0) throw new CofferError("WRONG_PASSPHRASE", "wrong passphrase (the repository has no keys left: no passphrase opens it)");
      throw new CofferError("WRONG_PASSPHRASE", "wrong passphrase");
    }
    unlocked = found;
  }
  if (config.version >= 2) {
    const want = configMacOf(SIGNED.get(config) ?? encodeHead(config), unlocked.master);
    const got = config.configMac;
    if (got === null || got.byteLength !== MAC_BYTES || !timingSafeEqual(want, got)) {
      throw configCorrupt(
        enc === null
          ? `${ALTERED} (its MAC does not match)`
          : `${ALTERED} (its MAC does not match: the passphrase is right, but a field was changed by someone without it)`,
      );
    }
  }
  return unlocked;
}

/** The master key (see openKey). */
export async function unlock(config: RepositoryConfig, passphrase: Passphrase | null): Promise<Uint8Array> {
  return (await openKey(config, passphrase)).master;
}

/**
 * The configuration as version 3 with `keys` (newest first), sealed under
 * `master`. A version-1 or -2 key among them must have been wrapped again
 * for version 3 (rewrapForKeys).
 */
export function withKeys(c: RepositoryConfig, keys: readonly KeyEnvelope[], master: Uint8Array): RepositoryConfig {
  if (c.encryption === null) throw new CofferError("USAGE", "a plaintext repository has no keys");
  if (keys.length > MAX_KEYS) throw new CofferError("USAGE", `a repository holds at most ${MAX_KEYS} keys: remove one first`);
  return sealConfig({ ...c, version: KEYS_VERSION, encryption: { cipher: c.encryption.cipher, keys: [...keys] }, configMac: null }, master);
}

/** The key a version-1 or -2 configuration was opened with, wrapped again for version 3 (same ID, KDF parameters and salt); version 3's as it is. */
export function rewrapForKeys(c: RepositoryConfig, u: Unlocked): KeyEnvelope {
  if (u.key === null || u.kek === null) throw new CofferError("USAGE", "a plaintext repository has no keys");
  if (c.version === KEYS_VERSION) return u.key;
  return { ...u.key, wrappedKey: wrap(u.master, u.kek, KEYS_VERSION) };
}

function configMacOf(head: Uint8Array, master: Uint8Array): Buffer {
  return createHmac("sha256", configMacKey(master)).update(head).digest();
}

/** The configuration with its MAC computed under `master` (version 1 has none). */
export function sealConfig(c: RepositoryConfig, master: Uint8Array): RepositoryConfig {
  if (c.version < 2) return { ...c, configMac: null };
  return { ...c, configMac: new Uint8Array(configMacOf(encodeHead({ ...c, configMac: null }), master)) };
}

/** The exact bytes a decoded configuration's MAC covers (unknown keys included). */
const SIGNED = new WeakMap<RepositoryConfig, Uint8Array>();

/** The `encryption` map of the body: version 3's list of envelopes, or the one key of versions 1 and 2. */
function encryptionBody(c: RepositoryConfig): object | null {
  const enc = c.encryption;
  if (enc === null) return null;
  if (c.version === KEYS_VERSION) {
    return {
      cipher: enc.cipher,
      keys: enc.keys.map((k) => ({ id: k.id, host: k.host, user: k.user, created: BigInt(k.createdMs), kdf: k.kdf, wrappedKey: k.wrappedKey })),
    };
  }
  if (enc.keys.length !== 1) throw new TypeError(`a version-${c.version} configuration holds exactly one key`);
  return { kdf: enc.keys[0]!.kdf, cipher: enc.cipher, wrappedKey: enc.keys[0]!.wrappedKey };
}

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
      encryption: encryptionBody(c),
    },
    { useBigInt64: true },
  );
  return Buffer.concat([Buffer.from(CONFIG_MAGIC, "ascii"), Buffer.from([c.version]), body]);
}

export function encodeConfig(c: RepositoryConfig): Uint8Array {
  if (!READABLE_VERSIONS.includes(c.version)) throw new TypeError(`cannot encode configuration version ${c.version}`);
  const parts = [encodeHead(c)];
  if (c.version >= 2) {
    if (c.configMac === null || c.configMac.byteLength !== MAC_BYTES) throw new TypeError(`a version-${c.version} configuration needs its MAC (sealConfig)`);
    parts.push(Buffer.from(c.configMac));
  }
  const head = Buffer.concat(parts);
  return new Uint8Array(Buffer.concat([head, createHash("sha256").update(head).digest()]));
}

const within = (n: unknown, lo: number, hi: number): n is number => typeof n === "number" && Number.isInteger(n) && n >= lo && n <= hi;

/** Key derivation parameters as stored, checked; null if invalid. */
function kdfOf(k: unknown): KdfParams | null {
  if (typeof k !== "object" || k === null) return null;
  const p = k as Partial<KdfParams>;
  if (
    p.algorithm !== "argon2id" ||
    !(p.salt instanceof Uint8Array) || p.salt.byteLength < 8 || p.salt.byteLength > 64 ||
    !within(p.parallelism, 1, 255) || !within(p.passes, 1, 1000) ||
    !within(p.memory, 8 * p.parallelism, MAX_KDF_MEMORY_KIB)
  ) {
    return null;
  }
  return { algorithm: "argon2id", memory: p.memory, passes: p.passes, parallelism: p.parallelism, salt: p.salt };
}

const isWrappedKey = (w: unknown): w is Uint8Array => w instanceof Uint8Array && w.byteLength === 60;
const isName = (s: unknown): s is string => typeof s === "string" && s.length <= MAX_KEY_NAME && s.isWellFormed();

/** A version-3 key envelope as stored, checked; a string saying what is wrong otherwise. */
function envelopeOf(e: unknown): KeyEnvelope | string {
  if (typeof e !== "object" || e === null || Array.isArray(e)) return "a key is not a map";
  const o = e as Record<string, unknown>;
  const created = typeof o.created === "bigint" && o.created >= 0n && o.created <= BigInt(Number.MAX_SAFE_INTEGER) ? Number(o.created) : o.created;
  if (!(o.id instanceof Uint8Array) || o.id.byteLength !== KEY_ID_BYTES || !isName(o.host) || !isName(o.user) || !within(created, 0, Number.MAX_SAFE_INTEGER) || !isWrappedKey(o.wrappedKey)) {
    return "invalid key";
  }
  const kdf = kdfOf(o.kdf);
  if (kdf === null) return "invalid key derivation parameters";
  return { id: o.id, host: o.host, user: o.user, createdMs: created, kdf, wrappedKey: o.wrappedKey };
}

/** The `encryption` map of a decoded body, checked (see encryptionBody). */
function encryptionOf(enc: unknown, version: number, createdNs: bigint): EncryptionConfig | null {
  const bad = configCorrupt;
  if (enc === null) {
    if (version === KEYS_VERSION) throw bad("invalid encryption parameters (version 3 is encrypted)");
    return null;
  }
  if (typeof enc !== "object" || Array.isArray(enc) || (enc as { cipher?: unknown }).cipher !== "aes-256-gcm") throw bad("invalid encryption parameters");
  const e = enc as Record<string, unknown>;
  if (version === KEYS_VERSION) {
    if (!Array.isArray(e.keys) || e.keys.length > MAX_KEYS) throw bad(`invalid encryption parameters (keys must be a list of at most ${MAX_KEYS})`);
    const keys: KeyEnvelope[] = [];
    const ids = new Set<string>();
    for (const raw of e.keys) {
      const k = envelopeOf(raw);
      if (typeof k === "string") throw bad(k);
      const hex = Buffer.from(k.id).toString("hex");
      if (ids.has(hex)) throw bad("two keys have the same ID");
      ids.add(hex);
      keys.push(k);
    }
    return { cipher: "aes-256-gcm", keys };
  }
  if (!isWrappedKey(e.wrappedKey)) throw bad("invalid encryption parameters");
  const kdf = kdfOf(e.kdf);
  if (kdf === null) throw bad("invalid key derivation parameters");
  const createdMs = Number(createdNs / 1_000_000n);
  return { cipher: "aes-256-gcm", keys: [{ id: legacyKeyId(e.wrappedKey), host: "", user: "", createdMs: Number.isSafeInteger(createdMs) ? createdMs : 0, kdf, wrappedKey: e.wrappedKey }] };
}

export function decodeConfig(bytes: Uint8Array): RepositoryConfig {
  const b = Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const bad = configCorrupt;
  if (b.byteLength < 9 + 32 || b.toString("ascii", 0, 8) !== CONFIG_MAGIC) throw bad("not a coffer repository configuration");
  const head = b.subarray(0, b.byteLength - 32);
  if (!createHash("sha256").update(head).digest().equals(b.subarray(b.byteLength - 32))) throw bad("checksum mismatch (the file is damaged)");
  const version = b[8]!;
  if (!READABLE_VERSIONS.includes(version)) {
    throw new CofferError("UNSUPPORTED", `repository format version ${version} is not supported (this coffer reads versions ${READABLE_VERSIONS.slice(0, -1).join(", ")} and ${READABLE_VERSIONS.at(-1)})`);
  }
  const macBytes = version >= 2 ? MAC_BYTES : 0;
  if (head.byteLength < 9 + macBytes) throw bad("truncated");
  const bodyEnd = head.byteLength - macBytes;
  const o = decodeBounded(b.subarray(9, bodyEnd), (why) => bad(`undecodable body (${why})`), { useBigInt64: true }) as Record<string, unknown>;
  if (typeof o !== "object" || o === null || Array.isArray(o)) throw bad("body is not a map");
  const ch = o.chunking as ChunkingParams | undefined;
  const okNum = (n: unknown) => typeof n === "number" && Number.isSafeInteger(n) && n > 0;
  if (
    !(o.id instanceof Uint8Array) || o.id.byteLength !== 32 ||
    !ch || !okNum(ch.min) || !okNum(ch.avg) || !okNum(ch.max) ||
    (o.mac !== "blake3" && o.mac !== "hmac-sha256") ||
    (o.compression !== "zstd" && o.compression !== "none") ||
    !okNum(o.packSize) ||
    typeof o.created !== "bigint" ||
    o.encryption === undefined
  ) {
    throw bad("missing or invalid fields");
  }
  try {
    validateChunkingParams(ch);
  } catch (e) {
    throw bad((e as Error).message);
  }
  const config: RepositoryConfig = {
    version,
    id: o.id,
    createdNs: o.created,
    chunking: { min: ch.min, avg: ch.avg, max: ch.max },
    mac: o.mac,
    compression: o.compression,
    packSize: o.packSize as number,
    encryption: encryptionOf(o.encryption, version, o.created),
    configMac: macBytes === 0 ? null : new Uint8Array(head.subarray(bodyEnd)),
  };
  if (macBytes !== 0) SIGNED.set(config, new Uint8Array(b.subarray(0, bodyEnd)));
  return config;
}
