/**
 * Content-defined chunking: FastCDC (Xia et al., "The Design of Fast
 * Content-Defined Chunking for Data Deduplication Based Storage Systems",
 * IEEE TPDS 2020) with a gear rolling hash, normalized chunking level 2 and
 * cut-point skipping, rolling two bytes per step. The snapshot builder cuts
 * file contents into chunks here; each chunk is then MACed, deduplicated,
 * compressed and encrypted by the layers above. Cut points are part of the
 * repository format: changing anything below changes which chunks a file
 * yields, and so defeats deduplication against earlier snapshots.
 *
 * ---- begin docs/FORMAT.md "Chunking" ----
 * Parameters (repository configuration, `chunking`): min, avg, max, integers
 * with 1 <= min <= avg <= max <= 2^30 and avg a power of two, 2^4 <= avg <=
 * 2^28 (default min 512 KiB, avg 1 MiB, max 8 MiB).
 *
 * Gear table: 256 uint32 values derived from the repository's 32-byte gear
 * seed (the HKDF subkey "coffer/v1/gear", see "Keys"), so that chunk sizes
 * do not fingerprint known files across repositories:
 *   for j = 0 .. 31:
 *     D_j = SHA-256( ASCII "coffer/v1/gear-table" (20 bytes, no terminator)
 *                    || seed (32 bytes) || uint32_be(j) (4 bytes) )
 *     gear[8*j + k] = uint32_be(D_j[4*k .. 4*k+4])   for k = 0 .. 7
 *
 * Masks: with b = log2(avg), let top(n) be the 32-bit mask with bits
 * 31-n .. 30 set (n ones directly below the most significant bit, which is
 * never used): maskS = top(b + 2), maskL = top(b - 2).
 *
 * Cutting a chunk that starts at offset s of a stream with e bytes left
 * (e = total length - s), all arithmetic on uint32, modulo 2^32:
 *   if e <= min: the chunk is the rest of the stream.
 *   limit = min(e, max); normal = min(avg, limit); h = 0
 *   for i = min .. limit-1:            (bytes before min are not hashed)
 *     h = (h << 1) + gear[data[s+i]]
 *     if h & (i < normal ? maskS : maskL) == 0: the chunk is data[s, s+i+1)
 *   otherwise the chunk is data[s, s+limit).
 * The next chunk starts where this one ends. Every chunk but the last has a
 * length in [min+1, max] (or exactly min = max); the last may be shorter.
 * ---- end ----
 *
 * Two bytes per step: h2 = (h << 2) + (gear[x] << 1) equals h' << 1 where
 * h' = (h << 1) + gear[x], so h' & mask == 0 iff h2 & (mask << 1) == 0 as
 * long as mask leaves bit 31 clear (which is why the masks never use it);
 * then h2 + gear[y] is the hash after the next byte y.
 */
import { createHash } from "node:crypto";

/** Chunk size parameters, in bytes (repository configuration `chunking`). */
export interface ChunkingParams {
  readonly min: number;
  readonly avg: number;
  readonly max: number;
}

export const DEFAULT_CHUNKING: ChunkingParams = Object.freeze({ min: 512 * 1024, avg: 1024 * 1024, max: 8 * 1024 * 1024 });

/** Validated parameters, the gear table and everything precomputed from them; build with chunkerConfig or makeChunker. */
export interface ChunkerConfig extends ChunkingParams {
  readonly gear: Uint32Array;
  /** Mask used from min up to avg (b + 2 bits: fewer cuts below avg). */
  readonly maskS: number;
  /** Mask used from avg up to max (b - 2 bits: more cuts above avg). */
  readonly maskL: number;
  /** gear as int32, and gear << 1 (the first byte of each two-byte step). */
  readonly gear1: Int32Array;
  readonly gear2: Int32Array;
}

const MIN_AVG = 2 ** 4;
const MAX_AVG = 2 ** 28;
const MAX_MAX = 2 ** 30;
const SEED_SIZE = 32;
const GEAR_LABEL = Buffer.from("coffer/v1/gear-table", "ascii");

/** Throws a TypeError naming the first invalid parameter. */
export function validateChunkingParams(params: ChunkingParams): void {
  const { min, avg, max } = params;
  const bad = (name: string, value: unknown, rule: string) =>
    new TypeError(`chunker: invalid ${name} ${String(value)}: ${rule}`);
  if (!Number.isSafeInteger(avg) || avg < MIN_AVG || avg > MAX_AVG || (avg & (avg - 1)) !== 0) {
    throw bad("avg", avg, `must be a power of two between ${MIN_AVG} and ${MAX_AVG}`);
  }
  if (!Number.isSafeInteger(min) || min < 1 || min > avg) {
    throw bad("min", min, `must be an integer between 1 and avg (${avg})`);
  }
  if (!Number.isSafeInteger(max) || max < avg || max > MAX_MAX) {
    throw bad("max", max, `must be an integer between avg (${avg}) and ${MAX_MAX}`);
  }
}

/** The 256-entry gear table of a repository, from its 32-byte seed (derivation in the header comment). */
export function gearTable(seed: Uint8Array): Uint32Array {
  if (!(seed instanceof Uint8Array) || seed.byteLength !== SEED_SIZE) {
    throw new TypeError(`chunker: invalid seed: must be a Uint8Array of ${SEED_SIZE} bytes`);
  }
  const table = new Uint32Array(256);
  const counter = Buffer.alloc(4);
  for (let j = 0; j < 32; j++) {
    counter.writeUInt32BE(j, 0);
    const d = createHash("sha256").update(GEAR_LABEL).update(seed).update(counter).digest();
    for (let k = 0; k < 8; k++) table[8 * j + k] = d.readUInt32BE(4 * k);
  }
  return table;
}

/** n ones directly below bit 31 (bits 31-n .. 30). */
function topMask(n: number): number {
  return (0x7fffffff >>> (31 - n)) << (31 - n);
}

/** Validates the parameters and precomputes masks and tables. The gear table is copied. */
export function chunkerConfig(params: ChunkingParams, gear: Uint32Array): ChunkerConfig {
  validateChunkingParams(params);
  if (!(gear instanceof Uint32Array) || gear.length !== 256) {
    throw new TypeError("chunker: invalid gear: must be a Uint32Array of 256 entries");
  }
  const bits = Math.log2(params.avg);
  const gear1 = new Int32Array(gear); // element-wise ToInt32: same bits
  return Object.freeze({
    min: params.min,
    avg: params.avg,
    max: params.max,
    gear: new Uint32Array(gear),
    maskS: topMask(bits + 2),
    maskL: topMask(bits - 2),
    gear1,
    gear2: gear1.map((v) => v << 1),
  });
}

/** chunkerConfig(params, gearTable(seed)). */
export function makeChunker(params: ChunkingParams, seed: Uint8Array): ChunkerConfig {
  return chunkerConfig(params, gearTable(seed));
}

/** The hash after a scan that found no cut (a second return value; read right after the call). */
let scanHash = 0;

/**
 * The hot loop. Rolls data[i, stop) into h and returns the index just past
 * the first byte after which (h & mask) == 0, or -1 (then scanHash holds h).
 */
function scan(data: Uint8Array, i: number, stop: number, h: number, mask: number, g1: Int32Array, g2: Int32Array): number {
  const mask2 = mask << 1;
  const last = stop - 1;
  for (; i < last; i += 2) {
    h = ((h << 2) + g2[data[i]!]!) | 0;
    if ((h & mask2) === 0) return i + 1;
    h = (h + g1[data[i + 1]!]!) | 0;
    if ((h & mask) === 0) return i + 2;
  }
  if (i < stop) {
    h = ((h << 1) + g1[data[i]!]!) | 0;
    if ((h & mask) === 0) return i + 1;
  }
  scanHash = h;
  return -1;
}

/**
 * The end (exclusive) of the chunk that starts at `start`, looking only at
 * data[start, end), where `end` is the end of the stream: if end - start <=
 * min the chunk is all of it, and a chunk never exceeds max.
 */
export function findCut(data: Uint8Array, start: number, end: number, p: ChunkerConfig): number {
  if (!(Number.isInteger(start) && Number.isInteger(end) && 0 <= start && start <= end && end <= data.length)) {
    throw new RangeError(`chunker: invalid range [${start}, ${end}) of ${data.length} bytes`);
  }
  const n = end - start;
  if (n <= p.min) return end;
  const limit = start + (n < p.max ? n : p.max);
  const normal = Math.min(start + p.avg, limit);
  let cut = scan(data, start + p.min, normal, 0, p.maskS, p.gear1, p.gear2);
  if (cut >= 0) return cut;
  cut = scan(data, normal, limit, scanHash, p.maskL, p.gear1, p.gear2);
  return cut >= 0 ? cut : limit;
}

/** Pieces shorter than this are copied into a staging block instead of being kept by reference. */
const STAGE_SIZE = 64 * 1024;

/**
 * Cuts a stream into chunks, with the cut points findCut gives over the whole
 * concatenated stream. Input pieces may have any size (empty ones are
 * skipped) and must not be modified afterwards: a chunk that lies inside one
 * piece is yielded as a subarray of it, a chunk spanning pieces as a fresh
 * copy. The chunker never writes to memory it has yielded, so the caller owns
 * every chunk. It holds at most about max bytes plus one input piece. The last
 * chunk may be shorter than min; an empty stream yields nothing.
 */
export async function* chunkStream(source: AsyncIterable<Uint8Array>, cfg: ChunkerConfig): AsyncGenerator<Uint8Array> {
  const { min, avg, max, maskS, maskL, gear1, gear2 } = cfg;
  // The current chunk so far: pending (in order), then stage[0, staged).
  let pending: Uint8Array[] = [];
  let stage: Uint8Array | null = null;
  let staged = 0;
  let len = 0; // bytes of the current chunk before the byte being examined
  let h = 0;

  const assemble = (tail: Uint8Array): Uint8Array => {
    const out = new Uint8Array(len);
    let o = 0;
    for (const p of pending) {
      out.set(p, o);
      o += p.length;
    }
    if (staged > 0) {
      out.set(stage!.subarray(0, staged), o);
      o += staged;
    }
    out.set(tail, o);
    pending = [];
    staged = 0; // stage's bytes were copied out: the block can be refilled
    return out;
  };

  const keep = (tail: Uint8Array, pieceLength: number): void => {
    if (tail.length >= STAGE_SIZE || pieceLength > max) {
      if (staged > 0) {
        pending.push(stage!.subarray(0, staged));
        stage = null; // its bytes are now referenced from pending
        staged = 0;
      }
      // Keep a small piece by reference; copy the tail of a big one so the piece can be freed.
      pending.push(pieceLength > max ? tail.slice() : tail);
      return;
    }
    let t = tail;
    while (t.length > 0) {
      if (stage === null) stage = new Uint8Array(STAGE_SIZE);
      const k = Math.min(t.length, STAGE_SIZE - staged);
      stage.set(t.subarray(0, k), staged);
      staged += k;
      t = t.subarray(k);
      if (staged === STAGE_SIZE) {
        pending.push(stage);
        stage = null;
        staged = 0;
      }
    }
  };

  for await (const piece of source) {
    const n = piece.length;
    let seg = 0; // where the current chunk's part in this piece begins
    let i = 0; // next byte to examine; len counts the chunk's bytes before it
    while (i < n) {
      if (len < min) {
        const k = Math.min(min - len, n - i);
        i += k;
        len += k;
        continue;
      }
      const phaseS = len < avg;
      const stop = i + Math.min((phaseS ? avg : max) - len, n - i);
      let cut = scan(piece, i, stop, h, phaseS ? maskS : maskL, gear1, gear2);
      if (cut < 0) {
        h = scanHash;
        len += stop - i;
        i = stop;
        if (len < max) continue;
        cut = i;
      } else {
        len += cut - i;
        i = cut;
      }
      yield pending.length === 0 && staged === 0 ? piece.subarray(seg, cut) : assemble(piece.subarray(seg, cut));
      len = 0;
      h = 0;
      seg = cut;
    }
    if (seg < n) keep(piece.subarray(seg), n);
  }
  if (len > 0) {
    yield pending.length === 1 && staged === 0 ? pending[0]! : assemble(new Uint8Array(0));
  }
}
