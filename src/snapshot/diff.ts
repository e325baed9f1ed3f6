/**
 * The difference between two directories of snapshots (docs/CLI.md,
 * "diff"): a merge of the two name-sorted listings, depth first, one tree
 * blob per directory and side at a time. A pair of subdirectories with the
 * same tree MAC is skipped without being read; contents are compared by
 * chunk list (equal chunk MACs are equal content). Markers are restic's.
 */
import { BlobType } from "../repository/codec.js";
import type { Repository } from "../repository/repository.js";
import { blobKey } from "../repository/state.js";
import { throwIfAborted } from "../util/errors.js";
import { toHex } from "../util/hex.js";
import { compareNames, decodeTree, type Entry, isTreeDir } from "./tree.js";

/** `+` added, `-` removed, `M` content, `M?` content while size, mtime and ctime did not (bitrot), `U` metadata only, `T` type. */
export type Modifier = "+" | "-" | "M" | "M?" | "U" | "T";

export interface Change {
  /** Relative to the compared directories, starting with "/"; a directory's ends with "/". */
  path: string;
  modifier: Modifier;
  /** The entry in the first snapshot (absent for `+`). */
  before?: Entry | undefined;
  /** The entry in the second snapshot (absent for `-`). */
  after?: Entry | undefined;
}

export interface DiffSide {
  files: number;
  dirs: number;
  others: number;
  dataBlobs: number;
  treeBlobs: number;
  /** Raw bytes of those blobs. */
  bytes: number;
}

export interface DiffSummary {
  /** Files with `M` or `M?`. */
  changedFiles: number;
  added: DiffSide;
  removed: DiffSide;
  /** Lines printed per marker, each line counted once (`M?` under `?` alone). */
  markers: Record<"+" | "-" | "M" | "U" | "T" | "?", number>;
}

export interface DiffOptions {
  /** Report `U` (metadata-only changes): off by default, as restic's `--metadata`. */
  metadata?: boolean | undefined;
  signal?: AbortSignal | undefined;
}

const emptySide = (): DiffSide => ({ files: 0, dirs: 0, others: 0, dataBlobs: 0, treeBlobs: 0, bytes: 0 });

/**
 * One comparison of `before` with `after` (two entries, usually the
 * directories SNAP1:PATH and SNAP2:PATH). Iterate changes(); summary is
 * complete once it ends. Bytes added and removed are restic's: the blobs
 * referenced by the entries visited on one side and not on the other (a
 * blob also held by a skipped identical subtree is counted, since that
 * subtree is never read).
 */
export class SnapshotDiff {
  readonly summary: DiffSummary = { changedFiles: 0, added: emptySide(), removed: emptySide(), markers: { "+": 0, "-": 0, M: 0, U: 0, T: 0, "?": 0 } };
  /** Blob keys (blobKey) referenced by visited entries of each side, with their raw lengths. */
  private readonly blobsBefore = new Map<string, number>();
  private readonly blobsAfter = new Map<string, number>();
  /** Raw lengths of the TREE blobs read, by blob key: every tree the tally may count was read. */
  private readonly treeLengths = new Map<string, number>();

  constructor(
    private readonly repo: Pick<Repository, "getBlob">,
    private readonly before: Entry,
    private readonly after: Entry,
    private readonly o: DiffOptions = {},
  ) {}

  async *changes(): AsyncGenerator<Change> {
    this.addBlobs(this.blobsBefore, this.before);
    this.addBlobs(this.blobsAfter, this.after);
    if (isTreeDir(this.before) && isTreeDir(this.after)) yield* this.pair("/", this.before, this.after);
    else yield* this.compare("/", this.before, this.after);
    this.tally();
  }

  /** The children of two directories, merged by name (`dir`: their path as shown, ending with "/"). */
  private async *pair(dir: string, a: Entry, b: Entry): AsyncGenerator<Change> {
    if (a.tree && b.tree && Buffer.compare(a.tree, b.tree) === 0) return;
    const la = await this.listing(a);
    const lb = await this.listing(b);
    let i = 0;
    let j = 0;
    while (i < la.length || j < lb.length) {
      throwIfAborted(this.o.signal);
      const ea = la[i];
      const eb = lb[j];
      const c = ea === undefined ? 1 : eb === undefined ? -1 : compareNames(ea.name, eb.name);
      if (c < 0) {
        i++;
        yield* this.one("-", `${dir}${ea!.name}`, ea!);
      } else if (c > 0) {
        j++;
        yield* this.one("+", `${dir}${eb!.name}`, eb!);
      } else {
        i++;
        j++;
        yield* this.compare(`${dir}${ea!.name}`, ea!, eb!);
      }
    }
  }

  /** Two entries at one path. */
  private async *compare(path: string, a: Entry, b: Entry): AsyncGenerator<Change> {
    this.addBlobs(this.blobsBefore, a);
    this.addBlobs(this.blobsAfter, b);
    const shown = (e: Entry) => (e.info.kind === "dir" && path !== "/" ? `${path}/` : path);
    if (a.info.kind !== b.info.kind) {
      yield this.change({ path: shown(b), modifier: "T", before: a, after: b });
      // What the type change took away or brought is listed below it.
      if (isTreeDir(a)) yield* this.under("-", shown(a), a);
      if (isTreeDir(b)) yield* this.under("+", shown(b), b);
      return;
    }
    const kind = a.info.kind;
    let modifier: Modifier | undefined;
    if (kind === "file" && !sameChunks(a, b)) {
      this.summary.changedFiles++;
      // A file read in full both times with the metadata a backup trusts unchanged: its content changed unseen.
      modifier = a.error === undefined && b.error === undefined && sameFileMetadata(a, b) ? "M?" : "M";
    } else if (kind === "symlink" && a.target !== b.target) modifier = "M";
    else if (this.o.metadata && !sameMetadata(a, b)) modifier = "U";
    if (modifier) yield this.change({ path: shown(b), modifier, before: a, after: b });
    if (kind === "dir") yield* this.pair(shown(b), a, b);
  }

  /** An entry only one side has, and everything below it. */
  private async *one(modifier: "+" | "-", path: string, e: Entry): AsyncGenerator<Change> {
    this.addBlobs(modifier === "+" ? this.blobsAfter : this.blobsBefore, e);
    const p = e.info.kind === "dir" ? `${path}/` : path;
    yield this.change(modifier === "+" ? { path: p, modifier, after: e } : { path: p, modifier, before: e });
    const side = modifier === "+" ? this.summary.added : this.summary.removed;
    if (e.info.kind === "file") side.files++;
    else if (e.info.kind === "dir") side.dirs++;
    else side.others++;
    if (isTreeDir(e)) yield* this.under(modifier, p, e);
  }

  private async *under(modifier: "+" | "-", dir: string, e: Entry): AsyncGenerator<Change> {
    for (const c of await this.listing(e)) {
      throwIfAborted(this.o.signal);
      yield* this.one(modifier, `${dir}${c.name}`, c);
    }
  }

  private async listing(e: Entry): Promise<Entry[]> {
    if (!isTreeDir(e) || !e.tree) return [];
    const raw = await this.repo.getBlob(BlobType.TREE, e.tree, this.o.signal);
    this.treeLengths.set(blobKey(BlobType.TREE, e.tree), raw.byteLength);
    return decodeTree(raw, `tree ${toHex(e.tree).slice(0, 16)}`);
  }

  private change(c: Change): Change {
    this.summary.markers[c.modifier === "M?" ? "?" : c.modifier]++;
    return c;
  }

  private addBlobs(into: Map<string, number>, e: Entry): void {
    if (e.info.kind === "file") for (const c of e.chunks ?? []) into.set(blobKey(BlobType.CHUNK, c.mac), c.length);
    else if (isTreeDir(e) && e.tree) into.set(blobKey(BlobType.TREE, e.tree), -1);
  }

  /** Blobs of one side that the other's visited entries do not reference, counted and sized. */
  private tally(): void {
    const count = (from: Map<string, number>, other: Map<string, number>, side: DiffSide) => {
      for (const [k, length] of from) {
        if (other.has(k)) continue;
        if (length < 0) {
          side.treeBlobs++;
          side.bytes += this.treeLengths.get(k) ?? 0;
        } else {
          side.dataBlobs++;
          side.bytes += length;
        }
      }
    };
    count(this.blobsBefore, this.blobsAfter, this.summary.removed);
    count(this.blobsAfter, this.blobsBefore, this.summary.added);
  }
}

function sameChunks(a: Entry, b: Entry): boolean {
  const x = a.chunks ?? [];
  const y = b.chunks ?? [];
  if (x.length !== y.length || (a.error === undefined) !== (b.error === undefined)) return false;
  return x.every((c, i) => Buffer.compare(c.mac, y[i]!.mac) === 0);
}

/** What a backup takes as "unchanged" for a file: same size, mtime, content tag (or none) and, where both record it, ctime. */
function sameFileMetadata(a: Entry, b: Entry): boolean {
  const i = a.info;
  const k = b.info;
  return i.size === k.size && i.mtimeNs === k.mtimeNs && i.contentTag === k.contentTag && (i.ctimeNs === undefined || k.ctimeNs === undefined || i.ctimeNs === k.ctimeNs);
}

/** Every recorded field but the name, the content (chunks, tree) and the device number. */
function sameMetadata(a: Entry, b: Entry): boolean {
  const i = a.info;
  const k = b.info;
  return (
    sameFileMetadata(a, b) &&
    i.mode === k.mode &&
    i.uid === k.uid &&
    i.gid === k.gid &&
    i.username === k.username &&
    i.groupname === k.groupname &&
    i.nlink === k.nlink &&
    i.ino === k.ino &&
    (i.rdev ?? 0n) === (k.rdev ?? 0n) &&
    a.error === b.error &&
    sameXattrs(a, b)
  );
}

function sameXattrs(a: Entry, b: Entry): boolean {
  const key = (e: Entry) =>
    (e.xattrs ?? [])
      .map((x) => `${x.name}\0${Buffer.from(x.value).toString("hex")}`)
      .sort()
      .join("\0\0");
  return key(a) === key(b);
}
