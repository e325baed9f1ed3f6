/**
 * A file entry's content read through the repository, for exporters that
 * take content as pieces and for `cat`: chunks fetched with ranged reads, a
 * few ahead, each authenticated before it is given out, runs of zeros
 * passed as holes (holes.ts).
 */
import type { ContentPiece } from "../../connectors/records.js";
import { BlobType } from "../../repository/codec.js";
import type { Repository } from "../../repository/repository.js";
import { CorruptError } from "../../util/errors.js";
import { toHex } from "../../util/hex.js";
import type { ChunkRef, Entry } from "../tree.js";
import { pieces } from "./holes.js";

/** Chunk fetches in flight ahead of the one being given out. */
const PREFETCH = 8;

/** Content of a file entry as pieces, with a read-ahead window of chunk fetches. */
export async function* readChunks(repo: Repository, chunks: readonly ChunkRef[], signal?: AbortSignal): AsyncGenerator<ContentPiece> {
  const queue: Promise<Uint8Array>[] = [];
  let next = 0;
  let offset = 0;
  const fill = () => {
    while (queue.length < PREFETCH && next < chunks.length) {
      const c = chunks[next++]!;
      const p = repo.getBlob(BlobType.CHUNK, c.mac, signal);
      p.catch(() => {}); // observed when its turn comes
      queue.push(p);
    }
  };
  fill();
  for (let i = 0; i < chunks.length; i++) {
    const data = await queue.shift()!;
    fill();
    const length = data.byteLength;
    const c = chunks[i]!;
    if (length !== c.length) throw new CorruptError(`chunk ${i}`, `has ${length} bytes, expected ${c.length}`, { type: BlobType.CHUNK, mac: toHex(c.mac) });
    yield* pieces(data, offset);
    offset += length;
  }
}

/** The whole content of a file entry, in order (for `cat`). */
export async function* fileBytes(repo: Repository, entry: Entry, signal?: AbortSignal): AsyncGenerator<Uint8Array> {
  for await (const p of readChunks(repo, entry.chunks ?? [], signal)) yield p.data ?? new Uint8Array(p.length);
}
