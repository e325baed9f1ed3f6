/**
 * The snapshot builder (backup). Records from an importer are processed by
 * a few concurrent workers: unchanged files (same size, mtime, inode and
 * ctime as in the parent snapshot) reuse their chunk list without being
 * read; other files are streamed through the chunker, and each new chunk is
 * stored. Entries go to the on-disk scan cache; once the importer is done,
 * directories are built bottom-up from it, then the header is committed.
 */
import type { Importer, ImportRecord } from "../connectors/records.js";
import { chunkStream, makeChunker } from "../repository/chunker.js";
import { BlobType } from "../repository/codec.js";
import { randomKey } from "../repository/crypto.js";
import type { Repository } from "../repository/repository.js";
import { CofferError, throwIfAborted } from "../util/errors.js";
import { encode } from "@msgpack/msgpack";
import { encodeHeader, type SnapshotHeader, type Summary } from "./header.js";
import { ChunkPool } from "./chunk-pool.js";
import { ScanCache } from "./scancache.js";
import { type ChunkRef, compareNames, type Entry, encodeTree } from "./tree.js";
import { listSnapshots, TreeReader } from "./vfs.js";

export interface BackupEvent {
  type: "entry" | "error";
  path: string;
  message?: string;
}

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
}

export interface BackupResult {
  header: SnapshotHeader;
  parent: SnapshotHeader | undefined;
}

const CHUNKS_IN_FLIGHT = 4;
/** Raw chunks of a large file being compressed at once (one per libuv pool thread). */
const RAW_IN_FLIGHT = 4;

function emptySummary(): Summary {
  return { files: 0, dirs: 0, symlinks: 0, others: 0, bytes: 0, errors: 0, readBytes: 0, newBlobs: 0, newBytes: 0 };
}

export async function findParent(repo: Repository, o: { hostname: string; type: string; root: string }, signal?: AbortSignal): Promise<SnapshotHeader | undefined> {
  const all = await listSnapshots(repo, signal);
  return all.filter((h) => h.hostname === o.hostname && h.importer.type === o.type && h.importer.root === o.root).at(-1);
}

export async function backup(repo: Repository, o: BackupOptions): Promise<BackupResult> {
  const start = process.hrtime.bigint();
  const timeNs = BigInt(Date.now()) * 1_000_000n;
  const signal = o.signal;
  const imp = o.importer;
  const chunker = makeChunker(repo.config.chunking, repo.keys.gear);
  const parent = o.force ? undefined : await findParent(repo, { hostname: o.hostname, type: imp.type, root: imp.root }, signal);
  const parentTree = new TreeReader(repo);
  const summary = emptySummary();
  const errors: [string, string][] = [];
  const links = new Map<string, Promise<ChunkRef[] | undefined>>();
  const written0 = { ...repo.written };
  const cache = new ScanCache();
  // Started on the first file that must be read: a no-change backup needs no workers.
  let poolStart: Promise<ChunkPool | null> | null = null;
  const getPool = () => (poolStart ??= o.workers === 0 ? Promise.resolve(null) : ChunkPool.start(repo, o.workers).catch(() => null));

  const fail = (path: string, message: string) => {
    summary.errors++;
    errors.push([path, message]);
    o.onEvent?.({ type: "error", path, message });
  };

  const unchanged = async (r: ImportRecord): Promise<ChunkRef[] | undefined> => {
    if (!parent) return undefined;
    const old = await parentTree.lookup(parent.root, r.pathname, signal).catch(() => undefined);
    if (!old || old.info.kind !== "file" || old.error !== undefined || !old.chunks) return undefined;
    const a = old.info, b = r.fileInfo;
    if (a.size !== b.size || a.mtimeNs !== b.mtimeNs || a.ino !== b.ino) return undefined;
    if (a.ctimeNs !== undefined && b.ctimeNs !== undefined && a.ctimeNs !== b.ctimeNs) return undefined;
    if (!old.chunks.every((c) => repo.has(BlobType.CHUNK, c.mac))) return undefined;
    return old.chunks;
  };

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
          window.push(repo.putBlob(BlobType.CHUNK, chunk, mac, signal));
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
  const readLocal = async (pool: ChunkPool, path: string): Promise<ChunkRef[]> => {
    const chunks: ChunkRef[] = [];
    const window: Promise<unknown>[] = [];
    try {
      await pool.readFile(path, async (c) => {
        chunks.push({ mac: c.mac, length: c.length });
        summary.readBytes += c.length;
        if (!c.raw) {
          await repo.addEncoded(BlobType.CHUNK, c.mac, c.length, c.data, signal);
        } else if (!repo.has(BlobType.CHUNK, c.mac)) {
          // Encoded here, several at once: zstd runs on the libuv pool.
          window.push(repo.putBlob(BlobType.CHUNK, c.data, c.mac, signal));
          if (window.length >= RAW_IN_FLIGHT) await window.shift();
        }
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
    if (pool) return readLocal(pool, r.localPath!);
    if (!r.open) return [];
    return readContent(r);
  };

  const process1 = async (r: ImportRecord): Promise<void> => {
    const info = r.fileInfo;
    const name = r.pathname === "/" ? "" : r.pathname.slice(r.pathname.lastIndexOf("/") + 1);
    const entry: Entry = { name, info: { ...info, name } };
    if (r.target !== undefined) entry.target = r.target;
    if (r.xattrs && r.xattrs.length > 0) entry.xattrs = r.xattrs;
    if (r.error !== undefined) {
      entry.error = r.error;
      fail(r.pathname, r.error);
    } else if (info.kind === "file") {
      try {
        let chunks: ChunkRef[] | undefined;
        const linkKey = info.nlink > 1 ? `${info.dev}:${info.ino}` : undefined;
        const first = linkKey ? links.get(linkKey) : undefined;
        if (first) chunks = await first;
        if (!chunks) {
          const p = fileChunks(r);
          if (linkKey && !first) links.set(linkKey, p.catch(() => undefined));
          chunks = await p;
        }
        if (!chunks) throw new Error("content unavailable");
        entry.chunks = chunks;
        const size = chunks.reduce((n, c) => n + c.length, 0);
        entry.info.size = size;
        summary.bytes += size;
      } catch (e) {
        if (signal?.aborted || (e instanceof CofferError && e.code !== "IO")) throw e;
        entry.error = `cannot read: ${(e as Error).message}`;
        fail(r.pathname, entry.error);
      }
    }
    if (info.kind === "file") summary.files++;
    else if (info.kind === "dir") summary.dirs++;
    else if (info.kind === "symlink") summary.symlinks++;
    else summary.others++;
    cache.put(r.pathname, entry);
    o.onEvent?.({ type: "entry", path: r.pathname });
  };

  try {
    const it = imp.import({ signal })[Symbol.asyncIterator]();
    const worker = async () => {
      while (true) {
        throwIfAborted(signal);
        const n = await it.next();
        if (n.done) return;
        await process1(n.value);
      }
    };
    // Many files in flight keep the workers fed; each costs only a promise until it is read.
    await Promise.all(Array.from({ length: o.concurrency ?? (o.workers === 0 ? 4 : 64) }, worker));
    const root = await buildTrees(repo, cache, signal);
    await repo.flush(signal);
    let errorsMac: Uint8Array | undefined;
    if (errors.length > 0) errorsMac = (await repo.putBlob(BlobType.ERRORS, encode(errors), undefined, signal)).mac;
    summary.newBlobs = repo.written.blobs - written0.blobs;
    summary.newBytes = repo.written.rawBytes - written0.rawBytes;
    const header: SnapshotHeader = {
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
      summary,
      ...(parent ? { parent: parent.id } : {}),
      ...(errorsMac ? { errors: errorsMac } : {}),
    };
    await repo.commitSnapshot(header.id, encodeHeader(header), signal);
    return { header, parent };
  } finally {
    cache.close();
    const started = poolStart as Promise<ChunkPool | null> | null;
    await (await started)?.close();
  }
}

interface Frame {
  parts: string[];
  entry: Entry;
  children: Entry[];
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
  const close = async () => {
    const f = stack.pop()!;
    f.children.sort((x, y) => compareNames(x.name, y.name));
    f.entry.tree = (await repo.putBlob(BlobType.TREE, encodeTree(f.children), undefined, signal)).mac;
    const up = stack.at(-1);
    if (up) up.children.push(f.entry);
    else root = f.entry;
  };
  for (const { parts, entry } of cache.scan()) {
    while (stack.length > 0 && !isAncestor(stack.at(-1)!.parts, parts)) await close();
    if (stack.length === 0 && parts.length > 0) stack.push({ parts: [], entry: syntheticDir(""), children: [] });
    while (stack.length > 0 && stack.at(-1)!.parts.length < parts.length - 1) {
      const p = parts.slice(0, stack.at(-1)!.parts.length + 1);
      stack.push({ parts: p, entry: syntheticDir(p.at(-1)!), children: [] });
    }
    if (entry.info.kind === "dir" && entry.error === undefined) stack.push({ parts, entry, children: [] });
    else if (parts.length === 0) root = entry;
    else stack.at(-1)!.children.push(entry);
  }
  while (stack.length > 0) await close();
  return root ?? { ...syntheticDir(""), tree: (await repo.putBlob(BlobType.TREE, encodeTree([]), undefined, signal)).mac };
}
