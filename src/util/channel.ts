/**
 * An unbounded single-consumer queue presented as an AsyncIterable: push()
 * never waits, end() finishes the iteration once what is queued is taken.
 * With `dropUntilIterated`, values pushed before anyone iterates are
 * dropped (a consumer that never reads costs nothing).
 */
export class Channel<T> implements AsyncIterable<T> {
  private readonly queue: T[] = [];
  private readonly waiting: ((r: IteratorResult<T>) => void)[] = [];
  private ended = false;
  private iterated = false;

  constructor(private readonly dropUntilIterated = false) {}

  push(value: T): void {
    if (this.ended || (this.dropUntilIterated && !this.iterated)) return;
    const w = this.waiting.shift();
    if (w) w({ value, done: false });
    else this.queue.push(value);
  }

  end(): void {
    this.ended = true;
    for (const w of this.waiting.splice(0)) w({ value: undefined, done: true });
  }

  [Symbol.asyncIterator](): AsyncIterator<T> {
    this.iterated = true;
    return {
      next: () => {
        if (this.queue.length > 0) return Promise.resolve({ value: this.queue.shift()!, done: false });
        if (this.ended) return Promise.resolve({ value: undefined, done: true });
        return new Promise((resolve) => this.waiting.push(resolve));
      },
      return: () => {
        this.queue.length = 0;
        this.end();
        return Promise.resolve({ value: undefined, done: true });
      },
    };
  }
}
