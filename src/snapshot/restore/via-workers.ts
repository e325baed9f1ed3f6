/**
 * A regular file restored by the worker pool (pool.ts): the exporter
 * prepares its place (prepareFile: checked path, parents, owner), its
 * chunks are located in the store's local packfiles, and a worker writes
 * it.
 */
import { Resource } from "../../connectors/flags.js";
import type { Exporter } from "../../connectors/records.js";
import { BlobType } from "../../repository/codec.js";
import type { Repository } from "../../repository/repository.js";
import { throwIfAborted } from "../../util/errors.js";
import { nsToSeconds } from "../../util/time.js";
import type { Entry } from "../tree.js";
import type { Failure } from "./outcome.js";
import type { RestorePool } from "./pool.js";
import type { ChunkJob } from "./protocol.js";

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
