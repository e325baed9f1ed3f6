/** Bounded concurrency helpers. */

/** Runs `fn` over `items` with at most `limit` calls in flight. */
export async function mapLimit<T, R>(items: readonly T[], limit: number, fn: (item: T, i: number) => Promise<R>): Promise<R[]> {
  const out = new Array<R>(items.length);
  let next = 0;
  const worker = async () => {
    while (next < items.length) {
      const i = next++;
      out[i] = await fn(items[i]!, i);
    }
  };
  await Promise.all(Array.from({ length: Math.min(limit, items.length) }, worker));
  return out;
}

/**
 * At most `limit` promises in flight, awaited oldest first. Each is marked
 * handled as it enters, so one that fails while the caller awaits something
 * else (the next chunk of a file) is not an unhandled rejection: its error
 * reaches the caller at a later add() or at drain().
 */
export class InFlight {
  private readonly queue: Promise<unknown>[] = [];
  private readonly limit: number;

  // A plain field, not a parameter property: util is also loaded by Node's type stripping (test writers of the ptar store).
  constructor(limit: number) {
    this.limit = limit;
  }

  /** Adds `p`; when the window is full, waits for the oldest promise. */
  async add(p: Promise<unknown>): Promise<void> {
    p.catch(() => {});
    this.queue.push(p);
    if (this.queue.length >= this.limit) await this.queue.shift();
  }

  /** Waits for every promise in the window; rejects with the first failure. */
  async drain(): Promise<void> {
    const all = this.queue.splice(0);
    await Promise.all(all);
  }
}
