/**
 * The SFTP importer (type "sftp"): backs up a tree on an SSH host as
 * files, directories and symlinks, with sizes, modes, owners (names where
 * the server gives them in its listings) and mtimes in
 * whole seconds (SFTP v3). Directories are listed several at a time over
 * the pool's connections; each listing, once read, yields the directory's
 * record and those of its entries but subdirectories, which come with their
 * own listing (a directory that cannot be listed is an error record). Other
 * kinds (FIFOs, devices, sockets) are recorded without content. File
 * content is read in pieces, each with pipelined requests on a handle of
 * its own, so that a dropped connection costs one piece.
 */
import * as posix from "node:path/posix";
import ignore from "ignore";
import type { Ignore } from "ignore";
import type { Attributes, FileEntry, SFTPWrapper } from "ssh2";
import { mapLimit } from "../../util/concurrency.js";
import { CofferError, throwIfAborted } from "../../util/errors.js";
import { compareNames } from "../../util/names.js";
import type { ImportOptions, Importer, ImportRecord } from "../records.js";
import { readAt, SftpPool, sftpOps as ops, sftpStatus } from "./connection.js";
import { infoOfAttrs, sftpError } from "./entries.js";
import type { SftpSettings } from "./params.js";

/** Directory listings in flight at once. */
const LISTINGS = 8;
/** Listings are not started while this many records wait to be yielded. */
const BUFFERED_RECORDS = 20_000;
/** readlink calls in flight within one listing. */
const READLINKS = 8;
/** Bytes of one content piece (and the largest piece open() yields). */
const READ_PIECE = 4 << 20;

export interface SftpImporterOptions {
  /** gitignore-style patterns, matched against the path relative to the root. */
  excludes?: string[] | undefined;
}

/** A directory to list: where it is on the server and its record, whose error is set if the listing fails. */
interface PendingDir {
  path: string;
  record: ImportRecord;
}

interface Listing {
  records: ImportRecord[];
  subdirs: PendingDir[];
}

export class SftpImporter implements Importer {
  readonly origin: string;
  readonly type = "sftp";
  readonly root: string;
  readonly flags = 0;
  readonly #s: SftpSettings;
  readonly #pool: SftpPool;
  readonly #ig: Ignore | undefined;
  /** Names of the owners seen so far ("" when the server has none for the id). */
  readonly #users = new Map<number, string>();
  readonly #groups = new Map<number, string>();

  constructor(settings: SftpSettings, opts: SftpImporterOptions = {}) {
    this.#s = settings;
    this.origin = settings.host;
    this.root = `${settings.where}/${settings.path}`;
    this.#pool = new SftpPool(settings);
    const patterns = (opts.excludes ?? []).filter((p) => p.trim() !== "");
    this.#ig = patterns.length > 0 ? ignore().add(patterns) : undefined;
  }

  async ping(): Promise<void> {
    await this.#statRoot();
  }

  async close(): Promise<void> {
    await this.#pool.close();
  }

  async *import(opts: ImportOptions = {}): AsyncGenerator<ImportRecord> {
    const { signal } = opts;
    throwIfAborted(signal);
    const rootAttrs = await this.#statRoot(signal);
    const root = this.#record("/", this.#s.path, posix.basename(this.#s.path) || "/", rootAttrs, signal);
    if (root.fileInfo.kind !== "dir") {
      throwIfAborted(signal);
      yield root;
      return;
    }
    const stack: PendingDir[] = [{ path: this.#s.path, record: root }];
    const done: Listing[] = [];
    let running = 0;
    let buffered = 0;
    let failure: unknown;
    let wake: (() => void) | undefined;
    const start = (d: PendingDir) => {
      running++;
      this.#list(d, signal)
        .then(
          (l) => {
            done.push(l);
            buffered += l.records.length;
          },
          (e: unknown) => {
            failure ??= e;
          },
        )
        .finally(() => {
          running--;
          wake?.();
        });
    };
    for (;;) {
      throwIfAborted(signal);
      if (failure !== undefined) throw failure;
      // Depth first (the last directory found is listed next): the stack stays short.
      while (running < LISTINGS && stack.length > 0 && buffered < BUFFERED_RECORDS) start(stack.pop()!);
      const l = done.shift();
      if (l !== undefined) {
        buffered -= l.records.length;
        stack.push(...l.subdirs.reverse());
        for (const r of l.records) {
          throwIfAborted(signal);
          yield r;
        }
        continue;
      }
      if (running === 0) return;
      await new Promise<void>((r) => (wake = r));
    }
  }

  /** The root's attributes (a symlink is followed); an IO error naming it when it cannot be read. */
  async #statRoot(signal?: AbortSignal): Promise<Attributes> {
    return this.#pool.run(async (sftp) => {
      try {
        return await ops.stat(sftp, this.#s.path);
      } catch (e) {
        throw sftpError(e, "read", this.root);
      }
    }, signal);
  }

  /** Lists `d`: its record (with an error if it cannot be listed) and its entries', subdirectories to list apart. */
  async #list(d: PendingDir, signal?: AbortSignal): Promise<Listing> {
    let entries;
    try {
      entries = await this.#pool.run((sftp) => ops.readdir(sftp, d.path), signal);
    } catch (e) {
      // The server's answer (no such directory, permission denied) is the entry's error; a lost server fails the import.
      if (sftpStatus(e) === undefined) throw e;
      return { records: [{ ...d.record, error: sftpError(e, "list", this.#at(d.path)).message }], subdirs: [] };
    }
    const records: ImportRecord[] = [d.record];
    const subdirs: PendingDir[] = [];
    const links: ImportRecord[] = [];
    const rel = d.record.pathname === "/" ? "" : d.record.pathname.slice(1);
    entries.sort((a, b) => compareNames(a.filename, b.filename));
    const kept = entries.filter((e) => !this.#excluded(rel === "" ? e.filename : `${rel}/${e.filename}`, infoOfAttrs(e.filename, e.attrs).kind === "dir"));
    for (const e of kept) this.#learnNames(e);
    this.#name(d.record);
    for (const e of kept) {
      const rec = this.#record(rel === "" ? `/${e.filename}` : `/${rel}/${e.filename}`, posix.join(d.path, e.filename), e.filename, e.attrs, signal);
      this.#name(rec);
      if (rec.fileInfo.kind === "dir") subdirs.push({ path: posix.join(d.path, e.filename), record: rec });
      else records.push(rec);
      if (rec.fileInfo.kind === "symlink") links.push(rec);
    }
    await mapLimit(links, READLINKS, async (r) => {
      const p = posix.join(d.path, r.fileInfo.name);
      try {
        r.target = await this.#pool.run((sftp) => ops.readlink(sftp, p), signal);
      } catch (e) {
        if (sftpStatus(e) === undefined) throw e;
        r.error = sftpError(e, "read the symlink", this.#at(p)).message;
      }
    });
    return { records, subdirs };
  }

  #excluded(rel: string, isDir: boolean): boolean {
    return this.#ig !== undefined && this.#ig.ignores(isDir ? `${rel}/` : rel);
  }

  /** `path` on the server as a location, for messages. */
  #at(path: string): string {
    return `${this.#s.where}/${path}`;
  }

  #record(pathname: string, path: string, name: string, a: Attributes, signal?: AbortSignal): ImportRecord {
    const rec: ImportRecord = { pathname, fileInfo: infoOfAttrs(name, a) };
    if (rec.fileInfo.kind === "file") {
      const size = rec.fileInfo.size;
      rec.open = () => Promise.resolve(this.#content(path, size, signal));
    }
    return rec;
  }

  /** Sets the owner names learnt for the record's ids. */
  #name(r: ImportRecord): void {
    const user = this.#users.get(r.fileInfo.uid);
    const group = this.#groups.get(r.fileInfo.gid);
    if (user) r.fileInfo.username = user;
    if (group) r.fileInfo.groupname = group;
  }

  /**
   * Learns owner names from an entry's `longname`, the ls -l line OpenSSH
   * gives with each READDIR entry ("-rw-r--r-- 1 alice staff 42 ..."): a
   * field that is only the id's digits is no name.
   */
  #learnNames(e: FileEntry): void {
    const f = e.longname.split(/\s+/);
    if (f.length < 9 || !/^[-dlpscb?][-rwxsStTl+.@]{9}/.test(f[0]!)) return;
    const [user, group] = [f[2]!, f[3]!];
    if (!this.#users.has(e.attrs.uid)) this.#users.set(e.attrs.uid, user === String(e.attrs.uid) ? "" : user);
    if (!this.#groups.has(e.attrs.gid)) this.#groups.set(e.attrs.gid, group === String(e.attrs.gid) ? "" : group);
  }

  /** The `size` bytes of the file at `path`, in pieces; fails if the file ends first. */
  async *#content(path: string, size: number, signal?: AbortSignal): AsyncGenerator<Uint8Array> {
    for (let at = 0; at < size; ) {
      const piece = new Uint8Array(Math.min(READ_PIECE, size - at));
      await this.#pool.run((sftp) => this.#readPiece(sftp, path, piece, at, size, signal), signal);
      at += piece.byteLength;
      yield piece;
    }
  }

  async #readPiece(sftp: SFTPWrapper, path: string, out: Uint8Array, offset: number, size: number, signal?: AbortSignal): Promise<void> {
    let h: Buffer;
    try {
      h = await ops.open(sftp, path, "r");
    } catch (e) {
      throw sftpError(e, "open", this.#at(path));
    }
    try {
      await readAt(sftp, h, out, offset, (end) => new CofferError("IO", `[sftp] ${this.#at(path)}: the file ended at ${end} bytes while read (it had ${size}): it changed during the backup`, { path: this.#at(path) }), signal);
    } catch (e) {
      throw sftpError(e, "read", this.#at(path));
    } finally {
      await ops.close(sftp, h).catch(() => undefined);
    }
  }
}
