/**
 * The main-thread side of the backup pipeline's worker threads: hands local
 * files to chunk workers (chunk-worker.ts), receives their encoded chunks in
 * order, and passes them on. One file is read by one worker; several files
 * are in flight at once across the workers.
 */
import { availableParallelism } from "node:os";
import type { Worker } from "node:worker_threads";
import type { ChunkingParams } from "../repository/chunker.js";
import type { Compression } from "../repository/codec.js";
import type { MacAlgorithm, Subkeys } from "../repository/crypto.js";
import type { Repository } from "../repository/repository.js";
import { CofferError } from "../util/errors.js";
import { startWorkers, workerScript } from "./workers.js";

export interface PoolInit {
  keys: Subkeys;
  chunking: ChunkingParams;
  mac: MacAlgorithm;
  compression: Compression;
  encrypted: boolean;
  /** SharedArrayBuffer holding one Int32: bytes posted and not yet consumed. */
  credit: SharedArrayBuffer;
  creditLimit: number;
}

/** Worker messages are arrays of these, both ways. */
/** `size` is what the walk saw (the worker reads what is there). */
export type ToWorker = { type: "read"; id: number; path: string; size: number };
export type ToMain =
  | { type: "ready" }
  | { type: "chunk"; id: number; mac: Uint8Array; length: number; data: Uint8Array; raw: boolean }
  | { type: "done"; id: number; size: number }
  | { type: "error"; id: number; message: string };

/** A chunk from a worker: encoded, or (from a large file) its raw bytes for the caller to encode. */
export interface WorkerChunk {
  mac: Uint8Array;
  length: number;
  data: Uint8Array;
  raw: boolean;
}

interface Job {
  onChunk: (c: WorkerChunk) => Promise<void>;
  resolve: (size: number) => void;
  reject: (e: Error) => void;
  /** Serialises onChunk calls of this file, in order. */
  tail: Promise<void>;
  failed: Error | null;
}

interface Slot {
  worker: Worker;
  credit: Int32Array;
  jobs: number;
  /** Requests not yet sent (sent together on the next turn of the event loop). */
  outbox: ToWorker[];
}

const CREDIT_LIMIT = 8 << 20;

export class ChunkPool {
  private readonly jobs = new Map<number, Job>();
  private nextId = 1;
  private broken: Error | null = null;

  private constructor(private readonly slots: Slot[]) {}

  /** Starts `n` workers, or returns null when the compiled worker script is not there (e.g. running from TypeScript sources). */
  static async start(repo: Repository, n = Math.max(1, availableParallelism())): Promise<ChunkPool | null> {
    const url = workerScript("chunk-worker.js");
    if (!url) return null;
    const credits = Array.from({ length: n }, () => new SharedArrayBuffer(4));
    const slots: Slot[] = [];
    const pool = new ChunkPool(slots);
    const workers = await startWorkers<ToMain[]>(
      url,
      n,
      (i): PoolInit => ({
        keys: repo.keys,
        chunking: repo.config.chunking,
        mac: repo.config.mac,
        compression: repo.config.compression,
        encrypted: repo.config.encryption !== null,
        credit: credits[i]!,
        creditLimit: CREDIT_LIMIT,
      }),
      (i, batch) => {
        for (const m of batch) pool.onMessage(slots[i]!, m);
      },
      (e) => pool.fail(e),
    );
    workers.forEach((worker, i) => slots.push({ worker, credit: new Int32Array(credits[i]!), jobs: 0, outbox: [] }));
    return pool;
  }

  private fail(e: Error): void {
    this.broken ??= new CofferError("IO", `backup worker failed: ${e.message}`);
    for (const j of this.jobs.values()) j.reject(this.broken);
    this.jobs.clear();
  }

  private onMessage(slot: Slot, m: ToMain): void {
    if (m.type === "ready") return;
    const job = this.jobs.get(m.id);
    if (m.type === "chunk") {
      const release = () => {
        Atomics.sub(slot.credit, 0, m.data.byteLength);
        Atomics.notify(slot.credit, 0);
      };
      if (!job) return release();
      job.tail = job.tail.then(async () => {
        try {
          if (!job.failed) await job.onChunk({ mac: m.mac, length: m.length, data: m.data, raw: m.raw });
        } catch (e) {
          job.failed ??= e as Error;
        } finally {
          release();
        }
      });
      return;
    }
    if (!job) return;
    this.jobs.delete(m.id);
    slot.jobs--;
    if (m.type === "done") {
      void job.tail.then(() => (job.failed ? job.reject(job.failed) : job.resolve(m.size)));
    } else {
      void job.tail.then(() => job.reject(job.failed ?? new CofferError("IO", m.message)));
    }
  }

  /** Reads, chunks and encodes the file at `path`; `onChunk` receives every chunk in order. Resolves to the file's size. */
  readFile(path: string, size: number, onChunk: (c: WorkerChunk) => Promise<void>): Promise<number> {
    if (this.broken) return Promise.reject(this.broken);
    let slot = this.slots[0]!;
    for (const s of this.slots) if (s.jobs < slot.jobs) slot = s;
    const id = this.nextId++;
    slot.jobs++;
    return new Promise<number>((resolve, reject) => {
      this.jobs.set(id, { onChunk, resolve, reject, tail: Promise.resolve(), failed: null });
      if (slot.outbox.length === 0) {
        setImmediate(() => {
          const batch = slot.outbox;
          slot.outbox = [];
          slot.worker.postMessage(batch);
        });
      }
      slot.outbox.push({ type: "read", id, path, size });
    });
  }

  async close(): Promise<void> {
    await Promise.all(this.slots.map((s) => s.worker.terminate()));
  }
}
