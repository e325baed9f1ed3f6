/**
 * Writes one regular file of a restore with synchronous I/O (the restore
 * workers' job, worker.ts): each chunk's encoded blob is read straight from
 * its local packfile or taken as the main thread sent it, authenticated and
 * decoded, and written with a positional write, runs of zeros left as
 * holes; then size, owner, mode and mtime are set on the open file. A file
 * sent in parts stays open from its first part to its last. Damage is a
 * CorruptError naming the packfile.
 */
import { closeSync, constants, fchmodSync, fchownSync, ftruncateSync, futimesSync, openSync, writeSync } from "node:fs";
import { basename } from "node:path";
import { BlobType, type Codec, type DecodeScratch, inPackfile } from "../../repository/codec.js";
import { CorruptError } from "../../util/errors.js";
import { toHex } from "../../util/hex.js";
import { fsPath } from "../../util/names.js";
import { collectAfter } from "../workers.js";
import { pieces } from "./holes.js";
import { OpenPacks } from "./open-packs.js";
import type { ChunkJob, FileJob } from "./protocol.js";

/** A file being written: its descriptor, where its next chunk goes, and where its data ends (what follows is a hole). */
interface OpenFile {
  fd: number;
  offset: number;
  dataEnd: number;
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

export class FileWriter {
  private readonly packs = new OpenPacks();
  /** The encoded blob as read, its decrypted payload, its decompressed bytes. */
  private readonly blob = new Scratch();
  private readonly payload = new Scratch();
  private readonly raw = new Scratch();
  private readonly scratch: DecodeScratch = { payload: this.payload.get, raw: this.raw.get };

  constructor(private readonly codec: Codec) {}

  /** Files sent in parts, open between their parts, by FilePart.file. */
  private readonly partial = new Map<number, OpenFile>();

  /**
   * Creates the file at `job.path` (it must not exist) and fills it, or
   * does the part of it `job.part` says; throws what went wrong (the file
   * is then incomplete, and closed: later parts of it fail too).
   */
  write(job: FileJob): void {
    const part = job.part;
    let f: OpenFile | undefined;
    if (part && !part.first) {
      f = this.partial.get(part.file);
      if (!f) throw new Error(`${job.path}: an earlier part of the file was not written`);
    } else {
      const fd = openSync(fsPath(job.path), constants.O_WRONLY | constants.O_CREAT | constants.O_EXCL | constants.O_NOFOLLOW, 0o600);
      f = { fd, offset: 0, dataEnd: 0 };
    }
    let open = false;
    try {
      if (part?.abandon) return;
      this.fill(f, job.chunks);
      if (part && !part.last) {
        this.partial.set(part.file, f);
        open = true;
        return;
      }
      const size = Math.max(job.size, f.offset);
      if (size > f.dataEnd) ftruncateSync(f.fd, size); // trailing holes
      if (job.owner) fchownSync(f.fd, job.owner[0], job.owner[1]);
      fchmodSync(f.fd, job.mode); // after chown, which clears setuid bits
      futimesSync(f.fd, job.mtime, job.mtime);
    } finally {
      if (!open) {
        if (part) this.partial.delete(part.file);
        closeSync(f.fd);
      }
    }
  }

  /** Writes `chunks` to `f` from its offset on. */
  private fill(f: OpenFile, chunks: readonly ChunkJob[]): void {
    for (const c of chunks) {
      const raw = this.chunk(c, f.offset);
      for (const p of pieces(raw, f.offset)) {
        if (p.data) {
          writeAll(f.fd, p.data, p.offset);
          f.dataEnd = p.offset + p.length;
        }
      }
      f.offset += raw.byteLength;
      // what is left to the collector: a payload or raw bytes not in the scratch buffers (a fallback path)
      if (![this.blob, this.payload, this.raw].some((b) => b.holds(raw))) collectAfter(raw.byteLength);
      // The blob as sent, written now, is freed at once: left to the collector,
      // buffers arriving this fast made it run full collections back to back.
      if (c.data) (c.data.buffer as ArrayBuffer).transfer(0);
    }
  }

  /** The decoded bytes of chunk `c`, which starts at `offset` of the file (valid until the next chunk). */
  private chunk(c: ChunkJob, offset: number): Uint8Array {
    const pack = basename(c.pack); // the packfile's file is named by its ID
    const corrupt = (detail: string) => new CorruptError(`chunk at ${offset}`, detail, { type: BlobType.CHUNK, mac: toHex(c.mac), pack });
    let blob = c.data;
    if (blob) {
      if (blob.byteLength !== c.length) throw corrupt(`came with ${blob.byteLength} bytes, expected ${c.length}`);
    } else {
      blob = this.blob.get(c.length);
      if (!this.packs.read(c.pack, c.offset, blob)) throw corrupt("short read (damaged or truncated packfile)");
    }
    let raw: Uint8Array;
    try {
      raw = this.codec.decodeSync(BlobType.CHUNK, c.mac, blob, this.scratch);
    } catch (e) {
      throw inPackfile(e, pack);
    }
    if (raw.byteLength !== c.rawLength) throw corrupt(`has ${raw.byteLength} bytes, expected ${c.rawLength}`);
    return raw;
  }

  /** Closes the packfiles kept open, and any file left between its parts. */
  close(): void {
    this.packs.close();
    for (const f of this.partial.values()) closeSync(f.fd);
    this.partial.clear();
  }
}

function writeAll(fd: number, data: Uint8Array, position: number): void {
  let done = 0;
  while (done < data.byteLength) done += writeSync(fd, data, done, data.byteLength - done, position + done);
}
