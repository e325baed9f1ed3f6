/**
 * An archive as a file: opening and decoding one, writing its tail,
 * copying object bytes between archives, and the read handles a store's
 * views share.
 */
import { constants as fsConstants, promises as fsp } from "node:fs";
import type { Stats } from "node:fs";
import type { FileHandle } from "node:fs/promises";
import { CofferError, CorruptError } from "../../util/errors.js";
import { errno, LocalIo } from "../local-io.js";
import { type Archive, type ArchiveBytes, decodeArchive, encodeTail, type Index } from "./format.js";

export const io = new LocalIo("ptar");

/** What a read that finds `file` ending early gives. */
function shortRead(file: string): (at: number) => CorruptError {
  return (at) => new CorruptError(file, `short read at ${at}`, { path: file });
}

/** The bytes of an open file of `size` bytes, for the decoder. */
function fileBytes(fh: FileHandle, size: number, file: string): ArchiveBytes {
  return {
    size,
    readInto: (buf, position) => io.readFully(fh, buf, position, file, shortRead(file)),
  };
}

/** Decodes the archive open as `fh` (named `file` in errors). */
export function readArchive(fh: FileHandle, size: number, file: string): Promise<Archive> {
  return decodeArchive(fileBytes(fh, size, file), file);
}

/**
 * Opens the archive `file` read-only and decodes it; `missing` is the
 * error when there is no file. The handle is closed on failure, else the
 * caller's.
 */
export async function openArchive(file: string, missing: () => CofferError, signal?: AbortSignal): Promise<{ fh: FileHandle; st: Stats; archive: Archive }> {
  let fh: FileHandle;
  try {
    fh = await fsp.open(file, fsConstants.O_RDONLY);
  } catch (e) {
    const code = errno(e);
    if (code === "ENOENT" || code === "ENOTDIR") throw missing();
    throw io.error(e, "open", file, signal);
  }
  try {
    const st = await io.run("stat", file, signal, () => fh.stat());
    if (!st.isFile()) throw new CorruptError(file, "not a ptar archive (not a regular file)", { path: file });
    return { fh, st, archive: await readArchive(fh, st.size, file) };
  } catch (e) {
    await fh.close().catch(() => undefined);
    throw io.error(e, "read", file, signal);
  }
}

/**
 * Writes index, config and trailer at `dataEnd`, cuts the file there and
 * fsyncs it. Returns the archive's size.
 */
export async function writeTail(
  fh: FileHandle,
  file: string,
  dataEnd: number,
  index: Index,
  config: Uint8Array,
  generation: bigint,
  lineage: Buffer,
): Promise<number> {
  const tail = encodeTail(dataEnd, index, config, generation, lineage);
  await io.writeFully(fh, tail, dataEnd, file);
  const size = dataEnd + tail.byteLength;
  await io.run("truncate", file, undefined, () => fh.truncate(size));
  await io.run("fsync", file, undefined, () => fh.sync());
  return size;
}

/** Copies `length` bytes at `from` in `src` to `to` in `dst`, through `buf`. */
export async function copyRange(
  src: FileHandle,
  srcFile: string,
  from: number,
  dst: FileHandle,
  dstFile: string,
  to: number,
  length: number,
  buf: Buffer,
): Promise<void> {
  let done = 0;
  while (done < length) {
    const want = Math.min(buf.byteLength, length - done);
    const piece = buf.subarray(0, want);
    await io.readFully(src, piece, from + done, srcFile, shortRead(srcFile));
    await io.writeFully(dst, piece, to + done, dstFile);
    done += want;
  }
}

/** A read (or session) file handle, closed once retired and no read is using it. */
export class Handle {
  readonly fh: FileHandle;
  /** For messages: the temp file's name, then the archive's once committed. */
  path: string;
  users = 0;
  #retired = false;
  constructor(fh: FileHandle, file: string) {
    this.fh = fh;
    this.path = file;
  }

  release(): void {
    this.users--;
    if (this.#retired && this.users === 0) void this.fh.close().catch(() => undefined);
  }

  retire(): void {
    if (this.#retired) return;
    this.#retired = true;
    if (this.users === 0) void this.fh.close().catch(() => undefined);
  }
}
