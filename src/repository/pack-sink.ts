/**
 * A packfile written to its store while it is filled (Store.stage): encoded
 * blobs go to the store in order as they come, with the packfile's MAC
 * computed over them on the way, so the writer holds only what is not
 * written yet instead of the whole packfile (32 MiB, and as much again for
 * each packfile being stored). The store makes it visible under its name
 * (the MAC) only at commit().
 */
import { Resource } from "../connectors/flags.js";
import type { StagedPut, Store } from "../connectors/store.js";
import type { Mac, MacStream } from "./crypto.js";
import { Collector } from "../util/gc.js";
import { giveBack, isLent } from "../util/ring.js";

/**
 * Bytes handed to the store in one write (writev of the parts): at least
 * MIN_WRITE until the packfile is finished, at most WRITE_BATCH. A write per
 * few blobs cost this thread too much in all; a minimum of 1 MiB held more
 * memory at the peak (docs/PERFORMANCE.md).
 */
const MIN_WRITE = 256 << 10;
const WRITE_BATCH = 4 << 20;
/**
 * A full collection after every 32 MiB written (of buffers not lent: those
 * go back to their ring). The parts are mostly blobs
 * encoded by the chunk workers, in their malloc arenas; their wrappers on
 * this thread often live long enough to be promoted, and V8 then frees them
 * only at its next full collection, tens of MiB later. Collecting here
 * lowers peak RSS at no measurable cost in time (docs/PERFORMANCE.md).
 */
const collector = new Collector(32 << 20, "major");

export class StagedPack {
  private queue: Uint8Array[] = [];
  private queued = 0;
  private pump: Promise<void> | null = null;
  private failure: { e: unknown } | null = null;
  /** Set once the rest must be written however little it is (drain below MIN_WRITE, finish, commit). */
  private flushing = false;
  private waiters: (() => void)[] = [];
  private readonly macs: MacStream;
  private readonly staged: Promise<StagedPut>;

  /** `direct`: the store's hint to bypass its cache (StageOptions). */
  constructor(store: Store & Required<Pick<Store, "stage">>, mac: Mac, signal?: AbortSignal, direct = false) {
    this.macs = mac.stream();
    this.staged = store.stage(Resource.PACKFILE, { signal, direct });
    this.staged.catch((e: unknown) => this.fail(e));
  }

  /** Bytes pushed and not written yet. */
  get pending(): number {
    return this.queued;
  }

  /** Whether a write failed (drain() and finish() then reject with its error). */
  get failed(): boolean {
    return this.failure !== null;
  }

  /** Queues `part` (the packfile's next bytes); it is written in the background. A lent part (util/ring.ts) is given back once written. */
  push(part: Uint8Array): void {
    if (this.failure) return giveBack(part);
    this.queue.push(part);
    this.queued += part.byteLength;
    if (this.queued >= MIN_WRITE || this.flushing) this.pump ??= this.run();
  }

  private async run(): Promise<void> {
    try {
      const s = await this.staged;
      while (this.queue.length > 0 && !this.failure && (this.queued >= MIN_WRITE || this.flushing)) {
        let n = 0;
        let k = 0;
        while (k < this.queue.length && (k === 0 || n < WRITE_BATCH)) n += this.queue[k++]!.byteLength;
        const batch = this.queue.splice(0, k);
        let garbage = 0; // bytes of buffers of their own, left to the collector (lent ones are given back)
        for (const p of batch) if (!isLent(p)) garbage += p.byteLength;
        try {
          this.macs.update(batch);
          await s.write(batch);
        } finally {
          for (const p of batch) giveBack(p);
        }
        this.queued -= n;
        collector.after(garbage);
        this.wake();
      }
    } catch (e) {
      this.fail(e);
    } finally {
      this.pump = null;
      this.wake();
    }
  }

  private fail(e: unknown): void {
    this.failure ??= { e };
    for (const p of this.queue) giveBack(p);
    this.queue = [];
    this.queued = 0;
    this.wake();
  }

  private wake(): void {
    const w = this.waiters;
    this.waiters = [];
    for (const f of w) f();
  }

  /** Resolves once at most `limit` bytes wait to be written; rejects if a write failed. */
  async drain(limit: number): Promise<void> {
    if (limit < MIN_WRITE) this.flushing = true;
    while (!this.failure && this.queued > limit) {
      this.pump ??= this.run();
      await new Promise<void>((r) => this.waiters.push(r));
    }
    if (this.failure) throw this.failure.e;
  }

  /** Waits until every part is written; their MAC (the packfile's name). */
  async finish(): Promise<Uint8Array> {
    await this.drain(0);
    return this.macs.digest();
  }

  /** Makes the packfile visible as `mac`; returns its size. */
  async commit(mac: Uint8Array, signal?: AbortSignal): Promise<number> {
    await this.drain(0);
    return (await this.staged).commit(mac, { signal });
  }

  /** Drops the packfile (what was written is removed); no-op after commit(). */
  async abort(): Promise<void> {
    this.fail(new Error("packfile abandoned"));
    await this.pump;
    const s = await this.staged.catch(() => null);
    await s?.abort();
  }
}
