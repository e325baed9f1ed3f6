/**
 * The end of a backup, and of each checkpoint: the directories built
 * bottom-up from the scan cache as TREE blobs, then the snapshot header
 * committed (docs/FORMAT.md, "Write order").
 */
import { encode } from "@msgpack/msgpack";
import { BlobType } from "../../repository/codec.js";
import { randomKey } from "../../repository/crypto.js";
import type { Repository } from "../../repository/repository.js";
import { InFlight } from "../../util/concurrency.js";
import { encodeHeader, type SnapshotHeader, type SyncOrigin } from "../header.js";
import { compareNames, type Entry, encodeTree, encodeTreeOf, packEntry, unpackEntry } from "../tree.js";
import type { ScanCache } from "./scancache.js";
import type { Tally } from "./tally.js";

/** Trees being stored at once while they are built. */
const TREES_IN_FLIGHT = 16;

/** What a snapshot header says about its run, besides its trees and counts. */
export interface SnapshotOrigin {
  hostname: string;
  username: string;
  os: string;
  arch: string;
  importer: SnapshotHeader["importer"];
  tags: string[];
  /** The run's ID, shared by its checkpoints. */
  run: Uint8Array;
  /** When the backup started: ns since the epoch, and process.hrtime.bigint(). */
  timeNs: bigint;
  startedHr: bigint;
  parent: SnapshotHeader | undefined;
  /** The latest few snapshots when the backup started (PRIOR_SNAPSHOTS). */
  prior: Uint8Array[];
  /** A copy made by `sync`: where it came from. */
  syncOf?: SyncOrigin | undefined;
}

export class TreeSaver {
  constructor(
    private readonly repo: Repository,
    private readonly cache: ScanCache,
    private readonly tally: Tally,
    private readonly origin: SnapshotOrigin,
  ) {}

  /** Stores the trees of every entry in the scan cache; returns the root entry. */
  build(signal: AbortSignal | undefined): Promise<Entry> {
    return buildTrees(this.repo, this.cache, signal);
  }

  /** Stores the ERRORS blob, if any, and commits a header for `root`: a checkpoint's when `checkpoint` is set. */
  async commit(root: Entry, checkpoint: number | undefined, signal: AbortSignal | undefined): Promise<SnapshotHeader> {
    const h = await this.header(root, checkpoint, signal);
    await this.repo.commitSnapshot(h.id, encodeHeader(h), signal);
    return h;
  }

  /** The final snapshot: its trees, every pending blob flushed, then its header. */
  async commitFinal(signal: AbortSignal | undefined): Promise<SnapshotHeader> {
    const root = await this.build(signal);
    await this.repo.flush(signal);
    return this.commit(root, undefined, signal);
  }

  private async header(root: Entry, checkpoint: number | undefined, signal: AbortSignal | undefined): Promise<SnapshotHeader> {
    const { errors } = this.tally;
    const o = this.origin;
    let errorsMac: Uint8Array | undefined;
    if (errors.length > 0) errorsMac = (await this.repo.putBlob(BlobType.ERRORS, encode(errors), undefined, signal)).mac;
    return {
      id: randomKey(32),
      timeNs: o.timeNs,
      durationNs: process.hrtime.bigint() - o.startedHr,
      hostname: o.hostname,
      username: o.username,
      os: o.os,
      arch: o.arch,
      importer: o.importer,
      tags: o.tags,
      root,
      summary: this.tally.snapshotSummary(),
      run: o.run,
      ...(checkpoint !== undefined ? { checkpoint } : {}),
      ...(o.parent ? { parent: o.parent.id } : {}),
      ...(errorsMac ? { errors: errorsMac } : {}),
      ...(o.prior.length > 0 ? { prior: o.prior } : {}),
      ...(o.syncOf ? { syncOf: o.syncOf } : {}),
    };
  }
}

interface Frame {
  parts: string[];
  entry: Entry;
  /** The children's names and packEntry() bytes. */
  children: { name: string; packed: Uint8Array }[];
}

function syntheticDir(name: string): Entry {
  return {
    name,
    info: { name, kind: "dir", size: 0, mode: 0o755, mtimeNs: 0n, dev: 0n, ino: 0n, uid: 0, gid: 0, nlink: 1 },
  };
}

function isAncestor(a: string[], b: string[]): boolean {
  if (a.length >= b.length) return false;
  for (let i = 0; i < a.length; i++) if (a[i] !== b[i]) return false;
  return true;
}

/**
 * Builds TREE blobs bottom-up from the scan cache; returns the root entry.
 * Directories the cache has no entry for (the importer sent none) are made
 * up, owned by root, mode 755.
 */
export async function buildTrees(repo: Repository, cache: ScanCache, signal?: AbortSignal): Promise<Entry> {
  const stack: Frame[] = [];
  let root: Entry | undefined;
  // A tree's name is its MAC, known before it is stored: its parent does not
  // wait for the store, and several trees are stored at once. Entries other
  // than directories go into their tree as the bytes the scan cache holds
  // (the same bytes, without decoding and encoding each again).
  const puts = new InFlight(TREES_IN_FLIGHT);
  const close = async () => {
    const f = stack.pop()!;
    // The scan gives children in byte order of their names, the tree's order
    // (sorted here only should that ever not hold).
    const kids = f.children;
    for (let i = 1; i < kids.length; i++) {
      if (compareNames(kids[i - 1]!.name, kids[i]!.name) > 0) {
        kids.sort((x, y) => compareNames(x.name, y.name));
        break;
      }
    }
    const raw = encodeTreeOf(kids.map((c) => c.packed));
    const mac = repo.mac.mac(raw);
    await puts.add(repo.putBlob(BlobType.TREE, raw, mac, signal));
    f.entry.tree = mac;
    const up = stack.at(-1);
    if (up) up.children.push({ name: f.entry.name, packed: packEntry(f.entry) });
    else root = f.entry;
  };
  const walk = async (): Promise<Entry> => {
    for (const { parts, packed, dir } of cache.scanPacked()) {
      while (stack.length > 0 && !isAncestor(stack.at(-1)!.parts, parts)) await close();
      if (stack.length === 0 && parts.length > 0) stack.push({ parts: [], entry: syntheticDir(""), children: [] });
      while (stack.length > 0 && stack.at(-1)!.parts.length < parts.length - 1) {
        const p = parts.slice(0, stack.at(-1)!.parts.length + 1);
        stack.push({ parts: p, entry: syntheticDir(p.at(-1)!), children: [] });
      }
      if (dir) stack.push({ parts, entry: unpackEntry(packed, "scan cache"), children: [] });
      else if (parts.length === 0) root = unpackEntry(packed, "scan cache");
      else stack.at(-1)!.children.push({ name: parts.at(-1)!, packed });
    }
    while (stack.length > 0) await close();
    return root ?? { ...syntheticDir(""), tree: (await repo.putBlob(BlobType.TREE, encodeTree([]), undefined, signal)).mac };
  };
  const top = await walk();
  await puts.drain();
  return top;
}
