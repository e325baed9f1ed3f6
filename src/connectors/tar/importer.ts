/**
 * The tar and tar+gz importer: reads an archive (a file, or standard input
 * for "-") with tar-stream and yields one record per entry, in archive
 * order, after a "/" root record. Entry names become pathnames under the
 * root; names with a ".." component or a NUL become error records, never
 * paths outside the root.
 *
 * A tar stream is sequential: the importer never moves past an entry until
 * the core is done with it, i.e. its content was read to the end (or the
 * reader released with return()), or the core's answer for the record came
 * on `results`. Until then the next() calls of other workers wait. Without a
 * results channel the importer cannot know that a record will never be
 * read, so an entry that next() must pass before anyone opened it is first
 * spooled (to memory when small, else to a temporary file) and open() reads
 * the spool; spools are dropped once read, and at close().
 *
 * Hard links: reading a file, a quick first pass over the headers (seeking
 * over content in a plain tar) finds which names are link targets, so the
 * target and its links share one synthetic inode (dev 1) and nlink = 1 +
 * links; link records carry `linkTarget` (the first name) and no content.
 * Limitation: from standard input there is only one pass, so a target is
 * yielded before anyone knows it has links (nlink 1); its link records
 * still get `linkTarget`, the target's dev and ino, and nlink 2.
 */

import { createReadStream } from "node:fs";
import { mkdtemp, open, rm, stat } from "node:fs/promises";
import type { FileHandle } from "node:fs/promises";
import { hostname, tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { pipeline } from "node:stream";
import { createGunzip } from "node:zlib";
import ignore from "ignore";
import type { Ignore } from "ignore";
import { extract } from "tar-stream";
import type { Header } from "tar-stream";
import { LocationFlag } from "../flags.js";
import type { EntryKind, FileInfo, ImportOptions, Importer, ImportRecord, ImportResult, Xattr } from "../records.js";
import { abortError, CofferError, throwIfAborted } from "../../util/errors.js";
import { decodeXattrName, makedev, normaliseName, parsePaxTime, quarantinePath, TarScanner, TypeFlag } from "./format.js";
import type { ScannedEntry } from "./format.js";

export interface TarImporterOptions {
  /** The archive is gzip-compressed (tar+gz). */
  gzip: boolean;
  /** What "-" reads (default: process.stdin). */
  stdin?: NodeJS.ReadableStream | undefined;
  onWarning?: ((msg: string) => void) | undefined;
  /** gitignore-style patterns, matched against entry paths relative to the root. */
  excludes?: string[] | undefined;
  /** Do not import extended attributes. */
  noXattr?: boolean | undefined;
}

/** Read size of the archive file. */
const READ_SIZE = 1 << 20;
/** Spooled entries up to this size stay in memory, within SPOOL_MEMORY in all. */
const SPOOL_MEM_ENTRY = 1 << 20;
const SPOOL_MEMORY = 32 << 20;
const SPOOL_PIECE = 1 << 20;

type Kind = EntryKind | "link";

interface Built {
  record?: ImportRecord;
  content?: Content;
}

export class TarImporter implements Importer {
  readonly origin: string = hostname();
  readonly type: string;
  readonly root: string;
  readonly flags: number;
  private readonly path: string | null;
  private readonly opts: TarImporterOptions;
  private readonly ig: Ignore | undefined;
  private used = false;
  private closed = false;
  private readonly sessions = new Set<Session>();
  private readonly spool: Spool;

  constructor(path: string, opts: TarImporterOptions) {
    this.opts = opts;
    this.type = opts.gzip ? "tar+gz" : "tar";
    this.path = path === "-" ? null : resolve(path);
    this.root = this.path ?? "-";
    this.flags = LocationFlag.FILE | (this.path === null ? LocationFlag.STREAM : 0);
    const patterns = (opts.excludes ?? []).filter((p) => p.trim() !== "");
    this.ig = patterns.length > 0 ? ignore().add(patterns) : undefined;
    this.spool = new Spool();
  }

  /** What error messages call the archive. */
  private get archive(): string {
    return this.path ?? "standard input";
  }

  async ping(): Promise<void> {
    if (this.path === null) return;
    let fh: FileHandle | undefined;
    try {
      fh = await open(this.path, "r");
      if (!(await fh.stat()).isFile()) throw new Error("not a regular file");
    } catch (e) {
      throw new CofferError("IO", `cannot read ${this.path}: ${errorText(e)}`, { path: this.path }, { cause: e });
    } finally {
      await fh?.close().catch(() => {});
    }
  }

  import(opts: ImportOptions = {}): AsyncIterable<ImportRecord> {
    // Taken now (not at the first next()), so that a second import() of a stream fails whatever the order.
    const refused = this.path === null && this.used;
    this.used = true;
    // Results are iterated at once: a channel may drop what it is sent before it is read.
    const results = refused || this.closed ? undefined : opts.results?.[Symbol.asyncIterator]();
    return this.run(opts, refused, results);
  }

  async close(): Promise<void> {
    this.closed = true;
    await Promise.all([...this.sessions].map((s) => s.dispose(closedError())));
    await this.spool.close();
  }

  private async *run(opts: ImportOptions, refused: boolean, results: AsyncIterator<ImportResult> | undefined): AsyncGenerator<ImportRecord> {
    if (refused) throw new CofferError("USAGE", "standard input can be imported only once");
    if (this.closed) throw closedError();
    throwIfAborted(opts.signal);
    const s = new Session(this.archive, opts.signal, results, this.spool);
    this.sessions.add(s);
    try {
      let rootMtime = BigInt(Date.now()) * 1_000_000n;
      let links: Map<string, number> | null = null;
      if (this.path !== null) {
        try {
          rootMtime = (await stat(this.path, { bigint: true })).mtimeNs;
        } catch (e) {
          throw new CofferError("IO", `cannot read ${this.path}: ${errorText(e)}`, { path: this.path }, { cause: e });
        }
        links = await s.guard(countLinks(this.path, this.opts.gzip, (rel, dir) => this.excluded(rel, dir), s.stopSignal));
      }
      s.start(this.path === null ? (this.opts.stdin ?? process.stdin) : this.path, this.opts.gzip);
      const st = new RunState(links);
      let item = await s.nextEntry();
      // An archive made with `tar -C dir .` starts with "./": it gives the root its metadata.
      if (item !== null && isRootDir(item)) {
        const rec = this.entryRecord(item, st, "/", "", "dir", BigInt(++st.ino), s).record;
        await s.finishEntry(item);
        item = null;
        yield rec;
      } else yield syntheticRoot(st, rootMtime);
      s.check();
      if (item === null) item = await s.nextEntry();
      while (item !== null) {
        const built = this.build(item, st, s);
        if (built.record !== undefined) {
          yield built.record;
          s.check();
        }
        if (built.content !== undefined) await s.settle(built.content);
        await s.finishEntry(item);
        item = await s.nextEntry();
      }
    } finally {
      this.sessions.delete(s);
      await s.dispose(closedError());
    }
  }

  private excluded(rel: string, isDir: boolean): boolean {
    return this.ig !== undefined && this.ig.ignores(isDir ? `${rel}/` : rel);
  }

  private warn(msg: string): void {
    this.opts.onWarning?.(msg);
  }

  /** The record of one entry (none when it is skipped), and its content when it has some to read. */
  private build(item: Item, st: RunState, s: Session): Built {
    const h = item.header;
    const pax = paxOf(item);
    const raw = item.scanned?.name ?? h.name;
    const typeflag = item.scanned?.typeflag;
    const kind = kindOf(h.type as string | null, typeflag);
    const checked = normaliseName(raw);
    const ino = BigInt(++st.ino);
    if ("error" in checked) {
      const pathname = quarantinePath(raw);
      return { record: errorRecord(pathname, kind, ino, `unsafe name ${JSON.stringify(raw)} in the archive: ${checked.error}`) };
    }
    const { path: pathname, parts } = checked;
    if (parts.length === 0) {
      // Another root entry: its metadata cannot replace what was already yielded.
      if (kind !== "dir") this.warn(`${this.archive}: entry ${JSON.stringify(raw)} (the root) is not a directory: skipped`);
      return {};
    }
    const rel = parts.join("/");
    if (this.excluded(rel, kind === "dir")) return {};
    const name = parts[parts.length - 1] as string;
    if (kind === undefined) {
      if (typeflag === TypeFlag.VOLHDR) {
        this.warn(`${this.archive}: volume label ${JSON.stringify(raw)} skipped`);
        return {};
      }
      const what = typeflag === TypeFlag.SPARSE ? "an old GNU sparse file" : typeflag === TypeFlag.MULTIVOL ? "a multi-volume continuation" : `an entry of unknown type ${typeflagText(typeflag)}`;
      return { record: errorRecord(pathname, "other", ino, `${what}: not supported`) };
    }
    if (kind === "file" && [...paxKeys(pax)].some((k) => k.startsWith("GNU.sparse."))) {
      return { record: errorRecord(pathname, "file", ino, "a GNU sparse file: not supported") };
    }
    if (kind === "link") return { record: this.linkRecord(pathname, name, h, ino, st) };
    return this.entryRecord(item, st, pathname, name, kind, ino, s);
  }

  private entryRecord(item: Item, st: RunState, pathname: string, name: string, kind: EntryKind, ino: bigint, s: Session): Built & { record: ImportRecord } {
    const h = item.header;
    const pax = paxOf(item);
    const uid = paxInt(pax, "uid") ?? h.uid ?? 0;
    const gid = paxInt(pax, "gid") ?? h.gid ?? 0;
    const mtime = paxTime(pax, "mtime") ?? msToNs(h.mtime);
    const ctime = paxTime(pax, "ctime");
    const info: FileInfo = {
      name,
      kind,
      size: kind === "file" ? h.size : 0,
      mode: (h.mode ?? 0) & 0o7777,
      mtimeNs: mtime,
      dev: 0n,
      ino,
      uid,
      gid,
      nlink: 1,
    };
    if (ctime !== undefined) info.ctimeNs = ctime;
    const uname = paxText(pax, "uname") ?? h.uname;
    const gname = paxText(pax, "gname") ?? h.gname;
    if (uname) info.username = uname;
    if (gname) info.groupname = gname;
    if (kind === "chardev" || kind === "blockdev") {
      info.rdev = makedev(paxInt(pax, "SCHILY.devmajor") ?? h.devmajor ?? 0, paxInt(pax, "SCHILY.devminor") ?? h.devminor ?? 0);
    }
    const rec: ImportRecord = { pathname, fileInfo: info };
    if (kind === "symlink") rec.target = h.linkname ?? "";
    if (!this.opts.noXattr) {
      const x = xattrsOf(pax);
      if (x.length > 0) rec.xattrs = x;
    }
    if (kind !== "dir" && pathname !== "/") {
      const count = st.links?.get(pathname);
      if (count !== undefined) {
        info.dev = 1n;
        info.nlink = 1 + count;
      }
      // From stdin every name may turn out to be a link target; from a file only the known ones.
      if (st.links === null || count !== undefined) st.targets.set(pathname, { fileInfo: info, target: rec.target, xattrs: rec.xattrs });
    }
    if (kind !== "file") return { record: rec };
    const content = new Content(pathname, item.reader, h.size, s);
    rec.open = () => content.open();
    contentOf.set(rec, content);
    return { record: rec, content };
  }

  private linkRecord(pathname: string, name: string, h: Header, ino: bigint, st: RunState): ImportRecord {
    const checked = normaliseName(h.linkname ?? "");
    if ("error" in checked) return errorRecord(pathname, "file", ino, `hard link to ${JSON.stringify(h.linkname)}: ${checked.error}`);
    const first = st.firstName.get(checked.path) ?? checked.path;
    const target = st.targets.get(first);
    if (target === undefined) return errorRecord(pathname, "file", ino, `hard link to ${first}: no such entry earlier in the archive (or it was excluded or could not be read)`);
    st.firstName.set(pathname, first);
    const t = target.fileInfo;
    const rec: ImportRecord = {
      pathname,
      fileInfo: { ...t, name, nlink: st.links === null ? 2 : t.nlink },
      linkTarget: first,
    };
    if (target.target !== undefined) rec.target = target.target;
    if (target.xattrs !== undefined) rec.xattrs = target.xattrs;
    return rec;
  }
}

/** Per import: synthetic inode numbers and what hard links need. */
class RunState {
  ino = 0;
  /** What links copy from the records that may be their targets, by pathname. */
  readonly targets = new Map<string, Pick<ImportRecord, "fileInfo" | "target" | "xattrs">>();
  /** A link's name -> the first name of its inode (links to links). */
  readonly firstName = new Map<string, string>();
  /** From the first pass: link targets -> number of links to them; null when there was none (stdin). */
  constructor(readonly links: Map<string, number> | null) {}
}

function syntheticRoot(st: RunState, mtimeNs: bigint): ImportRecord {
  return {
    pathname: "/",
    fileInfo: {
      name: "",
      kind: "dir",
      size: 0,
      mode: 0o755,
      mtimeNs,
      dev: 0n,
      ino: BigInt(++st.ino),
      uid: process.getuid?.() ?? 0,
      gid: process.getgid?.() ?? 0,
      nlink: 1,
    },
  };
}

function isRootDir(item: Item): boolean {
  const n = normaliseName(item.scanned?.name ?? item.header.name);
  return "path" in n && n.path === "/" && kindOf(item.header.type as string | null, item.scanned?.typeflag) === "dir";
}

function errorRecord(pathname: string, kind: EntryKind | "link" | undefined, ino: bigint, error: string): ImportRecord {
  const name = pathname.slice(pathname.lastIndexOf("/") + 1);
  const k: EntryKind = kind === undefined ? "other" : kind === "link" ? "file" : kind;
  return {
    pathname,
    fileInfo: { name, kind: k, size: 0, mode: 0, mtimeNs: 0n, dev: 0n, ino, uid: 0, gid: 0, nlink: 1 },
    error,
  };
}

function kindOf(type: string | null, typeflag: number | undefined): Kind | undefined {
  switch (type) {
    case "file":
    case "contiguous-file":
      return "file";
    case "directory":
      return "dir";
    case "symlink":
      return "symlink";
    case "link":
      return "link";
    case "fifo":
      return "fifo";
    case "character-device":
      return "chardev";
    case "block-device":
      return "blockdev";
  }
  return typeflag === TypeFlag.DUMPDIR ? "dir" : undefined;
}

function typeflagText(flag: number | undefined): string {
  if (flag === undefined) return "(unknown)";
  return flag >= 0x20 && flag < 0x7f ? `'${String.fromCharCode(flag)}'` : `0x${flag.toString(16)}`;
}

// ---- pax values: raw bytes from the tap when it has them, else tar-stream's strings ----

type Pax = Map<string, Buffer> | Record<string, string> | null;

function paxOf(item: Item): Pax {
  if (item.scanned !== null) return item.scanned.pax;
  const p = item.header.pax as Record<string, string> | null | undefined;
  return p ?? null;
}

function paxKeys(pax: Pax): Iterable<string> {
  if (pax === null) return [];
  return pax instanceof Map ? pax.keys() : Object.keys(pax);
}

function paxBytes(pax: Pax, key: string): Buffer | undefined {
  if (pax === null) return undefined;
  if (pax instanceof Map) return pax.get(key);
  const v = pax[key];
  return v === undefined ? undefined : Buffer.from(v, "utf8");
}

function paxText(pax: Pax, key: string): string | undefined {
  if (pax === null) return undefined;
  return pax instanceof Map ? pax.get(key)?.toString("utf8") : pax[key];
}

function paxInt(pax: Pax, key: string): number | undefined {
  const v = paxText(pax, key);
  if (v === undefined || !/^\d+$/.test(v.trim())) return undefined;
  return Number(v.trim());
}

function paxTime(pax: Pax, key: string): bigint | undefined {
  const v = paxText(pax, key);
  return v === undefined ? undefined : parsePaxTime(v);
}

function msToNs(d: Date | undefined): bigint {
  const ms = d?.getTime();
  return ms === undefined || !Number.isFinite(ms) ? 0n : BigInt(ms) * 1_000_000n;
}

const SCHILY = "SCHILY.xattr.";
const LIBARCHIVE = "LIBARCHIVE.xattr.";

/** SCHILY.xattr.NAME (raw value; %3D and %25 in NAME decoded), and libarchive's LIBARCHIVE.xattr.NAME (URL-encoded name, base64 value). */
function xattrsOf(pax: Pax): Xattr[] {
  const out = new Map<string, Uint8Array>();
  for (const key of paxKeys(pax)) {
    // The name as GNU tar reads it (%3D and %25 are "=" and "%"); the value's raw bytes (from the scanner).
    if (key.startsWith(SCHILY) && key.length > SCHILY.length) out.set(decodeXattrName(key.slice(SCHILY.length)), new Uint8Array(paxBytes(pax, key) ?? []));
  }
  for (const key of paxKeys(pax)) {
    if (!key.startsWith(LIBARCHIVE)) continue;
    let name: string;
    try {
      name = decodeURIComponent(key.slice(LIBARCHIVE.length));
    } catch {
      continue;
    }
    if (name !== "" && !out.has(name)) out.set(name, new Uint8Array(Buffer.from(paxText(pax, key) ?? "", "base64")));
  }
  return [...out].map(([name, value]) => ({ name, value }));
}

// ---- the first pass: which names are hard-link targets ----

/**
 * Counts, for each name that hard links point to, how many links there are
 * (by the same name checks and excludes as the import). Tolerant: a damaged
 * archive ends the count where the damage is (the import reports it).
 */
async function countLinks(path: string, gzip: boolean, excluded: (rel: string, dir: boolean) => boolean, signal: AbortSignal): Promise<Map<string, number>> {
  const counts = new Map<string, number>();
  const seen = new Set<string>();
  const firstName = new Map<string, string>();
  const scanner = new TarScanner((e: ScannedEntry) => {
    const n = normaliseName(e.name);
    if ("error" in n || n.parts.length === 0) return;
    const isDir = e.typeflag === 0x35 || e.typeflag === TypeFlag.DUMPDIR || ((e.typeflag === 0 || e.typeflag === 0x30) && e.name.endsWith("/"));
    if (excluded(n.parts.join("/"), isDir)) return;
    if (e.typeflag !== TypeFlag.LINK) {
      if (!isDir) seen.add(n.path);
      return;
    }
    const t = normaliseName(e.linkname);
    if ("error" in t) return;
    const first = firstName.get(t.path) ?? t.path;
    if (!seen.has(first)) return;
    firstName.set(n.path, first);
    counts.set(first, (counts.get(first) ?? 0) + 1);
  });
  try {
    if (gzip) {
      const raw = createReadStream(path, { highWaterMark: READ_SIZE, signal });
      const gunzip = createGunzip();
      pipeline(raw, gunzip, () => {});
      for await (const chunk of gunzip as AsyncIterable<Buffer>) scanner.push(chunk);
    } else {
      const fh = await open(path, "r");
      try {
        const size = (await fh.stat()).size;
        const buf = Buffer.allocUnsafe(64 << 10);
        let pos = 0;
        while (pos < size) {
          throwIfAborted(signal);
          const skip = scanner.skippable;
          if (skip > 0) {
            const n = Math.min(skip, size - pos);
            scanner.skip(n);
            pos += n;
            continue;
          }
          const { bytesRead } = await fh.read(buf, 0, buf.length, pos);
          if (bytesRead === 0) break;
          scanner.push(buf.subarray(0, bytesRead));
          pos += bytesRead;
        }
      } finally {
        await fh.close();
      }
    }
  } catch (e) {
    if (signal.aborted) throw e;
    // Damaged or unreadable: the import itself will say so.
  }
  return counts;
}

// ---- one import: the archive stream, the entries, the gates ----

interface Item {
  header: Header;
  reader: EntryReader;
  next: (err?: Error | null) => void;
  scanned: ScannedEntry | null;
}

type Extract = ReturnType<typeof extract>;

class Session {
  private readonly ctl = new AbortController();
  private error: CofferError | undefined;
  private readonly failed: Promise<never>;
  private rejectFailed!: (e: CofferError) => void;
  private ex: Extract | undefined;
  private input: NodeJS.ReadableStream | undefined;
  private inputClosed: Promise<void> = Promise.resolve();
  private tap: TarScanner | null = null;
  private readonly tapQueue: ScannedEntry[] = [];
  private current: Item | null = null;
  private inputDone = false;
  private inputBytes = 0;
  private wake: (() => void) | null = null;
  /** The content next() waits for (one at a time), by pathname. */
  private readonly gated = new Map<string, Content>();
  private readonly hasResults: boolean;
  private resultsEnded = false;
  private readonly onAbort: () => void;
  private disposing: Promise<void> | undefined;

  constructor(
    private readonly archive: string,
    private readonly signal: AbortSignal | undefined,
    results: AsyncIterator<ImportResult> | undefined,
    private readonly spool: Spool,
  ) {
    this.failed = new Promise<never>((_, reject) => (this.rejectFailed = reject));
    this.failed.catch(() => {});
    this.onAbort = () => void this.dispose(abortError(signal));
    signal?.addEventListener("abort", this.onAbort, { once: true });
    this.hasResults = results !== undefined;
    if (results !== undefined) void this.readResults(results);
  }

  /** Aborted when the import stops (cancelled, closed, failed or done). */
  get stopSignal(): AbortSignal {
    return this.ctl.signal;
  }

  /** Rejects at once when the import stops. */
  guard<T>(p: Promise<T>): Promise<T> {
    return Promise.race([p, this.failed]);
  }

  check(): void {
    if (this.error !== undefined) throw this.error;
  }

  private fail(e: CofferError): void {
    if (this.error !== undefined) return;
    this.error = e;
    this.rejectFailed(e);
    this.ctl.abort(e);
    this.wake?.();
  }

  start(source: string | NodeJS.ReadableStream, gzip: boolean): void {
    // allowUnknownFormat: v7 archives (no magic) too; the header checksum still guards.
    const ex = extract({ allowUnknownFormat: true } as Parameters<typeof extract>[0]);
    this.ex = ex;
    ex.on("error", (e: Error) => this.fail(inputError(this.archive, e)));
    ex.on("entry", (header: Header, stream, next) => {
      this.current = { header, reader: new EntryReader(stream as unknown as StreamxReadable), next, scanned: this.takeScanned(header) };
      this.wake?.();
    });
    this.tap = new TarScanner((e) => this.tapQueue.push(e));
    let input: NodeJS.ReadableStream;
    if (typeof source === "string") {
      const rs = createReadStream(source, { highWaterMark: READ_SIZE, signal: this.ctl.signal });
      this.inputClosed = new Promise((res) => rs.once("close", () => res()));
      input = rs;
    } else input = source;
    this.input = input;
    let src: AsyncIterable<Buffer | string> = input as AsyncIterable<Buffer | string>;
    if (gzip) {
      const gunzip = createGunzip({ chunkSize: 256 << 10 });
      pipeline(input, gunzip, () => {});
      src = gunzip;
    }
    void this.pump(src, ex);
  }

  private takeScanned(header: Header): ScannedEntry | null {
    if (this.tap === null) return null;
    const s = this.tapQueue.shift();
    if (s !== undefined && s.name === header.name) return s;
    this.dropTap(); // out of step with tar-stream: use tar-stream's values alone
    return null;
  }

  private dropTap(): void {
    this.tap = null;
    this.tapQueue.length = 0;
  }

  private async pump(src: AsyncIterable<Buffer | string>, ex: Extract): Promise<void> {
    try {
      for await (const c of src) {
        if (this.error !== undefined) return;
        const chunk = typeof c === "string" ? Buffer.from(c) : c;
        if (chunk.length === 0) continue;
        this.inputBytes += chunk.length;
        if (this.tap !== null) {
          try {
            this.tap.push(chunk);
          } catch {
            this.dropTap(); // tar-stream decides what is damaged
          }
        }
        if (!ex.write(chunk)) await this.guard(waitFor(ex as unknown as Emitter, "drain"));
      }
      if (this.error !== undefined) return;
      ex.end(undefined);
      await this.guard(waitFor(ex as unknown as Emitter, "finish"));
      if (this.inputBytes > 0 && this.tap !== null && !(this.tap.sawEndMarker && this.tap.atBoundary)) {
        throw new CofferError("CORRUPT", `${this.archive}: truncated tar archive (no end-of-archive marker)`, { path: this.archive });
      }
      this.inputDone = true;
      this.wake?.();
    } catch (e) {
      this.fail(inputError(this.archive, e));
    }
  }

  /** The next entry, or null at the end of the archive. */
  async nextEntry(): Promise<Item | null> {
    while (true) {
      this.check();
      const c = this.current;
      if (c !== null) {
        this.current = null;
        return c;
      }
      if (this.inputDone) return null;
      await this.guard(new Promise<void>((res) => (this.wake = res)));
      this.wake = null;
    }
  }

  /** Reads what is left of an entry and lets tar-stream go on. */
  async finishEntry(item: Item): Promise<void> {
    await this.guard(item.reader.drain());
    item.next();
  }

  /**
   * Waits until the core is done with a file's content (read, released, or
   * answered on results); without results, spools content nobody opened.
   */
  async settle(c: Content): Promise<void> {
    if (c.state === "pending" && !this.hasResults) {
      await this.guard(c.spoolTo(this.spool));
      return;
    }
    if (c.state !== "pending" && c.state !== "open") return;
    if (this.resultsEnded) {
      c.release();
      return;
    }
    this.gated.set(c.path, c);
    try {
      await this.guard(c.released);
    } finally {
      this.gated.delete(c.path);
    }
  }

  /** The error a content read failed with, as the import sees it. */
  errorFor(e: unknown): CofferError {
    return this.error ?? inputError(this.archive, e);
  }

  private async readResults(results: AsyncIterator<ImportResult>): Promise<void> {
    try {
      while (true) {
        const r = await this.guard(results.next());
        if (r.done === true) break;
        const rec = r.value.record;
        // The answer may come before the gate: remember it on the content itself.
        const c = contentOf.get(rec) ?? this.gated.get(rec.pathname);
        c?.release();
      }
    } catch {
      return;
    }
    // Every record was answered, or the backup failed: nothing will be read any more.
    this.resultsEnded = true;
    for (const c of this.gated.values()) c.release();
  }

  async dispose(e: CofferError): Promise<void> {
    this.fail(e);
    this.disposing ??= (async () => {
      this.signal?.removeEventListener("abort", this.onAbort);
      for (const c of this.gated.values()) c.release();
      this.ex?.destroy();
      if (this.input !== undefined && typeof (this.input as { destroy?: unknown }).destroy === "function") {
        (this.input as unknown as { destroy(): void }).destroy();
      }
      await this.inputClosed;
    })();
    await this.disposing;
  }
}

function closedError(): CofferError {
  return new CofferError("INTERRUPTED", "the tar importer was closed");
}

function inputError(archive: string, e: unknown): CofferError {
  if (e instanceof CofferError) return e;
  const err = e as NodeJS.ErrnoException;
  if (err?.name === "AbortError") return new CofferError("INTERRUPTED", "interrupted");
  const code = typeof err?.code === "string" ? err.code : "";
  if (code.startsWith("Z_")) return new CofferError("CORRUPT", `${archive}: not a valid gzip stream: ${errorText(e)}`, { path: archive }, { cause: e });
  if (err?.syscall !== undefined) return new CofferError("IO", `cannot read ${archive}: ${errorText(e)}`, { path: archive }, { cause: e });
  return new CofferError("CORRUPT", `${archive}: damaged tar archive: ${errorText(e)}`, { path: archive }, { cause: e });
}

function errorText(e: unknown): string {
  return e instanceof Error ? e.message : String(e);
}

interface Emitter {
  on(event: string, fn: (...args: unknown[]) => void): unknown;
  off?(event: string, fn: (...args: unknown[]) => void): unknown;
  removeListener?(event: string, fn: (...args: unknown[]) => void): unknown;
}

/** Resolves on `event`; rejects if the emitter fails or closes first. */
function waitFor(em: Emitter, event: string): Promise<void> {
  return new Promise<void>((res, rej) => {
    const off = (ev: string, fn: (...args: unknown[]) => void) => (em.off ?? em.removeListener)?.call(em, ev, fn);
    const done = (err?: unknown) => {
      off(event, ok);
      off("error", bad);
      off("close", closed);
      if (err === undefined) res();
      else rej(err);
    };
    const ok = () => done();
    const bad = (e: unknown) => done(e ?? new Error("stream error"));
    const closed = () => done(new Error("stream closed"));
    em.on(event, ok);
    em.on("error", bad);
    em.on("close", closed);
  });
}

// ---- entry content ----

interface StreamxReadable {
  read(): Buffer | null;
  on(event: string, fn: (...args: unknown[]) => void): unknown;
}

/** Reads a tar-stream entry stream without ever destroying it (that would destroy the whole extract). */
class EntryReader {
  private ended = false;
  private error: Error | null = null;
  private waiters: (() => void)[] = [];

  constructor(private readonly stream: StreamxReadable) {
    const wake = () => {
      for (const w of this.waiters.splice(0)) w();
    };
    stream.on("readable", wake);
    stream.on("end", () => {
      this.ended = true;
      wake();
    });
    stream.on("error", (e) => {
      this.error ??= e instanceof Error ? e : new Error(String(e));
      wake();
    });
    stream.on("close", () => {
      if (!this.ended) this.error ??= new Error("unexpected end of data");
      wake();
    });
  }

  /** The next piece, or null at the end. */
  async read(): Promise<Buffer | null> {
    while (true) {
      const d = this.stream.read();
      if (d !== null) return d;
      if (this.ended) return null;
      if (this.error !== null) throw this.error;
      await new Promise<void>((res) => this.waiters.push(res));
    }
  }

  async drain(): Promise<void> {
    while ((await this.read()) !== null) {
      /* discard */
    }
  }
}

type ContentState = "pending" | "open" | "released" | "spooled";

/** The content records are keyed by (answers on results find it before its gate). */
const contentOf = new WeakMap<ImportRecord, Content>();

/** A file entry's content, readable once, live from the archive or from the spool. */
class Content {
  state: ContentState = "pending";
  private opened = false;
  private resolveReleased!: () => void;
  readonly released: Promise<void>;
  private spooled: Promise<SpoolRef> | undefined;
  private spoolRef: SpoolRef | undefined;
  private spool: Spool | undefined;

  constructor(
    readonly path: string,
    private readonly reader: EntryReader,
    readonly size: number,
    private readonly session: Session,
  ) {
    this.released = new Promise((res) => (this.resolveReleased = res));
    if (size === 0) this.release(); // nothing to wait for
  }

  release(): void {
    if (this.state === "pending" || this.state === "open") this.state = "released";
    this.resolveReleased();
  }

  async spoolTo(spool: Spool): Promise<void> {
    this.spool = spool;
    this.spooled = spool.add(this.reader, this.size);
    this.state = "spooled";
    this.spoolRef = await this.spooled;
    this.resolveReleased();
  }

  async open(): Promise<AsyncIterable<Uint8Array>> {
    if (this.opened) throw new CofferError("IO", `${this.path}: content can be read only once`);
    this.opened = true;
    if (this.size === 0) return (async function* () {})();
    if (this.state === "pending") {
      this.state = "open";
      return this.live();
    }
    if (this.state === "spooled" && this.spool !== undefined && this.spooled !== undefined) {
      const ref = this.spoolRef ?? (await this.spooled);
      this.spoolRef = undefined;
      return this.spool.read(ref);
    }
    throw new CofferError("IO", `${this.path}: content no longer available (the archive is read in one pass)`);
  }

  private live(): AsyncIterable<Uint8Array> {
    let started = false;
    let done = false;
    return {
      [Symbol.asyncIterator]: () => {
        if (started) throw new CofferError("IO", `${this.path}: content can be read only once`);
        started = true;
        return {
          next: async (): Promise<IteratorResult<Uint8Array>> => {
            if (done) return { done: true, value: undefined };
            if (this.state !== "open") throw new CofferError("IO", `${this.path}: content no longer available`);
            let d: Buffer | null;
            try {
              d = await this.session.guard(this.reader.read());
            } catch (e) {
              done = true;
              this.release();
              throw this.session.errorFor(e);
            }
            if (d === null) {
              done = true;
              this.release();
              return { done: true, value: undefined };
            }
            return { done: false, value: d };
          },
          return: async (): Promise<IteratorResult<Uint8Array>> => {
            done = true;
            this.release();
            return { done: true, value: undefined };
          },
        };
      },
    };
  }
}

// ---- the spool (only without a results channel) ----

type SpoolRef = { mem: Buffer } | { offset: number; length: number };

class Spool {
  private dir: string | undefined;
  private fh: FileHandle | undefined;
  private opening: Promise<FileHandle> | undefined;
  private end = 0;
  private memory = 0;
  private closed = false;

  async add(reader: EntryReader, size: number): Promise<SpoolRef> {
    if (size <= SPOOL_MEM_ENTRY && this.memory + size <= SPOOL_MEMORY) {
      const parts: Buffer[] = [];
      for (let d = await reader.read(); d !== null; d = await reader.read()) parts.push(d);
      const mem = Buffer.concat(parts); // a copy: pieces may be views of larger read buffers
      this.memory += mem.length;
      return { mem };
    }
    const fh = await this.file();
    const offset = this.end;
    this.end += size; // reserved at once: spools never interleave, but stay safe if they do
    let pos = offset;
    for (let d = await reader.read(); d !== null; d = await reader.read()) {
      let w = 0;
      while (w < d.length) w += (await fh.write(d, w, d.length - w, pos + w)).bytesWritten;
      pos += d.length;
    }
    return { offset, length: pos - offset };
  }

  private file(): Promise<FileHandle> {
    if (this.closed) return Promise.reject(closedError());
    this.opening ??= (async () => {
      this.dir = await mkdtemp(join(tmpdir(), "coffer-tar-spool-"));
      this.fh = await open(join(this.dir, "spool"), "w+", 0o600);
      return this.fh;
    })();
    return this.opening;
  }

  read(ref: SpoolRef): AsyncIterable<Uint8Array> {
    if ("mem" in ref) {
      this.memory -= ref.mem.length;
      return (async function* () {
        if (ref.mem.length > 0) yield ref.mem;
      })();
    }
    return this.readFile(ref.offset, ref.length);
  }

  private async *readFile(offset: number, length: number): AsyncGenerator<Uint8Array> {
    let pos = offset;
    const end = offset + length;
    while (pos < end) {
      if (this.closed || this.fh === undefined) throw closedError();
      const buf = Buffer.allocUnsafe(Math.min(SPOOL_PIECE, end - pos));
      const { bytesRead } = await this.fh.read(buf, 0, buf.length, pos);
      if (bytesRead === 0) throw new CofferError("IO", "tar spool: unexpected end of file");
      pos += bytesRead;
      yield bytesRead === buf.length ? buf : buf.subarray(0, bytesRead);
    }
  }

  async close(): Promise<void> {
    this.closed = true;
    await this.opening?.catch(() => {});
    await this.fh?.close().catch(() => {});
    if (this.dir !== undefined) await rm(this.dir, { recursive: true, force: true });
    this.fh = undefined;
    this.dir = undefined;
  }
}
