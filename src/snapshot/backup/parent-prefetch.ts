/**
 * The parent snapshot's listings loaded ahead of a backup's walk, in the
 * order the walk comes in: depth first, by name, from the directory it asked
 * for last, then that directory's later siblings and its ancestors'. A few
 * load at once, and at most AHEAD of them wait unasked. Asked one by one, as
 * the walk reached them, a no-change backup waited a round trip per
 * directory on a remote store. A walk that asks for a directory this did
 * not expect restarts it there.
 */
import { joinPath, type TreeReader } from "../tree-reader.js";
import type { Entry } from "../tree.js";

/** Listings loading ahead at once. */
const IN_FLIGHT = 8;
/** Listings loaded ahead and not yet asked for (well within TreeReader's cache of decoded listings). */
const AHEAD = 64;

export class ListingPrefetch {
  /** Directories to load ahead, the next one last. */
  private stack: { path: string; dir: Entry }[] = [];
  /** Paths on the stack that are still to be loaded (the walk may ask for one first). */
  private readonly stacked = new Map<string, Entry>();
  /** Paths loaded or loading ahead and not yet asked for, in the order they were started. */
  private readonly ahead = new Set<string>();
  private inFlight = 0;
  /** Bumped by each restart: loads started before it are not followed. */
  private epoch = 0;

  constructor(
    private readonly reader: TreeReader,
    private readonly root: Entry,
    private readonly signal: AbortSignal,
  ) {}

  /** The walk asks for the listing of directory `path`. */
  asked(path: string): void {
    if (this.ahead.has(path)) {
      // Those started before it the walk has passed, or never asks for.
      for (const p of this.ahead) {
        this.ahead.delete(p);
        if (p === path) break;
      }
      this.pump();
      return;
    }
    const dir = this.stacked.get(path);
    if (dir) {
      // Next in line, the walk's own load shares the read; what lies below it comes next.
      this.stacked.delete(path);
      this.follow(path, dir, this.epoch);
      return;
    }
    this.stack = [];
    this.stacked.clear();
    this.ahead.clear();
    void this.restart(path, ++this.epoch).catch(() => {}); // the walk meets any error itself
  }

  /** Fills the stack with what follows `path` in the walk: its ancestors' later subdirectories, then its own. */
  private async restart(path: string, epoch: number): Promise<void> {
    let cur = this.root;
    let at = "/";
    for (const name of path.split("/").filter((c) => c !== "")) {
      const list = await this.reader.children(cur, this.signal);
      if (epoch !== this.epoch) return;
      const i = list.findIndex((e) => e.name === name);
      const next = list[i];
      if (!next || next.info.kind !== "dir") return;
      this.push(at, list.slice(i + 1));
      cur = next;
      at = joinPath(at, name);
    }
    this.follow(at, cur, epoch);
  }

  /** Once the listing of `path` is loaded, its subdirectories go on top of the stack. */
  private follow(path: string, dir: Entry, epoch: number): void {
    this.reader.children(dir, this.signal).then(
      (list) => {
        if (epoch === this.epoch) this.push(path, list);
      },
      () => {},
    );
  }

  /** Puts the subdirectories among `entries` of `path` on the stack, the first on top, and loads what may be. */
  private push(path: string, entries: readonly Entry[]): void {
    for (let i = entries.length - 1; i >= 0; i--) {
      const e = entries[i]!;
      if (e.info.kind !== "dir" || e.tree === undefined || e.error !== undefined) continue;
      const p = joinPath(path, e.name);
      this.stack.push({ path: p, dir: e });
      this.stacked.set(p, e);
    }
    this.pump();
  }

  private pump(): void {
    while (!this.signal.aborted && this.inFlight < IN_FLIGHT && this.ahead.size < AHEAD && this.stack.length > 0) {
      const { path, dir } = this.stack.pop()!;
      if (this.stacked.get(path) !== dir) continue; // asked for by the walk meanwhile
      this.stacked.delete(path);
      this.ahead.add(path);
      this.inFlight++;
      const epoch = this.epoch;
      this.reader.children(dir, this.signal).then(
        (list) => {
          this.inFlight--;
          // An empty directory's listing is never asked for (nothing is in it).
          if (list.length === 0) this.ahead.delete(path);
          if (epoch === this.epoch) this.push(path, list);
          else this.pump();
        },
        () => {
          this.inFlight--;
          this.ahead.delete(path);
          this.pump();
        },
      );
    }
  }
}
