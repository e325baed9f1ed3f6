/**
 * The messages between the restore pool (pool.ts, main thread) and its
 * worker threads (worker.ts): the worker's start-up data, batches of files
 * to write, and one result per file.
 */
import type { Compression } from "../../repository/codec.js";
import type { Subkeys } from "../../repository/crypto.js";
import type { WorkerError } from "../worker-errors.js";

/** A worker's workerData: what it needs to decode chunks. */
export interface RestoreInit {
  keys: Subkeys;
  encrypted: boolean;
  compression: Compression;
}

/** One chunk of a file, where its encoded blob lies in a local packfile. */
export interface ChunkJob {
  /** Local path of the packfile. */
  pack: string;
  offset: number;
  length: number;
  rawLength: number;
  mac: Uint8Array;
}

/** A regular file to create (O_EXCL) at `path` and fill from its chunks. */
export interface FileJob {
  id: number;
  path: string;
  size: number;
  mode: number;
  /** mtime in seconds (fractional). */
  mtime: number;
  owner: [number, number] | null;
  chunks: ChunkJob[];
}

/** A worker's answer for one file: written, or why not. */
export interface FileResult {
  id: number;
  error?: WorkerError;
}
