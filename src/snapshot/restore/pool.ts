/**
 * The main-thread side of the restore's worker threads: regular files are
 * decoded and written by worker.ts with synchronous I/O, in batches, while
 * the main thread walks the tree, creates directories, links and special
 * files, and (from a remote store) fetches the chunks' stored bytes. A
 * batch goes at once to a worker with nothing to do, else when it is full.
 * Restore falls back to the exporter's own path when the worker script is
 * not there (running from TypeScript sources).
 */
import { availableParallelism } from "node:os";
import type { Worker } from "node:worker_threads";
import type { Repository } from "../../repository/repository.js";
import { CofferError } from "../../util/errors.js";
import { fromWorkerError } from "../worker-errors.js";
import { startWorkers, workerScript } from "../workers.js";
import type { FileJob, FileResult, RestoreInit } from "./protocol.js";

interface Slot {
  worker: Worker;
  batch: FileJob[];
  batchBytes: number;
  /** The chunk bytes in `batch`, whose buffers go with it. */
  transfer: ArrayBuffer[];
  inFlight: number;
  waiting: Map<number, (error: Error | undefined) => void>;
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

  /**
   * `n` workers for `repo`, or null when there is no worker `script` (by
   * default the compiled worker.js).
   */
  static async start(repo: Repository, n = Math.max(2, availableParallelism()), script = workerScript("restore/worker.js")): Promise<RestorePool | null> {
    if (!script) return null;
    const init: RestoreInit = { keys: repo.keys, encrypted: repo.config.encryption !== null, compression: repo.config.compression };
    const slots: Slot[] = [];
    const pool = new RestorePool(slots);
    const workers = await startWorkers<FileResult[]>(
      script,
      n,
      () => init,
      (i, out) => pool.onResults(slots[i]!, out),
      (e) => pool.fail(e),
    );
    for (const worker of workers) slots.push({ worker, batch: [], batchBytes: 0, transfer: [], inFlight: 0, waiting: new Map() });
    return pool;
  }

  private fail(e: Error): void {
    this.broken ??= new CofferError("IO", `restore worker failed: ${e.message}`, {}, { cause: e });
    for (const s of this.slots) {
      for (const done of s.waiting.values()) done(this.broken);
      s.waiting.clear();
    }
    for (const f of this.slotFree.splice(0)) f();
  }

  private onResults(slot: Slot, out: FileResult[]): void {
    slot.inFlight--;
    for (const r of out) {
      const done = slot.waiting.get(r.id);
      slot.waiting.delete(r.id);
      done?.(r.error && fromWorkerError(r.error));
    }
    if (slot.inFlight === 0) this.send(slot); // what waited for it
    // Every waiter looks again: one may wait for this worker, another for any.
    for (const f of this.slotFree.splice(0)) f();
  }

  private send(slot: Slot): void {
    if (slot.batch.length === 0) return;
    const batch = slot.batch;
    const transfer = slot.transfer;
    slot.batch = [];
    slot.batchBytes = 0;
    slot.transfer = [];
    slot.inFlight++;
    slot.worker.postMessage(batch, transfer);
  }

  /**
   * Queues a file (or a part of one) once a worker can take it, on worker
   * `pin` when given (the one that took the file's first part), else on
   * the least busy; waits while that worker (or every one) is busy, which
   * holds the caller back. Chunk bytes sent along (ChunkJob.data) are
   * transferred: the caller must not use them again. `done` settles with
   * the job's error (a CorruptError for damaged content, as the worker threw
   * it), or undefined once it is done; `worker` is where it went.
   */
  async write(job: Omit<FileJob, "id">, pin?: number): Promise<{ done: Promise<Error | undefined>; worker: number }> {
    if (this.broken) throw this.broken;
    let slot = this.slots[pin ?? this.next]!;
    if (slot.batch.length === 0) {
      // Start a batch, waiting while the worker (or, not pinned, all of them) is busy.
      while (true) {
        if (pin === undefined) slot = this.slots.reduce((a, b) => (b.inFlight < a.inFlight ? b : a));
        if (slot.inFlight < MAX_IN_FLIGHT || slot.batch.length > 0) break;
        await new Promise<void>((r) => this.slotFree.push(r));
        if (this.broken) throw this.broken;
      }
      if (pin === undefined) this.next = this.slots.indexOf(slot);
    }
    const id = this.nextId++;
    const done = new Promise<Error | undefined>((resolve) => slot.waiting.set(id, resolve));
    slot.batch.push({ ...job, id });
    let sent = 0;
    for (const c of job.chunks) {
      if (!c.data) continue;
      slot.transfer.push(c.data.buffer as ArrayBuffer);
      sent += c.data.byteLength;
    }
    // A job weighs the bytes sent with it, or (read by the worker) its file's size.
    slot.batchBytes += job.chunks.some((c) => c.data) ? sent : job.size;
    if (slot.inFlight === 0 || slot.batch.length >= BATCH_FILES || slot.batchBytes >= BATCH_BYTES) {
      this.send(slot);
    }
    return { done, worker: this.slots.indexOf(slot) };
  }

  /** A number naming a file sent in parts (FilePart.file), unique in this pool. */
  fileNumber(): number {
    return this.nextId++;
  }

  /** Sends every queued file; the promises from write() settle as workers finish. */
  flush(): void {
    for (const s of this.slots) this.send(s);
  }

  async close(): Promise<void> {
    await Promise.all(this.slots.map((s) => s.worker.terminate()));
  }
}
