/**
 * What a ptar commit may do to a session's object bytes before writing the
 * tail: merge in what another writer committed since the session's base,
 * and compact an archive whose dead bytes outweigh its live ones.
 */
import { promises as fsp } from "node:fs";
import type { FileHandle } from "node:fs/promises";
import { throwIfAborted } from "../../util/errors.js";
import { copyRange, io } from "./archive-file.js";
import { type Archive, type Entry, headerBytes, HEADER_SIZE, type Index } from "./format.js";

/** Object bytes copied at once between archives. */
const COPY_CHUNK = 4 * 1024 * 1024;
/** Compact at commit when dead bytes are more than half of the data region and at least this much. */
const COMPACT_MIN_DEAD = 4 * 1024 * 1024;

/** A session's changes since its base, and where its object bytes are. */
export interface SessionChanges {
  /** The session's index: the base's, with its puts and deletes applied. */
  index: Index;
  /** The committed archive the session started from. */
  base: { lineage: Buffer; dataEnd: number };
  /** Keys put and deleted since the base: what a merge keeps of ours. */
  added: ReadonlySet<string>;
  deleted: ReadonlySet<string>;
  /** The session's temp file, and the end of the object bytes written to it. */
  fh: FileHandle;
  tmp: string;
  tail: number;
}

/**
 * Their index, then our puts, minus our deletes. Their objects that our
 * temp lacks are appended to it; when their data region extends our base's
 * (same lineage), objects inside our base's region are already there at
 * the same offsets.
 */
export async function mergeCommitted(
  ours: SessionChanges,
  theirs: { fh: FileHandle; file: string; archive: Archive },
  signal?: AbortSignal,
): Promise<{ index: Index; tail: number }> {
  const t = theirs.archive;
  const shared = t.lineage.equals(ours.base.lineage) && t.dataEnd >= ours.base.dataEnd ? ours.base.dataEnd : HEADER_SIZE;
  const index: Index = new Map();
  let tail = ours.tail;
  const buf = Buffer.allocUnsafe(COPY_CHUNK);
  for (const [key, e] of byOffset(t.index)) {
    if (ours.added.has(key) || ours.deleted.has(key)) continue;
    if (e.offset + e.length <= shared) {
      index.set(key, e);
      continue;
    }
    throwIfAborted(signal);
    await copyRange(theirs.fh, theirs.file, e.offset, ours.fh, ours.tmp, tail, e.length, buf);
    index.set(key, { offset: tail, length: e.length });
    tail += e.length;
  }
  for (const key of ours.added) {
    const e = ours.index.get(key);
    if (e !== undefined) index.set(key, e);
  }
  return { index, tail };
}

/** Whether an archive whose object bytes end at `tail`, with these live objects, is worth compacting. */
export function worthCompacting(index: Index, tail: number): boolean {
  let live = 0;
  for (const e of index.values()) live += e.length;
  const dead = tail - HEADER_SIZE - live;
  return dead >= COMPACT_MIN_DEAD && dead * 2 > tail - HEADER_SIZE;
}

/** Copies the live objects of `src` (named `srcFile`) into a fresh temp file `tmp`, in offset order. */
export async function compact(
  src: FileHandle,
  srcFile: string,
  index: Index,
  tmp: string,
  signal?: AbortSignal,
): Promise<{ fh: FileHandle; tmp: string; index: Index; tail: number }> {
  const fh = await io.run("create", tmp, signal, () => fsp.open(tmp, "wx+"));
  try {
    await io.writeFully(fh, headerBytes(), 0, tmp);
    const out: Index = new Map();
    let tail = HEADER_SIZE;
    const buf = Buffer.allocUnsafe(COPY_CHUNK);
    for (const [key, e] of byOffset(index)) {
      throwIfAborted(signal);
      await copyRange(src, srcFile, e.offset, fh, tmp, tail, e.length, buf);
      out.set(key, { offset: tail, length: e.length });
      tail += e.length;
    }
    return { fh, tmp, index: out, tail };
  } catch (e) {
    await fh.close().catch(() => undefined);
    await fsp.rm(tmp, { force: true }).catch(() => undefined);
    throw e;
  }
}

function byOffset(index: Index): [string, Entry][] {
  return [...index].sort((a, b) => a[1].offset - b[1].offset);
}
