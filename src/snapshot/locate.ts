/**
 * Which paths of snapshots match glob patterns (docs/CLI.md, "locate"). A
 * subtree's matches are memoised by its tree MAC (and its path, when a
 * pattern is matched against full paths) within one Locator, so a tree
 * that snapshots share is read and searched once; the memo is bounded by
 * the number of entries it holds, least recently used dropped first.
 */
import type { Repository } from "../repository/repository.js";
import type { Glob } from "../util/glob.js";
import { throwIfAborted } from "../util/errors.js";
import { toHex } from "../util/hex.js";
import { joinPath, readListing } from "./tree-reader.js";
import { compareNames, type Entry, isTreeDir } from "./tree.js";

export interface LocateMatch {
  /** As stored, starting with "/". */
  path: string;
  entry: Entry;
}

/** The matches below one directory: its matching children and its subdirectories that hold matches. */
interface Found {
  entries: Entry[];
  subs: [Entry, Found][];
  /** Matches in all. */
  count: number;
}

const NONE: Found = { entries: [], subs: [], count: 0 };

/** The memo's bound by default: its trees plus the matches they hold (each a match's name and stat, some hundred bytes). */
const MEMO_WEIGHT = 1 << 17;

export class Locator {
  private readonly memo = new Map<string, { found: Found; weight: number }>();
  private weight = 0;
  private readonly byPath: boolean;
  /** TREE blobs read so far (a memo miss each). */
  treesRead = 0;

  constructor(
    private readonly repo: Pick<Repository, "getBlob">,
    private readonly globs: readonly Glob[],
    private readonly o: { signal?: AbortSignal | undefined; memoWeight?: number } = {},
  ) {
    this.byPath = globs.some((g) => g.fullPath);
  }

  /** The matching entries below `root` (itself not included), in byte order of their paths. */
  async find(root: Entry): Promise<LocateMatch[]> {
    const out: LocateMatch[] = [];
    flatten(await this.search(root, "/"), "/", out);
    return out.sort((a, b) => compareNames(a.path, b.path));
  }

  private matches(name: string, path: string): boolean {
    return this.globs.some((g) => g.matches(g.fullPath ? path : name));
  }

  private async search(dir: Entry, path: string): Promise<Found> {
    if (!isTreeDir(dir) || !dir.tree) return NONE;
    const key = this.byPath ? `${toHex(dir.tree)}\0${path}` : toHex(dir.tree);
    const hit = this.memo.get(key);
    if (hit) {
      this.memo.delete(key);
      this.memo.set(key, hit);
      return hit.found;
    }
    throwIfAborted(this.o.signal);
    this.treesRead++;
    const found: Found = { entries: [], subs: [], count: 0 };
    for (const c of await readListing(this.repo, dir.tree, this.o.signal)) {
      const p = joinPath(path, c.name);
      if (this.matches(c.name, p)) {
        // What a match is shown with: its chunk list and attributes would weigh on the memo for nothing.
        found.entries.push({ name: c.name, info: c.info, target: c.target, tree: c.tree, error: c.error });
        found.count++;
      }
      if (isTreeDir(c)) {
        const sub = await this.search(c, p);
        if (sub.count > 0) {
          found.subs.push([c, sub]);
          found.count += sub.count;
        }
      }
    }
    this.remember(key, found);
    return found;
  }

  private remember(key: string, found: Found): void {
    const limit = this.o.memoWeight ?? MEMO_WEIGHT;
    const weight = 1 + found.count;
    if (weight > limit) return;
    this.memo.set(key, { found, weight });
    this.weight += weight;
    for (const [k, v] of this.memo) {
      if (this.weight <= limit) break;
      this.memo.delete(k);
      this.weight -= v.weight;
    }
  }
}

function flatten(f: Found, path: string, out: LocateMatch[]): void {
  for (const e of f.entries) out.push({ path: joinPath(path, e.name), entry: e });
  for (const [dir, sub] of f.subs) flatten(sub, joinPath(path, dir.name), out);
}
