/**
 * Reading a snapshot's trees: looking up a path, and walking a tree
 * depth-first in name order with a small cache of decoded directories
 * (memory stays bounded by the cache and the depth). Which snapshot to
 * read is snapshots.ts's business.
 */
import { BlobType } from "../repository/codec.js";
import type { Repository } from "../repository/repository.js";
import { CofferError } from "../util/errors.js";
import { toHex } from "../util/hex.js";
import { unescapeName } from "../util/names.js";
import type { SnapshotHeader } from "./header.js";
import { decodeTree, type Entry } from "./tree.js";

/** The path of `name` in the directory at `dir` (both as stored, starting with "/"). */
export function joinPath(dir: string, name: string): string {
  return dir === "/" ? `/${name}` : `${dir}/${name}`;
}

/** The entries of the TREE blob `mac`, read and decoded (no cache: TreeReader keeps one). */
export async function readListing(repo: Pick<Repository, "getBlob">, mac: Uint8Array, signal?: AbortSignal): Promise<Entry[]> {
  return decodeTree(await repo.getBlob(BlobType.TREE, mac, signal), `tree ${toHex(mac).slice(0, 16)}`);
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
    const p = (async () => ({ list: await readListing(this.repo, mac, signal) }) as Listing)();
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
