/**
 * File I/O of the stores that keep a repository on this machine's file
 * system (fs and ptar): errors as the Store contract wants them (IO naming
 * the store type, the operation and the path; INTERRUPTED once aborted),
 * whole reads and writes that resume after short ones, directory fsyncs,
 * and the sweep of temp files a crashed writer left.
 */
import { constants as fsConstants, promises as fsp } from "node:fs";
import type { Stats } from "node:fs";
import type { FileHandle } from "node:fs/promises";
import * as path from "node:path";
import { mapLimit } from "../util/concurrency.js";
import { abortError, CofferError, throwIfAborted } from "../util/errors.js";
import { noRepository } from "./store-checks.js";

/** Temp files older than this belong to a writer that died: the next writer removes them. */
const STALE_TEMP_MS = 60 * 60 * 1000;
/** Largest single positional read. */
const READ_CHUNK = 8 * 1024 * 1024;
/** Buffers a writev() call takes at the most. */
const IOV_MAX = 1024;
/** Bound on concurrent lstat() calls of the stale-temp sweep. */
const SWEEP_CONCURRENCY = 32;
/** Where these fail, the file system has no hard links: link-then-unlink falls back to rename. */
const NO_LINKS = new Set(["EPERM", "ENOTSUP", "EOPNOTSUPP", "ENOSYS", "EXDEV"]);
/** Where these fail, the platform cannot fsync a directory (Windows, some network file systems). */
const NO_DIR_SYNC = new Set(["EINVAL", "EISDIR", "EPERM", "EBADF", "ENOTSUP"]);

/** The errno code of a Node error (ENOENT, ...), if it has one. */
export function errno(e: unknown): string | undefined {
  return typeof e === "object" && e !== null && "code" in e && typeof e.code === "string" ? e.code : undefined;
}

/** Whether link() failed because the file system cannot make hard links (not because the name is taken). */
export function linkUnsupported(e: unknown): boolean {
  return NO_LINKS.has(errno(e) ?? "");
}

/** The I/O helpers of one store type; `tag` ("fs", "ptar") prefixes its error messages. */
export class LocalIo {
  readonly tag: string;

  constructor(tag: string) {
    this.tag = tag;
  }

  /** CofferErrors pass through; an abort becomes INTERRUPTED; programming errors stay; anything else is IO naming the path. */
  error(e: unknown, op: string, p: string, signal?: AbortSignal): unknown {
    if (e instanceof CofferError) return e;
    if (signal?.aborted) return abortError(signal);
    if (e instanceof TypeError || e instanceof RangeError) return e;
    const detail = e instanceof Error ? e.message : String(e);
    return new CofferError("IO", `[${this.tag}] ${op} ${p}: ${detail}`, { path: p, errno: errno(e) }, { cause: e });
  }

  /** Runs `fn`, giving its failure as error() does. */
  async run<T>(op: string, p: string, signal: AbortSignal | undefined, fn: () => Promise<T>): Promise<T> {
    try {
      return await fn();
    } catch (e) {
      throw this.error(e, op, p, signal);
    }
  }

  /** Writes `data` whole at `position` (null: at the file's position), resuming after short writes. */
  async writeFully(fh: FileHandle, data: Uint8Array, position: number | null, p: string, signal?: AbortSignal): Promise<void> {
    let done = 0;
    while (done < data.byteLength) {
      const at = position === null ? null : position + done;
      const { bytesWritten } = await this.run("write", p, signal, () => fh.write(data, done, data.byteLength - done, at));
      done += bytesWritten;
    }
  }

  /** Writes `parts` in order at the file's position with writev (IOV_MAX buffers a call), resuming after short writes. */
  async writevFully(fh: FileHandle, parts: readonly Uint8Array[], p: string, signal?: AbortSignal): Promise<void> {
    for (let i = 0; i < parts.length; ) {
      throwIfAborted(signal);
      const group = parts.slice(i, i + IOV_MAX);
      i += group.length;
      const want = group.reduce((n, b) => n + b.byteLength, 0);
      const { bytesWritten } = await this.run("write", p, signal, () => fh.writev(group));
      if (bytesWritten === want) continue;
      // A short write: the rest one buffer at a time.
      let skip = bytesWritten;
      for (const b of group) {
        if (skip >= b.byteLength) {
          skip -= b.byteLength;
          continue;
        }
        await this.writeFully(fh, b.subarray(skip), null, p, signal);
        skip = 0;
      }
    }
  }

  /**
   * Fills `out` from `position` on, in reads of at most READ_CHUNK bytes;
   * a file that ends first gives `short(at)`, `at` where it ended.
   */
  async readFully(fh: FileHandle, out: Uint8Array, position: number, p: string, short: (at: number) => Error, signal?: AbortSignal): Promise<void> {
    let done = 0;
    while (done < out.byteLength) {
      throwIfAborted(signal);
      const want = Math.min(READ_CHUNK, out.byteLength - done);
      const at = position + done;
      const { bytesRead } = await this.run("read", p, signal, () => fh.read(out, done, want, at));
      if (bytesRead === 0) throw short(at);
      done += bytesRead;
    }
  }

  /** stat() of a store's root for ping(): NO_REPOSITORY when there is nothing there. */
  async statRoot(root: string, signal?: AbortSignal): Promise<Stats> {
    try {
      return await fsp.stat(root);
    } catch (e) {
      const code = errno(e);
      if (code === "ENOENT" || code === "ENOTDIR") throw noRepository(root);
      throw this.error(e, "stat", root, signal);
    }
  }

  /** Makes the entries of directory `dir` durable (a no-op where the platform cannot). */
  async fsyncDir(dir: string): Promise<void> {
    const handle = await this.run("open", dir, undefined, () => fsp.open(dir, fsConstants.O_RDONLY));
    try {
      await handle.sync();
    } catch (e) {
      if (!NO_DIR_SYNC.has(errno(e) ?? "")) throw this.error(e, "fsync", dir);
    } finally {
      await handle.close().catch(() => undefined);
    }
  }
}

/**
 * Removes the regular files of `dir` that `isTemp` accepts and that were
 * last modified more than STALE_TEMP_MS ago: what writers that died left.
 * Best effort: what cannot be read or removed stays.
 */
export async function sweepStaleTemps(dir: string, isTemp: (name: string) => boolean): Promise<void> {
  const names = (await fsp.readdir(dir).catch(() => [] as string[])).filter(isTemp);
  const cutoff = Date.now() - STALE_TEMP_MS;
  await mapLimit(names, SWEEP_CONCURRENCY, async (name) => {
    const p = path.join(dir, name);
    const st = await fsp.lstat(p).catch(() => undefined);
    if (st?.isFile() && st.mtimeMs < cutoff) await fsp.rm(p, { force: true }).catch(() => undefined);
  });
}
