/**
 * Hard links within one backup. Files of one inode (nlink > 1) share the
 * chunks of the first of them to be stored, read once; a record naming
 * another as its `linkTarget` (tar link entries) takes that file's chunks,
 * waiting for it while it is being stored.
 */
import type { FileInfo, ImportRecord } from "../../connectors/records.js";
import { CofferError } from "../../util/errors.js";
import type { ChunkRef, Entry } from "../tree.js";

/** The key of a file with other hard links, or undefined for a file with none. */
export function inodeKey(info: FileInfo): string | undefined {
  return info.nlink > 1 ? `${info.dev}:${info.ino}` : undefined;
}

/** Gives a file's chunks to the links waiting for it (undefined: it has none to give). */
export type GiveChunks = (chunks: ChunkRef[] | undefined) => void;

export class HardLinks {
  /** The chunks of the first file stored of each inode (see inodeKey), settled once it is. */
  private readonly byInode = new Map<string, Promise<ChunkRef[] | undefined>>();
  /** Files being stored, by path. */
  private readonly inflight = new Map<string, Promise<ChunkRef[] | undefined>>();

  /** `stored`: the entry stored at a path so far (the scan cache's). */
  constructor(private readonly stored: (path: string) => Entry | undefined) {}

  /** The chunks of the inode's first file, if one was stored or is being stored. */
  ofInode(key: string): Promise<ChunkRef[] | undefined> | undefined {
    return this.byInode.get(key);
  }

  hasInode(key: string): boolean {
    return this.byInode.has(key);
  }

  /** Makes this file the inode's first: `chunks` settles with its chunks (undefined when it failed). */
  setInode(key: string, chunks: Promise<ChunkRef[] | undefined>): void {
    this.byInode.set(key, chunks);
  }

  /**
   * Marks the file at `path` as being stored; called before its first
   * await, so that a link yielded later finds it. Returns what gives its
   * chunks to the links that wait; end() must follow.
   */
  begin(path: string): GiveChunks {
    let give!: GiveChunks;
    this.inflight.set(path, new Promise<ChunkRef[] | undefined>((resolve) => (give = resolve)));
    return give;
  }

  /** Ends what begin() started (links still waiting get undefined unless `give` was called). */
  end(path: string, give: GiveChunks): void {
    give(undefined);
    this.inflight.delete(path);
  }

  /** The chunks of `r.linkTarget`: a file stored earlier in this backup, or being stored. */
  async target(r: ImportRecord): Promise<ChunkRef[]> {
    const t = r.linkTarget!;
    const chunks = await (this.inflight.get(t) ?? Promise.resolve(this.stored(t)?.chunks));
    if (!chunks) throw new CofferError("IO", `hard link target ${t} is not a stored file`);
    return chunks;
  }
}
