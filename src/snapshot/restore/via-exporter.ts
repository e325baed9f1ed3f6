/**
 * An entry restored through the exporter's export(): its record and, for a
 * file, its content read through the repository (content.ts). An exporter
 * reports a failure as text; the error the content threw, if it did, is
 * kept with it, so that damage still arrives as a CorruptError.
 */
import type { ContentPiece, Exporter, ExportRecord } from "../../connectors/records.js";
import type { WantedBlobs } from "../../repository/blob-reader.js";
import type { Repository } from "../../repository/repository.js";
import { throwIfAborted } from "../../util/errors.js";
import type { Entry } from "../tree.js";
import { chunkPieces, readChunks } from "./content.js";
import type { Failure } from "./outcome.js";

export interface ExportOptions {
  /** Whether the entry's extended attributes go with it (an EXPORTXATTR exporter). */
  xattrs: boolean;
  signal?: AbortSignal | undefined;
  /** A file's chunks, wanted from the restore's BlobReader (else read alone); given up once the export ends. */
  blobs?: WantedBlobs | undefined;
}

/** Exports `e` at `path`; resolves to why it failed, or undefined. Only an interrupt rejects. */
export async function exportEntry(repo: Repository, exporter: Exporter, path: string, e: Entry, o: ExportOptions): Promise<Failure | undefined> {
  const rec: ExportRecord = { pathname: path, fileInfo: e.info };
  if (e.target !== undefined) rec.target = e.target;
  if (e.xattrs && o.xattrs) rec.xattrs = e.xattrs;
  let thrown: Error | undefined;
  const chunks = e.chunks ?? [];
  if (e.info.kind === "file") rec.content = () => noting(o.blobs ? chunkPieces(o.blobs, chunks) : readChunks(repo, chunks, o.signal), (err) => (thrown = err));
  try {
    const error = (await exporter.export(rec, { signal: o.signal })).error;
    return error === undefined ? undefined : { message: error, ...(thrown ? { error: thrown } : {}) };
  } catch (err) {
    throwIfAborted(o.signal);
    return { message: (err as Error).message, error: err as Error };
  } finally {
    // An exporter that never took the content (or stopped early) leaves no blob held for it.
    o.blobs?.release();
  }
}

/** `content` as it is, handing the error it throws (if it does) to `note` on the way. */
async function* noting(content: AsyncGenerator<ContentPiece>, note: (e: Error) => void): AsyncGenerator<ContentPiece> {
  try {
    yield* content;
  } catch (e) {
    note(e as Error);
    throw e;
  }
}
