/**
 * The local filesystem importer: walks a directory tree depth-first, each
 * directory's entries sorted by the bytes of their names, and yields one
 * record per entry ("/" for the root, "/rel/path" below it). Memory stays
 * bounded by a stack of directory listings; file content is read lazily in
 * large fresh buffers. Entries that cannot be read become records with
 * `error` set and the walk goes on.
 */

import type { Dirent, BigIntStats } from "node:fs";
import { constants, lstatSync, readdirSync, readlinkSync } from "node:fs";
import { lstat, open } from "node:fs/promises";
import type { FileHandle } from "node:fs/promises";
import { hostname } from "node:os";
import { basename, resolve } from "node:path";
import ignore from "ignore";
import type { Ignore } from "ignore";
import { LocationFlag } from "../flags.js";
import type { EntryKind, FileInfo, ImportOptions, Importer, ImportRecord } from "../records.js";
import { CofferError, throwIfAborted } from "../../util/errors.js";
import { compareNames, fsPath, nameFromBytes } from "../../util/names.js";
import { groupName, userName } from "./users.js";
import { XattrReader } from "./xattr.js";

export interface FsImporterOptions {
  /** gitignore-style patterns, matched against the path relative to the root. */
  excludes?: string[] | undefined;
  /** Do not read extended attributes. */
  noXattr?: boolean | undefined;
  /** Do not descend into directories on another filesystem than the root (their own record is kept). */
  oneFileSystem?: boolean | undefined;
  onWarning?: ((msg: string) => void) | undefined;
}

/** Size of one content read (and the largest piece open() yields). */
const READ_PIECE = 4 << 20;
const MIN_READ = 64 << 10;

interface Entry {
  name: string;
  dirHint: boolean;
  kindHint: EntryKind;
}

interface Frame {
  rel: string;
  abs: string;
  entries: Entry[];
  next: number;
}

function childPath(dir: string, name: string): string {
  return dir === "/" ? `/${name}` : `${dir}/${name}`;
}

export class FsImporter implements Importer {
  readonly origin: string = hostname();
  readonly type = "fs";
  readonly root: string;
  readonly flags: number = LocationFlag.LOCALFS;
  private readonly opts: FsImporterOptions;
  private readonly ig: Ignore | undefined;

  constructor(root: string, opts: FsImporterOptions = {}) {
    this.root = resolve(root);
    this.opts = opts;
    const patterns = (opts.excludes ?? []).filter((p) => p.trim() !== "");
    this.ig = patterns.length > 0 ? ignore().add(patterns) : undefined;
  }

  async ping(): Promise<void> {
    await this.statRoot();
  }

  async close(): Promise<void> {}

  /**
   * One async generator over a synchronous walk (walkTree): each level of
   * async generators costs every record a promise and a result object
   * (three levels had been a sixth of what a no-change backup allocated).
   * Extended attributes are read with each entry, so they come on its
   * record (never as records of their own), or, with `lazyXattrs`, when
   * the caller asks: a no-change backup then lists no attributes of an
   * unchanged file (listing them inline cost the main thread time for every
   * entry: docs/PERFORMANCE.md).
   */
  async *import(opts: ImportOptions = {}): AsyncGenerator<ImportRecord> {
    const signal = opts.signal;
    throwIfAborted(signal);
    const xattrs = this.opts.noXattr ? undefined : new XattrReader(this.opts.onWarning);
    const rootStat = await this.statRoot();
    this.lazyXattrs = opts.lazyXattrs === true;
    for (const rec of this.walkTree(rootStat, xattrs, signal)) yield rec;
  }

  /** The records of the tree under the root, depth-first, each directory's entries in byte order of their names. */
  private *walkTree(rootStat: BigIntStats, xattrs: XattrReader | undefined, signal: AbortSignal | undefined): Generator<ImportRecord> {
    const rootName = this.root === "/" ? "/" : basename(this.root);
    const rootRec = this.record("/", rootName, this.root, rootStat, xattrs);
    if (!rootStat.isDirectory() || rootRec.error !== undefined) {
      yield rootRec;
      return;
    }
    const rootList = listDir(this.root);
    if (typeof rootList === "string") {
      yield { ...rootRec, error: rootList };
      return;
    }
    yield rootRec;
    const stack: Frame[] = [{ rel: "", abs: this.root, entries: rootList, next: 0 }];
    while (stack.length > 0) {
      throwIfAborted(signal);
      const top = stack[stack.length - 1] as Frame;
      const entry = top.entries[top.next++];
      if (entry === undefined) {
        stack.pop();
        continue;
      }
      const rel = top.rel === "" ? entry.name : `${top.rel}/${entry.name}`;
      if (this.excluded(rel, entry.dirHint)) continue;
      const abs = childPath(top.abs, entry.name);
      const pathname = `/${rel}`;
      let st: BigIntStats;
      try {
        // Metadata calls are synchronous: on a local disk they take microseconds,
        // less than a round trip through the libuv pool.
        st = lstatSync(fsPath(abs), { bigint: true });
      } catch (e) {
        yield errorRecord(pathname, entry, e);
        continue;
      }
      const isDir = st.isDirectory();
      // Dirent types can be stale or unknown: re-test with the real kind.
      if (isDir !== entry.dirHint && this.excluded(rel, isDir)) continue;
      const rec = this.record(pathname, entry.name, abs, st, xattrs);
      if (!isDir || rec.error !== undefined || (this.opts.oneFileSystem && st.dev !== rootStat.dev)) {
        yield rec;
        continue;
      }
      const list = listDir(abs);
      if (typeof list === "string") {
        yield { ...rec, error: list };
        continue;
      }
      yield rec;
      stack.push({ rel, abs, entries: list, next: 0 });
    }
  }

  private excluded(rel: string, isDir: boolean): boolean {
    return this.ig !== undefined && this.ig.ignores(isDir ? `${rel}/` : rel);
  }

  private async statRoot(): Promise<BigIntStats> {
    try {
      return await lstat(this.root, { bigint: true });
    } catch (e) {
      throw new CofferError("IO", `cannot read ${this.root}: ${errorText(e)}`, { path: this.root }, { cause: e });
    }
  }

  /** The current import's ImportOptions.lazyXattrs. */
  private lazyXattrs = false;

  private record(pathname: string, name: string, abs: string, st: BigIntStats, xattrs: XattrReader | undefined): ImportRecord {
    const fileInfo = infoOf(name, st);
    const rec: ImportRecord = { pathname, fileInfo };
    if (xattrs && this.lazyXattrs) rec.readXattrs = () => xattrs.read(abs);
    else if (xattrs) {
      const x = xattrs.read(abs);
      if (x !== undefined) rec.xattrs = x;
    }
    if (fileInfo.kind === "symlink") {
      try {
        rec.target = readTarget(abs); // synchronous, as lstat: a libuv round trip cost ~50 us a link
      } catch (e) {
        rec.error = errorText(e);
      }
    } else if (fileInfo.kind === "file") {
      rec.open = () => openContent(abs);
      rec.localPath = abs;
    }
    return rec;
  }
}

export function kindOf(st: BigIntStats | Dirent): EntryKind {
  if (st.isFile()) return "file";
  if (st.isDirectory()) return "dir";
  if (st.isSymbolicLink()) return "symlink";
  if (st.isFIFO()) return "fifo";
  if (st.isSocket()) return "socket";
  if (st.isCharacterDevice()) return "chardev";
  if (st.isBlockDevice()) return "blockdev";
  return "other";
}

function infoOf(name: string, st: BigIntStats): FileInfo {
  const kind = kindOf(st);
  const uid = Number(st.uid);
  const gid = Number(st.gid);
  return {
    name,
    kind,
    size: Number(st.size),
    mode: Number(st.mode & 0o7777n),
    mtimeNs: st.mtimeNs,
    ctimeNs: st.ctimeNs,
    dev: st.dev,
    ino: st.ino,
    rdev: kind === "chardev" || kind === "blockdev" ? st.rdev : undefined,
    uid,
    gid,
    nlink: Number(st.nlink),
    username: userName(uid),
    groupname: groupName(gid),
  };
}

function errorRecord(pathname: string, entry: Entry, e: unknown): ImportRecord {
  return {
    pathname,
    fileInfo: { name: entry.name, kind: entry.kindHint, size: 0, mode: 0, mtimeNs: 0n, dev: 0n, ino: 0n, uid: 0, gid: 0, nlink: 0 },
    error: errorText(e),
  };
}

function errorText(e: unknown): string {
  return e instanceof Error ? e.message : String(e);
}

/**
 * A directory's entries sorted by the bytes of their names, or the error
 * text. Names are read as strings; a directory where one came back with
 * U+FFFD (not valid UTF-8, or a real U+FFFD) is read again as bytes.
 */
function listDir(abs: string): Entry[] | string {
  let dirents: Dirent[];
  let names: string[];
  try {
    dirents = readdirSync(fsPath(abs), { withFileTypes: true });
    names = dirents.map((d) => d.name);
    if (names.some((n) => n.includes("\ufffd"))) {
      const raw = readdirSync(fsPath(abs), { withFileTypes: true, encoding: "buffer" });
      dirents = raw as unknown as Dirent[];
      names = raw.map((d) => nameFromBytes(d.name));
    }
  } catch (e) {
    return errorText(e);
  }
  const list = dirents.map((d, i) => ({ name: names[i] as string, dirHint: d.isDirectory(), kindHint: kindOf(d) }));
  if (list.some((e) => !e.name.isWellFormed())) list.sort((a, b) => compareNames(a.name, b.name));
  else {
    const keyed = list.map((e) => ({ key: Buffer.from(e.name, "utf8"), e }));
    keyed.sort((a, b) => Buffer.compare(a.key, b.key));
    for (let i = 0; i < keyed.length; i++) list[i] = (keyed[i] as { e: Entry }).e;
  }
  return list;
}

/** A symlink's target as a name: read as bytes only when the string form is not exact. */
function readTarget(abs: string): string {
  const target = readlinkSync(fsPath(abs));
  return target.includes("\ufffd") ? nameFromBytes(readlinkSync(fsPath(abs), { encoding: "buffer" })) : target;
}

async function openContent(abs: string): Promise<AsyncIterable<Uint8Array>> {
  // O_NONBLOCK: never hang if the file was swapped for a FIFO; O_NOFOLLOW: never read through a new symlink.
  const flags = constants.O_RDONLY | constants.O_NOFOLLOW | constants.O_NONBLOCK;
  let fh: FileHandle;
  try {
    fh = await open(fsPath(abs), flags | (constants.O_NOATIME ?? 0));
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code !== "EPERM") throw e;
    fh = await open(fsPath(abs), flags); // O_NOATIME needs ownership of the file.
  }
  try {
    const st = await fh.stat();
    if (!st.isFile()) throw new CofferError("IO", `${abs}: no longer a regular file`, { path: abs });
    return new FileContent(fh, st.size);
  } catch (e) {
    await fh.close().catch(() => {});
    throw e;
  }
}

/**
 * The content of an open file, readable once. Each piece is a fresh buffer
 * the consumer may keep. The handle is closed at EOF, on error and on early
 * exit (return()), even when iteration never started.
 */
class FileContent implements AsyncIterable<Uint8Array> {
  private started = false;
  private closed = false;
  private eof = false;

  constructor(
    private readonly fh: FileHandle,
    private remaining: number,
  ) {}

  private async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    await this.fh.close();
  }

  private async next(): Promise<IteratorResult<Uint8Array>> {
    if (this.closed || this.eof) {
      await this.close();
      return { done: true, value: undefined };
    }
    try {
      const want = Math.min(READ_PIECE, Math.max(this.remaining, MIN_READ));
      const buf = Buffer.allocUnsafe(want);
      let n = 0;
      while (n < want) {
        const { bytesRead } = await this.fh.read(buf, n, want - n, null);
        if (bytesRead === 0) {
          this.eof = true;
          break;
        }
        n += bytesRead;
      }
      if (n === 0) {
        await this.close();
        return { done: true, value: undefined };
      }
      this.remaining = Math.max(0, this.remaining - n);
      // A small tail is copied out so the large buffer is not kept alive by it.
      const piece = n === want ? buf : n < want / 2 ? Buffer.from(buf.subarray(0, n)) : buf.subarray(0, n);
      return { done: false, value: piece };
    } catch (e) {
      await this.close().catch(() => {});
      throw e;
    }
  }

  [Symbol.asyncIterator](): AsyncIterator<Uint8Array> {
    if (this.started) throw new CofferError("IO", "file content can be read only once");
    this.started = true;
    return {
      next: () => this.next(),
      return: async () => {
        await this.close();
        return { done: true, value: undefined };
      },
    };
  }
}
