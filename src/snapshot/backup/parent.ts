/**
 * The parent snapshot a backup starts from, and what it knows about each
 * path: the parent's entry (from the listings of the last few directories
 * records came from), whether a file is unchanged since (its chunks are
 * reused without reading it), and whether an entry's extended attributes
 * can be kept (see attrsUnchanged).
 */
import type { ImportRecord } from "../../connectors/records.js";
import { BlobType } from "../../repository/codec.js";
import type { Repository } from "../../repository/repository.js";
import { isCofferError } from "../../util/errors.js";
import { toHex } from "../../util/hex.js";
import { PRIOR_SNAPSHOTS, type SnapshotHeader } from "../header.js";
import type { ChunkRef, Entry } from "../tree.js";
import { listSnapshots } from "../snapshots.js";
import { TreeReader } from "../tree-reader.js";
import { ListingPrefetch } from "./parent-prefetch.js";

/**
 * The snapshots a backup starts from: the latest one of the same source (its
 * parent, unless `force`) and the latest few of all (`prior`). Snapshots whose
 * header cannot be read are passed over, each with a warning.
 */
export async function findParent(
  repo: Repository,
  o: { hostname: string; type: string; root: string; force?: boolean; onWarning?: (id: string, message: string) => void },
  signal?: AbortSignal,
): Promise<{ parent: SnapshotHeader | undefined; prior: Uint8Array[] }> {
  const { snapshots: all, unreadable } = await listSnapshots(repo, signal);
  for (const u of unreadable) o.onWarning?.(toHex(u.id), `${u.message}: not considered as the parent snapshot`);
  const parent = o.force ? undefined : all.filter((h) => h.hostname === o.hostname && h.importer.type === o.type && h.importer.root === o.root).at(-1);
  return { parent, prior: all.slice(-PRIOR_SNAPSHOTS).map((h) => h.id) };
}

/** A parent listing still being loaded (see ParentIndex.entryNow). */
export const NOT_LOADED = Symbol("not loaded");

/** The parent's entry at a path: undefined when it has none, NOT_LOADED while its directory's listing is being loaded. */
export type ParentEntry = Entry | undefined | typeof NOT_LOADED;

/** Parent listings kept by directory path. */
const PARENT_DIRS = 8;

/** A directory's listing in the parent snapshot: `entries` once `loaded`. */
interface ParentListing {
  loaded: boolean;
  entries: ReadonlyMap<string, Entry> | undefined;
  promise: Promise<ReadonlyMap<string, Entry> | undefined>;
}

/**
 * The parent snapshot's entries by path. Records of a directory come
 * together, so the listings of the last few directories are kept: looking
 * each path up from the root had cost a cache lookup per component; the
 * listings that come next are loaded ahead (parent-prefetch.ts). A
 * listing that cannot be read is worked around (the files below it are read
 * from the source), with one warning per unreadable tree.
 */
export class ParentIndex {
  private readonly reader: TreeReader;
  private readonly prefetch: ListingPrefetch;
  private readonly dirs = new Map<string, ParentListing>();
  /** Parent trees found unreadable (warned about once). */
  private readonly unreadable = new Set<string>();

  constructor(
    private readonly repo: Repository,
    readonly header: SnapshotHeader,
    private readonly signal: AbortSignal,
    private readonly warn: (path: string, message: string) => void,
    /** See BackupOptions.sameContent. */
    private readonly sameContent?: ((r: ImportRecord) => boolean) | undefined,
  ) {
    this.reader = new TreeReader(repo);
    this.prefetch = new ListingPrefetch(this.reader, header.root, signal);
  }

  /** The parent's entry at `pathname`, or NOT_LOADED while its directory's listing is being loaded (then see entry()). */
  entryNow(pathname: string): ParentEntry {
    if (pathname === "/") return this.header.root; // the source is a single file
    const slash = pathname.lastIndexOf("/");
    if (slash < 0) return undefined;
    const l = this.listing(slash === 0 ? "/" : pathname.slice(0, slash));
    return l.loaded ? l.entries?.get(pathname.slice(slash + 1)) : NOT_LOADED;
  }

  /** The parent's entry at `pathname`, once its directory's listing is loaded. */
  async entry(pathname: string): Promise<Entry | undefined> {
    const e = this.entryNow(pathname);
    if (e !== NOT_LOADED) return e;
    const slash = pathname.lastIndexOf("/");
    return (await this.listing(slash === 0 ? "/" : pathname.slice(0, slash)).promise)?.get(pathname.slice(slash + 1));
  }

  /**
   * The chunks of `old`, when `r` is that same file unchanged (same size,
   * mtime, inode, content tag or none on both, and, where both know it,
   * ctime; without a content tag, an mtime that is not racy; or, with
   * sameContent, the same size and what sameContent says) and they are all
   * stored.
   */
  unchangedChunks(old: Entry | undefined, r: ImportRecord): ChunkRef[] | undefined {
    if (!old || old.info.kind !== "file" || old.error !== undefined || !old.chunks) return undefined;
    const a = old.info, b = r.fileInfo;
    if (a.size !== b.size) return undefined;
    if (this.sameContent) {
      if (!this.sameContent(r)) return undefined;
    } else {
      if (a.mtimeNs !== b.mtimeNs || a.ino !== b.ino || a.contentTag !== b.contentTag) return undefined;
      if (a.ctimeNs !== undefined && b.ctimeNs !== undefined && a.ctimeNs !== b.ctimeNs) return undefined;
      if (b.contentTag === undefined && racy(b.mtimeNs, this.header.timeNs)) return undefined;
    }
    for (const c of old.chunks) if (!this.repo.has(BlobType.CHUNK, c.mac)) return undefined;
    return old.chunks;
  }

  /** unchangedChunks() for `r` against the parent's entry at its path, once that is loaded. */
  async unchanged(r: ImportRecord): Promise<ChunkRef[] | undefined> {
    return this.unchangedChunks(await this.entry(r.pathname), r);
  }

  private listing(dir: string): ParentListing {
    let l = this.dirs.get(dir);
    if (!l) {
      l = this.load(dir);
      this.dirs.set(dir, l);
      if (this.dirs.size > PARENT_DIRS) this.dirs.delete(this.dirs.keys().next().value!);
    }
    return l;
  }

  private load(dir: string): ParentListing {
    this.prefetch.asked(dir);
    const listing: ParentListing = {
      loaded: false,
      entries: undefined,
      promise: this.reader
        .lookup(this.header.root, dir, this.signal)
        .then((d) => (d && d.info.kind === "dir" ? this.reader.childrenByName(d, this.signal) : undefined))
        .catch((e: unknown) => {
          // A damaged or missing listing: the files below it are read from the source.
          const blob = isCofferError(e) && typeof e.data.mac === "string" ? e.data.mac : (e as Error).message;
          if (!this.signal.aborted && !this.unreadable.has(blob)) {
            this.unreadable.add(blob);
            this.warn(dir, `the parent snapshot's listing is unreadable (${(e as Error).message}): reading the files below it again`);
          }
          return undefined;
        })
        .then((m) => {
          listing.loaded = true;
          return (listing.entries = m);
        }),
    };
    return listing;
  }
}

/**
 * The parent's entry of the same inode with the same ctime as `r`, which
 * holds `r`'s extended attributes too (setting one changes ctime).
 */
export function attrsUnchanged(old: ParentEntry, r: ImportRecord): Entry | undefined {
  if (old === NOT_LOADED || !old || old.error !== undefined) return undefined;
  const a = old.info, b = r.fileInfo;
  return a.kind === b.kind && a.ino === b.ino && a.ctimeNs !== undefined && a.ctimeNs === b.ctimeNs ? old : undefined;
}

const SECOND_NS = 1_000_000_000n;

/**
 * Whether a whole-second mtime (SFTP gives no more) falls in the second the
 * parent backup started or later: the file may have been written again
 * within that second after the parent read it, keeping its mtime, so an
 * equal mtime proves nothing and the file is read. Sub-second mtimes, and
 * files with a content tag (which changes with the content), are left as
 * they were.
 */
function racy(mtimeNs: bigint, parentStartNs: bigint): boolean {
  return mtimeNs % SECOND_NS === 0n && mtimeNs >= parentStartNs - (parentStartNs % SECOND_NS);
}
