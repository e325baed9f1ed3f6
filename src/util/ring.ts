/**
 * Buffers lent across threads without a fresh allocation each: a worker
 * thread places the bytes it posts (a large file's raw chunks, encoded
 * blobs) in a ring of shared memory, and the thread that receives them gives
 * each one back once done with its bytes. A buffer of a large chunk's size
 * from malloc is a fresh mapping, faulted in page by page and unmapped when
 * freed (the launcher keeps glibc's mmap threshold at 128 KiB); on a large
 * file those page faults, and the forced collections that free the
 * buffers, were a large share of the CPU (docs/PERFORMANCE.md).
 *
 * The ring never waits: when the bytes do not fit (the receiver holds too
 * much of it), the writer allocates a buffer of its own instead. Giving back is in
 * order of allocation (the receiver holds a buffer given back early until
 * every earlier one is), so a buffer never given back only makes the ring
 * fill up: the bytes stay correct, the allocations come back.
 *
 * Across threads: the writer's ring (a SharedArrayBuffer it makes) travels
 * with each view it posts; the count of buffers given back, in order, is
 * one Int32 of a SharedArrayBuffer shared beforehand, written by the
 * receiver and read by the writer.
 */

/** Sequence numbers and the given-back count wrap at 2^32 (compared by difference). */
const wrap = (n: number): number => n | 0;

interface Lent {
  seq: number;
  start: number;
}

/** The writer's side (one thread). */
export class RingWriter {
  private ring: Buffer | null = null;
  private readonly given: Int32Array;
  /** Lent buffers not known to be given back, oldest first (from `head`). */
  private lent: Lent[] = [];
  private head = 0;
  private at = 0;
  private nextSeq = 0;
  /** Sequence number of the last alloc(). */
  lastSeq = 0;
  /** Allocations made (undo() takes one back). */
  count = 0;
  /** count at the last idle() call. */
  private countAtIdle = 0;

  /**
   * `size`: bytes of the ring, made at its first use. `given`: the Int32 the
   * receiver counts given-back buffers in (see RingReceiver).
   */
  constructor(
    readonly size: number,
    given: SharedArrayBuffer,
  ) {
    this.given = new Int32Array(given, 0, 1);
  }

  /** Whether `b` is a view of this ring. */
  owns(b: ArrayBufferView): boolean {
    return this.ring !== null && b.buffer === this.ring.buffer;
  }

  /**
   * `n` bytes of the ring (sequence number in `lastSeq`), or null when they
   * do not fit now. The caller posts the view with its sequence number, or
   * calls undo() before anything else is allocated (`count` tells whether
   * something was).
   */
  alloc(n: number): Buffer | null {
    if (n <= 0 || n > this.size) return null;
    const start = this.place(n);
    if (start < 0) return null;
    this.ring ??= Buffer.from(new SharedArrayBuffer(this.size));
    const seq = wrap(this.nextSeq);
    this.nextSeq = wrap(this.nextSeq + 1);
    this.lent.push({ seq, start });
    this.at = start + n;
    this.lastSeq = seq;
    this.count++;
    return this.ring.subarray(start, start + n);
  }

  /** Takes back the last allocation (not posted: the encoding failed). */
  undo(): void {
    const last = this.lent.length > this.head ? this.lent.pop()! : null;
    if (!last) return;
    this.nextSeq = last.seq;
    this.at = last.start;
    this.count--;
  }

  /**
   * Lets go of the ring when nothing was allocated since the last call:
   * its memory is freed once the views lent from it are collected (on
   * both threads), and the next alloc() makes a new one. Buffers still lent
   * from the old ring are counted when given back as before; the new
   * ring's are reused only after them (in order).
   */
  idle(): void {
    if (this.count === this.countAtIdle && this.ring) {
      this.ring = null;
      this.lent = [];
      this.head = 0;
      this.at = 0;
    }
    this.countAtIdle = this.count;
  }

  /** Where `n` bytes go, or -1. */
  private place(n: number): number {
    this.reclaim();
    if (this.head === this.lent.length) return 0; // all given back: start over at the beginning
    const tail = this.lent[this.head]!.start; // the oldest buffer still lent
    if (tail < this.at) {
      if (this.at + n <= this.size) return this.at;
      return n <= tail ? 0 : -1; // wrap (the rest of the end stays unused this turn)
    }
    if (tail === this.at) return -1; // lent buffers go all the way round
    return this.at + n <= tail ? this.at : -1;
  }

  private reclaim(): void {
    const given = Atomics.load(this.given, 0);
    while (this.head < this.lent.length && wrap(given - this.lent[this.head]!.seq) > 0) this.head++;
    if (this.head > 64 && this.head * 2 > this.lent.length) {
      this.lent = this.lent.slice(this.head);
      this.head = 0;
    }
  }
}

/** The receiver's side: gives buffers back, by sequence number, in any order. */
export class RingReceiver {
  private readonly given: Int32Array;
  private next = 0;
  private readonly early = new Set<number>();

  constructor(given: SharedArrayBuffer) {
    this.given = new Int32Array(given, 0, 1);
  }

  giveBack(seq: number): void {
    if (seq !== this.next) {
      this.early.add(seq);
      return;
    }
    this.next = wrap(this.next + 1);
    while (this.early.delete(this.next)) this.next = wrap(this.next + 1);
    Atomics.store(this.given, 0, this.next);
  }
}

/**
 * Views lent by a ring, on the receiving thread, with what gives each one
 * back. Whoever holds the view last calls giveBack() once done with its
 * bytes (written, copied or dropped); views not lent are ignored.
 */
const lenders = new WeakMap<ArrayBufferView, () => void>();

export function lend(view: ArrayBufferView, back: () => void): void {
  lenders.set(view, back);
}

export function isLent(view: ArrayBufferView): boolean {
  return lenders.has(view);
}

export function giveBack(view: ArrayBufferView): void {
  const back = lenders.get(view);
  if (!back) return;
  lenders.delete(view);
  back();
}

/** `view`'s bytes in memory of their own (a copy if it was lent, given back now); others as they are. */
export function ownBytes(view: Uint8Array): Uint8Array {
  if (!lenders.has(view)) return view;
  const copy = Buffer.allocUnsafeSlow(view.byteLength);
  copyInto(copy, 0, view);
  giveBack(view);
  return copy;
}

/**
 * Copies `src` into `dst` at `at` (which must have room; the two must not
 * overlap); gives the number of bytes copied. TypedArray#set and
 * Buffer#copy go through V8's relaxed memmove when either side is shared
 * memory (the rings), and it copies byte by byte unless both sides are
 * word-aligned alike, which chunks cut anywhere in a read buffer seldom
 * are; Buffer#fill with a value of exactly the range's length is one
 * memcpy in Node's C++, several times faster (docs/PERFORMANCE.md).
 */
export function copyInto(dst: Buffer, at: number, src: Uint8Array): number {
  const n = src.byteLength;
  if (n > 0) dst.fill(src, at, at + n);
  return n;
}
