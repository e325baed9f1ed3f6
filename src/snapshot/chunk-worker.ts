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
 * Larger files are read synchronously in 4 MiB pieces (the kernel reads
 * ahead of a sequential reader).
 */
import { closeSync, constants, fstatSync, openSync, read, readSync } from "node:fs";
import { parentPort, workerData } from "node:worker_threads";
import { makeChunker, findCut } from "../repository/chunker.js";
import { BlobType, Codec } from "../repository/codec.js";
import { Mac } from "../repository/crypto.js";
import type { PoolInit, ToMain, ToWorker } from "./chunk-pool.js";
import { collectAfter } from "./workers.js";

const init = workerData as PoolInit;
const chunker = makeChunker(init.chunking, init.keys.gear);
const codec = new Codec({ keys: init.keys, encrypted: init.encrypted, compression: init.compression });
const mac = await Mac.create(init.mac, init.keys.mac);
const credit = new Int32Array(init.credit);
const backlog = new Int32Array(init.backlog);
const port = parentPort!;
const READ = 4 << 20;
const buf = Buffer.allocUnsafe(chunker.max + READ);
/** Bytes in hand before a cut is looked for: most chunks end before twice the average size. */
const ENOUGH = Math.min(chunker.max, 2 * chunker.avg);

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

function openFile(path: string): number {
  try {
    return openSync(path, OPEN_FLAGS | (constants.O_NOATIME ?? 0));
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code !== "EPERM") throw e;
    return openSync(path, OPEN_FLAGS);
  }
}

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

/** MACs and (unless raw) encodes one chunk, waits for credit and posts it. */
function sendChunk(id: number, chunk: Uint8Array, raw: boolean): void {
  const m = mac.mac(chunk);
  // A large file's chunk goes raw (the main thread skips the ones the
  // repository has and has the others encoded on another worker) unless the
  // encoding workers are behind: then this thread encodes it too, so that
  // every core compresses while one file is read.
  if (raw && Atomics.load(backlog, 0) > init.backlogLimit) raw = false;
  // encodeSync() never returns a view of `chunk`; a raw chunk is copied out (its buffer is reused).
  const data = raw ? new Uint8Array(chunk) : codec.encodeSync(BlobType.CHUNK, m, chunk);
  waitForCredit();
  Atomics.add(credit, 0, data.byteLength);
  const owned = data.byteOffset === 0 && data.byteLength === data.buffer.byteLength ? data : new Uint8Array(data);
  post({ type: "chunk", id, mac: m, length: chunk.byteLength, data: owned, raw }, [owned.buffer as ArrayBuffer]);
  collectAfter(chunk.byteLength + data.byteLength);
}

function readFile(id: number, path: string): void {
  const fd = openFile(path);
  let size = 0;
  try {
    const st = fstatSync(fd);
    if (!st.isFile()) throw new Error("no longer a regular file");
    // A large file's chunks go to the main thread raw: it skips the ones the
    // repository has and compresses the others on every core, while this
    // thread goes on reading, cutting and MACing.
    const raw = st.size >= init.rawFrom;
    let start = 0;
    let end = 0;
    let eof = false;
    const readMore = () => {
      if (buf.byteLength - end < READ) {
        buf.copyWithin(0, start, end);
        end -= start;
        start = 0;
      }
      const n = readSync(fd, buf, end, buf.byteLength - end, null);
      if (n === 0) eof = true;
      else end += n;
    };
    while (true) {
      while (!eof && end - start < ENOUGH) readMore();
      if (start === end) break;
      // A cut before the end of what is read is final (findCut finds the same
      // one with more data); at the end, read more unless a max-size chunk is
      // there. Cutting with less than max bytes in hand moves less memory.
      let cut = findCut(buf, start, end, chunker);
      while (cut === end && !eof && end - start < chunker.max) {
        readMore();
        cut = findCut(buf, start, end, chunker);
      }
      sendChunk(id, buf.subarray(start, cut), raw);
      size += cut - start;
      start = cut;
    }
  } finally {
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
        else readFile(id, path);
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
    const out = codec.encodeSync(BlobType.CHUNK, mac, data);
    const owned = out.byteOffset === 0 && out.byteLength === out.buffer.byteLength ? out : new Uint8Array(out);
    post({ type: "encoded", id, data: owned }, [owned.buffer as ArrayBuffer]);
    collectAfter(data.byteLength + out.byteLength);
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
