/**
 * Worker thread of the backup pipeline: reads local files, cuts them with
 * FastCDC, MACs, compresses and encrypts each chunk, and posts the encoded
 * chunks to the main thread in file order. The main thread deduplicates and
 * packs them (see chunk-pool.ts). Back-pressure: a shared counter of bytes
 * posted but not yet consumed; the worker blocks (Atomics.wait) while it is
 * over the limit.
 *
 * Small files are read whole; while reads wait for the disk, the next few
 * are read ahead on the libuv pool, so that a cold disk has several reads
 * in flight (one synchronous reader per worker left it idle half the time).
 * Larger files are read in 4 MiB pieces, the next one in flight while the
 * one in hand is cut and encoded; large ones with O_DIRECT (see readFile).
 */
import { closeSync, constants, fstatSync, openSync, read, readSync } from "node:fs";
import { parentPort, workerData } from "node:worker_threads";
import { makeChunker, findCut } from "../../repository/chunker.js";
import { type Allocate, BlobType, Codec } from "../../repository/codec.js";
import { Mac } from "../../repository/crypto.js";
import type { PoolInit, ToMain, ToWorker } from "./chunk-pool.js";
import { copyInto, RingWriter } from "../../util/ring.js";
import { collectAfter } from "../workers.js";
import { fsPath } from "../../util/names.js";
import { probeDirectOffset } from "../../util/direct-io.js";

const init = workerData as PoolInit;
const chunker = makeChunker(init.chunking, init.keys.gear);
const codec = new Codec({ keys: init.keys, encrypted: init.encrypted, compression: init.compression });
const mac = await Mac.create(init.mac, init.keys.mac);
const credit = new Int32Array(init.credit);
const backlog = new Int32Array(init.backlog);
const port = parentPort!;
const READ = 4 << 20;
/** Room for a chunk of max size in hand, a read in flight after it, and alignment (see readFile). */
const buf = Buffer.allocUnsafe(chunker.max + 2 * READ + 2 * 4096);
/** Bytes in hand before a cut is looked for: most chunks end before twice the average size. */
const ENOUGH = Math.min(chunker.max, 2 * chunker.avg);

/**
 * Rings the chunks of a file of LEND_FILE_MIN bytes or more are posted from
 * (util/ring.ts): its raw chunks, and its encoded chunks of the size that
 * malloc would map afresh (128 KiB on: the launcher's mmap threshold). Each
 * holds what the main thread has not written or passed on yet, within the
 * credit (CREDIT_LIMIT in chunk-pool.ts) and the packfile's unwritten bytes
 * (UNWRITTEN_MAX in repository.ts); beyond that, buffers are allocated.
 * A ring's memory stays resident once touched (three rings, 48 MiB, while
 * one file is read): worth it for a file of GiBs, which it spares most of
 * its page faults, not for one of tens of MiB, whose peak RSS it only
 * raises; so the rings are for large files only and let go once idle
 * (docs/PERFORMANCE.md).
 */
const RING_SIZE = 16 << 20;
const LEND_FROM = 128 << 10;
const LEND_FILE_MIN = 256 << 20;
const rawRing = new RingWriter(RING_SIZE, init.rawGiven);
const sealedRing = new RingWriter(RING_SIZE, init.sealedGiven);
// A ring not used for a second is let go (its memory freed): large files are few.
setInterval(() => {
  rawRing.idle();
  sealedRing.idle();
}, 1000).unref();
const sealInto: Allocate = (n) => (n >= LEND_FROM ? sealedRing.alloc(n) : null);

/** Encodes a chunk (with `lend`, into the sealed ring when it fits: `seq` is set when it is lent from there). */
function encodeChunk(m: Uint8Array, chunk: Uint8Array, lend: boolean): { data: Uint8Array; seq?: number } {
  if (!lend) return { data: codec.encodeSync(BlobType.CHUNK, m, chunk) };
  const before = sealedRing.count;
  try {
    const data = codec.encodeSync(BlobType.CHUNK, m, chunk, sealInto);
    return sealedRing.owns(data) ? { data, seq: sealedRing.lastSeq } : { data };
  } catch (e) {
    if (sealedRing.count !== before) sealedRing.undo();
    throw e;
  }
}

/** `data` as posted: lent views are shared, other buffers transferred (copied first when they share their ArrayBuffer). */
function postable(data: Uint8Array, seq: number | undefined): { data: Uint8Array; transfer: ArrayBuffer[] } {
  if (seq !== undefined) return { data, transfer: [] };
  const owned = data.byteOffset === 0 && data.byteLength === data.buffer.byteLength ? data : new Uint8Array(data);
  return { data: owned, transfer: [owned.buffer as ArrayBuffer] };
}

/** Messages for the main thread, sent in batches (a message per small file costs more than the file). */
let outbox: ToMain[] = [];
let outboxTransfer: ArrayBuffer[] = [];
let outboxBytes = 0;

function post(m: ToMain, transfer: ArrayBuffer[] = []): void {
  outbox.push(m);
  outboxTransfer.push(...transfer);
  if (m.type === "chunk") outboxBytes += m.data.byteLength;
  if (outbox.length >= 64 || outboxBytes >= 4 << 20) sendOutbox();
}

function sendOutbox(): void {
  if (outbox.length === 0) return;
  port.postMessage(outbox, outboxTransfer);
  outbox = [];
  outboxTransfer = [];
  outboxBytes = 0;
}

function waitForCredit(): void {
  if (Atomics.load(credit, 0) > init.creditLimit) sendOutbox(); // what we hold is what the main thread waits for
  while (Atomics.load(credit, 0) > init.creditLimit) Atomics.wait(credit, 0, Atomics.load(credit, 0), 100);
}

const OPEN_FLAGS = constants.O_RDONLY | constants.O_NOFOLLOW | constants.O_NONBLOCK;
const DIRECT = constants.O_DIRECT ?? 0;
/** Alignment of direct reads: buffer address, length and file offset (the largest logical block size in use). */
const BLOCK = 4096;

function openFile(path: string, flags = OPEN_FLAGS): number {
  try {
    return openSync(fsPath(path), flags | (constants.O_NOATIME ?? 0));
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code !== "EPERM") throw e;
    return openSync(fsPath(path), flags);
  }
}

/** `path` opened for direct reads, or -1 when its file system refuses them. */
function openDirect(path: string): number {
  try {
    return openFile(path, OPEN_FLAGS | DIRECT);
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === "EINVAL") return -1;
    throw e;
  }
}

/** Closes `fd` and opens `path` again for buffered reads. */
function reopenBuffered(fd: number, path: string): number {
  closeSync(fd);
  return openFile(path);
}

/**
 * Offset of `buf` from which direct reads are aligned: undefined until a
 * direct read was tried, null when none was (found by probeDirectOffset).
 */
let alignedBase: number | null | undefined;

/** Files up to this size (as the walk saw it) are read whole, and ahead when the disk is slow. */
const WHOLE_MAX = 1 << 20;
/** Files read ahead at once, per worker, while the disk is slow. */
const AHEAD_FILES = 8;
/** While reading ahead, one small file in this many is read in turn, to see whether the disk is still slow. */
const PROBE_EVERY = 32;

/** A small file opened for a whole read, with a buffer one byte larger than expected (a short read is its end). */
interface Whole {
  fd: number;
  out: Buffer;
  expect: number;
}

/**
 * Opens `path` for a whole read into `into` (when given: it is large
 * enough) or a new buffer; null (closed) when it is now larger than WHOLE_MAX.
 */
function openWhole(path: string, size: number, into?: Buffer): Whole | null {
  const fd = openFile(path);
  try {
    const st = fstatSync(fd);
    if (!st.isFile()) throw new Error("no longer a regular file");
    const want = Math.max(size, st.size) + 1;
    if (st.size <= WHOLE_MAX) return { fd, out: into ? into.subarray(0, want) : Buffer.allocUnsafe(want), expect: st.size };
  } catch (e) {
    closeSync(fd);
    throw e;
  }
  closeSync(fd);
  return null;
}

/** Closes `w` and gives its bytes, or null when they must be read the other way (the file grew, or a pseudo-file said 0). */
function endWhole(w: Whole, n: number): Buffer | null {
  closeSync(w.fd);
  if (n === w.out.byteLength || (n === 0 && w.expect > 0)) return null;
  return w.out.subarray(0, n);
}

/** Reads a small file whole, synchronously, into the reused read buffer. */
function readWholeSync(path: string, size: number): Buffer | null {
  const w = openWhole(path, size, buf);
  if (!w) return null;
  let n: number;
  try {
    n = readSync(w.fd, w.out, 0, w.out.byteLength, 0); // also for size 0: a pseudo-file may have content
  } catch (e) {
    closeSync(w.fd);
    throw e;
  }
  return endWhole(w, n);
}

/**
 * Reads a small file whole, its content with one call on the libuv pool
 * (opened here: the walk's lstat left its inode cached). A round trip
 * through the pool costs ~40 us of CPU, so this is only for a slow disk.
 */
async function readAhead(path: string, size: number): Promise<Buffer | null> {
  const w = openWhole(path, size);
  if (!w) return null;
  let n: number;
  try {
    n = await new Promise<number>((resolve, reject) => read(w.fd, w.out, 0, w.out.byteLength, 0, (e, k) => (e ? reject(e) : resolve(k))));
  } catch (e) {
    closeSync(w.fd);
    throw e;
  }
  return endWhole(w, n);
}

/** Whether a synchronous whole read of `size` bytes that took `ns` waited for the disk (a page-cache copy runs at several GB/s). */
function waitedForDisk(ns: bigint, size: number): boolean {
  return ns > 200_000n + BigInt(size >> 2);
}

/** Cuts, MACs, encodes and posts the chunks of `bytes`, a whole file in memory. */
function encodeWhole(id: number, bytes: Buffer): void {
  let start = 0;
  while (start < bytes.byteLength) {
    const cut = findCut(bytes, start, bytes.byteLength, chunker);
    sendChunk(id, bytes.subarray(start, cut), false);
    start = cut;
  }
  post({ type: "done", id, size: bytes.byteLength });
}

/** MACs and (unless raw) encodes one chunk, waits for credit and posts it; `lend`: from the rings when they have room. */
function sendChunk(id: number, chunk: Uint8Array, raw: boolean, lend = false): void {
  const m = mac.mac(chunk);
  // A large file's chunk goes raw (the main thread skips the ones the
  // repository has and has the others encoded on another worker) unless the
  // encoding workers are behind: then this thread encodes it too, so that
  // every core compresses while one file is read.
  if (raw && Atomics.load(backlog, 0) > init.backlogLimit) raw = false;
  // encodeSync() never returns a view of `chunk`; a raw chunk is copied out (its buffer is reused).
  let out: { data: Uint8Array; seq?: number };
  if (raw) {
    const lent = lend ? rawRing.alloc(chunk.byteLength) : null;
    if (lent) copyInto(lent, 0, chunk);
    out = lent ? { data: lent, seq: rawRing.lastSeq } : { data: new Uint8Array(chunk) };
  } else out = encodeChunk(m, chunk, lend);
  waitForCredit();
  Atomics.add(credit, 0, out.data.byteLength);
  const { data, transfer } = postable(out.data, out.seq);
  post({ type: "chunk", id, mac: m, length: chunk.byteLength, data, raw, seq: out.seq }, transfer);
  // Buffers to free: the chunk's unless it is in the reused read buffer, the posted one unless lent.
  collectAfter((chunk.buffer === buf.buffer ? 0 : chunk.byteLength) + (out.seq === undefined ? out.data.byteLength : 0));
}

/**
 * Reads a file that is not read whole: in READ pieces with the next one
 * always in flight on the libuv pool while this thread cuts, MACs and
 * encodes what it has. A large file (by the walk's size) is read with
 * O_DIRECT where the file system allows it: the page cache's copy costs
 * more than the rest of the reading (docs/PERFORMANCE.md), and a backup's
 * large files are read once and would only push other data out of the
 * cache. Direct reads need the buffer, the length and the file
 * offset aligned: reads go at `end`, kept at a multiple of BLOCK from an
 * aligned offset of `buf` found once (alignedBase); any EINVAL falls back
 * to buffered reads from the same offset.
 */
async function readFile(id: number, path: string, walkSize: number): Promise<void> {
  let direct = walkSize >= init.rawFrom && DIRECT !== 0 && alignedBase !== null;
  let fd = direct ? openDirect(path) : -1;
  if (fd < 0) {
    direct = false;
    fd = openFile(path);
  }
  let size = 0;
  let inflight: Promise<number> | null = null;
  try {
    const st = fstatSync(fd);
    if (!st.isFile()) throw new Error("no longer a regular file");
    if (direct && alignedBase === undefined && st.size >= BLOCK) alignedBase = probeDirectOffset(fd, buf, "read");
    if (direct && (alignedBase === null || alignedBase === undefined)) {
      fd = reopenBuffered(fd, path);
      direct = false;
    }
    // A large file's chunks go to the main thread raw: it skips the ones the
    // repository has and compresses the others on every core, while this
    // thread goes on reading, cutting and MACing.
    const raw = st.size >= init.rawFrom;
    const lend = st.size >= LEND_FILE_MIN;
    const base = direct ? alignedBase! : 0;
    let start = base;
    let end = base;
    let pos = 0;
    let eof = false;
    /** Starts the next read unless one is in flight (moving what is in hand to the front when the room after it is short). */
    const issue = () => {
      if (eof || inflight) return;
      if (buf.byteLength - end < READ) {
        // The moved bytes end at a multiple of BLOCK from `base`: where the next read goes.
        const len = end - start;
        const to = base + Math.ceil(len / BLOCK) * BLOCK - len;
        buf.copyWithin(to, start, end);
        start = to;
        end = to + len;
      }
      const f = fd;
      inflight = new Promise<number>((resolve, reject) => read(f, buf, end, READ, pos, (e, n) => (e ? reject(e) : resolve(n))));
    };
    /** Waits for the read in flight (after starting one if none is) and starts the next. */
    const more = async () => {
      issue();
      let n: number;
      try {
        n = await inflight!;
      } catch (e) {
        inflight = null;
        if (!direct || (e as NodeJS.ErrnoException).code !== "EINVAL") throw e;
        fd = reopenBuffered(fd, path); // e.g. a stricter alignment than the probe found
        direct = false;
        return;
      }
      inflight = null;
      if (n === 0) eof = true;
      else {
        end += n;
        pos += n;
      }
      issue();
    };
    while (true) {
      while (!eof && end - start < ENOUGH) await more();
      if (start === end) break;
      // A cut before the end of what is read is final (findCut finds the same
      // one with more data); at the end, read more unless a max-size chunk is
      // there. Cutting with less than max bytes in hand moves less memory.
      let cut = findCut(buf, start, end, chunker);
      while (cut === end && !eof && end - start < chunker.max) {
        await more();
        cut = findCut(buf, start, end, chunker);
      }
      sendChunk(id, buf.subarray(start, cut), raw, lend);
      size += cut - start;
      start = cut;
    }
  } finally {
    if (inflight) await (inflight as Promise<number>).catch(() => 0); // not closed under a read
    closeSync(fd);
  }
  post({ type: "done", id, size });
}

function fail(id: number, e: unknown): void {
  const err = e as NodeJS.ErrnoException;
  post({ type: "error", id, message: err.code ? `${err.code}: ${err.message}` : String(err.message ?? e) });
}

interface Queued {
  file: Extract<ToWorker, { type: "read" }>;
  ahead?: Promise<Buffer | null>;
  /** Set once `ahead` has settled. */
  ready?: boolean;
  /** Read in turn, synchronously, to time the disk. */
  probe?: boolean;
}
const queue: Queued[] = [];
let pumping = false;
/** Whether the last timed read waited for the disk: then the next small files are read ahead. */
let slowDisk = false;
let slowReads = 0;
let sinceProbe = 0;

/** Processes the queue in order; while the disk is slow, the next small files are read ahead. */
async function pump(): Promise<void> {
  if (pumping) return;
  pumping = true;
  try {
    while (queue.length > 0) {
      if (slowDisk) {
        for (let i = 0, n = 0; i < queue.length && n < AHEAD_FILES; i++) {
          const q = queue[i]!;
          if (q.file.size > WHOLE_MAX || q.probe) continue;
          n++;
          if (q.ahead) continue;
          if (i > 0 && ++sinceProbe % PROBE_EVERY === 0) {
            q.probe = true;
            continue;
          }
          q.ahead = readAhead(q.file.path, q.file.size);
          q.ahead.then(
            () => (q.ready = true),
            () => (q.ready = true), // the error is taken when its turn comes
          );
        }
      }
      const q = queue[0]!;
      const { id, path, size } = q.file;
      try {
        let bytes: Buffer | null = null;
        if (q.ahead) {
          if (!q.ready) sendOutbox(); // nothing held back while we wait for the disk
          bytes = await q.ahead;
        } else if (size <= WHOLE_MAX) {
          const t = process.hrtime.bigint();
          bytes = readWholeSync(path, size);
          if (bytes) {
            // Two slow reads in a row: one can be this thread losing its core.
            slowReads = waitedForDisk(process.hrtime.bigint() - t, bytes.byteLength) ? slowReads + 1 : 0;
            slowDisk = slowReads >= 2;
          }
        }
        if (bytes) encodeWhole(id, bytes);
        else await readFile(id, path, size);
      } catch (e) {
        fail(id, e);
      }
      queue.shift();
    }
    sendOutbox();
  } finally {
    pumping = false;
  }
}

/** Encodes a large file's raw chunk for the main thread (sent here because this thread is not reading one). */
function encodeJob(id: number, mac: Uint8Array, data: Uint8Array): void {
  try {
    const out = encodeChunk(mac, data, data.buffer instanceof SharedArrayBuffer); // lent: from a file that lends
    const p = postable(out.data, out.seq);
    post({ type: "encoded", id, data: p.data, seq: out.seq }, p.transfer);
    collectAfter((data.buffer instanceof SharedArrayBuffer ? 0 : data.byteLength) + (out.seq === undefined ? out.data.byteLength : 0));
  } catch (e) {
    fail(id, e);
  }
}

port.on("message", (msgs: ToWorker[]) => {
  let encoded = false;
  for (const m of msgs) {
    if (m.type === "encode") {
      encodeJob(m.id, m.mac, m.data);
      encoded = true;
    } else queue.push({ file: m });
  }
  if (encoded && !pumping) sendOutbox(); // answered now, not after the next batch of files
  void pump();
});
port.postMessage([{ type: "ready" }]);
