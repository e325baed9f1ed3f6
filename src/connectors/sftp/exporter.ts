/**
 * The SFTP exporter (type "sftp"): restores a snapshot into a directory on
 * an SSH host. A file is written whole under a temp name next to it
 * (pipelined writes, holes left as holes), given its owner (with `owners`),
 * mode and mtime, fsynced where the server has `fsync@openssh.com`, then
 * renamed into place with `posix-rename@openssh.com`: its result comes once
 * it is there whole, and a file already at its path is replaced at once,
 * never seen half-written. A write whose connection drops is done again
 * whole on a fresh one (content() read anew). Hard links are made with `hardlink@openssh.com`
 * (a copy where the server lacks it), symlinks with their owner and mtime
 * where it has `lsetstat@openssh.com`. Directories get their owner, mode
 * and mtime in finish(), deepest first. As in the fs exporter, a path with
 * ".." or under a symlink is refused. SFTP v3 keeps mtimes in whole
 * seconds, and cannot make FIFOs or devices (those entries fail) nor set
 * extended attributes (not asked for: no EXPORTXATTR).
 */
import { randomBytes } from "node:crypto";
import * as posix from "node:path/posix";
import type { SFTPWrapper } from "ssh2";
import { mapLimit } from "../../util/concurrency.js";
import { CofferError, isCofferError, throwIfAborted } from "../../util/errors.js";
import { safeParts } from "../fs/exporter.js";
import type { ExportRecord, ExportResult, Exporter, FileInfo, ImportOptions } from "../records.js";
import { hasExtension, SftpPool, sftpOps as ops, SftpStatus, sftpStatus, writeAt } from "./connection.js";
import { kindOfMode, nsToWholeSeconds, sftpError } from "./entries.js";
import type { SftpSettings } from "./params.js";

/** Directories whose metadata is set (and left temp files removed) at once in finish(). */
const SETSTATS = 8;

export interface SftpExporterOptions {
  /** Restore owners (uid and gid). Default: when logged in as root. */
  owners?: boolean | undefined;
  onWarning?: ((msg: string) => void) | undefined;
}

interface PendingDir {
  path: string;
  depth: number;
  info: FileInfo;
}

function unsafe(pathname: string, why: string): CofferError {
  return new CofferError("UNSAFE_PATH", `unsafe path ${JSON.stringify(pathname)}: ${why}`, { path: pathname });
}

export class SftpExporter implements Exporter {
  readonly origin: string;
  readonly type = "sftp";
  readonly root: string;
  readonly flags = 0;
  readonly #s: SftpSettings;
  readonly #pool: SftpPool;
  readonly #owners: boolean;
  readonly #onWarning: (msg: string) => void;
  /** Server paths known to be real directories (this exporter never removes one). */
  readonly #safeDirs = new Set<string>();
  /** Directories this exporter made, empty then: nothing is in the way of an entry restored into one. */
  readonly #freshDirs = new Set<string>();
  readonly #dirs: PendingDir[] = [];
  /** dev:ino of multiply linked files -> the first path restored for it. */
  readonly #links = new Map<string, string>();
  /** Temp files of writes whose connection dropped, removed by finish(). */
  readonly #leftTemps = new Set<string>();

  constructor(settings: SftpSettings, opts: SftpExporterOptions = {}) {
    this.#s = settings;
    this.origin = settings.host;
    this.root = `${settings.where}/${settings.path}`;
    this.#pool = new SftpPool(settings);
    this.#owners = opts.owners ?? settings.user === "root";
    this.#onWarning = opts.onWarning ?? (() => {});
  }

  async ping(): Promise<void> {
    await this.#pool.run((sftp) => this.#mkdirs(sftp, this.#s.path));
  }

  async close(): Promise<void> {
    await this.#pool.close();
  }

  async export(record: ExportRecord, opts: ImportOptions = {}): Promise<ExportResult> {
    const { pathname } = record;
    const { signal } = opts;
    throwIfAborted(signal);
    try {
      const parts = safeParts(pathname);
      const path = parts.length === 0 ? this.#s.path : posix.join(this.#s.path, ...parts);
      await this.#pool.run((sftp) => this.#prepareParents(sftp, pathname, parts, record.fileInfo.kind === "dir"), signal);
      await this.#write(record, path, parts.length, signal);
      return { pathname };
    } catch (e) {
      if (isCofferError(e, "INTERRUPTED")) throw e;
      return { pathname, error: e instanceof Error ? e.message : String(e) };
    }
  }

  /** Sets the directories' owners, modes and mtimes, deepest first (setting them earlier, a child made later would change the mtime). */
  async finish(opts: ImportOptions = {}): Promise<ExportResult[]> {
    const { signal } = opts;
    throwIfAborted(signal);
    const temps = [...this.#leftTemps];
    this.#leftTemps.clear();
    await mapLimit(temps, SETSTATS, (tmp) => this.#pool.run((sftp) => ops.unlink(sftp, tmp).catch(() => undefined), signal));
    const dirs = this.#dirs.splice(0);
    const depths = [...new Set(dirs.map((d) => d.depth))].sort((a, b) => b - a);
    for (const depth of depths) {
      await mapLimit(
        dirs.filter((d) => d.depth === depth),
        SETSTATS,
        (d) =>
          this.#pool
            .run(async (sftp) => {
              if (this.#owners) await ops.setstat(sftp, d.path, { uid: d.info.uid, gid: d.info.gid });
              const t = nsToWholeSeconds(d.info.mtimeNs);
              await ops.setstat(sftp, d.path, { mode: d.info.mode, atime: t, mtime: t });
            }, signal)
            .catch((e: unknown) => {
              if (isCofferError(e, "INTERRUPTED")) throw e;
              this.#onWarning(sftpError(e, "set the attributes of", this.#at(d.path)).message);
            }),
      );
    }
    return [];
  }

  #at(path: string): string {
    return `${this.#s.where}/${path}`;
  }

  /** mkdir -p. */
  async #mkdirs(sftp: SFTPWrapper, dir: string): Promise<void> {
    if (this.#safeDirs.has(dir)) return;
    try {
      await ops.mkdir(sftp, dir);
    } catch (e) {
      if (sftpStatus(e) === SftpStatus.NO_SUCH_FILE && posix.dirname(dir) !== dir) {
        await this.#mkdirs(sftp, posix.dirname(dir));
        return this.#mkdirs(sftp, dir);
      }
      const st = await ops.lstat(sftp, dir).catch(() => undefined);
      if (st === undefined || kindOfMode(st.mode) !== "dir") throw sftpError(e, "create the directory", this.#at(dir));
    }
    this.#safeDirs.add(dir);
  }

  /** Makes every parent a real directory (creating missing ones); refuses symlinks and other files. */
  async #prepareParents(sftp: SFTPWrapper, pathname: string, parts: string[], isDir: boolean): Promise<void> {
    if (parts.length === 0) {
      await this.#mkdirs(sftp, isDir ? this.#s.path : posix.dirname(this.#s.path));
      return;
    }
    await this.#mkdirs(sftp, this.#s.path);
    let cur = this.#s.path;
    for (let i = 0; i < parts.length - 1; i++) {
      cur = posix.join(cur, parts[i]!);
      if (this.#safeDirs.has(cur)) continue;
      const st = await ops.lstat(sftp, cur).catch((e: unknown) => {
        if (sftpStatus(e) === SftpStatus.NO_SUCH_FILE) return undefined;
        throw sftpError(e, "read", this.#at(cur));
      });
      if (st === undefined) {
        await ops.mkdir(sftp, cur).catch(() => undefined);
        const made = await ops.lstat(sftp, cur).catch((e: unknown) => Promise.reject(sftpError(e, "create the directory", this.#at(cur))));
        if (kindOfMode(made.mode) !== "dir") throw unsafe(pathname, `/${parts.slice(0, i + 1).join("/")} is not a directory`);
      } else if (kindOfMode(st.mode) !== "dir") {
        throw unsafe(pathname, `/${parts.slice(0, i + 1).join("/")} is ${kindOfMode(st.mode) === "symlink" ? "a symlink" : "not a directory"}`);
      }
      this.#safeDirs.add(cur);
    }
  }

  /** Removes a non-directory at `path`; returns whether a directory is there (an error unless `wantDir`). */
  async #clear(sftp: SFTPWrapper, path: string, wantDir: boolean): Promise<boolean> {
    if (this.#freshDirs.has(posix.dirname(path))) return false;
    const st = await ops.lstat(sftp, path).catch((e: unknown) => {
      if (sftpStatus(e) === SftpStatus.NO_SUCH_FILE) return undefined;
      throw sftpError(e, "read", this.#at(path));
    });
    if (st === undefined) return false;
    if (kindOfMode(st.mode) === "dir") {
      if (wantDir) return true;
      throw new CofferError("IO", `[sftp] ${this.#at(path)}: a directory is in the way`, { path: this.#at(path) });
    }
    await ops.unlink(sftp, path).catch((e: unknown) => Promise.reject(sftpError(e, "remove", this.#at(path))));
    return false;
  }

  async #write(record: ExportRecord, path: string, depth: number, signal?: AbortSignal): Promise<void> {
    const info = record.fileInfo;
    const t = nsToWholeSeconds(info.mtimeNs);
    switch (info.kind) {
      case "dir":
        await this.#pool.run(async (sftp) => {
          if (await this.#clear(sftp, path, true)) return;
          await ops.mkdir(sftp, path).catch((e: unknown) => Promise.reject(sftpError(e, "create the directory", this.#at(path))));
          this.#freshDirs.add(path);
        }, signal);
        this.#safeDirs.add(path);
        this.#dirs.push({ path, depth, info });
        return;
      case "file":
        return this.#writeFile(record, path, signal);
      case "symlink": {
        const target = record.target;
        if (target === undefined) throw new CofferError("IO", `${record.pathname}: symlink without target`);
        await this.#pool.run(async (sftp) => {
          await this.#clear(sftp, path, false);
          await ops.symlink(sftp, target, path).catch((e: unknown) => Promise.reject(sftpError(e, "create the symlink", this.#at(path))));
          if (!hasExtension(sftp, "lsetstat@openssh.com")) return;
          if (this.#owners) await ops.lsetstat(sftp, path, { uid: info.uid, gid: info.gid });
          await ops.lsetstat(sftp, path, { atime: t, mtime: t });
        }, signal);
        return;
      }
      case "socket":
        this.#onWarning(`${record.pathname}: socket skipped`);
        return;
      default:
        throw new CofferError("UNSUPPORTED", `${record.pathname}: SFTP cannot create a ${info.kind} (at ${this.#at(path)})`);
    }
  }

  async #writeFile(record: ExportRecord, path: string, signal?: AbortSignal): Promise<void> {
    const info = record.fileInfo;
    const key = info.nlink > 1 ? `${info.dev}:${info.ino}` : undefined;
    const first = key !== undefined ? this.#links.get(key) : undefined;
    await this.#pool.run(async (sftp) => {
      if (first !== undefined && hasExtension(sftp, "hardlink@openssh.com")) {
        await this.#clear(sftp, path, false);
        await ops.hardlink(sftp, first, path).catch((e: unknown) => Promise.reject(sftpError(e, "link", this.#at(path))));
        return;
      }
      // Run again whole (content() read anew) when the connection drops: the temp file left is a dead one's.
      await this.#clear(sftp, path, false);
      const tmp = posix.join(posix.dirname(path), `.coffer-${randomBytes(8).toString("hex")}.tmp`);
      let h: Buffer;
      try {
        h = await ops.open(sftp, tmp, "wx");
      } catch (e) {
        throw sftpError(e, "create", this.#at(tmp));
      }
      try {
        await this.#fill(sftp, h, record, signal);
        if (this.#owners) await ops.fsetstat(sftp, h, { uid: info.uid, gid: info.gid }); // before the mode: chown clears setuid bits
        const t = nsToWholeSeconds(info.mtimeNs);
        await ops.fsetstat(sftp, h, { mode: info.mode, atime: t, mtime: t });
        if (hasExtension(sftp, "fsync@openssh.com")) await ops.fsync(sftp, h);
        await ops.close(sftp, h);
        await this.#renameInto(sftp, tmp, path);
      } catch (e) {
        await ops.close(sftp, h).catch(() => undefined);
        await ops.unlink(sftp, tmp).catch(() => this.#leftTemps.add(tmp));
        throw sftpError(e, "write", this.#at(path));
      }
    }, signal);
    if (key !== undefined && first === undefined) this.#links.set(key, path);
  }

  /** Writes the record's content into the open file `h`: zero pieces become holes, and the size is set last. */
  async #fill(sftp: SFTPWrapper, h: Buffer, record: ExportRecord, signal?: AbortSignal): Promise<void> {
    let end = 0;
    let written = 0;
    if (record.content !== undefined) {
      for await (const piece of record.content()) {
        throwIfAborted(signal);
        end = Math.max(end, piece.offset + piece.length);
        if (piece.zero === true || piece.data === undefined) continue;
        const n = Math.min(piece.length, piece.data.byteLength);
        await writeAt(sftp, h, [piece.data.subarray(0, n)], piece.offset, signal);
        written = Math.max(written, piece.offset + n);
      }
    }
    const size = Math.max(record.fileInfo.size, end);
    if (size > written) await ops.fsetstat(sftp, h, { size });
  }

  /** Renames the temp file onto `path`, replacing what is there (posix-rename, or unlink then rename where the server lacks it). */
  async #renameInto(sftp: SFTPWrapper, tmp: string, path: string): Promise<void> {
    if (hasExtension(sftp, "posix-rename@openssh.com")) return ops.renameReplace(sftp, tmp, path);
    await ops.unlink(sftp, path).catch(() => undefined);
    await ops.renameNoReplace(sftp, tmp, path);
  }
}
