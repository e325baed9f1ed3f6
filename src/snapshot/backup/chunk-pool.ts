/**
 * The main-thread side of the backup pipeline's worker threads: hands local
 * files to chunk workers (chunk-worker.ts), receives their encoded chunks in
 * order, and passes them on. One file is read by one worker; several files
 * are in flight at once across the workers. A large file's chunks come raw
 * (the caller skips those the repository has) and go back out as encode
 * jobs to a worker that is not reading a large file, so that one big file
 * keeps every core busy.
 */
import { availableParallelism } from "node:os";
import type { Worker } from "node:worker_threads";
import type { ChunkingParams } from "../../repository/chunker.js";
import type { Compression } from "../../repository/codec.js";
import type { MacAlgorithm, Subkeys } from "../../repository/crypto.js";
import type { Repository } from "../../repository/repository.js";
import { CofferError } from "../../util/errors.js";
import { giveBack, lend, RingReceiver } from "../../util/ring.js";
import { startWorkers, workerScript } from "../workers.js";

export interface PoolInit {
  keys: Subkeys;
  chunking: ChunkingParams;
  mac: MacAlgorithm;
  compression: Compression;
  encrypted: boolean;
  /** SharedArrayBuffer holding one Int32: bytes posted and not yet consumed. */
  credit: SharedArrayBuffer;
  creditLimit: number;
  /** SharedArrayBuffer holding one Int32, shared by all workers: bytes of raw chunks sent to encode and not yet answered. */
  backlog: SharedArrayBuffer;
  /** A reading worker encodes a large file's chunks itself while the backlog is over this. */
  backlogLimit: number;
  /** Files from this size on are large: their chunks are sent raw. */
  rawFrom: number;
  /** Int32 counts of buffers given back to this worker's rings (util/ring.ts): raw chunks, encoded chunks. */
  rawGiven: SharedArrayBuffer;
  sealedGiven: SharedArrayBuffer;
}

/** Worker messages are arrays of these, both ways. */
/**
 * read: `size` is what the walk saw (the worker reads what is there).
 * encode: a large file's raw chunk, sent to a worker that is not reading one.
 * chunk, encoded: `seq` is set when `data` is lent from one of the sender's
 * rings (a raw chunk's from its raw ring, an encoded one's from its sealed
 * ring), to be given back once done with.
 */
export type ToWorker = { type: "read"; id: number; path: string; size: number } | { type: "encode"; id: number; mac: Uint8Array; data: Uint8Array };
export type ToMain =
  | { type: "ready" }
  | { type: "chunk"; id: number; mac: Uint8Array; length: number; data: Uint8Array; raw: boolean; seq?: number | undefined }
  | { type: "done"; id: number; size: number }
  | { type: "encoded"; id: number; data: Uint8Array; seq?: number | undefined }
  | { type: "error"; id: number; message: string };

/**
 * A chunk from a worker: encoded, or (from a large file) its raw bytes for
 * the caller to encode. `data` may be lent (util/ring.ts): the caller gives
 * it back (giveBack) once done with it, or passes it on to what does
 * (Repository.addEncoded, ChunkPool.encode).
 */
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

interface Encode {
  /** The raw chunk (given back once answered). */
  data: Uint8Array;
  bytes: number;
  resolve: (encoded: Uint8Array) => void;
  reject: (e: Error) => void;
}

interface Slot {
  worker: Worker;
  credit: Int32Array;
  jobs: number;
  /** Files of this worker that are sending raw chunks (it reads them in one synchronous loop: no encode jobs for it meanwhile). */
  rawFiles: Set<number>;
  /** Encode jobs sent and not answered. */
  encodes: number;
  /** Requests not yet sent (sent together on the next turn of the event loop). */
  outbox: ToWorker[];
  rawRing: RingReceiver;
  sealedRing: RingReceiver;
}

const CREDIT_LIMIT = 8 << 20;
const BACKLOG_LIMIT = 6 << 20;
const RAW_FROM = 32 << 20;

export class ChunkPool {
  private readonly jobs = new Map<number, Job>();
  private readonly encodes = new Map<number, Encode>();
  private nextId = 1;
  private broken: Error | null = null;

  private constructor(
    private readonly slots: Slot[],
    private readonly backlog: Int32Array,
  ) {}

  /** Starts `n` workers, or returns null when the compiled worker script is not there (e.g. running from TypeScript sources). */
  static async start(repo: Repository, n = Math.max(1, availableParallelism())): Promise<ChunkPool | null> {
    const url = workerScript("backup/chunk-worker.js");
    if (!url) return null;
    const credits = Array.from({ length: n }, () => new SharedArrayBuffer(4));
    const rings = Array.from({ length: n }, () => ({ raw: new SharedArrayBuffer(4), sealed: new SharedArrayBuffer(4) }));
    const slots: Slot[] = [];
    const backlog = new SharedArrayBuffer(4);
    const pool = new ChunkPool(slots, new Int32Array(backlog));
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
        backlog,
        backlogLimit: BACKLOG_LIMIT,
        rawFrom: RAW_FROM,
        rawGiven: rings[i]!.raw,
        sealedGiven: rings[i]!.sealed,
      }),
      (i, batch) => {
        for (const m of batch) pool.onMessage(slots[i]!, m);
      },
      (e) => pool.fail(e),
    );
    workers.forEach((worker, i) =>
      slots.push({
        worker,
        credit: new Int32Array(credits[i]!),
        jobs: 0,
        rawFiles: new Set(),
        encodes: 0,
        outbox: [],
        rawRing: new RingReceiver(rings[i]!.raw),
        sealedRing: new RingReceiver(rings[i]!.sealed),
      }),
    );
    return pool;
  }

  private fail(e: Error): void {
    this.broken ??= new CofferError("IO", `backup worker failed: ${e.message}`);
    for (const j of this.jobs.values()) j.reject(this.broken);
    this.jobs.clear();
    for (const e of this.encodes.values()) e.reject(this.broken);
    this.encodes.clear();
  }

  private onMessage(slot: Slot, m: ToMain): void {
    if (m.type === "ready") return;
    const enc = this.encodes.get(m.id);
    if (enc) {
      this.encodes.delete(m.id);
      slot.encodes--;
      Atomics.sub(this.backlog, 0, enc.bytes);
      giveBack(enc.data); // the encoder is done with it
      if (m.type === "encoded") {
        const seq = m.seq;
        if (seq !== undefined) lend(m.data, () => slot.sealedRing.giveBack(seq));
        enc.resolve(m.data);
      } else if (m.type === "error") enc.reject(new CofferError("IO", m.message));
      else enc.reject(new CofferError("IO", `unexpected ${m.type} answer to an encode job`));
      return;
    }
    const job = this.jobs.get(m.id);
    if (m.type === "chunk") {
      if (m.raw) slot.rawFiles.add(m.id);
      const seq = m.seq;
      if (seq !== undefined) lend(m.data, () => (m.raw ? slot.rawRing : slot.sealedRing).giveBack(seq));
      const bytes = m.data.byteLength; // read now: a raw chunk's buffer is transferred on to an encoding worker
      const release = () => {
        Atomics.sub(slot.credit, 0, bytes);
        Atomics.notify(slot.credit, 0);
      };
      if (!job) {
        giveBack(m.data);
        return release();
      }
      job.tail = job.tail.then(async () => {
        try {
          if (job.failed) giveBack(m.data);
          else await job.onChunk({ mac: m.mac, length: m.length, data: m.data, raw: m.raw });
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
    slot.rawFiles.delete(m.id);
    if (m.type === "done") {
      void job.tail.then(() => (job.failed ? job.reject(job.failed) : job.resolve(m.size)));
    } else {
      const message = m.type === "error" ? m.message : `unexpected ${m.type} answer to a read job`;
      void job.tail.then(() => job.reject(job.failed ?? new CofferError("IO", message)));
    }
  }

  /** Reads, chunks and encodes the file at `path`; `onChunk` receives every chunk in order. Resolves to the file's size. */
  readFile(path: string, size: number, onChunk: (c: WorkerChunk) => Promise<void>): Promise<number> {
    if (this.broken) return Promise.reject(this.broken);
    let slot = this.slots[0]!;
    for (const s of this.slots) if (s.jobs < slot.jobs) slot = s;
    const id = this.nextId++;
    slot.jobs++;
    // Marked from now on (also when a chunk comes raw: the file grew): a worker
    // reads a large file in one loop and takes no encode job until it is done.
    if (size >= RAW_FROM) slot.rawFiles.add(id);
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

  /**
   * Encodes a large file's raw chunk on a worker that is not reading a large
   * file itself (the reader's thread only reads, cuts and MACs), or gives
   * null when every worker is (the caller encodes it). `data` is shared
   * memory (lent: given back once the worker is done with it) or a buffer
   * of its own (transferred). The result may be lent.
   */
  encode(mac: Uint8Array, data: Uint8Array): Promise<Uint8Array> | null {
    if (this.broken) return Promise.reject(this.broken);
    let slot: Slot | undefined;
    for (const s of this.slots) if (s.rawFiles.size === 0 && (!slot || s.encodes < slot.encodes)) slot = s;
    const shared = data.buffer instanceof SharedArrayBuffer;
    if (!slot || (!shared && (data.byteOffset !== 0 || data.byteLength !== data.buffer.byteLength))) return null;
    const id = this.nextId++;
    slot.encodes++;
    const s = slot;
    const bytes = data.byteLength;
    Atomics.add(this.backlog, 0, bytes);
    return new Promise<Uint8Array>((resolve, reject) => {
      this.encodes.set(id, { data, bytes, resolve, reject });
      s.worker.postMessage([{ type: "encode", id, mac, data }], shared ? [] : [data.buffer as ArrayBuffer]);
    });
  }

  async close(): Promise<void> {
    await Promise.all(this.slots.map((s) => s.worker.terminate()));
  }
}
