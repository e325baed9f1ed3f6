/**
 * Restore: walks a snapshot subtree depth-first and hands records to an
 * exporter. Directories are exported before their children; file content
 * is fetched chunk by chunk with ranged reads, a few chunks ahead, and
 * every chunk is authenticated before it is written. Runs of zeros are
 * passed as holes so the exporter can restore sparse files.
 */
import type { ContentPiece, Exporter, ExportRecord } from "../connectors/records.js";
import { BlobType } from "../repository/codec.js";
import type { Repository } from "../repository/repository.js";
import { throwIfAborted } from "../util/errors.js";
import type { SnapshotHeader } from "./header.js";
import type { ChunkRef, Entry } from "./tree.js";
import { joinPath, lookupOrThrow, TreeReader } from "./vfs.js";

export interface RestoreEvent {
  type: "entry" | "error" | "skipped";
  path: string;
  message?: string;
}

export interface RestoreOptions {
  signal?: AbortSignal | undefined;
  onEvent?: (e: RestoreEvent) => void;
  /** Files restored at once (default 16). */
  concurrency?: number;
}

export interface RestoreResult {
  files: number;
  dirs: number;
  others: number;
  bytes: number;
  errors: [string, string][];
}

const PREFETCH = 8;
let zeros = Buffer.alloc(0);

function isZero(b: Uint8Array): boolean {
  if (zeros.byteLength < b.byteLength) zeros = Buffer.alloc(Math.max(b.byteLength, 1 << 20));
  return Buffer.compare(b, zeros.subarray(0, b.byteLength)) === 0;
}

const HOLE_BLOCK = 64 * 1024;

/**
 * Splits a chunk into data and zero pieces on HOLE_BLOCK boundaries of the
 * file, so that runs of zeros inside a chunk can be restored as holes.
 */
function* pieces(data: Uint8Array, offset: number): Generator<ContentPiece> {
  const end = offset + data.byteLength;
  let runStart = offset;
  let runZero: boolean | undefined;
  let pos = offset;
  while (pos < end) {
    const next = Math.min(end, (Math.floor(pos / HOLE_BLOCK) + 1) * HOLE_BLOCK);
    const zero = next - pos === HOLE_BLOCK && isZero(data.subarray(pos - offset, next - offset));
    if (runZero !== undefined && zero !== runZero) {
      yield piece(data, offset, runStart, pos, runZero);
      runStart = pos;
    }
    runZero = zero;
    pos = next;
  }
  if (runZero !== undefined) yield piece(data, offset, runStart, end, runZero);
}

function piece(data: Uint8Array, base: number, from: number, to: number, zero: boolean): ContentPiece {
  return zero ? { offset: from, length: to - from, zero: true } : { offset: from, length: to - from, data: data.subarray(from - base, to - base) };
}

/** Content of a file entry as pieces, with a read-ahead window of chunk fetches. */
export async function* readChunks(repo: Repository, chunks: readonly ChunkRef[], signal?: AbortSignal): AsyncGenerator<ContentPiece> {
  const queue: Promise<Uint8Array>[] = [];
  let next = 0;
  let offset = 0;
  const fill = () => {
    while (queue.length < PREFETCH && next < chunks.length) {
      const c = chunks[next++]!;
      const p = repo.getBlob(BlobType.CHUNK, c.mac, signal);
      p.catch(() => {}); // observed when its turn comes
      queue.push(p);
    }
  };
  fill();
  for (let i = 0; i < chunks.length; i++) {
    const data = await queue.shift()!;
    fill();
    const length = data.byteLength;
    if (length !== chunks[i]!.length) throw new Error(`chunk ${i} has ${length} bytes, expected ${chunks[i]!.length}`);
    yield* pieces(data, offset);
    offset += length;
  }
}

/** The whole content of a file entry, in order (for `cat`). */
export async function* fileBytes(repo: Repository, entry: Entry, signal?: AbortSignal): AsyncGenerator<Uint8Array> {
  for await (const p of readChunks(repo, entry.chunks ?? [], signal)) yield p.data ?? new Uint8Array(p.length);
}

export async function restore(repo: Repository, header: SnapshotHeader, path: string, exporter: Exporter, o: RestoreOptions = {}): Promise<RestoreResult> {
  const signal = o.signal;
  const reader = new TreeReader(repo);
  const top = await lookupOrThrow(reader, header, path, signal);
  const result: RestoreResult = { files: 0, dirs: 0, others: 0, bytes: 0, errors: [] };
  const inflight = new Set<Promise<void>>();
  const limit = o.concurrency ?? 16;

  const exportOne = async (pathname: string, e: Entry): Promise<void> => {
    const rec: ExportRecord = { pathname, fileInfo: e.info };
    if (e.target !== undefined) rec.target = e.target;
    if (e.xattrs) rec.xattrs = e.xattrs;
    if (e.info.kind === "file") rec.content = () => readChunks(repo, e.chunks ?? [], signal);
    let error: string | undefined;
    try {
      error = (await exporter.export(rec, { signal })).error;
    } catch (err) {
      throwIfAborted(signal);
      error = (err as Error).message;
    }
    if (error !== undefined) {
      result.errors.push([pathname, error]);
      o.onEvent?.({ type: "error", path: pathname, message: error });
      return;
    }
    if (e.info.kind === "file") {
      result.files++;
      result.bytes += e.info.size;
    } else if (e.info.kind === "dir") result.dirs++;
    else result.others++;
    o.onEvent?.({ type: "entry", path: pathname });
  };

  const drain = async () => {
    while (inflight.size > 0) await Promise.all(inflight);
  };

  // A file restored alone is exported under its own name.
  const base = top.info.kind === "dir" ? "/" : `/${top.name || "file"}`;
  for await (const { path: rel, entry } of reader.walk(top, base, signal)) {
    throwIfAborted(signal);
    if (entry.error !== undefined && entry.info.kind !== "dir") {
      o.onEvent?.({ type: "skipped", path: rel, message: `not in the snapshot: ${entry.error}` });
      continue;
    }
    // A directory is created before anything below it is exported (the walk
    // yields it first); files still in flight elsewhere do not need it.
    if (entry.info.kind === "dir") {
      await exportOne(rel, entry);
      continue;
    }
    // Hard-linked files go one at a time, so that a link finds its target written.
    if (entry.info.kind === "file" && entry.info.nlink > 1) {
      await drain();
      await exportOne(rel, entry);
      continue;
    }
    while (inflight.size >= limit) await Promise.race(inflight);
    const p: Promise<void> = exportOne(rel, entry).finally(() => inflight.delete(p));
    inflight.add(p);
  }
  await drain();
  await exporter.finish({ signal });
  return result;
}

export { joinPath };
