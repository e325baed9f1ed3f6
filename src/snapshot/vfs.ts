/**
 * Reading snapshots: listing headers, resolving an ID prefix, looking up a
 * path, and walking a tree depth-first in name order with a small cache of
 * decoded directories (memory stays bounded by the cache and the depth).
 */
import { BlobType } from "../repository/codec.js";
import type { Repository } from "../repository/repository.js";
import { mapLimit } from "../util/concurrency.js";
import { CofferError, isCofferError, throwIfAborted } from "../util/errors.js";
import { toHex } from "../util/hex.js";
import { unescapeName } from "../util/names.js";
import { decodeHeader, isPartial, type SnapshotHeader } from "./header.js";
import { decodeTree, type Entry } from "./tree.js";

/** A snapshot whose header could not be read (damaged or missing), and why. */
export interface UnreadableSnapshot {
  id: Uint8Array;
  message: string;
}

export interface SnapshotList {
  snapshots: SnapshotHeader[];
  /** Snapshots whose header failed: every command works around them and names them. */
  unreadable: UnreadableSnapshot[];
  /**
   * Snapshots that a snapshot written by `repair snapshots` replaces (its
   * `repairOf`) but whose removal record is missing (that repair was killed
   * before its commit): hidden as if removed.
   */
  replaced: SnapshotHeader[];
}

/**
 * Snapshot headers, oldest first: every complete snapshot and, per backup
 * run that never completed, its latest checkpoint (docs/FORMAT.md,
 * "Checkpoints"). `superseded` adds the checkpoints that are hidden. A
 * header that cannot be read is listed in `unreadable`, not thrown.
 */
export async function listSnapshots(repo: Repository, signal?: AbortSignal, o: { superseded?: boolean } = {}): Promise<SnapshotList> {
  const ids = repo.snapshotIds();
  const unreadable: UnreadableSnapshot[] = [];
  const read = await mapLimit(ids, 8, async (id) => {
    try {
      return decodeHeader(await repo.getBlob(BlobType.SNAPSHOT, id, signal), id);
    } catch (e) {
      throwIfAborted(signal);
      if (!isCofferError(e, "CORRUPT") && !isCofferError(e, "NOT_FOUND")) throw e;
      unreadable.push({ id, message: e.message });
      return undefined;
    }
  });
  const readable = read.filter((h): h is SnapshotHeader => h !== undefined);
  const replacedIds = new Set(readable.flatMap((h) => (h.repairOf ? [toHex(h.repairOf.id)] : [])));
  const replaced = readable.filter((h) => replacedIds.has(toHex(h.id)));
  const headers = readable.filter((h) => !replacedIds.has(toHex(h.id)));
  const cmp = (a: SnapshotHeader, b: SnapshotHeader) => (a.timeNs < b.timeNs ? -1 : a.timeNs > b.timeNs ? 1 : (a.checkpoint ?? Infinity) - (b.checkpoint ?? Infinity));
  headers.sort(cmp);
  if (o.superseded) return { snapshots: headers, unreadable, replaced };
  // The best of each run: a complete snapshot, else the highest checkpoint.
  const best = new Map<string, SnapshotHeader>();
  for (const h of headers) {
    if (!h.run) continue;
    const k = toHex(h.run);
    const b = best.get(k);
    if (!b || (b.checkpoint !== undefined && (h.checkpoint === undefined || h.checkpoint > b.checkpoint))) best.set(k, h);
  }
  // A checkpoint of an unfinished run stays: for a source that deletes what is
  // acknowledged, it may hold the only copy of the records it covers.
  return { snapshots: headers.filter((h) => !h.run || best.get(toHex(h.run)) === h), unreadable, replaced };
}

/** Finds the snapshot whose ID starts with `prefix`, or the latest complete one when prefix is empty/"latest". */
export async function resolveSnapshot(repo: Repository, prefix: string | undefined, signal?: AbortSignal): Promise<SnapshotHeader> {
  if (prefix === undefined || prefix === "" || prefix === "latest") {
    const all = (await listSnapshots(repo, signal)).snapshots;
    const last = all.filter((h) => !isPartial(h)).at(-1);
    if (!last) {
      const partial = all.length > 0 ? ` (there are ${all.length} partial snapshots from interrupted backups: name one by its ID)` : "";
      throw new CofferError("SNAPSHOT_NOT_FOUND", `the repository has no complete snapshot${partial}`);
    }
    return last;
  }
  if (!/^[0-9a-f]+$/i.test(prefix)) throw new CofferError("USAGE", `not a snapshot ID prefix: ${JSON.stringify(prefix)} (hex digits expected)`);
  const p = prefix.toLowerCase();
  const matches = repo.snapshotIds().filter((id) => toHex(id).startsWith(p));
  if (matches.length === 0) throw new CofferError("SNAPSHOT_NOT_FOUND", `no snapshot matches ${JSON.stringify(prefix)}`);
  if (matches.length > 1) {
    throw new CofferError("SNAPSHOT_AMBIGUOUS", `snapshot prefix ${JSON.stringify(prefix)} is ambiguous: it matches ${matches.map((m) => toHex(m).slice(0, 12)).join(", ")}`);
  }
  const id = matches[0]!;
  return decodeHeader(await repo.getBlob(BlobType.SNAPSHOT, id, signal), id);
}

/** Splits "SNAP:PATH" (either part optional) into its parts; PATH is normalised to start with "/". */
export function parseSnapPath(arg: string | undefined): { snap: string | undefined; path: string } {
  if (arg === undefined) return { snap: undefined, path: "/" };
  const i = arg.indexOf(":");
  const snap = i < 0 ? arg : arg.slice(0, i);
  const path = i < 0 ? "/" : arg.slice(i + 1);
  return { snap: snap === "" ? undefined : snap, path: normalisePath(path) };
}

export function normalisePath(p: string): string {
  const parts: string[] = [];
  for (const c of p.split("/")) {
    if (c === "" || c === ".") continue;
    if (c === "..") parts.pop();
    else parts.push(c);
  }
  return `/${parts.join("/")}`;
}

export function joinPath(dir: string, name: string): string {
  return dir === "/" ? `/${name}` : `${dir}/${name}`;
}

/** Subdirectory listings loaded ahead of the walk, per directory being walked. */
const PREFETCH_DIRS = 8;

interface Listing {
  list: Entry[];
  byName?: Map<string, Entry>;
}

/** Decoded directory listings with an LRU cache. */
export class TreeReader {
  /** Decoded listings by tree MAC, most recently used last; a load in flight is shared. */
  private readonly cache = new Map<string, Promise<Listing>>();
  constructor(
    private readonly repo: Repository,
    private readonly capacity = 256,
  ) {}

  async children(dir: Entry, signal?: AbortSignal): Promise<Entry[]> {
    return (await this.load(dir, signal)).list;
  }

  /** The child of `dir` named `name`, or undefined. */
  async child(dir: Entry, name: string, signal?: AbortSignal): Promise<Entry | undefined> {
    return (await this.childrenByName(dir, signal)).get(name);
  }

  /** The children of `dir` by name. */
  async childrenByName(dir: Entry, signal?: AbortSignal): Promise<ReadonlyMap<string, Entry>> {
    const t = await this.load(dir, signal);
    t.byName ??= new Map(t.list.map((e) => [e.name, e]));
    return t.byName;
  }

  private load(dir: Entry, signal?: AbortSignal): Promise<Listing> {
    if (!dir.tree) return Promise.resolve({ list: [] });
    const k = toHex(dir.tree);
    const hit = this.cache.get(k);
    if (hit) {
      this.cache.delete(k);
      this.cache.set(k, hit);
      return hit;
    }
    const mac = dir.tree;
    const p = (async () => ({ list: decodeTree(await this.repo.getBlob(BlobType.TREE, mac, signal), `tree ${k.slice(0, 16)}`) }) as Listing)();
    p.catch(() => this.cache.delete(k));
    this.cache.set(k, p);
    if (this.cache.size > this.capacity) this.cache.delete(this.cache.keys().next().value!);
    return p;
  }

  /** The entry at `path` (normalised, starting with "/", names exact) below `root`, or undefined. */
  async lookup(root: Entry, path: string, signal?: AbortSignal): Promise<Entry | undefined> {
    return (await this.find(root, path, signal, false))?.entry;
  }

  /**
   * lookup() of a path a user typed: a component is looked up as given,
   * then, if it holds a backslash, in the display form of escapeName()
   * (`lat\\351`), so that names that are not UTF-8 can be typed. Gives the
   * entry and its path as stored.
   */
  async lookupTyped(root: Entry, path: string, signal?: AbortSignal): Promise<{ entry: Entry; path: string } | undefined> {
    return this.find(root, path, signal, true);
  }

  private async find(root: Entry, path: string, signal: AbortSignal | undefined, typed: boolean): Promise<{ entry: Entry; path: string } | undefined> {
    let cur: Entry = root;
    let found = "";
    for (const name of path.split("/").filter((c) => c !== "")) {
      if (cur.info.kind !== "dir") return undefined;
      let next = await this.child(cur, name, signal);
      if (!next && typed && name.includes("\\")) next = await this.child(cur, unescapeName(name), signal);
      if (!next) return undefined;
      cur = next;
      found += `/${next.name}`;
    }
    return { entry: cur, path: found || "/" };
  }

  /** Depth-first, name-ordered walk: the entry itself first, then its descendants. */
  async *walk(entry: Entry, path: string, signal?: AbortSignal): AsyncGenerator<{ path: string; entry: Entry }> {
    yield { path, entry };
    if (entry.info.kind !== "dir") return;
    const children = await this.children(entry, signal);
    // Listings of the subdirectories are loaded ahead (a few at a time, in
    // walk order): one at a time, a cold disk kept the walk and everything
    // fed by it waiting.
    let ahead = 0;
    const prefetch = (from: number) => {
      for (let i = Math.max(from, ahead); i < children.length && i < from + PREFETCH_DIRS; i++) {
        const c = children[i]!;
        if (c.info.kind === "dir" && c.tree) this.load(c, signal).catch(() => {}); // its error comes when the walk reaches it
        ahead = i + 1;
      }
    };
    for (let i = 0; i < children.length; i++) {
      prefetch(i);
      const child = children[i]!;
      yield* this.walk(child, joinPath(path, child.name), signal);
    }
  }
}

/** lookupTyped() in a snapshot, or a PATH_NOT_FOUND error naming the path. */
export async function lookupOrThrow(reader: TreeReader, header: SnapshotHeader, path: string, signal?: AbortSignal): Promise<{ entry: Entry; path: string }> {
  const e = await reader.lookupTyped(header.root, path, signal);
  if (!e) throw new CofferError("PATH_NOT_FOUND", `${path}: no such file or directory in snapshot ${toHex(header.id).slice(0, 8)}`);
  return e;
}
