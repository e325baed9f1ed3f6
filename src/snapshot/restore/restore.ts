/**
 * Restore: walks a snapshot subtree depth-first and hands each entry to
 * the exporter (via-exporter.ts) or, for regular files into a local
 * directory, to the worker pool (via-workers.ts): from a local store the
 * workers read the packfiles themselves; from a remote one the main thread
 * fetches the stored bytes through the restore's BlobReader and the
 * workers decode and write them.
 * The order rules live here: a directory before its children, hard-linked
 * files one at a time, a bounded number of exports in flight.
 */
import { LocationFlag } from "../../connectors/flags.js";
import type { Exporter } from "../../connectors/records.js";
import { BlobReader } from "../../repository/blob-reader.js";
import type { Repository } from "../../repository/repository.js";
import { throwIfAborted } from "../../util/errors.js";
import type { SnapshotHeader } from "../header.js";
import { lookupOrThrow, TreeReader } from "../tree-reader.js";
import type { Entry } from "../tree.js";
import { wantChunks } from "./content.js";
import { type Failure, Outcome, type RestoreEvent, type RestoreResult } from "./outcome.js";
import { RestorePool } from "./pool.js";
import { exportEntry } from "./via-exporter.js";
import { writeByPool, writeFetchedByPool } from "./via-workers.js";

export type { RestoreEvent, RestoreResult };

export interface RestoreOptions {
  signal?: AbortSignal | undefined;
  onEvent?: (e: RestoreEvent) => void;
  /** Files restored at once through the exporter (default 16). */
  concurrency?: number;
  /** Worker threads writing local files (default: one per core, at least 2; 0: none). */
  workers?: number;
  /** Bytes of read data held for file content not yet exported (default: blob-reader.ts READ_BUDGET). */
  readBudget?: number;
}

/** Entries whose content is wanted from the reader while they wait for an export slot, at most. */
const LOOKAHEAD = 1024;

/** Restores the entry at `path` (as typed: see TreeReader.lookupTyped) of snapshot `header`, and all below it, through `exporter`. */
export async function restore(repo: Repository, header: SnapshotHeader, path: string, exporter: Exporter, o: RestoreOptions = {}): Promise<RestoreResult> {
  const signal = o.signal;
  const reader = new TreeReader(repo);
  const { entry: top } = await lookupOrThrow(reader, header, path, signal);
  const outcome = new Outcome(o.onEvent);
  const inflight = new Set<Promise<void>>();
  const limit = o.concurrency ?? 16;

  // Kloset's EXPORTXATTR: only exporters that asked for them get extended attributes.
  const wantsXattrs = (exporter.flags & LocationFlag.EXPORTXATTR) !== 0;
  const pool = exporter.prepareFile && o.workers !== 0 ? await RestorePool.start(repo, o.workers).catch(() => null) : null;
  const localPacks = repo.store.localPath !== undefined;

  const settle = (pathname: string, e: Entry, failure: Failure | undefined) => (failure ? outcome.failed(pathname, failure) : outcome.succeeded(pathname, e));
  // File content through the exporter comes from one reader, which plans its
  // reads over the files waiting (LOOKAHEAD of them) and bounds what it holds.
  const blobReader = new BlobReader(repo, { signal, budget: o.readBudget });
  const wanted = (e: Entry) => (e.info.kind === "file" ? wantChunks(blobReader, e.chunks ?? []) : undefined);
  const exportOne = async (pathname: string, e: Entry, blobs = wanted(e)): Promise<void> =>
    settle(pathname, e, await exportEntry(repo, exporter, pathname, e, { xattrs: wantsXattrs, signal, blobs }));
  /** Exports waiting for a slot, in walk order (their content already wanted). */
  const queued: (() => Promise<void>)[] = [];
  const startQueued = () => {
    while (inflight.size < limit && queued.length > 0) {
      const run = queued.shift()!;
      const p: Promise<void> = run().finally(() => {
        inflight.delete(p);
        startQueued();
      });
      inflight.add(p);
    }
  };

  /** Files handed to the worker pool (not counted against `limit`: the pool bounds itself). */
  const pooled = new Set<Promise<void>>();
  const toPool = (rel: string, entry: Entry, queuedFile: { done: Promise<Failure | undefined> }) => {
    const p: Promise<void> = queuedFile.done.then((f) => settle(rel, entry, f)).finally(() => pooled.delete(p));
    pooled.add(p);
  };
  const drain = async () => {
    pool?.flush();
    while (queued.length > 0 || inflight.size > 0 || pooled.size > 0) await Promise.all([...inflight, ...pooled]);
  };

  // A file restored alone is exported under its own name.
  const base = top.info.kind === "dir" ? "/" : `/${top.name || "file"}`;
  try {
    for await (const { path: rel, entry } of reader.walk(top, base, signal)) {
      throwIfAborted(signal);
      if (entry.error !== undefined && entry.info.kind !== "dir") {
        outcome.skipped(rel, `not in the snapshot: ${entry.error}`);
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
      const pooledFile = pool && entry.info.kind === "file" && !(wantsXattrs && entry.xattrs?.length);
      if (pool && pooledFile && localPacks) {
        toPool(rel, entry, await writeByPool(pool, repo, exporter, rel, entry, signal));
        continue;
      }
      // Fetched content waits for its reads, a bounded number of files at once, as exports do.
      const blobs = wanted(entry);
      queued.push(pool && pooledFile ? async () => toPool(rel, entry, await writeFetchedByPool(pool, exporter, rel, entry, blobs!, signal)) : () => exportOne(rel, entry, blobs));
      startQueued();
      while (queued.length >= LOOKAHEAD) await Promise.race(inflight);
    }
    blobReader.end();
    await drain();
  } finally {
    await pool?.close();
  }
  // Entries whose metadata is set last (the fs exporter's directories) may fail only here.
  for (const r of (await exporter.finish({ signal })) ?? []) if (r.error !== undefined) outcome.failed(r.pathname, { message: r.error });
  return outcome.result;
}
