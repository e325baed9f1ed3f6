/**
 * A Store decorator (test/helpers/faults.ts) that counts packfile reads and
 * how many are in flight at once, each answered a few turns of the event
 * loop late (setImmediate: no clock), so that reads issued together are in
 * flight together. It tells the parallelism it was given (Store.connections).
 */
import { Resource } from "../../src/connectors/flags.js";
import type { Store } from "../../src/connectors/store.js";
import { type Call, DecoratedStore } from "./faults.js";

export class CountingStore extends DecoratedStore {
  readonly connections: number | undefined;
  /** Ranged packfile reads started, with their ranges. */
  readonly reads: { mac: string; offset: number; length: number }[] = [];
  /** Bytes of packfile reads started. */
  bytesAsked = 0;
  inFlight = 0;
  maxInFlight = 0;
  private readonly turns: number;

  constructor(
    inner: Store,
    o: { connections?: number; turns?: number } = {},
  ) {
    super(inner);
    this.connections = o.connections;
    this.turns = o.turns ?? 3;
  }

  protected override async run<T>(c: Call, next: () => Promise<T>): Promise<T> {
    if (c.op !== "get" || c.resource !== Resource.PACKFILE) return next();
    this.reads.push({ mac: c.mac!, offset: c.range?.offset ?? 0, length: c.range?.length ?? -1 });
    this.bytesAsked += c.range?.length ?? 0;
    this.inFlight++;
    this.maxInFlight = Math.max(this.maxInFlight, this.inFlight);
    try {
      for (let i = 0; i < this.turns; i++) await new Promise((r) => setImmediate(r));
      return await next();
    } finally {
      this.inFlight--;
    }
  }
}
