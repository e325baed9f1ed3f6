/**
 * One record of the importer in, one entry in the scan cache out: its
 * metadata, its extended attributes (xattrs.ts) and a file's chunks
 * (file-saver.ts); then it is counted, reported and its record answered.
 * An entry that needs no wait is stored synchronously (saveNow): that is
 * most of a no-change backup, whose per-entry cost this path is.
 */
import type { FileInfo, ImportRecord } from "../../connectors/records.js";
import { CofferError } from "../../util/errors.js";
import type { ChunkRef, Entry } from "../tree.js";
import type { Checkpointer } from "./checkpointer.js";
import type { FileSaver } from "./file-saver.js";
import { type GiveChunks, type HardLinks, inodeKey } from "./hard-links.js";
import { NOT_LOADED, type ParentEntry, type ParentIndex } from "./parent.js";
import type { ScanCache } from "./scancache.js";
import type { EntryOutcome, Tally } from "./tally.js";
import { recordXattrs, type XattrRecords } from "./xattrs.js";

export interface EntrySaverParts {
  parent: ParentIndex | null;
  files: FileSaver;
  links: HardLinks;
  xattrs: XattrRecords;
  cache: ScanCache;
  tally: Tally;
  checkpointer: Checkpointer;
  /** The run's signal: a read that fails because it stopped is not an entry's error. */
  signal: AbortSignal;
}

export class EntrySaver {
  private readonly parent: ParentIndex | null;
  private readonly files: FileSaver;
  private readonly links: HardLinks;
  private readonly xattrs: XattrRecords;
  private readonly cache: ScanCache;
  private readonly tally: Tally;
  private readonly checkpointer: Checkpointer;
  private readonly signal: AbortSignal;

  constructor(p: EntrySaverParts) {
    this.parent = p.parent;
    this.files = p.files;
    this.links = p.links;
    this.xattrs = p.xattrs;
    this.cache = p.cache;
    this.tally = p.tally;
    this.checkpointer = p.checkpointer;
    this.signal = p.signal;
  }

  /**
   * Stores the entry of `r` at once when nothing has to be awaited for it:
   * anything but a file, or a file found unchanged in a parent listing
   * already loaded (all of a no-change backup but the first record of each
   * directory). No promise and no async frame per entry here: they had been
   * most of what a no-change backup allocated. False: left to save().
   */
  saveNow(r: ImportRecord): boolean {
    if (r.xattrName !== undefined) return false;
    const info = r.fileInfo;
    const parent = this.parent;
    let chunks: ChunkRef[] | undefined;
    let old: ParentEntry = undefined;
    if (info.kind === "file" && r.error === undefined) {
      if (!parent || r.linkTarget !== undefined) return false;
      const key = inodeKey(info);
      if (key && this.links.hasInode(key)) return false;
      old = parent.entryNow(r.pathname);
      if (old === NOT_LOADED) return false;
      chunks = parent.unchangedChunks(old, r);
      if (!chunks) return false;
      if (key) this.links.setInode(key, Promise.resolve(chunks));
    } else if (parent && r.readXattrs) old = parent.entryNow(r.pathname);
    const entry = this.newEntry(r, info, old);
    if (chunks) this.setChunks(entry, chunks);
    this.finish(r, info, entry, chunks ? "unchanged" : "stored");
    return true;
  }

  /** Stores the entry of `r` (or, for an attribute record, adds it to its entry), waiting for what it needs. */
  async save(r: ImportRecord): Promise<void> {
    if (r.xattrName !== undefined) return this.xattrs.save(r);
    const info = r.fileInfo;
    if (info.kind !== "file") return this.saveEntry(r, info, undefined);
    // Registered before the first await, so that a link yielded later finds it.
    const give = this.links.begin(r.pathname);
    try {
      await this.saveEntry(r, info, give);
    } finally {
      this.links.end(r.pathname, give);
    }
  }

  private async saveEntry(r: ImportRecord, info: FileInfo, give: GiveChunks | undefined): Promise<void> {
    const parent = this.parent;
    const entry = this.newEntry(r, info, parent && r.readXattrs ? await parent.entry(r.pathname) : undefined);
    let outcome: EntryOutcome = "stored";
    if (entry.error === undefined && info.kind === "file") {
      try {
        const content = await this.files.save(r);
        this.setChunks(entry, content.chunks);
        if (content.source === "unchanged") outcome = "unchanged";
        give?.(content.chunks);
      } catch (e) {
        if (this.signal.aborted || (e instanceof CofferError && e.code !== "IO")) throw e;
        entry.error = `cannot read: ${(e as Error).message}`;
        this.tally.recordError(r.pathname, entry.error);
      }
    }
    this.finish(r, info, entry, outcome);
  }

  /** The entry of record `r`, its content aside; `old` is the parent's entry at its path, if known (see recordXattrs). */
  private newEntry(r: ImportRecord, info: FileInfo, old: ParentEntry): Entry {
    const name = r.pathname === "/" ? "" : r.pathname.slice(r.pathname.lastIndexOf("/") + 1);
    const entry: Entry = { name, info: { ...info, name } };
    if (r.target !== undefined) entry.target = r.target;
    const xattrs = recordXattrs(r, old);
    if (xattrs && xattrs.length > 0) entry.xattrs = xattrs;
    if (r.error !== undefined) {
      entry.error = r.error;
      this.tally.recordError(r.pathname, r.error);
    }
    return entry;
  }

  private setChunks(entry: Entry, chunks: ChunkRef[]): void {
    entry.chunks = chunks;
    let size = 0;
    for (const c of chunks) size += c.length;
    entry.info.size = size;
    this.tally.summary.bytes += size;
  }

  /** Stores the entry in the scan cache with any attributes that came early, counts and reports it, and answers its record. */
  private finish(r: ImportRecord, info: FileInfo, entry: Entry, outcome: EntryOutcome): void {
    const early = this.xattrs.takeEarly(r.pathname, entry);
    this.cache.put(r.pathname, entry);
    if (early) this.xattrs.answerEarly(early);
    const cp = this.checkpointer;
    if (entry.error !== undefined) {
      cp.dirty = true; // stored, as failed: the next checkpoint holds it too
      cp.failed(r, entry.error);
    } else cp.stored(r);
    this.tally.entryDone(r.pathname, info.kind, entry.info.size, entry.error, outcome);
    cp.maybe();
  }
}
