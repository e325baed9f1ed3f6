/**
 * Read planning: which ranged reads fetch a set of blobs from their
 * packfiles. Blobs are sorted by packfile and offset, and neighbours are
 * merged into one read across gaps of up to `maxGap` bytes, as long as the
 * read stays within `maxRead` bytes (a blob larger than that is a read of
 * its own). A pure function: blob-reader.ts schedules the reads.
 */
import { toHex } from "../util/hex.js";

/** Gap between two blobs that one read still spans (reading it costs less than another round trip). */
const MAX_GAP = 1 << 20;
/** Bytes of one merged read. */
export const MAX_READ = 4 << 20;

/** A blob to read: where it lies, and any value of the caller's (what it is for). */
export interface BlobSpan<T> {
  pack: Uint8Array;
  offset: number;
  length: number;
  item: T;
}

/** One ranged read of a packfile and the blobs it holds, in offset order. */
export interface PlannedRead<T> {
  pack: Uint8Array;
  offset: number;
  length: number;
  blobs: BlobSpan<T>[];
}

export interface PlanLimits {
  maxGap?: number;
  maxRead?: number;
}

/** The reads that fetch `blobs`, by packfile (in the order they first appear) then offset. Blobs at the same place share a read. */
export function planReads<T>(blobs: readonly BlobSpan<T>[], o: PlanLimits = {}): PlannedRead<T>[] {
  const maxGap = o.maxGap ?? MAX_GAP;
  const maxRead = o.maxRead ?? MAX_READ;
  const byPack = new Map<string, BlobSpan<T>[]>();
  for (const b of blobs) {
    const k = toHex(b.pack);
    let l = byPack.get(k);
    if (!l) byPack.set(k, (l = []));
    l.push(b);
  }
  const reads: PlannedRead<T>[] = [];
  for (const spans of byPack.values()) {
    spans.sort((a, b) => a.offset - b.offset || a.length - b.length);
    let cur: PlannedRead<T> | undefined;
    for (const b of spans) {
      const end = b.offset + b.length;
      if (cur) {
        const curEnd = cur.offset + cur.length;
        const newEnd = Math.max(curEnd, end);
        if (b.offset - curEnd <= maxGap && newEnd - cur.offset <= maxRead) {
          cur.length = newEnd - cur.offset;
          cur.blobs.push(b);
          continue;
        }
      }
      cur = { pack: b.pack, offset: b.offset, length: b.length, blobs: [b] };
      reads.push(cur);
    }
  }
  return reads;
}
