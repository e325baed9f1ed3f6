/**
 * The snapshot builder (backup). Records from an importer are processed by
 * a few concurrent workers: unchanged files (same size, mtime, inode and
 * ctime as in the parent snapshot) reuse their chunk list without being
 * read; other files are streamed through the chunker, and each new chunk is
 * stored. Entries go to the on-disk scan cache; once the importer is done,
 * directories are built bottom-up from it, then the header is committed.
 */
import { LocationFlag } from "../connectors/flags.js";
import type { Importer, ImportRecord, ImportResult, Xattr } from "../connectors/records.js";
import { chunkStream, makeChunker } from "../repository/chunker.js";
import { BlobType } from "../repository/codec.js";
import { randomKey } from "../repository/crypto.js";
import type { Repository } from "../repository/repository.js";
import { Channel } from "../util/channel.js";
import { giveBack } from "../util/ring.js";
import { CofferError, isCofferError, throwIfAborted } from "../util/errors.js";
import { encode } from "@msgpack/msgpack";
import { encodeHeader, PRIOR_SNAPSHOTS, type SnapshotHeader, type Summary } from "./header.js";
import { ChunkPool } from "./chunk-pool.js";
import { SCAN_CACHE_MEMORY, ScanCache } from "./scancache.js";
import { type ChunkRef, compareNames, type Entry, encodeTree, encodeTreeOf, packEntry, unpackEntry } from "./tree.js";
import { listSnapshots } from "./snapshots.js";
import { TreeReader } from "./tree-reader.js";
import { toHex } from "../util/hex.js";

export interface BackupEvent {
  type: "entry" | "error" | "checkpoint" | "warning";
  /** The entry's path; for a checkpoint, its snapshot ID in hex; for a warning, what it is about. */
  path: string;
  message?: string;
}

/** When checkpoints are committed: whichever comes first. */
export interface CheckpointPolicy {
  /** Time since the last checkpoint, ms (0: never by time). */
  intervalMs: number;
  /** Content read since the last checkpoint, bytes (0: never by size). */
  bytes: number;
}

/** NEEDACK importers wait for checkpoints to release their records: keep them frequent. */
export const NEEDACK_CHECKPOINTS: CheckpointPolicy = { intervalMs: 5_000, bytes: 64 << 20 };
/** Other sources: checkpoints only let an interrupted backup resume cheaply. */
export const DEFAULT_CHECKPOINTS: CheckpointPolicy = { intervalMs: 300_000, bytes: 4 * 2 ** 30 };
/** NEEDACK into a single-file store (ptar), where each commit rewrites the archive: less often. */
export const NEEDACK_FILE_STORE_CHECKPOINTS: CheckpointPolicy = { intervalMs: 60_000, bytes: 1 << 30 };

export interface BackupOptions {
  importer: Importer;
  tags?: string[];
  hostname: string;
  username: string;
  os: string;
  arch: string;
  signal?: AbortSignal | undefined;
  /** Files processed at once (default 4). */
  concurrency?: number;
  onEvent?: (e: BackupEvent) => void;
  /** Skip change detection: read every file. */
  force?: boolean;
  /** Worker threads reading local files (default: one per core; 0 reads them on the main thread). */
  workers?: number;
  /** Default: NEEDACK_CHECKPOINTS for NEEDACK importers (NEEDACK_FILE_STORE_CHECKPOINTS on a FILE store), else DEFAULT_CHECKPOINTS. */
  checkpoints?: CheckpointPolicy | undefined;
}

export interface BackupResult {
  header: SnapshotHeader;
  parent: SnapshotHeader | undefined;
}

const CHUNKS_IN_FLIGHT = 4;
/** Parent listings kept by directory path (see parentListing). */
const PARENT_DIRS = 8;
/** The key of a file with other hard links (the first of them to be stored gives its chunks to the rest). */
function linkKeyOf(info: ImportRecord["fileInfo"]): string | undefined {
  return info.nlink > 1 ? `${info.dev}:${info.ino}` : undefined;
}

/** A parent listing still being loaded (see parentEntryNow). */
const NOT_LOADED = Symbol("not loaded");

/** A directory's listing in the parent snapshot: `entries` once `loaded`. */
interface ParentListing {
  loaded: boolean;
  entries: ReadonlyMap<string, Entry> | undefined;
  promise: Promise<ReadonlyMap<string, Entry> | undefined>;
}

/** Linux caps an extended attribute's value at 64 KiB; other systems allow more. */
const MAX_XATTR_VALUE = 1 << 20;
/** Raw chunks of a large file being encoded at once (by other workers, or on the libuv pool). */
const RAW_IN_FLIGHT = 10;

function emptySummary(): Summary {
  return { files: 0, dirs: 0, symlinks: 0, others: 0, bytes: 0, errors: 0, readBytes: 0, newBlobs: 0, newBytes: 0 };
}

/**
 * The snapshots a backup starts from: the latest one of the same source (its
 * parent, unless `force`) and the latest few of all (`prior`). Snapshots whose
 * header cannot be read are passed over, each with a warning.
 */
export async function findParent(
  repo: Repository,
  o: { hostname: string; type: string; root: string; force?: boolean; onWarning?: (id: string, message: string) => void },
  signal?: AbortSignal,
): Promise<{ parent: SnapshotHeader | undefined; prior: Uint8Array[] }> {
  const { snapshots: all, unreadable } = await listSnapshots(repo, signal);
  for (const u of unreadable) o.onWarning?.(toHex(u.id), `${u.message}: not considered as the parent snapshot`);
  const parent = o.force ? undefined : all.filter((h) => h.hostname === o.hostname && h.importer.type === o.type && h.importer.root === o.root).at(-1);
  return { parent, prior: all.slice(-PRIOR_SNAPSHOTS).map((h) => h.id) };
}

export async function backup(repo: Repository, o: BackupOptions): Promise<BackupResult> {
  const start = process.hrtime.bigint();
  const run = randomKey(16);
  const timeNs = BigInt(Date.now()) * 1_000_000n;
  // The work stops at the first failure (or the caller's abort). Writes to
  // the repository take the caller's signal only: a packfile being stored
  // holds other files' chunks too, and a checkpoint already committing
  // finishes.
  const stopper = new AbortController();
  const signal = o.signal ? AbortSignal.any([o.signal, stopper.signal]) : stopper.signal;
  const imp = o.importer;
  const chunker = makeChunker(repo.config.chunking, repo.keys.gear);
  const warn = (path: string, message: string) => o.onEvent?.({ type: "warning", path, message });
  const { parent, prior } = await findParent(repo, { hostname: o.hostname, type: imp.type, root: imp.root, force: o.force ?? false, onWarning: warn }, signal);
  const parentTree = new TreeReader(repo);
  const summary = emptySummary();
  const errors: [string, string][] = [];
  const links = new Map<string, Promise<ChunkRef[] | undefined>>();
  const written0 = { ...repo.written };
  // In memory when there is a parent: such a backup waits on this thread's
  // walk, which sqlite's inserts and ordered scan slow down. A first backup
  // waits on reading and compressing instead, and keeps that memory for the
  // rest of its peak (docs/PERFORMANCE.md).
  const cache = new ScanCache(undefined, parent ? SCAN_CACHE_MEMORY : 0);
  const needAck = (imp.flags & LocationFlag.NEEDACK) !== 0;
  // One answer per record; an importer that does not read them does not keep them.
  const results = new Channel<ImportResult>(!needAck);
  /** NEEDACK records stored in the scan cache, answered at the next checkpoint. */
  let toAck: ImportRecord[] = [];
  /** Files being processed, by path: a hard link (linkTarget) waits for its target. */
  const inflightFiles = new Map<string, Promise<ChunkRef[] | undefined>>();
  const fileStore = (repo.store.flags & LocationFlag.FILE) !== 0;
  const policy = o.checkpoints ?? (!needAck ? DEFAULT_CHECKPOINTS : fileStore ? NEEDACK_FILE_STORE_CHECKPOINTS : NEEDACK_CHECKPOINTS);
  let checkpoints = 0;
  let lastCheckpoint = Date.now();
  let readAtCheckpoint = 0;
  let newSinceCheckpoint = false;
  let checkpointRun: Promise<void> | null = null;
  let checkpointError: unknown = null;
  // Started on the first file that must be read: a no-change backup needs no workers.
  let poolStart: Promise<ChunkPool | null> | null = null;
  const getPool = () => (poolStart ??= o.workers === 0 ? Promise.resolve(null) : ChunkPool.start(repo, o.workers).catch(() => null));

  const fail = (path: string, message: string) => {
    summary.errors++;
    errors.push([path, message]);
    o.onEvent?.({ type: "error", path, message });
  };

  /**
   * The parent snapshot's listings of the last few directories records came
   * from, by path: records of a directory come together, and looking each
   * one up from the root had cost a cache lookup per path component.
   */
  const parentDirs = new Map<string, ParentListing>();
  /** Parent trees found unreadable (warned about once). */
  const unreadableTrees = new Set<string>();
  const parentListing = (dir: string): ParentListing => {
    let l = parentDirs.get(dir);
    if (!l) {
      const listing: ParentListing = {
        loaded: false,
        entries: undefined,
        promise: parentTree
          .lookup(parent!.root, dir, signal)
          .then((d) => (d && d.info.kind === "dir" ? parentTree.childrenByName(d, signal) : undefined))
          .catch((e: unknown) => {
            // A damaged or missing listing: the files below it are read from the source.
            const blob = isCofferError(e) && typeof e.data.mac === "string" ? e.data.mac : (e as Error).message;
            if (!signal.aborted && !unreadableTrees.has(blob)) {
              unreadableTrees.add(blob);
              warn(dir, `the parent snapshot's listing is unreadable (${(e as Error).message}): reading the files below it again`);
            }
            return undefined;
          })
          .then((m) => {
            listing.loaded = true;
            return (listing.entries = m);
          }),
      };
      parentDirs.set(dir, (l = listing));
      if (parentDirs.size > PARENT_DIRS) parentDirs.delete(parentDirs.keys().next().value!);
    }
    return l;
  };
  /** The parent snapshot's entry at `pathname`; NOT_LOADED while its directory's listing is being loaded (see parentEntry). */
  const parentEntryNow = (pathname: string): Entry | undefined | typeof NOT_LOADED => {
    if (pathname === "/") return parent!.root; // the source is a single file
    const slash = pathname.lastIndexOf("/");
    if (slash < 0) return undefined;
    const l = parentListing(slash === 0 ? "/" : pathname.slice(0, slash));
    return l.loaded ? l.entries?.get(pathname.slice(slash + 1)) : NOT_LOADED;
  };
  const parentEntry = async (pathname: string): Promise<Entry | undefined> => {
    const e = parentEntryNow(pathname);
    if (e !== NOT_LOADED) return e;
    const slash = pathname.lastIndexOf("/");
    return (await parentListing(slash === 0 ? "/" : pathname.slice(0, slash)).promise)?.get(pathname.slice(slash + 1));
  };

  /** The chunks of `old`, when `r` is that same file unchanged and they are all stored. */
  const sameFile = (old: Entry | undefined, r: ImportRecord): ChunkRef[] | undefined => {
    if (!old || old.info.kind !== "file" || old.error !== undefined || !old.chunks) return undefined;
    const a = old.info, b = r.fileInfo;
    if (a.size !== b.size || a.mtimeNs !== b.mtimeNs || a.ino !== b.ino) return undefined;
    if (a.ctimeNs !== undefined && b.ctimeNs !== undefined && a.ctimeNs !== b.ctimeNs) return undefined;
    for (const c of old.chunks) if (!repo.has(BlobType.CHUNK, c.mac)) return undefined;
    return old.chunks;
  };
  const unchanged = async (r: ImportRecord): Promise<ChunkRef[] | undefined> => (parent ? sameFile(await parentEntry(r.pathname), r) : undefined);

  const readContent = async (r: ImportRecord): Promise<ChunkRef[]> => {
    const chunks: ChunkRef[] = [];
    const window: Promise<unknown>[] = [];
    const source = await r.open!();
    try {
      for await (const chunk of chunkStream(source, chunker)) {
        throwIfAborted(signal);
        const mac = repo.mac.mac(chunk);
        chunks.push({ mac, length: chunk.byteLength });
        summary.readBytes += chunk.byteLength;
        if (!repo.has(BlobType.CHUNK, mac)) {
          window.push(repo.putBlob(BlobType.CHUNK, chunk, mac, o.signal));
          if (window.length >= CHUNKS_IN_FLIGHT) await window.shift();
        }
      }
      await Promise.all(window);
    } catch (e) {
      for (const p of window) p.catch(() => {}); // failed with us; nobody else waits for them
      throw e;
    }
    return chunks;
  };

  /** A local file read, chunked and (for all but large files) encoded by the worker threads. */
  const readLocal = async (pool: ChunkPool, path: string, size: number): Promise<ChunkRef[]> => {
    const chunks: ChunkRef[] = [];
    const window: Promise<unknown>[] = [];
    try {
      // c.data may be lent (util/ring.ts): given back here, or by what it is passed to.
      await pool.readFile(path, size, async (c) => {
        if (signal?.aborted) giveBack(c.data);
        throwIfAborted(signal);
        chunks.push({ mac: c.mac, length: c.length });
        summary.readBytes += c.length;
        if (!c.raw) {
          await repo.addEncoded(BlobType.CHUNK, c.mac, c.length, c.data, o.signal);
        } else if (!repo.has(BlobType.CHUNK, c.mac)) {
          // Encoded by a worker that is not reading a large file, else here
          // (zstd on the libuv pool); several at once.
          const encoding = pool.encode(c.mac, c.data);
          window.push(
            encoding
              ? encoding.then((data) => repo.addEncoded(BlobType.CHUNK, c.mac, c.length, data, o.signal))
              : repo.putBlob(BlobType.CHUNK, c.data, c.mac, o.signal).finally(() => giveBack(c.data)),
          );
          if (window.length >= RAW_IN_FLIGHT) await window.shift();
        } else giveBack(c.data);
      });
      await Promise.all(window);
    } catch (e) {
      for (const p of window) p.catch(() => {}); // failed with us; nobody else waits for them
      throw e;
    }
    return chunks;
  };

  const fileChunks = async (r: ImportRecord): Promise<ChunkRef[] | undefined> => {
    const reused = await unchanged(r);
    if (reused) return reused;
    const pool = r.localPath !== undefined ? await getPool() : null;
    if (pool) return readLocal(pool, r.localPath!, r.fileInfo.size);
    if (!r.open) return [];
    return readContent(r);
  };

  /** Extended attributes (records of their own) whose entry is not stored yet, with their records (answered once attached). */
  const pendingXattrs = new Map<string, { x: Xattr; r: ImportRecord }[]>();
  const stored1 = (r: ImportRecord) => {
    newSinceCheckpoint = true;
    if (needAck) toAck.push(r);
    else results.push({ record: r });
  };
  const addXattr = (list: Xattr[] | undefined, x: Xattr): Xattr[] => [...(list ?? []).filter((y) => y.name !== x.name), x];

  const xattrRecord = async (r: ImportRecord): Promise<void> => {
    let value: Uint8Array;
    try {
      const parts: Uint8Array[] = [];
      let size = 0;
      if (r.open) {
        for await (const b of await r.open()) {
          size += b.byteLength;
          if (size > MAX_XATTR_VALUE) throw new Error(`value larger than ${MAX_XATTR_VALUE} bytes`);
          parts.push(b);
        }
      }
      value = new Uint8Array(Buffer.concat(parts));
    } catch (e) {
      if (signal?.aborted || (e instanceof CofferError && e.code !== "IO")) throw e;
      const error = `cannot read extended attribute ${r.xattrName}: ${(e as Error).message}`;
      fail(r.pathname, error);
      results.push({ record: r, error });
      return;
    }
    const x: Xattr = { name: r.xattrName!, value };
    // Synchronously from here: the entry is either stored already or will take it when it is.
    const stored = cache.get(r.pathname);
    if (stored) {
      stored.xattrs = addXattr(stored.xattrs, x);
      cache.put(r.pathname, stored);
      stored1(r);
    } else pendingXattrs.set(r.pathname, [...(pendingXattrs.get(r.pathname) ?? []), { x, r }]);
  };

  const process1 = async (r: ImportRecord): Promise<void> => {
    if (r.xattrName !== undefined) return xattrRecord(r);
    const info = r.fileInfo;
    let done!: (c: ChunkRef[] | undefined) => void;
    if (info.kind === "file") {
      // Registered before the first await, so that a link yielded later finds it.
      const p = new Promise<ChunkRef[] | undefined>((res) => (done = res));
      inflightFiles.set(r.pathname, p);
    }
    try {
      await store1(r, info, (c) => done?.(c));
    } finally {
      done?.(undefined);
      if (info.kind === "file") inflightFiles.delete(r.pathname);
    }
  };

  const linked = async (r: ImportRecord): Promise<ChunkRef[]> => {
    const t = r.linkTarget!;
    const chunks = await (inflightFiles.get(t) ?? Promise.resolve(cache.get(t)?.chunks));
    if (!chunks) throw new CofferError("IO", `hard link target ${t} is not a stored file`);
    return chunks;
  };

  /**
   * The parent's entry of the same inode with the same ctime as `r`, which
   * holds `r`'s extended attributes too (setting one changes ctime).
   */
  const sameAttrs = (old: Entry | undefined | typeof NOT_LOADED, r: ImportRecord): Entry | undefined => {
    if (old === NOT_LOADED || !old || old.error !== undefined) return undefined;
    const a = old.info, b = r.fileInfo;
    return a.kind === b.kind && a.ino === b.ino && a.ctimeNs !== undefined && a.ctimeNs === b.ctimeNs ? old : undefined;
  };

  /** The entry of record `r`, its content aside; `old` is the parent's entry at its path, if known (see sameAttrs). */
  const newEntry = (r: ImportRecord, info: ImportRecord["fileInfo"], old?: Entry | typeof NOT_LOADED): Entry => {
    const name = r.pathname === "/" ? "" : r.pathname.slice(r.pathname.lastIndexOf("/") + 1);
    const entry: Entry = { name, info: { ...info, name } };
    if (r.target !== undefined) entry.target = r.target;
    const same = r.xattrs === undefined && r.readXattrs ? sameAttrs(old, r) : undefined;
    const xattrs = r.xattrs ?? (same ? same.xattrs : r.readXattrs?.());
    if (xattrs && xattrs.length > 0) entry.xattrs = xattrs;
    if (r.error !== undefined) {
      entry.error = r.error;
      fail(r.pathname, r.error);
    }
    return entry;
  };
  const setChunks = (entry: Entry, chunks: ChunkRef[]): void => {
    entry.chunks = chunks;
    let size = 0;
    for (const c of chunks) size += c.length;
    entry.info.size = size;
    summary.bytes += size;
  };

  const store1 = async (r: ImportRecord, info: ImportRecord["fileInfo"], publish: (c: ChunkRef[]) => void): Promise<void> => {
    const entry = newEntry(r, info, parent && r.readXattrs ? await parentEntry(r.pathname) : undefined);
    if (entry.error === undefined && info.kind === "file") {
      try {
        let chunks: ChunkRef[] | undefined;
        const linkKey = linkKeyOf(info);
        const first = linkKey ? links.get(linkKey) : undefined;
        if (first) chunks = await first;
        if (!chunks && r.linkTarget !== undefined) chunks = await linked(r);
        if (!chunks) {
          const p = fileChunks(r);
          if (linkKey && !first) links.set(linkKey, p.catch(() => undefined));
          chunks = await p;
        }
        if (!chunks) throw new Error("content unavailable");
        setChunks(entry, chunks);
        publish(chunks);
      } catch (e) {
        if (signal?.aborted || (e instanceof CofferError && e.code !== "IO")) throw e;
        entry.error = `cannot read: ${(e as Error).message}`;
        fail(r.pathname, entry.error);
      }
    }
    finish(r, info, entry);
  };

  /**
   * Stores the entry of `r` at once when nothing has to be awaited for it:
   * anything but a file, or a file found unchanged in a parent listing
   * already loaded (all of a no-change backup but the first record of each
   * directory). A promise and an async frame or two per entry had been most
   * of what a no-change backup allocated. False: left to process1().
   */
  const storeNow = (r: ImportRecord): boolean => {
    if (r.xattrName !== undefined) return false;
    const info = r.fileInfo;
    let chunks: ChunkRef[] | undefined;
    let old: Entry | undefined | typeof NOT_LOADED;
    if (info.kind === "file" && r.error === undefined) {
      if (!parent || r.linkTarget !== undefined) return false;
      const linkKey = linkKeyOf(info);
      if (linkKey && links.has(linkKey)) return false;
      old = parentEntryNow(r.pathname);
      if (old === NOT_LOADED) return false;
      chunks = sameFile(old, r);
      if (!chunks) return false;
      if (linkKey) links.set(linkKey, Promise.resolve(chunks));
    } else if (parent && r.readXattrs) old = parentEntryNow(r.pathname);
    const entry = newEntry(r, info, old);
    if (chunks) setChunks(entry, chunks);
    finish(r, info, entry);
    return true;
  };

  /** Counts the entry, stores it in the scan cache with any attributes that came early, and answers its record. */
  const finish = (r: ImportRecord, info: ImportRecord["fileInfo"], entry: Entry): void => {
    if (info.kind === "file") summary.files++;
    else if (info.kind === "dir") summary.dirs++;
    else if (info.kind === "symlink") summary.symlinks++;
    else summary.others++;
    const early = pendingXattrs.get(r.pathname);
    if (early) {
      pendingXattrs.delete(r.pathname);
      for (const { x } of early) entry.xattrs = addXattr(entry.xattrs, x);
    }
    cache.put(r.pathname, entry);
    for (const { r: xr } of early ?? []) stored1(xr);
    newSinceCheckpoint = true;
    if (entry.error !== undefined) results.push({ record: r, error: entry.error });
    else if (needAck) toAck.push(r);
    else results.push({ record: r });
    o.onEvent?.({ type: "entry", path: r.pathname });
    maybeCheckpoint();
  };

  const header = async (root: Entry, checkpoint: number | undefined, sig: AbortSignal | undefined): Promise<SnapshotHeader> => {
    let errorsMac: Uint8Array | undefined;
    if (errors.length > 0) errorsMac = (await repo.putBlob(BlobType.ERRORS, encode(errors), undefined, sig)).mac;
    const s = { ...summary, newBlobs: repo.written.blobs - written0.blobs, newBytes: repo.written.rawBytes - written0.rawBytes };
    return {
      id: randomKey(32),
      timeNs,
      durationNs: process.hrtime.bigint() - start,
      hostname: o.hostname,
      username: o.username,
      os: o.os,
      arch: o.arch,
      importer: { type: imp.type, origin: imp.origin, root: imp.root },
      tags: o.tags ?? [],
      root,
      summary: s,
      run,
      ...(checkpoint !== undefined ? { checkpoint } : {}),
      ...(parent ? { parent: parent.id } : {}),
      ...(errorsMac ? { errors: errorsMac } : {}),
      ...(prior.length > 0 ? { prior } : {}),
    };
  };

  /**
   * Commits a partial snapshot of every entry in the scan cache, then
   * answers the NEEDACK records it covers. Entries finished meanwhile wait
   * (the cache is frozen) for the next one.
   */
  const checkpoint = async (): Promise<void> => {
    const acks = toAck;
    toAck = [];
    newSinceCheckpoint = false;
    lastCheckpoint = Date.now();
    readAtCheckpoint = summary.readBytes;
    cache.freeze();
    let root: Entry;
    try {
      root = await buildTrees(repo, cache, o.signal);
    } finally {
      cache.thaw();
    }
    const h = await header(root, ++checkpoints, o.signal);
    await repo.commitSnapshot(h.id, encodeHeader(h), o.signal);
    for (const r of acks) results.push({ record: r });
    o.onEvent?.({ type: "checkpoint", path: toHex(h.id) });
  };

  function maybeCheckpoint(): void {
    if (checkpointRun || !newSinceCheckpoint || signal?.aborted) return;
    const due = (policy.intervalMs > 0 && Date.now() - lastCheckpoint >= policy.intervalMs) || (policy.bytes > 0 && summary.readBytes - readAtCheckpoint >= policy.bytes);
    if (!due) return;
    checkpointRun = checkpoint()
      .catch((e: unknown) => {
        checkpointError ??= e;
      })
      .finally(() => (checkpointRun = null));
  }
  // Slow sources still get their checkpoints (and their acks) on time.
  const timer = policy.intervalMs > 0 ? setInterval(maybeCheckpoint, Math.min(policy.intervalMs, 1000)) : undefined;
  timer?.unref();

  try {
    const it = imp.import({ signal, results, xattrRecords: true, lazyXattrs: true })[Symbol.asyncIterator]();
    const worker = async () => {
      while (true) {
        throwIfAborted(signal);
        if (checkpointError) throw checkpointError;
        const n = await it.next();
        if (n.done) return;
        if (!storeNow(n.value)) await process1(n.value);
      }
    };
    // Many files in flight keep the workers fed; each costs only a promise until it is read.
    // The first failure stops the others, and none is left running on its own.
    let failure: { e: unknown } | undefined;
    await Promise.all(
      Array.from({ length: o.concurrency ?? (o.workers === 0 ? 4 : 64) }, () =>
        worker().catch((e: unknown) => {
          failure ??= { e };
          stopper.abort();
        }),
      ),
    );
    if (failure) throw failure.e;
    clearInterval(timer);
    while (checkpointRun) await checkpointRun;
    if (checkpointError) throw checkpointError;
    for (const [p, xs] of pendingXattrs) {
      const error = `extended attribute ${xs.map(({ x }) => x.name).join(", ")} came for an entry the source never sent`;
      fail(p, error);
      for (const { r } of xs) results.push({ record: r, error });
    }
    const root = await buildTrees(repo, cache, signal);
    await repo.flush(signal);
    const h = await header(root, undefined, signal);
    await repo.commitSnapshot(h.id, encodeHeader(h), signal);
    for (const r of toAck.splice(0)) results.push({ record: r });
    return { header: h, parent };
  } finally {
    clearInterval(timer);
    // A checkpoint under way when the run fails still commits: let it, so
    // the records it holds are answered before the results end.
    await (checkpointRun as Promise<void> | null)?.catch(() => {});
    results.end();
    cache.close();
    const started = poolStart as Promise<ChunkPool | null> | null;
    await (await started)?.close();
  }
}

interface Frame {
  parts: string[];
  entry: Entry;
  /** The children's names and packEntry() bytes. */
  children: { name: string; packed: Uint8Array }[];
}

function syntheticDir(name: string): Entry {
  return {
    name,
    info: { name, kind: "dir", size: 0, mode: 0o755, mtimeNs: 0n, dev: 0n, ino: 0n, uid: 0, gid: 0, nlink: 1 },
  };
}

function isAncestor(a: string[], b: string[]): boolean {
  if (a.length >= b.length) return false;
  for (let i = 0; i < a.length; i++) if (a[i] !== b[i]) return false;
  return true;
}

/** Builds TREE blobs bottom-up from the scan cache; returns the root entry. */
async function buildTrees(repo: Repository, cache: ScanCache, signal?: AbortSignal): Promise<Entry> {
  const stack: Frame[] = [];
  let root: Entry | undefined;
  // A tree's name is its MAC, known before it is stored: its parent does not
  // wait for the store, and several trees are stored at once. Entries other
  // than directories go into their tree as the bytes the scan cache holds
  // (the same bytes, without decoding and encoding each again).
  const window: Promise<unknown>[] = [];
  const close = async () => {
    const f = stack.pop()!;
    // The scan gives children in byte order of their names, the tree's order
    // (sorted here only should that ever not hold).
    const kids = f.children;
    for (let i = 1; i < kids.length; i++) {
      if (compareNames(kids[i - 1]!.name, kids[i]!.name) > 0) {
        kids.sort((x, y) => compareNames(x.name, y.name));
        break;
      }
    }
    const raw = encodeTreeOf(kids.map((c) => c.packed));
    const mac = repo.mac.mac(raw);
    window.push(repo.putBlob(BlobType.TREE, raw, mac, signal));
    if (window.length >= TREES_IN_FLIGHT) await window.shift();
    f.entry.tree = mac;
    const up = stack.at(-1);
    if (up) up.children.push({ name: f.entry.name, packed: packEntry(f.entry) });
    else root = f.entry;
  };
  const walk = async (): Promise<Entry> => {
    for (const { parts, packed, dir } of cache.scanPacked()) {
      while (stack.length > 0 && !isAncestor(stack.at(-1)!.parts, parts)) await close();
      if (stack.length === 0 && parts.length > 0) stack.push({ parts: [], entry: syntheticDir(""), children: [] });
      while (stack.length > 0 && stack.at(-1)!.parts.length < parts.length - 1) {
        const p = parts.slice(0, stack.at(-1)!.parts.length + 1);
        stack.push({ parts: p, entry: syntheticDir(p.at(-1)!), children: [] });
      }
      if (dir) stack.push({ parts, entry: unpackEntry(packed, "scan cache"), children: [] });
      else if (parts.length === 0) root = unpackEntry(packed, "scan cache");
      else stack.at(-1)!.children.push({ name: parts.at(-1)!, packed });
    }
    while (stack.length > 0) await close();
    return root ?? { ...syntheticDir(""), tree: (await repo.putBlob(BlobType.TREE, encodeTree([]), undefined, signal)).mac };
  };
  try {
    const top = await walk();
    await Promise.all(window);
    return top;
  } catch (e) {
    for (const p of window) p.catch(() => {}); // failed with us
    throw e;
  }
}

/** Trees being stored at once while they are built. */
const TREES_IN_FLIGHT = 16;
