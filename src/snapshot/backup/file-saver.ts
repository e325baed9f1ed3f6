/**
 * A regular file's chunks: shared with a hard link stored earlier
 * (hard-links.ts), reused from the parent snapshot when the file is
 * unchanged (parent.ts), or read. A record with a `localPath` is read,
 * chunked and mostly encoded by the chunk workers (chunk-pool.ts), another
 * through its `open()` on this thread; either way each new chunk is handed
 * to the repository, a few at once.
 */
import type { ImportRecord } from "../../connectors/records.js";
import { chunkStream, type ChunkerConfig } from "../../repository/chunker.js";
import { BlobType } from "../../repository/codec.js";
import type { Repository } from "../../repository/repository.js";
import { InFlight } from "../../util/concurrency.js";
import { throwIfAborted } from "../../util/errors.js";
import { giveBack } from "../../util/ring.js";
import type { ChunkRef } from "../tree.js";
import { ChunkPool } from "./chunk-pool.js";
import { type HardLinks, inodeKey } from "./hard-links.js";
import type { ParentIndex } from "./parent.js";
import type { Tally } from "./tally.js";

/** Chunks of a file read on this thread being stored at once. */
const CHUNKS_IN_FLIGHT = 4;
/** Raw chunks of a large file being encoded at once (by other workers, or on the libuv pool). */
const RAW_IN_FLIGHT = 10;

export interface FileContent {
  chunks: ChunkRef[];
  /** read: from the source; unchanged: the parent's; linked: another link's of this backup. */
  source: "read" | "unchanged" | "linked";
}

export interface FileSaverOptions {
  parent: ParentIndex | null;
  links: HardLinks;
  /** Counts the bytes read (readBytes). */
  tally: Tally;
  /** The run's signal: reading stops at its first failure. */
  signal: AbortSignal;
  /** The caller's signal only, for writes: a packfile being stored holds other files' chunks too. */
  writeSignal: AbortSignal | undefined;
  /** Chunk workers (default: one per core; 0 reads on this thread). */
  workers?: number | undefined;
}

export class FileSaver {
  private readonly parent: ParentIndex | null;
  private readonly links: HardLinks;
  private readonly tally: Tally;
  private readonly signal: AbortSignal;
  private readonly writeSignal: AbortSignal | undefined;
  private readonly workers: number | undefined;
  /** Started on the first file that must be read: a no-change backup needs no workers. */
  private poolStart: Promise<ChunkPool | null> | null = null;

  constructor(
    private readonly repo: Repository,
    private readonly chunker: ChunkerConfig,
    o: FileSaverOptions,
  ) {
    this.parent = o.parent;
    this.links = o.links;
    this.tally = o.tally;
    this.signal = o.signal;
    this.writeSignal = o.writeSignal;
    this.workers = o.workers;
  }

  /** The chunks of the file of record `r`, its new chunks handed to the repository. */
  async save(r: ImportRecord): Promise<FileContent> {
    const key = inodeKey(r.fileInfo);
    const first = key ? this.links.ofInode(key) : undefined;
    let chunks = first ? await first : undefined;
    if (!chunks && r.linkTarget !== undefined) chunks = await this.links.target(r);
    if (chunks) return { chunks, source: "linked" };
    const p = this.content(r);
    // Set before the first await: a link of this inode yielded meanwhile waits for these chunks.
    if (key && !first) this.links.setInode(key, p.then((c) => c.chunks, () => undefined));
    return p;
  }

  /** Stops the chunk workers, if they were started. */
  async close(): Promise<void> {
    const started = this.poolStart;
    await (await started)?.close();
  }

  private async content(r: ImportRecord): Promise<FileContent> {
    const reused = this.parent ? await this.parent.unchanged(r) : undefined;
    if (reused) return { chunks: reused, source: "unchanged" };
    const pool = r.localPath !== undefined ? await this.pool() : null;
    if (pool) return { chunks: await this.readLocal(pool, r.localPath!, r.fileInfo.size), source: "read" };
    return { chunks: r.open ? await this.readStream(r) : [], source: "read" };
  }

  private pool(): Promise<ChunkPool | null> {
    return (this.poolStart ??= this.workers === 0 ? Promise.resolve(null) : ChunkPool.start(this.repo, this.workers).catch(() => null));
  }

  /** Reads `r` through its open(), chunking and MACing here and storing the new chunks. */
  private async readStream(r: ImportRecord): Promise<ChunkRef[]> {
    const chunks: ChunkRef[] = [];
    const puts = new InFlight(CHUNKS_IN_FLIGHT);
    const source = await r.open!();
    for await (const chunk of chunkStream(source, this.chunker)) {
      throwIfAborted(this.signal);
      const mac = this.repo.mac.mac(chunk);
      chunks.push({ mac, length: chunk.byteLength });
      this.tally.summary.readBytes += chunk.byteLength;
      if (!this.repo.has(BlobType.CHUNK, mac)) await puts.add(this.repo.putBlob(BlobType.CHUNK, chunk, mac, this.writeSignal));
    }
    await puts.drain();
    return chunks;
  }

  /** A local file read, chunked and (for all but large files) encoded by the worker threads. */
  private async readLocal(pool: ChunkPool, path: string, size: number): Promise<ChunkRef[]> {
    const chunks: ChunkRef[] = [];
    const puts = new InFlight(RAW_IN_FLIGHT);
    const { repo, signal, writeSignal } = this;
    // c.data may be lent (util/ring.ts): given back here, or by what it is passed to.
    await pool.readFile(path, size, async (c) => {
      if (signal.aborted) giveBack(c.data);
      throwIfAborted(signal);
      chunks.push({ mac: c.mac, length: c.length });
      this.tally.summary.readBytes += c.length;
      if (!c.raw) {
        await repo.addEncoded(BlobType.CHUNK, c.mac, c.length, c.data, writeSignal);
      } else if (!repo.has(BlobType.CHUNK, c.mac)) {
        // Encoded by a worker that is not reading a large file, else here
        // (zstd on the libuv pool); several at once.
        const encoding = pool.encode(c.mac, c.data);
        await puts.add(
          encoding
            ? encoding.then((data) => repo.addEncoded(BlobType.CHUNK, c.mac, c.length, data, writeSignal))
            : repo.putBlob(BlobType.CHUNK, c.data, c.mac, writeSignal).finally(() => giveBack(c.data)),
        );
      } else giveBack(c.data);
    });
    await puts.drain();
    return chunks;
  }
}
