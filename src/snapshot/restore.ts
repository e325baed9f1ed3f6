/**
 * Restore: walks a snapshot subtree depth-first and hands records to an
 * exporter. Directories are exported before their children; file content
 * is fetched chunk by chunk with ranged reads, a few chunks ahead, and
 * every chunk is authenticated before it is written. Runs of zeros are
 * passed as holes so the exporter can restore sparse files.
 */
import type { ContentPiece, Exporter, ExportRecord } from "../connectors/records.js";
import { LocationFlag, Resource } from "../connectors/flags.js";
import { BlobType } from "../repository/codec.js";
import type { Repository } from "../repository/repository.js";
import { throwIfAborted } from "../util/errors.js";
import { nsToSeconds } from "../util/time.js";
import type { SnapshotHeader } from "./header.js";
import type { ChunkRef, Entry } from "./tree.js";
import { pieces } from "./holes.js";
import { RestorePool } from "./restore-pool.js";
import { joinPath, lookupOrThrow, TreeReader } from "./vfs.js";

export interface RestoreEvent {
  type: "entry" | "error" | "skipped";
  path: string;
  message?: string;
}

export interface RestoreOptions {
  signal?: AbortSignal | undefined;
  onEvent?: (e: RestoreEvent) => void;
  /** Files restored at once through the exporter (default 16). */
  concurrency?: number;
  /** Worker threads writing local files (default: one per core, at least 2; 0: none). */
  workers?: number;
}

export interface RestoreResult {
  files: number;
  dirs: number;
  others: number;
  bytes: number;
  errors: [string, string][];
}

const PREFETCH = 8;
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
  const { entry: top } = await lookupOrThrow(reader, header, path, signal);
  const result: RestoreResult = { files: 0, dirs: 0, others: 0, bytes: 0, errors: [] };
  const inflight = new Set<Promise<void>>();
  const limit = o.concurrency ?? 16;

  // Kloset's EXPORTXATTR: only exporters that asked for them get extended attributes.
  const wantsXattrs = (exporter.flags & LocationFlag.EXPORTXATTR) !== 0;
  const pool = exporter.prepareFile && o.workers !== 0 ? await RestorePool.start(repo, o.workers).catch(() => null) : null;
  const localPack = (pack: Uint8Array) => repo.store.localPath!(Resource.PACKFILE, pack);

  const succeeded = (pathname: string, e: Entry) => {
    if (e.info.kind === "file") {
      result.files++;
      result.bytes += e.info.size;
    } else if (e.info.kind === "dir") result.dirs++;
    else result.others++;
    o.onEvent?.({ type: "entry", path: pathname });
  };
  const failed = (pathname: string, error: string) => {
    result.errors.push([pathname, error]);
    o.onEvent?.({ type: "error", path: pathname, message: error });
  };

  /** A regular file written by the worker pool; resolves once it is written (or failed). */
  const writeByPool = async (p: RestorePool, pathname: string, e: Entry): Promise<{ done: Promise<void> }> => {
    let written: { done: Promise<string | undefined> };
    try {
      const rec: ExportRecord = { pathname, fileInfo: e.info };
      const { abs, owner } = await exporter.prepareFile!(rec);
      // The MACs are views into their decoded tree: posted as they are, each
      // would take the whole tree's buffer along. One buffer per file instead.
      const refs = e.chunks ?? [];
      const macs = new Uint8Array(refs.length * 32);
      const chunks = refs.map((c, i) => {
        const loc = repo.locate(BlobType.CHUNK, c.mac);
        macs.set(c.mac, i * 32);
        return { pack: localPack(loc.pack), offset: loc.offset, length: loc.length, rawLength: loc.rawLength, mac: macs.subarray(i * 32, i * 32 + 32) };
      });
      written = await p.write({ path: abs, size: e.info.size, mode: e.info.mode, mtime: nsToSeconds(e.info.mtimeNs), owner, chunks });
    } catch (err) {
      throwIfAborted(signal);
      failed(pathname, (err as Error).message);
      return { done: Promise.resolve() };
    }
    return { done: written.done.then((error) => (error === undefined ? succeeded(pathname, e) : failed(pathname, error))) };
  };

  const exportOne = async (pathname: string, e: Entry): Promise<void> => {
    const rec: ExportRecord = { pathname, fileInfo: e.info };
    if (e.target !== undefined) rec.target = e.target;
    if (e.xattrs && wantsXattrs) rec.xattrs = e.xattrs;
    if (e.info.kind === "file") rec.content = () => readChunks(repo, e.chunks ?? [], signal);
    let error: string | undefined;
    try {
      error = (await exporter.export(rec, { signal })).error;
    } catch (err) {
      throwIfAborted(signal);
      error = (err as Error).message;
    }
    if (error !== undefined) failed(pathname, error);
    else succeeded(pathname, e);
  };

  /** Files handed to the worker pool (not counted against `limit`: the pool bounds itself). */
  const pooled = new Set<Promise<void>>();
  const drain = async () => {
    pool?.flush();
    while (inflight.size > 0 || pooled.size > 0) await Promise.all([...inflight, ...pooled]);
  };

  // A file restored alone is exported under its own name.
  const base = top.info.kind === "dir" ? "/" : `/${top.name || "file"}`;
  try {
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
      if (pool && entry.info.kind === "file" && !(wantsXattrs && entry.xattrs?.length)) {
        const p: Promise<void> = (await writeByPool(pool, rel, entry)).done.finally(() => pooled.delete(p));
        pooled.add(p);
        continue;
      }
      while (inflight.size >= limit) await Promise.race(inflight);
      const p: Promise<void> = exportOne(rel, entry).finally(() => inflight.delete(p));
      inflight.add(p);
    }
    await drain();
  } finally {
    await pool?.close();
  }
  // Entries whose metadata is set last (the fs exporter's directories) may fail only here.
  for (const r of (await exporter.finish({ signal })) ?? []) if (r.error !== undefined) failed(r.pathname, r.error);
  return result;
}

export { joinPath };
