/**
 * A source snapshot as an importer (`sync`): its trees walked depth-first
 * in name order, each entry given as the record the backup pipeline takes
 * (the entry's metadata, target, extended attributes and error as stored),
 * a file's content read from the source repository chunk by chunk, each
 * authenticated by getBlob. Sparse files come out zero-filled: trees record
 * no holes, a restore cuts zero runs out again (restore/holes.ts).
 *
 * With a `twin` (the source snapshot the destination's parent copy was made
 * from) it tells which files have the same content there (`sameContent`):
 * the pipeline reuses the parent copy's chunks for those only, as a copy's
 * metadata alone says nothing about its content.
 */
import type { Importer, ImportRecord } from "../../connectors/records.js";
import type { Repository } from "../../repository/repository.js";
import type { SnapshotHeader } from "../header.js";
import { fileBytes } from "../restore/content.js";
import type { ChunkRef, Entry } from "../tree.js";
import { joinPath, TreeReader } from "../tree-reader.js";

/** Subdirectory listings loaded ahead of the walk (as TreeReader.walk does). */
const PREFETCH_DIRS = 8;

/** Where a walked entry stands against the twin: the twin's entry at its path, or the whole subtree known identical. */
type Twin = Entry | undefined | "identical";

function sameChunks(a: readonly ChunkRef[] | undefined, b: readonly ChunkRef[] | undefined): boolean {
  if (!a || !b || a.length !== b.length) return false;
  return a.every((c, i) => c.length === b[i]!.length && Buffer.compare(c.mac, b[i]!.mac) === 0);
}

/** Whether a file entry has the content of its twin's entry. */
function sameFile(e: Entry, twin: Twin): boolean {
  if (twin === "identical") return true;
  return twin !== undefined && twin.info.kind === "file" && twin.error === undefined && e.error === undefined && sameChunks(e.chunks, twin.chunks);
}

export class SnapshotImporter implements Importer {
  readonly origin: string;
  readonly type: string;
  readonly root: string;
  readonly flags = 0;
  private readonly reader: TreeReader;
  /** The records of files whose content the twin has at the same path. */
  private readonly same = new WeakSet<ImportRecord>();

  constructor(
    private readonly source: Repository,
    private readonly header: SnapshotHeader,
    private readonly twin: SnapshotHeader | undefined,
  ) {
    ({ origin: this.origin, type: this.type, root: this.root } = header.importer);
    this.reader = new TreeReader(source);
  }

  /** BackupOptions.sameContent: whether the twin holds this record's content at its path. */
  readonly sameContent = (r: ImportRecord): boolean => this.same.has(r);

  async ping(): Promise<void> {}

  async *import(opts: { signal?: AbortSignal | undefined } = {}): AsyncIterable<ImportRecord> {
    yield* this.walk(this.header.root, "/", this.twin?.root, opts.signal);
  }

  async close(): Promise<void> {}

  private async *walk(e: Entry, path: string, twin: Twin, signal: AbortSignal | undefined): AsyncGenerator<ImportRecord> {
    yield this.record(e, path, twin, signal);
    if (e.info.kind !== "dir" || !e.tree) return;
    const identical = twin === "identical" || (twin?.tree !== undefined && Buffer.compare(twin.tree, e.tree) === 0);
    const [children, twins] = await Promise.all([
      this.reader.children(e, signal),
      identical || twin === undefined || twin.info.kind !== "dir" ? undefined : this.reader.childrenByName(twin, signal).catch(() => undefined),
    ]);
    let ahead = 0;
    for (let i = 0; i < children.length; i++) {
      for (; ahead < children.length && ahead < i + PREFETCH_DIRS; ahead++) {
        const c = children[ahead]!;
        if (c.info.kind === "dir" && c.tree) this.reader.children(c, signal).catch(() => {}); // its error comes when the walk reaches it
      }
      const c = children[i]!;
      yield* this.walk(c, joinPath(path, c.name), identical ? "identical" : twins?.get(c.name), signal);
    }
  }

  private record(e: Entry, path: string, twin: Twin, signal: AbortSignal | undefined): ImportRecord {
    const r: ImportRecord = { pathname: path, fileInfo: { ...e.info } };
    if (e.target !== undefined) r.target = e.target;
    if (e.xattrs && e.xattrs.length > 0) r.xattrs = e.xattrs;
    if (e.error !== undefined) r.error = e.error;
    else if (e.info.kind === "file") {
      r.open = () => Promise.resolve(fileBytes(this.source, e, signal));
      if (sameFile(e, twin)) this.same.add(r);
    }
    return r;
  }
}
