/**
 * A backup (the snapshot builder), wired from its parts: records from the
 * importer go to a few dozen consumers that store each as an entry
 * (entry-saver.ts: metadata, extended attributes, a file's chunks from
 * file-saver.ts) in the scan cache; checkpoints commit partial snapshots
 * meanwhile (checkpointer.ts); once the importer is done, the trees are
 * built bottom-up from the scan cache and the header committed
 * (tree-saver.ts). Progress leaves as typed events (events.ts).
 */
import { LocationFlag } from "../../connectors/flags.js";
import type { Importer, ImportRecord } from "../../connectors/records.js";
import { makeChunker } from "../../repository/chunker.js";
import { randomKey } from "../../repository/crypto.js";
import type { Repository } from "../../repository/repository.js";
import { throwIfAborted } from "../../util/errors.js";
import type { SnapshotHeader, SyncOrigin } from "../header.js";
import { type CheckpointPolicy, Checkpointer, defaultCheckpoints } from "./checkpointer.js";
import { EntrySaver } from "./entry-saver.js";
import type { BackupEvent } from "./events.js";
import { FileSaver } from "./file-saver.js";
import { HardLinks } from "./hard-links.js";
import { findParent, ParentIndex } from "./parent.js";
import { SCAN_CACHE_MEMORY, ScanCache } from "./scancache.js";
import { Tally } from "./tally.js";
import { TreeSaver } from "./tree-saver.js";
import { XattrRecords } from "./xattrs.js";

export interface BackupOptions {
  importer: Importer;
  tags?: string[];
  hostname: string;
  username: string;
  os: string;
  arch: string;
  signal?: AbortSignal | undefined;
  /** Records processed at once (default 64; 4 with `workers: 0`). */
  concurrency?: number;
  onEvent?: (e: BackupEvent) => void;
  /** Skip change detection: read every file. */
  force?: boolean;
  /** Worker threads reading local files (default: one per core; 0 reads them on the main thread). */
  workers?: number;
  /** Default: NEEDACK_CHECKPOINTS for NEEDACK importers (NEEDACK_FILE_STORE_CHECKPOINTS on a FILE store), else DEFAULT_CHECKPOINTS. */
  checkpoints?: CheckpointPolicy | undefined;
  /** The snapshot to start from in place of the latest of the same source (null: none), as `sync` chooses it. */
  parent?: SnapshotHeader | null | undefined;
  /** With `parent`: the header's `prior`, as the caller knows the snapshots already (the repository's are not listed again). */
  prior?: Uint8Array[] | undefined;
  /**
   * Where given, whether a file has the content of the parent's entry at its
   * path, in place of the metadata comparison (`sync`: the two source
   * snapshots have the same chunks there, whatever the metadata says).
   */
  sameContent?: ((r: ImportRecord) => boolean) | undefined;
  /** A copy made by `sync`: its header takes the source snapshot's time and names its origin. */
  copyOf?: { timeNs: bigint; syncOf: SyncOrigin } | undefined;
  /** Where the scan cache goes when it moves to disk (default: os.tmpdir()). */
  tmpDir?: string | undefined;
  /** The time the snapshot records (ns since the epoch; default: when the backup starts), for importing old archives and timelines. */
  timeNs?: bigint | undefined;
}

export interface BackupResult {
  header: SnapshotHeader;
  parent: SnapshotHeader | undefined;
}

export async function backup(repo: Repository, o: BackupOptions): Promise<BackupResult> {
  const startedHr = process.hrtime.bigint();
  const run = randomKey(16);
  const timeNs = o.copyOf?.timeNs ?? o.timeNs ?? BigInt(Date.now()) * 1_000_000n;
  // The work stops at the first failure (or the caller's abort). Writes to
  // the repository take the caller's signal only: a packfile being stored
  // holds other files' chunks too, and a checkpoint already committing
  // finishes.
  const stopper = new AbortController();
  const signal = o.signal ? AbortSignal.any([o.signal, stopper.signal]) : stopper.signal;
  const writeSignal = o.signal;
  const imp = o.importer;
  const tally = new Tally(repo, o.onEvent);
  const given = o.parent !== undefined;
  const found =
    given && o.prior !== undefined
      ? { parent: undefined, prior: o.prior }
      : await findParent(repo, { hostname: o.hostname, type: imp.type, root: imp.root, force: (o.force ?? false) || given, onWarning: tally.warn }, signal);
  const parent = given ? (o.parent ?? undefined) : found.parent;
  const prior = found.prior;
  const parentIndex = parent ? new ParentIndex(repo, parent, signal, tally.warn, o.sameContent) : null;
  // In memory when there is a parent: such a backup waits on this thread's
  // walk, which sqlite's inserts and ordered scan slow down. A first backup
  // waits on reading and compressing instead, and keeps that memory for the
  // rest of its peak (docs/PERFORMANCE.md).
  const cache = new ScanCache(o.tmpDir, parent ? SCAN_CACHE_MEMORY : 0);
  const links = new HardLinks((path) => cache.get(path));
  const files = new FileSaver(repo, makeChunker(repo.config.chunking, repo.keys.gear), { parent: parentIndex, links, tally, signal, writeSignal, workers: o.workers });
  const trees = new TreeSaver(repo, cache, tally, {
    hostname: o.hostname,
    username: o.username,
    os: o.os,
    arch: o.arch,
    importer: { type: imp.type, origin: imp.origin, root: imp.root },
    tags: o.tags ?? [],
    run,
    timeNs,
    startedHr,
    parent,
    prior,
    ...(o.copyOf ? { syncOf: o.copyOf.syncOf } : {}),
  });
  const checkpointer = new Checkpointer({
    policy: o.checkpoints ?? defaultCheckpoints(imp.flags, repo.store.flags),
    needAck: (imp.flags & LocationFlag.NEEDACK) !== 0,
    cache,
    trees,
    tally,
    signal,
    writeSignal,
  });
  const xattrs = new XattrRecords(cache, tally, checkpointer, signal);
  const entries = new EntrySaver({ parent: parentIndex, files, links, xattrs, cache, tally, checkpointer, signal });
  checkpointer.start();

  try {
    const it = imp.import({ signal, results: checkpointer.results, xattrRecords: true, lazyXattrs: true })[Symbol.asyncIterator]();
    const consume = async () => {
      while (true) {
        throwIfAborted(signal);
        checkpointer.throwIfFailed();
        const n = await it.next();
        if (n.done) return;
        if (!entries.saveNow(n.value)) await entries.save(n.value);
      }
    };
    // Many records in flight keep the workers fed; each costs only a promise until it is read.
    // The first failure stops the others, and none is left running on its own.
    let failure: { e: unknown } | undefined;
    await Promise.all(
      Array.from({ length: o.concurrency ?? (o.workers === 0 ? 4 : 64) }, () =>
        consume().catch((e: unknown) => {
          failure ??= { e };
          stopper.abort();
        }),
      ),
    );
    if (failure) throw failure.e;
    await checkpointer.settle();
    xattrs.end();
    const header = await trees.commitFinal(signal);
    checkpointer.ackAll();
    tally.committed(header.id, parent?.id, header.summary, header.durationNs);
    return { header, parent };
  } finally {
    await checkpointer.close();
    cache.close();
    await files.close();
  }
}
