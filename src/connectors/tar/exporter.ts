/**
 * The tar and tar+gz exporter: writes the records it is given as one
 * archive (its own ustar and pax headers, gzip from node:zlib), to a file or to
 * standard output for "-". Names are relative ("a/b", directories "a/"),
 * with pax headers when they are long or not ASCII; times with sub-second
 * precision, large ids and extended attributes (SCHILY.xattr.NAME) go in
 * pax headers too. A regular file whose dev:ino (nlink > 1) was already
 * written becomes a hard link entry to the first name.
 *
 * Extended attribute values are any bytes, written raw as GNU tar writes
 * them (SCHILY.xattr.NAME=<bytes>, "%" and "=" in NAME as %25 and %3D),
 * which GNU tar (--xattrs) restores byte for byte; libarchive's
 * LIBARCHIVE.xattr records are not written (nothing in them that
 * SCHILY.xattr lacks). Names are bytes: one that is not UTF-8 goes raw in
 * the ustar fields, as GNU tar writes it; what does not fit them (a long
 * name or link name, or a UTF-8 one that is not ASCII) is in a pax record
 * (with hdrcharset=BINARY when it is not UTF-8), a stand-in in the field.
 *
 * export() may be called concurrently: records are written one at a time,
 * in call order. A record that cannot be written (an unsafe path, content
 * that fails) gets an error result and the archive stays valid (a file
 * whose content fails midway is padded with zeros to its size). As for the
 * fs exporter, a path under a name already written as a symlink or another
 * non-directory is unsafe: extracting it would write through the link,
 * possibly outside the target.
 *
 * Writing a file is atomic: the archive is written to a temporary file in
 * the same directory, renamed over the final name in finish() after an
 * fsync (and the directory is synced); close() without a successful
 * finish() removes the temporary file. A file already at the final name is
 * refused (by ping(), and again when the archive is put in place, with
 * link(2), which does not replace) unless `overwrite` is set: then the
 * rename replaces it, atomically.
 */

import { randomBytes } from "node:crypto";
import { constants } from "node:fs";
import { access, link, lstat, open, rename, stat, unlink } from "node:fs/promises";
import type { FileHandle } from "node:fs/promises";
import { hostname } from "node:os";
import { basename, dirname, join, resolve } from "node:path";
import { PassThrough, Writable } from "node:stream";
import { pipeline } from "node:stream/promises";
import { createGzip } from "node:zlib";
import { LocationFlag } from "../flags.js";
import type { ExportRecord, ExportResult, Exporter, ImportOptions, Xattr } from "../records.js";
import { drained } from "../../util/drain.js";
import { CofferError, isCofferError, throwIfAborted } from "../../util/errors.js";
import { devNumbers, safeParts } from "../fs/exporter.js";
import { isRawName, nameToBytes } from "../../util/names.js";
import { encodeXattrName, fitsUstarName, formatPaxTime, isAscii, padding, paxRecord, ustarBlock, ustarStandIn } from "./format.js";
import type { UstarBlock } from "./format.js";

export interface TarExporterOptions {
  /** Compress the archive with gzip (tar+gz). */
  gzip: boolean;
  /** What "-" writes to (default: process.stdout); it is not ended. */
  stdout?: NodeJS.WritableStream | undefined;
  onWarning?: ((msg: string) => void) | undefined;
  /** Replace a file already at the path (restore --force); default: refuse it. */
  overwrite?: boolean | undefined;
}

/** Largest value of a 7-digit octal header field (uid, gid, devmajor, devminor): above it, pax records. */
const MAX_OCT7 = 0o7777777;
/** Largest value of an 11-digit octal field (size, mtime): above it, pax records. */
const MAX_OCT11 = 0o77777777777;
const PAX_TYPEFLAG = 0x78; // 'x'
const TYPEFLAG = { file: 0x30, link: 0x31, symlink: 0x32, "character-device": 0x33, "block-device": 0x34, directory: 0x35, fifo: 0x36 } as const;
const END_OF_ARCHIVE = Buffer.alloc(1024);

const ZEROS = Buffer.alloc(1 << 20);

/** An entry's ustar header, before the names that do not fit are moved to pax records. */
type HeaderArg = Omit<UstarBlock, "typeflag" | "mtime"> & { type: keyof typeof TYPEFLAG; mtime: number };

/** An entry to write: its ustar header (the full name and link name yet), and its other pax records. */
interface Entry {
  h: HeaderArg;
  /** Pax records besides path, linkpath and size (which writeEntry adds when they are needed). */
  records: Buffer[];
}

/** The archive being written: its bytes go into `src`, piped (through gzip) to the destination. */
interface Output {
  src: PassThrough;
  /** Settles when everything is written (or the pipeline failed). */
  done: Promise<void>;
  /** Aborted once `done` settles (the pipeline failed, or the archive ended early): a write waiting for 'drain' then fails. */
  ended: AbortSignal;
  fh?: FileHandle | undefined;
  tmp?: string | undefined;
  detach?: (() => void) | undefined;
}

export class TarExporter implements Exporter {
  readonly origin: string = hostname();
  readonly type: string;
  readonly root: string;
  readonly flags: number;
  private readonly path: string | null;
  private readonly opts: TarExporterOptions;
  private out: Output | undefined;
  private starting: Promise<Output> | undefined;
  /** Records are written whole and in the order export() was called. */
  private chain: Promise<unknown> = Promise.resolve();
  /** Set once the archive cannot be written any more. */
  private fatal: Error | undefined;
  private finished = false;
  private closed = false;
  /** dev:ino of multiply linked files -> the entry name first written for it. */
  private readonly links = new Map<string, string>();
  /** Names written as something other than a directory -> what they are: nothing may go under them. */
  private readonly nonDirs = new Map<string, string>();

  constructor(path: string, opts: TarExporterOptions) {
    this.opts = opts;
    this.type = opts.gzip ? "tar+gz" : "tar";
    this.path = path === "-" ? null : resolve(path);
    this.root = this.path ?? "-";
    this.flags = LocationFlag.FILE | LocationFlag.EXPORTXATTR | (this.path === null ? LocationFlag.STREAM : 0);
  }

  async ping(): Promise<void> {
    if (this.path === null) return;
    const dir = dirname(this.path);
    try {
      await access(dir, constants.W_OK);
      const st = await stat(this.path).catch((e: NodeJS.ErrnoException) => {
        if (e.code === "ENOENT") return undefined;
        throw e;
      });
      if (st?.isDirectory()) throw new Error("is a directory");
    } catch (e) {
      throw new CofferError("IO", `cannot write ${this.path}: ${errorText(e)}`, { path: this.path }, { cause: e });
    }
    if (!this.opts.overwrite && (await this.taken())) throw this.existsError();
  }

  /** Whether something (a file, a symlink, anything) is at the path. */
  private async taken(): Promise<boolean> {
    return lstat(this.path!).then(
      () => true,
      (e: NodeJS.ErrnoException) => {
        if (e.code === "ENOENT") return false;
        throw new CofferError("IO", `cannot write ${this.path}: ${errorText(e)}`, { path: this.path }, { cause: e });
      },
    );
  }

  private existsError(): CofferError {
    return new CofferError("EXISTS", `${this.path} exists: not replaced (give --force to replace it)`, { path: this.path });
  }

  /** Puts the finished temporary file in place: a rename, which replaces, with `overwrite`; else a link, which does not. */
  private async install(tmp: string, path: string): Promise<void> {
    if (this.opts.overwrite) return rename(tmp, path);
    try {
      await link(tmp, path);
    } catch (e) {
      const code = (e as NodeJS.ErrnoException).code;
      if (code === "EEXIST") throw this.existsError();
      if (!["EPERM", "ENOTSUP", "EOPNOTSUPP", "ENOSYS", "EXDEV"].includes(code ?? "")) throw e;
      // No hard links here: a check, then the rename.
      if (await this.taken()) throw this.existsError();
      return rename(tmp, path);
    }
    await unlink(tmp);
  }

  export(record: ExportRecord, opts: ImportOptions = {}): Promise<ExportResult> {
    const run = () => this.exportOne(record, opts.signal);
    const p = this.chain.then(run, run);
    this.chain = p.catch(() => {});
    return p;
  }

  async finish(opts: ImportOptions = {}): Promise<void> {
    await this.chain;
    this.check();
    throwIfAborted(opts.signal);
    const out = await this.output();
    try {
      if (!out.src.write(END_OF_ARCHIVE)) await drained(out.src, "tar entry");
      out.src.end();
      await out.done;
      if (out.fh !== undefined && out.tmp !== undefined && this.path !== null) {
        await out.fh.sync();
        await out.fh.close();
        out.fh = undefined;
        await this.install(out.tmp, this.path);
        out.tmp = undefined;
        await syncDir(dirname(this.path));
      }
    } catch (e) {
      throw this.setFatal(e);
    }
    out.detach?.();
    this.finished = true;
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    this.fatal ??= new CofferError("IO", "the tar exporter was closed");
    const out = this.out ?? (await this.starting?.catch(() => undefined));
    if (out === undefined) return;
    if (!this.finished) {
      out.src.destroy();
      await out.done.catch(() => {});
    }
    out.detach?.();
    await out.fh?.close().catch(() => {});
    out.fh = undefined;
    if (out.tmp !== undefined) await unlink(out.tmp).catch(() => {});
    out.tmp = undefined;
  }

  private check(): void {
    if (this.fatal !== undefined) throw this.fatal;
    if (this.finished) throw new CofferError("USAGE", "the tar archive is already finished");
  }

  private setFatal(e: unknown): Error {
    const err =
      e instanceof CofferError
        ? e
        : new CofferError("IO", `cannot write ${this.path ?? "standard output"}: ${errorText(e)}`, this.path === null ? {} : { path: this.path }, { cause: e });
    this.fatal ??= err;
    return err;
  }

  private output(): Promise<Output> {
    this.starting ??= this.start().then(
      (o) => (this.out = o),
      (e: unknown) => {
        throw this.setFatal(e);
      },
    );
    return this.starting;
  }

  private async start(): Promise<Output> {
    const source = new PassThrough({ highWaterMark: 1 << 20 });
    const stages: NodeJS.ReadWriteStream[] = this.opts.gzip ? [createGzip()] : [];
    if (this.path === null) {
      const dest = this.opts.stdout ?? process.stdout;
      const sink = sinkOf((b) => new Promise<void>((res, rej) => dest.write(b, (e) => (e ? rej(e) : res()))));
      const onError = (e: unknown) => this.setFatal(e);
      dest.on("error", onError);
      const done = pipeline([source, ...stages, sink]);
      const out: Output = { src: source, done, ended: endOf(done), detach: () => dest.removeListener("error", onError) };
      out.done.catch((e: unknown) => this.setFatal(e));
      return out;
    }
    const tmp = join(dirname(this.path), `.${basename(this.path)}.${randomBytes(6).toString("hex")}.tmp`);
    const fh = await open(tmp, "wx", 0o666);
    let pos = 0;
    const ws = sinkOf(async (b) => {
      for (let w = 0; w < b.length; ) w += (await fh.write(b, w, b.length - w, pos + w)).bytesWritten;
      pos += b.length;
    });
    const done = pipeline([source, ...stages, ws]);
    const out: Output = { src: source, done, ended: endOf(done), fh, tmp };
    out.done.catch((e: unknown) => this.setFatal(e));
    return out;
  }

  private async exportOne(record: ExportRecord, signal: AbortSignal | undefined): Promise<ExportResult> {
    const { pathname } = record;
    this.check();
    throwIfAborted(signal);
    let parts: string[];
    try {
      parts = safeParts(pathname);
    } catch (e) {
      return { pathname, error: errorText(e) };
    }
    // The root directory is the member "./", as in `tar -C DIR -cf X .`: GNU tar
    // gives its mode, owner, mtime and xattrs to the directory it extracts into.
    if (parts.length === 0 && record.fileInfo.kind !== "dir") return { pathname, error: "the restore root must be a directory" };
    let parent = "";
    for (const part of parts.slice(0, -1)) {
      parent = parent === "" ? part : `${parent}/${part}`;
      const what = this.nonDirs.get(parent);
      if (what !== undefined) return { pathname, error: `unsafe path ${JSON.stringify(pathname)}: /${parent} is ${what}` };
    }
    const info = record.fileInfo;
    if (info.kind === "socket") {
      this.opts.onWarning?.(`${pathname}: socket skipped (tar cannot hold one)`);
      return { pathname };
    }
    const out = await this.output();
    const name = parts.length === 0 ? "." : parts.join("/");
    let entry: Entry;
    try {
      entry = this.header(record, name);
    } catch (e) {
      if (isCofferError(e, "UNSUPPORTED") || isCofferError(e, "USAGE")) return { pathname, error: e.message };
      throw e;
    }
    // From here the entry is written (or the archive fails as a whole).
    if (info.kind !== "dir") this.nonDirs.set(name, info.kind === "symlink" ? "a symlink" : "not a directory");
    const key = info.kind === "file" && info.nlink > 1 && info.ino !== 0n ? `${info.dev}:${info.ino}` : undefined;
    const first = key !== undefined ? this.links.get(key) : undefined;
    if (first !== undefined) {
      entry.h.type = "link";
      entry.h.linkname = first;
      await this.writeEntry(out, entry, undefined, signal);
      return { pathname };
    }
    const error = await this.writeEntry(out, entry, info.kind === "file" ? record : undefined, signal);
    if (error !== undefined) return { pathname, error };
    if (key !== undefined) this.links.set(key, name);
    return { pathname };
  }

  /** The tar header of a record (the type, name and metadata; pax records for what ustar cannot hold). */
  private header(record: ExportRecord, name: string): Entry {
    const info = record.fileInfo;
    const pax: Buffer[] = [];
    let type: HeaderArg["type"];
    const h: HeaderArg = { name, type: "file", mode: 0, uid: 0, gid: 0, size: 0, mtime: 0 };
    switch (info.kind) {
      case "file":
        type = "file";
        h.size = info.size;
        break;
      case "dir":
        type = "directory";
        h.name = `${name}/`;
        break;
      case "symlink":
        if (record.target === undefined || record.target === "") throw new CofferError("USAGE", `${record.pathname}: symlink without a target`);
        type = "symlink";
        h.linkname = record.target;
        break;
      case "fifo":
        type = "fifo";
        break;
      case "chardev":
      case "blockdev": {
        type = info.kind === "chardev" ? "character-device" : "block-device";
        const [major, minor] = devNumbers(info.rdev ?? 0n).map(Number) as [number, number];
        h.devmajor = Math.min(major, MAX_OCT7);
        h.devminor = Math.min(minor, MAX_OCT7);
        if (major > MAX_OCT7 || minor > MAX_OCT7) {
          pax.push(paxRecord("SCHILY.devmajor", String(major)), paxRecord("SCHILY.devminor", String(minor)));
        }
        break;
      }
      default:
        throw new CofferError("UNSUPPORTED", `${record.pathname}: a tar archive cannot hold an entry of kind ${info.kind}`);
    }
    h.type = type;
    h.mode = info.mode & 0o7777;
    h.uid = info.uid <= MAX_OCT7 && info.uid >= 0 ? info.uid : 0;
    h.gid = info.gid <= MAX_OCT7 && info.gid >= 0 ? info.gid : 0;
    if (h.uid !== info.uid) pax.push(paxRecord("uid", String(info.uid)));
    if (h.gid !== info.gid) pax.push(paxRecord("gid", String(info.gid)));
    for (const [field, v] of [["uname", info.username], ["gname", info.groupname]] as const) {
      if (v === undefined || v === "") continue;
      if (/^[\x20-\x7e]{1,32}$/.test(v)) h[field] = v;
      else pax.push(paxRecord(field, nameToBytes(v)));
    }
    const secs = info.mtimeNs / 1_000_000_000n;
    const exactSecs = info.mtimeNs % 1_000_000_000n === 0n;
    h.mtime = info.mtimeNs >= 0n && secs <= BigInt(MAX_OCT11) ? Number(secs) : 0;
    if (!exactSecs || info.mtimeNs < 0n || secs > BigInt(MAX_OCT11)) pax.push(paxRecord("mtime", formatPaxTime(info.mtimeNs)));
    this.xattrs(record.pathname, record.xattrs, pax);
    return { h, records: pax };
  }

  /**
   * SCHILY.xattr.NAME=<the value's bytes>, as GNU tar writes them (and
   * restores them, as the importer does): any value, and any name
   * but an empty one or one with a NUL ("%" and "=" escaped).
   */
  private xattrs(pathname: string, xattrs: Xattr[] | undefined, pax: Buffer[]): void {
    for (const x of xattrs ?? []) {
      if (x.name === "" || x.name.includes("\0")) {
        this.opts.onWarning?.(`${pathname}: extended attribute ${JSON.stringify(x.name)} cannot be named in a pax header: skipped`);
        continue;
      }
      pax.push(paxRecord(`SCHILY.xattr.${encodeXattrName(x.name)}`, x.value));
    }
  }

  /**
   * The pax extended header an entry needs (none when it needs none): its
   * records, with path, linkpath and size added when the ustar header
   * cannot hold them, in which case h gets stand-ins that it can hold.
   */
  private paxHeader(e: Entry): Buffer[] | undefined {
    const h = e.h;
    const records: Buffer[] = [];
    // A name that is not UTF-8 goes as its bytes, with hdrcharset=BINARY (as GNU tar writes it).
    let binary = false;
    const bytesOf = (s: string): Buffer => {
      if (isRawName(s)) binary = true;
      return nameToBytes(s);
    };
    if (!fitsUstarName(h.name)) {
      records.push(paxRecord("path", bytesOf(h.name)));
      h.name = ustarStandIn(h.name);
    }
    const link = h.linkname;
    if (link !== undefined && link !== "" && !((isAscii(link) || isRawName(link)) && nameToBytes(link).length <= 100)) {
      records.push(paxRecord("linkpath", bytesOf(link)));
      h.linkname = ustarStandIn(link);
    }
    if (binary) records.unshift(paxRecord("hdrcharset", "BINARY"));
    if (h.size > MAX_OCT11) {
      records.push(paxRecord("size", String(h.size)));
      h.size = 0;
    }
    records.push(...e.records);
    if (records.length === 0) return undefined;
    const body = Buffer.concat(records);
    // Named as GNU tar names them (its %d/PaxHeaders/%f, without the directory).
    const base = h.name.replace(/\/+$/, "").replace(/^.*\//, "");
    const block = ustarBlock({
      name: `PaxHeaders/${base.slice(Math.max(0, base.length - 89))}`,
      mode: 0o644,
      uid: h.uid,
      gid: h.gid,
      size: body.length,
      mtime: h.mtime,
      typeflag: PAX_TYPEFLAG,
    });
    return [block, body, padding(body.length)];
  }

  /**
   * Writes one entry; for a file, exactly `size` bytes of its content (cut
   * or zero-padded, so the archive stays valid). Returns the per-record
   * error, if any; throws on fatal errors.
   */
  private async writeEntry(out: Output, entry: Entry, file: ExportRecord | undefined, signal: AbortSignal | undefined): Promise<string | undefined> {
    const h = entry.h;
    const size = file !== undefined ? h.size : 0;
    const write = async (data: Uint8Array): Promise<void> => {
      if (out.src.write(data)) return;
      try {
        await drained(out.src, "tar entry", out.ended);
      } catch (e) {
        throw this.setFatal(this.fatal ?? e);
      }
    };
    const zeros = async (n: number): Promise<void> => {
      for (let left = n; left > 0; left -= ZEROS.length) await write(ZEROS.subarray(0, Math.min(left, ZEROS.length)));
    };
    let header: Buffer[];
    try {
      header = [...(this.paxHeader(entry) ?? []), ustarBlock({ ...h, typeflag: TYPEFLAG[h.type], size: h.type === "file" ? h.size : 0 })];
    } catch (e) {
      throw this.setFatal(e);
    }
    for (const b of header) if (b.length > 0) await write(b);
    let error: string | undefined;
    if (file !== undefined) {
      let done = 0;
      try {
        if (file.content !== undefined) {
          for await (const piece of file.content()) {
            throwIfAborted(signal);
            if (piece.offset < done) throw new Error(`content pieces overlap at offset ${piece.offset}`);
            const start = Math.min(piece.offset, size);
            await zeros(start - done); // a gap reads as zeros
            done = start;
            const n = Math.max(0, Math.min(piece.length, size - done));
            if (piece.zero === true || piece.data === undefined) await zeros(n);
            else {
              if (piece.data.byteLength < piece.length) throw new Error(`content piece at offset ${piece.offset} has ${piece.data.byteLength} of ${piece.length} bytes`);
              if (n > 0) await write(piece.data.byteLength === n ? piece.data : piece.data.subarray(0, n));
            }
            done += n;
            if (piece.offset + piece.length > size) {
              error = `content longer than the size recorded (${size} bytes): cut`;
              break;
            }
          }
        }
        if (done < size && error === undefined) error = `content shorter than the size recorded (${done} of ${size} bytes): padded with zeros`;
      } catch (e) {
        if (isCofferError(e, "INTERRUPTED") || signal?.aborted || this.fatal !== undefined) throw this.setFatal(e);
        error = `cannot read content: ${errorText(e)}`;
      }
      await zeros(size - done);
    }
    await write(padding(size));
    return error;
  }
}

/**
 * A signal aborted when `done` settles. One per archive, whose listeners
 * each wait removes: a promise per entry raced at each wait would stay
 * referenced by the pending `done`, a list growing over a large restore.
 */
function endOf(done: Promise<void>): AbortSignal {
  const ac = new AbortController();
  done.then(
    () => ac.abort(new Error("the archive ended early")),
    (e: unknown) => ac.abort(e),
  );
  return ac.signal;
}

function errorText(e: unknown): string {
  return e instanceof Error ? e.message : String(e);
}

/**
 * A Writable over an async write function, one write at a time (queued
 * chunks are joined): for a file handle we keep open to sync it, or a
 * stream we do not own (never ended).
 */
function sinkOf(write: (b: Buffer) => Promise<void>): Writable {
  return new Writable({
    highWaterMark: 1 << 20,
    write(chunk: Buffer, _enc, cb) {
      write(chunk).then(() => cb(), cb);
    },
    writev(chunks, cb) {
      write(Buffer.concat(chunks.map((c) => c.chunk as Buffer))).then(() => cb(), cb);
    },
    final(cb) {
      cb();
    },
  });
}

async function syncDir(dir: string): Promise<void> {
  let fh: FileHandle | undefined;
  try {
    fh = await open(dir, "r");
    await fh.sync();
  } catch (e) {
    // Some filesystems cannot sync a directory: the rename is done all the same.
    const code = (e as NodeJS.ErrnoException).code;
    if (code !== "EINVAL" && code !== "ENOTSUP" && code !== "EISDIR" && code !== "EPERM") throw e;
  } finally {
    await fh?.close().catch(() => {});
  }
}
