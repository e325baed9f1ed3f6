/**
 * Worker thread of the restore: writes whole regular files with
 * synchronous I/O. For each chunk it reads the encoded blob straight from
 * its packfile (a local store), authenticates and decodes it, and writes it
 * with a positional write, leaving runs of zeros as holes; then it sets
 * size, owner, mode and mtime on the open file. See restore-pool.ts.
 */
import { closeSync, constants, fchmodSync, fchownSync, ftruncateSync, futimesSync, openSync, readSync, writeSync } from "node:fs";
import { parentPort, workerData } from "node:worker_threads";
import { basename } from "node:path";
import { BlobType, Codec, type DecodeScratch, inPackfile } from "../repository/codec.js";
import { pieces } from "./holes.js";
import { collectAfter } from "./workers.js";
import { fsPath } from "../util/names.js";
import type { FileJob, RestoreInit, RestoreToMain } from "./restore-pool.js";

const init = workerData as RestoreInit;
const codec = new Codec({ keys: init.keys, encrypted: init.encrypted, compression: init.compression });
const port = parentPort!;

/** Open packfiles, most recently used last. */
const packs = new Map<string, number>();
const MAX_PACKS = 16;

function packFd(path: string): number {
  let fd = packs.get(path);
  if (fd !== undefined) {
    packs.delete(path);
  } else {
    fd = openSync(path, constants.O_RDONLY);
    if (packs.size >= MAX_PACKS) {
      const [oldPath, oldFd] = packs.entries().next().value!;
      packs.delete(oldPath);
      closeSync(oldFd);
    }
  }
  packs.set(path, fd);
  return fd;
}

/**
 * A buffer reused from chunk to chunk (each is read, decoded and written
 * before the next is read), grown to the largest asked for: a fresh buffer
 * of a chunk's size is a fresh mapping, faulted in page by page and left
 * to the collector.
 */
class Scratch {
  private buf = Buffer.allocUnsafe(1 << 20);
  readonly get = (n: number): Buffer => {
    if (this.buf.byteLength < n) this.buf = Buffer.allocUnsafe(n);
    return this.buf.subarray(0, n);
  };
  holds(b: Uint8Array): boolean {
    return b.buffer === this.buf.buffer;
  }
}
/** The encoded blob as read, its decrypted payload, its decompressed bytes. */
const blobs = new Scratch();
const decoded = { payload: new Scratch(), raw: new Scratch() };
const scratch: DecodeScratch = { payload: decoded.payload.get, raw: decoded.raw.get };

function readRange(fd: number, offset: number, length: number, what: string): Buffer {
  const buf = blobs.get(length);
  let done = 0;
  while (done < length) {
    const n = readSync(fd, buf, done, length - done, offset + done);
    if (n === 0) throw new Error(`${what}: short read (damaged or truncated packfile)`);
    done += n;
  }
  return buf;
}

function writeAll(fd: number, data: Uint8Array, position: number): void {
  let done = 0;
  while (done < data.byteLength) done += writeSync(fd, data, done, data.byteLength - done, position + done);
}

function restoreFile(job: FileJob): void {
  const fd = openSync(fsPath(job.path), constants.O_WRONLY | constants.O_CREAT | constants.O_EXCL | constants.O_NOFOLLOW, 0o600);
  try {
    let offset = 0;
    let dataEnd = 0;
    for (const c of job.chunks) {
      const blob = readRange(packFd(c.pack), c.offset, c.length, `chunk at ${offset}`);
      let raw: Uint8Array;
      try {
        raw = codec.decodeSync(BlobType.CHUNK, c.mac, blob, scratch);
      } catch (e) {
        throw inPackfile(e, basename(c.pack)); // the packfile's file is named by its ID
      }
      if (raw.byteLength !== c.rawLength) throw new Error(`chunk at ${offset} has ${raw.byteLength} bytes, expected ${c.rawLength}`);
      for (const p of pieces(raw, offset)) {
        if (p.data) {
          writeAll(fd, p.data, p.offset);
          dataEnd = p.offset + p.length;
        }
      }
      offset += raw.byteLength;
      // what is left to the collector: a payload or raw bytes not in the scratch buffers (a fallback path)
      if (![blobs, decoded.payload, decoded.raw].some((b) => b.holds(raw))) collectAfter(raw.byteLength);
    }
    const size = Math.max(job.size, offset);
    if (size > dataEnd) ftruncateSync(fd, size); // trailing holes
    if (job.owner) fchownSync(fd, job.owner[0], job.owner[1]);
    fchmodSync(fd, job.mode); // after chown, which clears setuid bits
    futimesSync(fd, job.mtime, job.mtime);
  } finally {
    closeSync(fd);
  }
}

port.on("message", (jobs: FileJob[]) => {
  const out: RestoreToMain[] = [];
  for (const job of jobs) {
    try {
      restoreFile(job);
      out.push({ id: job.id });
    } catch (e) {
      const err = e as Error & { code?: string };
      out.push({ id: job.id, error: err.message ?? String(e) });
    }
  }
  port.postMessage(out);
});
port.postMessage([]);
