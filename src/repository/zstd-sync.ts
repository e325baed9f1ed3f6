/**
 * Synchronous zstd with a context kept across calls, for the hot paths of
 * worker threads (one blob per call). Node's zstdCompressSync() and
 * zstdDecompressSync() build a stream and a native zstd context on every
 * call, which costs more than compressing or decompressing a small blob
 * (docs/PERFORMANCE.md). Node has no public synchronous API that keeps a
 * context, so this drives one zlib stream's
 * native handle with the call zlib's own synchronous path makes
 * (`handle.writeSync`, results in `_writeState`), one whole frame per call
 * (ZSTD_e_end), which leaves the context ready for the next frame.
 *
 * It stays on the safe side of that undocumented surface: when the handle
 * does not look as expected (another Node), `create*()` gives null and
 * callers use the one-shot calls; after any error or a result that is not
 * exactly one whole frame, the context is thrown away and the call reports
 * failure, and callers fall back to the one-shot call (which gives the error
 * its usual form). Decompression is only given input that parses as exactly
 * one complete frame (zstdFrameEnd), so the context never carries a partial
 * frame from one call into the next. test/unit/codec.test.ts checks that
 * this path is taken on the Node coffer runs on and matches the one-shot
 * calls byte for byte.
 */
import { constants as zc, createZstdCompress, createZstdDecompress, type ZstdCompress, type ZstdDecompress } from "node:zlib";

interface NativeHandle {
  writeSync(flush: number, input: Uint8Array, inOff: number, inLen: number, out: Uint8Array, outOff: number, outLen: number): void;
  onerror: (message: string, errno: number) => void;
}

/** One zlib stream's native zstd handle, replaced after any failure. */
class Context {
  private stream: ZstdCompress | ZstdDecompress | null = null;
  private handle: NativeHandle | null = null;
  private state: Uint32Array | null = null;
  private failed = false;

  constructor(private readonly make: () => ZstdCompress | ZstdDecompress) {}

  /** Opens a context; false when this Node's stream does not have the expected handle. */
  open(): boolean {
    const s = this.make() as unknown as { _handle?: NativeHandle; _writeState?: unknown; close(): void };
    const h = s._handle;
    if (!h || typeof h.writeSync !== "function" || !(s._writeState instanceof Uint32Array) || s._writeState.length < 2) {
      s.close();
      return false;
    }
    // Errors come back through this callback during writeSync; the stream
    // itself never sees them (it is only a holder of the handle).
    h.onerror = () => {
      this.failed = true;
    };
    this.stream = s as unknown as ZstdCompress | ZstdDecompress;
    this.handle = h;
    this.state = s._writeState;
    return true;
  }

  /**
   * Runs `input` through the context as one whole frame into `out`; the
   * number of bytes written, or -1 (context discarded) when it failed, did
   * not take all the input or filled `out`.
   */
  run(input: Uint8Array, out: Uint8Array): number {
    if (!this.handle && !this.open()) return -1;
    this.failed = false;
    this.handle!.writeSync(zc.ZSTD_e_end, input, 0, input.byteLength, out, 0, out.byteLength);
    const availOut = this.state![0]!;
    const availIn = this.state![1]!;
    if (this.failed || availIn !== 0 || availOut === 0) {
      this.discard();
      return -1;
    }
    return out.byteLength - availOut;
  }

  discard(): void {
    this.stream?.close();
    this.stream = null;
    this.handle = null;
    this.state = null;
  }
}

/** Upper bound of a zstd frame's size for `n` input bytes (ZSTD_COMPRESSBOUND). */
function compressBound(n: number): number {
  return n + (n >>> 8) + (n < 128 << 10 ? ((128 << 10) - n) >>> 11 : 0);
}

export class SyncCompressor {
  private scratch = Buffer.allocUnsafe(0);

  private constructor(private readonly ctx: Context) {}

  /** A compressor at zstd `level`, or null when this Node does not allow one. */
  static create(level: number): SyncCompressor | null {
    const ctx = new Context(() => createZstdCompress({ params: { [zc.ZSTD_c_compressionLevel]: level } }));
    return ctx.open() ? new SyncCompressor(ctx) : null;
  }

  /**
   * One zstd frame of `input`, as a view of a scratch buffer that the next
   * call overwrites (use or copy it first); null when the call failed (the
   * caller compresses another way).
   */
  compress(input: Uint8Array): Buffer | null {
    const need = compressBound(input.byteLength) + 64;
    if (this.scratch.byteLength < need) this.scratch = Buffer.allocUnsafe(need);
    const n = this.ctx.run(input, this.scratch);
    return n < 0 ? null : this.scratch.subarray(0, n);
  }
}

export class SyncDecompressor {
  private constructor(private readonly ctx: Context) {}

  /** A decompressor, or null when this Node does not allow one. */
  static create(): SyncDecompressor | null {
    const ctx = new Context(() => createZstdDecompress());
    return ctx.open() ? new SyncDecompressor(ctx) : null;
  }

  /**
   * The `rawLength` bytes of `frame`, or null when `frame` is not exactly one
   * complete zstd frame or does not decompress to exactly `rawLength` bytes
   * (the caller decompresses another way and reports the error). Into `into`
   * (a view of it) when given: it must hold rawLength + 1 bytes.
   */
  decompress(frame: Uint8Array, rawLength: number, into?: Buffer): Buffer | null {
    if (zstdFrameEnd(frame) !== frame.byteLength) return null;
    // One byte more than expected: a frame that decodes to more fills it.
    const out = into && into.byteLength >= rawLength + 1 ? into.subarray(0, rawLength + 1) : Buffer.allocUnsafe(rawLength + 1);
    const n = this.ctx.run(frame, out);
    return n === rawLength ? out.subarray(0, n) : null;
  }
}

const ZSTD_MAGIC = 0xfd2fb528;

/**
 * Where the zstd frame at the start of `b` ends (RFC 8878, 3.1.1), by its
 * header and block headers, without decoding; -1 when `b` does not hold a
 * complete frame there.
 */
export function zstdFrameEnd(b: Uint8Array): number {
  if (b.byteLength < 6) return -1;
  const dv = new DataView(b.buffer, b.byteOffset, b.byteLength);
  if (dv.getUint32(0, true) !== ZSTD_MAGIC) return -1;
  const fhd = b[4]!;
  if (fhd & 0x08) return -1; // reserved bit
  const fcsFlag = fhd >>> 6;
  const singleSegment = (fhd >>> 5) & 1;
  const checksum = (fhd >>> 2) & 1;
  const dictIdSize = [0, 1, 2, 4][fhd & 3]!;
  const fcsSize = fcsFlag === 0 ? singleSegment : [0, 2, 4, 8][fcsFlag]!;
  let at = 5 + (singleSegment ? 0 : 1) + dictIdSize + fcsSize;
  for (;;) {
    if (at + 3 > b.byteLength) return -1;
    const h = b[at]! | (b[at + 1]! << 8) | (b[at + 2]! << 16);
    const last = h & 1;
    const type = (h >>> 1) & 3;
    const size = h >>> 3;
    if (type === 3) return -1; // reserved block type
    at += 3 + (type === 1 ? 1 : size);
    if (at > b.byteLength) return -1;
    if (last) break;
  }
  at += checksum ? 4 : 0;
  return at <= b.byteLength ? at : -1;
}
