/**
 * The local filesystem exporter: recreates records under a target directory.
 * Files are written with positional writes, zero pieces left as holes;
 * hardlinks are relinked; FIFOs and devices come from mkfifo/mknod.
 * Directories' owners, modes, mtimes and extended attributes are set in
 * finish(), deepest first. No entry may escape the target: `..` is refused
 * and no parent component may be a symlink.
 *
 * Metadata order, per entry: owner (chown clears setuid bits and file
 * capabilities), then extended attributes but ACLs and capabilities (the new
 * entry is still writable by its owner), then the mode, then the ACLs and
 * capabilities, then the mtime. A chmod after an access ACL rewrites its
 * mask from the mode's group bits: harmless when the mode is the one
 * stored with the ACL, but set last the ACL is exactly the stored one
 * whatever the mode. An attribute that cannot be set fails its entry
 * (exit 3).
 *
 * Times: Node's utimes takes seconds as a double, so restored mtimes are
 * exact to about a quarter of a microsecond, not to the nanosecond.
 */

import { spawn } from "node:child_process";
import { chmodSync, closeSync, constants, fchmodSync, fchownSync, ftruncateSync, futimesSync, lchownSync, lstatSync, lutimesSync, mkdirSync, openSync, symlinkSync, utimesSync, writeSync } from "node:fs";
import { chmod, lchown, link, lstat, mkdir, rename, unlink, utimes } from "node:fs/promises";
import { hostname } from "node:os";
import { dirname, resolve } from "node:path";
import { LocationFlag } from "../flags.js";
import type { ExportRecord, ExportResult, Exporter, FileInfo, ImportOptions, Xattr } from "../records.js";
import { CofferError, isCofferError, throwIfAborted } from "../../util/errors.js";
import { groupId, userId } from "./users.js";
import { setXattrs, splitXattrs } from "./xattr.js";
import { nsToSeconds } from "../../util/time.js";
import { fsPath, isRawName } from "../../util/names.js";

export interface FsExporterOptions {
  /** Restore owners (lchown). Default: when running as root. */
  owners?: boolean | undefined;
  onWarning?: ((msg: string) => void) | undefined;
}

interface PendingDir {
  pathname: string;
  abs: string;
  depth: number;
  info: FileInfo;
  xattrs: Xattr[] | undefined;
}

/** Linux major/minor of a dev_t (glibc's gnu_dev_major/minor). */
export function devNumbers(rdev: bigint): [bigint, bigint] {
  const major = ((rdev >> 8n) & 0xfffn) | ((rdev >> 32n) & ~0xfffn);
  const minor = (rdev & 0xffn) | ((rdev >> 12n) & ~0xffn);
  return [major, minor];
}

export class FsExporter implements Exporter {
  readonly origin: string = hostname();
  readonly type = "fs";
  readonly root: string;
  readonly flags: number = LocationFlag.LOCALFS | LocationFlag.EXPORTXATTR;
  private readonly owners: boolean;
  private readonly onWarning: (msg: string) => void;
  /** dev:ino of multiply linked files -> the first path restored for it. */
  private readonly links = new Map<string, string>();
  /** Paths verified (or created) as real directories; directories are never removed, so this stays true. */
  private readonly safeDirs = new Set<string>();
  /**
   * Directories this exporter created (so they started empty): an entry
   * restored into one has nothing in its way, as a tree holds each name once.
   */
  private readonly freshDirs = new Set<string>();
  private readonly dirs: PendingDir[] = [];
  /** Temporary names given to FIFOs and devices made for a path that is not UTF-8 (makeNode). */
  private nodeCount = 0;

  constructor(root: string, opts: FsExporterOptions = {}) {
    this.root = resolve(root);
    this.owners = opts.owners ?? process.getuid?.() === 0;
    this.onWarning = opts.onWarning ?? (() => {});
  }

  async ping(): Promise<void> {
    await mkdir(this.root, { recursive: true });
  }

  async close(): Promise<void> {}

  async export(record: ExportRecord, opts: ImportOptions = {}): Promise<ExportResult> {
    const { pathname } = record;
    throwIfAborted(opts.signal);
    try {
      const parts = safeParts(pathname);
      const abs = parts.length === 0 ? this.root : `${this.root === "/" ? "" : this.root}/${parts.join("/")}`;
      await this.prepareParents(pathname, parts, record.fileInfo.kind === "dir");
      const failed = await this.write(record, abs, parts.length, opts.signal);
      return failed.length > 0 ? { pathname, error: failed.join("; ") } : { pathname };
    } catch (e) {
      if (isCofferError(e, "INTERRUPTED")) throw e;
      return { pathname, error: e instanceof Error ? e.message : String(e) };
    }
  }

  /**
   * For a writer that fills regular files itself (the restore's worker
   * threads): checks the path, makes its parents, clears what is in the way,
   * and gives the absolute path to create (O_EXCL) and the owner to set
   * (null when owners are not restored). Files with xattrs or several links
   * must go through export().
   */
  async prepareFile(record: ExportRecord): Promise<{ abs: string; owner: [number, number] | null }> {
    const parts = safeParts(record.pathname);
    if (parts.length === 0) throw unsafe(record.pathname, "a file cannot be the restore root");
    const abs = `${this.root === "/" ? "" : this.root}/${parts.join("/")}`;
    await this.prepareParents(record.pathname, parts, false);
    await this.clear(abs, false);
    return { abs, owner: this.owners ? this.ids(record.fileInfo) : null };
  }

  /** Sets the directories' metadata; returns the directories whose extended attributes could not all be set. */
  async finish(opts: ImportOptions = {}): Promise<ExportResult[]> {
    throwIfAborted(opts.signal);
    const failures: ExportResult[] = [];
    // Deepest first: setting a child's metadata must not touch a finished
    // parent, and a default ACL set before the children were made would
    // have been inherited by them.
    // Synchronous calls: four per directory, each a few microseconds on a
    // local disk, where a libuv round trip each made this the tail of a
    // restore (docs/PERFORMANCE.md).
    const dirs = this.dirs.splice(0).sort((a, b) => b.depth - a.depth);
    for (const d of dirs) {
      throwIfAborted(opts.signal);
      try {
        const dir = fsPath(d.abs);
        if (!lstatSync(dir).isDirectory()) continue;
        if (this.owners) lchownSync(dir, ...this.ids(d.info));
        const { early, late } = splitXattrs(d.xattrs);
        const failed = setXattrs(d.abs, early);
        chmodSync(dir, d.info.mode);
        failed.push(...setXattrs(d.abs, late));
        const t = nsToSeconds(d.info.mtimeNs);
        utimesSync(dir, t, t);
        if (failed.length > 0) failures.push({ pathname: d.pathname, error: failed.join("; ") });
      } catch (e) {
        this.onWarning(`${d.abs}: ${e instanceof Error ? e.message : String(e)}`);
      }
    }
    return failures;
  }

  /** Makes every parent a real directory (creating missing ones); refuses symlinks and other files. */
  private async prepareParents(pathname: string, parts: string[], isDir: boolean): Promise<void> {
    if (parts.length === 0) {
      await mkdir(isDir ? this.root : dirname(this.root), { recursive: true });
      return;
    }
    if (!this.safeDirs.has(this.root)) {
      await mkdir(this.root, { recursive: true });
      this.safeDirs.add(this.root);
    }
    let cur = this.root === "/" ? "" : this.root;
    for (let i = 0; i < parts.length - 1; i++) {
      cur = `${cur}/${parts[i] as string}`;
      // A directory verified or created here stays one: this exporter never
      // removes directories (clear() refuses), so no check is needed again.
      if (this.safeDirs.has(cur)) continue;
      const st = await lstat(fsPath(cur)).catch((e: NodeJS.ErrnoException) => {
        if (e.code === "ENOENT") return undefined;
        throw e;
      });
      if (st === undefined) {
        await mkdir(fsPath(cur)).catch((e: NodeJS.ErrnoException) => {
          if (e.code !== "EEXIST") throw e;
        });
        if (!(await lstat(fsPath(cur))).isDirectory()) throw unsafe(pathname, `/${parts.slice(0, i + 1).join("/")} is not a directory`);
      } else if (!st.isDirectory()) {
        const what = st.isSymbolicLink() ? "a symlink" : "not a directory";
        throw unsafe(pathname, `/${parts.slice(0, i + 1).join("/")} is ${what}`);
      }
      this.safeDirs.add(cur);
    }
  }

  /** Removes a non-directory at `abs`; returns whether a directory is there. */
  private async clear(abs: string, wantDir: boolean): Promise<boolean> {
    if (this.freshDirs.has(dirname(abs))) return false;
    const st = await lstat(fsPath(abs)).catch((e: NodeJS.ErrnoException) => {
      if (e.code === "ENOENT") return undefined;
      throw e;
    });
    if (st === undefined) return false;
    if (st.isDirectory()) {
      if (wantDir) return true;
      throw new CofferError("IO", `${abs}: a directory is in the way`, { path: abs });
    }
    await unlink(fsPath(abs));
    return false;
  }

  private ids(info: FileInfo): [number, number] {
    const uid = (info.username !== undefined ? userId(info.username) : undefined) ?? info.uid;
    const gid = (info.groupname !== undefined ? groupId(info.groupname) : undefined) ?? info.gid;
    return [uid, gid];
  }

  /** Writes one entry; returns what could not be set of its extended attributes (directories: in finish()). */
  private async write(record: ExportRecord, abs: string, depth: number, signal?: AbortSignal): Promise<string[]> {
    const info = record.fileInfo;
    const t = nsToSeconds(info.mtimeNs);
    switch (info.kind) {
      case "dir": {
        // Directories and symlinks are made with synchronous calls: microseconds
        // on a local disk, where a libuv round trip each held the restore's walk
        // (restore of /usr/share: 3,216 directories, 3,942 symlinks).
        if (!(await this.clear(abs, true))) {
          mkdirSync(fsPath(abs), { mode: 0o700 });
          this.freshDirs.add(abs);
        }
        this.safeDirs.add(abs);
        this.dirs.push({ pathname: record.pathname, abs, depth, info, xattrs: record.xattrs });
        return [];
      }
      case "file":
        return this.writeFile(record, abs, signal);
      case "symlink": {
        if (record.target === undefined) throw new CofferError("IO", `${record.pathname}: symlink without target`);
        await this.clear(abs, false);
        symlinkSync(fsPath(record.target), fsPath(abs));
        if (this.owners) lchownSync(fsPath(abs), ...this.ids(info));
        const failed = setXattrs(abs, record.xattrs ?? []); // a symlink has no mode of its own
        lutimesSync(fsPath(abs), t, t);
        return failed;
      }
      case "fifo":
      case "chardev":
      case "blockdev": {
        await this.clear(abs, false);
        await this.makeNode(abs, info);
        if (this.owners) await lchown(fsPath(abs), ...this.ids(info));
        const { early, late } = splitXattrs(record.xattrs);
        const failed = setXattrs(abs, early);
        await chmod(fsPath(abs), info.mode);
        failed.push(...setXattrs(abs, late));
        await utimes(fsPath(abs), t, t);
        return failed;
      }
      case "socket":
        this.onWarning(`${record.pathname}: socket skipped`);
        return [];
      default:
        throw new CofferError("UNSUPPORTED", `${record.pathname}: cannot restore an entry of kind ${info.kind}`);
    }
  }

  private async writeFile(record: ExportRecord, abs: string, signal?: AbortSignal): Promise<string[]> {
    const info = record.fileInfo;
    const key = info.nlink > 1 ? `${info.dev}:${info.ino}` : undefined;
    const first = key !== undefined ? this.links.get(key) : undefined;
    await this.clear(abs, false);
    if (first !== undefined) {
      await link(fsPath(first), fsPath(abs)); // same inode: content, modes, times and xattrs are already there
      return [];
    }
    // Synchronous calls, as for directories and symlinks: seven libuv round
    // trips a file (open, write, truncate, chown, chmod, utimes, close) made
    // a restore of many small files mostly thread hand-offs (futex).
    let failed: string[];
    const fd = openSync(fsPath(abs), constants.O_WRONLY | constants.O_CREAT | constants.O_EXCL | constants.O_NOFOLLOW, 0o600);
    try {
      let end = 0;
      if (record.content !== undefined) {
        for await (const piece of record.content()) {
          throwIfAborted(signal);
          end = Math.max(end, piece.offset + piece.length);
          if (piece.zero === true || piece.data === undefined) continue; // a hole
          writeAll(fd, piece.data, Math.min(piece.length, piece.data.byteLength), piece.offset);
        }
      }
      ftruncateSync(fd, Math.max(info.size, end)); // trailing holes; never cuts written bytes
      if (this.owners) fchownSync(fd, ...this.ids(info));
      // The order of the file's header comment: a read-only mode would refuse user.* to its owner.
      const { early, late } = splitXattrs(record.xattrs);
      failed = setXattrs(abs, early);
      fchmodSync(fd, info.mode);
      failed.push(...setXattrs(abs, late));
      const t = nsToSeconds(info.mtimeNs);
      futimesSync(fd, t, t);
    } finally {
      closeSync(fd);
    }
    if (key !== undefined) this.links.set(key, abs);
    return failed;
  }

  /**
   * FIFOs and devices come from mkfifo/mknod, whose arguments are text: a
   * node whose path is not valid UTF-8 is made under a temporary name in
   * the restore root and renamed into place.
   */
  private async makeNode(abs: string, info: FileInfo): Promise<void> {
    if (info.kind !== "fifo" && process.getuid?.() !== 0) throw new CofferError("UNSUPPORTED", `${abs}: creating a device node needs root`);
    const at = isRawName(abs) ? `${this.root === "/" ? "" : this.root}/.coffer-node-${process.pid}-${++this.nodeCount}` : abs;
    if (info.kind === "fifo") await runTool("mkfifo", ["-m", "600", "--", at]);
    else {
      const [major, minor] = devNumbers(info.rdev ?? 0n);
      await runTool("mknod", ["-m", "600", "--", at, info.kind === "chardev" ? "c" : "b", String(major), String(minor)]);
    }
    if (at !== abs) await rename(at, fsPath(abs));
  }
}

function unsafe(pathname: string, why: string): CofferError {
  return new CofferError("UNSAFE_PATH", `unsafe path ${JSON.stringify(pathname)}: ${why}`, { path: pathname });
}

/** The components of a record path; refuses relative paths, NUL and `..`. */
export function safeParts(pathname: string): string[] {
  if (!pathname.startsWith("/")) throw unsafe(pathname, "not absolute");
  if (pathname.includes("\0")) throw unsafe(pathname, "contains NUL");
  const parts = pathname.split("/").filter((p) => p !== "" && p !== ".");
  if (parts.includes("..")) throw unsafe(pathname, 'contains ".."');
  return parts;
}

function writeAll(fd: number, data: Uint8Array, length: number, position: number): void {
  let done = 0;
  while (done < length) done += writeSync(fd, data, done, length - done, position + done);
}

function runTool(cmd: string, args: string[]): Promise<void> {
  return new Promise((resolvePromise, reject) => {
    const child = spawn(cmd, args, { stdio: ["ignore", "ignore", "pipe"] });
    let stderr = "";
    child.stderr?.on("data", (d: Buffer) => (stderr += d.toString("utf8")));
    child.on("error", (e) => reject(new CofferError("UNSUPPORTED", `${cmd}: ${e.message}`, {}, { cause: e })));
    child.on("close", (code) =>
      code === 0 ? resolvePromise() : reject(new CofferError("IO", stderr.trim() || `${cmd} exited with ${code}`)),
    );
  });
}
