/**
 * The main-thread side of the restore's worker threads: regular files
 * whose chunks sit in a local store are written by worker.ts with
 * synchronous I/O, in batches, while the main thread walks the tree and
 * creates directories, links and special files. Restore falls back to the
 * exporter's own path when the store is not local or the worker script is
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
   * `n` workers for `repo`, or null when its store keeps no local files or
   * there is no worker `script` (by default the compiled worker.js).
   */
  static async start(repo: Repository, n = Math.max(2, availableParallelism()), script = workerScript("restore/worker.js")): Promise<RestorePool | null> {
    if (!script || !repo.store.localPath) return null;
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
    for (const worker of workers) slots.push({ worker, batch: [], batchBytes: 0, inFlight: 0, waiting: new Map() });
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
   * file's error (a CorruptError for damaged content, as the worker threw
   * it), or undefined once it is written.
   */
  async write(job: Omit<FileJob, "id">): Promise<{ done: Promise<Error | undefined> }> {
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
    const done = new Promise<Error | undefined>((resolve) => slot.waiting.set(id, resolve));
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
