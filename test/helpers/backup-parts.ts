/**
 * The parts of the backup pipeline (src/snapshot/backup/) wired as backup()
 * wires them, on a memory store, for tests that drive one part directly;
 * records and importers made from lists.
 */
import { MemoryStore } from "../../src/connectors/memory/store.js";
import type { EntryKind, FileInfo, ImportOptions, Importer, ImportRecord, ImportResult } from "../../src/connectors/records.js";
import type { Store } from "../../src/connectors/store.js";
import { makeChunker } from "../../src/repository/chunker.js";
import { randomKey } from "../../src/repository/crypto.js";
import { Repository } from "../../src/repository/repository.js";
import { backup } from "../../src/snapshot/backup/backup.js";
import { type CheckpointPolicy, Checkpointer } from "../../src/snapshot/backup/checkpointer.js";
import { EntrySaver } from "../../src/snapshot/backup/entry-saver.js";
import type { BackupEvent } from "../../src/snapshot/backup/events.js";
import { FileSaver } from "../../src/snapshot/backup/file-saver.js";
import { HardLinks } from "../../src/snapshot/backup/hard-links.js";
import { ParentIndex } from "../../src/snapshot/backup/parent.js";
import { ScanCache } from "../../src/snapshot/backup/scancache.js";
import { Tally } from "../../src/snapshot/backup/tally.js";
import { TreeSaver } from "../../src/snapshot/backup/tree-saver.js";
import { XattrRecords } from "../../src/snapshot/backup/xattrs.js";
import type { SnapshotHeader } from "../../src/snapshot/header.js";

const KDF = { memory: 8192, passes: 1, parallelism: 1 };

export async function makeRepo(store: Store = new MemoryStore()): Promise<Repository> {
  await Repository.create(store, { passphrase: null, packSize: 256 * 1024, kdf: KDF });
  return Repository.open(store, { passphrase: async () => null });
}

export function info(name: string, kind: EntryKind, over: Partial<FileInfo> = {}): FileInfo {
  return { name, kind, size: 0, mode: kind === "dir" ? 0o755 : 0o644, mtimeNs: 1_700_000_000_000_000_000n, dev: 1n, ino: 0n, uid: 0, gid: 0, nlink: 1, ...over };
}

/** A regular file's record whose open() gives `content` (and counts its calls in `opened`). */
export function fileRecord(pathname: string, content: Uint8Array, over: Partial<FileInfo> = {}): ImportRecord & { opened: number } {
  const r: ImportRecord & { opened: number } = {
    pathname,
    fileInfo: info(pathname.split("/").at(-1)!, "file", { size: content.byteLength, ...over }),
    opened: 0,
    open: async () => {
      r.opened++;
      return (async function* () {
        yield content;
      })();
    },
  };
  return r;
}

export function dirRecord(pathname: string, over: Partial<FileInfo> = {}): ImportRecord {
  return { pathname, fileInfo: info(pathname === "/" ? "" : pathname.split("/").at(-1)!, "dir", over) };
}

/** An importer that yields `records` (fresh ones from a function on each import), of `flags`. */
export function listImporter(records: ImportRecord[] | (() => ImportRecord[]), flags = 0): Importer {
  return {
    origin: "test",
    type: "list",
    root: "/list",
    flags,
    ping: async () => {},
    close: async () => {},
    async *import(_o: ImportOptions = {}) {
      yield* typeof records === "function" ? records() : records;
    },
  };
}

/** A snapshot of `records`, made by backup() on the main thread. */
export async function snapshotOf(repo: Repository, records: ImportRecord[]): Promise<SnapshotHeader> {
  return (await backup(repo, { importer: listImporter(records), hostname: "h", username: "u", os: "linux", arch: "x64", workers: 0 })).header;
}

export interface PartsOptions {
  parent?: SnapshotHeader;
  needAck?: boolean;
  /** Default: never by time or size. */
  policy?: CheckpointPolicy;
  signal?: AbortSignal;
}

export interface Parts {
  repo: Repository;
  events: BackupEvent[];
  tally: Tally;
  parent: ParentIndex | null;
  cache: ScanCache;
  links: HardLinks;
  files: FileSaver;
  trees: TreeSaver;
  checkpointer: Checkpointer;
  xattrs: XattrRecords;
  entries: EntrySaver;
  /** Every answer the checkpointer gave, as it gave it. */
  answers: ImportResult[];
  /** Whether the answers have ended. */
  answersEnded: boolean;
  close(): Promise<void>;
}

/** The pipeline's parts over `repo`, on the main thread (no chunk workers). */
export function makeParts(repo: Repository, o: PartsOptions = {}): Parts {
  const signal = o.signal ?? new AbortController().signal;
  const events: BackupEvent[] = [];
  const tally = new Tally(repo, (e) => events.push(e));
  const parent = o.parent ? new ParentIndex(repo, o.parent, signal, tally.warn) : null;
  const cache = new ScanCache(undefined, 0);
  const links = new HardLinks((p) => cache.get(p));
  const files = new FileSaver(repo, makeChunker(repo.config.chunking, repo.keys.gear), { parent, links, tally, signal, writeSignal: undefined, workers: 0 });
  const trees = new TreeSaver(repo, cache, tally, {
    hostname: "h",
    username: "u",
    os: "linux",
    arch: "x64",
    importer: { type: "list", origin: "test", root: "/list" },
    tags: [],
    run: randomKey(16),
    timeNs: 1n,
    startedHr: process.hrtime.bigint(),
    parent: o.parent,
    prior: [],
  });
  const checkpointer = new Checkpointer({ policy: o.policy ?? { intervalMs: 0, bytes: 0 }, needAck: o.needAck ?? false, cache, trees, tally, signal, writeSignal: undefined });
  const xattrs = new XattrRecords(cache, tally, checkpointer, signal);
  const entries = new EntrySaver({ parent, files, links, xattrs, cache, tally, checkpointer, signal });
  const parts: Parts = {
    repo,
    events,
    tally,
    parent,
    cache,
    links,
    files,
    trees,
    checkpointer,
    xattrs,
    entries,
    answers: [],
    answersEnded: false,
    async close() {
      await checkpointer.close();
      cache.close();
      await files.close();
    },
  };
  void (async () => {
    for await (const a of checkpointer.results) parts.answers.push(a);
    parts.answersEnded = true;
  })();
  return parts;
}

/** Lets queued promise callbacks and the channel's consumers run. */
export function settle(): Promise<void> {
  return new Promise((r) => setImmediate(r));
}
