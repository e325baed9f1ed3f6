/**
 * Planned batch reads of blobs, for restore's file content: callers say
 * which blobs they will take, in the order they will take them (want()),
 * then take them one by one. The reader fetches them with few large ranged
 * reads (read-plan.ts), the store's `connections` of them in flight, and
 * holds at most `budget` bytes of read data that no taker has taken yet
 * (one blob beyond it only when the oldest blob wanted does not fit alone).
 * Each blob is still authenticated and decoded on its own when taken; a
 * merged read that fails is retried blob by blob, so that one bad range
 * fails only the blobs in it.
 */
import { Resource } from "../connectors/flags.js";
import type { Store } from "../connectors/store.js";
import { CorruptError, throwIfAborted } from "../util/errors.js";
import { toHex } from "../util/hex.js";
import type { BlobType } from "./codec.js";
import { type BlobSpan, MAX_READ, planReads, type PlannedRead } from "./read-plan.js";
import type { Repository } from "./repository.js";
import { type BlobLocation, blobKey } from "./state.js";

/** Bytes of read data a restore holds for blobs not yet taken. */
const READ_BUDGET = 32 << 20;
/** Reads in flight on a store that does not tell (Store.connections). */
const DEFAULT_CONNECTIONS = 4;
/** Wanted blobs planned at once (a window of small files stays cheap to plan). */
const MAX_WINDOW = 16384;

/** How many reads to keep in flight on `store`: its own figure, else `fallback`. */
export function parallelReads(store: Pick<Store, "connections">, fallback = DEFAULT_CONNECTIONS): number {
  return Math.max(1, Math.floor(store.connections ?? fallback));
}

export interface BlobReaderOptions {
  /** Bytes of read data held for blobs not yet taken (default READ_BUDGET). */
  budget?: number | undefined;
  /** Reads in flight (default: the store's, parallelReads()). */
  parallelism?: number | undefined;
  /** Bytes of one merged read (default read-plan.ts MAX_READ). */
  maxRead?: number | undefined;
  signal?: AbortSignal | undefined;
}

/** One ranged read and how many of its blobs are still to be taken. */
interface Read {
  offset: number;
  length: number;
  bytes: Promise<Uint8Array>;
  live: number;
}

/** A blob of a read, shared by every want of it until the last is taken. */
interface Slot {
  key: string;
  loc: BlobLocation;
  read: Read;
  users: number;
}

/** One blob one taker will take, in the order of want() calls. */
interface Want {
  /** Its place among the wants (set when planned). */
  seq: number;
  type: BlobType;
  mac: Uint8Array;
  key: string;
  loc: BlobLocation | undefined;
  /** Why it cannot be read (not indexed, recorded as damaged): thrown at its turn. */
  error: unknown;
  slot: Slot | undefined;
  /** Its taker waits for it. */
  demanded: boolean;
  done: boolean;
  wake: (() => void) | undefined;
}

/** What counters a reader keeps (for tests and reports). */
export interface BlobReaderStats {
  reads: number;
  bytesRead: number;
  /** The most bytes held at once (reads in flight included). */
  peakHeld: number;
}

export class BlobReader {
  private readonly budget: number;
  private readonly parallelism: number;
  private readonly maxRead: number;
  private readonly signal: AbortSignal | undefined;
  /** Wants in order; those before `head` are all scheduled or done. */
  private wants: Want[] = [];
  private head = 0;
  private readonly slots = new Map<string, Slot>();
  private held = 0;
  private inFlight = 0;
  private ended = false;
  private pumpQueued = false;
  private readonly waiting = new Set<Want>();
  readonly stats: BlobReaderStats = { reads: 0, bytesRead: 0, peakHeld: 0 };

  constructor(
    private readonly repo: Repository,
    o: BlobReaderOptions = {},
  ) {
    this.budget = o.budget ?? READ_BUDGET;
    this.parallelism = o.parallelism ?? parallelReads(repo.store);
    this.maxRead = o.maxRead ?? MAX_READ;
    this.signal = o.signal;
  }

  /** Bytes of read data held now (reads in flight included). */
  get heldBytes(): number {
    return this.held;
  }

  /** Registers blobs one taker will take, in this order. */
  want(type: BlobType, macs: readonly Uint8Array[]): WantedBlobs {
    const wants = macs.map((mac): Want => {
      const w: Want = { seq: 0, type, mac, key: blobKey(type, mac), loc: undefined, error: undefined, slot: undefined, demanded: false, done: false, wake: undefined };
      try {
        w.loc = this.repo.locate(type, mac);
      } catch (e) {
        w.error = e;
        return w;
      }
      const slot = this.slots.get(w.key);
      if (slot) this.attach(w, slot);
      return w;
    });
    for (const w of wants) this.wants.push(w); // a huge file's chunks are too many to spread as arguments
    this.schedulePump();
    return new WantedBlobs(this, wants);
  }

  /** No more wants will come: what is wanted is read without waiting for more to merge with. */
  end(): void {
    this.ended = true;
    this.schedulePump();
  }

  /** The decoded blob of `w`, once its read is in. */
  async take(w: Want): Promise<Uint8Array> {
    const s = await this.takeStored(w, false);
    const out = await this.repo.decodeBlob(w.type, w.mac, s.loc, s.bytes);
    // A blob stored as it is decodes to a view of the read: a copy lets the read go.
    return out.buffer === s.bytes.buffer && s.bytes.byteLength !== s.bytes.buffer.byteLength ? new Uint8Array(out) : out;
  }

  /**
   * The stored bytes of `w`'s blob (not yet authenticated) and where they
   * lie, once its read is in: a view of the read, or with `copy` bytes of
   * their own (a buffer that can be transferred to another thread).
   */
  async takeStored(w: Want, copy: boolean): Promise<{ loc: BlobLocation; bytes: Uint8Array }> {
    if (w.done) throw new Error("blob taken twice");
    if (w.error !== undefined) {
      w.done = true;
      throw w.error;
    }
    throwIfAborted(this.signal);
    if (!w.slot) {
      w.demanded = true;
      this.schedulePump();
      await new Promise<void>((resolve) => {
        w.wake = resolve;
        // Listened to only while someone waits: a reader per file (cat, sync) must not pile listeners on the command's signal.
        if (this.waiting.size === 0) this.signal?.addEventListener("abort", this.onAbort, { once: true });
        this.waiting.add(w);
      });
      throwIfAborted(this.signal);
    }
    const slot = w.slot!;
    let bytes: Uint8Array;
    try {
      bytes = await slot.read.bytes;
    } catch {
      this.release(w);
      throwIfAborted(this.signal);
      // A failed merged read is retried blob by blob: a bad range fails its own blobs only.
      const alone = await this.repo.readStoredBlob(w.type, w.mac, this.signal);
      return copy ? { loc: alone.loc, bytes: new Uint8Array(alone.bytes) } : alone;
    }
    const at = slot.loc.offset - slot.read.offset;
    const part = bytes.subarray(at, at + slot.loc.length);
    this.release(w);
    return { loc: slot.loc, bytes: copy ? new Uint8Array(part) : part };
  }

  /** Gives up `w` (taken, or never to be). */
  release(w: Want): void {
    if (w.done) return;
    w.done = true;
    this.unwait(w);
    const slot = w.slot;
    w.slot = undefined; // a want kept (by its taker, or in the queue) must not keep its read's bytes
    if (!slot || --slot.users > 0) return;
    this.slots.delete(slot.key);
    if (--slot.read.live > 0) return;
    this.held -= slot.read.length;
    this.schedulePump(); // room for more
  }

  private attach(w: Want, slot: Slot): void {
    w.slot = slot;
    slot.users++;
    this.unwait(w);
    w.wake?.();
    w.wake = undefined;
  }

  private unwait(w: Want): void {
    if (this.waiting.delete(w) && this.waiting.size === 0) this.signal?.removeEventListener("abort", this.onAbort);
  }

  private readonly onAbort = (): void => {
    for (const w of this.waiting) w.wake?.();
    this.waiting.clear();
  };

  private schedulePump(): void {
    if (this.pumpQueued) return;
    this.pumpQueued = true;
    // Wants registered in the same turn are planned together.
    setImmediate(() => {
      this.pumpQueued = false;
      this.pump();
    });
  }

  /** Starts the reads the room and the parallelism allow, oldest wants first. */
  private pump(): void {
    while (!this.signal?.aborted && this.inFlight < this.parallelism) {
      const room = this.budget - this.held;
      const { blobs, bytes, full, demanded } = this.window(room);
      let issued = false;
      if (blobs.length > 0 && (demanded || full || this.ended || bytes >= this.maxRead)) {
        const reads = planReads(blobs, { maxRead: Math.max(1, Math.min(this.maxRead, room)) });
        // The read whose oldest want comes first goes first.
        const first = (r: PlannedRead<Want[]>) => Math.min(...r.blobs.map((b) => b.item[0]!.seq));
        reads.sort((a, b) => first(a) - first(b));
        for (const r of reads) {
          if (this.inFlight >= this.parallelism) break;
          if (r.length > this.budget - this.held) continue; // later, with more room
          this.issue(r);
          issued = true;
        }
      } else if (blobs.length === 0 && full) {
        // The oldest want does not fit: it alone is read when its taker waits,
        // so that blobs held for later takers never keep it waiting.
        const w = this.oldest();
        if (w?.demanded) {
          this.issue({ pack: w.loc!.pack, offset: w.loc!.offset, length: w.loc!.length, blobs: [{ pack: w.loc!.pack, offset: w.loc!.offset, length: w.loc!.length, item: [w] }] });
          issued = true;
        }
      }
      if (!issued) return;
    }
  }

  /** The first want neither scheduled nor done. */
  private oldest(): Want | undefined {
    for (let i = this.head; i < this.wants.length; i++) {
      const w = this.wants[i]!;
      if (!w.done && !w.slot && w.error === undefined) return w;
    }
    return undefined;
  }

  /**
   * The unscheduled wants from the oldest on whose blobs fit in `room`
   * bytes, each blob once (its wants together, oldest first); `full` when
   * the next one did not fit.
   */
  private window(room: number): { blobs: BlobSpan<Want[]>[]; bytes: number; full: boolean; demanded: boolean } {
    while (this.head < this.wants.length && this.settled(this.wants[this.head]!)) this.head++;
    if (this.head > 4096 && this.head * 2 > this.wants.length) {
      this.wants = this.wants.slice(this.head);
      this.head = 0;
    }
    const byKey = new Map<string, BlobSpan<Want[]>>();
    let bytes = 0;
    let full = false;
    let demanded = false;
    for (let i = this.head; i < this.wants.length; i++) {
      const w = this.wants[i]!;
      if (this.settled(w)) continue;
      const slot = this.slots.get(w.key);
      if (slot) {
        this.attach(w, slot);
        continue;
      }
      w.seq = i;
      const b = byKey.get(w.key);
      if (b) {
        b.item.push(w);
      } else {
        const loc = w.loc!;
        if (bytes + loc.length > room || byKey.size >= MAX_WINDOW) {
          full = true;
          break;
        }
        bytes += loc.length;
        byKey.set(w.key, { pack: loc.pack, offset: loc.offset, length: loc.length, item: [w] });
      }
      demanded ||= w.demanded;
    }
    return { blobs: [...byKey.values()], bytes, full, demanded };
  }

  private settled(w: Want): boolean {
    return w.done || w.slot !== undefined || w.error !== undefined;
  }

  private issue(r: PlannedRead<Want[]>): void {
    const { pack, offset, length } = r;
    const bytes = this.repo.store.get(Resource.PACKFILE, pack, { offset, length }, { signal: this.signal }).then((b) => {
      if (b.byteLength !== length) throw new CorruptError(`packfile ${toHex(pack)}`, `a read of ${length} bytes at ${offset} gave ${b.byteLength}`, { pack: toHex(pack) });
      return b;
    });
    const read: Read = { offset, length, bytes, live: r.blobs.length };
    this.stats.reads++;
    this.stats.bytesRead += length;
    this.held += length;
    this.stats.peakHeld = Math.max(this.stats.peakHeld, this.held);
    this.inFlight++;
    bytes.then(
      () => this.readDone(),
      () => this.readDone(),
    );
    for (const b of r.blobs) {
      const slot: Slot = { key: b.item[0]!.key, loc: b.item[0]!.loc!, read, users: 0 };
      this.slots.set(slot.key, slot);
      for (const w of b.item) this.attach(w, slot);
    }
  }

  private readDone(): void {
    this.inFlight--;
    this.schedulePump();
  }
}

/** The blobs one want() registered, taken in order by next(); release() gives up those not taken (always call it). */
export class WantedBlobs {
  private i = 0;
  constructor(
    private readonly reader: BlobReader,
    private readonly wants: readonly Want[],
  ) {}

  /** The next blob, authenticated and decoded. */
  next(): Promise<Uint8Array> {
    const w = this.wants[this.i++];
    if (!w) return Promise.reject(new Error("no more blobs were wanted"));
    return this.reader.take(w);
  }

  /** The next blob's stored bytes, of their own and not yet authenticated, and where they lie (for a caller that decodes them elsewhere). */
  nextStored(): Promise<{ loc: BlobLocation; bytes: Uint8Array }> {
    const w = this.wants[this.i++];
    if (!w) return Promise.reject(new Error("no more blobs were wanted"));
    return this.reader.takeStored(w, true);
  }

  release(): void {
    for (const w of this.wants) this.reader.release(w);
  }
}
