/**
 * A file entry's content read through the repository, for exporters that
 * take content as pieces and for `cat`: chunks taken in order from a
 * BlobReader (planned, merged ranged reads), each authenticated before it
 * is given out, runs of zeros passed as holes (holes.ts).
 */
import type { ContentPiece } from "../../connectors/records.js";
import { BlobReader, type WantedBlobs } from "../../repository/blob-reader.js";
import { BlobType } from "../../repository/codec.js";
import type { Repository } from "../../repository/repository.js";
import { CorruptError } from "../../util/errors.js";
import { toHex } from "../../util/hex.js";
import type { ChunkRef, Entry } from "../tree.js";
import { pieces } from "./holes.js";

/** Bytes of read data held for one file read alone (about what 8 chunks read ahead held). */
const ONE_FILE_BUDGET = 8 << 20;

/** The chunks of a file as a reader's wants (taken by chunkPieces). */
export function wantChunks(reader: BlobReader, chunks: readonly ChunkRef[]): WantedBlobs {
  return reader.want(
    BlobType.CHUNK,
    chunks.map((c) => c.mac),
  );
}

/** Content of a file entry as pieces: its chunks, wanted from a reader as `blobs`, taken in order; gives up the rest when it ends. */
export async function* chunkPieces(blobs: WantedBlobs, chunks: readonly ChunkRef[]): AsyncGenerator<ContentPiece> {
  let offset = 0;
  try {
    for (let i = 0; i < chunks.length; i++) {
      const data = await blobs.next();
      const length = data.byteLength;
      const c = chunks[i]!;
      if (length !== c.length) throw new CorruptError(`chunk ${i}`, `has ${length} bytes, expected ${c.length}`, { type: BlobType.CHUNK, mac: toHex(c.mac) });
      yield* pieces(data, offset);
      offset += length;
    }
  } finally {
    blobs.release();
  }
}

/** Content of a file entry read alone (its own reader), as pieces. */
export function readChunks(repo: Repository, chunks: readonly ChunkRef[], signal?: AbortSignal): AsyncGenerator<ContentPiece> {
  const reader = new BlobReader(repo, { budget: ONE_FILE_BUDGET, signal });
  const blobs = wantChunks(reader, chunks);
  reader.end();
  return chunkPieces(blobs, chunks);
}

/** The whole content of a file entry, in order (for `cat`). */
export async function* fileBytes(repo: Repository, entry: Entry, signal?: AbortSignal): AsyncGenerator<Uint8Array> {
  for await (const p of readChunks(repo, entry.chunks ?? [], signal)) yield p.data ?? new Uint8Array(p.length);
}
