/**
 * Checkpoints and the answers to the importer's records. A checkpoint
 * commits a partial snapshot of every entry stored so far, when its policy
 * says it is due; a NEEDACK importer's records are answered only once a
 * committed snapshot holds them (at the next checkpoint, or the final
 * commit), other records at once.
 */
import { LocationFlag } from "../../connectors/flags.js";
import type { ImportRecord, ImportResult } from "../../connectors/records.js";
import { Channel } from "../../util/channel.js";
import type { Entry } from "../tree.js";
import type { ScanCache } from "./scancache.js";
import type { Tally } from "./tally.js";
import type { TreeSaver } from "./tree-saver.js";

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

/** The default policy for an importer and a store, by their flags (LocationFlag). */
export function defaultCheckpoints(importerFlags: number, storeFlags: number): CheckpointPolicy {
  if ((importerFlags & LocationFlag.NEEDACK) === 0) return DEFAULT_CHECKPOINTS;
  return (storeFlags & LocationFlag.FILE) !== 0 ? NEEDACK_FILE_STORE_CHECKPOINTS : NEEDACK_CHECKPOINTS;
}

export interface CheckpointerOptions {
  policy: CheckpointPolicy;
  /** Ok answers wait for a committed snapshot (a NEEDACK importer). */
  needAck: boolean;
  cache: ScanCache;
  trees: TreeSaver;
  /** Counts the bytes read (readBytes), and reports checkpoints. */
  tally: Tally;
  /** The run's signal: no checkpoint starts once it is aborted. */
  signal: AbortSignal;
  /** The caller's signal only: a checkpoint that has started finishes when the run fails. */
  writeSignal: AbortSignal | undefined;
}

export class Checkpointer {
  /** One answer per record; an importer that does not read them does not keep them. */
  readonly results: Channel<ImportResult>;
  /** Whether the scan cache holds entries no checkpoint has. */
  dirty = false;
  /** The first checkpoint's failure: the run stops on it. */
  error: unknown = null;
  private readonly o: CheckpointerOptions;
  /** Records stored in the scan cache, answered at the next checkpoint (NEEDACK). */
  private toAck: ImportRecord[] = [];
  private count = 0;
  private lastAt = Date.now();
  private readAt = 0;
  private running: Promise<void> | null = null;
  private timer: NodeJS.Timeout | undefined;

  constructor(o: CheckpointerOptions) {
    this.o = o;
    this.results = new Channel<ImportResult>(!o.needAck);
  }

  /** Starts the timer that gives slow sources their checkpoints (and their acks) on time. */
  start(): void {
    const { intervalMs } = this.o.policy;
    if (intervalMs <= 0 || this.timer) return;
    this.timer = setInterval(() => this.maybe(), Math.min(intervalMs, 1000));
    this.timer.unref();
  }

  /** A record stored in the scan cache: answered at once, or (NEEDACK) once a committed snapshot holds it. */
  stored(r: ImportRecord): void {
    this.dirty = true;
    if (this.o.needAck) this.toAck.push(r);
    else this.results.push({ record: r });
  }

  /** A record not stored (or stored as failed): answered at once with `error`. */
  failed(r: ImportRecord, error: string): void {
    this.results.push({ record: r, error });
  }

  /** Starts a checkpoint if one is due and none is committing. */
  maybe(): void {
    if (this.running || !this.dirty || this.o.signal.aborted) return;
    const { intervalMs, bytes } = this.o.policy;
    const read = this.o.tally.summary.readBytes;
    const due = (intervalMs > 0 && Date.now() - this.lastAt >= intervalMs) || (bytes > 0 && read - this.readAt >= bytes);
    if (!due) return;
    this.running = this.checkpoint()
      .catch((e: unknown) => {
        this.error ??= e;
      })
      .finally(() => (this.running = null));
  }

  /** Throws the failure of a checkpoint, if one failed. */
  throwIfFailed(): void {
    if (this.error) throw this.error;
  }

  /** Stops the timer, waits for a checkpoint under way, and throws its failure. */
  async settle(): Promise<void> {
    this.stopTimer();
    while (this.running) await this.running;
    this.throwIfFailed();
  }

  /** Answers every record still waiting for an ack: the final snapshot, which holds them, is committed. */
  ackAll(): void {
    for (const r of this.toAck.splice(0)) this.results.push({ record: r });
  }

  /**
   * Ends the answers. A checkpoint under way when the run fails still
   * commits: it is let finish, so that the records it holds are answered
   * before the results end.
   */
  async close(): Promise<void> {
    this.stopTimer();
    await this.running?.catch(() => {});
    this.results.end();
  }

  private stopTimer(): void {
    clearInterval(this.timer);
  }

  /**
   * Commits a partial snapshot of every entry in the scan cache, then
   * answers the NEEDACK records it covers. Entries finished meanwhile wait
   * (the cache is frozen) for the next one.
   */
  private async checkpoint(): Promise<void> {
    const { cache, trees, tally, writeSignal } = this.o;
    const acks = this.toAck;
    this.toAck = [];
    this.dirty = false;
    this.lastAt = Date.now();
    this.readAt = tally.summary.readBytes;
    cache.freeze();
    let root: Entry;
    try {
      root = await trees.build(writeSignal);
    } finally {
      cache.thaw();
    }
    const h = await trees.commit(root, ++this.count, writeSignal);
    for (const r of acks) this.results.push({ record: r });
    tally.checkpointed(h.id, h.checkpoint!);
  }
}
