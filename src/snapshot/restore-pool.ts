/**
 * The main-thread side of the restore's worker threads: regular files
 * whose chunks sit in a local store are written by restore-worker.ts with
 * synchronous I/O, in batches, while the main thread walks the tree and
 * creates directories, links and special files. Restore falls back to the
 * exporter's own path when the store is not local or the worker script is
 * not there (running from TypeScript sources).
 */
import { availableParallelism } from "node:os";
import type { Worker } from "node:worker_threads";
import type { Compression } from "../repository/codec.js";
import type { Subkeys } from "../repository/crypto.js";
import type { Repository } from "../repository/repository.js";
import { CofferError } from "../util/errors.js";
import { startWorkers, workerScript } from "./workers.js";

export interface RestoreInit {
  keys: Subkeys;
  encrypted: boolean;
  compression: Compression;
}

export interface ChunkJob {
  /** Local path of the packfile. */
  pack: string;
  offset: number;
  length: number;
  rawLength: number;
  mac: Uint8Array;
}

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

export interface RestoreToMain {
  id: number;
  error?: string;
}

interface Slot {
  worker: Worker;
  batch: FileJob[];
  batchBytes: number;
  inFlight: number;
  waiting: Map<number, (error: string | undefined) => void>;
}

/** A batch is sent when it holds this many files or bytes. */
const BATCH_FILES = 32;
const BATCH_BYTES = 4 << 20;
/** Batches in flight per worker. */
const MAX_IN_FLIGHT = 2;

export class RestorePool {
  private broken: Error | null = null;
  private nextId = 1;
  private readonly slotFree: (() => void)[] = [];
  /** The worker whose batch is being filled. */
  private next = 0;

  private constructor(private readonly slots: Slot[]) {}

  static async start(repo: Repository, n = Math.max(2, availableParallelism())): Promise<RestorePool | null> {
    const url = workerScript("restore-worker.js");
    if (!url || !repo.store.localPath) return null;
    const init: RestoreInit = { keys: repo.keys, encrypted: repo.config.encryption !== null, compression: repo.config.compression };
    const slots: Slot[] = [];
    const pool = new RestorePool(slots);
    const workers = await startWorkers<RestoreToMain[]>(
      url,
      n,
      () => init,
      (i, out) => pool.onResults(slots[i]!, out),
      (e) => pool.fail(e),
    );
    for (const worker of workers) slots.push({ worker, batch: [], batchBytes: 0, inFlight: 0, waiting: new Map() });
    return pool;
  }

  private fail(e: Error): void {
    this.broken ??= new CofferError("IO", `restore worker failed: ${e.message}`);
    for (const s of this.slots) {
      for (const done of s.waiting.values()) done(this.broken.message);
      s.waiting.clear();
    }
    for (const f of this.slotFree.splice(0)) f();
  }

  private onResults(slot: Slot, out: RestoreToMain[]): void {
    slot.inFlight--;
    for (const r of out) {
      const done = slot.waiting.get(r.id);
      slot.waiting.delete(r.id);
      done?.(r.error);
    }
    this.slotFree.shift()?.();
  }

  private send(slot: Slot): void {
    if (slot.batch.length === 0) return;
    const batch = slot.batch;
    slot.batch = [];
    slot.batchBytes = 0;
    slot.inFlight++;
    slot.worker.postMessage(batch);
  }

  /**
   * Queues a file once a worker can take it (waiting while every worker is
   * busy, which holds the caller's walk back). `done` settles with the
   * file's error text, or undefined once it is written.
   */
  async write(job: Omit<FileJob, "id">): Promise<{ done: Promise<string | undefined> }> {
    if (this.broken) throw this.broken;
    let slot = this.slots[this.next]!;
    if (slot.batch.length === 0) {
      // Start a batch on the least busy worker, waiting while all are busy.
      while (true) {
        slot = this.slots.reduce((a, b) => (b.inFlight < a.inFlight ? b : a));
        if (slot.inFlight < MAX_IN_FLIGHT) break;
        await new Promise<void>((r) => this.slotFree.push(r));
        if (this.broken) throw this.broken;
      }
      this.next = this.slots.indexOf(slot);
    }
    const id = this.nextId++;
    const done = new Promise<string | undefined>((resolve) => slot.waiting.set(id, resolve));
    slot.batch.push({ ...job, id });
    slot.batchBytes += job.size;
    if (slot.batch.length >= BATCH_FILES || slot.batchBytes >= BATCH_BYTES) {
      this.send(slot);
    }
    return { done };
  }

  /** Sends every queued file; the promises from write() settle as workers finish. */
  flush(): void {
    for (const s of this.slots) this.send(s);
  }

  async close(): Promise<void> {
    await Promise.all(this.slots.map((s) => s.worker.terminate()));
  }
}
