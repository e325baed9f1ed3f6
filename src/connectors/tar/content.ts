/**
 * A file member's content: read live from the archive (holes of a sparse
 * member as zeros), once, or from the spool when the import had to pass it
 * before anyone opened it.
 */
import { CofferError } from "../../util/errors.js";
import type { ImportRecord } from "../records.js";
import { damageError } from "./errors.js";
import { TarDamage } from "./reader.js";
import type { SparseMap, TarReader } from "./reader.js";
import type { Session } from "./session.js";
import type { Spool, SpoolRef } from "./spool.js";

/** Zeros handed out for the holes of sparse members (never written to). */
const ZEROS = Buffer.alloc(1 << 20);

/**
 * A member's content from the archive, holes of a sparse member as zeros.
 * Damage is thrown as an IO error naming member and offset (the builder
 * records the entry as failed); `reported` keeps the damage it was given to.
 */
export class MemberReader {
  reported: TarDamage | null = null;
  /** Damage is fatal to the import, not to this entry alone. */
  fatal = false;
  private piece = 0;
  private filePos = 0;
  private inPiece = 0;

  constructor(
    private readonly tar: TarReader,
    private readonly sparse: SparseMap | null,
    private readonly toError: (e: unknown) => CofferError,
    private readonly archive: string,
  ) {}

  /** The next piece, or null at the end. */
  async read(): Promise<Buffer | null> {
    try {
      return await this.next();
    } catch (e) {
      if (e instanceof TarDamage) {
        this.reported = e;
        if (this.fatal) throw damageError(this.archive, e);
        throw new CofferError("IO", `damaged tar archive: ${e.message}`);
      }
      throw this.toError(e);
    }
  }

  private async next(): Promise<Buffer | null> {
    const map = this.sparse;
    if (map === null) return this.tar.read();
    const p = map.pieces[this.piece];
    const holeEnd = p === undefined ? map.realSize : p.offset;
    if (this.filePos < holeEnd) {
      const n = Math.min(holeEnd - this.filePos, ZEROS.length);
      this.filePos += n;
      return ZEROS.subarray(0, n);
    }
    if (p === undefined) return null;
    if (this.inPiece >= p.length) {
      this.piece++;
      this.inPiece = 0;
      return this.next();
    }
    const d = await this.tar.read();
    if (d === null) throw new Error("a sparse member's data ended before its map (the reader checked the map)");
    const want = p.length - this.inPiece;
    const out = d.length > want ? d.subarray(0, want) : d;
    if (d.length > want) this.tar.giveBack(d.length - want);
    this.inPiece += out.length;
    this.filePos += out.length;
    return out;
  }

  /** Reads to the end; damage comes out as TarDamage, for the import to end on. */
  async drain(): Promise<void> {
    if (this.reported !== null) throw this.reported;
    try {
      while ((await this.next()) !== null) {
        /* discard */
      }
    } catch (e) {
      throw e instanceof TarDamage ? e : this.toError(e);
    }
  }
}

type ContentState = "pending" | "open" | "released" | "spooled";

/** The content records are keyed by (answers on results find it before its gate). */
export const contentOf = new WeakMap<ImportRecord, Content>();

/** A file entry's content, readable once, live from the archive or from the spool. */
export class Content {
  state: ContentState = "pending";
  private opened = false;
  private resolveReleased!: () => void;
  readonly released: Promise<void>;
  private spooled: Promise<SpoolRef> | undefined;
  private spoolRef: SpoolRef | undefined;
  private spool: Spool | undefined;

  constructor(
    readonly path: string,
    private readonly reader: MemberReader,
    readonly size: number,
    private readonly session: Session,
  ) {
    this.released = new Promise((res) => (this.resolveReleased = res));
    if (size === 0) this.release(); // nothing to wait for
  }

  release(): void {
    if (this.state === "pending" || this.state === "open") this.state = "released";
    this.resolveReleased();
  }

  async spoolTo(spool: Spool): Promise<void> {
    this.spool = spool;
    this.spooled = spool.add(this.reader, this.size);
    this.state = "spooled";
    try {
      this.spoolRef = await this.spooled;
    } catch (e) {
      // Damage in the content: open() gives the error, the import ends on it.
      if (!(e instanceof CofferError && this.reader.reported !== null)) throw e;
      this.spooled.catch(() => {});
    } finally {
      this.resolveReleased();
    }
  }

  async open(): Promise<AsyncIterable<Uint8Array>> {
    if (this.opened) throw new CofferError("IO", `${this.path}: content can be read only once`);
    this.opened = true;
    if (this.size === 0) return (async function* () {})();
    if (this.state === "pending") {
      this.state = "open";
      return this.live();
    }
    if (this.state === "spooled" && this.spool !== undefined && this.spooled !== undefined) {
      const ref = this.spoolRef ?? (await this.spooled);
      this.spoolRef = undefined;
      return this.spool.read(ref);
    }
    throw new CofferError("IO", `${this.path}: content no longer available (the archive is read in one pass)`);
  }

  private live(): AsyncIterable<Uint8Array> {
    let started = false;
    let done = false;
    return {
      [Symbol.asyncIterator]: () => {
        if (started) throw new CofferError("IO", `${this.path}: content can be read only once`);
        started = true;
        return {
          next: async (): Promise<IteratorResult<Uint8Array>> => {
            if (done) return { done: true, value: undefined };
            if (this.state !== "open") throw new CofferError("IO", `${this.path}: content no longer available`);
            let d: Buffer | null;
            try {
              d = await this.session.guard(this.reader.read());
            } catch (e) {
              done = true;
              this.release();
              throw this.session.errorFor(e);
            }
            if (d === null) {
              done = true;
              this.release();
              return { done: true, value: undefined };
            }
            return { done: false, value: d };
          },
          return: async (): Promise<IteratorResult<Uint8Array>> => {
            done = true;
            this.release();
            return { done: true, value: undefined };
          },
        };
      },
    };
  }
}
