/**
 * An import started before the repository is open. Opening it costs a
 * no-change backup a quarter of its time, most of it the key derivation on
 * the libuv pool with the main thread idle: the importer walks meanwhile,
 * into a bounded buffer, until backup() takes the import over.
 */
import { LocationFlag } from "../connectors/flags.js";
import type { Importer, ImportRecord, ImportResult } from "../connectors/records.js";
import { Channel } from "../util/channel.js";

/** Records buffered at most before backup() takes over (/usr/share's walk yields ~15,000 during a 0.2 s key derivation). */
export const EARLY_RECORDS = 16384;

/** Records between turns of the event loop while buffering. */
const YIELD_EVERY = 64;

export class EarlyImport {
  /** The importer's results (see ImportOptions.results); backup() answers on it. */
  readonly results: Channel<ImportResult>;
  private readonly stop = new AbortController();
  private readonly it: AsyncIterator<ImportRecord>;
  private readonly buffered: ImportRecord[] = [];
  private head = 0;
  private done = false;
  private failure: { e: unknown } | null = null;
  private taken = false;
  /** The record the buffering waits for; the caller's once taken (see take()). */
  private inflight: Promise<IteratorResult<ImportRecord>> | null = null;

  constructor(
    readonly importer: Importer,
    signal?: AbortSignal,
    private readonly limit = EARLY_RECORDS,
  ) {
    // One answer per record; an importer that does not read them does not keep them.
    this.results = new Channel<ImportResult>((importer.flags & LocationFlag.NEEDACK) === 0);
    const sig = signal ? AbortSignal.any([signal, this.stop.signal]) : this.stop.signal;
    this.it = importer.import({ signal: sig, results: this.results, xattrRecords: true })[Symbol.asyncIterator]();
    void this.pump();
  }

  private async pump(): Promise<void> {
    while (!this.taken && this.buffered.length < this.limit) {
      const p = this.it.next();
      this.inflight = p;
      let n: IteratorResult<ImportRecord>;
      try {
        n = await p;
      } catch (e) {
        if (this.inflight === p) {
          this.inflight = null;
          this.failure = { e };
        }
        return;
      }
      if (this.inflight !== p) return; // taken over, with this record
      this.inflight = null;
      if (n.done) {
        this.done = true;
        return;
      }
      this.buffered.push(n.value);
      // A walk's records come as microtasks, which the event loop waits
      // for: the repository's own reads and key derivation go first.
      if (this.buffered.length % YIELD_EVERY === 0) await new Promise(setImmediate);
    }
  }

  /** Stops the importer (backup() aborts it this way when it fails). */
  abort(): void {
    this.stop.abort();
  }

  /**
   * The import from its first record: those buffered, then the importer's
   * own. The buffering stops. It does not wait for the record the buffering
   * asked for: a source read in sequence (a tar stream) gives its next
   * record only once the last one's content is read, which the caller does.
   */
  take(): AsyncIterator<ImportRecord> {
    if (this.taken) throw new Error("early import taken twice");
    this.taken = true;
    return {
      next: () => {
        if (this.head < this.buffered.length) {
          const value = this.buffered[this.head]!;
          this.buffered[this.head++] = undefined as unknown as ImportRecord; // let it go
          if (this.head === this.buffered.length) this.buffered.length = this.head = 0;
          return Promise.resolve({ value, done: false });
        }
        const p = this.inflight;
        if (p) {
          this.inflight = null;
          return p;
        }
        if (this.failure) return Promise.reject(this.failure.e);
        if (this.done) return Promise.resolve({ value: undefined, done: true });
        return this.it.next();
      },
      return: async () => {
        await this.it.return?.();
        return { value: undefined, done: true };
      },
    };
  }

  /**
   * For an import never taken (the repository did not open): stops the
   * importer and ends its results. Waits for neither: a source read in
   * sequence may wait for content nobody will read (the importer's close()
   * ends it).
   */
  cancel(): void {
    if (this.taken) return;
    this.taken = true;
    this.inflight = null;
    this.stop.abort();
    this.it.return?.().catch(() => {});
    this.results.end();
  }
}
