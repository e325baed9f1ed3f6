/**
 * The messages between the restore pool (pool.ts, main thread) and its
 * worker threads (worker.ts): the worker's start-up data, batches of files
 * (or parts of files) to write, and one result per job.
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

/**
 * One chunk of a file: its encoded blob, either read by the worker from a
 * local packfile or, from a remote store, read by the main thread and sent
 * along as `data` (not yet authenticated: the worker decodes it).
 */
export interface ChunkJob {
  /** Local path of the packfile; with `data`, the packfile's ID (hex), to name it in errors. */
  pack: string;
  offset: number;
  length: number;
  rawLength: number;
  mac: Uint8Array;
  /** The blob's stored bytes, `length` of them, in a buffer of their own (transferred with the batch). */
  data?: Uint8Array;
}

/**
 * Where a job stands in a file sent in parts (its chunks' bytes too many
 * for one message): the first part creates the file, the last sets its
 * size and metadata, and all go to one worker, in order. `abandon` ends a
 * file whose content could not all be read: it is closed as it is.
 */
export interface FilePart {
  file: number;
  first: boolean;
  last: boolean;
  abandon?: boolean;
}

/** A regular file to create (O_EXCL) at `path` and fill from its chunks, or one part of it. */
export interface FileJob {
  id: number;
  path: string;
  size: number;
  mode: number;
  /** mtime in seconds (fractional). */
  mtime: number;
  owner: [number, number] | null;
  chunks: ChunkJob[];
  /** Set when the file comes in parts; a job without it is the whole file. */
  part?: FilePart;
}

/** A worker's answer for one job: done, or why not. */
export interface FileResult {
  id: number;
  error?: WorkerError;
}
