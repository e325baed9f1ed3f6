/**
 * The blob codec: every blob (chunk, tree, snapshot header, pack index,
 * state delta, lock) is compressed, then encrypted (AES-256-GCM with a
 * per-blob key) or, in a plaintext repository, tagged with HMAC-SHA256.
 * Either way the blob's header, type and MAC are bound to it, so a blob
 * cannot be altered, truncated or swapped for another one unnoticed.
 * Layout (docs/FORMAT.md, "Blob encoding"):
 *   header (6 bytes): version=1, flags (bit 0: zstd), raw length u32 LE
 *   encrypted: salt(16) iv(12) ciphertext tag(16)
 *   plaintext: payload tag(32)
 */
import { createCipheriv, createDecipheriv, createHmac, createSecretKey, type KeyObject, randomBytes } from "node:crypto";
import { promisify } from "node:util";
import { constants as zc, createZstdCompress, type ZstdCompress, zstdCompress, zstdCompressSync, zstdDecompress, zstdDecompressSync } from "node:zlib";
import { CorruptError } from "../util/errors.js";
import { toHex } from "../util/hex.js";
import { MAC_SIZE, type Subkeys } from "./crypto.js";
import { SyncCompressor, SyncDecompressor } from "./zstd-sync.js";
import { copyInto } from "../util/ring.js";

const zstdCompressP = promisify(zstdCompress) as (buf: Uint8Array, opts: object) => Promise<Buffer>;

/**
 * A long-lived zstd compression stream that emits one complete frame per
 * input (flush with ZSTD_e_end): the compression context is reused instead
 * of being allocated for every blob, which costs more than compressing a
 * small blob. Work runs on the libuv pool; calls on one stream are serial.
 */
const FRAME_OUTPUT_CHUNK = 512 << 10;

class FrameCompressor {
  private readonly z: ZstdCompress;
  private out: Buffer[] = [];
  private tail: Promise<unknown> = Promise.resolve();
  private failed: Error | null = null;
  pending = 0;

  constructor(level: number) {
    // Output in 512 KiB pieces, not zlib's default 16 KiB: a callback and a
    // copy per piece made the main thread the bottleneck of large files.
    this.z = createZstdCompress({ chunkSize: FRAME_OUTPUT_CHUNK, params: { [zc.ZSTD_c_compressionLevel]: level } });
    this.z.on("data", (d: Buffer) => this.out.push(d));
    this.z.on("error", (e: Error) => {
      this.failed = e;
    });
  }

  get broken(): boolean {
    return this.failed !== null;
  }

  compress(buf: Uint8Array): Promise<Buffer> {
    this.pending++;
    const run = this.tail.then(
      () =>
        new Promise<Buffer>((resolve, reject) => {
          if (this.failed) return reject(this.failed);
          this.z.write(buf);
          this.z.flush(zc.ZSTD_e_end, () => {
            if (this.failed) return reject(this.failed);
            const o = this.out.length === 1 ? this.out[0]! : Buffer.concat(this.out);
            this.out = [];
            resolve(o);
          });
        }),
    );
    this.tail = run.catch(() => {});
    return run.finally(() => this.pending--);
  }
}

const POOL_SIZE = 4;
const pools = new Map<number, FrameCompressor[]>();

function compressFrame(buf: Uint8Array, level: number, opts: object): Promise<Buffer> {
  let pool = pools.get(level);
  if (!pool) pools.set(level, (pool = []));
  for (let i = pool.length - 1; i >= 0; i--) if (pool[i]!.broken) pool.splice(i, 1);
  let best = pool[0];
  for (const c of pool) if (c.pending < best!.pending) best = c;
  if (!best || (best.pending > 0 && pool.length < POOL_SIZE)) {
    try {
      best = new FrameCompressor(level);
      pool.push(best);
    } catch {
      return zstdCompressP(buf, opts);
    }
  }
  return best.compress(buf);
}
const zstdDecompressP = promisify(zstdDecompress) as (buf: Uint8Array, opts: object) => Promise<Buffer>;

export const BlobType = {
  CHUNK: 1,
  TREE: 2,
  SNAPSHOT: 3,
  ERRORS: 4,
  PACK_INDEX: 5,
  STATE: 6,
  LOCK: 7,
} as const;
export type BlobType = (typeof BlobType)[keyof typeof BlobType];

export function blobTypeName(t: number): string {
  for (const [k, v] of Object.entries(BlobType)) if (v === t) return k.toLowerCase();
  return `type-${t}`;
}

const VERSION = 1;
const FLAG_ZSTD = 1;
/** Bytes encrypted per cipher update in seal() (under glibc's 128 KiB mmap threshold, which the launcher sets). */
const CIPHER_PIECE = 64 << 10;
const HEADER = 6;
const SALT = 16;
const IV = 12;
const GCM_TAG = 16;
const HMAC_TAG = 32;
/**
 * Blobs from this raw size on may be judged by a probe before they are
 * compressed whole (Codec.worthCompressing): PROBE_SLICES slices of
 * PROBE_SLICE bytes, spread over the blob, compressed together.
 */
const PROBE_FROM = 256 << 10;
const PROBE_SLICE = 8 << 10;
const PROBE_SLICES = 4;
/** Blobs up to this raw size are decompressed on the calling thread. */
const SYNC_DECOMPRESS = 64 * 1024;
/** Largest raw blob accepted on decode (bounds memory against hostile input). */
export const MAX_RAW_BLOB = 256 * 1024 * 1024;
/**
 * zstd's largest expansion: a block decodes to 128 KiB at most and takes 4
 * bytes at least (an RLE block; RFC 8878, 3.1.1.2), so n bytes of frames
 * decode to less than n * 32768. A compressed blob claiming more is refused
 * before its output buffer is allocated.
 */
const ZSTD_MAX_RATIO = 32768;
/**
 * Largest encoded blob: a raw blob of MAX_RAW_BLOB bytes, or its zstd frame
 * (at most 1/256 larger: ZSTD_COMPRESSBOUND), with header, nonce and tag.
 */
export const MAX_ENCODED_BLOB = MAX_RAW_BLOB + (MAX_RAW_BLOB >>> 8) + 64;

export type Compression = "zstd" | "none";

/** Memory for `size` bytes chosen by the caller (a Buffer of exactly that size), or null for a new buffer. */
export type Allocate = (size: number) => Buffer | null;

/** Where decodeSync() may put a blob's decrypted payload and its decompressed bytes. */
export interface DecodeScratch {
  payload: Allocate;
  raw: Allocate;
}

export interface CodecOptions {
  keys: Subkeys;
  encrypted: boolean;
  compression: Compression;
  /** zstd level (default 3). */
  level?: number;
}

export class Codec {
  readonly overhead: number;
  private readonly zstdOpts: object;
  private readonly level: number;
  private readonly encKey: KeyObject;
  private readonly tagKey: KeyObject;
  /** Whether the last blob of PROBE_FROM bytes or more was stored uncompressed. */
  private lastLargeRaw = false;
  private probe: Buffer | null = null;
  /** Probes made, and blobs stored uncompressed on a probe's word (without being compressed whole). */
  readonly probes = { made: 0, skipped: 0 };

  constructor(private readonly opts: CodecOptions) {
    this.overhead = HEADER + (opts.encrypted ? SALT + IV + GCM_TAG : HMAC_TAG);
    this.level = opts.level ?? 3;
    this.zstdOpts = { params: { [zc.ZSTD_c_compressionLevel]: this.level } };
    this.encKey = createSecretKey(opts.keys.enc);
    this.tagKey = createSecretKey(opts.keys.tag);
  }

  /** Compress (when it helps) then seal `raw` as a blob of `type` named `mac`. */
  async encode(type: BlobType, mac: Uint8Array, raw: Uint8Array): Promise<Uint8Array> {
    const z = this.shouldCompress(raw) && this.worthCompressing(raw) ? await compressFrame(raw, this.level, this.zstdOpts) : null;
    this.noteLarge(raw, z);
    return this.sealSmaller(type, mac, raw, z);
  }

  /**
   * encode() on the calling thread (worker threads, and small blobs on the
   * main thread): zstd with the thread's kept context (zstd-sync.ts) avoids
   * a round trip through the libuv pool per blob.
   */
  encodeSync(type: BlobType, mac: Uint8Array, raw: Uint8Array, alloc?: Allocate): Uint8Array {
    if (!this.shouldCompress(raw) || !this.worthCompressing(raw)) {
      this.noteLarge(raw, null);
      return this.seal(type, mac, 0, raw.byteLength, raw, alloc);
    }
    // The reused context's output is a scratch buffer: sealed (copied) before the next call.
    const z = syncCompressor(this.level)?.compress(raw) ?? zstdCompressSync(raw, this.zstdOpts);
    this.noteLarge(raw, z);
    return this.sealSmaller(type, mac, raw, z, alloc);
  }

  private shouldCompress(raw: Uint8Array): boolean {
    return this.opts.compression === "zstd" && raw.byteLength >= 64;
  }

  /**
   * Whether `raw` is worth compressing whole. Incompressible content
   * (media, archives, encrypted files) costs zstd a third of the CPU that
   * text does and saves nothing. After a large blob that was stored
   * uncompressed, the next large one is judged by a probe first: slices
   * from PROBE_SLICES spots, compressed together (32 KiB, ~3% of a 1 MiB
   * chunk's work). It is compressed whole unless the probe saves less than
   * 1/128 of its size. Compressible content pays for no probe: only a blob
   * after an incompressible one is probed. What a probe can miss: a blob
   * whose compressible part lies between the slices, stored uncompressed.
   * What it spares: compressing such content whole (docs/PERFORMANCE.md).
   */
  private worthCompressing(raw: Uint8Array): boolean {
    if (raw.byteLength < PROBE_FROM || !this.lastLargeRaw) return true;
    const p = (this.probe ??= Buffer.allocUnsafe(PROBE_SLICES * PROBE_SLICE));
    const step = Math.floor((raw.byteLength - PROBE_SLICE) / (PROBE_SLICES - 1));
    for (let i = 0; i < PROBE_SLICES; i++) p.set(raw.subarray(i * step, i * step + PROBE_SLICE), i * PROBE_SLICE);
    const z = syncCompressor(this.level)?.compress(p) ?? zstdCompressSync(p, this.zstdOpts);
    this.probes.made++;
    if (z.byteLength < p.byteLength - p.byteLength / 128) return true;
    this.probes.skipped++;
    return false;
  }

  /** Remembers whether a large blob is stored uncompressed (`z`: its compressed form, if it was compressed). */
  private noteLarge(raw: Uint8Array, z: Uint8Array | null): void {
    if (raw.byteLength >= PROBE_FROM) this.lastLargeRaw = !(z !== null && saves(raw, z));
  }

  /** Seals the compressed form when it saves at least 1/64, else the raw bytes. */
  private sealSmaller(type: BlobType, mac: Uint8Array, raw: Uint8Array, z: Uint8Array | null, alloc?: Allocate): Uint8Array {
    if (z !== null && saves(raw, z)) return this.seal(type, mac, FLAG_ZSTD, raw.byteLength, z, alloc);
    return this.seal(type, mac, 0, raw.byteLength, raw, alloc);
  }

  /**
   * Seal without compression (for callers that compressed elsewhere). The
   * sealed blob goes into `alloc(size)` when given and it gives a buffer.
   */
  seal(type: BlobType, mac: Uint8Array, flags: number, rawLength: number, payload: Uint8Array, alloc?: Allocate): Uint8Array {
    const size = this.overhead + payload.byteLength;
    const out = alloc?.(size) ?? Buffer.allocUnsafe(size);
    out[0] = VERSION;
    out[1] = flags;
    out.writeUInt32LE(rawLength, 2);
    const header = out.subarray(0, HEADER);
    const aad = associated(header, type, mac);
    if (this.opts.encrypted) {
      const salt = out.subarray(HEADER, HEADER + SALT);
      const iv = out.subarray(HEADER + SALT, HEADER + SALT + IV);
      nonce(out, HEADER);
      const c = createCipheriv("aes-256-gcm", blobKey(this.encKey, salt), iv);
      c.setAAD(aad);
      const start = HEADER + SALT + IV;
      // In pieces: OpenSSL's output for each is a small buffer malloc reuses;
      // one the size of a large chunk was a fresh mapping, faulted in page by page.
      let n = 0;
      // `out` may be a ring's shared memory: copyInto() copies with memcpy there.
      for (let i = 0; i < payload.byteLength; i += CIPHER_PIECE) n += copyInto(out, start + n, c.update(payload.subarray(i, i + CIPHER_PIECE)));
      n += copyInto(out, start + n, c.final());
      copyInto(out, start + n, c.getAuthTag());
    } else {
      copyInto(out, HEADER, payload);
      const h = createHmac("sha256", this.tagKey).update(aad).update(payload).digest();
      h.copy(out, HEADER + payload.byteLength);
    }
    return out;
  }

  /** Authenticate, decrypt and decompress a blob; throws CorruptError on any mismatch. */
  async decode(type: BlobType, mac: Uint8Array, blob: Uint8Array): Promise<Uint8Array> {
    const o = this.open(type, mac, blob);
    // Small blobs: a thread-pool round trip costs more than decompressing them here.
    if ((o.flags & FLAG_ZSTD) === 0 || o.rawLength <= SYNC_DECOMPRESS) return this.inflateSync(type, mac, o);
    let raw: Uint8Array;
    try {
      raw = await zstdDecompressP(o.payload, inflateOptions(o.rawLength));
    } catch (e) {
      throw corrupt(type, mac, `cannot decompress (${(e as Error).message})`);
    }
    return checkLength(type, mac, raw, o.rawLength);
  }

  /**
   * decode() on the calling thread (for worker threads). With `scratch`,
   * the decrypted payload and the decompressed bytes go into its buffers
   * where it can (the result may then be a view of `scratch.raw`'s, valid
   * until its next use).
   */
  decodeSync(type: BlobType, mac: Uint8Array, blob: Uint8Array, scratch?: DecodeScratch): Uint8Array {
    return this.inflateSync(type, mac, this.open(type, mac, blob, scratch?.payload), scratch?.raw);
  }

  /** Decompresses an opened blob on this thread, with the thread's kept zstd context when it can. */
  private inflateSync(type: BlobType, mac: Uint8Array, o: Opened, into?: Allocate): Uint8Array {
    if ((o.flags & FLAG_ZSTD) !== 0) {
      const raw = syncDecompressor()?.decompress(o.payload, o.rawLength, into?.(o.rawLength + 1) ?? undefined);
      if (raw) return raw;
    }
    return inflate(type, mac, o, zstdDecompressSync); // also gives any error its usual form
  }

  /**
   * Authenticate and decrypt, leaving decompression to the caller; the
   * decrypted payload goes into `alloc(size)` when given and it gives a
   * buffer. The header is authenticated with the rest (it is in the AAD):
   * a header this version cannot read is bytes that fail authentication
   * (another blob's, a packfile swapped for another), reported as such.
   */
  open(type: BlobType, mac: Uint8Array, blob: Uint8Array, alloc?: Allocate): Opened {
    if (blob.byteLength < this.overhead) throw corrupt(type, mac, `authentication failed (truncated: ${blob.byteLength} bytes)`);
    const buf = Buffer.from(blob.buffer, blob.byteOffset, blob.byteLength);
    if (buf[0] !== VERSION) throw corrupt(type, mac, `authentication failed (bad header: unknown blob version ${buf[0]})`);
    const flags = buf[1]!;
    if ((flags & ~FLAG_ZSTD) !== 0) throw corrupt(type, mac, `authentication failed (bad header: unknown blob flags ${flags})`);
    const rawLength = buf.readUInt32LE(2);
    if (rawLength > MAX_RAW_BLOB) throw corrupt(type, mac, `authentication failed (bad header: raw length ${rawLength} too large)`);
    const payloadLength = buf.byteLength - this.overhead;
    if ((flags & FLAG_ZSTD) !== 0 && rawLength > payloadLength * ZSTD_MAX_RATIO) {
      throw corrupt(type, mac, `authentication failed (bad header: raw length ${rawLength} is more than ${payloadLength} compressed bytes hold)`);
    }
    const aad = associated(buf.subarray(0, HEADER), type, mac);
    if (this.opts.encrypted) {
      const salt = buf.subarray(HEADER, HEADER + SALT);
      const iv = buf.subarray(HEADER + SALT, HEADER + SALT + IV);
      const body = buf.subarray(HEADER + SALT + IV, buf.byteLength - GCM_TAG);
      const d = createDecipheriv("aes-256-gcm", blobKey(this.encKey, salt), iv);
      d.setAAD(aad);
      d.setAuthTag(buf.subarray(buf.byteLength - GCM_TAG));
      const out = alloc?.(body.byteLength) ?? Buffer.allocUnsafe(body.byteLength);
      // In pieces, as in seal(): each piece's output is a small buffer malloc reuses.
      let n = 0;
      for (let i = 0; i < body.byteLength; i += CIPHER_PIECE) n += d.update(body.subarray(i, i + CIPHER_PIECE)).copy(out, n);
      try {
        d.final();
      } catch {
        throw corrupt(type, mac, "authentication failed");
      }
      return { flags, rawLength, payload: out.subarray(0, n) };
    }
    const payload = buf.subarray(HEADER, buf.byteLength - HMAC_TAG);
    const want = createHmac("sha256", this.tagKey).update(aad).update(payload).digest();
    if (!want.equals(buf.subarray(buf.byteLength - HMAC_TAG))) throw corrupt(type, mac, "authentication failed");
    return { flags, rawLength, payload };
  }
}

/** zstd contexts kept for the synchronous calls of this thread (see zstd-sync.ts); null where Node does not allow it. */
const compressors = new Map<number, SyncCompressor | null>();
let decompressor: SyncDecompressor | null | undefined;

/** Whether compressed form `z` saves at least 1/64 of `raw`'s size (else the blob is stored uncompressed). */
function saves(raw: Uint8Array, z: Uint8Array): boolean {
  return z.byteLength < raw.byteLength - raw.byteLength / 64;
}

function syncCompressor(level: number): SyncCompressor | null {
  let c = compressors.get(level);
  if (c === undefined) compressors.set(level, (c = SyncCompressor.create(level)));
  return c;
}

function syncDecompressor(): SyncDecompressor | null {
  if (decompressor === undefined) decompressor = SyncDecompressor.create();
  return decompressor;
}

/** Whether this thread's synchronous encode/decode reuse zstd contexts (for tests). */
export function reusesZstdContexts(): boolean {
  return syncCompressor(3) !== null && syncDecompressor() !== null;
}

/** Random salt and IV bytes, drawn from a refilled pool (one getrandom call per 1024 blobs). */
let noncePool = Buffer.alloc(0);
let nonceAt = 0;
function nonce(into: Buffer, at: number): void {
  if (nonceAt + SALT + IV > noncePool.byteLength) {
    noncePool = randomBytes((SALT + IV) * 1024);
    nonceAt = 0;
  }
  noncePool.copy(into, at, nonceAt, nonceAt + SALT + IV);
  nonceAt += SALT + IV;
}

type Opened = { flags: number; rawLength: number; payload: Uint8Array };

/**
 * Decompression into one output buffer of the blob's known raw size: zlib's
 * default 16 KiB output chunks cost a JS round trip each and a final
 * concatenation (docs/PERFORMANCE.md). The size is authenticated (the
 * header is in the AAD), and maxOutputLength still refuses more.
 */
function inflateOptions(rawLength: number): object {
  return { maxOutputLength: Math.max(rawLength, 1), chunkSize: Math.max(rawLength, MIN_ZLIB_CHUNK) };
}
const MIN_ZLIB_CHUNK = 64;

function inflate(type: BlobType, mac: Uint8Array, o: Opened, decompress: (b: Uint8Array, opts: object) => Uint8Array): Uint8Array {
  if ((o.flags & FLAG_ZSTD) === 0) return checkLength(type, mac, o.payload, o.rawLength);
  let raw: Uint8Array;
  try {
    raw = decompress(o.payload, inflateOptions(o.rawLength));
  } catch (e) {
    throw corrupt(type, mac, `cannot decompress (${(e as Error).message})`);
  }
  return checkLength(type, mac, raw, o.rawLength);
}

function checkLength(type: BlobType, mac: Uint8Array, raw: Uint8Array, rawLength: number): Uint8Array {
  if (raw.byteLength !== rawLength) throw corrupt(type, mac, "length mismatch");
  return raw;
}

function associated(header: Uint8Array, type: BlobType, mac: Uint8Array): Buffer {
  if (mac.byteLength !== MAC_SIZE) throw new TypeError("MAC must be 32 bytes");
  const a = Buffer.allocUnsafe(HEADER + 1 + MAC_SIZE);
  a.set(header, 0);
  a[HEADER] = type;
  a.set(mac, HEADER + 1);
  return a;
}

/**
 * The blob's AES key, as a KeyObject: createCipheriv() imports a Buffer key
 * anew on every call, which made sealing a small blob about twice as slow
 * (docs/PERFORMANCE.md).
 */
function blobKey(enc: KeyObject, salt: Uint8Array): KeyObject {
  return createSecretKey(createHmac("sha256", enc).update(salt).digest());
}

function corrupt(type: BlobType, mac: Uint8Array, detail: string): CorruptError {
  return new CorruptError(`${blobTypeName(type)} blob ${toHex(mac).slice(0, 16)}`, detail, { type, mac: toHex(mac) });
}

/** A blob's CorruptError (from decode) as read from packfile `pack`: the same, the packfile named first. */
export function inPackfile(e: unknown, pack: Uint8Array | string): unknown {
  if (!(e instanceof CorruptError) || e.data.pack !== undefined) return e;
  const hex = typeof pack === "string" ? pack : toHex(pack);
  return new CorruptError(`packfile ${hex}`, e.message, { ...e.data, pack: hex });
}
