/**
 * The live blobs of a repository, as garbage collection defines them
 * (docs/FORMAT.md, "Garbage collection"): the header, ERRORS blob, trees
 * and chunks of every snapshot no `removed` record names, and of every
 * removed snapshot still inside the grace period. A live snapshot that
 * cannot be read whole stops the walk: what it references is unknown.
 */
import { BlobType } from "../repository/codec.js";
import type { Repository } from "../repository/repository.js";
import { blobKey } from "../repository/state.js";
import { mapLimit } from "../util/concurrency.js";
import { CorruptError, isCofferError, throwIfAborted } from "../util/errors.js";
import { toHex } from "../util/hex.js";
import { decodeHeader } from "./header.js";
import { decodeTree, type Entry } from "./tree.js";

export interface LiveSet {
  /** blobKey() of every live blob. */
  keys: Set<string>;
  /** Live snapshots: not removed, and removed less than the grace period ago (`removedInGrace`). */
  snapshots: number;
  removedInGrace: number;
}

/** Trees read at once. */
const TREE_READS = 8;

/** The live blobs at `nowMs` with a grace period of `graceMs`. */
export async function liveBlobs(repo: Repository, o: { graceMs: number; nowMs: number; signal?: AbortSignal | undefined }): Promise<LiveSet> {
  const ids = [...repo.index.snapshots.values()];
  let removedInGrace = 0;
  for (const r of repo.index.removed.values()) {
    if (o.nowMs - r.timeMs < o.graceMs && repo.index.has(BlobType.SNAPSHOT, r.snapshot)) {
      ids.push(r.snapshot);
      removedInGrace++;
    }
  }
  const keys = new Set<string>();
  const trees: Uint8Array[] = [];
  const visit = (e: Entry) => {
    for (const c of e.chunks ?? []) keys.add(blobKey(BlobType.CHUNK, c.mac));
    if (e.tree && !keys.has(blobKey(BlobType.TREE, e.tree))) {
      keys.add(blobKey(BlobType.TREE, e.tree));
      trees.push(e.tree);
    }
  };
  const read = async (type: BlobType, mac: Uint8Array, what: string): Promise<Uint8Array> => {
    try {
      return await repo.getBlob(type, mac, o.signal);
    } catch (e) {
      throwIfAborted(o.signal);
      if (!isCofferError(e, "CORRUPT") && !isCofferError(e, "NOT_FOUND")) throw e;
      throw new CorruptError(what, `unreadable, so what it references is unknown (${e.message}); run \`coffer check\` and \`coffer repair\` first`);
    }
  };
  for (const id of ids) {
    throwIfAborted(o.signal);
    const what = `snapshot ${toHex(id).slice(0, 8)}`;
    const header = decodeHeader(await read(BlobType.SNAPSHOT, id, what), id);
    keys.add(blobKey(BlobType.SNAPSHOT, id));
    if (header.errors) keys.add(blobKey(BlobType.ERRORS, header.errors));
    visit(header.root);
  }
  while (trees.length > 0) {
    const batch = trees.splice(0, trees.length);
    const listed = await mapLimit(batch, TREE_READS, async (mac) => decodeTree(await read(BlobType.TREE, mac, `tree ${toHex(mac).slice(0, 12)}`), `tree ${toHex(mac).slice(0, 12)}`));
    for (const children of listed) for (const c of children) visit(c);
  }
  return { keys, snapshots: ids.length, removedInGrace };
}
