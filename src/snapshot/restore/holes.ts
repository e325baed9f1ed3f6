/**
 * Hole detection for sparse restores: a chunk is split into data and zero
 * pieces on HOLE_BLOCK boundaries of the file.
 */
import type { ContentPiece } from "../../connectors/records.js";

let zeros = Buffer.alloc(0);

function isZero(b: Uint8Array): boolean {
  if (zeros.byteLength < b.byteLength) zeros = Buffer.alloc(Math.max(b.byteLength, 1 << 20));
  return Buffer.compare(b, zeros.subarray(0, b.byteLength)) === 0;
}

const HOLE_BLOCK = 64 * 1024;

/**
 * Splits a chunk into data and zero pieces on HOLE_BLOCK boundaries of the
 * file, so that runs of zeros inside a chunk can be restored as holes.
 */
export function* pieces(data: Uint8Array, offset: number): Generator<ContentPiece> {
  const end = offset + data.byteLength;
  let runStart = offset;
  let runZero: boolean | undefined;
  let pos = offset;
  while (pos < end) {
    const next = Math.min(end, (Math.floor(pos / HOLE_BLOCK) + 1) * HOLE_BLOCK);
    const zero = next - pos === HOLE_BLOCK && isZero(data.subarray(pos - offset, next - offset));
    if (runZero !== undefined && zero !== runZero) {
      yield piece(data, offset, runStart, pos, runZero);
      runStart = pos;
    }
    runZero = zero;
    pos = next;
  }
  if (runZero !== undefined) yield piece(data, offset, runStart, end, runZero);
}

function piece(data: Uint8Array, base: number, from: number, to: number, zero: boolean): ContentPiece {
  return zero ? { offset: from, length: to - from, zero: true } : { offset: from, length: to - from, data: data.subarray(from - base, to - base) };
}

