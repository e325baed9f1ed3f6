/**
 * Extended attributes of the entries a backup stores. They come on the
 * record (`xattrs`), lazily (`readXattrs`: not read when the parent's entry
 * of the same inode and ctime holds them), or as records of their own
 * (`xattrName`, Kloset's way), before or after their entry: each is added
 * to its entry in the scan cache, or held until the entry arrives.
 */
import type { ImportRecord, Xattr } from "../../connectors/records.js";
import { CofferError } from "../../util/errors.js";
import type { Entry } from "../tree.js";
import type { Checkpointer } from "./checkpointer.js";
import { attrsUnchanged, type ParentEntry } from "./parent.js";
import type { ScanCache } from "./scancache.js";
import type { Tally } from "./tally.js";

/** Linux caps an extended attribute's value at 64 KiB; other systems allow more. */
export const MAX_XATTR_VALUE = 1 << 20;

/** The extended attributes of record `r`'s entry; `old` is the parent's entry at its path, if known. */
export function recordXattrs(r: ImportRecord, old: ParentEntry): Xattr[] | undefined {
  if (r.xattrs !== undefined || !r.readXattrs) return r.xattrs;
  const same = attrsUnchanged(old, r);
  return same ? same.xattrs : r.readXattrs();
}

/** `list` with `x` in place of any attribute of its name. */
export function withXattr(list: Xattr[] | undefined, x: Xattr): Xattr[] {
  return [...(list ?? []).filter((y) => y.name !== x.name), x];
}

/** An attribute (a record of its own) whose entry is not stored yet, with its record (answered once attached). */
export interface EarlyXattr {
  x: Xattr;
  r: ImportRecord;
}

export class XattrRecords {
  /** Attributes whose entry is not stored yet, by path. */
  private readonly early = new Map<string, EarlyXattr[]>();

  constructor(
    private readonly cache: ScanCache,
    private readonly tally: Tally,
    private readonly answers: Checkpointer,
    /** The run's signal: a read that fails because it stopped is not an entry's error. */
    private readonly signal: AbortSignal,
  ) {}

  /** Reads the attribute of record `r` (`xattrName`) and adds it to its entry, now or once the entry is stored. */
  async save(r: ImportRecord): Promise<void> {
    let value: Uint8Array;
    try {
      value = await readValue(r);
    } catch (e) {
      if (this.signal.aborted || (e instanceof CofferError && e.code !== "IO")) throw e;
      const error = `cannot read extended attribute ${r.xattrName}: ${(e as Error).message}`;
      this.tally.xattrFailed(r.pathname, [r.xattrName!], error);
      this.answers.failed(r, error);
      return;
    }
    const x: Xattr = { name: r.xattrName!, value };
    // Synchronously from here: the entry is either stored already or will take it when it is.
    const stored = this.cache.get(r.pathname);
    if (stored) {
      stored.xattrs = withXattr(stored.xattrs, x);
      this.cache.put(r.pathname, stored);
      this.answers.stored(r);
    } else this.early.set(r.pathname, [...(this.early.get(r.pathname) ?? []), { x, r }]);
  }

  /**
   * Adds the attributes that came before the entry at `path` to `entry`,
   * which is about to be stored; gives them to answer once it is (answerEarly).
   */
  takeEarly(path: string, entry: Entry): EarlyXattr[] | undefined {
    const early = this.early.get(path);
    if (!early) return undefined;
    this.early.delete(path);
    for (const { x } of early) entry.xattrs = withXattr(entry.xattrs, x);
    return early;
  }

  /** Answers the records of attributes takeEarly() gave, their entry now stored. */
  answerEarly(early: EarlyXattr[]): void {
    for (const { r } of early) this.answers.stored(r);
  }

  /** Once the importer is done: attributes whose entry never came fail. */
  end(): void {
    for (const [p, xs] of this.early) {
      const names = xs.map(({ x }) => x.name);
      const error = `extended attribute ${names.join(", ")} came for an entry the source never sent`;
      this.tally.xattrFailed(p, names, error);
      for (const { r } of xs) this.answers.failed(r, error);
    }
    this.early.clear();
  }
}

async function readValue(r: ImportRecord): Promise<Uint8Array> {
  const parts: Uint8Array[] = [];
  let size = 0;
  if (r.open) {
    for await (const b of await r.open()) {
      size += b.byteLength;
      if (size > MAX_XATTR_VALUE) throw new Error(`value larger than ${MAX_XATTR_VALUE} bytes`);
      parts.push(b);
    }
  }
  return new Uint8Array(Buffer.concat(parts));
}
