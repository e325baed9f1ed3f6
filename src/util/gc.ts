/**
 * Garbage collections asked of V8 after so many bytes of buffers are done
 * with. Buffers live outside the V8 heap, which counts them only loosely:
 * left to itself it lets a thread hold tens of MiB of dead ones (and glibc
 * keeps their arenas' pages). A no-op unless Node runs with --expose-gc (the
 * launcher, bin/coffer.js, sets it).
 */
type Gc = (o?: { type: "minor" | "major" }) => void;

export class Collector {
  private since = 0;

  /** `type`: "minor" frees buffers whose wrappers die young; "major" also those that lived long enough to be promoted. */
  constructor(
    private readonly every: number,
    private readonly type: "minor" | "major",
  ) {}

  /** Counts `bytes` done with; collects once `every` bytes are. */
  after(bytes: number): void {
    this.since += bytes;
    if (this.since < this.every) return;
    this.since = 0;
    (globalThis as { gc?: Gc }).gc?.({ type: this.type });
  }
}
