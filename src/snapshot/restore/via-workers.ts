/**
 * A regular file restored by the worker pool (pool.ts): the exporter
 * prepares its place (prepareFile: checked path, parents, owner), and a
 * worker writes it, reading its chunks from the store's local packfiles
 * (writeByPool) or decoding the stored bytes the main thread fetched
 * through the restore's BlobReader (writeFetchedByPool: a remote store).
 */
import { Resource } from "../../connectors/flags.js";
import type { Exporter } from "../../connectors/records.js";
import type { WantedBlobs } from "../../repository/blob-reader.js";
import { BlobType } from "../../repository/codec.js";
import type { Repository } from "../../repository/repository.js";
import { throwIfAborted } from "../../util/errors.js";
import { toHex } from "../../util/hex.js";
import { nsToSeconds } from "../../util/time.js";
import type { Entry } from "../tree.js";
import type { Failure } from "./outcome.js";
import type { RestorePool } from "./pool.js";
import type { ChunkJob, FileJob, FilePart } from "./protocol.js";

/** Stored bytes sent to a worker in one job at most: a larger file goes in parts (protocol.ts FilePart). */
const PART_BYTES = 4 << 20;

/**
 * Queues file `e` at `path` on `pool` (waiting while every worker is busy);
 * `done` settles once it is written (undefined) or has failed (why). Only
 * an interrupt rejects.
 */
export async function writeByPool(pool: RestorePool, repo: Repository, exporter: Exporter, path: string, e: Entry, signal?: AbortSignal): Promise<{ done: Promise<Failure | undefined> }> {
  let written: { done: Promise<Error | undefined> };
  try {
    const { abs, owner } = await exporter.prepareFile!({ pathname: path, fileInfo: e.info });
    written = await pool.write({ path: abs, size: e.info.size, mode: e.info.mode, mtime: nsToSeconds(e.info.mtimeNs), owner, chunks: chunkJobs(repo, e) });
  } catch (err) {
    throwIfAborted(signal);
    return { done: Promise.resolve({ message: (err as Error).message, error: err as Error }) };
  }
  return { done: written.done.then((error) => error && { message: error.message, error }) };
}

/** Where each chunk of `e` lies in the store's local packfiles (the store must have localPath()). */
export function chunkJobs(repo: Repository, e: Entry): ChunkJob[] {
  // The MACs are views into their decoded tree: posted as they are, each
  // would take the whole tree's buffer along. One buffer per file instead.
  const refs = e.chunks ?? [];
  const macs = new Uint8Array(refs.length * 32);
  return refs.map((c, i) => {
    const loc = repo.locate(BlobType.CHUNK, c.mac);
    macs.set(c.mac, i * 32);
    return { pack: repo.store.localPath!(Resource.PACKFILE, loc.pack), offset: loc.offset, length: loc.length, rawLength: loc.rawLength, mac: macs.subarray(i * 32, i * 32 + 32) };
  });
}

/**
 * Queues file `e` at `path` on `pool`, its chunks' stored bytes taken from
 * `blobs` (wanted from the restore's BlobReader, in order) and sent to one
 * worker in parts of at most PART_BYTES; resolves once the last part is
 * queued (waiting for reads and for a busy worker). `done` settles once the
 * file is written (undefined) or has failed (why: its first error). Only an
 * interrupt rejects.
 */
export async function writeFetchedByPool(pool: RestorePool, exporter: Exporter, path: string, e: Entry, blobs: WantedBlobs, signal?: AbortSignal): Promise<{ done: Promise<Failure | undefined> }> {
  const parts: Promise<Error | undefined>[] = [];
  let job: Omit<FileJob, "id" | "chunks"> | undefined;
  let part: FilePart | undefined;
  let worker: number | undefined;
  const send = async (chunks: ChunkJob[], last: boolean) => {
    if (!last || part) part = part ? { ...part, first: false, last } : { file: pool.fileNumber(), first: true, last };
    const queued = await pool.write({ ...job!, chunks, ...(part ? { part } : {}) }, worker);
    worker = queued.worker;
    parts.push(queued.done);
  };
  try {
    const { abs, owner } = await exporter.prepareFile!({ pathname: path, fileInfo: e.info });
    job = { path: abs, size: e.info.size, mode: e.info.mode, mtime: nsToSeconds(e.info.mtimeNs), owner };
    const refs = e.chunks ?? [];
    let chunks: ChunkJob[] = [];
    let bytes = 0;
    for (const c of refs) {
      const { loc, bytes: data } = await blobs.nextStored();
      if (bytes + data.byteLength > PART_BYTES && chunks.length > 0) {
        await send(chunks, false);
        chunks = [];
        bytes = 0;
      }
      // The tree's length is what the file's layout needs; the MAC is copied off the tree's buffer, which must not go along.
      chunks.push({ pack: toHex(loc.pack), offset: loc.offset, length: loc.length, rawLength: c.length, mac: new Uint8Array(c.mac), data });
      bytes += data.byteLength;
    }
    await send(chunks, true);
  } catch (err) {
    // A file begun on a worker is closed there as it is.
    if (part) await pool.write({ ...job!, chunks: [], part: { ...part, first: false, last: true, abandon: true } }, worker).catch(() => undefined);
    throwIfAborted(signal);
    return { done: Promise.resolve({ message: (err as Error).message, error: err as Error }) };
  } finally {
    blobs.release();
  }
  const done = Promise.all(parts).then((errors) => errors.find((x) => x !== undefined));
  return { done: done.then((error) => error && { message: error.message, error }) };
}
