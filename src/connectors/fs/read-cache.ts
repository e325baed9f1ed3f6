/**
 * The fs store's open read handles, most recently used last: objects are
 * immutable once stored, so a restore's many ranged reads of one packfile
 * share a handle. A handle evicted while a read uses it closes when that
 * read ends.
 */
import { constants as fsConstants, promises as fsp } from "node:fs";
import type { FileHandle } from "node:fs/promises";

/** Read handles kept open. */
const MAX_READERS = 32;

export interface CachedReader {
  fh: FileHandle;
  size: number;
  users: number;
  evicted: boolean;
}

export class ReadCache {
  readonly #readers = new Map<string, Promise<CachedReader>>();

  /** An open handle of `file`, opened unless cached, for one read: give it back with release(). Fails as open() does. */
  async acquire(file: string): Promise<CachedReader> {
    const r = await this.#reader(file);
    r.users++;
    return r;
  }

  /** Ends a read of `r`; closes its handle when it was evicted meanwhile. */
  async release(r: CachedReader): Promise<void> {
    r.users--;
    if (r.evicted && r.users === 0) await r.fh.close().catch(() => undefined);
  }

  /** Forgets the handle of `file` (closed now, or when its last read ends). */
  evict(file: string): Promise<void> {
    const p = this.#readers.get(file);
    if (!p) return Promise.resolve();
    this.#readers.delete(file);
    return p.then(
      async (r) => {
        r.evicted = true;
        if (r.users === 0) await r.fh.close().catch(() => undefined);
      },
      () => undefined,
    );
  }

  /** Evicts every handle. */
  async close(): Promise<void> {
    await Promise.all([...this.#readers.keys()].map((f) => this.evict(f)));
  }

  async #reader(file: string): Promise<CachedReader> {
    const hit = this.#readers.get(file);
    if (hit) {
      this.#readers.delete(file);
      this.#readers.set(file, hit);
      return hit;
    }
    const p = (async () => {
      const fh = await fsp.open(file, fsConstants.O_RDONLY);
      try {
        return { fh, size: (await fh.stat()).size, users: 0, evicted: false };
      } catch (e) {
        await fh.close().catch(() => undefined);
        throw e;
      }
    })();
    this.#readers.set(file, p);
    p.catch(() => this.#readers.delete(file));
    while (this.#readers.size > MAX_READERS) void this.evict(this.#readers.keys().next().value!);
    return p;
  }
}
